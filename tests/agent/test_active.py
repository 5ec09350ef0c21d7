"""Active checks against the real Vigil server, plus the failures no Vigil server produces on purpose.

Small TCP peers here stand in only for broken networks: a server that accepts and drops the
connection, one that never answers, and a relay in front of the real server that loses one reply
after the server has committed the values.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from vigil.agent.active import ActiveChecks, ActiveSettings, ActiveWorker, settings_from_config
from vigil.agent.buffer import BufferedValue, FileStore
from vigil.agent.checks import CheckContext, Checks
from vigil.agent.protocol import zbxd
from vigil.agent.protocol.messages import ActiveCheck, loads

from tests.conftest import VigilServer, wait_until

HOST = "agent-e2e"


def _settings(port: int, **kw: object) -> ActiveSettings:
    base: dict[str, object] = dict(servers=(("127.0.0.1", port),), hostnames=(HOST,), refresh_active_checks=1,
                                   buffer_send=1, timeout=2, retry_max=1)
    base.update(kw)
    return ActiveSettings(**base)  # type: ignore[arg-type]


def _checks() -> Checks:
    return Checks(CheckContext(hostname=HOST))


def _wait(cond: Callable[[], bool], timeout: float = 30, what: str = "condition") -> None:
    wait_until(cond, timeout, what, interval=0.2)


class Peer:
    """A loopback TCP server whose per-connection behaviour the test chooses."""

    def __init__(self, handle: Callable[[socket.socket, int], None]) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.handle = handle
        self.connections = 0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            n = self.connections
            threading.Thread(target=self._one, args=(conn, n), daemon=True).start()

    def _one(self, conn: socket.socket, n: int) -> None:
        with conn:
            try:
                self.handle(conn, n)
            except OSError:
                pass

    def close(self) -> None:
        self.stopped.set()
        self.sock.close()
        self.thread.join(5)


@pytest.fixture
def peer() -> Iterator[Callable[[Callable[[socket.socket, int], None]], Peer]]:
    made: list[Peer] = []

    def make(handle: Callable[[socket.socket, int], None]) -> Peer:
        p = Peer(handle)
        made.append(p)
        return p

    yield make
    for p in made:
        p.close()


def _worker(port: int, store: FileStore | None = None, **kw: object) -> ActiveWorker:
    return ActiveWorker(_settings(port, **kw), ("127.0.0.1", port), HOST, _checks(), store)


# --- pieces -----------------------------------------------------------------------------------


def test_settings_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="BufferSend"):
        _settings(1, buffer_send=0)
    with pytest.raises(ValueError, match="MaxLinesPerSecond"):
        _settings(1, max_lines_per_second=0)
    with pytest.raises(ValueError, match="BufferSize"):
        _worker(1, buffer_size=1)


def test_settings_from_agent_config(tmp_path: Path) -> None:
    from vigil.agent.conf import load

    conf = tmp_path / "agent.conf"
    conf.write_text("ServerActive=127.0.0.1:20051;127.0.0.1:20052,[::1]\nServer=127.0.0.1\nHostname=a,b\nHostMetadata=meta\n"
                    "ListenIP=127.0.0.1\nListenPort=20050\nBufferSend=2\nBufferSize=50\n"
                    "PersistentBufferFile=/tmp/x.db\nMaxLinesPerSecond=7\n")
    s = settings_from_config(load(conf))
    assert s.servers == ((("127.0.0.1", 20051), ("127.0.0.1", 20052)), (("::1", 10051),))  # `;`: one HA cluster
    assert s.hostnames == ("a", "b") and s.host_metadata == "meta"
    assert (s.listen_ip, s.listen_port) == ("127.0.0.1", 20050)
    assert (s.buffer_send, s.buffer_size, s.max_lines_per_second) == (2, 50, 7)
    assert s.persistent_buffer_file == "/tmp/x.db"
    conf.write_text("ServerActive=127.0.0.1\nHostname=a\nStartAgents=0\n")
    s = settings_from_config(load(conf))
    assert (s.listen_ip, s.listen_port, s.host_metadata) == (None, None, None)


def test_active_checks_request_carries_host_metadata_ip_port(peer: Callable[..., Peer]) -> None:
    seen: list[bytes] = []

    def handle(conn: socket.socket, n: int) -> None:
        _, body = zbxd.recv_frame(conn)
        seen.append(body)
        conn.sendall(zbxd.encode(b'{"response":"success","data":[{"key":"agent.ping","delay":5,'
                                 b'"lastlogsize":0,"mtime":0}]}'))

    p = peer(handle)
    w = _worker(p.port, host_metadata="meta", listen_ip="127.0.0.1", listen_port=20050)
    assert w.refresh(time.monotonic())
    assert loads(seen[0]) == {"request": "active checks", "host": HOST, "host_metadata": "meta",
                              "ip": "127.0.0.1", "port": 20050}
    assert list(w.items) == ["agent.ping"] and w.items["agent.ping"].delay == 5


def test_failed_active_checks_reply_is_logged_and_clears_the_list(peer: Callable[..., Peer],
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    def handle(conn: socket.socket, n: int) -> None:
        zbxd.recv_frame(conn)
        conn.sendall(zbxd.encode(b'{"response":"failed","info":"host [agent-e2e] not found"}'))

    p = peer(handle)
    w = _worker(p.port)
    w.apply([ActiveCheck("agent.ping", 5)], time.monotonic())
    assert not w.refresh(time.monotonic())
    assert w.items == {}
    assert "no active checks on server" in caplog.text and "host [agent-e2e] not found" in caplog.text


def test_schedule_spreads_start_and_keeps_it_on_refresh() -> None:
    w = _worker(1)
    now = 1000.0
    w.apply([ActiveCheck(f"agent.ping[{i}]", 10) for i in range(20)] + [ActiveCheck("agent.ping", 10)], now)
    starts = {i.nextcheck for i in w.items.values()}
    assert len(starts) > 10 and all(now <= s < now + 10 for s in starts)
    before = w.items["agent.ping"].nextcheck
    w.apply([ActiveCheck("agent.ping", 10)], now + 3)
    assert w.items["agent.ping"].nextcheck == before and len(w.items) == 1
    w.apply([ActiveCheck("agent.ping", 2)], now + 3)
    assert w.items["agent.ping"].nextcheck <= now + 5


def test_not_supported_is_sent_with_state_1_and_the_reason() -> None:
    w = _worker(1)
    w.apply([ActiveCheck("no.such.key", 5), ActiveCheck("agent.ping", 5), ActiveCheck("log[relative]", 5)], 0)
    w.run_due(100.0)
    got = {v.key: v for v in w.buffer.batch(10)}
    assert (got["no.such.key"].state, got["no.such.key"].value) == (1, "Unsupported item key.")
    assert (got["agent.ping"].state, got["agent.ping"].value) == (None, "1")
    assert got["log[relative]"].state == 1 and "absolute" in (got["log[relative]"].value or "")
    d = got["no.such.key"].to_agent_value(HOST).to_dict()
    assert d["state"] == 1 and d["value"] == "Unsupported item key."


def test_log_item_becomes_unsupported_on_third_error_in_a_row(tmp_path: Path) -> None:
    w = _worker(1)
    w.apply([ActiveCheck(f"log[{tmp_path}/missing.log]", 1)], 0)
    for t in (100.0, 101.0):
        w.run_due(t)
        assert len(w.buffer) == 0
    w.run_due(102.0)
    (v,) = w.buffer.batch(10)
    assert v.state == 1 and "missing.log" in (v.value or "") and v.is_log


def test_log_reading_waits_when_log_values_fill_half_the_buffer(tmp_path: Path) -> None:
    f = tmp_path / "app.log"
    f.write_text("".join(f"line {i}\n" for i in range(10)))
    w = _worker(1, buffer_size=8)
    key = f"log[{f}]"
    w.apply([ActiveCheck(key, 1)], 0)
    w.run_due(100.0)
    assert [v.value for v in w.buffer.batch(100)] == [f"line {i}" for i in range(4)]
    assert w.items[key].nextcheck == 101.0  # blocked: retried in a second, position after line 3
    w.buffer.ack(w.buffer.batch(100))
    w.run_due(101.0)
    assert [v.value for v in w.buffer.batch(100)] == [f"line {i}" for i in range(4, 8)]
    assert w.buffer.batch(100)[-1].lastlogsize == len("".join(f"line {i}\n" for i in range(8)))


def test_connection_dropped_keeps_values(peer: Callable[..., Peer]) -> None:
    p = peer(lambda conn, n: conn.close())
    w = _worker(p.port)
    w.apply([ActiveCheck("agent.ping", 1)], 0)
    w.run_due(100.0)
    assert not w.send()
    assert len(w.buffer) == 1 and w.send_failing


def test_stalled_server_times_out_and_keeps_values(peer: Callable[..., Peer]) -> None:
    def stall(conn: socket.socket, n: int) -> None:
        conn.recv(65536)
        time.sleep(3)

    p = peer(stall)
    w = _worker(p.port, timeout=0.5)
    w.apply([ActiveCheck("agent.ping", 1)], 0)
    w.run_due(100.0)
    assert not w.send()
    assert len(w.buffer) == 1


def test_failed_response_keeps_values(peer: Callable[..., Peer]) -> None:
    def refuse(conn: socket.socket, n: int) -> None:
        zbxd.recv_frame(conn)
        conn.sendall(zbxd.encode(b'{"response":"failed","info":"cannot parse"}'))

    p = peer(refuse)
    w = _worker(p.port)
    w.apply([ActiveCheck("agent.ping", 1)], 0)
    w.run_due(100.0)
    assert not w.send()
    assert len(w.buffer) == 1


def test_resend_after_failure_has_same_session_and_ids(peer: Callable[..., Peer]) -> None:
    bodies: list[dict[str, object]] = []

    def flaky(conn: socket.socket, n: int) -> None:
        _, body = zbxd.recv_frame(conn)
        bodies.append(json.loads(body))
        if n == 1:
            return  # reply lost
        conn.sendall(zbxd.encode(b'{"response":"success","info":"processed: 2; failed: 0; total: 2; '
                                 b'seconds spent: 0.000100"}'))

    p = peer(flaky)
    w = _worker(p.port)
    w.apply([ActiveCheck("agent.ping", 1), ActiveCheck("agent.hostname", 1)], 0)
    w.run_due(100.0)
    assert not w.send()
    w.run_due(101.0)  # more values meanwhile
    assert w.send()
    first, second = bodies
    assert first["session"] == second["session"]
    ids1 = [d["id"] for d in first["data"]]  # type: ignore[index]
    ids2 = [d["id"] for d in second["data"]]  # type: ignore[index]
    assert ids1 == [1, 2] and ids2 == [1, 2, 3, 4]
    assert len(w.buffer) == 0


# --- against the real Vigil server -------------------------------------------------------------


def _import_host(server: VigilServer, log_path: Path) -> None:
    server.import_yaml(f"""
hosts:
  - host: {HOST}
    groups: [Tests]
    items:
      - {{key: agent.ping, name: ping, type: agent_active, value_type: unsigned, delay: 1s}}
      - {{key: "log[{log_path}]", name: app log, type: agent_active, value_type: log, delay: 1s}}
      - {{key: no.such.key, name: unsupported, type: agent_active, value_type: char, delay: 1s}}
""")


def _lines(server: VigilServer, log_path: Path) -> list[str]:
    return [row[2] for row in server.history(HOST, f"log[{log_path}]")]


def _write(path: Path, start: int, n: int) -> list[str]:
    lines = [f"line {i}" for i in range(start, start + n)]
    with path.open("a") as f:
        f.write("".join(x + "\n" for x in lines))
    return lines


class Agent:
    def __init__(self, settings: ActiveSettings) -> None:
        self.stop = threading.Event()
        self.active = ActiveChecks(settings, _checks())
        self.thread = threading.Thread(target=self.active.run, args=(self.stop,), daemon=True)
        self.thread.start()

    def buffered(self, key_prefix: str = "") -> list[BufferedValue]:
        return [v for w in self.active.workers for v in w.buffer.batch(10**6) if v.key.startswith(key_prefix)]

    def settled(self, before: float) -> bool:
        """Nothing collected before `before` is still waiting: it was all acknowledged, none can come again."""
        return not [v for v in self.buffered() if v.clock < before]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def _no_duplicates(rows: list[list[str]]) -> None:
    stamps = [(r[0], r[1]) for r in rows]
    assert len(stamps) == len(set(stamps)), "a value was stored twice"


def test_values_reach_the_vigil_server_and_survive_an_outage(vigil_server_sqlite: VigilServer,
                                                               tmp_path: Path) -> None:
    server = vigil_server_sqlite
    log_path = tmp_path / "app.log"
    log_path.touch()
    _import_host(server, log_path)
    agent = Agent(_settings(server.port))
    try:
        written = _write(log_path, 0, 5)
        _wait(lambda: _lines(server, log_path) == written, what="first lines")
        _wait(lambda: len(server.history(HOST, "agent.ping")) >= 2, what="agent.ping values")
        server.stop()
        written += _write(log_path, 5, 5)
        _wait(lambda: len(agent.buffered("log[")) >= 5, what="lines collected into the buffer while the server is down")
        written += _write(log_path, 10, 5)
        restarted = time.time()
        server.start()
        _wait(lambda: len(_lines(server, log_path)) >= len(written), what="lines after the outage")
        seen_all = time.time()
        _wait(lambda: agent.settled(seen_all), what="the buffer acknowledged")  # no late duplicate can follow
        rows = server.history(HOST, f"log[{log_path}]")
        assert [r[2] for r in rows] == written
        assert all(int(r[0]) < restarted for r in rows[5:10])  # collected during the outage, sent after it
        pings = server.history(HOST, "agent.ping")
        _no_duplicates(pings)
        assert all(r[2] == "1" for r in pings)
    finally:
        agent.close()


def test_lost_reply_is_resent_and_the_server_drops_the_duplicates(vigil_server_sqlite: VigilServer,
                                                                  tmp_path: Path,
                                                                  peer: Callable[..., Peer]) -> None:
    server = vigil_server_sqlite
    log_path = tmp_path / "app.log"
    log_path.touch()
    _import_host(server, log_path)
    lost = {"n": 0}

    def relay(conn: socket.socket, n: int) -> None:
        _, body = zbxd.recv_frame(conn)
        reply = zbxd.exchange("127.0.0.1", server.port, body, timeout=5)
        if b'"agent data"' in body and b"line" in body and lost["n"] < 2:
            lost["n"] += 1
            return  # the server committed; the agent never hears about it
        conn.sendall(zbxd.encode(reply))

    p = peer(relay)
    agent = Agent(_settings(p.port))
    try:
        written = _write(log_path, 0, 3)
        _wait(lambda: lost["n"] >= 1, what="first lost reply")
        written += _write(log_path, 3, 3)
        _wait(lambda: lost["n"] >= 2, what="second lost reply")
        _wait(lambda: len(_lines(server, log_path)) >= len(written), what="all lines")
        seen_all = time.time()
        _wait(lambda: agent.settled(seen_all), what="the buffer acknowledged")  # no late duplicate can follow
        assert _lines(server, log_path) == written
        _no_duplicates(server.history(HOST, "agent.ping"))
    finally:
        agent.close()


def test_persistent_buffer_carries_values_across_an_agent_restart(vigil_server_sqlite: VigilServer,
                                                                  tmp_path: Path) -> None:
    server = vigil_server_sqlite
    log_path = tmp_path / "app.log"
    log_path.touch()
    _import_host(server, log_path)
    bufpath = tmp_path / "agent-buffer.db"
    settings = _settings(server.port, persistent_buffer_file=str(bufpath))
    agent = Agent(settings)
    try:
        written = _write(log_path, 0, 3)
        _wait(lambda: _lines(server, log_path) == written, what="first lines")
        server.stop()
        written += _write(log_path, 3, 4)

        def buffered() -> int:
            import sqlite3

            with sqlite3.connect(bufpath) as db:
                return int(db.execute("SELECT count(*) FROM value WHERE key LIKE 'log[%'").fetchone()[0])

        _wait(lambda: buffered() >= 4, what="lines in the persistent buffer")
    finally:
        agent.close()  # stops while the server is down: the final send fails, the file keeps them
    written += _write(log_path, 7, 3)  # written while the agent is down: read from the saved position
    restarted = time.time()
    server.start()
    agent = Agent(settings)
    try:
        _wait(lambda: len(_lines(server, log_path)) >= len(written), what="lines after the restart")
        seen_all = time.time()
        _wait(lambda: agent.settled(seen_all), what="the buffer acknowledged")  # no late duplicate can follow
        rows = server.history(HOST, f"log[{log_path}]")
        assert [r[2] for r in rows] == written
        # lines 3..6 come from the file buffer with their first timestamps, not re-read after the restart
        assert all(int(r[0]) < restarted for r in rows[3:7])
        assert all(int(r[0]) >= int(restarted) for r in rows[7:])
        _no_duplicates(server.history(HOST, "agent.ping"))
    finally:
        agent.close()
