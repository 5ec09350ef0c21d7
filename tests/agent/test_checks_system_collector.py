"""The background collector behind system.cpu.util, proc.cpu.util and container.cpu.util."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from vigil.agent.checks import CheckContext, Checks, NotSupported
from vigil.agent.checks.collector import CPU_STATES, Collector, ensure_collector, read_cpu_counters, window_base

from tests.conftest import wait_until


@pytest.fixture
def idle_collector() -> Iterator[Collector]:
    """A started collector whose thread will not tick during the test: the test ticks it."""
    c = Collector(interval=3600, max_watches=3)
    c.start()
    yield c
    c.stop()


def test_first_answer_is_the_average_since_boot(idle_collector: Collector) -> None:
    # with one sample only, zabbix_agentd compares it with zero: the share of each state since boot
    counters = idle_collector._cpu[0][1][0]
    assert counters is not None
    expected = 100.0 * counters[CPU_STATES.index("idle")] / sum(counters)
    assert idle_collector.cpu_util(None, "idle", 60) == pytest.approx(expected)


def test_counters_of_every_online_cpu() -> None:
    ncpu = Collector().ncpu
    counters = read_cpu_counters(ncpu)
    assert len(counters) == ncpu + 1
    assert counters[0] is not None and len(counters[0]) == len(CPU_STATES)
    per_cpu = [c for c in counters[1:] if c is not None]
    assert per_cpu, "no per-CPU lines read from /proc/stat"
    # the all-CPU line is the sum of the per-CPU lines (give or take the moment between them)
    assert sum(c[CPU_STATES.index("idle")] for c in per_cpu) == pytest.approx(
        counters[0][CPU_STATES.index("idle")], rel=0.01
    )


def test_cpu_out_of_range_is_not_supported(idle_collector: Collector) -> None:
    with pytest.raises(NotSupported, match="Cannot obtain CPU information."):
        idle_collector.cpu_util(idle_collector.ncpu, "user", 60)


def test_watch_rate_over_samples(idle_collector: Collector) -> None:
    values = iter([(10.0, 1.0), (12.5, 1.0), (20.0, 4.0)])
    idle_collector.watch("k", lambda: lambda: next(values))
    assert idle_collector.rate("k", 60) is None  # one sample: no rate yet
    idle_collector.tick()
    (d1, d2), elapsed = idle_collector.rate("k", 60)  # type: ignore[misc]
    assert (d1, d2) == (2.5, 0.0) and elapsed >= 0
    idle_collector.tick()
    (d1, d2), _ = idle_collector.rate("k", 60)  # type: ignore[misc]
    assert (d1, d2) == (10.0, 3.0)  # avg over the window: newest minus oldest


def test_window_base_sample() -> None:
    times = [100.0, 101.0, 102.0, 103.0]
    assert window_base(times, 60) == 0  # fewer samples than the window: the oldest
    assert window_base(times, 1) == 2  # one interval back
    assert window_base(times, 2) == 1
    assert window_base([100.0, 110.0], 1) == 0  # a late sample still gives a rate over two samples


def test_watch_errors_become_not_supported(idle_collector: Collector) -> None:
    def broken() -> tuple[float, ...]:
        raise FileNotFoundError(2, "No such file or directory", "/sys/fs/cgroup/gone/cpu.stat")

    idle_collector.watch("bad", lambda: broken)
    with pytest.raises(NotSupported, match="Cannot collect data: .*No such file or directory"):
        idle_collector.rate("bad", 60)


def test_number_of_watches_is_bounded(idle_collector: Collector) -> None:
    for i in range(3):
        idle_collector.watch(i, lambda: lambda: (1.0,))
    idle_collector.watch(0, lambda: lambda: (1.0,))  # an existing one is fine
    with pytest.raises(NotSupported, match="Too many collector queries"):
        idle_collector.watch(3, lambda: lambda: (1.0,))


def test_waiting_for_data_times_out(idle_collector: Collector) -> None:
    idle_collector.watch("slow", lambda: lambda: (1.0,))
    with pytest.raises(NotSupported, match="Timeout while waiting for collector data."):
        idle_collector.wait_rate("slow", 60, timeout=0.2)


def test_started_lazily_by_the_first_check_and_stopped() -> None:
    ctx = CheckContext(hostname="x")
    checks = Checks(ctx)
    assert ctx.collector is None
    assert 0 <= float(checks.get("system.cpu.util[,idle]")) <= 100
    c = ctx.collector
    assert isinstance(c, Collector) and c.running
    assert ensure_collector(ctx) is c  # one collector per agent
    wait_until(lambda: c.ticks > 0, 5, "the collector thread to sample by itself")
    c.stop()
    assert not c.running
