"""A proxy group of TWO real zabbix_proxy 6.0 (active) feeding the Vigil server under load, on both
stores (issue 16, proxy groups).

Six hosts in one group, each with a trapper item fed by the real zabbix_sender (to whichever proxy
the host is assigned to, as the server's hosts.proxyid says) and a passive agent item polled from a
real zabbix_agentd. One proxy is stopped: within failover_delay + ConfigFrequency its hosts are in
the other proxy's configuration and polled by it. The stopped proxy is restarted with its buffer
(values it took but had not delivered yet, for hosts that are no longer its own): they are stored.
At the end every value either proxy collected and delivered is stored once, every value zabbix_sender
was told was processed is stored once, and nothing else is stored.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa
from vigil.server.config.migrate import engine_for

from tests.conftest import VigilServer, require, wait_until
from tests.e2e.test_proxy_zabbix import vigil_rows
from tests.zabbix_proxy import ZabbixProxy, empty_proxy_database

HOSTS = [f"pg-host-{i}" for i in range(6)]
FAILOVER_DELAY = 10  # seconds: the least Zabbix 7.0 allows
CONFIG_FREQUENCY = 1
BALANCE_INTERVAL = 0.5
PER_CALL = 10  # new values per host per round of the feeder
RESULT = re.compile(r"processed: (\d+); failed: (\d+)")
Value = tuple[str, int, int, str]  # (host, clock, ns, value) of a trapper value


@pytest.fixture(scope="module")
def proxy_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return empty_proxy_database(tmp_path_factory.mktemp("proxy-schema"))


def config(agent_port: int) -> str:
    hosts = "".join(f"""  - host: {h}
    proxy_group: pg
    interfaces: [{{type: agent, address: 127.0.0.1, port: {agent_port}}}]
    items:
      - {{key: trap, type: trapper}}
      - {{key: agent.ping, type: agent, value_type: unsigned, delay: 1s}}
""" for h in HOSTS)
    return f"""
proxy_groups:
  - {{name: pg, failover_delay: {FAILOVER_DELAY}s, min_online: 1}}
proxies:
  - {{name: px-a, mode: active, allowed_addresses: [127.0.0.1], group: pg}}
  - {{name: px-b, mode: active, allowed_addresses: [127.0.0.1], group: pg}}
hosts:
{hosts}"""


def assignment(url: str) -> dict[str, str | None]:
    """host -> the proxy the server assigned it to."""
    engine = engine_for(url)
    try:
        with engine.connect() as c:
            return dict(c.execute(sa.text(
                "SELECT h.host, p.name FROM hosts h LEFT JOIN proxies p ON p.proxyid = h.proxyid "
                "WHERE h.proxy_groupid IS NOT NULL")).all())
    finally:
        engine.dispose()


def item_keys(url: str) -> dict[int, tuple[str, str]]:
    """Vigil's itemid (the proxies use the same ids) -> (host, key)."""
    engine = engine_for(url)
    try:
        with engine.connect() as c:
            return {r[0]: (r[1], r[2]) for r in c.execute(sa.text(
                "SELECT i.itemid, h.host, i.key_ FROM items i JOIN hosts h ON h.hostid = i.hostid"))}
    finally:
        engine.dispose()


def proxy_hosts(proxy: ZabbixProxy) -> set[str]:
    """The hosts in the proxy's own configuration (its SQLite), i.e. what it polls and accepts."""
    try:
        return {r[0] for r in proxy.query("SELECT host FROM hosts")}
    except Exception:  # the proxy is creating or rewriting its tables
        return set()


class Feeder(threading.Thread):
    """zabbix_sender for each host in turn, to the proxy that host is assigned to. A call is for one
    host and one item, so a proxy processes all of it or none; what was not processed (no such host
    there yet, connection refused) is sent again in the next round, to the then assigned proxy."""

    def __init__(self, url: str, ports: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.ports = ports
        self.pending: dict[str, list[Value]] = {h: [] for h in HOSTS}
        self.accepted: Counter[Value] = Counter()
        self.accepted_by: Counter[tuple[str, str]] = Counter()  # (host, proxy) -> values processed
        self.partial: list[str] = []
        self.lock = threading.Lock()  # held for each zabbix_sender call: the test pauses the feeder with it
        self.stopping = threading.Event()
        self.n = 0
        self.base = int(time.time()) - 600

    def produce(self, host: str) -> None:
        for _ in range(PER_CALL):
            self.n += 1
            self.pending[host].append((host, self.base + self.n // 100, self.n, f"{self.n}.5"))

    def round(self, produce: bool) -> None:
        where = assignment(self.url)
        for host in HOSTS:
            if produce:
                self.produce(host)
            proxy = where.get(host)
            lines = self.pending[host][:250]  # zabbix_sender sends 250 values a request: one answer
            if proxy is None or not lines:
                continue
            with self.lock:
                data = "".join(f"{h} trap {c} {ns} {v}\n" for h, c, ns, v in lines)
                r = subprocess.run([require("zabbix_sender"), "-z", "127.0.0.1", "-p", str(self.ports[proxy]),
                                    "-T", "-N", "-i", "-"], input=data, capture_output=True, text=True, timeout=60)
            m = RESULT.search(r.stdout)
            if m is None:
                continue  # not answered: nothing was taken
            processed = int(m[1])
            if processed == len(lines):
                self.accepted.update(lines)
                self.accepted_by[(host, proxy)] += len(lines)
                del self.pending[host][:len(lines)]
            elif processed:
                self.partial.append(r.stdout)

    def run(self) -> None:
        while not self.stopping.is_set():
            self.round(produce=True)

    def drain(self, timeout: float) -> None:
        wait_until(lambda: self.round(produce=False) or not any(self.pending.values()), timeout,
                   "the feeder's last values to be taken by a proxy", interval=0.2)


def stored(server: VigilServer) -> dict[tuple[str, str], Counter]:
    """(host, key) -> Counter of (clock, ns, value) stored by Vigil."""
    out = {}
    for h in HOSTS:
        for key in ("trap", "agent.ping"):
            out[(h, key)] = Counter((c, n, repr(float(v)) if key == "trap" else v)
                                    for c, n, v in vigil_rows(server, h, key))
    return out


def collected(proxy: ZabbixProxy, keys: dict[int, tuple[str, str]], sent_only: bool) -> dict[tuple[str, str], Counter]:
    """(host, key) -> Counter of (clock, ns, value) in the proxy's buffer (only those it delivered)."""
    sent = proxy.sent_up_to() if sent_only else 2**63
    out: dict[tuple[str, str], Counter] = {}
    for vid, itemid, clock, ns, value in proxy.history():
        if vid <= sent:
            host, key = keys[itemid]
            out.setdefault((host, key), Counter())[(clock, ns, repr(float(value)) if key == "trap" else value)] += 1
    return out


def total(parts: list[dict[tuple[str, str], Counter]], key: tuple[str, str]) -> Counter:
    out: Counter = Counter()
    for p in parts:
        out += p.get(key, Counter())
    return out


def explain_missing(server: VigilServer, feeder: Feeder, a: ZabbixProxy, b: ZabbixProxy) -> None:
    """On a failure: per host, what zabbix_sender had processed, what each proxy holds, what is stored."""
    keys = item_keys(server.database_url)
    have = stored(server)
    held = [collected(p, keys, sent_only=False) for p in (a, b)]
    for h in HOSTS:
        acc = Counter((c, ns, repr(float(v))) for (hh, c, ns, v) in feeder.accepted if hh == h)
        print(h, "processed", sum(acc.values()), "stored", sum(have[(h, "trap")].values()),
              "held by px-a", sum(held[0].get((h, "trap"), Counter()).values()),
              "held by px-b", sum(held[1].get((h, "trap"), Counter()).values()),
              "first missing", sorted(acc - have[(h, "trap")])[:5], file=sys.stderr)
    print("px-a sent up to", a.sent_up_to(), "px-b sent up to", b.sent_up_to(), file=sys.stderr)


def test_a_proxy_group_fails_over_under_load_and_loses_nothing(tmp_path: Path, database_url: str,
                                                              zabbix_agentd: int, proxy_db: Path) -> None:
    server = VigilServer(tmp_path, database_url, VIGIL_PROXY_GROUP_INTERVAL=str(BALANCE_INTERVAL))
    opts = {"ConfigFrequency": str(CONFIG_FREQUENCY), "StartTrappers": "4"}
    a = b = None
    feeder: Feeder | None = None
    try:
        server.start()
        server.import_yaml(config(zabbix_agentd))
        a = ZabbixProxy(tmp_path, "px-a", server=f"127.0.0.1:{server.port}", database=proxy_db, **opts)
        b = ZabbixProxy(tmp_path, "px-b", server=f"127.0.0.1:{server.port}", database=proxy_db, **opts)
        a.start()
        b.start()
        wait_until(lambda: (lambda w: sorted(Counter(w.values()).values()) == [3, 3])(assignment(server.database_url)),
                   10, "the balancer to spread the six hosts three and three")
        where = assignment(server.database_url)
        on_a = {h for h, p in where.items() if p == "px-a"}
        on_b = {h for h, p in where.items() if p == "px-b"}
        wait_until(lambda: proxy_hosts(a) == on_a and proxy_hosts(b) == on_b, 30,
                   "each proxy to load its three hosts")

        feeder = Feeder(server.database_url, {"px-a": a.port, "px-b": b.port})
        feeder.start()
        wait_until(lambda: all(feeder.accepted_by[(h, where[h])] >= 5 * PER_CALL for h in HOSTS), 60,
                   "values for every host through its proxy", interval=0.2)
        wait_until(lambda: all(s for (h, k), s in stored(server).items()), 30,
                   "values of every item of every host stored by Vigil", interval=0.5)

        # Stop px-b under load (between two zabbix_sender calls, so no call's outcome is in doubt).
        with feeder.lock:
            b.stop()
        stopped_at = time.time()
        before_stop = b.history()
        unsent = [r for r in before_stop if r[0] > b.sent_up_to()]
        assert unsent, "px-b had delivered everything: its buffer after the move is not exercised"

        # Within failover_delay + ConfigFrequency px-a polls px-b's hosts. Measured on the values'
        # own clocks (px-a stamps each when it polls it), not on how quickly this test looks.
        keys = item_keys(server.database_url)
        taken = {h: feeder.accepted_by[(h, "px-a")] for h in on_b}

        def first_poll_after_stop() -> dict[str, int]:
            out = {}
            for h in on_b:
                later = [c for c, _, _ in vigil_rows(server, h, "agent.ping") if c > stopped_at]
                if later:
                    out[h] = min(later)
            return out

        wait_until(lambda: len(first_poll_after_stop()) == len(on_b), 60,
                   "px-a to poll px-b's hosts", interval=1)
        wait_until(lambda: all(feeder.accepted_by[(h, "px-a")] > taken[h] for h in on_b), 30,
                   "px-a to take the trapper values of px-b's hosts", interval=0.5)
        failover = max(first_poll_after_stop().values()) - stopped_at
        print(f"failover: px-a polled px-b's hosts {failover:.1f} s after px-b stopped "
              f"(failover_delay {FAILOVER_DELAY} s, ConfigFrequency {CONFIG_FREQUENCY} s)")
        # + the balancer's interval, an agent item's delay (1 s) and whole-second clocks
        assert failover <= FAILOVER_DELAY + CONFIG_FREQUENCY + BALANCE_INTERVAL + 2
        assert assignment(server.database_url) == {h: "px-a" for h in HOSTS}

        # px-b comes back with its buffer: what it took for hosts that are px-a's now is stored.
        b.sockets.mkdir(parents=True, exist_ok=True)
        b.start()
        last = before_stop[-1][0]
        wait_until(lambda: b.sent_up_to() >= last, 30, "px-b to deliver its buffer after the restart", interval=0.3)
        wait_until(lambda: "proxy [px-b] delivered its buffer for 3 hosts" in server.log_text(), 30,
                   "the server to take px-b's old hosts out of its configuration", interval=0.3)
        # Within the bound (6 hosts on px-a is twice the average of 3), so nothing moves back.
        assert assignment(server.database_url) == {h: "px-a" for h in HOSTS}

        feeder.stopping.set()
        feeder.join(60)
        feeder.drain(30)
        assert feeder.partial == [], "a zabbix_sender call was processed in part"
        produced = feeder.n
        assert sum(feeder.accepted.values()) == produced and max(feeder.accepted.values()) == 1
        try:
            wait_until(lambda: sum(sum(s.values()) for (h, k), s in stored(server).items() if k == "trap") >= produced,
                       60, "every trapper value to be stored", interval=0.5)
        except AssertionError:
            explain_missing(server, feeder, a, b)
            raise
        a.stop()
        b.stop()

        keys = item_keys(server.database_url)
        have = stored(server)
        sent = [collected(p, keys, sent_only=True) for p in (a, b)]
        held = [collected(p, keys, sent_only=False) for p in (a, b)]
        accepted: dict[str, Counter] = {h: Counter() for h in HOSTS}
        for (h, c, ns, v), n in feeder.accepted.items():
            accepted[h][(c, ns, repr(float(v)))] += n
        for h in HOSTS:
            for key in ("trap", "agent.ping"):
                s = have[(h, key)]
                assert max(s.values(), default=1) == 1, f"{h} {key}: stored twice"
                assert not total(sent, (h, key)) - s, f"{h} {key}: values a proxy delivered are missing"
                assert not s - total(held, (h, key)), f"{h} {key}: stored values no proxy collected"
            assert have[(h, "trap")] == accepted[h] == total(held, (h, "trap")), h
        # px-b's buffer at its stop, for hosts that had moved to px-a: every value stored.
        for _, itemid, clock, ns, value in unsent:
            host, key = keys[itemid]
            assert host in on_b
            assert (clock, ns, repr(float(value)) if key == "trap" else value) in have[(host, key)]
        assert "proxy group [pg]: 3 hosts reassigned (3 from px-b to px-a)" in server.log_text()
    finally:
        if feeder is not None:
            feeder.stopping.set()
            feeder.join(60)
        for p in (a, b):
            if p is not None:
                p.stop()
        server.stop()
