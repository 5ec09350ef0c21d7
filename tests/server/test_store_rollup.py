"""Trend maths, retention periods and the housekeeper loop (no database needed except for the loop)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
from vigil.server.config.migrate import engine_for, upgrade
from vigil.server.config.tables import ValueType
from vigil.server.store import housekeeper, open_store, rollup
from vigil.server.store.base import Retention, WriteBatch, from_signed64, to_signed64
from vigil.server.store.retention import RetentionError, from_items, history_seconds, parse_duration, trends_seconds


def test_hour_and_day_buckets() -> None:
    assert rollup.hour_of(7199) == 3600 and rollup.hour_of(7200) == 7200
    assert rollup.day_of(86400 * 3 + 5) == 86400 * 3
    assert rollup.span_buckets(3600, 3600, [], 3600) == {3600}
    assert rollup.span_buckets(3599, 3600, [], 3600) == {0, 3600}
    clocks = [10, 4000, 20000, 9000]
    assert rollup.span_buckets(10, 20000, clocks, 3600) == {0, 3600, 7200, 18000}
    assert rollup.hour_complete(3600, 7200) and not rollup.hour_complete(3600, 7199)


def test_aggregates_and_merging() -> None:
    a = rollup.Aggregate.of([3, 1, 2])
    b = rollup.Aggregate.of([10])
    assert a is not None and b is not None
    assert (a.num, a.min, a.max, a.sum) == (3, 1, 3, 6)
    m = a.merge(b)
    assert (m.num, m.min, m.max, m.avg_float()) == (4, 1, 10, 4.0)
    assert rollup.Aggregate.of([]) is None
    big = rollup.Aggregate.of([2**64 - 1, 2**64 - 2])
    assert big is not None and big.avg_uint() == 2**64 - 2  # exact, rounded down
    by_item = rollup.aggregate_by_item([(1, 5.0), (2, 1.0), (1, -5.0)])
    assert {i: (g.num, g.min, g.max, g.sum) for i, g in by_item.items()} == {1: (2, -5.0, 5.0, 0.0), 2: (1, 1, 1, 1)}
    assert rollup.merge_trends((2, 1.0, 2.0, 3.0), (1, 0.0, 5.0, 5.0)) == (3, 0.0, 3.0, 5.0)
    with pytest.raises(ValueError, match="num=0"):
        rollup.merge_trends((0, 0, 0, 0), (0, 0, 0, 0))


def test_uint_signed_round_trip() -> None:
    for v in (0, 1, 2**63 - 1, 2**63, 2**64 - 1):
        s = to_signed64(v)
        assert -(2**63) <= s < 2**63 and from_signed64(s) == v


@pytest.mark.parametrize("text, seconds", [
    ("0", 0), ("3600", 3600), ("1h", 3600), ("31d", 31 * 86400), ("1w", 604800), ("90m", 5400), (" 2d ", 172800),
    ("45s", 45), (7200, 7200),
])
def test_durations(text: str | int, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "1y", "-1", "1.5h", "h", "1 h", "{$HISTORY}", "1hh", "9" * 13])
def test_bad_durations_name_the_text(text: str) -> None:
    with pytest.raises(RetentionError) as e:
        parse_duration(text, "item 5 history")
    assert "item 5 history" in str(e.value) and repr(text) in str(e.value)


def test_retention_bounds() -> None:
    assert history_seconds("0") == 0 and history_seconds("1h") == 3600 and trends_seconds("365d") == 365 * 86400
    with pytest.raises(RetentionError, match="'30m' is outside"):
        history_seconds("30m")
    with pytest.raises(RetentionError, match="'1h' is outside"):
        trends_seconds("1h")
    with pytest.raises(RetentionError, match="outside"):
        history_seconds("9200d")
    with pytest.raises(RetentionError, match="True"):
        parse_duration(True)  # type: ignore[arg-type]


def test_retention_from_items_keeps_unresolved_ones(caplog: pytest.LogCaptureFixture) -> None:
    rows = [(1, 0, "31d", "365d"), (2, 1, "7d", "365d"), (3, 3, "{$H}", "1d"), (4, 9, "1d", "1d")]
    with caplog.at_level(logging.WARNING):
        got = from_items(rows)
    assert got == [Retention(1, ValueType.FLOAT, 31 * 86400, 365 * 86400), Retention(2, ValueType.CHAR, 7 * 86400, 0),
                   Retention.keep(3, ValueType.UNSIGNED)]
    assert got[2].kept_forever and not got[0].kept_forever
    assert "item 3 history" in caplog.text and "item 4" in caplog.text


class _Intervals:
    housekeeping_interval = 0.05
    trends_interval = 0.05


def test_housekeeper_loop_rolls_up_and_deletes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    url = f"sqlite:///{tmp_path / 'v.db'}"
    engine = engine_for(url)
    upgrade(engine)
    engine.dispose()
    store = open_store(url)
    now = 1_700_000_000
    store.write(WriteBatch(floats=[(1, now - 10 * 86400, 0, 1.0), (1, now - 7200, 0, 2.0), (1, now - 7100, 0, 4.0)]))
    stop = threading.Event()
    calls = 0

    def source() -> list[Retention]:
        nonlocal calls
        calls += 1
        if calls >= 2:
            stop.set()
        return [Retention(1, ValueType.FLOAT, 86400, 86400)]

    with caplog.at_level(logging.INFO, logger="vigil.housekeeper"):
        t = threading.Thread(target=housekeeper.run, args=(store, _Intervals(), source, stop),
                             kwargs={"clock": lambda: now})
        t.start()
        t.join(10)
    assert not t.is_alive()
    try:
        assert [c for c, _, _ in store.history(1, ValueType.FLOAT, 0, 2**31 - 1)] == [now - 7200, now - 7100]
        trends = store.trends(1, ValueType.FLOAT, 0, 2**31 - 1)
        hour = (now - 7200) - (now - 7200) % 3600
        assert [(x.clock, x.num, x.avg) for x in trends] == [(hour, 2, 3.0)]
    finally:
        store.close()
    assert "housekeeper deleted 1 history rows" in caplog.text
    assert "trend roll-up recomputed" in caplog.text


def test_housekeeper_rejects_bad_intervals() -> None:
    class Bad:
        housekeeping_interval = 0
        trends_interval = 60

    with pytest.raises(ValueError, match="housekeeping_interval=0"):
        housekeeper.run(None, Bad(), list, threading.Event())  # type: ignore[arg-type]
