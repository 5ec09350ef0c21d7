"""The real zabbix_server 6.0 as a test peer: its own database cloned from the template that setup.sh
loads, its own port and work directory, hosts and items inserted with SQL as Zabbix's frontend would.

setup.sh (run by scripts/test.sh) unpacks the server and loads the template; a test that needs the
peer fails with what to run when it is missing.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PG_ADMIN_URL, free_port, stop_process

HERE = Path(__file__).resolve().parent
ROOT = Path(os.environ.get("ZBX_SRV_ROOT", "/var/tmp/vigil-zabbix-server"))
TEMPLATE = os.environ.get("ZBX_TEMPLATE", "vigil_zbx_template")
BINARY = ROOT / "usr" / "sbin" / "zabbix_server"

# items.type and items.value_type as Zabbix numbers them
TRAPPER, AGENT_ACTIVE = 2, 7
FLOAT, CHAR, LOG, UNSIGNED, TEXT = 0, 1, 2, 3, 4
HISTORY_TABLES = {FLOAT: "history", CHAR: "history_str", LOG: "history_log", UNSIGNED: "history_uint",
                  TEXT: "history_text"}


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as c:
        c.execute(sql)


class ZabbixServer:
    """One zabbix_server process on 127.0.0.1 with a database of its own."""

    def __init__(self, tmp: Path) -> None:
        if not BINARY.exists():
            pytest.fail(f"{BINARY} is missing: run bash {HERE / 'setup.sh'} (scripts/test.sh does)")
        self.tmp = tmp
        self.db = "vigil_zbx_" + uuid.uuid4().hex[:10]
        self.url = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgres@", "zabbix:zabbix@") + "/" + self.db
        self.port = free_port()
        self.log = tmp / "zabbix_server.log"
        self.proc: subprocess.Popen[bytes] | None = None
        try:
            _admin(f"CREATE DATABASE {self.db} TEMPLATE {TEMPLATE} OWNER zabbix")
        except Exception as e:
            pytest.fail(f"cannot clone the Zabbix template database {TEMPLATE} ({e}): run bash {HERE / 'setup.sh'}")
        self._next_id = 900_001

    def sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as c:
            cur = c.execute(query, params)
            return cur.fetchall() if cur.description else []

    def add_host(self, host: str) -> int:
        hostid = self._next_id
        self._next_id += 1
        self.sql("INSERT INTO hosts (hostid, host, name, status) VALUES (%s, %s, %s, 0)", (hostid, host, host))
        self.sql("INSERT INTO hosts_groups (hostgroupid, hostid, groupid) VALUES (%s, %s, 2)", (hostid, hostid))
        return hostid

    def add_item(self, hostid: int, key: str, value_type: int, item_type: int = TRAPPER) -> int:
        itemid = self._next_id
        self._next_id += 1
        self.sql("INSERT INTO items (itemid, type, hostid, name, key_, delay, value_type, history, trends) "
                 "VALUES (%s, %s, %s, %s, %s, %s, %s, '90d', '365d')",
                 (itemid, item_type, hostid, key, key, "0" if item_type == TRAPPER else "30s", value_type))
        self.sql("INSERT INTO item_rtdata (itemid) VALUES (%s)", (itemid,))
        return itemid

    def start(self) -> ZabbixServer:
        conf = self.tmp / "zabbix_server.conf"
        conf.write_text("\n".join([
            "ListenIP=127.0.0.1", f"ListenPort={self.port}", "SourceIP=127.0.0.1", "DBHost=127.0.0.1",
            f"DBName={self.db}", "DBUser=zabbix", "DBPassword=zabbix", "LogType=file", f"LogFile={self.log}",
            "LogFileSize=0", f"PidFile={self.tmp}/zabbix_server.pid", f"SocketDir={self.tmp}", "AllowRoot=1",
            "Timeout=4", "CacheUpdateFrequency=1", "StartTrappers=2", "StartDBSyncers=1", "StartPreprocessors=1",
            "StartPollers=1", "StartPingers=0", "StartDiscoverers=0", "StartHTTPPollers=0",
            "StartReportWriters=0", "StartTimers=1", "StartEscalators=1", "StartAlerters=1",
            "HousekeepingFrequency=0", "CacheSize=16M", "HistoryCacheSize=16M", "ValueCacheSize=16M", "",
        ]))
        self.proc = subprocess.Popen([str(BINARY), "-f", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while "started [trapper #1]" not in self.log_text():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log_text()[-3000:]
                self.stop()
                raise RuntimeError(f"zabbix_server did not start: {tail}")
            time.sleep(0.05)
        return self

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def history(self, itemid: int, value_type: int) -> list[tuple[Any, ...]]:
        table = HISTORY_TABLES[value_type]
        cols = "clock, ns, value" if value_type != LOG else "clock, ns, value, source, severity, logeventid"
        return self.sql(f"SELECT {cols} FROM {table} WHERE itemid = %s ORDER BY clock, ns", (itemid,))

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 30)
            self.proc = None

    def drop(self) -> None:
        self.stop()
        _admin(f"DROP DATABASE IF EXISTS {self.db} WITH (FORCE)")
