"""Item retention periods: Zabbix durations ("31d", "1h", "3600", "1w", "0") to seconds.

Zabbix's bounds apply: history is kept 0 (nothing) or 1 hour to 25 years, trends 0 or 1 day to 25
years. User macros in a period are resolved before this point (ConfigRepo.retention_rows); an item
whose period is still not a duration keeps all its data.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from vigil.server.config.durations import DurationError, history_seconds, seconds, trends_seconds
from vigil.server.config.tables import ValueType
from vigil.server.store.base import Retention

log = logging.getLogger("vigil.store.retention")

RetentionError = DurationError
parse_duration = seconds


def from_items(rows: Iterable[tuple[int, int, str, str]]) -> list[Retention]:
    """(itemid, value_type, history, trends) rows, with user macros resolved → Retention per item.

    An item whose periods do not parse (an unresolved {$MACRO}, or a macro whose value is not a
    duration) is logged and listed as kept for ever, so one bad item cannot stop the housekeeper or
    make it delete what it should keep, on either store. One with an unknown value type is left out.
    """
    out: list[Retention] = []
    for itemid, value_type, history, trends in rows:
        try:
            vt = ValueType(value_type)
        except ValueError:
            log.warning("item %d has value type %r, not 0-4: left out of housekeeping", itemid, value_type)
            continue
        try:
            h = history_seconds(history, f"item {itemid} history")
            numeric = vt in (ValueType.FLOAT, ValueType.UNSIGNED)
            t = trends_seconds(trends, f"item {itemid} trends") if numeric else 0
        except ValueError as e:
            log.warning("keeping all data of item %d: %s", itemid, e)
            out.append(Retention.keep(itemid, vt))
            continue
        out.append(Retention(itemid, vt, h, t))
    return out
