"""The security options of zabbix_agentd.conf are implemented or refused, never accepted and ignored.

TLS PSK is refused at start (certificates: tests/agent/test_tls.py); User/AllowRoot drop root as zabbix_agentd
does (we run as root here); LogRemoteCommands logs every system.run with its caller; LogFileSize
rotates the log into one `.old`; peers refused by Server are logged at a bounded rate. The real
zabbix_agentd answers the same questions where it can.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from vigil.agent.conf import ConfError, load
from vigil.agent.log import MB, LogFileHandler, RateLimit

from tests.conftest import free_port, require, stop_process, wait_port, wait_until, zabbix_get

VIGIL_AGENT = str(Path(sys.executable).parent / "vigil-agent")


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    wait_until(cond, timeout, what)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory the unprivileged agent user can write (pytest's tmp_path is root's only)."""
    d = Path(tempfile.mkdtemp(prefix="vigil-sec-"))
    d.chmod(0o777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def start() -> Iterator[Callable[..., tuple[int, subprocess.Popen[str]]]]:
    procs: list[subprocess.Popen[str]] = []

    def run(d: Path, extra: str, program: str = "vigil", wait: bool = True) -> tuple[int, subprocess.Popen[str]]:
        port = free_port()
        conf = d / f"{program}-{port}.conf"
        conf.write_text(f"Server=127.0.0.1\nServerActive=\nListenIP=127.0.0.1\nListenPort={port}\nHostname=h\n"
                        f"StartAgents=2\n{extra}")
        cmd = [VIGIL_AGENT, "-c"] if program == "vigil" else [require("zabbix_agentd"), "-f", "-c"]
        proc = subprocess.Popen([*cmd, str(conf)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(proc)
        if wait:
            wait_port(port, 15, proc)
        return port, proc

    yield run
    for p in procs:
        stop_process(p)


# --- TLS: certificates work (tests/agent/test_tls.py); PSK and TLS 1.3 ciphers are refused at start ----

TLS_REFUSED = [
    ("TLSConnect=psk", "TLSConnect=psk: PSK is not supported by Vigil"),
    ("TLSAccept=unencrypted,psk", "TLSAccept=unencrypted,psk: PSK is not supported by Vigil"),
    ("TLSConnect=", 'invalid value of "TLSConnect" parameter'),
    ("TLSPSKIdentity=agent1", "TLSPSKIdentity: PSK is not supported by Vigil"),
    ("TLSPSKFile=/etc/zabbix/agent.psk", "TLSPSKFile: PSK is not supported by Vigil"),
    ("TLSCipherAll13=TLS_AES_128_GCM_SHA256", "TLSCipherAll13: Python's ssl module cannot set TLS 1.3"),
    ("TLSCertFile=/etc/zabbix/agent.crt", 'parameter "TLSCertFile" is defined, but "TLSKeyFile" is not defined'),
    ("TLSCAFile=/etc/zabbix/ca.crt", 'parameter "TLSCAFile" is defined, but "TLSCertFile" is not defined'),
    ("TLSServerCertSubject=CN=server", 'parameter "TLSServerCertSubject" is defined, but "TLSCertFile" is not'),
]


@pytest.mark.parametrize("line,advice", TLS_REFUSED, ids=[t[0] for t in TLS_REFUSED])
def test_tls_options_are_refused_at_start(tmp_path: Path, line: str, advice: str) -> None:
    conf = tmp_path / "agent.conf"
    conf.write_text(f"Server=127.0.0.1\nListenPort={free_port()}\nLogType=console\nAllowRoot=1\n{line}\n")
    with pytest.raises(ConfError) as e:
        load(conf)
    assert str(e.value).startswith(f"{conf}:5: {advice}")
    r = subprocess.run([VIGIL_AGENT, "-c", str(conf)], capture_output=True, text=True, timeout=20)
    assert r.returncode == 1 and f"{conf}:5: {advice}" in r.stderr


def test_unencrypted_is_accepted(tmp_path: Path) -> None:
    conf = tmp_path / "agent.conf"
    conf.write_text("Server=127.0.0.1\nTLSConnect=unencrypted\nTLSAccept=unencrypted\n")
    load(conf)


# --- User / AllowRoot --------------------------------------------------------------------------

def _uids(proc: subprocess.Popen[str]) -> set[int]:
    p = psutil.Process(proc.pid)
    return {p.uids().real, p.uids().effective, p.uids().saved}


@pytest.mark.skipif(os.getuid() != 0, reason="dropping root needs root")
def test_started_as_root_the_agent_becomes_the_zabbix_user(start, shared_dir: Path) -> None:
    zabbix = pwd.getpwnam("zabbix")
    port, proc = start(shared_dir, f"LogType=console\nPidFile={shared_dir}/agent.pid\n")
    assert _uids(proc) == {zabbix.pw_uid}
    assert psutil.Process(proc.pid).gids().effective == zabbix.pw_gid
    assert (shared_dir / "agent.pid").stat().st_uid == zabbix.pw_uid  # made after the switch, as zabbix_agentd
    assert zabbix_get(port, "agent.ping") == "1"
    assert zabbix_get(port, "vfs.file.exists[/etc/shadow]") == "1"
    assert zabbix_get(port, "vfs.file.contents[/etc/shadow]").startswith("ZBX_NOTSUPPORTED: ")  # root's file


@pytest.mark.skipif(os.getuid() != 0, reason="dropping root needs root")
def test_user_option_and_allow_root(start, shared_dir: Path) -> None:
    _, proc = start(shared_dir, "LogType=console\nUser=nobody\n")
    assert _uids(proc) == {pwd.getpwnam("nobody").pw_uid}
    _, proc = start(shared_dir, "LogType=console\nAllowRoot=1\nUser=nobody\n")
    assert _uids(proc) == {0}


@pytest.mark.skipif(os.getuid() != 0, reason="dropping root needs root")
@pytest.mark.parametrize("user,first", [("nosuchuser", "user nosuchuser does not exist"),
                                        ("root", "User=root contradicts AllowRoot=0")])
def test_a_user_that_cannot_be_used_is_refused_as_zabbix_agentd(start, shared_dir: Path, user: str,
                                                                first: str) -> None:
    outputs = []
    for program in ("vigil", "zabbix"):
        _, proc = start(shared_dir, f"LogType=console\nUser={user}\n", program, wait=False)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 1, (program, err)
        outputs.append([line.split("]: ", 1)[1] for line in err.splitlines() if "]: " in line][:2])
    assert outputs[0] == outputs[1] == [first, "cannot run as root!"]


# --- LogRemoteCommands --------------------------------------------------------------------------

def test_log_remote_commands_logs_each_command_with_its_caller(start, tmp_path: Path) -> None:
    logs = {}
    for program in ("vigil", "zabbix"):
        log = tmp_path / f"{program}.log"
        port, _ = start(tmp_path, f"LogType=file\nLogFile={log}\nAllowRoot=1\nAllowKey=system.run[*]\n"
                                  "LogRemoteCommands=1\n", program)
        assert zabbix_get(port, "system.run[echo hi]") == "hi"
        wait_for(lambda log=log: "Executing command 'echo hi'" in log.read_text(), f"{program} to log the command")
        logs[program] = log.read_text()
    line = next(x for x in logs["vigil"].splitlines() if "Executing command 'echo hi'" in x)
    assert "passive check from 127.0.0.1" in line


def test_without_log_remote_commands_nothing_is_logged(start, tmp_path: Path) -> None:
    log = tmp_path / "vigil.log"
    port, proc = start(tmp_path, f"LogType=file\nLogFile={log}\nAllowRoot=1\nAllowKey=system.run[*]\n")
    assert zabbix_get(port, "system.run[echo hi]") == "hi"
    proc.terminate()
    proc.wait(10)
    assert "Executing command" not in log.read_text()


# --- LogFileSize --------------------------------------------------------------------------------

def test_log_file_over_log_file_size_becomes_old_as_zabbix_agentd(start, tmp_path: Path) -> None:
    """A log already past LogFileSize=1 is moved to `.old` at the first line, by both agents."""
    for program in ("vigil", "zabbix"):
        log = tmp_path / f"{program}.log"
        filler = ("x" * 99 + "\n") * 11000  # 1.1 MB
        log.write_text(filler)
        (tmp_path / f"{program}.log.old").write_text("older\n")
        start(tmp_path, f"LogType=file\nLogFile={log}\nLogFileSize=1\nAllowRoot=1\n", program)
        assert (tmp_path / f"{program}.log.old").read_text() == filler, program
        wait_for(lambda log=log: "Starting" in log.read_text(), f"{program}'s new log")
        assert log.stat().st_size < 1 * MB


def test_rotation_keeps_one_old_file_and_loses_no_line(tmp_path: Path) -> None:
    path = tmp_path / "agent.log"
    h = LogFileHandler(str(path), 1)
    import logging

    lg = logging.getLogger("vigil.test.rotation")
    lg.propagate = False
    lg.addHandler(h)
    try:
        lines = [f"line {i:06d} " + "y" * 100 for i in range(25000)]  # ~2.8 MB: two rotations
        for line in lines:
            lg.warning(line)
    finally:
        lg.removeHandler(h)
        h.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["agent.log", "agent.log.old"]
    old = (tmp_path / "agent.log.old").read_text().splitlines()
    new = path.read_text().splitlines()
    assert old + new == lines[-(len(old) + len(new)):]  # the newest lines, in order, none lost between
    assert 1 * MB < (tmp_path / "agent.log.old").stat().st_size <= 1 * MB + 200


def test_log_file_size_zero_never_rotates(tmp_path: Path) -> None:
    path = tmp_path / "agent.log"
    path.write_text("z" * (2 * MB))
    h = LogFileHandler(str(path), 0)
    h.emit(__import__("logging").makeLogRecord({"msg": "one more"}))
    h.close()
    assert not (tmp_path / "agent.log.old").exists() and path.stat().st_size > 2 * MB


def test_log_moved_away_by_logrotate_is_reopened(tmp_path: Path) -> None:
    import logging

    path = tmp_path / "agent.log"
    h = LogFileHandler(str(path), 1)
    h.emit(logging.makeLogRecord({"msg": "before"}))
    path.rename(tmp_path / "agent.log.1")
    h.emit(logging.makeLogRecord({"msg": "after"}))
    h.close()
    assert path.read_text() == "after\n" and (tmp_path / "agent.log.1").read_text() == "before\n"


def test_log_file_size_bounds_as_zabbix_agentd(tmp_path: Path) -> None:
    for value, ok in (("0", True), ("1024", True), ("1025", False), ("-1", False)):
        conf = tmp_path / "agent.conf"
        conf.write_text(f"Server=127.0.0.1\nLogType=console\nAllowRoot=1\nLogFileSize={value}\n")
        z = subprocess.run([require("zabbix_agentd"), "-c", str(conf), "-t", "agent.ping"], capture_output=True,
                           text=True, timeout=20)
        assert (z.returncode == 0) == ok
        try:
            load(conf)
            ours = True
        except ConfError:
            ours = False
        assert ours == ok, value


# --- refused peers are logged at a bounded rate -------------------------------------------------

def test_rate_limit_counts_what_it_suppressed() -> None:
    now = [0.0]
    rl = RateLimit(60.0, max_keys=2, clock=lambda: now[0])
    assert rl.check("10.0.0.1") == (True, 0, "10.0.0.1")
    for _ in range(5):
        assert rl.check("10.0.0.1")[0] is False
    assert rl.check("10.0.0.2") == (True, 0, "10.0.0.2")
    assert rl.check("10.0.0.3") == (True, 0, RateLimit.OTHERS)  # past max_keys: one shared key
    assert rl.check("10.0.0.4")[0] is False
    now[0] = 61.0
    assert rl.check("10.0.0.1") == (True, 5, "10.0.0.1")
    assert len(rl.entries) <= 3


def _knock(port: int, source: str) -> None:
    """A connect scan's knock from `source`: connect, close our side (as nmap -sT does), and wait
    until the agent closes the connection unanswered. (A peer that stays silent is handed to the
    agent by the kernel only after a second: the listener uses TCP_DEFER_ACCEPT.)"""
    with socket.socket() as s:
        s.bind((source, 0))
        s.settimeout(10)
        s.connect(("127.0.0.1", port))
        s.shutdown(socket.SHUT_WR)
        assert s.recv(1) == b""


def test_a_port_scan_cannot_fill_the_log(start, tmp_path: Path) -> None:
    log = tmp_path / "vigil.log"
    port = free_port()
    conf = tmp_path / "scan.conf"
    conf.write_text(f"Server=127.0.0.2\nListenIP=127.0.0.1\nListenPort={port}\nLogType=file\nLogFile={log}\n"
                    "AllowRoot=1\nStartAgents=2\n")
    proc = subprocess.Popen([VIGIL_AGENT, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, 15, proc)
        for _ in range(300):
            _knock(port, "127.0.0.1")
        _knock(port, "127.0.0.3")
        wait_for(lambda: 'connection from "127.0.0.3" rejected' in log.read_text(), "the second peer's line")
        text = log.read_text()
    finally:
        stop_process(proc)
    rejected = [x for x in text.splitlines() if "rejected, allowed hosts" in x]
    # wait_port's own probe and 300 knocks from 127.0.0.1: one line; 127.0.0.3: one line
    assert len(rejected) == 2, rejected
