"""The pure parts: the time-picker syntax, value formatting, figures."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from vigil.server.store.base import Trend
from vigil.web import charts
from vigil.web import format as fmt
from vigil.web.timeparse import TimeError, parse_time

NOW = datetime(2026, 11, 25, 15, 42, 7, tzinfo=UTC).timestamp()  # a Wednesday


def ts(*a: int) -> int:
    return int(datetime(*a, tzinfo=UTC).timestamp())  # type: ignore[misc]


@pytest.mark.parametrize("text, end, want", [
    ("now", False, int(NOW)), ("now-1h", False, int(NOW) - 3600), ("now-1d/d", False, ts(2026, 11, 24)),
    ("now-1d/d", True, ts(2026, 11, 24, 23, 59, 59)), ("now/w", False, ts(2026, 11, 23)),
    ("now/M", False, ts(2026, 11, 1)), ("now-1M", False, ts(2026, 10, 25, 15, 42, 7)),
    ("now-1y/y", False, ts(2025, 1, 1)), ("now/y", True, ts(2026, 12, 31, 23, 59, 59)),
    ("1700000000", False, 1700000000), ("2026-11-22 10:00", False, ts(2026, 11, 22, 10)),
    ("now-1h-30m", False, int(NOW) - 5400),
])
def test_relative_times_as_the_zabbix_time_picker(text: str, end: bool, want: int) -> None:
    assert parse_time(text, NOW, end=end) == want


@pytest.mark.parametrize("text", ["abc", "now-", "now-1x", "now/q", "99999999999", "now-999999y", ""])
def test_bad_times_say_what_to_write(text: str) -> None:
    with pytest.raises(TimeError):
        parse_time(text, NOW)


@pytest.mark.parametrize("v, units, want", [
    (1536, "B", "1.5 KB"), (22.56 * 1024**3, "B", "22.56 GB"), (95.83571, "%", "95.84 %"),
    (0.008241, "%", "0.008241 %"),
    (93784, "s", "1d 2h 3m"), (1234567.0, "bps", "1.235 Mbps"), (0.0, "", "0"), (3, "", "3"), (2.0, "", "2"),
    ("text", "", "text"), (12.3456789, "", "12.35"), (-1500, "rps", "-1.5 Krps"),
])
def test_values_are_formatted_with_units_and_consistent_precision(v: object, units: str, want: str) -> None:
    assert fmt.value(v, units) == want


def test_change_sparkline_and_trend() -> None:
    assert fmt.change(12, 10, "B") == "+2 B" and fmt.change(10, 12, "%") == "−2 %" and fmt.change("a", "b") == ""
    assert fmt.sparkline([1.0]) == ""
    pts = fmt.sparkline([0.0, 5.0, 10.0]).split()
    assert pts[0] == "0.0,21.0" and pts[-1] == "100.0,1.0"
    assert fmt.trend([1, 1, 1, 9]) == "up" and fmt.trend([9, 9, 9, 1]) == "down" and fmt.trend([5, 5]) == "flat"


def test_figures_choose_history_or_trends_and_draw_bands_and_two_axes() -> None:
    assert not charts.use_trends(0, 2 * 86400) and charts.use_trends(0, 2 * 86400 + 1)
    a = charts.Series(1, "h: cpu", "%", points=[(100, 1.0), (160, 2.0)], thresholds=[("cpu high", 1.5)])
    b = charts.Series(2, "h: net", "B", trends=[Trend(3600, 60, 1.0, 2.0, 3.0)])
    fig = charts.figure([a, b], 0, 7200)
    assert fig["data"][0]["y"] == [1.0, 2.0] and fig["data"][0]["x"] == [100_000, 160_000]
    assert fig["data"][1]["line"]["dash"] == "dash"  # the trigger's threshold
    band = [t for t in fig["data"] if t.get("fill") == "tonexty"]
    assert band and band[0]["y"] == [1.0]
    assert fig["layout"]["yaxis2"]["title"]["text"] == "B"
    hover = charts.figure([charts.Series(3, "<b>x", "")], 0, 1)["data"][0]["hovertemplate"]
    assert "&lt;b&gt;x" in hover


@pytest.mark.parametrize("expr, want", [
    ("last(/h/cpu.util)>90", 90.0), ("avg(/h/cpu.util,5m) >= 75.5", 75.5), ("min(/h/cpu.util,#3)<-1", -1.0),
    ("last(/h/other)>1", None), ("last(/h/cpu.util)>5 and last(/h/cpu.util)<9", None),
    ("nodata(/h/cpu.util,5m)=1", None),
])
def test_threshold_of_a_simple_trigger(expr: str, want: float | None) -> None:
    assert charts.threshold(expr, "h", "cpu.util") == want
