"""The value cache the trigger engine evaluates from: recent values of trigger items, in memory.

It implements the expression evaluator's DataSource. Per item it keeps a sorted run of values,
complete from `since` on (every committed value with clock >= since is in it): the engine appends
what each committed batch holds, and a request that reaches further back than `since` reads the
gap from the store once (Store.history) and keeps it. What each item keeps follows what its
triggers ask for: the longest period (seconds back from now) and the largest count requested, plus
headroom, so a `last()` keeps a handful of values and an `avg(1h)` an hour's worth.

Memory is bounded by VIGIL_VALUE_CACHE_SIZE values in all: past it the least recently used items
are dropped whole (their next evaluation reads them from the store again).

Used by one thread, the engine's. Nothing here blocks a history writer: batches reach the engine
through its queue.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from vigil.server.config.tables import ValueType
from vigil.server.store.base import Store, StoreError, Trend, WriteBatch
from vigil.server.triggers.functions import ItemInfo

log = logging.getLogger("vigil.triggers.cache")

HEADROOM_SECONDS = 60  # kept beyond the longest period asked for (values arrive while evaluations go on)
HEADROOM_COUNT = 2
COUNT_LOOKBACK_FIRST = 3600  # a count request short of values reads this far back first, then doubling
COUNT_LOOKBACK_MAX = 2 * 365 * 86400  # and gives up there: the item has no more values worth looking for
FAR_FUTURE = 2**31 - 1


class CacheError(RuntimeError):
    """The store could not be read for values the cache does not hold."""


class _Series:
    __slots__ = ("vt", "values", "since", "need_seconds", "need_count")

    def __init__(self, vt: int, since: int) -> None:
        self.vt = vt
        self.values: list[tuple[int, int, Any]] = []  # oldest first
        self.since = since  # every value with clock >= since is in `values`
        self.need_seconds = 0
        self.need_count = 0


class ValueCache:
    """DataSource for the evaluator: item lookup by (host, key), values newest first, trends."""

    def __init__(self, open_store: Callable[[], Store], max_values: int,
                 now: Callable[[], float] = time.time) -> None:
        self._open_store = open_store
        self._store: Store | None = None
        self.max_values = max_values
        self._now = now
        self._series: OrderedDict[int, _Series] = OrderedDict()
        self._total = 0
        # (host, key) -> (itemid, value_type), set by the engine from the configuration cache
        self.lookup: dict[tuple[str, str], tuple[int, int]] = {}
        self.tracked: set[int] = set()  # items some trigger reads: only these are cached
        self.unsupported: dict[int, str] = {}  # items in the not-supported state -> why
        # nodata() is unknown until its period has passed since then (a restart fires no nodata trigger)
        self.started = int(now())
        self.store_reads = 0
        self._grown: set[int] = set()  # items that got values since the last trim
        self._newest: dict[int, int] = {}  # itemid -> clock of its newest value, from prefetch()
        self.evictions = 0

    # --- DataSource ------------------------------------------------------------------------------

    def item(self, host: str, key: str) -> ItemInfo | None:
        found = self.lookup.get((host, key))
        if found is None:
            return None
        return ItemInfo(found[0], found[1], self.unsupported.get(found[0]), self.started)

    def values(self, itemid: int, value_type: int, end: int, seconds: int | None = None,
               count: int | None = None) -> list[tuple[int, int, Any]]:
        """(clock, ns, value) newest first: clock in (end - seconds, end], or the newest `count`
        with clock <= end (both given: the newest `count` of those in the period)."""
        s = self._get(itemid, value_type)
        now = int(self._now())
        if seconds is not None:
            start = end - seconds + 1
            s.need_seconds = max(s.need_seconds, now - start)
            self._cover(itemid, s, start)
            lst = s.values
            lo = bisect.bisect_left(lst, start, key=_clock)
            hi = bisect.bisect_right(lst, end, key=_clock)
            out = lst[lo:hi]
            out.reverse()
            return out[:count] if count is not None else out
        if count is None:
            raise ValueError("values() needs seconds or count")
        s.need_count = max(s.need_count, count)
        span = COUNT_LOOKBACK_FIRST
        hint = self._newest.pop(itemid, None)
        while True:
            hi = bisect.bisect_right(s.values, end, key=_clock)
            if hi >= count or s.since <= max(0, now - COUNT_LOOKBACK_MAX):
                break
            if hint is not None and hint <= end and s.since == FAR_FUTURE:
                target = hint - (COUNT_LOOKBACK_FIRST if count > 1 else 0)
            else:
                target = max(0, min(s.since, end) - span)
            if target <= now - COUNT_LOOKBACK_MAX:
                target = max(0, now - COUNT_LOOKBACK_MAX)
            self._cover(itemid, s, target)
            span *= 2
        out = s.values[max(0, hi - count):hi]
        out.reverse()
        return out

    def trends(self, itemid: int, value_type: int, start: int, end: int) -> list[Trend]:
        try:
            return self._store_().trends(itemid, ValueType(value_type), start, end)
        except StoreError as e:
            self._drop_store()
            raise CacheError(f"cannot read the trends of item {itemid}: {e}") from None

    PREFETCH_CHUNK = 2000

    def prefetch(self, items: dict[int, int]) -> None:
        """Learn, in a few queries for all of them, which items have no value at all (their series
        starts complete and empty) and where the others' newest value is (a count request then reads
        from there at once instead of searching back)."""
        now = int(self._now())
        since = max(0, now - COUNT_LOOKBACK_MAX)
        todo = [(i, vt) for i, vt in items.items() if i not in self._series]
        for k in range(0, len(todo), self.PREFETCH_CHUNK):
            chunk = dict(todo[k:k + self.PREFETCH_CHUNK])
            try:
                newest = self._store_().latest({i: ValueType(vt) for i, vt in chunk.items()}, since)
            except StoreError as e:
                self._drop_store()
                log.warning("cannot read the trigger items' newest values (read one by one instead): %s", e)
                return
            self.store_reads += 1
            for itemid, vt in chunk.items():
                row = newest.get(itemid)
                if row is None:
                    self._series[itemid] = _Series(vt, since)
                else:
                    self._newest[itemid] = row[0]

    # --- fed by the engine -----------------------------------------------------------------------

    def add(self, batch: WriteBatch) -> set[int]:
        """Take a committed batch's values; returns the cached items it held values of (only those
        grow, and most values are of items no trigger reads: they cost one dict lookup)."""
        seen: set[int] = set()
        series = self._series
        if not series:
            return seen
        for rows in (batch.floats, batch.uints, batch.strs, batch.texts):
            for row in rows:
                s = series.get(row[0])
                if s is not None:
                    seen.add(row[0])
                    self._insert(s, row[1], row[2], row[3])
        for row in batch.logs:
            s = series.get(row[0])
            if s is not None:
                seen.add(row[0])
                self._insert(s, row[1], row[2], row[6])
        self._grown |= seen
        return seen

    def clear(self) -> None:
        """Forget every value (after values were missed): each item is read from the store again."""
        self._series.clear()
        self._newest.clear()
        self._total = 0

    def forget(self, keep: set[int]) -> None:
        """Drop the items not in `keep` (no trigger reads them any more)."""
        for itemid in [i for i in self._series if i not in keep]:
            self._total -= len(self._series.pop(itemid).values)

    def trim(self) -> None:
        """Keep per item what its triggers asked for, and the whole within max_values.

        Only items that got values since the last trim are looked at (the others cannot have grown):
        with thousands of items a trim stays well under a millisecond."""
        now = int(self._now())
        grown, self._grown = self._grown, set()
        for itemid in grown:
            s = self._series.get(itemid)
            if s is None:
                continue
            lst = s.values
            keep_from = now - s.need_seconds - HEADROOM_SECONDS if s.need_seconds else FAR_FUTURE
            k = bisect.bisect_left(lst, keep_from, key=_clock)
            k = min(k, max(0, len(lst) - s.need_count - HEADROOM_COUNT))
            if k > 0:
                cut = lst[k][0] if k < len(lst) else now
                k = bisect.bisect_left(lst, cut, key=_clock)
                if k > 0:
                    del lst[:k]
                    self._total -= k
                    s.since = max(s.since, cut)
        while self._total > self.max_values and len(self._series) > 1:
            _, s = self._series.popitem(last=False)
            self._total -= len(s.values)
            self.evictions += 1

    @property
    def size(self) -> int:
        return self._total

    def close(self) -> None:
        self._drop_store()

    # --- inside ----------------------------------------------------------------------------------

    def _get(self, itemid: int, vt: int) -> _Series:
        s = self._series.get(itemid)
        if s is None or s.vt != vt:
            if s is not None:
                self._total -= len(s.values)
            s = _Series(vt, FAR_FUTURE)
            self._series[itemid] = s
        else:
            self._series.move_to_end(itemid)
        return s

    def _cover(self, itemid: int, s: _Series, start: int) -> None:
        """Make the series complete from `start` on, reading what it lacks from the store."""
        start = max(0, start)
        if s.since <= start:
            return
        until = s.since - 1 if s.since < FAR_FUTURE else FAR_FUTURE
        try:
            rows = self._store_().history(itemid, ValueType(s.vt), start, until)
        except StoreError as e:
            self._drop_store()
            raise CacheError(f"cannot read the values of item {itemid}: {e}") from None
        self.store_reads += 1
        if s.since == FAR_FUTURE:
            old, s.values = s.values, list(rows)
            self._total += len(rows)
            for clock, ns, value in old:  # values that came while the store was read (not yet there)
                self._total -= 1
                self._insert(s, clock, ns, value)
        else:
            s.values[:0] = rows
            self._total += len(rows)
        s.since = start
        self._grown.add(itemid)

    def _insert(self, s: _Series, clock: int, ns: int, value: Any) -> None:
        if clock < s.since and s.since != FAR_FUTURE:
            return  # before what the series covers: a later read from the store finds it
        lst = s.values
        if not lst or (clock, ns) > (lst[-1][0], lst[-1][1]):
            lst.append((clock, ns, value))
        else:
            k = bisect.bisect_left(lst, (clock, ns), key=_stamp)
            j = k
            while j < len(lst) and lst[j][0] == clock and lst[j][1] == ns:
                if lst[j][2] == value:
                    return  # already there: it was read from the store before its batch came through
                j += 1
            lst.insert(j, (clock, ns, value))
        self._total += 1

    def _store_(self) -> Store:
        if self._store is None:
            self._store = self._open_store()
        return self._store

    def _drop_store(self) -> None:
        if self._store is not None:
            try:
                self._store.close()
            except Exception as e:  # already broken: nothing more to do with it
                log.debug("closing the value cache's store: %s", e)
            self._store = None


def _clock(row: tuple[int, int, Any]) -> int:
    return row[0]


def _stamp(row: tuple[int, int, Any]) -> tuple[int, int]:
    return row[0], row[1]
