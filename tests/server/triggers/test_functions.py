"""The trigger functions over an in-memory DataSource; every expected value is worked out by hand in comments."""

from __future__ import annotations

from calendar import timegm

import pytest
from vigil.server.store.base import LogEntry, Trend
from vigil.server.triggers import functions as fn
from vigil.server.triggers.expression import EvaluationError, evaluate, parse

from tests.server.triggers.memsource import MemorySource


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> int:
    return timegm((y, mo, d, h, mi, s, 0, 0, 0))


NOW = utc(2024, 3, 13, 14, 25, 30)  # a Wednesday


@pytest.fixture
def data() -> MemorySource:
    src = MemorySource()
    # float, newest first: 5, 3, 8, 1, 3 within the last 5 minutes, and 20 just over an hour ago
    cpu = src.add("web", "cpu", 0, [(NOW - 10, 5.0), (NOW - 70, 3.0), (NOW - 130, 8.0), (NOW - 190, 1.0),
                                    (NOW - 250, 3.0), (NOW - 3700, 20.0)])
    # unsigned, newest first: 6, 7, 4, 14
    src.add("web", "flags", 3, [(NOW - 5, 6), (NOW - 65, 7), (NOW - 125, 4), (NOW - 185, 14)])
    # character, newest first
    src.add("web", "status", 1, [(NOW - 1, "up"), (NOW - 61, "down"), (NOW - 121, "up"), (NOW - 181, "degraded up"),
                                 (NOW - 241, "Up")])
    src.add("web", "empty", 0, [])
    src.add("web", "clock.past", 3, [(NOW - 2, NOW - 50)])
    src.add("web", "clock.future", 0, [(NOW - 2, float(NOW + 40))])
    src.add("web", "broken", 0, [(NOW - 2, 1.0)], error="Cannot obtain filesystem information")
    src.add("web", "big", 3, [(NOW - 2, 2**64 - 1), (NOW - 62, 2**64 - 3)])
    src.add("web", "log", 2, [(NOW - 3, LogEntry(NOW - 3, 0, 0, "app", 4, "disk full", 0)),
                              (NOW - 9, LogEntry(NOW - 9, 0, 0, "app", 1, "started", 0))])
    src.add("web", "fresh", 0, [], data_expected_from=NOW - 20)
    src.trend_rows[cpu] = [
        Trend(utc(2024, 2, 29, 23), 4, 40.0, 50.0, 60.0),  # February
        Trend(utc(2024, 3, 1, 0), 1, 1.0, 1.0, 1.0),  # March 1st
        Trend(utc(2024, 3, 5, 9), 1, 100.0, 100.0, 100.0),  # the week before this one
        Trend(utc(2024, 3, 12, 10), 2, 6.0, 7.0, 8.0),  # yesterday
        Trend(utc(2024, 3, 13, 12), 10, 1.0, 2.0, 4.0),
        Trend(utc(2024, 3, 13, 13), 30, 0.5, 4.0, 9.0),
        Trend(utc(2024, 3, 13, 14), 5, 2.0, 3.0, 3.0),  # the hour running now
    ]
    return src


def ev(text: str, data: MemorySource, macros: dict[str, str] | None = None, now: int = NOW) -> float:
    return evaluate(parse(text), data, now, macros or {})


def unknown(text: str, data: MemorySource, macros: dict[str, str] | None = None) -> str:
    with pytest.raises(EvaluationError) as e:
        ev(text, data, macros)
    return str(e.value)


# --- last -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("last(/web/cpu)", 5.0),
    ("last(/web/cpu,#1)", 5.0),
    ("last(/web/cpu,#2)", 3.0),  # the value before the last
    ("last(/web/cpu,#3)", 8.0),
    ("last(/web/cpu,#6)", 20.0),
    ("last(/web/cpu,#1:now-1h)", 20.0),  # the newest value at or before NOW-3600 is the one at NOW-3700
    ("last(/web/cpu,#1:now-65s)", 3.0),  # NOW-65: the value at NOW-10 is later, NOW-70 is the newest
    ("last(/web/flags)", 6.0),
    ("last(/web/big)", float(2**64 - 1)),
])
def test_last(data: MemorySource, text: str, expected: float) -> None:
    assert ev(text, data) == expected


def test_last_without_enough_values_is_unknown(data: MemorySource) -> None:
    assert "not enough data" in unknown("last(/web/cpu,#7)", data)
    assert "no values" in unknown("last(/web/empty)", data)
    assert "only 1 value" in unknown("last(/web/cpu,#2:now-1h)", data)


def test_last_of_text_and_log_items(data: MemorySource) -> None:
    assert ev('last(/web/status)="up"', data) == 1.0
    assert ev('last(/web/status,#2)="down"', data) == 1.0
    assert ev('last(/web/log)="disk full"', data) == 1.0  # a log value compares by its text


# --- min max avg sum ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("min(/web/cpu,5m)", 1.0),  # 5 3 8 1 3
    ("max(/web/cpu,5m)", 8.0),
    ("avg(/web/cpu,5m)", 4.0),  # 20 / 5
    ("sum(/web/cpu,5m)", 20.0),
    ("sum(/web/cpu,300)", 20.0),
    ("sum(/web/cpu,300s)", 20.0),
    ("min(/web/cpu,#3)", 3.0),  # 5 3 8
    ("max(/web/cpu,#3)", 8.0),
    ("sum(/web/cpu,#2)", 8.0),  # 5 + 3
    ("avg(/web/cpu,1h)", 4.0),  # the value at NOW-3700 is outside (NOW-3600, NOW]
    ("avg(/web/cpu,2h)", 40.0 / 6),  # all six: 5+3+8+1+3+20
    ("sum(/web/cpu,1d)", 40.0),
    ("sum(/web/cpu,1w)", 40.0),
    ("avg(/web/cpu,5m:now-1h)", 20.0),  # (NOW-3900, NOW-3600] holds only the 20
    ("max(/web/cpu,2m:now-1m)", 8.0),  # (NOW-180, NOW-60]: 3 (NOW-70) and 8 (NOW-130)
    ("min(/web/flags,#4)", 4.0),
    ("sum(/web/flags,#4)", 31.0),  # 6+7+4+14
    ("sum(/web/empty,5m)", 0.0),  # no values: 0, as Zabbix
])
def test_aggregates(data: MemorySource, text: str, expected: float) -> None:
    assert ev(text, data) == pytest.approx(expected, abs=1e-12)


def test_aggregates_without_values_are_unknown(data: MemorySource) -> None:
    for f in ("min", "max", "avg"):
        assert "no data in period '5m'" in unknown(f"{f}(/web/empty,5m)", data)
    assert "no data" in unknown("avg(/web/cpu,5m:now-2h)", data)


def test_aggregates_need_numeric_items(data: MemorySource) -> None:
    msg = unknown("avg(/web/status,5m)", data)
    assert "character" in msg and "numeric" in msg and "avg(/web/status,5m)" in msg


def test_the_period_reaches_the_data_source(data: MemorySource) -> None:
    data.calls.clear()
    ev("count(/web/cpu,10m:now-1d)", data)
    assert data.calls == [("values", 1, NOW - 86400, 600, None)]
    data.calls.clear()
    ev("count(/web/cpu,#4:now-1w)", data)
    assert data.calls == [("values", 1, NOW - 604800, None, 4)]


# --- count and find ----------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("count(/web/cpu,5m)", 5),
    ("count(/web/cpu,2h)", 6),
    ("count(/web/cpu,#3)", 3),
    ("count(/web/cpu,#100)", 6),  # as many as there are
    ('count(/web/cpu,5m,"gt",3)', 2),  # 5 8
    ('count(/web/cpu,5m,"ge",3)', 4),  # 5 3 8 3
    ('count(/web/cpu,5m,"lt",3)', 1),  # 1
    ('count(/web/cpu,5m,"le",3)', 3),  # 3 1 3
    ('count(/web/cpu,5m,"eq",3)', 2),
    ('count(/web/cpu,5m,,3)', 2),  # the default operator for numbers is eq
    ('count(/web/cpu,5m,"ne",3)', 3),
    ('count(/web/cpu,5m,"lt","1K")', 5),  # suffixes in the pattern
    ('count(/web/cpu,#3,"ge",5)', 2),  # 5 8
    ('count(/web/cpu,5m,"regexp","^3\\.")', 2),  # floats are matched as text with 4 decimals: 3.0000
    ('count(/web/cpu,5m,"regexp","^[0-9]\\.0000$")', 5),
    ('count(/web/flags,#4,"bitand","6/7")', 2),  # 6&7=6 yes, 7&7=7 no, 4&7=4 no, 14&7=6 yes
    ('count(/web/flags,#4,"bitand","2")', 3),  # mask only: 6, 7 and 14 have bit 2
    ('count(/web/flags,#4,"gt","6")', 2),  # 7 14
    ('count(/web/status,#5)', 5),
    ('count(/web/status,#5,"like","up")', 3),  # up, up, degraded up (case-sensitive: not Up)
    ('count(/web/status,#5,,"up")', 3),  # the default operator for text is like
    ('count(/web/status,#5,"eq","up")', 2),
    ('count(/web/status,#5,"ne","up")', 3),
    ('count(/web/status,#5,"regexp","^up$")', 2),
    ('count(/web/status,#5,"iregexp","^up$")', 3),  # up, up, Up
    ('count(/web/status,#5,"like","")', 5),  # "" is in every value
    ('count(/web/status,#5,"eq","")', 0),  # no value is empty
    ('count(/web/cpu,5m,,"")', 5),  # neither operator nor pattern: every value
    ('count(/web/status,5m:now-2m,"like","up")', 2),  # (NOW-420, NOW-120]: up, degraded up, Up
    ('count(/web/log,#2,"like","full")', 1),
])
def test_count(data: MemorySource, text: str, expected: int) -> None:
    assert ev(text, data) == float(expected)


def test_count_of_no_values_is_zero(data: MemorySource) -> None:
    assert ev("count(/web/empty,5m)", data) == 0.0
    assert ev('count(/web/cpu,1m:now-1d,"gt",0)', data) == 0.0


@pytest.mark.parametrize("text, why", [
    ('count(/web/cpu,5m,"like","3")', "'like' is not supported for numeric"),
    ('count(/web/cpu,5m,"bitand","2")', "'bitand' is not supported for float"),
    ('count(/web/status,#5,"gt","a")', "not supported for textual values"),
    ('count(/web/cpu,5m,"gt")', "needs a pattern"),
    ('count(/web/cpu,5m,"eq")', "needs a pattern"),
    ('count(/web/cpu,5m,"eq","")', "needs a pattern"),
    ('count(/web/cpu,5m,"gt","abc")', "not a valid numeric float value"),
    ('count(/web/flags,5m,"eq","1.5")', "not a valid numeric unsigned value"),
])
def test_count_with_a_bad_operator_for_the_item_is_unknown(data: MemorySource, text: str, why: str) -> None:
    assert why in unknown(text, data)


def test_count_of_floats_allows_the_epsilon() -> None:
    src = MemorySource()
    src.add("h", "f", 0, [(NOW - 1, 1.5000001), (NOW - 2, 1.50001), (NOW - 3, 1.4999995)])
    assert ev('count(/h/f,#3,"eq",1.5)', src) == 2.0  # 1.5000001 and 1.4999995 are within 0.000001
    assert ev('count(/h/f,#3,"gt",1.5)', src) == 1.0  # only 1.50001
    assert ev('count(/h/f,#3,"le",1.5)', src) == 2.0
    assert ev('count(/h/f,#3,"ge",1.5)', src) == 3.0


@pytest.mark.parametrize("text, expected", [
    ('find(/web/status,,"like","up")', 1),  # no period: the last value only ("up")
    ('find(/web/status,,"like","down")', 0),
    ('find(/web/status,#2,"like","down")', 1),
    ('find(/web/status,#5,"iregexp","^UP$")', 1),
    ('find(/web/status,#5,"regexp","^UP$")', 0),
    ('find(/web/status,#5,"eq","gone")', 0),
    ('find(/web/cpu,5m,"gt",7)', 1),  # the 8
    ('find(/web/cpu,5m,"gt",8)', 0),
    ('find(/web/cpu,#2,"eq",8)', 0),  # 5 3
    ('find(/web/flags,#4,"bitand","8")', 1),  # 14
    ("find(/web/status)", 1),  # there is a last value
    ("find(/web/empty)", 0),
    ('find(/web/log,#2,"regexp","^start")', 1),
])
def test_find(data: MemorySource, text: str, expected: int) -> None:
    assert ev(text, data) == float(expected)


# --- nodata ----------------------------------------------------------------------------------

def test_nodata(data: MemorySource) -> None:
    assert ev("nodata(/web/cpu,30)", data) == 0.0  # a value 10 s ago
    assert ev("nodata(/web/cpu,5)", data) == 1.0  # none in the last 5 s
    assert ev("nodata(/web/cpu,5,\"strict\")", data) == 1.0
    assert ev("nodata(/web/cpu,1m)", data) == 0.0
    assert ev("nodata(/web/empty,5m)", data) == 1.0
    # nodata fires on time alone: the same data later; the window (now-30, now] leaves out a value 30 s old
    assert ev("nodata(/web/cpu,30)", data, now=NOW + 19) == 0.0
    assert ev("nodata(/web/cpu,30)", data, now=NOW + 20) == 1.0


def test_nodata_waits_for_the_item_to_have_had_the_time(data: MemorySource) -> None:
    # the item can have data only since NOW-20: nodata over 30 s is unknown, over 10 s it is known
    assert "has not had 30 seconds" in unknown("nodata(/web/fresh,30)", data)
    assert ev("nodata(/web/fresh,10)", data) == 1.0


def test_nodata_works_for_an_unsupported_item_and_others_do_not(data: MemorySource) -> None:
    assert ev("nodata(/web/broken,1m)", data) == 0.0
    assert "not supported: Cannot obtain filesystem information" in unknown("last(/web/broken)", data)


# --- change, changecount -----------------------------------------------------------------------

def test_change(data: MemorySource) -> None:
    assert ev("change(/web/cpu)", data) == 2.0  # 5 - 3
    assert ev("change(/web/flags)", data) == -1.0  # 6 - 7
    assert ev("change(/web/big)", data) == 2.0  # exact on unsigned 64-bit values
    assert ev("change(/web/status)", data) == 1.0  # "up" after "down": they differ
    assert ev("change(/web/log)", data) == 1.0
    src = MemorySource()
    src.add("h", "s", 4, [(NOW - 1, "same"), (NOW - 2, "same")])
    assert ev("change(/h/s)", src) == 0.0
    assert "two values" in unknown("change(/web/empty)", data)


@pytest.mark.parametrize("text, expected", [
    # chronologically 3 1 8 3 5
    ("changecount(/web/cpu,5m)", 4),
    ('changecount(/web/cpu,5m,"all")', 4),
    ('changecount(/web/cpu,5m,"inc")', 2),  # 1->8, 3->5
    ('changecount(/web/cpu,5m,"dec")', 2),  # 3->1, 8->3
    ("changecount(/web/cpu,#2)", 1),
    # chronologically 14 4 7 6
    ('changecount(/web/flags,#4,"inc")', 1),
    ('changecount(/web/flags,#4,"dec")', 2),
    # text: Up, degraded up, up, down, up -> four changes; the mode does not apply to text
    ("changecount(/web/status,#5)", 4),
    ('changecount(/web/status,#5,"inc")', 4),
])
def test_changecount(data: MemorySource, text: str, expected: int) -> None:
    assert ev(text, data) == float(expected)


def test_changecount_needs_two_values(data: MemorySource) -> None:
    assert "not enough data" in unknown("changecount(/web/cpu,1m)", data)  # only the 5 in the last minute


# --- percentile, first, fuzzytime ---------------------------------------------------------------

@pytest.mark.parametrize("pct, expected", [
    # sorted 1 3 3 5 8; index = ceil(5 * pct / 100), 0 taking the first
    ("0", 1.0), ("20", 1.0), ("21", 3.0), ("50", 3.0), ("80", 5.0), ("90", 8.0), ("100", 8.0), ("60.5", 5.0),
])
def test_percentile(data: MemorySource, pct: str, expected: float) -> None:
    assert ev(f"percentile(/web/cpu,5m,{pct})", data) == expected


def test_first(data: MemorySource) -> None:
    assert ev("first(/web/cpu,5m)", data) == 3.0  # the oldest of the window, at NOW-250
    assert ev("first(/web/cpu,1h)", data) == 3.0
    assert ev("first(/web/cpu,2h)", data) == 20.0
    assert ev("first(/web/cpu,2m:now-1m)", data) == 8.0  # (NOW-180, NOW-60]: 3 at NOW-70, 8 at NOW-130
    assert ev('first(/web/status,5m)="Up"', data) == 1.0
    assert "no data" in unknown("first(/web/empty,1h)", data)


def test_fuzzytime(data: MemorySource) -> None:
    assert ev("fuzzytime(/web/clock.past,60)", data) == 1.0  # 50 s behind
    assert ev("fuzzytime(/web/clock.past,1m)", data) == 1.0
    assert ev("fuzzytime(/web/clock.past,50)", data) == 1.0  # the bound is included
    assert ev("fuzzytime(/web/clock.past,49)", data) == 0.0
    assert ev("fuzzytime(/web/clock.future,40)", data) == 1.0  # 40 s ahead
    assert ev("fuzzytime(/web/clock.future,39)", data) == 0.0
    assert "numeric" in unknown("fuzzytime(/web/status,60)", data)


# --- trends ----------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    # now/h is 14:00: 1h:now/h is the hour 13:00-14:00
    ("trendavg(/web/cpu,1h:now/h)", 4.0),
    ("trendmax(/web/cpu,1h:now/h)", 9.0),
    ("trendmin(/web/cpu,1h:now/h)", 0.5),
    ("trendsum(/web/cpu,1h:now/h)", 120.0),  # avg 4 x 30 values
    ("trendcount(/web/cpu,1h:now/h)", 30.0),
    # 12:00-14:00: avg (2*10 + 4*30) / 40
    ("trendavg(/web/cpu,2h:now/h)", 3.5),
    ("trendsum(/web/cpu,2h:now/h)", 140.0),
    ("trendcount(/web/cpu,2h:now/h)", 40.0),
    ("trendmax(/web/cpu,1h:now/h-1h)", 4.0),  # 12:00-13:00
    ("trendavg(/web/cpu,1h:now/h+1h)", 3.0),  # the hour running now
    # now/d is today 00:00: 1d:now/d is yesterday
    ("trendavg(/web/cpu,1d:now/d)", 7.0),
    ("trendcount(/web/cpu,1d:now/d)", 2.0),
    # today so far: (2*10 + 4*30 + 3*5) / 45
    ("trendavg(/web/cpu,1d:now/d+1d)", 155.0 / 45),
    # now/w is Monday 2024-03-11: the week before holds the 100; this week so far holds yesterday's too
    ("trendmax(/web/cpu,1w:now/w)", 100.0),
    ("trendmax(/web/cpu,1w:now/w+1w)", 9.0),
    ("trendcount(/web/cpu,1w:now/w+1w)", 47.0),  # 2 + 10 + 30 + 5
    # now/M is March 1st: 1M:now/M is February (the 23:00 hour of the 29th, not March 1st 00:00)
    ("trendavg(/web/cpu,1M:now/M)", 50.0),
    ("trendcount(/web/cpu,1M:now/M)", 4.0),
    ("trendmin(/web/cpu,1M:now/M+1M)", 0.5),
    ("trendcount(/web/cpu,1d:now/d-1d)", 0.0),  # the day before yesterday: nothing
    ("trendsum(/web/cpu,1y:now/y)", 0.0),  # 2023: nothing, and Zabbix's trendsum of nothing is 0
])
def test_trend_functions(data: MemorySource, text: str, expected: float) -> None:
    assert ev(text, data) == pytest.approx(expected, abs=1e-12)


def test_trend_functions_without_data_are_unknown(data: MemorySource) -> None:
    for f in ("trendavg", "trendmax", "trendmin"):
        assert "no trend data" in unknown(f"{f}(/web/cpu,1y:now/y)", data)


def test_trend_range_reaches_the_data_source(data: MemorySource) -> None:
    data.calls.clear()
    ev("trendavg(/web/cpu,1h:now/h)", data)
    # the hours starting in [13:00, 13:00]
    assert data.calls == [("trends", 1, utc(2024, 3, 13, 13), utc(2024, 3, 13, 13))]
    data.calls.clear()
    ev("trendcount(/web/cpu,1d:now/d)", data)
    assert data.calls == [("trends", 1, utc(2024, 3, 12), utc(2024, 3, 12, 23))]


def test_trend_functions_need_numeric_items(data: MemorySource) -> None:
    assert "numeric" in unknown("trendavg(/web/status,1h:now/h)", data)


# --- time shifts as pure functions ------------------------------------------------------------

@pytest.mark.parametrize("shift, expected", [
    (None, NOW),
    ("now", NOW),
    ("now-1h", NOW - 3600),
    ("now-30", NOW - 30),
    ("now+5m", NOW + 300),
    ("now-1d", NOW - 86400),
    ("now-2w", NOW - 2 * 604800),
    ("now/h", utc(2024, 3, 13, 14)),
    ("now/d", utc(2024, 3, 13)),
    ("now/d-1d", utc(2024, 3, 12)),
    ("now/d+1h", utc(2024, 3, 13, 1)),
    ("now/w", utc(2024, 3, 11)),  # Monday
    ("now/M", utc(2024, 3, 1)),
    ("now/M-1M", utc(2024, 2, 1)),
    ("now/y", utc(2024, 1, 1)),
    ("now/M-1y", utc(2023, 3, 1)),
    ("now-1M", utc(2024, 2, 13, 14, 25, 30)),
    ("now-1d/h", utc(2024, 3, 12, 14)),  # shift, then anchor
    ("now/d/w", utc(2024, 3, 11)),
])
def test_apply_shift(shift: str | None, expected: int) -> None:
    assert fn.apply_shift(NOW, shift) == expected


def test_month_arithmetic_keeps_to_the_month() -> None:
    assert fn.apply_shift(utc(2024, 3, 31, 12), "now-1M") == utc(2024, 2, 29, 12)  # leap year
    assert fn.apply_shift(utc(2023, 3, 31, 12), "now-1M") == utc(2023, 2, 28, 12)
    assert fn.period_start(utc(2024, 3, 1), "1M") == utc(2024, 2, 1)
    assert fn.period_start(utc(2024, 1, 1), "2M") == utc(2023, 11, 1)
    assert fn.period_start(utc(2024, 3, 13, 14), "3h") == utc(2024, 3, 13, 11)


@pytest.mark.parametrize("text, expected", [
    ("0", 0.0), ("12", 12.0), ("1.5", 1.5), ("-2", -2.0), ("1K", 1024.0), ("1.5K", 1536.0), ("2M", 2 * 1024.0**2),
    ("1G", 1024.0**3), ("1T", 1024.0**4), ("30s", 30.0), ("5m", 300.0), ("2h", 7200.0), ("1d", 86400.0),
    ("1w", 604800.0), ("1e3", 1000.0), (" 7 ", 7.0),
    ("", None), ("abc", None), ("5x", None), ("1.2.3", None), ("K", None), ("--1", None),
])
def test_number(text: str, expected: float | None) -> None:
    assert fn.number(text) == expected
