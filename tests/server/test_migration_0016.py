"""Migration 0016 (proxy groups) on both stores: proxies and the hosts they monitor are kept as they
were, in no group; the new columns take a group afterwards. (test_migrations.py checks every row of
every table for each revision; this one checks what 0016 means for a proxied host.)"""

from __future__ import annotations

import sqlalchemy as sa
from vigil.server.config.migrate import current_revision, engine_for, upgrade

from tests.server.test_migrations import revisions


def test_0016_keeps_proxies_and_their_hosts_in_no_group(database_url: str) -> None:
    previous = dict(revisions())["0016"]
    assert previous is not None
    engine = engine_for(database_url)
    try:
        upgrade(engine, previous)
        with engine.begin() as c:
            c.execute(sa.text("INSERT INTO proxies (proxyid, name, mode, lastaccess) VALUES (7, 'branch', 0, 123)"))
            c.execute(sa.text("INSERT INTO hosts (hostid, host, name, status, description, proxyid) "
                              "VALUES (70, 'web', 'web', 0, '', 7), (71, 'db', 'db', 0, '', NULL)"))
        upgrade(engine, "0016")
        assert current_revision(engine) == "0016"
        with engine.begin() as c:
            assert c.execute(sa.text("SELECT proxyid, name, lastaccess, proxy_groupid FROM proxies")).all() == [
                (7, "branch", 123, None)]
            assert c.execute(sa.text("SELECT hostid, proxyid, proxy_groupid FROM hosts ORDER BY hostid")).all() == [
                (70, 7, None), (71, None, None)]
            c.execute(sa.text("INSERT INTO proxy_groups (proxy_groupid, name) VALUES (1, 'dc')"))
            c.execute(sa.text("UPDATE proxies SET proxy_groupid = 1"))
            c.execute(sa.text("UPDATE hosts SET proxy_groupid = 1 WHERE hostid = 70"))
            assert c.execute(sa.text("SELECT failover_delay, min_online, state FROM proxy_groups")).one() == (
                "1m", 1, 0)
        with engine.begin() as c:  # a removed group leaves its proxies and hosts in none
            c.execute(sa.text("DELETE FROM proxy_groups"))
            assert c.execute(sa.text("SELECT count(*) FROM hosts WHERE proxy_groupid IS NOT NULL")).scalar() == 0
            assert c.execute(sa.text("SELECT proxy_groupid FROM proxies")).scalar() is None
    finally:
        engine.dispose()
