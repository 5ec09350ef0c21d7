"""Background sampling: proc.cpu.util's one /proc snapshot per second for all queries and what it counts,
and the collector and disk sampler carrying on after a bad sample."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from vigil.agent.checks import CheckContext, Checks, proc, vfs
from vigil.agent.checks.collector import Collector

from tests.conftest import wait_until


@pytest.fixture
def fast_checks() -> Iterator[Checks]:
    ctx = CheckContext(hostname="x", timeout=5.0)
    ctx.collector = Collector(interval=0.2)
    ctx.collector.start()
    yield Checks(ctx)
    ctx.collector.stop()


def test_one_proc_scan_per_tick_for_all_queries(fast_checks: Checks, monkeypatch: pytest.MonkeyPatch) -> None:
    scans = [0]
    real = proc.pids

    def counting() -> list[int]:
        scans[0] += 1
        return real()

    monkeypatch.setattr(proc, "pids", counting)
    keys = ["proc.cpu.util[,root]", "proc.cpu.util[python3]", "proc.cpu.util[,,system]", "proc.cpu.util[,,,,avg5]"]
    for k in keys:
        float(fast_checks.get(k))
    c = fast_checks.ctx.collector
    ticks, before = c.ticks, scans[0]
    wait_until(lambda: c.ticks >= ticks + 5, 20, "five collector ticks")
    ticks_done = c.ticks - ticks
    assert scans[0] - before <= ticks_done + 1, (scans[0] - before, ticks_done)


SPIN = r"""
import os, sys
while sum(os.times()[:2]) < 1.5:
    pass
print("burned", flush=True)
sys.stdin.readline()
with open("/proc/self/comm", "w") as f:
    f.write("vigilspin")
print("renamed", flush=True)
sys.stdin.readline()
"""


def test_a_process_renamed_into_the_query_does_not_bring_its_whole_lifetime(fast_checks: Checks) -> None:
    child = subprocess.Popen([sys.executable, "-c", SPIN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdin is not None
        assert child.stdout.readline().strip() == "burned"  # 1.5 s of CPU, now idle under another name
        assert float(fast_checks.get("proc.cpu.util[vigilspin]")) == 0.0
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "renamed"
        assert Path(f"/proc/{child.pid}/comm").read_text().strip() == "vigilspin"
        c = fast_checks.ctx.collector
        ticks = c.ticks
        wait_until(lambda: c.ticks >= ticks + 3, 20, "collector ticks after the rename")
        # it matches now, but used (almost) no CPU since: not its 1.5 s from before
        assert float(fast_checks.get("proc.cpu.util[vigilspin]")) < 20.0
        assert float(fast_checks.get("proc.num[vigilspin]")) == 1
    finally:
        child.kill()
        child.wait()


def test_collector_survives_a_sampler_bug() -> None:
    c = Collector(interval=3600)
    c.start()
    try:
        calls = [0]

        def good() -> tuple[float, ...]:
            calls[0] += 1
            return (float(calls[0]),)

        c.watch("bug", lambda: lambda: (1.0,)[5:][0])  # IndexError
        c.watch("good", lambda: good)
        c.tick()
        c.tick()
        assert c.ticks == 2
        assert c.rate("good", 60) is not None
        with pytest.raises(Exception, match="Cannot collect data: IndexError"):
            c.rate("bug", 60)
    finally:
        c.stop()


def test_disk_sampler_survives_a_bad_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                          caplog: pytest.LogCaptureFixture) -> None:
    stats = tmp_path / "diskstats"
    line = "   8       0 vigildisk {} 0 {} 0 {} 0 {} 0 0 0 0\n"
    stats.write_text(line.format(1, 10, 1, 10))
    monkeypatch.setattr(vfs, "DISKSTATS", str(stats))
    sampler = vfs.DiskSampler(interval=0.05)
    sampler.add("vigildisk")
    stats.write_text("   8       0 vigildisk one two three four five six seven\n")
    wait_until(lambda: "disk statistics sampling failed" in caplog.text, 10, "the sampler to meet the bad line")
    stats.write_text(line.format(1, 1000, 1, 10))
    wait_until(lambda: sampler.rate("vigildisk", 1, "avg1") > 0, 10, "samples after the bad read")
