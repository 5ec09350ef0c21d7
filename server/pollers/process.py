"""Running a check program (a Nagios plugin, an external script) with bounds on time and output.

The program gets its arguments as a list (never a shell), no stdin, and its own process group, so
that on the time-out the whole group is killed: a plugin that forked a helper does not outlive it.
Output beyond the limit is read and thrown away (the program does not block on a full pipe, and
Vigil does not hold a megabyte of it); what was kept is marked as cut.
"""

from __future__ import annotations

import asyncio
import os
import signal
from dataclasses import dataclass

CHUNK = 65536


@dataclass(frozen=True, slots=True)
class Finished:
    code: int  # the exit status; -N: killed by signal N
    out: bytes
    err: bytes
    out_cut: bool  # stdout was longer than the limit (out holds its start)


class Timeout(Exception):
    """The program did not finish within its time-out; its process group was killed."""


async def run(argv: list[str], timeout: float, max_out: int, max_err: int = 4096,
              env: dict[str, str] | None = None, cwd: str | None = None) -> Finished:
    """Run argv[0] with argv[1:]; OSError when it cannot be started (missing, not executable)."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        start_new_session=True, env=env, cwd=cwd)
    assert proc.stdout is not None and proc.stderr is not None
    try:
        async with asyncio.timeout(timeout):
            (out, cut), (err, _) = await asyncio.gather(_read(proc.stdout, max_out), _read(proc.stderr, max_err))
            code = await proc.wait()
    except TimeoutError:
        _kill_group(proc)
        await proc.wait()
        raise Timeout(f"did not finish within {timeout:g} s and was killed") from None
    except BaseException:
        _kill_group(proc)
        await proc.wait()
        raise
    _kill_group(proc)  # helpers it left behind in its group
    return Finished(code, out, err, cut)


async def _read(stream: asyncio.StreamReader, limit: int) -> tuple[bytes, bool]:
    kept = bytearray()
    cut = False
    while chunk := await stream.read(CHUNK):
        room = limit - len(kept)
        if room > 0:
            kept += chunk[:room]
        if len(chunk) > room:
            cut = True
    return bytes(kept), cut


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
