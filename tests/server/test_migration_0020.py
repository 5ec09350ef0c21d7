"""Migration 0020 (tasks for proxies) on both stores: proxies, their hosts and the alert log are kept
as they were; the task tables start empty and take a remote command for a proxy and its result, and
removing a proxy removes its tasks. (test_migrations.py checks every row of every table for each
revision; this one checks what 0020 adds.)"""

from __future__ import annotations

import sqlalchemy as sa
from vigil.agent.protocol.tasks import RemoteCommandResult
from vigil.server.config.migrate import current_revision, engine_for, upgrade
from vigil.server.store import tasks

from tests.server.test_migrations import revisions


def test_0020_keeps_proxies_hosts_and_alerts_and_queues_tasks(database_url: str) -> None:
    previous = dict(revisions())["0020"]
    assert previous is not None
    engine = engine_for(database_url)
    try:
        upgrade(engine, previous)
        with engine.begin() as c:
            c.execute(sa.text("INSERT INTO proxies (proxyid, name, mode, lastaccess) VALUES (7, 'branch', 0, 123)"))
            c.execute(sa.text("INSERT INTO hosts (hostid, host, name, status, description, proxyid) "
                              "VALUES (70, 'web', 'web', 0, '', 7), (71, 'db', 'db', 0, '', NULL)"))
            c.execute(sa.text("INSERT INTO alerts (alertid, clock, sendto, subject, status, alerttype) "
                              "VALUES (5, 1000, '127.0.0.1:10050', 'restart app', 0, 1)"))
        upgrade(engine, "0020")
        assert current_revision(engine) == "0020"
        with engine.begin() as c:
            assert c.execute(sa.text("SELECT proxyid, name, lastaccess FROM proxies")).all() == [(7, "branch", 123)]
            assert c.execute(sa.text("SELECT hostid, proxyid FROM hosts ORDER BY hostid")).all() == [
                (70, 7), (71, None)]
            assert c.execute(sa.text("SELECT alertid, subject, status FROM alerts")).all() == [(5, "restart app", 0)]
            for table in ("task", "task_remote_command", "task_remote_command_result"):
                assert c.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar() == 0

        upgrade(engine)  # the store's task code is today's: later migrations add to the tables it reads
        assert tasks.host_proxy(engine, 70) == 7 and tasks.host_proxy(engine, 71) is None
        taskid = tasks.queue_command(engine, 7, 70, 5, "restart app", 2000, ttl=60)
        (cmd,) = tasks.take_new(engine, 7)
        assert (cmd.taskid, cmd.hostid, cmd.alertid, cmd.command, cmd.clock, cmd.ttl) == (
            taskid, 70, 5, "restart app", 2000, 60)
        assert tasks.take_new(engine, 7) == []  # given once
        assert tasks.record_results(engine, 7, "branch", [RemoteCommandResult(taskid, 0, "")], 2005) == 1
        assert tasks.record_results(engine, 7, "branch", [RemoteCommandResult(taskid, 0, "")], 2006) == 0  # resent
        with engine.begin() as c:
            assert c.execute(sa.text("SELECT status, sent_clock, error FROM alerts")).one() == (1, 2005, "")
            assert c.execute(sa.text("SELECT type, status FROM task ORDER BY taskid")).all() == [(2, 3), (3, 3)]
            assert c.execute(sa.text("SELECT status, parent_taskid, info FROM task_remote_command_result")).one() \
                == (0, taskid, "")
            c.execute(sa.text("DELETE FROM proxies"))  # a removed proxy takes its tasks along
            assert c.execute(sa.text("SELECT count(*) FROM task")).scalar() == 0
    finally:
        engine.dispose()
