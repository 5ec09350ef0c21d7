"""The ingest listener: its error paths and its bounds on memory, time and sockets per client.

Most tests run an IngestServer on an ephemeral loopback port, in an event loop on a thread of the
test, over a real ConfigRepo/ConfigCache and Batcher on SQLite. Those about the process as a whole
(its memory, its open sockets, its event loop shared by clients) run a real `vigil server`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import socket
import struct
import subprocess
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from vigil.agent.protocol import zbxd
from vigil.server.config.migrate import engine_for, upgrade
from vigil.server.config.model import doc_from_dict
from vigil.server.config.repo import ConfigRepo
from vigil.server.config.tables import ValueType
from vigil.server.ingest.batcher import Batcher
from vigil.server.ingest.cache import ConfigCache
from vigil.server.ingest.listener import IngestServer
from vigil.server.store import open_store

from tests.conftest import VigilServer, require, wait_until

CONFIG = """
hosts:
  - host: web01
    groups: [Linux servers]
    items:
      - {key: app.requests, type: trapper, value_type: float}
      - {key: app.body, type: trapper, value_type: text}
"""
MiB = 1024 * 1024
DEADLINE = 60.0

CLOCK = int(time.time()) - 3600  # recent: ingest refuses clocks older than the longest retention


def sender_body(values: list[dict[str, Any]]) -> bytes:
    return json.dumps({"request": "sender data", "data": values}, separators=(",", ":")).encode()


def tiny_values_body(n: int) -> bytes:
    """A sender data body of `n` small values: the cheapest bytes that cost the most once parsed."""
    unit = b'{"host":"web01","key":"app.requests","value":"1"}'
    return b'{"request":"sender data","data":[' + b",".join([unit] * n) + b"]}"


def exchange(port: int, raw: bytes, timeout: float = 30) -> dict[str, Any] | None:
    """Send raw bytes; the reply as JSON, or None when the server closed without one."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        try:
            _, body = zbxd.recv_frame(s)
        except EOFError:
            return None
        return json.loads(body)


def processed_one(port: int, frame: bytes) -> bool:
    reply = exchange(port, frame)
    return reply is not None and "processed: 1;" in reply.get("info", "")


class LiveIngest:
    """An IngestServer on 127.0.0.1:<ephemeral>, its event loop in a thread of the test."""

    def __init__(self, tmp: Path, **limits: Any) -> None:
        self.url = f"sqlite:///{tmp / 'vigil.db'}"
        self.engine = engine_for(self.url)
        upgrade(self.engine)
        self.repo = ConfigRepo(self.engine)
        self.repo.apply(doc_from_dict(yaml.safe_load(CONFIG)))
        self.limits = {"max_frame": 128 * MiB, "timeout": 3.0, "max_connections": 1024, **limits}
        self.batcher = Batcher(lambda: open_store(self.url), 50_000, 1)
        self.ingest: IngestServer | None = None
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="live-ingest", daemon=True)

    def start(self) -> LiveIngest:
        self._thread.start()
        if not self._ready.wait(30) or self._error is not None:
            raise RuntimeError(f"ingest did not start: {self._error!r}")
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # reported by start(), or by stop() for a late failure
            self._error = e
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.batcher.start()

        def sessions() -> dict[str, int]:
            store = open_store(self.url)
            try:
                return store.sessions()
            finally:
                store.close()

        self.ingest = IngestServer(ConfigCache(self.repo), self.repo, self.batcher, {}, sessions, **self.limits)
        listener = await self.ingest.start_server("127.0.0.1", 0)
        self.port = listener.sockets[0].getsockname()[1]
        self._ready.set()
        async with listener:
            await self._stop.wait()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)
        self.batcher.stop()
        self.engine.dispose()
        assert not self._thread.is_alive(), "the ingest loop did not stop"
        assert self._error is None, repr(self._error)

    def stored(self, key: str, value_type: ValueType) -> int:
        found = self.repo.item("web01", key)
        assert found is not None
        store = open_store(self.url)
        try:
            return len(store.history(found[0], value_type, 0, 2**31 - 1))
        finally:
            store.close()


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveIngest]:
    srv = LiveIngest(tmp_path, timeout=1.0, max_body=16 * MiB, max_values=10_000).start()
    try:
        yield srv
    finally:
        srv.stop()


def logged(caplog: pytest.LogCaptureFixture, words: str) -> bool:
    return any(words in r.getMessage() for r in caplog.records)


def assert_failed(reply: dict[str, Any] | None, words: str) -> None:
    assert reply is not None, "the server closed without a reply"
    assert reply["response"] == "failed" and words in reply["info"], reply


# --- error paths, each with its reply and its log line ----------------------------------------------


@pytest.mark.parametrize("raw, reply_words, log_words", [
    (zbxd.encode(b'{"request":"sender data","data":['), "cannot parse as a valid JSON object", "invalid JSON"),
    (zbxd.encode(b"[1, 2]"), "the body is not an object", "is not an object"),
    (zbxd.encode(b'{"request":"sender data"}'), "missing field 'data'", "field 'data' is missing"),
    (zbxd.encode(b'{"request":"agent data","data":{}}'), "field 'data' must be a list", "not a list"),
    (zbxd.encode(b'{"data":[]}'), "missing field 'request'", "unknown request None"),
    (zbxd.encode(b'{"request":"proxy data"}'), "unknown request 'proxy data'", "unknown request 'proxy data'"),
    (b"ZBXD\x01" + struct.pack("<II", 200 * MiB, 0), "frame of 209715200 bytes is over the maximum of 134217728",
     "VIGIL_MAX_FRAME_BYTES"),
    (b"ZBXD\x01" + struct.pack("<II", 17 * MiB, 0),
     "body of 17825792 bytes once decompressed is over the maximum of 16777216", "VIGIL_MAX_BODY_BYTES"),
    (b"ZBXD\x03" + struct.pack("<II", 100, 17 * MiB) + b"x" * 100,
     "body of 17825792 bytes once decompressed is over the maximum of 16777216", "VIGIL_MAX_BODY_BYTES"),
    # A big compressed body goes through the decoding threads; its JSON errors are still named.
    (zbxd.encode(b'{"request":"sender data","data":[' + b" " * MiB, compress=True),
     "cannot parse as a valid JSON object", "invalid JSON"),
], ids=["bad-json", "not-an-object", "missing-data", "data-not-list", "missing-request", "unknown-request",
        "frame-over-max", "body-over-max", "compressed-body-over-max", "big-compressed-bad-json"])
def test_bad_requests_get_a_failed_reply_naming_the_problem(
        live: LiveIngest, caplog: pytest.LogCaptureFixture, raw: bytes, reply_words: str, log_words: str) -> None:
    caplog.set_level(logging.INFO, logger="vigil.ingest")
    assert_failed(exchange(live.port, raw), reply_words)
    wait_until(lambda: logged(caplog, log_words), DEADLINE, f"log line with {log_words!r}")
    assert live.stored("app.requests", ValueType.FLOAT) == 0


@pytest.mark.parametrize("raw, log_words", [
    (b"ZBXD\x01\x10", "truncated header: 6 of 13 bytes"),
    (b"ZBXD", "truncated header: 4 of at least 13 bytes"),
    (b"ZBXD\x01" + struct.pack("<II", 500, 0) + b'{"request":', "truncated body: 11 of 500 bytes"),
    (b"HTTP/1.1 200 OK\r\n\r\n", "missing header"),
    (b"ZBXD\x09" + struct.pack("<II", 2, 0) + b"{}", "unknown protocol flags 0x09"),
    (b"ZBXD\x03" + struct.pack("<II", 5, 100) + b"xxxxx", "cannot decompress"),
    # The header says 10 bytes, the stream inflates to more: inflation stops at 11 and refuses it.
    (b"ZBXD\x03" + struct.pack("<II", len(zlib.compress(b"{}" * 10_000)), 10) + zlib.compress(b"{}" * 10_000),
     "does not match its stated size 10 (got 11)"),
    # Likewise for a body big enough for the decoding threads.
    (b"ZBXD\x03" + struct.pack("<II", len(zlib.compress(b" " * 2 * MiB)), MiB) + zlib.compress(b" " * 2 * MiB),
     f"does not match its stated size {MiB} (got {MiB + 1})"),
], ids=["truncated-header", "short-header", "truncated-body", "no-header", "unknown-flags", "bad-zlib",
        "lying-compressed-size", "lying-compressed-size-big"])
def test_unreadable_frames_close_the_connection_with_a_log_line(
        live: LiveIngest, caplog: pytest.LogCaptureFixture, raw: bytes, log_words: str) -> None:
    caplog.set_level(logging.INFO, logger="vigil.ingest")
    with socket.create_connection(("127.0.0.1", live.port), timeout=30) as s:
        s.sendall(raw)
        s.shutdown(socket.SHUT_WR)
        assert s.recv(100) == b""
    wait_until(lambda: logged(caplog, log_words), DEADLINE, f"log line with {log_words!r}")
    assert exchange(live.port, zbxd.encode(sender_body([{"host": "web01", "key": "app.requests", "value": "1"}]))
                    )["response"] == "success"  # type: ignore[index]


def test_a_client_that_sends_no_whole_frame_is_dropped_after_the_timeout(
        live: LiveIngest, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="vigil.ingest")
    with socket.create_connection(("127.0.0.1", live.port), timeout=30) as idle, \
            socket.create_connection(("127.0.0.1", live.port), timeout=30) as partial:
        partial.sendall(b"ZBXD\x01" + struct.pack("<II", 100, 0) + b'{"request":')
        assert idle.recv(100) == b"" and partial.recv(100) == b""
    wait_until(lambda: sum("sent no whole frame within 1 s" in r.getMessage() for r in caplog.records) == 2,
               DEADLINE, "two time-out log lines")
    assert live.ingest is not None and live.ingest.stats["refused"] == 2


def test_big_bodies_are_decoded_off_the_loop_and_stored(live: LiveIngest) -> None:
    """Bodies over 64 KiB, plain and compressed, go through the decoding threads and are stored whole."""
    text = "x" * 1000
    for compress in (False, True):
        values = [{"host": "web01", "key": "app.body", "value": text, "clock": CLOCK, "ns": i}
                  for i in range(2000)]
        reply = exchange(live.port, zbxd.encode(sender_body(values), compress=compress))
        assert reply is not None and reply["response"] == "success", reply
        assert "processed: 2000; failed: 0; total: 2000" in reply["info"]
    assert live.stored("app.body", ValueType.TEXT) == 4000


# --- bounds per request -------------------------------------------------------------------------------


def agent_body(values: list[dict[str, Any]]) -> bytes:
    data = [dict(v, id=i + 1) for i, v in enumerate(values)]
    return json.dumps({"request": "agent data", "session": "s1", "data": data}).encode()


@pytest.mark.parametrize("build", [
    lambda vs: zbxd.encode(sender_body(vs)),
    lambda vs: zbxd.encode(sender_body(vs), compress=True),
    lambda vs: zbxd.encode(agent_body(vs)),
], ids=["sender", "sender-compressed", "agent"])
def test_a_request_over_the_value_limit_is_refused_whole(live: LiveIngest, build: Callable[[list], bytes]) -> None:
    values = [{"host": "web01", "key": "app.requests", "value": str(i), "clock": CLOCK, "ns": i}
              for i in range(10_001)]
    assert_failed(exchange(live.port, build(values)), "over the maximum of 10000; none were stored")
    assert live.stored("app.requests", ValueType.FLOAT) == 0
    reply = exchange(live.port, zbxd.encode(sender_body(values[:10_000])))
    assert reply is not None and "processed: 10000; failed: 0" in reply["info"], reply
    assert live.stored("app.requests", ValueType.FLOAT) == 10_000


def test_the_value_limit_also_holds_for_small_bodies(tmp_path: Path) -> None:
    srv = LiveIngest(tmp_path, max_values=3).start()
    try:
        values = [{"host": "web01", "key": "app.requests", "value": "1"}] * 4
        assert_failed(exchange(srv.port, zbxd.encode(sender_body(values))),
                      "request of 4 values is over the maximum of 3; none were stored")
        reply = exchange(srv.port, zbxd.encode(sender_body(values[:3])))
        assert reply is not None and "processed: 3;" in reply["info"], reply
    finally:
        srv.stop()


def test_a_body_of_many_small_values_is_counted_before_it_is_parsed(live: LiveIngest) -> None:
    """15 MiB of tiny values (~330,000) would cost ~16x that parsed: refused by counting first."""
    body = tiny_values_body(320_000)
    assert 15 * MiB < len(body) < 16 * MiB
    assert_failed(exchange(live.port, zbxd.encode(body)), "more than 10000 values is over the maximum of 10000")
    # Braces inside strings are not values: 2,000 values whose text is full of them are fine.
    values = [{"host": "web01", "key": "app.body", "value": "{}" * 200} for _ in range(2000)]
    reply = exchange(live.port, zbxd.encode(sender_body(values)))
    assert reply is not None and "processed: 2000; failed: 0" in reply["info"], reply



def test_a_proxy_data_body_is_counted_against_a_full_proxy_batch_not_skipped(live: LiveIngest) -> None:
    """A proxy's batch may hold 10,000 records in each of five sections, so it is counted against that
    (PROXY_MAX_OBJECTS), not VIGIL_MAX_REQUEST_VALUES; but it is counted: a "proxy data" flood is refused
    before it is parsed, as a sender's is."""
    from vigil.server.ingest.listener import PROXY_MAX_OBJECTS

    unit = b'{"itemid":1,"clock":1,"ns":0,"value":"1","id":1}'
    flood = (b'{"request":"proxy data","host":"px","session":"' + b"0" * 32 + b'","history data":['
             + b",".join([unit] * (PROXY_MAX_OBJECTS + 1)) + b"]}")
    assert_failed(exchange(live.port, zbxd.encode(flood)),
                  f"more than {PROXY_MAX_OBJECTS} values is over the maximum of {PROXY_MAX_OBJECTS}")

# --- the process as a whole: memory, sockets, a shared event loop -----------------------------------------


def peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc/PID/status")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[VigilServer]:
    s = VigilServer(tmp_path, f"sqlite:///{tmp_path / 'vigil.db'}").start()  # VIGIL_TIMEOUT 3 s
    try:
        s.import_yaml(CONFIG)
        probe = zbxd.encode(sender_body([{"host": "web01", "key": "app.requests", "value": "0"}]))
        wait_until(lambda: processed_one(s.port, probe), DEADLINE, "configuration loaded")
        yield s
    finally:
        s.stop()


def test_a_zip_bomb_is_refused_without_inflating_it(server: VigilServer) -> None:
    """A 47 KiB compressed frame that inflates past 16 MiB, and a 15 MiB body of tiny values: refused,
    and the server's peak memory does not move (parsed, either would cost hundreds of MiB)."""
    assert server.proc is not None
    bomb = tiny_values_body(340_000)
    frame = zbxd.encode(bomb, compress=True)
    assert len(frame) < 50 * 1024 and len(bomb) > 16 * MiB
    before = peak_rss(server.proc.pid)
    assert_failed(exchange(server.port, frame), "once decompressed is over the maximum of 16777216")
    assert_failed(exchange(server.port, zbxd.encode(tiny_values_body(320_000), compress=True)),
                  "more than 10000 values is over the maximum of 10000")
    grown = peak_rss(server.proc.pid) - before
    assert grown < 48 * MiB, f"peak RSS grew by {grown / MiB:.0f} MiB"
    assert "over the maximum" in server.log_text()


def server_sockets(pid: int, port: int) -> int:
    """Connections the server process holds open on its listening port (accepted ones only)."""
    return sum(1 for c in psutil.Process(pid).net_connections("tcp")
               if c.laddr and c.laddr.port == port and c.status != psutil.CONN_LISTEN)


def test_max_connections_limits_open_sockets(tmp_path: Path) -> None:
    """1,500 idle connections against VIGIL_MAX_CONNECTIONS=1024: never more than 1,024 open in the
    server, the rest wait in the kernel; once the flood goes a normal sender is served."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    s = VigilServer(tmp_path, f"sqlite:///{tmp_path / 'vigil.db'}", VIGIL_TIMEOUT="2",
                    VIGIL_MAX_CONNECTIONS="1024").start()
    flood: list[socket.socket] = []
    try:
        assert s.proc is not None
        s.import_yaml(CONFIG)
        for _ in range(1500):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", s.port))
            flood.append(c)
        counts = []

        def full() -> bool:
            counts.append(server_sockets(s.proc.pid, s.port))  # type: ignore[union-attr]
            return counts[-1] >= 1024

        wait_until(full, DEADLINE, "1,024 connections open in the server")
        for _ in range(20):  # held there while the idle ones time out and queued ones take their place
            counts.append(server_sockets(s.proc.pid, s.port))
        assert max(counts) <= 1024, max(counts)
        wait_until(lambda: "accepting no more until one closes" in s.log_text(), DEADLINE, "the limit logged")
        for c in flood:
            c.close()
        flood.clear()
        probe = zbxd.encode(sender_body([{"host": "web01", "key": "app.requests", "value": "1"}]))
        wait_until(lambda: processed_one(s.port, probe), DEADLINE, "a normal sender served")
        assert s.log_text().count("accepting no more until one closes") == 1  # rate-limited
    finally:
        for c in flood:
            c.close()
        s.stop()


def small_request_during(server: VigilServer, big: bytes) -> dict[str, Any] | None:
    """A small client starts its frame, `big` is sent, the small one finishes: its reply, and big's."""
    assert server.proc is not None
    proc = psutil.Process(server.proc.pid)
    small = zbxd.encode(sender_body([{"host": "web01", "key": "app.requests", "value": "2"}]))
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(small[:20])
        mine = s.getsockname()[1]
        wait_until(lambda: any(c.raddr and c.raddr.port == mine for c in proc.net_connections("tcp")),
                   DEADLINE, "small client accepted")
        replies: list[dict[str, Any] | None] = []
        before = proc.memory_info().rss
        t = threading.Thread(target=lambda: replies.append(exchange(server.port, big)))
        t.start()
        # Go on once the server is busy with the big one (its memory grows) or done with it.
        wait_until(lambda: replies or proc.memory_info().rss > before + 8 * MiB, DEADLINE, "big frame taken up")
        s.sendall(small[20:])
        try:
            _, body = zbxd.recv_frame(s)
        except EOFError:
            raise AssertionError("the small client was dropped while the server dealt with the big one") from None
        assert "processed: 1;" in json.loads(body)["info"]
        t.join(120)
        assert replies, "no answer to the big frame"
        return replies[0]


def test_a_big_client_does_not_stall_a_small_one(server: VigilServer) -> None:
    """A small client mid-frame while the server deals with a big one still gets its reply in time
    (VIGIL_TIMEOUT, 3 s). Big: a compressed frame announcing 120 MiB, which the server used to inflate
    and parse on its event loop for ~10 s; then a 10 MB plain one, parsed off the loop and stored."""
    assert_failed(small_request_during(server, zbxd.encode(tiny_values_body(2_500_000), compress=True)),
                  "once decompressed is over the maximum")
    values = [{"host": "web01", "key": "app.body", "value": "y" * 1000, "clock": CLOCK, "ns": i}
              for i in range(10_000)]
    reply = small_request_during(server, zbxd.encode(sender_body(values)))
    assert reply is not None and "processed: 10000; failed: 0" in reply["info"], reply
    assert "sent no whole frame" not in server.log_text()


def test_accepting_keeps_up_with_many_short_connections(live: LiveIngest) -> None:
    """The accept loop serves connections one after another from several clients, and counts them."""
    body = zbxd.encode(sender_body([{"host": "web01", "key": "app.requests", "value": "3"}]))
    errors: list[BaseException] = []

    def client() -> None:
        try:
            for _ in range(100):
                reply = exchange(live.port, body)
                assert reply is not None and reply["response"] == "success"
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[0]
    assert live.ingest is not None
    wait_until(lambda: live.ingest.open_connections == 0, DEADLINE, "every connection closed")  # type: ignore[union-attr]
    assert live.ingest.stats["requests"] == 400


def test_out_of_file_descriptors_the_listener_retries(live: LiveIngest, caplog: pytest.LogCaptureFixture) -> None:
    """Accept failing with EMFILE leaves the connections in the backlog: logged once, accepted later, none lost."""
    body = zbxd.encode(sender_body([{"host": "web01", "key": "app.requests", "value": "4"}]))
    clients = [socket.socket() for _ in range(20)]  # their descriptors first: the limit is for the server
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        with caplog.at_level(logging.WARNING, logger="vigil.ingest"):
            resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 1, hard))
            for c in clients:
                c.settimeout(30)
                c.connect(("127.0.0.1", live.port))  # completed by the kernel: the backlog holds them
                c.sendall(body)
            wait_until(lambda: logged(caplog, "cannot accept a connection"), DEADLINE, "EMFILE logged")
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
            for c in clients:
                _, reply = zbxd.recv_frame(c)
                assert "processed: 1; failed: 0" in json.loads(reply)["info"]
        assert sum("cannot accept a connection" in r.getMessage() for r in caplog.records) == 1  # rate-limited
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        for c in clients:
            c.close()


def test_zabbix_senders_fullest_batch_fits_the_body_limit(live: LiveIngest, tmp_path: Path) -> None:
    """The real zabbix_sender sends at most 250 values a connection: 250 at Zabbix's 65,535-byte text
    limit, with timestamps, are under VIGIL_MAX_BODY_BYTES's default and stored whole."""
    lines = [f"web01 app.body {CLOCK + i} {chr(97 + i % 26) * 65_535}" for i in range(250)]
    (tmp_path / "values.txt").write_text("\n".join(lines) + "\n")
    r = subprocess.run([require("zabbix_sender"), "-z", "127.0.0.1", "-p", str(live.port), "-T", "-i",
                        str(tmp_path / "values.txt")], capture_output=True, text=True, timeout=120)
    assert "processed: 250; failed: 0; total: 250" in r.stdout, r.stdout + r.stderr
    assert live.stored("app.body", ValueType.TEXT) == 250


def test_a_connection_limit_over_the_file_limit_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="vigil.ingest")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1000, hard))
    try:
        srv = LiveIngest(tmp_path, max_connections=1024).start()
        srv.stop()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert logged(caplog, "VIGIL_MAX_CONNECTIONS is 1024 but this process may open only 1000 files")


def test_active_checks_while_the_database_is_away_get_a_failed_reply(tmp_path: Path,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    """The check list comes from the cached configuration, its log positions from the database: when that
    is unreachable the agent hears `failed` (and keeps its last list) instead of a dropped connection."""
    doc = CONFIG + "      - {key: 'log[/var/log/app.log]', type: agent_active, value_type: log}\n"
    srv = LiveIngest(tmp_path)
    srv.repo.apply(doc_from_dict(yaml.safe_load(doc)))
    srv.start()
    try:
        request = zbxd.encode(b'{"request":"active checks","host":"web01"}')
        reply = exchange(srv.port, request)
        assert reply is not None and reply["response"] == "success", reply
        # The same repository, its database now unreachable: nothing listens on port 1.
        srv.repo.engine = engine_for("postgresql://postgres@127.0.0.1:1/vigil")
        with caplog.at_level(logging.WARNING, "vigil.ingest"):
            assert_failed(exchange(srv.port, request), "database is not available")
        assert logged(caplog, "cannot read log positions")
    finally:
        srv.engine.dispose()
        srv.stop()


@pytest.mark.parametrize("info", [(250, 0, 250, 0.000123), (0, 10_000, 10_000, 2.5), (7, 3, 10, 123456.0)])
def test_the_success_reply_is_what_messages_success_makes(info: tuple[int, int, int, float]) -> None:
    from vigil.agent.protocol.messages import ProcessedInfo, success
    from vigil.server.ingest.listener import success_reply

    assert success_reply(ProcessedInfo(*info)) == success(ProcessedInfo(*info))
