"""Shared fixtures: free ports, real PostgreSQL databases, the real Zabbix 6.0 programs as peers."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

PG_ADMIN_URL = os.environ.get("VIGIL_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
VECTORS = Path(__file__).parent / "vectors"


SCOPE_SECONDS = Path(__file__).parent / "scope_seconds.txt"


def _scope(nodeid: str) -> str:
    """pytest-xdist's loadscope unit: the module, or the class of a test method."""
    return nodeid.rsplit("::", 1)[0]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist, the scopes that took longest (tests/scope_seconds.txt, made by
    scripts/scope_seconds.py from a `--durations=0` run) are collected first. scripts/test.sh runs
    `--dist loadscope --no-loadscope-reorder`, so the workers take scopes in this order as they free
    up: the long real-process modules start at once and the short ones fill in after, instead of one
    long module starting last and running on after the others ended. A scope not in the file is
    estimated at its directory's mean seconds a test. Every worker sorts alike (collections must match)."""
    if not os.environ.get("PYTEST_XDIST_WORKER") or not SCOPE_SECONDS.exists():
        return
    known: dict[str, float] = {}
    per_dir: dict[str, list[float]] = {}
    for line in SCOPE_SECONDS.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            seconds, tests, scope = line.split(maxsplit=2)
            known[scope] = float(seconds)
            d = per_dir.setdefault(scope.split("::")[0].rsplit("/", 1)[0], [0.0, 0.0])
            d[0] += float(seconds)
            d[1] += int(tests)
    groups: dict[str, list[pytest.Item]] = {}
    for item in items:
        groups.setdefault(_scope(item.nodeid), []).append(item)

    def estimate(scope: str) -> float:
        if scope in known:
            return known[scope]
        total, tests = per_dir.get(scope.split("::")[0].rsplit("/", 1)[0], (0.0, 0.0))
        return len(groups[scope]) * (total / tests if tests else 1.0)
    order = sorted(groups, key=lambda scope: -estimate(scope))  # stable: ties keep collection order
    items[:] = [item for scope in order for item in groups[scope]]


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


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> None:
    """Return once `predicate()` is true; fail naming `what` was awaited if it is not within `timeout` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


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


def new_pg_database(template: str | None = None) -> tuple[str, str]:
    """A new empty PostgreSQL database (or a copy of `template`): (name, Vigil store URL)."""
    import psycopg

    name = "vigil_test_" + uuid.uuid4().hex[:12]
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}" + (f" TEMPLATE {template}" if template else ""))
    return name, PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_pg_database(name: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


class MigratedTemplates:
    """One database of each backend migrated to head, made the first time a test of this session (one
    xdist worker) asks for it; `migrated_url` gets a copy. Migrating PostgreSQL takes seconds a test,
    a copy (CREATE DATABASE ... TEMPLATE) a tenth of one. tests/server/test_migrations.py and the
    migration tests still migrate from empty."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self._sqlite: Path | None = None
        self._pg: str | None = None

    @staticmethod
    def _migrate(url: str) -> None:
        from vigil.server.config.migrate import current_revision, engine_for, head_revision, upgrade

        engine = engine_for(url)
        try:
            upgrade(engine)
            assert current_revision(engine) == head_revision()
        finally:
            engine.dispose()

    def copy_sqlite(self, dest: Path) -> None:
        import sqlite3

        if self._sqlite is None:
            path = self.tmp / "migrated.db"
            self._migrate(f"sqlite:///{path}")
            self._sqlite = path
        src, dst = sqlite3.connect(self._sqlite), sqlite3.connect(dest)
        try:
            src.backup(dst)  # the whole database, WAL included, whatever is checkpointed
        finally:
            src.close()
            dst.close()

    def pg(self) -> str:
        if self._pg is None:
            name, url = new_pg_database()
            self._migrate(url)
            self._pg = name
        return self._pg

    def close(self) -> None:
        if self._pg is not None:
            drop_pg_database(self._pg)


class Dropper:
    """Drops test databases on a thread of its own: DROP DATABASE takes about a second (more on a busy
    machine) that no test needs to wait for. `close()` waits until all are dropped."""

    def __init__(self) -> None:
        import queue
        import threading

        self.queue: queue.Queue[str | None] = queue.Queue()
        self.errors: list[str] = []
        self.thread = threading.Thread(target=self._run, name="drop-test-databases", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (name := self.queue.get()) is not None:
            try:
                drop_pg_database(name)
            except Exception as e:  # reported at the end of the session, not lost
                self.errors.append(f"{name}: {e}")

    def drop(self, name: str) -> None:
        self.queue.put(name)

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join(300)
        assert not self.errors, f"test databases not dropped: {self.errors}"


@pytest.fixture(scope="session")
def pg_dropper() -> Iterator[Dropper]:
    d = Dropper()
    try:
        yield d
    finally:
        d.close()


@pytest.fixture(scope="session")
def migrated_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MigratedTemplates]:
    t = MigratedTemplates(tmp_path_factory.mktemp("migrated"))
    try:
        yield t
    finally:
        t.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database of each backend, as a Vigil store URL (migrated to head when the test also
    asks for `migrated_url`)."""
    templates: MigratedTemplates | None = None
    if "migrated_url" in request.fixturenames:
        templates = request.getfixturevalue("migrated_templates")
    if request.param == "sqlite":
        path = tmp_path / "vigil.db"
        if templates is not None:
            templates.copy_sqlite(path)
        yield f"sqlite:///{path}"
        return
    dropper: Dropper = request.getfixturevalue("pg_dropper")
    name, url = new_pg_database(templates.pg() if templates is not None else None)
    try:
        yield url
    finally:
        dropper.drop(name)


@pytest.fixture
def migrated_url(database_url: str) -> str:
    """A database of each backend migrated to head (a copy of one migrated once: `MigratedTemplates`)."""
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


BIN = Path(__file__).resolve().parent.parent / ".venv" / "bin"


def vigil_bin(name: str) -> str:
    """A console script of this checkout: from the venv running the tests, else from PATH."""
    import sys

    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[server]'")
    return found


class VigilServer:
    """A real `vigil server` (or `vigil up`) process on a free port with its own store."""

    def __init__(self, tmp: Path, database_url: str, command: str = "server", **env: str) -> None:
        self.tmp = tmp
        self.database_url = database_url
        self.port = free_port()
        self.command = command
        self.env = dict(os.environ)
        self.env.update({
            "VIGIL_DATA_DIR": str(tmp / "data"),
            "VIGIL_DATABASE_URL": database_url,
            "VIGIL_LISTEN": f"127.0.0.1:{self.port}",
            "VIGIL_WEB_LISTEN": f"127.0.0.1:{free_port()}",
            "VIGIL_CONFIG_REFRESH": "0.2",
            "VIGIL_LOCAL_AGENT": "0",
        })
        self.env.update(env)
        self.proc: subprocess.Popen | None = None
        self.log = tmp / f"vigil-{command}.log"

    def cli(self, *args: str, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
        r = subprocess.run([vigil_bin("vigil"), *args], env=self.env, capture_output=True, text=True,
                           input=input, timeout=120)
        if check and r.returncode != 0:
            raise AssertionError(f"vigil {' '.join(args)} exited {r.returncode}: {r.stderr}{r.stdout}")
        return r

    def import_yaml(self, text: str) -> None:
        path = self.tmp / f"config-{uuid.uuid4().hex[:6]}.yaml"
        path.write_text(text)
        self.cli("config", "import", str(path))

    def active_checks(self, host: str) -> dict:
        """The server's answer to an active agent's "active checks" request for `host`."""
        import json

        from vigil.agent.protocol import zbxd

        body = zbxd.encode(json.dumps({"request": "active checks", "host": host}).encode())
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as s:
            s.sendall(body)
            raw = b""
            while chunk := s.recv(65536):
                raw += chunk
        return json.loads(zbxd.decode(raw)[1])

    def wait_for_config(self, host: str, active_key: str | None = None, timeout: float = 10) -> None:
        """Wait until the running server's configuration cache (reloaded every VIGIL_CONFIG_REFRESH)
        knows `host` and, if given, its active item `active_key`: the cache is replaced whole, so then
        everything imported with them is loaded too."""
        def loaded() -> bool:
            answer = self.active_checks(host)
            if answer.get("response") != "success":
                return False
            return active_key is None or any(c.get("key") == active_key for c in answer.get("data", []))

        what = f"the server to load host {host!r}" + (f" with active item {active_key!r}" if active_key else "")
        wait_until(loaded, timeout, what)

    def start(self) -> VigilServer:
        self.cli("db", "upgrade")
        for attempt in range(3):
            self.proc = subprocess.Popen([vigil_bin("vigil"), self.command], env=self.env,
                                         stdout=self.log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
            try:
                wait_port(self.port, 30, self.proc)
                return self
            except RuntimeError:
                # Another process on this machine took the free port we picked: pick again.
                if "cannot listen" not in self.log_text() or attempt == 2:
                    raise RuntimeError(f"vigil {self.command} did not start: {self.log_text()[-2000:]}") from None
                self.port = free_port()
                self.env["VIGIL_LISTEN"] = f"127.0.0.1:{self.port}"
        return self

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
            self.proc = None

    def kill(self) -> None:
        import signal

        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None

    def history(self, host: str, key: str, *extra: str) -> list[list[str]]:
        r = self.cli("history", host, key, "--from", "0", "--to", str(2**31 - 1), *extra)
        return [line.split("\t") for line in r.stdout.splitlines()]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@pytest.fixture
def vigil_server(tmp_path: Path, database_url: str) -> Iterator[VigilServer]:
    """A running `vigil server` on each backend (the test imports its configuration)."""
    s = VigilServer(tmp_path, database_url).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def vigil_server_sqlite(tmp_path: Path) -> Iterator[VigilServer]:
    """A running `vigil server` on SQLite only, for tests about something other than the store."""
    s = VigilServer(tmp_path, f"sqlite:///{tmp_path / 'vigil.db'}").start()
    try:
        yield s
    finally:
        s.stop()
