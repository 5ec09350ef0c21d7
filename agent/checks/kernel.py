"""kernel.maxfiles, kernel.maxproc, kernel.openfiles (Linux /proc/sys)."""

from __future__ import annotations

from pathlib import Path

from vigil.agent.checks import CheckContext, NotSupported, check
from vigil.agent.protocol.itemkey import ItemKey

PROC_SYS = Path("/proc/sys")


def _first_int(path: Path, what: str) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError) as e:
        raise NotSupported(f"Cannot obtain {what}: {e}") from None


@check("kernel.maxfiles", params=False)
def maxfiles(key: ItemKey, ctx: CheckContext) -> int:
    return _first_int(PROC_SYS / "fs" / "file-max", "maximum number of opened files")


@check("kernel.maxproc", params=False)
def maxproc(key: ItemKey, ctx: CheckContext) -> int:
    return _first_int(PROC_SYS / "kernel" / "pid_max", "maximum number of processes")


@check("kernel.openfiles", params=False)
def openfiles(key: ItemKey, ctx: CheckContext) -> int:
    return _first_int(PROC_SYS / "fs" / "file-nr", "number of open files")
