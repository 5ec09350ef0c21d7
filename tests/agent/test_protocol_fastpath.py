"""The fast paths of the wire codec (orjson, the inline check of a plain history record) give what
the careful paths give, and everything they do not take goes the careful way with the field named."""

from __future__ import annotations

import json
import math

import pytest
from vigil.agent.protocol.messages import ProtocolError, dumps, loads
from vigil.agent.protocol.proxy import HistoryRecord, _parse_history_record, parse_history_record


@pytest.mark.parametrize("body", [
    b'{"a": 123456789012345678901234567890}', b'{"a": 18446744073709551615, "b": -1}',
    b'{"s": "\\u00e9\\ud83d\\ude00", "f": 1.5e300, "l": [1, [2, {"x": null}]]}', b'{"a": true, "b": 0.1}',
])
def test_loads_is_what_json_reads(body: bytes) -> None:
    assert loads(body) == json.loads(body)
    assert type(loads(body).get("a")) is type(json.loads(body).get("a"))


def test_loads_takes_nan_as_json_does_and_refuses_what_it_refuses() -> None:
    assert math.isnan(loads(b'{"a": NaN}')["a"])
    for bad, why in ((b"[1]", "not an object"), (b"{", "valid JSON"), (b'{"a":' * 65 + b"1" + b"}" * 65, "deeper"),
                     (b'{"a":[' + b"[" * 63 + b"]" * 63 + b"]}", "deeper")):
        with pytest.raises(ProtocolError, match=why):
            loads(bad)
    assert loads(b'{"a":' * 63 + b'{}' + b"}" * 63) is not None  # 64 levels: allowed


def test_dumps_is_compact_utf8_json_and_falls_back_for_what_orjson_cannot() -> None:
    obj = {"a": "é", "b": [1, 2.5, None], "c": {"d": True}}
    assert dumps(obj) == json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    assert dumps({"n": 2**70}) == b'{"n":1180591620717411303424}'
    assert dumps({1: "x"}) == b'{"1":"x"}'


@pytest.mark.parametrize("record", [
    {"id": 1, "itemid": 2, "clock": 3, "ns": 4, "value": "5"}, {"id": 1, "itemid": 2, "clock": 3},
    {"id": 1, "itemid": 2, "clock": 3, "value": None}, {"id": "7", "itemid": 2, "clock": 3, "value": "x"},
    {"id": 1, "itemid": 2, "clock": 3, "value": 5}, {"id": 1, "itemid": 2, "clock": 3, "state": 1, "value": "e"},
    {"id": 1, "itemid": 2, "clock": 3, "lastlogsize": 10, "mtime": 0, "value": "line", "source": "s"},
])
def test_a_record_reads_the_same_on_either_path(record: dict) -> None:
    assert parse_history_record(record, 0) == _parse_history_record(record, 0)
    assert isinstance(parse_history_record(record, 0), HistoryRecord)


@pytest.mark.parametrize(("record", "field"), [
    ({"itemid": 2, "clock": 3}, "history data[0].id: missing"), ({"id": -1, "itemid": 2, "clock": 3}, ".id:"),
    ({"id": 1, "itemid": 2, "clock": "x"}, ".clock:"), ({"id": 1, "itemid": 2, "clock": 3, "ns": 10**9}, ".ns:"),
    ({"id": 1, "itemid": 2**64, "clock": 3}, ".itemid:"), ({"id": 1, "itemid": 2, "clock": 3, "value": []}, ".value:"),
    ({"id": True, "itemid": 2, "clock": 3}, ".id:"), ({"id": 1, "itemid": 2, "clock": 3, "value": "x" * 65536},
                                                      ".value: longer"),
])
def test_a_bad_record_is_refused_naming_the_field(record: dict, field: str) -> None:
    with pytest.raises(ProtocolError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_history_record(record, 0)
