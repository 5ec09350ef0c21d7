"""A real zabbix_proxy 6.0 (Debian's zabbix-proxy-sqlite3) started by a test on loopback."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path

from tests.conftest import free_port, require, stop_process, wait_port, wait_until


class ZabbixProxy:
    """zabbix_proxy -f with its own SQLite file, pid file, runtime-control socket dir and a free port."""

    def __init__(self, tmp: Path, name: str, *, server: str, passive: bool = False, database: Path | None = None,
                 **options: str) -> None:
        self.dir = tmp / f"zabbix-proxy-{name}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.port = free_port()
        self.db = self.dir / "proxy.db"
        if database is not None:  # an empty proxy database made before (creating one takes seconds)
            shutil.copyfile(database, self.db)
        self.log = self.dir / "proxy.log"
        self.conf = self.dir / "zabbix_proxy.conf"
        # Its unix sockets (runtime control, preprocessing) must fit in 108 bytes: a pytest tmp_path
        # is too long, so they get a short directory of their own, removed in stop().
        self.sockets = Path(tempfile.mkdtemp(prefix="zp-"))
        settings = {
            "ProxyMode": "1" if passive else "0", "Server": server, "Hostname": name, "ListenIP": "127.0.0.1",
            "ListenPort": str(self.port), "LogType": "file", "LogFile": str(self.log), "DBName": str(self.db),
            "PidFile": str(self.dir / "proxy.pid"), "SocketDir": str(self.sockets), "AllowRoot": "1",
            "ConfigFrequency": "1", "DataSenderFrequency": "1", "HeartbeatFrequency": "1", "StartPollers": "2",
            "StartTrappers": "2", "StartPreprocessors": "1", "StartDiscoverers": "0", "StartHTTPPollers": "1",
            "StartPingers": "1", "StartVMwareCollectors": "0", "StartIPMIPollers": "0", "StartJavaPollers": "0",
        }
        settings.update(options)
        self.conf.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        self.proc: subprocess.Popen | None = None

    def start(self) -> ZabbixProxy:
        self.sockets.mkdir(parents=True, exist_ok=True)  # stop() removed it, a restart needs it again
        self.proc = subprocess.Popen([require("zabbix_proxy"), "-f", "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_port(self.port, 30, self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 20)
            self.proc = None
        shutil.rmtree(self.sockets, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL the proxy and its children (it forks one process per role), keeping its database."""
        import os
        import signal

        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
            self.proc = None

    def runtime_control(self, command: str) -> str:
        """`zabbix_proxy -R command` on this proxy (e.g. housekeeper_execute); what it printed."""
        r = subprocess.run([require("zabbix_proxy"), "-c", str(self.conf), "-R", command], capture_output=True,
                           text=True, timeout=30)
        return r.stdout + r.stderr

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for_config(self, timeout: float = 30) -> None:
        def received() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"zabbix_proxy exited: {self.log_text()[-2000:]}")
            return "received configuration data" in self.log_text()
        wait_until(received, timeout,
                   f"zabbix_proxy {self.name} to receive its configuration")

    def query(self, sql: str, *args: object) -> list[tuple]:
        db = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        try:
            return db.execute(sql, args).fetchall()
        finally:
            db.close()

    def history(self) -> list[tuple[int, int, int, int, str]]:
        """(id, itemid, clock, ns, value) of the values the proxy collected, as its buffer holds them."""
        return [tuple(r) for r in self.query("SELECT id, itemid, clock, ns, value FROM proxy_history ORDER BY id")]

    def sent_up_to(self) -> int:
        """The last proxy_history id the server acknowledged."""
        rows = self.query("SELECT nextid FROM ids WHERE table_name = 'proxy_history' AND field_name = "
                          "'history_lastid'")
        return int(rows[0][0]) if rows else 0


def empty_proxy_database(tmp: Path) -> Path:
    """A proxy database as zabbix_proxy creates it on its first start, made once for a test module."""
    proxy = ZabbixProxy(tmp, "schema", server="127.0.0.1:1")
    try:
        proxy.start()
        wait_until(lambda: "current database version" in proxy.log_text(), 60, "zabbix_proxy to create its database")
    finally:
        proxy.stop()
    return proxy.db
