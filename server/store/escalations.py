"""The escalations table, and what an alert message needs to know about an event (SQLAlchemy Core).

An escalation is an action working through its steps for one problem (status ACTIVE, or SLEEP
while its hosts are in maintenance), its recovery (RECOVERY, then deleted) or one update of the
problem (a row with acknowledgeid, deleted once its operations ran). `nextcheck` is when it is
due: the escalator reads due rows, so steps survive a restart.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from vigil.server.config import tables as t
from vigil.server.config.tables import EventObject, EventSource, ValueType
from vigil.server.store.base import from_signed64

ACTIVE = 0
RECOVERY = 1
SLEEP = 2
COMPLETED = 3  # every step done; kept until the problem is resolved, for its recovery operations


@dataclass(frozen=True, slots=True)
class Escalation:
    escalationid: int
    actionid: int
    eventid: int
    r_eventid: int | None
    acknowledgeid: int | None
    esc_step: int
    status: int
    nextcheck: int

    def but(self, **changes: Any) -> Escalation:
        return replace(self, **changes)


@dataclass(frozen=True, slots=True)
class ItemRow:
    itemid: int
    hostid: int
    name: str
    key: str
    value_type: int
    units: str
    value: str | None  # the newest value at or before the event's clock
    lastvalue: str | None


@dataclass(frozen=True, slots=True)
class UpdateRow:
    acknowledgeid: int
    userid: int | None
    clock: int
    message: str
    action: int


@dataclass(frozen=True, slots=True)
class EventRow:
    """An event with its trigger, hosts, items' values, problem state and updates."""

    eventid: int
    source: int
    object: int
    objectid: int
    clock: int
    ns: int
    value: int
    name: str
    severity: int  # the problem's current severity (a severity change is seen here)
    acknowledged: bool
    tags: tuple[tuple[str, str], ...] = ()
    triggerid: int | None = None
    trigger_name: str = ""
    trigger_expression: str = ""
    trigger_value: int | None = None
    hosts: tuple[tuple[int, str, str], ...] = ()  # (hostid, host, visible name)
    items: tuple[ItemRow, ...] = ()
    r_eventid: int | None = None
    r_clock: int | None = None
    updates: tuple[UpdateRow, ...] = field(default_factory=tuple)


_HISTORY = {ValueType.FLOAT: ("history", "history_stage"), ValueType.UNSIGNED: ("history_uint", "history_uint_stage"),
            ValueType.CHAR: ("history_str", None), ValueType.TEXT: ("history_text", None),
            ValueType.LOG: ("history_log", None)}


class EscalationStore:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sqlite = engine.dialect.name == "sqlite"

    # --- escalations ---------------------------------------------------------------------------

    @staticmethod
    def _row(r: Any) -> Escalation:
        return Escalation(int(r.escalationid), int(r.actionid), int(r.eventid),
                          None if r.r_eventid is None else int(r.r_eventid),
                          None if r.acknowledgeid is None else int(r.acknowledgeid),
                          int(r.esc_step), int(r.status), int(r.nextcheck))

    def create(self, actionid: int, eventid: int, nextcheck: int, acknowledgeid: int | None = None,
               status: int = ACTIVE) -> Escalation | None:
        """A new escalation; None when this action already has one for this event (and update)."""
        e = t.escalations
        ack = e.c.acknowledgeid.is_(None) if acknowledgeid is None else e.c.acknowledgeid == acknowledgeid
        with self.engine.begin() as c:
            if c.execute(sa.select(e.c.escalationid).where(e.c.actionid == actionid, e.c.eventid == eventid,
                                                            ack)).first() is not None:
                return None
            try:
                new = c.execute(e.insert().values(actionid=actionid, eventid=eventid, acknowledgeid=acknowledgeid,
                                                  esc_step=0, status=status, nextcheck=nextcheck)
                                ).inserted_primary_key[0]
            except sa.exc.IntegrityError:  # a racing insert of the same row
                return None
        return Escalation(int(new), actionid, eventid, None, acknowledgeid, 0, status, nextcheck)

    def get(self, escalationid: int) -> Escalation | None:
        with self.engine.connect() as c:
            r = c.execute(sa.select(t.escalations).where(t.escalations.c.escalationid == escalationid)).first()
        return None if r is None else self._row(r)

    def due(self, now: int, limit: int = 1000) -> list[Escalation]:
        """Escalations due at `now`, the longest overdue first."""
        e = t.escalations
        q = (sa.select(e).where(e.c.status.in_((ACTIVE, RECOVERY, SLEEP)), e.c.nextcheck <= now)
             .order_by(e.c.nextcheck, e.c.escalationid).limit(limit))
        with self.engine.connect() as c:
            return [self._row(r) for r in c.execute(q)]

    def of_events(self, eventids: Iterable[int]) -> list[Escalation]:
        ids = list(eventids)
        if not ids:
            return []
        e = t.escalations
        with self.engine.connect() as c:
            return [self._row(r) for r in c.execute(sa.select(e).where(e.c.eventid.in_(ids))
                                                    .order_by(e.c.escalationid))]

    def all(self) -> list[Escalation]:
        with self.engine.connect() as c:
            return [self._row(r) for r in c.execute(sa.select(t.escalations).order_by(t.escalations.c.escalationid))]

    def save(self, esc: Escalation) -> None:
        e = t.escalations
        with self.engine.begin() as c:
            c.execute(e.update().where(e.c.escalationid == esc.escalationid)
                      .values(esc_step=esc.esc_step, status=esc.status, nextcheck=esc.nextcheck,
                              r_eventid=esc.r_eventid))

    def delete(self, escalationid: int) -> None:
        with self.engine.begin() as c:
            c.execute(t.escalations.delete().where(t.escalations.c.escalationid == escalationid))

    def resolved_by(self, r_eventid: int) -> list[int]:
        """The problem events an OK event resolved (problems.r_eventid)."""
        p = t.problems
        with self.engine.connect() as c:
            return [int(r[0]) for r in c.execute(sa.select(p.c.eventid).where(p.c.r_eventid == r_eventid))]

    # --- event context ---------------------------------------------------------------------------

    def event(self, eventid: int) -> EventRow | None:
        """The event with everything a message names; None when it does not exist."""
        ev, p = t.events, t.problems
        with self.engine.connect() as c:
            r = c.execute(sa.select(ev).where(ev.c.eventid == eventid)).first()
            if r is None:
                return None
            prob = c.execute(sa.select(p.c.r_eventid, p.c.r_clock, p.c.severity, p.c.acknowledged)
                             .where(p.c.eventid == eventid)).first()
            tags = tuple((str(a), str(b)) for a, b in c.execute(
                sa.select(t.event_tags.c.tag, t.event_tags.c.value).where(t.event_tags.c.eventid == eventid)
                .order_by(t.event_tags.c.eventtagid)))
            triggerid = trigger_name = expression = tvalue = None
            hostids: list[int] = []
            itemids: list[int] = []
            if r.object == EventObject.TRIGGER:
                tr = c.execute(sa.select(t.triggers.c.triggerid, t.triggers.c.description, t.triggers.c.expression,
                                         t.triggers.c.hostid).where(t.triggers.c.triggerid == r.objectid)).first()
                if tr is not None:
                    triggerid, trigger_name, expression = int(tr.triggerid), tr.description, tr.expression
                    rt = c.execute(sa.select(t.trigger_rtdata.c.value)
                                   .where(t.trigger_rtdata.c.triggerid == triggerid)).first()
                    tvalue = None if rt is None else int(rt[0])
                    itemids = [int(x) for x, in c.execute(
                        sa.select(t.trigger_items.c.itemid).where(t.trigger_items.c.triggerid == triggerid)
                        .order_by(t.trigger_items.c.itemid))]
                    if not itemids:
                        hostids = [int(tr.hostid)]
            elif r.object == EventObject.ITEM:
                itemids = [int(r.objectid)]
            elif r.object == EventObject.HOST:
                hostids = [int(r.objectid)]
            elif r.source == EventSource.AUTOREGISTRATION and r.object == EventObject.AUTOREG_HOST:
                # the host it made, found by the registered name (none if no action added it)
                hostids = [int(x) for x, in c.execute(sa.select(t.hosts.c.hostid).where(t.hosts.c.host == r.name))]
            items = self._items(c, itemids, int(r.clock))
            for it in items:
                if it.hostid not in hostids:
                    hostids.append(it.hostid)
            hosts: list[tuple[int, str, str]] = []
            if hostids:
                by_id = {int(h.hostid): (int(h.hostid), h.host, h.name) for h in c.execute(
                    sa.select(t.hosts.c.hostid, t.hosts.c.host, t.hosts.c.name).where(t.hosts.c.hostid.in_(hostids)))}
                hosts = [by_id[h] for h in hostids if h in by_id]
            a = t.acknowledges
            updates = tuple(UpdateRow(int(u.acknowledgeid), u.userid, int(u.clock), u.message, int(u.action))
                            for u in c.execute(sa.select(a).where(a.c.eventid == eventid)
                                               .order_by(a.c.clock, a.c.acknowledgeid)))
        return EventRow(
            int(r.eventid), int(r.source), int(r.object), int(r.objectid), int(r.clock), int(r.ns), int(r.value),
            r.name, int(prob.severity) if prob is not None else int(r.severity),
            bool(prob.acknowledged if prob is not None else r.acknowledged), tags, triggerid, trigger_name or "",
            expression or "", tvalue, tuple(hosts), tuple(items),
            None if prob is None or prob.r_eventid is None else int(prob.r_eventid),
            None if prob is None or prob.r_eventid is None else int(prob.r_clock), updates)

    def _items(self, c: Connection, itemids: list[int], clock: int) -> list[ItemRow]:
        if not itemids:
            return []
        i = t.items
        out = []
        for r in c.execute(sa.select(i.c.itemid, i.c.hostid, i.c.name, i.c.key_, i.c.value_type, i.c.units)
                           .where(i.c.itemid.in_(itemids)).order_by(i.c.itemid)):
            vt = ValueType(int(r.value_type))
            out.append(ItemRow(int(r.itemid), int(r.hostid), r.name, r.key_, int(vt), r.units,
                               self._value(c, int(r.itemid), vt, clock), self._value(c, int(r.itemid), vt, None)))
        return out

    def _value(self, c: Connection, itemid: int, vt: ValueType, before: int | None) -> str | None:
        best: tuple[int, int, Any] | None = None
        main, stage = _HISTORY[vt]
        for name in (main, stage if self._sqlite else None):
            if name is None:
                continue
            h = t.metadata.tables[name]
            q = sa.select(h.c.clock, h.c.ns, h.c.value).where(h.c.itemid == itemid)
            if before is not None:
                q = q.where(h.c.clock <= before)
            row = c.execute(q.order_by(h.c.clock.desc(), h.c.ns.desc()).limit(1)).first()
            if row is not None and (best is None or (row[0], row[1]) > best[:2]):
                best = (int(row[0]), int(row[1]), row[2])
        if best is None:
            return None
        v = best[2]
        if vt == ValueType.UNSIGNED:
            return str(from_signed64(int(v)))
        if vt == ValueType.FLOAT:
            f = float(v)
            return f"{f:.4f}".rstrip("0").rstrip(".") if f != int(f) or abs(f) >= 1e15 else str(int(f))
        return str(v)

    def agent_interface(self, hostid: int) -> tuple[str, int] | None:
        """Where the host's agent listens: its main agent interface (address, port); None without one."""
        i = t.interfaces
        with self.engine.connect() as c:
            r = c.execute(sa.select(i.c.useip, i.c.ip, i.c.dns, i.c.port)
                          .where(i.c.hostid == hostid, i.c.type == 1)
                          .order_by(i.c.main.desc(), i.c.interfaceid)).first()
        if r is None:
            return None
        address = r.ip if r.useip else r.dns
        try:
            port = int(str(r.port).strip() or "10050")
        except ValueError:
            port = 10050
        return (address or "127.0.0.1"), port

    def global_macros(self) -> dict[str, str]:
        with self.engine.connect() as c:
            return {str(m): str(v) for m, v in c.execute(sa.select(t.global_macros.c.macro, t.global_macros.c.value))}

    # --- the alert log rows this room writes after AlertLog.create ------------------------------

    def set_alert_text(self, alertid: int, subject: str, message: str) -> None:
        """The rendered subject and message, once the alert id ({ALERT.ID}) is known."""
        a = t.alerts
        with self.engine.begin() as c:
            c.execute(a.update().where(a.c.alertid == alertid).values(subject=subject[:255], message=message))

    def finish_alert(self, alertid: int, status: int, error: str, clock: int, subject: str | None = None,
                     message: str | None = None) -> None:
        """An alert this room settles itself: a message it could not render, a remote command's result."""
        a = t.alerts
        values: dict[str, Any] = {"status": status, "error": error[:2048],
                                  "sent_clock": clock if status == t.AlertStatus.SENT else 0}
        if subject is not None:
            values["subject"] = subject[:255]
        if message is not None:
            values["message"] = message
        with self.engine.begin() as c:
            c.execute(a.update().where(a.c.alertid == alertid).values(**values))

    def involved(self, actionid: int, eventid: int) -> list[tuple[int, int]]:
        """(userid, mediatypeid) that got a message of this action for this problem (Zabbix's
        "notify all involved")."""
        a = t.alerts
        q = (sa.select(a.c.userid, a.c.mediatypeid).distinct()
             .where(a.c.actionid == actionid, a.c.eventid == eventid, a.c.alerttype == 0,
                    a.c.userid.is_not(None), a.c.mediatypeid.is_not(None)))
        with self.engine.connect() as c:
            return sorted((int(u), int(m)) for u, m in c.execute(q))
