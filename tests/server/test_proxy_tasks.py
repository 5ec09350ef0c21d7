"""The `tasks` of 6.0's proxy protocol against the field names of Zabbix's source
(src/libs/zbxtasks/task.c, include/zbxjson.h), and the server's task queue on both stores: results
settle alerts, a failure keeps the proxy's reason, the ttl fails what never came back."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from vigil.agent.protocol.messages import ProtocolError
from vigil.agent.protocol.tasks import (
    FAIL,
    REMOTE_COMMAND_TTL,
    RemoteCommand,
    RemoteCommandResult,
    parse_tasks,
)
from vigil.server.config.migrate import engine_for, upgrade
from vigil.server.store import tasks

# tm_json_serialize_task + tm_json_serialize_remote_command: ZBX_PROTO_TAG_TYPE, _CLOCK, _TTL,
# _COMMANDTYPE ("commandtype"), _COMMAND, _EXECUTE_ON, _PORT, _AUTHTYPE, _USERNAME, _PASSWORD,
# _PUBLICKEY, _PRIVATEKEY, _ALERTID, _PARENT_TASKID, _HOSTID, in that order.
COMMAND_FIELDS = ["type", "clock", "ttl", "commandtype", "command", "execute_on", "port", "authtype", "username",
                  "password", "publickey", "privatekey", "alertid", "parent_taskid", "hostid"]
# tm_json_serialize_remote_command_result: _STATUS, _INFO, _PARENT_TASKID after the common three.
RESULT_FIELDS = ["type", "clock", "ttl", "status", "info", "parent_taskid"]


def test_remote_command_has_6_0_fields_and_round_trips() -> None:
    cmd = RemoteCommand(taskid=41, hostid=10084, command="systemctl restart app", clock=1_700_000_000, alertid=9)
    d = cmd.to_json()
    assert list(d) == COMMAND_FIELDS
    assert (d["type"], d["ttl"], d["commandtype"], d["execute_on"], d["parent_taskid"]) == (2, 600, 0, 0, 41)
    assert REMOTE_COMMAND_TTL == 600  # ZBX_REMOTE_COMMAND_TTL
    assert parse_tasks({"tasks": [d]}) == [cmd]


def test_result_as_zabbix_proxy_sends_it() -> None:
    # What a 6.0 proxy puts in proxy data after tm_execute_remote_command(): status FAIL (-1) and why.
    sent = {"tasks": [{"type": 3, "clock": 1_700_000_005, "ttl": 0, "status": -1,
                       "info": "Remote commands are not enabled", "parent_taskid": 41}]}
    (r,) = parse_tasks(sent)
    assert r == RemoteCommandResult(41, FAIL, "Remote commands are not enabled", 1_700_000_005, 0)
    assert not r.ok and list(r.to_json()) == RESULT_FIELDS and r.to_json() == sent["tasks"][0]


def test_other_task_types_are_skipped_and_bad_ones_named() -> None:
    assert parse_tasks({"tasks": [{"type": 7, "clock": 1, "ttl": 0, "data": "{}"}]}) == []  # data (diaginfo)
    assert parse_tasks({}) == []
    for body, named in [({"tasks": {}}, "tasks: must be a list"),
                        ({"tasks": [{"type": 3, "status": 0}]}, "tasks[0].parent_taskid: missing"),
                        ({"tasks": [{"type": 3, "status": "ok", "parent_taskid": 1}]}, "tasks[0].status"),
                        ({"tasks": [{"type": 2, "parent_taskid": 1, "hostid": 2, "command": "x",
                                     "execute_on": 0}]}, "tasks[0].commandtype: missing"),
                        ({"tasks": ["x"]}, "tasks[0]: must be an object")]:
        with pytest.raises(ProtocolError, match=named.replace("[", r"\[").replace("]", r"\]")):
            parse_tasks(body)


def test_expiry_as_the_proxy_judges_it() -> None:
    cmd = RemoteCommand(taskid=1, hostid=1, command="x", clock=1000, ttl=60)
    assert not cmd.expired(1060) and cmd.expired(1061)
    assert not RemoteCommand(taskid=1, hostid=1, command="x", clock=1000, ttl=0).expired(10**9)


@pytest.fixture
def engine(database_url: str) -> sa.Engine:
    e = engine_for(database_url)
    upgrade(e)
    with e.begin() as c:
        c.execute(sa.text("INSERT INTO proxies (proxyid, name, mode) VALUES (1, 'east', 0), (2, 'west', 0)"))
        c.execute(sa.text("INSERT INTO hosts (hostid, host, name, status, description, proxyid) "
                          "VALUES (10, 'h', 'h', 0, '', 1)"))
        c.execute(sa.text("INSERT INTO alerts (alertid, clock, sendto, subject, status, alerttype) VALUES "
                          "(1, 1, 'a', 'c1', 0, 1), (2, 1, 'a', 'c2', 0, 1), (3, 1, 'a', 'c3', 0, 1)"))
    yield e
    e.dispose()


def alerts(engine: sa.Engine) -> list[tuple[int, int, str]]:
    with engine.connect() as c:
        return [tuple(r) for r in c.execute(sa.text("SELECT alertid, status, error FROM alerts ORDER BY alertid"))]


def test_results_and_expiry_settle_the_alerts(engine: sa.Engine) -> None:
    ok = tasks.queue_command(engine, 1, 10, 1, "c1", 1000, ttl=60)
    bad = tasks.queue_command(engine, 1, 10, 2, "c2", 1000, ttl=60)
    lost = tasks.queue_command(engine, 1, 10, 3, "c3", 1000, ttl=60)
    assert tasks.take_new(engine, 2) == []  # another proxy's
    assert [c.taskid for c in tasks.take_new(engine, 1)] == [ok, bad, lost]
    # A result from the wrong proxy is not taken; then the right one's.
    assert tasks.record_results(engine, 2, "west", [RemoteCommandResult(ok, 0, "")], 1010) == 0
    assert tasks.record_results(engine, 1, "east", [RemoteCommandResult(ok, 0, ""),
                                                    RemoteCommandResult(bad, -1, "Unknown host.")], 1010) == 2
    assert tasks.expire(engine, 1060) == 0  # not yet past clock + ttl
    assert tasks.expire(engine, 1061) == 1
    got = alerts(engine)
    assert got[0] == (1, 1, "")
    assert got[1] == (2, 2, "proxy [east]: Unknown host.")
    assert got[2][1] == 2 and "the proxy [east] returned no result within the remote command's ttl of 60 s" \
        in got[2][2] and "was sent to it" in got[2][2]
    # A result that comes after the ttl changes nothing.
    assert tasks.record_results(engine, 1, "east", [RemoteCommandResult(lost, 0, "")], 1070) == 0
    assert alerts(engine)[2][1] == 2
