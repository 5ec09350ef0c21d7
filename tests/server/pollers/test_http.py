"""HTTP agent items against a real HTTP and HTTPS server on loopback."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from vigil.server.config.model import AUTH_TYPES, ConfigError, PollSpec, poll_from_doc
from vigil.server.config.repo import PollItem
from vigil.server.config.tables import ItemType, ValueType
from vigil.server.pollers import NotSupported, http

from tests.conftest import free_port
from tests.server.pollers import httpserver
from tests.tlscerts import Certs, make_certs


@pytest.fixture(scope="module")
def web() -> Iterator[str]:
    srv = httpserver.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        httpserver.stop(srv)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_web(certs: Certs) -> Iterator[str]:
    srv = httpserver.start(certs.server.cert, certs.server.key)
    try:
        yield f"https://127.0.0.1:{srv.server_address[1]}"
    finally:
        httpserver.stop(srv)


def get(url: str, timeout: float = 3, **fields: Any) -> str:
    p = PollSpec(url=url, **fields)
    item = PollItem(1, 1, "h", ItemType.HTTP_AGENT, ValueType.TEXT, "web", 60, None, p)
    return asyncio.run(http.poll(item, timeout))


def test_the_body_is_the_value(web: str) -> None:
    assert get(f"{web}/ok") == "hello"


def test_headers_or_both_by_retrieve_mode(web: str) -> None:
    head = get(f"{web}/ok", retrieve_mode=1)
    assert head.startswith("HTTP/1.1 200 OK\r\n") and "X-Test: yes\r\n" in head and "hello" not in head
    both = get(f"{web}/ok", retrieve_mode=2)
    assert both.startswith("HTTP/1.1 200") and both.endswith("\r\n\r\nhello")


@pytest.mark.parametrize(("code", "codes", "ok"), [
    (200, "200", True), (201, "200,201", True), (250, "200,201,210-299", True), (404, "200,201,210-299", False),
    (500, "200", False), (404, "404", True), (503, "", True),
])
def test_status_codes_must_match(web: str, code: int, codes: str, ok: bool) -> None:
    if ok:
        assert get(f"{web}/status/{code}", status_codes=codes) == f"status {code}"
    else:
        with pytest.raises(NotSupported) as e:
            get(f"{web}/status/{code}", status_codes=codes)
        assert f'Response code "{code}" did not match any of the required status codes "{codes}"' == str(e.value)


def test_redirects_are_followed_unless_turned_off(web: str) -> None:
    assert get(f"{web}/redirect") == "hello"
    assert get(f"{web}/redirect", follow_redirects=False, status_codes="302") == "moved"
    with pytest.raises(NotSupported, match='Response code "302"'):
        get(f"{web}/redirect", follow_redirects=False)
    with pytest.raises(NotSupported, match="redirect"):
        get(f"{web}/loop")


def test_basic_and_bearer_authentication(web: str) -> None:
    assert get(f"{web}/basic", auth=AUTH_TYPES["basic"], username="alice", password="s3cret") == "welcome alice"
    with pytest.raises(NotSupported, match='Response code "401"'):
        get(f"{web}/basic", auth=AUTH_TYPES["basic"], username="alice", password="wrong")
    with pytest.raises(NotSupported, match='Response code "401"'):
        get(f"{web}/basic")
    assert get(f"{web}/bearer", auth=AUTH_TYPES["bearer"], password="tok-123") == "token ok"


def test_method_headers_query_fields_and_body_are_sent(web: str) -> None:
    got = json.loads(get(f"{web}/echo?a=1", method=1, headers=[("X-One", "1"), ("Content-Type", "application/json")],
                         query_fields=[("q", "x y"), ("n", "2")], body='{"k": 1}'))
    assert got["method"] == "POST" and got["path"] == "/echo?a=1&q=x+y&n=2"
    assert got["headers"]["X-One"] == "1" and got["headers"]["Content-Type"] == "application/json"
    assert got["body"] == '{"k": 1}'
    assert json.loads(get(f"{web}/echo", method=2, body="v"))["method"] == "PUT"
    assert get(f"{web}/ok", method=3) == ""  # HEAD: no body


def test_a_slow_server_times_out(web: str) -> None:
    with pytest.raises(NotSupported, match="Timeout"):
        get(f"{web}/slow", timeout=0.5, headers=[("X-Delay", "2")])


def test_nothing_listening_is_not_supported_with_the_reason() -> None:
    with pytest.raises(NotSupported, match="Cannot connect to .*Connection refused"):
        get(f"http://127.0.0.1:{free_port()}/")


def test_only_http_and_https_are_requested() -> None:
    with pytest.raises(NotSupported, match="Unsupported URL scheme 'ftp'"):
        get("ftp://127.0.0.1/x")


def test_tls_verification(tls_web: str, certs: Certs) -> None:
    assert get(f"{tls_web}/ok") == "hello"  # verify_peer off: any certificate
    http.configure(4, "")
    with pytest.raises(NotSupported, match="Cannot verify the TLS certificate.*VIGIL_SSL_CA_FILE"):
        get(f"{tls_web}/ok", verify_peer=True)  # the system's CAs do not know the test CA
    http.configure(4, str(certs.ca))
    try:
        assert get(f"{tls_web}/ok", verify_peer=True) == "hello"
        with pytest.raises(NotSupported, match="Cannot verify the TLS certificate"):
            get(f"{tls_web}/ok", verify_peer=True, verify_host=True)  # issued to "Vigil server", not 127.0.0.1
    finally:
        http.configure(4, "")


def test_a_client_certificate_that_cannot_be_read_is_not_supported(tls_web: str, tmp_path: Path) -> None:
    with pytest.raises(NotSupported, match="Cannot load the client certificate"):
        get(f"{tls_web}/ok", ssl_cert_file=str(tmp_path / "missing.crt"))


@pytest.mark.parametrize(("doc", "message"), [
    ({}, "url: an http_agent item needs the URL"),
    ({"url": "ftp://x/"}, "only http:// and https://"),
    ({"url": "http://x/", "status_codes": "200,abc"}, "status_codes: '200,abc' is not a list"),
    ({"url": "http://x/", "timeout": "90s"}, "timeout: '90s' must be between 1s and 60s"),
    ({"url": "http://x/", "method": "PATCH"}, "method: 'PATCH' is not one of GET, POST, PUT, HEAD"),
    ({"url": "http://x/", "auth": "basic"}, "basic authentication needs a username"),
    ({"url": "http://x/", "auth": "ntlm"}, "auth: 'ntlm' is not one of none, basic, bearer"),
    ({"url": "http://x/", "retrieve_mode": "all"}, "retrieve_mode: 'all' is not one of body, headers, both"),
    ({"url": "http://x/", "follow_redirects": "sometimes"}, "follow_redirects: expected true or false"),
    ({"url": "http://x/", "headers": "X-A: 1"}, "headers: expected a mapping"),
])
def test_bad_http_fields_name_the_field(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        poll_from_doc(doc, ItemType.HTTP_AGENT, "hosts[0].items[0]")
    assert str(e.value).startswith("hosts[0].items[0].") and message in str(e.value)


def test_http_fields_default_like_zabbix() -> None:
    p = poll_from_doc({"url": "http://x/"}, ItemType.HTTP_AGENT, "i")
    assert dataclasses.astuple(p) == dataclasses.astuple(PollSpec(url="http://x/"))
    assert (p.status_codes, p.follow_redirects, p.verify_peer, p.timeout, p.method) == ("200", True, False, "3s", 0)
