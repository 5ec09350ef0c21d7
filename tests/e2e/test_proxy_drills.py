"""Outage drills (issue 16): an active proxy between producers and the Vigil server through faults.

Each drill runs a Vigil server, a fault front (tests/proxyfaults.py) in front of it, an active proxy
pointed at the front, a real passive zabbix_agentd with 50 items the proxy polls every second, and
4 zabbix_sender loops sending to the proxy's trapper port. Then it breaks something, repairs it,
and counts every value by (item, clock, ns, value):

- produced = the sender values zabbix_sender was told `processed` + what the agent items yielded
  (for zabbix_proxy: every row of its buffer, proxy_history; for both proxies: no agent item has
  a hole in its once-a-second series longer than GAP seconds while the proxy ran);
- stored = the server's history, read through its store;
- stored = produced − reported dropped, and nothing stored twice.

Sender batches that got no clear answer (the proxy being killed, say) may or may not have been
kept: they are neither required nor forbidden in the store, only forbidden twice.

The drills run once per proxy: the real zabbix_proxy 6.0 and `vigil proxy`, each in a class of its
own so that pytest-xdist's loadscope spreads them over two workers. The Vigil proxy is skipped only
when `vigil proxy --help` fails (tests/vigil_proxy.py: missing()). VIGIL_DRILL_OUTAGE sets the
outage length (seconds, default 15; longer runs, e.g. 45 or 600, for a soak). Each outage must
demonstrably fill the proxy's buffer (at least BUFFERED_PER_S values a second of outage waiting
unsent, read from the proxy's own database): what the drill proves then holds for a longer one.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import pytest
import sqlalchemy as sa
from vigil.server.config.migrate import engine_for
from vigil.server.config.repo import ConfigRepo
from vigil.server.store import open_store

from tests.conftest import VigilServer, drop_pg_database, new_pg_database, require, wait_until
from tests.proxyfaults import FaultFront, Mode, is_history_batch
from tests.vigil_proxy import VigilProxy, missing
from tests.zabbix_proxy import ZabbixProxy, empty_proxy_database

OUTAGE = float(os.environ.get("VIGIL_DRILL_OUTAGE", "15"))
HOST = "drill-host"
PROXY = "drill-proxy"
AGENT_KEYS = [f"vfs.file.exists[/nonexistent/vigil-drill-{i}]" for i in range(50)]
SENDER_KEYS = [f"trap.s{i}" for i in range(4)]
OLD_KEY = "trap.old"
GAP = 10  # seconds an agent item's 1 s series may pause (a loaded machine) before it counts as a loss
UNWRITTEN = 5  # seconds before a SIGKILL in which zabbix_proxy may have acknowledged values not yet written
RECOVERY = 180  # seconds the proxy gets to deliver its buffer after the fault is repaired
# Values a second of outage must leave unsent in the proxy's buffer: the 50 agent items alone yield 50 a
# second and the senders more, so 10 holds on a loaded machine and still shows the buffer filling.
BUFFERED_PER_S = 10
pytestmark = pytest.mark.timeout(int(300 + 2 * OUTAGE + RECOVERY))  # a long VIGIL_DRILL_OUTAGE needs longer

Value = tuple[int, int, str]  # clock, ns, value


class Proxy(Protocol):
    port: int

    def start(self) -> object: ...
    def stop(self) -> None: ...
    def kill(self) -> None: ...
    def log_text(self) -> str: ...


def config(agent_port: int) -> str:
    agents = "".join(f'      - {{key: "{k}", type: agent, value_type: unsigned, delay: 1s}}\n' for k in AGENT_KEYS)
    traps = "".join(f"      - {{key: {k}, type: trapper, value_type: unsigned}}\n"
                    for k in [*SENDER_KEYS, OLD_KEY])
    return f"""
proxies:
  - {{name: {PROXY}, mode: active, allowed_addresses: [127.0.0.1]}}
hosts:
  - host: {HOST}
    proxy: {PROXY}
    interfaces: [{{type: agent, address: 127.0.0.1, port: {agent_port}}}]
    items:
{agents}{traps}"""


def zabbix_sender(port: int, lines: list[str]) -> tuple[int, int, str]:
    """(processed, total, output) of `zabbix_sender -T -N` sending `KEY CLOCK NS VALUE` lines for HOST."""
    data = "".join(f"{HOST} {line}\n" for line in lines)
    try:
        r = subprocess.run([require("zabbix_sender"), "-z", "127.0.0.1", "-p", str(port), "-T", "-N", "-i", "-",
                            "-t", "10"], input=data, capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return 0, -1, "timed out"
    out = r.stdout + r.stderr
    processed = sum(int(n) for n in re.findall(r"processed: (\d+);", out))
    total = sum(int(n) for n in re.findall(r"; total: (\d+);", out))
    return processed, total if "Response from" in out else -1, out


class Senders:
    """4 zabbix_sender loops, each sending 10 values of its own trapper item every 0.25 s."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.produced: dict[str, Counter[Value]] = {k: Counter() for k in SENDER_KEYS}
        self.uncertain: dict[str, set[Value]] = {k: set() for k in SENDER_KEYS}
        self.refused = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(k,), daemon=True) for k in SENDER_KEYS]

    def __enter__(self) -> Senders:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(60)

    def _loop(self, key: str) -> None:
        seq = 0
        while not self._stop.is_set():
            clock = int(time.time())
            batch = [(clock, seq + i, str(seq + i)) for i in range(1, 11)]
            seq += 10
            processed, total, _ = zabbix_sender(self.port, [f"{key} {c} {n} {v}" for c, n, v in batch])
            if processed == total == len(batch):
                self.produced[key].update(batch)
            elif processed == 0 and total == len(batch):
                self.refused += 1  # answered: none kept (the proxy had not loaded its items)
            else:
                self.uncertain[key].update(batch)  # no clear answer: it may have kept them
            self._stop.wait(0.25)

    def count(self) -> int:
        return sum(sum(c.values()) for c in self.produced.values())


def stored(server: VigilServer, keys: list[str]) -> dict[str, Counter[Value]]:
    """What the server's store holds for HOST's `keys`, as Counters of (clock, ns, value)."""
    engine = engine_for(server.database_url)
    store = open_store(server.database_url)
    try:
        repo = ConfigRepo(engine)
        out: dict[str, Counter[Value]] = {}
        for key in keys:
            found = repo.item(HOST, key)
            assert found is not None, key
            out[key] = Counter((int(c), int(n), str(v)) for c, n, v in store.history(found[0], found[1], 0, 2**31 - 1))
        return out
    finally:
        store.close()
        engine.dispose()


def proxy_sessions(server: VigilServer) -> list[str]:
    engine = engine_for(server.database_url)
    try:
        with engine.connect() as c:
            return [r[0] for r in c.execute(sa.text("SELECT session FROM agent_sessions WHERE session LIKE 'proxy:%'"))]
    finally:
        engine.dispose()


class Drill:
    """Server, front, agent, proxy and senders for one drill; `finish()` checks the count."""

    def __init__(self, kind: str, tmp: Path, database_url: str, proxy_db: Path | None,
                 **proxy_options: str) -> None:
        self.kind = kind
        self.tmp = tmp
        self.server = VigilServer(tmp, database_url)
        self.front = FaultFront(0)
        where = f"127.0.0.1:{self.front.start().port}"
        self.proxy: Proxy
        if kind == "zabbix_proxy":
            self.proxy = ZabbixProxy(tmp, PROXY, server=where, database=proxy_db, **proxy_options)
        else:
            self.proxy = VigilProxy(tmp, PROXY, server=where, **proxy_options)
        self.senders = Senders(self.proxy.port)
        self.quiet: list[tuple[float, float]] = []  # windows the proxy was down: agent items may pause there
        self.extra_produced: dict[str, Counter[Value]] = {}  # values sent by the drill itself, by key
        self.dropped_values: set[Value] = set()  # of OLD_KEY: those the proxy must drop
        self.reported_dropped = 0
        # zabbix_proxy answers a sender once values are in its history cache, before its DB syncer
        # writes them to its SQLite (about once a second): a SIGKILL loses what it acknowledged in
        # that window. A drill that kills it puts the window here; values in it are not required.
        self.unwritten: tuple[float, float] | None = None
        self.lost_unwritten = 0

    def warm_up(self, agent_port: int) -> None:
        """Start everything; wait until the proxy took its configuration and values flow."""
        self.server.start()
        self.server.import_yaml(config(agent_port))
        self.front.upstream = self.server.port
        self.proxy.start()
        clock = int(time.time())
        wait_until(lambda: zabbix_sender(self.proxy.port, [f"{SENDER_KEYS[0]} {clock} 0 0"])[0] == 1, 60,
                   "the proxy to accept a sender value for the server's configuration", interval=0.5)
        self.senders.produced[SENDER_KEYS[0]][(clock, 0, "0")] += 1
        self.senders.__enter__()
        try:
            wait_until(lambda: all(stored(self.server, AGENT_KEYS[:1] + SENDER_KEYS[:1]).values()), 90,
                       "the first values to reach the server", interval=0.5)
        except AssertionError as e:  # say what each side saw: this wait failed once on a loaded CI machine
            seen = {k: sum(v.values()) for k, v in stored(self.server, AGENT_KEYS[:1] + SENDER_KEYS[:1]).items()}
            raise AssertionError(f"{e}; stored {seen}; requests through the front {dict(self.front.requests)}\n"
                                 f"server log:\n{self.server.log_text()[-4000:]}\n"
                                 f"proxy log:\n{self.proxy.log_text()[-4000:]}") from None
        self.started = time.time()

    def buffered(self) -> int:
        """Values in the proxy's own buffer not yet acknowledged by the server."""
        if isinstance(self.proxy, ZabbixProxy):
            return int(self.proxy.query("SELECT count(*) FROM proxy_history WHERE id > ?",
                                        self.proxy.sent_up_to())[0][0])
        assert isinstance(self.proxy, VigilProxy)
        return sum(1 for *_, sent in self.proxy.outbox() if sent == 0)

    def assert_buffer_filled(self, seconds: float) -> None:
        """The outage so far (`seconds` long) left values waiting in the proxy's buffer: it did fill."""
        n = self.buffered()
        assert n >= BUFFERED_PER_S * seconds, \
            f"{self.kind}: only {n} values buffered after {seconds:.0f} s of outage (want {BUFFERED_PER_S}/s)"

    def restart_server(self) -> None:
        self.server.start()
        self.front.upstream = self.server.port  # start() may have had to pick another port

    def finish(self) -> None:
        """Stop producing, let the proxy drain, stop it, and count."""
        self.senders.stop()
        stopped = time.time()
        keys = AGENT_KEYS + SENDER_KEYS
        at_risk: dict[str, set[Value]] = {}
        if self.unwritten is not None:
            for k in SENDER_KEYS:
                at_risk[k] = {v for v in self.senders.produced[k] if self.unwritten[0] <= v[0] <= self.unwritten[1]}
                for v in at_risk[k]:
                    del self.senders.produced[k][v]
                self.senders.uncertain[k] |= at_risk[k]

        missing: list[str] = []

        def drained() -> bool:
            now = stored(self.server, keys)
            missing[:] = [f"{k}: {sum((self.senders.produced[k] - now[k]).values())} sender values"
                          for k in SENDER_KEYS if self.senders.produced[k] - now[k]]
            missing.extend(f"{k}: nothing since {max((c for c, _, _ in now[k]), default=0)}" for k in AGENT_KEYS
                           if max((c for c, _, _ in now[k]), default=0) < stopped - 1)
            return not missing
        try:
            wait_until(drained, RECOVERY, "the proxy to deliver its buffer after the fault", interval=1)
        except AssertionError as e:
            raise AssertionError(f"{e}; stopped at {int(stopped)}, still missing: {missing[:6]}") from None
        self.proxy.stop()
        time.sleep(1)
        now = stored(self.server, keys + [OLD_KEY])

        twice = {k: [v for v, n in c.items() if n > 1][:3] for k, c in now.items() if max(c.values(), default=1) > 1}
        assert not twice, f"stored twice: {twice}"
        for k in SENDER_KEYS:
            lost = self.senders.produced[k] - now[k]
            assert not lost, f"{k}: {sum(lost.values())} acknowledged values lost, e.g. {sorted(lost)[:3]}"
            extra = set(now[k]) - set(self.senders.produced[k]) - self.senders.uncertain[k]
            assert not extra, f"{k}: stored values no sender sent: {sorted(extra)[:3]}"
        if isinstance(self.proxy, ZabbixProxy):
            self._check_against_buffer(self.proxy, now)
        self._check_no_holes(now, stopped)
        self.lost_unwritten = sum(len(at_risk[k] - set(now[k])) for k in at_risk)
        # stored = produced - reported dropped (values without a clear answer count where they are stored)
        produced = self.senders.count() + sum(sum(c.values()) for c in self.extra_produced.values())
        uncertain = sum(len(set(now[k]) & self.senders.uncertain[k]) for k in SENDER_KEYS)
        certain = sum(sum(now[k].values()) for k in SENDER_KEYS + [OLD_KEY]) - uncertain
        assert certain == produced - self.reported_dropped, (certain, produced, self.reported_dropped)
        dropped = set(now[OLD_KEY]) & set(self.dropped_values)
        assert not dropped, f"values older than ProxyOfflineBuffer were delivered: {sorted(dropped)[:3]}"

    def _check_against_buffer(self, proxy: ZabbixProxy, now: dict[str, Counter[Value]]) -> None:
        """zabbix_proxy's proxy_history is what its collectors yielded: what it marked sent is stored,
        and nothing is stored that it did not collect."""
        keys = dict(proxy.query("SELECT itemid, key_ FROM items"))
        sent = proxy.sent_up_to()
        collected: dict[str, Counter[Value]] = {}
        acknowledged: dict[str, Counter[Value]] = {}
        for vid, itemid, clock, ns, value in proxy.history():
            key = keys[itemid]
            collected.setdefault(key, Counter())[(clock, ns, value)] += 1
            if vid <= sent:
                acknowledged.setdefault(key, Counter())[(clock, ns, value)] += 1
        assert sum(sum(acknowledged.get(k, Counter()).values()) for k in AGENT_KEYS) > 50, \
            "the proxy collected next to nothing from the agent"
        for key in AGENT_KEYS:
            lost = acknowledged.get(key, Counter()) - now[key]
            assert not lost, f"{key}: {sum(lost.values())} values the proxy had delivered are not stored"
            extra = now[key] - collected.get(key, Counter())
            assert not extra, f"{key}: values stored that the proxy never collected: {sorted(extra)[:3]}"

    def _check_no_holes(self, now: dict[str, Counter[Value]], stopped: float) -> None:
        """Every agent item has a value about every second from warm-up to the stop, bar quiet windows."""
        for key in AGENT_KEYS:
            clocks = sorted({c for c, _, _ in now[key] if self.started <= c <= stopped - 2})
            assert clocks, f"{key}: nothing stored during the drill"
            edges = [int(self.started), *clocks, int(stopped) - 2]
            for a, b in zip(edges, edges[1:], strict=False):
                if b - a > GAP and not any(q0 - GAP <= a and b <= q1 + GAP for q0, q1 in self.quiet):
                    raise AssertionError(f"{key}: no value between {a} and {b} ({b - a} s): values lost")

    def close(self) -> None:
        self.senders.stop()
        self.proxy.stop()
        self.front.stop()
        self.server.stop()


@pytest.fixture(scope="module")
def proxy_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return empty_proxy_database(tmp_path_factory.mktemp("proxy-schema"))


class Drills:
    """The drills; a subclass names the proxy."""

    kind = ""

    @pytest.fixture
    def make(self, tmp_path: Path, zabbix_agentd: int, proxy_db: Path) -> Iterator[Callable[..., Drill]]:
        """Makes the drill's setup (on SQLite, or PostgreSQL when `pg`), warmed up; closes it after."""
        made: list[Drill] = []
        pg: list[str] = []

        def make(*, postgresql: bool = False, **proxy_options: str) -> Drill:
            if postgresql:
                pg[:] = new_pg_database()
            url = pg[1] if postgresql else f"sqlite:///{tmp_path / 'vigil.db'}"
            made.append(Drill(self.kind, tmp_path, url, proxy_db, **proxy_options))
            made[-1].warm_up(zabbix_agentd)
            return made[-1]
        try:
            yield make
        finally:
            for d in made:
                d.close()
            if pg:
                drop_pg_database(pg[0])

    def test_server_stopped_for_an_outage(self, make: Callable[..., Drill]) -> None:
        drill = make()
        time.sleep(2)
        drill.server.stop()
        before = drill.senders.count()
        time.sleep(OUTAGE)
        assert drill.senders.count() > before, "the senders' values were not accepted during the outage"
        drill.assert_buffer_filled(OUTAGE - 2)  # the proxy notices the server gone within its 1 s intervals
        drill.restart_server()
        time.sleep(3)
        drill.finish()

    def test_server_answers_failed_then_closes_without_answering(self, make: Callable[..., Drill]) -> None:
        drill = make()
        time.sleep(2)
        drill.front.set(Mode.FAIL)
        time.sleep(OUTAGE / 2)
        drill.front.set(Mode.CLOSE)
        time.sleep(OUTAGE / 2)
        drill.assert_buffer_filled(OUTAGE - 2)
        drill.front.set(Mode.PASS)
        assert drill.front.applied[Mode.FAIL] >= 3 and drill.front.applied[Mode.CLOSE] >= 3, drill.front.applied
        drill.finish()

    def test_server_killed_after_storing_a_batch_before_replying(self, make: Callable[..., Drill]) -> None:
        drill = make(postgresql=True)  # the one drill on PostgreSQL: a commit the reply never told of
        time.sleep(2)
        drill.front.set(Mode.SWALLOW, match=is_history_batch, then=Mode.CLOSE)
        assert drill.front.hit.wait(30), "the proxy sent no batch to swallow"
        drill.server.kill()
        drill.front.set(Mode.PASS)
        time.sleep(2)
        drill.restart_server()
        time.sleep(3)
        drill.finish()
        assert drill.front.applied[Mode.SWALLOW] == 1

    def test_proxy_killed_and_restarted_mid_outage(self, make: Callable[..., Drill]) -> None:
        drill = make()
        time.sleep(2)
        drill.server.stop()
        time.sleep(OUTAGE / 3)
        drill.assert_buffer_filled(OUTAGE / 3 - 2)
        killed = time.time()
        drill.proxy.kill()
        time.sleep(1)
        drill.proxy.start()
        drill.quiet.append((killed - UNWRITTEN, time.time() + 5))
        if drill.kind == "zabbix_proxy":
            drill.unwritten = (killed - UNWRITTEN, killed)
        time.sleep(OUTAGE / 3)
        drill.assert_buffer_filled(2 * OUTAGE / 3 - 2 - UNWRITTEN)  # what the restarted proxy kept, and more
        drill.restart_server()
        time.sleep(3)
        drill.finish()
        print(f"{drill.kind}: {drill.lost_unwritten} acknowledged sender values lost to the SIGKILL")
        sessions = proxy_sessions(drill.server)
        assert len(sessions) == len(set(sessions)) >= 2, f"the restarted proxy should open a new session: {sessions}"

    def test_values_older_than_the_offline_buffer_are_dropped_and_counted(self, make: Callable[..., Drill]) -> None:
        drill = make(ProxyOfflineBuffer="1", ProxyLocalBuffer="1")
        time.sleep(2)
        drill.server.stop()
        now = int(time.time())
        old = [(now - 7200, i, str(i)) for i in range(1, 101)]       # 2 h old: past ProxyOfflineBuffer=1 h
        recent = [(now - 1800, i, str(i)) for i in range(101, 201)]  # 30 min old: within it
        processed, total, out = zabbix_sender(drill.proxy.port, [f"{OLD_KEY} {c} {n} {v}" for c, n, v in old + recent])
        assert processed == total == 200, out
        drill.extra_produced[OLD_KEY] = Counter(old + recent)
        drill.dropped_values = set(old)
        drill.reported_dropped = self.drop_old(drill, len(old))
        drill.restart_server()
        time.sleep(3)
        wait_until(lambda: set(recent) <= set(stored(drill.server, [OLD_KEY])[OLD_KEY]), RECOVERY,
                   "the values within ProxyOfflineBuffer to be delivered", interval=1)
        drill.finish()
        assert drill.reported_dropped == len(old)
        assert set(stored(drill.server, [OLD_KEY])[OLD_KEY]) == set(recent)

    def drop_old(self, drill: Drill, expected: int) -> int:
        """Make the proxy drop what outlived ProxyOfflineBuffer; the count it reported."""
        raise NotImplementedError


class TestZabbixProxy(Drills):
    kind = "zabbix_proxy"

    def drop_old(self, drill: Drill, expected: int) -> int:
        # zabbix_proxy 6.0 drops unsent values older than ProxyOfflineBuffer in its housekeeper, which
        # first runs 30 min after start: run it now. It logs "deleted N records" (with
        # ProxyLocalBuffer=1 the sent values of the last hour are kept, so N counts only the dropped).
        assert isinstance(drill.proxy, ZabbixProxy)
        proxy = drill.proxy
        # The housekeeper deletes what is in the database: wait until the DB syncer wrote the batch.
        wait_until(lambda: proxy.query("SELECT count(*) FROM proxy_history h JOIN items i ON i.itemid = h.itemid "
                                       "WHERE i.key_ = ?", OLD_KEY)[0][0] >= 2 * expected, 30,
                   "zabbix_proxy to write the old values to its database", interval=0.2)
        out = proxy.runtime_control("housekeeper_execute")
        assert "success" in out.lower() or out == "", out
        found: list[int] = []

        def logged() -> bool:
            found[:] = [int(n) for n in re.findall(r"housekeeper \[deleted (\d+) records", proxy.log_text())]
            return bool(found)
        wait_until(logged, 30, "zabbix_proxy's housekeeper to report what it deleted", interval=0.5)
        return sum(found)


@pytest.mark.skipif(missing() is not None, reason=f"the Vigil proxy is not available: {missing()}")
class TestVigilProxy(Drills):
    kind = "vigil_proxy"

    def drop_old(self, drill: Drill, expected: int) -> int:
        assert isinstance(drill.proxy, VigilProxy)
        proxy = drill.proxy
        wait_until(lambda: proxy.reported_dropped() >= expected, 60,
                   "the Vigil proxy to log how many values outlived ProxyOfflineBuffer", interval=0.5)
        return proxy.reported_dropped()
