"""Hourly trend maths with no I/O: hour buckets, aggregating values, merging aggregates.

Trends follow Zabbix: one row per item and hour (clock = start of the hour) with the count, minimum,
average and maximum of the values whose clock falls in [hour, hour + 3600). For unsigned items the
average is an integer, the sum divided by the count rounded down, computed exactly.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

HOUR = 3600
DAY = 86400


def hour_of(clock: int) -> int:
    """Start of the hour that holds `clock`."""
    return clock - clock % HOUR


def day_of(clock: int) -> int:
    """Start of the UTC day that holds `clock`."""
    return clock - clock % DAY


def buckets(clocks: Iterable[int], size: int) -> set[int]:
    """Starts of the `size`-second buckets the clocks fall in."""
    return {c - c % size for c in clocks}


def span_buckets(lo: int, hi: int, clocks: Iterable[int], size: int) -> set[int]:
    """Like buckets(), but without looking at every clock when lo..hi lies within two buckets."""
    a, b = lo - lo % size, hi - hi % size
    if b - a <= size:
        return {a, b}
    return buckets(clocks, size)


def hour_complete(hour: int, now: int) -> bool:
    return hour + HOUR <= now


@dataclass(slots=True)
class Aggregate:
    """Count, minimum, maximum and sum of some values: what an hour's trend is made of."""

    num: int
    min: float | int
    max: float | int
    sum: float | int

    @classmethod
    def of(cls, values: Iterable[float | int]) -> Aggregate | None:
        agg: Aggregate | None = None
        for v in values:
            if agg is None:
                agg = cls(1, v, v, v)
            else:
                agg.add(v)
        return agg

    def add(self, v: float | int) -> None:
        self.num += 1
        if v < self.min:
            self.min = v
        if v > self.max:
            self.max = v
        self.sum += v

    def merge(self, other: Aggregate) -> Aggregate:
        """The aggregate of both sets of values (e.g. two halves of an hour)."""
        return Aggregate(self.num + other.num, min(self.min, other.min), max(self.max, other.max),
                         self.sum + other.sum)

    def avg_float(self) -> float:
        return self.sum / self.num

    def avg_uint(self) -> int:
        return int(self.sum) // self.num


def aggregate_by_item(rows: Iterable[tuple[int, float | int]]) -> dict[int, Aggregate]:
    """(itemid, value) pairs → one Aggregate per item."""
    out: dict[int, Aggregate] = {}
    for itemid, v in rows:
        agg = out.get(itemid)
        if agg is None:
            out[itemid] = Aggregate(1, v, v, v)
        else:
            agg.add(v)
    return out


def merge_trends(a: tuple[int, float, float, float], b: tuple[int, float, float, float]) -> tuple[
        int, float, float, float]:
    """Two (num, min, avg, max) trend rows of the same item and period → one, the average weighted."""
    num = a[0] + b[0]
    if num == 0:
        raise ValueError("merge_trends: both trends have num=0")
    return num, min(a[1], b[1]), (a[2] * a[0] + b[2] * b[0]) / num, max(a[3], b[3])
