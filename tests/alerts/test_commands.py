"""Remote commands: on the server (sh -c), and through a real agent's system.run[...,nowait]."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from vigil.alerts import commands

from tests.conftest import free_port, require, stop_process, vigil_bin, wait_port, wait_until

CONF = ("Server=127.0.0.1\nServerActive=\nListenIP=127.0.0.1\nListenPort={port}\nHostname=cmd-host\n"
        "LogType=console\nPidFile={pid}\nStartAgents=2\nTimeout=5\nAllowRoot=1\n")


def start_agent(kind: str, tmp: Path, extra: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    conf = tmp / f"{kind}.conf"
    conf.write_text(CONF.format(port=port, pid=tmp / f"{kind}.pid") + extra)
    cmd = [vigil_bin("vigil-agent"), "-c"] if kind == "vigil-agent" else [require("zabbix_agentd"), "-f", "-c"]
    proc = subprocess.Popen([*cmd, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, 15, proc)
    except Exception:
        stop_process(proc)
        raise
    return proc, port


@pytest.fixture(params=["vigil-agent", "zabbix_agentd"])
def agent_allowing(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[int]:
    proc, port = start_agent(request.param, tmp_path, "AllowKey=system.run[*]\n")
    try:
        yield port
    finally:
        stop_process(proc)


@pytest.fixture(params=["vigil-agent", "zabbix_agentd"])
def agent_refusing(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[int]:
    proc, port = start_agent(request.param, tmp_path, "")
    try:
        yield port
    finally:
        stop_process(proc)


def test_server_command_output_and_exit_code() -> None:
    r = commands.run_on_server("echo out; echo err >&2")
    assert r.ok and r.exit_code == 0 and r.output == "out\nerr" and r.error == ""
    r = commands.run_on_server("echo failing; exit 3")
    assert not r.ok and r.exit_code == 3 and r.error == "exit code 3: failing"


def test_server_command_times_out_and_is_killed(tmp_path: Path) -> None:
    marker = tmp_path / "late"
    r = commands.run_on_server(f"sleep 5; touch {marker}", timeout=0.5)
    assert not r.ok and "timed out after 0.5 s" in r.error
    assert not marker.exists()


def test_empty_command_is_refused() -> None:
    assert "empty" in commands.run_on_server("  ").error
    assert "empty" in commands.run_on_agent("127.0.0.1", 1, "").error


def test_key_quoting() -> None:
    assert commands.system_run_key('echo "a,b]"') == 'system.run["echo \\"a,b]\\"",nowait]'
    assert commands.system_run_key("ls", nowait=False) == 'system.run["ls"]'
    with pytest.raises(ValueError, match="backslash"):
        commands.system_run_key("echo \\")


def test_agent_runs_the_command(agent_allowing: int, tmp_path: Path) -> None:
    out = tmp_path / "ran"
    r = commands.run_on_agent("127.0.0.1", agent_allowing, f'echo "hello, agent" > {out}')
    assert r.ok, r.error
    assert r.output == "1"  # nowait: the agent answers at once
    wait_until(lambda: out.exists() and out.read_text() == "hello, agent\n", 10, "the agent to run the command")


def test_agent_without_allowkey_refuses(agent_refusing: int, tmp_path: Path) -> None:
    out = tmp_path / "ran"
    r = commands.run_on_agent("127.0.0.1", agent_refusing, f"touch {out}")
    assert not r.ok
    assert "refused system.run" in r.error and "AllowKey=system.run[*]" in r.error
    assert not out.exists()


def test_no_agent_listening() -> None:
    r = commands.run_on_agent("127.0.0.1", free_port(), "true", timeout=2)
    assert not r.ok and "cannot reach the agent" in r.error


@pytest.mark.parametrize(("reply", "words"), [
    (b"HTTP/1.1 400 Bad Request\r\n\r\n", "sent a bad reply: not a ZBXD header"),
    (b"ZBXD\x01\x10\x00\x00\x00\x00\x00\x00\x00short", "sent a bad reply: the connection closed after 5 of 16"),
    (b"ZBXD\x03\x03\x00\x00\x00\x01\x00\x00\x00abc", "cannot decompress"),
])
def test_a_peer_that_is_no_agent(reply: bytes, words: str) -> None:
    import socket
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)

    def answer() -> None:
        conn, _ = srv.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(reply)

    th = threading.Thread(target=answer)
    th.start()
    try:
        r = commands.run_on_agent("127.0.0.1", srv.getsockname()[1], "true", timeout=5)
    finally:
        th.join(10)
        srv.close()
    assert not r.ok and words in r.error
