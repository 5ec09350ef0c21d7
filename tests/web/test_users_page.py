"""Configuration → Users: a user's role, groups and media (seen by `config export`), unlock, password change
(and the Admin initial-password file going with it), user groups; garbage refused; super admins only."""

from __future__ import annotations

import pytest
from vigil.server.config.model import doc_from_dict
from vigil.server.config.tables import Role

from tests.web.conftest import PASSWORD, Env, form_token, login


@pytest.fixture
def mail(env: Env) -> None:
    env.repo.apply(doc_from_dict({"media_types": [{"name": "Mail", "type": "email", "smtp_server": "localhost",
                                                   "smtp_email": "v@example.com"}]}))


def uid(env: Env, name: str) -> int:
    u = env.users.by_name(name)
    assert u is not None
    return u.userid


def post(c, path: str, data: dict):  # type: ignore[no-untyped-def]
    return c.post(path, data={"csrf_token": form_token(c, "/config/users"), **data})


def exported_user(env: Env, name: str) -> dict:
    return next(u for u in env.repo.export()["users"] if u["username"] == name)


MEDIA = {"name": "Olga", "surname": "Ops", "role": "admin", "groups": ["Operators", "Viewers"],
         "medias-0-media_type": "Mail", "medias-0-send_to": "olga@example.com", "medias-0-period": "1-5,09:00-18:00",
         "medias-0-severity": ["high", "disaster"], "medias-0-enabled": "1"}


def test_edit_a_users_role_groups_and_media(env: Env, mail: None) -> None:
    c = env.client("admin")
    ops = uid(env, "ops")
    assert "ops" in c.get(f"/config/users/{ops}").get_data(as_text=True)
    r = post(c, f"/config/users/{ops}", MEDIA)
    assert r.status_code == 302, r.get_data(as_text=True)[-2000:]
    u = exported_user(env, "ops")
    assert u["name"] == "Olga" and u["role"] == "admin" and u["groups"] == ["Operators", "Viewers"]
    assert u["medias"] == [{"media_type": "Mail", "send_to": "olga@example.com", "severity": ["high", "disaster"],
                            "period": "1-5,09:00-18:00"}]
    text = c.get(f"/config/users/{ops}").get_data(as_text=True)
    assert 'value="olga@example.com"' in text and 'value="1-5,09:00-18:00"' in text
    r = post(c, f"/config/users/{ops}", {**MEDIA, "role": "guest"})
    assert env.users.user(ops).role == Role.GUEST  # type: ignore[union-attr]


@pytest.mark.parametrize("change, field", [
    ({"medias-0-period": "every day"}, "medias-0"), ({"medias-0-media_type": "Pigeon"}, "medias-0"),
    ({"role": "emperor"}, "role"), ({"name": "x" * 300}, "name"), ({"groups": ["No such group"]}, "groups"),
])
def test_garbage_in_the_user_form_changes_nothing(env: Env, mail: None, change: dict, field: str) -> None:
    c = env.client("admin")
    ops = uid(env, "ops")
    before = exported_user(env, "ops")
    r = post(c, f"/config/users/{ops}", {**MEDIA, **change})
    assert r.status_code == 400 and f'id="err-{field}"' in r.get_data(as_text=True), r.get_data(as_text=True)[-2000:]
    assert exported_user(env, "ops") == before


def test_a_super_admin_keeps_their_own_role(env: Env) -> None:
    c = env.client("admin")
    me = uid(env, "admin")
    r = post(c, f"/config/users/{me}", {"role": "user"})
    assert r.status_code == 400 and 'id="err-role"' in r.get_data(as_text=True)
    assert env.users.user(me).role == Role.SUPER_ADMIN  # type: ignore[union-attr]


def test_unlock_a_locked_user(env: Env) -> None:
    for _ in range(3):
        login(env.app.test_client(), "viewer", "wrong password")
    assert login(env.app.test_client(), "viewer").status_code == 401  # locked: even the right password
    c = env.client("admin")
    viewer = uid(env, "viewer")
    assert 'id="locked"' in c.get(f"/config/users/{viewer}").get_data(as_text=True)
    assert post(c, f"/config/users/{viewer}/unlock", {}).status_code == 302
    assert login(env.app.test_client(), "viewer").status_code == 302


def test_password_change_removes_the_initial_admin_password(env: Env) -> None:
    admin_id = env.users.create_user("Admin", "initial-password-1", Role.SUPER_ADMIN)
    env.data_dir.mkdir(parents=True, exist_ok=True)
    initial = env.data_dir / "initial-admin-password"
    initial.write_text("initial-password-1\n")
    c = env.client("admin")
    r = post(c, f"/config/users/{admin_id}/password", {"new_password": "short", "new_password2": "short"})
    assert r.status_code == 400 and 'id="err-new_password"' in r.get_data(as_text=True) and initial.exists()
    r = post(c, f"/config/users/{admin_id}/password", {"new_password": "a new secret 1", "new_password2": "other"})
    assert r.status_code == 400 and initial.exists()
    r = post(c, f"/config/users/{admin_id}/password", {"new_password": "a new secret 1",
                                                       "new_password2": "a new secret 1"})
    assert r.status_code == 302 and not initial.exists()
    assert login(env.app.test_client(), "Admin", "a new secret 1").status_code == 302
    assert login(env.app.test_client(), "Admin", "initial-password-1").status_code == 401


def test_user_groups_create_duplicate_delete(env: Env) -> None:
    c = env.client("admin")
    assert post(c, "/config/usergroups", {"name": "Night shift"}).status_code == 302
    for bad in ("", "Night shift", "<b>x</b>", "n" * 65):
        r = post(c, "/config/usergroups", {"name": bad})
        assert r.status_code == 400 and 'id="err-group_name"' in r.get_data(as_text=True), bad
    groups = {n: g for g, n, _ in env.users.groups()}
    assert "Night shift" in groups and len(groups) == 4
    assert post(c, f"/config/usergroups/{groups['Night shift']}/delete", {}).status_code == 302
    assert "Night shift" not in {n for _, n, _ in env.users.groups()}


def test_delete_a_user(env: Env) -> None:
    c = env.client("admin")
    assert post(c, f"/config/users/{uid(env, 'nobody')}/delete", {}).status_code == 302
    assert env.users.by_name("nobody") is None
    assert post(c, f"/config/users/{uid(env, 'admin')}/delete", {}).status_code == 400


def test_only_a_super_admin_manages_users(env: Env) -> None:
    ops = uid(env, "ops")
    for user in ("ops", "viewer", "guest"):
        c = env.client(user)
        assert c.get(f"/config/users/{ops}").status_code == 403
        assert post(c, f"/config/users/{ops}", {"role": "super admin"}).status_code == 403
        assert post(c, f"/config/users/{ops}/password", {"new_password": "x" * 10,
                                                         "new_password2": "x" * 10}).status_code == 403
        assert post(c, "/config/usergroups", {"name": "Mine"}).status_code == 403
    assert env.users.user(ops).role == Role.ADMIN  # type: ignore[union-attr]
    c = env.client("admin")
    assert c.post(f"/config/users/{ops}", data={"role": "guest"}).status_code == 400  # no CSRF token
    assert login(env.app.test_client(), "ops", PASSWORD).status_code == 302
