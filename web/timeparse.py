"""Zabbix's time-picker syntax, pure: `now`, `now-1h`, `now-1d/d`, `now/w`, unix seconds, ISO dates.

`/u` rounds down to the start of the unit (for a range's end, up to its last second), as the
Zabbix time picker does: `from=now-1d/d&to=now-1d/d` is the whole of yesterday. Times are UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "M": 0, "y": 0}
_REL = re.compile(r"now((?:[+-]\d{1,6}[smhdwMy])*)(?:/([smhdwMy]))?")
_STEP = re.compile(r"([+-])(\d{1,6})([smhdwMy])")


class TimeError(ValueError):
    pass


def _add_months(dt: datetime, n: int) -> datetime:
    y, m = divmod(dt.month - 1 + n, 12)
    year = dt.year + y
    if not 1970 <= year <= 9999:
        raise TimeError("out of range")
    day = min(dt.day, [31, 29 if year % 4 == 0 and (year % 100 or year % 400 == 0) else 28, 31, 30, 31, 30,
                       31, 31, 30, 31, 30, 31][m])
    return dt.replace(year=year, month=m + 1, day=day)


def _floor(dt: datetime, unit: str) -> datetime:
    if unit == "s":
        return dt.replace(microsecond=0)
    if unit == "m":
        return dt.replace(second=0, microsecond=0)
    if unit == "h":
        return dt.replace(minute=0, second=0, microsecond=0)
    d = dt.replace(hour=0, minute=0, second=0, microsecond=0)
    if unit == "d":
        return d
    if unit == "w":
        return d - timedelta(days=d.weekday())
    if unit == "M":
        return d.replace(day=1)
    return d.replace(month=1, day=1)


def _ceil(dt: datetime, unit: str) -> datetime:
    start = _floor(dt, unit)
    if unit == "M":
        nxt = _add_months(start, 1)
    elif unit == "y":
        nxt = start.replace(year=start.year + 1)
    else:
        nxt = start + timedelta(seconds=UNITS[unit])
    return nxt - timedelta(seconds=1)


def parse_time(text: str, now: float, *, end: bool = False) -> int:
    s = text.strip()
    if s.isdigit():
        v = int(s)
        if v > 2**31:
            raise TimeError(f"{s} is past 2038; use unix seconds or now-1h")
        return v
    m = _REL.fullmatch(s)
    if m:
        try:
            dt = datetime.fromtimestamp(int(now), UTC)
            for sign, n, unit in _STEP.findall(m.group(1)):
                k = int(n) if sign == "+" else -int(n)
                if unit == "M":
                    dt = _add_months(dt, k)
                elif unit == "y":
                    dt = _add_months(dt, 12 * k)
                else:
                    dt = dt + timedelta(seconds=k * UNITS[unit])
            if m.group(2):
                dt = _ceil(dt, m.group(2)) if end else _floor(dt, m.group(2))
        except (OverflowError, ValueError):
            raise TimeError(f"{text[:40]!r} is out of range") from None
        return max(0, int(dt.timestamp()))
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise TimeError(f"cannot read {text[:40]!r}: use now, now-1h, now-1d/d, unix seconds "
                        "or 2026-11-22 10:00") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return max(0, int(dt.timestamp()))
