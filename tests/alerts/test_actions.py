"""Action conditions, time periods and escalation step arithmetic, by hand-computed cases."""

from __future__ import annotations

from datetime import UTC

import pytest
from vigil.alerts import actions as a
from vigil.alerts.actions import ConditionError, EventFacts, PeriodError
from vigil.server.config.alerting import ActionSpec, ConditionSpec, OperationSpec

MONDAY = 1704067200  # 2024-01-01 00:00:00 UTC, a Monday


def facts(**kw: object) -> EventFacts:
    base: dict[str, object] = dict(source=0, clock=MONDAY + 10 * 3600, severity=3, name="CPU load is high on web1",
                                   triggerid=42, trigger_name="CPU load is high", hostids=(7,), hosts=("web1",),
                                   groups=("Linux servers", "Web"), tags=(("service", "nginx"), ("env", "prod")))
    base.update(kw)
    return EventFacts(**base)  # type: ignore[arg-type]


def cond(type_: int, operator: int, value: str, value2: str = "") -> ConditionSpec:
    return ConditionSpec(type=type_, operator=operator, value=value, value2=value2)


@pytest.mark.parametrize(("c", "expected"), [
    (cond(a.HOST_GROUP, a.EQUAL, "Web"), True),
    (cond(a.HOST_GROUP, a.EQUAL, "Databases"), False),
    (cond(a.HOST_GROUP, a.NOT_EQUAL, "Web"), False),
    (cond(a.HOST_GROUP, a.NOT_EQUAL, "Databases"), True),
    (cond(a.HOST, a.EQUAL, "web1"), True),
    (cond(a.HOST, a.EQUAL, "7"), True),
    (cond(a.HOST, a.EQUAL, "web2"), False),
    (cond(a.HOST, a.NOT_EQUAL, "web2"), True),
    (cond(a.TRIGGER, a.EQUAL, "42"), True),
    (cond(a.TRIGGER, a.EQUAL, "web1:CPU load is high"), True),
    (cond(a.TRIGGER, a.EQUAL, "43"), False),
    (cond(a.TRIGGER, a.NOT_EQUAL, "43"), True),
    (cond(a.EVENT_NAME, a.LIKE, "load"), True),
    (cond(a.EVENT_NAME, a.LIKE, "Load"), False),  # case-sensitive, as Zabbix
    (cond(a.EVENT_NAME, a.NOT_LIKE, "disk"), True),
    (cond(a.EVENT_NAME, a.NOT_LIKE, "CPU"), False),
    (cond(a.SEVERITY, a.EQUAL, "3"), True),
    (cond(a.SEVERITY, a.NOT_EQUAL, "3"), False),
    (cond(a.SEVERITY, a.MORE_EQUAL, "3"), True),
    (cond(a.SEVERITY, a.MORE_EQUAL, "4"), False),
    (cond(a.SEVERITY, a.LESS_EQUAL, "2"), False),
    (cond(a.SEVERITY, a.LESS_EQUAL, "3"), True),
    (cond(a.TIME_PERIOD, a.IN, "1-5,09:00-18:00"), True),  # Monday 10:00
    (cond(a.TIME_PERIOD, a.IN, "1-5,10:01-18:00"), False),
    (cond(a.TIME_PERIOD, a.NOT_IN, "6-7,00:00-24:00"), True),
    (cond(a.SUPPRESSED, a.YES, ""), False),
    (cond(a.SUPPRESSED, a.NO, ""), True),
    (cond(a.TAG_NAME, a.EQUAL, "service"), True),
    (cond(a.TAG_NAME, a.EQUAL, "team"), False),
    (cond(a.TAG_NAME, a.NOT_EQUAL, "team"), True),
    (cond(a.TAG_NAME, a.LIKE, "serv"), True),
    (cond(a.TAG_NAME, a.NOT_LIKE, "env"), False),
    (cond(a.TAG_VALUE, a.EQUAL, "nginx", "service"), True),
    (cond(a.TAG_VALUE, a.EQUAL, "apache", "service"), False),
    (cond(a.TAG_VALUE, a.EQUAL, "nginx", "env"), False),
    (cond(a.TAG_VALUE, a.NOT_EQUAL, "apache", "service"), True),
    (cond(a.TAG_VALUE, a.LIKE, "ngi", "service"), True),
    (cond(a.TAG_VALUE, a.NOT_LIKE, "pro", "env"), False),
])
def test_each_condition(c: ConditionSpec, expected: bool) -> None:
    assert a.condition_matches(c, facts(), UTC) is expected


def test_suppressed_condition_sees_maintenance() -> None:
    assert a.condition_matches(cond(a.SUPPRESSED, a.YES, ""), facts(suppressed=True), UTC)
    assert not a.condition_matches(cond(a.SUPPRESSED, a.NO, ""), facts(suppressed=True), UTC)


def test_internal_event_has_no_trigger() -> None:
    assert not a.condition_matches(cond(a.TRIGGER, a.EQUAL, "42"), facts(triggerid=None), UTC)


@pytest.mark.parametrize(("c", "words"), [
    (cond(a.SEVERITY, a.LIKE, "3"), "operator 2"),
    (cond(a.SEVERITY, a.EQUAL, "high"), "'high' is not a severity"),
    (cond(a.HOST, a.LIKE, "web"), "operator 2"),
    (cond(a.TIME_PERIOD, a.IN, "1-5,9-18"), "at position 0"),
    (cond(a.SUPPRESSED, a.EQUAL, ""), "10 (yes)"),
    (cond(99, a.EQUAL, ""), "condition type 99"),
])
def test_bad_conditions_are_errors(c: ConditionSpec, words: str) -> None:
    with pytest.raises(ConditionError, match=words.replace("(", r"\(").replace(")", r"\)")):
        a.condition_matches(c, facts(), UTC)


def test_and_or_ors_within_a_type_and_ands_types() -> None:
    cs = [cond(a.HOST, a.EQUAL, "web2"), cond(a.HOST, a.EQUAL, "web1"), cond(a.SEVERITY, a.MORE_EQUAL, "3")]
    assert a.conditions_match(cs, a.EVAL_AND_OR, facts(), UTC)
    assert not a.conditions_match(cs, a.EVAL_AND, facts(), UTC)
    assert a.conditions_match(cs, a.EVAL_OR, facts(), UTC)
    assert not a.conditions_match(cs, a.EVAL_AND_OR, facts(severity=2), UTC)
    assert not a.conditions_match(cs, a.EVAL_AND_OR, facts(hosts=("db1",), hostids=(8,)), UTC)
    # or: one is enough
    assert a.conditions_match(cs[:1] + cs[2:], a.EVAL_OR, facts(), UTC)
    assert not a.conditions_match(cs[:1], a.EVAL_OR, facts(), UTC)
    assert a.conditions_match([], a.EVAL_AND, facts(), UTC)
    with pytest.raises(ConditionError, match="evaltype 3"):
        a.conditions_match(cs, 3, facts(), UTC)


def test_action_matches_only_its_source_when_enabled() -> None:
    act = ActionSpec(name="x", conditions=[cond(a.SEVERITY, a.MORE_EQUAL, "3")])
    assert a.action_matches(act, facts(), UTC)
    assert not a.action_matches(act, facts(source=3), UTC)
    act.enabled = False
    assert not a.action_matches(act, facts(), UTC)


def test_periods() -> None:
    p = "1-5,09:00-18:00;6-7,10:00-16:00"
    assert a.parse_periods(p) == [a.Period(1, 5, 9 * 3600, 18 * 3600), a.Period(6, 7, 10 * 3600, 16 * 3600)]
    assert a.period_covers(p, MONDAY + 9 * 3600, UTC)  # start inclusive
    assert not a.period_covers(p, MONDAY + 18 * 3600, UTC)  # end exclusive
    assert not a.period_covers(p, MONDAY + 8 * 3600 + 3599, UTC)
    saturday = MONDAY + 5 * 86400
    assert a.period_covers(p, saturday + 10 * 3600, UTC)
    assert not a.period_covers(p, saturday + 9 * 3600, UTC)
    assert a.period_covers("1-7,00:00-24:00", MONDAY + 86399, UTC)
    assert a.period_covers("7,23:00-24:00", MONDAY - 1, UTC)  # Sunday 23:59:59
    assert not a.period_covers("1,23:00-24:00", MONDAY - 1, UTC)
    assert a.parse_periods(" ; 1,00:00-01:00;") == [a.Period(1, 1, 0, 3600)]


@pytest.mark.parametrize(("text", "pos"), [
    ("1-8,09:00-18:00", 0), ("1-5,09:00-18:00;x", 16), ("5-1,09:00-18:00", 0), ("1,18:00-09:00", 0),
    ("1,09:00-24:01", 0), ("1-5,9:60-18:00", 0), ("1-5 09:00-18:00", 0),
])
def test_bad_periods_name_the_position(text: str, pos: int) -> None:
    with pytest.raises(PeriodError, match=f"at position {pos}$"):
        a.parse_periods(text)


def test_step_duration_is_the_shortest_of_the_step() -> None:
    act = ActionSpec(name="esc", step_duration="1h", operations=[
        OperationSpec(step_from=1, step_to=1),  # action default
        OperationSpec(step_from=1, step_to=2, step_duration="10m"),
        OperationSpec(step_from=2, step_to=2, step_duration="30m"),
        OperationSpec(step_from=4, step_to=0, step_duration="2h"),
    ])
    assert a.step_duration(act, 1) == 600
    assert a.step_duration(act, 2) == 600
    assert a.step_duration(act, 3) == 3600  # no operation at step 3: the action's
    assert a.step_duration(act, 4) == 7200
    assert a.step_duration(act, 9) == 7200
    assert [len(a.step_operations(act.operations, s)) for s in (1, 2, 3, 4, 5)] == [2, 2, 0, 1, 1]
    assert a.plan_step(act, 1, 1000).next_at == 1600
    assert a.plan_step(act, 50, 1000).next_at == 1000 + 7200  # step_to 0 never ends


def test_last_step_has_no_next() -> None:
    act = ActionSpec(name="esc", step_duration="5m", operations=[OperationSpec(step_from=1, step_to=3)])
    assert a.plan_step(act, 2, 0).next_at == 300
    plan = a.plan_step(act, 3, 0)
    assert plan.next_at is None and len(plan.operations) == 1
    assert a.plan_step(ActionSpec(name="none"), 1, 0).next_at is None


def test_step_duration_has_zabbixs_minimum_and_refuses_nonsense() -> None:
    assert a.step_duration(ActionSpec(name="m", step_duration="10s"), 1) == 60
    with pytest.raises(ConditionError, match="step_duration"):
        a.step_duration(ActionSpec(name="bad", step_duration="soon"), 1)


def test_user_macros_in_durations_and_periods() -> None:
    act = ActionSpec(name="m", step_duration="{$ESC}", operations=[OperationSpec(step_duration="{$STEP:x}")])
    assert a.step_duration(act, 1, {"{$ESC}": "2h", "{$STEP}": "15m"}) == 900
    assert a.step_duration(act, 2, {"{$ESC}": "2h"}) == 7200
    with pytest.raises(ConditionError, match="step_duration"):
        a.step_duration(act, 2, {})
    c = cond(a.TIME_PERIOD, a.IN, "{$WORK}")
    assert a.condition_matches(c, facts(macros={"{$WORK}": "1-5,09:00-18:00"}), UTC)
    assert not a.condition_matches(c, facts(macros={"{$WORK}": "6-7,09:00-18:00"}), UTC)
    with pytest.raises(ConditionError, match="at position 0"):
        a.condition_matches(c, facts(), UTC)
