"""zabbix_agentd.conf-style configuration: `Key=Value` lines into one frozen, typed AgentConfig.

A real Zabbix 6.0 agent file works as is: every parameter zabbix_agentd 6.0 knows is accepted;
those Vigil does not implement and that do not weaken security (SourceIP, LoadModule, ...) are
ignored with a debug log. TLS with certificates is checked as zabbix_agentd checks it (agent/tls.py);
PSK is refused rather than served in plain text. AllowKey/DenyKey (and EnableRemoteCommands, which
6.0 maps to them) are parsed at their line
and compiled once at the end (agent/keyrules.py). An unknown name, a line without `=`, a bad
number or a value out of Zabbix's range raises ConfError naming the file and line, as
zabbix_agentd refuses to start on them too. A parameter given twice keeps the last value (as
Zabbix), except the repeatable ones (UserParameter, Alias, AllowKey, DenyKey, EnableRemoteCommands,
Include). Relative Include paths are taken from the working directory, as
zabbix_agentd does.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import logging
import os
import re
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from vigil.agent.checks import REGISTRY, UserParameter, load_families
from vigil.agent.keyrules import KeyRule, KeyRules, KeyRulesError, enable_remote_commands
from vigil.agent.tls import TLS_PARAMETERS, TLSConfig, TLSConfigError, check_tls_parameter, config_from

log = logging.getLogger("vigil.agent.conf")

MAX_INCLUDE_DEPTH = 10
DEFAULT_ACTIVE_PORT = 10051
LOG_TYPES = ("file", "console", "system")

# (min, max) for the numeric parameters, as zabbix_agentd 6.0 checks them.
BOUNDS: dict[str, tuple[int, int]] = {
    "ListenPort": (1024, 32767),
    "StartAgents": (0, 100),
    "RefreshActiveChecks": (60, 3600),
    "BufferSend": (1, 3600),
    "BufferSize": (2, 65535),
    "Timeout": (1, 30),
    "DebugLevel": (0, 5),
    "MaxLinesPerSecond": (1, 1000),
    "UnsafeUserParameters": (0, 1),
    "ListenBacklog": (0, 2**31 - 1),
    "LogFileSize": (0, 1024),
    "AllowRoot": (0, 1),
    "EnableRemoteCommands": (0, 1),
    "LogRemoteCommands": (0, 1),
}

# Known to zabbix_agentd 6.0 but not implemented here, none of them a security option: ignored.
IGNORED = frozenset({
    "SourceIP", "HostInterface", "HostInterfaceItem", "LoadModule", "LoadModulePath", "UserParameterDir",
})

STRINGS = frozenset({
    "Server", "ServerActive", "Hostname", "HostnameItem", "HostMetadata", "HostMetadataItem",
    "ListenIP", "LogFile", "LogType", "PidFile", "PersistentBufferFile", "User",
})
# EnableRemoteCommands may be given more than once too: each is a rule at its place.
REPEATABLE = frozenset({"UserParameter", "Alias", "AllowKey", "DenyKey", "Include", "EnableRemoteCommands"})
KNOWN = frozenset(BOUNDS) | IGNORED | STRINGS | REPEATABLE | TLS_PARAMETERS

# Every item key zabbix_agentd 6.0 has built in (Linux build), whether or not Vigil implements it yet:
# a UserParameter may not take one of these names, as zabbix_agentd refuses it at start.
ZABBIX_BUILTIN_KEYS = frozenset({
    "agent.hostmetadata", "agent.hostname", "agent.ping", "agent.variant", "agent.version", "eventlog",
    "kernel.maxfiles", "kernel.maxproc", "kernel.openfiles", "log", "log.count", "logrt", "logrt.count",
    "modbus.get", "net.dns", "net.dns.record", "net.if.collisions", "net.if.discovery", "net.if.in",
    "net.if.out", "net.if.total", "net.tcp.dns", "net.tcp.dns.query", "net.tcp.listen", "net.tcp.port",
    "net.tcp.service", "net.tcp.service.perf", "net.tcp.socket.count", "net.udp.listen", "net.udp.service",
    "net.udp.service.perf", "net.udp.socket.count", "proc.cpu.util", "proc.get", "proc.mem", "proc.num",
    "sensor", "system.boottime", "system.cpu.discovery", "system.cpu.intr", "system.cpu.load",
    "system.cpu.num", "system.cpu.switches", "system.cpu.util", "system.hostname", "system.hw.chassis",
    "system.hw.cpu", "system.hw.devices", "system.hw.macaddr", "system.localtime", "system.run",
    "system.sw.arch", "system.sw.os", "system.sw.packages", "system.swap.in", "system.swap.out",
    "system.swap.size", "system.uname", "system.uptime", "system.users.num", "vfs.dev.discovery",
    "vfs.dev.read", "vfs.dev.write", "vfs.dir.count", "vfs.dir.get", "vfs.dir.size", "vfs.file.cksum",
    "vfs.file.contents", "vfs.file.exists", "vfs.file.get", "vfs.file.md5sum", "vfs.file.owner",
    "vfs.file.permissions", "vfs.file.regexp", "vfs.file.regmatch", "vfs.file.size", "vfs.file.time",
    "vfs.fs.discovery", "vfs.fs.get", "vfs.fs.inode", "vfs.fs.size", "vm.memory.size", "web.page.get",
    "web.page.perf", "web.page.regexp", "zabbix.stats",
})

_HOSTNAME = re.compile(r"[0-9A-Za-z._ \-]{1,128}")
_KEY_NAME = re.compile(r"[0-9A-Za-z_.\-]+")


class ConfError(ValueError):
    """A configuration that cannot be used; the message starts with `file:line:` when known."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None,
                 warnings: tuple[str, ...] = ()) -> None:
        where = f"{path}:{line}: " if path is not None and line is not None else (f"{path}: " if path else "")
        super().__init__(where + message)
        self.path = path
        self.line = line
        self.warnings = warnings  # what was warned about before the error, to print before it


@dataclass(frozen=True, slots=True)
class Alias:
    name: str  # `cpu.util` or `cpu.util[*]`
    target: str  # `system.cpu.util` or `system.cpu.util[*]`


@dataclass(frozen=True, slots=True)
class AgentConfig:
    server: tuple[str, ...] = ()
    server_active: tuple[tuple[str, int], ...] = ()  # every node of every cluster
    server_active_clusters: tuple[tuple[tuple[str, int], ...], ...] = ()  # `a;b,c`: ((a, b), (c,))
    hostnames: tuple[str, ...] = ()  # empty: taken from HostnameItem at start
    hostname_item: str = "system.hostname"
    host_metadata: str = ""
    host_metadata_item: str = ""
    listen_ip: tuple[str, ...] = ("0.0.0.0",)
    listen_port: int = 10050
    listen_backlog: int = socket.SOMAXCONN
    start_agents: int = 3
    refresh_active_checks: int = 120
    buffer_send: int = 5
    buffer_size: int = 100
    timeout: int = 3
    user_parameters: tuple[UserParameter, ...] = ()
    unsafe_user_parameters: bool = False
    key_rules: tuple[KeyRule, ...] = ()  # as configured, in order (EnableRemoteCommands included)
    access: KeyRules = field(default_factory=lambda: KeyRules.build(()), compare=False)  # compiled
    aliases: tuple[Alias, ...] = ()
    log_file: str = ""
    log_type: str = "console"  # LogType unset: "file" when LogFile is set, else "console"
    debug_level: int = 3
    pid_file: str = ""  # Vigil writes no PID file unless asked (zabbix_agentd: /tmp/zabbix_agentd.pid)
    max_lines_per_second: int = 20
    persistent_buffer_file: str = ""
    user: str = ""  # User=; unset: `zabbix`, else `nobody` (see agent/privileges.py)
    allow_root: bool = False
    log_remote_commands: bool = False
    log_file_size: int = 1  # MB; 0: no rotation
    tls: TLSConfig = field(default_factory=TLSConfig)
    files: tuple[str, ...] = field(default=(), compare=False)  # every file read, in order
    warnings: tuple[str, ...] = field(default=(), compare=False)  # what zabbix_agentd warns about at start

    @property
    def hostname(self) -> str:
        """The first configured hostname ('' when Hostname is unset)."""
        return self.hostnames[0] if self.hostnames else ""

    @property
    def passive_enabled(self) -> bool:
        return self.start_agents > 0 and bool(self.server)

    @property
    def active_enabled(self) -> bool:
        return bool(self.server_active)

    def resolve_alias(self, key: str) -> str:
        """The key an Alias stands for, or `key` itself."""
        for a in self.aliases:
            if a.name == key:
                return a.target
            if a.name.endswith("[*]") and a.target.endswith("[*]"):
                stem = a.name[:-3]
                if key.startswith(stem + "[") and key.endswith("]"):
                    return a.target[:-3] + key[len(stem):]
        return key


# --- value parsers: each raises ValueError with the reason -------------------------------------


def _int(name: str, value: str) -> int:
    if not value.isdigit() or not value.isascii():
        raise ValueError(f"wrong value of {name!r}: {value!r} is not a non-negative integer")
    n = int(value)
    lo, hi = BOUNDS[name]
    if not lo <= n <= hi:
        raise ValueError(f"wrong value of {name!r}: {n} is outside {lo}-{hi}")
    return n


def _split(value: str) -> list[str]:
    return [p.strip() for p in value.split(",")] if value.strip() else []


def parse_server(value: str) -> tuple[str, ...]:
    """Server=: IPs, CIDRs and host names (resolved when the listener starts)."""
    out = []
    for item in _split(value):
        if not item:
            raise ValueError("wrong value of 'Server': empty entry in the list")
        if "/" in item:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError as e:
                raise ValueError(f"wrong value of 'Server': {item!r} is not a valid CIDR ({e})") from None
        elif not _is_ip(item) and not _valid_dns_name(item):
            raise ValueError(f"wrong value of 'Server': {item!r} is not an IP address, CIDR or host name")
        out.append(item)
    return tuple(out)


def _is_ip(s: str) -> bool:
    try:
        ipaddress.ip_address(s)
    except ValueError:
        return False
    return True


def _valid_dns_name(s: str) -> bool:
    return bool(re.fullmatch(r"[0-9A-Za-z_\-]+(\.[0-9A-Za-z_\-]+)*\.?", s)) and len(s) <= 253


def parse_server_active(value: str) -> tuple[tuple[str, int], ...]:
    """Every address ServerActive= names, in order (see `parse_server_active_clusters`)."""
    return tuple(node for cluster in parse_server_active_clusters(value) for node in cluster)


def parse_server_active_clusters(value: str) -> tuple[tuple[tuple[str, int], ...], ...]:
    """ServerActive=: clusters separated by `,`, the nodes of one (6.0 HA) cluster by `;`.

    A node is `host`, `host:port`, `[v6]:port` or a bare IPv6 address; default port 10051.
    """
    seen: set[tuple[str, int]] = set()
    clusters = []
    for entry in _split(value):
        nodes = []
        for item in entry.split(";"):
            node = _active_address(item.strip())
            if node in seen:
                raise ValueError(f"wrong value of 'ServerActive': {item.strip()!r} is listed twice")
            seen.add(node)
            nodes.append(node)
        clusters.append(tuple(nodes))
    return tuple(clusters)


def _active_address(item: str) -> tuple[str, int]:
    if not item:
        raise ValueError("wrong value of 'ServerActive': empty entry in the list")
    host, port_text = item, ""
    if item.startswith("["):
        end = item.find("]")
        if end < 0:
            raise ValueError(f"wrong value of 'ServerActive': {item!r} has no closing ']'")
        host, rest = item[1:end], item[end + 1:]
        if rest and not rest.startswith(":"):
            raise ValueError(f"wrong value of 'ServerActive': unexpected {rest!r} in {item!r}")
        port_text = rest[1:]
        if not _is_ip(host):
            raise ValueError(f"wrong value of 'ServerActive': {host!r} is not an IP address")
    elif item.count(":") == 1:
        host, port_text = item.split(":")
    elif item.count(":") > 1 and not _is_ip(item):
        raise ValueError(f"wrong value of 'ServerActive': address {item!r} is invalid")
    port = DEFAULT_ACTIVE_PORT
    if port_text or item.endswith(":"):
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"wrong value of 'ServerActive': address {item!r} has an invalid port")
        port = int(port_text)
    if not host or not (_is_ip(host) or _valid_dns_name(host)):
        raise ValueError(f"wrong value of 'ServerActive': address {item!r} is invalid")
    return host, port


def parse_hostnames(value: str) -> tuple[str, ...]:
    names = _split(value)
    if len(value) > 2048:
        raise ValueError("wrong value of 'Hostname': longer than 2048 characters")
    for n in names:
        if not _HOSTNAME.fullmatch(n):
            raise ValueError(
                f"wrong value of 'Hostname': {n!r} must be 1-128 characters of letters, digits, "
                "'.', ' ', '_', '-'"
            )
    if len(set(names)) != len(names):
        raise ValueError("wrong value of 'Hostname': a host name is listed twice")
    return tuple(names)


def parse_listen_ip(value: str) -> tuple[str, ...]:
    ips = _split(value)
    for ip in ips:
        if not _is_ip(ip):
            raise ValueError(f"wrong value of 'ListenIP': {ip!r} is not an IP address")
    return tuple(ips) or ("0.0.0.0",)


def parse_user_parameter(value: str) -> UserParameter:
    """`key,command` or `key[*],command`; the command may be empty, as in Zabbix. A built-in key's
    name is refused: a UserParameter cannot shadow it."""
    if "," not in value:
        raise ValueError(f"user parameter {value!r}: not comma-separated (expected key,command)")
    key, command = value.split(",", 1)
    key = key.strip()
    flexible = key.endswith("[*]")
    name = key[:-3] if flexible else key
    if not _KEY_NAME.fullmatch(name):
        raise ValueError(f"user parameter {value!r}: syntax error in key {key!r}")
    load_families()
    if name in ZABBIX_BUILTIN_KEYS or (name in REGISTRY and not name.startswith("__")):
        raise ValueError(f"cannot load user parameters: user parameter {value!r}: key {name!r} already exists "
                         "(a built-in item key; choose another name)")
    return UserParameter(name, command.strip(), flexible)


def parse_alias(value: str) -> Alias:
    name, sep, target = value.partition(":")
    name, target = name.strip(), target.strip()
    base = name[:-3] if name.endswith("[*]") else name
    if not sep or not target or not _KEY_NAME.fullmatch(base):
        raise ValueError(f"cannot add alias {value!r}: expected name:key or name[*]:key[*]")
    return Alias(name, target)


def parse_key_rule(name: str, value: str) -> KeyRule:
    if not value:
        raise ValueError(f"wrong value of {name!r}: empty key pattern")
    try:
        return KeyRule(name == "AllowKey", value, name)
    except ValueError as e:
        raise ValueError(f"wrong value of {name!r}: failed to process access rule {value!r}: {e}") from None


# --- reading files ----------------------------------------------------------------------------


class _Reader:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.user_parameters: dict[str, UserParameter] = {}
        self.key_rules: list[KeyRule] = []
        self.aliases: dict[str, Alias] = {}
        self.files: list[str] = []
        self.stack: list[str] = []
        self.warnings: list[str] = []
        self.tls: dict[str, str] = {}
        self.tls_where: dict[str, tuple[str, int]] = {}
        self.where: tuple[str, int] = ("", 0)

    def read(self, path: str, depth: int = 0) -> None:
        real = os.path.realpath(path)
        if real in self.stack:
            raise ConfError(f"recursive Include of {path!r}", self.stack[-1] if self.stack else None)
        if depth > MAX_INCLUDE_DEPTH:
            raise ConfError(f"too many nested Include levels (more than {MAX_INCLUDE_DEPTH})", path)
        try:
            text = Path(path).read_bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfError(f"not UTF-8 text: {e}", path) from None
        except OSError as e:
            raise ConfError(f"cannot open config file: {e.strerror}", path) from None
        self.files.append(path)
        self.stack.append(real)
        try:
            for lineno, raw in enumerate(text.splitlines(), 1):
                line = raw.strip()
                if lineno == 1:
                    line = line.removeprefix("\ufeff")
                if not line or line.startswith("#"):
                    continue
                try:
                    self.where = (path, lineno)
                    self.line(line, depth)
                except ConfError:
                    raise
                except ValueError as e:
                    raise ConfError(str(e), path, lineno) from None
        finally:
            self.stack.pop()

    def line(self, line: str, depth: int) -> None:
        name, sep, value = line.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            raise ValueError(f"invalid entry {line!r} (not following \"parameter=value\" notation)")
        if name not in KNOWN:
            raise ValueError(f"unknown parameter {name!r}")
        if name in BOUNDS:
            _int(name, value)  # validate now so the error points at this line
        if name in IGNORED:
            log.debug("parameter %s is not implemented by vigil-agent: ignored", name)
            return
        if name in TLS_PARAMETERS:
            check_tls_parameter(name, value)
            self.tls[name] = value
            self.tls_where[name] = self.where
            return
        if name == "Include":
            for inc in self.include_files(value):
                self.read(inc, depth + 1)
        elif name == "UserParameter":
            up = parse_user_parameter(value)
            if up.name in self.user_parameters:
                raise ValueError(f"user parameter {value!r}: key {up.name!r} already exists")
            self.user_parameters[up.name] = up
        elif name in ("AllowKey", "DenyKey"):
            self.key_rules.append(parse_key_rule(name, value))
        elif name == "EnableRemoteCommands":
            self.key_rules.append(enable_remote_commands(value))
            self.warnings.append("EnableRemoteCommands parameter is deprecated, use AllowKey=system.run[*] or "
                                 "DenyKey=system.run[*] instead")
        elif name == "Alias":
            a = parse_alias(value)
            if a.name in self.aliases:
                raise ValueError(f"cannot add alias {a.name!r}: duplicate name")
            self.aliases[a.name] = a
        else:
            _VALIDATORS.get(name, lambda v: v)(value)
            self.values[name] = value

    @staticmethod
    def include_files(value: str) -> list[str]:
        if not value:
            raise ValueError("wrong value of 'Include': empty path")
        p = Path(value)
        if any(c in str(p.parent) for c in "*?["):
            raise ValueError(f"wrong value of 'Include': wildcards only in the file name: {value!r}")
        if p.is_dir():
            return sorted(str(f) for f in p.iterdir() if f.is_file())
        if any(c in p.name for c in "*?["):
            if not p.parent.is_dir():
                raise ValueError(f"Include {value!r}: directory {str(p.parent)!r} does not exist")
            return sorted(
                str(f) for f in p.parent.iterdir() if f.is_file() and fnmatch.fnmatchcase(f.name, p.name)
            )
        if not p.is_file():
            raise ValueError(f"Include {value!r}: no such file or directory")
        return [value]


def _log_type(value: str) -> str:
    if value not in LOG_TYPES:
        raise ValueError(f"wrong value of 'LogType': {value!r} (expected one of {', '.join(LOG_TYPES)})")
    return value


def _nonempty(name: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not value:
            raise ValueError(f"wrong value of {name!r}: must not be empty")
        return value

    return check


def _max_len(name: str, limit: int) -> Callable[[str], str]:
    def check(value: str) -> str:
        if len(value) > limit:
            raise ValueError(f"wrong value of {name!r}: longer than {limit} characters")
        return value

    return check


_VALIDATORS = {
    "Server": parse_server,
    "ServerActive": parse_server_active,
    "Hostname": parse_hostnames,
    "ListenIP": parse_listen_ip,
    "LogType": _log_type,
    "HostnameItem": _nonempty("HostnameItem"),
    "HostMetadata": _max_len("HostMetadata", 255),
}


def load(path: str | os.PathLike[str]) -> AgentConfig:
    """Read a config file (and what it Includes) into an AgentConfig. Raises ConfError."""
    r = _Reader()
    r.read(os.fspath(path))
    v = r.values

    def num(name: str, default: int) -> int:
        return _int(name, v[name]) if name in v else default

    try:
        access = KeyRules.build(r.key_rules, r.warnings)
    except KeyRulesError as e:
        raise ConfError(str(e), os.fspath(path), warnings=tuple(r.warnings)) from None

    try:
        tls = config_from(r.tls, r.tls_where)
    except TLSConfigError as e:
        raise ConfError(str(e), e.path, e.line) from None
    cfg = AgentConfig(
        server=parse_server(v.get("Server", "")),
        server_active=parse_server_active(v.get("ServerActive", "")),
        server_active_clusters=parse_server_active_clusters(v.get("ServerActive", "")),
        hostnames=parse_hostnames(v.get("Hostname", "")),
        hostname_item=v.get("HostnameItem", "system.hostname"),
        host_metadata=v.get("HostMetadata", ""),
        host_metadata_item=v.get("HostMetadataItem", ""),
        listen_ip=parse_listen_ip(v.get("ListenIP", "")),
        listen_port=num("ListenPort", 10050),
        listen_backlog=num("ListenBacklog", socket.SOMAXCONN),
        start_agents=num("StartAgents", 3),
        refresh_active_checks=num("RefreshActiveChecks", 120),
        buffer_send=num("BufferSend", 5),
        buffer_size=num("BufferSize", 100),
        timeout=num("Timeout", 3),
        user_parameters=tuple(r.user_parameters.values()),
        unsafe_user_parameters=bool(num("UnsafeUserParameters", 0)),
        key_rules=tuple(r.key_rules),
        access=access,
        aliases=tuple(r.aliases.values()),
        log_file=v.get("LogFile", ""),
        log_type=v.get("LogType", "file" if v.get("LogFile") else "console"),
        debug_level=num("DebugLevel", 3),
        pid_file=v.get("PidFile", ""),
        max_lines_per_second=num("MaxLinesPerSecond", 20),
        persistent_buffer_file=v.get("PersistentBufferFile", ""),
        user=v.get("User", ""),
        allow_root=bool(num("AllowRoot", 0)),
        log_remote_commands=bool(num("LogRemoteCommands", 0)),
        log_file_size=num("LogFileSize", 1),
        tls=tls,
        files=tuple(r.files),
        warnings=tuple(r.warnings),
    )
    if cfg.start_agents > 0 and not cfg.server and "StartAgents" in v:
        log.debug("StartAgents=%d but Server is empty: passive checks are off", cfg.start_agents)
    if cfg.log_type == "file" and not cfg.log_file:
        raise ConfError("LogType=file needs LogFile to be set", os.fspath(path))
    return cfg
