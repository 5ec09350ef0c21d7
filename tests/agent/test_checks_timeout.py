"""Timeout holds for every key: a check that blocks (a FIFO nobody writes to, a server that drips its
answer) answers ZBX_NOTSUPPORTED within the agent's Timeout, and frees the passive worker and the
active items. The real zabbix_agentd 6.0.14 never answers vfs.file.contents on such a FIFO (its
listener stays blocked in open(2) for good), so the wording is that of its own deadline for a check,
"Timeout while waiting for data."."""

from __future__ import annotations

import errno
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from vigil.agent.active import ActiveSettings, ActiveWorker
from vigil.agent.checks import CALLER, CheckContext, Checks, NotSupported
from vigil.agent.checks.runner import CheckRunner, CheckTimeout
from vigil.agent.passive import PassiveListener
from vigil.agent.protocol.messages import ActiveCheck

from tests.conftest import free_port, wait_until, zabbix_get

TIMEOUT_TEXT = "Timeout while waiting for data."


class Fifos:
    """FIFOs made for a test; at the end each is opened for writing and closed, which lets every
    check still blocked on it return."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.made: list[Path] = []
        self.held: list[int] = []

    def make(self, name: str) -> Path:
        p = self.root / name
        os.mkfifo(p)
        self.made.append(p)
        return p

    def reader_waiting(self, p: Path) -> bool:
        """True once something has the FIFO open for reading (it is then blocked in read())."""
        try:
            fd = os.open(p, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as e:
            if e.errno == errno.ENXIO:
                return False
            raise
        self.held.append(fd)
        return True

    def release(self) -> None:
        for fd in self.held:
            os.close(fd)
        self.held.clear()
        for p in self.made:
            # each open+close gives the readers blocked in open() a writer and then EOF
            for _ in range(100):
                if not self.reader_waiting(p):
                    break
                os.close(self.held.pop())
                time.sleep(0.01)


@pytest.fixture
def fifos(tmp_path: Path) -> Iterator[Fifos]:
    f = Fifos(tmp_path)
    yield f
    f.release()


def _ctx(timeout: float = 1.0) -> CheckContext:
    return CheckContext(hostname="timeout-test", timeout=timeout)


def _in_thread(func: Callable[[], object], limit: float = 15.0) -> object:
    """func()'s result or exception, failing if it has not returned after `limit` seconds (it hangs)."""
    out: list[object] = []

    def run() -> None:
        try:
            out.append(func())
        except Exception as e:
            out.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(limit)
    assert out, f"the call did not return within {limit} s: it hangs"
    return out[0]


def test_fifo_read_answers_timeout_and_same_key_does_not_pile_up(fifos: Fifos) -> None:
    checks = Checks(_ctx())
    fifo = fifos.make("fifo")
    key = f"vfs.file.contents[{fifo}]"
    r = _in_thread(lambda: checks.get(key))
    assert isinstance(r, NotSupported) and str(r) == TIMEOUT_TEXT
    # the first evaluation is still blocked: the same key answers at once instead of another thread
    threads = checks.runner.threads
    r = _in_thread(lambda: checks.get(key))
    assert isinstance(r, NotSupported) and str(r) == TIMEOUT_TEXT
    assert checks.runner.abandoned == 1 and checks.runner.threads == threads
    assert checks.get("agent.ping") == "1"
    assert checks.get(f"vfs.file.exists[{fifo},fifo]") == "1"
    fifos.release()
    wait_until(lambda: checks.runner.abandoned == 0, 10, "the abandoned check to return")


def test_regexp_on_a_fifo_times_out(fifos: Fifos) -> None:
    checks = Checks(_ctx())
    fifo = fifos.make("fifo")
    r = _in_thread(lambda: checks.get(f"vfs.file.regexp[{fifo},a]"))
    assert isinstance(r, NotSupported) and str(r) == TIMEOUT_TEXT


def test_runner_bounds_threads_and_drops_checks_that_waited_past_their_deadline() -> None:
    runner = CheckRunner(max_threads=2)
    gate = threading.Event()
    for name in ("a", "b"):
        with pytest.raises(CheckTimeout):
            runner.run(name, gate.wait, 0.2)
    assert runner.abandoned == 2 and runner.threads == 2
    ran = threading.Event()
    with pytest.raises(CheckTimeout):  # no thread is free: it never runs
        runner.run("c", ran.set, 0.2)
    gate.set()
    wait_until(lambda: runner.abandoned == 0, 10, "the abandoned checks to return")
    assert runner.run("d", lambda: 42, 5) == 42
    assert not ran.is_set()  # the dropped check was not run late either
    assert runner.threads <= 2


def test_runner_hands_back_exceptions_and_the_callers_context() -> None:
    runner = CheckRunner()
    CALLER.set("passive check from 127.0.0.9")
    assert runner.run("who", CALLER.get, 5) == "passive check from 127.0.0.9"
    with pytest.raises(ZeroDivisionError):
        runner.run("bad", lambda: 1 / 0, 5)


def test_passive_workers_stay_available_while_checks_hang(fifos: Fifos) -> None:
    checks = Checks(_ctx())
    lst = PassiveListener(checks.get, server=("127.0.0.1",), listen_ips=("127.0.0.1",), port=free_port(),
                          workers=2, timeout=1.0)
    lst.start()
    try:
        # more hanging requests than workers: each answers the timeout and frees its worker
        for i in range(3):
            fifo = fifos.make(f"f{i}")
            assert zabbix_get(lst.port, f"vfs.file.contents[{fifo}]") == f"ZBX_NOTSUPPORTED: {TIMEOUT_TEXT}"
        # and while one hangs right now, another request is answered
        fifo = fifos.make("now")
        answers: list[str] = []
        t = threading.Thread(target=lambda: answers.append(zabbix_get(lst.port, f"vfs.file.contents[{fifo}]")))
        t.start()
        wait_until(lambda: fifos.reader_waiting(fifo), 10, "the check to block on the FIFO")
        assert zabbix_get(lst.port, "agent.ping") == "1"
        t.join(15)
        assert answers == [f"ZBX_NOTSUPPORTED: {TIMEOUT_TEXT}"]
    finally:
        lst.stop()


def test_active_items_keep_running_while_one_hangs(fifos: Fifos) -> None:
    fifo = fifos.make("fifo")
    settings = ActiveSettings(servers=(("127.0.0.1", 1),), hostnames=("h",), refresh_active_checks=3600,
                              buffer_send=1, timeout=1, retry_max=1)
    w = ActiveWorker(settings, ("127.0.0.1", 1), "h", Checks(_ctx()))
    w.apply([ActiveCheck(f"vfs.file.contents[{fifo}]", 1), ActiveCheck("agent.ping", 1)], time.monotonic())
    w.next_refresh = time.monotonic() + 3600
    stop = threading.Event()
    t = threading.Thread(target=w.collector_loop, args=(stop,), daemon=True)
    t.start()
    try:
        def pings() -> int:
            return sum(1 for v in w.buffer.batch(1000) if v.key == "agent.ping")
        wait_until(lambda: pings() >= 4, 30, "agent.ping values while the FIFO item hangs")
        hung = [v for v in w.buffer.batch(1000) if v.key.startswith("vfs.file.contents")]
        assert hung and hung[0].state == 1 and hung[0].value == TIMEOUT_TEXT
    finally:
        stop.set()
        fifos.release()
        t.join(10)


class Drip:
    """A loopback server that accepts and sends `prefix`, then one byte every 0.2 s, forever."""

    def __init__(self, prefix: bytes, drip: bytes = b"x") -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.prefix, self.drip = prefix, drip
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.sendall(self.prefix)
                while not self.stop.wait(0.2):
                    conn.sendall(self.drip)
            except OSError:
                pass

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.fixture
def drip() -> Iterator[Callable[..., Drip]]:
    made: list[Drip] = []

    def make(prefix: bytes, drip: bytes = b"x") -> Drip:
        made.append(Drip(prefix, drip))
        return made[-1]

    yield make
    for d in made:
        d.close()


def test_web_page_get_on_a_dripping_server_times_out(drip: Callable[..., Drip]) -> None:
    checks = Checks(_ctx())
    d = drip(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    r = _in_thread(lambda: checks.get(f"web.page.get[127.0.0.1,/,{d.port}]"))
    assert isinstance(r, NotSupported) and "Timeout" in str(r), r
    wait_until(lambda: checks.runner.abandoned == 0, 10, "web.page.get to give up by itself")


def test_tcp_service_on_a_dripping_server_answers_0_by_itself(drip: Callable[..., Drip]) -> None:
    checks = Checks(_ctx())
    d = drip(b"", b"S")  # never a whole greeting line
    r = _in_thread(lambda: checks.get(f"net.tcp.service[smtp,127.0.0.1,{d.port}]"))
    assert r == "0"
    assert checks.runner.abandoned == 0
    silent = drip(b"", b"")
    assert _in_thread(lambda: checks.get(f"net.tcp.service.perf[ssh,127.0.0.1,{silent.port}]")) == "0.000000"
