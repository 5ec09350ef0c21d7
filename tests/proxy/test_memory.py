"""proxy/memory.py: freed memory goes back to the system (glibc keeps it otherwise)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from vigil.proxy import memory

CHILD = """
from vigil.proxy import memory

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024

# 80 MB in 4 kB blocks (over pymalloc's 512 bytes: malloc's heap), then one more above them so that
# freeing them leaves free pages inside the heap, which free() alone does not give back.
blocks = [bytes(4000) + bytes([i % 256]) for i in range(20000)]
sentinel = bytes(4000) + b"x"
del blocks
before = rss_mb()
trimmed = memory.trim()
print(before, rss_mb(), trimmed)
"""


def glibc() -> bool:
    return memory._libc() is not None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_trim_returns_freed_pages_to_the_system() -> None:
    if not glibc():
        pytest.skip("not glibc: trim() is a no-op")
    out = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=True)
    before, after, trimmed = out.stdout.split()
    assert trimmed == "True"
    assert int(before) - int(after) >= 40, out.stdout  # most of the 80 MB

