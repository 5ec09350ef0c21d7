"""Would a trigger expression fire now? Evaluate it once against the stored values, for the trigger form.

The same parser and evaluator as the engine, reading history straight from a Store instead of the
engine's value cache; each function call's own value is reported too, so the form can show why.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vigil.server.config.tables import ValueType
from vigil.server.store.base import Store, StoreError, Trend
from vigil.server.triggers import expression as ex
from vigil.server.triggers import functions as fn

LOOKBACK_MAX = 2 * 365 * 86400


@dataclass(frozen=True, slots=True)
class CallValue:
    text: str  # the function call as written, e.g. last(/web-01/cpu.util)
    value: str  # its value, or '' when unknown
    error: str = ""  # why it is unknown


@dataclass(frozen=True, slots=True)
class Preview:
    value: int | None  # 1 would fire (PROBLEM), 0 would not (OK), None unknown
    error: str = ""  # why the value is unknown, or the parse error
    error_pos: int | None = None  # where a parse error is, 0-based
    calls: tuple[CallValue, ...] = field(default=())

    @property
    def label(self) -> str:
        return {1: "PROBLEM", 0: "OK"}.get(self.value, "UNKNOWN") if self.value is not None else "UNKNOWN"


class StoreData:
    """The evaluator's DataSource over a Store: item lookup from a prepared map, values from history."""

    def __init__(self, store: Store, items: Mapping[tuple[str, str], tuple[int, int, str]]) -> None:
        self.store = store
        self.items = items  # (host, key) -> (itemid, value_type, not-supported error or '')

    def item(self, host: str, key: str) -> fn.ItemInfo | None:
        found = self.items.get((host, key))
        if found is None:
            return None
        return fn.ItemInfo(found[0], found[1], found[2] or None, None)

    def values(self, itemid: int, value_type: int, end: int, seconds: int | None = None,
               count: int | None = None) -> list[tuple[int, int, Any]]:
        vt = ValueType(value_type)
        if seconds is not None:
            rows = self.store.history(itemid, vt, end - seconds + 1, end)
            rows.reverse()
            return rows[:count] if count is not None else rows
        if count is None:
            raise ValueError("values() needs seconds or count")
        if self.store.latest({itemid: vt}).get(itemid) is None:
            return []
        span = 3600
        while True:
            start = max(0, end - span)
            rows = self.store.history(itemid, vt, start, end)
            if len(rows) >= count or start == 0 or span >= LOOKBACK_MAX:
                out = rows[-count:]
                out.reverse()
                return out
            span *= 4

    def trends(self, itemid: int, value_type: int, start: int, end: int) -> list[Trend]:
        return self.store.trends(itemid, ValueType(value_type), start, end)


def preview(text: str, host: str, store: Store,
            lookup: Callable[[set[tuple[str, str]]], Mapping[tuple[str, str], tuple[int, int, str]]],
            macros: Mapping[str, str], now: int | None = None) -> Preview:
    """Parse and evaluate `text` for a trigger of `host` ({HOST.HOST} in references means it).

    `lookup(refs)` gives (itemid, value_type, error) of the (host, key) pairs that exist."""
    now = int(time.time()) if now is None else now
    try:
        expr = ex.parse(text)
    except ex.ExpressionError as e:
        return Preview(None, e.message, e.pos)
    if "{HOST.HOST}" in text:
        expr = ex.parse(expr.rename_host("{HOST.HOST}", host))
    data = StoreData(store, lookup(expr.item_refs()))
    calls = []
    for f in expr.functions:
        one = ex.parse(str(f))
        try:
            v = ex.evaluate(one, data, now, macros)
            calls.append(CallValue(str(f), _num(v)))
        except (fn.EvaluationError, StoreError) as e:
            calls.append(CallValue(str(f), "", str(e)))
        except ex.ExpressionError as e:  # a call whose text does not parse alone (macros in it): skip
            calls.append(CallValue(str(f), "", e.message))
    try:
        value = ex.evaluate(expr, data, now, macros)
    except (fn.EvaluationError, StoreError) as e:
        return Preview(None, str(e), None, tuple(calls))
    return Preview(1 if value != 0 else 0, "", None, tuple(calls))


def _num(v: float) -> str:
    if v == int(v) and abs(v) < 1e15:
        return str(int(v))
    return f"{v:.6g}"
