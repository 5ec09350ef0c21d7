"""The site server's forward outbox (proxy/site.py) on a real store of each backend: values are in the outbox
before the store has them, a batch the store refuses leaves the outbox again, and records go upward under
the central's item ids, held back for items the central does not know yet."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from vigil.proxy.site import ForwardingStore, SiteBuffer, SiteOutbox
from vigil.server.config.migrate import engine_for
from vigil.server.config.repo import ConfigRepo
from vigil.server.config.tables import ValueType
from vigil.server.store import open_store
from vigil.server.store.base import StoreError, WriteBatch

SESSION = "0123456789abcdef0123456789abcdef"


def batch(itemid: int, clocks: range) -> WriteBatch:
    b = WriteBatch()
    b.floats = [(itemid, c, 7, c / 2) for c in clocks]
    b.sessions = {"agent-session": 3}
    return b


def test_values_go_to_the_outbox_and_the_store(migrated_url: str, tmp_path: Path) -> None:
    store = ForwardingStore(open_store(migrated_url), SiteBuffer(tmp_path / "out.db"))
    try:
        store.write(batch(11, range(1000, 1010)))
        assert [r.clock for r in store.outbox.batch()] == list(range(1000, 1010))
        assert [r[0] for r in store.history(11, ValueType.FLOAT, 0, 2000)] == list(range(1000, 1010))
        assert store.sessions()["agent-session"] == 3  # sessions stay in the site's own store
    finally:
        store.close()


def test_a_batch_the_store_refuses_leaves_the_outbox(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'site.db'}"
    from vigil.server.config.migrate import upgrade

    engine = engine_for(url)
    upgrade(engine)
    engine.dispose()
    store = ForwardingStore(open_store(url), SiteBuffer(tmp_path / "out.db"))
    store.write(batch(11, range(1000, 1003)))
    store.inner.close()  # the site's store is gone: its write fails
    with pytest.raises((StoreError, sqlite3.ProgrammingError)):
        store.write(batch(11, range(2000, 2005)))
    assert [r.clock for r in store.outbox.batch()] == [1000, 1001, 1002]
    store.outbox.close()


def test_records_go_under_the_central_ids_held_for_unknown_items(migrated_url: str, tmp_path: Path) -> None:
    engine = engine_for(migrated_url)
    repo = ConfigRepo(engine)
    buf = SiteBuffer(tmp_path / "out.db")
    try:
        buf.write(batch(11, range(1000, 1003)))
        buf.write(batch(12, range(1003, 1005)))
        buf.write(batch(11, range(1005, 1006)))
        outbox = SiteOutbox(buf, repo, SESSION, "paris")
        data, unsent = outbox.take()
        assert data.history == [] and outbox.held and unsent == 6  # never registered: everything waits

        buf.save_mapping(repo.version() - 1, [(11, 901)])  # registered before item 12 existed
        data, _ = outbox.take()
        assert [(r.itemid, r.clock) for r in data.history] == [(901, 1000), (901, 1001), (901, 1002)]
        assert outbox.held and not data.more
        outbox.acknowledged(data)
        assert buf.unsent() == 3

        buf.save_mapping(repo.version(), [(11, 901)])  # registered now, and 12 is not there: deleted since
        data, _ = outbox.take()
        assert [(r.itemid, r.clock) for r in data.history] == [(901, 1005)] and not outbox.held
        assert outbox.dropped == 2
        assert [r.id for r in data.history] == [6]  # the outbox id travels as the record id
        outbox.acknowledged(data)
        assert buf.unsent() == 0
    finally:
        buf.close()
        engine.dispose()


def test_the_batch_in_flight_goes_again_under_its_old_session_after_a_restart(migrated_url: str,
                                                                             tmp_path: Path) -> None:
    engine = engine_for(migrated_url)
    repo = ConfigRepo(engine)
    buf = SiteBuffer(tmp_path / "out.db")
    try:
        buf.write(batch(11, range(1000, 1002)))
        buf.write(batch(12, range(1002, 1004)))
        buf.save_mapping(repo.version(), [(11, 901), (12, 902)])
        data, _ = SiteOutbox(buf, repo, SESSION, "paris").take()  # sent; the reply never came
        assert data.session == SESSION and [r.id for r in data.history] == [1, 2, 3, 4]
        assert buf.inflight() == (SESSION, 1, 4)
        buf.write(batch(11, range(1004, 1006)))

        restarted = SiteOutbox(buf, repo, "f" * 32, "paris")
        # Item 12 was deleted on the site meanwhile and not registered yet: the whole batch waits
        # (split, its rest would go under the new session and the central could store it twice).
        buf.save_mapping(repo.version() - 1, [(11, 901)])
        data, _ = restarted.take()
        assert data.history == [] and restarted.held and buf.inflight() == (SESSION, 1, 4)
        restarted.acknowledged(data)
        buf.save_mapping(repo.version(), [(11, 901)])  # registered
        data, _ = restarted.take()
        assert data.session == SESSION and data.more and not restarted.held
        assert [(r.id, r.itemid) for r in data.history] == [(1, 901), (2, 901)] and restarted.dropped == 2
        restarted.acknowledged(data)
        assert buf.inflight() is None
        data, _ = restarted.take()
        assert data.session == "f" * 32 and [r.id for r in data.history] == [5, 6]
        assert buf.inflight() == ("f" * 32, 5, 6)
    finally:
        buf.close()
        engine.dispose()


@pytest.mark.parametrize(("env", "message"), [
    ({"VIGIL_UPSTREAM": "central:10051"}, "VIGIL_SITE: required when VIGIL_UPSTREAM is set"),
    ({"VIGIL_SITE": "paris"}, "VIGIL_SITE='paris': set VIGIL_UPSTREAM too"),
    ({"VIGIL_UPSTREAM": "central", "VIGIL_SITE": "paris"}, "VIGIL_UPSTREAM='central': expected HOST:PORT"),
    ({"VIGIL_UPSTREAM": "central:10051", "VIGIL_SITE": "a/b"}, "VIGIL_SITE='a/b': at most 128 characters"),
], ids=["no-site", "no-upstream", "no-port", "slash"])
def test_bad_site_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    from vigil.server.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        Settings.from_env(env)


def test_site_settings_are_read() -> None:
    from vigil.server.settings import Settings

    s = Settings.from_env({"VIGIL_UPSTREAM": "central.example:10051", "VIGIL_SITE": " paris "})
    assert s.upstream == ("central.example", 10051) and s.site == "paris"
    assert Settings.from_env({}).upstream is None
