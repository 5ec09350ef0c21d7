"""Proxies in the configuration: import/export of `proxies:` and hosts' `proxy:`, what a proxy is
sent as its configuration (Zabbix 6.0's proxy tables), and the proxies' runtime state.

A mixin of ConfigRepo (server/config/repo.py), kept apart so the proxies' SQL stays in one place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from vigil.server.config import tables as t
from vigil.server.config.model import ConfigError, ProxySpec, proxy_to_doc
from vigil.server.config.tables import ITEM_INTERFACE, HostStatus, InterfaceType, ItemType

# Item types a proxy collects; the server keeps calculated items (and trappers of its own hosts).
PROXY_ITEM_TYPES = (ItemType.AGENT, ItemType.TRAPPER, ItemType.SIMPLE, ItemType.SNMP, ItemType.AGENT_ACTIVE,
                    ItemType.IPMI, ItemType.JMX, ItemType.SNMP_TRAP, ItemType.DEPENDENT, ItemType.HTTP_AGENT)

_SNMP_LEVELS = {"noAuthNoPriv": 0, "authNoPriv": 1, "authPriv": 2}
_AUTH_PROTOCOLS = {"MD5": 0, "SHA": 1, "SHA1": 1, "SHA224": 2, "SHA256": 3, "SHA384": 4, "SHA512": 5}
_PRIV_PROTOCOLS = {"DES": 0, "AES": 1, "AES128": 1, "AES192": 2, "AES256": 3, "AES192C": 4, "AES256C": 5}


@dataclass(frozen=True, slots=True)
class ProxyRef:
    proxyid: int
    name: str
    mode: int  # ProxyMode
    address: str
    allowed_addresses: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ProxyRow:
    """A proxy as Administration -> Proxies lists it."""

    ref: ProxyRef
    description: str
    lastaccess: int  # 0: never seen
    version: str
    delay: int  # seconds: the age of the oldest value it delivered last
    hosts: int


def _ref(r: Any) -> ProxyRef:
    allowed = tuple(x for x in r.allowed_addresses.split(",") if x)
    return ProxyRef(r.proxyid, r.name, r.mode, r.address, allowed)


class ProxyConfig:
    engine: Engine

    # --- import / export ----------------------------------------------------------------------------

    def apply_proxies(self, c: Connection, specs: list[ProxySpec] | None, delete_missing: bool) -> None:
        if specs is None:
            return
        for i, p in enumerate(specs):
            values = {"mode": p.mode, "address": p.address, "allowed_addresses": ",".join(p.allowed_addresses),
                      "description": p.description,
                      "proxy_groupid": self.proxy_group_id(c, p.group, f"proxies[{i}].group")}  # type: ignore[attr-defined]
            pid = c.execute(sa.select(t.proxies.c.proxyid).where(t.proxies.c.name == p.name)).scalar()
            if pid is None:
                c.execute(sa.insert(t.proxies).values(name=p.name, **values))
            else:
                c.execute(sa.update(t.proxies).where(t.proxies.c.proxyid == pid).values(**values))
        if delete_missing:  # their hosts go back to the server (ON DELETE SET NULL)
            c.execute(sa.delete(t.proxies).where(t.proxies.c.name.not_in([p.name for p in specs])))

    def set_host_proxy(self, c: Connection, hostid: int, name: str | None, where: str) -> None:
        if name is None:
            return
        proxyid = None
        if name:
            proxyid = c.execute(sa.select(t.proxies.c.proxyid).where(t.proxies.c.name == name)).scalar()
            if proxyid is None:
                known = sorted(c.execute(sa.select(t.proxies.c.name)).scalars())
                raise ConfigError(f"{where}.proxy: no proxy {name!r} (known: {', '.join(known) or 'none'}; "
                                  "add it under proxies:)")
        c.execute(sa.update(t.hosts).where(t.hosts.c.hostid == hostid).values(proxyid=proxyid))

    def export_proxies(self, c: Connection) -> tuple[list[dict[str, Any]], dict[int, str]]:
        """The proxies as document entries, and each host's proxy name by hostid."""
        rows = c.execute(sa.select(t.proxies).order_by(t.proxies.c.name)).all()
        groups = self.proxy_group_names(c)  # type: ignore[attr-defined]
        docs = [proxy_to_doc(ProxySpec(r.name, r.mode, r.address, [x for x in r.allowed_addresses.split(",") if x],
                                       r.description, groups.get(r.proxy_groupid, ""))) for r in rows]
        names = {r.proxyid: r.name for r in rows}
        hosts = {r.hostid: names[r.proxyid] for r in c.execute(
            sa.select(t.hosts.c.hostid, t.hosts.c.proxyid).where(t.hosts.c.proxyid.is_not(None)))}
        return docs, hosts

    # --- what the web pages read and change (Administration -> Proxies, the host form) ---------------

    def proxy_rows(self) -> list[ProxyRow]:
        """Every proxy with its runtime state and how many hosts it monitors, by name."""
        h = t.hosts.c
        counts = (sa.select(h.proxyid, sa.func.count().label("n")).where(h.proxyid.is_not(None),
                                                                        h.status != HostStatus.TEMPLATE)
                  .group_by(h.proxyid).subquery())
        q = (sa.select(t.proxies, sa.func.coalesce(counts.c.n, 0).label("hosts"))
             .outerjoin(counts, counts.c.proxyid == t.proxies.c.proxyid).order_by(t.proxies.c.name))
        with self.engine.connect() as c:
            return [ProxyRow(_ref(r), r.description, int(r.lastaccess), r.version, int(r.delay), int(r.hosts))
                    for r in c.execute(q)]

    def proxy_row(self, proxyid: int) -> ProxyRow | None:
        return next((r for r in self.proxy_rows() if r.ref.proxyid == proxyid), None)

    def host_proxy_names(self, hostids: list[int] | None = None) -> dict[int, str]:
        """hostid -> the name of the proxy monitoring it (hosts the server monitors itself are left out)."""
        q = (sa.select(t.hosts.c.hostid, t.proxies.c.name)
             .join(t.proxies, t.proxies.c.proxyid == t.hosts.c.proxyid))
        if hostids is not None:
            q = q.where(t.hosts.c.hostid.in_(hostids))
        with self.engine.connect() as c:
            return {int(r.hostid): r.name for r in c.execute(q)}

    def save_proxy(self, spec: ProxySpec, proxyid: int | None) -> int:
        """Create (proxyid None) or change a proxy, renaming it if need be; ConfigError 'name: ...' when the
        name is taken or the proxy is gone, 'group: ...' when its proxy group is unknown. Its hosts stay with it."""
        values = {"name": spec.name, "mode": spec.mode, "address": spec.address,
                  "allowed_addresses": ",".join(spec.allowed_addresses), "description": spec.description}
        with self.engine.begin() as c:
            values["proxy_groupid"] = self.proxy_group_id(c, spec.group, "group")  # type: ignore[attr-defined]
            other = c.execute(sa.select(t.proxies.c.proxyid).where(t.proxies.c.name == spec.name)).scalar()
            if other is not None and other != proxyid:
                raise ConfigError(f"name: a proxy named {spec.name!r} exists already")
            if proxyid is None:
                proxyid = int(c.execute(sa.insert(t.proxies).values(**values)).inserted_primary_key[0])
            elif c.execute(sa.update(t.proxies).where(t.proxies.c.proxyid == proxyid).values(**values)).rowcount == 0:
                raise ConfigError(f"proxyid: no proxy {proxyid}")
            self._bump(c)  # type: ignore[attr-defined]
            return proxyid

    def delete_proxies(self, proxyids: list[int]) -> list[str]:
        """Delete the proxies; their hosts go back to the server. The names of those deleted."""
        with self.engine.begin() as c:
            names = list(c.execute(sa.select(t.proxies.c.name).where(t.proxies.c.proxyid.in_(proxyids))
                                   .order_by(t.proxies.c.name)).scalars())
            if names:
                c.execute(sa.delete(t.proxies).where(t.proxies.c.proxyid.in_(proxyids)))
                self._bump(c)  # type: ignore[attr-defined]
            return names

    # --- what the server's proxy handling reads -----------------------------------------------------

    def proxies(self) -> dict[str, ProxyRef]:
        with self.engine.connect() as c:
            return {r.name: _ref(r) for r in c.execute(sa.select(t.proxies))}

    def proxy_items(self, proxyid: int) -> dict[int, tuple[int, int, int]]:
        """itemid -> (hostid, type, value_type) of the enabled items the proxy collects, and of every
        host of its proxy group: values it buffered for a host that moved to another proxy are kept."""
        with self.engine.connect() as c:
            group = sa.select(t.proxies.c.proxy_groupid).where(t.proxies.c.proxyid == proxyid).scalar_subquery()
            drained = sa.select(t.proxy_drains.c.hostid).where(t.proxy_drains.c.proxyid == proxyid)
            q = (sa.select(t.items.c.itemid, t.items.c.hostid, t.items.c.type, t.items.c.value_type)
                 .join(t.hosts, t.hosts.c.hostid == t.items.c.hostid)
                 .where(sa.or_(t.hosts.c.proxyid == proxyid, t.hosts.c.proxy_groupid == group,
                              t.hosts.c.hostid.in_(drained)),
                        t.hosts.c.status == HostStatus.MONITORED,
                        t.items.c.status == 0, t.items.c.type.in_([int(x) for x in PROXY_ITEM_TYPES])))
            return {r.itemid: (r.hostid, r.type, r.value_type) for r in c.execute(q)}

    def proxy_interfaces(self, proxyid: int) -> set[int]:
        with self.engine.connect() as c:
            return set(c.execute(sa.select(t.interfaces.c.interfaceid)
                                 .join(t.hosts, t.hosts.c.hostid == t.interfaces.c.hostid)
                                 .where(t.hosts.c.proxyid == proxyid)).scalars())

    def touch_proxy(self, proxyid: int, now: int, version: str, delay: int | None = None,
                    buffer: int | None = None) -> None:
        """Record a contact; `delay` and `buffer` (unsent values it reported) only when given."""
        values: dict[str, Any] = {"lastaccess": now, "version": version[:32]}
        if delay is not None:
            values["delay"] = delay
        if buffer is not None:
            values["buffer"] = buffer
        with self.engine.begin() as c:
            c.execute(sa.update(t.proxies).where(t.proxies.c.proxyid == proxyid).values(**values))

    def save_proxy_availability(self, rows: list[tuple[int, int, str]]) -> None:
        """(interfaceid, available, error) as a proxy reported them."""
        with self.engine.begin() as c:
            for iid, available, error in rows:
                c.execute(sa.update(t.interfaces).where(t.interfaces.c.interfaceid == iid)
                          .values(available=available, error=error[:2048]))

    def proxy_state(self) -> dict[str, tuple[int, int, str]]:
        """name -> (lastaccess, delay, version)."""
        with self.engine.connect() as c:
            return {r.name: (r.lastaccess, r.delay, r.version) for r in c.execute(
                sa.select(t.proxies.c.name, t.proxies.c.lastaccess, t.proxies.c.delay, t.proxies.c.version))}

    def proxy_buffers(self) -> dict[str, int | None]:
        """name -> the unsent values it last reported (None: it never reported any, as a 6.0 proxy)."""
        with self.engine.connect() as c:
            return {r.name: r.buffer for r in c.execute(sa.select(t.proxies.c.name, t.proxies.c.buffer))}

    def proxy_tables(self, proxyid: int) -> dict[str, tuple[list[str], list[list[Any]]]]:
        """Zabbix 6.0's proxy configuration tables for the hosts the proxy monitors: name -> (fields, rows).

        Templates are flattened (their items are copied onto the hosts already), and each host gets
        its effective user macros; only columns of 6.0's proxy schema appear.
        """
        with self.engine.connect() as c:
            hosts = c.execute(sa.select(t.hosts).where(t.hosts.c.proxyid == proxyid,
                                                       t.hosts.c.status != HostStatus.TEMPLATE)
                              .order_by(t.hosts.c.hostid)).all()
            hostids = [h.hostid for h in hosts]
            interfaces = c.execute(sa.select(t.interfaces).where(t.interfaces.c.hostid.in_(hostids))
                                   .order_by(t.interfaces.c.interfaceid)).all() if hostids else []
            items = c.execute(sa.select(t.items).where(
                t.items.c.hostid.in_(hostids), t.items.c.type.in_([int(x) for x in PROXY_ITEM_TYPES]))
                .order_by(t.items.c.itemid)).all() if hostids else []
            itemids = [i.itemid for i in items]
            rtdata = {r.itemid: r for r in c.execute(sa.select(t.item_rtdata).where(
                t.item_rtdata.c.itemid.in_(itemids)))} if itemids else {}
            preproc = c.execute(sa.select(t.item_preproc).where(t.item_preproc.c.itemid.in_(itemids))
                                .order_by(t.item_preproc.c.item_preprocid)).all() if itemids else []
            macros = self._effective_macros(c, with_global=False)  # type: ignore[attr-defined]
            globals_ = c.execute(sa.select(t.global_macros).order_by(t.global_macros.c.globalmacroid)).all()
        out: dict[str, tuple[list[str], list[list[Any]]]] = {}
        out["globalmacro"] = (["globalmacroid", "macro", "value", "type"],
                              [[g.globalmacroid, g.macro, g.value, 0] for g in globals_])
        out["hosts"] = (
            ["hostid", "host", "name", "status", "ipmi_authtype", "ipmi_privilege", "ipmi_username", "ipmi_password",
             "tls_connect", "tls_accept", "tls_issuer", "tls_subject", "tls_psk_identity", "tls_psk"],
            [[h.hostid, h.host, h.name or h.host, h.status, -1, 2, "", "", 1, h.tls_accept, h.tls_issuer,
              h.tls_subject, "", ""] for h in hosts])
        out["interface"] = (
            ["interfaceid", "hostid", "main", "type", "useip", "ip", "dns", "port", "available"],
            [[i.interfaceid, i.hostid, i.main, i.type, i.useip, i.ip, i.dns, i.port, i.available]
             for i in interfaces])
        snmp = []
        for i in interfaces:
            if i.type != InterfaceType.SNMP:
                continue
            d = json.loads(i.details or "{}")
            snmp.append([i.interfaceid, int(d.get("version", "2")), int(d.get("bulk", "1") in ("1", "true", "yes")),
                         d.get("community", ""), d.get("securityname", ""),
                         _SNMP_LEVELS.get(d.get("securitylevel", ""), 0), d.get("authpassphrase", ""),
                         d.get("privpassphrase", ""), _AUTH_PROTOCOLS.get(d.get("authprotocol", "").upper(), 0),
                         _PRIV_PROTOCOLS.get(d.get("privprotocol", "").upper(), 0), d.get("contextname", "")])
        out["interface_snmp"] = (["interfaceid", "version", "bulk", "community", "securityname", "securitylevel",
                                  "authpassphrase", "privpassphrase", "authprotocol", "privprotocol", "contextname"],
                                 snmp)
        hostmacros = []
        n = 0
        for hid in hostids:
            for m, v in sorted(macros.get(hid, {}).items()):
                n += 1
                hostmacros.append([n, hid, m, v, 0])
        out["hostmacro"] = (["hostmacroid", "hostid", "macro", "value", "type"], hostmacros)
        out["hosts_templates"] = (["hosttemplateid", "hostid", "templateid"], [])
        # Zabbix needs the interface on the item; Vigil's NULL means the host's main one of the item's kind.
        main = {(i.hostid, i.type): i.interfaceid for i in interfaces if i.main}
        out["items"] = (_ITEM_FIELDS, [_item_row(i, main) for i in items])
        out["item_rtdata"] = (["itemid", "lastlogsize", "mtime"],
                              [[i.itemid, rtdata[i.itemid].lastlogsize if i.itemid in rtdata else 0,
                                rtdata[i.itemid].mtime if i.itemid in rtdata else 0] for i in items])
        out["item_preproc"] = (["item_preprocid", "itemid", "step", "type", "params", "error_handler",
                                "error_handler_params"],
                               [[p.item_preprocid, p.itemid, p.step, p.type, p.params, p.error_handler,
                                 p.error_handler_params] for p in preproc])
        self.add_drained_tables(proxyid, out)  # type: ignore[attr-defined]
        return out


# Zabbix 6.0 numbers SNMP agent items 20 (its 4 was SNMPv2c, gone since 5.0: a 6.0 proxy polls no item of
# type 4); Vigil keeps 4 (ItemType.SNMP), and the Vigil proxy maps 20 back (proxy/localconfig.py).
_ZABBIX_ITEM_TYPES = {int(ItemType.SNMP): 20}

_ITEM_FIELDS = ["itemid", "type", "snmp_oid", "hostid", "key_", "delay", "status", "value_type", "trapper_hosts",
                "logtimefmt", "params", "ipmi_sensor", "authtype", "username", "password", "publickey", "privatekey",
                "flags", "interfaceid", "jmx_endpoint", "master_itemid", "timeout", "url", "query_fields", "posts",
                "status_codes", "follow_redirects", "post_type", "http_proxy", "headers", "retrieve_mode",
                "request_method", "output_format", "ssl_cert_file", "ssl_key_file", "ssl_key_password",
                "verify_peer", "verify_host", "allow_traps", "history"]


def _item_row(i: Any, main: dict[tuple[int, int], int]) -> list[Any]:
    query = [{n: v} for n, v in json.loads(i.query_fields or "[]")]
    headers = "".join(f"{n}: {v}\r\n" for n, v in json.loads(i.headers or "[]"))
    interfaceid = i.interfaceid
    if interfaceid is None and ItemType(i.type) in ITEM_INTERFACE:
        interfaceid = main.get((i.hostid, int(ITEM_INTERFACE[ItemType(i.type)])))
    return [i.itemid, _ZABBIX_ITEM_TYPES.get(i.type, i.type), i.snmp_oid, i.hostid, i.key_, i.delay, i.status,
            i.value_type, "", "", i.params, "",
            i.authtype, i.username, i.password, "", "", 0, interfaceid, "", i.master_itemid, i.timeout, i.url,
            json.dumps(query) if query else "", i.posts, i.status_codes, i.follow_redirects, 0, "", headers,
            i.retrieve_mode, i.request_method, 0, i.ssl_cert_file, i.ssl_key_file, "", i.verify_peer, i.verify_host,
            0, i.history]
