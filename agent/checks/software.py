"""system.sw.arch, system.sw.os, system.sw.packages, system.hw.cpu and sensor[] on Linux, with
zabbix_agentd 6.0's parameters, output and messages.

system.sw.packages asks the package managers zabbix_agentd knows that this machine has (dpkg,
rpm, pacman), each within the agent's Timeout.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from vigil.agent import regex
from vigil.agent.checks import CheckContext, NotSupported, check
from vigil.agent.checks.keyparams import at_most, invalid
from vigil.agent.protocol.itemkey import ItemKey


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError as e:
        raise NotSupported(f"Cannot open {path}: [{e.errno}] {e.strerror}") from None


@check("system.sw.arch", params=False)
def sw_arch(key: ItemKey, ctx: CheckContext) -> str:
    return os.uname().machine


def _os_name() -> str:
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            text = Path(path).read_text(errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    text = _read("/etc/issue.net")
    return text.splitlines()[0].strip() if text else ""


@check("system.sw.os")
def sw_os(key: ItemKey, ctx: CheckContext) -> str:
    at_most(key, 1)
    info = key.param(0, "full")
    if info == "full":
        return _read("/proc/version").splitlines()[0] if _read("/proc/version") else ""
    if info == "short":
        return _read("/proc/version_signature").strip()
    if info == "name":
        return _os_name()
    raise invalid(0)


# --- packages ------------------------------------------------------------------------------------


def _dpkg(out: str) -> list[str]:
    names = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[1] == "install":
            names.append(parts[0])
    return names


def _lines(out: str) -> list[str]:
    return [line.strip() for line in out.splitlines() if line.strip()]


# name -> (program that must exist, listing command, parser), in zabbix_agentd's order
MANAGERS: dict[str, tuple[str, list[str], Callable[[str], list[str]]]] = {
    "dpkg": ("dpkg", ["dpkg", "--get-selections"], _dpkg),
    "rpm": ("rpm", ["rpm", "-qa"], _lines),
    "pacman": ("pacman", ["pacman", "-Q"], lambda out: [line.split()[0] for line in _lines(out)]),
}


def _list(manager: str, timeout: float) -> list[str] | None:
    program, cmd, parse = MANAGERS[manager]
    if shutil.which(program) is None:
        return None
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, errors="replace")
    except (OSError, subprocess.TimeoutExpired):
        return None
    if r.returncode != 0:
        return None
    return parse(r.stdout)


@check("system.sw.packages")
def sw_packages(key: ItemKey, ctx: CheckContext) -> str:
    at_most(key, 3)
    pattern = key.param(0)
    manager = key.param(1, "all")
    fmt = key.param(2, "full")
    if fmt not in ("full", "short"):
        raise invalid(2)
    try:
        rx = regex.compile(pattern) if pattern else None
    except re.error:
        rx = re.compile(r"(?!)")  # zabbix_agentd: a regexp that does not compile matches no package
    managers = list(MANAGERS) if manager == "all" else [m for m in MANAGERS if m == manager]
    end = time.monotonic() + ctx.timeout
    parts = []
    found = False
    for m in managers:
        names = _list(m, max(0.1, end - time.monotonic()))
        if names is None:
            continue
        found = True
        names = sorted(n for n in names if rx is None or rx.search(n))
        if fmt == "short":
            if names:
                parts.append(", ".join(names))
        else:
            parts.append(f"[{m}] {', '.join(names)}".rstrip())
    if not found:
        raise NotSupported("Cannot obtain package information.")
    return ("\n" if fmt == "full" else ", ").join(parts)


# --- CPU -----------------------------------------------------------------------------------------


def _cpuinfo() -> dict[int, dict[str, str]]:
    cpus: dict[int, dict[str, str]] = {}
    cur: dict[str, str] | None = None
    for line in _read("/proc/cpuinfo").splitlines():
        name, sep, value = line.partition(":")
        if not sep:
            continue
        name, value = name.strip(), value.strip()
        if name == "processor":
            cur = cpus.setdefault(int(value), {})
        elif cur is not None:
            cur[name] = value
    return cpus


def _maxfreq(cpu: int) -> int | None:
    try:
        return int(Path(f"/sys/devices/system/cpu/cpu{cpu}/cpufreq/cpuinfo_max_freq").read_text()) * 1000
    except (OSError, ValueError):
        return None


def _curfreq(info: dict[str, str]) -> int | None:
    try:
        return int(round(float(info["cpu MHz"]))) * 1_000_000
    except (KeyError, ValueError):
        return None


def _cpu_line(n: int, info: dict[str, str]) -> str:
    text = f"processor {n}:"
    if "vendor_id" in info:
        text += f" {info['vendor_id']}"
    if "model name" in info:
        text += f" {info['model name']}"
    cur = _curfreq(info)
    if cur is not None:
        text += f" working at {cur // 1_000_000}MHz"
    mx = _maxfreq(n)
    if mx is not None:
        text += f" (maximum {mx // 1_000_000}MHz)"
    return text


@check("system.hw.cpu")
def hw_cpu(key: ItemKey, ctx: CheckContext) -> str | int:
    at_most(key, 2)
    which = key.param(0, "all")
    info = key.param(1, "full")
    if info not in ("full", "curfreq", "maxfreq", "model", "vendor"):
        raise invalid(1)
    if which != "all" and not which.isdigit():
        raise invalid(0)
    cpus = _cpuinfo()
    chosen = sorted(cpus) if which == "all" else [int(which)] if int(which) in cpus else []
    if not chosen:
        raise NotSupported("Cannot obtain CPU information.")
    values: list[str] = []
    for n in chosen:
        ci = cpus[n]
        if info == "full":
            values.append(_cpu_line(n, ci))
            continue
        if info == "vendor":
            v = ci.get("vendor_id")
        elif info == "model":
            v = ci.get("model name")
        else:
            f = _curfreq(ci) if info == "curfreq" else _maxfreq(n)
            if f is not None and which != "all":
                return f
            v = None if f is None else f"{f // 1_000_000}MHz"
        if v is None:
            continue
        values.append(v if which != "all" else f"processor {n}: {v}")
    if not values:
        raise NotSupported("Cannot obtain CPU information.")
    return "\n".join(values)


# --- sensor[] ------------------------------------------------------------------------------------

HWMON = "/sys/class/hwmon"
_SENSOR_SCALE = {"temp": 1000, "in": 1000, "fan": 1, "power": 1_000_000, "curr": 1000, "energy": 1_000_000}


@check("sensor")
def sensor(key: ItemKey, ctx: CheckContext) -> float:
    """sensor[device,sensor,<mode>]: device is a hwmon chip's name (its `name` file) or directory,
    sensor a name such as temp1, or a prefix such as temp with mode avg, max or min."""
    at_most(key, 3)
    device, name = key.param(0), key.param(1)
    if not device:
        raise invalid(0)
    if not name:
        raise invalid(1)
    mode = key.param(2)
    if mode and mode not in ("avg", "max", "min"):
        raise invalid(2)
    values: list[float] = []
    for chip in sorted(glob.glob(os.path.join(HWMON, "*"))):
        try:
            chip_name = Path(chip, "name").read_text().strip()
        except OSError:
            chip_name = ""
        if device not in (chip_name, os.path.basename(chip)):
            continue
        kind = re.match(r"[a-z]+", name)
        scale = _SENSOR_SCALE.get(kind.group(0) if kind else "", 1)
        pattern = f"{name}_input" if not mode else f"{name}*_input"
        for path in sorted(glob.glob(os.path.join(chip, pattern))):
            try:
                values.append(int(Path(path).read_text()) / scale)
            except (OSError, ValueError):
                continue
    if not values:
        raise NotSupported("Cannot obtain sensor information.")
    if mode == "max":
        return max(values)
    if mode == "min":
        return min(values)
    return sum(values) / len(values) if mode == "avg" else values[0]
