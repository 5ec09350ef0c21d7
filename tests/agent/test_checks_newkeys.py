"""The keys zabbix_agentd 6.0.14 cannot be compared with on this machine: proc.get (it lacks the key)
and sensor[] (this kernel has no hwmon). The others are compared with it in tests/e2e/test_agent_keys.py."""

from __future__ import annotations

import json
import os
import pwd
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from vigil.agent.checks import CheckContext, Checks, NotSupported, software

CHILD = r"""
import sys, threading
with open("/proc/self/comm", "w") as f:
    f.write("vigilprocget")
gate = threading.Event()
t = threading.Thread(target=gate.wait)
t.start()
print("ready", flush=True)
sys.stdin.readline()
gate.set()
"""


@pytest.fixture
def child() -> Iterator[subprocess.Popen[str]]:
    p = subprocess.Popen([sys.executable, "-c", CHILD, "marker-arg"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    yield p
    p.kill()
    p.wait()


@pytest.fixture
def checks() -> Checks:
    return Checks(CheckContext(hostname="x"))


def test_proc_get_process_mode(checks: Checks, child: subprocess.Popen[str]) -> None:
    rows = json.loads(checks.get("proc.get[vigilprocget]"))
    assert [r["pid"] for r in rows] == [child.pid]
    r = rows[0]
    assert list(r)[:8] == ["pid", "ppid", "name", "cmdline", "user", "group", "uid", "gid"]
    assert r["ppid"] == os.getpid() and r["name"] == "vigilprocget"
    assert r["cmdline"].endswith("marker-arg") and r["user"] == pwd.getpwuid(os.getuid()).pw_name
    assert r["threads"] == 2 and r["state"] in ("sleeping", "running")
    assert r["rss"] > 0 and r["vsize"] >= r["rss"] and 0 < r["pmem"] < 100
    assert r["size"] == r["data"] + r["exe"] + r["stk"]
    raw = checks.get("proc.get[vigilprocget]")
    assert f'"cputime_user":{r["cputime_user"]:.6f}' in raw  # six decimals, as zabbix_agent writes floats
    # the cmdline filter and the user filter
    assert json.loads(checks.get("proc.get[,,marker-ar.]"))[0]["pid"] == child.pid
    assert checks.get("proc.get[vigilprocget,no-such-user-here]") == "[]"


def test_proc_get_thread_and_summary_modes(checks: Checks, child: subprocess.Popen[str]) -> None:
    threads = json.loads(checks.get("proc.get[vigilprocget,,,thread]"))
    assert len(threads) == 2 and {t["pid"] for t in threads} == {child.pid}
    assert child.pid in {t["tid"] for t in threads} and "tname" in threads[0]
    summary = json.loads(checks.get("proc.get[vigilprocget,,,summary]"))
    assert len(summary) == 1 and summary[0]["processes"] == 1 and summary[0]["threads"] == 2
    assert "pid" not in summary[0]
    everything = json.loads(checks.get("proc.get[,,,summary]"))
    assert sum(s["processes"] for s in everything) >= len(everything) >= 1


def test_proc_get_bad_parameters(checks: Checks) -> None:
    for key, msg in (("proc.get[,,x,summary]", "Invalid fourth parameter."), ("proc.get[,,,bogus]",
                     "Invalid fourth parameter."), ("proc.get[a,b,c,d,e]", "Too many parameters.")):
        with pytest.raises(NotSupported) as e:
            checks.get(key)
        assert str(e.value) == msg


@pytest.fixture
def hwmon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A /sys/class/hwmon tree as the kernel lays it out (this machine's kernel has none)."""
    chip = tmp_path / "hwmon0"
    chip.mkdir()
    (chip / "name").write_text("k10temp\n")
    (chip / "temp1_input").write_text("41500\n")
    (chip / "temp2_input").write_text("45500\n")
    (chip / "in0_input").write_text("1200\n")
    monkeypatch.setattr(software, "HWMON", str(tmp_path))
    return chip


def test_sensor_reads_hwmon(checks: Checks, hwmon: Path) -> None:
    assert checks.get("sensor[k10temp,temp1]") == "41.500000"
    assert checks.get("sensor[hwmon0,in0]") == "1.200000"
    assert checks.get("sensor[k10temp,temp,avg]") == "43.500000"
    assert checks.get("sensor[k10temp,temp,max]") == "45.500000"
    with pytest.raises(NotSupported, match="Cannot obtain sensor information."):
        checks.get("sensor[k10temp,temp9]")
    with pytest.raises(NotSupported, match="Invalid third parameter."):
        checks.get("sensor[k10temp,temp,bogus]")
