"""Shared fixtures: free ports, real PostgreSQL databases, the real Zabbix 6.0 programs as peers."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_ADMIN_URL = os.environ.get("VIGIL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
VECTORS = Path(__file__).parent / "vectors"


def free_port() -> int:
    """A free TCP port on 127.0.0.1 below 32768 (zabbix_agentd accepts ListenPort 1024-32767 only)."""
    for _ in range(500):
        p = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", p))
            except OSError:
                continue
            return p
    raise RuntimeError("no free port found in 20000-32000")


def wait_port(port: int, timeout: float = 10.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def require(program: str) -> str:
    path = shutil.which(program) or (f"/usr/sbin/{program}" if os.path.exists(f"/usr/sbin/{program}") else None)
    if path is None:
        pytest.fail(f"{program} is not installed: run the README's test command, which installs it")
    return path


@pytest.fixture
def port() -> int:
    return free_port()


def new_pg_database() -> tuple[str, str]:
    import psycopg

    name = "vigil_test_" + uuid.uuid4().hex[:12]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    return name, PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_pg_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each backend, as a Vigil store URL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'vigil.db'}"
        return
    name, url = new_pg_database()
    try:
        yield url
    finally:
        drop_pg_database(name)


@pytest.fixture
def migrated_url(database_url: str) -> str:
    """A database of each backend migrated to head."""
    from server.config.migrate import engine_for, upgrade

    engine = engine_for(database_url)
    upgrade(engine)
    engine.dispose()
    return database_url


@pytest.fixture
def zabbix_agentd(tmp_path: Path) -> Iterator[int]:
    """A real zabbix_agentd 6.0 in passive mode on 127.0.0.1; yields its port."""
    binary = require("zabbix_agentd")
    p = free_port()
    conf = tmp_path / "zabbix_agentd.conf"
    conf.write_text(
        f"Server=127.0.0.1\nServerActive=\nListenIP=127.0.0.1\nListenPort={p}\nHostname=zbx-peer\n"
        f"LogType=console\nPidFile={tmp_path}/zabbix_agentd.pid\nStartAgents=2\nAllowRoot=1\n"
    )
    proc = subprocess.Popen([binary, "-f", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(p, proc=proc)
        yield p
    finally:
        stop_process(proc)


def zabbix_get(port: int, key: str, timeout: int = 5) -> str:
    """What the real zabbix_get prints for `key` asked of 127.0.0.1:port (stdout and stderr)."""
    r = subprocess.run(
        [require("zabbix_get"), "-s", "127.0.0.1", "-p", str(port), "-k", key, "-t", str(timeout)],
        capture_output=True, text=True, timeout=timeout + 10,
    )
    return (r.stdout + r.stderr).rstrip("\n")
