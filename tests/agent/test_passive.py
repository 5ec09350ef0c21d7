"""The passive listener in-process, asked by the real zabbix_get and by hostile raw clients."""

from __future__ import annotations

import errno
import logging
import socket
import struct
import threading
import zlib
from collections.abc import Callable, Iterator

import pytest
from vigil.agent.checks import CheckContext, Checks, UserParameter
from vigil.agent.passive import MAX_REQUEST, PassiveListener, PeerFilter
from vigil.agent.protocol import zbxd

from tests.conftest import free_port, zabbix_get

Factory = Callable[..., PassiveListener]


@pytest.fixture
def checks() -> Checks:
    ctx = CheckContext(hostname="passive-test", timeout=3.0,
                       user_parameters={"up.echo": UserParameter("up.echo", "echo $1,$2", True)})
    return Checks(ctx)


@pytest.fixture
def start(checks: Checks) -> Iterator[Factory]:
    started: list[PassiveListener] = []

    def factory(server: tuple[str, ...] = ("127.0.0.1",), get: Callable[[str], str] | None = None,
                **kw: object) -> PassiveListener:
        kw.setdefault("listen_ips", ("127.0.0.1",))
        kw.setdefault("workers", 2)
        kw.setdefault("timeout", 1.0)
        lst = PassiveListener(get or checks.get, server=server, port=free_port(), **kw)  # type: ignore[arg-type]
        lst.start()
        started.append(lst)
        return lst

    yield factory
    for lst in started:
        lst.stop()


def frame(body: bytes, length: int | None = None) -> bytes:
    return b"ZBXD\x01" + struct.pack("<II", len(body) if length is None else length, 0) + body


def raw(port: int, data: bytes, *, eof: bool = True, source: str | None = None, timeout: float = 5.0) -> bytes:
    """Send `data`, optionally half-close, and return all that comes back until the agent closes."""
    with socket.create_connection(("127.0.0.1", port), timeout,
                                  source_address=(source, 0) if source else None) as s:
        try:
            s.sendall(data)
            if eof:
                s.shutdown(socket.SHUT_WR)
            out = b""
            while chunk := s.recv(65536):
                out += chunk
            return out
        except (ConnectionResetError, BrokenPipeError):
            return b"<reset>"
        except OSError as e:  # ENOTCONN: the agent closed before our half-close
            if e.errno == errno.ENOTCONN:
                return b""
            raise


def ask(port: int, key: str, source: str | None = None) -> bytes:
    reply = raw(port, frame(key.encode()), source=source)
    _, body = zbxd.decode(reply)
    return body


def test_zabbix_get_agent_keys_and_user_parameter(start: Factory) -> None:
    port = start().port
    assert zabbix_get(port, "agent.ping") == "1"
    assert zabbix_get(port, "agent.version") == "6.0.14"
    assert zabbix_get(port, "agent.hostname") == "passive-test"
    assert zabbix_get(port, "up.echo[a,b]") == "a,b"
    assert zabbix_get(port, "no.such.key") == "ZBX_NOTSUPPORTED: Unsupported item key."
    assert zabbix_get(port, "agent.ping[x]") == "ZBX_NOTSUPPORTED: Item does not allow parameters."
    assert zabbix_get(port, "system.run[echo hi]") == "ZBX_NOTSUPPORTED: Unsupported item key."


def test_reply_bytes_match_zabbix_agentd_framing(start: Factory) -> None:
    port = start().port
    assert raw(port, frame(b"agent.ping")) == b"ZBXD\x01\x01\x00\x00\x00\x00\x00\x00\x001"
    assert ask(port, "no.such.key") == b"ZBX_NOTSUPPORTED\x00Unsupported item key."


@pytest.mark.parametrize("key,reason", [
    ('vfs.fs.size["/,free]', "Invalid item key format"),
    ("agent.ping[", "Invalid item key format"),
    ("", "Invalid item key format"),
    ("agent.ping[" + "a" * 3000 + "]", "Invalid item key format"),  # fits the frame bound, not a key
])
def test_broken_keys_get_not_supported(start: Factory, key: str, reason: str) -> None:
    port = start().port
    body = ask(port, key)
    assert body.startswith(b"ZBX_NOTSUPPORTED\x00" + reason.encode())
    assert ask(port, "agent.ping") == b"1"


def test_trailing_newline_and_compressed_request(start: Factory) -> None:
    port = start().port
    assert ask(port, "agent.ping\n") == b"1"
    assert raw(port, zbxd.encode(b"agent.ping", compress=True)).endswith(b"1")


def test_non_utf8_key(start: Factory) -> None:
    port = start().port
    assert ask(port, "x").startswith(b"ZBX_NOTSUPPORTED")
    assert zbxd.decode(raw(port, frame(b"agent.\xffping")))[1].startswith(b"ZBX_NOTSUPPORTED\x00Invalid item key")


BAD_FRAMES = [
    ("no header", b"agent.ping", True, "is missing header"),
    ("no header, kept open", b"hello world\n", False, "is missing header"),
    ("truncated header", b"ZBXD\x01\x0a\x00", True, "is missing data length"),
    ("lying length, short body", frame(b"agent.pi", 10), True, "is shorter than expected 10 bytes"),
    ("lying length, long body", frame(b"agent.pingXX", 10), True, "is longer than expected 10 bytes"),
    ("huge length", frame(b"agent.ping", 0x7FFFFFFF), True, f"over the maximum of {MAX_REQUEST}"),
    ("oversize key", frame(b"agent.ping[" + b"a" * (MAX_REQUEST + 10) + b"]"), False,
     f"over the maximum of {MAX_REQUEST}"),
    ("unknown flags", b"ZBXD\x09" + struct.pack("<II", 10, 0) + b"agent.ping", True, "unknown protocol flags"),
    ("bad zlib body", b"ZBXD\x03" + struct.pack("<II", 4, 10) + b"junk", True, "cannot decompress"),
]


@pytest.mark.parametrize("data,eof,logged", [b[1:] for b in BAD_FRAMES], ids=[b[0] for b in BAD_FRAMES])
def test_bad_frames_are_closed_unanswered_and_logged(
    start: Factory, caplog: pytest.LogCaptureFixture, data: bytes, eof: bool, logged: str
) -> None:
    port = start().port
    with caplog.at_level(logging.WARNING, logger="vigil.agent.passive"):
        reply = raw(port, data, eof=eof)
        assert reply in (b"", b"<reset>")
        assert ask(port, "agent.ping") == b"1"
    messages = [r.getMessage() for r in caplog.records]
    assert any(logged in m and "127.0.0.1" in m for m in messages), messages


def test_silent_client_times_out_and_others_are_served(start: Factory, caplog: pytest.LogCaptureFixture) -> None:
    port = start(workers=2, timeout=1.0).port
    with caplog.at_level(logging.WARNING, logger="vigil.agent.passive"):
        with socket.create_connection(("127.0.0.1", port), 5) as slow:
            slow.sendall(b"ZBXD\x01")  # and then nothing: holds one worker until the timeout
            assert ask(port, "agent.ping") == b"1"
            assert slow.recv(100) == b""  # closed by the agent after Timeout
    assert any("timed out after 5 bytes" in r.getMessage() for r in caplog.records)


def test_peer_that_sends_nothing_is_closed_and_others_are_served(start: Factory) -> None:
    # the listener defers accept() until a request has arrived; a silent peer still gets Timeout
    port = start(workers=1, timeout=3.0).port
    with socket.create_connection(("127.0.0.1", port), 15) as silent:
        assert ask(port, "agent.ping") == b"1"
        # answered while the silent peer is still open: the only worker was not waiting on it
        silent.setblocking(False)
        with pytest.raises(BlockingIOError):
            silent.recv(100)
        silent.setblocking(True)
        assert silent.recv(100) == b""  # and then closed by the agent, unanswered


def test_slow_check_does_not_block_other_requests(start: Factory, checks: Checks) -> None:
    release, entered = threading.Event(), threading.Event()

    def get(key: str) -> str:
        if key == "slow":
            entered.set()
            release.wait(10)
            return "late"
        return checks.get(key)

    port = start(get=get, workers=2).port
    result: list[bytes] = []
    t = threading.Thread(target=lambda: result.append(ask(port, "slow")))
    t.start()
    try:
        assert entered.wait(10), "the slow request never reached a worker"
        assert ask(port, "agent.ping") == b"1"
        assert t.is_alive() and not result  # the slow one is still being worked on
    finally:
        release.set()
        t.join(10)
    assert result == [b"late"]


def test_crashing_check_answers_not_supported(start: Factory) -> None:
    def get(key: str) -> str:
        raise RuntimeError("boom")

    body = ask(start(get=get).port, "agent.ping")
    assert body == b"ZBX_NOTSUPPORTED\x00Cannot obtain value: RuntimeError: boom"


def test_peer_not_in_server_is_closed_and_logged(start: Factory, caplog: pytest.LogCaptureFixture) -> None:
    port = start(server=("127.0.0.2",)).port
    with caplog.at_level(logging.WARNING, logger="vigil.agent.passive"):
        assert raw(port, frame(b"agent.ping")) in (b"", b"<reset>")
        assert zabbix_get(port, "agent.ping").endswith("Check access restrictions in Zabbix agent configuration")
        # the allowed address is still served
        assert ask(port, "agent.ping", source="127.0.0.2") == b"1"
    assert any('connection from "127.0.0.1" rejected, allowed hosts: "127.0.0.2"' in r.getMessage()
               for r in caplog.records)


@pytest.mark.parametrize("server", [("127.0.0.0/8",), ("10.0.0.1", "localhost"), ("::1", "127.0.0.1")])
def test_cidr_and_hostname_entries(start: Factory, server: tuple[str, ...]) -> None:
    assert ask(start(server=server).port, "agent.ping") == b"1"


def test_peer_filter_rules() -> None:
    f = PeerFilter(["127.0.0.1", "10.1.0.0/16", "2001:db8::/32", "localhost"])
    assert f.allows("127.0.0.1") and f.allows("::ffff:127.0.0.1")
    assert f.allows("10.1.200.3") and f.allows("::ffff:10.1.2.3") and not f.allows("10.2.0.1")
    assert f.allows("2001:db8::5") and not f.allows("2001:db9::5")
    assert not f.allows("127.0.0.2") and not f.allows("not-an-ip")
    assert not PeerFilter(["no-such-host.invalid"]).allows("127.0.0.1")


def test_ipv6_listener(start: Factory) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        lst = start(server=("::1",), listen_ips=("::1",))
    except OSError:
        pytest.skip("cannot bind ::1")
    with socket.create_connection(("::1", lst.port), 5) as s:
        s.sendall(frame(b"agent.ping"))
        assert zbxd.recv_frame(s)[1] == b"1"


def test_two_listen_ips(start: Factory) -> None:
    lst = start(server=("127.0.0.0/8",), listen_ips=("127.0.0.1", "127.0.0.3"))
    for ip in ("127.0.0.1", "127.0.0.3"):
        assert zbxd.exchange(ip, lst.port, b"agent.ping") == b"1"


def test_two_listen_ips_keep_the_timeout(start: Factory) -> None:
    # the connections inherit Timeout from each listening socket
    lst = start(server=("127.0.0.0/8",), listen_ips=("127.0.0.1", "127.0.0.3"), workers=1, timeout=1.0)
    for ip in ("127.0.0.1", "127.0.0.3"):
        with socket.create_connection((ip, lst.port), 10) as slow:
            slow.sendall(b"ZBXD\x01")  # and then nothing
            assert slow.recv(100) == b""  # closed by the agent after Timeout
        assert zbxd.exchange(ip, lst.port, b"agent.ping") == b"1"


def test_stop_releases_the_port(start: Factory) -> None:
    lst = start()
    assert ask(lst.port, "agent.ping") == b"1"
    lst.stop()
    assert not lst.threads
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", lst.port), 1).close()


def test_port_in_use_raises(start: Factory, checks: Checks) -> None:
    lst = start()
    other = PassiveListener(checks.get, server=("127.0.0.1",), listen_ips=("127.0.0.1",), port=lst.port)
    with pytest.raises(OSError):
        other.start()
    assert ask(lst.port, "agent.ping") == b"1"


def test_compressed_frame_round_trip_helper() -> None:
    # guard for the test above: a compressed request really is compressed
    data = zbxd.encode(b"agent.ping", compress=True)
    assert data[4] & zbxd.FLAG_COMPRESSED and zlib.decompress(data[13:]) == b"agent.ping"
