"""Maintenance periods by hand-computed cases (UTC unless said otherwise)."""

from __future__ import annotations

import calendar
from datetime import UTC, timedelta, timezone

from vigil.alerts.maintenance import in_maintenance, maintenance_active, maintenances_of, period_active
from vigil.server.config.alerting import MaintenanceSpec, TimePeriodSpec

MONDAY = 1704067200  # 2024-01-01 00:00 UTC, a Monday
H, D = 3600, 86400


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> int:
    return calendar.timegm((y, mo, d, h, mi, 0))


def test_one_time() -> None:
    p = TimePeriodSpec(type=0, start_date=MONDAY + H, period=2 * H)
    assert not period_active(p, MONDAY + H - 1, tz=UTC)
    assert period_active(p, MONDAY + H, tz=UTC)
    assert period_active(p, MONDAY + 3 * H - 1, tz=UTC)
    assert not period_active(p, MONDAY + 3 * H, tz=UTC)


def test_daily_every_second_day_across_midnight() -> None:
    p = TimePeriodSpec(type=2, every=2, start_time=22 * H, period=4 * H)
    at = lambda t: period_active(p, t, MONDAY, UTC)  # noqa: E731
    assert not at(MONDAY + 21 * H + 3599)
    assert at(MONDAY + 22 * H)  # Monday 22:00
    assert at(MONDAY + D + H)  # Tuesday 01:00, still Monday's period
    assert not at(MONDAY + D + 2 * H)  # Tuesday 02:00: over
    assert not at(MONDAY + D + 22 * H)  # Tuesday is not a start day (every 2 days)
    assert at(MONDAY + 2 * D + 23 * H)  # Wednesday 23:00
    assert at(MONDAY + 3 * D + H + 1800)  # Thursday 01:30
    assert not at(MONDAY - D + 23 * H)  # Sunday before active_since: no start there


def test_weekly_every_second_week() -> None:
    p = TimePeriodSpec(type=3, every=2, dayofweek=2 | 16, start_time=9 * H, period=H)  # Tuesday, Friday
    at = lambda t: period_active(p, t, MONDAY + 5 * H, UTC)  # noqa: E731  (since Monday 05:00)
    assert at(MONDAY + D + 9 * H + 1800)  # Tue week 0
    assert at(MONDAY + 4 * D + 9 * H)  # Fri week 0
    assert not at(MONDAY + 4 * D + 10 * H)  # Fri 10:00: over
    assert not at(MONDAY + 2 * D + 9 * H + 1800)  # Wednesday
    assert not at(MONDAY + 8 * D + 9 * H + 1800)  # Tue week 1
    assert at(MONDAY + 15 * D + 9 * H + 1800)  # Tue week 2


def test_monthly_by_day() -> None:
    p = TimePeriodSpec(type=4, month=1 | 4, day=15, start_time=0, period=D)  # January and March, the 15th
    assert period_active(p, utc(2024, 1, 15, 12), 0, UTC)
    assert not period_active(p, utc(2024, 1, 16, 0), 0, UTC)
    assert not period_active(p, utc(2024, 2, 15, 12), 0, UTC)
    assert period_active(p, utc(2024, 3, 15, 0), 0, UTC)
    april31 = TimePeriodSpec(type=4, month=8, day=31, period=D)
    assert not any(period_active(april31, utc(2024, 4, d, 12), 0, UTC) for d in range(1, 31))
    assert not period_active(april31, utc(2024, 5, 1, 12), 0, UTC)


def test_monthly_by_weekday_of_the_month() -> None:
    first = TimePeriodSpec(type=4, month=4095, dayofweek=1, every=1, start_time=8 * H, period=H)
    assert period_active(first, utc(2024, 1, 1, 8, 30), 0, UTC)  # the first Monday of January 2024
    assert not period_active(first, utc(2024, 1, 8, 8, 30), 0, UTC)
    assert period_active(first, utc(2024, 2, 5, 8, 30), 0, UTC)
    second = TimePeriodSpec(type=4, month=4095, dayofweek=1, every=2, start_time=8 * H, period=H)
    assert period_active(second, utc(2024, 1, 8, 8, 30), 0, UTC)
    last = TimePeriodSpec(type=4, month=4095, dayofweek=1, every=5, start_time=8 * H, period=H)
    assert period_active(last, utc(2024, 1, 29, 8, 30), 0, UTC)
    assert not period_active(last, utc(2024, 1, 22, 8, 30), 0, UTC)
    assert period_active(last, utc(2024, 4, 29, 8, 30), 0, UTC)  # April 2024 has 5 Mondays: the 29th


def test_local_time_zone() -> None:
    plus2 = timezone(timedelta(hours=2))
    p = TimePeriodSpec(type=2, start_time=0, period=H)
    assert period_active(p, MONDAY - 2 * H + 1800, 0, plus2)  # 00:30 at UTC+2
    assert not period_active(p, MONDAY + 1800, 0, plus2)  # 02:30 there


def test_maintenance_window_bounds_and_hosts_or_groups() -> None:
    m = MaintenanceSpec(name="patching", active_since=MONDAY, active_till=MONDAY + 7 * D, hosts=["web1"],
                        groups=["Databases"], periods=[TimePeriodSpec(type=2, start_time=2 * H, period=H)])
    inside = MONDAY + D + 2 * H + 60
    assert maintenance_active(m, inside, UTC)
    assert not maintenance_active(m, inside - H, UTC)
    assert not maintenance_active(m, MONDAY + 7 * D + 2 * H + 60, UTC)  # after active_till
    ms = {5: m}
    assert maintenances_of("web1", [], ms, inside, UTC) == [5]
    assert in_maintenance("db1", ["Databases"], ms, inside, UTC)
    assert not in_maintenance("web2", ["Web"], ms, inside, UTC)
    assert not in_maintenance("web1", [], ms, inside + H, UTC)
    assert not maintenance_active(MaintenanceSpec(name="empty", active_since=0, active_till=2**31), inside, UTC)


def test_nonsense_periods_are_never_active() -> None:
    assert not period_active(TimePeriodSpec(type=2, period=0), MONDAY, 0, UTC)
    assert not period_active(TimePeriodSpec(type=9, period=D), MONDAY, 0, UTC)
    # every 0 is taken as every 1
    assert period_active(TimePeriodSpec(type=2, every=0, period=D), MONDAY + 5, 0, UTC)
