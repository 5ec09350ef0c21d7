"""The spine end to end: the real zabbix_sender and vigil-sender into `vigil server`, on both stores."""

from __future__ import annotations

import socket
import struct
import subprocess
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import sqlalchemy as sa
from vigil.agent.protocol import zbxd
from vigil.agent.protocol.messages import ProcessedInfo, parse_response

from tests.conftest import VigilServer, drop_pg_database, new_pg_database, require, vigil_bin, wait_until

CONFIG = """
hosts:
  - host: web01
    groups: [Linux servers]
    items:
      - {key: app.requests, type: trapper, value_type: float, units: rps}
      - {key: app.count, type: trapper, value_type: unsigned}
      - {key: app.status, type: trapper, value_type: char}
      - {key: app.body, type: trapper, value_type: text}
      - {key: app.log, type: trapper, value_type: log}
      - {key: agent.only, type: agent_active, value_type: float, delay: 30s}
  - host: web02
    groups: [Linux servers]
    items:
      - {key: app.requests, type: trapper, value_type: float}
"""


def sender(server: VigilServer, *args: str, tool: str = "zabbix_sender", input: str | None = None,
           ) -> subprocess.CompletedProcess:
    program = require("zabbix_sender") if tool == "zabbix_sender" else vigil_bin("vigil-sender")
    return subprocess.run([program, "-z", "127.0.0.1", "-p", str(server.port), *args], capture_output=True,
                          text=True, input=input, timeout=60)


def processed(out: str) -> ProcessedInfo:
    line = next(x for x in out.splitlines() if x.startswith("Response from"))
    return ProcessedInfo.parse(line.split('": "', 1)[1].rstrip('"'))


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def spine_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VigilServer]:
    """One server per backend for the tests of this module; `server` empties its history between tests."""
    tmp = tmp_path_factory.mktemp(f"spine-{request.param}")
    name = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp / 'vigil.db'}"
    else:
        name, url = new_pg_database()
    s = VigilServer(tmp, url).start()
    try:
        s.import_yaml(CONFIG)
        s.wait_for_config("web01", "agent.only")
        yield s
    finally:
        s.stop()
        if name:
            drop_pg_database(name)


def _empty_history(url: str) -> None:
    from vigil.server.config.migrate import engine_for

    engine = engine_for(url)
    tables = [t for t in sa.inspect(engine).get_table_names()
              if t.startswith(("history", "trend")) and not t[-9:].startswith("_p") or t == "agent_sessions"]
    with engine.begin() as c:
        for table in tables:
            c.execute(sa.text(f"DELETE FROM {table}"))
    engine.dispose()


@pytest.fixture
def server(spine_server: VigilServer) -> VigilServer:
    _empty_history(spine_server.database_url)
    spine_server.log_mark = len(spine_server.log_text())
    return spine_server


def new_log(server: VigilServer) -> str:
    """What the server logged since the test began."""
    return server.log_text()[getattr(server, "log_mark", 0):]


TOOLS = ["zabbix_sender", "vigil-sender"]


@pytest.mark.parametrize("tool", TOOLS)
def test_single_value(server: VigilServer, tool: str) -> None:
    before = time.time()
    r = sender(server, "-s", "web01", "-k", "app.requests", "-o", "42.5", tool=tool)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f'Response from "127.0.0.1:{server.port}": "processed: 1; failed: 0; total: 1; seconds spent:' in r.stdout
    assert "sent: 1; skipped: 0; total: 1" in r.stdout
    rows = server.history("web01", "app.requests")
    assert len(rows) == 1 and float(rows[0][2]) == 42.5
    assert before - 1 <= int(rows[0][0]) <= time.time() + 1  # no clock sent: the server's receive time


@pytest.mark.parametrize("tool", TOOLS)
def test_batch_file_with_timestamps_and_ns(server: VigilServer, tool: str, tmp_path: Path) -> None:
    now = int(time.time())
    f = tmp_path / "in.txt"
    f.write_text("".join(f"web01 app.count {now - 100 + i} {i}\n" for i in range(300)))
    r = sender(server, "-T", "-i", str(f), tool=tool)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "sent: 300; skipped: 0; total: 300" in r.stdout
    assert r.stdout.count("Response from") == 2  # 250 values per connection, then 50
    rows = server.history("web01", "app.count")
    assert [int(x[2]) for x in rows] == list(range(300))
    assert [int(x[0]) for x in rows] == [now - 100 + i for i in range(300)]

    f.write_text(f'web02 app.requests {now - 5} 123456789 1.25\n"web02" "app.requests" {now - 5} 7 "2.5"\n')
    r = sender(server, "-T", "-N", "-i", str(f), tool=tool)
    assert r.returncode == 0, r.stdout + r.stderr
    assert server.history("web02", "app.requests") == [[str(now - 5), "7", "2.5"], [str(now - 5), "123456789", "1.25"]]


@pytest.mark.parametrize("tool", TOOLS)
def test_batch_file_without_timestamps_from_stdin(server: VigilServer, tool: str) -> None:
    r = sender(server, "-s", "web01", "-i", "-", tool=tool,
               input='- app.status all is well\nweb01 app.body "line one\\nline \\"two\\""\n- app.log ERROR x\n')
    assert r.returncode == 0, r.stdout + r.stderr
    assert server.history("web01", "app.status")[0][2] == "all is well"
    assert server.history("web01", "app.body")[0][2] == 'line one\\nline "two"'
    assert server.history("web01", "app.log")[0][2] == "ERROR x"


@pytest.mark.parametrize("tool", TOOLS)
def test_values_that_fail(server: VigilServer, tool: str, tmp_path: Path) -> None:
    f = tmp_path / "in.txt"
    f.write_text(
        "web01 app.requests 1.5\n"       # ok
        "nosuchhost app.requests 1\n"    # unknown host
        "web01 no.such.key 1\n"          # unknown key
        "web01 app.requests notanumber\n"  # wrong type for float
        "web01 app.count -7\n"           # wrong type for unsigned
        "web01 app.count 1.5\n"          # not an integer
        "web01 agent.only 1\n"           # not a trapper item
        "web01 app.count 18446744073709551615\n"  # ok: the largest unsigned
    )
    r = sender(server, "-i", str(f), tool=tool)
    assert r.returncode == 2, r.stdout + r.stderr
    info = processed(r.stdout)
    assert (info.processed, info.failed, info.total) == (2, 6, 8)
    assert [x[2] for x in server.history("web01", "app.requests")] == ["1.5"]
    assert [x[2] for x in server.history("web01", "app.count")] == ["18446744073709551615"]
    assert server.history("web01", "agent.only") == []


def test_odd_values_do_not_fail_their_neighbours(server: VigilServer) -> None:
    """NUL bytes, over-long strings, numbers as JSON numbers, hostile shapes: each value is judged alone."""
    data = [
        {"host": "web01", "key": "app.body", "value": "a\u0000b"},
        {"host": "web01", "key": "app.status", "value": "x" * 300},
        {"host": "web01", "key": "app.requests", "value": 7},
        {"host": "web01", "key": "app.requests", "value": "1e999"},
        {"host": "web01", "key": "app.requests", "value": "nan"},
        {"host": ["web01"], "key": "app.requests", "value": "1"},
        "not an object",
        {"host": "web01", "key": "app.count", "value": "5", "clock": -1},
        {"host": "web01", "key": "app.count", "value": "6", "clock": 1700000000, "ns": 10**10},
        {"host": "web01", "key": "app.log", "value": "line", "source": "s\u0000rc"},
    ]
    import json

    raw = raw_exchange(server.port, zbxd.encode(json.dumps({"request": "sender data", "data": data}).encode()),
                       close_write=False)
    info = ProcessedInfo.parse(parse_response(zbxd.decode(raw)[1]).info or "")
    assert (info.processed, info.failed) == (4, 6)
    assert server.history("web01", "app.body")[0][2] == "ab"
    assert server.history("web01", "app.status")[0][2] == "x" * 255
    assert server.history("web01", "app.requests")[0][2] == "7.0"
    assert server.history("web01", "app.count") == []
    assert server.history("web01", "app.log")[0][2] == "line"


def test_agent_data_meta_value_moves_the_log_position(server: VigilServer) -> None:
    """zabbix_agentd reports a log item's new position without a value when no line matched."""
    import json

    def agent_data(session: str, rows: list[dict]) -> ProcessedInfo:
        body = {"request": "agent data", "session": session, "data": rows, "clock": 1, "ns": 0}
        raw = raw_exchange(server.port, zbxd.encode(json.dumps(body).encode()), close_write=False)
        return ProcessedInfo.parse(parse_response(zbxd.decode(raw)[1]).info or "")

    server.import_yaml("hosts:\n  - host: web01\n    items:\n"
                       "      - {key: 'log[/tmp/x.log]', type: agent_active, value_type: log, delay: 5s}\n")
    server.wait_for_config("web01", "log[/tmp/x.log]")
    meta = {"host": "web01", "key": "log[/tmp/x.log]", "lastlogsize": 4096, "mtime": 0, "id": 1,
            "clock": int(time.time()) - 60, "ns": 5}
    info = agent_data("a" * 32, [meta])
    assert (info.processed, info.failed) == (1, 0)
    body = json.dumps({"request": "active checks", "host": "web01"}).encode()
    checks = json.loads(zbxd.decode(raw_exchange(server.port, zbxd.encode(body), close_write=False))[1])
    assert {"key": "log[/tmp/x.log]", "delay": 5, "lastlogsize": 4096, "mtime": 0} in checks["data"]
    assert server.history("web01", "log[/tmp/x.log]") == []
    again = agent_data("a" * 32, [meta])  # the same (session, id) once more: dropped
    assert (again.processed, again.failed) == (0, 1)


def test_sender_errors_like_zabbix_sender(server: VigilServer, tmp_path: Path) -> None:
    """Input and connection errors: same exit codes and message shapes from both tools."""
    bad = tmp_path / "bad.txt"
    bad.write_text("web01 app.requests 1\nweb01 app.requests\n")
    for tool in TOOLS:
        r = sender(server, "-i", str(bad), tool=tool)
        assert r.returncode == 1 and "[line 2] 'Key value' required" in r.stdout + r.stderr, (tool, r)
        r = sender(server, "-i", str(tmp_path / "missing.txt"), tool=tool)
        assert r.returncode == 1 and "cannot open" in r.stdout + r.stderr and "Sending failed" in r.stdout, (tool, r)
        r = subprocess.run([require("zabbix_sender") if tool == "zabbix_sender" else vigil_bin("vigil-sender"),
                            "-z", "127.0.0.1", "-p", "1", "-s", "h", "-k", "k", "-o", "1"],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 1 and "Sending failed" in r.stdout, (tool, r)
        r = sender(server, "-s", "web01", "-k", "app.requests", tool=tool)
        assert r.returncode == 1 and "too few or mutually exclusive options used" in r.stdout + r.stderr
    assert server.history("web01", "app.requests") == []  # the valid first line was not sent either


def test_vigil_sender_with_agent_config(server: VigilServer, tmp_path: Path) -> None:
    conf = tmp_path / "agent.conf"
    conf.write_text(f"# agent config\nServerActive=127.0.0.1:{server.port}\nHostname=web01\n")
    r = subprocess.run([vigil_bin("vigil-sender"), "-c", str(conf), "-k", "app.requests", "-o", "3"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    assert server.history("web01", "app.requests")[0][2] == "3.0"


# --- bad input at the protocol level -------------------------------------------------------------


def raw_exchange(port: int, data: bytes, *, close_write: bool = True, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        if close_write:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def still_serving(server: VigilServer) -> None:
    r = sender(server, "-s", "web01", "-k", "app.status", "-o", "alive")
    assert r.returncode == 0, r.stdout + r.stderr


def reply(raw: bytes) -> dict:
    _, body = zbxd.decode(raw)
    import json

    return json.loads(body)


@pytest.mark.parametrize(
    "data, expect_reply, log_words",
    [
        (b"ZBXD\x01\x10", None, "truncated header"),
        (b"ZBXD\x01" + struct.pack("<II", 500, 0) + b'{"request":"sender data"', None, "truncated body"),
        (b"GET / HTTP/1.1\r\n\r\n", None, "missing header"),
        (b"ZBXD\x01" + struct.pack("<II", 300 * 1024 * 1024, 0), "over the maximum", "over the maximum"),
        (zbxd.encode(b'{"request":"sender data","data":['), "cannot parse as a valid JSON object", "invalid JSON"),
        (zbxd.encode(b'{"request":"no such request"}'), "unknown request 'no such request'", "unknown request"),
        (zbxd.encode(b'{"request":"sender data","data":"x"}'), "must be a list", "not a list"),
        (zbxd.encode(b"[" * 5000 + b"]" * 5000), "cannot parse as a valid JSON object", "invalid JSON"),
        (b"ZBXD\x03" + struct.pack("<II", 5, 100) + b"xxxxx", None, "cannot decompress"),
    ],
    ids=["truncated-header", "lying-length", "no-header", "oversize", "bad-json", "unknown-request",
         "data-not-list", "too-deep", "bad-zlib"],
)
def test_bad_frames(server: VigilServer, data: bytes, expect_reply: str | None, log_words: str) -> None:
    out = raw_exchange(server.port, data)
    if expect_reply is None:
        assert out == b""
    else:
        r = reply(out)
        assert r["response"] == "failed" and expect_reply in r["info"], r
    wait_until(lambda: log_words in new_log(server), 5, f"the server to log {log_words!r}")
    still_serving(server)


def test_stalled_client_is_dropped_and_others_are_served(server: VigilServer) -> None:
    """A client that stops mid-frame is cut off after VIGIL_TIMEOUT; others are served meanwhile."""
    # The socket's own time-out (15 s, against the server's 3 s) is the deadline: recv raises past it.
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as s:
        s.sendall(b"ZBXD\x01" + struct.pack("<II", 100, 0) + b'{"request":')
        still_serving(server)  # served while the stalled one waits
        assert s.recv(100) == b""  # closed by the server, without a reply
    assert "sent no whole frame within" in new_log(server)


def test_compressed_and_large_frames_get_replies_in_kind(server: VigilServer) -> None:
    body = b'{"request":"sender data","data":[{"host":"web01","key":"app.requests","value":"6.5"}]}'
    for kw in ({"compress": True}, {"large": True}):
        raw = raw_exchange(server.port, zbxd.encode(body, **kw), close_write=False)
        header, out = zbxd.decode(raw)
        assert header.flags == zbxd.encode(b"", **kw)[4]
        assert ProcessedInfo.parse(parse_response(out).info or "").processed == 1
    assert len(server.history("web01", "app.requests")) == 2
    assert zlib  # compressed replies decode above through zbxd


def server_connections(server: VigilServer) -> int:
    """Connections the server process has accepted on its ingest port."""
    assert server.proc is not None
    return sum(1 for c in psutil.Process(server.proc.pid).net_connections("tcp")
               if c.laddr and c.laddr.port == server.port and c.status == psutil.CONN_ESTABLISHED)


def test_connection_bound(tmp_path: Path, database_url: str) -> None:
    """With VIGIL_MAX_CONNECTIONS=2, idle connections beyond two wait; the server stays healthy."""
    s = VigilServer(tmp_path, database_url, VIGIL_MAX_CONNECTIONS="2", VIGIL_TIMEOUT="1").start()
    try:
        s.import_yaml(CONFIG)
        s.wait_for_config("web01", "agent.only")
        idle = [socket.create_connection(("127.0.0.1", s.port)) for _ in range(5)]
        wait_until(lambda: server_connections(s) >= 2, 10, "the server to hold two of the idle connections")
        still_serving(s)  # the idle ones time out after 1 s, then this one is served
        for c in idle:
            c.close()
    finally:
        s.stop()


# --- durability ---------------------------------------------------------------------------------


def test_acknowledged_values_survive_sigkill(tmp_path: Path, database_url: str) -> None:
    """Senders push while the server is SIGKILLed; every value in an acknowledged batch is stored."""
    srv = VigilServer(tmp_path, database_url).start()
    srv.import_yaml(CONFIG)
    srv.wait_for_config("web01", "agent.only")
    acked: list[list[int]] = [[] for _ in range(4)]
    stop = threading.Event()
    base = int(time.time()) - 1000

    def push(worker: int) -> None:
        n = 0
        while not stop.is_set() and n < 400:
            values = [worker * 100000 + n * 50 + i for i in range(50)]
            body = ('{"request":"sender data","data":[' + ",".join(
                f'{{"host":"web01","key":"app.count","value":"{v}","clock":{base},"ns":{v}}}' for v in values)
                + "]}").encode()
            try:
                raw = raw_exchange(srv.port, zbxd.encode(body), close_write=False, timeout=5)
                info = ProcessedInfo.parse(parse_response(zbxd.decode(raw)[1]).info or "")
            except (OSError, zbxd.FrameError, ValueError):
                return  # the server is gone: what was not acknowledged may or may not be stored
            if info.processed == 50:
                acked[worker].extend(values)
            n += 1

    threads = [threading.Thread(target=push, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    # Killed mid-stream, once the senders have had enough acknowledged for the test to mean something.
    wait_until(lambda: sum(map(len, acked)) >= 1000, 60, "1000 acknowledged values")
    srv.kill()
    stop.set()
    for t in threads:
        t.join(30)
    all_acked = {v for a in acked for v in a}
    assert len(all_acked) > 500, "the senders did not get far enough for the test to mean anything"
    srv.start()
    try:
        stored = {int(x[2]) for x in srv.history("web01", "app.count")}
        assert all_acked <= stored, f"{len(all_acked - stored)} acknowledged values lost"
    finally:
        srv.stop()
