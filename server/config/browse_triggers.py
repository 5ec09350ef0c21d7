"""Reads for Configuration → Hosts → Triggers and the triggers API: lists with filters and state, and the
items a trigger expression names (for the "would it fire now" preview). SQLAlchemy Core; writes go
through ConfigRepo.save_trigger / delete_trigger.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from vigil.server.config import reads
from vigil.server.config import tables as t
from vigil.server.config.browse import Page, Scope, _search
from vigil.server.config.browse_problems import visible_triggers
from vigil.server.config.tables import HostStatus

TRIGGER_SORTS = ("name", "severity", "status", "value")


@dataclass(frozen=True, slots=True)
class TriggerRow:
    triggerid: int
    hostid: int
    host: str
    host_name: str
    name: str
    expression: str
    recovery_mode: int
    recovery_expression: str
    severity: int
    multiple: bool
    manual_close: bool
    enabled: bool
    comments: str
    opdata: str
    templated: bool
    value: int  # 0 OK, 1 PROBLEM (trigger_rtdata; 0 when never evaluated)
    state: int  # 0 normal, 1 unknown
    error: str
    lastchange: int
    tags: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class TriggerFilter:
    hostids: tuple[int, ...] | None = None
    groupid: int | None = None
    search: str = ""
    severities: frozenset[int] = frozenset()
    enabled: bool | None = None
    value: int | None = None  # 1: only those in PROBLEM


class TriggerBrowse:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def triggers(self, scope: Scope, f: TriggerFilter = TriggerFilter(), *, sort: str = "name", desc: bool = False,
                 limit: int = 100, offset: int = 0) -> Page:
        tr, h, rt = t.triggers.c, t.hosts.c, t.trigger_rtdata.c
        value = sa.func.coalesce(rt.value, 0)
        where = [h.status != HostStatus.TEMPLATE, tr.triggerid.in_(visible_triggers(scope))]
        if f.hostids is not None:
            where.append(tr.hostid.in_(list(f.hostids)))
        if f.groupid is not None:
            where.append(tr.hostid.in_(sa.select(t.hosts_groups.c.hostid).where(t.hosts_groups.c.groupid == f.groupid)))
        if f.search:
            where.append(sa.or_(_search(tr.description, f.search), _search(tr.expression, f.search)))
        if f.severities:
            where.append(tr.priority.in_(sorted(f.severities)))
        if f.enabled is not None:
            where.append(tr.status == (0 if f.enabled else 1))
        if f.value is not None:
            where.append(value == f.value)
        frm = (t.triggers.join(t.hosts, h.hostid == tr.hostid)
               .outerjoin(t.trigger_rtdata, rt.triggerid == tr.triggerid))
        col = {"name": tr.description, "severity": tr.priority, "status": tr.status, "value": value}.get(
            sort, tr.description)
        q = (sa.select(t.triggers, h.host, h.name.label("host_name"), value.label("value"),
                       sa.func.coalesce(rt.state, 0).label("state"), sa.func.coalesce(rt.error, "").label("error"),
                       sa.func.coalesce(rt.lastchange, 0).label("lastchange"))
             .select_from(frm).where(*where)
             .order_by(col.desc() if desc else col.asc(), h.name, tr.description, tr.triggerid)
             .limit(limit).offset(offset))
        with reads.connect(self.engine) as c:
            total = int(c.execute(sa.select(sa.func.count()).select_from(frm).where(*where)).scalar() or 0)
            rows = c.execute(q).all()
            tags: dict[int, list[tuple[str, str]]] = {}
            ids = [r.triggerid for r in rows]
            if ids:
                for r in c.execute(sa.select(t.trigger_tags).where(t.trigger_tags.c.triggerid.in_(ids))
                                   .order_by(t.trigger_tags.c.triggertagid)):
                    tags.setdefault(int(r.triggerid), []).append((r.tag, r.value))
        return Page(total, [_row(r, tags.get(int(r.triggerid), ())) for r in rows])

    def trigger(self, triggerid: int) -> TriggerRow | None:
        tr, h, rt = t.triggers.c, t.hosts.c, t.trigger_rtdata.c
        q = (sa.select(t.triggers, h.host, h.name.label("host_name"), sa.func.coalesce(rt.value, 0).label("value"),
                       sa.func.coalesce(rt.state, 0).label("state"), sa.func.coalesce(rt.error, "").label("error"),
                       sa.func.coalesce(rt.lastchange, 0).label("lastchange"))
             .select_from(t.triggers.join(t.hosts, h.hostid == tr.hostid)
                          .outerjoin(t.trigger_rtdata, rt.triggerid == tr.triggerid))
             .where(tr.triggerid == triggerid, h.status != HostStatus.TEMPLATE))
        with reads.connect(self.engine) as c:
            r = c.execute(q).first()
            if r is None:
                return None
            tags = tuple((x.tag, x.value) for x in c.execute(
                sa.select(t.trigger_tags).where(t.trigger_tags.c.triggerid == triggerid)
                .order_by(t.trigger_tags.c.triggertagid)))
        return _row(r, tags)

    def items_named(self, refs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], tuple[int, int, int, str]]:
        """(host, key) -> (itemid, value_type, hostid, state error or '') of the items that exist."""
        wanted = set(refs)
        hosts = sorted({h for h, _ in wanted})
        out: dict[tuple[str, str], tuple[int, int, int, str]] = {}
        if not hosts:
            return out
        i, h, s = t.items.c, t.hosts.c, t.item_state.c
        q = (sa.select(i.itemid, i.value_type, i.hostid, i.key_, h.host, s.state, s.error)
             .join(t.hosts, h.hostid == i.hostid).outerjoin(t.item_state, s.itemid == i.itemid)
             .where(h.host.in_(hosts), i.key_.in_(sorted({k for _, k in wanted}))))
        with reads.connect(self.engine) as c:
            for r in c.execute(q):
                if (r.host, r.key_) in wanted:
                    out[(r.host, r.key_)] = (int(r.itemid), int(r.value_type), int(r.hostid),
                                             r.error if r.state == 1 else "")
        return out

    def trigger_names(self, hostid: int) -> list[str]:
        with reads.connect(self.engine) as c:
            return list(c.execute(sa.select(t.triggers.c.description).where(t.triggers.c.hostid == hostid)
                                  .order_by(t.triggers.c.description)).scalars())

    def count_by_host(self, hostids: Sequence[int]) -> dict[int, int]:
        if not hostids:
            return {}
        with reads.connect(self.engine) as c:
            return {int(a): int(b) for a, b in c.execute(
                sa.select(t.triggers.c.hostid, sa.func.count()).where(t.triggers.c.hostid.in_(list(hostids)))
                .group_by(t.triggers.c.hostid))}


def _row(r: sa.Row, tags: Iterable[tuple[str, str]]) -> TriggerRow:
    return TriggerRow(int(r.triggerid), int(r.hostid), r.host, r.host_name or r.host, r.description, r.expression,
                      int(r.recovery_mode), r.recovery_expression, int(r.priority), r.type == 1, r.manual_close == 1,
                      r.status == 0, r.comments, r.opdata, r.templateid is not None, int(r.value), int(r.state),
                      r.error or "", int(r.lastchange), tuple(tags))
