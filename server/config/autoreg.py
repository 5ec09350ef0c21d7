"""Active agent autoregistration in the configuration (Zabbix 6.0's way).

- What a registration is (`Registration`) and how one is read from an agent's `active checks` request
  (`registration_from_request`), refusing bad input with the field named.
- The conditions of autoregistration actions (host name, host metadata, proxy): pure functions.
- `AutoregConfig`, a part of ConfigRepo: the record of the last registration of each host name
  (autoreg_host), the autoregistration event, and the host operations of the matching actions (add
  host, add to host groups, link templates, add host tags, enable or disable the host), all in one
  transaction.
"""

from __future__ import annotations

import ipaddress
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from vigil.server.config import tables as t
from vigil.server.config.alerting import ActionSpec, ConditionSpec, OperationSpec
from vigil.server.config.tables import EventObject, EventSource, HostStatus, InterfaceType

log = logging.getLogger("vigil.autoreg")

# Condition types of autoregistration actions (Zabbix's CONDITION_TYPE_*).
PROXY = 20
HOST_NAME = 22
HOST_METADATA = 24
AUTOREG_CONDITIONS = frozenset({PROXY, HOST_NAME, HOST_METADATA})
# Operators (Zabbix's CONDITION_OPERATOR_*).
EQUAL, NOT_EQUAL, LIKE, NOT_LIKE, REGEXP, NOT_REGEXP = 0, 1, 2, 3, 8, 9

# Operation types (Zabbix's OPERATION_TYPE_*): 0 message and 1 command are the escalator's.
HOST_ADD = 2
GROUP_ADD = 4
TEMPLATE_ADD = 6
HOST_ENABLE = 8
HOST_DISABLE = 9
HOST_TAGS_ADD = 13
HOST_OPERATIONS = frozenset({HOST_ADD, GROUP_ADD, TEMPLATE_ADD, HOST_ENABLE, HOST_DISABLE, HOST_TAGS_ADD})

# How the agent said it is reached (Zabbix's ZBX_CONN_*): 1 and 2 when it sent HostInterface.
CONN_DEFAULT, CONN_IP, CONN_DNS = 0, 1, 2
HOST_MAX = 128
METADATA_MAX = 255  # Zabbix's HOST_METADATA_LEN
DNS_MAX = 255
DEFAULT_PORT = 10050
DEFAULT_GROUP = "Discovered hosts"
_HOST_NAME = re.compile(r"[0-9A-Za-z._ \-]+")


class RegistrationError(ValueError):
    """A registration refused; the message names the field."""


@dataclass(frozen=True, slots=True)
class Registration:
    """One autoregistration request: from an agent to the server, or forwarded by a proxy."""

    host: str
    ip: str = ""
    dns: str = ""
    port: int = DEFAULT_PORT
    host_metadata: str = ""
    flags: int = CONN_DEFAULT
    tls_accepted: int = 1
    clock: int = 0
    proxyid: int | None = None
    proxy: str = ""  # the proxy's name; '' when the agent asked the server itself

    def same_as(self, other: Registration) -> bool:
        """Whether `other` says nothing new (Zabbix makes an event only when something changed)."""
        return (self.ip, self.dns, self.port, self.host_metadata, self.flags, self.proxyid) == (
            other.ip, other.dns, other.port, other.host_metadata, other.flags, other.proxyid)


def check_host_name(host: Any, where: str = "host") -> str:
    if not isinstance(host, str) or not host:
        raise RegistrationError(f"{where}: missing" if host is None else f"{where}: must be a non-empty string")
    if len(host) > HOST_MAX:
        raise RegistrationError(f"{where}: longer than {HOST_MAX} characters")
    if not _HOST_NAME.fullmatch(host):
        bad = next(ch for ch in host if not _HOST_NAME.fullmatch(ch))
        raise RegistrationError(f"{where}: invalid host name [{host}]: character {bad!r} is not allowed "
                                "(letters, digits, '.', ' ', '_' and '-')")
    return host


def _text(obj: Mapping[str, Any], name: str, limit: int) -> str:
    v = obj.get(name, "")
    if v is None:
        return ""
    if not isinstance(v, str):
        raise RegistrationError(f"{name}: must be a string")
    if len(v) > limit:
        raise RegistrationError(f"{name}: {len(v)} characters, over the maximum of {limit}")
    return v


def _port(v: Any, where: str) -> int:
    if v is None or v == "":
        return DEFAULT_PORT
    if isinstance(v, bool) or not isinstance(v, int | str) or not str(v).isdigit() or not 0 < int(v) <= 65535:
        raise RegistrationError(f"{where}: {str(v)[:32]!r} is not a valid port (1-65535)")
    return int(v)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def peer_ip(peer: str) -> str:
    host = peer.rsplit(":", 1)[0] if ":" in peer else peer
    host = host.strip("[]")
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return host


def registration_from_request(obj: Mapping[str, Any], peer: str, clock: int, *, tls_accepted: int = 1,
                              proxyid: int | None = None, proxy: str = "") -> Registration:
    """An agent's `active checks` request as Zabbix 6.0 reads it: `host`, `host_metadata`, `interface`
    (HostInterface: an IP or a DNS name), `ip` (ListenIP; else the peer's address), `port` (ListenPort)."""
    host = check_host_name(obj.get("host"))
    metadata = _text(obj, "host_metadata", METADATA_MAX)
    interface = _text(obj, "interface", DNS_MAX)
    ip = obj.get("ip")
    if ip is None or ip == "":
        ip = peer_ip(peer)
    elif not isinstance(ip, str) or not _is_ip(ip):
        raise RegistrationError(f"ip: {str(ip)[:64]!r} is not a valid IP address")
    port = _port(obj.get("port"), "port")
    flags, dns = CONN_DEFAULT, ""
    if interface:
        if _is_ip(interface):
            ip, flags = interface, CONN_IP
        else:
            dns, flags = interface, CONN_DNS
    return Registration(host=host, ip=ip, dns=dns, port=port, host_metadata=metadata, flags=flags,
                        tls_accepted=tls_accepted, clock=clock, proxyid=proxyid, proxy=proxy)


# --- conditions ------------------------------------------------------------------------------------


class AutoregConditionError(ValueError):
    """A condition of an autoregistration action that cannot be evaluated."""


def _text_matches(op: int, subject: str, value: str, what: str) -> bool:
    if op == LIKE:
        return value in subject
    if op == NOT_LIKE:
        return value not in subject
    if op in (REGEXP, NOT_REGEXP):
        try:
            found = re.search(value, subject) is not None
        except re.error as e:
            raise AutoregConditionError(f"{what}: {value!r} is not a regular expression: {e}") from None
        return found if op == REGEXP else not found
    if op == EQUAL:
        return subject == value
    if op == NOT_EQUAL:
        return subject != value
    raise AutoregConditionError(f"{what}: operator {op} is not one of 2 (contains), 3 (does not contain), "
                                "8 (matches), 9 (does not match)")


def autoreg_condition_matches(c: ConditionSpec, host: str, metadata: str, proxy: str) -> bool:
    """One condition of an autoregistration action (value of a proxy condition: the proxy's name)."""
    if c.type == HOST_NAME:
        return _text_matches(c.operator, host, c.value, "condition host name")
    if c.type == HOST_METADATA:
        return _text_matches(c.operator, metadata, c.value, "condition host metadata")
    if c.type == PROXY:
        if c.operator == EQUAL:
            return proxy == c.value
        if c.operator == NOT_EQUAL:
            return proxy != c.value
        raise AutoregConditionError(f"condition proxy: operator {c.operator} is not one of 0 (equals), "
                                    "1 (does not equal)")
    raise AutoregConditionError(f"condition type {c.type} is not one of an autoregistration action "
                                "(20 proxy, 22 host name, 24 host metadata)")


def evaluate(conditions: Sequence[ConditionSpec], evaltype: int, test: Callable[[ConditionSpec], bool]) -> bool:
    """Zabbix's evaluation: 0 and/or (the same type OR'ed, the types AND'ed), 1 and, 2 or."""
    if not conditions:
        return True
    if evaltype == 1:
        return all(test(c) for c in conditions)
    if evaltype == 2:
        return any(test(c) for c in conditions)
    by_type: dict[int, list[ConditionSpec]] = {}
    for c in conditions:
        by_type.setdefault(c.type, []).append(c)
    return all(any(test(c) for c in group) for group in by_type.values())


def matching_actions(actions: Mapping[int, ActionSpec], r: Registration) -> list[tuple[int, ActionSpec]]:
    """The enabled autoregistration actions whose conditions `r` meets, by action id. An action whose
    condition cannot be evaluated is logged and skipped."""
    out = []
    for actionid in sorted(actions):
        a = actions[actionid]
        if not a.enabled or a.event_source != EventSource.AUTOREGISTRATION:
            continue
        try:
            if evaluate(a.conditions, a.evaltype,
                        lambda c: autoreg_condition_matches(c, r.host, r.host_metadata, r.proxy)):
                out.append((actionid, a))
        except AutoregConditionError as e:
            log.error("action %r: %s; skipped for the autoregistration of [%s]", a.name, e, r.host)
    return out


# --- the configuration's side ------------------------------------------------------------------------


@dataclass
class Registered:
    """What recording one registration did."""

    autoreg_hostid: int
    eventid: int
    hostid: int | None = None  # the host the operations made or changed
    created: bool = False
    operations: list[str] = field(default_factory=list)  # what was done, for the log


class AutoregConfig:
    """ConfigRepo's autoregistration part (uses its _group, _template_id, set_templates, _bump)."""

    engine: Any

    def autoreg_hosts(self) -> dict[str, Registration]:
        """The last registration of every host name, as recorded."""
        a, p = t.autoreg_host, t.proxies
        with self.engine.connect() as c:
            rows = c.execute(sa.select(a, p.c.name.label("proxy_name")).select_from(
                a.outerjoin(p, p.c.proxyid == a.c.proxyid))).all()
        return {r.host: Registration(host=r.host, ip=r.listen_ip, dns=r.listen_dns, port=r.listen_port,
                                     host_metadata=r.host_metadata, flags=r.flags, tls_accepted=r.tls_accepted,
                                     clock=r.clock, proxyid=r.proxyid, proxy=r.proxy_name or "") for r in rows}

    def host_id(self, host: str) -> int | None:
        with self.engine.connect() as c:
            v = c.execute(sa.select(t.hosts.c.hostid).where(t.hosts.c.host == host)).scalar()
        return None if v is None else int(v)

    def autoregister(self, r: Registration, operations: Iterable[OperationSpec]) -> Registered:
        """Record `r`, write its event and run the host operations, in one transaction."""
        ops = [op for op in operations if op.kind in HOST_OPERATIONS]
        with self.engine.begin() as c:
            values = {"proxyid": r.proxyid, "listen_ip": r.ip, "listen_dns": r.dns, "listen_port": r.port,
                      "host_metadata": r.host_metadata, "flags": r.flags, "tls_accepted": r.tls_accepted,
                      "clock": r.clock}
            arid = c.execute(sa.select(t.autoreg_host.c.autoreg_hostid).where(t.autoreg_host.c.host == r.host)).scalar()
            if arid is None:
                arid = c.execute(sa.insert(t.autoreg_host).values(host=r.host, **values)).inserted_primary_key[0]
            else:
                c.execute(sa.update(t.autoreg_host).where(t.autoreg_host.c.autoreg_hostid == arid).values(**values))
            eventid = c.execute(sa.insert(t.events).values(
                source=int(EventSource.AUTOREGISTRATION), object=int(EventObject.AUTOREG_HOST), objectid=int(arid),
                clock=r.clock, ns=0, value=1, name=r.host, severity=0)).inserted_primary_key[0]
            out = Registered(int(arid), int(eventid))
            if ops:
                self._autoreg_operations(c, r, ops, out)
                self._bump(c)  # type: ignore[attr-defined]
        return out

    def _autoreg_operations(self, c: Connection, r: Registration, ops: list[OperationSpec], out: Registered) -> None:
        h = t.hosts
        row = c.execute(sa.select(h.c.hostid, h.c.status).where(h.c.host == r.host)).first()
        if row is not None and row.status == HostStatus.TEMPLATE:
            out.operations.append(f"none: [{r.host}] is the name of a template")
            return
        kinds = {op.kind for op in ops}
        useip = 0 if r.flags == CONN_DNS else 1
        if row is None:
            status = HostStatus.DISABLED if HOST_DISABLE in kinds and HOST_ENABLE not in kinds else HostStatus.MONITORED
            hostid = int(c.execute(sa.insert(h).values(
                host=r.host, name=r.host, status=int(status), description="",
                tls_accept=r.tls_accepted if r.tls_accepted in (1, 4) else 1,
                proxyid=r.proxyid)).inserted_primary_key[0])
            c.execute(sa.insert(t.interfaces).values(hostid=hostid, type=int(InterfaceType.AGENT), main=1,
                                                     useip=useip, ip=r.ip, dns=r.dns, port=str(r.port)))
            if GROUP_ADD not in kinds:
                c.execute(sa.insert(t.hosts_groups).values(hostid=hostid, groupid=self._group(c, DEFAULT_GROUP)))  # type: ignore[attr-defined]
            out.created = True
            out.operations.append(f"added host [{r.host}]" + (f" monitored by proxy [{r.proxy}]" if r.proxy else ""))
        else:
            # A host of that name exists (made by an earlier registration or by hand): as Zabbix, the
            # registration moves it to the proxy it came through and updates its agent interface.
            hostid = int(row.hostid)
            c.execute(sa.update(h).where(h.c.hostid == hostid).values(proxyid=r.proxyid))
            i = t.interfaces
            itf = c.execute(sa.select(i.c.interfaceid).where(i.c.hostid == hostid, i.c.type == InterfaceType.AGENT,
                                                             i.c.main == 1)).scalar()
            if itf is None:
                c.execute(sa.insert(i).values(hostid=hostid, type=int(InterfaceType.AGENT), main=1, useip=useip,
                                              ip=r.ip, dns=r.dns, port=str(r.port)))
            else:
                c.execute(sa.update(i).where(i.c.interfaceid == itf).values(useip=useip, ip=r.ip, dns=r.dns,
                                                                            port=str(r.port)))
        out.hostid = hostid
        for op in ops:
            if op.kind == GROUP_ADD:
                have = set(c.execute(sa.select(t.hosts_groups.c.groupid).where(t.hosts_groups.c.hostid == hostid))
                           .scalars())
                for name in op.host_groups:
                    gid = self._group(c, name)  # type: ignore[attr-defined]
                    if gid not in have:
                        c.execute(sa.insert(t.hosts_groups).values(hostid=hostid, groupid=gid))
                        have.add(gid)
                out.operations.append(f"added to host groups {', '.join(op.host_groups)}")
            elif op.kind == TEMPLATE_ADD:
                from vigil.server.config.repo import ImportReport

                have = list(c.execute(sa.select(t.hosts_templates.c.templateid)
                                      .where(t.hosts_templates.c.hostid == hostid)).scalars())
                want = list(dict.fromkeys([*have, *(self._template_id(c, n, f"template {n!r}")  # type: ignore[attr-defined]
                                                     for n in op.templates)]))
                if want != have:
                    self.set_templates(c, hostid, want, ImportReport())  # type: ignore[attr-defined]
                out.operations.append(f"linked templates {', '.join(op.templates)}")
            elif op.kind == HOST_TAGS_ADD:
                have_tags = {(a, b) for a, b in c.execute(sa.select(t.host_tags.c.tag, t.host_tags.c.value)
                                                          .where(t.host_tags.c.hostid == hostid))}
                new = [{"hostid": hostid, "tag": k, "value": v} for k, v in dict.fromkeys(op.tags)
                       if (k, v) not in have_tags]
                if new:
                    c.execute(sa.insert(t.host_tags), new)
                out.operations.append("added host tags " + ", ".join(f"{k}:{v}" if v else k for k, v in op.tags))
            elif op.kind in (HOST_DISABLE, HOST_ENABLE):
                status = HostStatus.DISABLED if op.kind == HOST_DISABLE else HostStatus.MONITORED
                c.execute(sa.update(h).where(h.c.hostid == hostid).values(status=int(status)))
                out.operations.append("disabled the host" if op.kind == HOST_DISABLE else "enabled the host")
