"""Peers for the poller tests: a real vigil-agent in passive mode, a listener that never answers,
and a small TCP server speaking a banner protocol."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port, stop_process, vigil_bin, wait_port


@pytest.fixture
def vigil_agent(tmp_path: Path) -> Iterator[int]:
    """A real vigil-agent in passive mode on 127.0.0.1; yields its port."""
    yield from run_vigil_agent(tmp_path, free_port())


def run_vigil_agent(tmp_path: Path, port: int) -> Iterator[int]:
    conf = tmp_path / f"vigil-agent-{port}.conf"
    conf.write_text(f"Server=127.0.0.1\nServerActive=\nListenIP=127.0.0.1\nListenPort={port}\nHostname=vigil-peer\n"
                    f"LogType=console\nPidFile={tmp_path}/vigil-agent-{port}.pid\nStartAgents=3\nAllowRoot=1\n")
    proc = subprocess.Popen([vigil_bin("vigil-agent"), "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_port(port, 15, proc)
        yield port
    finally:
        stop_process(proc)


class Listener:
    """A TCP listener on 127.0.0.1 that accepts and then does what `mode` says: 'silent' holds every
    connection open and never answers; 'banner' sends `banner` and reads until closed. Counts
    connections and the most open at once."""

    def __init__(self, mode: str = "silent", banner: bytes = b"", port: int | None = None) -> None:
        self.mode, self.banner = mode, banner
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port or 0))
        self.sock.listen(128)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.open = 0
        self.max_open = 0
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                self.accepted += 1
                self.open += 1
                self.max_open = max(self.max_open, self.open)
                self._conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            if self.mode == "banner":
                conn.sendall(self.banner)
            conn.settimeout(30)
            while not self._stop.is_set() and conn.recv(4096):
                pass
        except OSError:
            pass
        finally:
            with self._lock:
                self.open -= 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            for c in self._conns:
                try:
                    c.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self.sock.close()
        self._thread.join(5)


@pytest.fixture
def silent() -> Iterator[Listener]:
    lst = Listener("silent")
    try:
        yield lst
    finally:
        lst.close()
