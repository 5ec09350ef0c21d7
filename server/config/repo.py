"""Reading and changing the configuration: all its SQL lives here (SQLAlchemy Core).

Every change runs in one transaction and bumps `config_version`, which running servers poll to
reload their configuration cache.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from vigil.server.config import alerting as al
from vigil.server.config import tables as t
from vigil.server.config.alerting import (
    ActionSpec,
    AlertingConfig,
    ConditionSpec,
    MaintenanceSpec,
    MediaSpec,
    MediaTypeSpec,
    OperationSpec,
    TimePeriodSpec,
    TriggerSpec,
    UserSpec,
    parse_expression,
)
from vigil.server.config.autoreg import AutoregConfig
from vigil.server.config.discovery import DiscoveryConfig
from vigil.server.config.durations import seconds
from vigil.server.config.model import (
    JMX_DEFAULT_ENDPOINT,
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
from vigil.server.config.proxies import ProxyConfig
from vigil.server.config.proxygroup_config import ProxyGroupConfig
from vigil.server.config.tables import Flags, HostStatus, ItemType, MediaKind, Severity, ValueType


@dataclass
class ImportReport:
    hosts_created: int = 0
    hosts_updated: int = 0
    templates_created: int = 0
    templates_updated: int = 0
    items_created: int = 0
    items_updated: int = 0
    items_deleted: int = 0
    triggers_created: int = 0
    triggers_updated: int = 0
    triggers_deleted: int = 0
    alerting_changed: int = 0  # media types, user groups, users, actions and maintenances written

    def __str__(self) -> str:
        text = (
            f"templates: {self.templates_created} created, {self.templates_updated} updated; "
            f"hosts: {self.hosts_created} created, {self.hosts_updated} updated; "
            f"items: {self.items_created} created, {self.items_updated} updated, {self.items_deleted} deleted"
        )
        if self.triggers_created or self.triggers_updated or self.triggers_deleted:
            text += (f"; triggers: {self.triggers_created} created, {self.triggers_updated} updated, "
                     f"{self.triggers_deleted} deleted")
        if self.alerting_changed:
            text += f"; alerting: {self.alerting_changed} written"
        return text


@dataclass(frozen=True, slots=True)
class TriggerRef:
    """An enabled trigger of a monitored host, as the engine evaluates it."""

    triggerid: int
    hostid: int
    host: str
    name: str  # macros unexpanded
    expression: str
    recovery_mode: int  # 0 expression, 1 recovery expression, 2 none
    recovery_expression: str
    severity: Severity
    multiple: bool
    manual_close: bool
    tags: tuple[tuple[str, str], ...]
    depends_on: tuple[int, ...]  # the triggers this one depends on (triggerid_up)
    itemids: tuple[int, ...]  # the items its expressions read
    templateid: int | None = None  # the template's trigger this is a copy of


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
    # Discovery rules by (host, key): their values go to the LLD processor, not to history.
    lld: dict[tuple[str, str], ItemRef] = dataclasses.field(default_factory=dict)
    # The trapper items of `items`, by host and then key: sender data's lookup, without a tuple per value.
    trappers: dict[str, dict[str, ItemRef]] = dataclasses.field(init=False, repr=False, compare=False)
    # Whether some discovery rule takes sender data (then sender data's values are looked at for it).
    trapper_rules: bool = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        trappers: dict[str, dict[str, ItemRef]] = {}
        for (host, key), ref in self.items.items():
            if ref.type == ItemType.TRAPPER:
                trappers.setdefault(host, {})[key] = ref
        object.__setattr__(self, "trappers", trappers)
        object.__setattr__(self, "trapper_rules", any(r.type == ItemType.TRAPPER for r in self.lld.values()))


HostItems = tuple[dict[str, int], dict[int, "int | None"]]  # a host's item ids by key, and their masters
_TEMPLATE_READS = "vigil.template_reads"  # key of Connection.info: templates' rows read during one apply


@lru_cache(maxsize=4096)
def _parsed(text: str) -> Any:
    """A template trigger's expression parsed once for all its hosts' copies (rename_host reads it only)."""
    return parse_expression(text, "expression")


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


def poll_row(c: Connection, hostid: int, it: ItemSpec, refs: dict[str, int] | None = None) -> dict[str, Any]:
    """The items columns of `it.poll`; its interface_ref resolved to one of the host's interfaces
    (through `refs`, the host's interface ids by ref, when the caller read them already)."""
    import json

    p = it.poll
    interfaceid = None
    if p.interface_ref:
        interfaceid = refs.get(p.interface_ref) if refs is not None else c.execute(
            sa.select(t.interfaces.c.interfaceid).where(t.interfaces.c.hostid == hostid,
                                                        t.interfaces.c.ref == p.interface_ref)).scalar()
        if interfaceid is None:
            raise ConfigError(f"item {it.key!r}: interface_ref {p.interface_ref!r} is not an interface of the host")
    return {
        "interfaceid": interfaceid, "master_itemid": None, "params": p.params, "snmp_oid": p.snmp_oid,
        "ipmi_sensor": p.ipmi_sensor, "url": p.url,
        "query_fields": json.dumps(p.query_fields),
        "request_method": p.method, "posts": p.body, "headers": json.dumps(p.headers),
        "status_codes": p.status_codes, "follow_redirects": int(p.follow_redirects),
        "verify_peer": int(p.verify_peer), "verify_host": int(p.verify_host), "ssl_cert_file": p.ssl_cert_file,
        "ssl_key_file": p.ssl_key_file, "authtype": p.auth, "username": p.username, "password": p.password,
        "retrieve_mode": p.retrieve_mode, "timeout": p.timeout, "jmx_endpoint": p.jmx_endpoint,
        "publickey": p.publickey, "privatekey": p.privatekey,
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
        snmp_oid=r.snmp_oid, ipmi_sensor=r.ipmi_sensor,
        url=r.url, query_fields=[tuple(x) for x in json.loads(r.query_fields or "[]")], method=r.request_method,
        headers=[tuple(x) for x in json.loads(r.headers or "[]")], body=r.posts, status_codes=r.status_codes,
        follow_redirects=bool(r.follow_redirects), verify_peer=bool(r.verify_peer), verify_host=bool(r.verify_host),
        ssl_cert_file=r.ssl_cert_file, ssl_key_file=r.ssl_key_file, auth=r.authtype, username=r.username,
        password=r.password, retrieve_mode=r.retrieve_mode, timeout=r.timeout, jmx_endpoint=r.jmx_endpoint,
        publickey=r.publickey, privatekey=r.privatekey,
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
    flags: int = 0  # 1: a discovery rule, whose values go to the LLD processor, not to history


@dataclass(frozen=True, slots=True)
class CalcItem:
    itemid: int
    hostid: int
    host: str
    key: str
    value_type: int
    groups: frozenset[str]  # its host's
    tags: tuple[tuple[str, str], ...]
    error: str | None  # why it is not supported, or None


@dataclass(frozen=True, slots=True)
class PollConfig:
    version: int
    items: dict[int, PollItem]
    interfaces: dict[int, PollInterface]
    dependents: dict[int, list[int]]  # master itemid -> its dependent items, in itemid order


POLLED_TYPES = (ItemType.AGENT, ItemType.INTERNAL, ItemType.SIMPLE, ItemType.SNMP, ItemType.IPMI, ItemType.JMX,
                ItemType.HTTP_AGENT, ItemType.DEPENDENT, ItemType.CALCULATED, ItemType.EXTERNAL, ItemType.NAGIOS,
                ItemType.SSH, ItemType.TELNET, ItemType.SNMP_TRAP)  # SNMP traps: matched by the scheduler

# Items that use the host's first main interface of any kind when they name none ({HOST.CONN} and the like)
ANY_INTERFACE = (ItemType.SIMPLE, ItemType.HTTP_AGENT, ItemType.NAGIOS, ItemType.EXTERNAL, ItemType.SSH,
                 ItemType.TELNET)


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

    def resolve_masters(self, c: Connection, hostid: int, items: list[ItemSpec], where: str,
                        known: HostItems | None = None) -> None:
        """Point dependent items at their master (an item of the same host), and the others at none;
        refuse a missing master or a loop. Only the rows whose master changes are written. `known`:
        the ids by key and masters of all the host's items, when the caller has them (_upsert_items)."""
        if not items:
            return
        if known is not None:
            ids, masters = known
        else:
            ids, masters = {}, {}
            for key, itemid, master in c.execute(sa.select(t.items.c.key_, t.items.c.itemid,
                                                           t.items.c.master_itemid).where(t.items.c.hostid == hostid)):
                ids[key] = itemid
                masters[itemid] = master
        changes = []
        deps = []
        for i, it in enumerate(items):
            itemid = ids[it.key]
            master = None
            if it.type == ItemType.DEPENDENT:
                deps.append((i, it))
                master = ids.get(it.poll.master_item)
                if master is None:
                    raise ConfigError(f"{where}[{i}].master_item: no item {it.poll.master_item!r} on this host")
                if master == itemid:
                    raise ConfigError(f"{where}[{i}].master_item: an item cannot be its own master")
            if masters.get(itemid) != master:
                changes.append({"b_itemid": itemid, "master_itemid": master})
                masters[itemid] = master
        if changes:
            c.execute(sa.update(t.items).where(t.items.c.itemid == sa.bindparam("b_itemid"))
                      .values(master_itemid=sa.bindparam("master_itemid")), changes)
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
            # A host monitored by a proxy: the proxy polls it; the server keeps its calculated items.
            proxied = set(c.execute(sa.select(t.hosts.c.hostid).where(
                t.hosts.c.proxyid.is_not(None) | t.hosts.c.proxy_groupid.is_not(None))).scalars())
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
                                                      t.items.c.flags != int(Flags.PROTOTYPE),
                                                      t.items.c.type.in_([int(x) for x in POLLED_TYPES]))).all() \
                if hosts else []
            rows = [r for r in rows if r.hostid not in proxied or r.type == ItemType.CALCULATED]
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
            elif itf is None and kind == ItemType.SNMP_TRAP:  # traps are matched by the SNMP interface's address
                itf = main.get((r.hostid, int(InterfaceType.SNMP)))
            elif itf is None and kind in ANY_INTERFACE:  # for {HOST.CONN} and the like
                itf = next((main[(r.hostid, int(k))] for k in InterfaceType if (r.hostid, int(k)) in main), None)
            host, name = hosts[r.hostid]
            delay = 0
            if kind not in (ItemType.DEPENDENT, ItemType.SNMP_TRAP):
                try:
                    delay = seconds(resolve_macros(r.delay, m))
                except ValueError:
                    error = error or f"the update interval {r.delay!r} does not resolve to a duration"
                    delay = 60
            spec = specs[r.itemid]
            if kind == ItemType.JMX and not spec.jmx_endpoint:
                spec = dataclasses.replace(spec, jmx_endpoint=JMX_DEFAULT_ENDPOINT)
            ctx = dict(m)
            ctx.update({"{HOST.HOST}": host, "{HOST.NAME}": name or host,
                        "{HOST.IP}": itf.address if itf else "", "{HOST.DNS}": itf.address if itf else "",
                        "{HOST.CONN}": itf.address if itf else "", "{HOST.PORT}": str(itf.port) if itf else "",
                        "{ITEM.KEY}": resolve_macros(r.key_, m)})
            spec = _resolve_poll(spec, ctx)
            items[r.itemid] = PollItem(r.itemid, r.hostid, host, kind, ValueType(r.value_type),
                                       resolve_macros(r.key_, m), delay, itf, spec, r.master_itemid, error,
                                       r.flags)
            if r.master_itemid is not None:
                dependents.setdefault(r.master_itemid, []).append(r.itemid)
        for deps in dependents.values():
            deps.sort()
        return PollConfig(version, items, interfaces, dependents)

    def add_nagios_items(self, check_itemid: int, wanted: list[tuple[str, str, int, str, str]]) -> int:
        """The dependent items a Nagios check feeds (its message, one per perfdata label: see
        vigil.server.pollers.nagios), made on the check's host when missing: (key, name, value type,
        units, JSONPath). Returns how many were made; the configuration version moves only then."""
        with self.engine.begin() as c:
            hostid = c.execute(sa.select(t.items.c.hostid).where(t.items.c.itemid == check_itemid)).scalar()
            if hostid is None:
                return 0
            have = set(c.execute(sa.select(t.items.c.key_).where(
                t.items.c.hostid == hostid, t.items.c.key_.in_([w[0] for w in wanted]))).scalars())
            made = 0
            for key, name, value_type, units, path in wanted:
                if key in have:
                    continue
                itemid = c.execute(sa.insert(t.items).values(
                    hostid=hostid, key_=key, name=name[:255], type=int(ItemType.DEPENDENT), value_type=value_type,
                    units=units, delay="0", master_itemid=check_itemid,
                    description="Made by Vigil from the Nagios check's output.")).inserted_primary_key[0]
                c.execute(sa.insert(t.item_preproc).values(itemid=itemid, step=1, type=12, params=path))
                have.add(key)
                made += 1
            if made:
                c.execute(sa.update(t.config_version).where(t.config_version.c.id == 1)
                          .values(version=t.config_version.c.version + 1))
            return made

    def calc_items(self) -> list[CalcItem]:
        """Every enabled item of the monitored hosts, with its host's groups and its tags: what calculated
        items' formulas and aggregates (item filters) select from."""
        with self.engine.connect() as c:
            macros = ConfigRepo._effective_macros(self, c)  # type: ignore[arg-type]
            hosts = dict(c.execute(sa.select(t.hosts.c.hostid, t.hosts.c.host)
                                   .where(t.hosts.c.status == HostStatus.MONITORED)).all())
            groups: dict[int, set[str]] = {}
            for hostid, name in c.execute(sa.select(t.hosts_groups.c.hostid, t.host_groups.c.name)
                                          .join(t.host_groups, t.host_groups.c.groupid == t.hosts_groups.c.groupid)):
                groups.setdefault(hostid, set()).add(name)
            tags: dict[int, list[tuple[str, str]]] = {}
            for itemid, tag, value in c.execute(sa.select(t.item_tags.c.itemid, t.item_tags.c.tag, t.item_tags.c.value)
                                                .order_by(t.item_tags.c.itemtagid)):
                tags.setdefault(itemid, []).append((tag, value))
            states = {r.itemid: r.error for r in c.execute(sa.select(t.item_state.c.itemid, t.item_state.c.error)
                                                           .where(t.item_state.c.state == 1))}
            rows = c.execute(sa.select(t.items.c.itemid, t.items.c.hostid, t.items.c.key_, t.items.c.value_type)
                             .where(t.items.c.status == 0).order_by(t.items.c.itemid)).all()
        return [CalcItem(r.itemid, r.hostid, hosts[r.hostid], resolve_macros(r.key_, macros.get(r.hostid, {})),
                         r.value_type, frozenset(groups.get(r.hostid, ())), tuple(tags.get(r.itemid, ())),
                         states.get(r.itemid)) for r in rows if r.hostid in hosts]

    def check_formulas(self, c: Connection, hostid: int, items: list[ItemSpec], where: str) -> None:
        """Refuse a calculated item whose formula reads an item that does not exist (naming its position);
        aggregates' item filters may match nothing yet and are not checked."""
        from vigil.server.triggers.expression import parse

        calc = [(i, it) for i, it in enumerate(items) if it.type == ItemType.CALCULATED]
        if not calc:
            return
        own = c.execute(sa.select(t.hosts.c.host).where(t.hosts.c.hostid == hostid)).scalar_one()
        for i, it in calc:
            for f in parse(it.poll.params, calculated=True).functions:
                host = f.host or own
                found = c.execute(sa.select(t.items.c.itemid).join(t.hosts, t.hosts.c.hostid == t.items.c.hostid)
                                  .where(t.hosts.c.host == host, t.items.c.key_ == f.key)).first()
                if found is None:
                    raise ConfigError(f"{where}[{i}].params: no item {f.key!r} on host {host!r} (read by "
                                      f"{f.name}() at position {f.pos} of the formula)")

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
        state changed. (host_availability is the trigger engine's: an active agent's.)"""
        if not rows:
            return
        with self.engine.begin() as c:
            for iid, _hostid, _kind, available, error, errors_from, disable_until in rows:
                c.execute(sa.update(t.interfaces).where(t.interfaces.c.interfaceid == iid).values(
                    available=available, error=error[:2048], errors_from=errors_from, disable_until=disable_until))


def _resolve_poll(p: PollSpec, ctx: dict[str, str]) -> PollSpec:
    import dataclasses
    import re

    def r(text: str) -> str:
        if "{" not in text:
            return text
        return re.sub(r"\{\$[A-Z0-9_.]+\}|\{HOST\.[A-Z]+\}|\{ITEM\.KEY\}", lambda m: ctx.get(m.group(), m.group()),
                      text)

    changes: dict[str, Any] = {name: r(getattr(p, name)) for name in
                               ("url", "body", "status_codes", "username", "password", "timeout", "params", "snmp_oid",
                                "ssl_cert_file", "ssl_key_file", "jmx_endpoint")}
    changes["query_fields"] = [(r(n), r(v)) for n, v in p.query_fields]
    changes["headers"] = [(r(n), r(v)) for n, v in p.headers]
    return dataclasses.replace(p, **changes)


class ConfigRepo(PollerConfig, ProxyConfig, ProxyGroupConfig, DiscoveryConfig, AutoregConfig):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- changes --------------------------------------------------------------------------------

    def apply(self, doc: ConfigDoc, *, delete_missing: bool = False) -> ImportReport:
        """Create or update everything in the document in one transaction."""
        report = ImportReport()
        with self.engine.begin() as c:
            c.info[_TEMPLATE_READS] = {}
            try:
                self._apply_doc(c, doc, report, delete_missing)
            finally:
                c.info.pop(_TEMPLATE_READS, None)
        return report

    def _apply_doc(self, c: Connection, doc: ConfigDoc, report: ImportReport, delete_missing: bool) -> None:
        for g in doc.host_groups:
            self._group(c, g)
        self.apply_proxy_groups(c, doc.proxy_groups, delete_missing)
        self.apply_proxies(c, doc.proxies, delete_missing)
        for i, tpl in enumerate(doc.templates):
            self._apply_template(c, tpl, report, f"templates[{i}]")
        for i, h in enumerate(doc.hosts):
            self._apply_host(c, h, report, delete_missing, f"hosts[{i}]")
        for i, h in enumerate(doc.hosts):  # after all hosts: a formula may read a host further down
            hid = c.execute(sa.select(t.hosts.c.hostid).where(t.hosts.c.host == h.host)).scalar_one()
            self.check_formulas(c, hid, h.items, f"hosts[{i}].items")
        self._apply_alerting_doc(c, doc, report, delete_missing)
        self._bump(c)

    def _bump(self, c: Connection) -> None:
        c.execute(sa.update(t.config_version).where(t.config_version.c.id == 1)
                  .values(version=t.config_version.c.version + 1))

    def _group(self, c: Connection, name: str) -> int:
        known = c.info.get(_TEMPLATE_READS)  # during an apply: each group looked up once
        if known is not None and ("group", name) in known:
            return int(known[("group", name)])
        gid = c.execute(sa.select(t.host_groups.c.groupid).where(t.host_groups.c.name == name)).scalar()
        if gid is None:
            gid = c.execute(sa.insert(t.host_groups).values(name=name)).inserted_primary_key[0]
        if known is not None:
            known[("group", name)] = int(gid)
        return int(gid)

    def _set_groups(self, c: Connection, hostid: int, groups: list[str]) -> None:
        want = {self._group(c, g) for g in groups}
        have = set(c.execute(sa.select(t.hosts_groups.c.groupid).where(t.hosts_groups.c.hostid == hostid)).scalars())
        if have == want:
            return
        c.execute(sa.delete(t.hosts_groups).where(t.hosts_groups.c.hostid == hostid))
        c.execute(sa.insert(t.hosts_groups), [{"hostid": hostid, "groupid": gid} for gid in want])

    def _set_macros(self, c: Connection, hostid: int, macros: dict[str, str]) -> None:
        have = [tuple(r) for r in c.execute(sa.select(t.host_macros.c.macro, t.host_macros.c.value)
                                            .where(t.host_macros.c.hostid == hostid)
                                            .order_by(t.host_macros.c.hostmacroid))]
        if have == list(macros.items()):
            return
        c.execute(sa.delete(t.host_macros).where(t.host_macros.c.hostid == hostid))
        if macros:
            c.execute(sa.insert(t.host_macros), [{"hostid": hostid, "macro": m, "value": v}
                                                 for m, v in macros.items()])

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
        self._forget_template(c, tid)
        self._set_groups(c, tid, tpl.groups or ["Templates"])
        self._set_macros(c, tid, tpl.macros)
        keys = {it.key for it in tpl.items}
        gone = c.execute(sa.select(t.items.c.itemid)
                         .where(t.items.c.hostid == tid, t.items.c.flags == int(Flags.PLAIN),
                                t.items.c.key_.not_in(keys))).scalars().all()
        if gone:
            copies = list(c.execute(sa.select(t.items.c.itemid).where(t.items.c.templateid.in_(gone))).scalars())
            report.triggers_deleted += self._delete_triggers_reading(c, list(gone) + copies)
            # Copies on linked hosts go with them (ON DELETE CASCADE on items.templateid).
            report.items_deleted += c.execute(sa.delete(t.items).where(t.items.c.itemid.in_(gone))).rowcount
        known = self._upsert_items(c, tid, [(it, None) for it in tpl.items], report)
        self.resolve_masters(c, tid, tpl.items, f"{where}.items", known)
        self._write_rules(c, tid, tpl.template, True, tpl.discovery_rules, report, where, authoritative=True)
        self.check_formulas(c, tid, tpl.items, f"{where}.items")
        linked = c.execute(sa.select(t.hosts_templates.c.hostid).where(t.hosts_templates.c.templateid == tid)).scalars()
        for hostid in list(linked):
            self._copy_template_items(c, hostid, tid, report)

    def _upsert_items(self, c: Connection, hostid: int, specs: list[tuple[ItemSpec, int | None]],
                      report: ImportReport, where: str | None = None,
                      values: list[dict[str, Any]] | None = None) -> HostItems:
        """_upsert_item for many items of one host in a few statements: the same checks and the same rows
        in the end, but rows, tags and preprocessing steps that would not change are not written.
        Masters are left to resolve_masters, which takes the returned ids and masters of all the host's
        items. A ConfigError names `where[i].key` when `where` is given. `values`: the columns of each
        spec when the caller has them already (item_values; the same for every host of a template)."""
        existing = {r.key_: r for r in c.execute(sa.select(t.items).where(t.items.c.hostid == hostid))}
        ids = {k: int(r.itemid) for k, r in existing.items()}
        masters = {int(r.itemid): r.master_itemid for r in existing.values()}
        if not specs:
            return ids, masters
        if values is None:
            values = self.item_values(c, hostid, specs)
        inserts: list[dict[str, Any]] = []
        updates: dict[tuple[str, ...], list[dict[str, Any]]] = {}
        for i, ((it, templateid), row_values) in enumerate(zip(specs, values, strict=True)):
            row = existing.get(it.key)
            if row is None:
                inserts.append(row_values | {"hostid": hostid})
                report.items_created += 1
                continue
            error = None
            if templateid is None and row.templateid is not None:
                error = f"item {it.key!r} comes from a linked template: change it in the template"
            if templateid is not None and row.templateid not in (None, templateid):
                error = f"item {it.key!r} already comes from another linked template"
            if error is not None:
                raise ConfigError(f"{where}[{i}].key: {error}" if where is not None else error)
            m = row._mapping
            if any(m[k] != v for k, v in row_values.items()):
                updates.setdefault(tuple(row_values), []).append(row_values | {"b_itemid": row.itemid})
            report.items_updated += 1
        for cols, rows in updates.items():  # one executemany per set of columns (rules set a few more)
            c.execute(sa.update(t.items).where(t.items.c.itemid == sa.bindparam("b_itemid"))
                      .values({k: sa.bindparam(k) for k in cols}), rows)
        for cols in dict.fromkeys(tuple(r) for r in inserts):
            part = [r for r in inserts if tuple(r) == cols]
            made = c.execute(sa.insert(t.items).returning(t.items.c.itemid, sort_by_parameter_order=True),
                             part).scalars().all()
            ids.update(zip([r["key_"] for r in part], (int(x) for x in made), strict=True))
        new = {ids[r["key_"]] for r in inserts}
        masters.update(dict.fromkeys(new))
        self._sync_item_children(c, [(ids[it.key], it) for it, _ in specs], new)
        return ids, masters

    def item_values(self, c: Connection, hostid: int, specs: list[tuple[ItemSpec, int | None]]) -> list[dict[str, Any]]:
        """The items columns _upsert_item writes for each (spec, templateid), but master_itemid."""
        refs: dict[str, int] | None = None
        if any(it.poll.interface_ref for it, _ in specs):
            refs = dict(c.execute(sa.select(t.interfaces.c.ref, t.interfaces.c.interfaceid)
                                  .where(t.interfaces.c.hostid == hostid)).all())
        out = []
        for it, templateid in specs:
            values = _item_row(it) | {"templateid": templateid} | poll_row(c, hostid, it, refs)
            del values["master_itemid"]
            out.append(values)
        return out

    def _sync_item_children(self, c: Connection, items: list[tuple[int, ItemSpec]], new: set[int]) -> None:
        """Give each item exactly its spec's tags and preprocessing steps (those of items in `new` have none
        yet); an item whose rows already match keeps them."""
        old = [itemid for itemid, _ in items if itemid not in new]
        tags: dict[int, list[tuple[str, str]]] = {}
        steps: dict[int, list[PreprocStep]] = _preproc_of(c, old) if old else {}
        for n in range(0, len(old), 500):
            for r in c.execute(sa.select(t.item_tags.c.itemid, t.item_tags.c.tag, t.item_tags.c.value)
                               .where(t.item_tags.c.itemid.in_(old[n:n + 500])).order_by(t.item_tags.c.itemtagid)):
                tags.setdefault(r.itemid, []).append((r.tag, r.value))
        tag_rows, tag_gone, step_rows, step_gone = [], [], [], []
        for itemid, it in items:
            want = [tuple(x) for x in it.tags]
            if tags.get(itemid, []) != want:
                if itemid not in new:
                    tag_gone.append(itemid)
                tag_rows += [{"itemid": itemid, "tag": k, "value": v} for k, v in want]
            if steps.get(itemid, []) != list(it.poll.preprocessing):
                if itemid not in new:
                    step_gone.append(itemid)
                step_rows += [{"itemid": itemid, "step": i + 1, "type": s.type, "params": s.params,
                               "error_handler": s.error_handler, "error_handler_params": s.error_handler_params}
                              for i, s in enumerate(it.poll.preprocessing)]
        for table, gone, rows in ((t.item_tags, tag_gone, tag_rows), (t.item_preproc, step_gone, step_rows)):
            for n in range(0, len(gone), 500):
                c.execute(sa.delete(table).where(table.c.itemid.in_(gone[n:n + 500])))
            if rows:
                c.execute(sa.insert(table), rows)

    def _copy_template_items(self, c: Connection, hostid: int, templateid: int, report: ImportReport) -> None:
        """The template's items and discovery rules on a linked host, in one bulk upsert."""
        copies = self._template_reads(c, "copies", templateid, lambda: self._template_copies(c, templateid))
        specs, values, nitems = copies
        known = self._upsert_items(c, hostid, specs, report, values=values)
        self.resolve_masters(c, hostid, [it for it, _ in specs[:nitems]], "template item", known)
        self.resolve_masters(c, hostid, [it for it, _ in specs[nitems:]], "template discovery rule", known)

    def _template_copies(self, c: Connection, templateid: int) -> tuple[list[tuple[ItemSpec, int]],
                                                                         list[dict[str, Any]], int]:
        """What a copy of the template's items and rules is made of: (spec, template itemid) pairs, the
        items columns of each, and how many of them are plain items (the rules follow)."""
        items = self._items_of(c, templateid)
        rows, rules = self.template_rules(c, templateid)
        specs = [(it, i) for it, i in items] + [(spec, i) for spec, i in rules]
        values = self.item_values(c, templateid, specs)  # templates have no interfaces: no interface_ref
        for v, r in zip(values[len(items):], rows, strict=True):
            v.update(flags=int(Flags.RULE), lifetime=r.lifetime, evaltype=r.evaltype, formula=r.formula)
        return specs, values, len(items)

    def _items_of(self, c: Connection, hostid: int, own_only: bool = False) -> list[tuple[ItemSpec, int]]:
        """The host's plain items (not discovery rules, prototypes or discovered items)."""
        q = (sa.select(t.items).where(t.items.c.hostid == hostid, t.items.c.flags == int(Flags.PLAIN))
             .order_by(t.items.c.itemid))
        if own_only:
            q = q.where(t.items.c.templateid.is_(None))
        return self._item_specs(c, c.execute(q).all())

    def _item_specs(self, c: Connection, rows: list[Any]) -> list[tuple[ItemSpec, int]]:
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

    def _template_reads(self, c: Connection, kind: str, templateid: int, read: Any) -> Any:
        """What `read()` returns for a template, read once per apply (which forgets it when it writes the
        template): each linked host's copy then costs no reads of the template."""
        cache = c.info.get(_TEMPLATE_READS)
        if cache is None:
            return read()
        if (kind, templateid) not in cache:
            cache[(kind, templateid)] = read()
        return cache[(kind, templateid)]

    def _forget_template(self, c: Connection, templateid: int) -> None:
        cache = c.info.get(_TEMPLATE_READS)
        if cache is not None:
            for key in [k for k in cache if k[1] == templateid]:
                del cache[key]

    def _template_id(self, c: Connection, name: str, where: str) -> int:
        row = c.execute(sa.select(t.hosts.c.hostid, t.hosts.c.status).where(t.hosts.c.host == name)).first()
        if row is None:
            from vigil.server.config.builtins import builtin_document
            from vigil.server.config.model import doc_from_dict

            builtin = builtin_document(name)
            if builtin is not None:  # a template shipped with Vigil: imported on first use
                doc = doc_from_dict(builtin)
                for i, tpl in enumerate(doc.templates):
                    self._apply_template(c, tpl, ImportReport(), f"built-in template {name!r}: templates[{i}]")
                self._apply_triggers(c, dataclasses.replace(doc, hosts=[]), ImportReport(), False)
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
        self.set_host_proxy(c, hid, h.proxy, where)
        self.set_host_proxy_group(c, hid, h.proxy, h.proxy_group, where)
        if h.tags is not None and self.host_tags(c, hid) != [tuple(x) for x in h.tags]:
            c.execute(sa.delete(t.host_tags).where(t.host_tags.c.hostid == hid))
            if h.tags:
                c.execute(sa.insert(t.host_tags), [{"hostid": hid, "tag": k, "value": v} for k, v in h.tags])
        if h.templates is not None:
            self.set_templates(c, hid, [self._template_id(c, n, f"{where}.templates[{i}]")
                                        for i, n in enumerate(h.templates)], report)
        known = self._upsert_items(c, hid, [(it, None) for it in h.items], report, f"{where}.items")
        self.resolve_masters(c, hid, h.items, f"{where}.items", known)
        self._write_rules(c, hid, h.host, False, h.discovery_rules, report, where, authoritative=delete_missing)
        if delete_missing:
            keys = {it.key for it in h.items}
            plain = (t.items.c.hostid == hid, t.items.c.templateid.is_(None), t.items.c.key_.not_in(keys),
                     t.items.c.flags == int(Flags.PLAIN))
            report.triggers_deleted += self._delete_triggers_reading(c, sa.select(t.items.c.itemid).where(*plain))
            report.items_deleted += c.execute(sa.delete(t.items).where(*plain)).rowcount

    def set_templates(self, c: Connection, hostid: int, templateids: list[int], report: ImportReport) -> None:
        """Link exactly these templates: new ones bring their items, dropped ones take theirs away."""
        have = set(c.execute(sa.select(t.hosts_templates.c.templateid)
                             .where(t.hosts_templates.c.hostid == hostid)).scalars())
        want = set(templateids)
        for tid in have - want:
            self._unlink_discovered(c, hostid, tid, report)
            report.triggers_deleted += self._unlink_triggers(c, hostid, tid)
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
        for tid in templateids:
            self._copy_template_triggers(c, hostid, tid, report)
        if templateids:
            self._copy_dependencies(c, hostid)

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
            self.check_formulas(c, int(hid), [item], "item")
            if c.execute(sa.select(t.hosts.c.status).where(t.hosts.c.hostid == hid)).scalar() == HostStatus.TEMPLATE:
                for linked in list(c.execute(sa.select(t.hosts_templates.c.hostid)
                                             .where(t.hosts_templates.c.templateid == hid)).scalars()):
                    self._copy_template_items(c, linked, int(hid), report)
            self._bump(c)
        return report

    def item_spec(self, itemid: int) -> tuple[str, ItemSpec, bool] | None:
        """(host name, the item as a document has it, whether it comes from a template) or None."""
        with self.engine.connect() as c:
            row = c.execute(sa.select(t.items.c.hostid, t.items.c.templateid, t.hosts.c.host)
                            .join(t.hosts, t.hosts.c.hostid == t.items.c.hostid)
                            .where(t.items.c.itemid == itemid)).first()
            if row is None:
                return None
            spec = next(s for s, i in self._items_of(c, int(row.hostid)) if i == itemid)
            return row.host, spec, row.templateid is not None

    def delete_item(self, itemid: int) -> bool:
        """Delete a host's own item with the triggers reading it (an item from a template stays: unlink it)."""
        with self.engine.begin() as c:
            row = c.execute(sa.select(t.items.c.templateid, t.items.c.key_).where(t.items.c.itemid == itemid)).first()
            if row is None:
                return False
            if row.templateid is not None:
                raise ConfigError(f"item {row.key_!r} comes from a linked template: change it in the template")
            self._delete_triggers_reading(c, sa.select(t.items.c.itemid).where(t.items.c.itemid == itemid))
            c.execute(sa.delete(t.items).where(t.items.c.itemid == itemid))
            self._bump(c)
        return True

    def host_tags(self, c: Connection, hostid: int) -> list[tuple[str, str]]:
        return [(r.tag, r.value) for r in c.execute(sa.select(t.host_tags.c.tag, t.host_tags.c.value)
                                                    .where(t.host_tags.c.hostid == hostid)
                                                    .order_by(t.host_tags.c.hosttagid))]

    def host_exists(self, host: str) -> bool:
        with self.engine.connect() as c:
            return c.execute(sa.select(t.hosts.c.hostid).where(t.hosts.c.host == host)).first() is not None

    def delete_host(self, host: str) -> bool:
        with self.engine.begin() as c:
            # Other hosts' triggers reading its items go too (its own go with it, ON DELETE CASCADE).
            self._delete_triggers_reading(c, sa.select(t.items.c.itemid)
                                          .join(t.hosts, t.hosts.c.hostid == t.items.c.hostid)
                                          .where(t.hosts.c.host == host))
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
            proxy_groups, host_group = self.export_proxy_groups(c)
            if proxy_groups:
                out["proxy_groups"] = proxy_groups
            proxies, host_proxy = self.export_proxies(c)
            if proxies:
                out["proxies"] = proxies
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
                    if host_tags := self.host_tags(c, r.hostid):
                        d["tags"] = [{"tag": k, "value": v} for k, v in host_tags]
                    if r.tls_accept != 1:
                        d["tls_accept"] = tls_accept_to_doc(r.tls_accept)
                    if r.hostid in host_group:  # its proxyid is the balancer's, not configuration
                        d["proxy_group"] = host_group[r.hostid]
                    elif r.hostid in host_proxy:
                        d["proxy"] = host_proxy[r.hostid]
                    for name in ("tls_issuer", "tls_subject"):
                        if getattr(r, name):
                            d[name] = getattr(r, name)
                d["items"] = [item_to_doc(it) for it, _ in self._items_of(c, r.hostid, own_only=True)]
                triggers = [al.trigger_to_doc(spec) for spec, _ in self._triggers_of(c, r.hostid, own_only=True)]
                if triggers:
                    d["triggers"] = triggers
                if rules := self.rules_of(c, r.hostid):
                    from vigil.server.config.lld import rule_to_doc

                    d["discovery_rules"] = [rule_to_doc(x) for x in rules]
                (templates if r.status == HostStatus.TEMPLATE else hosts).append(d)
            if templates:
                out["templates"] = templates
            out["hosts"] = hosts
            out.update(self._export_alerting(c))
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
            lld: dict[tuple[str, str], ItemRef] = {}
            q = (sa.select(t.items.c.itemid, t.items.c.hostid, t.items.c.key_, t.items.c.type,
                           t.items.c.value_type, t.items.c.delay, t.items.c.history, t.hosts.c.host, t.items.c.flags)
                 .join(t.hosts, t.hosts.c.hostid == t.items.c.hostid)
                 .where(t.hosts.c.status == HostStatus.MONITORED, t.items.c.status == 0,
                        t.items.c.flags != int(Flags.PROTOTYPE)))
            for r in c.execute(q):
                key = resolve_macros(r.key_, macros.get(r.hostid, {}))
                try:
                    delay = seconds(resolve_macros(r.delay, macros.get(r.hostid, {})))
                except ValueError:
                    delay = 60
                ref = ItemRef(r.itemid, r.hostid, ItemType(r.type), ValueType(r.value_type), delay, key, r.key_)
                if r.flags == Flags.RULE:
                    lld[(r.host, key)] = ref
                    lld.setdefault((r.host, r.key_), ref)
                    if ref.type == ItemType.AGENT_ACTIVE:
                        active.setdefault(r.hostid, []).append(ref)
                    continue
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
            return Snapshot(version, hosts, items, active, max_history, lld)

    def _effective_macros(self, c: Connection, *, with_global: bool = True) -> dict[int, dict[str, str]]:
        """Per host and template: its own macros over its templates' over the global ones, as Zabbix
        resolves a user macro; every host has an entry (the global macros alone when it has no other).
        Without `with_global`: only hosts with macros of their own or their templates', without the
        global ones (what a proxy's hostmacro table holds beside its globalmacro table)."""
        own: dict[int, dict[str, str]] = {}
        for r in c.execute(sa.select(t.host_macros)):
            own.setdefault(r.hostid, {})[r.macro] = r.value
        out = {h: dict(m) for h, m in own.items()}
        for hid, tid in c.execute(sa.select(t.hosts_templates.c.hostid, t.hosts_templates.c.templateid)):
            merged = dict(own.get(tid, {}))
            merged.update(out.get(hid, {}))
            out[hid] = merged
        if not with_global:
            return out
        glob = dict(c.execute(sa.select(t.global_macros.c.macro, t.global_macros.c.value)).all())
        if not glob:
            return out
        for hid in c.execute(sa.select(t.hosts.c.hostid)).scalars():
            m = out.get(hid)
            out[hid] = glob | m if m else glob  # read-only: hosts without macros of their own share one dict
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

    # --- triggers (issue 12) --------------------------------------------------------------------

    def _delete_triggers_reading(self, c: Connection, itemids: Any) -> int:
        """Delete the triggers that read any of these items (a select of itemids), as Zabbix deletes an
        item's triggers with it; their copies on linked hosts go too (ON DELETE CASCADE)."""
        reading = sa.select(t.trigger_items.c.triggerid).where(t.trigger_items.c.itemid.in_(itemids))
        return int(c.execute(sa.delete(t.triggers).where(t.triggers.c.triggerid.in_(reading))).rowcount)

    def _unlink_triggers(self, c: Connection, hostid: int, templateid: int) -> int:
        ttriggers = sa.select(t.triggers.c.triggerid).where(t.triggers.c.hostid == templateid)
        return int(c.execute(sa.delete(t.triggers).where(t.triggers.c.hostid == hostid,
                                                         t.triggers.c.templateid.in_(ttriggers))).rowcount)

    def _host_row(self, c: Connection, name: str) -> Any:
        return c.execute(sa.select(t.hosts.c.hostid, t.hosts.c.host, t.hosts.c.status)
                         .where(t.hosts.c.host == name)).first()

    def _host_items(self, c: Connection, host: str, cache: dict[str, Any]) -> Any:
        """(hostid, status, {key: itemid}) of a host or template, or None; cached for one apply."""
        if host not in cache:
            row = self._host_row(c, host)
            cache[host] = None if row is None else (int(row.hostid), row.status, dict(c.execute(
                sa.select(t.items.c.key_, t.items.c.itemid).where(t.items.c.hostid == row.hostid)).all()))
        return cache[host]

    def _trigger_itemids(self, c: Connection, owner: str, template: bool, spec: TriggerSpec,
                         where: str, cache: dict[str, Any] | None = None) -> list[int]:
        """The items the trigger's expressions read; ConfigError naming the field, the reference and its
        position when one does not exist (or, in a template's trigger, is not the template's own)."""
        cache = {} if cache is None else cache
        ids: list[int] = []
        for name, text in (("expression", spec.expression), ("recovery_expression", spec.recovery_expression)):
            if not text or (name == "recovery_expression" and spec.recovery_mode != 1):
                continue
            expr = parse_expression(text, f"{where}.{name}")
            for f in expr.functions:
                host = owner if f.host == "{HOST.HOST}" else f.host
                ref = f"/{f.host}/{f.key} at position {f.pos}"
                if template and host != owner:
                    raise ConfigError(f"{where}.{name}: {ref}: a template's trigger reads only the template's "
                                      f"own items (/{owner}/...)")
                found = self._host_items(c, host, cache)
                if found is None:
                    raise ConfigError(f"{where}.{name}: {ref}: no host named {host!r}")
                if not template and found[1] == HostStatus.TEMPLATE:
                    raise ConfigError(f"{where}.{name}: {ref}: {host!r} is a template; a host's trigger reads "
                                      "hosts' items (put the trigger in the template instead)")
                itemid = found[2].get(f.key)
                if itemid is None:
                    raise ConfigError(f"{where}.{name}: {ref}: {host!r} has no item {f.key!r} "
                                      "(add it under the host's items first)")
                if int(itemid) not in ids:
                    ids.append(int(itemid))
        return ids

    def _trigger_values(self, spec: TriggerSpec) -> dict[str, Any]:
        return {
            "description": spec.name, "expression": spec.expression, "recovery_mode": spec.recovery_mode,
            "recovery_expression": spec.recovery_expression if spec.recovery_mode == 1 else "",
            "priority": int(spec.severity), "type": 1 if spec.multiple else 0,
            "manual_close": 1 if spec.manual_close else 0, "status": 0 if spec.enabled else 1,
            "comments": spec.description, "opdata": spec.opdata,
        }

    def _existing_triggers(self, c: Connection, hostid: int) -> dict[Any, Any]:
        """A host's triggers by name and, for copies, by ("copy of", template trigger id)."""
        out: dict[Any, Any] = {}
        for r in c.execute(sa.select(t.triggers.c.triggerid, t.triggers.c.templateid, t.triggers.c.description)
                           .where(t.triggers.c.hostid == hostid)):
            out[r.description] = r
            if r.templateid is not None:
                out[("copy of", r.templateid)] = r
        return out

    def _upsert_trigger(self, c: Connection, hostid: int, spec: TriggerSpec, itemids: list[int],
                        report: ImportReport, where: str, templateid: int | None = None,
                        existing: dict[Any, Any] | None = None) -> int:
        if existing is None:
            existing = self._existing_triggers(c, hostid)
        row = None
        if templateid is not None:  # a copy keeps its id when its template trigger is renamed
            row = existing.get(("copy of", templateid))
        if row is None:
            row = existing.get(spec.name)
        values = self._trigger_values(spec) | {"templateid": templateid}
        if row is None:
            trid = int(c.execute(sa.insert(t.triggers).values(hostid=hostid, **values)).inserted_primary_key[0])
            report.triggers_created += 1
            if spec.tags:
                c.execute(sa.insert(t.trigger_tags), [{"triggerid": trid, "tag": k, "value": v} for k, v in spec.tags])
            if itemids:
                c.execute(sa.insert(t.trigger_items), [{"triggerid": trid, "itemid": i} for i in itemids])
            return trid
        else:
            if templateid is None and row.templateid is not None:
                raise ConfigError(f"{where}.name: trigger {spec.name!r} comes from a linked template: "
                                  "change it in the template")
            if templateid is not None and row.templateid != templateid:
                what = "another linked template" if row.templateid is not None else "the host itself"
                raise ConfigError(f"{where}: trigger {spec.name!r} of the template exists on the host already, "
                                  f"from {what}: rename one of them")
            trid = int(row.triggerid)
            c.execute(sa.update(t.triggers).where(t.triggers.c.triggerid == trid).values(**values))
            report.triggers_updated += 1
        have = [tuple(r) for r in c.execute(sa.select(t.trigger_tags.c.tag, t.trigger_tags.c.value)
                                            .where(t.trigger_tags.c.triggerid == trid)
                                            .order_by(t.trigger_tags.c.triggertagid))]
        if have != [tuple(x) for x in spec.tags]:  # rewritten only when they differ: a re-import keeps the rows
            c.execute(sa.delete(t.trigger_tags).where(t.trigger_tags.c.triggerid == trid))
            if spec.tags:
                c.execute(sa.insert(t.trigger_tags), [{"triggerid": trid, "tag": k, "value": v}
                                                      for k, v in spec.tags])
        c.execute(sa.delete(t.trigger_items).where(t.trigger_items.c.triggerid == trid))
        if itemids:
            c.execute(sa.insert(t.trigger_items), [{"triggerid": trid, "itemid": i} for i in itemids])
        return trid

    def _resolve_dependency(self, c: Connection, hostid: int, owner: str, dep: str, where: str) -> int:
        """A trigger by its name on the same host/template, or by "host:name"."""
        trid = c.execute(sa.select(t.triggers.c.triggerid).where(t.triggers.c.hostid == hostid,
                                                                 t.triggers.c.description == dep)).scalar()
        if trid is None and ":" in dep:
            host, _, name = dep.partition(":")
            trid = c.execute(sa.select(t.triggers.c.triggerid).join(t.hosts, t.hosts.c.hostid == t.triggers.c.hostid)
                             .where(t.hosts.c.host == host.strip(), t.triggers.c.description == name.strip())).scalar()
        if trid is None:
            raise ConfigError(f"{where}: no trigger {dep!r} on {owner!r} (a trigger of another host or template: "
                              "\"host:trigger name\")")
        statuses = c.execute(sa.select(t.hosts.c.hostid, t.hosts.c.status)
                             .where(t.hosts.c.hostid.in_([hostid, sa.select(t.triggers.c.hostid)
                                                          .where(t.triggers.c.triggerid == trid).scalar_subquery()])))
        templates = {h for h, st in statuses if st == HostStatus.TEMPLATE}
        if templates and hostid not in templates:
            raise ConfigError(f"{where}: {dep!r} is a template's trigger; a host's trigger depends on the copy on a "
                              "host (\"host:trigger name\")")
        return int(trid)

    def _set_dependencies(self, c: Connection, trid: int, ups: list[int]) -> None:
        c.execute(sa.delete(t.trigger_depends).where(t.trigger_depends.c.triggerid_down == trid))
        if ups:
            c.execute(sa.insert(t.trigger_depends), [{"triggerid_down": trid, "triggerid_up": u} for u in set(ups)])

    def _check_cycles(self, c: Connection, trids: list[tuple[int, str]]) -> None:
        graph: dict[int, list[int]] = {}
        for down, up in c.execute(sa.select(t.trigger_depends.c.triggerid_down, t.trigger_depends.c.triggerid_up)):
            graph.setdefault(down, []).append(up)
        for trid, where in trids:
            seen, todo = set(), list(graph.get(trid, []))
            while todo:
                x = todo.pop()
                if x == trid:
                    raise ConfigError(f"{where}.dependencies: a circular dependency leads back to this trigger")
                if x not in seen:
                    seen.add(x)
                    todo.extend(graph.get(x, []))

    def _sync_triggers(self, c: Connection, hostid: int, owner: str, specs: list[TriggerSpec], template: bool,
                       authoritative: bool, report: ImportReport, where: str,
                       cache: dict[str, Any]) -> list[tuple[int, TriggerSpec, str]]:
        """Write one host's or template's own triggers (dependencies come later, once all exist)."""
        written = []
        if template:
            self._forget_template(c, hostid)
        existing = self._existing_triggers(c, hostid)
        for i, spec in enumerate(specs):
            w = f"{where}.triggers[{i}]"
            itemids = self._trigger_itemids(c, owner, template, spec, w, cache)
            written.append((self._upsert_trigger(c, hostid, spec, itemids, report, w, existing=existing), spec, w))
        if authoritative:
            names = [s.name for s in specs]
            report.triggers_deleted += c.execute(
                sa.delete(t.triggers).where(t.triggers.c.hostid == hostid, t.triggers.c.templateid.is_(None),
                                            t.triggers.c.flags == int(Flags.PLAIN),
                                            t.triggers.c.description.not_in(names))).rowcount
        return written

    def _copy_template_triggers(self, c: Connection, hostid: int, templateid: int, report: ImportReport) -> None:
        """Copy (or update) the template's triggers on a linked host, the template's name in their
        expressions replaced by the host's, reading the host's copies of the template's items."""
        names = dict(c.execute(sa.select(t.hosts.c.hostid, t.hosts.c.host)
                               .where(t.hosts.c.hostid.in_([templateid, hostid]))).all())
        tname, hname = names[templateid], names[hostid]
        template = self._template_reads(c, "triggers", templateid, lambda: self._template_triggers(c, templateid))
        if not template:
            return
        copies = dict(c.execute(sa.select(t.items.c.templateid, t.items.c.itemid)
                                .where(t.items.c.hostid == hostid, t.items.c.templateid.is_not(None))).all())

        def rename(text: str) -> str:
            text = _parsed(text).rename_host(tname, hname)
            return _parsed(text).rename_host("{HOST.HOST}", hname) if "{HOST.HOST}" in text else text

        entries = []
        for spec, ttrid, titemids in template:
            spec = dataclasses.replace(spec, expression=rename(spec.expression))
            if spec.recovery_mode == 1:
                spec.recovery_expression = rename(spec.recovery_expression)
            entries.append((spec, [copies[i] for i in titemids if i in copies], ttrid))
        self._upsert_copies(c, hostid, entries, report, f"host {hname!r}")

    def _template_triggers(self, c: Connection, templateid: int) -> list[tuple[TriggerSpec, int, list[int]]]:
        """The template's plain triggers with the items each reads."""
        reads: dict[int, list[int]] = {}
        for trid, itemid in c.execute(sa.select(t.trigger_items.c.triggerid, t.trigger_items.c.itemid)
                                      .join(t.triggers, t.triggers.c.triggerid == t.trigger_items.c.triggerid)
                                      .where(t.triggers.c.hostid == templateid)
                                      .order_by(t.trigger_items.c.triggerid, t.trigger_items.c.itemid)):
            reads.setdefault(trid, []).append(itemid)
        return [(spec, ttrid, reads.get(ttrid, [])) for spec, ttrid in self._triggers_of(c, templateid)]

    def _upsert_copies(self, c: Connection, hostid: int, entries: list[tuple[TriggerSpec, list[int], int]],
                       report: ImportReport, where: str) -> None:
        """_upsert_trigger for copies of template triggers on one host, in a few statements; rows that
        would not change (the trigger, its tags, the items it reads) are not written."""
        rows = c.execute(sa.select(t.triggers).where(t.triggers.c.hostid == hostid)).all()
        by_name = {r.description: r for r in rows}
        by_copy = {r.templateid: r for r in rows if r.templateid is not None}
        inserts: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        ids: list[int | None] = []
        for spec, _, templateid in entries:
            values = self._trigger_values(spec) | {"templateid": templateid}
            row = by_copy.get(templateid) or by_name.get(spec.name)  # a copy keeps its id when renamed
            if row is None:
                inserts.append(values | {"hostid": hostid})
                ids.append(None)
                report.triggers_created += 1
                continue
            if row.templateid != templateid:
                what = "another linked template" if row.templateid is not None else "the host itself"
                raise ConfigError(f"{where}: trigger {spec.name!r} of the template exists on the host already, "
                                  f"from {what}: rename one of them")
            if any(getattr(row, k) != v for k, v in values.items()):
                updates.append(values | {"b_triggerid": row.triggerid})
            ids.append(int(row.triggerid))
            report.triggers_updated += 1
        if updates:
            cols = [k for k in updates[0] if k != "b_triggerid"]
            c.execute(sa.update(t.triggers).where(t.triggers.c.triggerid == sa.bindparam("b_triggerid"))
                      .values({k: sa.bindparam(k) for k in cols}), updates)
        made = iter(c.execute(sa.insert(t.triggers).returning(t.triggers.c.triggerid, sort_by_parameter_order=True),
                              inserts).scalars().all() if inserts else [])
        trids = [x if x is not None else int(next(made)) for x in ids]
        old = [x for x in ids if x is not None]
        tags: dict[int, list[tuple[str, str]]] = {}
        reads: dict[int, set[int]] = {}
        for n in range(0, len(old), 500):
            for r in c.execute(sa.select(t.trigger_tags.c.triggerid, t.trigger_tags.c.tag, t.trigger_tags.c.value)
                               .where(t.trigger_tags.c.triggerid.in_(old[n:n + 500]))
                               .order_by(t.trigger_tags.c.triggertagid)):
                tags.setdefault(r.triggerid, []).append((r.tag, r.value))
            for trid, itemid in c.execute(sa.select(t.trigger_items.c.triggerid, t.trigger_items.c.itemid)
                                          .where(t.trigger_items.c.triggerid.in_(old[n:n + 500]))):
                reads.setdefault(trid, set()).add(itemid)
        tag_gone, tag_rows, item_gone, item_rows = [], [], [], []
        for trid, (spec, itemids, _) in zip(trids, entries, strict=True):
            want = [tuple(x) for x in spec.tags]
            if tags.get(trid, []) != want:
                tag_gone.append(trid)
                tag_rows += [{"triggerid": trid, "tag": k, "value": v} for k, v in want]
            if reads.get(trid, set()) != set(itemids):
                item_gone.append(trid)
                item_rows += [{"triggerid": trid, "itemid": i} for i in dict.fromkeys(itemids)]
        for table, gone, new_rows in ((t.trigger_tags, tag_gone, tag_rows), (t.trigger_items, item_gone, item_rows)):
            for n in range(0, len(gone), 500):
                c.execute(sa.delete(table).where(table.c.triggerid.in_(gone[n:n + 500])))
            if new_rows:
                c.execute(sa.insert(table), new_rows)

    def _copy_dependencies(self, c: Connection, hostid: int) -> None:
        """A copy depends on what its template trigger depends on: on this host's copy of it where the
        template trigger it depends on is a template's, else on that trigger itself."""
        copies = dict(c.execute(sa.select(t.triggers.c.templateid, t.triggers.c.triggerid)
                                .where(t.triggers.c.hostid == hostid, t.triggers.c.templateid.is_not(None))).all())
        if not copies:
            return
        up = t.triggers.alias("up")
        ups: dict[int, set[int]] = {}
        for n in range(0, len(copies), 500):
            part = list(copies)[n:n + 500]
            for down, upid, status in c.execute(
                    sa.select(t.trigger_depends.c.triggerid_down, t.trigger_depends.c.triggerid_up, t.hosts.c.status)
                    .join(up, up.c.triggerid == t.trigger_depends.c.triggerid_up)
                    .join(t.hosts, t.hosts.c.hostid == up.c.hostid)
                    .where(t.trigger_depends.c.triggerid_down.in_(part))):
                target = copies.get(upid) if status == HostStatus.TEMPLATE else upid
                if target is not None:
                    ups.setdefault(copies[down], set()).add(target)
        have: dict[int, set[int]] = {}
        mine = list(copies.values())
        for n in range(0, len(mine), 500):
            for down, upid in c.execute(sa.select(t.trigger_depends.c.triggerid_down, t.trigger_depends.c.triggerid_up)
                                        .where(t.trigger_depends.c.triggerid_down.in_(mine[n:n + 500]))):
                have.setdefault(down, set()).add(upid)
        changed = [trid for trid in mine if have.get(trid, set()) != ups.get(trid, set())]
        for n in range(0, len(changed), 500):
            c.execute(sa.delete(t.trigger_depends).where(t.trigger_depends.c.triggerid_down.in_(changed[n:n + 500])))
        rows = [{"triggerid_down": trid, "triggerid_up": u} for trid in changed for u in sorted(ups.get(trid, ()))]
        if rows:
            c.execute(sa.insert(t.trigger_depends), rows)

    def _triggers_of(self, c: Connection, hostid: int, own_only: bool = False,
                     flags: int = 0) -> list[tuple[TriggerSpec, int]]:
        """The host's triggers of one kind: plain (flags 0), prototypes (2) or discovered (4)."""
        q = (sa.select(t.triggers).where(t.triggers.c.hostid == hostid, t.triggers.c.flags == flags)
             .order_by(t.triggers.c.triggerid))
        if own_only:
            q = q.where(t.triggers.c.templateid.is_(None))
        rows = c.execute(q).all()
        if not rows:
            return []
        ids = [r.triggerid for r in rows]
        tags: dict[int, list[tuple[str, str]]] = {}
        for r in c.execute(sa.select(t.trigger_tags).where(t.trigger_tags.c.triggerid.in_(ids))
                           .order_by(t.trigger_tags.c.triggertagid)):
            tags.setdefault(r.triggerid, []).append((r.tag, r.value))
        up = t.triggers.alias("up")
        deps: dict[int, list[str]] = {}
        for r in c.execute(sa.select(t.trigger_depends.c.triggerid_down, up.c.hostid, up.c.description, t.hosts.c.host)
                           .join(up, up.c.triggerid == t.trigger_depends.c.triggerid_up)
                           .join(t.hosts, t.hosts.c.hostid == up.c.hostid)
                           .where(t.trigger_depends.c.triggerid_down.in_(ids))
                           .order_by(t.hosts.c.host, up.c.description)):
            deps.setdefault(r.triggerid_down, []).append(
                r.description if r.hostid == hostid else f"{r.host}:{r.description}")
        return [
            (TriggerSpec(name=r.description, expression=r.expression, recovery_expression=r.recovery_expression,
                         recovery_mode=r.recovery_mode, severity=Severity(r.priority), multiple=r.type == 1,
                         manual_close=r.manual_close == 1, enabled=r.status == 0, description=r.comments,
                         opdata=r.opdata, tags=tags.get(r.triggerid, []), dependencies=deps.get(r.triggerid, [])),
             r.triggerid)
            for r in rows
        ]

    def _apply_triggers(self, c: Connection, doc: ConfigDoc, report: ImportReport, delete_missing: bool) -> None:
        written: list[tuple[int, int, str, TriggerSpec, str]] = []  # (triggerid, hostid, owner, spec, where)
        templateids = []
        cache: dict[str, Any] = {}  # hosts' items, read once
        for i, tpl in enumerate(doc.templates):
            tid = self._template_id(c, tpl.template, f"templates[{i}].template")
            templateids.append(tid)
            for trid, spec, w in self._sync_triggers(c, tid, tpl.template, tpl.triggers, True, True, report,
                                                     f"templates[{i}]", cache):
                written.append((trid, tid, tpl.template, spec, w))
        for i, h in enumerate(doc.hosts):
            hid = int(self._host_row(c, h.host).hostid)
            for trid, spec, w in self._sync_triggers(c, hid, h.host, h.triggers, False, delete_missing, report,
                                                     f"hosts[{i}]", cache):
                written.append((trid, hid, h.host, spec, w))
        ids = [trid for trid, *_ in written]
        for n in range(0, len(ids), 500):
            c.execute(sa.delete(t.trigger_depends).where(t.trigger_depends.c.triggerid_down.in_(ids[n:n + 500])))
        for trid, hostid, owner, spec, w in written:
            ups = {self._resolve_dependency(c, hostid, owner, d, f"{w}.dependencies[{j}]")
                   for j, d in enumerate(spec.dependencies)}
            if ups:
                c.execute(sa.insert(t.trigger_depends), [{"triggerid_down": trid, "triggerid_up": u} for u in ups])
        self._check_cycles(c, [(trid, w) for trid, _, _, _, w in written])
        hosts: set[int] = set()
        for tid in templateids:
            linked = list(c.execute(sa.select(t.hosts_templates.c.hostid)
                                    .where(t.hosts_templates.c.templateid == tid)).scalars())
            for hostid in linked:
                self._copy_template_triggers(c, hostid, tid, report)
            hosts.update(linked)
        for hostid in sorted(hosts):
            self._copy_dependencies(c, hostid)

    def triggers(self) -> list[TriggerRef]:
        """The enabled triggers of monitored hosts (not templates) whose items are all enabled on
        monitored hosts, as the engine evaluates them."""
        with self.engine.connect() as c:
            q = (sa.select(t.triggers, t.hosts.c.host).join(t.hosts, t.hosts.c.hostid == t.triggers.c.hostid)
                 .where(t.hosts.c.status == HostStatus.MONITORED, t.triggers.c.status == 0,
                        t.triggers.c.flags != int(Flags.PROTOTYPE))
                 .order_by(t.triggers.c.triggerid))
            rows = c.execute(q).all()
            items: dict[int, list[int]] = {}
            off: set[int] = set()  # triggers reading a disabled item or an item of a host not monitored
            for r in c.execute(sa.select(t.trigger_items.c.triggerid, t.trigger_items.c.itemid, t.items.c.status,
                                         t.hosts.c.status.label("host_status"))
                               .join(t.items, t.items.c.itemid == t.trigger_items.c.itemid)
                               .join(t.hosts, t.hosts.c.hostid == t.items.c.hostid)
                               .order_by(t.trigger_items.c.triggerid, t.trigger_items.c.itemid)):
                items.setdefault(r.triggerid, []).append(r.itemid)
                if r.status != 0 or r.host_status != HostStatus.MONITORED:
                    off.add(r.triggerid)
            tags: dict[int, list[tuple[str, str]]] = {}
            for r in c.execute(sa.select(t.trigger_tags).order_by(t.trigger_tags.c.triggertagid)):
                tags.setdefault(r.triggerid, []).append((r.tag, r.value))
            deps: dict[int, list[int]] = {}
            for down, up in c.execute(sa.select(t.trigger_depends.c.triggerid_down, t.trigger_depends.c.triggerid_up)
                                      .order_by(t.trigger_depends.c.triggerid_up)):
                deps.setdefault(down, []).append(up)
            return [
                TriggerRef(r.triggerid, r.hostid, r.host, r.description, r.expression, r.recovery_mode,
                           r.recovery_expression, Severity(r.priority), r.type == 1, r.manual_close == 1,
                           tuple(tags.get(r.triggerid, ())), tuple(deps.get(r.triggerid, ())),
                           tuple(items.get(r.triggerid, ())), r.templateid)
                for r in rows if r.triggerid not in off
            ]

    def save_trigger(self, host: str, spec: TriggerSpec, triggerid: int | None = None) -> int:
        """Create (triggerid None) or update one trigger of a host or template (renaming it if the name
        changed); a template's trigger is copied to its linked hosts. ConfigError `trigger.FIELD: ...`."""
        report = ImportReport()
        with self.engine.begin() as c:
            row = self._host_row(c, host)
            if row is None:
                raise ConfigError(f"trigger.host: no host named {host!r}")
            hid, template = int(row.hostid), row.status == HostStatus.TEMPLATE
            tr = t.triggers.c
            clash = c.execute(sa.select(tr.triggerid).where(tr.hostid == hid, tr.description == spec.name)).scalar()
            if triggerid is not None:
                cur = c.execute(sa.select(tr.hostid, tr.templateid, tr.description)
                                .where(tr.triggerid == triggerid)).first()
                if cur is None or int(cur.hostid) != hid:
                    raise ConfigError(f"trigger.triggerid: no trigger {triggerid} on {host!r}")
                if cur.templateid is not None:
                    raise ConfigError("trigger.name: this trigger comes from a linked template: change it in the "
                                      "template")
                if clash is not None and int(clash) != triggerid:
                    raise ConfigError(f"trigger.name: {host!r} has a trigger named {spec.name!r} already")
                if cur.description != spec.name:
                    c.execute(sa.update(t.triggers).where(tr.triggerid == triggerid).values(description=spec.name))
            elif clash is not None:
                raise ConfigError(f"trigger.name: {host!r} has a trigger named {spec.name!r} already")
            itemids = self._trigger_itemids(c, host, template, spec, "trigger")
            trid = self._upsert_trigger(c, hid, spec, itemids, report, "trigger")
            ups = {self._resolve_dependency(c, hid, host, d, "trigger.dependencies") for d in spec.dependencies}
            self._set_dependencies(c, trid, sorted(ups))
            self._check_cycles(c, [(trid, "trigger")])
            if template:
                for linked in list(c.execute(sa.select(t.hosts_templates.c.hostid)
                                             .where(t.hosts_templates.c.templateid == hid)).scalars()):
                    self._copy_template_triggers(c, linked, hid, report)
                    self._copy_dependencies(c, linked)
            self._bump(c)
        return trid

    def delete_trigger(self, triggerid: int) -> bool:
        """Delete a host's or template's own trigger (its copies on linked hosts go with it)."""
        with self.engine.begin() as c:
            tid = c.execute(sa.select(t.triggers.c.templateid).where(t.triggers.c.triggerid == triggerid)).first()
            if tid is None:
                return False
            if tid.templateid is not None:
                raise ConfigError("trigger.triggerid: this trigger comes from a linked template: delete it there")
            c.execute(sa.delete(t.triggers).where(t.triggers.c.triggerid == triggerid))
            self._bump(c)
        return True

    # --- user macros: global (issue 12) ---------------------------------------------------------

    def _set_global_macros(self, c: Connection, macros: dict[str, str]) -> None:
        c.execute(sa.delete(t.global_macros))
        if macros:
            c.execute(sa.insert(t.global_macros), [{"macro": m, "value": v} for m, v in macros.items()])

    def macros_for(self, hostid: int) -> dict[str, str]:
        """A host's user macros: its own, then its templates', then the global ones."""
        with self.engine.connect() as c:
            out = dict(c.execute(sa.select(t.global_macros.c.macro, t.global_macros.c.value)).all())
            for tid in c.execute(sa.select(t.hosts_templates.c.templateid).where(t.hosts_templates.c.hostid == hostid)
                                 .order_by(t.hosts_templates.c.templateid.desc())).scalars():
                out.update(c.execute(sa.select(t.host_macros.c.macro, t.host_macros.c.value)
                                     .where(t.host_macros.c.hostid == tid)).all())
            out.update(c.execute(sa.select(t.host_macros.c.macro, t.host_macros.c.value)
                                 .where(t.host_macros.c.hostid == hostid)).all())
            return out

    def macros_by_host(self) -> dict[int, dict[str, str]]:
        """macros_for() of every host and template at once (hosts without macros of their own or their
        templates' get the global ones under key 0)."""
        with self.engine.connect() as c:
            glob = dict(c.execute(sa.select(t.global_macros.c.macro, t.global_macros.c.value)).all())
            return {0: glob} | self._effective_macros(c)

    # --- alerting: media types, users, actions, maintenance (issue 12) ---------------------------

    def _apply_alerting_doc(self, c: Connection, doc: ConfigDoc, report: ImportReport, delete_missing: bool) -> None:
        if doc.macros is not None:
            self._set_global_macros(c, doc.macros)
        if doc.media_types is not None:
            for m in doc.media_types:
                self._upsert_media_type(c, m)
            self._delete_others(c, t.media_types, t.media_types.c.name, [m.name for m in doc.media_types],
                                delete_missing)
        if doc.user_groups is not None:
            for g in doc.user_groups:
                if c.execute(sa.select(t.usrgrp.c.usrgrpid).where(t.usrgrp.c.name == g)).first() is None:
                    c.execute(sa.insert(t.usrgrp).values(name=g))
            self._delete_others(c, t.usrgrp, t.usrgrp.c.name, doc.user_groups, delete_missing)
        if doc.users is not None:
            for i, u in enumerate(doc.users):
                self._upsert_user(c, u, f"users[{i}]")
            self._delete_others(c, t.users, t.users.c.username, [u.username for u in doc.users], delete_missing)
        self._apply_triggers(c, doc, report, delete_missing)
        if doc.actions is not None:
            for i, a in enumerate(doc.actions):
                self._upsert_action(c, a, f"actions[{i}]")
            self._delete_others(c, t.actions, t.actions.c.name, [a.name for a in doc.actions], delete_missing)
        if doc.maintenances is not None:
            for i, m in enumerate(doc.maintenances):
                self._upsert_maintenance(c, m, f"maintenances[{i}]")
            self._delete_others(c, t.maintenances, t.maintenances.c.name, [m.name for m in doc.maintenances],
                                delete_missing)
        report.alerting_changed += sum(len(x or []) for x in (doc.media_types, doc.user_groups, doc.users,
                                                              doc.actions, doc.maintenances))

    def _delete_others(self, c: Connection, table: sa.Table, name: Any, keep: list[str], delete_missing: bool) -> None:
        if delete_missing:
            c.execute(sa.delete(table).where(name.not_in(keep)))

    def _upsert_named(self, c: Connection, table: sa.Table, idcol: Any, namecol: Any, name: str,
                      values: dict[str, Any]) -> int:
        rid = c.execute(sa.select(idcol).where(namecol == name)).scalar()
        if rid is None:
            return int(c.execute(sa.insert(table).values({namecol.name: name, **values})).inserted_primary_key[0])
        c.execute(sa.update(table).where(idcol == rid).values(**values))
        return int(rid)

    def _id_of(self, c: Connection, idcol: Any, namecol: Any, name: str, where: str, what: str, hint: str) -> int:
        rid = c.execute(sa.select(idcol).where(namecol == name)).scalar()
        if rid is None:
            raise ConfigError(f"{where}: no {what} named {name!r} ({hint})")
        return int(rid)

    def _upsert_media_type(self, c: Connection, m: MediaTypeSpec) -> int:
        return self._upsert_named(c, t.media_types, t.media_types.c.mediatypeid, t.media_types.c.name, m.name, {
            "type": int(m.kind), "status": 0 if m.enabled else 1, "params": json.dumps(m.params, sort_keys=True),
            "maxattempts": m.max_attempts, "attempt_interval": m.attempt_interval, "description": m.description})

    def _media_type_id(self, c: Connection, name: str, where: str) -> int:
        return self._id_of(c, t.media_types.c.mediatypeid, t.media_types.c.name, name, where, "media type",
                           "add it under media_types:")

    def _user_group_id(self, c: Connection, name: str, where: str) -> int:
        return self._id_of(c, t.usrgrp.c.usrgrpid, t.usrgrp.c.name, name, where, "user group",
                           "add it under user_groups:")

    def _upsert_user(self, c: Connection, u: UserSpec, where: str) -> int:
        groups = [self._user_group_id(c, g, f"{where}.groups[{i}]") for i, g in enumerate(u.groups)]
        medias = [(self._media_type_id(c, m.media_type, f"{where}.medias[{i}].media_type"), m)
                  for i, m in enumerate(u.medias)]
        uid = self._upsert_named(c, t.users, t.users.c.userid, t.users.c.username, u.username,
                                 {"name": u.name, "surname": u.surname, "roleid": u.role})
        c.execute(sa.delete(t.users_groups).where(t.users_groups.c.userid == uid))
        for gid in dict.fromkeys(groups):
            c.execute(sa.insert(t.users_groups).values(userid=uid, usrgrpid=gid))
        c.execute(sa.delete(t.media).where(t.media.c.userid == uid))
        for mtid, m in medias:
            c.execute(sa.insert(t.media).values(userid=uid, mediatypeid=mtid, sendto=m.send_to,
                                                active=0 if m.enabled else 1, severity=m.severity, period=m.period))
        return uid

    def _check_condition(self, c: Connection, cond: ConditionSpec, where: str) -> None:
        kind = al.CONDITION_TYPE_LABELS[cond.type]
        w = f"{where}.value"
        if kind == "host_group":
            self._id_of(c, t.host_groups.c.groupid, t.host_groups.c.name, cond.value, w, "host group",
                        "add it under host_groups:")
        elif kind == "host":
            row = self._host_row(c, cond.value)
            if row is None or row.status == HostStatus.TEMPLATE:
                raise ConfigError(f"{w}: no host named {cond.value!r}")
        elif kind == "trigger":
            host, sep, name = cond.value.partition(":")
            row = self._host_row(c, host.strip()) if sep else None
            if row is None or row.status == HostStatus.TEMPLATE:
                raise ConfigError(f"{w}: {cond.value!r} is not \"host:trigger name\" of a host's trigger")
            q = sa.select(t.triggers.c.triggerid).where(t.triggers.c.hostid == row.hostid,
                                                        t.triggers.c.description == name.strip())
            if c.execute(q).first() is None:
                raise ConfigError(f"{w}: host {host.strip()!r} has no trigger {name.strip()!r}")
        elif kind == "proxy":
            self._id_of(c, t.proxies.c.proxyid, t.proxies.c.name, cond.value, w, "proxy", "add it under proxies:")

    def _write_operations(self, c: Connection, actionid: int, ops: list[OperationSpec], recovery: int,
                          where: str) -> None:
        for i, op in enumerate(ops):
            w = f"{where}[{i}]"
            users = [self._id_of(c, t.users.c.userid, t.users.c.username, u, f"{w}.send_to_users[{j}]", "user",
                                 "add it under users:") for j, u in enumerate(op.users)]
            groups = [self._user_group_id(c, g, f"{w}.send_to_groups[{j}]") for j, g in enumerate(op.groups)]
            mtid = self._media_type_id(c, op.media_type, f"{w}.media_type") if op.media_type is not None else None
            opid = c.execute(sa.insert(t.operations).values(
                actionid=actionid, recovery=recovery, operationtype=op.kind, esc_step_from=op.step_from,
                esc_step_to=op.step_to, esc_period=op.step_duration, mediatypeid=mtid, subject=op.subject,
                message=op.message, command=op.command, execute_on=op.execute_on)).inserted_primary_key[0]
            for uid in dict.fromkeys(users):
                c.execute(sa.insert(t.op_users).values(operationid=opid, userid=uid))
            for gid in dict.fromkeys(groups):
                c.execute(sa.insert(t.op_groups).values(operationid=opid, usrgrpid=gid))
            # An autoregistration action's host groups (made when missing), templates and tags.
            for gid in dict.fromkeys(self._group(c, g) for g in op.host_groups):
                c.execute(sa.insert(t.opgroup).values(operationid=opid, groupid=gid))
            for tid in dict.fromkeys(self._template_id(c, n, f"{w}.link_templates[{j}]")
                                     for j, n in enumerate(op.templates)):
                c.execute(sa.insert(t.optemplate).values(operationid=opid, templateid=tid))
            if op.tags:
                c.execute(sa.insert(t.optag), [{"operationid": opid, "tag": k, "value": v} for k, v in op.tags])

    def _upsert_action(self, c: Connection, a: ActionSpec, where: str) -> int:
        for i, cond in enumerate(a.conditions):
            self._check_condition(c, cond, f"{where}.conditions[{i}]")
        aid = self._upsert_named(c, t.actions, t.actions.c.actionid, t.actions.c.name, a.name, {
            "eventsource": a.event_source, "status": 0 if a.enabled else 1, "esc_period": a.step_duration,
            "evaltype": a.evaltype, "pause_suppressed": 1 if a.pause_suppressed else 0})
        c.execute(sa.delete(t.action_conditions).where(t.action_conditions.c.actionid == aid))
        if a.conditions:
            c.execute(sa.insert(t.action_conditions), [
                {"actionid": aid, "conditiontype": x.type, "operator": x.operator, "value": x.value,
                 "value2": x.value2} for x in a.conditions])
        c.execute(sa.delete(t.operations).where(t.operations.c.actionid == aid))
        self._write_operations(c, aid, a.operations, 0, f"{where}.operations")
        self._write_operations(c, aid, a.recovery_operations, 1, f"{where}.recovery_operations")
        self._write_operations(c, aid, a.update_operations, 2, f"{where}.update_operations")
        return aid

    def _upsert_maintenance(self, c: Connection, m: MaintenanceSpec, where: str) -> int:
        hosts = []
        for i, h in enumerate(m.hosts):
            row = self._host_row(c, h)
            if row is None or row.status == HostStatus.TEMPLATE:
                raise ConfigError(f"{where}.hosts[{i}]: no host named {h!r}")
            hosts.append(int(row.hostid))
        groups = [self._id_of(c, t.host_groups.c.groupid, t.host_groups.c.name, g, f"{where}.groups[{i}]",
                              "host group", "add it under host_groups:") for i, g in enumerate(m.groups)]
        mid = self._upsert_named(c, t.maintenances, t.maintenances.c.maintenanceid, t.maintenances.c.name, m.name, {
            "maintenance_type": 0 if m.collect_data else 1, "description": m.description,
            "active_since": m.active_since, "active_till": m.active_till})
        for table, col, ids in ((t.maintenances_hosts, "hostid", hosts), (t.maintenances_groups, "groupid", groups)):
            c.execute(sa.delete(table).where(table.c.maintenanceid == mid))
            for x in dict.fromkeys(ids):
                c.execute(sa.insert(table).values({"maintenanceid": mid, col: x}))
        c.execute(sa.delete(t.timeperiods).where(t.timeperiods.c.maintenanceid == mid))
        for p in m.periods:
            c.execute(sa.insert(t.timeperiods).values(
                maintenanceid=mid, timeperiod_type=p.type, every=p.every, month=p.month, dayofweek=p.dayofweek,
                day=p.day, start_time=p.start_time, period=p.period, start_date=p.start_date))
        return mid

    # --- one alerting object at a time (the web forms and the API); the same rows an import writes ---

    def _named(self, kind: str) -> tuple[sa.Table, Any, Any, str]:
        return {"media_type": (t.media_types, t.media_types.c.mediatypeid, t.media_types.c.name, "media type"),
                "action": (t.actions, t.actions.c.actionid, t.actions.c.name, "action"),
                "maintenance": (t.maintenances, t.maintenances.c.maintenanceid, t.maintenances.c.name,
                                "maintenance"),
                "user_group": (t.usrgrp, t.usrgrp.c.usrgrpid, t.usrgrp.c.name, "user group")}[kind]

    def save_alerting(self, kind: str, spec: Any, objid: int | None = None) -> int:
        """Create (objid None) or replace one media type, action, maintenance or user group (spec: its
        name for a user group), renaming it when the name changed. ConfigError `name: ...` for a name
        another has; `<kind>.field: ...` as an import's; nothing is written then."""
        table, idcol, namecol, label = self._named(kind)
        name = spec if kind == "user_group" else spec.name
        with self.engine.begin() as c:
            other = c.execute(sa.select(idcol).where(namecol == name)).scalar()
            if other is not None and other != objid:
                raise ConfigError(f"{kind}.name: a {label} named {name!r} exists already")
            if objid is not None:
                if not c.execute(sa.update(table).where(idcol == objid).values({namecol.name: name})).rowcount:
                    raise ConfigError(f"{kind}.id: no {label} {objid}")
            if kind == "media_type":
                rid = self._upsert_media_type(c, spec)
            elif kind == "action":
                rid = self._upsert_action(c, spec, kind)
            elif kind == "maintenance":
                rid = self._upsert_maintenance(c, spec, kind)
            else:
                rid = objid if objid is not None else int(
                    c.execute(sa.insert(t.usrgrp).values(name=name)).inserted_primary_key[0])
            self._bump(c)
        return rid

    def delete_alerting(self, kind: str, objid: int) -> bool:
        table, idcol, _, _ = self._named(kind)
        with self.engine.begin() as c:
            n = c.execute(sa.delete(table).where(idcol == objid)).rowcount
            self._bump(c)
        return n > 0

    def save_user(self, u: UserSpec) -> int:
        """A user's name, role, groups and media (by username; the password is UserRepo's)."""
        with self.engine.begin() as c:
            uid = self._upsert_user(c, u, "user")
            self._bump(c)
        return uid

    def _read_alerting(self, c: Connection) -> AlertingConfig:
        cfg = AlertingConfig()
        for r in c.execute(sa.select(t.media_types).order_by(t.media_types.c.name)):
            cfg.media_types[r.mediatypeid] = MediaTypeSpec(
                name=r.name, kind=MediaKind(r.type), params=json.loads(r.params or "{}"), enabled=r.status == 0,
                max_attempts=r.maxattempts, attempt_interval=r.attempt_interval, description=r.description)
            cfg.media_type_ids[r.name] = r.mediatypeid
        mt_names = {v: k for k, v in cfg.media_type_ids.items()}
        groups = dict(c.execute(sa.select(t.usrgrp.c.usrgrpid, t.usrgrp.c.name).order_by(t.usrgrp.c.name)).all())
        members: dict[int, list[int]] = {}
        user_groups: dict[int, list[str]] = {}
        for uid, gid in c.execute(sa.select(t.users_groups.c.userid, t.users_groups.c.usrgrpid)
                                  .order_by(t.users_groups.c.userid)):
            members.setdefault(gid, []).append(uid)
            user_groups.setdefault(uid, []).append(groups[gid])
        for gid, name in groups.items():
            cfg.user_groups[gid] = (name, tuple(members.get(gid, ())))
            cfg.group_ids[name] = gid
        medias: dict[int, list[MediaSpec]] = {}
        for r in c.execute(sa.select(t.media).order_by(t.media.c.mediaid)):
            medias.setdefault(r.userid, []).append(MediaSpec(
                media_type=mt_names[r.mediatypeid], send_to=r.sendto, severity=r.severity, period=r.period,
                enabled=r.active == 0))
        for r in c.execute(sa.select(t.users).order_by(t.users.c.username)):
            cfg.users[r.userid] = UserSpec(username=r.username, name=r.name, surname=r.surname, role=r.roleid,
                                           groups=sorted(user_groups.get(r.userid, [])),
                                           medias=medias.get(r.userid, []))
            cfg.user_ids[r.username] = r.userid
        user_names = {v: k for k, v in cfg.user_ids.items()}
        op_users: dict[int, list[str]] = {}
        for opid, uid in c.execute(sa.select(t.op_users.c.operationid, t.op_users.c.userid)):
            op_users.setdefault(opid, []).append(user_names[uid])
        op_groups: dict[int, list[str]] = {}
        for opid, gid in c.execute(sa.select(t.op_groups.c.operationid, t.op_groups.c.usrgrpid)):
            op_groups.setdefault(opid, []).append(groups[gid])
        op_hgroups: dict[int, list[str]] = {}
        hgroup_names = dict(c.execute(sa.select(t.host_groups.c.groupid, t.host_groups.c.name)).all())
        for opid, gid in c.execute(sa.select(t.opgroup.c.operationid, t.opgroup.c.groupid)):
            op_hgroups.setdefault(opid, []).append(hgroup_names[gid])
        op_templates: dict[int, list[str]] = {}
        for opid, name in c.execute(sa.select(t.optemplate.c.operationid, t.hosts.c.host)
                                    .join(t.hosts, t.hosts.c.hostid == t.optemplate.c.templateid)):
            op_templates.setdefault(opid, []).append(name)
        op_tags: dict[int, list[tuple[str, str]]] = {}
        for r in c.execute(sa.select(t.optag).order_by(t.optag.c.optagid)):
            op_tags.setdefault(r.operationid, []).append((r.tag, r.value))
        conds: dict[int, list[ConditionSpec]] = {}
        for r in c.execute(sa.select(t.action_conditions).order_by(t.action_conditions.c.conditionid)):
            conds.setdefault(r.actionid, []).append(ConditionSpec(r.conditiontype, r.operator, r.value, r.value2))
        ops: dict[tuple[int, int], list[OperationSpec]] = {}
        for r in c.execute(sa.select(t.operations).order_by(t.operations.c.operationid)):
            ops.setdefault((r.actionid, r.recovery), []).append(OperationSpec(
                kind=r.operationtype, step_from=r.esc_step_from, step_to=r.esc_step_to, step_duration=r.esc_period,
                users=sorted(op_users.get(r.operationid, [])), groups=sorted(op_groups.get(r.operationid, [])),
                media_type=mt_names.get(r.mediatypeid) if r.mediatypeid is not None else None,
                subject=r.subject, message=r.message, command=r.command, execute_on=r.execute_on,
                host_groups=sorted(op_hgroups.get(r.operationid, [])),
                templates=sorted(op_templates.get(r.operationid, [])), tags=op_tags.get(r.operationid, [])))
        for r in c.execute(sa.select(t.actions).order_by(t.actions.c.name)):
            cfg.actions[r.actionid] = ActionSpec(
                name=r.name, event_source=r.eventsource, enabled=r.status == 0, step_duration=r.esc_period,
                evaltype=r.evaltype, pause_suppressed=r.pause_suppressed == 1, conditions=conds.get(r.actionid, []),
                operations=ops.get((r.actionid, 0), []), recovery_operations=ops.get((r.actionid, 1), []),
                update_operations=ops.get((r.actionid, 2), []))
        host_names = dict(c.execute(sa.select(t.hosts.c.hostid, t.hosts.c.host)).all())
        hgroups = dict(c.execute(sa.select(t.host_groups.c.groupid, t.host_groups.c.name)).all())
        cfg.host_group_ids = {v: k for k, v in hgroups.items()}
        m_hosts: dict[int, list[str]] = {}
        for mid, hid in c.execute(sa.select(t.maintenances_hosts.c.maintenanceid, t.maintenances_hosts.c.hostid)):
            m_hosts.setdefault(mid, []).append(host_names[hid])
        m_groups: dict[int, list[str]] = {}
        for mid, gid in c.execute(sa.select(t.maintenances_groups.c.maintenanceid, t.maintenances_groups.c.groupid)):
            m_groups.setdefault(mid, []).append(hgroups[gid])
        periods: dict[int, list[TimePeriodSpec]] = {}
        for r in c.execute(sa.select(t.timeperiods).order_by(t.timeperiods.c.timeperiodid)):
            periods.setdefault(r.maintenanceid, []).append(TimePeriodSpec(
                type=r.timeperiod_type, every=r.every, month=r.month, dayofweek=r.dayofweek, day=r.day,
                start_time=r.start_time, period=r.period, start_date=r.start_date))
        for r in c.execute(sa.select(t.maintenances).order_by(t.maintenances.c.name)):
            cfg.maintenances[r.maintenanceid] = MaintenanceSpec(
                name=r.name, collect_data=r.maintenance_type == 0, active_since=r.active_since,
                active_till=r.active_till, description=r.description, hosts=sorted(m_hosts.get(r.maintenanceid, [])),
                groups=sorted(m_groups.get(r.maintenanceid, [])), periods=periods.get(r.maintenanceid, []))
        for r in c.execute(sa.select(t.hosts.c.hostid, t.hosts.c.host).where(t.hosts.c.status != HostStatus.TEMPLATE)):
            cfg.host_ids[r.host] = r.hostid
        hg: dict[int, list[str]] = {}
        for hid, gid in c.execute(sa.select(t.hosts_groups.c.hostid, t.hosts_groups.c.groupid)):
            hg.setdefault(hid, []).append(hgroups[gid])
        cfg.host_groups = {hid: tuple(sorted(g)) for hid, g in hg.items() if hid in host_names}
        for r in c.execute(sa.select(t.triggers.c.triggerid, t.triggers.c.description, t.hosts.c.host)
                           .join(t.hosts, t.hosts.c.hostid == t.triggers.c.hostid)
                           .where(t.hosts.c.status != HostStatus.TEMPLATE)):
            cfg.trigger_ids[f"{r.host}:{r.description}"] = r.triggerid
        return cfg

    def alerting(self) -> AlertingConfig:
        """Media types, users, user groups, actions and maintenance, with the maps from names to ids."""
        with self.engine.connect() as c:
            return self._read_alerting(c)

    def _export_alerting(self, c: Connection) -> dict[str, Any]:
        out: dict[str, Any] = {}
        macros = dict(c.execute(sa.select(t.global_macros.c.macro, t.global_macros.c.value)
                                .order_by(t.global_macros.c.macro)).all())
        if macros:
            out["macros"] = macros
        cfg = self._read_alerting(c)
        if cfg.media_types:
            out["media_types"] = [al.media_type_to_doc(m) for m in cfg.media_types.values()]
        if cfg.user_groups:
            out["user_groups"] = [name for name, _ in cfg.user_groups.values()]
        if cfg.users:
            out["users"] = [al.user_to_doc(u) for u in cfg.users.values()]
        if cfg.actions:
            out["actions"] = [al.action_to_doc(a) for a in cfg.actions.values()]
        if cfg.maintenances:
            out["maintenances"] = [al.maintenance_to_doc(m) for m in cfg.maintenances.values()]
        return out
