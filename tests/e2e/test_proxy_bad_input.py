"""The Vigil server against a proxy that reports its buffer (as a Vigil proxy does) and against bad
proxy input not covered by test_proxy_server.py: each answered `failed` (or its bad part ignored)
and logged, with the server still serving and nothing it acknowledged lost."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from vigil.server.config.migrate import engine_for

from tests.conftest import VigilServer, free_port, wait_until
from tests.e2e.test_proxy_server import CONFIG, data, exchange, failed, itemid, records, stored

WATCH = """
  - host: vigil-server
    items:
      - {key: "vigil[proxy,px1,buffer]", type: internal, value_type: unsigned, delay: 1s}
      - {key: "vigil[proxy,px-zbx,buffer]", type: internal, value_type: unsigned, delay: 1s}
"""


@pytest.fixture
def proxied(vigil_server: VigilServer) -> VigilServer:
    doc = CONFIG % {"passive_port": free_port()}
    doc = doc.replace("proxies:\n", "proxies:\n  - {name: px-zbx, mode: active}\n", 1) + WATCH
    vigil_server.import_yaml(doc)
    wait_until(lambda: exchange(vigil_server.port, {"request": "proxy heartbeat", "host": "px1"}) ==
               {"response": "success"}, 15, "the server to load the proxies")
    return vigil_server


def proxy_row(server: VigilServer, name: str) -> tuple[int, int | None]:
    engine = engine_for(server.database_url)
    try:
        with engine.connect() as c:
            lastaccess, buffer = c.execute(sa.text("SELECT lastaccess, buffer FROM proxies WHERE name = :n"),
                                           {"n": name}).one()
    finally:
        engine.dispose()
    return lastaccess, buffer


def item_state(server: VigilServer, key: str) -> tuple[int, str] | None:
    engine = engine_for(server.database_url)
    try:
        with engine.connect() as c:
            row = c.execute(sa.text("SELECT s.state, s.error FROM item_state s JOIN items i ON i.itemid = s.itemid "
                                    "WHERE i.key_ = :k"), {"k": key}).first()
    finally:
        engine.dispose()
    return None if row is None else (row[0], row[1])


def test_buffer_reported_in_heartbeat_and_data_is_kept_and_served(proxied: VigilServer) -> None:
    port = proxied.port
    hb = {"request": "proxy heartbeat", "host": "px1", "version": "6.0.14", "buffer": 1234}
    assert exchange(port, hb) == {"response": "success"}
    assert proxy_row(proxied, "px1")[1] == 1234
    wait_until(lambda: ["1234"] in [r[-1:] for r in proxied.history("vigil-server", "vigil[proxy,px1,buffer]")],
               20, "the internal item to return the buffer the proxy reported")
    item = itemid(proxied, "far1", "trap.a")
    reply = exchange(port, data("px1", records(item, range(1, 4), int(time.time()) - 30), buffer=7))
    assert reply is not None and reply["info"].startswith("processed: 3;"), reply
    assert proxy_row(proxied, "px1")[1] == 7
    # A heartbeat without the field (a Zabbix 6.0 proxy) keeps the last report.
    assert exchange(port, {"request": "proxy heartbeat", "host": "px1", "version": "6.0.14"}) == {"response": "success"}
    assert proxy_row(proxied, "px1")[1] == 7

    # A proxy that never reported it: last contact recorded, the item not supported with the reason.
    assert exchange(port, {"request": "proxy heartbeat", "host": "px-zbx", "version": "6.0.14"}) == \
        {"response": "success"}
    assert proxy_row(proxied, "px-zbx")[0] > 0 and proxy_row(proxied, "px-zbx")[1] is None
    wait_until(lambda: item_state(proxied, "vigil[proxy,px-zbx,buffer]") is not None, 20,
               "the internal item of px-zbx to be polled")
    state = item_state(proxied, "vigil[proxy,px-zbx,buffer]")
    assert state is not None and state[0] == 1 and "has not reported the size of its buffer" in state[1], state
    assert proxied.history("vigil-server", "vigil[proxy,px-zbx,buffer]") == []


@pytest.mark.parametrize("bad", [-1, "12x", 1.5, True, 2**63, None, [3]], ids=lambda b: repr(b))
def test_a_bad_buffer_is_ignored_and_the_request_served(proxied: VigilServer, bad: object) -> None:
    port = proxied.port
    assert exchange(port, {"request": "proxy heartbeat", "host": "px1", "buffer": 5}) == {"response": "success"}
    assert exchange(port, {"request": "proxy heartbeat", "host": "px1", "buffer": bad}) == {"response": "success"}
    item = itemid(proxied, "far1", "trap.a")
    reply = exchange(port, data("px1", records(item, range(1, 3), int(time.time()) - 30), buffer=bad))
    assert reply is not None and reply["info"].startswith("processed: 2;"), reply  # the values still stored
    assert len(stored(proxied, "far1", "trap.a")) == 2
    assert proxy_row(proxied, "px1")[1] == 5  # the bad report changed nothing
    assert "proxy [px1] at 127.0.0.1" in proxied.log_text() and f"buffer: {bad!r} ignored" in proxied.log_text()


def test_a_passive_proxy_connecting_in_is_refused_for_every_request(proxied: VigilServer) -> None:
    port = proxied.port
    item = itemid(proxied, "far2", "trap.b")
    clock = int(time.time()) - 30
    for request in ({"request": "proxy heartbeat", "host": "px-passive"},
                    data("px-passive", records(item, range(1, 4), clock)),
                    {"request": "proxy config", "host": "px-passive"}):
        assert failed(exchange(port, request), 'proxy "px-passive" is configured for passive mode'), request
    assert stored(proxied, "far2", "trap.b") == []
    assert proxy_row(proxied, "px-passive")[0] == 0  # not counted as a contact
    assert proxied.log_text().count("proxy [px-passive] is configured as passive") >= 3
    assert exchange(port, {"request": "proxy heartbeat", "host": "px1"}) == {"response": "success"}


def test_malformed_bodies_are_refused_naming_the_field(proxied: VigilServer) -> None:
    port = proxied.port
    item = itemid(proxied, "far1", "trap.a")
    clock = int(time.time()) - 30
    cases = [
        (data("px1", []) | {"history data": {"id": 1}}, "history data"),
        (data("px1", ["not a record"]), "history data[0]"),
        (data("px1", [{"id": 1, "itemid": "abc", "clock": clock, "value": "1"}]), "history data[0].itemid"),
        (data("px1", [{"id": "x", "itemid": item, "clock": clock, "value": "1"}]), "history data[0].id"),
        (data("px1", [{"id": 1, "itemid": item, "clock": clock, "ns": 2_000_000_000, "value": "1"}]),
         "history data[0].ns"),
    ]
    for body, field in cases:
        reply = exchange(port, body)
        assert failed(reply, field), (body, reply)
    assert failed(exchange(port, ["proxy data"]), "")  # not an object
    assert stored(proxied, "far1", "trap.a") == []
    # Still serving, and none of the refused ids were taken: the same ids go in.
    reply = exchange(port, data("px1", records(item, range(1, 4), clock)))
    assert reply is not None and reply["info"].startswith("processed: 3;"), reply


def test_ids_going_back_in_a_later_batch_of_the_same_session_are_taken_as_resent(proxied: VigilServer) -> None:
    """Ids below the highest stored one in a session are a resend (the proxy numbers them in order),
    so they are not stored twice; new ids after them are."""
    item = itemid(proxied, "far1", "trap.a")
    clock = int(time.time()) - 300
    assert exchange(proxied.port, data("px1", records(item, range(10, 13), clock)))["info"].startswith(  # type: ignore[index]
        "processed: 3;")
    back = exchange(proxied.port, data("px1", records(item, range(1, 4), clock - 100)))
    assert back is not None and back["response"] == "success" and back["info"].startswith("processed: 0; failed: 3")
    on = exchange(proxied.port, data("px1", records(item, range(13, 15), clock)))
    assert on is not None and on["info"].startswith("processed: 2;")
    assert [n for _, n, _ in stored(proxied, "far1", "trap.a")] == [10, 11, 12, 13, 14]
    assert "3 already stored (resent)" in proxied.log_text()
