"""A real `vigil proxy` process started by a test or a bench on loopback, with its own SQLite file and port.

`missing()` says why the Vigil proxy cannot be run, if it cannot (the drills and the bench skip it then)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

from vigil.agent.protocol import zbxd

from tests.conftest import free_port, stop_process, vigil_bin, wait_port, wait_until


def exchange(port: int, obj: Any) -> dict | None:
    raw = obj if isinstance(obj, bytes) else zbxd.encode(json.dumps(obj).encode())
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        try:
            s.sendall(raw)
            _, body = zbxd.recv_frame(s)
        except (EOFError, ConnectionError, zbxd.FrameError):
            return None
    return json.loads(body)


@cache
def missing() -> str | None:
    """None when `vigil proxy --help` works; else the reason the Vigil proxy cannot be run."""
    try:
        r = subprocess.run([vigil_bin("vigil"), "proxy", "--help"], capture_output=True, text=True, timeout=60)
    except BaseException as e:  # vigil_bin fails the caller through pytest when vigil is not installed
        return f"vigil is not runnable: {e}"
    if r.returncode != 0:
        return f"`vigil proxy --help` exited {r.returncode}: {(r.stderr or r.stdout).strip()[-200:]}"
    return None


class VigilProxy:
    def __init__(self, tmp: Path, name: str, *, server: str, passive: bool = False, **options: str) -> None:
        self.dir = tmp / f"vigil-proxy-{name}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.port = free_port()
        self.db = self.dir / "proxy.db"
        self.log = self.dir / "proxy.log"
        self.conf = self.dir / "zabbix_proxy.conf"
        self.settings = {
            "ProxyMode": "1" if passive else "0", "Server": server, "Hostname": name, "ListenIP": "127.0.0.1",
            "ListenPort": str(self.port), "LogType": "file", "LogFile": str(self.log), "DBName": str(self.db),
            "PidFile": str(self.dir / "proxy.pid"), "ConfigFrequency": "1", "DataSenderFrequency": "1",
            "HeartbeatFrequency": "1", "StartPollers": "4", "Timeout": "3", "ProxyLocalBuffer": "1",
        }
        self.settings.update(options)
        self.write_conf()
        self.proc: subprocess.Popen | None = None

    def write_conf(self) -> None:
        self.conf.write_text("".join(f"{k}={v}\n" for k, v in self.settings.items()))

    def start(self) -> VigilProxy:
        self.proc = subprocess.Popen([vigil_bin("vigil"), "proxy", "-c", str(self.conf)], env=dict(os.environ),
                                     stdout=self.log.with_suffix(".out").open("ab"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            wait_port(self.port, 30, self.proc)
        except RuntimeError:
            raise RuntimeError(f"vigil proxy did not start: {self.log_text()[-3000:]}") from None
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 20)
            self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        out = self.log.read_text(errors="replace") if self.log.exists() else ""
        extra = self.log.with_suffix(".out")
        return out + (extra.read_text(errors="replace") if extra.exists() else "")

    def active_checks(self, host: str) -> dict | None:
        return exchange(self.port, {"request": "active checks", "host": host})

    def wait_for_host(self, host: str, timeout: float = 30) -> None:
        def known() -> bool:
            reply = self.active_checks(host)
            return reply is not None and reply.get("response") == "success"

        wait_until(known, timeout, f"proxy {self.name} to have host {host!r} from the server")

    def outbox(self) -> list[tuple[int, int, int, str | None, int]]:
        """(itemid, clock, ns, value, sent) of every record in the buffer, sent ones kept (ProxyLocalBuffer)."""
        with sqlite3.connect(self.db, timeout=30) as c:
            return c.execute("SELECT itemid, clock, ns, value, sent FROM proxy_outbox ORDER BY id").fetchall()

    def reported_dropped(self) -> int:
        """Values the proxy said it dropped for outliving ProxyOfflineBuffer: the sum of the numbers in
        its log lines that mention both "dropped" and "ProxyOfflineBuffer" (issue 16: "their count is
        logged and reported")."""
        total = 0
        for line in self.log_text().splitlines():
            if "dropped" in line.lower() and "proxyofflinebuffer" in line.lower():
                # "dropped N buffered values ..." (the line also starts with a time and a pid: not those)
                found = re.search(r"\bdropped (\d+)\b", line, re.IGNORECASE) \
                    or re.search(r"\b(\d+) (?:buffered )?(?:values|records) dropped", line, re.IGNORECASE)
                if found:
                    total += int(found.group(1))
        return total
