"""Retention periods given as user macros: resolved through the host's and its templates' macros; an
item whose period cannot be resolved keeps all its data, on both stores (on PostgreSQL its partitions
stay). Retention is read the way `vigil server` reads it: from_items(repo.retention_rows())."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml
from vigil.server.config.migrate import engine_for
from vigil.server.config.model import doc_from_dict
from vigil.server.config.repo import ConfigRepo
from vigil.server.config.tables import ValueType
from vigil.server.store.base import Retention, Store, WriteBatch
from vigil.server.store.retention import from_items

F, U = ValueType.FLOAT, ValueType.UNSIGNED
DAY = 86400
NOW = 1_700_000_000 - 1_700_000_000 % DAY + 12 * 3600
END = 2**31 - 1

CONFIG = """
templates:
  - template: Retention by macro
    macros: {"{$HISTORY}": 2d, "{$TRENDS}": 30d}
    items:
      - {key: from.template, type: trapper, value_type: float, history: "{$HISTORY}", trends: "{$TRENDS}"}
hosts:
  - host: h1
    templates: [Retention by macro]
    macros: {"{$HISTORY}": 1d}
    items:
      - {key: own, type: trapper, value_type: float, history: "{$HISTORY}"}
      - {key: lost, type: trapper, value_type: float, history: "{$NOWHERE}"}
      - {key: lost.u, type: trapper, value_type: unsigned, trends: "{$NOWHERE}"}
      - {key: bad.value, type: trapper, value_type: unsigned, history: "{$TRENDS}x"}
      - {key: plain, type: trapper, value_type: unsigned, history: 1d}
  - host: h2
    templates: [Retention by macro]
"""


@pytest.fixture
def repo(migrated_url: str) -> Iterator[ConfigRepo]:
    engine = engine_for(migrated_url)
    try:
        r = ConfigRepo(engine)
        r.apply(doc_from_dict(yaml.safe_load(CONFIG)))
        yield r
    finally:
        engine.dispose()


def _ids(repo: ConfigRepo) -> dict[tuple[str, str], int]:
    out = {}
    for host, key in [("h1", "from.template"), ("h1", "own"), ("h1", "lost"), ("h1", "lost.u"), ("h1", "bad.value"),
                      ("h1", "plain"), ("h2", "from.template")]:
        found = repo.item(host, key)
        assert found is not None
        out[(host, key)] = found[0]
    return out


def test_macro_retention_resolves_through_host_and_templates(repo: ConfigRepo) -> None:
    ids = _ids(repo)
    got = {r.itemid: r for r in from_items(repo.retention_rows())}
    assert got[ids[("h1", "from.template")]] == Retention(ids[("h1", "from.template")], F, DAY, 30 * DAY)  # host wins
    assert got[ids[("h2", "from.template")]] == Retention(ids[("h2", "from.template")], F, 2 * DAY, 30 * DAY)
    assert got[ids[("h1", "own")]] == Retention(ids[("h1", "own")], F, DAY, 365 * DAY)
    assert got[ids[("h1", "plain")]] == Retention(ids[("h1", "plain")], U, DAY, 365 * DAY)
    for key in ("lost", "lost.u", "bad.value"):
        assert got[ids[("h1", key)]].kept_forever, key
    assert len(got) == len(ids)


def test_an_item_whose_macro_is_unresolved_keeps_its_data(repo: ConfigRepo, store: Store, migrated_url: str) -> None:
    ids = _ids(repo)
    own, lost, lost_u, plain = ids[("h1", "own")], ids[("h1", "lost")], ids[("h1", "lost.u")], ids[("h1", "plain")]
    old, recent = NOW - 10 * DAY, NOW - 3600
    store.write(WriteBatch(
        floats=[(own, old, 0, 1.0), (own, recent, 0, 2.0), (lost, old, 0, 3.0), (lost, recent, 0, 4.0)],
        uints=[(plain, old, 0, 5), (plain, recent, 0, 6), (lost_u, old, 0, 7), (lost_u, recent, 0, 8)]))
    store.rollup_trends(NOW)
    report = store.housekeep(NOW, from_items(repo.retention_rows()))
    assert [v for _, _, v in store.history(own, F, 0, END)] == [2.0]
    assert [v for _, _, v in store.history(plain, U, 0, END)] == [6]
    assert [v for _, _, v in store.history(lost, F, 0, END)] == [3.0, 4.0]
    assert [v for _, _, v in store.history(lost_u, U, 0, END)] == [7, 8]
    assert len(store.trends(lost, F, 0, END)) == 2 and len(store.trends(lost_u, U, 0, END)) == 2
    if migrated_url.startswith("postgresql"):
        from vigil.server.store.postgres import PostgresStore, partition_name

        assert isinstance(store, PostgresStore)
        day = old - old % DAY
        kept = {partition_name("history", day), partition_name("history_uint", day)}
        assert not kept & set(report.partitions_dropped)
        assert kept <= set(store.partitions())
    # Once the macro is defined, the item's old data goes like any other's.
    defined = CONFIG.replace('{"{$HISTORY}": 1d}', '{"{$HISTORY}": 1d, "{$NOWHERE}": 1d}')
    repo.apply(doc_from_dict(yaml.safe_load(defined)))
    store.rollup_trends(NOW)
    store.housekeep(NOW, from_items(repo.retention_rows()))
    assert [v for _, _, v in store.history(lost, F, 0, END)] == [4.0]
    assert [v for _, _, v in store.history(lost_u, U, 0, END)] == [7, 8]  # history 31d, trends now 1d
    assert [t.clock for t in store.trends(lost_u, U, 0, END)] == [recent - recent % 3600]
