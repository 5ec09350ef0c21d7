"""`zabbix_proxy.conf`-style configuration of `vigil proxy`.

A real zabbix_proxy.conf works: `Key=Value` lines, `#` comments, blank lines, `Include=` of a file,
a directory or a glob (`/etc/zabbix/zabbix_proxy.d/*.conf`). The keys Vigil implements are checked
against Zabbix 6.0's defaults and ranges; the other keys of a 6.0 proxy's file are accepted and
logged once as not implemented; any other key is an error naming the file and the line.
"""

from __future__ import annotations

import glob
import logging
import os
import socket
from dataclasses import dataclass, field, fields
from pathlib import Path

log = logging.getLogger("vigil.proxy.conf")

DEFAULT_SERVER_PORT = 10051


class ConfError(ValueError):
    """A bad configuration file: the message names the file, the line and the key."""


# Keys of Zabbix 6.0's zabbix_proxy.conf that Vigil accepts without acting on them.
NOT_IMPLEMENTED = frozenset("""
AllowRoot AllowUnsupportedDBVersions CacheSize DBHost DBPassword DBPort DBSchema DBSocket DBTLSCAFile
DBTLSCertFile DBTLSCipher DBTLSCipher13 DBTLSConnect DBTLSKeyFile DBUser ExternalScripts
Fping6Location FpingLocation HistoryIndexCacheSize HostnameItem HousekeepingFrequency JavaGateway
JavaGatewayPort ListenBacklog LoadModule LoadModulePath LogFileSize LogSlowQueries
SNMPTrapperFile SSHKeyLocation SSLCALocation SSLCertLocation SSLKeyLocation SocketDir SourceIP
StartDBSyncers StartDiscoverers StartHTTPPollers StartIPMIPollers StartJavaPollers StartODBCPollers
StartPingers StartPollersUnreachable StartPreprocessors StartSNMPTrapper StartTrappers StartVMwareCollectors
StatsAllowedIP TLSAccept TLSCAFile TLSCRLFile TLSCertFile TLSCipherAll TLSCipherAll13 TLSCipherCert
TLSCipherCert13 TLSCipherPSK TLSCipherPSK13 TLSConnect TLSKeyFile TLSPSKFile TLSPSKIdentity TLSServerCertIssuer
TLSServerCertSubject TmpDir TrapperTimeout UnavailableDelay UnreachableDelay UnreachablePeriod User Vault
VaultDBPath VaultTLSCertFile VaultTLSKeyFile VaultToken VaultURL VMwareCacheSize VMwareFrequency
VMwarePerfFrequency VMwareTimeout ServerPort
""".split())

_MULTI = frozenset({"LoadModule"})  # keys that may appear more than once


@dataclass(frozen=True, slots=True)
class _Int:
    default: int
    lo: int
    hi: int
    size: bool = False  # takes K/M/G suffixes (bytes)


# The keys Vigil implements: Zabbix 6.0's defaults and ranges.
_INTS: dict[str, _Int] = {
    "ProxyMode": _Int(0, 0, 1),
    "ListenPort": _Int(10051, 1024, 32767),
    "ConfigFrequency": _Int(3600, 1, 7 * 86400),
    "ProxyConfigFrequency": _Int(0, 1, 7 * 86400),  # 6.4's name; 0 here: not given
    "DataSenderFrequency": _Int(1, 1, 3600),
    "HeartbeatFrequency": _Int(60, 0, 3600),
    "ProxyOfflineBuffer": _Int(1, 1, 720),
    "ProxyLocalBuffer": _Int(0, 0, 720),
    "HistoryCacheSize": _Int(16 << 20, 128 << 10, 2 << 30, size=True),
    "Timeout": _Int(3, 1, 30),
    "StartPollers": _Int(5, 0, 1000),
    "DebugLevel": _Int(3, 0, 5),
    "EnableRemoteCommands": _Int(0, 0, 1),  # remote command tasks with execute_on proxy (proxy/tasks.py)
    "LogRemoteCommands": _Int(0, 0, 1),
}
_STRS = {"Server": "", "Hostname": "", "ListenIP": "0.0.0.0", "DBName": "", "LogType": "file",
         "LogFile": "", "PidFile": "/run/zabbix/zabbix_proxy.pid"}
_LOG_TYPES = ("system", "file", "console")


@dataclass(frozen=True)
class ProxyConf:
    """The effective configuration (keys named as in zabbix_proxy.conf)."""

    ProxyMode: int = 0
    Server: str = ""
    Hostname: str = ""
    ListenIP: str = "0.0.0.0"
    ListenPort: int = 10051
    DBName: str = ""
    ConfigFrequency: int = 3600
    DataSenderFrequency: int = 1
    HeartbeatFrequency: int = 60
    ProxyOfflineBuffer: int = 1
    ProxyLocalBuffer: int = 0
    HistoryCacheSize: int = 16 << 20
    Timeout: int = 3
    StartPollers: int = 5
    LogType: str = "file"
    LogFile: str = ""
    DebugLevel: int = 3
    PidFile: str = "/run/zabbix/zabbix_proxy.pid"
    EnableRemoteCommands: int = 0
    LogRemoteCommands: int = 0
    ignored: tuple[str, ...] = field(default=(), compare=False)  # accepted keys Vigil does not act on

    @property
    def passive(self) -> bool:
        return self.ProxyMode == 1

    def servers(self) -> list[tuple[str, int]]:
        """Active mode: the servers to try in turn (`a:port;b:port`, a cluster's nodes)."""
        out = []
        for part in self.Server.split(";"):
            part = part.strip()
            if part:
                out.append(split_address(part, "Server"))
        return out

    def allowed(self) -> list[str]:
        """Passive mode: the addresses, CIDRs or names that may connect (comma-separated)."""
        return [x.strip() for x in self.Server.split(",") if x.strip()]

    def render(self) -> str:
        """As `--print-config` prints it: one `Key=Value` a line, then the ignored keys."""
        lines = [f"{f.name}={getattr(self, f.name)}" for f in fields(self) if f.name != "ignored"]
        lines += [f"# accepted, not implemented by Vigil: {k}" for k in self.ignored]
        return "\n".join(lines) + "\n"


def split_address(text: str, where: str) -> tuple[str, int]:
    text = text.strip()
    if text.startswith("["):  # [::1]:10051
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port = text.split(":")
    else:
        host, port = text, ""
    if not host:
        raise ConfError(f"{where}: {text!r} has no host name")
    if not port:
        return host, DEFAULT_SERVER_PORT
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfError(f"{where}: {text!r}: the port must be a number from 1 to 65535")
    return host, int(port)


def _size(text: str) -> int:
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:].upper(), 1)
    digits = text[:-1] if mult != 1 else text
    if not digits.isdigit():
        raise ValueError
    return int(digits) * mult


def _lines(path: Path, depth: int = 0) -> list[tuple[Path, int, str, str]]:
    """(file, line number, key, value) of a file and what it includes, in order."""
    if depth > 10:
        raise ConfError(f"{path}: Include nests more than 10 levels deep")
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        raise ConfError(f"cannot read the configuration file {path}: {e.strerror or e}") from None
    out = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, eq, value = line.partition("=")
        key, value = key.strip(), value.strip()
        if not eq or not key:
            raise ConfError(f"{path}:{n}: {raw.strip()[:80]!r} is not of the form Key=Value")
        if key == "Include":
            for inc in _included(path, n, value):
                out += _lines(inc, depth + 1)
            continue
        out.append((path, n, key, value))
    return out


def _included(path: Path, n: int, value: str) -> list[Path]:
    target = Path(value) if os.path.isabs(value) else path.parent / value
    if target.is_dir():
        return sorted(p for p in target.iterdir() if p.is_file())
    if any(c in value for c in "*?["):
        return [Path(p) for p in sorted(glob.glob(str(target))) if Path(p).is_file()]
    if not target.exists():
        raise ConfError(f"{path}:{n}: Include={value}: no such file or directory")
    return [target]


def load(path: str | Path) -> ProxyConf:
    """Read and check a configuration file; raises ConfError naming file, line and key."""
    values: dict[str, object] = {}
    seen: dict[str, tuple[Path, int]] = {}
    ignored: list[str] = []
    for file, n, key, value in _lines(Path(path)):
        where = f"{file}:{n}: {key}"
        if key in seen and key not in _MULTI:
            f0, n0 = seen[key]
            raise ConfError(f"{where}: given again (first at {f0}:{n0})")
        seen[key] = (file, n)
        if key in _INTS:
            spec = _INTS[key]
            try:
                v = _size(value) if spec.size else int(value)
            except ValueError:
                raise ConfError(f"{where}={value!r}: not a{' size' if spec.size else 'n integer'}") from None
            if not spec.lo <= v <= spec.hi:
                raise ConfError(f"{where}={value}: outside the range {spec.lo}-{spec.hi}")
            values[key] = v
        elif key in _STRS:
            if key == "LogType" and value not in _LOG_TYPES:
                raise ConfError(f"{where}={value}: expected one of {', '.join(_LOG_TYPES)}")
            values[key] = value
        elif key in NOT_IMPLEMENTED:
            if key not in ignored:
                ignored.append(key)
        else:
            raise ConfError(f"{where}: unknown parameter")
    frequency = values.pop("ProxyConfigFrequency", None)
    if frequency and "ConfigFrequency" not in values:
        values["ConfigFrequency"] = frequency
    if not values.get("Server"):
        raise ConfError(f"{path}: Server: missing (active: host:port of the server; passive: who may connect)")
    if not values.get("DBName"):
        raise ConfError(f"{path}: DBName: missing (the proxy's own SQLite file)")
    if values.get("LogType", "file") == "file" and not values.get("LogFile"):
        raise ConfError(f"{path}: LogFile: missing (needed with LogType=file)")
    if not values.get("Hostname"):
        values["Hostname"] = socket.gethostname()
    conf = ProxyConf(ignored=tuple(ignored), **values)  # type: ignore[arg-type]
    if not conf.passive:
        conf.servers()  # checks each address
    return conf


def log_ignored(conf: ProxyConf) -> None:
    for key in conf.ignored:
        log.info("parameter %s is accepted but not implemented by Vigil: it has no effect", key)
