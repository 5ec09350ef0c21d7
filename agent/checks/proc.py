"""proc.num, proc.mem and proc.cpu.util on Linux, matching processes as zabbix_agentd 6.0 does.

A process matches `<name>` if its name in /proc/PID/status (or stat) or the base name of its
argv[0] equals it; `<user>` compares the process's user id with that user's (an unknown user
matches nothing and the answer is 0); `<cmdline>` is a regular expression searched in the command
line with its arguments joined by spaces. Zabbix uses PCRE: Python's `re` is close, and POSIX
classes such as `[[:digit:]]` are translated (agent/regex.py, as for every key). As in Zabbix, a
regular expression that does not compile matches no process.
"""

from __future__ import annotations

import os
import pwd
import re
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from vigil.agent import regex
from vigil.agent.checks import CheckContext, NotSupported, check
from vigil.agent.checks.collector import ensure_collector
from vigil.agent.checks.keyparams import at_most, choice, text
from vigil.agent.checks.system import read_meminfo
from vigil.agent.protocol.itemkey import ItemKey

PROC = Path("/proc")
CLK_TCK = os.sysconf("SC_CLK_TCK")
AVG_SECONDS = {"avg1": 60, "avg5": 300, "avg15": 900}
STATES = {"all": "", "run": "R", "sleep": "S", "zomb": "Z", "disk": "D", "trace": "T"}

# /proc/PID/status label per proc.mem memtype ("size" and "pmem" are computed)
MEMTYPES = {
    "vsize": "VmSize", "rss": "VmRSS", "peak": "VmPeak", "swap": "VmSwap", "lib": "VmLib",
    "lck": "VmLck", "pin": "VmPin", "hwm": "VmHWM", "data": "VmData", "stk": "VmStk",
    "exe": "VmExe", "pte": "VmPTE", "size": "", "pmem": "",
}


@lru_cache(maxsize=256)
def compile_regex(pattern: str) -> re.Pattern[str] | None:
    """The pattern compiled, or None if it is not a valid regular expression."""
    try:
        return regex.compile(pattern)
    except re.error:
        return None


def user_id(name: str) -> int | None:
    """The uid of user `name`; None if there is no such user."""
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def pids() -> list[int]:
    try:
        return [int(e) for e in os.listdir(PROC) if e.isdigit()]
    except OSError as e:
        raise NotSupported(f"Cannot open /proc: {e.strerror}") from None


def read_cmdline(pid: int) -> bytes:
    with open(PROC / str(pid) / "cmdline", "rb") as f:
        return f.read()


def arg0_name(cmdline: bytes) -> str:
    arg0 = cmdline.split(b"\0", 1)[0]
    return arg0.rsplit(b"/", 1)[-1].decode(errors="replace")


def cmdline_text(cmdline: bytes) -> str:
    return cmdline.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")


def read_status(pid: int) -> dict[str, str]:
    out: dict[str, str] = {}
    with open(PROC / str(pid) / "status", errors="replace") as f:
        for line in f:
            label, _, value = line.partition(":")
            out[label] = value.strip()
    return out


def status_bytes(status: dict[str, str], label: str) -> int | None:
    """'VmRSS: 1234 kB' as bytes; None if the process has no such line (kernel threads)."""
    value = status.get(label)
    if value is None:
        return None
    parts = value.split()
    n = int(parts[0])
    unit = parts[1].lower() if len(parts) > 1 else ""
    return n << {"kb": 10, "mb": 20, "gb": 30, "tb": 40}.get(unit, 0)


@dataclass(frozen=True, slots=True)
class ProcFilter:
    """The <name>, <user>, <cmdline> parameters shared by the proc.* keys ('' matches any)."""

    name: str
    user: str
    cmdline: str

    def uid(self) -> int | None | bool:
        """The uid to match, None for any user, False for a user that does not exist."""
        if not self.user:
            return None
        uid = user_id(self.user)
        return False if uid is None else uid

    def matches_cmdline(self, cmdline: bytes, empty_matches: bool) -> bool:
        if not self.cmdline:
            return True
        if not cmdline and not empty_matches:
            return False
        rx = compile_regex(self.cmdline)
        return rx is not None and rx.search(cmdline_text(cmdline)) is not None


def _filter(key: ItemKey) -> ProcFilter:
    return ProcFilter(text(key, 0), text(key, 1), text(key, 3))


def matching_status(flt: ProcFilter) -> list[dict[str, str]]:
    """/proc/PID/status of each process matching the filter (proc.num and proc.mem)."""
    uid = flt.uid()
    if uid is False:
        return []
    out = []
    for pid in pids():
        try:
            status = read_status(pid)
            cmdline = read_cmdline(pid) if flt.name or flt.cmdline else b""
        except OSError:
            continue  # the process has gone
        if flt.name and status.get("Name") != flt.name and arg0_name(cmdline) != flt.name:
            continue
        if uid is not None and int(status.get("Uid", "-1").split()[0]) != uid:
            continue
        if not flt.matches_cmdline(cmdline, empty_matches=True):
            continue
        out.append(status)
    return out


@check("proc.num")
def proc_num(key: ItemKey, ctx: CheckContext) -> int:
    at_most(key, 4)
    flt = _filter(key)
    state = STATES[choice(key, 2, STATES, "all")]
    procs = matching_status(flt)
    if state:
        procs = [s for s in procs if s.get("State", "")[:1] == state]
    return len(procs)


@check("proc.mem")
def proc_mem(key: ItemKey, ctx: CheckContext) -> int | float:
    at_most(key, 5)
    flt = _filter(key)
    mode = choice(key, 2, ("sum", "avg", "max", "min"), "sum")
    memtype = choice(key, 4, MEMTYPES, "vsize")
    pct = memtype == "pmem"
    total = 0
    if pct and flt.uid() is not False:
        total = read_meminfo().get("MemTotal", 0)
        if total == 0:
            raise NotSupported("Total memory reported is 0.")
    label = {"size": "VmData", "pmem": "VmRSS"}.get(memtype) or MEMTYPES[memtype]
    procs = matching_status(flt)
    values: list[float] = []
    for status in procs:
        try:
            if memtype == "size":
                parts = [status_bytes(status, lb) for lb in ("VmData", "VmStk", "VmExe")]
                v: float | None = None if None in parts else sum(p for p in parts if p is not None)
            else:
                v = status_bytes(status, label)
        except (ValueError, IndexError):
            raise NotSupported(f"Cannot get amount of \"{label}\" memory.") from None
        if v is None:
            continue
        values.append(100.0 * v / total if pct else v)
    if procs and not values:
        raise NotSupported(f"Cannot get amount of \"{label}\" memory.")
    if not values:
        result: float = 0
    elif mode == "max":
        result = max(values)
    elif mode == "min":
        result = min(values)
    else:
        result = sum(values)
    if mode == "avg":
        return result / len(values) if values else 0.0
    return float(result) if pct else int(result)


# --- proc.cpu.util -------------------------------------------------------------------------------


def read_stat_times(pid: int) -> tuple[str, int, int, int]:
    """(comm, utime, stime, starttime) from /proc/PID/stat; times in clock ticks."""
    with open(PROC / str(pid) / "stat", "rb") as f:
        data = f.read()
    lparen, rparen = data.index(b"("), data.rindex(b")")
    fields = data[rparen + 2:].split()
    # fields[0] is the state (field 3 of stat); utime, stime, starttime are fields 14, 15, 22
    return data[lparen + 1:rparen].decode(errors="replace"), int(fields[11]), int(fields[12]), int(fields[19])


@dataclass(frozen=True, slots=True)
class ProcTimes:
    start: int  # ticks after boot: with the pid, tells a process from a later one with the same pid
    utime: int
    stime: int
    comm: str
    uid: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    taken: float
    procs: dict[int, ProcTimes]


class ProcTable:
    """One scan of /proc shared by every proc.cpu.util query, as zabbix_agentd's collector takes one
    snapshot a second for all its process queries: the queries' samplers all run in the same
    collector tick, and a snapshot younger than `max_age` is handed out again. Command lines, which
    only name and cmdline filters need, are read once per process and kept while it lives."""

    def __init__(self, max_age: float = 0.5) -> None:
        self.max_age = max_age
        self.lock = threading.Lock()
        self.current: Snapshot | None = None
        self.cmdlines: dict[tuple[int, int], bytes] = {}

    def snapshot(self) -> Snapshot:
        with self.lock:
            now = time.monotonic()
            if self.current is not None and now - self.current.taken < self.max_age:
                return self.current
            procs = {}
            for pid in pids():
                try:
                    uid = os.stat(PROC / str(pid)).st_uid
                    comm, utime, stime, start = read_stat_times(pid)
                except (OSError, ValueError, IndexError):
                    continue  # gone meanwhile
                procs[pid] = ProcTimes(start, utime, stime, comm, uid)
            self.current = Snapshot(now, procs)
            for k in [k for k in self.cmdlines if k[0] not in procs or procs[k[0]].start != k[1]]:
                del self.cmdlines[k]
            return self.current

    def cmdline(self, pid: int, start: int) -> bytes:
        with self.lock:
            got = self.cmdlines.get((pid, start))
        if got is None:
            try:
                got = read_cmdline(pid)
            except OSError:
                got = b""
            with self.lock:
                self.cmdlines[(pid, start)] = got
        return got


PROC_TABLE = ProcTable()


class ProcCpuSampler:
    """Cumulative CPU seconds (user, system) used by the processes matching a filter.

    Between two snapshots a process present in both adds its increase, whether or not it matched
    before (a process renamed into the filter brings only its time since the last snapshot, not its
    whole lifetime); a process absent from the previous snapshot started in between and adds all its
    time; a process that exited adds nothing more.
    """

    def __init__(self, flt: ProcFilter, table: ProcTable = PROC_TABLE) -> None:
        self.flt = flt
        self.table = table
        self.base: Snapshot | None = None
        self.user = 0
        self.system = 0

    def _matches(self, pid: int, p: ProcTimes, uid: int | None) -> bool:
        if uid is not None and p.uid != uid:
            return False
        if not self.flt.name and not self.flt.cmdline:
            return True
        cmdline = self.table.cmdline(pid, p.start)
        if self.flt.name and p.comm != self.flt.name and (not cmdline or arg0_name(cmdline) != self.flt.name):
            return False
        return self.flt.matches_cmdline(cmdline, empty_matches=False)

    def __call__(self) -> tuple[float, ...]:
        snap = self.table.snapshot()
        base = self.base
        if base is not None and snap is not base:
            uid = self.flt.uid()
            if uid is not False:
                for pid, p in snap.procs.items():
                    if not self._matches(pid, p, uid):
                        continue
                    b = base.procs.get(pid)
                    if b is not None and b.start == p.start:
                        self.user += max(0, p.utime - b.utime)
                        self.system += max(0, p.stime - b.stime)
                    else:
                        self.user += p.utime
                        self.system += p.stime
        self.base = snap
        return self.user / CLK_TCK, self.system / CLK_TCK


@check("proc.cpu.util")
def proc_cpu_util(key: ItemKey, ctx: CheckContext) -> float:
    # zabbix_agentd 6.0 takes five parameters; the sixth (<scope>) arrived in 6.4.
    at_most(key, 5)
    flt = _filter(key)
    kind = choice(key, 2, ("total", "user", "system"), "total")
    mode = choice(key, 4, AVG_SECONDS, "avg1")
    collector = ensure_collector(ctx)
    wkey = ("proc.cpu.util", flt)
    collector.watch(wkey, lambda: ProcCpuSampler(flt))
    (user, system), elapsed = collector.wait_rate(wkey, AVG_SECONDS[mode], ctx.timeout)
    used = {"total": user + system, "user": user, "system": system}[kind]
    return 0.0 if elapsed <= 0 else 100.0 * used / elapsed
