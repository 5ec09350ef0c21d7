"""Zabbix 6.0's server-proxy messages: proxy config, proxy heartbeat, proxy data, proxy tasks.

Shared by both sides (the server's proxy handling and the `vigil proxy` process). As the real
zabbix_proxy 6.0.14 sends them (see docs/proxies.md):

- active proxy -> server: `{"request":"proxy config","host":H,"version":V}`; the reply is an object
  whose top-level keys are table names, each `{"fields":[...],"data":[[...],...]}`, with no
  "request" key and no "data" wrapper (the proxy refuses both);
- `{"request":"proxy heartbeat","host":H,"version":V}` -> `{"response":"success"}`;
- `{"request":"proxy data","host":H,"session":S,"version":V,"clock":C,"ns":N, "history data":[...],
  "discovery data":[...], "auto registration":[...], "interface availability":[...], "more":1}`;
- passive (server -> proxy): `{"request":"proxy config","data":{tables}}` (here the wrapper is
  required) and `{"request":"proxy data"}`, answered with the same body as an active proxy's data,
  which the server acknowledges on the same connection.

Parsers refuse bad input with a ProtocolError naming the field: `history data[3].clock: ...`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from vigil.agent.protocol.messages import CLOCK_MAX, ID_MAX, NS_MAX, ProtocolError, read_uint

PROXY_CONFIG = "proxy config"
PROXY_HEARTBEAT = "proxy heartbeat"
PROXY_DATA = "proxy data"
PROXY_TASKS = "proxy tasks"
PROXY_REQUESTS = (PROXY_CONFIG, PROXY_HEARTBEAT, PROXY_DATA, PROXY_TASKS)
# Vigil's extension for site servers (docs/proxies.md, "Site servers"): a site registers its hosts and
# items on the central server, which answers the map from the site's item ids to its own.
SITE_CONFIG = "vigil site config"

HISTORY_DATA = "history data"
DISCOVERY_DATA = "discovery data"
AUTO_REGISTRATION = "auto registration"
INTERFACE_AVAILABILITY = "interface availability"
HOST_AVAILABILITY = "host availability"  # Zabbix before 5.2; still read
MAX_RECORDS = 10_000  # what one 6.0 proxy batch holds at most (it sets "more":1 when it has more)

_SESSION = re.compile(r"[0-9a-fA-F]{32}")
_NAME_LIMIT = 128
_TEXT_LIMIT = 65535
UINT64 = 2**64 - 1


def _where(section: str, i: int) -> str:
    return f"{section}[{i}]"


def _obj(d: Any, where: str) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise ProtocolError(f"{where}: must be an object")
    return d


def _uint(d: dict[str, Any], name: str, where: str, hi: int, default: int | None = None) -> int:
    v = d.get(name)
    if v is None:
        if default is None:
            raise ProtocolError(f"{where}.{name}: missing")
        return default
    try:
        return read_uint(v, name, hi)
    except ProtocolError as e:
        raise ProtocolError(f"{where}.{name}: {e}") from None


def _str(d: dict[str, Any], name: str, where: str, default: str | None = None, limit: int = _TEXT_LIMIT) -> str:
    v = d.get(name, default)
    if v is None:
        raise ProtocolError(f"{where}.{name}: missing")
    if isinstance(v, bool) or not isinstance(v, str | int | float):
        raise ProtocolError(f"{where}.{name}: must be a string")
    v = str(v)
    if len(v) > limit:
        raise ProtocolError(f"{where}.{name}: longer than {limit} characters")
    return v


def proxy_name(obj: dict[str, Any]) -> str:
    """The `host` field of a proxy request: the proxy's Hostname."""
    host = obj.get("host")
    if not isinstance(host, str) or not host:
        raise ProtocolError("host: missing" if host is None else "host: must be a non-empty string")
    if len(host) > _NAME_LIMIT:
        raise ProtocolError(f"host: longer than {_NAME_LIMIT} characters")
    return host


def check_session(v: Any) -> str:
    if not isinstance(v, str) or not _SESSION.fullmatch(v):
        raise ProtocolError(f"session: must be 32 hexadecimal characters, got {str(v)[:40]!r}")
    return v.lower()


@dataclass(frozen=True, slots=True)
class ConfigRequest:
    """An active proxy asking for its configuration."""

    host: str
    version: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"request": PROXY_CONFIG, "host": self.host, "version": self.version}


@dataclass(frozen=True, slots=True)
class Heartbeat:
    host: str
    version: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"request": PROXY_HEARTBEAT, "host": self.host, "version": self.version}


@dataclass
class Table:
    """One table of a proxy config reply: column names and rows in that order."""

    fields: list[str]
    data: list[list[Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"fields": self.fields, "data": self.data}


@dataclass
class ConfigReply:
    """The configuration tables sent to a proxy, by table name."""

    tables: dict[str, Table] = field(default_factory=dict)

    def active_json(self) -> dict[str, Any]:
        """The body answering an active proxy: tables at top level, nothing else."""
        return {name: t.to_json() for name, t in self.tables.items()}

    def passive_json(self) -> dict[str, Any]:
        """The request sent to a passive proxy: the tables under "data"."""
        return {"request": PROXY_CONFIG, "data": self.active_json()}


def parse_config_tables(obj: Any, known: dict[str, tuple[str, ...]] | None = None) -> ConfigReply:
    """Tables of a proxy config reply (active) or of the "data" of a passive request.

    `known` (table -> its columns) refuses a table or column not in it, as the real proxy does.
    """
    if not isinstance(obj, dict):
        raise ProtocolError("proxy config: must be an object of tables")
    out = ConfigReply()
    for name, t in obj.items():
        if known is not None and name not in known:
            raise ProtocolError(f"invalid table name {name!r}")
        t = _obj(t, name)
        fields, data = t.get("fields"), t.get("data")
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            raise ProtocolError(f"{name}.fields: must be a list of column names")
        if known is not None:
            for f in fields:
                if f not in known[name]:
                    raise ProtocolError(f"invalid field name \"{name}.{f}\"")
        if not isinstance(data, list):
            raise ProtocolError(f"{name}.data: must be a list of rows")
        for i, row in enumerate(data):
            if not isinstance(row, list) or len(row) != len(fields):
                raise ProtocolError(f"{name}.data[{i}]: must be a list of {len(fields)} values")
        out.tables[name] = Table(list(fields), data)
    return out


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs 5x, and 10,000 are built per batch
class HistoryRecord:
    """One value in `history data`: what the proxy collected for one of the server's items."""

    id: int
    itemid: int
    clock: int
    ns: int = 0
    value: str | None = None  # None: no value (a log item's position only, or not supported without text)
    state: int = 0  # 1: not supported, `value` holds the reason
    lastlogsize: int | None = None
    mtime: int | None = None
    timestamp: int = 0  # log items: the event's own time, source, severity and event id
    source: str = ""
    severity: int = 0
    logeventid: int = 0

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "itemid": self.itemid, "clock": self.clock, "ns": self.ns}
        if not (self.state or self.timestamp or self.severity or self.logeventid or self.source
                or self.lastlogsize is not None or self.mtime is not None):
            if self.value is not None:  # the common record: no per-field checks
                d["value"] = self.value
            return d
        if self.value is not None:
            d["value"] = self.value
        if self.state:
            d["state"] = self.state
        if self.lastlogsize is not None:
            d["lastlogsize"] = self.lastlogsize
        if self.mtime is not None:
            d["mtime"] = self.mtime
        for name in ("timestamp", "severity", "logeventid"):
            if getattr(self, name):
                d[name] = getattr(self, name)
        if self.source:
            d["source"] = self.source
        return d


_PLAIN_RECORD = frozenset(("id", "itemid", "clock", "ns", "value"))


def parse_history_record(d: Any, i: int) -> HistoryRecord:
    if type(d) is dict and d.keys() <= _PLAIN_RECORD:  # the common record: checked inline, no per-field calls
        rid, itemid, clock, ns, value = d.get("id"), d.get("itemid"), d.get("clock"), d.get("ns", 0), d.get("value")
        if (type(rid) is int and type(itemid) is int and type(clock) is int and type(ns) is int
                and 0 <= rid <= ID_MAX and 0 <= itemid <= UINT64 and 0 <= clock <= CLOCK_MAX and 0 <= ns <= NS_MAX
                and (value is None or (type(value) is str and len(value) <= _TEXT_LIMIT))):
            return HistoryRecord(rid, itemid, clock, ns, value)
    return _parse_history_record(d, i)  # anything else, and every error with the field named


def _parse_history_record(d: Any, i: int) -> HistoryRecord:
    w = _where(HISTORY_DATA, i)
    d = _obj(d, w)
    value = d.get("value")
    if value is not None:
        value = _str(d, "value", w)
    state = _uint(d, "state", w, 1, 0)
    return HistoryRecord(
        id=_uint(d, "id", w, ID_MAX), itemid=_uint(d, "itemid", w, UINT64), clock=_uint(d, "clock", w, CLOCK_MAX),
        ns=_uint(d, "ns", w, NS_MAX, 0), value=value, state=state,
        lastlogsize=_uint(d, "lastlogsize", w, 2**63 - 1) if "lastlogsize" in d else None,
        mtime=_uint(d, "mtime", w, CLOCK_MAX) if "mtime" in d else None,
        timestamp=_uint(d, "timestamp", w, CLOCK_MAX, 0), source=_str(d, "source", w, "", 64),
        severity=_uint(d, "severity", w, 2**31 - 1, 0), logeventid=_uint(d, "logeventid", w, 2**31 - 1, 0),
    )


@dataclass(frozen=True, slots=True)
class DiscoveryRecord:
    clock: int
    druleid: int
    dcheckid: int
    ip: str
    dns: str = ""
    port: int = 0
    value: str = ""
    status: int = 0
    id: int = 0


def parse_discovery_record(d: Any, i: int) -> DiscoveryRecord:
    w = _where(DISCOVERY_DATA, i)
    d = _obj(d, w)
    return DiscoveryRecord(
        clock=_uint(d, "clock", w, CLOCK_MAX), druleid=_uint(d, "druleid", w, UINT64),
        dcheckid=_uint(d, "dcheckid", w, UINT64, 0), ip=_str(d, "ip", w, limit=64), dns=_str(d, "dns", w, "", 255),
        port=_uint(d, "port", w, 65535, 0), value=_str(d, "value", w, ""), status=_uint(d, "status", w, 2, 0),
        id=_uint(d, "id", w, ID_MAX, 0),
    )


@dataclass(frozen=True, slots=True)
class AutoRegistration:
    clock: int
    host: str
    ip: str = ""
    dns: str = ""
    port: str = ""
    host_metadata: str = ""
    tls_accepted: int = 1
    id: int = 0
    flags: int = 0  # 0 default, 1 the agent's HostInterface was an IP, 2 a DNS name (6.0's proxy_autoreg_host)


def parse_autoregistration(d: Any, i: int) -> AutoRegistration:
    w = _where(AUTO_REGISTRATION, i)
    d = _obj(d, w)
    return AutoRegistration(
        clock=_uint(d, "clock", w, CLOCK_MAX), host=_str(d, "host", w, limit=_NAME_LIMIT), ip=_str(d, "ip", w, "", 64),
        dns=_str(d, "dns", w, "", 255), port=_str(d, "port", w, "", 64),
        host_metadata=_str(d, "host_metadata", w, "", 255), tls_accepted=_uint(d, "tls_accepted", w, 7, 1),
        id=_uint(d, "id", w, ID_MAX, 0), flags=_uint(d, "flags", w, 2, 0),
    )


@dataclass(frozen=True, slots=True)
class InterfaceAvailability:
    """An interface's availability as the proxy saw it: 0 unknown, 1 available, 2 unavailable."""

    interfaceid: int
    available: int
    error: str = ""


def parse_interface_availability(d: Any, i: int, section: str = INTERFACE_AVAILABILITY) -> InterfaceAvailability:
    w = _where(section, i)
    d = _obj(d, w)
    return InterfaceAvailability(_uint(d, "interfaceid", w, UINT64), _uint(d, "available", w, 2),
                                 _str(d, "error", w, "", 2048))


@dataclass(frozen=True, slots=True)
class HostAvailability:
    """Zabbix before 5.2 sent availability per host and interface kind (`available`, `snmp_available`...)."""

    hostid: int
    available: int
    error: str = ""


def parse_host_availability(d: Any, i: int) -> HostAvailability:
    w = _where(HOST_AVAILABILITY, i)
    d = _obj(d, w)
    return HostAvailability(_uint(d, "hostid", w, UINT64), _uint(d, "available", w, 2, 0),
                            _str(d, "error", w, "", 2048))


@dataclass
class ProxyData:
    """The body of `proxy data`: sent by an active proxy, or a passive proxy's reply to the server."""

    host: str = ""  # empty in a passive proxy's reply: the server knows whom it asked
    session: str = ""
    version: str = ""
    clock: int = 0
    ns: int = 0
    history: list[HistoryRecord] = field(default_factory=list)
    discovery: list[DiscoveryRecord] = field(default_factory=list)
    autoregistration: list[AutoRegistration] = field(default_factory=list)
    interfaces: list[InterfaceAvailability] = field(default_factory=list)
    hosts: list[HostAvailability] = field(default_factory=list)
    more: bool = False

    def records(self) -> int:
        return len(self.history) + len(self.discovery) + len(self.autoregistration)

    def to_json(self, *, request: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {"request": PROXY_DATA, "host": self.host} if request else {}
        d.update(session=self.session, version=self.version)
        if self.history:
            d[HISTORY_DATA] = [r.to_json() for r in self.history]
        if self.discovery:
            d[DISCOVERY_DATA] = [{k: getattr(r, k) for k in r.__slots__} for r in self.discovery]
        if self.autoregistration:
            d[AUTO_REGISTRATION] = [{k: getattr(r, k) for k in r.__slots__} for r in self.autoregistration]
        if self.interfaces:
            d[INTERFACE_AVAILABILITY] = [{"interfaceid": r.interfaceid, "available": r.available, "error": r.error}
                                         for r in self.interfaces]
        if self.more:
            d["more"] = 1
        d.update(clock=self.clock, ns=self.ns)
        return d


def _section(obj: dict[str, Any], name: str, max_records: int) -> list[Any]:
    v = obj.get(name)
    if v is None:
        return []
    if not isinstance(v, list):
        raise ProtocolError(f"{name}: must be a list")
    if len(v) > max_records:
        raise ProtocolError(f"{name}: {len(v)} records, over the maximum of {max_records}")
    return v


def parse_proxy_data(obj: Any, *, passive: bool = False, max_records: int = MAX_RECORDS) -> ProxyData:
    """A `proxy data` body; ids in `history data` must increase (a proxy numbers them in order).

    Raises ProtocolError naming the first bad field: a proxy resends the whole batch, so a batch is
    taken whole or refused whole.
    """
    if not isinstance(obj, dict):
        raise ProtocolError("proxy data: must be an object")
    out = ProxyData(host="" if passive else proxy_name(obj), version=str(obj.get("version", ""))[:32])
    session = obj.get("session")
    history = _section(obj, HISTORY_DATA, max_records)
    if session is not None or history:
        out.session = check_session(session)
    out.clock = _uint(obj, "clock", "proxy data", CLOCK_MAX, 0)
    out.ns = _uint(obj, "ns", "proxy data", NS_MAX, 0)
    last = 0
    for i, d in enumerate(history):
        r = parse_history_record(d, i)
        if r.id <= last:
            raise ProtocolError(f"{HISTORY_DATA}[{i}].id: {r.id} does not follow {last}: ids must increase within "
                                "a session")
        last = r.id
        out.history.append(r)
    out.discovery = [parse_discovery_record(d, i) for i, d in enumerate(_section(obj, DISCOVERY_DATA, max_records))]
    out.autoregistration = [parse_autoregistration(d, i)
                            for i, d in enumerate(_section(obj, AUTO_REGISTRATION, max_records))]
    out.interfaces = [parse_interface_availability(d, i)
                      for i, d in enumerate(_section(obj, INTERFACE_AVAILABILITY, max_records))]
    out.hosts = [parse_host_availability(d, i) for i, d in enumerate(_section(obj, HOST_AVAILABILITY, max_records))]
    more = obj.get("more", 0)
    out.more = more in (1, "1")
    return out
