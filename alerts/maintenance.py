"""Is a host in maintenance at time t: Zabbix's one-time, daily, weekly and monthly periods. Pure.

A maintenance is active between its active_since (inclusive) and active_till (exclusive), during
one of its periods. Periods are in the server's local time (a `tz` may be passed instead), as
Zabbix's are; a period may run past midnight into the next days.

- one time only (type 0): from start_date for `period` seconds.
- daily (2): every `every` days counted from the day of active_since, at start_time.
- weekly (3): on the days of `dayofweek` (bit 1 Monday .. bit 64 Sunday), every `every` weeks
  counted from the week of active_since.
- monthly (4): in the months of `month` (bit 1 January .. bit 2048 December), on day `day` of the
  month; or, with day 0, on the days of `dayofweek` of week `every` of the month (1 first .. 4
  fourth, 5 last). A day the month does not have (31 in April) is no start.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta, tzinfo

from vigil.server.config.alerting import MaintenanceSpec, TimePeriodSpec

ONE_TIME = 0
DAILY = 2
WEEKLY = 3
MONTHLY = 4


def _local_date(t: int, tz: tzinfo | None) -> date:
    return (datetime.fromtimestamp(t).astimezone() if tz is None else datetime.fromtimestamp(t, tz)).date()


def _midnight(d: date, tz: tzinfo | None) -> int:
    if tz is None:
        return int(time.mktime((d.year, d.month, d.day, 0, 0, 0, 0, 0, -1)))
    return int(datetime(d.year, d.month, d.day, tzinfo=tz).timestamp())


def _starts_on(p: TimePeriodSpec, d: date, since: date) -> bool:
    """Whether a recurring period starts on day `d`."""
    every = max(1, p.every)
    if p.type == DAILY:
        return d >= since and (d - since).days % every == 0
    if p.type == WEEKLY:
        if not p.dayofweek & (1 << (d.isoweekday() - 1)):
            return False
        week0 = since - timedelta(days=since.isoweekday() - 1)
        weekd = d - timedelta(days=d.isoweekday() - 1)
        return weekd >= week0 and ((weekd - week0).days // 7) % every == 0
    if p.type == MONTHLY:
        if not p.month & (1 << (d.month - 1)):
            return False
        if p.day:
            return d.day == p.day
        if not p.dayofweek & (1 << (d.isoweekday() - 1)):
            return False
        nth = (d.day - 1) // 7 + 1
        if p.every >= 5:
            return d.day + 7 > calendar.monthrange(d.year, d.month)[1]
        return nth == p.every
    return False


def period_active(p: TimePeriodSpec, t: int, active_since: int = 0, tz: tzinfo | None = None) -> bool:
    """Whether the period covers `t`."""
    if p.period <= 0:
        return False
    if p.type == ONE_TIME:
        return p.start_date <= t < p.start_date + p.period
    if p.type not in (DAILY, WEEKLY, MONTHLY):
        return False
    today = _local_date(t, tz)
    since = _local_date(active_since, tz)
    back = p.period // 86400 + 1
    for k in range(back + 1):
        d = today - timedelta(days=k)
        if _starts_on(p, d, since):
            start = _midnight(d, tz) + p.start_time
            if start <= t < start + p.period:
                return True
    return False


def maintenance_active(m: MaintenanceSpec, t: int, tz: tzinfo | None = None) -> bool:
    if not m.active_since <= t < m.active_till:
        return False
    return any(period_active(p, t, m.active_since, tz) for p in m.periods)


def maintenances_of(host: str, groups: Iterable[str], maintenances: Mapping[int, MaintenanceSpec],
                    t: int, tz: tzinfo | None = None) -> list[int]:
    """The ids of the maintenances active at `t` that name the host or one of its groups."""
    gs = set(groups)
    return [mid for mid, m in maintenances.items()
            if (host in m.hosts or gs.intersection(m.groups)) and maintenance_active(m, t, tz)]


def in_maintenance(host: str, groups: Iterable[str], maintenances: Mapping[int, MaintenanceSpec],
                   t: int, tz: tzinfo | None = None) -> bool:
    return bool(maintenances_of(host, groups, maintenances, t, tz))
