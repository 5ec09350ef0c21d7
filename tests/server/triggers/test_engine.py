"""The trigger engine driven cycle by cycle, on both stores: values in, events and problems out.

The configuration (hosts, items) is real, written through ConfigRepo; triggers are rows of the
triggers table read by a small stand-in for ConfigRepo.triggers(). Time is the test's: the
engine's clock is a variable.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import sqlalchemy as sa
from vigil.server.config import tables as t
from vigil.server.config.migrate import engine_for
from vigil.server.config.model import doc_from_dict
from vigil.server.config.repo import ConfigRepo
from vigil.server.store import open_store
from vigil.server.store.base import Store, WriteBatch
from vigil.server.store.events import ACTION_ACK, ACTION_CLOSE, ACTION_MESSAGE, ACTION_SEVERITY, EventError, EventStore
from vigil.server.triggers.evaluator import EngineSettings, TriggerEngine
from vigil.server.triggers.events import Event, Notice, ProblemUpdate

T0 = 1_790_000_000


@dataclass(frozen=True)
class Ref:  # the fields of trigcfg's TriggerRef the engine reads
    triggerid: int
    hostid: int
    host: str
    name: str
    expression: str
    recovery_mode: int = 0
    recovery_expression: str = ""
    severity: int = 3
    multiple: bool = False
    manual_close: bool = False
    tags: tuple[tuple[str, str], ...] = ()
    depends_on: tuple[int, ...] = ()
    itemids: tuple[int, ...] = ()


class Repo(ConfigRepo):
    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine)
        self.refs: list[Ref] = []
        self.macros: dict[str, str] = {}

    def triggers(self) -> list[Ref]:  # type: ignore[override]
        return list(self.refs)

    def macros_for(self, hostid: int) -> dict[str, str]:
        return dict(self.macros)


class Config:
    def __init__(self, repo: ConfigRepo) -> None:
        self.repo = repo
        self.snapshot = repo.snapshot()

    def bump(self) -> None:
        snap = self.repo.snapshot()
        self.snapshot = type(snap)(snap.version + 1000 + self.snapshot.version, snap.hosts, snap.items, snap.active,
                                   snap.max_history)


@dataclass
class World:
    url: str
    engine: sa.Engine
    repo: Repo
    config: Config
    events: EventStore
    store: Store
    now: list[float]
    notices: list[Notice] = field(default_factory=list)
    items: dict[str, int] = field(default_factory=dict)
    hostid: int = 0
    te: TriggerEngine | None = None

    def trigger(self, name: str, expression: str, **kw: Any) -> int:
        with self.engine.begin() as c:
            tid = c.execute(sa.insert(t.triggers).returning(t.triggers.c.triggerid),
                            {"hostid": self.hostid, "description": name, "expression": expression,
                             "recovery_mode": kw.get("recovery_mode", 0),
                             "recovery_expression": kw.get("recovery_expression", ""),
                             "priority": kw.get("severity", 3), "type": int(kw.get("multiple", False)),
                             "manual_close": int(kw.get("manual_close", False))}).scalar_one()
            itemids = tuple(self.items[k] for k in self.items if f"/h1/{k})" in expression or f"/h1/{k}," in
                            expression or f"/h1/{k})" in kw.get("recovery_expression", ""))
            for i in itemids:
                c.execute(sa.insert(t.trigger_items), {"triggerid": tid, "itemid": i})
        self.repo.refs.append(Ref(tid, self.hostid, "h1", name, expression, itemids=itemids, **kw))
        return tid

    def start(self) -> TriggerEngine:
        self.config.bump()
        self.te = TriggerEngine(self.events, self.repo, self.config, lambda: open_store(self.url),
                                self.notices.append, EngineSettings(timer=5, ack_poll=0.0, unreachable=60,
                                                                    cache_values=10_000),
                                now=lambda: self.now[0])
        self.te.load()
        self.te.cycle([])
        return self.te

    def send(self, key: str, value: float, clock: int | None = None, ns: int = 0) -> list[Notice]:
        b = WriteBatch()
        b.floats.append((self.items[key], int(self.now[0]) if clock is None else clock, ns, value))
        self.store.write(b)
        assert self.te is not None
        return self.te.cycle([("values", b)])

    def tick(self, seconds: float) -> list[Notice]:
        self.now[0] += seconds
        assert self.te is not None
        return self.te.cycle([])

    def rt(self, tid: int) -> tuple[int, int, str]:
        v, s, e, _ = self.events.rtdata()[tid]
        return v, s, e


@pytest.fixture
def world(migrated_url: str) -> Iterator[World]:
    engine = engine_for(migrated_url)
    repo = Repo(engine)
    repo.apply(doc_from_dict({"hosts": [{"host": "h1", "name": "Host One", "items": [
        {"key": "temp", "type": "trapper", "value_type": "float", "tags": [{"tag": "room", "value": "r1"}]},
        {"key": "load", "type": "trapper", "value_type": "float"},
        {"key": "up", "type": "trapper", "value_type": "float"},
    ]}]}))
    store = open_store(migrated_url)
    w = World(migrated_url, engine, repo, Config(repo), EventStore(engine), store, [float(T0)])
    with engine.connect() as c:
        w.hostid = c.execute(sa.select(t.hosts.c.hostid).where(t.hosts.c.host == "h1")).scalar_one()
        for r in c.execute(sa.select(t.items.c.itemid, t.items.c.key_)):
            w.items[r.key_] = r.itemid
    try:
        yield w
    finally:
        if w.te is not None:
            w.te.cache.close()
        store.close()
        engine.dispose()


def events(notices: list[Notice]) -> list[Event]:
    return [n for n in notices if isinstance(n, Event)]


def test_problem_opens_and_recovers_with_expanded_name_and_tags(world: World) -> None:
    tid = world.trigger("Hot on {HOST.NAME} ({HOST.HOST}): {ITEM.LASTVALUE} {$WHERE}", "last(/h1/temp)>30",
                        tags=(("scope", "temp"),))
    world.repo.macros = {"{$WHERE}": "lab"}
    world.start()
    assert events(world.send("temp", 20)) == []
    assert world.rt(tid) == (0, 0, "")
    [ev] = events(world.send("temp", 35.5))
    assert (ev.value, ev.source, ev.object, ev.objectid, ev.severity) == (1, 0, 0, tid, 3)
    assert ev.name == "Hot on Host One (h1): 35.5 lab"
    assert ev.clock == T0 and ev.hostids == (world.hostid,)
    assert set(ev.tags) == {("scope", "temp"), ("room", "r1")}
    assert world.events.event_tags(ev.eventid) == ev.tags
    [p] = world.events.problems()
    assert (p.eventid, p.host, p.r_eventid, p.name) == (ev.eventid, "h1", None, ev.name)
    assert world.rt(tid)[0] == 1
    assert events(world.send("temp", 36, clock=T0 + 1)) == []  # single problem mode: still one
    [ok] = events(world.send("temp", 10, clock=T0 + 2))
    assert (ok.value, ok.resolves) == (0, (ev.eventid,))
    assert world.events.problems() == []
    [resolved] = world.events.problems(resolved=True)
    assert resolved.r_eventid == ok.eventid
    assert world.rt(tid)[0] == 0


def test_multiple_mode_makes_an_event_per_value(world: World) -> None:
    tid = world.trigger("many", "last(/h1/temp)>30", multiple=True)
    world.start()
    got = [events(world.send("temp", v, clock=T0 + i)) for i, v in enumerate([31, 32, 33])]
    assert [len(g) for g in got] == [1, 1, 1]
    assert len(world.events.problems()) == 3
    assert events(world.tick(10)) == []  # a timer evaluation is not a new value: no event
    [ok] = events(world.send("temp", 1, clock=T0 + 5))
    assert len(ok.resolves) == 3 and world.events.problems() == []
    assert world.rt(tid)[0] == 0


def test_dependency_in_problem_holds_back_the_dependent(world: World) -> None:
    up = world.trigger("link down", "last(/h1/up)=0")
    down = world.trigger("load high", "last(/h1/load)>5")
    world.repo.refs[-1] = Ref(**{**world.repo.refs[-1].__dict__, "depends_on": (up,)})
    world.start()
    assert len(events(world.send("up", 0))) == 1
    assert events(world.send("load", 9)) == []
    assert world.rt(down)[0] == 0
    assert events(world.send("up", 1, clock=T0 + 1))[0].value == 0
    [ev] = events(world.send("load", 9, clock=T0 + 2))
    assert ev.objectid == down and ev.value == 1


def test_recovery_expression_and_mode_none(world: World) -> None:
    tid = world.trigger("hot", "last(/h1/temp)>30", recovery_mode=1, recovery_expression="last(/h1/temp)<20")
    world.start()
    assert len(events(world.send("temp", 40))) == 1
    assert events(world.send("temp", 25, clock=T0 + 1)) == []  # below 30 but not below 20: still a problem
    assert world.rt(tid)[0] == 1
    [ok] = events(world.send("temp", 15, clock=T0 + 2))
    assert ok.value == 0 and world.rt(tid)[0] == 0

    never = world.trigger("sticky", "last(/h1/load)>5", recovery_mode=2)
    world.config.bump()
    world.te.cycle([])  # type: ignore[union-attr]
    [p] = events(world.send("load", 6, clock=T0 + 3))
    assert events(world.send("load", 1, clock=T0 + 4)) == []  # no OK event: closed by hand only
    assert world.rt(never)[0] == 0
    assert [x.eventid for x in world.events.problems()] == [p.eventid]


def test_unknown_state_keeps_the_value(world: World) -> None:
    tid = world.trigger("avg", "avg(/h1/temp,#3)>30")
    world.start()
    assert world.rt(tid) == (0, 1, world.rt(tid)[2]) and world.rt(tid)[2]  # no data yet: unknown, why given
    assert len(events(world.send("temp", 40))) == 1
    assert world.rt(tid) == (1, 0, "")
    # the item becomes not supported: the trigger is unknown, still PROBLEM, no event
    notices = world.te.cycle([("unsupported", [(world.items["temp"], T0 + 1, "Value of type string")])])  # type: ignore[union-attr]
    [internal] = events(notices)
    assert (internal.source, internal.object, internal.objectid, internal.value) == (3, 4, world.items["temp"], 1)
    assert "not supported" in internal.name and "Value of type string" in internal.name
    world.tick(0)
    v, state, error = world.rt(tid)
    assert (v, state) == (1, 1) and "not supported" in error
    # a good value again: the item is normal (an internal OK event), the trigger known again
    got = events(world.send("temp", 41, clock=T0 + 2))
    assert [(e.source, e.value) for e in got] == [(3, 0)] and got[0].resolves == (internal.eventid,)
    world.tick(0)
    assert world.rt(tid) == (1, 0, "")


def test_nodata_fires_on_the_timer(world: World) -> None:
    tid = world.trigger("silent", "nodata(/h1/up,30s)=1")
    world.start()
    world.send("up", 1)
    assert events(world.tick(10)) == []
    assert world.rt(tid)[0] == 0
    [ev] = events(world.tick(30))
    assert ev.value == 1 and ev.clock == T0 + 40
    [ok] = events(world.send("up", 1))
    assert ok.value == 0


def test_restart_keeps_state_without_duplicates(world: World) -> None:
    tid = world.trigger("hot", "last(/h1/temp)>30")
    world.start()
    [ev] = events(world.send("temp", 40))
    world.te.cache.close()  # type: ignore[union-attr]
    world.notices.clear()
    world.start()  # a new engine over the same store
    assert events(world.send("temp", 41, clock=T0 + 1)) == []
    assert world.notices == [] and len(world.events.events(source=0)) == 1
    [ok] = events(world.send("temp", 1, clock=T0 + 2))
    assert ok.resolves == (ev.eventid,) and world.rt(tid)[0] == 0


def test_acknowledge_close_and_severity(world: World) -> None:
    closable = world.trigger("closable", "last(/h1/temp)>30", manual_close=True)
    world.trigger("fixed", "last(/h1/load)>5")
    world.start()
    [p1] = events(world.send("temp", 40))
    [p2] = events(world.send("load", 9))
    with pytest.raises(EventError, match="does not allow manual close"):
        world.events.acknowledge(p2.eventid, None, "no", ACTION_CLOSE)
    with pytest.raises(EventError, match="no event 999999"):
        world.events.acknowledge(999999, None, "x", ACTION_ACK)
    with pytest.raises(EventError, match="severity"):
        world.events.acknowledge(p2.eventid, None, "x", ACTION_SEVERITY, 9)
    ackid = world.events.acknowledge(p2.eventid, None, "looking", ACTION_ACK | ACTION_MESSAGE | ACTION_SEVERITY, 5)
    [upd] = [n for n in world.tick(1) if isinstance(n, ProblemUpdate)]
    assert (upd.acknowledgeid, upd.eventid, upd.message, upd.old_severity, upd.new_severity, upd.closed_by) == \
        (ackid, p2.eventid, "looking", 3, 5, None)
    [row] = world.events.problems(eventids=[p2.eventid])
    assert (row.severity, row.acknowledged) == (5, 1)
    assert [p.eventid for p in world.events.problems(severity=5)] == [p2.eventid]
    world.events.acknowledge(p1.eventid, None, "done", ACTION_CLOSE | ACTION_MESSAGE)
    notices = world.tick(1)
    [ok] = events(notices)
    [upd] = [n for n in notices if isinstance(n, ProblemUpdate)]
    assert ok.value == 0 and ok.resolves == (p1.eventid,) and upd.closed_by == ok.eventid
    assert world.rt(closable)[0] == 0
    assert [p.eventid for p in world.events.problems()] == [p2.eventid]
    with pytest.raises(EventError, match="already resolved"):
        world.events.acknowledge(p1.eventid, None, "again", ACTION_CLOSE)
    with pytest.raises(EventError, match="not a problem"):
        world.events.acknowledge(ok.eventid, None, "ok", ACTION_ACK)


def test_agent_unreachable_and_back(world: World) -> None:
    world.start()
    te = world.te
    assert te is not None
    te.agent_seen(world.hostid)
    world.tick(5)
    assert world.events.availability()[world.hostid][0] == 1
    [ev] = events(world.tick(61))
    assert (ev.source, ev.object, ev.objectid, ev.value) == (3, 1, world.hostid, 1)
    assert world.events.availability()[world.hostid][0] == 2
    te.agent_seen(world.hostid)
    [back] = events(world.tick(5))
    assert back.value == 0 and back.resolves == (ev.eventid,)


def test_failed_commit_is_retried(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    tid = world.trigger("hot", "last(/h1/temp)>30")
    world.start()
    real = world.events.commit

    def broken(cycle: Any) -> None:
        raise sa.exc.OperationalError("insert", {}, Exception("database is away"))

    monkeypatch.setattr(world.events, "commit", broken)
    assert world.send("temp", 40) == []
    assert world.rt(tid)[0] == 0
    monkeypatch.setattr(world.events, "commit", real)
    [ev] = events(world.tick(1))
    assert ev.value == 1 and world.rt(tid)[0] == 1


def test_item_no_trigger_reads_recovers_from_not_supported(world: World) -> None:
    # The engine looks only at values of items a trigger reads and of items not supported now:
    # "load" is read by no trigger, and a value must still make it supported again.
    world.trigger("avg", "avg(/h1/temp,#3)>30")
    world.start()
    assert events(world.send("load", 1.0)) == []  # neither kind: nothing happens
    notices = world.te.cycle([("unsupported", [(world.items["load"], T0 + 1, "Value of type string")])])  # type: ignore[union-attr]
    [internal] = events(notices)
    assert (internal.objectid, internal.value) == (world.items["load"], 1)
    got = events(world.send("load", 2.0, clock=T0 + 2))
    assert [(e.source, e.objectid, e.value) for e in got] == [(3, world.items["load"], 0)]
    assert got[0].resolves == (internal.eventid,)
    assert world.te.cache.size == 0 or world.items["load"] not in world.te.cache.tracked  # type: ignore[union-attr]


def send_many(world: World, key: str, values: list[tuple[int, float]]) -> list[Notice]:
    """One batch with several values of an item, as a proxy delivers its buffer after an outage."""
    b = WriteBatch()
    b.floats.extend((world.items[key], clock, 0, value) for clock, value in values)
    world.store.write(b)
    assert world.te is not None
    return world.te.cycle([("values", b)])


def open_problems(world: World, tid: int) -> list[tuple[int, int]]:
    with world.engine.connect() as c:
        return [(r.clock, r.r_clock) for r in c.execute(
            sa.select(t.problems.c.clock, t.problems.c.r_clock).where(t.problems.c.objectid == tid)
            .order_by(t.problems.c.eventid))]


def test_a_late_batch_raises_and_resolves_with_the_values_clocks(world: World) -> None:
    """A problem that came and went while the values sat in a proxy's buffer: Zabbix evaluates each
    value at its own time, so the problem is raised at the first high value and resolved at the
    first low one after it (evaluating only the newest would miss it)."""
    tid = world.trigger("Hot", "last(/h1/temp)>30")
    world.start()
    assert events(world.send("temp", 20, clock=T0 - 600)) == []
    world.now[0] += 600
    late = [(T0 - 500, 21), (T0 - 400, 35), (T0 - 300, 36), (T0 - 200, 22), (T0 - 100, 23)]
    got = events(send_many(world, "temp", late))
    assert [(e.value, e.clock) for e in got] == [(1, T0 - 400), (0, T0 - 200)]
    assert got[1].resolves == (got[0].eventid,)
    assert open_problems(world, tid) == [(T0 - 400, T0 - 200)]  # resolved in the store too
    assert world.rt(tid) == (0, 0, "")


def test_a_late_batch_ending_in_a_problem_leaves_it_open_once(world: World) -> None:
    tid = world.trigger("Hot", "last(/h1/temp)>30")
    world.start()
    got = events(send_many(world, "temp", [(T0 - 30, 31), (T0 - 20, 32), (T0 - 10, 33)]))
    assert [(e.value, e.clock) for e in got] == [(1, T0 - 30)]  # no flapping: one problem
    assert open_problems(world, tid) == [(T0 - 30, 0)]  # r_clock 0: open
    assert world.rt(tid)[0] == 1


def test_values_older_than_the_last_change_do_not_rewrite_it(world: World) -> None:
    tid = world.trigger("Hot", "last(/h1/temp)>30")
    world.start()
    assert [e.value for e in events(world.send("temp", 40, clock=T0))] == [1]
    # Older values arrive later (another path, a resent buffer): the trigger changed at T0 already.
    got = events(send_many(world, "temp", [(T0 - 50, 10), (T0 - 40, 11), (T0 + 5, 41)]))
    assert got == []
    assert open_problems(world, tid) == [(T0, 0)]


def test_multiple_mode_raises_one_problem_per_high_value_of_a_batch(world: World) -> None:
    tid = world.trigger("Hot", "last(/h1/temp)>30", multiple=True)
    world.start()
    got = events(send_many(world, "temp", [(T0 - 30, 31), (T0 - 20, 32), (T0 - 10, 5)]))
    assert [(e.value, e.clock) for e in got] == [(1, T0 - 30), (1, T0 - 20), (0, T0 - 10)]
    assert sorted(got[2].resolves) == [got[0].eventid, got[1].eventid]
    assert open_problems(world, tid) == [(T0 - 30, T0 - 10), (T0 - 20, T0 - 10)]
