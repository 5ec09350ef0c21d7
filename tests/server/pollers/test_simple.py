"""Simple checks against real listeners on loopback and the real fping."""

from __future__ import annotations

import asyncio
import subprocess

import pytest
from vigil.server.config.model import PollSpec
from vigil.server.config.repo import PollInterface, PollItem
from vigil.server.config.tables import ItemType, ValueType
from vigil.server.pollers import NotSupported, simple

from tests.conftest import free_port
from tests.server.pollers.conftest import Listener
from tests.tlscerts import make_certs


def item(key: str, address: str = "127.0.0.1") -> PollItem:
    itf = PollInterface(1, 1, 1, address, 10050, {}) if address else None
    return PollItem(1, 1, "h", ItemType.SIMPLE, ValueType.FLOAT, key, 60, itf, PollSpec())


def check(key: str, address: str = "127.0.0.1", timeout: float = 2) -> str:
    return asyncio.run(simple.poll(item(key, address), timeout))


@pytest.mark.parametrize(("service", "banner"), [
    ("ssh", b"SSH-2.0-OpenSSH_9.2\r\n"), ("smtp", b"220 mail ESMTP\r\n"), ("ftp", b"220 ftp ready\r\n"),
    ("pop", b"+OK POP3 ready\r\n"), ("imap", b"* OK IMAP4rev1 ready\r\n"), ("nntp", b"200 news\r\n"),
])
def test_services_are_up_only_with_their_banner(service: str, banner: bytes) -> None:
    good, bad = Listener("banner", banner), Listener("banner", b"500 go away\r\n")
    try:
        assert check(f"net.tcp.service[{service},127.0.0.1,{good.port}]") == "1"
        assert check(f"net.tcp.service[{service},,{good.port}]") == "1"  # the interface's address
        assert check(f"net.tcp.service[{service},127.0.0.1,{bad.port}]") == "0"
        perf = float(check(f"net.tcp.service.perf[{service},127.0.0.1,{good.port}]"))
        assert perf > 0
        assert check(f"net.tcp.service.perf[{service},127.0.0.1,{bad.port}]") == "0"
    finally:
        good.close()
        bad.close()


def test_tcp_is_up_while_something_listens_and_down_after() -> None:
    lst = Listener("silent")
    port = lst.port
    try:
        assert check(f"net.tcp.service[tcp,,{port}]") == "1"
        assert check(f"net.tcp.service[http,127.0.0.1,{port}]") == "1"
    finally:
        lst.close()
    assert check(f"net.tcp.service[tcp,,{port}]") == "0"
    assert check(f"net.tcp.service.perf[tcp,,{port}]") == "0"


def test_a_silent_ssh_port_is_down_after_the_timeout(silent: Listener) -> None:
    assert check(f"net.tcp.service[ssh,,{silent.port}]", timeout=0.3) == "0"


def test_https_needs_a_tls_handshake_and_an_http_reply(tmp_path: object) -> None:
    import http.server
    import ssl
    import threading
    from pathlib import Path

    certs = make_certs(Path(str(tmp_path)) / "certs")
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs.server.cert, certs.server.key)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    plain = Listener("banner", b"HTTP/1.0 200 OK\r\n\r\n")
    try:
        assert check(f"net.tcp.service[https,127.0.0.1,{srv.server_address[1]}]") == "1"
        assert check(f"net.tcp.service[https,127.0.0.1,{plain.port}]") == "0"  # no TLS there
    finally:
        srv.shutdown()
        srv.server_close()
        plain.close()


@pytest.mark.parametrize(("key", "message"), [
    ("net.tcp.service[gopher,,70]", "Invalid first parameter"),
    ("net.tcp.service[ntp]", "ntp is not checked"),
    ("net.tcp.service[tcp]", "needs a port"),
    ("net.tcp.service[tcp,,99999]", "Invalid third parameter"),
    ("net.tcp.service[tcp,,1,extra]", "Too many parameters"),
    ("icmpping[,0]", "Invalid parameter #2"),
    ("icmpping[,3,5]", "Invalid parameter #3"),
    ("icmppingsec[,,,,,median]", "Invalid sixth parameter"),
    ("net.udp.service[ntp]", "Unsupported item key"),
    ("net.tcp.service[tcp", "Invalid item key format"),
])
def test_bad_keys_are_not_supported_saying_why(key: str, message: str) -> None:
    with pytest.raises(NotSupported) as e:
        check(key)
    assert message in str(e.value)


def test_no_address_anywhere_is_not_supported() -> None:
    with pytest.raises(NotSupported, match="no IP given"):
        check(f"net.tcp.service[tcp,,{free_port()}]", address="")
    with pytest.raises(NotSupported, match="no target given"):
        check("icmpping", address="")


def test_icmp_ping_of_loopback_with_the_real_fping() -> None:
    simple.configure()
    if simple._fping_path is None:
        pytest.fail("fping is not installed: scripts/test.sh installs it (apt-get install fping)")
    assert check("icmpping[,2,20,,200]") == "1"
    assert check("icmppingloss[127.0.0.1,2,20,,200]") == "0"
    sec = float(check("icmppingsec[,3,20,,200,max]"))
    assert 0 < sec < 1
    assert float(check("icmppingsec[127.0.0.1,2,20]")) > 0


def test_a_name_that_does_not_resolve_is_not_supported() -> None:
    simple.configure()
    with pytest.raises(NotSupported, match="does not resolve"):
        check("icmpping[no-such-host.invalid,1,20,,100]")


def test_without_fping_pings_go_through_an_icmp_socket(tmp_path: object) -> None:
    simple.configure(f"{tmp_path}/no-fping-here")
    try:
        assert check("icmpping[,2,20,,300]") == "1"
        assert check("icmppingloss[127.0.0.1,2,20,,300]") == "0"
        assert float(check("icmppingsec[,2,20]")) > 0
        with pytest.raises(NotSupported, match="does not resolve"):
            check("icmpping[no-such-host.invalid,1,20,,100]")
    finally:
        simple.configure()


def test_a_broken_fping_is_not_supported_with_its_message(tmp_path: object) -> None:
    from pathlib import Path

    fake = Path(str(tmp_path)) / "fping"
    fake.write_text("#!/bin/sh\necho 'fping: cannot create socket' >&2\nexit 4\n")
    fake.chmod(0o755)
    simple.configure(str(fake))
    try:
        with pytest.raises(NotSupported, match="cannot create socket"):
            check("icmpping")
    finally:
        simple.configure()
    assert subprocess.run([str(fake)], capture_output=True).returncode == 4
