"""Hourly trend maths with no I/O: hour buckets, aggregating values, merging aggregates.

Trends follow Zabbix: one row per item and hour (clock = start of the hour) with the count, minimum,
average and maximum of the values whose clock falls in [hour, hour + 3600). For unsigned items the
average is an integer, the sum divided by the count rounded down, computed exactly.
"""

from __future__ import annotations

import secrets
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


def claim_token() -> int:
    """A roll-up's mark on an hour it is recomputing (trend_rollup.token): another roll-up that
    takes the hour over replaces it, and the first then leaves the hour's trends to it."""
    return secrets.randbits(62) + 1


# Float averages must not overflow (1e308 + 1e308 is past the float range) nor lose subnormals, and
# must be computed the same way on both stores. Values above BIG are summed scaled by SCALE (a power
# of two, so scaling is exact), the rest as they are: neither sum can overflow for fewer than 2**63
# values, and for ordinary values the average is the plain sum over the count. The stores sum in
# SQL and finish with float_mean() here.
BIG = 2.0**900
SCALE = 2.0**-64


def float_mean(num: int, lo: float, hi: float, big: float, small: float) -> float:
    """The average of `num` values from their min, max, scaled sum of big values and sum of the rest."""
    if num <= 0:
        raise ValueError("float_mean: no values")
    part = 0.0
    if big:
        bound = max(abs(lo), abs(hi)) * SCALE
        part = min(max(big / num, -bound), bound) / SCALE  # |part| <= max |value|: no overflow
    return min(max(part + small / num, lo), hi)


def split_sum(value: float) -> tuple[float, float]:
    """A float value's share of (big, small): the two sums float_mean() takes."""
    return (value * SCALE, 0.0) if abs(value) > BIG else (0.0, value)


@dataclass(slots=True)
class Aggregate:
    """Count, minimum, maximum and sum of some values: what an hour's trend is made of.

    Integers are summed exactly in `sum`; floats above BIG go scaled into `big` (see float_mean).
    """

    num: int
    min: float | int
    max: float | int
    sum: float | int
    big: float = 0.0

    @classmethod
    def of(cls, values: Iterable[float | int]) -> Aggregate | None:
        agg: Aggregate | None = None
        for v in values:
            if agg is None:
                agg = cls.first(v)
            else:
                agg.add(v)
        return agg

    @classmethod
    def first(cls, v: float | int) -> Aggregate:
        if isinstance(v, float) and abs(v) > BIG:
            return cls(1, v, v, 0.0, v * SCALE)
        return cls(1, v, v, v)

    def add(self, v: float | int) -> None:
        self.num += 1
        if v < self.min:
            self.min = v
        if v > self.max:
            self.max = v
        if isinstance(v, float) and abs(v) > BIG:
            self.big += v * SCALE
        else:
            self.sum += v

    def merge(self, other: Aggregate) -> Aggregate:
        """The aggregate of both sets of values (e.g. two halves of an hour)."""
        return Aggregate(self.num + other.num, min(self.min, other.min), max(self.max, other.max),
                         self.sum + other.sum, self.big + other.big)

    def avg_float(self) -> float:
        return float_mean(self.num, float(self.min), float(self.max), self.big, float(self.sum))

    def avg_uint(self) -> int:
        return int(self.sum) // self.num


def aggregate_by_item(rows: Iterable[tuple[int, float | int]]) -> dict[int, Aggregate]:
    """(itemid, value) pairs → one Aggregate per item."""
    out: dict[int, Aggregate] = {}
    for itemid, v in rows:
        agg = out.get(itemid)
        if agg is None:
            out[itemid] = Aggregate.first(v)
        else:
            agg.add(v)
    return out


TrendRow = tuple[int, float, float, float]  # num, min, avg, max


def merge_trends(a: TrendRow, b: TrendRow) -> TrendRow:
    """Two (num, min, avg, max) float trend rows of the same item and period → one, the average weighted.

    Written so that it cannot overflow: for ordinary averages (avg * num + avg * num) / num, as
    Zabbix does; for huge ones each average weighted by its share of the count, kept within min..max.
    """
    num = a[0] + b[0]
    if num == 0:
        raise ValueError("merge_trends: both trends have num=0")
    lo, hi = min(a[1], b[1]), max(a[3], b[3])
    if abs(a[2]) <= BIG and abs(b[2]) <= BIG:
        avg = (a[2] * a[0] + b[2] * b[0]) / num
    else:
        avg = a[2] * (a[0] / num) + b[2] * (b[0] / num)
    return num, lo, min(max(avg, lo), hi), hi


def merge_uint_trend(old: tuple[int, int, int, int], new: Aggregate) -> tuple[int, int, int, int]:
    """An unsigned (num, min, avg, max) trend row and an Aggregate of late values → one row.

    Exact integers: the stored average times its count (what is left of the hour's sum) plus the
    late values' sum, over the new count, rounded down.
    """
    num = old[0] + new.num
    return num, min(old[1], int(new.min)), (old[2] * old[0] + int(new.sum)) // num, max(old[3], int(new.max))
