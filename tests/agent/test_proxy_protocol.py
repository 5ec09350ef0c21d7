"""The server-proxy messages (agent/protocol/proxy.py): parsing, refusal naming the field, round trips."""

from __future__ import annotations

import json

import pytest
from vigil.agent.protocol.messages import ProtocolError
from vigil.agent.protocol.proxy import (
    ConfigReply,
    HistoryRecord,
    ProxyData,
    Table,
    check_session,
    parse_config_tables,
    parse_proxy_data,
)

SESSION = "0123456789abcdef0123456789ABCDEF"


def body(**extra: object) -> dict:
    d: dict = {"request": "proxy data", "host": "px1", "session": SESSION, "version": "6.0.14",
               "clock": 1_700_000_000, "ns": 5}
    d.update(extra)
    return d


def test_proxy_data_as_zabbix_proxy_sends_it() -> None:
    data = parse_proxy_data(body(**{
        "history data": [{"id": 1, "itemid": 30001, "clock": 1_700_000_000, "ns": 7, "value": "3000"},
                         {"id": 2, "itemid": 30002, "clock": "1700000001", "ns": 0, "value": "x",
                          "lastlogsize": 120, "mtime": 5},
                         {"id": 3, "itemid": 30003, "clock": 1_700_000_002, "ns": 0, "state": 1,
                          "value": "Unsupported item key."}],
        "interface availability": [{"interfaceid": 4, "available": 2, "error": "timeout"}],
        "auto registration": [{"clock": 1_700_000_000, "host": "new1", "ip": "10.0.0.1", "dns": "",
                               "port": "10050", "host_metadata": "Linux", "tls_accepted": 1}],
        "more": 1,
    }))
    assert data.host == "px1" and data.session == SESSION.lower() and data.more
    assert [(r.id, r.itemid, r.clock, r.ns, r.value) for r in data.history] == [
        (1, 30001, 1_700_000_000, 7, "3000"), (2, 30002, 1_700_000_001, 0, "x"),
        (3, 30003, 1_700_000_002, 0, "Unsupported item key.")]
    assert (data.history[1].lastlogsize, data.history[1].mtime, data.history[2].state) == (120, 5, 1)
    assert data.interfaces[0].available == 2 and data.interfaces[0].error == "timeout"
    assert data.autoregistration[0].host == "new1"


def test_round_trip() -> None:
    sent = ProxyData(host="px1", session=SESSION.lower(), version="6.0.14", clock=10, ns=2,
                     history=[HistoryRecord(1, 5, 100, 3, "1.5"), HistoryRecord(2, 6, 101, 0, "t", lastlogsize=9,
                                                                                 mtime=1)])
    assert parse_proxy_data(json.loads(json.dumps(sent.to_json()))) == sent


@pytest.mark.parametrize(("record", "field"), [
    ({"id": 1, "clock": 1, "value": "1"}, "history data[0].itemid: missing"),
    ({"id": 1, "itemid": 5, "clock": "soon", "value": "1"}, "history data[0].clock:"),
    ({"id": 1, "itemid": 5, "clock": 1.5, "value": "1"}, "history data[0].clock:"),
    ({"id": 1, "itemid": -5, "clock": 1, "value": "1"}, "history data[0].itemid:"),
    ({"itemid": 5, "clock": 1, "value": "1"}, "history data[0].id: missing"),
    ({"id": 1, "itemid": 5, "clock": 1, "ns": 2_000_000_000}, "history data[0].ns:"),
    ({"id": 1, "itemid": 5, "clock": 1, "value": {"a": 1}}, "history data[0].value: must be a string"),
    ("not an object", "history data[0]: must be an object"),
])
def test_a_malformed_record_is_refused_naming_the_field(record: object, field: str) -> None:
    with pytest.raises(ProtocolError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_proxy_data(body(**{"history data": [record]}))


@pytest.mark.parametrize("session", ["abc", "z" * 32, SESSION + "0", 12345, None])
def test_a_session_that_is_not_32_hex_characters_is_refused(session: object) -> None:
    with pytest.raises(ProtocolError, match="session: must be 32 hexadecimal characters"):
        parse_proxy_data(body(session=session, **{"history data": [{"id": 1, "itemid": 1, "clock": 1,
                                                                      "value": "1"}]}))
    with pytest.raises(ProtocolError):
        check_session(session)


def test_ids_going_backwards_within_a_batch_are_refused() -> None:
    records = [{"id": i, "itemid": 1, "clock": 1, "value": "1"} for i in (5, 6, 4)]
    with pytest.raises(ProtocolError, match=r"history data\[2\]\.id: 4 does not follow 6"):
        parse_proxy_data(body(**{"history data": records}))
    with pytest.raises(ProtocolError, match=r"history data\[1\]\.id"):
        parse_proxy_data(body(**{"history data": [records[0], records[0]]}))


def test_sections_and_host_are_checked() -> None:
    with pytest.raises(ProtocolError, match="host: missing"):
        parse_proxy_data({"request": "proxy data", "session": SESSION})
    with pytest.raises(ProtocolError, match="history data: must be a list"):
        parse_proxy_data(body(**{"history data": {"id": 1}}))
    with pytest.raises(ProtocolError, match="over the maximum of 2"):
        parse_proxy_data(body(**{"history data": [{"id": i, "itemid": 1, "clock": 1} for i in (1, 2, 3)]}),
                         max_records=2)
    with pytest.raises(ProtocolError, match=r"interface availability\[0\]\.available"):
        parse_proxy_data(body(**{"interface availability": [{"interfaceid": 1, "available": 7}]}))
    # A passive proxy's reply has no host; an empty one (nothing buffered) needs no session either.
    assert parse_proxy_data({"version": "6.0.14", "clock": 1, "ns": 1}, passive=True).history == []


def test_config_tables_active_and_passive_shapes() -> None:
    reply = ConfigReply({"hosts": Table(["hostid", "host"], [[1, "h1"]])})
    assert reply.active_json() == {"hosts": {"fields": ["hostid", "host"], "data": [[1, "h1"]]}}
    assert reply.passive_json() == {"request": "proxy config", "data": reply.active_json()}
    assert parse_config_tables(reply.active_json()).tables["hosts"].data == [[1, "h1"]]


def test_config_tables_refuse_unknown_tables_columns_and_ragged_rows() -> None:
    known = {"hosts": ("hostid", "host")}
    with pytest.raises(ProtocolError, match="invalid table name 'data'"):
        parse_config_tables({"data": {"fields": [], "data": []}}, known)
    with pytest.raises(ProtocolError, match='invalid field name "hosts.x"'):
        parse_config_tables({"hosts": {"fields": ["hostid", "x"], "data": []}}, known)
    with pytest.raises(ProtocolError, match=r"hosts.data\[0\]: must be a list of 2 values"):
        parse_config_tables({"hosts": {"fields": ["hostid", "host"], "data": [[1]]}}, known)
