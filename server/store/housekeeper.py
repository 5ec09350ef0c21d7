"""The housekeeper role: roll up hourly trends and apply per-item retention, each on its interval.

One loop, like Zabbix's housekeeper process, that says what it did after every run:
"housekeeper deleted 1200 history rows, 30 trend rows, dropped 2 partitions in 0.41 sec".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from vigil.server.store.base import Retention, Store, StoreError
from vigil.server.supervise import supervise

log = logging.getLogger("vigil.housekeeper")


class Intervals(Protocol):
    """What the loop needs from Settings: seconds between housekeeping and between roll-ups."""

    @property
    def housekeeping_interval(self) -> float: ...

    @property
    def trends_interval(self) -> float: ...


def housekeep_once(store: Store, retention_source: Callable[[], Iterable[Retention]], now: int) -> None:
    t0 = time.monotonic()
    retention = list(retention_source())
    report = store.housekeep(now, retention)
    store.prune_sessions(now - store.SESSION_EXPIRY)
    dropped = f", dropped {len(report.partitions_dropped)} partitions ({', '.join(report.partitions_dropped)})" \
        if report.partitions_dropped else ""
    log.info("housekeeper deleted %d history rows, %d trend rows of %d items%s in %.3f sec",
             report.history_rows, report.trend_rows, len(retention), dropped, time.monotonic() - t0)


def rollup_once(store: Store, now: int) -> None:
    t0 = time.monotonic()
    hours = store.rollup_trends(now)
    log.info("trend roll-up recomputed %d hours in %.3f sec", hours, time.monotonic() - t0)


def supervised(
    open_store: Callable[[], Store],
    settings: Intervals,
    retention_source: Callable[[], Iterable[Retention]],
    stop: threading.Event,
    clock: Callable[[], float] = time.time,
    first_backoff: float = 1.0,
) -> None:
    """The housekeeper thread: `run` on a store of its own, started again (with a fresh store) when
    it fails in a way the store does not name; returns once `stop` is set."""

    def life() -> None:
        store = open_store()
        try:
            run(store, settings, retention_source, stop, clock)
        finally:
            store.close()

    supervise("housekeeper", life, stop, first_backoff=first_backoff)


def run(
    store: Store,
    settings: Intervals,
    retention_source: Callable[[], Iterable[Retention]],
    stop: threading.Event,
    clock: Callable[[], float] = time.time,
) -> None:
    """Run until `stop` is set. A run that fails with StoreError (the database is away, a statement
    timed out) is logged and tried again at its next turn; anything else ends the loop for the
    supervisor (`supervised`) to log with its traceback and start again."""
    hk_every, tr_every = float(settings.housekeeping_interval), float(settings.trends_interval)
    if hk_every <= 0 or tr_every <= 0:
        raise ValueError(f"housekeeping_interval={hk_every} and trends_interval={tr_every} must both be > 0")
    next_rollup = next_housekeep = time.monotonic()
    while not stop.is_set():
        mono = time.monotonic()
        if mono >= next_rollup:
            next_rollup = mono + tr_every
            try:
                rollup_once(store, int(clock()))
            except StoreError as e:
                log.error("trend roll-up failed: %s", e)
        if mono >= next_housekeep and not stop.is_set():
            next_housekeep = mono + hk_every
            try:
                housekeep_once(store, retention_source, int(clock()))
            except (StoreError, ValueError) as e:
                log.error("housekeeping failed: %s", e)
        stop.wait(max(0.0, min(next_rollup, next_housekeep) - time.monotonic()))
