"""Events, problems, acknowledgements and the runtime state of triggers, items and hosts (SQLAlchemy Core).

The trigger engine is the one writer of events and problems: it hands `commit(Cycle)` everything one
evaluation cycle decided, and the whole cycle lands in one transaction (events, their tags, problem
rows opened and resolved, trigger_rtdata, item_state, host_availability), so a restart finds trigger
values and open problems that agree. Acknowledgements are written by anyone (`vigil ack`, later the
web UI) through `acknowledge()`; the engine picks them up with `acknowledges_after()`.

Both backends: the same statements on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from vigil.server.config import tables as t
from vigil.server.config.tables import EventObject, EventSource, HostStatus

# Zabbix's acknowledge action bits.
ACTION_CLOSE = 1
ACTION_ACK = 2
ACTION_MESSAGE = 4
ACTION_SEVERITY = 8
ACTION_UNACK = 16


class EventError(ValueError):
    """An acknowledgement that cannot be made; the message says why and what to do."""


@dataclass(slots=True)
class NewEvent:
    """An event to write; `eventid` is set by `commit`."""

    source: int
    object: int
    objectid: int
    clock: int
    ns: int
    value: int
    name: str
    severity: int
    tags: tuple[tuple[str, str], ...] = ()
    problem: bool = False  # also open a problems row for it
    resolves: tuple[int, ...] = ()  # problem eventids this (OK) event resolves
    # Problem events of the same cycle it resolves (late values: raised and resolved in one batch);
    # their ids join `resolves` once they are inserted.
    resolves_new: tuple[NewEvent, ...] = ()
    userid: int | None = None  # who closed the problems by hand
    eventid: int = 0


@dataclass(slots=True)
class Cycle:
    """What one evaluation cycle writes, in one transaction."""

    events: list[NewEvent] = field(default_factory=list)
    # triggerid -> (value, state, error, lastchange)
    rtdata: dict[int, tuple[int, int, str, int]] = field(default_factory=dict)
    item_states: dict[int, tuple[int, str, int]] = field(default_factory=dict)  # itemid -> (state, error, clock)
    hosts: dict[int, tuple[int, str, int]] = field(default_factory=dict)  # hostid -> (available, error, lastaccess)
    severities: dict[int, int] = field(default_factory=dict)  # problem eventid -> new severity

    def __bool__(self) -> bool:
        return bool(self.events or self.rtdata or self.item_states or self.hosts or self.severities)


@dataclass(frozen=True, slots=True)
class EventRow:
    eventid: int
    source: int
    object: int
    objectid: int
    clock: int
    ns: int
    value: int
    acknowledged: int
    name: str
    severity: int


@dataclass(frozen=True, slots=True)
class ProblemRow:
    eventid: int
    source: int
    object: int
    objectid: int
    clock: int
    ns: int
    r_eventid: int | None
    r_clock: int
    name: str
    acknowledged: int
    severity: int
    host: str  # the trigger's host (the first of its items' hosts); internal: the item's or host's host


@dataclass(frozen=True, slots=True)
class AckRow:
    acknowledgeid: int
    userid: int | None
    eventid: int
    clock: int
    message: str
    action: int
    old_severity: int
    new_severity: int


class EventStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._upserts: dict[str, Any] = {}  # table name -> its upsert statement, built once (it costs ms)

    # --- what the engine reads on start -----------------------------------------------------------

    def rtdata(self) -> dict[int, tuple[int, int, str, int]]:
        """triggerid -> (value, state, error, lastchange)."""
        r = t.trigger_rtdata.c
        with self.engine.connect() as c:
            return {row.triggerid: (row.value, row.state, row.error, row.lastchange)
                    for row in c.execute(sa.select(r.triggerid, r.value, r.state, r.error, r.lastchange))}

    def open_problems(self, source: int | None = None) -> dict[tuple[int, int, int], list[int]]:
        """(source, object, objectid) -> eventids of its open problems, oldest first."""
        p = t.problems.c
        q = sa.select(p.source, p.object, p.objectid, p.eventid).where(p.r_eventid.is_(None)).order_by(p.eventid)
        if source is not None:
            q = q.where(p.source == source)
        out: dict[tuple[int, int, int], list[int]] = {}
        with self.engine.connect() as c:
            for row in c.execute(q):
                out.setdefault((row.source, row.object, row.objectid), []).append(int(row.eventid))
        return out

    def item_states(self) -> dict[int, tuple[int, str, int]]:
        s = t.item_state.c
        with self.engine.connect() as c:
            return {row.itemid: (row.state, row.error, row.clock)
                    for row in c.execute(sa.select(s.itemid, s.state, s.error, s.clock))}

    def availability(self) -> dict[int, tuple[int, str, int]]:
        h = t.host_availability.c
        with self.engine.connect() as c:
            return {row.hostid: (row.available, row.error, row.lastaccess)
                    for row in c.execute(sa.select(h.hostid, h.available, h.error, h.lastaccess))}

    def host_names(self) -> dict[int, tuple[str, str]]:
        """hostid -> (host, visible name; the host when it has none)."""
        h = t.hosts.c
        with self.engine.connect() as c:
            return {row.hostid: (row.host, row.name or row.host)
                    for row in c.execute(sa.select(h.hostid, h.host, h.name))}

    def item_tags(self) -> dict[int, tuple[tuple[str, str], ...]]:
        it = t.item_tags.c
        out: dict[int, list[tuple[str, str]]] = {}
        with self.engine.connect() as c:
            for row in c.execute(sa.select(it.itemid, it.tag, it.value).order_by(it.itemtagid)):
                out.setdefault(row.itemid, []).append((row.tag, row.value))
        return {k: tuple(v) for k, v in out.items()}

    def items(self) -> dict[int, tuple[int, str, str]]:
        """itemid -> (hostid, key_, name) of the items of monitored hosts."""
        i, h = t.items.c, t.hosts.c
        q = (sa.select(i.itemid, i.hostid, i.key_, i.name).join(t.hosts, h.hostid == i.hostid)
             .where(h.status != HostStatus.TEMPLATE))
        with self.engine.connect() as c:
            return {row.itemid: (row.hostid, row.key_, row.name) for row in c.execute(q)}

    # --- the engine's writes ----------------------------------------------------------------------

    def commit(self, cycle: Cycle) -> None:
        """Write the cycle in one transaction; sets each event's `eventid`."""
        if not cycle:
            return
        with self.engine.begin() as c:
            self._insert_events(c, cycle.events)
            self._upsert(c, t.trigger_rtdata, "triggerid",
                         [{"triggerid": k, "value": v[0], "state": v[1], "error": v[2][:2048], "lastchange": v[3]}
                          for k, v in cycle.rtdata.items()])
            self._upsert(c, t.item_state, "itemid",
                         [{"itemid": k, "state": v[0], "error": v[1][:2048], "clock": v[2]}
                          for k, v in cycle.item_states.items()])
            self._upsert(c, t.host_availability, "hostid",
                         [{"hostid": k, "available": v[0], "error": v[1][:2048], "lastaccess": v[2]}
                          for k, v in cycle.hosts.items()])
            for eventid, sev in cycle.severities.items():
                c.execute(sa.update(t.problems).where(t.problems.c.eventid == eventid).values(severity=sev))
                c.execute(sa.update(t.events).where(t.events.c.eventid == eventid).values(severity=sev))

    def _insert_events(self, c: Connection, events: list[NewEvent]) -> None:
        if not events:
            return
        e = t.events
        rows = [{"source": ev.source, "object": ev.object, "objectid": ev.objectid, "clock": ev.clock, "ns": ev.ns,
                 "value": ev.value, "name": ev.name[:2048], "severity": ev.severity, "acknowledged": 0}
                for ev in events]
        ids = c.execute(sa.insert(e).returning(e.c.eventid, sort_by_parameter_order=True), rows).scalars().all()
        tags, problems = [], []
        for ev, eid in zip(events, ids, strict=True):
            ev.eventid = int(eid)
            tags += [{"eventid": ev.eventid, "tag": k[:255], "value": v[:255]} for k, v in ev.tags]
            if ev.problem:
                problems.append({"eventid": ev.eventid, "source": ev.source, "object": ev.object,
                                 "objectid": ev.objectid, "clock": ev.clock, "ns": ev.ns, "name": ev.name[:2048],
                                 "severity": ev.severity, "acknowledged": 0})
        if tags:
            c.execute(sa.insert(t.event_tags), tags)
        if problems:
            c.execute(sa.insert(t.problems), problems)
        p = t.problems.c
        for ev in events:
            if ev.resolves_new:
                ev.resolves = ev.resolves + tuple(x.eventid for x in ev.resolves_new)
            if ev.resolves:
                c.execute(sa.update(t.problems).where(p.eventid.in_(ev.resolves), p.r_eventid.is_(None))
                          .values(r_eventid=ev.eventid, r_clock=ev.clock, r_ns=ev.ns, userid=ev.userid))

    def _upsert(self, c: Connection, table: sa.Table, key: str, rows: list[dict[str, object]]) -> None:
        if not rows:
            return
        stmt = self._upserts.get(table.name)
        if stmt is None:
            if c.dialect.name == "postgresql":
                from sqlalchemy.dialects.postgresql import insert
            else:
                from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
            ins = insert(table)
            stmt = ins.on_conflict_do_update(index_elements=[key],
                                             set_={k: ins.excluded[k] for k in rows[0] if k != key})
            self._upserts[table.name] = stmt
        c.execute(stmt, rows)

    # --- acknowledgements -------------------------------------------------------------------------

    def acknowledge(self, eventid: int, userid: int | None, message: str, action: int,
                    new_severity: int | None = None, clock: int | None = None) -> int:
        """Write a problem update; returns its acknowledgeid. The engine applies close and severity.

        Refused (EventError) for an unknown event, an event that is not an open problem, a close of
        a problem whose trigger does not allow manual close, a severity outside 0-5, or no action.
        """
        import time

        if action & ~(ACTION_CLOSE | ACTION_ACK | ACTION_MESSAGE | ACTION_SEVERITY | ACTION_UNACK) or not action:
            raise EventError(f"action {action}: use the bits 1 close, 2 acknowledge, 4 message, 8 change severity, "
                             "16 unacknowledge")
        if action & ACTION_ACK and action & ACTION_UNACK:
            raise EventError("cannot acknowledge and unacknowledge at once")
        if action & ACTION_SEVERITY and (new_severity is None or not 0 <= new_severity <= 5):
            raise EventError(f"new severity {new_severity!r} is not one of 0-5 (not classified to disaster)")
        if action & ACTION_MESSAGE and not message:
            raise EventError("the message is empty: give one with -m")
        with self.engine.begin() as c:
            p = t.problems.c
            ev = c.execute(sa.select(t.events.c.eventid, t.events.c.value, t.events.c.source, t.events.c.object,
                                     t.events.c.objectid).where(t.events.c.eventid == eventid)).first()
            if ev is None:
                raise EventError(f"no event {eventid}: `vigil problems` lists the open problems' event ids")
            prob = c.execute(sa.select(p.r_eventid, p.severity).where(p.eventid == eventid)).first()
            if ev.value != 1 or prob is None:
                raise EventError(f"event {eventid} is not a problem (it is an OK event): give a problem's event id")
            if prob.r_eventid is not None:
                raise EventError(f"problem {eventid} is already resolved")
            if action & ACTION_CLOSE:
                if ev.source != EventSource.TRIGGERS or ev.object != EventObject.TRIGGER:
                    raise EventError(f"problem {eventid} is an internal event: it cannot be closed by hand")
                mc = c.execute(sa.select(t.triggers.c.manual_close)
                               .where(t.triggers.c.triggerid == ev.objectid)).scalar()
                if not mc:
                    raise EventError(f"problem {eventid}: its trigger does not allow manual close "
                                     "(set manual_close: true on the trigger to allow it)")
            old = int(prob.severity)
            row = {"userid": userid, "eventid": eventid, "clock": int(time.time()) if clock is None else clock,
                   "message": message, "action": action, "old_severity": old,
                   "new_severity": new_severity if action & ACTION_SEVERITY and new_severity is not None else 0}
            ackid = c.execute(sa.insert(t.acknowledges).returning(t.acknowledges.c.acknowledgeid), row).scalar_one()
            if action & (ACTION_ACK | ACTION_UNACK):
                flag = 1 if action & ACTION_ACK else 0
                c.execute(sa.update(t.events).where(t.events.c.eventid == eventid).values(acknowledged=flag))
                c.execute(sa.update(t.problems).where(p.eventid == eventid).values(acknowledged=flag))
            return int(ackid)

    def last_acknowledgeid(self) -> int:
        with self.engine.connect() as c:
            return int(c.execute(sa.select(sa.func.max(t.acknowledges.c.acknowledgeid))).scalar() or 0)

    def acknowledges_after(self, ackid: int, limit: int = 1000) -> list[AckRow]:
        a = t.acknowledges.c
        with self.engine.connect() as c:
            rows = c.execute(sa.select(t.acknowledges).where(a.acknowledgeid > ackid)
                             .order_by(a.acknowledgeid).limit(limit))
            return [AckRow(int(r.acknowledgeid), r.userid, int(r.eventid), r.clock, r.message, r.action,
                           r.old_severity, r.new_severity) for r in rows]

    def pending_closes(self) -> list[AckRow]:
        """Close requests for problems still open (written while no engine ran), oldest first."""
        a, p = t.acknowledges.c, t.problems.c
        q = (sa.select(t.acknowledges).join(t.problems, p.eventid == a.eventid)
             .where(p.r_eventid.is_(None), a.action.op("&")(ACTION_CLOSE) != 0).order_by(a.acknowledgeid))
        with self.engine.connect() as c:
            return [AckRow(int(r.acknowledgeid), r.userid, int(r.eventid), r.clock, r.message, r.action,
                           r.old_severity, r.new_severity) for r in c.execute(q)]

    # --- the read API others use ------------------------------------------------------------------

    def event(self, eventid: int) -> EventRow | None:
        with self.engine.connect() as c:
            r = c.execute(sa.select(t.events).where(t.events.c.eventid == eventid)).first()
            return _event_row(r) if r is not None else None

    def events(self, source: int | None = None, objectid: int | None = None, after: int = 0) -> list[EventRow]:
        """Events with eventid > `after`, oldest first, of a source and object id if given."""
        e = t.events.c
        q = sa.select(t.events).where(e.eventid > after).order_by(e.eventid)
        if source is not None:
            q = q.where(e.source == source)
        if objectid is not None:
            q = q.where(e.objectid == objectid)
        with self.engine.connect() as c:
            return [_event_row(r) for r in c.execute(q)]

    def event_tags(self, eventid: int) -> tuple[tuple[str, str], ...]:
        et = t.event_tags.c
        with self.engine.connect() as c:
            return tuple((r.tag, r.value) for r in c.execute(
                sa.select(et.tag, et.value).where(et.eventid == eventid).order_by(et.eventtagid)))

    def problems(self, host: str | None = None, severity: int | None = None,
                 eventids: Iterable[int] | None = None, source: int | None = EventSource.TRIGGERS,
                 resolved: bool = False) -> list[ProblemRow]:
        """Open problems (resolved=True: resolved ones too), oldest first, with their host.

        `severity` keeps those at least that severe; `host` those of that host (technical name);
        `source` None gives internal problems as well.
        """
        p, h = t.problems.c, t.hosts.c
        trig_host = (sa.select(h.host).select_from(t.trigger_items.join(t.items, t.items.c.itemid ==
                                                                        t.trigger_items.c.itemid)
                                                   .join(t.hosts, h.hostid == t.items.c.hostid))
                     .where(t.trigger_items.c.triggerid == p.objectid).order_by(t.items.c.itemid).limit(1)
                     .scalar_subquery())
        item_host = (sa.select(h.host).select_from(t.items.join(t.hosts, h.hostid == t.items.c.hostid))
                     .where(t.items.c.itemid == p.objectid).scalar_subquery())
        host_host = sa.select(h.host).where(h.hostid == p.objectid).scalar_subquery()
        host_col = sa.case((p.object == EventObject.TRIGGER, trig_host), (p.object == EventObject.ITEM, item_host),
                           else_=host_host).label("host")
        q = sa.select(t.problems, host_col).order_by(p.eventid)
        if not resolved:
            q = q.where(p.r_eventid.is_(None))
        if source is not None:
            q = q.where(p.source == source)
        if severity is not None:
            q = q.where(p.severity >= severity)
        if eventids is not None:
            q = q.where(p.eventid.in_(list(eventids)))
        with self.engine.connect() as c:
            rows = [ProblemRow(int(r.eventid), r.source, r.object, r.objectid, r.clock, r.ns,
                               None if r.r_eventid is None else int(r.r_eventid), r.r_clock, r.name, r.acknowledged,
                               r.severity, r.host or "") for r in c.execute(q)]
        if host is not None:
            rows = [r for r in rows if r.host == host or (r.object == EventObject.TRIGGER and
                                                          host in self._trigger_hosts(r.objectid))]
        return rows

    def _trigger_hosts(self, triggerid: int) -> set[str]:
        with self.engine.connect() as c:
            q = (sa.select(t.hosts.c.host).select_from(
                t.trigger_items.join(t.items, t.items.c.itemid == t.trigger_items.c.itemid)
                .join(t.hosts, t.hosts.c.hostid == t.items.c.hostid))
                .where(t.trigger_items.c.triggerid == triggerid))
            return {r.host for r in c.execute(q)}


def _event_row(r: sa.Row) -> EventRow:
    return EventRow(int(r.eventid), r.source, r.object, r.objectid, r.clock, r.ns, r.value, r.acknowledged,
                    r.name, r.severity)
