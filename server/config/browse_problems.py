"""Reads for the Problems and event pages and the API: problems with filters, one event's details, its
updates (acknowledges), the alerts sent for it, and a trigger's event history (SQLAlchemy Core).

A problem is visible when its trigger's host is in the caller's `Scope` and no item the trigger reads is
on a host outside it (as Zabbix: rights to every host of the trigger). Filtering and counting happen in
the query, so pages and totals never show what the caller may not see. Writes (acknowledge, close,
severity) go through EventStore.acknowledge; this module only reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from vigil.server.config import reads
from vigil.server.config import tables as t
from vigil.server.config.browse import Page, Scope, _search
from vigil.server.config.tables import EventObject, EventSource

SHOWS = ("problems", "recent", "history")
SORTS = ("clock", "severity", "host", "name", "duration")
RECENT_SECONDS = 3600  # "show recent resolved": problems resolved within the last hour stay listed


@dataclass(frozen=True, slots=True)
class ProblemFilter:
    severities: frozenset[int] = frozenset()  # empty: every severity
    hostids: tuple[int, ...] | None = None
    groupid: int | None = None
    triggerid: int | None = None
    tag: tuple[str, str | None] | None = None  # (name, value or None for any value)
    name: str = ""
    max_age: int | None = None  # started at most this many seconds ago
    acknowledged: bool | None = None
    show: str = "problems"  # problems: open; recent: open and resolved lately; history: those overlapping [start, end]
    start: int | None = None
    end: int | None = None


@dataclass(frozen=True, slots=True)
class ProblemView:
    eventid: int
    triggerid: int
    clock: int
    ns: int
    r_eventid: int | None
    r_clock: int
    name: str
    severity: int
    acknowledged: bool
    hostid: int
    host: str  # technical name
    host_name: str  # visible name
    manual_close: bool
    tags: tuple[tuple[str, str], ...] = ()
    updates: int = 0  # acknowledges rows (acknowledge, message, severity, close)
    alerts: int = 0
    itemids: tuple[int, ...] = ()  # the items the trigger reads

    @property
    def resolved(self) -> bool:
        return self.r_eventid is not None

    def duration(self, now: int) -> int:
        return max(0, (self.r_clock if self.resolved else now) - self.clock)


@dataclass(frozen=True, slots=True)
class UpdateRow:
    acknowledgeid: int
    clock: int
    userid: int | None
    username: str  # '' for the CLI (no user)
    action: int
    message: str
    old_severity: int
    new_severity: int


@dataclass(frozen=True, slots=True)
class AlertRow:
    alertid: int
    clock: int
    action: str
    mediatype: str
    sendto: str
    subject: str
    status: int
    retries: int
    error: str
    esc_step: int
    alerttype: int


@dataclass(frozen=True, slots=True)
class EventDetail:
    eventid: int
    source: int
    object: int
    objectid: int
    clock: int
    value: int
    name: str
    severity: int
    acknowledged: bool
    tags: tuple[tuple[str, str], ...]
    problem: ProblemView | None  # the problems row, when the event is (or was) a problem still kept
    r_eventid: int | None = None
    r_clock: int = 0
    p_eventid: int | None = None  # for an OK event: the problem it resolved
    trigger: TriggerBrief | None = None


@dataclass(frozen=True, slots=True)
class TriggerBrief:
    triggerid: int
    hostid: int
    host: str
    host_name: str
    name: str
    expression: str
    recovery_mode: int
    recovery_expression: str
    severity: int
    manual_close: bool
    enabled: bool
    comments: str
    itemids: tuple[int, ...] = field(default=())


def visible_triggers(scope: Scope) -> sa.Select:
    """Trigger ids whose host is in scope and that read no item of a host outside it."""
    tr, ti, it = t.triggers.c, t.trigger_items.c, t.items.c
    outside = (sa.select(ti.triggerid).join(t.items, it.itemid == ti.itemid)
               .where(sa.not_(scope.hosts_clause(it.hostid))))
    q = sa.select(tr.triggerid).where(scope.hosts_clause(tr.hostid))
    if scope.readable is not None or scope.denied:
        q = q.where(tr.triggerid.not_in(outside))
    return q


class ProblemBrowse:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def counts(self, scope: Scope) -> dict[int, int]:
        """Open trigger problems per severity, of the triggers visible in scope (the dashboard's tiles)."""
        p = t.problems.c
        q = (sa.select(p.severity, sa.func.count())
             .where(p.source == EventSource.TRIGGERS, p.object == EventObject.TRIGGER, p.r_eventid.is_(None),
                    p.objectid.in_(visible_triggers(scope))).group_by(p.severity))
        with reads.connect(self.engine) as c:
            return {int(s): int(n) for s, n in c.execute(q)}

    def _where(self, scope: Scope, f: ProblemFilter, now: int) -> list[sa.ColumnElement[bool]]:
        p, tr = t.problems.c, t.triggers.c
        where: list[sa.ColumnElement[bool]] = [
            p.source == EventSource.TRIGGERS, p.object == EventObject.TRIGGER, p.objectid.in_(visible_triggers(scope))]
        if f.show == "problems":
            where.append(p.r_eventid.is_(None))
        elif f.show == "recent":
            where.append(sa.or_(p.r_eventid.is_(None), p.r_clock >= now - RECENT_SECONDS))
        else:
            if f.end is not None:
                where.append(p.clock <= f.end)
            if f.start is not None:
                where.append(sa.or_(p.r_eventid.is_(None), p.r_clock >= f.start))
        if f.severities:
            where.append(p.severity.in_(sorted(f.severities)))
        if f.hostids is not None:
            where.append(tr.hostid.in_(list(f.hostids)))
        if f.groupid is not None:
            where.append(tr.hostid.in_(sa.select(t.hosts_groups.c.hostid).where(t.hosts_groups.c.groupid == f.groupid)))
        if f.triggerid is not None:
            where.append(p.objectid == f.triggerid)
        if f.tag is not None:
            tq = sa.select(t.event_tags.c.eventid).where(t.event_tags.c.tag == f.tag[0])
            if f.tag[1] is not None:
                tq = tq.where(t.event_tags.c.value == f.tag[1])
            where.append(p.eventid.in_(tq))
        if f.name:
            where.append(_search(p.name, f.name))
        if f.max_age is not None:
            where.append(p.clock >= now - f.max_age)
        if f.acknowledged is not None:
            where.append(p.acknowledged == (1 if f.acknowledged else 0))
        return where

    def problems(self, scope: Scope, f: ProblemFilter, now: int, *, sort: str = "clock", desc: bool = True,
                 limit: int = 50, offset: int = 0) -> Page:
        """A page of ProblemView rows and the total matching."""
        p, tr, h = t.problems.c, t.triggers.c, t.hosts.c
        where = self._where(scope, f, now)
        frm = t.problems.join(t.triggers, tr.triggerid == p.objectid).join(t.hosts, h.hostid == tr.hostid)
        duration = sa.case((p.r_eventid.is_(None), now - p.clock), else_=p.r_clock - p.clock)
        col = {"clock": p.clock, "severity": p.severity, "host": h.name, "name": p.name,
               "duration": duration}.get(sort, p.clock)
        order = [col.desc() if desc else col.asc(), p.eventid.desc() if desc else p.eventid.asc()]
        q = (sa.select(p.eventid, p.objectid, p.clock, p.ns, p.r_eventid, p.r_clock, p.name, p.severity,
                       p.acknowledged, tr.hostid, h.host, h.name.label("host_name"), tr.manual_close,
                       sa.func.count().over().label("total"))
             .select_from(frm).where(*where).order_by(*order).limit(limit).offset(offset))
        with reads.connect(self.engine) as c:
            # the total rides along with the page's rows; counted apart only for a page past the end (or limit 0)
            rows = c.execute(q).all() if limit else []
            total = int(rows[0].total) if rows else int(
                c.execute(sa.select(sa.func.count()).select_from(frm).where(*where)).scalar() or 0)
            ids = [int(r.eventid) for r in rows]
            tags, updates, alerts = self._extras(c, ids)
            items: dict[int, list[int]] = {}
            trids = sorted({int(r.objectid) for r in rows})
            if trids:
                for trid, itemid in c.execute(sa.select(t.trigger_items.c.triggerid, t.trigger_items.c.itemid)
                                              .where(t.trigger_items.c.triggerid.in_(trids))
                                              .order_by(t.trigger_items.c.itemid)):
                    items.setdefault(int(trid), []).append(int(itemid))
        return Page(total, [_view(r, tags, updates, alerts, items) for r in rows])

    def _extras(self, c: sa.Connection, ids: list[int]) -> tuple[dict, dict, dict]:
        tags: dict[int, list[tuple[str, str]]] = {}
        updates: dict[int, int] = {}
        alerts: dict[int, int] = {}
        if ids:
            for r in c.execute(sa.select(t.event_tags.c.eventid, t.event_tags.c.tag, t.event_tags.c.value)
                               .where(t.event_tags.c.eventid.in_(ids)).order_by(t.event_tags.c.eventtagid)):
                tags.setdefault(int(r.eventid), []).append((r.tag, r.value))
            a = t.acknowledges.c
            updates = {int(e): int(n) for e, n in c.execute(
                sa.select(a.eventid, sa.func.count()).where(a.eventid.in_(ids)).group_by(a.eventid))}
            al = t.alerts.c
            alerts = {int(e): int(n) for e, n in c.execute(
                sa.select(al.eventid, sa.func.count()).where(al.eventid.in_(ids)).group_by(al.eventid))}
        return tags, updates, alerts

    def problem_tags(self, scope: Scope, limit: int = 200) -> list[tuple[str, str]]:
        """Distinct (tag, value) of open visible problems, for the filter's suggestions."""
        p, et = t.problems.c, t.event_tags.c
        q = (sa.select(et.tag, et.value).distinct().join(t.problems, p.eventid == et.eventid)
             .where(p.r_eventid.is_(None), p.objectid.in_(visible_triggers(scope)))
             .order_by(et.tag, et.value).limit(limit))
        with reads.connect(self.engine) as c:
            return [(a, b) for a, b in c.execute(q)]

    # --- one event -------------------------------------------------------------------------------

    def trigger_of_event(self, eventid: int) -> int | None:
        """The trigger id of a trigger event, None for an unknown or internal event."""
        e = t.events.c
        with reads.connect(self.engine) as c:
            r = c.execute(sa.select(e.source, e.object, e.objectid).where(e.eventid == eventid)).first()
        if r is None or r.source != EventSource.TRIGGERS or r.object != EventObject.TRIGGER:
            return None
        return int(r.objectid)

    def triggers_of_events(self, eventids: Iterable[int]) -> dict[int, int]:
        """eventid -> triggerid of those that are trigger events."""
        ids = list(eventids)
        if not ids:
            return {}
        e = t.events.c
        with reads.connect(self.engine) as c:
            return {int(r.eventid): int(r.objectid) for r in c.execute(
                sa.select(e.eventid, e.objectid).where(e.eventid.in_(ids), e.source == EventSource.TRIGGERS,
                                                       e.object == EventObject.TRIGGER))}

    def trigger_hosts(self, triggerids: Iterable[int]) -> dict[int, set[int]]:
        """triggerid -> its host and the hosts of every item it reads."""
        ids = sorted(set(triggerids))
        out: dict[int, set[int]] = {i: set() for i in ids}
        if not ids:
            return out
        with reads.connect(self.engine) as c:
            for trid, hid in c.execute(sa.select(t.triggers.c.triggerid, t.triggers.c.hostid)
                                       .where(t.triggers.c.triggerid.in_(ids))):
                out[int(trid)].add(int(hid))
            for trid, hid in c.execute(sa.select(t.trigger_items.c.triggerid, t.items.c.hostid)
                                       .join(t.items, t.items.c.itemid == t.trigger_items.c.itemid)
                                       .where(t.trigger_items.c.triggerid.in_(ids))):
                out[int(trid)].add(int(hid))
        return out

    def trigger_host_groups(self, triggerids: Iterable[int]) -> dict[int, dict[int, set[int]]]:
        """triggerid -> {host: its host groups} over the trigger's host and the hosts of every item it
        reads (an unknown trigger: {}). One query, for the permission checks of a page of problems."""
        ids = sorted(set(triggerids))
        out: dict[int, dict[int, set[int]]] = {i: {} for i in ids}
        if not ids:
            return out
        tr, ti, it, hg = t.triggers.c, t.trigger_items.c, t.items.c, t.hosts_groups.c
        hosts = sa.union(sa.select(tr.triggerid, tr.hostid).where(tr.triggerid.in_(ids)),
                         sa.select(ti.triggerid, it.hostid).join(t.items, it.itemid == ti.itemid)
                         .where(ti.triggerid.in_(ids))).subquery()
        q = sa.select(hosts.c.triggerid, hosts.c.hostid, hg.groupid).outerjoin(
            t.hosts_groups, hg.hostid == hosts.c.hostid)
        with reads.connect(self.engine) as c:
            for trid, hid, gid in c.execute(q):
                groups = out[int(trid)].setdefault(int(hid), set())
                if gid is not None:
                    groups.add(int(gid))
        return out

    def trigger(self, triggerid: int) -> TriggerBrief | None:
        tr, h = t.triggers.c, t.hosts.c
        with reads.connect(self.engine) as c:
            r = c.execute(sa.select(t.triggers, h.host, h.name.label("host_name"))
                          .join(t.hosts, h.hostid == tr.hostid).where(tr.triggerid == triggerid)).first()
            if r is None:
                return None
            itemids = tuple(int(x) for x in c.execute(
                sa.select(t.trigger_items.c.itemid).where(t.trigger_items.c.triggerid == triggerid)
                .order_by(t.trigger_items.c.itemid)).scalars())
        return TriggerBrief(int(r.triggerid), int(r.hostid), r.host, r.host_name or r.host, r.description,
                            r.expression, int(r.recovery_mode), r.recovery_expression, int(r.priority),
                            r.manual_close == 1, r.status == 0, r.comments, itemids)

    def event(self, eventid: int) -> EventDetail | None:
        e, p = t.events.c, t.problems.c
        with reads.connect(self.engine) as c:
            r = c.execute(sa.select(t.events).where(e.eventid == eventid)).first()
            if r is None:
                return None
            tags = tuple((x.tag, x.value) for x in c.execute(
                sa.select(t.event_tags.c.tag, t.event_tags.c.value).where(t.event_tags.c.eventid == eventid)
                .order_by(t.event_tags.c.eventtagid)))
            prow = c.execute(sa.select(t.problems).where(p.eventid == eventid)).first()
            p_eventid = None
            if r.value == 0:
                p_eventid = c.execute(sa.select(p.eventid).where(p.r_eventid == eventid)).scalar()
            # an event whose problems row the housekeeper removed: its recovery is the next OK event
            r_eventid, r_clock = (prow.r_eventid, prow.r_clock) if prow is not None else (None, 0)
        trigger = self.trigger(int(r.objectid)) if r.source == EventSource.TRIGGERS and r.object == 0 else None
        view = None
        if prow is not None and trigger is not None:
            view = ProblemView(int(r.eventid), trigger.triggerid, int(prow.clock), int(prow.ns),
                               None if prow.r_eventid is None else int(prow.r_eventid), int(prow.r_clock), prow.name,
                               int(prow.severity), prow.acknowledged == 1, trigger.hostid, trigger.host,
                               trigger.host_name, trigger.manual_close, tags)
        return EventDetail(int(r.eventid), int(r.source), int(r.object), int(r.objectid), int(r.clock), int(r.value),
                           r.name, int(r.severity), r.acknowledged == 1, tags, view,
                           None if r_eventid is None else int(r_eventid), int(r_clock or 0),
                           None if p_eventid is None else int(p_eventid), trigger)

    def updates(self, eventid: int) -> list[UpdateRow]:
        """The problem's updates (acknowledge, messages, severity changes, close requests), oldest first."""
        a, u = t.acknowledges.c, t.users.c
        q = (sa.select(t.acknowledges, u.username).outerjoin(t.users, u.userid == a.userid)
             .where(a.eventid == eventid).order_by(a.acknowledgeid))
        with reads.connect(self.engine) as c:
            return [UpdateRow(int(r.acknowledgeid), int(r.clock), r.userid, r.username or "", int(r.action),
                              r.message, int(r.old_severity), int(r.new_severity)) for r in c.execute(q)]

    def alerts(self, eventids: Sequence[int], limit: int = 200) -> list[AlertRow]:
        """The alerts (messages and commands) of these events, from the alert log, oldest first."""
        al, ac, m = t.alerts.c, t.actions.c, t.media_types.c
        q = (sa.select(t.alerts, ac.name.label("action_name"), m.name.label("mediatype_name"))
             .outerjoin(t.actions, ac.actionid == al.actionid)
             .outerjoin(t.media_types, m.mediatypeid == al.mediatypeid)
             .where(sa.or_(al.eventid.in_(list(eventids)), al.p_eventid.in_(list(eventids))))
             .order_by(al.clock, al.alertid).limit(limit))
        with reads.connect(self.engine) as c:
            return [AlertRow(int(r.alertid), int(r.clock), r.action_name or "", r.mediatype_name or "", r.sendto,
                             r.subject, int(r.status), int(r.retries), r.error, int(r.esc_step), int(r.alerttype))
                    for r in c.execute(q)]

    def trigger_problems(self, triggerid: int, limit: int = 20) -> list[ProblemView]:
        """The trigger's newest problems (open and resolved that are still kept), newest first."""
        page = self.problems(Scope(), ProblemFilter(triggerid=triggerid, show="history"), 0, limit=limit)
        return page.rows

    def events(self, scope: Scope, *, triggerid: int | None = None, hostids: Sequence[int] | None = None,
               start: int | None = None, end: int | None = None, value: int | None = None,
               limit: int = 100, offset: int = 0) -> Page:
        """Trigger events (problem and OK) newest first, of visible triggers: the event history."""
        e, tr, h = t.events.c, t.triggers.c, t.hosts.c
        where = [e.source == EventSource.TRIGGERS, e.object == EventObject.TRIGGER,
                 e.objectid.in_(visible_triggers(scope))]
        if triggerid is not None:
            where.append(e.objectid == triggerid)
        if hostids is not None:
            where.append(tr.hostid.in_(list(hostids)))
        if start is not None:
            where.append(e.clock >= start)
        if end is not None:
            where.append(e.clock <= end)
        if value is not None:
            where.append(e.value == value)
        frm = t.events.join(t.triggers, tr.triggerid == e.objectid).join(t.hosts, h.hostid == tr.hostid)
        q = (sa.select(e.eventid, e.objectid, e.clock, e.value, e.name, e.severity, e.acknowledged, tr.hostid,
                       h.host, h.name.label("host_name"))
             .select_from(frm).where(*where).order_by(e.clock.desc(), e.eventid.desc()).limit(limit).offset(offset))
        with reads.connect(self.engine) as c:
            total = int(c.execute(sa.select(sa.func.count()).select_from(frm).where(*where)).scalar() or 0)
            rows = [EventListRow(int(r.eventid), int(r.objectid), int(r.clock), int(r.value), r.name, int(r.severity),
                                 r.acknowledged == 1, int(r.hostid), r.host, r.host_name or r.host)
                    for r in c.execute(q)]
        return Page(total, rows)


@dataclass(frozen=True, slots=True)
class EventListRow:
    eventid: int
    triggerid: int
    clock: int
    value: int  # 1 problem, 0 OK
    name: str
    severity: int
    acknowledged: bool
    hostid: int
    host: str
    host_name: str


def _view(r: sa.Row, tags: dict, updates: dict, alerts: dict, items: dict) -> ProblemView:
    eid = int(r.eventid)
    return ProblemView(eid, int(r.objectid), int(r.clock), int(r.ns), None if r.r_eventid is None else int(r.r_eventid),
                       int(r.r_clock), r.name, int(r.severity), r.acknowledged == 1, int(r.hostid), r.host,
                       r.host_name or r.host, r.manual_close == 1, tuple(tags.get(eid, ())), updates.get(eid, 0),
                       alerts.get(eid, 0), tuple(items.get(int(r.objectid), ())))
