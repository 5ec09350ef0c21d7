"""system.*, vm.memory.size, kernel.*, proc.* keys compared with a real zabbix_agentd 6.0."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from vigil.agent.checks import Checks, NotSupported
from vigil.agent.checks.collector import Collector, read_cpu_counters

from tests.conftest import stop_process, wait_until, zabbix_get

INT = re.compile(r"^\d+$")
FLOAT = re.compile(r"^-?\d+\.\d{6}$")


def ours(checks: Checks, key: str) -> str:
    """What our agent would answer, in the words zabbix_get prints."""
    try:
        return checks.get(key)
    except NotSupported as e:
        return f"ZBX_NOTSUPPORTED: {e}"


def compare(checks: Checks, port: int, keys: list[str]) -> list[tuple[str, str, str]]:
    """(key, zabbix, ours) for every key whose answers differ."""
    diffs = []
    for k in keys:
        theirs, mine = zabbix_get(port, k), ours(checks, k)
        if theirs != mine:
            diffs.append((k, theirs, mine))
    return diffs


STABLE = [
    "system.cpu.num", "system.cpu.num[online]", "system.cpu.num[max]", "system.cpu.num[]",
    "kernel.maxfiles", "kernel.maxproc", "vm.memory.size", "vm.memory.size[total]", "vm.memory.size[]",
    "system.swap.size[,total]", "system.swap.size[all,total]", "system.uname", "system.hostname",
    "system.hostname[]", "system.hostname[host]", "system.hostname[shorthost]", "system.hostname[host,lower]",
    "system.hostname[shorthost,none]", "system.boottime", "system.users.num",
    "proc.num[,nosuchuser]", "proc.mem[,nosuchuser]", "proc.mem[,nosuchuser,avg]",
    "proc.mem[,nosuchuser,,,pmem]", "proc.num[,,,\"(\"]", "proc.mem[nosuchprocess,,avg]",
    "proc.mem[kthreadd]", "proc.mem[kthreadd,,,,pmem]", "proc.mem[kthreadd,,,,size]",
]


def test_stable_values_equal_zabbix(zabbix_agentd: int, checks: Checks) -> None:
    assert compare(checks, zabbix_agentd, STABLE) == []


BAD = [
    # parameters on keys that take none
    "system.uptime[]", "system.uptime[x]", "system.boottime[1]", "system.uname[]", "system.users.num[]",
    "system.cpu.switches[]", "system.cpu.intr[a]", "kernel.maxfiles[]", "kernel.maxproc[1]",
    # too many parameters
    "system.hostname[a,b,c]", "system.localtime[utc,x]", "system.swap.size[a,b,c]",
    "system.cpu.load[all,avg15,x]", "system.cpu.num[online,x]", "system.cpu.util[all,user,avg1,x]",
    "vm.memory.size[total,x]", "proc.num[,,,,x]", "proc.mem[a,b,c,d,e,f]", "proc.cpu.util[,,,,,thread]",
    "proc.cpu.util[,,total,,avg1,]",
    # unknown modes and wrong types, each naming the parameter
    "system.hostname[fqdn]", "system.hostname[bad]", "system.hostname[host,upper]",
    "system.hostname[netbios]", "system.localtime[bad]", "system.swap.size[sda]",
    "system.swap.size[,bad]", "system.cpu.load[bad]", "system.cpu.load[all,bad]",
    "system.cpu.load[[a]]", "system.cpu.num[bad]", "system.cpu.util[a]", "system.cpu.util[-1]",
    "system.cpu.util[+1]", "system.cpu.util[0x1]", "system.cpu.util[99]", "system.cpu.util[,bad]",
    "system.cpu.util[,,bad]", "system.cpu.util[,,avg2]", "vm.memory.size[bad]", "vm.memory.size[wired]",
    "vm.memory.size[shared]", "vm.memory.size[TOTAL]", "proc.num[,,bad]", "proc.num[,,RUN]",
    "proc.mem[x,,bad]", "proc.mem[x,,,,bad]", "proc.cpu.util[,,bad]", "proc.cpu.util[,,,,bad]",
]


def test_bad_parameters_answer_like_zabbix(zabbix_agentd: int, checks: Checks) -> None:
    assert compare(checks, zabbix_agentd, BAD) == []
    # and every one of them is NotSupported, with a reason that names what is wrong
    for k in BAD:
        with pytest.raises(NotSupported, match=r"parameter|Parameter|NetBIOS|CPU|Linux 2\.4"):
            checks.get(k)


def test_reasons_name_the_parameter(checks: Checks) -> None:
    cases = {
        "system.cpu.util[,bogus]": "Invalid second parameter.",
        "system.cpu.util[,,avg2]": "Invalid third parameter.",
        "proc.mem[x,,,,bogus]": "Invalid fifth parameter.",
        "proc.num[,,,,x]": "Too many parameters.",
        "system.uptime[x]": "Item does not allow parameters.",
        "system.cpu.load[": "Invalid item key format",
    }
    for key, reason in cases.items():
        with pytest.raises(NotSupported) as e:
            checks.get(key)
        assert str(e.value).startswith(reason), (key, str(e.value))


def _close(a: str, b: str, tol: float) -> bool:
    return abs(float(a) - float(b)) <= tol


def test_moving_values_close_to_zabbix(zabbix_agentd: int, checks: Checks) -> None:
    p = zabbix_agentd
    for key, fmt, tol in [
        ("system.uptime", INT, 2),
        ("system.localtime", INT, 2),
        ("system.localtime[utc]", INT, 2),
        ("system.cpu.load", FLOAT, 0.5),
        ("system.cpu.load[all,avg5]", FLOAT, 0.5),
        ("system.cpu.load[percpu,avg15]", FLOAT, 0.5),
        ("system.swap.size", INT, 64 << 20),
        ("system.swap.size[,pfree]", FLOAT, 5),
        ("system.swap.size[,pused]", FLOAT, 5),
        ("system.swap.size[,used]", INT, 64 << 20),
        ("vm.memory.size[pused]", FLOAT, 3),
        ("vm.memory.size[pavailable]", FLOAT, 3),
        ("kernel.openfiles", INT, 500),
        ("system.cpu.switches", INT, 10**7),
        ("system.cpu.intr", INT, 10**7),
    ]:
        theirs, mine = zabbix_get(p, key), ours(checks, key)
        assert fmt.match(theirs), (key, theirs)
        assert fmt.match(mine), (key, mine)
        assert _close(theirs, mine, tol), (key, theirs, mine)
    total = int(ours(checks, "vm.memory.size[total]"))
    for mode in ("free", "available", "used", "cached", "buffers", "active", "inactive", "slab", "anon"):
        key = f"vm.memory.size[{mode}]"
        theirs, mine = zabbix_get(p, key), ours(checks, key)
        assert INT.match(theirs) and INT.match(mine), (key, theirs, mine)
        assert _close(theirs, mine, total * 0.03), (key, theirs, mine)
    # the counters only grow
    before = int(zabbix_get(p, "system.cpu.switches"))
    assert int(ours(checks, "system.cpu.switches")) >= before


def test_localtime_local_format(zabbix_agentd: int, checks: Checks) -> None:
    local = re.compile(r"^(\d{4}-\d\d-\d\d,\d\d:\d\d:\d\d)\.\d{3},([+-]\d\d:\d\d)$")
    theirs = local.match(zabbix_get(zabbix_agentd, "system.localtime[local]"))
    mine = local.match(ours(checks, "system.localtime[local]"))
    assert theirs and mine
    assert theirs.group(2) == mine.group(2)
    t0 = time.mktime(time.strptime(theirs.group(1), "%Y-%m-%d,%H:%M:%S"))
    t1 = time.mktime(time.strptime(mine.group(1), "%Y-%m-%d,%H:%M:%S"))
    assert abs(t1 - t0) <= 2


@pytest.mark.parametrize("tz, offsets", [("Asia/Kolkata", {"+05:30"}), ("America/St_Johns", {"-03:30", "-02:30"})])
def test_localtime_offset_sign_and_minutes(checks: Checks, tz: str, offsets: set[str]) -> None:
    old = os.environ.get("TZ")
    os.environ["TZ"] = tz
    time.tzset()
    try:
        assert ours(checks, "system.localtime[local]")[-6:] in offsets
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


# --- processes -----------------------------------------------------------------------------------


@pytest.fixture
def sleepers(tmp_path: Path) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """Two sleeping processes under a name nothing else has (a copy of sleep(1))."""
    name = "vs" + uuid.uuid4().hex[:10]
    exe = tmp_path / name
    shutil.copy(shutil.which("sleep") or "/bin/sleep", exe)
    procs = [subprocess.Popen([str(exe), "60"]) for _ in range(2)]

    def named() -> bool:  # exec has finished once /proc shows the copy's name
        try:
            return all(Path(f"/proc/{p.pid}/comm").read_text().strip() == name for p in procs)
        except OSError:
            return False

    wait_until(named, 10, f"both {name} processes to exec")
    try:
        yield name, procs
    finally:
        for p in procs:
            stop_process(p)


def test_proc_num_and_mem_for_started_processes(
    zabbix_agentd: int, checks: Checks, sleepers: tuple[str, list[subprocess.Popen]]
) -> None:
    name, procs = sleepers
    # '[.]' keeps the pattern from matching zabbix_get's own command line, which contains the key
    rx = f"{name[:4]}[{name[4]}]{name[5:]} 60"
    keys = [
        f"proc.num[{name}]", f"proc.num[{name},root]", f"proc.num[{name},,sleep]", f"proc.num[{name},,run]",
        f"proc.num[{name},,all,\"{rx}\"]", f"proc.num[,,,\"{rx}\"]", f"proc.num[,root,sleep,\"{rx}\"]",
        f"proc.num[{name},nosuchuser]", f"proc.mem[{name}]", f"proc.mem[{name},,max,,vsize]",
        f"proc.mem[{name},,avg,,size]", f"proc.mem[{name},,min,,exe]", f"proc.mem[{name},,sum,,lib]",
        f"proc.mem[{name},,,\"{rx}\",data]", f"proc.mem[{name},root,avg,,pmem]",
    ]
    assert compare(checks, zabbix_agentd, keys) == []
    assert ours(checks, f"proc.num[{name}]") == "2"
    assert ours(checks, f"proc.num[,,,\"{rx}\"]") == "2"
    assert FLOAT.match(ours(checks, f"proc.mem[{name},,avg]"))
    assert int(ours(checks, f"proc.mem[{name},,,,rss]")) > 0
    for p in procs:
        stop_process(p)
    assert ours(checks, f"proc.num[{name}]") == "0"
    assert ours(checks, f"proc.mem[{name}]") == "0"


def test_proc_cpu_util_sees_a_busy_process(zabbix_agentd: int, checks: Checks) -> None:
    token = "vb" + uuid.uuid4().hex[:10]
    rx = f"{token[:4]}[{token[4]}]{token[5:]}"
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass", token])
    try:
        theirs = zabbix_get(zabbix_agentd, f"proc.cpu.util[,,,\"{rx}\"]")
        mine = ours(checks, f"proc.cpu.util[,,,\"{rx}\"]")
        assert FLOAT.match(theirs) and FLOAT.match(mine), (theirs, mine)
        # a spinning process uses a good part of one core in both agents' eyes
        assert float(theirs) > 10 and float(mine) > 10, (theirs, mine)
        assert float(ours(checks, f"proc.cpu.util[,,user,\"{rx}\",avg5]")) > 10
        assert float(mine) <= 100 * (os.cpu_count() or 1) + 1
    finally:
        stop_process(busy)
    assert ours(checks, "proc.cpu.util[nosuchprocess]") == "0.000000"
    assert ours(checks, "proc.cpu.util[,nosuchuser]") == "0.000000"


# --- system.cpu.util and the collector ----------------------------------------------------------


def test_cpu_util_states_add_up_to_100(checks: Checks) -> None:
    states = ["user", "nice", "system", "idle", "iowait", "interrupt", "softirq", "steal"]
    # a collector that never ticks by itself: every value below comes from the same two samples
    checks.ctx.collector = Collector(interval=3600)
    checks.ctx.collector.start()
    ncpu = checks.ctx.collector.ncpu
    base = read_cpu_counters(ncpu)

    def moved() -> bool:  # all CPUs' and cpu0's counters advanced since the collector's first sample
        now = read_cpu_counters(ncpu)
        return all(now[i] and base[i] and sum(now[i]) > sum(base[i]) for i in (0, 1))  # type: ignore[arg-type]

    wait_until(moved, 10, "the CPU counters in /proc/stat to move")
    checks.ctx.collector.tick()
    for cpu in ["", "0"]:
        values = [checks.get(f"system.cpu.util[{cpu},{s},avg1]") for s in states]
        assert all(FLOAT.match(v) for v in values), values
        assert abs(sum(float(v) for v in values) - 100) < 0.01, values
        assert float(checks.get(f"system.cpu.util[{cpu},guest]")) <= 100


def test_cpu_util_matches_zabbix_format(zabbix_agentd: int, checks: Checks) -> None:
    for key in ["system.cpu.util", "system.cpu.util[all,idle,avg5]", "system.cpu.util[0,system,avg15]"]:
        theirs, mine = zabbix_get(zabbix_agentd, key), ours(checks, key)
        assert FLOAT.match(theirs) and FLOAT.match(mine), (key, theirs, mine)
        assert 0 <= float(mine) <= 100
