"""Sign-in, lockout, sessions, CSRF, tokens: through the Flask test client over both stores."""

from __future__ import annotations

import time

from tests.web.conftest import PASSWORD, Env, csrf, form_token, login


def test_pages_need_sign_in_and_the_api_a_token(env: Env) -> None:
    c = env.client()
    r = c.get("/latest")
    assert r.status_code == 302 and "/login?next=/latest" in r.headers["Location"]
    r = c.get("/api/v1/hosts")
    assert r.status_code == 401
    assert r.get_json()["error"]["code"] == "unauthorized"


def test_sign_in_and_out(env: Env) -> None:
    c = env.client()
    r = login(c, "admin")
    assert r.status_code == 302 and r.headers["Location"] == "/"
    page = c.get("/").get_data(as_text=True)
    assert "Host availability" in page and "admin" in page
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    c.post("/logout", data={"csrf_token": csrf(page)})
    assert c.get("/").status_code == 302


def test_wrong_password_and_unknown_user_look_the_same(env: Env) -> None:
    c = env.client()
    a = login(c, "admin", "wrong password")
    b = login(c, "no-such-user", "wrong password")
    assert a.status_code == b.status_code == 401
    msg = "Incorrect user name or password or account is temporarily blocked."
    assert msg in a.get_data(as_text=True) and msg in b.get_data(as_text=True)


def test_lockout_after_repeated_failures_refuses_even_the_right_password(env: Env) -> None:
    c = env.client()
    for _ in range(3):  # VIGIL_LOGIN_ATTEMPTS=3 in the fixture
        assert login(c, "viewer", "bad password").status_code == 401
    assert login(c, "viewer", PASSWORD).status_code == 401
    # Once the block has passed, the right password works again (and resets the count).
    user = env.users.by_name("viewer")
    assert user is not None
    import sqlalchemy as sa
    from vigil.server.config import tables as t

    with env.repo.engine.begin() as conn:
        conn.execute(sa.update(t.users).where(t.users.c.userid == user.userid)
                     .values(attempt_clock=int(time.time()) - 31))
    assert login(c, "viewer", PASSWORD).status_code == 302


def test_a_post_without_csrf_token_is_refused(env: Env) -> None:
    c = env.client("admin")
    r = c.post("/profile", data={"action": "token", "name": "x"})
    assert r.status_code == 400 and "csrf_token" in r.get_data(as_text=True)
    r = c.post("/login", data={"username": "admin", "password": PASSWORD})
    assert r.status_code == 400
    r = c.post("/api/v1/hosts", json={"host": "x", "groups": ["Linux servers"]})
    assert r.status_code == 400 and r.get_json()["error"]["field"] == "csrf_token"
    assert env.users.tokens() == []


def test_redirect_after_sign_in_stays_on_this_site(env: Env) -> None:
    c = env.client()
    token = csrf(c.get("/login").get_data(as_text=True))
    r = c.post("/login?next=//evil.example/x", data={"csrf_token": token, "username": "admin",
                                                      "password": PASSWORD})
    assert r.headers["Location"] == "/"


def test_password_change_ends_other_sessions_and_removes_the_initial_password(env: Env) -> None:
    from vigil.server.config.tables import Role

    env.users.create_user("Admin", PASSWORD, Role.SUPER_ADMIN)
    env.data_dir.mkdir(parents=True, exist_ok=True)
    initial = env.data_dir / "initial-admin-password"
    initial.write_text(PASSWORD + "\n")
    a, b = env.client("Admin"), env.client("Admin")
    r = a.post("/profile", data={"csrf_token": form_token(a), "action": "password", "current_password": PASSWORD,
                                 "new_password": "another long one", "new_password2": "another long one"})
    assert r.status_code == 302
    assert not initial.exists()
    assert a.get("/").status_code == 200
    assert b.get("/").status_code == 302  # the other session ended
    r = a.post("/profile", data={"csrf_token": form_token(a), "action": "password", "current_password": "x",
                                 "new_password": "short", "new_password2": "short"})
    assert r.status_code == 400 and "not your current password" in r.get_data(as_text=True)


def test_token_created_in_the_ui_is_shown_once_and_works(env: Env) -> None:
    c = env.client("viewer")
    r = c.post("/profile", data={"csrf_token": form_token(c), "action": "token", "name": "script",
                                 "expires_days": "7"})
    page = r.get_data(as_text=True)
    import re

    secret = re.search(r'<code id="new-token">([0-9a-f]{64})</code>', page).group(1)  # type: ignore[union-attr]
    assert secret not in c.get("/profile").get_data(as_text=True)
    api = env.app.test_client()
    r = api.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
    assert r.status_code == 200 and r.get_json()["data"]["username"] == "viewer"
    # stored hashed
    import sqlalchemy as sa
    from vigil.server.config import tables as t

    with env.repo.engine.connect() as conn:
        stored = conn.execute(sa.select(t.tokens.c.token)).scalars().all()
    assert secret not in stored and len(stored) == 1
    # bad input names the field
    r = c.post("/profile", data={"csrf_token": form_token(c), "action": "token", "name": "y", "expires_days": "-1"})
    assert r.status_code == 400 and "a number of days" in r.get_data(as_text=True)


def test_revoked_expired_and_garbage_tokens_are_refused(env: Env) -> None:
    viewer = env.users.by_name("viewer")
    assert viewer is not None
    now = int(time.time())
    tid, secret = env.users.create_token(viewer.userid, "a", now)
    _, short = env.users.create_token(viewer.userid, "b", now, now + 2)
    api = env.app.test_client()
    h = {"Authorization": f"Bearer {secret}"}
    assert api.get("/api/v1/hosts", headers=h).status_code == 200
    env.users.revoke_token(tid)
    r = api.get("/api/v1/hosts", headers=h)
    assert r.status_code == 401 and r.get_json()["error"]["field"] == "Authorization"
    assert env.users.token_user(short, now + 3) is None  # expired
    assert env.users.token_user(short, now) is not None
    for header in ("Bearer nothex", "Basic abc", "Bearer " + "0" * 64, "Bearer"):
        assert api.get("/api/v1/hosts", headers={"Authorization": header}).status_code == 401


def test_security_headers(env: Env) -> None:
    r = env.client("admin").get("/")
    assert "script-src 'self'" in r.headers["Content-Security-Policy"]
    assert r.headers["X-Frame-Options"] == "DENY"
