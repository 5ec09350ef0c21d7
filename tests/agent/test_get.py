"""vigil-get against the real zabbix_agentd, compared line by line with the real zabbix_get."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port, require

VIGIL_GET = str(Path(sys.executable).parent / "vigil-get")


def run(program: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([program, *args], capture_output=True, text=True, timeout=40)


def both(*args: str) -> tuple[subprocess.CompletedProcess[str], subprocess.CompletedProcess[str]]:
    return run(VIGIL_GET, *args), run(require("zabbix_get"), *args)


def shape(text: str) -> str:
    """Output with the program name and PID made neutral, so the two tools' messages compare."""
    return re.sub(r"^(vigil-get|zabbix_get) \[\d+\]", "TOOL [PID]", text, flags=re.M)


def test_agent_ping_and_not_supported_same_as_zabbix_get(zabbix_agentd: int) -> None:
    for key in ("agent.ping", "agent.version", "no.such.key", "agent.ping[x]", 'vfs.fs.size["/,free]'):
        ours, theirs = both("-s", "127.0.0.1", "-p", str(zabbix_agentd), "-k", key)
        assert (ours.returncode, ours.stdout, ours.stderr) == (theirs.returncode, theirs.stdout, theirs.stderr)
    ours = run(VIGIL_GET, "-s", "127.0.0.1", "-p", str(zabbix_agentd), "-k", "no.such.key")
    assert ours.stdout == "ZBX_NOTSUPPORTED: Unsupported item key.\n" and ours.returncode == 0


@pytest.mark.parametrize("key,tolerance", [("system.uptime", 5), ("vfs.fs.size[/,free]", 200 * 2**20)])
def test_numbers_close_to_zabbix_get(zabbix_agentd: int, key: str, tolerance: int) -> None:
    ours, theirs = both("-s", "127.0.0.1", "-p", str(zabbix_agentd), "-k", key, "-t", "10")
    assert ours.returncode == 0 == theirs.returncode
    assert abs(int(ours.stdout) - int(theirs.stdout)) <= tolerance


def test_source_address(zabbix_agentd: int) -> None:
    r = run(VIGIL_GET, "-s", "127.0.0.1", "-p", str(zabbix_agentd), "-I", "127.0.0.1", "-k", "agent.ping")
    assert (r.returncode, r.stdout) == (0, "1\n")


def test_long_options(zabbix_agentd: int) -> None:
    r = run(VIGIL_GET, "--host", "127.0.0.1", "--port", str(zabbix_agentd), "--key", "agent.ping",
            "--timeout", "5")
    assert (r.returncode, r.stdout) == (0, "1\n")


@pytest.mark.parametrize("args", [
    ("-s", "127.0.0.1", "-p", "{closed}", "-k", "agent.ping"),
    ("-s", "nosuchhost.invalid", "-k", "agent.ping"),
    ("-s", "127.0.0.1", "-k", "agent.ping", "-t", "31"),
    ("-s", "127.0.0.1", "-k", "agent.ping", "-t", "0"),
    ("-s", "127.0.0.1", "-p", "{closed}", "-k", "a", "-I", "10.9.9.9"),
], ids=["connection refused", "unresolvable", "timeout 31", "timeout 0", "bad source address"])
def test_errors_same_shape_as_zabbix_get(args: tuple[str, ...]) -> None:
    closed = str(free_port())
    ours, theirs = both(*(a.replace("{closed}", closed) for a in args))
    assert ours.returncode == theirs.returncode == 1
    assert ours.stdout == theirs.stdout == ""
    assert shape(ours.stderr) == shape(theirs.stderr)


def test_bad_port_number() -> None:
    r = run(VIGIL_GET, "-s", "127.0.0.1", "-p", "99999", "-k", "agent.ping")
    assert r.returncode == 1 and "Invalid port number '99999'" in r.stderr


def test_help_and_version() -> None:
    h = run(VIGIL_GET, "-h")
    assert h.returncode == 0 and "--source-address" in h.stdout and "1-30" in h.stdout
    v = run(VIGIL_GET, "-V")
    assert v.returncode == 0 and "6.0.14" in v.stdout


@pytest.fixture
def fake_agent() -> Iterator[tuple[int, list[str]]]:
    """A misbehaving agent: each connection gets the next behaviour queued in the list."""
    behaviours: list[str] = []
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    srv.settimeout(0.2)
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                c, _ = srv.accept()
            except OSError:
                continue
            how = behaviours.pop(0) if behaviours else "close"
            with c:
                c.settimeout(5)
                try:
                    c.recv(100)
                    if how == "garbage":
                        c.sendall(b"garbage that is long enough")
                    elif how == "silent":
                        c.recv(100)  # until the client gives up and closes
                    elif how == "truncated":
                        c.sendall(b"ZBXD\x01\x10\x00\x00\x00\x00\x00\x00\x00only")
                except OSError:
                    pass

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[1], behaviours
    done.set()
    t.join(5)
    srv.close()


@pytest.mark.parametrize("behaviour,compare,expected", [
    ("close", True, "Check access restrictions in Zabbix agent configuration"),
    ("silent", True, "Timeout while executing operation"),
    ("garbage", False, "missing header"),
    ("truncated", False, "truncated body"),
])
def test_bad_replies(fake_agent: tuple[int, list[str]], behaviour: str, compare: bool, expected: str) -> None:
    port, behaviours = fake_agent
    args = ("-s", "127.0.0.1", "-p", str(port), "-k", "agent.ping", "-t", "1")
    behaviours[:] = [behaviour, behaviour]
    ours = run(VIGIL_GET, *args)
    assert ours.returncode == 1 and ours.stdout == "" and expected in ours.stderr
    if compare:
        theirs = run(require("zabbix_get"), *args)
        assert shape(ours.stderr) == shape(theirs.stderr)
