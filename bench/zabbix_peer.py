"""The real zabbix_server 6.0 on PostgreSQL as a benchmark peer: database, configuration, process.

`ZabbixPeer` is a context manager. On entry it creates a role and a database of its own on the
PostgreSQL server the bench uses, loads the schema from the package the binary was unpacked from
(`<root>/usr/share/zabbix-server-pgsql/schema.sql.gz`, as ../shared/peers/zabbix-server/setup.sh
unpacks it), inserts hosts with trapper items by SQL, writes the server's configuration into a
temporary directory and starts `zabbix_server -f` there. On exit, whatever happened, it stops the
server (SIGTERM, then SIGKILL to its whole process group) and drops the database and the role.

Of `data.sql.gz` only the rows the server needs to start are loaded (the `config` row and what it
refers to: user groups, host groups, roles, users, global regexps): the other ~130,000 rows are
templates, which take 10 s to load and play no part in receiving trapper values.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

# Rows of data.sql the server reads at start; templates and their items are left out.
BASE_TABLES = ("config", "hstgrp", "usrgrp", "role", "role_rule", "users", "users_groups", "globalmacro",
               "regexps", "expressions", "config_autoreg_tls")
FIRST_HOSTID, FIRST_ITEMID, GROUPID = 900001, 9000001, 900001
TRAPPER, FLOAT = 2, 0


def package_root(binary: Path) -> Path:
    """The directory the package was unpacked into: <root>/usr/sbin/zabbix_server."""
    return binary.resolve().parent.parent.parent


def free_trapper_port() -> int:
    """A free port zabbix_server accepts (ListenPort is 1024-32767, below the ephemeral range)."""
    for _ in range(200):
        port = 20000 + int.from_bytes(os.urandom(2), "big") % 12000
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-32000 for zabbix_server")


def _base_rows(data_sql: str) -> str:
    keep = re.compile(f"INSERT INTO (?:{'|'.join(BASE_TABLES)}) ")
    rows = [line for line in data_sql.splitlines() if keep.match(line)]
    if not any(line.startswith("INSERT INTO config ") for line in rows) or not all(r.endswith(");") for r in rows):
        raise RuntimeError("data.sql.gz is not laid out as expected (one INSERT a line for the base tables)")
    return "\n".join(rows)


class ZabbixPeer:
    def __init__(self, binary: Path, admin_url: str, hosts: list[str], keys: list[str], *,
                 trappers: int = 5, syncers: int = 4, preprocessors: int = 3) -> None:
        self.binary = binary
        self.admin_url = admin_url
        self.hosts, self.keys = hosts, keys
        self.trappers, self.syncers, self.preprocessors = trappers, syncers, preprocessors
        tag = uuid.uuid4().hex[:8]
        self.dbname = self.role = f"vigil_bench_zbx_{tag}"
        self.password = uuid.uuid4().hex
        self.url = f"postgresql://{self.role}:{self.password}@{_hostport(admin_url)}/{self.dbname}"
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.tmp: Path | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    def __enter__(self) -> ZabbixPeer:
        try:
            self._make_database()
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _make_database(self) -> None:
        share = package_root(self.binary) / "usr/share/zabbix-server-pgsql"
        schema = gzip.decompress((share / "schema.sql.gz").read_bytes()).decode()
        base = _base_rows(gzip.decompress((share / "data.sql.gz").read_bytes()).decode())
        with psycopg.connect(self.admin_url, autocommit=True) as c:
            c.execute(f"CREATE ROLE {self.role} LOGIN PASSWORD '{self.password}'")
            c.execute(f"CREATE DATABASE {self.dbname} OWNER {self.role} ENCODING 'UTF8' TEMPLATE template0")
        with psycopg.connect(self.url) as c:
            c.execute("SET synchronous_commit = off")  # loading only; the server's own sessions keep the default
            c.execute(schema)
            c.execute(base)
            c.execute("INSERT INTO hstgrp (groupid, name, internal, flags) VALUES (%s, 'Bench', 0, 0)", (GROUPID,))
            with c.cursor() as cur:
                cur.executemany(
                    "INSERT INTO hosts (hostid, host, name, status) VALUES (%s, %s, %s, 0)",
                    [(FIRST_HOSTID + h, name, name) for h, name in enumerate(self.hosts)])
                cur.executemany(
                    "INSERT INTO hosts_groups (hostgroupid, hostid, groupid) VALUES (%s, %s, %s)",
                    [(FIRST_HOSTID + h, FIRST_HOSTID + h, GROUPID) for h in range(len(self.hosts))])
                items = [(FIRST_ITEMID + h * len(self.keys) + i, FIRST_HOSTID + h, key)
                         for h in range(len(self.hosts)) for i, key in enumerate(self.keys)]
                cur.executemany(
                    "INSERT INTO items (itemid, type, hostid, name, key_, delay, value_type, history, trends) "
                    f"VALUES (%s, {TRAPPER}, %s, %s, %s, '0', {FLOAT}, '90d', '365d')",
                    [(itemid, hostid, key, key) for itemid, hostid, key in items])
                cur.executemany("INSERT INTO item_rtdata (itemid) VALUES (%s)", [(i[0],) for i in items])
            c.execute("ANALYZE")

    def _start(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="vigil-bench-zbx-"))
        self.port = free_trapper_port()
        log = self.tmp / "zabbix_server.log"
        conf = self.tmp / "zabbix_server.conf"
        conf.write_text("\n".join([
            "ListenIP=127.0.0.1", f"ListenPort={self.port}", "SourceIP=127.0.0.1",
            f"DBHost={_hostport(self.admin_url).rsplit(':', 1)[0]}", f"DBPort={_port(self.admin_url)}",
            f"DBName={self.dbname}", f"DBUser={self.role}", f"DBPassword={self.password}",
            "LogType=file", f"LogFile={log}", "LogFileSize=0", f"PidFile={self.tmp / 'zabbix_server.pid'}",
            f"SocketDir={self.tmp}", "AllowRoot=1", "Timeout=4", "CacheUpdateFrequency=5",
            f"StartTrappers={self.trappers}", f"StartDBSyncers={self.syncers}",
            f"StartPreprocessors={self.preprocessors}", "StartPollers=1", "StartPingers=0", "StartDiscoverers=0",
            "StartHTTPPollers=0", "StartReportWriters=0", "HousekeepingFrequency=0", "CacheSize=64M",
            "HistoryCacheSize=256M", "ValueCacheSize=64M", ""]))
        self.proc = subprocess.Popen([str(self.binary), "-f", "-c", str(conf)], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while "started [trapper #1]" not in _read(log):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"zabbix_server did not start; its log ends:\n{_tail(log)}")
            time.sleep(0.1)

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGTERM)
                try:
                    self.proc.wait(5)  # it writes its history cache out first: not needed here
                except subprocess.TimeoutExpired:
                    pass
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # any child the main process left behind
            except ProcessLookupError:
                pass
            self.proc.wait()
            self.proc = None
        with psycopg.connect(self.admin_url, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {self.dbname} WITH (FORCE)")
            c.execute(f"DROP ROLE IF EXISTS {self.role}")
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    # -- measuring --------------------------------------------------------------------------------

    def pids(self) -> list[int]:
        """The server's processes (main and forked workers: one process group)."""
        if self.proc is None:
            return []
        out = []
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    if os.getpgid(int(d.name)) == self.proc.pid:
                        out.append(int(d.name))
                except ProcessLookupError:
                    continue
        return out

    def log_tail(self) -> str:
        return _tail(self.tmp / "zabbix_server.log") if self.tmp else ""


def _hostport(url: str) -> str:
    netloc = url.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1]
    return netloc if ":" in netloc else netloc + ":5432"


def _port(url: str) -> int:
    return int(_hostport(url).rsplit(":", 1)[1])


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _tail(path: Path, lines: int = 20) -> str:
    return "\n".join(_read(path).splitlines()[-lines:])
