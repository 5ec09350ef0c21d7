"""vigil-agent as a process: started from a config file, asked by the real zabbix_get, stopped by SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port, require, stop_process, wait_port, wait_until, zabbix_get

VIGIL_AGENT = str(Path(sys.executable).parent / "vigil-agent")


def agent_conf(tmp_path: Path, port: int, extra: str = "") -> Path:
    conf = tmp_path / "vigil_agentd.conf"
    conf.write_text(
        f"Server=127.0.0.1\nServerActive=\nListenIP=127.0.0.1\nListenPort={port}\nHostname=vigil-test\n"
        f"LogType=file\nLogFile={tmp_path}/agent.log\nPidFile={tmp_path}/agent.pid\nStartAgents=2\nAllowRoot=1\n"
        'UserParameter=up.join[*],echo "$1+$2"\n' + extra
    )
    return conf


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Callable[..., tuple[int, subprocess.Popen[bytes]]]]:
    procs: list[subprocess.Popen[bytes]] = []

    def start(extra: str = "") -> tuple[int, subprocess.Popen[bytes]]:
        port = free_port()
        proc = subprocess.Popen([VIGIL_AGENT, "-f", "-c", str(agent_conf(tmp_path, port, extra))],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        procs.append(proc)
        wait_port(port, proc=proc)
        return port, proc

    yield start
    for p in procs:
        stop_process(p)


def log_text(tmp_path: Path) -> str:
    return (tmp_path / "agent.log").read_text()


def test_answers_zabbix_get_and_stops_cleanly(agent, tmp_path: Path) -> None:
    port, proc = agent()
    pid_file = tmp_path / "agent.pid"
    assert pid_file.read_text().strip() == str(proc.pid)
    assert zabbix_get(port, "agent.ping") == "1"
    assert zabbix_get(port, "agent.version") == "6.0.14"
    assert zabbix_get(port, "agent.hostname") == "vigil-test"
    assert zabbix_get(port, "up.join[a,b]") == "a+b"
    assert zabbix_get(port, "no.such.key") == "ZBX_NOTSUPPORTED: Unsupported item key."
    assert zabbix_get(port, "system.run[echo hi]") == "ZBX_NOTSUPPORTED: Unsupported item key."
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    assert not pid_file.exists()
    log = log_text(tmp_path)
    assert "Starting Vigil Agent [vigil-test]" in log and "Got signal [SIGTERM]" in log and "stopped" in log


def test_sigint_also_stops(agent, tmp_path: Path) -> None:
    port, proc = agent()
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 0 and not (tmp_path / "agent.pid").exists()


def test_allow_key_and_alias(agent) -> None:
    port, _ = agent("AllowKey=system.run[echo *]\nAlias=ping:agent.ping\nDenyKey=agent.version\n")
    assert zabbix_get(port, "system.run[echo hi]") == "hi"
    assert zabbix_get(port, "system.run[id]") == "ZBX_NOTSUPPORTED: Unsupported item key."
    assert zabbix_get(port, "ping") == "1"
    assert zabbix_get(port, "agent.version") == "ZBX_NOTSUPPORTED: Unsupported item key."


def test_hostname_from_hostname_item(agent, tmp_path: Path) -> None:
    port, _ = agent("Hostname=\nHostnameItem=up.join[host,name]\n")
    assert zabbix_get(port, "agent.hostname") == "host+name"


def frame(body: bytes, length: int | None = None) -> bytes:
    return b"ZBXD\x01" + struct.pack("<II", len(body) if length is None else length, 0) + body


def send_raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        s.sendall(data)
        try:
            s.shutdown(socket.SHUT_WR)
            return s.recv(100)
        except OSError:
            return b""


def test_bad_requests_then_still_answers(agent, tmp_path: Path) -> None:
    port, _ = agent()
    for data in (b"agent.ping", b"ZBXD\x01\x0a", frame(b"agent.pi", 10), frame(b"x", 0x7FFFFFFF),
                 frame(b"agent.ping[" + b"a" * 70000 + b"]")):
        assert send_raw(port, data) == b""
        assert zabbix_get(port, "agent.ping") == "1"
    assert zabbix_get(port, 'vfs.fs.size["/,free]').startswith("ZBX_NOTSUPPORTED: Invalid item key format")
    assert zabbix_get(port, "agent.ping") == "1"
    assert "Message from 127.0.0.1 is missing header" in log_text(tmp_path)


def test_rejected_peer_is_logged(agent, tmp_path: Path) -> None:
    port, _ = agent("Server=127.0.0.2\n")
    out = zabbix_get(port, "agent.ping")
    assert "Check access restrictions" in out and "1" not in out.split(":")[-1]
    wait_until(lambda: "rejected" in log_text(tmp_path), 5, "the rejected peer in the agent's log")
    assert 'connection from "127.0.0.1" rejected, allowed hosts: "127.0.0.2"' in log_text(tmp_path)


def test_config_typo_exits_1_naming_file_and_line(tmp_path: Path) -> None:
    conf = agent_conf(tmp_path, free_port(), "Timout=3\n")
    r = subprocess.run([VIGIL_AGENT, "-c", str(conf)], capture_output=True, text=True, timeout=20)
    assert r.returncode == 1
    assert f"{conf}:12: unknown parameter 'Timout'" in r.stderr
    assert r.stderr.startswith("vigil-agent [")


def test_missing_config_and_nothing_to_do(tmp_path: Path) -> None:
    r = subprocess.run([VIGIL_AGENT, "-c", str(tmp_path / "none.conf")], capture_output=True, text=True,
                       timeout=20)
    assert r.returncode == 1 and "cannot open config file" in r.stderr
    conf = tmp_path / "idle.conf"
    conf.write_text("Server=\nServerActive=\nLogType=console\nAllowRoot=1\n")
    r = subprocess.run([VIGIL_AGENT, "-c", str(conf)], capture_output=True, text=True, timeout=20)
    assert r.returncode == 1 and "nothing to do" in r.stderr


def test_port_in_use_exits_1(agent, tmp_path: Path) -> None:
    port, _ = agent()
    conf = tmp_path / "second.conf"
    conf.write_text(f"Server=127.0.0.1\nAllowRoot=1\nListenIP=127.0.0.1\nListenPort={port}\nHostname=x\nLogType=console\n")
    r = subprocess.run([VIGIL_AGENT, "-c", str(conf)], capture_output=True, text=True, timeout=20)
    assert r.returncode == 1 and f"cannot listen on port {port}" in r.stderr


def test_running_pid_file_refuses_second_start(agent, tmp_path: Path) -> None:
    port, proc = agent()
    conf = tmp_path / "second.conf"
    conf.write_text(f"Server=127.0.0.1\nAllowRoot=1\nListenPort={free_port()}\nLogType=console\nPidFile={tmp_path}/agent.pid\n")
    r = subprocess.run([VIGIL_AGENT, "-c", str(conf)], capture_output=True, text=True, timeout=20)
    assert r.returncode == 1 and f"already running with PID {proc.pid}" in r.stderr


def _zabbix_t(conf: Path, key: str) -> str:
    r = subprocess.run([require("zabbix_agentd"), "-c", str(conf), "-t", key], capture_output=True, text=True,
                       timeout=20)
    return r.stdout


@pytest.mark.parametrize("key", ["agent.ping", "agent.version", "no.such.key", "agent.ping[x]", "up.join[a,b]"])
def test_test_option_prints_like_zabbix_agentd(tmp_path: Path, key: str) -> None:
    conf = agent_conf(tmp_path, free_port(), "AllowRoot=1\n")
    r = subprocess.run([VIGIL_AGENT, "-c", str(conf), "-t", key], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0
    assert r.stdout == _zabbix_t(conf, key)


def test_print_option_lists_keys(tmp_path: Path) -> None:
    conf = agent_conf(tmp_path, free_port())
    r = subprocess.run([VIGIL_AGENT, "-c", str(conf), "-p"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0
    lines = r.stdout.splitlines()
    assert f"{'agent.ping':<45} [u|1]" in lines
    assert f"{'agent.hostname':<45} [s|vigil-test]" in lines
    assert any(line.startswith("up.join ") for line in lines)


def test_help_version_and_runtime_control(tmp_path: Path) -> None:
    h = subprocess.run([VIGIL_AGENT, "-h"], capture_output=True, text=True, timeout=20)
    assert h.returncode == 0 and "-t" in h.stdout and "--config" in h.stdout
    v = subprocess.run([VIGIL_AGENT, "-V"], capture_output=True, text=True, timeout=20)
    assert v.returncode == 0 and "6.0.14" in v.stdout
    conf = agent_conf(tmp_path, free_port())
    r = subprocess.run([VIGIL_AGENT, "-c", str(conf), "-R", "userparameter_reload"], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 1 and "not supported" in r.stderr


def test_active_mode_starts_beside_passive(agent, tmp_path: Path) -> None:
    # nothing listens on the active port: the agent must keep serving passive checks regardless
    port, proc = agent(f"ServerActive=127.0.0.1:{free_port()}\nRefreshActiveChecks=60\n")
    assert zabbix_get(port, "agent.ping") == "1"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0
    assert os.path.exists(tmp_path / "agent.log")
