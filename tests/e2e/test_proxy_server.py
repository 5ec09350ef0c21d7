"""The Vigil server's proxy handling, driven from the test: what the real zabbix_proxy 6.0 demands of
the server's replies (each a regression test), duplicates by (proxy, session, id) across restarts, and
bad input answered `failed` or closed, logged, with the server still serving."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from vigil.agent.protocol import zbxd
from vigil.server.config.migrate import engine_for
from vigil.server.config.repo import ConfigRepo
from vigil.server.store import open_store

from tests.conftest import VigilServer, free_port, wait_until
from tests.server.proxy_schema import PROXY_SCHEMA_60

SESSION = "5f0e1c2d3b4a69788796a5b4c3d2e1f0"

CONFIG = """
proxies:
  - {name: px1, mode: active}
  - {name: px-elsewhere, mode: active, allowed_addresses: [10.9.0.0/16]}
  - {name: px-passive, mode: passive, address: "127.0.0.1:%(passive_port)d"}
hosts:
  - host: far1
    proxy: px1
    interfaces: [{type: agent, address: 127.0.0.1, port: 10050}]
    items:
      - {key: trap.a, type: trapper}
      - {key: agent.ping, type: agent, value_type: unsigned}
      - {key: "log[/var/log/app.log]", type: agent_active, value_type: log}
  - host: far2
    proxy: px-passive
    items: [{key: trap.b, type: trapper}]
  - host: near
    items: [{key: trap.n, type: trapper}]
"""


def exchange(port: int, obj: Any, *, compress: bool = True) -> dict | None:
    """One request; the reply, or None when the server closed without one."""
    raw = obj if isinstance(obj, bytes) else zbxd.encode(json.dumps(obj).encode(), compress=compress)
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        try:
            s.sendall(raw)
            _, body = zbxd.recv_frame(s)
        except (EOFError, ConnectionError, zbxd.FrameError):
            return None  # closed (a reset while sending: closed before reading everything)
    return json.loads(body)


def itemid(server: VigilServer, host: str, key: str) -> int:
    engine = engine_for(server.database_url)
    try:
        found = ConfigRepo(engine).item(host, key)
    finally:
        engine.dispose()
    assert found is not None
    return found[0]


def stored(server: VigilServer, host: str, key: str) -> list[tuple[int, int, Any]]:
    engine = engine_for(server.database_url)
    store = open_store(server.database_url)
    try:
        found = ConfigRepo(engine).item(host, key)
        assert found is not None
        return store.history(found[0], found[1], 0, 2**31 - 1)
    finally:
        store.close()
        engine.dispose()


def data(host: str, records: list[dict], session: str = SESSION, **extra: Any) -> dict:
    d = {"request": "proxy data", "host": host, "session": session, "version": "6.0.14",
         "clock": int(time.time()), "ns": 0, "history data": records}
    d.update(extra)
    return d


def records(item: int, ids: range, clock: int) -> list[dict]:
    return [{"id": i, "itemid": item, "clock": clock + i, "ns": i, "value": str(i)} for i in ids]


@pytest.fixture
def server(vigil_server: VigilServer) -> VigilServer:
    vigil_server.import_yaml(CONFIG % {"passive_port": free_port()})
    wait_until(lambda: exchange(vigil_server.port, {"request": "proxy heartbeat", "host": "px1"}) ==
               {"response": "success"}, 15, "the server to load the proxies")
    return vigil_server


def test_active_config_reply_is_what_zabbix_proxy_6_0_accepts(server: VigilServer) -> None:
    reply = exchange(server.port, {"request": "proxy config", "host": "px1", "version": "6.0.14"})
    assert reply is not None
    # No "request" key (the proxy: "cannot open JSON object or array") and no "data" wrapper
    # ("invalid table name \"data\""): the tables are the top-level keys.
    assert "request" not in reply and "data" not in reply and "response" not in reply
    for name, table in reply.items():
        assert name in PROXY_SCHEMA_60, name
        assert set(table) == {"fields", "data"}, name
        unknown = [f for f in table["fields"] if f not in PROXY_SCHEMA_60[name]]
        assert unknown == [], f"{name}: columns the 6.0 proxy rejects ('invalid field name'): {unknown}"
    rows = {name: [dict(zip(t["fields"], r, strict=True)) for r in t["data"]] for name, t in reply.items()}
    assert [h["host"] for h in rows["hosts"]] == ["far1"]
    # Items without item_rtdata rows load as none in the proxy's config cache: every one needs its row.
    assert sorted(r["itemid"] for r in rows["item_rtdata"]) == sorted(i["itemid"] for i in rows["items"])
    assert len(rows["items"]) == 3


class RecordingProxy:
    """Listens where a passive proxy would and records what the server sends (answering as 6.0.14 does)."""

    def __init__(self, port: int) -> None:
        self.requests: list[dict] = []
        self.sock = socket.create_server(("127.0.0.1", port))
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                try:
                    _, body = zbxd.recv_frame(conn)
                except (OSError, EOFError, zbxd.FrameError):
                    continue
                obj = json.loads(body)
                self.requests.append(obj)
                if obj.get("request") == "proxy config":
                    reply = {"response": "success", "version": "6.0.14"}
                else:
                    reply = {"session": SESSION, "version": "6.0.14", "clock": int(time.time()), "ns": 0}
                conn.sendall(zbxd.encode(json.dumps(reply).encode(), compress=True))

    def close(self) -> None:
        self.sock.close()


def test_passive_config_request_has_the_data_wrapper(vigil_server: VigilServer) -> None:
    port = free_port()
    recorder = RecordingProxy(port)
    try:
        vigil_server.import_yaml(CONFIG % {"passive_port": port})
        wait_until(lambda: any(r.get("request") == "proxy data" for r in recorder.requests), 20,
                   "the server to poll the passive proxy")
    finally:
        recorder.close()
    config = recorder.requests[0]
    # 6.0.14 answers a config without "data" with `cannot find pair with name "data"`.
    assert config["request"] == "proxy config" and set(config) == {"request", "data"}
    assert [h[1] for h in config["data"]["hosts"]["data"]] == ["far2"]
    assert set(config["data"]) <= set(PROXY_SCHEMA_60)
    assert recorder.requests[1] == {"request": "proxy data"}


def test_a_resent_batch_is_stored_once_also_after_a_restart(server: VigilServer) -> None:
    item = itemid(server, "far1", "trap.a")
    clock = int(time.time()) - 600
    batch = data("px1", records(item, range(1, 6), clock))
    first = exchange(server.port, batch)
    assert first is not None and first["response"] == "success" and first["info"].startswith("processed: 5;")
    again = exchange(server.port, batch)
    assert again is not None and again["response"] == "success" and again["info"].startswith("processed: 0;")
    assert len(stored(server, "far1", "trap.a")) == 5
    server.stop()
    server.start()
    assert exchange(server.port, batch)["info"].startswith("processed: 0;")  # type: ignore[index]
    overlap = exchange(server.port, data("px1", records(item, range(4, 9), clock)))
    assert overlap is not None and overlap["info"].startswith("processed: 3;")
    rows = stored(server, "far1", "trap.a")
    assert [(c, n) for c, n, _ in rows] == [(clock + i, i) for i in range(1, 9)]  # original clock and ns
    # Another session of the same proxy (it restarted) starts its ids again.
    other = exchange(server.port, data("px1", records(item, range(1, 3), clock + 100), session="a" * 32))
    assert other is not None and other["info"].startswith("processed: 2;")
    assert len(stored(server, "far1", "trap.a")) == 10


def failed(reply: dict | None, text: str) -> bool:
    return reply is not None and reply["response"] == "failed" and text in reply["info"]


def test_bad_input_is_answered_failed_or_closed_and_the_server_goes_on(server: VigilServer) -> None:
    item = itemid(server, "far1", "trap.a")
    other = itemid(server, "near", "trap.n")
    clock = int(time.time()) - 60
    port = server.port
    assert failed(exchange(port, data("nobody", records(item, range(1, 2), clock))), 'proxy "nobody" not found')
    assert failed(exchange(port, {"request": "proxy config", "host": "px-passive"}), "configured for passive mode")
    assert failed(exchange(port, {"request": "proxy heartbeat"}), "host: missing")
    assert failed(exchange(port, {"request": "proxy config", "host": "px-elsewhere"}),
                  'connection of proxy "px-elsewhere" from 127.0.0.1 is not allowed')
    assert failed(exchange(port, data("px1", [{"id": 1, "clock": clock, "value": "1"}])),
                  "history data[0].itemid: missing")
    assert failed(exchange(port, data("px1", [{"id": 1, "itemid": item, "clock": "noon", "value": "1"}])),
                  "history data[0].clock")
    assert failed(exchange(port, data("px1", records(item, range(1, 2), clock), session="not-a-token")),
                  "session: must be 32 hexadecimal characters")
    backwards = records(item, range(20, 23), clock)[::-1]
    assert failed(exchange(port, data("px1", backwards, session="b" * 32)), "history data[1].id: 21 does not follow 22")
    # A value for an item the proxy does not monitor is skipped; the others are kept.
    mixed = records(item, range(1, 3), clock) + [{"id": 3, "itemid": other, "clock": clock, "value": "9"}]
    reply = exchange(port, data("px1", mixed, session="c" * 32))
    assert reply is not None and reply["info"].startswith("processed: 2; failed: 1; total: 3"), reply
    assert stored(server, "near", "trap.n") == []
    # 10 MB of garbage: without a header, and as the body of a frame.
    garbage = os.urandom(10 * 1024 * 1024)
    assert exchange(port, garbage) is None
    assert failed(exchange(port, zbxd.encode(b"{" + garbage.hex()[:10 * 1024 * 1024].encode())),
                  "cannot parse as a valid JSON")
    # A compressed frame whose zlib stream is cut short.
    body = json.dumps(data("px1", records(item, range(30, 40), clock), session="d" * 32)).encode()
    packed = zlib.compress(body)[:-20]
    assert exchange(port, zbxd.MAGIC + bytes((3,)) + len(packed).to_bytes(4, "little") +
                    len(body).to_bytes(4, "little") + packed) is None
    log = server.log_text()
    assert f"first failure: item {other} is not an enabled item of a host monitored by this proxy" in log
    for text in ("proxy [nobody] not found", "configured as passive", "refused: session", "refused a frame",
                 "history data[0].itemid: missing"):
        assert text in log, text
    # Still serving: the truncated batch's ids were not taken, so it goes in whole when sent again.
    again = exchange(port, data("px1", records(item, range(30, 40), clock), session="d" * 32))
    assert again is not None and again["info"].startswith("processed: 10;")


def test_heartbeat_and_data_record_last_seen_and_delay(server: VigilServer, tmp_path: Path) -> None:
    item = itemid(server, "far1", "trap.a")
    now = int(time.time())
    reply = exchange(server.port, data("px1", records(item, range(1, 3), now - 120)))
    assert reply is not None and reply["response"] == "success"
    engine = engine_for(server.database_url)
    try:
        with engine.connect() as c:
            lastaccess, delay, version = c.execute(sa.text(
                "SELECT lastaccess, delay, version FROM proxies WHERE name = 'px1'")).one()
    finally:
        engine.dispose()
    assert lastaccess >= now and version == "6.0.14"
    assert 119 <= delay <= 120 + (int(time.time()) - now)  # the oldest value's age when it arrived


def test_a_full_batch_of_10000_records_with_availability_is_taken(server: VigilServer) -> None:
    """A 6.0 proxy's largest batch (10,000 history records, "more":1) plus its other sections: over
    VIGIL_MAX_REQUEST_VALUES objects, yet one batch, which must not be refused (it would be resent forever)."""
    item = itemid(server, "far1", "trap.a")
    engine = engine_for(server.database_url)
    try:
        with engine.connect() as c:
            interfaceid = c.execute(sa.text("SELECT i.interfaceid FROM interfaces i JOIN hosts h ON "
                                            "h.hostid = i.hostid WHERE h.host = 'far1'")).scalar()
    finally:
        engine.dispose()
    clock = int(time.time()) - 20_000  # one value a second, all in the past
    batch = data("px1", records(item, range(1, 10_001), clock), more=1,
                 **{"interface availability": [{"interfaceid": interfaceid, "available": 2, "error": "timed out"}]})
    reply = exchange(server.port, batch)
    assert reply is not None and reply["info"].startswith("processed: 10000; failed: 0"), reply
    assert len(stored(server, "far1", "trap.a")) == 10_000
    engine = engine_for(server.database_url)
    try:
        with engine.connect() as c:
            row = c.execute(sa.text("SELECT available, error FROM interfaces WHERE interfaceid = :i"),
                            {"i": interfaceid}).one()
    finally:
        engine.dispose()
    assert tuple(row) == (2, "timed out")
