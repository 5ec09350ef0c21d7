"""One trigger at a time (the web form and API): ConfigRepo.save_trigger / delete_trigger on both backends,
and the "would it fire now" preview against a real store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml
from vigil.server.config.alerting import TriggerSpec
from vigil.server.config.browse_triggers import TriggerBrowse
from vigil.server.config.migrate import engine_for
from vigil.server.config.model import ConfigError, doc_from_dict
from vigil.server.config.repo import ConfigRepo
from vigil.server.config.tables import Severity
from vigil.server.store import open_store
from vigil.server.store.base import WriteBatch
from vigil.server.triggers.preview import preview

CONFIG = """
templates:
  - template: T
    items: [{key: t.load}]
hosts:
  - host: a
    templates: [T]
    items: [{key: q}, {key: s, value_type: char}]
  - host: b
    items: [{key: q}]
"""


@pytest.fixture
def repo(migrated_url: str) -> Iterator[ConfigRepo]:
    engine = engine_for(migrated_url)
    r = ConfigRepo(engine)
    r.apply(doc_from_dict(yaml.safe_load(CONFIG)))
    try:
        yield r
    finally:
        engine.dispose()


def names(repo: ConfigRepo) -> dict[tuple[str, str], object]:
    return {(r.host, r.name): r for r in repo.triggers()}


def test_save_creates_renames_and_refuses_by_field(repo: ConfigRepo) -> None:
    v0 = repo.version()
    trid = repo.save_trigger("a", TriggerSpec("Q long", "last(/a/q)>5", severity=Severity.HIGH))
    assert repo.version() > v0 and ("a", "Q long") in names(repo)
    with pytest.raises(ConfigError, match=r"^trigger\.name: .*already"):
        repo.save_trigger("a", TriggerSpec("Q long", "last(/a/q)>6"))
    same = repo.save_trigger("a", TriggerSpec("Q longer", "last(/a/q)>7", tags=[("k", "v")]), trid)
    assert same == trid
    ref = names(repo)[("a", "Q longer")]
    assert ref.expression == "last(/a/q)>7" and ref.tags == (("k", "v"),) and ("a", "Q long") not in names(repo)
    with pytest.raises(ConfigError, match=r"^trigger\.expression: .*no item 'nope'"):
        repo.save_trigger("a", TriggerSpec("X", "last(/a/nope)>1"))
    with pytest.raises(ConfigError, match=r"^trigger\.triggerid"):
        repo.save_trigger("b", TriggerSpec("X", "last(/b/q)>1"), trid)  # not b's trigger
    with pytest.raises(ConfigError, match=r"^trigger\.host"):
        repo.save_trigger("zz", TriggerSpec("X", "last(/zz/q)>1"))
    # dependencies by name, and a cycle refused with nothing written
    up = repo.save_trigger("b", TriggerSpec("B down", "last(/b/q)=0"))
    repo.save_trigger("a", TriggerSpec("Q longer", "last(/a/q)>7", dependencies=["b:B down"]), trid)
    assert names(repo)[("a", "Q longer")].depends_on == (up,)
    with pytest.raises(ConfigError, match="circular"):
        repo.save_trigger("b", TriggerSpec("B down", "last(/b/q)=0", dependencies=["a:Q longer"]), up)
    assert names(repo)[("b", "B down")].depends_on == ()
    assert repo.delete_trigger(trid) and not repo.delete_trigger(trid)
    assert ("a", "Q longer") not in names(repo)


def test_template_trigger_is_copied_and_its_copy_is_changed_in_the_template(repo: ConfigRepo) -> None:
    repo.save_trigger("T", TriggerSpec("Load", "last(/T/t.load)>3"))
    copy = names(repo)[("a", "Load")]
    assert copy.expression == "last(/a/t.load)>3" and copy.templateid is not None
    with pytest.raises(ConfigError, match="linked template"):
        repo.save_trigger("a", TriggerSpec("Load", "last(/a/t.load)>1"), copy.triggerid)
    with pytest.raises(ConfigError, match="linked template"):
        repo.delete_trigger(copy.triggerid)
    tb = TriggerBrowse(repo.engine)
    row = tb.trigger(copy.triggerid)
    assert row is not None and row.templated and row.value == 0


def test_preview_evaluates_with_stored_values(repo: ConfigRepo, migrated_url: str) -> None:
    q, s = repo.item("a", "q"), repo.item("a", "s")
    assert q and s
    store = open_store(migrated_url)
    tb = TriggerBrowse(repo.engine)

    def lookup(refs: set) -> dict:
        return {k: (v[0], v[1], v[3]) for k, v in tb.items_named(refs).items()}

    try:
        now = 1_800_000_000
        store.write(WriteBatch(floats=[(q[0], now - 100 + i * 10, 0, float(i)) for i in range(10)],
                               strs=[(s[0], now - 5, 0, "down")]))
        p = preview("last(/a/q)>5 and avg(/a/q,1m)>3", "a", store, lookup, {}, now)
        assert p.value == 1 and [c.value for c in p.calls] == ["9", "7"]
        assert preview("last(/a/q)>{$LIMIT}", "a", store, lookup, {"{$LIMIT}": "20"}, now).value == 0
        assert preview("last(/{HOST.HOST}/q)=9", "a", store, lookup, {}, now).value == 1
        assert preview('find(/a/s,,"like","down")=1', "a", store, lookup, {}, now).value == 1
        unknown = preview("last(/a/missing)>1", "a", store, lookup, {}, now)
        assert unknown.value is None and unknown.label == "UNKNOWN" and "missing" in unknown.error
        assert preview("last(/a/missing)>1 or last(/a/q)=9", "a", store, lookup, {}, now).value == 1
        bad = preview("last(/a/q)>>1", "a", store, lookup, {}, now)
        assert bad.value is None and bad.error_pos == 11
        assert preview("count(/a/q,#3)=3", "a", store, lookup, {}, now).value == 1
        assert preview("last(/a/q,#2)=8", "a", store, lookup, {}, now).value == 1
    finally:
        store.close()
