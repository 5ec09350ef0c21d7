"""Shared reads: inside `reads.shared(engine)` every read repository call uses one connection taken
from the pool once, and still sees what other connections commit meanwhile (autocommit: no snapshot
held between reads, on SQLite as on PostgreSQL)."""

from __future__ import annotations

import sqlalchemy as sa
from vigil.server.config import reads
from vigil.server.config import tables as t
from vigil.server.config.browse import Browse
from vigil.server.config.migrate import engine_for
from vigil.server.config.model import doc_from_dict
from vigil.server.config.repo import ConfigRepo


def test_one_connection_for_a_unit_of_works_reads(migrated_url: str) -> None:
    engine = engine_for(migrated_url)
    try:
        ConfigRepo(engine).apply(doc_from_dict({"hosts": [{"host": "h1", "groups": ["G"]}]}))
        checkouts: list[object] = []
        sa.event.listen(engine, "checkout", lambda *a: checkouts.append(a))
        browse = Browse(engine)
        with reads.shared(engine):
            for _ in range(5):
                assert [n for _, n in browse.host_names()] == ["h1"]
                assert [n for _, n in browse.host_groups()] == ["G"]
            assert len(checkouts) == 1
            # a change another connection commits is seen by the next read on the shared one
            ConfigRepo(engine).apply(doc_from_dict({"hosts": [{"host": "h1", "groups": ["G"]},
                                                              {"host": "h2", "groups": ["G"]}]}))
            assert [n for _, n in browse.host_names()] == ["h1", "h2"]
            with engine.begin() as c:
                c.execute(sa.update(t.hosts).where(t.hosts.c.host == "h2").values(name="Second"))
            assert sorted(n for _, n in browse.host_names()) == ["Second", "h1"]
        n = len(checkouts)
        browse.host_names()
        browse.host_names()
        assert len(checkouts) == n + 2  # outside: a connection per call, as before
    finally:
        engine.dispose()


def test_a_failed_read_does_not_spoil_the_next(migrated_url: str) -> None:
    engine = engine_for(migrated_url)
    try:
        with reads.shared(engine):
            with reads.connect(engine) as c:
                try:
                    c.execute(sa.text("SELECT no_such_column FROM hosts"))
                except sa.exc.DBAPIError:
                    pass
                else:
                    raise AssertionError("the bad query ran")
            assert Browse(engine).host_names() == []
    finally:
        engine.dispose()
