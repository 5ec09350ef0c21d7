"""Reading and changing the configuration: all its SQL lives here (SQLAlchemy Core).

Every change runs in one transaction and bumps `config_version`, which running servers poll to
reload their configuration cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from vigil.server.config import tables as t
from vigil.server.config.durations import seconds
from vigil.server.config.model import (
    ConfigDoc,
    ConfigError,
    HostSpec,
    InterfaceSpec,
    ItemSpec,
    PollSpec,
    PreprocStep,
    TemplateSpec,
    interface_to_doc,
    item_to_doc,
    resolve_macros,
    tls_accept_to_doc,
)
from vigil.server.config.tables import HostStatus, ItemType, ValueType


@dataclass
class ImportReport:
    hosts_created: int = 0
    hosts_updated: int = 0
    templates_created: int = 0
    templates_updated: int = 0
    items_created: int = 0
    items_updated: int = 0
    items_deleted: int = 0

    def __str__(self) -> str:
        return (
            f"templates: {self.templates_created} created, {self.templates_updated} updated; "
            f"hosts: {self.hosts_created} created, {self.hosts_updated} updated; "
            f"items: {self.items_created} created, {self.items_updated} updated, {self.items_deleted} deleted"
        )


@dataclass(frozen=True, slots=True)
class ItemRef:
    itemid: int
    hostid: int
    type: ItemType
    value_type: ValueType
    delay: int
    key: str  # with the host's macros resolved
    key_orig: str = ""  # as configured, macros and all


@dataclass(frozen=True, slots=True)
class HostRef:
    hostid: int
    host: str
    enabled: bool
    tls_accept: int = 1  # Zabbix's flags: 1 unencrypted, 4 TLS with a certificate
    tls_issuer: str = ""  # '' : any issuer the CA file trusts
    tls_subject: str = ""


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What ingest needs, read at once: hosts by name, items by (host, resolved key) and (host, key as configured)."""

    version: int
    hosts: dict[str, HostRef]
    items: dict[tuple[str, str], ItemRef]
    active: dict[int, list[ItemRef]]  # hostid -> its enabled agent-active items
    max_history: int = 0  # longest history retention of the enabled items, in seconds (0: none known)


def _tls_row(h: HostSpec) -> dict[str, Any]:
    """The TLS columns the document sets (absent ones stay as they are)."""
    row = {"tls_accept": h.tls_accept, "tls_issuer": h.tls_issuer, "tls_subject": h.tls_subject}
    return {k: v for k, v in row.items() if v is not None}


def _item_row(it: ItemSpec) -> dict[str, Any]:
    return {
        "key_": it.key, "name": it.name, "type": int(it.type), "value_type": int(it.value_type),
        "units": it.units, "delay": it.delay, "history": it.history, "trends": it.trends,
        "status": 0 if it.enabled else 1, "description": it.description,
    }


# --- Pollers: interfaces, the poll fields of items, preprocessing steps, availability and state. ----
# (A mixin of ConfigRepo, kept apart so the SQL of each issue stays in its own block.)

_POLL_TEXT = ("params", "url", "posts", "status_codes", "ssl_cert_file", "ssl_key_file", "username", "password",
              "timeout")


def poll_row(c: Connection, hostid: int, it: ItemSpec) -> dict[str, Any]:
    """The items columns of `it.poll`; its interface_ref resolved to one of the host's interfaces."""
    import json

    p = it.poll
    interfaceid = None
    if p.interface_ref:
        interfaceid = c.execute(sa.select(t.interfaces.c.interfaceid).where(
            t.interfaces.c.hostid == hostid, t.interfaces.c.ref == p.interface_ref)).scalar()
        if interfaceid is None:
            raise ConfigError(f"item {it.key!r}: interface_ref {p.interface_ref!r} is not an interface of the host")
    return {
        "interfaceid": interfaceid, "master_itemid": None, "params": p.params, "url": p.url,
        "query_fields": json.dumps(p.query_fields),
        "request_method": p.method, "posts": p.body, "headers": json.dumps(p.headers),
        "status_codes": p.status_codes, "follow_redirects": int(p.follow_redirects),
        "verify_peer": int(p.verify_peer), "verify_host": int(p.verify_host), "ssl_cert_file": p.ssl_cert_file,
        "ssl_key_file": p.ssl_key_file, "authtype": p.auth, "username": p.username, "password": p.password,
        "retrieve_mode": p.retrieve_mode, "timeout": p.timeout,
    }


def _preproc_of(c: Connection, itemids: list[int]) -> dict[int, list[PreprocStep]]:
    out: dict[int, list[PreprocStep]] = {}
    for i in range(0, len(itemids), 500):
        q = (sa.select(t.item_preproc).where(t.item_preproc.c.itemid.in_(itemids[i:i + 500]))
             .order_by(t.item_preproc.c.itemid, t.item_preproc.c.step))
        for r in c.execute(q):
            out.setdefault(r.itemid, []).append(PreprocStep(r.type, r.params, r.error_handler,
                                                            r.error_handler_params))
    return out


def poll_spec(c: Connection, rows: list[Any]) -> dict[int, PollSpec]:
    """PollSpec per item row (rows of the items table)."""
    import json

    itemids = [r.itemid for r in rows]
    steps = _preproc_of(c, itemids)
    masters = {r.master_itemid for r in rows if r.master_itemid is not None}
    keys = dict(c.execute(sa.select(t.items.c.itemid, t.items.c.key_).where(t.items.c.itemid.in_(masters))).all()) \
        if masters else {}
    ifaces = {r.interfaceid for r in rows if r.interfaceid is not None}
    refs = dict(c.execute(sa.select(t.interfaces.c.interfaceid, t.interfaces.c.ref)
                          .where(t.interfaces.c.interfaceid.in_(ifaces))).all()) if ifaces else {}
    return {r.itemid: PollSpec(
        interface_ref=refs.get(r.interfaceid, "") if r.interfaceid is not None else "",
        master_item=keys.get(r.master_itemid, ""), params=r.params, preprocessing=steps.get(r.itemid, []),
        url=r.url, query_fields=[tuple(x) for x in json.loads(r.query_fields or "[]")], method=r.request_method,
        headers=[tuple(x) for x in json.loads(r.headers or "[]")], body=r.posts, status_codes=r.status_codes,
        follow_redirects=bool(r.follow_redirects), verify_peer=bool(r.verify_peer), verify_host=bool(r.verify_host),
        ssl_cert_file=r.ssl_cert_file, ssl_key_file=r.ssl_key_file, auth=r.authtype, username=r.username,
        password=r.password, retrieve_mode=r.retrieve_mode, timeout=r.timeout,
    ) for r in rows}


@dataclass(frozen=True, slots=True)
class PollInterface:
    interfaceid: int
    hostid: int
    type: int  # InterfaceType
    address: str  # the IP, or the DNS name when the interface does not use its IP
    port: int
    details: dict[str, str]  # SNMP/IPMI settings, user macros resolved
    available: int = 0  # Availability
    error: str = ""
    errors_from: int = 0
    disable_until: int = 0


@dataclass(frozen=True, slots=True)
class PollItem:
    """An enabled item of a monitored host that the server itself collects, everything resolved."""

    itemid: int
    hostid: int
    host: str
    type: ItemType
    value_type: ValueType
    key: str  # user macros resolved
    delay: int  # seconds; 0 for dependent items
    interface: PollInterface | None
    poll: PollSpec  # user macros and {HOST.*} resolved in the HTTP fields
    master_itemid: int | None = None
    error: str = ""  # a configuration problem that makes the item not supported (unresolved macro...)


@dataclass(frozen=True, slots=True)
class PollConfig:
    version: int
    items: dict[int, PollItem]
    interfaces: dict[int, PollInterface]
    dependents: dict[int, list[int]]  # master itemid -> its dependent items, in itemid order


POLLED_TYPES = (ItemType.AGENT, ItemType.SIMPLE, ItemType.SNMP, ItemType.IPMI, ItemType.JMX, ItemType.HTTP_AGENT,
                ItemType.DEPENDENT, ItemType.CALCULATED)


class PollerConfig:
    engine: Engine

    def set_interfaces(self, c: Connection, hostid: int, specs: list[InterfaceSpec]) -> None:
        """Exactly these interfaces: matched to the existing ones by interface_ref (keeping their
        availability), others added; ones no longer listed go (their items fall back to the main one)."""
        import json

        have = {r.ref: r.interfaceid for r in c.execute(sa.select(t.interfaces.c.ref, t.interfaces.c.interfaceid)
                                                        .where(t.interfaces.c.hostid == hostid))}
        keep = []
        for spec in specs:
            useip = spec.useip
            values = {"type": spec.type, "main": int(spec.main), "useip": int(useip),
                      "ip": spec.address if useip else "", "dns": "" if useip else spec.address,
                      "port": spec.port, "details": json.dumps(spec.details, sort_keys=True), "ref": spec.ref}
            if spec.ref in have:
                c.execute(sa.update(t.interfaces).where(t.interfaces.c.interfaceid == have[spec.ref]).values(**values))
                keep.append(have[spec.ref])
            else:
                keep.append(c.execute(sa.insert(t.interfaces).values(hostid=hostid, **values)).inserted_primary_key[0])
        c.execute(sa.delete(t.interfaces).where(t.interfaces.c.hostid == hostid,
                                                t.interfaces.c.interfaceid.not_in(keep)))

    def interfaces_of(self, c: Connection, hostid: int) -> list[InterfaceSpec]:
        import json

        rows = c.execute(sa.select(t.interfaces).where(t.interfaces.c.hostid == hostid)
                         .order_by(t.interfaces.c.interfaceid))
        return [InterfaceSpec(type=r.type, address=r.ip if r.useip else r.dns, port=r.port, main=bool(r.main),
                              ref=r.ref, details=json.loads(r.details or "{}")) for r in rows]

    def set_preprocessing(self, c: Connection, itemid: int, steps: list[PreprocStep]) -> None:
        c.execute(sa.delete(t.item_preproc).where(t.item_preproc.c.itemid == itemid))
        if steps:
            c.execute(sa.insert(t.item_preproc), [
                {"itemid": itemid, "step": i + 1, "type": s.type, "params": s.params,
                 "error_handler": s.error_handler, "error_handler_params": s.error_handler_params}
                for i, s in enumerate(steps)])

    def resolve_masters(self, c: Connection, hostid: int, items: list[ItemSpec], where: str) -> None:
        """Point dependent items at their master (an item of the same host); refuse a missing one or a loop."""
        deps = [(i, it) for i, it in enumerate(items) if it.type == ItemType.DEPENDENT]
        if not deps:
            return
        ids = dict(c.execute(sa.select(t.items.c.key_, t.items.c.itemid).where(t.items.c.hostid == hostid)).all())
        for i, it in deps:
            master = ids.get(it.poll.master_item)
            if master is None:
                raise ConfigError(f"{where}[{i}].master_item: no item {it.poll.master_item!r} on this host")
            if master == ids[it.key]:
                raise ConfigError(f"{where}[{i}].master_item: an item cannot be its own master")
            c.execute(sa.update(t.items).where(t.items.c.itemid == ids[it.key]).values(master_itemid=master))
        masters = dict(c.execute(sa.select(t.items.c.itemid, t.items.c.master_itemid)
                                 .where(t.items.c.hostid == hostid, t.items.c.master_itemid.is_not(None))).all())
        for i, it in deps:
            seen, cur = {ids[it.key]}, masters.get(ids[it.key])
            while cur is not None:
                if cur in seen:
                    raise ConfigError(f"{where}[{i}].master_item: {it.poll.master_item!r} depends on this item "
                                      "in turn (a loop of dependent items)")
                seen.add(cur)
                cur = masters.get(cur)
            if len(seen) > 4:
                raise ConfigError(f"{where}[{i}].master_item: dependent items nest at most 3 levels deep")

    # --- what the pollers read and write ---------------------------------------------------------------

    def poll_config(self) -> PollConfig:
        import json

        from vigil.server.config.tables import ITEM_INTERFACE, InterfaceType

        with self.engine.connect() as c:
            version = int(c.execute(sa.select(t.config_version.c.version)).scalar() or 0)
            macros = ConfigRepo._effective_macros(self, c)  # type: ignore[arg-type]
            hosts = {r.hostid: (r.host, r.name) for r in c.execute(
                sa.select(t.hosts.c.hostid, t.hosts.c.host, t.hosts.c.name)
                .where(t.hosts.c.status == HostStatus.MONITORED))}
            interfaces: dict[int, PollInterface] = {}
            main: dict[tuple[int, int], PollInterface] = {}
            for r in c.execute(sa.select(t.interfaces).order_by(t.interfaces.c.interfaceid)):
                if r.hostid not in hosts:
                    continue
                m = macros.get(r.hostid, {})
                port = resolve_macros(r.port, m)
                details = {k: resolve_macros(str(v), m) for k, v in json.loads(r.details or "{}").items()}
                itf = PollInterface(r.interfaceid, r.hostid, r.type, resolve_macros(r.ip if r.useip else r.dns, m),
                                    int(port) if port.isdigit() else 0, details, r.available, r.error,
                                    r.errors_from, r.disable_until)
                interfaces[itf.interfaceid] = itf
                if r.main:
                    main[(r.hostid, r.type)] = itf
            rows = c.execute(sa.select(t.items).where(t.items.c.hostid.in_(list(hosts)), t.items.c.status == 0,
                                                      t.items.c.type.in_([int(x) for x in POLLED_TYPES]))).all() \
                if hosts else []
            specs = poll_spec(c, rows)
        items: dict[int, PollItem] = {}
        dependents: dict[int, list[int]] = {}
        for r in rows:
            m = macros.get(r.hostid, {})
            kind = ItemType(r.type)
            error = ""
            itf = interfaces.get(r.interfaceid) if r.interfaceid is not None else None
            if itf is None and kind in ITEM_INTERFACE:
                itf = main.get((r.hostid, int(ITEM_INTERFACE[kind])))
                if itf is None:
                    error = (f"the host has no {InterfaceType(ITEM_INTERFACE[kind]).name.lower()} interface "
                             "to poll this item through: add one under the host's interfaces")
            elif itf is None and kind in (ItemType.SIMPLE, ItemType.HTTP_AGENT):  # for {HOST.CONN} and the like
                itf = next((main[(r.hostid, int(k))] for k in InterfaceType if (r.hostid, int(k)) in main), None)
            host, name = hosts[r.hostid]
            delay = 0
            if kind != ItemType.DEPENDENT:
                try:
                    delay = seconds(resolve_macros(r.delay, m))
                except ValueError:
                    error = error or f"the update interval {r.delay!r} does not resolve to a duration"
                    delay = 60
            spec = specs[r.itemid]
            ctx = dict(m)
            ctx.update({"{HOST.HOST}": host, "{HOST.NAME}": name or host,
                        "{HOST.IP}": itf.address if itf else "", "{HOST.DNS}": itf.address if itf else "",
                        "{HOST.CONN}": itf.address if itf else "", "{HOST.PORT}": str(itf.port) if itf else "",
                        "{ITEM.KEY}": resolve_macros(r.key_, m)})
            spec = _resolve_poll(spec, ctx)
            items[r.itemid] = PollItem(r.itemid, r.hostid, host, kind, ValueType(r.value_type),
                                       resolve_macros(r.key_, m), delay, itf, spec, r.master_itemid, error)
            if r.master_itemid is not None:
                dependents.setdefault(r.master_itemid, []).append(r.itemid)
        for deps in dependents.values():
            deps.sort()
        return PollConfig(version, items, interfaces, dependents)

    def item_states(self) -> dict[int, tuple[int, str]]:
        with self.engine.connect() as c:
            return {r.itemid: (r.state, r.error) for r in c.execute(sa.select(t.item_state))}

    def save_item_states(self, rows: list[tuple[int, int, str, int]]) -> None:
        """(itemid, state 0 normal / 1 not supported, error, clock) for items whose state changed."""
        if not rows:
            return
        with self.engine.begin() as c:
            live = set(c.execute(sa.select(t.items.c.itemid).where(
                t.items.c.itemid.in_([r[0] for r in rows]))).scalars())
            rows = [r for r in rows if r[0] in live]  # an item deleted meanwhile
            if not rows:
                return
            c.execute(sa.delete(t.item_state).where(t.item_state.c.itemid.in_([r[0] for r in rows])))
            c.execute(sa.insert(t.item_state), [{"itemid": i, "state": s, "error": e[:2048], "clock": k}
                                                for i, s, e, k in rows])

    def save_interface_states(self, rows: list[tuple[int, int, int, int, str, int, int]]) -> None:
        """(interfaceid, hostid, type, available, error, errors_from, disable_until) of interfaces whose
        state changed; an agent interface's state is the host's agent availability too."""
        import time

        from vigil.server.config.tables import InterfaceType

        if not rows:
            return
        with self.engine.begin() as c:
            for iid, hostid, kind, available, error, errors_from, disable_until in rows:
                n = c.execute(sa.update(t.interfaces).where(t.interfaces.c.interfaceid == iid).values(
                    available=available, error=error[:2048], errors_from=errors_from,
                    disable_until=disable_until)).rowcount
                if n and kind == InterfaceType.AGENT:
                    c.execute(sa.delete(t.host_availability).where(t.host_availability.c.hostid == hostid))
                    c.execute(sa.insert(t.host_availability).values(hostid=hostid, available=available,
                                                                    error=error[:2048], lastaccess=int(time.time())))


def _resolve_poll(p: PollSpec, ctx: dict[str, str]) -> PollSpec:
    import dataclasses
    import re

    def r(text: str) -> str:
        if "{" not in text:
            return text
        return re.sub(r"\{\$[A-Z0-9_.]+\}|\{HOST\.[A-Z]+\}|\{ITEM\.KEY\}", lambda m: ctx.get(m.group(), m.group()),
                      text)

    changes: dict[str, Any] = {name: r(getattr(p, name)) for name in
                               ("url", "body", "status_codes", "username", "password", "timeout", "params",
                                "ssl_cert_file", "ssl_key_file")}
    changes["query_fields"] = [(r(n), r(v)) for n, v in p.query_fields]
    changes["headers"] = [(r(n), r(v)) for n, v in p.headers]
    return dataclasses.replace(p, **changes)


class ConfigRepo(PollerConfig):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- changes --------------------------------------------------------------------------------

    def apply(self, doc: ConfigDoc, *, delete_missing: bool = False) -> ImportReport:
        """Create or update everything in the document in one transaction."""
        report = ImportReport()
        with self.engine.begin() as c:
            for g in doc.host_groups:
                self._group(c, g)
            for i, tpl in enumerate(doc.templates):
                self._apply_template(c, tpl, report, f"templates[{i}]")
            for i, h in enumerate(doc.hosts):
                self._apply_host(c, h, report, delete_missing, f"hosts[{i}]")
            self._bump(c)
        return report

    def _bump(self, c: Connection) -> None:
        c.execute(sa.update(t.config_version).where(t.config_version.c.id == 1)
                  .values(version=t.config_version.c.version + 1))

    def _group(self, c: Connection, name: str) -> int:
        gid = c.execute(sa.select(t.host_groups.c.groupid).where(t.host_groups.c.name == name)).scalar()
        if gid is None:
            gid = c.execute(sa.insert(t.host_groups).values(name=name)).inserted_primary_key[0]
        return int(gid)

    def _set_groups(self, c: Connection, hostid: int, groups: list[str]) -> None:
        c.execute(sa.delete(t.hosts_groups).where(t.hosts_groups.c.hostid == hostid))
        for gid in {self._group(c, g) for g in groups}:
            c.execute(sa.insert(t.hosts_groups).values(hostid=hostid, groupid=gid))

    def _set_macros(self, c: Connection, hostid: int, macros: dict[str, str]) -> None:
        c.execute(sa.delete(t.host_macros).where(t.host_macros.c.hostid == hostid))
        for m, v in macros.items():
            c.execute(sa.insert(t.host_macros).values(hostid=hostid, macro=m, value=v))

    def _upsert_host(self, c: Connection, name: str, values: dict[str, Any], template: bool,
                     where: str) -> tuple[int, bool]:
        row = c.execute(sa.select(t.hosts.c.hostid, t.hosts.c.status).where(t.hosts.c.host == name)).first()
        if row is not None:
            if (row.status == HostStatus.TEMPLATE) != template:
                what = "a template" if row.status == HostStatus.TEMPLATE else "a host"
                raise ConfigError(f"{where}: {name!r} is the name of {what} already")
            c.execute(sa.update(t.hosts).where(t.hosts.c.hostid == row.hostid).values(**values))
            return int(row.hostid), False
        hid = c.execute(sa.insert(t.hosts).values(host=name, **values)).inserted_primary_key[0]
        return int(hid), True

    def _set_tags(self, c: Connection, itemid: int, tags: list[tuple[str, str]]) -> None:
        c.execute(sa.delete(t.item_tags).where(t.item_tags.c.itemid == itemid))
        if tags:
            c.execute(sa.insert(t.item_tags), [{"itemid": itemid, "tag": k, "value": v} for k, v in tags])

    def _upsert_item(
        self, c: Connection, hostid: int, it: ItemSpec, report: ImportReport, templateid: int | None = None
    ) -> int:
        row = c.execute(
            sa.select(t.items.c.itemid, t.items.c.templateid)
            .where(t.items.c.hostid == hostid, t.items.c.key_ == it.key)
        ).first()
        values = _item_row(it) | {"templateid": templateid} | poll_row(c, hostid, it)
        if row is None:
            itemid = int(c.execute(sa.insert(t.items).values(hostid=hostid, **values)).inserted_primary_key[0])
            report.items_created += 1
        else:
            if templateid is None and row.templateid is not None:
                raise ConfigError(f"item {it.key!r} comes from a linked template: change it in the template")
            if templateid is not None and row.templateid not in (None, templateid):
                raise ConfigError(f"item {it.key!r} already comes from another linked template")
            itemid = int(row.itemid)
            c.execute(sa.update(t.items).where(t.items.c.itemid == itemid).values(**values))
            report.items_updated += 1
        self._set_tags(c, itemid, it.tags)
        self.set_preprocessing(c, itemid, it.poll.preprocessing)
        return itemid

    def _apply_template(self, c: Connection, tpl: TemplateSpec, report: ImportReport, where: str) -> None:
        tid, created = self._upsert_host(
            c, tpl.template,
            {"name": tpl.name or tpl.template, "status": int(HostStatus.TEMPLATE), "description": tpl.description},
            template=True, where=f"{where}.template",
        )
        if created:
            report.templates_created += 1
        else:
            report.templates_updated += 1
        self._set_groups(c, tid, tpl.groups or ["Templates"])
        self._set_macros(c, tid, tpl.macros)
        keys = {it.key for it in tpl.items}
        gone = c.execute(sa.select(t.items.c.itemid)
                         .where(t.items.c.hostid == tid, t.items.c.key_.not_in(keys))).scalars().all()
        if gone:
            # Copies on linked hosts go with them (ON DELETE CASCADE on items.templateid).
            report.items_deleted += c.execute(sa.delete(t.items).where(t.items.c.itemid.in_(gone))).rowcount
        for it in tpl.items:
            self._upsert_item(c, tid, it, report)
        self.resolve_masters(c, tid, tpl.items, f"{where}.items")
        linked = c.execute(sa.select(t.hosts_templates.c.hostid).where(t.hosts_templates.c.templateid == tid)).scalars()
        for hostid in list(linked):
            self._copy_template_items(c, hostid, tid, report)

    def _copy_template_items(self, c: Connection, hostid: int, templateid: int, report: ImportReport) -> None:
        copied = self._items_of(c, templateid)
        for it, titemid in copied:
            self._upsert_item(c, hostid, it, report, templateid=titemid)
        self.resolve_masters(c, hostid, [it for it, _ in copied], "template item")

    def _items_of(self, c: Connection, hostid: int, own_only: bool = False) -> list[tuple[ItemSpec, int]]:
        q = sa.select(t.items).where(t.items.c.hostid == hostid).order_by(t.items.c.itemid)
        if own_only:
            q = q.where(t.items.c.templateid.is_(None))
        rows = c.execute(q).all()
        tags: dict[int, list[tuple[str, str]]] = {}
        if rows:
            for r in c.execute(sa.select(t.item_tags).where(t.item_tags.c.itemid.in_([r.itemid for r in rows]))
                               .order_by(t.item_tags.c.itemtagid)):
                tags.setdefault(r.itemid, []).append((r.tag, r.value))
        polls = poll_spec(c, rows)
        return [
            (ItemSpec(key=r.key_, type=ItemType(r.type), value_type=ValueType(r.value_type), name=r.name,
                      units=r.units, delay=r.delay, history=r.history, trends=r.trends, enabled=r.status == 0,
                      description=r.description, tags=tags.get(r.itemid, []), poll=polls[r.itemid]), r.itemid)
            for r in rows
        ]

    def _template_id(self, c: Connection, name: str, where: str) -> int:
        row = c.execute(sa.select(t.hosts.c.hostid, t.hosts.c.status).where(t.hosts.c.host == name)).first()
        if row is None or row.status != HostStatus.TEMPLATE:
            raise ConfigError(f"{where}: no template named {name!r} (import it first or in the same file)")
        return int(row.hostid)

    def _apply_host(self, c: Connection, h: HostSpec, report: ImportReport, delete_missing: bool,
                    where: str) -> None:
        hid, created = self._upsert_host(
            c, h.host,
            {"name": h.name or h.host, "status": int(HostStatus.MONITORED if h.enabled else HostStatus.DISABLED),
             "description": h.description, **_tls_row(h)},
            template=False, where=f"{where}.host",
        )
        if created:
            report.hosts_created += 1
        else:
            report.hosts_updated += 1
        if h.groups or created:
            self._set_groups(c, hid, h.groups or ["Discovered hosts"])
        if h.macros is not None:
            self._set_macros(c, hid, h.macros)
        if h.interfaces is not None:
            self.set_interfaces(c, hid, h.interfaces)
        if h.templates is not None:
            self.set_templates(c, hid, [self._template_id(c, n, f"{where}.templates[{i}]")
                                        for i, n in enumerate(h.templates)], report)
        for i, it in enumerate(h.items):
            try:
                self._upsert_item(c, hid, it, report)
            except ConfigError as e:
                raise ConfigError(f"{where}.items[{i}].key: {e}") from None
        self.resolve_masters(c, hid, h.items, f"{where}.items")
        if delete_missing:
            keys = {it.key for it in h.items}
            report.items_deleted += c.execute(
                sa.delete(t.items).where(t.items.c.hostid == hid, t.items.c.templateid.is_(None),
                                         t.items.c.key_.not_in(keys))
            ).rowcount

    def set_templates(self, c: Connection, hostid: int, templateids: list[int], report: ImportReport) -> None:
        """Link exactly these templates: new ones bring their items, dropped ones take theirs away."""
        have = set(c.execute(sa.select(t.hosts_templates.c.templateid)
                             .where(t.hosts_templates.c.hostid == hostid)).scalars())
        want = set(templateids)
        for tid in have - want:
            titems = sa.select(t.items.c.itemid).where(t.items.c.hostid == tid).scalar_subquery()
            report.items_deleted += c.execute(
                sa.delete(t.items).where(t.items.c.hostid == hostid, t.items.c.templateid.in_(titems))
            ).rowcount
            c.execute(sa.delete(t.hosts_templates).where(t.hosts_templates.c.hostid == hostid,
                                                         t.hosts_templates.c.templateid == tid))
        for tid in templateids:
            if tid not in have:
                c.execute(sa.insert(t.hosts_templates).values(hostid=hostid, templateid=tid))
            self._copy_template_items(c, hostid, tid, report)

    def link_template(self, host: str, template: str, *, link: bool = True) -> ImportReport:
        report = ImportReport()
        with self.engine.begin() as c:
            hid = c.execute(sa.select(t.hosts.c.hostid).where(t.hosts.c.host == host,
                                                              t.hosts.c.status != HostStatus.TEMPLATE)).scalar()
            if hid is None:
                raise ConfigError(f"host {host!r} not found")
            tid = self._template_id(c, template, "template")
            have = list(c.execute(sa.select(t.hosts_templates.c.templateid)
                                  .where(t.hosts_templates.c.hostid == hid)).scalars())
            want = sorted(set(have) | {tid}) if link else [x for x in have if x != tid]
            self.set_templates(c, hid, want, report)
            self._bump(c)
        return report

    def upsert_item(self, host: str, item: ItemSpec) -> ImportReport:
        report = ImportReport()
        with self.engine.begin() as c:
            hid = c.execute(sa.select(t.hosts.c.hostid).where(t.hosts.c.host == host)).scalar()
            if hid is None:
                raise ConfigError(f"host {host!r} not found: create it first (vigil host create {host})")
            self._upsert_item(c, int(hid), item, report)
            self.resolve_masters(c, int(hid), [item], "item")
            if c.execute(sa.select(t.hosts.c.status).where(t.hosts.c.hostid == hid)).scalar() == HostStatus.TEMPLATE:
                for linked in list(c.execute(sa.select(t.hosts_templates.c.hostid)
                                             .where(t.hosts_templates.c.templateid == hid)).scalars()):
                    self._copy_template_items(c, linked, int(hid), report)
            self._bump(c)
        return report

    def host_exists(self, host: str) -> bool:
        with self.engine.connect() as c:
            return c.execute(sa.select(t.hosts.c.hostid).where(t.hosts.c.host == host)).first() is not None

    def delete_host(self, host: str) -> bool:
        with self.engine.begin() as c:
            n = c.execute(sa.delete(t.hosts).where(t.hosts.c.host == host)).rowcount
            self._bump(c)
        return n > 0

    # --- reads ----------------------------------------------------------------------------------

    def version(self) -> int:
        with self.engine.connect() as c:
            return int(c.execute(sa.select(t.config_version.c.version)).scalar() or 0)

    def export(self) -> dict[str, Any]:
        with self.engine.connect() as c:
            groups = dict(c.execute(sa.select(t.host_groups.c.groupid, t.host_groups.c.name)).all())
            membership: dict[int, list[str]] = {}
            for hid, gid in c.execute(sa.select(t.hosts_groups.c.hostid, t.hosts_groups.c.groupid)):
                membership.setdefault(hid, []).append(groups[gid])
            macros: dict[int, dict[str, str]] = {}
            for r in c.execute(sa.select(t.host_macros).order_by(t.host_macros.c.macro)):
                macros.setdefault(r.hostid, {})[r.macro] = r.value
            names = dict(c.execute(sa.select(t.hosts.c.hostid, t.hosts.c.host)).all())
            links: dict[int, list[str]] = {}
            for hid, tid in c.execute(sa.select(t.hosts_templates.c.hostid, t.hosts_templates.c.templateid)):
                links.setdefault(hid, []).append(names[tid])
            out: dict[str, Any] = {"host_groups": sorted(groups.values())}
            templates, hosts = [], []
            for r in c.execute(sa.select(t.hosts).order_by(t.hosts.c.host)):
                d: dict[str, Any] = {}
                if r.status == HostStatus.TEMPLATE:
                    d["template"] = r.host
                else:
                    d["host"] = r.host
                if r.name and r.name != r.host:
                    d["name"] = r.name
                d["groups"] = sorted(membership.get(r.hostid, []))
                if r.status == HostStatus.DISABLED:
                    d["status"] = "disabled"
                if r.description:
                    d["description"] = r.description
                if links.get(r.hostid):
                    d["templates"] = sorted(links[r.hostid])
                if macros.get(r.hostid):
                    d["macros"] = macros[r.hostid]
                if r.status != HostStatus.TEMPLATE:
                    if interfaces := self.interfaces_of(c, r.hostid):
                        d["interfaces"] = [interface_to_doc(x) for x in interfaces]
                    if r.tls_accept != 1:
                        d["tls_accept"] = tls_accept_to_doc(r.tls_accept)
                    for name in ("tls_issuer", "tls_subject"):
                        if getattr(r, name):
                            d[name] = getattr(r, name)
                d["items"] = [item_to_doc(it) for it, _ in self._items_of(c, r.hostid, own_only=True)]
                (templates if r.status == HostStatus.TEMPLATE else hosts).append(d)
            if templates:
                out["templates"] = templates
            out["hosts"] = hosts
            return out

    def snapshot(self) -> Snapshot:
        with self.engine.connect() as c:
            version = int(c.execute(sa.select(t.config_version.c.version)).scalar() or 0)
            hosts: dict[str, HostRef] = {}
            for r in c.execute(sa.select(t.hosts.c.hostid, t.hosts.c.host, t.hosts.c.status, t.hosts.c.tls_accept,
                                         t.hosts.c.tls_issuer, t.hosts.c.tls_subject)
                               .where(t.hosts.c.status != HostStatus.TEMPLATE)):
                hosts[r.host] = HostRef(r.hostid, r.host, r.status == HostStatus.MONITORED, r.tls_accept,
                                        r.tls_issuer, r.tls_subject)
            macros = self._effective_macros(c)
            items: dict[tuple[str, str], ItemRef] = {}
            active: dict[int, list[ItemRef]] = {}
            periods: dict[str | tuple[str, int], int] = {}
            max_history = 0
            q = (sa.select(t.items.c.itemid, t.items.c.hostid, t.items.c.key_, t.items.c.type,
                           t.items.c.value_type, t.items.c.delay, t.items.c.history, t.hosts.c.host)
                 .join(t.hosts, t.hosts.c.hostid == t.items.c.hostid)
                 .where(t.hosts.c.status == HostStatus.MONITORED, t.items.c.status == 0))
            for r in c.execute(q):
                key = resolve_macros(r.key_, macros.get(r.hostid, {}))
                try:
                    delay = seconds(resolve_macros(r.delay, macros.get(r.hostid, {})))
                except ValueError:
                    delay = 60
                ref = ItemRef(r.itemid, r.hostid, ItemType(r.type), ValueType(r.value_type), delay, key, r.key_)
                items[(r.host, key)] = ref
                if r.key_ != key:  # a value may come under either: agents report under key_orig, as for Zabbix
                    items.setdefault((r.host, r.key_), ref)
                # A period with a macro may mean something else on each host.
                period = (r.history, r.hostid) if "{$" in r.history else r.history
                if period not in periods:
                    try:
                        periods[period] = seconds(resolve_macros(r.history, macros.get(r.hostid, {})))
                    except ValueError:
                        periods[period] = 0  # an unresolved macro: retention keeps such items' data
                max_history = max(max_history, periods[period])
                if ref.type == ItemType.AGENT_ACTIVE:
                    active.setdefault(r.hostid, []).append(ref)
            return Snapshot(version, hosts, items, active, max_history)

    def _effective_macros(self, c: Connection) -> dict[int, dict[str, str]]:
        """Per host: its templates' macros overridden by its own."""
        own: dict[int, dict[str, str]] = {}
        for r in c.execute(sa.select(t.host_macros)):
            own.setdefault(r.hostid, {})[r.macro] = r.value
        out = {h: dict(m) for h, m in own.items()}
        for hid, tid in c.execute(sa.select(t.hosts_templates.c.hostid, t.hosts_templates.c.templateid)):
            merged = dict(own.get(tid, {}))
            merged.update(out.get(hid, {}))
            out[hid] = merged
        return out

    def log_positions(self, itemids: list[int]) -> dict[int, tuple[int, int]]:
        if not itemids:
            return {}
        with self.engine.connect() as c:
            rows = c.execute(sa.select(t.item_rtdata).where(t.item_rtdata.c.itemid.in_(itemids)))
            return {r.itemid: (int(r.lastlogsize), int(r.mtime)) for r in rows}

    def item(self, host: str, key: str) -> tuple[int, ValueType] | None:
        with self.engine.connect() as c:
            r = c.execute(
                sa.select(t.items.c.itemid, t.items.c.value_type)
                .join(t.hosts, t.hosts.c.hostid == t.items.c.hostid)
                .where(t.hosts.c.host == host, t.items.c.key_ == key)
            ).first()
            return (int(r.itemid), ValueType(r.value_type)) if r else None

    def retention_rows(self) -> list[tuple[int, int, str, str]]:
        """(itemid, value_type, history, trends) of every item of a host, user macros resolved through
        the host's macros and its templates'; a macro neither defines stays as written."""
        with self.engine.connect() as c:
            macros = self._effective_macros(c)
            q = (sa.select(t.items.c.itemid, t.items.c.hostid, t.items.c.value_type, t.items.c.history,
                           t.items.c.trends)
                 .join(t.hosts, t.hosts.c.hostid == t.items.c.hostid)
                 .where(t.hosts.c.status != HostStatus.TEMPLATE))
            return [(r.itemid, r.value_type, resolve_macros(r.history, macros.get(r.hostid, {})),
                     resolve_macros(r.trends, macros.get(r.hostid, {}))) for r in c.execute(q)]
