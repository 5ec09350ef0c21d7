"""Active checks that keep going: key_orig, bad rows, fast retries, HA clusters, the saved check list.

The Zabbix 6.0 facts these follow (zabbix_agentd's and zabbix_server's active-check code): the server
sends `key` with its macros expanded and adds `key_orig` only when that differs; the agent evaluates
`key`, reports under `key_orig` and skips a row with a missing tag while running the rest.
`ServerActive=a;b` is one cluster whose nodes are tried in turn.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from vigil.agent.active import ActiveChecks, ActiveSettings, ActiveWorker, run_active
from vigil.agent.buffer import FileStore
from vigil.agent.checks import CheckContext, Checks
from vigil.agent.conf import parse_server_active, parse_server_active_clusters
from vigil.agent.protocol import zbxd
from vigil.agent.protocol.messages import ActiveCheck, ActiveChecksResponse, parse_active_checks_response

from tests.agent.test_active import Peer
from tests.conftest import VigilServer, free_port, wait_until

HOST = "agent-restart"
OK = b'{"response":"success","info":"processed: 1; failed: 0; total: 1; seconds spent: 0.000100"}'


def _settings(servers: object, **kw: object) -> ActiveSettings:
    base: dict[str, object] = dict(servers=servers, hostnames=(HOST,), refresh_active_checks=60,
                                   buffer_send=1, timeout=2, retry_max=2)
    base.update(kw)
    return ActiveSettings(**base)  # type: ignore[arg-type]


def _checks() -> Checks:
    return Checks(CheckContext(hostname=HOST))


def _wait(cond: Callable[[], bool], what: str, timeout: float = 30) -> None:
    wait_until(cond, timeout, what, interval=0.1)


def _serve_list(rows: bytes, bodies: list[dict[str, object]] | None = None) -> Callable[[socket.socket, int], None]:
    """A peer answering `active checks` with `rows` and `agent data` with success, keeping what it got."""

    def handle(conn: socket.socket, n: int) -> None:
        _, body = zbxd.recv_frame(conn)
        msg = json.loads(body)
        if bodies is not None:
            bodies.append(msg)
        if msg["request"] == "active checks":
            conn.sendall(zbxd.encode(b'{"response":"success","data":' + rows + b"}"))
        else:
            conn.sendall(zbxd.encode(OK))

    return handle


@pytest.fixture
def peers() -> Iterator[Callable[[Callable[[socket.socket, int], None]], Peer]]:
    made: list[Peer] = []

    def make(handle: Callable[[socket.socket, int], None]) -> Peer:
        made.append(Peer(handle))
        return made[-1]

    yield make
    for p in made:
        p.close()


PING_HOST = (f"hosts: [{{host: {HOST}, items: [{{key: agent.ping, type: agent_active, value_type: unsigned, "
             "delay: 1s}]}]")


class Agent:
    def __init__(self, settings: ActiveSettings) -> None:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=run_active, args=(settings, _checks(), self.stop), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


@pytest.fixture
def agents() -> Iterator[Callable[[ActiveSettings], Agent]]:
    made: list[Agent] = []

    def make(settings: ActiveSettings) -> Agent:
        a = Agent(settings)
        made.append(a)
        return a

    yield make
    for a in made:
        a.close()


# --- key_orig ---------------------------------------------------------------------------------

ROWS_6_0 = (b'[{"key":"vfs.fs.size[/,total]","key_orig":"vfs.fs.size[{$FS},total]","delay":1,"lastlogsize":0,'
            b'"mtime":0},{"key":"agent.ping","delay":1,"lastlogsize":0,"mtime":0}]')


def test_key_orig_is_parsed_and_defaults_to_key() -> None:
    reply = parse_active_checks_response(b'{"response":"success","data":' + ROWS_6_0 + b"}")
    assert isinstance(reply, ActiveChecksResponse)
    fs, ping = reply.data
    assert (fs.key, fs.key_orig) == ("vfs.fs.size[/,total]", "vfs.fs.size[{$FS},total]")
    assert (ping.key, ping.key_orig) == ("agent.ping", "agent.ping")
    # written back as the server writes it: key_orig only where it differs
    assert fs.to_dict() == {"key": "vfs.fs.size[/,total]", "key_orig": "vfs.fs.size[{$FS},total]", "delay": 1,
                            "lastlogsize": 0, "mtime": 0}
    assert "key_orig" not in ping.to_dict()


def test_key_is_evaluated_and_the_value_reported_under_key_orig(peers: Callable[..., Peer]) -> None:
    bodies: list[dict[str, object]] = []
    p = peers(_serve_list(ROWS_6_0, bodies))
    w = ActiveWorker(_settings((("127.0.0.1", p.port),)), ("127.0.0.1", p.port), HOST, _checks())
    assert w.refresh(time.monotonic())
    assert set(w.items) == {"vfs.fs.size[{$FS},total]", "agent.ping"}
    w.run_due(time.monotonic() + 10)
    assert w.send()
    sent = {d["key"]: d["value"] for d in bodies[-1]["data"]}  # type: ignore[union-attr]
    assert sent == {"vfs.fs.size[{$FS},total]": str(shutil.disk_usage("/").total), "agent.ping": "1"}


def test_changed_macro_value_makes_a_new_item_with_the_same_key_orig(tmp_path: Path) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_text("old\n")
    b.write_text("first\n")
    w = ActiveWorker(_settings((("127.0.0.1", 1),)), ("127.0.0.1", 1), HOST, _checks())
    orig = "log[{$LOG}]"
    w.apply([ActiveCheck(f"log[{a}]", 1, key_orig=orig)], 0)
    item = w.items[orig]
    w.apply([ActiveCheck(f"log[{a}]", 1, key_orig=orig)], 1)
    assert w.items[orig] is item  # same list: same item, schedule and position kept
    w.apply([ActiveCheck(f"log[{b}]", 1, lastlogsize=0, key_orig=orig)], 2)
    assert w.items[orig] is not item and w.items[orig].key == f"log[{b}]"
    w.run_due(100.0)
    (v,) = w.buffer.batch(10)
    assert (v.key, v.value) == (orig, "first")


# --- bad rows -----------------------------------------------------------------------------------

BAD_ROWS = (b'[{"key":"agent.ping","delay":"1m","lastlogsize":0,"mtime":0},'
            b'{"delay":5,"lastlogsize":0,"mtime":0},'
            b'"not an object",'
            b'{"key":"agent.version","delay":5,"lastlogsize":"lots","mtime":0},'
            b'{"key":"agent.hostname","delay":1,"lastlogsize":0,"mtime":0},'
            b'{"key":"system.uname","delay":"30","lastlogsize":"0","mtime":"0"}]')


def test_malformed_rows_are_skipped_with_a_log_line_and_the_rest_run(peers: Callable[..., Peer],
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    p = peers(_serve_list(BAD_ROWS))
    w = ActiveWorker(_settings((("127.0.0.1", p.port),)), ("127.0.0.1", p.port), HOST, _checks())
    assert w.refresh(time.monotonic())
    assert set(w.items) == {"agent.hostname", "system.uname"} and w.items["system.uname"].delay == 30
    text = caplog.text
    assert "data[0]: field 'delay' must be a number of seconds, got '1m' (key 'agent.ping')" in text
    assert "data[1]: missing field 'key'" in text and "data[2]: must be an object" in text
    assert "data[3]: field 'lastlogsize'" in text
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "row skipped" in r.getMessage()]
    assert len(warnings) == 4
    assert w.refresh(time.monotonic())  # the same list again: not logged as warnings a second time
    assert len([r for r in caplog.records if r.levelname == "WARNING" and "row skipped" in r.getMessage()]) == 4
    w.run_due(time.monotonic() + 60)
    assert {v.key for v in w.buffer.batch(10)} == {"agent.hostname", "system.uname"}


# --- retries ------------------------------------------------------------------------------------


def test_failed_connection_is_retried_within_seconds_backing_off_to_retry_max() -> None:
    closed = free_port()
    w = ActiveWorker(_settings((("127.0.0.1", closed),), retry_max=8), ("127.0.0.1", closed), HOST, _checks())
    waits = []
    now = 1000.0
    for _ in range(6):
        assert not w.refresh(now)
        waits.append(w.next_refresh - now)
        now = w.next_refresh
    assert waits == [1, 2, 4, 8, 8, 8]


def test_agent_started_before_its_server_gets_checks_soon_after_it_comes_up(
        vigil_server_sqlite: VigilServer, agents: Callable[[ActiveSettings], Agent],
        caplog: pytest.LogCaptureFixture) -> None:
    server = vigil_server_sqlite
    server.import_yaml(PING_HOST)
    server.stop()
    agents(_settings((("127.0.0.1", server.port),), retry_max=2))
    _wait(lambda: "configuration update from" in caplog.text and "started to fail" in caplog.text,
          "the agent's first failed refresh")
    server.start()
    # zabbix_agentd (and vigil-agent before this) waits 60 s after a failed refresh
    _wait(lambda: len(server.history(HOST, "agent.ping")) >= 1, "a value soon after the server came up", 20)


# --- HA clusters --------------------------------------------------------------------------------


def test_server_active_clusters_parse_like_zabbix_6_0() -> None:
    assert parse_server_active_clusters("a;b:20051,[::1]:3;c") == (
        (("a", 10051), ("b", 20051)), (("::1", 3), ("c", 10051)))
    assert parse_server_active("a;b,c") == (("a", 10051), ("b", 10051), ("c", 10051))
    with pytest.raises(ValueError, match="empty entry"):
        parse_server_active_clusters("a;;b")
    with pytest.raises(ValueError, match="listed twice"):
        parse_server_active_clusters("a;b,b")


def test_worker_moves_to_the_next_node_when_one_fails(peers: Callable[..., Peer],
                                                     caplog: pytest.LogCaptureFixture) -> None:
    closed = free_port()
    p = peers(_serve_list(b'[{"key":"agent.ping","delay":1,"lastlogsize":0,"mtime":0}]'))
    cluster = (("127.0.0.1", closed), ("127.0.0.1", p.port))
    w = ActiveWorker(_settings((cluster,)), cluster, HOST, _checks())
    assert w.name == f"127.0.0.1:{closed};127.0.0.1:{p.port}"
    assert w.refresh(time.monotonic()) and list(w.items) == ["agent.ping"]
    assert w.server == ("127.0.0.1", p.port) and "now talking to node" in caplog.text
    w.run_due(time.monotonic() + 5)
    assert w.send() and len(w.buffer) == 0
    assert p.connections == 2  # the node that answers stays in use: no second try of the closed one


def test_cluster_fails_over_between_two_vigil_servers_on_one_store(
        tmp_path: Path, agents: Callable[[ActiveSettings], Agent]) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = VigilServer(tmp_path / "a", url), VigilServer(tmp_path / "b", url)
    second.cli("db", "upgrade")
    second.import_yaml(PING_HOST)  # before the start: the server's first look at its store finds the host
    second.start()
    try:
        # the first node is down (as a 6.0 standby node, it does not answer): the agent uses the second
        agents(_settings(((("127.0.0.1", first.port), ("127.0.0.1", second.port)),)))
        _wait(lambda: len(second.history(HOST, "agent.ping")) >= 2, "values through the second node")
        second.stop()
        n = len(first.history(HOST, "agent.ping"))
        first.start()
        _wait(lambda: len(first.history(HOST, "agent.ping")) >= n + 2, "values through the first node")
    finally:
        first.stop()
        second.stop()


# --- the saved check list -------------------------------------------------------------------------


def test_saved_check_list_runs_at_once_when_the_server_is_down(tmp_path: Path) -> None:
    closed = free_port()
    path = str(tmp_path / "buf.db")
    s = _settings((("127.0.0.1", closed),), persistent_buffer_file=path)
    store = FileStore(path)
    target = f"{HOST}@127.0.0.1:{closed}"
    store.save_checks(target, [ActiveCheck("agent.ping", 1), ActiveCheck("vfs.fs.size[/,total]", 1,
                                                                          key_orig="vfs.fs.size[{$FS},total]")])
    store.close()
    active = ActiveChecks(s, _checks())
    try:
        (w,) = active.workers
        assert set(w.items) == {"agent.ping", "vfs.fs.size[{$FS},total]"}
        assert not w.refresh(time.monotonic())  # the server is down: the list stays
        w.run_due(time.monotonic() + 10)
        assert {v.key for v in w.buffer.batch(10)} == {"agent.ping", "vfs.fs.size[{$FS},total]"}
    finally:
        active.close()


def test_check_list_from_the_server_is_saved(peers: Callable[..., Peer], tmp_path: Path) -> None:
    p = peers(_serve_list(ROWS_6_0))
    path = str(tmp_path / "buf.db")
    active = ActiveChecks(_settings((("127.0.0.1", p.port),), persistent_buffer_file=path), _checks())
    try:
        (w,) = active.workers
        assert w.refresh(time.monotonic())
    finally:
        active.close()
    store = FileStore(path)
    try:
        saved = store.load_checks(f"{HOST}@127.0.0.1:{p.port}")
        assert saved is not None and [c.key_orig for c in saved] == ["vfs.fs.size[{$FS},total]", "agent.ping"]
    finally:
        store.close()


def test_second_active_checks_on_one_buffer_file_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "buf.db")
    s = _settings((("127.0.0.1", free_port()),), persistent_buffer_file=path)
    first = ActiveChecks(s, _checks())
    try:
        with pytest.raises(ValueError, match="in use by another running agent"):
            ActiveChecks(s, _checks())
    finally:
        first.close()


def test_a_server_that_hangs_does_not_hold_up_collection(peers: Callable[..., Peer], tmp_path: Path) -> None:
    release = threading.Event()
    held = threading.Event()

    def hang(conn: socket.socket, n: int) -> None:
        zbxd.recv_frame(conn)
        held.set()
        release.wait(60)  # accepts, reads, never answers (until the test is over)

    p = peers(hang)
    path = str(tmp_path / "buf.db")
    store = FileStore(path)
    store.save_checks(f"{HOST}@127.0.0.1:{p.port}", [ActiveCheck("agent.ping", 1)])
    store.close()
    active = ActiveChecks(_settings((("127.0.0.1", p.port),), persistent_buffer_file=path, timeout=60), _checks())
    stop = threading.Event()
    runner = threading.Thread(target=active.run, args=(stop,), daemon=True)
    runner.start()
    try:
        _wait(held.is_set, "the check list request, left hanging")
        (w,) = active.workers
        _wait(lambda: len(w.buffer) >= 3, "values collected while the request hangs", 20)
        assert held.is_set() and not release.is_set()
    finally:
        release.set()
        stop.set()
        runner.join(30)
    assert not runner.is_alive()
