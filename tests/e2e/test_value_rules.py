"""Zabbix's value rules, with the real zabbix_server 6.0 as the oracle: the same lines go to it and to
`vigil server` (both stores), and what each stored must agree.

Values go with the real zabbix_sender where a line can carry them (everything but CR/LF) and as raw
`sender data` frames otherwise, and for clocks and ns sent as JSON strings, which zabbix_sender never
writes. zabbix_server stores from its history cache a little after it replied, so its rows are
awaited: an item is settled once it has a row or Zabbix marked it unsupported.

Where Vigil departs on purpose (README): a value its item cannot hold counts as failed in Vigil's
reply and as processed (item made unsupported) in Zabbix's, and an element with a bad clock counts
as failed in Vigil's reply while Zabbix leaves it out of the counts. So the stored values are
compared, not the counts.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from vigil.agent.protocol import zbxd
from vigil.server.config.migrate import engine_for
from vigil.server.config.repo import ConfigRepo
from vigil.server.config.tables import ValueType
from vigil.server.store import open_store

from tests.conftest import VigilServer, drop_pg_database, new_pg_database, require
from tests.peers.zabbix_server import peer
from tests.peers.zabbix_server.peer import ZabbixServer
from tests.server.test_ingest_values import FLOAT_TABLE, UNSIGNED_TABLE

NOW = int(time.time())
T = NOW - 300  # a clock both servers keep: within Zabbix's 90d history and Vigil's window
CLOCK_CASES: list[tuple[Any, Any]] = [  # (clock, ns) as sent; None: the field is left out
    (T, None), (str(T), "7"), ("0" + str(T), "0009"), (" " + str(T), None), (str(T) + " ", None), ("1.7e9", None),
    (float(T), None), ("٤٢", None), ("-5", None), ("2147483648", None), (True, None), ("", None), ("²", None),
    (T, "1000000000"), (T, " 1"), (T, 999_999_999), (T, "٣"), (T, 1.0),
]
BACKENDS = ["sqlite", "postgresql"]
LONG = "é" * 70_000


def _items() -> list[tuple[str, int]]:
    """(key, Zabbix value type) of every item each host has."""
    items = [(f"u.{i}", peer.UNSIGNED) for i in range(len(UNSIGNED_TABLE))]
    items += [(f"f.{i}", peer.FLOAT) for i in range(len(FLOAT_TABLE))]
    items += [(f"clk.{i}", peer.UNSIGNED) for i in range(len(CLOCK_CASES))]
    items += [("old", peer.UNSIGNED), ("ahead", peer.UNSIGNED), ("ready", peer.UNSIGNED)]
    items += [("seq", peer.UNSIGNED), ("nsq", peer.UNSIGNED)]
    items += [("c", peer.CHAR), ("t", peer.TEXT), ("l", peer.LOG)]
    return items


VIGIL_TYPES = {peer.FLOAT: "float", peer.UNSIGNED: "unsigned", peer.CHAR: "char", peer.TEXT: "text",
               peer.LOG: "log"}


@pytest.fixture(scope="module")
def zabbix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ZabbixServer, dict[tuple[str, str], int]]]:
    z = ZabbixServer(tmp_path_factory.mktemp("zabbix-server"))
    ids: dict[tuple[str, str], int] = {}
    try:
        for backend in BACKENDS:
            hostid = z.add_host(f"vr-{backend}")
            for key, vt in _items():
                ids[(f"vr-{backend}", key)] = z.add_item(hostid, key, vt)
        z.start()
        yield z, ids
    finally:
        z.drop()


@pytest.fixture(scope="module", params=BACKENDS)
def vigil(request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[VigilServer, str]]:
    backend = request.param
    tmp = tmp_path_factory.mktemp(f"vigil-{backend}")
    name = None
    if backend == "sqlite":
        url = f"sqlite:///{tmp / 'vigil.db'}"
    else:
        name, url = new_pg_database()
    s = VigilServer(tmp, url).start()
    host = f"vr-{backend}"
    try:
        items = "\n".join(f"      - {{key: '{k}', type: trapper, value_type: {VIGIL_TYPES[vt]}, history: 90d}}"
                          for k, vt in _items())
        s.import_yaml(f"hosts:\n  - host: {host}\n    items:\n{items}\n")
        _wait(lambda: _reply(s.port, [{"host": host, "key": "ready", "value": "1"}])["info"].startswith(
            "processed: 1"), "Vigil to load its configuration")
        yield s, host
    finally:
        s.stop()
        if name:
            drop_pg_database(name)


def _wait(cond: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _reply(port: int, data: list[Any]) -> dict[str, Any]:
    body = json.dumps({"request": "sender data", "data": data}).encode()
    with socket.create_connection(("127.0.0.1", port), 10) as s:
        s.settimeout(30)
        s.sendall(zbxd.encode(body))
        return json.loads(zbxd.recv_frame(s)[1])


def _zabbix_sender(port: int, lines: list[tuple[str, str, int, str]], tmp: Path) -> str:
    path = tmp / f"values-{port}.txt"

    def quote(v: str) -> str:
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'

    path.write_text("".join(f"{h} {k} {c} {quote(v)}\n" for h, k, c, v in lines), encoding="utf-8")
    r = subprocess.run([require("zabbix_sender"), "-z", "127.0.0.1", "-p", str(port), "-T", "-i", str(path)],
                       capture_output=True, text=True, timeout=60)
    assert "sent:" in r.stdout, r.stdout + r.stderr
    return r.stdout


def _send_both(z: ZabbixServer, v: VigilServer, lines: list[tuple[str, str, int, str]], tmp: Path) -> None:
    """Lines a zabbix_sender input file can carry go through zabbix_sender, the others as raw frames."""
    by_tool = [x for x in lines if "\n" not in x[3] and "\r" not in x[3]]
    raw = [{"host": h, "key": k, "clock": c, "value": val} for h, k, c, val in lines if (h, k, c, val) not in by_tool]
    for port in (z.port, v.port):
        _zabbix_sender(port, by_tool, tmp)
        if raw:
            assert _reply(port, raw)["response"] == "success"


def _zabbix_rows(z: ZabbixServer, itemid: int, vt: int) -> list[tuple[Any, ...]]:
    return [(int(r[0]), int(r[1]), int(r[2]) if vt == peer.UNSIGNED else r[2]) for r in z.history(itemid, vt)]


def _zabbix_settled(z: ZabbixServer, itemids: list[int]) -> int:
    """How many of the items zabbix_server is done with: a value stored, or the item made unsupported."""
    rows = z.sql(
        "SELECT count(*) FROM item_rtdata r WHERE r.itemid = ANY(%s) AND (r.state = 1 OR EXISTS "
        "(SELECT 1 FROM history h WHERE h.itemid = r.itemid) OR EXISTS "
        "(SELECT 1 FROM history_uint u WHERE u.itemid = r.itemid) OR EXISTS "
        "(SELECT 1 FROM history_str s WHERE s.itemid = r.itemid) OR EXISTS "
        "(SELECT 1 FROM history_text t WHERE t.itemid = r.itemid) OR EXISTS "
        "(SELECT 1 FROM history_log g WHERE g.itemid = r.itemid))", (itemids,))
    return int(rows[0][0])


def _vigil_rows(v: VigilServer, host: str, key: str) -> list[tuple[Any, ...]]:
    engine = engine_for(v.database_url)
    try:
        ref = ConfigRepo(engine).snapshot().items[(host, key)]
    finally:
        engine.dispose()
    store = open_store(v.database_url)
    try:
        return [tuple(r) for r in store.history(ref.itemid, ValueType(ref.value_type), 0, 2**31 - 1)]
    finally:
        store.close()


def test_numeric_values_stored_alike(zabbix: tuple[ZabbixServer, dict], vigil: tuple[VigilServer, str],
                                     tmp_path: Path) -> None:
    z, ids = zabbix
    v, host = vigil
    lines = [(host, f"u.{i}", T + i, text) for i, (text, _) in enumerate(UNSIGNED_TABLE)]
    lines += [(host, f"f.{i}", T + i, text) for i, (text, _) in enumerate(FLOAT_TABLE)]
    _send_both(z, v, lines, tmp_path)
    keys = [(f"u.{i}", peer.UNSIGNED, want) for i, (_, want) in enumerate(UNSIGNED_TABLE)]
    keys += [(f"f.{i}", peer.FLOAT, want) for i, (_, want) in enumerate(FLOAT_TABLE)]
    itemids = [ids[(host, k)] for k, _, _ in keys]
    _wait(lambda: _zabbix_settled(z, itemids) == len(itemids), "zabbix_server to store or refuse every value")
    mismatches = []
    for (key, vt, want), (_, _, _, text) in zip(keys, lines, strict=True):
        theirs = [r[2] for r in _zabbix_rows(z, ids[(host, key)], vt)]
        ours = [r[2] for r in _vigil_rows(v, host, key)]
        table = [] if want is None else [want]
        if not (theirs == ours == table):
            mismatches.append(f"{text!r}: zabbix_server {theirs}, vigil {ours}, table {table}")
    assert mismatches == []


def test_clocks_and_ns_as_digit_strings(zabbix: tuple[ZabbixServer, dict], vigil: tuple[VigilServer, str]) -> None:
    z, ids = zabbix
    v, host = vigil
    data = []
    for i, (clock, ns) in enumerate(CLOCK_CASES):
        d: dict[str, Any] = {"host": host, "key": f"clk.{i}", "value": "1", "clock": clock}
        if ns is not None:
            d["ns"] = ns
        data.append(d)
    zr = _reply(z.port, data)
    vr = _reply(v.port, data)
    assert zr["response"] == vr["response"] == "success"
    kept = int(zr["info"].split(";")[0].split(": ")[1])  # Zabbix counts only the elements it kept
    itemids = [ids[(host, f"clk.{i}")] for i in range(len(CLOCK_CASES))]
    _wait(lambda: _zabbix_settled(z, itemids) == kept, "zabbix_server to store the values it kept")
    theirs = {i: _zabbix_rows(z, ids[(host, f"clk.{i}")], peer.UNSIGNED) for i in range(len(CLOCK_CASES))}
    ours = {i: _vigil_rows(v, host, f"clk.{i}") for i in range(len(CLOCK_CASES))}
    assert {CLOCK_CASES[i]: r for i, r in ours.items()} == {CLOCK_CASES[i]: r for i, r in theirs.items()}
    assert kept >= 4 and vr["info"].startswith(f"processed: {kept}; failed: {len(CLOCK_CASES) - kept}")


def test_timestamps_of_values_sent_without_clock_or_ns(zabbix: tuple[ZabbixServer, dict],
                                                       vigil: tuple[VigilServer, str]) -> None:
    """No clock: distinct, increasing receive times in the order sent. A clock without ns: 0, 1, 2, …"""
    z, ids = zabbix
    v, host = vigil
    seq = [{"host": host, "key": "seq", "value": str(i)} for i in range(20)]
    nsq = [{"host": host, "key": "nsq", "value": str(i), "clock": T + i // 3} for i in range(6)]
    for port in (z.port, v.port):
        assert _reply(port, seq + nsq)["info"].startswith("processed: 26; failed: 0")
    _wait(lambda: len(z.history(ids[(host, "seq")], peer.UNSIGNED)) == 20
          and len(z.history(ids[(host, "nsq")], peer.UNSIGNED)) == 6, "zabbix_server to store 26 values")
    for server, rows in (("zabbix_server", _zabbix_rows(z, ids[(host, "seq")], peer.UNSIGNED)),
                         ("vigil", _vigil_rows(v, host, "seq"))):
        assert [r[2] for r in rows] == list(range(20)), server  # ordered by (clock, ns): the order sent
        assert len({(r[0], r[1]) for r in rows}) == 20, server
        assert all(NOW - 5 <= r[0] <= time.time() + 5 for r in rows), server
    assert _vigil_rows(v, host, "nsq") == _zabbix_rows(z, ids[(host, "nsq")], peer.UNSIGNED)


def test_text_values_cut_alike(zabbix: tuple[ZabbixServer, dict], vigil: tuple[VigilServer, str],
                               tmp_path: Path) -> None:
    z, ids = zabbix
    v, host = vigil
    _send_both(z, v, [(host, k, T, LONG) for k in ("c", "t", "l")], tmp_path)
    vts = {"c": peer.CHAR, "t": peer.TEXT, "l": peer.LOG}
    _wait(lambda: all(z.history(ids[(host, k)], vt) for k, vt in vts.items()), "zabbix_server to store 3 values")
    theirs = {k: [len(r[2]) for r in z.history(ids[(host, k)], vt)] for k, vt in vts.items()}
    ours = {k: [len(r[2]) for r in _vigil_rows(v, host, k)] for k in vts}
    assert ours == theirs == {"c": [255], "t": [65535], "l": [65535]}


def test_clocks_out_of_the_window(zabbix: tuple[ZabbixServer, dict], vigil: tuple[VigilServer, str]) -> None:
    """Older than the items' history period: neither server stores it (zabbix_server counts it processed,
    Vigil failed). An hour ahead: zabbix_server stores it, Vigil refuses it (VIGIL_MAX_CLOCK_AHEAD, on
    purpose: a clock years ahead would make partitions no one asked for)."""
    z, ids = zabbix
    v, host = vigil
    now = int(time.time())
    data = [{"host": host, "key": "old", "value": "1", "clock": now - 100 * 86400},
            {"host": host, "key": "ahead", "value": "2", "clock": now + 3600},
            {"host": host, "key": "ready", "value": "3"}]
    assert _reply(z.port, data)["info"].startswith("processed: 3; failed: 0")
    assert _reply(v.port, data)["info"].startswith("processed: 1; failed: 2")
    _wait(lambda: len(z.history(ids[(host, "ahead")], peer.UNSIGNED)) == 1, "zabbix_server to store a value")
    ready = ids[(host, "ready")]
    _wait(lambda: any(r[2] == 3 for r in z.history(ready, peer.UNSIGNED)), "zabbix_server to store a value")
    assert z.history(ids[(host, "old")], peer.UNSIGNED) == _vigil_rows(v, host, "old") == []
    assert _vigil_rows(v, host, "ahead") == []
