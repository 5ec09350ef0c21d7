"""Item retention periods: Zabbix durations ("31d", "1h", "3600", "1w", "0") to seconds.

Zabbix's bounds apply: history is kept 0 (nothing) or 1 hour to 25 years, trends 0 or 1 day to 25
years. User macros in a period are resolved before this point; an unresolved one is an error.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from server.config.tables import ValueType
from server.store.base import Retention

log = logging.getLogger("vigil.store.retention")

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"([0-9]{1,12})([smhdw]?)")
YEARS_25 = 25 * 365 * 86400
HISTORY_MIN = 3600
TRENDS_MIN = 86400


class RetentionError(ValueError):
    """A retention period that is not a duration or lies outside Zabbix's bounds."""


def parse_duration(text: str | int, what: str = "duration") -> int:
    """Seconds in a Zabbix duration: digits with an optional s, m, h, d or w suffix."""
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise RetentionError(f"{what}: expected a duration like 3600, 1h, 31d or 1w, got {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise RetentionError(f"{what}: a duration cannot be negative, got {text}")
        return text
    m = _DURATION.fullmatch(text.strip())
    if m is None:
        raise RetentionError(f"{what}: expected a duration like 3600, 1h, 31d or 1w, got {text!r}")
    return int(m[1]) * _UNITS[m[2]]


def _bounded(text: str | int, what: str, lo: int) -> int:
    s = parse_duration(text, what)
    if s != 0 and not lo <= s <= YEARS_25:
        raise RetentionError(f"{what}: {text!r} is outside 0 or {lo // 3600}h..25y")
    return s


def history_seconds(text: str | int, what: str = "history") -> int:
    return _bounded(text, what, HISTORY_MIN)


def trends_seconds(text: str | int, what: str = "trends") -> int:
    return _bounded(text, what, TRENDS_MIN)


def from_items(rows: Iterable[tuple[int, int, str, str]]) -> list[Retention]:
    """(itemid, value_type, history, trends) rows, as in the items table → Retention per item.

    An item whose periods do not parse is left out (its data is kept) and logged, so one bad item
    cannot stop the housekeeper or make it delete what it should keep.
    """
    out: list[Retention] = []
    for itemid, value_type, history, trends in rows:
        try:
            vt = ValueType(value_type)
            h = history_seconds(history, f"item {itemid} history")
            t = trends_seconds(trends, f"item {itemid} trends") if vt in (ValueType.FLOAT, ValueType.UNSIGNED) else 0
        except ValueError as e:
            log.warning("keeping all data of item %d: %s", itemid, e)
            continue
        out.append(Retention(itemid, vt, h, t))
    return out
