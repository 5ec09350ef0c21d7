"""Reads for Configuration → Templates: one template with its items' count, triggers and linked hosts."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from vigil.server.config import reads
from vigil.server.config import tables as t
from vigil.server.config.browse import Page, _search
from vigil.server.config.tables import HostStatus, ItemType, Severity


@dataclass(frozen=True, slots=True)
class TemplateRow:
    templateid: int
    host: str
    name: str
    description: str
    items: int
    triggers: int
    linked: int


@dataclass(frozen=True, slots=True)
class TriggerRow:
    triggerid: int
    name: str
    expression: str
    severity: Severity
    enabled: bool


class TemplateBrowse:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def templates(self, *, search: str = "", templateid: int | None = None, limit: int | None = 100,
                  offset: int = 0) -> Page:
        h = t.hosts.c
        items = sa.select(sa.func.count()).where(t.items.c.hostid == h.hostid).scalar_subquery()
        triggers = sa.select(sa.func.count()).where(t.triggers.c.hostid == h.hostid).scalar_subquery()
        linked = (sa.select(sa.func.count()).where(t.hosts_templates.c.templateid == h.hostid).scalar_subquery())
        q = (sa.select(h.hostid, h.host, h.name, h.description, items.label("ni"), triggers.label("nt"),
                       linked.label("nl")).where(h.status == HostStatus.TEMPLATE).order_by(h.host))
        if search:
            q = q.where(sa.or_(_search(h.host, search), _search(h.name, search)))
        if templateid is not None:
            q = q.where(h.hostid == templateid)
        with reads.connect(self.engine) as c:
            total = int(c.execute(sa.select(sa.func.count()).select_from(q.order_by(None).subquery())).scalar() or 0)
            if limit is not None:
                q = q.limit(limit).offset(offset)
            rows = [TemplateRow(int(r.hostid), r.host, r.name or r.host, r.description, int(r.ni), int(r.nt),
                                int(r.nl)) for r in c.execute(q)]
        return Page(total, rows)

    def template(self, templateid: int) -> TemplateRow | None:
        rows = self.templates(templateid=templateid, limit=1).rows
        return rows[0] if rows else None

    def triggers(self, hostid: int) -> list[TriggerRow]:
        tr = t.triggers.c
        with reads.connect(self.engine) as c:
            return [TriggerRow(int(r.triggerid), r.description, r.expression, Severity(r.priority), r.status == 0)
                    for r in c.execute(sa.select(tr.triggerid, tr.description, tr.expression, tr.priority, tr.status)
                                       .where(tr.hostid == hostid).order_by(tr.description))]

    def linked_hosts(self, templateid: int) -> list[tuple[int, str]]:
        with reads.connect(self.engine) as c:
            return [(int(a), b) for a, b in c.execute(
                sa.select(t.hosts.c.hostid, t.hosts.c.host)
                .join(t.hosts_templates, t.hosts_templates.c.hostid == t.hosts.c.hostid)
                .where(t.hosts_templates.c.templateid == templateid).order_by(t.hosts.c.host))]

    def items(self, templateid: int, limit: int = 500) -> tuple[int, list[tuple[str, str, str, str, str]]]:
        """(count, [(name, key, type, delay, units)]) of a template's items."""
        i = t.items.c
        with reads.connect(self.engine) as c:
            total = int(c.execute(sa.select(sa.func.count()).where(i.hostid == templateid)).scalar() or 0)
            rows = [(r.name or r.key_, r.key_, ItemType(r.type).name.lower(), r.delay, r.units) for r in c.execute(
                sa.select(i.name, i.key_, i.type, i.delay, i.units).where(i.hostid == templateid)
                .order_by(i.name, i.key_).limit(limit))]
        return total, rows
