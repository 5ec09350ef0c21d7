"""The escalator end to end on a migrated database (both stores) with a recording dispatcher.

Time is driven by passing `now` to Escalator.process(), never by sleeping. The configuration comes
from a small stand-in for ConfigRepo.alerting() (the fields of trigcfg's AlertingConfig); the rows
the escalator reads (events, problems, triggers, items, history, acknowledges) are inserted into a
real migrated database, as the engine would write them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from vigil.alerts.escalator import Escalator
from vigil.server.config import tables as t
from vigil.server.config.alerting import (
    ActionSpec,
    ConditionSpec,
    MaintenanceSpec,
    MediaSpec,
    MediaTypeSpec,
    OperationSpec,
    TimePeriodSpec,
    UserSpec,
)
from vigil.server.config.migrate import engine_for
from vigil.server.config.tables import AlertStatus, MediaKind
from vigil.server.store import open_store
from vigil.server.store.alertlog import AlertLog
from vigil.server.store.base import WriteBatch
from vigil.server.store.escalations import COMPLETED, SLEEP, EscalationStore
from vigil.server.triggers.events import Event, ProblemUpdate

from tests.conftest import wait_until

T = 1704103200  # 2024-01-01 10:00:00 UTC, a Monday
HOSTID, ITEMID, TRIGGERID = 1, 10, 100
ANN, BOB, CAT = 1, 2, 3
EMAIL, HOOK = 1, 2


@dataclass
class Cfg:
    """What ConfigRepo.alerting() returns (trigcfg's AlertingConfig), built by hand."""

    media_types: dict[int, MediaTypeSpec] = field(default_factory=dict)
    users: dict[int, UserSpec] = field(default_factory=dict)
    user_groups: dict[int, tuple[str, tuple[int, ...]]] = field(default_factory=dict)
    actions: dict[int, ActionSpec] = field(default_factory=dict)
    maintenances: dict[int, MaintenanceSpec] = field(default_factory=dict)
    user_ids: dict[str, int] = field(default_factory=dict)
    media_type_ids: dict[str, int] = field(default_factory=dict)
    group_ids: dict[str, int] = field(default_factory=dict)
    host_groups: dict[int, tuple[str, ...]] = field(default_factory=dict)
    host_ids: dict[str, int] = field(default_factory=dict)


class Repo:
    def __init__(self, cfg: Cfg) -> None:
        self.cfg = cfg
        self.v = 1

    def version(self) -> int:
        return self.v

    def alerting(self) -> Cfg:
        return self.cfg

    def macros_for(self, hostid: int) -> dict[str, str]:
        return {"{$TEAM}": "ops"} if hostid == HOSTID else {}


class Recorder:
    def __init__(self) -> None:
        self.alertids: list[int] = []

    def dispatch(self, alertid: int) -> None:
        self.alertids.append(alertid)


def seed(engine: Engine, url: str) -> None:
    with engine.begin() as c:
        c.execute(t.hosts.insert().values(hostid=HOSTID, host="web1", name="Web server 1"))
        c.execute(t.hosts.insert().values(hostid=2, host="db1", name=""))
        c.execute(t.interfaces.insert().values(hostid=HOSTID, type=1, ip="127.0.0.1", port="10050"))
        c.execute(t.items.insert().values(itemid=ITEMID, hostid=HOSTID, key_="system.cpu.load", name="CPU load",
                                          type=2, value_type=0))
        c.execute(t.triggers.insert().values(triggerid=TRIGGERID, hostid=HOSTID, description="Load is high",
                                             expression="last(/web1/system.cpu.load)>5", priority=3))
        c.execute(t.trigger_items.insert().values(triggerid=TRIGGERID, itemid=ITEMID))
        c.execute(t.trigger_rtdata.insert().values(triggerid=TRIGGERID, value=1))
        for uid, name in ((ANN, "ann"), (BOB, "bob"), (CAT, "cat")):
            c.execute(t.users.insert().values(userid=uid, username=name))
        c.execute(t.media_types.insert().values(mediatypeid=EMAIL, name="Email", type=0))
        c.execute(t.media_types.insert().values(mediatypeid=HOOK, name="Hook", type=4))
        for aid in (1, 2, 3):
            c.execute(t.actions.insert().values(actionid=aid, name=f"action {aid}"))
    store = open_store(url)  # the store makes the history partitions PostgreSQL needs for these clocks
    try:
        store.write(WriteBatch(floats=[(ITEMID, T - 60, 0, 7.5), (ITEMID, T + 30, 0, 9.25)]))
    finally:
        store.close()


def problem(engine: Engine, eventid: int, clock: int = T, severity: int = 3, hostid: int = HOSTID) -> Event:
    name = "Load is high on web1"
    with engine.begin() as c:
        c.execute(t.events.insert().values(eventid=eventid, source=0, object=0, objectid=TRIGGERID, clock=clock,
                                           value=1, name=name, severity=severity))
        c.execute(t.event_tags.insert().values(eventid=eventid, tag="service", value="nginx"))
        c.execute(t.problems.insert().values(eventid=eventid, source=0, object=0, objectid=TRIGGERID, clock=clock,
                                             name=name, severity=severity))
    return Event(eventid=eventid, source=0, object=0, objectid=TRIGGERID, clock=clock, ns=0, value=1,
                 severity=severity, name=name, hostids=(hostid,), tags=(("service", "nginx"),))


def resolve(engine: Engine, p_eventid: int, r_eventid: int, clock: int) -> Event:
    with engine.begin() as c:
        c.execute(t.events.insert().values(eventid=r_eventid, source=0, object=0, objectid=TRIGGERID, clock=clock,
                                           value=0, name="Load is high on web1", severity=3))
        c.execute(t.problems.update().where(t.problems.c.eventid == p_eventid)
                  .values(r_eventid=r_eventid, r_clock=clock))
    return Event(eventid=r_eventid, source=0, object=0, objectid=TRIGGERID, clock=clock, ns=0, value=0, severity=3,
                 name="Load is high on web1", hostids=(HOSTID,), resolves=(p_eventid,))


def acknowledge(engine: Engine, eventid: int, ackid: int, clock: int, message: str, userid: int = ANN) -> ProblemUpdate:
    with engine.begin() as c:
        c.execute(t.acknowledges.insert().values(acknowledgeid=ackid, userid=userid, eventid=eventid, clock=clock,
                                                 message=message, action=2 | 4))
        c.execute(t.problems.update().where(t.problems.c.eventid == eventid).values(acknowledged=1))
    return ProblemUpdate(acknowledgeid=ackid, eventid=eventid, userid=userid, clock=clock, message=message, action=6)


def base_cfg() -> Cfg:
    return Cfg(
        media_types={EMAIL: MediaTypeSpec(name="Email", kind=MediaKind.EMAIL),
                     HOOK: MediaTypeSpec(name="Hook", kind=MediaKind.WEBHOOK, params={"url": "http://x"})},
        users={ANN: UserSpec(username="ann", name="Ann", surname="Lee",
                             medias=[MediaSpec(media_type="Email", send_to="ann@example.com")]),
               BOB: UserSpec(username="bob", medias=[MediaSpec(media_type="Email", send_to="bob@example.com")]),
               CAT: UserSpec(username="cat", medias=[MediaSpec(media_type="Email", send_to="cat@example.com"),
                                                     MediaSpec(media_type="Hook", send_to="cat-hook")])},
        user_groups={1: ("oncall", (BOB, CAT))},
        user_ids={"ann": ANN, "bob": BOB, "cat": CAT}, media_type_ids={"Email": EMAIL, "Hook": HOOK},
        group_ids={"oncall": 1}, host_groups={HOSTID: ("Web",), 2: ("Databases",)},
        host_ids={"web1": HOSTID, "db1": 2})


def three_steps() -> ActionSpec:
    return ActionSpec(
        name="escalate", step_duration="1h", conditions=[ConditionSpec(type=4, operator=5, value="3")],
        operations=[OperationSpec(step_from=1, step_to=1, users=["ann"]),
                    OperationSpec(step_from=2, step_to=2, step_duration="10m", users=["bob"]),
                    OperationSpec(step_from=3, step_to=3, groups=["oncall"], media_type="Email",
                                  subject="Step 3: {EVENT.NAME}", message="still {TRIGGER.STATUS} for {EVENT.AGE}")],
        recovery_operations=[OperationSpec(users=["ann"])],
        update_operations=[OperationSpec(users=["ann"], message="{USER.FULLNAME}: {EVENT.UPDATE.MESSAGE}")])


@dataclass
class Rig:
    engine: Engine
    cfg: Cfg
    repo: Repo
    sent: Recorder
    esc: Escalator

    def alerts(self) -> list[Any]:
        with self.engine.connect() as c:
            return list(c.execute(sa.select(t.alerts).order_by(t.alerts.c.alertid)))

    def sendtos(self) -> list[str]:
        return [a.sendto for a in self.alerts() if a.alertid in self.sent.alertids]

    def restart(self) -> Escalator:
        self.esc.close()
        self.esc = Escalator(self.engine, self.repo, AlertLog(self.engine), self.sent, tz=UTC)
        return self.esc


@pytest.fixture
def rig(migrated_url: str) -> Iterator[Rig]:
    engine = engine_for(migrated_url)
    seed(engine, migrated_url)
    cfg = base_cfg()
    cfg.actions[1] = three_steps()
    repo = Repo(cfg)
    sent = Recorder()
    r = Rig(engine, cfg, repo, sent, Escalator(engine, repo, AlertLog(engine), sent, tz=UTC))
    try:
        yield r
    finally:
        r.esc.close()
        engine.dispose()


def test_steps_run_after_their_durations(rig: Rig) -> None:
    rig.esc.notify(problem(rig.engine, 1))
    rig.esc.process(T)
    assert rig.sendtos() == ["ann@example.com"]
    first = rig.alerts()[0]
    assert (first.subject, first.esc_step, first.actionid, first.eventid, first.userid, first.mediatypeid) == \
        ("Problem: Load is high on web1", 1, 1, 1, ANN, EMAIL)
    assert "Host: Web server 1\nSeverity: Average\nOriginal problem ID: 1" in first.message
    rig.esc.process(T + 3599)  # step 1 lasts the action's 1h
    assert len(rig.sent.alertids) == 1
    rig.esc.process(T + 3600)
    assert rig.sendtos() == ["ann@example.com", "bob@example.com"]
    rig.esc.process(T + 3600 + 599)  # step 2 lasts its operation's 10m
    assert len(rig.sent.alertids) == 2
    rig.esc.process(T + 4200)
    # step 3: the group's members, the operation's media type only (not cat's webhook)
    assert rig.sendtos() == ["ann@example.com", "bob@example.com", "bob@example.com", "cat@example.com"]
    step3 = rig.alerts()[-1]
    assert (step3.subject, step3.message, step3.esc_step) == ("Step 3: Load is high on web1",
                                                              "still PROBLEM for 1h 10m", 3)
    rig.esc.process(T + 100_000)  # no step after 3
    assert len(rig.sent.alertids) == 4
    [e] = EscalationStore(rig.engine).all()
    assert e.status == COMPLETED and e.esc_step == 3


def test_the_same_event_twice_escalates_once(rig: Rig) -> None:
    ev = problem(rig.engine, 1)
    rig.esc.notify(ev)
    rig.esc.notify(ev)
    rig.esc.process(T)
    assert len(rig.sent.alertids) == 1


def test_recovery_runs_once_and_ends_the_steps(rig: Rig) -> None:
    rig.esc.notify(problem(rig.engine, 1))
    rig.esc.process(T)
    rig.esc.notify(resolve(rig.engine, 1, 2, T + 1800 + 60))
    rig.esc.process(T + 1900)
    alerts = rig.alerts()
    assert [a.sendto for a in alerts] == ["ann@example.com", "ann@example.com"]
    rec = alerts[1]
    assert rec.subject == "Resolved in 31m: Load is high on web1"
    assert (rec.eventid, rec.p_eventid) == (2, 1)
    assert "Problem duration: 31m" in rec.message
    assert EscalationStore(rig.engine).all() == []
    rig.esc.notify(Event(  # the OK event again: nothing more
        eventid=2, source=0, object=0, objectid=TRIGGERID, clock=T + 1860, ns=0, value=0, severity=3, name="x",
        resolves=(1,)))
    rig.esc.process(T + 10_000)
    assert len(rig.sent.alertids) == 2


def test_recovery_found_through_the_problems_table(rig: Rig) -> None:
    rig.esc.notify(problem(rig.engine, 1))
    rig.esc.process(T)
    ok = resolve(rig.engine, 1, 2, T + 120)
    rig.esc.notify(Event(eventid=ok.eventid, source=0, object=0, objectid=TRIGGERID, clock=ok.clock, ns=0,
                         value=0, severity=3, name=ok.name))  # no `resolves`
    rig.esc.process(T + 120)
    assert [a.subject for a in rig.alerts()][1] == "Resolved in 2m: Load is high on web1"


def test_notify_all_involved_on_recovery(rig: Rig) -> None:
    act = rig.cfg.actions[1]
    act.recovery_operations = [OperationSpec(kind=11)]
    rig.esc.notify(problem(rig.engine, 1))
    rig.esc.process(T)
    rig.esc.process(T + 3600)
    rig.esc.notify(resolve(rig.engine, 1, 2, T + 3700))
    rig.esc.process(T + 3700)
    assert rig.sendtos() == ["ann@example.com", "bob@example.com", "ann@example.com", "bob@example.com"]
    assert [a.subject.split(":")[0] for a in rig.alerts()[2:]] == ["Resolved in 1h 1m"] * 2


def test_update_operations(rig: Rig) -> None:
    rig.esc.notify(problem(rig.engine, 1))
    rig.esc.process(T)
    rig.esc.notify(acknowledge(rig.engine, 1, 50, T + 300, "looking at it", userid=BOB))
    rig.esc.process(T + 300)
    upd = rig.alerts()[-1]
    assert upd.subject == "Updated problem in 5m: Load is high on web1"
    assert upd.message == "bob: looking at it"
    assert (upd.eventid, upd.p_eventid, upd.userid) == (1, 1, ANN)
    # the problem's own escalation goes on
    rig.esc.process(T + 3600)
    assert rig.sendtos()[-1] == "bob@example.com"
    # an update of a problem no action escalates sends nothing
    problem(rig.engine, 9)
    rig.esc.notify(acknowledge(rig.engine, 9, 51, T + 400, "x"))
    rig.esc.process(T + 3601)
    assert len(rig.sent.alertids) == 3


def test_maintenance_pauses_the_escalation_then_it_goes_on(rig: Rig) -> None:
    rig.cfg.maintenances[1] = MaintenanceSpec(
        name="patch", active_since=T - 86400, active_till=T + 86400, groups=["Web"],
        periods=[TimePeriodSpec(type=0, start_date=T - 600, period=7200)])  # until T + 6600
    rig.esc.notify(problem(rig.engine, 1))
    rig.esc.process(T)
    assert rig.sent.alertids == []
    [e] = EscalationStore(rig.engine).all()
    assert e.status == SLEEP and e.esc_step == 0
    for now in range(T + 60, T + 6600, 600):
        rig.esc.process(now)
    assert rig.sent.alertids == []
    rig.esc.process(T + 6600 + 60)
    assert rig.sendtos() == ["ann@example.com"]  # step 1, after the maintenance
    rig.esc.process(T + 6660 + 3600)
    assert rig.sendtos() == ["ann@example.com", "bob@example.com"]


def test_maintenance_without_pause_and_the_suppressed_condition(rig: Rig) -> None:
    rig.cfg.maintenances[1] = MaintenanceSpec(name="patch", active_since=T - 60, active_till=T + 3600,
                                              hosts=["web1"], periods=[TimePeriodSpec(start_date=T - 60)])
    rig.cfg.actions[1].pause_suppressed = False
    rig.cfg.actions[2] = ActionSpec(name="only outside maintenance", conditions=[ConditionSpec(16, 11)],
                                    operations=[OperationSpec(users=["cat"], media_type="Hook")])
    rig.esc.notify(problem(rig.engine, 1))
    rig.esc.process(T)
    assert rig.sendtos() == ["ann@example.com"]  # action 1 does not pause; action 2 does not match


def test_problem_resolved_during_maintenance_sends_nothing(rig: Rig) -> None:
    rig.cfg.maintenances[1] = MaintenanceSpec(name="patch", active_since=T - 60, active_till=T + 3600,
                                              hosts=["web1"], periods=[TimePeriodSpec(start_date=T - 60)])
    rig.esc.notify(problem(rig.engine, 1))
    rig.esc.process(T)
    rig.esc.notify(resolve(rig.engine, 1, 2, T + 60))
    rig.esc.process(T + 60)
    rig.esc.process(T + 7200)
    assert rig.sent.alertids == [] and EscalationStore(rig.engine).all() == []


def test_restart_resumes_the_steps(rig: Rig) -> None:
    rig.esc.notify(problem(rig.engine, 1))
    rig.esc.process(T)
    esc = rig.restart()
    esc.process(T + 1000)
    assert len(rig.sent.alertids) == 1
    esc.process(T + 3600)
    assert rig.sendtos() == ["ann@example.com", "bob@example.com"]
    esc = rig.restart()
    esc.notify(resolve(rig.engine, 1, 2, T + 3700))
    esc.process(T + 3700)
    assert rig.sendtos()[-1] == "ann@example.com" and rig.alerts()[-1].subject.startswith("Resolved in")


def test_a_resolved_problem_is_noticed_after_a_restart_that_lost_the_ok_notice(rig: Rig) -> None:
    rig.esc.notify(problem(rig.engine, 1))
    rig.esc.process(T)
    resolve(rig.engine, 1, 2, T + 100)  # committed, but the server died before notify()
    esc = rig.restart()
    esc.process(T + 3600)
    assert [a.subject.split(":")[0] for a in rig.alerts()] == ["Problem", "Resolved in 1m"]
    assert EscalationStore(rig.engine).all() == []


def test_media_filters(rig: Rig) -> None:
    u = rig.cfg.users
    u[ANN].medias = [MediaSpec(media_type="Email", send_to="ann-high", severity=1 << 4 | 1 << 5),
                     MediaSpec(media_type="Email", send_to="ann-off", enabled=False),
                     MediaSpec(media_type="Email", send_to="ann-weekend", period="6-7,00:00-24:00"),
                     MediaSpec(media_type="Email", send_to="ann-mornings", period="1-5,08:00-12:00"),
                     MediaSpec(media_type="Hook", send_to="ann-hook"),
                     MediaSpec(media_type="Email", send_to="ann-bad-period", period="whenever"),
                     MediaSpec(media_type="Nope", send_to="ann-unknown")]
    rig.esc.notify(problem(rig.engine, 1, severity=3))
    rig.esc.process(T)
    assert rig.sendtos() == ["ann-mornings", "ann-hook"]
    rig.cfg.media_types[HOOK].enabled = False
    rig.repo.v += 1
    rig.esc.notify(problem(rig.engine, 2, severity=5))
    rig.esc.process(T)
    assert rig.sendtos() == ["ann-mornings", "ann-hook", "ann-high", "ann-mornings"]


def test_alert_id_macro_and_a_broken_template(rig: Rig) -> None:
    rig.cfg.actions[1].operations = [
        OperationSpec(users=["ann"], subject="#{ALERT.ID} to {ALERT.SENDTO}",
                      message="{{ alert.id }} {ITEM.VALUE} {ITEM.LASTVALUE} {$TEAM} {EVENT.TAGS}"),
        OperationSpec(users=["bob"], subject="fine", message="{% if %}"),
        OperationSpec(users=["cat"], media_type="Email")]
    rig.esc.notify(problem(rig.engine, 1))
    rig.esc.process(T)
    ann, bob, cat = rig.alerts()
    assert ann.subject == f"#{ann.alertid} to ann@example.com"
    assert ann.message == f"{ann.alertid} 7.5 9.25 ops service:nginx"
    assert bob.status == AlertStatus.FAILED and "template error at line 1" in bob.error
    assert bob.alertid not in rig.sent.alertids
    assert rig.sent.alertids == [ann.alertid, cat.alertid]  # the broken one did not stop the next


def test_webhook_body_values_are_json_escaped(rig: Rig) -> None:
    import json

    with rig.engine.begin() as c:
        c.execute(t.hosts.update().where(t.hosts.c.hostid == HOSTID).values(name='Web "1"'))
    rig.cfg.media_types[HOOK].params["body"] = ('{"id": {ALERT.ID}, "to": "{ALERT.SENDTO}", "host": "{HOST.NAME}", '
                                                '"subject": "{ALERT.SUBJECT}", "text": "{ALERT.MESSAGE}"}')
    rig.cfg.actions[1].operations = [OperationSpec(users=["cat"], subject="{HOST.NAME} is \\ down",
                                                   message='line 1\n"{HOST.NAME}"')]
    rig.esc.notify(problem(rig.engine, 1))
    rig.esc.process(T)
    email, hook = rig.alerts()
    assert (email.subject, email.message) == ('Web "1" is \\ down', 'line 1\n"Web "1""')  # e-mail: as is
    assert json.loads(hook.message) == {"id": hook.alertid, "to": "cat-hook", "host": 'Web "1"',
                                        "subject": 'Web "1" is \\ down', "text": 'line 1\n"Web "1""'}
    assert hook.subject == 'Web "1" is \\ down'


def test_conditions_and_disabled_actions(rig: Rig) -> None:
    rig.esc.notify(problem(rig.engine, 1, severity=2))  # below "severity >= average"
    rig.cfg.actions[2] = ActionSpec(name="databases", conditions=[ConditionSpec(0, 0, "Databases")],
                                    operations=[OperationSpec(users=["cat"])])
    rig.cfg.actions[3] = ActionSpec(name="off", enabled=False, operations=[OperationSpec(users=["cat"])])
    rig.esc.process(T)
    assert rig.sent.alertids == [] and EscalationStore(rig.engine).all() == []
    # a broken condition skips that action only
    rig.cfg.actions[2] = ActionSpec(name="broken", conditions=[ConditionSpec(4, 2, "3")],
                                    operations=[OperationSpec(users=["cat"])])
    rig.esc.notify(problem(rig.engine, 2, severity=4))
    rig.esc.process(T)
    assert rig.sendtos() == ["ann@example.com"]


def test_disabling_the_action_ends_its_escalations(rig: Rig) -> None:
    rig.esc.notify(problem(rig.engine, 1))
    rig.esc.process(T)
    rig.cfg.actions[1].enabled = False
    rig.repo.v += 1
    rig.esc.process(T + 3600)
    assert len(rig.sent.alertids) == 1 and EscalationStore(rig.engine).all() == []


def test_remote_commands_are_logged(rig: Rig, tmp_path: Path) -> None:
    out = tmp_path / "cmd.out"
    rig.cfg.actions[1].operations = [
        OperationSpec(kind=1, execute_on=1, command=f"echo {{HOST.HOST}} {{EVENT.ID}} > {out}; echo done"),
        OperationSpec(kind=1, execute_on=1, command="echo nope; exit 4"),
        OperationSpec(kind=1, execute_on=0, command="true")]  # web1's agent interface: nobody listens on 10050
    rig.esc.notify(problem(rig.engine, 1))
    rig.esc.process(T)
    rig.esc.wait_commands()
    ok, bad, agent = rig.alerts()
    assert out.read_text() == "web1 1\n"
    assert (ok.alerttype, ok.status, ok.message, ok.error) == (1, AlertStatus.SENT, "done\n(exit code 0)", "")
    assert (bad.status, bad.error) == (AlertStatus.FAILED, "exit code 4: nope")
    assert agent.sendto == "127.0.0.1:10050" and agent.status == AlertStatus.FAILED
    assert "cannot reach the agent" in agent.error or "refused" in agent.error
    assert rig.sent.alertids == []  # commands are not delivery's


def test_queue_is_bounded(rig: Rig) -> None:
    esc = Escalator(rig.engine, rig.repo, AlertLog(rig.engine), rig.sent, tz=UTC, queue_size=2)
    try:
        for i in (1, 2, 3):
            esc.notify(problem(rig.engine, i))
        assert esc.dropped == 1
        esc.process(T)
        assert [a.eventid for a in rig.alerts()] == [2, 3]
    finally:
        esc.close()


def test_run_loop(rig: Rig) -> None:
    import time

    rig.cfg.maintenances.clear()
    esc = Escalator(rig.engine, rig.repo, AlertLog(rig.engine), rig.sent, interval=0.05)
    stop = threading.Event()
    th = threading.Thread(target=esc.run, args=(stop,))
    th.start()
    try:
        esc.notify(problem(rig.engine, 1, clock=int(time.time())))
        wait_until(lambda: len(rig.sent.alertids) == 1, 10, "the running escalator to send step 1")
    finally:
        stop.set()
        th.join(10)
    assert not th.is_alive()


def test_from_settings(migrated_url: str, tmp_path: Path) -> None:
    from vigil.server.settings import Settings, SettingsError

    s = Settings.from_env({"VIGIL_DATA_DIR": str(tmp_path), "VIGIL_MAINTENANCE_RECHECK": "120",
                           "VIGIL_REMOTE_COMMAND_TIMEOUT": "5"})
    engine = engine_for(migrated_url)
    esc = Escalator.from_settings(engine, Repo(Cfg()), AlertLog(engine), Recorder(), s)
    try:
        assert (esc.interval, esc.maintenance_recheck, esc.command_timeout) == (1.0, 120, 5.0)
    finally:
        esc.close()
        engine.dispose()
    with pytest.raises(SettingsError, match="VIGIL_MAINTENANCE_RECHECK='0': must be between 1 and 3600"):
        Settings.from_env({"VIGIL_DATA_DIR": str(tmp_path), "VIGIL_MAINTENANCE_RECHECK": "0"})


def test_a_dispatcher_that_fails_leaves_the_alert_queued(rig: Rig) -> None:
    class Down:
        def dispatch(self, alertid: int) -> None:
            raise ConnectionError("broker down")

    esc = Escalator(rig.engine, rig.repo, AlertLog(rig.engine), Down(), tz=UTC)
    try:
        esc.notify(problem(rig.engine, 1))
        esc.process(T)
        [a] = rig.alerts()
        assert (a.status, a.subject) == (AlertStatus.QUEUED, "Problem: Load is high on web1")
        esc.process(T + 3600)  # the escalation went on
        assert [r.sendto for r in rig.alerts()] == ["ann@example.com", "bob@example.com"]
    finally:
        esc.close()


def test_internal_events_reach_internal_actions_only(rig: Rig) -> None:
    rig.cfg.actions[2] = ActionSpec(name="internal", event_source=3, conditions=[ConditionSpec(1, 0, "web1")],
                                    operations=[OperationSpec(users=["cat"], media_type="Email",
                                                              message="{ITEM.KEY} on {HOST.HOST}: {EVENT.NAME}")],
                                    recovery_operations=[OperationSpec(users=["cat"], media_type="Email")])
    name = "Cannot evaluate: item not supported"
    with rig.engine.begin() as c:
        c.execute(t.events.insert().values(eventid=5, source=3, object=4, objectid=ITEMID, clock=T, value=1, name=name))
        c.execute(t.problems.insert().values(eventid=5, source=3, object=4, objectid=ITEMID, clock=T, name=name))
    rig.esc.notify(Event(eventid=5, source=3, object=4, objectid=ITEMID, clock=T, ns=0, value=1, severity=0,
                         name=name, hostids=(HOSTID,)))
    rig.esc.process(T)
    [a] = rig.alerts()  # action 1 is for trigger events
    assert (a.actionid, a.sendto, a.message) == (2, "cat@example.com", f"system.cpu.load on web1: {name}")
    with rig.engine.begin() as c:
        c.execute(t.events.insert().values(eventid=6, source=3, object=4, objectid=ITEMID, clock=T + 90, value=0,
                                           name=name))
        c.execute(t.problems.update().where(t.problems.c.eventid == 5).values(r_eventid=6, r_clock=T + 90))
    rig.esc.notify(Event(eventid=6, source=3, object=4, objectid=ITEMID, clock=T + 90, ns=0, value=0, severity=0,
                         name=name, hostids=(HOSTID,), resolves=(5,)))
    rig.esc.process(T + 90)
    assert rig.alerts()[-1].subject == f"Resolved in 1m: {name}"


def test_a_database_error_keeps_the_notice_for_the_next_round(rig: Rig, monkeypatch: pytest.MonkeyPatch) -> None:
    real = rig.esc.store.event
    calls = []

    def flaky(eventid: int) -> Any:
        calls.append(eventid)
        if len(calls) == 1:
            raise sa.exc.OperationalError("SELECT", {}, Exception("server closed the connection"))
        return real(eventid)

    monkeypatch.setattr(rig.esc.store, "event", flaky)
    rig.esc.notify(problem(rig.engine, 1))
    with pytest.raises(sa.exc.OperationalError):
        rig.esc.process(T)
    assert rig.sent.alertids == []
    rig.esc.process(T + 1)
    assert rig.sendtos() == ["ann@example.com"]
