"""system.* and vm.memory.size keys on Linux, answered as zabbix_agentd 6.0 answers them."""

from __future__ import annotations

import datetime as dt
import os
import time
from pathlib import Path

import psutil
from vigil.agent.checks import CheckContext, NotSupported, check
from vigil.agent.checks.collector import CPU_STATES, ensure_collector
from vigil.agent.checks.keyparams import at_most, choice, invalid, text
from vigil.agent.protocol.itemkey import ItemKey

PROC = Path("/proc")
AVG_SECONDS = {"avg1": 60, "avg5": 300, "avg15": 900}


def _proc_stat_field(name: str) -> list[str]:
    with (PROC / "stat").open() as f:
        for line in f:
            fields = line.split()
            if fields and fields[0] == name:
                return fields[1:]
    raise NotSupported(f"Cannot find \"{name}\" in /proc/stat.")


@check("system.uptime", params=False)
def uptime(key: ItemKey, ctx: CheckContext) -> int:
    return int(float((PROC / "uptime").read_text().split()[0]))


@check("system.boottime", params=False)
def boottime(key: ItemKey, ctx: CheckContext) -> int:
    return int(_proc_stat_field("btime")[0])


@check("system.hostname")
def hostname(key: ItemKey, ctx: CheckContext) -> str:
    at_most(key, 2)
    kind = choice(key, 0, ("host", "shorthost", "netbios"), "host")
    transform = choice(key, 1, ("none", "lower"), "none")
    if kind == "netbios":
        raise NotSupported("NetBIOS is not supported on the current platform.")
    name = os.uname().nodename
    if kind == "shorthost":
        name = name.split(".", 1)[0]
    return name.lower() if transform == "lower" else name


@check("system.uname", params=False)
def uname(key: ItemKey, ctx: CheckContext) -> str:
    u = os.uname()
    return f"{u.sysname} {u.nodename} {u.release} {u.version} {u.machine}"


@check("system.localtime")
def localtime(key: ItemKey, ctx: CheckContext) -> int | str:
    at_most(key, 1)
    kind = choice(key, 0, ("utc", "local"), "utc")
    if kind == "utc":
        return int(time.time())
    now = dt.datetime.now().astimezone()
    off = int(now.utcoffset().total_seconds()) // 60  # type: ignore[union-attr]
    sign = "-" if off < 0 else "+"
    return (
        f"{now:%Y-%m-%d,%H:%M:%S}.{now.microsecond // 1000:03d},"
        f"{sign}{abs(off) // 60:02d}:{abs(off) % 60:02d}"
    )


@check("system.users.num", params=False)
def users_num(key: ItemKey, ctx: CheckContext) -> int:
    return len(psutil.users())


@check("system.swap.size")
def swap_size(key: ItemKey, ctx: CheckContext) -> int | float:
    at_most(key, 2)
    if text(key, 0, "all") != "all":
        raise invalid(0)  # Zabbix on Linux reports only all swap devices together
    mode = choice(key, 1, ("free", "used", "total", "pfree", "pused"), "free")
    s = psutil.swap_memory()
    total, free = s.total, s.free
    match mode:
        case "total":
            return total
        case "free":
            return free
        case "used":
            return total - free
        case "pfree":
            return 100.0 if total == 0 else 100.0 * free / total
        case _:
            return 0.0 if total == 0 else 100.0 * (total - free) / total


@check("system.cpu.load")
def cpu_load(key: ItemKey, ctx: CheckContext) -> float:
    at_most(key, 2)
    scope = choice(key, 0, ("all", "percpu"), "all")
    mode = choice(key, 1, ("avg1", "avg5", "avg15"), "avg1")
    load = os.getloadavg()[("avg1", "avg5", "avg15").index(mode)]
    if scope == "percpu":
        n = os.sysconf("SC_NPROCESSORS_ONLN")
        if n <= 0:
            raise NotSupported("Cannot obtain number of CPUs.")
        load /= n
    return load


@check("system.cpu.num")
def cpu_num(key: ItemKey, ctx: CheckContext) -> int:
    at_most(key, 1)
    kind = choice(key, 0, ("online", "max"), "online")
    n = os.sysconf("SC_NPROCESSORS_ONLN" if kind == "online" else "SC_NPROCESSORS_CONF")
    if n <= 0:
        raise NotSupported("Cannot obtain number of CPUs.")
    return n


@check("system.cpu.switches", params=False)
def cpu_switches(key: ItemKey, ctx: CheckContext) -> int:
    return int(_proc_stat_field("ctxt")[0])


@check("system.cpu.intr", params=False)
def cpu_intr(key: ItemKey, ctx: CheckContext) -> int:
    return int(_proc_stat_field("intr")[0])


@check("system.cpu.util")
def cpu_util(key: ItemKey, ctx: CheckContext) -> float:
    at_most(key, 3)
    cpu_text = text(key, 0, "all")
    if cpu_text == "all":
        cpu = None
    elif cpu_text.isascii() and cpu_text.isdigit() and len(cpu_text) < 10:
        cpu = int(cpu_text)
    else:
        raise invalid(0)
    state = choice(key, 1, CPU_STATES, "user")
    mode = choice(key, 2, AVG_SECONDS, "avg1")
    return ensure_collector(ctx).cpu_util(cpu, state, AVG_SECONDS[mode])


# --- vm.memory.size ------------------------------------------------------------------------------

MEMINFO_FIELDS = {"cached": "Cached", "active": "Active", "inactive": "Inactive", "slab": "Slab", "anon": "AnonPages"}
MEMORY_MODES = (
    "total", "free", "buffers", "cached", "used", "pused", "available", "pavailable", "shared",
    "active", "inactive", "slab", "anon",
)


def read_meminfo(path: Path = PROC / "meminfo") -> dict[str, int]:
    """/proc/meminfo in bytes."""
    out: dict[str, int] = {}
    with path.open() as f:
        for line in f:
            name, _, rest = line.partition(":")
            parts = rest.split()
            if not parts or not parts[0].isdigit():
                continue
            value = int(parts[0])
            if len(parts) > 1 and parts[1].lower() == "kb":
                value <<= 10
            out[name] = value
    return out


@check("vm.memory.size")
def memory_size(key: ItemKey, ctx: CheckContext) -> int | float:
    at_most(key, 1)
    mode = choice(key, 0, MEMORY_MODES, "total")
    if mode == "shared":
        raise NotSupported("Supported for Linux 2.4 only.")  # what zabbix_agentd says on kernels after 2.4
    mi = read_meminfo()
    total, free = mi["MemTotal"], mi["MemFree"]
    if mode in MEMINFO_FIELDS:
        name = MEMINFO_FIELDS[mode]
        if name not in mi:
            raise NotSupported(f"Cannot obtain the value of \"{name}\" from /proc/meminfo.")
        return mi[name]
    if "MemAvailable" in mi:
        available = mi["MemAvailable"]
    else:  # kernels before 3.14
        available = free + mi.get("Buffers", 0) + mi.get("Cached", 0)
    match mode:
        case "total":
            return total
        case "free":
            return free
        case "buffers":
            return mi.get("Buffers", 0)
        case "used":
            return total - free
        case "pused":
            return 0.0 if total == 0 else 100.0 * (total - free) / total
        case "available":
            return available
        case _:  # pavailable
            return 0.0 if total == 0 else 100.0 * available / total
