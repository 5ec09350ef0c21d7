"""The server's one-pass reading of `history data` (server/ingest/proxy.py, parse_data and _batch with
raw records) must store, skip and refuse exactly what parsing into HistoryRecords first does."""

from __future__ import annotations

import time
from typing import Any

import pytest
from vigil.agent.protocol.messages import ProtocolError
from vigil.agent.protocol.proxy import parse_proxy_data
from vigil.server.config.tables import ValueType
from vigil.server.ingest.proxy import Outcome, ProxyHandler, _ProxyView, parse_data

SESSION = "0123456789abcdef0123456789abcdef"
ITEMS = {1: (10, 2, int(ValueType.UNSIGNED)), 2: (10, 2, int(ValueType.FLOAT)),
         3: (10, 2, int(ValueType.LOG)), 4: (10, 2, int(ValueType.UNSIGNED))}


def handler() -> ProxyHandler:
    return ProxyHandler(None, None, {}, None, lambda: 1)  # type: ignore[arg-type]  # _batch uses none of them


def both(records: list[Any], seen: int = 0) -> tuple[tuple, tuple]:
    """(stored values, outcome) read in one pass and read from parsed HistoryRecords."""
    h, view, now = handler(), _ProxyView(1, ITEMS, set()), int(time.time())
    body = {"request": "proxy data", "host": "p", "session": SESSION, "history data": records, "clock": now}
    data, raw = parse_data(body)
    assert raw is records and data.history == []
    got = []
    for recs, is_raw in ((raw, True), (parse_proxy_data(body).history, False)):
        out = Outcome()
        batch, unsupported, span = h._batch(None, view, recs, seen, now, out, is_raw)  # type: ignore[arg-type]
        got.append(((batch.uints, batch.floats, batch.logs, batch.logpos, unsupported),
                     (out.processed, out.failed, out.duplicates, out.reason, span.count, span.last, span.oldest)))
    return got[0], got[1]


def test_plain_and_other_records_are_stored_alike() -> None:
    now = int(time.time())
    records = [
        {"id": 1, "itemid": 1, "clock": now - 5, "ns": 1, "value": "42"},
        {"id": 2, "itemid": 1, "clock": now, "value": "7"},  # no ns
        {"id": 3, "itemid": 2, "clock": now, "ns": 0, "value": "1.5"},
        {"id": 4, "itemid": 1, "clock": now, "ns": 0, "value": " +8 "},  # to_uint's trimming
        {"id": 5, "itemid": 1, "clock": now, "ns": 0, "value": "x"},  # refused: not a number
        {"id": 6, "itemid": 99, "clock": now, "ns": 0, "value": "1"},  # not this proxy's item
        {"id": 7, "itemid": 1, "clock": 5, "ns": 0, "value": "1"},  # outside the clock window? (age 0: no)
        {"id": 8, "itemid": 3, "clock": now, "ns": 0, "value": "line", "lastlogsize": 10, "mtime": 0},
        {"id": 9, "itemid": 4, "clock": now, "ns": 0, "value": "no", "state": 1},
        {"id": 10, "itemid": 4, "clock": now, "ns": 3, "value": str(2**64 - 1)},
        {"id": 11, "itemid": 4, "clock": now, "ns": 3, "value": str(2**64)},  # out of range
        {"id": 12, "itemid": 4, "clock": now + 10**6, "ns": 0, "value": "1"},  # too far ahead
    ]
    one, parsed = both(records)
    assert one == parsed
    assert one[0][0][:2] == [(1, now - 5, 1, 42), (1, now, 0, 7)]
    assert one[1][1] > 0 and one[1][4:6] == (12, 12)


def test_resent_records_are_duplicates_alike() -> None:
    now = int(time.time())
    records = [{"id": i, "itemid": 1, "clock": now, "ns": i, "value": str(i)} for i in range(1, 11)]
    one, parsed = both(records, seen=6)
    assert one == parsed
    assert one[1][2] == 6 and [v[3] for v in one[0][0]] == [7, 8, 9, 10]


@pytest.mark.parametrize("bad, match", [
    ({"id": 3, "itemid": 1, "clock": "x", "ns": 0, "value": "1"}, r"history data\[2\]\.clock"),
    ({"id": 3, "itemid": -1, "clock": 1, "ns": 0, "value": "1"}, r"history data\[2\]\.itemid"),
    ({"id": 3, "itemid": 1, "clock": 1, "ns": 10**9, "value": "1"}, r"history data\[2\]\.ns"),
    ({"id": 2, "itemid": 1, "clock": 1, "ns": 0, "value": "1"}, r"history data\[2\]\.id: 2 does not follow 2"),
    ({"itemid": 1, "clock": 1, "ns": 0, "value": "1", "x": 1}, r"history data\[2\]\.id: missing"),
    ("text", r"history data\[2\]: must be an object"),
])
def test_a_malformed_record_refuses_the_batch_naming_it_as_the_parser_does(bad: Any, match: str) -> None:
    now = int(time.time())
    records = [{"id": 1, "itemid": 1, "clock": now, "ns": 0, "value": "1"},
               {"id": 2, "itemid": 1, "clock": now, "ns": 0, "value": "2"}, bad]
    body = {"request": "proxy data", "host": "p", "session": SESSION, "history data": records}
    with pytest.raises(ProtocolError, match=match) as parsed:
        parse_proxy_data(body)
    data, raw = parse_data(body)
    with pytest.raises(ProtocolError) as one:
        handler()._batch(None, _ProxyView(1, ITEMS, set()), raw, 0, now, Outcome(), True)  # type: ignore[arg-type]
    assert str(one.value) == str(parsed.value)


def test_what_comes_before_the_records_is_checked_first() -> None:
    records = [{"id": 1, "itemid": 1, "clock": "bad", "ns": 0, "value": "1"}, {"id": 2, "itemid": 1, "clock": 1}]
    for body, match in (({"session": "nothex", "history data": records}, "session"),
                        ({"session": SESSION, "history data": records, "clock": -1}, r"clock"),
                        ({"session": SESSION, "history data": records}, r"history data\[0\]\.clock")):
        with pytest.raises(ProtocolError, match=match):
            parse_data({"request": "proxy data", "host": "p", **body})
