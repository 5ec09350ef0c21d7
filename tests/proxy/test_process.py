"""The process's own bits: the pid file refuses a second proxy and replaces a stale one; a bad
LogFile or PidFile stops `vigil proxy` with a message naming the setting."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from vigil.proxy.process import write_pid

from tests.conftest import vigil_bin


def test_pid_file_of_a_running_process_is_refused(tmp_path: Path) -> None:
    pid = tmp_path / "p.pid"
    child = subprocess.Popen(["sleep", "30"])
    try:
        pid.write_text(f"{child.pid}\n")
        with pytest.raises(RuntimeError, match=f"process {child.pid} is running"):
            write_pid(str(pid))
    finally:
        child.kill()
        child.wait()
    write_pid(str(pid))  # now stale: replaced
    assert pid.read_text() == f"{os.getpid()}\n"


@pytest.mark.parametrize("line, message", [
    ("PidFile=/proc/none/p.pid", "PidFile /proc/none/p.pid: No such file or directory"),
    ("LogType=file\nLogFile=/proc/none/p.log", "LogFile /proc/none/p.log: No such file or directory"),
])
def test_bad_pid_or_log_file_is_named(tmp_path: Path, line: str, message: str) -> None:
    conf = tmp_path / "p.conf"
    base = f"Server=127.0.0.1:1\nDBName={tmp_path / 'p.db'}\nPidFile={tmp_path / 'p.pid'}\n"
    if "LogType" not in line:
        base += "LogType=console\n"
    conf.write_text(base.replace(f"PidFile={tmp_path / 'p.pid'}\n", "") + line + "\n"
                    + ("" if "PidFile" in line else f"PidFile={tmp_path / 'p.pid'}\n"))
    r = subprocess.run([vigil_bin("vigil"), "proxy", "-c", str(conf)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and message in r.stderr, r.stderr
