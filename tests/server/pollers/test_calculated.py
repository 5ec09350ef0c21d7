"""Calculated and aggregate items: a real `vigil server` on both stores, values pushed by zabbix_sender
to trapper items, the calculated items evaluated by the server's scheduler at their interval."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import sqlalchemy as sa
from vigil.server.config import tables as t
from vigil.server.config.migrate import engine_for

from tests.conftest import VigilServer, require, wait_until

CONFIG = """
hosts:
  - host: web1
    groups: [Linux servers]
    items:
      - {key: 'net.if.in[eth0]', type: trapper, value_type: float}
      - {key: 'net.if.out[eth0]', type: trapper, value_type: float}
      - {key: 'vfs.fs.size[/,pused]', type: trapper, value_type: float, tags: [{tag: env, value: prod}]}
      - {key: 'net.total', type: calculated, value_type: float, delay: 1s,
         params: 'last(//net.if.in[eth0])+last(//net.if.out[eth0])'}
      - {key: 'in.avg', type: calculated, value_type: unsigned, delay: 1s, params: 'avg(/web1/net.if.in[eth0],1h)'}
      - {key: 'broken', type: calculated, value_type: float, delay: 1s, params: 'last(//net.if.in[eth0])/0'}
      - {key: 'nodata', type: calculated, value_type: float, delay: 1s, params: 'last(/web2/no.values)'}
  - host: web2
    groups: [Linux servers]
    items:
      - {key: 'vfs.fs.size[/,pused]', type: trapper, value_type: float, tags: [{tag: env, value: test}]}
      - {key: 'no.values', type: trapper, value_type: float}
  - host: db1
    groups: [Databases]
    items:
      - {key: 'vfs.fs.size[/,pused]', type: trapper, value_type: float, tags: [{tag: env, value: prod}]}
  - host: agg
    items:
      - {key: 'linux.pused', type: calculated, value_type: float, delay: 1s,
         params: 'avg(last_foreach(/*/vfs.fs.size[/,pused]?[group="Linux servers"]))'}
      - {key: 'all.max', type: calculated, value_type: float, delay: 1s,
         params: 'max(last_foreach(/*/vfs.fs.size[*,pused]))'}
      - {key: 'prod.sum', type: calculated, value_type: float, delay: 1s,
         params: 'sum(last_foreach(/*/vfs.fs.size[/,pused]?[tag="env:prod"]))'}
      - {key: 'not.linux.count', type: calculated, value_type: unsigned, delay: 1s,
         params: 'count(exists_foreach(/*/vfs.fs.size[/,pused]?[group<>"Linux servers" or tag="env:test"]))'}
      - {key: 'linux.min.1h', type: calculated, value_type: float, delay: 1s,
         params: 'min(max_foreach(/*/vfs.fs.size[/,pused]?[group="Linux servers"],1h))'}
      - {key: 'nobody', type: calculated, value_type: float, delay: 1s,
         params: 'avg(last_foreach(/*/vfs.fs.size[/,pused]?[group="Nobody"]))'}
"""


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> VigilServer:
    s = VigilServer(tmp_path, database_url).start()
    s.import_yaml(CONFIG)
    s.wait_for_config("db1")  # the cache is replaced whole: the other hosts are in it too
    yield s  # type: ignore[misc]
    s.stop()


def send(server: VigilServer, lines: list[str]) -> None:
    batch = server.tmp / "batch.txt"
    batch.write_text("".join(f"{line}\n" for line in lines))
    r = subprocess.run([require("zabbix_sender"), "-z", "127.0.0.1", "-p", str(server.port), "-i", str(batch)],
                       capture_output=True, text=True, timeout=60)
    assert f"processed: {len(lines)}" in r.stdout, r.stdout + r.stderr


def latest(server: VigilServer, host: str, key: str) -> str | None:
    """The item's newest stored value, as text."""
    from vigil.server.config.tables import ValueType
    from vigil.server.store import open_store

    engine = engine_for(server.database_url)
    try:
        with engine.connect() as c:
            itemid, vt = c.execute(sa.select(t.items.c.itemid, t.items.c.value_type)
                                   .join(t.hosts, t.hosts.c.hostid == t.items.c.hostid)
                                   .where(t.hosts.c.host == host, t.items.c.key_ == key)).one()
    finally:
        engine.dispose()
    store = open_store(server.database_url)
    try:
        row = store.latest({itemid: ValueType(vt)}).get(itemid)
    finally:
        store.close()
    if row is None:
        return None
    v = row[2]
    return f"{v:g}" if isinstance(v, float) else str(v)


def state(server: VigilServer, host: str, key: str) -> str:
    engine = engine_for(server.database_url)
    try:
        with engine.connect() as c:
            r = c.execute(sa.select(t.item_state.c.state, t.item_state.c.error)
                          .join(t.items, t.items.c.itemid == t.item_state.c.itemid)
                          .join(t.hosts, t.hosts.c.hostid == t.items.c.hostid)
                          .where(t.hosts.c.host == host, t.items.c.key_ == key)).first()
    finally:
        engine.dispose()
    return r.error if r is not None and r.state == 1 else ""


def test_formulas_and_aggregates_follow_the_values_sent(server: VigilServer) -> None:
    send(server, ['web1 net.if.in[eth0] 100', 'web1 net.if.out[eth0] 23.5', 'web1 vfs.fs.size[/,pused] 40',
                  'web2 vfs.fs.size[/,pused] 60', 'db1 vfs.fs.size[/,pused] 90'])
    want = {("web1", "net.total"): "123.5", ("web1", "in.avg"): "100", ("agg", "linux.pused"): "50",
            ("agg", "all.max"): "90", ("agg", "prod.sum"): "130", ("agg", "not.linux.count"): "2",
            ("agg", "linux.min.1h"): "40"}

    def all_there() -> bool:
        return all(latest(server, h, k) is not None and float(latest(server, h, k)) == float(v)  # type: ignore[arg-type]
                   for (h, k), v in want.items())

    wait_until(all_there, 30, "every calculated item's value")
    send(server, ['web1 net.if.in[eth0] 200', 'web2 vfs.fs.size[/,pused] 80'])
    seen: dict[str, str | None] = {}

    def followed() -> bool:
        seen.update({k: latest(server, h, k) for h, k in [("web1", "net.total"), ("agg", "linux.pused"),
                                                          ("web1", "in.avg")]})
        return seen == {"net.total": "223.5", "linux.pused": "60", "in.avg": "150"}

    try:
        wait_until(followed, 30, "the formulas to follow the new values")
    except AssertionError as e:
        raise AssertionError(f"{e}: {seen}") from None
    wait_until(lambda: state(server, "web1", "broken") != "", 30, "the division by zero to be recorded")
    assert "division by zero at position 23" in state(server, "web1", "broken")
    wait_until(lambda: state(server, "web1", "nodata") != "" and state(server, "agg", "nobody") != "", 30,
               "items without data to be not supported")
    assert "last(/web2/no.values)" in state(server, "web1", "nodata") and "no values" in state(server, "web1",
                                                                                                  "nodata")
    assert 'no item matches the filter' in state(server, "agg", "nobody")
    assert state(server, "web1", "net.total") == ""


def test_a_formula_reading_a_missing_item_or_with_a_syntax_error_is_refused(tmp_path: Path,
                                                                             migrated_url: str) -> None:
    import yaml
    from vigil.server.config.model import ConfigError, doc_from_dict
    from vigil.server.config.repo import ConfigRepo

    engine = engine_for(migrated_url)
    repo = ConfigRepo(engine)
    try:
        def load(params: str) -> None:
            repo.apply(doc_from_dict(yaml.safe_load(f"""
hosts:
  - host: a
    items:
      - {{key: x, type: trapper, value_type: float}}
      - {{key: y, type: calculated, value_type: float, params: '{params}'}}
  - host: b
    items:
      - {{key: z, type: trapper, value_type: float}}
""")))
        load("last(//x)+last(/b/z)")  # b is further down in the same file
        with pytest.raises(ConfigError) as e:
            load("last(//x)+last(//nope)")
        assert str(e.value) == ("hosts[0].items[1].params: no item 'nope' on host 'a' (read by last() at position "
                                "10 of the formula)")
        with pytest.raises(ConfigError) as e:
            load("last(/c/z)")
        assert "no item 'z' on host 'c'" in str(e.value)
        with pytest.raises(ConfigError) as e:
            load("last(//x)+")
        assert str(e.value) == ("hosts[0].items[1].params: expected a value after '+', found the end of the "
                                "expression at position 10")
        with pytest.raises(ConfigError) as e:
            load("avg(last_foreach(/*/k?[group=G]))")
        assert "expected a quoted group name after group=, found 'G' at position 29" in str(e.value)
        with pytest.raises(ConfigError) as e:
            load("")
        assert "a calculated item needs its formula" in str(e.value)
        # nothing of the refused imports was kept
        with engine.connect() as c:
            assert c.execute(sa.select(t.items.c.params).where(t.items.c.key_ == "y")).scalar() == \
                "last(//x)+last(/b/z)"
    finally:
        engine.dispose()
