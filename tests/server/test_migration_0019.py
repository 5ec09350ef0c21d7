"""Migration 0019 (autoregistration) on both stores: existing proxies, hosts, actions and operations are
kept as they were, and the new tables take rows that follow them (a deleted operation takes its host
groups, templates and tags along; a deleted proxy leaves its registrations with none).
(test_migrations.py checks every row of every table for each revision.)"""

from __future__ import annotations

import sqlalchemy as sa
from vigil.server.config.migrate import current_revision, engine_for, upgrade

from tests.server.test_migrations import revisions


def test_0019_keeps_actions_and_adds_the_autoregistration_tables(database_url: str) -> None:
    previous = dict(revisions())["0019"]
    assert previous is not None
    engine = engine_for(database_url)
    try:
        upgrade(engine, previous)
        with engine.begin() as c:
            c.execute(sa.text("INSERT INTO proxies (proxyid, name, mode) VALUES (7, 'branch', 0)"))
            c.execute(sa.text("INSERT INTO hosts (hostid, host, name, status, description, proxyid) "
                              "VALUES (70, 'web', 'web', 0, '', 7), (71, 'Tpl', 'Tpl', 3, '', NULL)"))
            c.execute(sa.text("INSERT INTO host_groups (groupid, name) VALUES (5, 'Web servers')"))
            c.execute(sa.text("INSERT INTO actions (actionid, name, eventsource) VALUES (3, 'page', 0)"))
            c.execute(sa.text("INSERT INTO operations (operationid, actionid, operationtype) VALUES (30, 3, 0)"))
        upgrade(engine, "0019")
        assert current_revision(engine) == "0019"
        with engine.begin() as c:
            assert c.execute(sa.text("SELECT actionid, name, eventsource FROM actions")).all() == [(3, "page", 0)]
            assert c.execute(sa.text("SELECT operationid, operationtype FROM operations")).all() == [(30, 0)]
            hosts = c.execute(sa.text("SELECT hostid, proxyid FROM hosts ORDER BY hostid")).all()
            assert hosts == [(70, 7), (71, None)]
            for table in ("autoreg_host", "proxy_autoreg_host", "opgroup", "optemplate", "optag"):
                assert c.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar() == 0
            c.execute(sa.text("INSERT INTO actions (actionid, name, eventsource) VALUES (4, 'register', 2)"))
            c.execute(sa.text("INSERT INTO operations (operationid, actionid, operationtype) VALUES (40, 4, 4), "
                              "(41, 4, 6), (42, 4, 13)"))
            c.execute(sa.text("INSERT INTO opgroup (operationid, groupid) VALUES (40, 5)"))
            c.execute(sa.text("INSERT INTO optemplate (operationid, templateid) VALUES (41, 71)"))
            c.execute(sa.text("INSERT INTO optag (operationid, tag, value) VALUES (42, 'role', 'web')"))
            c.execute(sa.text("INSERT INTO autoreg_host (host, proxyid, listen_ip, listen_port, host_metadata) "
                              "VALUES ('web', 7, '10.0.0.1', 10050, 'linux web')"))
            c.execute(sa.text("INSERT INTO proxy_autoreg_host (clock, host) VALUES (1, 'x')"))
            assert c.execute(sa.text("SELECT listen_dns, flags, tls_accepted, clock FROM autoreg_host")).one() == (
                "", 0, 1, 0)
        with engine.begin() as c:
            c.execute(sa.text("DELETE FROM operations WHERE actionid = 4"))
            for table in ("opgroup", "optemplate", "optag"):
                assert c.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar() == 0
            c.execute(sa.text("UPDATE hosts SET proxyid = NULL"))
            c.execute(sa.text("DELETE FROM proxies"))
            assert c.execute(sa.text("SELECT host, proxyid FROM autoreg_host")).all() == [("web", None)]
    finally:
        engine.dispose()
