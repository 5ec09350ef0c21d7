"""Delivering alerts: the one function both dispatchers run, and the dispatchers.

The escalator writes an alert row (AlertLog.create) and calls `dispatcher.dispatch(alertid)`.
Whichever dispatcher it has — CeleryDispatcher for `vigil worker` processes on a broker,
LocalDispatcher for the in-process pool of `vigil up` — runs `attempt()`: it reads the row and its
media type, skips a row that is no longer to be sent, sends once, and records the result: sent,
retrying (the failed tries so far and the last error) or failed. The dispatcher then waits out the
backoff and runs the next try.

Each try carries its number. A try whose number is below the row's count of failed tries is a
duplicate of one already recorded (a broker delivering a message again) and is dropped; a row that
says sent or failed is never tried again. So a message redelivered after a worker died before it
sent causes no repeat; one redelivered after the receiver got it but before the row said sent
arrives again with the same alert id, which the receiver can drop.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.engine import Engine
from vigil.alerts.media import Context, MediaError, Message, send, timeout_of
from vigil.server.config.durations import DurationError, seconds
from vigil.server.config.tables import AlertStatus
from vigil.server.store.alertlog import AlertLog, MediaType

log = logging.getLogger("vigil.alerts")

MAX_BACKOFF = 3600.0  # Zabbix's largest attempt interval
DB_RETRY = 5.0  # seconds before a try that could not read or write the alert log is repeated


class Dispatcher(Protocol):
    def dispatch(self, alertid: int) -> None:
        """Hand the (committed) alert to delivery; returns at once."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a try came to. `status`: sent, retry (try `attempt` again in `delay` s), failed or skipped."""

    status: str
    attempt: int = 0
    delay: float = 0.0
    error: str = ""


def interval_of(media: MediaType) -> float:
    try:
        return float(min(seconds(media.attempt_interval, "attempt_interval"), MAX_BACKOFF))
    except DurationError:
        log.warning("media type %r: attempt_interval %r is not a duration; using 10s", media.name,
                    media.attempt_interval)
        return 10.0


def backoff(media: MediaType, failed: int) -> float:
    """Seconds before the try after `failed` failed ones: attempt_interval, doubled each time, at most 1 h."""
    return min(interval_of(media) * 2 ** max(failed - 1, 0), MAX_BACKOFF)


def attempt(alertlog: AlertLog, alertid: int, number: int = 0, context: Context | None = None,
            clock: Callable[[], float] = time.time) -> Outcome:
    """Try alert `alertid` once (its try number `number`, counting from 0) and record the result.

    Media failures never raise: they are recorded. Only a failure of the alert log itself (the
    database is down) raises, and the caller repeats the same try later.
    """
    alert = alertlog.get(alertid)
    if alert is None:
        log.warning("alert %d: no such alert in the alert log; nothing sent", alertid)
        return Outcome("skipped", error="no such alert")
    if alert.status in (AlertStatus.SENT, AlertStatus.FAILED):
        log.info("alert %d: already %s; not sent again", alertid, alert.status.name.lower())
        return Outcome("skipped", error=f"already {alert.status.name.lower()}")
    if alert.retries > number:
        log.info("alert %d: try %d was already made (%d failed tries recorded); dropping the duplicate",
                 alertid, number + 1, alert.retries)
        return Outcome("skipped", error="duplicate try")
    failed = alert.retries + 1
    if alert.alerttype != 0:
        return _fail(alertlog, alertid, failed, f"alert {alertid} is a command, not a message: commands are "
                                                 "run by the escalator, not by media")
    media = alertlog.media_type(alert.mediatypeid) if alert.mediatypeid is not None else None
    if media is None:
        return _fail(alertlog, alertid, failed, f"alert {alertid}: its media type (id {alert.mediatypeid}) "
                                                 "does not exist; it was deleted")
    if not media.enabled:
        return _fail(alertlog, alertid, failed, f"media type {media.name!r} is disabled")
    media = _capped(media, context)
    message = Message(alertid=alert.alertid, sendto=alert.sendto, subject=alert.subject, message=alert.message,
                      clock=alert.clock)
    try:
        send(media, message, context)
    except MediaError as e:
        error, permanent = str(e), e.permanent
    except Exception as e:  # a fault in a media module: record it, never crash the pool or the worker
        log.exception("alert %d: media type %r failed unexpectedly", alertid, media.name)
        error, permanent = f"media type {media.name!r}: internal error: {e!r}", False
    else:
        alertlog.mark_sent(alertid, int(clock()))
        log.info("alert %d sent through %r to %r (try %d)", alertid, media.name, alert.sendto, failed)
        return Outcome("sent", attempt=number)
    if permanent or failed >= max(media.maxattempts, 1):
        why = "" if permanent else f" (try {failed} of {media.maxattempts})"
        return _fail(alertlog, alertid, failed, error, why)
    alertlog.mark_retrying(alertid, failed, error)
    delay = backoff(media, failed)
    log.warning("alert %d: try %d of %d failed, next in %g s: %s", alertid, failed, media.maxattempts, delay, error)
    return Outcome("retry", attempt=failed, delay=delay, error=error)


def _capped(media: MediaType, context: Context | None) -> MediaType:
    """The media type with its time-out lowered to the context's cap, if it is above (a warning says so)."""
    if context is None or context.timeout_cap is None:
        return media
    try:
        t = timeout_of(media)
    except MediaError:
        return media  # send() reports the bad parameter
    if t <= context.timeout_cap:
        return media
    log.warning("media type %r: its timeout %g s is not below the broker's redelivery time; this try uses %g s "
                "(raise VIGIL_ALERT_REDELIVERY and restart the workers)", media.name, t, context.timeout_cap)
    return dataclasses.replace(media, params={**media.params, "timeout": context.timeout_cap})


def _fail(alertlog: AlertLog, alertid: int, failed: int, error: str, why: str = "") -> Outcome:
    alertlog.mark_failed(alertid, failed, error)
    log.error("alert %d failed%s: %s", alertid, why, error)
    return Outcome("failed", attempt=failed, error=error)


def longest_timeout(alertlog: AlertLog) -> tuple[float, str]:
    """The longest time-out of the enabled media types (and its name): a try may last that long."""
    best, name = 0.0, ""
    for media in alertlog.media_types():
        if not media.enabled:
            continue
        try:
            t = timeout_of(media)
        except MediaError:
            continue
        if t > best:
            best, name = t, media.name
    return best, name


# --- the broker (vigil worker) -----------------------------------------------------------------------


class CeleryDispatcher:
    """Sends `vigil.alerts.deliver` for each alert to the broker, for `vigil worker` processes to run."""

    def __init__(self, broker_url: str, queue: str = "vigil-alerts", redelivery: float = 30.0) -> None:
        from vigil.alerts.tasks import make_app

        self.app = make_app(broker_url, queue, redelivery)
        self.queue = queue

    def dispatch(self, alertid: int) -> None:
        try:
            self.app.send_task("vigil.alerts.deliver", args=[alertid, 0, 0.0], queue=self.queue)
        except Exception as e:  # the broker is down: the row stays queued in the alert log
            log.error("alert %d: cannot hand it to the broker (%s); it stays queued in the alert log", alertid, e)

    def close(self) -> None:
        self.app.close()


# --- the in-process pool (vigil up) ----------------------------------------------------------------


class LocalDispatcher:
    """Runs `attempt()` in a thread pool of this process, with the retries' backoff on a timer.

    `start()` picks up what the alert log still holds as queued or retrying (a previous run stopped
    before delivering it) and starts the timer; `stop()` lets running tries finish and drops the
    waiting ones (they stay queued/retrying in the log and are picked up at the next start).
    """

    def __init__(self, engine: Engine, threads: int = 4, context: Context | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.alertlog = AlertLog(engine)
        self.context = context
        self.clock = clock
        self._pool = ThreadPoolExecutor(max_workers=max(threads, 1), thread_name_prefix="alert")
        self._due: list[tuple[float, int, int, int]] = []  # (when, seq, alertid, attempt)
        self._seq = 0
        self._cond = threading.Condition()
        self._stopped = False
        self._active: set[int] = set()  # alerts waiting or being tried: one at a time per alert
        self._timer: threading.Thread | None = None
        self.counts = {"sent": 0, "retry": 0, "failed": 0, "skipped": 0, "db_errors": 0}

    def start(self) -> int:
        """Start the timer and re-dispatch the pending alerts of the log; returns how many."""
        self._timer = threading.Thread(target=self._run_timer, name="alert-timer", daemon=True)
        self._timer.start()
        pending = self.alertlog.pending()
        for alert in pending:
            self._schedule(alert.alertid, alert.retries, 0.0, new=True)
        if pending:
            log.info("alert delivery: %d pending alert(s) from the alert log picked up again", len(pending))
        return len(pending)

    def dispatch(self, alertid: int) -> None:
        self._schedule(alertid, 0, 0.0, new=True)

    def stop(self, wait: bool = True) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._timer is not None:
            self._timer.join(10)
        self._pool.shutdown(wait=wait, cancel_futures=True)
        log.info("alert delivery stopped: %s", ", ".join(f"{k} {v}" for k, v in self.counts.items()))

    def _schedule(self, alertid: int, number: int, delay: float, new: bool = False) -> None:
        with self._cond:
            if self._stopped or (new and alertid in self._active):
                return  # stopping, or already on its way (picked up from the log and dispatched too)
            self._active.add(alertid)
            self._seq += 1
            heapq.heappush(self._due, (self.clock() + delay, self._seq, alertid, number))
            self._cond.notify()

    def _run_timer(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (not self._due or self._due[0][0] > self.clock()):
                    timeout = None if not self._due else max(self._due[0][0] - self.clock(), 0.0)
                    self._cond.wait(min(timeout, 1.0) if timeout is not None else None)
                if self._stopped:
                    return
                _, _, alertid, number = heapq.heappop(self._due)
            try:
                self._pool.submit(self._try, alertid, number)
            except RuntimeError:  # the pool is shut down
                return

    def _count(self, what: str) -> None:
        with self._cond:
            self.counts[what] += 1

    def _try(self, alertid: int, number: int) -> None:
        try:
            outcome = attempt(self.alertlog, alertid, number, self.context, self.clock)
        except Exception:
            self._count("db_errors")
            log.exception("alert %d: the alert log could not be read or written; trying again in %g s",
                          alertid, DB_RETRY)
            self._schedule(alertid, number, DB_RETRY)
            return
        self._count(outcome.status)
        if outcome.status == "retry":
            self._schedule(alertid, outcome.attempt, outcome.delay)
        else:
            with self._cond:
                self._active.discard(alertid)
