"""Calculated and aggregate items: the item's formula (`params`), in trigger-function syntax, evaluated
at the item's interval by the trigger code (vigil.server.triggers.expression, parse(calculated=True)).

`last(//net.if.in[eth0])+last(//net.if.out[eth0])` reads the item's own host (`//key`), `avg(/web1/
key,1h)` another host's item; `avg(last_foreach(/*/vfs.fs.size[/,pused]?[group="Linux servers"]))`
aggregates the items an item filter selects: any host (`*`) or one, `*` for a key parameter, host
group and item tag conditions. Values are read from the store (history, trends), so they are what
ingest committed, whoever sent them. A formula whose value is unknown (an item missing or not
supported, no data in the period, division by zero) makes the item not supported, saying why.

The store and the configuration are read on one thread of the poller's own (they block); the item
index (hosts, keys, groups, tags) is read again when the configuration version changes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from vigil.server.config.repo import CalcItem, ConfigRepo, PollItem
from vigil.server.config.tables import ValueType
from vigil.server.pollers import NotSupported
from vigil.server.store.base import Store, StoreError, Trend
from vigil.server.triggers.expression import (
    EvaluationError,
    Expression,
    ExpressionError,
    Filter,
    ItemInfo,
    evaluate,
    filter_matches,
    key_matches,
    parse,
)

COUNT_LOOKBACK_FIRST = 3600
COUNT_LOOKBACK_MAX = 2 * 365 * 86400
INDEX_REFRESH = 1.0  # seconds between looks at the configuration version


class Index:
    """The items a formula may read: by (host, key), and by key name for item filters."""

    def __init__(self, rows: list[CalcItem]) -> None:
        self.by_key = {(r.host, r.key): r for r in rows}
        self.by_name: dict[str, list[CalcItem]] = {}
        for r in rows:
            self.by_name.setdefault(r.key.split("[", 1)[0], []).append(r)


class Source:
    """The evaluator's DataSource for one calculated item: `//key` is `host`'s; values from the store."""

    def __init__(self, store: Store, index: Index, host: str) -> None:
        self.store, self.index, self.host = store, index, host

    @staticmethod
    def _info(r: CalcItem) -> ItemInfo:
        return ItemInfo(r.itemid, r.value_type, r.error)

    def item(self, host: str, key: str) -> ItemInfo | None:
        r = self.index.by_key.get((host or self.host, key))
        return None if r is None else self._info(r)

    def select(self, host: str, key: str, flt: Filter | None) -> list[tuple[str, ItemInfo]]:
        out = []
        for r in self.index.by_name.get(key.split("[", 1)[0], ()):
            if (host == "*" or r.host == (host or self.host)) and key_matches(key, r.key) and \
                    filter_matches(flt, r.groups, r.tags):
                out.append((f"/{r.host}/{r.key}", self._info(r)))
        return out

    def values(self, itemid: int, value_type: int, end: int, seconds: int | None = None,
               count: int | None = None) -> list[tuple[int, int, Any]]:
        vt = ValueType(value_type)
        try:
            if seconds is not None:
                rows = self.store.history(itemid, vt, end - seconds + 1, end)
                rows.reverse()
                return rows[:count] if count is not None else rows
            assert count is not None
            if count == 1:
                row = self.store.latest({itemid: vt}).get(itemid)
                if row is not None and row[0] <= end:
                    return [row]
            span = COUNT_LOOKBACK_FIRST
            while True:
                rows = self.store.history(itemid, vt, max(0, end - span), end)
                if len(rows) >= count or span >= COUNT_LOOKBACK_MAX:
                    rows.reverse()
                    return rows[:count]
                span *= 4
        except StoreError as e:
            raise EvaluationError(f"cannot read the values of item {itemid}: {e}") from None

    def trends(self, itemid: int, value_type: int, start: int, end: int) -> list[Trend]:
        try:
            return self.store.trends(itemid, ValueType(value_type), start, end)
        except StoreError as e:
            raise EvaluationError(f"cannot read the trends of item {itemid}: {e}") from None


class CalculatedPoller:
    """Calculated items for the scheduler. `repo` and `open_store` are used on the poller's thread only."""

    def __init__(self, repo: ConfigRepo | None = None, open_store: Callable[[], Store] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._repo = repo
        self._open_store = open_store
        self.clock = clock
        self._store: Store | None = None
        self._index: Index | None = None
        self._version = -1
        self._checked = 0.0
        self._parsed: dict[str, Expression | ExpressionError] = {}
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="calculated")

    def bind(self, repo: ConfigRepo) -> None:
        """The scheduler's configuration; the history is read from the same database."""
        if self._repo is None:
            self._repo = repo

    async def __call__(self, item: PollItem, timeout: float) -> str:
        return await asyncio.get_running_loop().run_in_executor(self._pool, self.evaluate, item)

    def evaluate(self, item: PollItem) -> str:
        """The item's value as text (its type's form); NotSupported with the reason when unknown."""
        expr = self._parsed.get(item.poll.params)
        if expr is None:
            try:
                expr = parse(item.poll.params, calculated=True)
            except ExpressionError as e:
                expr = e
            if len(self._parsed) > 10_000:
                self._parsed.clear()
            self._parsed[item.poll.params] = expr
        if isinstance(expr, ExpressionError):
            raise NotSupported(f"Invalid formula: {expr}")
        store, index = self._state()
        try:
            v = evaluate(expr, Source(store, index, item.host), int(self.clock()), {})
        except EvaluationError as e:
            raise NotSupported(f"Cannot evaluate formula: {e}") from None
        if item.value_type == ValueType.UNSIGNED:
            if v < 0:
                raise NotSupported(f"Cannot evaluate formula: the value {v:g} is negative and the item is unsigned")
            return str(int(v))
        return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)

    def _state(self) -> tuple[Store, Index]:
        if self._repo is None:
            raise NotSupported("Calculated items need the scheduler's configuration (CalculatedPoller.bind)")
        if self._store is None:
            if self._open_store is None:
                from vigil.server.store import open_store

                u = self._repo.engine.url
                url = u.set(drivername=u.get_backend_name()).render_as_string(hide_password=False)
                self._open_store = lambda: open_store(url)
            try:
                self._store = self._open_store()
            except StoreError as e:
                raise NotSupported(f"Cannot open the history store for the formula: {e}") from None
        now = time.monotonic()
        if self._index is None or now - self._checked >= INDEX_REFRESH:
            self._checked = now
            try:
                version = self._repo.version()
                if version != self._version or self._index is None:
                    self._index, self._version = Index(self._repo.calc_items()), version
            except Exception as e:  # the database is away: keep the index we have, if any
                if self._index is None:
                    raise NotSupported(f"Cannot read the configuration for the formula: {e}") from None
        assert self._index is not None
        return self._store, self._index

    async def close(self) -> None:
        def shut() -> None:
            if self._store is not None:
                self._store.close()
                self._store = None
        await asyncio.get_running_loop().run_in_executor(self._pool, shut)
        self._pool.shutdown(wait=False)

