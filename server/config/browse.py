"""Reads for the web UI and the JSON API: hosts, host groups, templates, items, counts (SQLAlchemy Core).

Every list takes a `Scope`: the host groups the caller may read (None: all) and those denied to it,
so that permission filtering happens in the query, not after it, and pagination counts stay right.
Writes go through ConfigRepo; a host's rename (which ConfigRepo, keyed by name, cannot do) is here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from vigil.server.config import reads
from vigil.server.config import tables as t
from vigil.server.config.countcache import VersionedCache
from vigil.server.config.model import ConfigError, resolve_macros
from vigil.server.config.tables import HostStatus, ItemType, ValueType


@dataclass(frozen=True, slots=True)
class Scope:
    readable: frozenset[int] | None = None  # host groups that may be read; None: every group
    denied: frozenset[int] = frozenset()

    @classmethod
    def of(cls, readable: Iterable[int] | None, denied: Iterable[int] = ()) -> Scope:
        return cls(None if readable is None else frozenset(readable), frozenset(denied))

    def hosts_clause(self, hostid_col: sa.ColumnElement) -> sa.ColumnElement[bool]:
        cond: list[sa.ColumnElement[bool]] = []
        if self.readable is not None:
            cond.append(hostid_col.in_(sa.select(t.hosts_groups.c.hostid)
                                       .where(t.hosts_groups.c.groupid.in_(sorted(self.readable)))))
        if self.denied:
            cond.append(hostid_col.not_in(sa.select(t.hosts_groups.c.hostid)
                                          .where(t.hosts_groups.c.groupid.in_(sorted(self.denied)))))
        return sa.and_(sa.true(), *cond)


@dataclass(frozen=True, slots=True)
class HostRow:
    hostid: int
    host: str
    name: str
    status: int
    description: str
    groups: tuple[tuple[int, str], ...]
    templates: tuple[str, ...]
    items: int
    available: int  # 0 unknown, 1 available, 2 not available
    error: str = ""

    @property
    def enabled(self) -> bool:
        return self.status == HostStatus.MONITORED


@dataclass(frozen=True, slots=True)
class HostName:
    hostid: int
    host: str
    name: str  # the visible name, else the technical one


@dataclass(frozen=True, slots=True)
class HostDetail:
    row: HostRow
    macros: dict[str, str]
    interfaces: tuple[tuple[int, str, str, str], ...]  # (type, ip, dns, port)


@dataclass(frozen=True, slots=True)
class ItemRow:
    itemid: int
    hostid: int
    host: str
    host_name: str
    key: str  # macros resolved
    name: str  # macros resolved; the key when the item has no name
    type: ItemType
    value_type: ValueType
    units: str
    delay: str
    status: int
    templated: bool
    tags: tuple[tuple[str, str], ...] = field(default=())
    description: str = ""


@dataclass(frozen=True, slots=True)
class Page:
    total: int
    rows: list


SORTS = {"name": t.hosts.c.name, "host": t.hosts.c.host, "status": t.hosts.c.status}


def _tuple(v: Sequence | None) -> tuple | None:
    return None if v is None else tuple(v)


def _escape_like(s: str) -> str:
    return s.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _search(col: sa.ColumnElement, text: str) -> sa.ColumnElement[bool]:
    return sa.func.lower(col).like(f"%{_escape_like(text.lower())}%", escape="\\")


class Browse:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._item_counts: VersionedCache[list[tuple[int, int]]] = VersionedCache()

    # --- groups and templates -----------------------------------------------------------------------

    def host_groups(self, scope: Scope = Scope()) -> list[tuple[int, str]]:
        q = sa.select(t.host_groups.c.groupid, t.host_groups.c.name).order_by(t.host_groups.c.name)
        if scope.readable is not None:
            q = q.where(t.host_groups.c.groupid.in_(sorted(scope.readable)))
        if scope.denied:
            q = q.where(t.host_groups.c.groupid.not_in(sorted(scope.denied)))
        with reads.connect(self.engine) as c:
            return [(int(a), b) for a, b in c.execute(q)]

    def templates(self) -> list[tuple[int, str]]:
        with reads.connect(self.engine) as c:
            return [(int(a), b) for a, b in c.execute(
                sa.select(t.hosts.c.hostid, t.hosts.c.host).where(t.hosts.c.status == HostStatus.TEMPLATE)
                .order_by(t.hosts.c.host))]

    def template_rows(self) -> list[tuple[int, str, str, int, int]]:
        """(templateid, name, description, items, linked hosts) of every template."""
        with reads.connect(self.engine) as c:
            items = dict(c.execute(sa.select(t.items.c.hostid, sa.func.count()).group_by(t.items.c.hostid)).all())
            linked = dict(c.execute(sa.select(t.hosts_templates.c.templateid, sa.func.count())
                                    .group_by(t.hosts_templates.c.templateid)).all())
            return [(int(r.hostid), r.name or r.host, r.description, int(items.get(r.hostid, 0)),
                     int(linked.get(r.hostid, 0)))
                    for r in c.execute(sa.select(t.hosts).where(t.hosts.c.status == HostStatus.TEMPLATE)
                                       .order_by(t.hosts.c.host))]

    # --- hosts -------------------------------------------------------------------------------------------

    def hosts(self, scope: Scope = Scope(), *, search: str = "", groupid: int | None = None,
              status: int | None = None, available: int | None = None, hostids: Sequence[int] | None = None,
              sort: str = "name", desc: bool = False, limit: int = 50, offset: int = 0) -> Page:
        h = t.hosts.c
        avail = sa.func.coalesce(t.host_availability.c.available, 0)
        where = [h.status != HostStatus.TEMPLATE, scope.hosts_clause(h.hostid)]
        if search:
            where.append(sa.or_(_search(h.host, search), _search(h.name, search)))
        if groupid is not None:
            where.append(h.hostid.in_(sa.select(t.hosts_groups.c.hostid).where(t.hosts_groups.c.groupid == groupid)))
        if status is not None:
            where.append(h.status == status)
        if available is not None:
            where.append(avail == available)
        if hostids is not None:
            where.append(h.hostid.in_(list(hostids)))
        base = sa.select(h.hostid).select_from(
            t.hosts.outerjoin(t.host_availability, t.host_availability.c.hostid == h.hostid)).where(*where)
        col = SORTS.get(sort, h.name)
        with reads.connect(self.engine) as c:
            # the total rides along with the page's rows; counted apart only for a page past the end
            found = c.execute(base.add_columns(sa.func.count().over().label("total"))
                              .order_by(col.desc() if desc else col, h.hostid).limit(limit).offset(offset)).all()
            total = int(found[0].total) if found else int(
                c.execute(sa.select(sa.func.count()).select_from(base.subquery())).scalar() or 0)
            return Page(total, self._host_rows(c, [int(r.hostid) for r in found]))

    def _host_rows(self, c: Connection, ids: list[int]) -> list[HostRow]:
        if not ids:
            return []
        groups: dict[int, list[tuple[int, str]]] = {}
        for hid, gid, name in c.execute(
                sa.select(t.hosts_groups.c.hostid, t.host_groups.c.groupid, t.host_groups.c.name)
                .join(t.host_groups, t.host_groups.c.groupid == t.hosts_groups.c.groupid)
                .where(t.hosts_groups.c.hostid.in_(ids)).order_by(t.host_groups.c.name)):
            groups.setdefault(hid, []).append((int(gid), name))
        tpl = sa.alias(t.hosts, "tpl")
        templates: dict[int, list[str]] = {}
        for hid, name in c.execute(sa.select(t.hosts_templates.c.hostid, tpl.c.host)
                                   .join(tpl, tpl.c.hostid == t.hosts_templates.c.templateid)
                                   .where(t.hosts_templates.c.hostid.in_(ids)).order_by(tpl.c.host)):
            templates.setdefault(hid, []).append(name)
        counts = dict(c.execute(sa.select(t.items.c.hostid, sa.func.count()).where(t.items.c.hostid.in_(ids))
                                .group_by(t.items.c.hostid)).all())
        rows = {r.hostid: r for r in c.execute(
            sa.select(t.hosts, t.host_availability.c.available, t.host_availability.c.error.label("avail_error"))
            .outerjoin(t.host_availability, t.host_availability.c.hostid == t.hosts.c.hostid)
            .where(t.hosts.c.hostid.in_(ids)))}
        return [HostRow(int(i), rows[i].host, rows[i].name or rows[i].host, int(rows[i].status), rows[i].description,
                        tuple(groups.get(i, ())), tuple(templates.get(i, ())), int(counts.get(i, 0)),
                        int(rows[i].available or 0), rows[i].avail_error or "")
                for i in ids if i in rows]

    def unknown_host_ids(self, scope: Scope = Scope(), limit: int = 100_000) -> list[int]:
        """Monitored hosts in scope whose availability no poller has written (0 or no row)."""
        h = t.hosts.c
        q = (sa.select(h.hostid).select_from(t.hosts.outerjoin(t.host_availability,
                                                               t.host_availability.c.hostid == h.hostid))
             .where(h.status == HostStatus.MONITORED, scope.hosts_clause(h.hostid),
                    sa.func.coalesce(t.host_availability.c.available, 0) == 0).limit(limit))
        with reads.connect(self.engine) as c:
            return [int(x) for x in c.execute(q).scalars()]

    def ping_items(self, scope: Scope = Scope(), *, hostids: Sequence[int] | None = None,
                   unknown: bool = False, key: str = "agent.ping") -> list[tuple[int, int, ValueType]]:
        """(itemid, hostid, value type) of the hosts' `key` items (plain or discovered): of `hostids`, or
        with `unknown` of every monitored host in scope whose availability no poller has written. One
        lean query, for the active-agent heartbeat that makes such hosts available."""
        i, h = t.items.c, t.hosts.c
        where = [h.status != HostStatus.TEMPLATE, scope.hosts_clause(h.hostid), i.flags.in_([0, 4]), i.key_ == key]
        frm = t.items.join(t.hosts, h.hostid == i.hostid)
        if hostids is not None:
            where.append(i.hostid.in_(list(hostids)))
        if unknown:
            frm = frm.outerjoin(t.host_availability, t.host_availability.c.hostid == h.hostid)
            where += [h.status == HostStatus.MONITORED, sa.func.coalesce(t.host_availability.c.available, 0) == 0]
        with reads.connect(self.engine) as c:
            return [(int(a), int(b), ValueType(v)) for a, b, v in
                    c.execute(sa.select(i.itemid, i.hostid, i.value_type).select_from(frm).where(*where))]

    def first_host(self, scope: Scope = Scope(), *, host: str | None = None,
                   template: str | None = None) -> HostName | None:
        """The host named `host` if in scope; else the first host in scope by name linked to `template`,
        else the first at all (the dashboard's watched host). One query."""
        h = t.hosts.c
        q = sa.select(h.hostid, h.host, h.name).where(h.status != HostStatus.TEMPLATE, scope.hosts_clause(h.hostid))
        if host is not None:
            q = q.where(h.host == host)
        elif template is not None:
            tpl = sa.alias(t.hosts, "tpl")
            linked = (sa.select(t.hosts_templates.c.hostid).join(tpl, tpl.c.hostid == t.hosts_templates.c.templateid)
                      .where(tpl.c.host == template))
            q = q.order_by(sa.case((h.hostid.in_(linked), 0), else_=1))
        with reads.connect(self.engine) as c:
            r = c.execute(q.order_by(h.name, h.host, h.hostid).limit(1)).first()
        return None if r is None else HostName(int(r.hostid), r.host, r.name or r.host)

    def host_names(self, scope: Scope = Scope(), limit: int = 500) -> list[tuple[int, str]]:
        """(hostid, visible name) of hosts in scope, for pickers: one light query."""
        h = t.hosts.c
        q = (sa.select(h.hostid, sa.func.coalesce(sa.func.nullif(h.name, ""), h.host))
             .where(h.status != HostStatus.TEMPLATE, scope.hosts_clause(h.hostid))
             .order_by(h.name, h.host).limit(limit))
        with reads.connect(self.engine) as c:
            return [(int(a), b) for a, b in c.execute(q)]

    def host(self, hostid: int) -> HostDetail | None:
        with reads.connect(self.engine) as c:
            rows = self._host_rows(c, [hostid])
            r = c.execute(sa.select(t.hosts.c.status).where(t.hosts.c.hostid == hostid)).scalar()
            if not rows or r == HostStatus.TEMPLATE:
                return None
            macros = {m.macro: m.value for m in c.execute(sa.select(t.host_macros).where(
                t.host_macros.c.hostid == hostid).order_by(t.host_macros.c.macro))}
            ifs = tuple((int(i.type), i.ip, i.dns, i.port) for i in c.execute(
                sa.select(t.interfaces).where(t.interfaces.c.hostid == hostid).order_by(t.interfaces.c.interfaceid)))
            return HostDetail(rows[0], macros, ifs)

    def host_id(self, host: str) -> int | None:
        with reads.connect(self.engine) as c:
            v = c.execute(sa.select(t.hosts.c.hostid).where(t.hosts.c.host == host,
                                                            t.hosts.c.status != HostStatus.TEMPLATE)).scalar()
            return None if v is None else int(v)

    def host_groups_of(self, hostids: Iterable[int]) -> dict[int, set[int]]:
        ids = list(hostids)
        out: dict[int, set[int]] = {i: set() for i in ids}
        if ids:
            with reads.connect(self.engine) as c:
                for hid, gid in c.execute(sa.select(t.hosts_groups.c.hostid, t.hosts_groups.c.groupid)
                                          .where(t.hosts_groups.c.hostid.in_(ids))):
                    out[int(hid)].add(int(gid))
        return out

    def rename_host(self, hostid: int, new: str) -> None:
        with self.engine.begin() as c:
            if c.execute(sa.select(t.hosts.c.hostid).where(t.hosts.c.host == new, t.hosts.c.hostid != hostid)).first():
                raise ConfigError(f"host: a host or template named {new!r} exists already")
            c.execute(sa.update(t.hosts).where(t.hosts.c.hostid == hostid).values(host=new))
            c.execute(sa.update(t.config_version).values(version=t.config_version.c.version + 1))

    def set_status(self, hostids: Sequence[int], enabled: bool) -> int:
        """Enable (monitor) or disable hosts; templates are left alone. Returns how many changed."""
        with self.engine.begin() as c:
            n = c.execute(sa.update(t.hosts).where(t.hosts.c.hostid.in_(list(hostids)),
                                                   t.hosts.c.status != HostStatus.TEMPLATE)
                          .values(status=int(HostStatus.MONITORED if enabled else HostStatus.DISABLED))).rowcount
            c.execute(sa.update(t.config_version).values(version=t.config_version.c.version + 1))
        return int(n)

    def set_agent_interface(self, hostid: int, ip: str, dns: str, port: str) -> None:
        """The host's main agent interface (type 1): set, or removed when ip and dns are both empty."""
        with self.engine.begin() as c:
            c.execute(sa.delete(t.interfaces).where(t.interfaces.c.hostid == hostid, t.interfaces.c.type == 1))
            if ip or dns:
                c.execute(sa.insert(t.interfaces).values(hostid=hostid, type=1, main=1, useip=1 if ip else 0,
                                                         ip=ip, dns=dns, port=port or "10050"))
            c.execute(sa.update(t.config_version).values(version=t.config_version.c.version + 1))

    def availability_counts(self, scope: Scope = Scope()) -> dict[int, int]:
        h = t.hosts.c
        avail = sa.func.coalesce(t.host_availability.c.available, 0)
        q = (sa.select(avail, sa.func.count()).select_from(
            t.hosts.outerjoin(t.host_availability, t.host_availability.c.hostid == h.hostid))
            .where(h.status == HostStatus.MONITORED, scope.hosts_clause(h.hostid)).group_by(avail))
        with reads.connect(self.engine) as c:
            return {int(a): int(n) for a, n in c.execute(q)}

    # --- items ---------------------------------------------------------------------------------------------

    def items(self, scope: Scope = Scope(), *, hostids: Sequence[int] | None = None, groupid: int | None = None,
              search: str = "", tag: tuple[str, str | None] | None = None, itemids: Sequence[int] | None = None,
              keys: Sequence[str] | None = None, numeric: bool = False, limit: int | None = 100,
              offset: int = 0, with_tags: bool = True) -> Page:
        i, h = t.items.c, t.hosts.c
        # plain and discovered items: not discovery rules (their values are not history) or prototypes
        where = [h.status != HostStatus.TEMPLATE, scope.hosts_clause(h.hostid), i.flags.in_([0, 4])]
        if hostids is not None:
            where.append(i.hostid.in_(list(hostids)))
        if itemids is not None:
            where.append(i.itemid.in_(list(itemids)))
        if groupid is not None:
            where.append(h.hostid.in_(sa.select(t.hosts_groups.c.hostid).where(t.hosts_groups.c.groupid == groupid)))
        if search:
            where.append(sa.or_(_search(i.name, search), _search(i.key_, search)))
        if tag is not None:
            tq = sa.select(t.item_tags.c.itemid).where(t.item_tags.c.tag == tag[0])
            if tag[1] is not None:
                tq = tq.where(t.item_tags.c.value == tag[1])
            where.append(i.itemid.in_(tq))
        if keys is not None:
            where.append(i.key_.in_(list(keys)))
        if numeric:
            where.append(i.value_type.in_([int(ValueType.FLOAT), int(ValueType.UNSIGNED)]))
        q = (sa.select(t.items, h.host, h.name.label("host_name"))
             .join(t.hosts, h.hostid == i.hostid).where(*where).order_by(h.name, h.host, i.name, i.key_, i.itemid))
        with reads.connect(self.engine) as c:
            if limit is None and not offset:
                rows = c.execute(q).all()
                total = len(rows)
            elif limit is None:
                total = int(c.execute(sa.select(sa.func.count()).select_from(
                    sa.select(i.itemid).join(t.hosts, h.hostid == i.hostid).where(*where).subquery())).scalar() or 0)
                rows = c.execute(q.offset(offset)).all()
            else:
                key = (scope, _tuple(hostids), _tuple(itemids), groupid, search, tag, _tuple(keys), numeric)
                version = int(c.execute(sa.select(t.config_version.c.version)).scalar() or 0)
                per_host = self._item_counts.get(key, version, lambda: self._items_per_host(c, where))
                total, q = self._page_of_hosts(per_host, q, limit, offset)
                rows = c.execute(q).all() if q is not None else []
            ids = [r.itemid for r in rows]
            tags: dict[int, list[tuple[str, str]]] = {}
            if ids and with_tags:
                for r in c.execute(sa.select(t.item_tags).where(t.item_tags.c.itemid.in_(ids))
                                   .order_by(t.item_tags.c.tag, t.item_tags.c.value)):
                    tags.setdefault(r.itemid, []).append((r.tag, r.value))
            # only hosts whose items name a user macro need theirs (three queries saved on most pages)
            macros = self._macros(c, {r.hostid for r in rows if "{$" in r.key_ or "{$" in (r.name or "")})
            out = []
            for r in rows:
                m = macros.get(r.hostid, {})
                key = resolve_macros(r.key_, m)
                out.append(ItemRow(int(r.itemid), int(r.hostid), r.host, r.host_name or r.host, key,
                                   resolve_macros(r.name, m) or key, ItemType(r.type), ValueType(r.value_type),
                                   r.units, r.delay, int(r.status), r.templateid is not None,
                                   tuple(tags.get(r.itemid, ())), r.description))
            return Page(total, out)

    @staticmethod
    def _items_per_host(c: Connection, where: list[sa.ColumnElement[bool]]) -> list[tuple[int, int]]:
        """(hostid, matching items) of every host with any, in the list's host order."""
        i, h = t.items.c, t.hosts.c
        return [(int(a), int(n)) for a, n in c.execute(
            sa.select(h.hostid, sa.func.count()).select_from(t.items.join(t.hosts, h.hostid == i.hostid))
            .where(*where).group_by(h.hostid, h.name, h.host).order_by(h.name, h.host))]

    @staticmethod
    def _page_of_hosts(per_host: list[tuple[int, int]], q: sa.Select, limit: int,
                       offset: int) -> tuple[int, sa.Select | None]:
        """The total and the query of one page of items, without sorting every matching item: the list is
        ordered by host first (host names are unique), so the count per host gives the total and tells
        which few hosts the page falls on; only their items are then read and sorted."""
        total = sum(int(n) for _, n in per_host)
        before, covered, chosen = 0, 0, []  # items on the hosts before the page's first; items on the chosen
        for hostid, n in per_host:
            if not chosen and before + n <= offset:
                before += n
                continue
            chosen.append(int(hostid))
            covered += n
            if before + covered >= offset + limit:
                break
        if not chosen or limit == 0:
            return total, None
        return total, q.where(t.items.c.hostid.in_(chosen)).limit(limit).offset(offset - before)

    def item(self, itemid: int) -> ItemRow | None:
        rows = self.items(itemids=[itemid], limit=1).rows
        return rows[0] if rows else None

    def triggers_of_items(self, itemids: Sequence[int]) -> dict[int, list[tuple[str, str, int]]]:
        """itemid -> (name, expression, severity) of the enabled triggers that read the item."""
        out: dict[int, list[tuple[str, str, int]]] = {}
        if not itemids:
            return out
        q = (sa.select(t.trigger_items.c.itemid, t.triggers.c.description, t.triggers.c.expression,
                       t.triggers.c.priority)
             .join(t.triggers, t.triggers.c.triggerid == t.trigger_items.c.triggerid)
             .where(t.trigger_items.c.itemid.in_(list(itemids)), t.triggers.c.status == 0)
             .order_by(t.triggers.c.priority.desc()))
        with reads.connect(self.engine) as c:
            for r in c.execute(q):
                out.setdefault(int(r.itemid), []).append((r.description, r.expression, int(r.priority)))
        return out

    def item_tags(self, scope: Scope = Scope()) -> list[tuple[str, str]]:
        q = (sa.select(t.item_tags.c.tag, t.item_tags.c.value).distinct()
             .join(t.items, t.items.c.itemid == t.item_tags.c.itemid)
             .join(t.hosts, t.hosts.c.hostid == t.items.c.hostid)
             .where(t.hosts.c.status != HostStatus.TEMPLATE, scope.hosts_clause(t.hosts.c.hostid))
             .order_by(t.item_tags.c.tag, t.item_tags.c.value))
        with reads.connect(self.engine) as c:
            return [(a, b) for a, b in c.execute(q)]

    def _macros(self, c: Connection, hostids: set[int]) -> dict[int, dict[str, str]]:
        """Per host: global macros, overridden by its templates', overridden by its own."""
        if not hostids:
            return {}
        glob = dict(c.execute(sa.select(t.global_macros.c.macro, t.global_macros.c.value)).all())
        links: dict[int, list[int]] = {}
        for hid, tid in c.execute(sa.select(t.hosts_templates.c.hostid, t.hosts_templates.c.templateid)
                                  .where(t.hosts_templates.c.hostid.in_(sorted(hostids)))):
            links.setdefault(hid, []).append(tid)
        wanted = set(hostids) | {x for v in links.values() for x in v}
        own: dict[int, dict[str, str]] = {}
        for r in c.execute(sa.select(t.host_macros).where(t.host_macros.c.hostid.in_(sorted(wanted)))):
            own.setdefault(r.hostid, {})[r.macro] = r.value
        out = {}
        for hid in hostids:
            m = dict(glob)
            for tid in links.get(hid, []):
                m.update(own.get(tid, {}))
            m.update(own.get(hid, {}))
            out[hid] = m
        return out

    def host_tags(self, hostid: int) -> list[tuple[str, str]]:
        with reads.connect(self.engine) as c:
            return [(a, b) for a, b in c.execute(sa.select(t.host_tags.c.tag, t.host_tags.c.value)
                                                 .where(t.host_tags.c.hostid == hostid)
                                                 .order_by(t.host_tags.c.hosttagid))]
