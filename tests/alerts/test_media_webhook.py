"""Webhooks against a real HTTP receiver on loopback (http.server in a thread)."""

from __future__ import annotations

import json
import ssl
import threading
from http.server import ThreadingHTTPServer
from typing import Any

import pytest
from vigil.alerts.media import MediaError, Message, send
from vigil.server.config.tables import MediaKind
from vigil.server.store.alertlog import MediaType

from tests.alerts.conftest import Receiver, _handler
from tests.conftest import free_port

BODY = json.dumps({"host": "web01", "trigger": "CPU load is high", "severity": "High", "text": "Températures ✓"},
                  ensure_ascii=False)
MSG = Message(alertid=99, sendto="#ops", subject="Problem: CPU", message=BODY, clock=1_700_000_000)


def hook(target: str, **params: Any) -> MediaType:
    base: dict[str, Any] = {"url": target, "body": "{{ whatever the template was }}", "timeout": 3}
    base.update(params)
    return MediaType(mediatypeid=2, name="Chat hook", kind=MediaKind.WEBHOOK, enabled=True, params=base)


def test_posts_the_rendered_body_with_the_alert_id_and_headers(receiver: Receiver) -> None:
    send(hook(receiver.url, headers={"Authorization": "Bearer t0k", "X-Team": "ops"}), MSG)
    [r] = receiver.requests
    assert r.path == "/hook" and json.loads(r.body) == json.loads(BODY)
    assert r.alert_id == "99" and r.headers["authorization"] == "Bearer t0k" and r.headers["x-team"] == "ops"
    assert r.headers["content-type"].startswith("application/json")


def test_headers_in_zabbix_list_form_and_put(receiver: Receiver) -> None:
    send(hook(receiver.url, method="PUT", headers=[{"name": "Content-Type", "value": "application/json"}]), MSG)
    assert receiver.requests[0].headers["content-type"] == "application/json"


def test_get_sends_no_body(receiver: Receiver) -> None:
    send(hook(receiver.url, method="GET"), MSG)
    assert receiver.requests[0].body == b"" and receiver.requests[0].alert_id == "99"


def test_without_a_body_template_the_alert_is_sent_as_json(receiver: Receiver) -> None:
    m = hook(receiver.url)
    del m.params["body"]
    send(m, Message(alertid=7, sendto="x", subject="Sub ✓", message="plain text, not JSON", clock=0))
    assert json.loads(receiver.requests[0].body) == {"alert_id": 7, "sendto": "x", "subject": "Sub ✓",
                                                      "message": "plain text, not JSON"}


def test_an_empty_body_template_as_imported_from_yaml_sends_the_alert_as_json(receiver: Receiver) -> None:
    send(hook(receiver.url, body="", headers={}, timeout=30, verify_tls=True), MSG)  # vigil config import's defaults
    assert json.loads(receiver.requests[0].body)["alert_id"] == 99


def test_a_500_is_a_failure_with_status_and_the_start_of_the_body(receiver: Receiver) -> None:
    receiver.statuses = [500]
    receiver.answer_body = b"database exploded " + b"x" * 5000
    with pytest.raises(MediaError) as e:
        send(hook(receiver.url), MSG)
    text = str(e.value)
    assert text.startswith(f"media type 'Chat hook': POST {receiver.url} answered 500 Internal Server Error: "
                           "database exploded xxx")
    assert len(text) < 400 and not e.value.permanent


def test_a_redirect_is_not_followed(receiver: Receiver) -> None:
    receiver.statuses = [302]
    with pytest.raises(MediaError, match="answered 302"):
        send(hook(receiver.url), MSG)
    assert len(receiver.requests) == 1


def test_a_receiver_that_holds_the_request_times_out(receiver: Receiver) -> None:
    receiver.hold.set()
    with pytest.raises(MediaError, match=r"no answer within 1 s"):
        send(hook(receiver.url, timeout=1), MSG)


def test_nothing_listening_is_a_failure() -> None:
    with pytest.raises(MediaError, match=r"media type 'Chat hook': POST http://127\.0\.0\.1:\d+/hook: .*refused"):
        send(hook(f"http://127.0.0.1:{free_port()}/hook"), MSG)


def test_a_rendered_body_that_is_not_json_is_permanent(receiver: Receiver) -> None:
    with pytest.raises(MediaError, match=r"the rendered body is not JSON .*fix the media type's body template") as e:
        send(hook(receiver.url), Message(1, "", "", '{"unterminated": ', 0))
    assert e.value.permanent and receiver.requests == []


@pytest.mark.parametrize(("params", "words"), [
    ({"url": "ftp://x/"}, "'url': expected http:// or https://"),
    ({"method": "FETCH"}, "'method': expected POST, PUT, PATCH, DELETE, GET, got 'FETCH'"),
    ({"headers": {"X-Bad": "a\r\nInjected: 1"}}, "'headers': header 'X-Bad' holds a line break"),
    ({"headers": "nope"}, "'headers': expected"),
    ({"timeout": 0}, "'timeout': must be above 0"),
])
def test_bad_parameters_are_permanent_and_named(receiver: Receiver, params: dict[str, Any], words: str) -> None:
    with pytest.raises(MediaError, match=f"media type 'Chat hook': parameter {words}") as e:
        send(hook(receiver.url, **params), MSG)
    assert e.value.permanent and receiver.requests == []


def test_https_verification(certs: Any) -> None:
    rx = Receiver(free_port())
    server = ThreadingHTTPServer(("127.0.0.1", rx.port), _handler(rx))
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(certs.server.cert, certs.server.key)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    url = f"https://127.0.0.1:{rx.port}/hook"
    try:
        with pytest.raises(MediaError, match="CERTIFICATE_VERIFY_FAILED"):
            send(hook(url), MSG)
        with pytest.raises(MediaError, match="CERTIFICATE_VERIFY_FAILED"):  # our CA, but not for 127.0.0.1
            send(hook(url, ca_file=str(certs.ca)), MSG)
        send(hook(url, verify_tls=False), MSG)
        assert rx.ids() == ["99"]
    finally:
        server.shutdown()
        server.server_close()


def test_the_body_read_is_bounded(receiver: Receiver) -> None:
    receiver.answer_body = b"y" * (1024 * 1024)
    send(hook(receiver.url), MSG)  # a large 200 answer is fine and only partly read
    assert len(receiver.requests) == 1
