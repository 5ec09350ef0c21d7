"""The agent's background collector: samples counters once a second, like zabbix_agentd's collector.

It keeps up to 15 minutes of history for
- the CPU counters of /proc/stat (system.cpu.util), sampled from the moment it starts;
- "watches": counters that a check asks for the first time it is used (proc.cpu.util per process
  query, container.cpu.util per cgroup). A watch not asked for in 24 hours is dropped, as Zabbix
  drops unused process queries, and at most MAX_WATCHES exist at once.

Rates are computed between the newest sample and the one `seconds` older (or the oldest one kept).
With a single CPU sample, system.cpu.util answers the average since boot, as zabbix_agentd does
right after it starts.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path

from vigil.agent.checks import CheckContext, NotSupported

log = logging.getLogger(__name__)

CPU_STATES = ("user", "nice", "system", "idle", "iowait", "interrupt", "softirq", "steal", "guest", "guest_nice")
HISTORY = 15 * 60 + 1  # one sample a second for the longest mode (avg15), plus the base sample
MAX_WATCHES = 1024
WATCH_IDLE_SECONDS = 24 * 3600
PROC_STAT = Path("/proc/stat")

Counters = tuple[int, ...]
Sampler = Callable[[], tuple[float, ...]]


def cpu_count_configured() -> int:
    return os.sysconf("SC_NPROCESSORS_CONF")


def read_cpu_counters(ncpu: int, path: Path = PROC_STAT) -> tuple[Counters | None, ...]:
    """Counters per CPU state from /proc/stat: index 0 is all CPUs, index i+1 is CPU i (None: offline).

    Linux counts guest time inside user time (and guest_nice inside nice); it is taken out so the
    states add up to the total without counting guest time twice.
    """
    out: list[Counters | None] = [None] * (ncpu + 1)
    with path.open() as f:
        for line in f:
            if not line.startswith("cpu"):
                break
            fields = line.split()
            name = fields[0]
            values = [int(v) for v in fields[1:11]]
            values += [0] * (10 - len(values))
            values[0] = max(0, values[0] - values[8])
            values[1] = max(0, values[1] - values[9])
            idx = 0 if name == "cpu" else int(name[3:]) + 1
            if idx < len(out):
                out[idx] = tuple(values)
    return tuple(out)


@dataclass
class Watch:
    sampler: Sampler
    history: deque[tuple[float, tuple[float, ...]]] = field(default_factory=lambda: deque(maxlen=HISTORY))
    error: str | None = None
    last_used: float = field(default_factory=time.monotonic)


def window_base(times: list[float], seconds: float) -> int:
    """Index of the sample to compare the newest one with: the oldest within `seconds` of it."""
    newest = times[-1]
    for i, t in enumerate(times[:-1]):
        if newest - t <= seconds + 0.5:
            return i
    return len(times) - 2


class Collector:
    """Samples /proc/stat and the registered watches every `interval` seconds in a daemon thread."""

    def __init__(self, interval: float = 1.0, max_watches: int = MAX_WATCHES) -> None:
        self.interval = interval
        self.max_watches = max_watches
        self.ncpu = cpu_count_configured()
        self._cpu: deque[tuple[float, tuple[Counters | None, ...]]] = deque(maxlen=HISTORY)
        self._watches: dict[Hashable, Watch] = {}
        self._cond = threading.Condition(threading.RLock())
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.ticks = 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        with self._cond:
            if self.running:
                return
            self._stop.clear()
            self._sample_cpu()
            self._thread = threading.Thread(target=self._run, name="vigil-collector", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    def _run(self) -> None:
        due = time.monotonic() + self.interval
        while not self._stop.wait(max(0.0, due - time.monotonic())):
            due += self.interval
            if due < time.monotonic():  # we fell behind (suspended, overloaded): do not catch up in a burst
                due = time.monotonic() + self.interval
            try:
                self.tick()
            except Exception:  # the collector must outlive one bad sample
                log.exception("collector tick failed")

    def tick(self) -> None:
        with self._cond:
            self._sample_cpu()
            now = time.monotonic()
            for key in [k for k, w in self._watches.items() if now - w.last_used > WATCH_IDLE_SECONDS]:
                del self._watches[key]
            for w in self._watches.values():
                self._sample_watch(w)
            self.ticks += 1
            self._cond.notify_all()

    def _sample_cpu(self) -> None:
        try:
            counters = read_cpu_counters(self.ncpu)
        except (OSError, ValueError) as e:
            log.warning("cannot read %s: %s", PROC_STAT, e)
            counters = (None,) * (self.ncpu + 1)
        self._cpu.append((time.monotonic(), counters))

    @staticmethod
    def _sample_watch(w: Watch) -> None:
        try:
            values = w.sampler()
        except NotSupported as e:
            w.error = str(e)
            return
        except (OSError, ValueError) as e:
            w.error = f"Cannot collect data: {e}"
            return
        except Exception as e:  # a sampler's bug ends neither this tick nor the other watches
            log.exception("collector sampler failed")
            w.error = f"Cannot collect data: {type(e).__name__}: {e}"
            return
        w.error = None
        w.history.append((time.monotonic(), values))

    # --- system.cpu.util ---------------------------------------------------------------------------

    def cpu_util(self, cpu: int | None, state: str, seconds: int) -> float:
        """Percent of time CPU `cpu` (None: all) spent in `state` over the last `seconds`."""
        idx = 0 if cpu is None else cpu + 1
        s = CPU_STATES.index(state)
        with self._cond:
            if not self._cpu:
                raise NotSupported("Collector is not started.")
            if idx >= self.ncpu + 1:
                raise NotSupported("Cannot obtain CPU information.")
            times = [t for t, _ in self._cpu]
            now = self._cpu[-1][1][idx]
            if now is None:
                raise NotSupported("Cannot obtain CPU information.")
            if len(times) == 1:
                then: Counters = (0,) * len(CPU_STATES)
            else:
                base = window_base(times, seconds)
                # the base may be missing if the CPU was offline then: use the next sample that has it
                candidates = [c[idx] for _, c in list(self._cpu)[base:-1] if c[idx] is not None]
                then = candidates[0] if candidates else (0,) * len(CPU_STATES)
        deltas = [max(0, a - b) for a, b in zip(now, then, strict=True)]
        total = sum(deltas)
        return 0.0 if total == 0 else 100.0 * deltas[s] / total

    # --- watches ---------------------------------------------------------------------------------

    def watch(self, key: Hashable, sampler: Callable[[], Sampler]) -> None:
        """Start sampling `key` (made by `sampler()` the first time) if it is not sampled yet."""
        with self._cond:
            w = self._watches.get(key)
            if w is not None:
                w.last_used = time.monotonic()
                return
            if len(self._watches) >= self.max_watches:
                raise NotSupported(f"Too many collector queries (at most {self.max_watches}).")
            w = Watch(sampler())
            self._sample_watch(w)
            self._watches[key] = w

    def rate(self, key: Hashable, seconds: int) -> tuple[tuple[float, ...], float] | None:
        """Per-counter increase and elapsed seconds over the last `seconds`; None if under 2 samples."""
        with self._cond:
            w = self._watches.get(key)
            if w is None:
                return None
            w.last_used = time.monotonic()
            if w.error is not None:
                raise NotSupported(w.error)
            if len(w.history) < 2:
                return None
            hist = list(w.history)
        base = window_base([t for t, _ in hist], seconds)
        (t0, v0), (t1, v1) = hist[base], hist[-1]
        return tuple(b - a for a, b in zip(v0, v1, strict=True)), t1 - t0

    def wait_rate(self, key: Hashable, seconds: int, timeout: float) -> tuple[tuple[float, ...], float]:
        """rate(), waiting for the collector's next samples until `timeout` seconds have passed."""
        deadline = time.monotonic() + timeout
        while True:
            r = self.rate(key, seconds)
            if r is not None:
                return r
            left = deadline - time.monotonic()
            if left <= 0 or not self.running:
                raise NotSupported("Timeout while waiting for collector data.")
            with self._cond:
                self._cond.wait(min(left, self.interval * 2))


def ensure_collector(ctx: CheckContext) -> Collector:
    """The context's collector, created and started here if the agent has not started it yet."""
    with ctx.lock:
        c = ctx.collector
        if c is None:
            c = ctx.collector = Collector()
        if not c.running:
            c.start()
        return c
