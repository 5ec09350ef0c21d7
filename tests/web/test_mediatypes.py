"""Configuration → Media types: create/edit/delete through the form, garbage refused field by field with
nothing changed, rights, and "Send test" against a real aiosmtpd SMTP server and a real HTTP receiver."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.alerts.conftest import Mailbox, Receiver, smtp_server
from tests.alerts.conftest import receiver as receiver  # noqa: F401  (the fixture)
from tests.conftest import free_port
from tests.web.conftest import Env, form_token

EMAIL = {"type": "email", "name": "Office mail", "smtp_server": "127.0.0.1", "smtp_port": "25",
         "smtp_email": "vigil@example.com", "smtp_security": "none", "enabled": "1", "max_attempts": "3",
         "attempt_interval": "10s"}


@pytest.fixture
def box() -> Iterator[Mailbox]:
    b = Mailbox()
    stop = smtp_server(b)
    try:
        yield b
    finally:
        stop()


def post(c, path: str, data: dict, token_path: str = "/config/mediatypes/new"):  # type: ignore[no-untyped-def]
    return c.post(path, data={"csrf_token": form_token(c, token_path), **data})


def exported(env: Env) -> list[dict]:
    return env.repo.export().get("media_types", [])


def test_create_edit_and_delete_an_email_media_type(env: Env) -> None:
    c = env.client("admin")
    r = post(c, "/config/mediatypes/new", {**EMAIL, "password": "s3cret", "username": "bot"})
    assert r.status_code == 302, r.get_data(as_text=True)[:2000]
    [m] = exported(env)
    assert m["name"] == "Office mail" and m["smtp_server"] == "127.0.0.1" and m["smtp_port"] == 25
    assert m["password"] == "s3cret"
    mid = int(r.headers["Location"].rsplit("/", 1)[1])
    page = c.get(f"/config/mediatypes/{mid}").get_data(as_text=True)
    assert "s3cret" not in page and "unchanged" in page
    assert 'name="max_attempts" value="3"' in page and 'name="attempt_interval" value="10s"' in page
    # an edit with the password left empty keeps it; the rename is seen by the export
    r = post(c, f"/config/mediatypes/{mid}", {**EMAIL, "name": "Ops mail", "smtp_security": "starttls",
                                              "username": "bot"})
    assert r.status_code == 302
    [m] = exported(env)
    assert m["name"] == "Ops mail" and m["password"] == "s3cret" and m["smtp_security"] == "starttls"
    assert "Ops mail" in c.get("/config/mediatypes").get_data(as_text=True)
    r = post(c, "/config/mediatypes/delete", {"mediatypeid": str(mid), "action": "delete"})
    assert r.status_code == 302 and exported(env) == []


def test_webhook_and_script_media_types(env: Env) -> None:
    c = env.client("ops")
    r = post(c, "/config/mediatypes/new", {"type": "webhook", "name": "Hook", "url": "http://127.0.0.1:9/x",
                                           "method": "PUT", "headers": "X-Token: abc\nX-Sev: {EVENT.SEVERITY}",
                                           "body": '{"to": "{ALERT.SENDTO}"}', "timeout": "5s", "enabled": "1"})
    assert r.status_code == 302, r.get_data(as_text=True)[:2000]
    r = post(c, "/config/mediatypes/new", {"type": "script", "name": "Pager", "script": "page.sh",
                                           "parameters": "{ALERT.SENDTO}\n{ALERT.SUBJECT}", "enabled": "1"})
    assert r.status_code == 302
    by = {m["name"]: m for m in exported(env)}
    assert by["Hook"]["headers"] == {"X-Token": "abc", "X-Sev": "{EVENT.SEVERITY}"} and by["Hook"]["method"] == "PUT"
    assert by["Hook"]["timeout"] == 5
    assert by["Pager"]["parameters"] == ["{ALERT.SENDTO}", "{ALERT.SUBJECT}"]


@pytest.mark.parametrize("change, field", [
    ({"name": ""}, "name"), ({"name": "<script>alert(1)</script>"}, "name"), ({"name": "x" * 101}, "name"),
    ({"smtp_port": "99999"}, "smtp_port"), ({"smtp_port": "abc"}, "smtp_port"), ({"smtp_server": ""}, "smtp_server"),
    ({"smtp_email": "not an address"}, "smtp_email"), ({"smtp_security": "tls13"}, "smtp_security"),
    ({"attempt_interval": "every now and then"}, "attempt_interval"), ({"max_attempts": "0"}, "max_attempts"),
    ({"type": "pigeon"}, "type"),
])
def test_garbage_is_refused_field_by_field_and_changes_nothing(env: Env, change: dict, field: str) -> None:
    c = env.client("admin")
    r = post(c, "/config/mediatypes/new", {**EMAIL, **change})
    assert r.status_code == 400
    text = r.get_data(as_text=True)
    assert f'id="err-{field}"' in text and "Nothing was saved" in text
    assert "<script>alert(1)</script>" not in text
    assert exported(env) == []


def test_duplicates_and_bad_webhooks_are_refused(env: Env) -> None:
    c = env.client("admin")
    assert post(c, "/config/mediatypes/new", EMAIL).status_code == 302
    r = post(c, "/config/mediatypes/new", EMAIL)
    assert r.status_code == 400 and 'id="err-name"' in r.get_data(as_text=True)
    for change, field in (({"url": "ftp://x"}, "url"), ({"headers": "Bad Header: x"}, "headers"),
                          ({"timeout": "5m"}, "timeout")):
        r = post(c, "/config/mediatypes/new", {"type": "webhook", "name": "H", "url": "http://x", **change})
        assert r.status_code == 400 and f'id="err-{field}"' in r.get_data(as_text=True), field
    assert [m["name"] for m in exported(env)] == ["Office mail"]


def test_a_ten_megabyte_field_is_refused_before_it_is_read(env: Env) -> None:
    c = env.client("admin")
    r = post(c, "/config/mediatypes/new", {**EMAIL, "description": "x" * (10 * 1024 * 1024)})
    assert r.status_code == 413 and exported(env) == []


def test_only_admins_change_media_types_and_csrf_is_required(env: Env) -> None:
    for user in ("guest", "viewer"):
        c = env.client(user)
        assert c.get("/config/mediatypes").status_code == 403
        r = c.post("/config/mediatypes/new", data={"csrf_token": form_token(c), **EMAIL})
        assert r.status_code == 403
    c = env.client("admin")
    r = c.post("/config/mediatypes/new", data=EMAIL)
    assert r.status_code == 400 and "csrf" in r.get_data(as_text=True)
    assert exported(env) == []


def _created(env: Env, data: dict) -> int:
    c = env.client("admin")
    r = post(c, "/config/mediatypes/new", data)
    assert r.status_code == 302, r.get_data(as_text=True)[:2000]
    return int(r.headers["Location"].rsplit("/", 1)[1])


def test_send_test_through_a_real_smtp_server(env: Env, box: Mailbox) -> None:
    mid = _created(env, {**EMAIL, "smtp_port": str(box.port)})  # type: ignore[attr-defined]
    c = env.client("admin")
    r = post(c, f"/config/mediatypes/{mid}/test", {"sendto": "oncall@example.com", "subject": "Hello from the test",
                                                    "message": "body text"}, f"/config/mediatypes/{mid}")
    text = r.get_data(as_text=True)
    assert r.status_code == 200 and 'id="test-result"' in text and "Sent:" in text, text[-3000:]
    [(mail_from, rcpts, data)] = box.messages
    assert mail_from == "vigil@example.com" and rcpts == ["oncall@example.com"]
    assert b"Hello from the test" in data and b"body text" in data


def test_send_test_shows_the_delivery_error(env: Env, box: Mailbox) -> None:
    box.refuse_rcpt = "550 5.1.1 no such user here"
    mid = _created(env, {**EMAIL, "smtp_port": str(box.port)})  # type: ignore[attr-defined]
    c = env.client("admin")
    r = post(c, f"/config/mediatypes/{mid}/test", {"sendto": "nobody@example.com"}, f"/config/mediatypes/{mid}")
    text = r.get_data(as_text=True)
    assert "Not sent:" in text and "no such user here" in text and box.messages == []
    # nothing listening: the connection error is shown
    mid2 = _created(env, {**EMAIL, "name": "Dead", "smtp_port": str(free_port())})
    r = post(c, f"/config/mediatypes/{mid2}/test", {"sendto": "a@example.com"}, f"/config/mediatypes/{mid2}")
    assert "Not sent:" in r.get_data(as_text=True)
    r = post(c, f"/config/mediatypes/{mid2}/test", {"sendto": ""}, f"/config/mediatypes/{mid2}")
    assert r.status_code == 400 and 'id="err-test_sendto"' in r.get_data(as_text=True)


def test_send_test_through_a_real_webhook_receiver(env: Env, receiver: Receiver) -> None:  # noqa: F811
    mid = _created(env, {"type": "webhook", "name": "Hook", "url": receiver.url, "method": "POST",
                         "body": '{"to": "{ALERT.SENDTO}", "subject": "{ALERT.SUBJECT}"}', "enabled": "1"})
    c = env.client("admin")
    r = post(c, f"/config/mediatypes/{mid}/test", {"sendto": "#ops", "subject": "Disk full"},
             f"/config/mediatypes/{mid}")
    text = r.get_data(as_text=True)
    assert "Sent:" in text, text[text.find("Send test"):]
    [req] = receiver.requests
    assert json.loads(req.body) == {"to": "#ops", "subject": "Disk full"}
    receiver.statuses.append(500)
    r = post(c, f"/config/mediatypes/{mid}/test", {"sendto": "#ops"}, f"/config/mediatypes/{mid}")
    assert "Not sent:" in r.get_data(as_text=True) and "500" in r.get_data(as_text=True)
