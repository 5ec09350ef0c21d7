"""Zabbix durations: "30", "30s", "5m", "1h", "1d", "1w" → seconds, and retention bounds."""

from __future__ import annotations

import re

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"([0-9]{1,12})([smhdw]?)")
YEARS_25 = 25 * 365 * 86400
HISTORY_MIN = 3600  # Zabbix keeps history 0 (not at all) or 1 hour to 25 years
TRENDS_MIN = 86400  # and trends 0 or 1 day to 25 years


class DurationError(ValueError):
    """Not a duration, or outside its bounds; the message names the field and the text."""


def seconds(text: str | int, what: str = "duration") -> int:
    """Seconds in a Zabbix duration: digits with an optional s, m, h, d or w suffix."""
    if isinstance(text, bool) or not isinstance(text, str | int):
        raise DurationError(f"{what}: expected a duration like 3600, 1h, 31d or 1w, got {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise DurationError(f"{what}: a duration cannot be negative, got {text}")
        return text
    m = _DURATION.fullmatch(text.strip())
    if m is None:
        raise DurationError(f"{what}: expected a duration like 3600, 1h, 31d or 1w, got {text!r}")
    return int(m[1]) * _UNITS[m[2]]


def bounded(text: str | int, what: str, lo: int) -> int:
    s = seconds(text, what)
    if s != 0 and not lo <= s <= YEARS_25:
        raise DurationError(f"{what}: {text!r} is outside 0 or {lo // 3600}h..25y")
    return s


def history_seconds(text: str | int, what: str = "history") -> int:
    return bounded(text, what, HISTORY_MIN)


def trends_seconds(text: str | int, what: str = "trends") -> int:
    return bounded(text, what, TRENDS_MIN)
