"""What pages and the API read: latest values with change and sparkline, graph series. No SQL here:
the store and the Browse repository do the reading."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vigil.server.config.browse import Browse, ItemRow, Scope
from vigil.server.config.tables import ValueType
from vigil.server.store import Store
from vigil.web import charts
from vigil.web import format as fmt

NUMERIC = (ValueType.FLOAT, ValueType.UNSIGNED)
SPARK_WINDOW = 3600
MAX_POINTS = 20000  # per series on a graph


@dataclass(frozen=True, slots=True)
class Latest:
    item: ItemRow
    clock: int | None
    value: object
    previous: object
    spark: tuple[float, ...]

    @property
    def change(self) -> str:
        return fmt.change(self.value, self.previous, self.item.units)

    @property
    def trend(self) -> str:
        return fmt.trend(self.spark)

    @property
    def sparkline(self) -> str:
        return fmt.sparkline(self.spark)

    def to_json(self) -> dict:
        v = self.value
        return {"itemid": self.item.itemid, "hostid": self.item.hostid, "host": self.item.host,
                "key": self.item.key, "name": self.item.name, "units": self.item.units,
                "value_type": self.item.value_type.name.lower(), "clock": self.clock, "value": v,
                "previous": self.previous, "formatted": fmt.value(v, self.item.units) if v is not None else None}


ACTIVE_AGENT_AGE = 180  # an agent.ping this recent makes a host of unknown availability available


def active_available(store: Store, browse: Browse, hostids: Sequence[int], now: int) -> set[int]:
    """Hosts whose active agent reported agent.ping in the last 3 minutes (Zabbix 6.0 counts an active
    agent's heartbeat likewise; passive availability is written by the pollers)."""
    if not hostids:
        return set()
    return _pinging(store, browse.ping_items(hostids=list(hostids)), now)


def _pinging(store: Store, pings: Sequence[tuple[int, int, ValueType]], now: int) -> set[int]:
    found = store.latest({i: vt for i, _, vt in pings}, since=now - ACTIVE_AGENT_AGE) if pings else {}
    return {h for i, h, _ in pings if i in found}


def availability(store: Store, browse: Browse, scope: Scope, now: int) -> dict[int, int]:
    """Counts per availability (0 unknown, 1 available, 2 not available) of monitored hosts in scope."""
    counts = browse.availability_counts(scope)
    if counts.get(0):
        alive = len(_pinging(store, browse.ping_items(scope, unknown=True), now))
        counts[0] -= alive
        counts[1] = counts.get(1, 0) + alive
    return counts


def latest(store: Store, items: Sequence[ItemRow], now: int, *, sparklines: bool = True) -> list[Latest]:
    found = store.latest({i.itemid: i.value_type for i in items}) if items else {}
    windows = {it.itemid: (it.value_type, max(0, found[it.itemid][0] - SPARK_WINDOW), found[it.itemid][0])
               for it in items if it.itemid in found and it.value_type in NUMERIC} if sparklines else {}
    recent = store.histories(windows, 400) if windows else {}  # every sparkline in one query
    out = []
    for it in items:
        row = found.get(it.itemid)
        spark: tuple[float, ...] = ()
        previous = None
        if row is not None and it.value_type in NUMERIC:
            if sparklines:
                hist = recent.get(it.itemid, [])
                spark = tuple(float(v) for _, _, v in hist)
                if len(hist) >= 2:
                    previous = hist[-2][2]
        out.append(Latest(it, row[0] if row else None, row[2] if row else None, previous, spark))
    return out


def series(store: Store, items: Sequence[ItemRow], start: int, end: int,
           browse: Browse | None = None) -> tuple[list[charts.Series], str]:
    """The items' data for [start, end]: history, or trends for long ranges, with the thresholds of
    their simple triggers when `browse` is given. Returns (series, source)."""
    trends = charts.use_trends(start, end)
    triggers = browse.triggers_of_items([i.itemid for i in items]) if browse is not None else {}
    out = []
    for it in items:
        s = charts.Series(it.itemid, f"{it.host_name}: {it.name}", it.units)
        for name, expression, _ in triggers.get(it.itemid, [])[:3]:
            v = charts.threshold(expression, it.host, it.key)
            if v is not None:
                s.thresholds = [*s.thresholds, (name, v)]
        if it.value_type in NUMERIC:
            if trends:
                s.trends = store.trends(it.itemid, it.value_type, start - start % 3600, end)
            else:
                s.points = [(c, float(v)) for c, _, v in store.history(it.itemid, it.value_type, start, end,
                                                                        MAX_POINTS)]
        out.append(s)
    return out, "trends" if trends else "history"
