"""Site servers (issue 16): a full `vigil server` on SQLite with VIGIL_UPSTREAM/VIGIL_SITE forwards what it
stores to a central `vigil server` on PostgreSQL, through an outage of the central, with real zabbix_sender;
and the central's refusals of bad site input."""

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
from vigil.server.config.sites import host_owners, item_ids
from vigil.server.store import open_store
from vigil.server.store.events import EventStore

from tests.conftest import VigilServer, drop_pg_database, new_pg_database, require, wait_until

CENTRAL = """
proxies:
  - {name: paris, mode: active}
  - {name: lyon, mode: active}
  - {name: quiet, mode: passive, address: "127.0.0.1:9"}
hosts:
  - host: hq1
    items: [{key: temp, type: trapper}]
"""
SITE = """
hosts:
  - host: web1
    name: Web one
    items:
      - {key: temp, type: trapper, value_type: float, units: C, tags: [{tag: room, value: lab}]}
      - {key: msg, type: trapper, value_type: text}
"""
TRIGGER = """
hosts:
  - host: web1
    triggers:
      - {name: Hot at a site, expression: last(/web1/temp)>50, severity: high}
"""


def exchange(port: int, obj: Any) -> dict:
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(zbxd.encode(json.dumps(obj).encode(), compress=True))
        _, body = zbxd.recv_frame(s)
    return json.loads(body)


def rows(server: VigilServer, host: str, key: str) -> list[tuple[int, int, Any]]:
    engine = engine_for(server.database_url)
    store = open_store(server.database_url)
    try:
        found = ConfigRepo(engine).item(host, key)
        if found is None:
            return []
        return [tuple(r) for r in store.history(found[0], found[1], 0, 2**31 - 1)]
    finally:
        store.close()
        engine.dispose()


def send(server: VigilServer, lines: list[str], tmp: Path) -> str:
    path = tmp / f"values-{time.monotonic_ns()}.txt"
    path.write_text("".join(x + "\n" for x in lines))
    r = subprocess.run([require("zabbix_sender"), "-z", "127.0.0.1", "-p", str(server.port), "-T", "-i", str(path)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def owners(server: VigilServer, host: str) -> tuple[int | None, list[str]] | None:
    engine = engine_for(server.database_url)
    try:
        return host_owners(engine, [host]).get(host)
    finally:
        engine.dispose()


@pytest.fixture
def central(tmp_path: Path) -> Iterator[VigilServer]:
    name, url = new_pg_database()
    s = VigilServer(tmp_path / "central", url)
    (tmp_path / "central").mkdir()
    try:
        s.start()
        s.import_yaml(CENTRAL)
        yield s
    finally:
        s.stop()
        drop_pg_database(name)


@pytest.fixture
def site(tmp_path: Path, central: VigilServer) -> Iterator[VigilServer]:
    (tmp_path / "site").mkdir()
    s = VigilServer(tmp_path / "site", f"sqlite:///{tmp_path / 'site' / 'vigil.db'}",
                    VIGIL_UPSTREAM=f"127.0.0.1:{central.port}", VIGIL_SITE="paris")
    try:
        s.start()
        s.import_yaml(SITE)
        s.wait_for_config("web1")
        yield s
    finally:
        s.stop()


def test_site_forwards_everything_once_through_an_outage(site: VigilServer, central: VigilServer,
                                                         tmp_path: Path) -> None:
    # The site's host shows up on the central in Site/paris, monitored by proxy paris, with its items.
    wait_until(lambda: owners(central, "web1") is not None, 20, "web1 to be registered on the central")
    proxyid, groups = owners(central, "web1")  # type: ignore[misc]
    assert groups == ["Site/paris"] and proxyid is not None
    engine = engine_for(central.database_url)
    try:
        assert set(item_ids(engine, ["web1"])) == {("web1", "temp"), ("web1", "msg")}
        assert ConfigRepo(engine).proxies()["paris"].proxyid == proxyid
    finally:
        engine.dispose()
    central.import_yaml(TRIGGER)  # a trigger on the central on a site's item

    now = int(time.time())
    first = [f"web1 temp {now - 100 + i} {i}.5" for i in range(30)]
    out = send(site, first, tmp_path)
    assert "processed: 30" in out, out
    wait_until(lambda: len(rows(central, "web1", "temp")) == 30, 20, "the first values on the central")

    central.stop()  # the site keeps storing and answering while the central is down
    second = [f"web1 temp {now - 50 + i} {i}" for i in range(40)] + [f"web1 msg {now - 5} hello from paris"]
    assert "processed: 41" in send(site, second, tmp_path)
    assert len(rows(site, "web1", "temp")) == 70
    time.sleep(2)  # the uplink fails a few times
    site.kill()  # and the site dies mid-outage: its outbox (and the central's item ids) survive
    site.start()
    site.wait_for_config("web1")
    third = [f"web1 temp {now - 2} 99"]  # hot: the central's trigger fires once it gets it
    assert "processed: 1" in send(site, third, tmp_path)

    central.start()
    wait_until(lambda: len(rows(central, "web1", "temp")) >= 71 and rows(central, "web1", "msg"), 30,
               "the central to catch up")
    time.sleep(2)  # nothing more (no resent duplicates) arrives
    for key in ("temp", "msg"):
        here, there = rows(site, "web1", key), rows(central, "web1", key)
        assert len(there) == len(set(there)), f"{key}: duplicates on the central"
        assert sorted(there) == sorted(here), key  # every value once, by (clock, ns, value)
    assert len(rows(central, "web1", "temp")) == 71
    assert rows(central, "hq1", "temp") == []  # the central's own host of the same key is untouched

    es = EventStore(engine_for(central.database_url))
    try:
        wait_until(lambda: any(p.name == "Hot at a site" for p in es.problems()), 20, "the central's trigger")
    finally:
        es.engine.dispose()
    assert "site [paris]" in site.log_text() and "registered on the central server" in site.log_text()


def site_config(site: str, hosts: list[dict]) -> dict:
    return {"request": "vigil site config", "host": site, "version": "6.0.14", "hosts": hosts}


WEB2 = [{"host": "web2", "items": [{"itemid": 7, "key": "temp", "value_type": "float"}]}]


def test_bad_site_input_is_refused_naming_it(vigil_server: VigilServer) -> None:
    vigil_server.import_yaml(CENTRAL)
    port = vigil_server.port
    wait_until(lambda: exchange(port, {"request": "proxy heartbeat", "host": "paris"}) == {"response": "success"},
               15, "the server to load the proxies")

    r = exchange(port, site_config("nowhere", WEB2))
    assert r["response"] == "failed" and 'site "nowhere" is not declared' in r["info"]
    r = exchange(port, site_config("quiet", WEB2))
    assert r["response"] == "failed" and "passive" in r["info"]
    r = exchange(port, site_config("paris", [{"host": "hq1", "items": []}]))
    assert r["response"] == "failed" and "hosts[0].host: 'hq1' is already a host of the central server" in r["info"]
    r = exchange(port, site_config("paris", [{"host": "web2", "items": [{"itemid": 7, "key": "t",
                                                                          "value_type": "bogus"}]}]))
    assert r["response"] == "failed" and "hosts[0].items[0].value_type" in r["info"]
    r = exchange(port, site_config("paris", [{"host": "web2", "items": [{"key": "t"}]}]))
    assert r["response"] == "failed" and "hosts[0].items[0].itemid" in r["info"]
    r = exchange(port, site_config("paris", [{"host": "web2", "items": [], "color": "red"}]))
    assert r["response"] == "failed" and "hosts[0]: unknown field 'color'" in r["info"]
    assert owners(vigil_server, "web2") is None  # nothing of a refused configuration was created

    r = exchange(port, site_config("paris", WEB2))
    assert r["response"] == "success"
    [[site_id, central_id]] = r["items"]
    assert site_id == 7 and owners(vigil_server, "web2") == (owners(vigil_server, "web2")[0], ["Site/paris"])
    # Another site naming paris' host is refused, naming the owner.
    r = exchange(port, site_config("lyon", WEB2))
    assert r["response"] == "failed" and "hosts[0].host: 'web2' is already a host of site 'paris'" in r["info"]
    # Values from lyon for paris' item are not stored; paris' are.
    now = int(time.time())
    rec = {"id": 1, "itemid": central_id, "clock": now, "ns": 5, "value": "1.5"}
    r = exchange(port, {"request": "proxy data", "host": "lyon", "session": "a" * 32, "version": "6.0.14",
                        "clock": now, "ns": 0, "history data": [rec]})
    assert r["response"] == "success" and "processed: 0; failed: 1" in r["info"]
    r = exchange(port, {"request": "proxy data", "host": "paris", "session": "b" * 32, "version": "6.0.14",
                        "clock": now, "ns": 0, "history data": [rec]})
    assert r["response"] == "success" and "processed: 1; failed: 0" in r["info"]
    assert rows(vigil_server, "web2", "temp") == [(now, 5, 1.5)]
    # Registering again (the site's configuration changed) keeps the host and its central ids.
    r = exchange(port, site_config("paris", [{"host": "web2", "items": [
        {"itemid": 7, "key": "temp", "value_type": "float"}, {"itemid": 8, "key": "load", "value_type": "float"}]}]))
    assert r["response"] == "success" and [7, central_id] in r["items"] and len(r["items"]) == 2
