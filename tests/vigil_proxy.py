"""A `vigil proxy -c FILE` process started by a test or a bench on loopback, next to the real zabbix_proxy.

Written against the CLI contract of issue 16 (a zabbix_proxy.conf-style file). Where the Vigil proxy
is not built yet, `missing()` says why and the callers skip it: that check is the one switch.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from functools import cache
from pathlib import Path

from tests.conftest import free_port, stop_process, vigil_bin, wait_port


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
    """`vigil proxy -c FILE` with its own SQLite buffer, log, pid file and a free trapper port."""

    def __init__(self, tmp: Path, name: str, *, server: str, passive: bool = False, **options: str) -> None:
        self.dir = tmp / f"vigil-proxy-{name}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.port = free_port()
        self.db = self.dir / "proxy.db"
        self.log = self.dir / "proxy.log"
        self.conf = self.dir / "vigil_proxy.conf"
        settings = {
            "ProxyMode": "1" if passive else "0", "Server": server, "Hostname": name, "ListenIP": "127.0.0.1",
            "ListenPort": str(self.port), "DBName": str(self.db), "ConfigFrequency": "1",
            "DataSenderFrequency": "1", "HeartbeatFrequency": "1", "LogType": "file", "LogFile": str(self.log),
            "DebugLevel": "3", "PidFile": str(self.dir / "proxy.pid"), "Timeout": "4", "StartPollers": "2",
        }
        settings.update(options)
        self.conf.write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
        self.proc: subprocess.Popen | None = None

    def start(self) -> VigilProxy:
        out = (self.dir / "stdout.log").open("ab")
        self.proc = subprocess.Popen([vigil_bin("vigil"), "proxy", "-c", str(self.conf)], stdout=out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        wait_port(self.port, 30, self.proc)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 20)
            self.proc = None

    def kill(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(10)
            self.proc = None

    def log_text(self) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        out = self.dir / "stdout.log"
        return text + (out.read_text(errors="replace") if out.exists() else "")

    def reported_dropped(self) -> int:
        """Values the proxy said it dropped for outliving ProxyOfflineBuffer: the sum of the numbers in
        its log lines that mention both "dropped" and "ProxyOfflineBuffer" (issue 16: "their count is
        logged and reported")."""
        total = 0
        for line in self.log_text().splitlines():
            if "dropped" in line.lower() and "proxyofflinebuffer" in line.lower():
                found = re.search(r"dropped\D*(\d+)|(\d+)\D*dropped", line, re.IGNORECASE)
                if found:
                    total += int(found.group(1) or found.group(2))
        return total
