"""Giving memory back to the system: glibc's malloc keeps what Python frees.

Measured with bench/proxy_rss.py (10,000 items): applying a configuration reply or forwarding a
batch of 10,000 records builds tens of MB of short-lived rows that go through malloc (objects over
512 bytes, SQLite's and SQLAlchemy's buffers). Once freed, glibc keeps those pages in its heaps
(one per thread that allocated, up to 8 per core) and the proxy's RSS stays at its peak;
`malloc_trim(0)` hands free pages back. (Capping the arenas at 2 as well changed the RSS by less than
1 MB and seemed to cost accept throughput: not done.) Elsewhere than on glibc it is a no-op.
"""

from __future__ import annotations

import asyncio
import ctypes
from functools import cache


@cache
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)  # the process's own symbols, the C library's among them
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") else None  # not glibc (musl has no malloc_trim)


def trim() -> bool:
    """Return the free pages of every arena to the system. True if some were returned."""
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0))


async def trim_every(interval: float, stop: asyncio.Event) -> None:
    """Trim every `interval` seconds until `stop`, on a worker thread: handing back 90 MB takes about
    25 ms (madvise per free run of pages), a trim with nothing to hand back a few microseconds."""
    if _libc() is None:
        return
    while not stop.is_set():
        try:
            await asyncio.wait_for(stop.wait(), interval)
        except TimeoutError:
            pass
        await asyncio.to_thread(trim)
