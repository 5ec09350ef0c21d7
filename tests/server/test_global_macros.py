"""Global user macros, on both stores: wherever the server resolves a user macro (what the pollers read,
item keys for ingest, retention periods, calculated items) a macro neither the host nor its templates
define takes the global value, as in Zabbix; a template's or the host's own still wins."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml
from vigil.server.config.migrate import engine_for
from vigil.server.config.model import doc_from_dict
from vigil.server.config.repo import ConfigRepo
from vigil.server.store.retention import from_items

DAY = 86400

CONFIG = """
macros: {"{$SNMP_COMMUNITY}": global-ro, "{$DELAY}": 30s, "{$HISTORY}": 3d, "{$PORT}": "1161", "{$K}": global}
templates:
  - template: T
    macros: {"{$DELAY}": 20s}
    items:
      - {key: "from.template[{$K}]", type: trapper, history: "{$HISTORY}"}
hosts:
  - host: plain
    interfaces: [{type: snmp, address: 127.0.0.1, port: "{$PORT}", version: 2, community: "{$SNMP_COMMUNITY}"}]
    items:
      - {key: sysName, type: snmp, snmp_oid: 1.3.6.1.2.1.1.5.0, value_type: char, delay: "{$DELAY}"}
      - {key: "trap[{$K}]", type: trapper, history: "{$HISTORY}"}
  - host: linked
    templates: [T]
    macros: {"{$K}": own}
    interfaces: [{type: snmp, address: 127.0.0.1, community: "{$SNMP_COMMUNITY}"}]
    items:
      - {key: sysName, type: snmp, snmp_oid: 1.3.6.1.2.1.1.5.0, value_type: char, delay: "{$DELAY}"}
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


def test_the_pollers_get_global_macros_resolved(repo: ConfigRepo) -> None:
    items = {(i.host, i.key): i for i in repo.poll_config().items.values()}
    plain, linked = items[("plain", "sysName")], items[("linked", "sysName")]
    assert plain.delay == 30 and plain.interface is not None
    assert plain.interface.details["community"] == "global-ro" and plain.interface.port == 1161
    assert linked.delay == 20  # the template's macro over the global one
    assert linked.interface is not None and linked.interface.details["community"] == "global-ro"
    assert not plain.error and not linked.error


def test_keys_and_retention_resolve_through_the_global_macros(repo: ConfigRepo) -> None:
    snap = repo.snapshot()
    assert ("plain", "trap[global]") in snap.items
    assert ("linked", "from.template[own]") in snap.items  # the host's own macro over the global one
    ids = {key: found[0] for key in ("trap[{$K}]",) if (found := repo.item("plain", key))}
    got = {r.itemid: r for r in from_items(repo.retention_rows())}
    assert got[ids["trap[{$K}]"]].history == 3 * DAY


def test_a_changed_global_macro_reaches_the_pollers(repo: ConfigRepo) -> None:
    doc = yaml.safe_load(CONFIG)
    doc["macros"]["{$DELAY}"] = "45s"
    repo.apply(doc_from_dict(doc))
    items = {(i.host, i.key): i for i in repo.poll_config().items.values()}
    assert items[("plain", "sysName")].delay == 45 and items[("linked", "sysName")].delay == 20
