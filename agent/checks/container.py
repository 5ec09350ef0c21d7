"""Vigil's container keys, read from the cgroup v2 hierarchy (no Docker or Podman API needed).

- `container.discovery`: low-level discovery of the cgroups that look like a container or a service:
  systemd units (`*.service`, `*.scope`, except `init.scope` and login `session-*.scope`), and
  cgroups made by container engines that do not use systemd (`/docker/<id>`, `/lxc.payload.<name>`,
  any cgroup named by a 64-hex-digit container id). The walk does not descend into a cgroup it
  has reported (what is below belongs to that container) and stops at MAX_DEPTH levels and
  MAX_CGROUPS entries. Each row is `{"{#CGROUP}": "/system.slice/foo.service", "{#NAME}": "foo.service"}`.
- `container.cpu.util[<cgroup>]`: percent of one CPU core used by the cgroup over the last
  collector interval (from `usage_usec` in cpu.stat; 200.0 means two cores busy).
- `container.memory.usage[<cgroup>]`: `memory.current` in bytes.

`<cgroup>` is a path below the cgroup v2 mount, starting with `/` (`/` is the root cgroup). The
mount is /sys/fs/cgroup on a pure v2 system, else the first cgroup2 mount (e.g. the "unified"
hierarchy of a hybrid v1/v2 system).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from vigil.agent.checks import CheckContext, NotSupported, check
from vigil.agent.checks.collector import ensure_collector
from vigil.agent.checks.keyparams import at_most, invalid, text
from vigil.agent.protocol.itemkey import ItemKey

MOUNTS = Path("/proc/self/mounts")
PREFERRED_ROOT = "/sys/fs/cgroup"
MAX_DEPTH = 6
MAX_CGROUPS = 10000
_CONTAINER_ID = re.compile(r"[0-9a-f]{64}")
_ENGINE_PARENTS = ("docker", "lxc", "libpod_parent", "machine")


def cgroup_root(mounts: Path = MOUNTS) -> Path:
    """Where cgroup v2 is mounted; NotSupported if it is not."""
    found: list[str] = []
    try:
        with mounts.open() as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 3 and fields[2] == "cgroup2":
                    found.append(fields[1].replace("\\040", " "))
    except OSError as e:
        raise NotSupported(f"Cannot read {mounts}: {e.strerror}.") from None
    if not found:
        raise NotSupported("cgroup v2 is not mounted (no cgroup2 file system in /proc/self/mounts).")
    return Path(PREFERRED_ROOT if PREFERRED_ROOT in found else found[0])


def looks_like_container(name: str, parent: str) -> bool:
    if name.endswith(".service"):
        return True
    if name.endswith(".scope"):
        return name != "init.scope" and not name.startswith("session-")
    if name.startswith("lxc.payload.") or _CONTAINER_ID.fullmatch(name):
        return True
    return parent in _ENGINE_PARENTS


def discover(root: Path) -> list[dict[str, str]]:
    """The LLD rows for the container-like cgroups below `root`, sorted by path."""
    rows: list[dict[str, str]] = []
    seen = 0
    stack: list[tuple[Path, str, int]] = [(root, "", 0)]
    while stack:
        path, rel, depth = stack.pop()
        if depth >= MAX_DEPTH:
            continue
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError:
            continue  # removed while we walked
        parent = path.name if rel else ""
        for e in entries:
            if not e.is_dir(follow_symlinks=False):
                continue
            seen += 1
            if seen > MAX_CGROUPS:
                return sorted(rows, key=lambda r: r["{#CGROUP}"])
            child = f"{rel}/{e.name}"
            if looks_like_container(e.name, parent):
                rows.append({"{#CGROUP}": child, "{#NAME}": e.name})
            else:
                stack.append((Path(e.path), child, depth + 1))
    return sorted(rows, key=lambda r: r["{#CGROUP}"])


def cgroup_dir(root: Path, cgroup: str) -> Path:
    """The directory of `cgroup` below `root`; NotSupported naming the parameter if it is bad."""
    parts = cgroup.split("/")
    if not cgroup.startswith("/") or any(p in (".", "..") for p in parts) or "\0" in cgroup:
        raise NotSupported(
            "Invalid first parameter: a cgroup path starting with \"/\" and without \".\" or \"..\" parts is expected."
        )
    path = root.joinpath(*[p for p in parts if p])
    if not path.is_dir():
        raise NotSupported(f"Cannot find cgroup \"{cgroup}\" under {root}.")
    return path


def cpu_usage_seconds(path: Path) -> float:
    """usage_usec of cpu.stat in seconds."""
    try:
        with (path / "cpu.stat").open() as f:
            for line in f:
                name, _, value = line.partition(" ")
                if name == "usage_usec":
                    return int(value) / 1e6
    except OSError as e:
        raise NotSupported(f"Cannot read {path / 'cpu.stat'}: {e.strerror}.") from None
    raise NotSupported(f"Cannot find \"usage_usec\" in {path / 'cpu.stat'}.")


def memory_current(path: Path) -> int:
    f = path / "memory.current"
    try:
        return int(f.read_text())
    except FileNotFoundError:
        raise NotSupported(
            f"Cannot read {f}: the memory controller is not enabled for this cgroup."
        ) from None
    except OSError as e:
        raise NotSupported(f"Cannot read {f}: {e.strerror}.") from None


def _cgroup_param(key: ItemKey) -> str:
    at_most(key, 1)
    cg = text(key, 0)
    if not cg:
        raise invalid(0)
    return cg


@check("container.discovery", params=False)
def container_discovery(key: ItemKey, ctx: CheckContext) -> str:
    return json.dumps(discover(cgroup_root()), separators=(",", ":"))


@check("container.cpu.util")
def container_cpu_util(key: ItemKey, ctx: CheckContext) -> float:
    path = cgroup_dir(cgroup_root(), _cgroup_param(key))
    collector = ensure_collector(ctx)
    wkey = ("container.cpu.util", str(path))
    collector.watch(wkey, lambda: lambda: (cpu_usage_seconds(path),))
    (used,), elapsed = collector.wait_rate(wkey, 1, ctx.timeout)
    return 0.0 if elapsed <= 0 else 100.0 * used / elapsed


@check("container.memory.usage")
def container_memory_usage(key: ItemKey, ctx: CheckContext) -> int:
    return memory_current(cgroup_dir(cgroup_root(), _cgroup_param(key)))
