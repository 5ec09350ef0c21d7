"""Which proxy of a proxy group monitors which host (Zabbix 7.0's proxy groups): pure, no I/O.

A proxy is online while it was heard from within the group's failover_delay. The hosts of a proxy
that is not online (or no longer in the group, or of no proxy yet) go to the online proxies with the
fewest hosts. Then no online proxy may carry more than twice the average: hosts move off a proxy only
past that bound, so a recovered proxy does not take hosts back while the others are within it, and
every move is one a failure or the bound forced. A group with fewer online proxies than min_online
is offline: nothing moves (a partition must not pile every host onto the last proxy standing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Balance:
    assignment: dict[int, int | None]  # hostid -> proxyid (None: no proxy online to take it)
    moved: dict[int, tuple[int | None, int | None]]  # hostid -> (from, to), only the hosts that changed
    online: list[int]  # the proxies online, by proxyid
    offline: bool  # fewer than min_online proxies online: the assignment was kept as it was
    limit: int = 0  # the most hosts one online proxy may carry (0 when offline)
    counts: dict[int, int] = field(default_factory=dict)  # online proxyid -> hosts after balancing


def online_proxies(last_seen: dict[int, float], now: float, failover_delay: float) -> list[int]:
    """The proxies heard from within failover_delay, by proxyid."""
    return sorted(p for p, seen in last_seen.items() if now - seen <= failover_delay)


def host_limit(hosts: int, online: int) -> int:
    """Twice the average, in whole hosts; never below an even split (1 host, 3 proxies: 1)."""
    if online <= 0:
        return 0
    return max(math.floor(2 * hosts / online), math.ceil(hosts / online))


def balance(last_seen: dict[int, float], now: float, failover_delay: float, min_online: int,
            current: dict[int, int | None]) -> Balance:
    """The new host -> proxy assignment of one group.

    last_seen: every proxy of the group -> its last contact (Unix time); current: every host of the
    group -> the proxy it has now (None: none yet, or one that left the group).
    """
    online = online_proxies(last_seen, now, failover_delay)
    if len(online) < max(1, min_online):
        return Balance(dict(current), {}, online, True)
    load: dict[int, list[int]] = {p: [] for p in online}
    homeless: list[int] = []
    for hostid in sorted(current):
        proxyid = current[hostid]
        if proxyid in load:
            load[proxyid].append(hostid)
        else:
            homeless.append(hostid)
    limit = host_limit(len(current), len(online))
    # Off an overloaded proxy go its newest hosts (highest ids): the long-standing ones stay put.
    for p in online:
        while len(load[p]) > limit:
            homeless.append(load[p].pop())
    new = dict(current)
    for hostid in homeless:
        p = min(online, key=lambda q: (len(load[q]), q))
        load[p].append(hostid)
        new[hostid] = p
    moved = {h: (current[h], new[h]) for h in current if new[h] != current[h]}
    return Balance(new, moved, online, False, limit, {p: len(v) for p, v in load.items()})
