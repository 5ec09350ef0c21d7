"""The value cache as the evaluator's DataSource, over an in-memory store: what it reads from the store,
what it keeps, and that expressions evaluate from it as from the store itself."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pytest
from vigil.server.config.tables import ValueType
from vigil.server.store.base import (
    HistoryRow,
    HousekeepReport,
    LogEntry,
    Retention,
    Store,
    StoreError,
    Trend,
    WriteBatch,
)
from vigil.server.triggers.expression import EvaluationError, evaluate, parse
from vigil.server.triggers.valuecache import CacheError, ValueCache

NOW = 1_790_000_000


class MemoryStore(Store):
    """History in lists; counts the reads the cache makes."""

    def __init__(self) -> None:
        self.rows: dict[int, list[tuple[int, int, Any]]] = {}
        self.reads: list[tuple[int, int, int]] = []
        self.fail = False

    def write(self, batch: WriteBatch) -> None:
        for rows in (batch.floats, batch.uints, batch.strs, batch.texts):
            for itemid, clock, ns, value in rows:
                self.rows.setdefault(itemid, []).append((clock, ns, value))
                self.rows[itemid].sort(key=lambda r: (r[0], r[1]))

    def history(self, itemid: int, value_type: ValueType, start: int, end: int,
                limit: int | None = None) -> list[HistoryRow]:
        if self.fail:
            raise StoreError("the database is away")
        self.reads.append((itemid, start, end))
        return [r for r in self.rows.get(itemid, []) if start <= r[0] <= end][:limit]

    def trends(self, itemid: int, value_type: ValueType, start: int, end: int) -> list[Trend]:
        return [Trend(start - start % 3600, 2, 1.0, 1.5, 2.0)]

    def log_history(self, itemid: int, start: int, end: int, limit: int | None = None) -> list[LogEntry]:
        return []

    def latest(self, items: Mapping[int, ValueType], since: int | None = None) -> dict[int, HistoryRow]:
        return {}

    def rollup_trends(self, now: int) -> int:
        return 0

    def housekeep(self, now: int, retention: Iterable[Retention]) -> HousekeepReport:
        return HousekeepReport()

    def log_positions(self) -> dict[int, tuple[int, int]]:
        return {}

    def sessions(self) -> dict[str, int]:
        return {}

    def prune_sessions(self, before: int) -> int:
        return 0

    def close(self) -> None:
        pass


def batch(*rows: tuple[int, int, float]) -> WriteBatch:
    b = WriteBatch()
    b.floats += [(i, c, 0, v) for i, c, v in rows]
    return b


@pytest.fixture
def setup() -> tuple[MemoryStore, ValueCache, list[float]]:
    store = MemoryStore()
    now = [float(NOW)]
    cache = ValueCache(lambda: store, 1000, lambda: now[0])
    cache.lookup = {("h", "cpu"): (1, 0), ("h", "mem"): (2, 0)}
    return store, cache, now


def test_reads_the_store_once_then_follows_committed_batches(setup: Any) -> None:
    store, cache, now = setup
    store.write(batch((1, NOW - 100, 1.0), (1, NOW - 50, 2.0), (1, NOW - 10, 3.0)))
    assert [v for _, _, v in cache.values(1, 0, NOW, seconds=60)] == [3.0, 2.0]  # newest first
    assert len(store.reads) == 1
    b = batch((1, NOW + 1, 4.0))
    store.write(b)
    cache.add(b)
    assert [v for _, _, v in cache.values(1, 0, NOW + 1, seconds=45)] == [4.0, 3.0]
    assert [v for _, _, v in cache.values(1, 0, NOW + 1, count=2)] == [4.0, 3.0]
    assert len(store.reads) == 1
    # further back than it holds: only the gap is read
    assert [v for _, _, v in cache.values(1, 0, NOW + 1, seconds=200)] == [4.0, 3.0, 2.0, 1.0]
    assert store.reads[-1] == (1, NOW - 198, NOW - 60)  # up to what the first read covered
    # a batch that was already read from the store (committed, still queued) is not doubled
    cache.add(b)
    assert len(cache.values(1, 0, NOW + 1, seconds=200)) == 4


def test_count_reads_back_until_enough_or_nothing_more(setup: Any) -> None:
    store, cache, now = setup
    store.write(batch((1, NOW - 86400 * 3, 7.0), (1, NOW - 5, 8.0)))
    assert [v for _, _, v in cache.values(1, 0, NOW, count=2)] == [8.0, 7.0]
    reads = len(store.reads)
    assert cache.values(2, 0, NOW, count=1) == []  # an item without values: looked for once, far back
    n = len(store.reads)
    assert cache.values(2, 0, NOW, count=1) == [] and len(store.reads) == n
    assert n - reads < 20


def test_trim_keeps_what_triggers_asked_for_and_the_bound_holds(setup: Any) -> None:
    store, cache, now = setup
    cache.values(1, 0, NOW, seconds=10)
    for k in range(300):
        cache.add(batch((1, NOW + k, float(k))))
    now[0] = NOW + 300
    cache.trim()
    kept = cache.values(1, 0, NOW + 300, seconds=10)
    assert [v for _, _, v in kept] == [299.0 - k for k in range(9)]
    assert cache.size <= 10 + 60 + 2  # the period asked for and the headroom, not all 300
    # the whole cache is bounded: items least recently used go first
    small = ValueCache(lambda: store, 50, lambda: now[0])
    small.values(1, 0, NOW, count=100)
    small.values(2, 0, NOW, count=100)
    for itemid in (1, 2):
        b = batch(*[(itemid, NOW + 400 + k, float(itemid)) for k in range(40)])
        store.write(b)
        small.add(b)
    small.trim()
    assert small.size <= 50 and small.evictions == 1
    assert len(small.values(1, 0, NOW + 500, count=40)) == 40  # read back from the store: nothing lost


def test_expressions_evaluate_from_the_cache(setup: Any) -> None:
    store, cache, now = setup
    store.write(batch((1, NOW - 30, 10.0), (1, NOW - 20, 20.0), (1, NOW - 10, 30.0), (2, NOW - 1, 5.0)))
    assert evaluate(parse("avg(/h/cpu,1m)=20 and last(/h/mem)=5"), cache, NOW, {}) == 1
    assert evaluate(parse("max(/h/cpu,#2)>{$LIMIT}"), cache, NOW, {"{$LIMIT}": "25"}) == 1
    assert evaluate(parse("nodata(/h/mem,30s)"), cache, NOW, {}) == 0
    assert evaluate(parse("trendavg(/h/cpu,1h:now/h)"), cache, NOW, {}) == 1.5
    with pytest.raises(EvaluationError):
        evaluate(parse("last(/h/nothere)>1"), cache, NOW, {})
    cache.unsupported[2] = "Value of type string is not suitable"
    with pytest.raises(EvaluationError, match="not supported"):
        evaluate(parse("last(/h/mem)>1"), cache, NOW, {})


def test_store_failure_is_a_cache_error(setup: Any) -> None:
    store, cache, now = setup
    store.fail = True
    with pytest.raises(CacheError, match="database is away"):
        cache.values(1, 0, NOW, seconds=60)
    store.fail = False
    assert cache.values(1, 0, NOW, seconds=60) == []


def test_prefetch_finds_items_without_values_in_one_query(setup: Any) -> None:
    store, cache, now = setup
    store.write(batch((1, NOW - 7200, 5.0), (1, NOW - 3, 6.0)))
    store.latest = lambda items, since=None: {  # type: ignore[method-assign]
        i: store.rows[i][-1] for i in items if store.rows.get(i)}
    cache.prefetch({1: 0, 2: 0})
    assert cache.values(2, 0, NOW, count=1) == [] and store.reads == []  # known empty: no read at all
    assert [v for _, _, v in cache.values(1, 0, NOW, count=1)] == [6.0]
    assert len(store.reads) == 1 and store.reads[0][1] == NOW - 3  # read from its newest value on
    assert [v for _, _, v in cache.values(1, 0, NOW, count=2)] == [6.0, 5.0]
