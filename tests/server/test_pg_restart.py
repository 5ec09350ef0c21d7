"""`vigil server` survives its PostgreSQL: restarted (`pg_ctl restart -m fast`) and stopped for a
while, under the real zabbix_sender and zabbix_agentd pushing all along.

The cluster is the test's own (initdb + pg_ctl on a free port), never the shared one. What must hold:
no `success` for values that are not stored (a reply during the outage is `failed`), the server
recovers by itself, every value acknowledged is in history exactly once, the agent's log lines
(resent by zabbix_agentd after each `failed`) land exactly once, and the roll-up, the housekeeper
and the configuration cache work again afterwards without a dead thread.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from tests.conftest import VigilServer, free_port, require, stop_process

PG_BIN = Path("/usr/lib/postgresql/15/bin")
HOST = "pg-restart"
DEADLINE = 90.0  # seconds for any one condition below; the whole test takes well under that
MAX_SENDS = 5000  # bounds the sender loop whatever happens
PACE = 0.02  # seconds between sends: a quiet machine sent 2,000 in the test's first 20 s and had none left
PER_SEND = 5
OUTAGE = 4.0  # seconds the database stays stopped


class PgCluster:
    """A PostgreSQL 15 cluster of the test's own, run as the `postgres` user when the test runs as root."""

    def __init__(self) -> None:
        # Not under pytest's tmp_path: its parents are root's and closed to the postgres user.
        self.dir = Path(tempfile.mkdtemp(prefix="vigil-pg-restart-"))
        self.data = self.dir / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/vigil"
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")

    def _run(self, *cmd: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        r = subprocess.run([*prefix, *cmd], capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr}{r.stdout}{self.log()[-2000:]}")

    def ctl(self, action: str, *extra: str) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1"
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.dir / "log"), "-o", opts, "-w",
                  "-t", "60", *extra, action)

    def log(self) -> str:
        p = self.dir / "log"
        return p.read_text(errors="replace") if p.exists() else ""

    def close(self) -> None:
        try:
            self.ctl("stop", "-m", "immediate")
        except RuntimeError:
            pass  # not running
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def cluster() -> Iterator[PgCluster]:
    c = PgCluster()
    try:
        c.ctl("start")
        with psycopg.connect(c.url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE vigil")
        yield c
    finally:
        c.close()


@dataclass
class Send:
    values: list[int]
    started: float
    ended: float
    ok: bool
    output: str


def wait_for(cond: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def acknowledged(r: subprocess.CompletedProcess) -> bool:
    """zabbix_sender's verdict: the server replied `success` and processed every value."""
    m = re.search(r"processed: (\d+); failed: (\d+); total: (\d+)", r.stdout)
    return r.returncode == 0 and m is not None and int(m[1]) == int(m[3]) == PER_SEND and m[2] == "0"


class Pusher:
    """zabbix_sender in a bounded loop: batches of distinct unsigned values, each outcome recorded."""

    def __init__(self, port: int, key: str, clock: int, first: int = 0) -> None:
        self.port, self.key, self.clock, self.next = port, key, clock, first
        self.sends: list[Send] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        sender = require("zabbix_sender")
        while not self.stop.is_set() and len(self.sends) < MAX_SENDS:
            values = list(range(self.next, self.next + PER_SEND))
            self.next += PER_SEND
            lines = "".join(f"{HOST} {self.key} {self.clock + v % 3000} {v}\n" for v in values)
            t0 = time.monotonic()
            r = subprocess.run([sender, "-z", "127.0.0.1", "-p", str(self.port), "-T", "-i", "-", "-t", "30"],
                               input=lines, capture_output=True, text=True, timeout=120)
            self.sends.append(Send(values, t0, time.monotonic(), acknowledged(r), r.stdout + r.stderr))
            self.stop.wait(PACE)

    def ok_after(self, t: float) -> int:
        return sum(1 for s in list(self.sends) if s.ok and s.started > t)

    def __enter__(self) -> Pusher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(180)


class LogWriter:
    """Appends numbered lines to a file that zabbix_agentd follows with a log[] item."""

    def __init__(self, path: Path) -> None:
        self.path, self.lines = path, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.wait(0.05) and self.lines < 5000:
            with self.path.open("a") as f:
                f.write(f"line-{self.lines}\n")
            self.lines += 1


def agent_failing(out: Path) -> bool:
    """Whether zabbix_agentd's last word on its uploads is that they fail (it says so once per change)."""
    states = re.findall(r"upload started to fail|upload to \[[^]]*\] is working again", out.read_text(errors="replace"))
    return bool(states) and states[-1].endswith("fail")


def counts(url: str, sql: str, *params: object) -> dict:
    with psycopg.connect(url) as c:
        return dict(c.execute(sql, params).fetchall())


def test_ingest_survives_a_restarted_and_a_stopped_postgresql(cluster: PgCluster, tmp_path: Path) -> None:
    now = int(time.time())
    hour = now - now % 3600 - 3600  # the hour before this one: complete, so the roll-up finishes it
    log_path = tmp_path / "app.log"
    log_path.touch()
    server = VigilServer(tmp_path, cluster.url, VIGIL_TRENDS_INTERVAL="1", VIGIL_HOUSEKEEPING_INTERVAL="1",
                         VIGIL_PG_CONNECT_TIMEOUT="2", VIGIL_TIMEOUT="3").start()
    agent_out = tmp_path / "agentd.out"
    agent: subprocess.Popen | None = None
    writer = LogWriter(log_path)
    try:
        server.import_yaml(
            f"hosts:\n  - host: {HOST}\n    items:\n"
            "      - {key: pushed, type: trapper, value_type: unsigned}\n"
            f"      - {{key: \"log[{log_path}]\", type: agent_active, value_type: log, delay: 1s}}\n")
        conf = tmp_path / "agentd.conf"
        conf.write_text(f"ServerActive=127.0.0.1:{server.port}\nHostname={HOST}\nStartAgents=0\n"
                        # Timeout above VIGIL_TIMEOUT: the agent hears the server's `failed` rather than giving
                        # up and resending while its first request is still in flight (another fault's test).
                        "RefreshActiveChecks=60\nBufferSend=1\nBufferSize=65535\nTimeout=10\nLogType=console\n"
                        f"PidFile={tmp_path}/agentd.pid\nAllowRoot=1\n")
        with Pusher(server.port, "pushed", hour) as pusher:
            wait_for(lambda: pusher.ok_after(0) >= 5, f"values stored before any fault\n{server.log_text()[-3000:]}")
            # Only once the server has its checks: zabbix_agentd asks again only every RefreshActiveChecks.
            agent = subprocess.Popen([require("zabbix_agentd"), "-f", "-c", str(conf)], stdout=agent_out.open("ab"),
                                     stderr=subprocess.STDOUT)
            writer.thread.start()
            wait_for(lambda: sum(counts(cluster.url, "SELECT 1, count(*) FROM history_log").values()) > 0,
                     "the agent's first log lines")

            cluster.ctl("restart", "-m", "fast")
            restarted = time.monotonic()
            wait_for(lambda: pusher.ok_after(restarted) >= 5,
                     f"values stored after the restart\n{server.log_text()[-3000:]}")

            wait_for(lambda: not agent_failing(agent_out), f"the agent's upload working again\n{agent_out.read_text()}")
            cluster.ctl("stop", "-m", "fast")
            down = time.monotonic()
            # Away for a few seconds (the fault itself, not a wait for something): long enough for the
            # reconnection pause to grow and for zabbix_agentd to have its upload refused.
            wait_for(lambda: time.monotonic() - down > OUTAGE and sum(1 for s in list(pusher.sends) if s.started > down)
                     >= 4 and agent_failing(agent_out),
                     f"sends and the agent's upload failing while it is down\n{agent_out.read_text()[-2000:]}")
            up_begins = time.monotonic()
            cluster.ctl("start")
            up = time.monotonic()
            wait_for(lambda: pusher.ok_after(up) >= 5,
                     f"values stored after the database came back\n{server.log_text()[-3000:]}")
            log_mark = len(server.log_text())

            # The configuration cache reloads through its engine after the restarts.
            server.import_yaml(f"hosts:\n  - host: {HOST}\n    items:\n"
                               "      - {key: pushed.later, type: trapper, value_type: unsigned}\n")
            with Pusher(server.port, "pushed.later", hour, first=10**6) as later:
                wait_for(lambda: later.ok_after(0) >= 1, "a value for an item added after the outage")
        writer.stop.set()
        writer.thread.join(10)

        sends = pusher.sends + later.sends
        stored = counts(cluster.url, "SELECT value, count(*) FROM history_uint GROUP BY value")
        during = [s for s in pusher.sends if s.started > down and s.ended < up_begins]
        assert during, "no send happened while the database was down"
        assert not [s for s in during if s.ok], "a value was acknowledged while the database was down"
        assert all(stored.get(v, 0) == 0 for s in during for v in s.values), "stored while the database was down?"
        acked = [v for s in sends if s.ok for v in s.values]
        assert [v for v in acked if stored.get(v) != 1] == [], "acknowledged values not stored exactly once"
        assert [v for v, n in stored.items() if n > 1] == [], "values stored twice"
        failed = [s for s in pusher.sends if not s.ok]
        assert failed and all("failed" in s.output for s in failed), failed[:3]

        # zabbix_agentd resends what got `failed`: every line it read lands once, none twice.
        expected = {f"line-{n}" for n in range(writer.lines)}

        def missing() -> list[str]:
            have = set(counts(cluster.url, "SELECT value, count(*) FROM history_log GROUP BY value"))
            return sorted(expected - have, key=lambda x: int(x.split("-")[1]))

        try:
            wait_for(lambda: not missing(), "every log line stored", timeout=60)
        except AssertionError:
            agent_lines = [x for x in server.log_text().splitlines() if "agent data" in x or "sessions" in x]
            raise AssertionError(f"log lines never stored: {missing()[:20]}\nserver:\n" + "\n".join(agent_lines[-40:])
                                 + f"\nagent:\n{agent_out.read_text(errors='replace')[-3000:]}") from None
        lines = counts(cluster.url, "SELECT value, count(*) FROM history_log GROUP BY value")
        assert [v for v, n in lines.items() if n != 1] == [], "log lines stored twice"

        # The roll-up ran again after the outage: the hour's trend counts every value stored in it.
        def trend_complete() -> bool:
            with psycopg.connect(cluster.url) as c:
                want = c.execute("SELECT count(*) FROM history_uint h JOIN items i USING (itemid) "
                                 "WHERE i.key_ = 'pushed' AND h.clock >= %s AND h.clock < %s",
                                 (hour, hour + 3600)).fetchone()
                got = c.execute("SELECT t.num FROM trends_uint t JOIN items i USING (itemid) "
                                "WHERE i.key_ = 'pushed' AND t.clock = %s", (hour,)).fetchone()
            return got is not None and want is not None and got[0] == want[0]

        wait_for(trend_complete, f"the hour's trend after the outage\n{server.log_text()[-3000:]}")
        wait_for(lambda: "housekeeper deleted" in server.log_text()[log_mark:], "a housekeeping run afterwards")
        text = server.log_text()
        assert "reconnected to PostgreSQL" in text and "configuration checks work again" in text
        i = max(text.find("Exception in thread"), text.find("failed unexpectedly"))
        assert "Exception in thread" not in text and "failed unexpectedly" not in text, text[i - 500:i + 3000]
    finally:
        writer.stop.set()
        if agent is not None:
            stop_process(agent)
        server.stop()
