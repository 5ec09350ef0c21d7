"""A small in-memory DataSource for the expression tests: what the engine's value cache will implement."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vigil.server.store.base import Trend
from vigil.server.triggers.functions import ItemInfo


@dataclass
class MemorySource:
    items: dict[tuple[str, str], ItemInfo] = field(default_factory=dict)
    history: dict[int, list[tuple[int, int, Any]]] = field(default_factory=dict)
    trend_rows: dict[int, list[Trend]] = field(default_factory=dict)
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def add(self, host: str, key: str, value_type: int, values: list[tuple[int, Any]] = (),  # type: ignore[assignment]
            **info: Any) -> int:
        itemid = len(self.items) + 1
        self.items[(host, key)] = ItemInfo(itemid, value_type, **info)
        self.history[itemid] = [(clock, 0, v) for clock, v in values]
        return itemid

    def item(self, host: str, key: str) -> ItemInfo | None:
        return self.items.get((host, key))

    def values(self, itemid: int, value_type: int, end: int, seconds: int | None = None,
               count: int | None = None) -> list[tuple[int, int, Any]]:
        self.calls.append(("values", itemid, end, seconds, count))
        rows = sorted((r for r in self.history.get(itemid, []) if r[0] <= end), key=lambda r: (r[0], r[1]),
                      reverse=True)
        if seconds is not None:
            rows = [r for r in rows if r[0] > end - seconds]
        if count is not None:
            rows = rows[:count]
        return rows

    def trends(self, itemid: int, value_type: int, start: int, end: int) -> list[Trend]:
        self.calls.append(("trends", itemid, start, end))
        return [t for t in self.trend_rows.get(itemid, []) if start <= t.clock <= end]
