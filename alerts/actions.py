"""Which actions an event matches, and the arithmetic of escalation steps: pure functions, no I/O.

Conditions use Zabbix's numbers (server/config/tables.py, action_conditions). With evaltype 0
("and/or") conditions of one type are OR'ed and the types AND'ed, as Zabbix does; 1 ANDs all of
them, 2 ORs all of them. Time periods are Zabbix's "d-d,hh:mm-hh:mm;..." syntax (Monday is 1),
also used for a user media's active period.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo

from vigil.server.config.alerting import ActionSpec, ConditionSpec, OperationSpec
from vigil.server.config.autoreg import AUTOREG_CONDITIONS, AutoregConditionError, autoreg_condition_matches
from vigil.server.config.durations import DurationError, seconds

# Condition types (Zabbix's conditiontype).
HOST_GROUP = 0
HOST = 1
TRIGGER = 2
EVENT_NAME = 3
SEVERITY = 4
TIME_PERIOD = 6
SUPPRESSED = 16
TAG_NAME = 25
TAG_VALUE = 26

# Operators (Zabbix's numbers).
EQUAL = 0
NOT_EQUAL = 1
LIKE = 2  # contains
NOT_LIKE = 3  # does not contain
IN = 4  # time period: in
MORE_EQUAL = 5
LESS_EQUAL = 6
NOT_IN = 7
YES = 10
NO = 11

EVAL_AND_OR = 0
EVAL_AND = 1
EVAL_OR = 2

CONDITION_NAMES = {HOST_GROUP: "host group", HOST: "host", TRIGGER: "trigger", EVENT_NAME: "event name",
                   SEVERITY: "severity", TIME_PERIOD: "time period", SUPPRESSED: "problem is suppressed",
                   TAG_NAME: "tag name", TAG_VALUE: "tag value"}


class ConditionError(ValueError):
    """A condition that cannot be evaluated: an unknown type or operator, a bad value."""


class PeriodError(ValueError):
    """A time period that is not "d-d,hh:mm-hh:mm;...": the message names the position."""


@dataclass(frozen=True, slots=True)
class EventFacts:
    """What conditions look at in an event."""

    source: int
    clock: int
    severity: int
    name: str
    triggerid: int | None = None
    trigger_name: str = ""  # as configured ("host:name" matches too)
    hostids: tuple[int, ...] = ()
    hosts: tuple[str, ...] = ()  # technical names of those hosts
    groups: tuple[str, ...] = ()  # names of the groups of those hosts
    tags: tuple[tuple[str, str], ...] = ()
    suppressed: bool = False
    macros: Mapping[str, str] = field(default_factory=dict)  # user macros ({$NAME}) of the event's host
    host_metadata: str = ""  # autoregistration: what the agent sent (the host name is hosts[0])
    proxy: str = ""  # autoregistration: the proxy it came through ('' the server)


_USER_MACRO = re.compile(r"\{\$[A-Z0-9_.]+(?::[^}]*)?\}")


def user_macros(text: str, macros: Mapping[str, str] | None) -> str:
    """`text` with the user macros that `macros` knows replaced (a duration or period may be one)."""
    if not macros or "{$" not in text:
        return text
    return _USER_MACRO.sub(lambda m: macros.get(m[0], macros.get(m[0].split(":", 1)[0] + "}", m[0])), text)


# --- time periods ------------------------------------------------------------------------------

_PERIOD = re.compile(r"([1-7])(?:-([1-7]))?,([0-9]{1,2}):([0-9]{2})-([0-9]{1,2}):([0-9]{2})")


@dataclass(frozen=True, slots=True)
class Period:
    day_from: int  # 1 Monday .. 7 Sunday
    day_to: int
    start: int  # seconds after midnight, inclusive
    end: int  # exclusive, up to 86400


def parse_periods(text: str) -> list[Period]:
    """Zabbix's time period list: "1-5,09:00-18:00;6-7,10:00-16:00". Empty parts are skipped."""
    out: list[Period] = []
    pos = 0
    for part in text.split(";"):
        stripped = part.strip()
        if stripped:
            at = pos + part.index(stripped[0])
            m = _PERIOD.fullmatch(stripped)
            if m is None:
                raise PeriodError(f"time period {stripped!r}: expected d-d,hh:mm-hh:mm (days 1-7, Monday 1) "
                                  f"at position {at}")
            d1 = int(m[1])
            d2 = int(m[2]) if m[2] else d1
            h1, m1, h2, m2 = int(m[3]), int(m[4]), int(m[5]), int(m[6])
            start, end = h1 * 3600 + m1 * 60, h2 * 3600 + m2 * 60
            if d1 > d2:
                raise PeriodError(f"time period {stripped!r}: day {d1} is after day {d2} at position {at}")
            if h1 > 23 or m1 > 59 or m2 > 59 or end > 86400 or start >= end:
                raise PeriodError(f"time period {stripped!r}: the times must be 00:00-24:00 with the start "
                                  f"before the end at position {at}")
            out.append(Period(d1, d2, start, end))
        pos += len(part) + 1
    return out


def local_time(t: int, tz: tzinfo | None = None) -> datetime:
    """The wall-clock time of `t` in `tz` (None: the server's local time zone, as Zabbix uses)."""
    if tz is None:
        return datetime.fromtimestamp(t).astimezone()
    return datetime.fromtimestamp(t, tz)


def in_periods(periods: Iterable[Period], t: int, tz: tzinfo | None = None) -> bool:
    dt = local_time(t, tz)
    day = dt.isoweekday()
    sec = dt.hour * 3600 + dt.minute * 60 + dt.second
    return any(p.day_from <= day <= p.day_to and p.start <= sec < p.end for p in periods)


def period_covers(text: str, t: int, tz: tzinfo | None = None) -> bool:
    """Whether `t` is in the time period `text` (PeriodError if it is not one)."""
    return in_periods(parse_periods(text), t, tz)


# --- conditions --------------------------------------------------------------------------------

def _text_op(op: int, subject: str, value: str, what: str) -> bool:
    if op == EQUAL:
        return subject == value
    if op == NOT_EQUAL:
        return subject != value
    if op == LIKE:
        return value in subject
    if op == NOT_LIKE:
        return value not in subject
    raise ConditionError(f"{what}: operator {op} is not one of 0 (equals), 1 (does not equal), 2 (contains), "
                         "3 (does not contain)")


def _any_of(op: int, candidates: Sequence[str], value: str, what: str) -> bool:
    if op == EQUAL:
        return value in candidates
    if op == NOT_EQUAL:
        return value not in candidates
    raise ConditionError(f"{what}: operator {op} is not one of 0 (equals), 1 (does not equal)")


def condition_matches(c: ConditionSpec, e: EventFacts, tz: tzinfo | None = None) -> bool:
    """Whether the event meets one condition (ConditionError for a condition that makes no sense)."""
    what = f"condition {CONDITION_NAMES.get(c.type, c.type)}"
    if c.type in AUTOREG_CONDITIONS:
        try:
            return autoreg_condition_matches(c, e.hosts[0] if e.hosts else e.name, e.host_metadata, e.proxy)
        except AutoregConditionError as err:
            raise ConditionError(str(err)) from None
    if c.type == HOST_GROUP:
        return _any_of(c.operator, e.groups, c.value, what)
    if c.type == HOST:
        names = (*e.hosts, *(str(h) for h in e.hostids))
        return _any_of(c.operator, names, c.value, what)
    if c.type == TRIGGER:
        names: tuple[str, ...] = ()
        if e.triggerid is not None:
            names = (str(e.triggerid), e.trigger_name, *(f"{h}:{e.trigger_name}" for h in e.hosts))
        return _any_of(c.operator, names, c.value, what)
    if c.type == EVENT_NAME:
        return _text_op(c.operator, e.name, c.value, what)
    if c.type == SEVERITY:
        try:
            v = int(c.value)
        except ValueError:
            raise ConditionError(f"{what}: value {c.value!r} is not a severity number 0-5") from None
        ops = {EQUAL: e.severity == v, NOT_EQUAL: e.severity != v, MORE_EQUAL: e.severity >= v,
               LESS_EQUAL: e.severity <= v}
        if c.operator not in ops:
            raise ConditionError(f"{what}: operator {c.operator} is not one of 0 (=), 1 (<>), 5 (>=), 6 (<=)")
        return ops[c.operator]
    if c.type == TIME_PERIOD:
        try:
            inside = period_covers(user_macros(c.value, e.macros), e.clock, tz)
        except PeriodError as err:
            raise ConditionError(f"{what}: {err}") from None
        if c.operator in (IN, EQUAL):
            return inside
        if c.operator in (NOT_IN, NOT_EQUAL):
            return not inside
        raise ConditionError(f"{what}: operator {c.operator} is not one of 4 (in), 7 (not in)")
    if c.type == SUPPRESSED:
        if c.operator == YES:
            return e.suppressed
        if c.operator == NO:
            return not e.suppressed
        raise ConditionError(f"{what}: operator {c.operator} is not one of 10 (yes), 11 (no)")
    if c.type == TAG_NAME:
        names = tuple(tag for tag, _ in e.tags)
        if c.operator in (EQUAL, NOT_EQUAL):
            return _any_of(c.operator, names, c.value, what)
        if c.operator == LIKE:
            return any(c.value in n for n in names)
        if c.operator == NOT_LIKE:
            return not any(c.value in n for n in names)
        return _text_op(c.operator, "", c.value, what)
    if c.type == TAG_VALUE:
        # value2 is the tag's name, value what its value is compared with (as Zabbix).
        values = [v for tag, v in e.tags if tag == c.value2]
        if c.operator in (EQUAL, LIKE):
            return any(_text_op(c.operator, v, c.value, what) for v in values)
        if c.operator in (NOT_EQUAL, NOT_LIKE):
            return all(_text_op(c.operator, v, c.value, what) for v in values)
        return _text_op(c.operator, "", c.value, what)
    raise ConditionError(f"condition type {c.type} is not supported (use 0, 1, 2, 3, 4, 6, 16, 25 or 26)")


def conditions_match(conditions: Sequence[ConditionSpec], evaltype: int, e: EventFacts,
                     tz: tzinfo | None = None) -> bool:
    if not conditions:
        return True
    if evaltype == EVAL_AND:
        return all(condition_matches(c, e, tz) for c in conditions)
    if evaltype == EVAL_OR:
        return any(condition_matches(c, e, tz) for c in conditions)
    if evaltype != EVAL_AND_OR:
        raise ConditionError(f"evaltype {evaltype} is not one of 0 (and/or), 1 (and), 2 (or)")
    by_type: dict[int, list[ConditionSpec]] = {}
    for c in conditions:
        by_type.setdefault(c.type, []).append(c)
    return all(any(condition_matches(c, e, tz) for c in group) for group in by_type.values())


def action_matches(action: ActionSpec, e: EventFacts, tz: tzinfo | None = None) -> bool:
    """Whether an enabled action of the event's source takes this event."""
    if not action.enabled or action.event_source != e.source:
        return False
    return conditions_match(action.conditions, action.evaltype, e, tz)


# --- escalation steps ----------------------------------------------------------------------------

def covers(op: OperationSpec, step: int) -> bool:
    """Whether an operation runs at `step` (step_to 0: every step from step_from on)."""
    return op.step_from <= step and (op.step_to == 0 or step <= op.step_to)


def step_operations(ops: Iterable[OperationSpec], step: int) -> list[OperationSpec]:
    return [op for op in ops if covers(op, step)]


def has_later_step(ops: Iterable[OperationSpec], step: int) -> bool:
    """Whether any operation runs at a step after `step`."""
    return any(op.step_to == 0 or op.step_to > step for op in ops)


def duration_of(text: str | int, what: str, macros: Mapping[str, str] | None = None) -> int:
    if isinstance(text, str):
        text = user_macros(text, macros)
    try:
        return seconds(text, what)
    except DurationError as e:
        raise ConditionError(str(e)) from None


def step_duration(action: ActionSpec, step: int, macros: Mapping[str, str] | None = None) -> int:
    """How long step `step` lasts: the shortest step_duration of its operations (0: the action's
    default), or the action's default when no operation runs at that step (as Zabbix). At least 60 s,
    Zabbix's minimum. Durations may be user macros, resolved from `macros`."""
    default = duration_of(action.step_duration, f"action {action.name!r}: step_duration", macros)
    ds = [duration_of(op.step_duration, f"action {action.name!r}: operation step_duration", macros) or default
          for op in step_operations(action.operations, step)]
    return max(60, min(ds) if ds else default)


@dataclass
class StepPlan:
    """What one escalation step does: its operations, and when the next step is due (None: no more)."""

    operations: list[OperationSpec] = field(default_factory=list)
    next_at: int | None = None


def plan_step(action: ActionSpec, step: int, now: int, macros: Mapping[str, str] | None = None) -> StepPlan:
    ops = step_operations(action.operations, step)
    nxt = now + step_duration(action, step, macros) if has_later_step(action.operations, step) else None
    return StepPlan(ops, nxt)
