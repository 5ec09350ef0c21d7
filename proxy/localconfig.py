"""The proxy's local configuration: a Vigil configuration database in its `DBName` SQLite file.

The schema is the server's own (created and upgraded with the server's migrations), so the server's
unchanged code works on it: `ConfigRepo.poll_config()` for the pollers, `ConfigRepo.snapshot()` for
the ingest cache. `apply()` is the inverse of `ConfigRepo.proxy_tables()`: it takes the tables of a
`proxy config` (from Vigil's server or a real zabbix_server 6.0) and writes them in one transaction,
keeping the server's hostid, itemid and interfaceid, then bumps the configuration version.

Tables and columns Vigil does not need are ignored; a table that is not in Zabbix 6.0's proxy schema
is refused naming it. A table absent from the reply leaves its local rows as they are (Zabbix
processes the tables present); an empty one removes them. The proxy's own runtime state survives an
update: interface availability, log positions of active agents (item_rtdata), item states.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from itertools import islice
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from vigil.agent.protocol.proxy import ConfigReply, parse_config_tables
from vigil.proxy.memory import trim
from vigil.proxy.schema60 import PROXY_TABLES_60
from vigil.server.config import tables as t
from vigil.server.config.migrate import MIGRATIONS, engine_for
from vigil.server.config.tables import InterfaceType, ItemType

log = logging.getLogger("vigil.proxy.config")

# Item types the proxy does not collect even if sent (the server computes them).
_SERVER_SIDE = (ItemType.CALCULATED,)
_LEVELS = {0: "0", 1: "1", 2: "2"}
# Zabbix 6.0 numbers SNMP agent items 20; Vigil keeps the older 4 (ItemType.SNMP).
_ZABBIX_TYPES = {20: int(ItemType.SNMP)}
# Top-level keys of a server's reply that are not tables (6.0.14 sends "macro.secrets": {}; 6.4 the rest).
NOT_TABLES = frozenset({"macro.secrets", "config_revision", "full_sync", "del_hostids", "del_macro_hostids"})


class LocalConfigError(ValueError):
    """A configuration the proxy refuses; the message names the table, row and column."""


@dataclass(frozen=True, slots=True)
class Applied:
    version: int
    hosts: int
    items: int
    skipped: int  # rows referring to something not sent (an item of an unknown host...)


def open_local(dbname: str | Path) -> Engine:
    """The proxy's configuration database, created or upgraded with the server's migrations.

    A file already at the head revision (every start but the first after an install or an upgrade)
    is checked by reading `alembic_version`; otherwise the migrations run in a child process, so that
    Alembic and Mako (about 11 MB) never load into the long-running proxy."""
    url = f"sqlite:///{Path(dbname).resolve()}"
    engine = engine_for(url)
    head = head_revision()
    try:
        have = stored_revision(engine)
    except sa.exc.DatabaseError as e:
        engine.dispose()
        raise RuntimeError(f"DBName {dbname}: {e.orig if e.orig is not None else e}") from None
    if head is None or have != head:
        engine.dispose()
        _upgrade_in_child(url)
        if head is not None and stored_revision(engine) != head:
            raise RuntimeError(f"DBName {dbname}: migrated, but at revision {stored_revision(engine) or 'none'} "
                               f"instead of {head}")
    return engine


_REVISION = re.compile(r"^revision(?:\s*:\s*[\w\[\] |]+)?\s*=\s*['\"]([^'\"]+)['\"]", re.MULTILINE)
_DOWN = re.compile(r"^down_revision(?:\s*:\s*[\w\[\], |]+)?\s*=\s*(.+)$", re.MULTILINE)


@cache
def head_revision() -> str | None:
    """The single head of the server's migrations, read from their files' `revision` and
    `down_revision` lines without Alembic; None when that is not one clear head (then Alembic decides)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        text = path.read_text()
        rev, down = _REVISION.search(text), _DOWN.search(text)
        if rev is None or down is None:
            continue
        revisions.add(rev.group(1))
        parents.update(re.findall(r"['\"]([^'\"]+)['\"]", down.group(1)))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def stored_revision(engine: Engine) -> str | None:
    """The revision recorded in the file's `alembic_version`, None for a new (or not a Vigil) file."""
    with engine.connect() as c:
        try:
            rows = c.exec_driver_sql("SELECT version_num FROM alembic_version").all()
        except sa.exc.OperationalError as e:
            if "no such table" in str(e.orig):
                return None
            raise
    return str(rows[0][0]) if len(rows) == 1 else None


_UPGRADE = """
import sys
from vigil.server.config.migrate import MigrationError, engine_for, upgrade
engine = engine_for(sys.argv[1])
try:
    upgrade(engine)
except MigrationError as e:
    sys.exit(str(e))
finally:
    engine.dispose()
"""


def _upgrade_in_child(url: str) -> None:
    log.info("migrating the configuration database %s to the current schema", url.removeprefix("sqlite:///"))
    r = subprocess.run([sys.executable, "-c", _UPGRADE, url], capture_output=True, text=True)
    if r.returncode != 0:
        lines = [x for x in r.stderr.strip().splitlines() if x.strip()]
        raise RuntimeError(f"DBName {url.removeprefix('sqlite:///')}: migrating it failed: "
                           f"{lines[-1] if lines else f'exit status {r.returncode}'}")


def _chunks(rows: Iterable[dict[str, Any]], size: int = 1000) -> Iterator[list[dict[str, Any]]]:
    it = iter(rows)
    while chunk := list(islice(it, size)):
        yield chunk


def _rows(reply: ConfigReply, name: str) -> Iterator[dict[str, Any]] | None:
    """A table's rows as dicts, one at a time (10,000 items' at once took 20 MB), or None if absent."""
    table = reply.tables.get(name)
    if table is None:
        return None
    fields = table.fields
    return (dict(zip(fields, row, strict=True)) for row in table.data)


def _int(row: dict[str, Any], name: str, where: str, default: int | None = 0) -> int | None:
    v = row.get(name, default)
    if v is None or v == "":
        return default
    try:
        return int(v)
    except (TypeError, ValueError):
        raise LocalConfigError(f"{where}.{name}: {v!r} is not an integer") from None


def _id(row: dict[str, Any], name: str, where: str) -> int:
    v = _int(row, name, where, None)
    if v is None or v <= 0:
        raise LocalConfigError(f"{where}.{name}: missing or not a positive id")
    return v


def _ref(row: dict[str, Any], name: str, where: str) -> int | None:
    """A reference column: 0, NULL or '' means none (Zabbix writes 0 or null)."""
    v = _int(row, name, where, None)
    return v if v else None


def _text(row: dict[str, Any], name: str, default: str = "") -> str:
    v = row.get(name, default)
    return default if v is None else str(v)


def _query_fields(text: str) -> str:
    """Zabbix's `[{"name":"value"},…]` as Vigil's `[["name","value"],…]`."""
    if not text:
        return "[]"
    try:
        pairs = json.loads(text)
    except ValueError:
        return "[]"
    out = []
    for p in pairs if isinstance(pairs, list) else []:
        if isinstance(p, dict):
            out += [[str(k), str(v)] for k, v in p.items()]
    return json.dumps(out)


def _headers(text: str) -> str:
    """Zabbix's `Name: value\\r\\n…` as Vigil's `[["Name","value"],…]`."""
    out = []
    for line in text.replace("\r\n", "\n").split("\n"):
        name, colon, value = line.partition(":")
        if colon and name.strip():
            out.append([name.strip(), value.strip()])
    return json.dumps(out)


def _flatten_macros(hostmacros: Iterable[dict[str, Any]], links: Iterable[dict[str, Any]], hostids: set[int],
                    where: str) -> dict[int, dict[str, str]]:
    """Each host's macros with its templates' (and theirs') merged under its own."""
    own: dict[int, dict[str, str]] = {}
    for i, m in enumerate(hostmacros):
        w = f"{where}[{i}]"
        own.setdefault(_id(m, "hostid", w), {})[_text(m, "macro")] = _text(m, "value")
    parents: dict[int, list[int]] = {}
    for i, link in enumerate(links):
        w = f"hosts_templates[{i}]"
        parents.setdefault(_id(link, "hostid", w), []).append(_id(link, "templateid", w))

    def merged(hid: int, depth: int) -> dict[str, str]:
        out: dict[str, str] = {}
        if depth < 10:
            for tid in parents.get(hid, []):
                for k, v in merged(tid, depth + 1).items():
                    out.setdefault(k, v)
        out.update(own.get(hid, {}))
        return out

    return {hid: merged(hid, 0) for hid in hostids}


def _digest(reply: ConfigReply) -> bytes:
    h = hashlib.blake2b(digest_size=20)
    for name in sorted(reply.tables):
        table = reply.tables[name]
        h.update(json.dumps([name, list(table.fields), table.data], default=str).encode())
    return h.digest()


class LocalConfig:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        # The last reply applied and what it gave: Zabbix 6.0 sends the whole configuration every
        # ConfigFrequency, and rewriting 10,000 unchanged items takes seconds of the buffer's write
        # lock and a new snapshot in every cache of the proxy for nothing.
        self._last: tuple[bytes, Applied] | None = None
        self._lock = threading.Lock()

    def version(self) -> int:
        with self.engine.connect() as c:
            return int(c.execute(sa.select(t.config_version.c.version)).scalar() or 0)

    def apply_json(self, obj: Any) -> Applied:
        """Check and apply the tables of a `proxy config` (the object of tables)."""
        if isinstance(obj, dict):
            obj = {k: v for k, v in obj.items() if k not in NOT_TABLES}
            for name in obj:
                if name not in PROXY_TABLES_60:
                    raise LocalConfigError(f"invalid table name {name!r}: not a table of Zabbix 6.0's proxy schema")
        try:
            reply = parse_config_tables(obj)
        except ValueError as e:
            raise LocalConfigError(str(e)) from None
        return self.apply(reply)

    def apply(self, reply: ConfigReply) -> Applied:
        for name in reply.tables:
            if name not in PROXY_TABLES_60:
                raise LocalConfigError(f"invalid table name {name!r}: not a table of Zabbix 6.0's proxy schema")
        digest = _digest(reply)
        with self._lock:  # two passive pushes at once: the digest kept is that of what was committed last
            if self._last is not None and self._last[0] == digest and self.version() == self._last[1].version:
                return self._last[1]
            applied = self._apply(reply)
            self._last = (digest, applied)
        trim()  # the rows just written are tens of MB that malloc would otherwise keep (proxy/memory.py)
        return applied

    def _apply(self, reply: ConfigReply) -> Applied:
        skipped = 0
        with self.engine.begin() as c:
            hosts = _rows(reply, "hosts")
            if hosts is not None:
                self._hosts(c, hosts)
            hostids = set(c.execute(sa.select(t.hosts.c.hostid)).scalars())
            interfaces = _rows(reply, "interface")
            if interfaces is not None:
                skipped += self._interfaces(c, interfaces, _rows(reply, "interface_snmp") or [], hostids)
            globals_ = _rows(reply, "globalmacro")
            if globals_ is not None:
                c.execute(sa.delete(t.global_macros))
                rows = [{"macro": _text(g, "macro"), "value": _text(g, "value")} for g in globals_]
                if rows:
                    c.execute(sa.insert(t.global_macros), rows)
            macros = _rows(reply, "hostmacro")
            if macros is not None:  # (both servers always send both tables)
                self._macros(c, macros, _rows(reply, "hosts_templates") or [], hostids)
            items = _rows(reply, "items")
            if items is not None:
                skipped += self._items(c, items, hostids)
            del items  # 10,000 dicts of 40 columns: not kept through the tables that follow
            itemids = set(c.execute(sa.select(t.items.c.itemid)).scalars())
            rtdata = _rows(reply, "item_rtdata")
            if rtdata is not None:
                self._rtdata(c, rtdata, itemids)
            preproc = _rows(reply, "item_preproc")
            if preproc is not None:
                skipped += self._preproc(c, preproc, itemids)
            c.execute(sa.update(t.config_version).where(t.config_version.c.id == 1)
                      .values(version=t.config_version.c.version + 1))
            version = int(c.execute(sa.select(t.config_version.c.version)).scalar() or 0)
            n_hosts = len(hostids)
            n_items = len(itemids)
        if skipped:
            log.warning("configuration applied with %d rows skipped (they refer to hosts, items or interfaces "
                        "not sent)", skipped)
        return Applied(version, n_hosts, n_items, skipped)

    # --- one table each -------------------------------------------------------------------------

    def _hosts(self, c: Connection, rows: Iterable[dict[str, Any]]) -> None:
        wanted: dict[int, dict[str, Any]] = {}
        for i, r in enumerate(rows):
            w = f"hosts[{i}]"
            hid = _id(r, "hostid", w)
            host = _text(r, "host")
            if not host:
                raise LocalConfigError(f"{w}.host: missing")
            status = _int(r, "status", w)
            if status not in (0, 1):  # templates (3) are not hosts the proxy monitors
                continue
            wanted[hid] = {"hostid": hid, "host": host, "name": _text(r, "name") or host, "status": status,
                           "tls_accept": _int(r, "tls_accept", w, 1) or 1, "tls_issuer": _text(r, "tls_issuer"),
                           "tls_subject": _text(r, "tls_subject"), "proxyid": None}
        c.execute(sa.delete(t.hosts).where(t.hosts.c.hostid.not_in(list(wanted))))
        have = set(c.execute(sa.select(t.hosts.c.hostid)).scalars())
        # Names move between hosts: park the kept ones under names no host has, then set them.
        for hid in have:
            c.execute(sa.update(t.hosts).where(t.hosts.c.hostid == hid).values(host=f"\x00{hid}"))
        for hid, values in wanted.items():
            if hid in have:
                c.execute(sa.update(t.hosts).where(t.hosts.c.hostid == hid).values(**values))
            else:
                c.execute(sa.insert(t.hosts).values(**values))

    def _interfaces(self, c: Connection, rows: Iterable[dict[str, Any]], snmp_rows: Iterable[dict[str, Any]],
                    hostids: set[int]) -> int:
        snmp: dict[int, dict[str, str]] = {}
        for i, s in enumerate(snmp_rows):
            w = f"interface_snmp[{i}]"
            snmp[_id(s, "interfaceid", w)] = {
                "version": _text(s, "version", "2"), "bulk": _text(s, "bulk", "1"),
                "community": _text(s, "community"), "securityname": _text(s, "securityname"),
                "securitylevel": _LEVELS.get(_int(s, "securitylevel", w) or 0, "0"),
                "authpassphrase": _text(s, "authpassphrase"), "privpassphrase": _text(s, "privpassphrase"),
                "authprotocol": _text(s, "authprotocol", "0"), "privprotocol": _text(s, "privprotocol", "0"),
                "contextname": _text(s, "contextname")}
            if "max_repetitions" in s:  # 6.4 and later
                snmp[_id(s, "interfaceid", w)]["max_repetitions"] = _text(s, "max_repetitions")
        wanted: dict[int, dict[str, Any]] = {}
        skipped = 0
        for i, r in enumerate(rows):
            w = f"interface[{i}]"
            iid, hid = _id(r, "interfaceid", w), _id(r, "hostid", w)
            if hid not in hostids:
                skipped += 1
                continue
            kind = _int(r, "type", w)
            details = snmp.get(iid, {}) if kind == InterfaceType.SNMP else {}
            wanted[iid] = {"interfaceid": iid, "hostid": hid, "type": kind, "main": _int(r, "main", w, 1),
                           "useip": _int(r, "useip", w, 1), "ip": _text(r, "ip"), "dns": _text(r, "dns"),
                           "port": _text(r, "port", "10050"), "details": json.dumps(details, sort_keys=True),
                           "ref": str(iid)}
        c.execute(sa.delete(t.interfaces).where(t.interfaces.c.interfaceid.not_in(list(wanted))))
        have = set(c.execute(sa.select(t.interfaces.c.interfaceid)).scalars())
        for iid, values in wanted.items():
            if iid in have:  # availability is the proxy's own: kept
                c.execute(sa.update(t.interfaces).where(t.interfaces.c.interfaceid == iid).values(**values))
            else:
                c.execute(sa.insert(t.interfaces).values(**values))
        return skipped

    def _macros(self, c: Connection, rows: Iterable[dict[str, Any]], links: Iterable[dict[str, Any]],
                hostids: set[int]) -> None:
        """Each host gets its effective macros: its own over its templates' over the global ones (the
        pollers resolve host macros only, so the global ones are folded in here)."""
        c.execute(sa.delete(t.host_macros))
        glob = dict(c.execute(sa.select(t.global_macros.c.macro, t.global_macros.c.value)).all())
        flat = _flatten_macros(rows, links, hostids, "hostmacro")
        out = [{"hostid": hid, "macro": m, "value": v} for hid, ms in flat.items()
               for m, v in sorted({**glob, **ms}.items())]
        if out:
            c.execute(sa.insert(t.host_macros), out)

    def _items(self, c: Connection, rows: Iterable[dict[str, Any]], hostids: set[int]) -> int:
        interfaces = set(c.execute(sa.select(t.interfaces.c.interfaceid)).scalars())
        wanted: dict[int, dict[str, Any]] = {}
        masters: dict[int, int] = {}
        skipped = 0
        for i, r in enumerate(rows):
            w = f"items[{i}]"
            itemid, hid = _id(r, "itemid", w), _id(r, "hostid", w)
            kind = _ZABBIX_TYPES.get(_int(r, "type", w) or 0, _int(r, "type", w))
            if hid not in hostids or kind in _SERVER_SIDE:
                skipped += hid not in hostids
                continue
            key = _text(r, "key_")
            if not key:
                raise LocalConfigError(f"{w}.key_: missing")
            value_type = _int(r, "value_type", w)
            if value_type not in range(5):
                raise LocalConfigError(f"{w}.value_type: {value_type} is not one of 0-4")
            iface = _ref(r, "interfaceid", w)
            master = _ref(r, "master_itemid", w)
            if master is not None:
                masters[itemid] = master
            wanted[itemid] = {
                "itemid": itemid, "hostid": hid, "key_": key, "name": _text(r, "name") or key, "type": kind,
                "value_type": value_type, "delay": _text(r, "delay", "1m"), "history": _text(r, "history", "31d"),
                "status": _int(r, "status", w), "interfaceid": iface if iface in interfaces else None,
                "master_itemid": None, "params": _text(r, "params"), "snmp_oid": _text(r, "snmp_oid"),
                "url": _text(r, "url"), "query_fields": _query_fields(_text(r, "query_fields")),
                "request_method": _int(r, "request_method", w), "posts": _text(r, "posts"),
                "headers": _headers(_text(r, "headers")), "status_codes": _text(r, "status_codes", "200"),
                "follow_redirects": _int(r, "follow_redirects", w, 1), "verify_peer": _int(r, "verify_peer", w),
                "verify_host": _int(r, "verify_host", w), "ssl_cert_file": _text(r, "ssl_cert_file"),
                "ssl_key_file": _text(r, "ssl_key_file"), "authtype": _int(r, "authtype", w),
                "username": _text(r, "username"), "password": _text(r, "password"),
                "retrieve_mode": _int(r, "retrieve_mode", w), "timeout": _text(r, "timeout", "3s") or "3s",
                "jmx_endpoint": _text(r, "jmx_endpoint"), "ipmi_sensor": _text(r, "ipmi_sensor"),
                "publickey": _text(r, "publickey"), "privatekey": _text(r, "privatekey"),
                "flags": _int(r, "flags", w), "templateid": None,
            }
        for itemid in [i for i, m in masters.items() if m not in wanted]:  # its master was not sent
            del wanted[itemid]
            skipped += 1
        c.execute(sa.delete(t.items).where(t.items.c.itemid.not_in(list(wanted))))
        have = set(c.execute(sa.select(t.items.c.itemid)).scalars())
        # executemany in chunks: 10,000 items one statement each held the file's write lock (the
        # buffer's too) for tens of seconds on a busy machine; one list of all of them doubles the
        # memory the reply already takes.
        by_id = t.items.c.itemid == sa.bindparam("b_itemid")
        park = sa.update(t.items).where(by_id)
        for chunk in _chunks({"b_itemid": i, "key_": f"\x00{i}", "master_itemid": None} for i in have):
            c.execute(park, chunk)  # keys move between items: park the kept ones first
        for chunk in _chunks({"b_itemid": i, **v} for i, v in wanted.items() if i in have):
            c.execute(sa.update(t.items).where(by_id), chunk)
        for chunk in _chunks(v for i, v in wanted.items() if i not in have):
            c.execute(sa.insert(t.items), chunk)
        for chunk in _chunks({"b_itemid": i, "master_itemid": m} for i, m in masters.items() if i in wanted):
            c.execute(sa.update(t.items).where(by_id), chunk)
        return skipped

    def _rtdata(self, c: Connection, rows: Iterable[dict[str, Any]], itemids: set[int]) -> None:
        """A new item starts from the server's log position; a known one keeps the proxy's own."""
        have = set(c.execute(sa.select(t.item_rtdata.c.itemid)).scalars())
        out = []
        for i, r in enumerate(rows):
            w = f"item_rtdata[{i}]"
            itemid = _id(r, "itemid", w)
            if itemid in itemids and itemid not in have:
                out.append({"itemid": itemid, "lastlogsize": _int(r, "lastlogsize", w) or 0,
                            "mtime": _int(r, "mtime", w) or 0})
        if out:
            c.execute(sa.insert(t.item_rtdata), out)

    def _preproc(self, c: Connection, rows: Iterable[dict[str, Any]], itemids: set[int]) -> int:
        c.execute(sa.delete(t.item_preproc))
        out, skipped = [], 0
        for i, r in enumerate(rows):
            w = f"item_preproc[{i}]"
            itemid = _id(r, "itemid", w)
            if itemid not in itemids:
                skipped += 1
                continue
            out.append({"itemid": itemid, "step": _int(r, "step", w), "type": _int(r, "type", w),
                        "params": _text(r, "params"), "error_handler": _int(r, "error_handler", w),
                        "error_handler_params": _text(r, "error_handler_params")})
        if out:
            c.execute(sa.insert(t.item_preproc), out)
        return skipped
