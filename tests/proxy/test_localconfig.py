"""The proxy's local configuration: the server's `proxy_tables()` applied into the proxy's SQLite
keeps the server's ids, so the server's own poll_config() and snapshot() on it give the proxy what
to poll and what its active agents get; tables not in 6.0's proxy schema are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml
from vigil.agent.protocol.proxy import ConfigReply, Table
from vigil.proxy.localconfig import LocalConfig, LocalConfigError, open_local
from vigil.server.config import tables as t
from vigil.server.config.migrate import engine_for, upgrade
from vigil.server.config.model import doc_from_dict
from vigil.server.config.repo import ConfigRepo

from tests.conftest import VECTORS

SERVER_CONFIG = """
macros: {"{$GLOBAL}": g1}
proxies:
  - {name: px1, mode: active}
templates:
  - template: tpl-net
    macros: {"{$PORT}": "7000", "{$FROM_TPL}": tpl}
    items:
      - {key: "net.tcp.service[tcp,,{$PORT}]", type: simple, value_type: unsigned, delay: 30s}
hosts:
  - host: far1
    proxy: px1
    templates: [tpl-net]
    macros: {"{$PORT}": "8080", "{$DIR}": /var/log}
    interfaces:
      - {type: agent, address: 127.0.0.1, port: 10050}
      - {type: snmp, address: 192.0.2.10, version: 2, community: public}
    items:
      - {key: trap.a, type: trapper}
      - {key: agent.ping, type: agent, value_type: unsigned, delay: 10s}
      - {key: "log[{$DIR}/app.log]", type: agent_active, value_type: log, delay: 5s}
      - {key: sys.name, type: snmp, value_type: char, snmp_oid: 1.3.6.1.2.1.1.5.0}
      - key: web.page
        type: http_agent
        value_type: text
        url: 'http://{HOST.CONN}:{$PORT}/x'
        headers: {Accept: application/json}
        query_fields: {a: "1"}
      - key: web.len
        type: dependent
        value_type: unsigned
        master_item: web.page
        preprocessing:
          - {type: jsonpath, params: ['$.n'], error_handler: discard_value}
  - host: near
    items: [{key: trap.n, type: trapper}]
"""


@pytest.fixture
def server_repo(migrated_url: str) -> ConfigRepo:
    engine = engine_for(migrated_url)
    repo = ConfigRepo(engine)
    repo.apply(doc_from_dict(yaml.safe_load(SERVER_CONFIG)))
    return repo


def reply_of(repo: ConfigRepo) -> ConfigReply:
    proxyid = repo.proxies()["px1"].proxyid
    return ConfigReply({n: Table(f, r) for n, (f, r) in repo.proxy_tables(proxyid).items()})


def server_far1_items(repo: ConfigRepo) -> dict:
    """The poll config the server would have for far1 if it were not proxied."""
    with repo.engine.begin() as c:
        c.execute(sa.update(t.hosts).values(proxyid=None))
    try:
        return {i: p for i, p in repo.poll_config().items.items() if p.host == "far1"}
    finally:
        proxyid = repo.proxies()["px1"].proxyid
        with repo.engine.begin() as c:
            c.execute(sa.update(t.hosts).where(t.hosts.c.host == "far1").values(proxyid=proxyid))


def test_round_trip_polls_the_same_items(server_repo: ConfigRepo, tmp_path: Path) -> None:
    local = open_local(tmp_path / "proxy.db")
    applied = LocalConfig(local).apply_json(json.loads(json.dumps(reply_of(server_repo).active_json())))
    assert applied.hosts == 1 and applied.skipped == 0
    proxy_repo = ConfigRepo(local)
    got = proxy_repo.poll_config().items
    want = server_far1_items(server_repo)
    assert set(got) == set(want)  # the server's itemids
    for itemid, w in want.items():
        g = got[itemid]
        assert (g.host, g.type, g.value_type, g.key, g.delay, g.master_itemid) == \
               (w.host, w.type, w.value_type, w.key, w.delay, w.master_itemid), w.key
        assert (g.interface.interfaceid, g.interface.address, g.interface.port) == \
               (w.interface.interfaceid, w.interface.address, w.interface.port) if w.interface else g.interface is None
        assert g.poll.preprocessing == w.poll.preprocessing, w.key
        assert (g.poll.url, g.poll.headers, g.poll.query_fields) == (w.poll.url, w.poll.headers, w.poll.query_fields)
        assert g.error == w.error == ""
    keys = {p.key for p in got.values()}
    assert "net.tcp.service[tcp,,8080]" in keys  # the host's macro over the template's
    web = next(p for p in got.values() if p.key == "web.page")
    assert web.poll.url == "http://127.0.0.1:8080/x"
    snmp = next(p for p in got.values() if p.key == "sys.name")
    assert snmp.interface is not None and snmp.interface.details["community"] == "public"
    assert snmp.interface.details["version"] == "2"


def test_active_checks_and_trappers_in_the_snapshot(server_repo: ConfigRepo, tmp_path: Path) -> None:
    local = open_local(tmp_path / "proxy.db")
    LocalConfig(local).apply(reply_of(server_repo))
    snap = ConfigRepo(local).snapshot()
    assert set(snap.hosts) == {"far1"}  # `near` is the server's own
    far1 = snap.hosts["far1"]
    active = snap.active[far1.hostid]
    assert [(a.key, a.key_orig, a.delay) for a in active] == [("log[/var/log/app.log]", "log[{$DIR}/app.log]", 5)]
    assert ("far1", "trap.a") in snap.items
    server_ids = {k: v.itemid for k, v in ConfigRepo(server_repo.engine).snapshot().items.items()}
    assert snap.items[("far1", "trap.a")].itemid == server_ids[("far1", "trap.a")]


def test_update_keeps_runtime_state_and_removes_what_went(server_repo: ConfigRepo, tmp_path: Path) -> None:
    local = open_local(tmp_path / "proxy.db")
    lc = LocalConfig(local)
    v1 = lc.apply(reply_of(server_repo)).version
    repo = ConfigRepo(local)
    log_item = next(i for i in repo.snapshot().items.values() if i.key.startswith("log["))
    with local.begin() as c:
        c.execute(sa.update(t.item_rtdata).where(t.item_rtdata.c.itemid == log_item.itemid)
                  .values(lastlogsize=1234, mtime=0))
        c.execute(sa.update(t.interfaces).values(available=1))
    doc = yaml.safe_load(SERVER_CONFIG)
    far1 = doc["hosts"][0]
    far1["items"] = [i for i in far1["items"] if i["key"] != "agent.ping"]
    far1["items"].append({"key": "trap.new", "type": "trapper"})
    server_repo.apply(doc_from_dict(doc), delete_missing=True)
    applied = lc.apply(reply_of(server_repo))
    assert applied.version > v1
    keys = {k for _, k in repo.snapshot().items}
    assert "trap.new" in keys and "agent.ping" not in keys
    assert repo.log_positions([log_item.itemid]) == {log_item.itemid: (1234, 0)}
    with local.connect() as c:
        assert set(c.execute(sa.select(t.interfaces.c.available)).scalars()) == {1}


def test_removing_the_host_removes_its_items(server_repo: ConfigRepo, tmp_path: Path) -> None:
    local = open_local(tmp_path / "proxy.db")
    lc = LocalConfig(local)
    lc.apply(reply_of(server_repo))
    empty = ConfigReply({n: Table(tb.fields, []) for n, tb in reply_of(server_repo).tables.items()})
    lc.apply(empty)
    assert ConfigRepo(local).poll_config().items == {}
    assert ConfigRepo(local).snapshot().hosts == {}


def test_a_table_outside_the_6_0_proxy_schema_is_refused_naming_it(tmp_path: Path) -> None:
    local = open_local(tmp_path / "proxy.db")
    lc = LocalConfig(local)
    before = lc.version()
    with pytest.raises(LocalConfigError, match="invalid table name 'bogus_table'"):
        lc.apply_json({"hosts": {"fields": ["hostid", "host"], "data": [[1, "h"]]},
                       "bogus_table": {"fields": ["a"], "data": []}})
    assert lc.version() == before


def test_columns_and_tables_it_does_not_need_are_ignored(tmp_path: Path) -> None:
    local = open_local(tmp_path / "proxy.db")
    applied = LocalConfig(local).apply_json({
        "config": {"fields": ["configid", "snmptrap_logging"], "data": [[1, 1]]},
        "hosts": {"fields": ["hostid", "host", "status", "ipmi_authtype", "proxy_address"],
                  "data": [[10084, "h1", 0, -1, ""]]},
        "items": {"fields": ["itemid", "hostid", "key_", "type", "value_type", "delay", "status", "inventory_link"],
                  "data": [[30001, 10084, "trap", 2, 3, "0", 0, 0]]},
        "item_rtdata": {"fields": ["itemid", "lastlogsize", "mtime"], "data": [[30001, 0, 0]]},
    })
    assert (applied.hosts, applied.items) == (1, 1)
    assert ConfigRepo(local).snapshot().items[("h1", "trap")].itemid == 30001


@pytest.mark.parametrize("table, row, field", [
    ("hosts", {"hostid": "x", "host": "h"}, "hosts[0].hostid"),
    ("hosts", {"hostid": 5, "host": ""}, "hosts[0].host"),
])
def test_bad_rows_name_the_field(tmp_path: Path, table: str, row: dict, field: str) -> None:
    local = open_local(tmp_path / "proxy.db")
    with pytest.raises(LocalConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        LocalConfig(local).apply_json({table: {"fields": list(row), "data": [list(row.values())]}})


def test_open_local_upgrades_an_existing_file(tmp_path: Path) -> None:
    engine = engine_for(f"sqlite:///{tmp_path / 'p.db'}")
    upgrade(engine)
    engine.dispose()
    assert LocalConfig(open_local(tmp_path / "p.db")).version() >= 0


def test_what_a_real_zabbix_server_6_0_sends_is_applied(tmp_path: Path) -> None:
    """The real zabbix_server 6.0.14's reply (tests/vectors/proxy, captured by helper B): its extra
    tables, columns and the non-table "macro.secrets" are ignored; SNMP items (its type 20) are SNMP
    items; host and global macros resolve in what the proxy polls."""
    from vigil.agent.protocol import zbxd
    from vigil.server.config.tables import ItemType

    raw = (VECTORS / "proxy" / "zabbix-server-proxy-config.response.bin").read_bytes()
    reply = json.loads(zbxd.decode(raw)[1])
    local = open_local(tmp_path / "proxy.db")
    applied = LocalConfig(local).apply_json(reply)
    assert (applied.hosts, applied.items, applied.skipped) == (2, 8, 0)
    items = {p.key: p for p in ConfigRepo(local).poll_config().items.values()}
    assert items["sysUpTime"].type == ItemType.SNMP and items["sysUpTime"].itemid == 900005
    assert items["sysUpTime"].interface.interfaceid == 800012
    assert items["sysUpTime"].interface.details["community"] == "public"  # {$SNMP_COMMUNITY}, a global macro
    assert "net.tcp.service[http,,8080]" in items  # the host's macro
    web = items["status.json"]
    assert web.poll.url == "http://127.0.0.1:8080/s"
    assert web.poll.headers == [("X-Vigil", "global-value")]
    used = items["status.used"]
    assert used.master_itemid == 900007 and [s.type for s in used.poll.preprocessing] == [12, 1]
    snap = ConfigRepo(local).snapshot()
    assert snap.items[("vector-db", "trap.text")].itemid == 900010


def test_the_head_revision_is_alembics() -> None:
    from vigil.proxy.localconfig import head_revision
    from vigil.server.config.migrate import head_revision as alembic_head

    assert head_revision() == alembic_head() is not None


def test_open_local_migrates_an_older_file_and_keeps_its_rows(tmp_path: Path) -> None:
    """DBName written by an older Vigil (here: migration 0015, the proxy's buffer) is upgraded by
    open_local, in a child process, keeping the configuration and the buffered values."""
    from vigil.proxy.localconfig import head_revision, stored_revision

    path = tmp_path / "p.db"
    engine = engine_for(f"sqlite:///{path}")
    upgrade(engine, "0015")
    with engine.begin() as c:
        c.execute(sa.insert(t.hosts).values(hostid=7, host="kept", name="kept", status=0))
    engine.dispose()
    from vigil.proxy.buffer import ProxyBuffer

    ProxyBuffer(path).close()  # the buffer's own tables, as a proxy of that version made them
    import sqlite3

    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO proxy_outbox (itemid, clock, ns, value) VALUES (1, 1700000000, 5, '42')")
    local = open_local(path)
    try:
        assert stored_revision(local) == head_revision()
        with local.connect() as c:
            assert c.execute(sa.select(t.hosts.c.host).where(t.hosts.c.hostid == 7)).scalar() == "kept"
            assert c.exec_driver_sql("SELECT itemid, clock, ns, value, sent FROM proxy_outbox").all() == \
                [(1, 1700000000, 5, "42", 0)]
    finally:
        local.dispose()


OPEN_WITHOUT_ALEMBIC = """
import sys
from vigil.proxy.localconfig import LocalConfig, open_local
engine = open_local(sys.argv[1])
print(LocalConfig(engine).version(), "alembic" in sys.modules, "mako" in sys.modules)
"""


def test_the_proxy_never_loads_alembic(tmp_path: Path) -> None:
    """Neither when it creates its file (the migrations run in a child) nor when the file is current."""
    import subprocess
    import sys

    for _ in ("new file", "current file"):
        r = subprocess.run([sys.executable, "-c", OPEN_WITHOUT_ALEMBIC, str(tmp_path / "p.db")],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert r.stdout.split() == ["1", "False", "False"], r.stdout


def test_a_file_that_cannot_be_migrated_is_named(tmp_path: Path) -> None:
    path = tmp_path / "not-a-db"
    path.write_bytes(b"this is not an SQLite file" * 100)
    with pytest.raises(RuntimeError, match=r"DBName .*not-a-db: file is not a database"):
        open_local(path)


def test_an_unchanged_reply_is_not_rewritten(server_repo: ConfigRepo, tmp_path: Path) -> None:
    """Zabbix sends the whole configuration every ConfigFrequency: the same reply again changes
    nothing (no new version for the caches to reload); a changed one is applied."""
    lc = LocalConfig(open_local(tmp_path / "proxy.db"))
    first = lc.apply_json(json.loads(json.dumps(reply_of(server_repo).active_json())))
    again = lc.apply_json(json.loads(json.dumps(reply_of(server_repo).active_json())))
    assert again == first and lc.version() == first.version
    changed = reply_of(server_repo).active_json()
    changed["hosts"]["data"][0][changed["hosts"]["fields"].index("name")] = "renamed"
    applied = lc.apply_json(changed)
    assert applied.version == first.version + 1
    with lc.engine.connect() as c:
        assert c.execute(sa.select(t.hosts.c.name)).scalars().all() == ["renamed"]


def test_a_failed_migration_is_reported_naming_the_file(tmp_path: Path) -> None:
    """A file from a newer Vigil (a revision this one does not know): the child's error comes back."""
    path = tmp_path / "newer.db"
    engine = engine_for(f"sqlite:///{path}")
    upgrade(engine)
    with engine.begin() as c:
        c.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    engine.dispose()
    with pytest.raises(RuntimeError, match=r"DBName .*newer\.db: migrating it failed: .*'9999'"):
        open_local(path)
