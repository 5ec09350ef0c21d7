"""Check now tasks (type 6): the wire form against Zabbix 6.0's tm_json_serialize_check_now (the
common `type`, `clock`, `ttl`, then `itemid`), and the server's queue on both stores: Zabbix's checks
before anything is queued, the pollers take their own items' tasks, a proxy those of the hosts it
monitors (now, after a proxy group moved one), and the ttl expires what nobody took."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from vigil.agent.protocol.messages import ProtocolError
from vigil.agent.protocol.tasks import CHECK_NOW_TTL, CheckNow, RemoteCommand, parse_tasks
from vigil.server.config.migrate import engine_for, upgrade
from vigil.server.config.tables import ItemType, TaskStatus
from vigil.server.store import tasks

CHECK_NOW_FIELDS = ["type", "clock", "ttl", "itemid"]


def test_check_now_has_6_0_fields_and_round_trips() -> None:
    task = CheckNow(itemid=23287, clock=1_700_000_000)
    assert task.to_json() == {"type": 6, "clock": 1_700_000_000, "ttl": 3600, "itemid": 23287}
    assert list(task.to_json()) == CHECK_NOW_FIELDS and CHECK_NOW_TTL == 3600
    assert parse_tasks({"tasks": [task.to_json()]}) == [task]
    # as a server sends them, mixed with a remote command; itemid as a string is read as Zabbix reads it
    mixed = parse_tasks({"tasks": [{"type": 6, "clock": 5, "ttl": 3600, "itemid": "42"},
                                   RemoteCommand(taskid=1, hostid=2, command="x", clock=5).to_json()]})
    assert mixed[0] == CheckNow(42, 5) and isinstance(mixed[1], RemoteCommand)


def test_bad_check_now_tasks_are_named() -> None:
    for task, named in [({"type": 6, "clock": 1, "ttl": 0}, "tasks[0].itemid: missing"),
                        ({"type": 6, "clock": 1, "ttl": 0, "itemid": -3}, "tasks[0].itemid"),
                        ({"type": 6, "clock": 1, "ttl": 0, "itemid": "x"}, "tasks[0].itemid"),
                        ({"type": 6, "clock": 1, "ttl": 0, "itemid": 0}, "tasks[0].itemid: must be a positive"),
                        ({"type": 6, "clock": "soon", "itemid": 1}, "tasks[0].clock")]:
        with pytest.raises(ProtocolError, match=named.replace("[", r"\[").replace("]", r"\]")):
            parse_tasks({"tasks": [task]})


def test_expiry_of_a_check_now() -> None:
    assert not CheckNow(1, 1000, 60).expired(1060) and CheckNow(1, 1000, 60).expired(1061)
    assert not CheckNow(1, 1000, 0).expired(10**9)


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    e = engine_for(database_url)
    upgrade(e)
    with e.begin() as c:
        c.execute(sa.text("INSERT INTO proxies (proxyid, name, mode) VALUES (1, 'east', 0), (2, 'west', 0)"))
        c.execute(sa.text("INSERT INTO hosts (hostid, host, name, status, description, proxyid) VALUES "
                          "(10, 'local', 'local', 0, '', NULL), (11, 'remote', 'remote', 0, '', 1), "
                          "(12, 'off', 'off', 1, '', NULL), (13, 'tpl', 'tpl', 3, '', NULL)"))
        rows = [(100, 10, "agent.ping", ItemType.AGENT, 0, 0), (101, 10, "trap", ItemType.TRAPPER, 0, 0),
                (102, 10, "act", ItemType.AGENT_ACTIVE, 0, 0), (103, 10, "dep", ItemType.DEPENDENT, 0, 0),
                (104, 10, "disabled", ItemType.SIMPLE, 1, 0), (105, 12, "onoff", ItemType.AGENT, 0, 0),
                (106, 13, "templ", ItemType.AGENT, 0, 0), (107, 10, "rule", ItemType.AGENT, 0, 1),
                (108, 10, "proto[{#X}]", ItemType.AGENT, 0, 2), (110, 11, "far.ping", ItemType.AGENT, 0, 0),
                (111, 11, "far.http", ItemType.HTTP_AGENT, 0, 0), (112, 10, "traps", ItemType.SNMP_TRAP, 0, 0)]
        for itemid, hostid, key, kind, status, flags in rows:
            c.execute(sa.text("INSERT INTO items (itemid, hostid, key_, name, type, value_type, status, flags) "
                              "VALUES (:i, :h, :k, '', :t, 3, :s, :f)"),
                      {"i": itemid, "h": hostid, "k": key, "t": int(kind), "s": status, "f": flags})
    yield e
    e.dispose()


def states(engine: sa.Engine) -> list[tuple[int, int, int | None]]:
    """(itemid, status, proxyid) of every check now task."""
    with engine.connect() as c:
        return [(int(a), int(b), None if p is None else int(p)) for a, b, p in c.execute(sa.text(
            "SELECT n.itemid, t.status, t.proxyid FROM task t JOIN task_check_now n ON n.taskid = t.taskid "
            "WHERE t.type = 6 ORDER BY t.taskid"))]


def test_zabbix_checks_refuse_naming_the_item_and_queue_nothing(engine: sa.Engine) -> None:
    for itemids, status, named in [
            ([999], 404, "itemid: no item 999"),
            ([106], 404, "itemid: no item 106"),  # a template's item is not checked
            ([101], 400, 'wrong item type: item "trap" (trap, itemid 101) on host "local" is a trapper item'),
            ([102], 400, "is an agent_active item"), ([103], 400, "is a dependent item"),
            ([112], 400, "is a snmp_trap item"),
            ([104], 400, 'item "disabled" (disabled, itemid 104) on host "local" is not monitored (the item is'),
            ([105], 400, "is not monitored (the host is disabled)"),
            ([108], 400, "is an item prototype"),
            ([100, 101], 400, "itemid 101"), ([], 400, "itemids: name at least one item")]:
        with pytest.raises(tasks.CheckNowError, match=named.replace("(", r"\(").replace(")", r"\)")) as e:
            tasks.queue_check_now(engine, itemids, 1000)
        assert e.value.status == status
    with pytest.raises(tasks.CheckNowError, match="over the maximum of 1000"):
        tasks.queue_check_now(engine, range(1, 1002), 1000)
    assert states(engine) == []


def test_the_pollers_take_their_items_and_a_proxy_its_own(engine: sa.Engine) -> None:
    ids = tasks.queue_check_now(engine, [100, 107, 110, 111, 100], 1000)
    assert len(ids) == 4  # each item once; a discovery rule is checked (its discovery runs now)
    assert states(engine) == [(100, 1, None), (107, 1, None), (110, 1, None), (111, 1, None)]
    assert tasks.take_new(engine, 2) == []  # west monitors none of them
    assert tasks.take_local_check_now(engine) == [100, 107]
    assert tasks.take_local_check_now(engine) == []  # taken once
    got = tasks.take_new(engine, 1)
    assert got == [CheckNow(110, 1000), CheckNow(111, 1000)]
    assert tasks.take_new(engine, 1) == []
    assert states(engine) == [(100, 3, None), (107, 3, None), (110, 3, 1), (111, 3, 1)]


def test_a_host_moved_to_another_proxy_takes_its_tasks_along(engine: sa.Engine) -> None:
    tasks.queue_check_now(engine, [110], 1000)
    with engine.begin() as c:  # a proxy group's balancer moved the host before east came by
        c.execute(sa.text("UPDATE hosts SET proxyid = 2 WHERE hostid = 11"))
    assert tasks.take_new(engine, 1) == [] and tasks.take_local_check_now(engine) == []
    assert tasks.take_new(engine, 2) == [CheckNow(110, 1000)]


def test_an_item_deleted_meanwhile_and_the_ttl(engine: sa.Engine) -> None:
    tasks.queue_check_now(engine, [100], 1000)
    tasks.queue_check_now(engine, [110], 1000, ttl=60)
    with engine.begin() as c:
        c.execute(sa.text("DELETE FROM items WHERE itemid = 100"))
    assert tasks.take_local_check_now(engine) == [100]  # taken for nothing: the pollers skip it
    assert tasks.expire_check_now(engine, 1060) == 0
    assert tasks.expire_check_now(engine, 1061) == 1
    assert states(engine)[-1] == (110, int(TaskStatus.EXPIRED), None)
    assert tasks.take_new(engine, 1) == []  # an expired task does not go out


def test_scheduler_check_now_puts_polled_items_first() -> None:
    from vigil.server.pollers.scheduler import Scheduler

    class Item:
        def __init__(self, kind: ItemType) -> None:
            self.type = kind

    async def submit(_: object) -> None:
        return None

    sched = Scheduler(None, submit, pollers={}, clock=lambda: 5000.0)  # type: ignore[arg-type]  # no repo: not run
    sched.items = {1: Item(ItemType.AGENT), 2: Item(ItemType.DEPENDENT), 3: Item(ItemType.HTTP_AGENT)}  # type: ignore[dict-item]
    sched._schedule(1, 8600.0)
    assert sched.check_now([1, 2, 3, 99]) == 2  # a dependent and an unknown item are left alone
    assert sched.schedule_of() == {1: 5000.0, 3: 5000.0} and sched._wake.is_set()
