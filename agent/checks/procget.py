"""proc.get[<name>,<user>,<cmdline>,<mode>]: the processes (mode process), their threads (thread) or
one summary per process name (summary) as JSON, with the fields and order of Zabbix's agent.

zabbix_agentd 6.0.14 does not have this key (it answers "Unsupported item key."); the fields follow
the agent that introduced it (Zabbix 6.4 on Linux): sizes in bytes, CPU times in seconds with six
decimals, -1 for a value the kernel does not give (a kernel thread has no VmSize). A process's name
is its /proc/PID/status Name, or the base name of argv[0] when Name is a truncated prefix of it.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
from typing import Any

from vigil.agent.checks import CheckContext, NotSupported, check
from vigil.agent.checks.keyparams import at_most
from vigil.agent.checks.proc import CLK_TCK, PROC, compile_regex, read_cmdline
from vigil.agent.checks.system import read_meminfo
from vigil.agent.protocol.itemkey import ItemKey


class Float(float):
    """A float written as zabbix_agentd writes JSON numbers: %f, six decimals."""


def _dumps(rows: list[dict[str, Any]]) -> str:
    def value(v: Any) -> str:
        if isinstance(v, Float):
            return f"{v:.6f}"
        return json.dumps(v, ensure_ascii=False)

    return "[" + ",".join("{" + ",".join(f"{json.dumps(k)}:{value(v)}" for k, v in r.items()) + "}"
                          for r in rows) + "]"


def _status(path: str) -> dict[str, str]:
    out: dict[str, str] = {}
    with open(f"{path}/status", errors="replace") as f:
        for line in f:
            label, _, v = line.partition(":")
            out[label] = v.strip()
    return out


def _num(status: dict[str, str], label: str) -> int:
    v = status.get(label)
    if v is None:
        return -1
    parts = v.split()
    try:
        n = int(parts[0])
    except (ValueError, IndexError):
        return -1
    unit = parts[1].lower() if len(parts) > 1 else ""
    return n << {"kb": 10, "mb": 20, "gb": 30}.get(unit, 0)


def _stat_fields(path: str) -> tuple[int, Float, Float]:
    """(major page faults, user seconds, system seconds) from PATH/stat."""
    try:
        with open(f"{path}/stat", "rb") as f:
            data = f.read()
        fields = data[data.rindex(b")") + 2:].split()
        return int(fields[9]), Float(int(fields[11]) / CLK_TCK), Float(int(fields[12]) / CLK_TCK)
    except (OSError, ValueError, IndexError):
        return -1, Float(-1.0), Float(-1.0)


def _state(status: dict[str, str]) -> str:
    s = status.get("State", "")
    if "(" in s:
        return s.split("(", 1)[1].rstrip(")")
    return s


def _ctx_switches(status: dict[str, str]) -> int:
    a, b = _num(status, "voluntary_ctxt_switches"), _num(status, "nonvoluntary_ctxt_switches")
    return a + b if a >= 0 and b >= 0 else -1


def _id(status: dict[str, str], label: str) -> int:
    try:
        return int(status[label].split()[0])
    except (KeyError, ValueError, IndexError):
        return -1


def _user(uid: int) -> str:
    if uid < 0:
        return "-1"
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    if gid < 0:
        return "-1"
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _name(status: dict[str, str], cmdline: bytes) -> str:
    name = status.get("Name", "")
    if cmdline and cmdline[0]:
        arg0 = cmdline.split(b"\0", 1)[0].decode(errors="replace")
        for sep in (" ", ":"):
            arg0 = arg0.split(sep, 1)[0]
        base = arg0.rsplit("/", 1)[-1]
        if len(base) > len(name) and base.startswith(name):
            name = base
    return name


def _memory(status: dict[str, str], total: int) -> dict[str, Any]:
    data, exe, stk = _num(status, "VmData"), _num(status, "VmExe"), _num(status, "VmStk")
    rss = _num(status, "VmRSS")
    return {
        "vsize": _num(status, "VmSize"),
        "pmem": Float(100.0 * rss / total if rss >= 0 and total else -1.0),
        "rss": rss, "data": data, "exe": exe,
        "hwm": _num(status, "VmHWM"), "lck": _num(status, "VmLck"), "lib": _num(status, "VmLib"),
        "peak": _num(status, "VmPeak"), "pin": _num(status, "VmPin"), "pte": _num(status, "VmPTE"),
        "size": -1 if -1 in (data, exe, stk) else data + exe + stk,
        "stk": stk, "swap": _num(status, "VmSwap"),
    }


PROCESS_MEMORY = ("vsize", "pmem", "rss", "data", "exe", "hwm", "lck", "lib", "peak", "pin", "pte", "size",
                  "stk", "swap")
SUMMARY_MEMORY = ("vsize", "pmem", "rss", "data", "exe", "lck", "lib", "pin", "pte", "size", "stk", "swap")
SUMMED = (*SUMMARY_MEMORY, "cputime_user", "cputime_system", "ctx_switches", "threads", "page_faults")


@check("proc.get")
def proc_get(key: ItemKey, ctx: CheckContext) -> str:
    at_most(key, 4)
    want_name, user, cmd_rx = key.param(0), key.param(1), key.param(2)
    mode = key.param(3, "process")
    if mode not in ("process", "thread", "summary") or mode == "summary" and cmd_rx:
        raise NotSupported("Invalid fourth parameter.")
    uid_filter: int | None = None
    if user:
        try:
            uid_filter = pwd.getpwnam(user).pw_uid
        except KeyError:
            return "[]"
    rx = compile_regex(cmd_rx) if cmd_rx else None
    total = read_meminfo().get("MemTotal", 0) if mode != "thread" else 0
    try:
        entries = [e for e in os.listdir(PROC) if e.isdigit()]
    except OSError as e:
        raise NotSupported(f"Cannot open /proc: {e.strerror}") from None
    rows: list[dict[str, Any]] = []
    for entry in entries:
        path = f"{PROC}/{entry}"
        try:
            cmdline = read_cmdline(int(entry))
            status = _status(path)
        except OSError:
            continue
        name = _name(status, cmdline)
        if not name or want_name and name != want_name:
            continue
        uid = _id(status, "Uid")
        if uid_filter is not None and uid != uid_filter:
            continue
        text = cmdline.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace")
        if cmd_rx and (rx is None or rx.search(text) is None):
            continue
        gid = _id(status, "Gid")
        if mode == "thread":
            try:
                tids = sorted(int(t) for t in os.listdir(f"{path}/task") if t.isdigit())
            except OSError:
                continue
            for tid in tids:
                tpath = f"{path}/task/{tid}"
                try:
                    ts = _status(tpath)
                except OSError:
                    continue
                faults, cu, cs = _stat_fields(tpath)
                rows.append({
                    "pid": int(entry), "ppid": _num(ts, "PPid"), "name": name, "user": _user(uid),
                    "group": _group(gid), "uid": uid, "gid": gid, "tid": tid, "tname": ts.get("Name", ""),
                    "cputime_user": cu, "cputime_system": cs, "state": _state(ts),
                    "ctx_switches": _ctx_switches(ts), "page_faults": faults,
                })
            continue
        faults, cu, cs = _stat_fields(path)
        mem = _memory(status, total)
        common = {"cputime_user": cu, "cputime_system": cs}
        if mode == "process":
            row: dict[str, Any] = {
                "pid": int(entry), "ppid": _num(status, "PPid"), "name": name, "cmdline": text,
                "user": _user(uid), "group": _group(gid), "uid": uid, "gid": gid,
            }
            row.update((k, mem[k]) for k in PROCESS_MEMORY)
            row.update(common)
            row.update(state=_state(status), ctx_switches=_ctx_switches(status),
                       threads=_num(status, "Threads"), page_faults=faults)
        else:
            row = {"name": name, "processes": 1}
            row.update((k, mem[k]) for k in SUMMARY_MEMORY)
            row.update(common)
            row.update(ctx_switches=_ctx_switches(status), threads=_num(status, "Threads"), page_faults=faults)
        rows.append(row)
    if mode == "summary":
        rows = _summarise(rows)
    return _dumps(rows)


def _summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_name: dict[str, dict[str, Any]] = {}
    for r in rows:
        s = by_name.get(r["name"])
        if s is None:
            by_name[r["name"]] = r
            continue
        s["processes"] += 1
        for k in SUMMED:
            a, b = s[k], r[k]
            total = a + b if a >= 0 and b >= 0 else -1
            s[k] = Float(total) if isinstance(a, Float) else int(total)
    return list(by_name.values())
