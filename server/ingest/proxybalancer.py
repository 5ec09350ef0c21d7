"""The server's proxy-group balancer: every VIGIL_PROXY_GROUP_INTERVAL seconds it reads each proxy
group's proxies (their last contact) and hosts, computes the assignment (server/config/proxygroups.py)
and writes the hosts that moved. A moved host is in its new proxy's `proxy config` from then on, and
values its old proxy still delivers for it are accepted (ProxyConfig.proxy_items covers the group).

Right after the server starts, every proxy counts as heard from at the start: a server that was down
for a while must not take the hosts from proxies that simply had nobody to talk to.
"""

from __future__ import annotations

import asyncio
import logging
import time

from vigil.server.config.proxygroup_config import GroupState
from vigil.server.config.proxygroups import Balance, balance
from vigil.server.config.repo import ConfigRepo
from vigil.server.config.tables import ProxyGroupState

log = logging.getLogger("vigil.ingest.proxygroups")


class ProxyBalancer:
    def __init__(self, repo: ConfigRepo, interval: float, started: float | None = None) -> None:
        self.repo = repo
        self.interval = interval
        self.started = time.time() if started is None else started
        self._states: dict[int, bool] = {}  # proxy_groupid -> offline, as last logged

    def run_once(self, now: float | None = None) -> dict[str, Balance]:
        """One balancing of every group (blocking: database reads and writes); group name -> result."""
        now = time.time() if now is None else now
        out = {}
        for g in self.repo.proxy_group_states():
            seen = {p: max(float(s), self.started) for p, s in g.last_seen.items()}
            result = balance(seen, now, g.failover_delay, g.min_online, g.hosts)
            state = ProxyGroupState.OFFLINE if result.offline else ProxyGroupState.ONLINE
            if result.moved or state != g.state:
                self.repo.save_proxy_group(g.proxy_groupid, result.moved, state, int(now))
            self._report(g, result)
            out[g.name] = result
        return out

    def _report(self, g: GroupState, result: Balance) -> None:
        was = self._states.get(g.proxy_groupid)
        self._states[g.proxy_groupid] = result.offline
        if result.offline and was is not True:
            log.warning("proxy group [%s] is offline: %d of its %d proxies online, min_online is %d; its %d hosts "
                        "keep their proxies", g.name, len(result.online), len(g.last_seen), g.min_online,
                        len(g.hosts))
        elif not result.offline and was is True:
            log.info("proxy group [%s] is online again: %d proxies online", g.name, len(result.online))
        if result.moved:
            def name(p: int | None) -> str:
                return g.proxy_names.get(p, "none") if p is not None else "none"

            by_route: dict[tuple[str, str], int] = {}
            for a, b in result.moved.values():
                by_route[(name(a), name(b))] = by_route.get((name(a), name(b)), 0) + 1
            log.info("proxy group [%s]: %d hosts reassigned (%s); online: %s", g.name, len(result.moved),
                     ", ".join(f"{n} from {a} to {b}" for (a, b), n in sorted(by_route.items())),
                     ", ".join(name(p) for p in result.online))

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.run_once)
            except Exception as e:  # the database may be away for a while: try again next round
                log.warning("cannot balance the proxy groups: %s", e)
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except TimeoutError:
                pass
