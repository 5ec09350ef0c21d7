"""vigil-agent as a process against a real `vigil server`: key_orig, a restart in the middle of an
outage, a cluster whose first node is down, a corrupt buffer file and two agents on one file.

Values are followed into the agent's PersistentBufferFile (read with sqlite3 while the agent runs)
and out into the server's history, so "arrives once" is checked value by value.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from vigil.agent.protocol import zbxd

from tests.conftest import VigilServer, free_port, require, stop_process, vigil_bin, wait_until

HOST = "restart-peer"


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 40) -> None:
    wait_until(cond, timeout, what, interval=0.2)


class AgentProc:
    """vigil-agent (or zabbix_agentd) in active mode only, from a config file of its own."""

    def __init__(self, tmp: Path, server_active: str, extra: str = "", name: str = "agent",
                 kind: str = "vigil-agent") -> None:
        self.kind = kind
        self.log = tmp / f"{name}.log"
        self.err = tmp / f"{name}.out"
        self.conf = tmp / f"{name}.conf"
        self.conf.write_text(
            f"ServerActive={server_active}\nHostname={HOST}\nStartAgents=0\nRefreshActiveChecks=60\n"
            f"BufferSend=1\nLogType=file\nLogFile={self.log}\nPidFile={tmp}/{name}.pid\n" + extra
            + "AllowRoot=1\n")  # root in the tests; both agents keep it
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> AgentProc:
        cmd = [require("zabbix_agentd"), "-f"] if self.kind == "zabbix_agentd" else [vigil_bin("vigil-agent")]
        self.proc = subprocess.Popen([*cmd, "-c", str(self.conf)], stdout=self.err.open("ab"),
                                     stderr=subprocess.STDOUT)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 30)
            self.proc = None

    def text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in (self.log, self.err) if p.exists())


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Callable[..., AgentProc]]:
    made: list[AgentProc] = []

    def make(server_active: str, extra: str = "", name: str = "agent", kind: str = "vigil-agent") -> AgentProc:
        a = AgentProc(tmp_path, server_active, extra, name, kind)
        made.append(a)
        return a.start()

    yield make
    for a in made:
        a.stop()


def items_yaml(log_path: Path | None = None) -> str:
    log_item = (f'\n      - {{key: "log[{log_path}]", type: agent_active, value_type: log, delay: 1s}}'
                if log_path else "")
    return f"""
hosts:
  - host: {HOST}
    macros: {{"{{$FS}}": /}}
    items:
      - {{key: agent.ping, type: agent_active, value_type: unsigned, delay: 1s}}
      - {{key: "vfs.fs.size[{{$FS}},total]", type: agent_active, value_type: unsigned, delay: 1s}}{log_item}
"""


def import_items(server: VigilServer, log_path: Path | None = None) -> None:
    server.import_yaml(items_yaml(log_path))
    server.wait_for_config(HOST, "agent.ping")


def buffered(path: Path, key_like: str) -> list[tuple[int, int, str]]:
    """(clock, ns, value) of the values waiting in a PersistentBufferFile, oldest first."""
    if not path.exists():
        return []
    db = sqlite3.connect(path, timeout=10)
    try:
        return [(int(c), int(n), str(v)) for c, n, v in db.execute(
            "SELECT clock, ns, value FROM value WHERE key LIKE ? ORDER BY seq", (key_like,))]
    except sqlite3.OperationalError:  # the agent has not made its tables yet
        return []
    finally:
        db.close()


def stamps(server: VigilServer, key: str) -> list[tuple[int, int]]:
    return [(int(r[0]), int(r[1])) for r in server.history(HOST, key)]


def write_lines(path: Path, start: int, n: int) -> list[str]:
    lines = [f"line {i}" for i in range(start, start + n)]
    with path.open("a") as f:
        f.write("".join(x + "\n" for x in lines))
    return lines


# --- key_orig -----------------------------------------------------------------------------------


class Relay:
    """Forwards each connection's one request to the real server and keeps both bodies."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.seen: list[tuple[dict[str, object], dict[str, object]]] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.settimeout(10)
                    _, body = zbxd.recv_frame(conn)
                    reply = zbxd.exchange("127.0.0.1", self.target, body, timeout=10)
                    self.seen.append((json.loads(body), json.loads(reply)))
                    conn.sendall(zbxd.encode(reply))
                except (OSError, EOFError, zbxd.FrameError, ValueError):
                    pass

    def close(self) -> None:
        self.sock.close()
        self.thread.join(15)

    def rows(self, request: str) -> list[tuple[dict[str, object], dict[str, object]]]:
        return [(q, a) for q, a in list(self.seen) if q.get("request") == request]


@pytest.mark.parametrize("kind", ["zabbix_agentd", "vigil-agent"])
def test_macro_item_is_checked_by_key_and_reported_under_key_orig(
        vigil_server_sqlite: VigilServer, agents: Callable[..., AgentProc], kind: str) -> None:
    server = vigil_server_sqlite
    import_items(server)
    relay = Relay(server.port)
    try:
        agent = agents(f"127.0.0.1:{relay.port}", kind=kind)
        orig = "vfs.fs.size[{$FS},total]"
        wait_for(lambda: len(server.history(HOST, orig)) >= 2, f"values of {orig} from {kind}\n{agent.text()[-2000:]}")
        # Vigil's server writes the row as zabbix_server 6.0 does: key expanded, key_orig as configured
        (_, reply), *_ = relay.rows("active checks")
        rows = {r["key"]: r for r in reply["data"]}  # type: ignore[union-attr,index]
        assert rows["vfs.fs.size[/,total]"] == {"key": "vfs.fs.size[/,total]", "key_orig": orig, "delay": 1,
                                                "lastlogsize": 0, "mtime": 0}
        assert "key_orig" not in rows["agent.ping"]
        sent = [d for q, _ in relay.rows("agent data") for d in q["data"]]  # type: ignore[union-attr]
        keys = {d["key"] for d in sent}
        assert keys == {orig, "agent.ping"}  # never the expanded key
        assert all(a["response"] == "success" and "failed: 0" in str(a["info"]) for _, a in relay.rows("agent data"))
        assert int(server.history(HOST, orig)[0][2]) == shutil.disk_usage("/").total
    finally:
        relay.close()


# --- restart in the middle of an outage ------------------------------------------------------------


def test_agent_restarted_mid_outage_goes_on_collecting_and_every_value_arrives_once(
        vigil_server_sqlite: VigilServer, agents: Callable[..., AgentProc], tmp_path: Path) -> None:
    server = vigil_server_sqlite
    log_path = tmp_path / "app.log"
    log_path.touch()
    log_key = f"log[{log_path}]"
    import_items(server, log_path)
    buf = tmp_path / "buffer.db"
    extra = f"PersistentBufferFile={buf}\n"
    agent = agents(f"127.0.0.1:{server.port}", extra)
    written = write_lines(log_path, 0, 3)
    wait_for(lambda: [r[2] for r in server.history(HOST, log_key)] == written, "the first lines")

    server.stop()
    written += write_lines(log_path, 3, 4)
    wait_for(lambda: len(buffered(buf, "log[%")) >= 4, "lines held in the buffer file during the outage")
    agent.stop()  # its last send fails: the file keeps everything
    before = buffered(buf, "agent.ping")
    assert before
    written += write_lines(log_path, 7, 3)  # written while no agent runs

    restarted = time.time()
    agent.start()
    # the server is still down: the restarted agent collects from the check list it saved
    wait_for(lambda: len([v for v in buffered(buf, "agent.ping") if v[0] >= restarted]) >= 3,
             f"agent.ping collected after the restart, server still down\n{agent.text()[-2000:]}")
    wait_for(lambda: len(buffered(buf, "log[%")) >= 7, "the lines written while the agent was down")
    during = buffered(buf, "agent.ping")
    assert set(before) <= set(during)  # nothing from before the restart was lost from the file
    server_up = time.time()
    server.start()

    wait_for(lambda: set((c, n) for c, n, _ in during) <= set(stamps(server, "agent.ping")),
             "every agent.ping collected before and after the restart")
    wait_for(lambda: len(server.history(HOST, log_key)) >= len(written), "every line")
    wait_for(lambda: not [v for v in buffered(buf, "%") if v[0] < server_up], "the buffer file emptied of them")
    assert [r[2] for r in server.history(HOST, log_key)] == written  # each line once, in order
    pings = stamps(server, "agent.ping")
    assert len(pings) == len(set(pings))
    assert len([c for c, _ in pings if restarted <= c < server_up]) >= 3  # collection went on meanwhile


# --- HA cluster ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["zabbix_agentd", "vigil-agent"])
def test_server_active_cluster_with_its_first_node_down(vigil_server_sqlite: VigilServer,
                                                       agents: Callable[..., AgentProc], kind: str) -> None:
    server = vigil_server_sqlite
    import_items(server)
    agent = agents(f"127.0.0.1:{free_port()};127.0.0.1:{server.port}", kind=kind)
    wait_for(lambda: len(server.history(HOST, "agent.ping")) >= 2, f"values through the second node from {kind}\n"
             f"{agent.text()[-2000:]}")
    if kind == "vigil-agent":
        assert "now talking to node" in agent.text()


# --- the buffer file ----------------------------------------------------------------------------


def test_corrupt_buffer_file_is_moved_aside_and_the_agent_runs(vigil_server_sqlite: VigilServer,
                                                              agents: Callable[..., AgentProc],
                                                              tmp_path: Path) -> None:
    server = vigil_server_sqlite
    import_items(server)
    buf = tmp_path / "buffer.db"
    junk = b"SQLite format 3\x00" + os.urandom(3000)  # a header and then garbage: a torn file
    buf.write_bytes(junk)
    agent = agents(f"127.0.0.1:{server.port}", f"PersistentBufferFile={buf}\n")
    wait_for(lambda: len(server.history(HOST, "agent.ping")) >= 2, f"values despite the bad file\n{agent.text()}")
    (aside,) = tmp_path.glob("buffer.db.corrupt-*")
    assert aside.read_bytes() == junk
    assert "moved aside" in agent.text() and str(buf) in agent.text()


def test_second_agent_on_the_same_buffer_file_refuses_to_start(agents: Callable[..., AgentProc],
                                                               tmp_path: Path) -> None:
    buf = tmp_path / "buffer.db"
    extra = f"PersistentBufferFile={buf}\n"
    first = agents(f"127.0.0.1:{free_port()}", extra, name="first")

    def held() -> bool:
        if not buf.exists():
            return False
        fd = os.open(buf, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)  # closing drops the probe's own lock, if it got one
        return False

    wait_for(held, f"the first agent holding its buffer file\n{first.text()}")
    second = agents(f"127.0.0.1:{free_port()}", extra, name="second")
    assert second.proc is not None
    assert second.proc.wait(30) == 1
    assert "in use by another running agent" in second.text() and str(buf) in second.text()
    assert first.proc is not None and first.proc.poll() is None  # the first one is not disturbed
