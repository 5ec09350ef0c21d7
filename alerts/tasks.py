"""The Celery app and its one task, `vigil.alerts.deliver`, run by `vigil worker`.

Late acknowledgement: a message is acknowledged only once its try is recorded in the alert log,
so a worker that dies mid-task loses nothing — RabbitMQ requeues the message when the connection
drops, Redis when it has been unacknowledged for `visibility_timeout` (VIGIL_ALERT_REDELIVERY
seconds, not Celery's default hour). A pool process killed mid-task is noticed by its worker, which
requeues the message at once (task_reject_on_worker_lost). Prefetch is 1, so a worker never holds
messages it is not working on. No result backend: the alert log is the record.

A retry is a new message with a countdown. A worker holds a message with a countdown unacknowledged
until it is due, so on Redis it would come back while still held if the countdown were longer than
the visibility time-out; a long wait is therefore split into hops shorter than it (the task, run
before its `not_before`, only sends itself on).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import Celery, Task
from vigil.alerts.delivery import DB_RETRY, attempt
from vigil.alerts.media import Context
from vigil.server.store.alertlog import AlertLog

log = logging.getLogger("vigil.alerts")

TASK = "vigil.alerts.deliver"
REDIS_SCHEMES = ("redis://", "rediss://", "redis+socket://")


def celery_config(broker_url: str, queue: str, redelivery: float) -> dict[str, Any]:
    redis = broker_url.startswith(REDIS_SCHEMES)
    transport: dict[str, Any] = {}
    if redis:
        sweep = max(1, int(redelivery // 4))
        transport = {
            "visibility_timeout": redelivery,
            # Look for messages of dead workers often enough to give them back within `redelivery`
            # (kombu's default sweeps only every 100 s).
            "unacked_restore_interval": sweep,
            "unacked_restore_throttle": 1,
            # A worker killed inside its sweep leaves the sweep's lock behind: kombu's default (300 s)
            # would stop every worker's sweep, so all redelivery, for five minutes.
            "unacked_mutex_expire": sweep,
            "socket_timeout": 10,
            "socket_connect_timeout": 5,
        }
    return {
        "broker_url": broker_url,
        "broker_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        "broker_connection_timeout": 5,
        "task_default_queue": queue,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,  # the task never raises: failures are in the alert log
        "worker_prefetch_multiplier": 1,
        "task_ignore_result": True,
        "result_backend": None,
        "task_serializer": "json",
        "accept_content": ["json"],
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "worker_enable_remote_control": False,
        "task_publish_retry_policy": {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5},
    }


def make_app(broker_url: str, queue: str, redelivery: float) -> Celery:
    app = Celery("vigil", set_as_current=False)
    app.config_from_object(celery_config(broker_url, queue, redelivery))
    return app


@dataclass
class WorkerState:
    """What the task needs in a worker: set by configure() in the main process before the pool forks."""

    database_url: str = ""
    redelivery: float = 30.0
    longest_timeout: float = 0.0  # of the media types when the worker started
    context: Context | None = None
    _log: AlertLog | None = None
    _pid: int = 0
    _lock: threading.Lock = threading.Lock()

    def alertlog(self) -> AlertLog:
        with self._lock:
            if self._log is None or self._pid != os.getpid():  # an engine does not survive a fork
                from vigil.server.config.migrate import engine_for

                if not self.database_url:
                    raise RuntimeError("the alert worker is not configured: call vigil.alerts.tasks.configure()")
                self._log, self._pid = AlertLog(engine_for(self.database_url)), os.getpid()
            return self._log


STATE = WorkerState()
app = make_app("memory://", "vigil-alerts", 30.0)  # configured for real by configure(); nothing read at import


def configure(broker_url: str, queue: str, redelivery: float, database_url: str,
              scripts_dir: Path | None = None, longest_timeout: float = 0.0) -> Celery:
    """Set up this process's worker: `longest_timeout` is the longest media time-out (below `redelivery`)."""
    app.conf.update(celery_config(broker_url, queue, redelivery))
    STATE.database_url, STATE.redelivery, STATE.longest_timeout = database_url, redelivery, longest_timeout
    # A try is cut off before the broker would hand its message to a second worker.
    cap = timeout_cap(redelivery) if broker_url.startswith(REDIS_SCHEMES) else None
    # A media type added later may take up to the cap: plan the last hop for that.
    STATE.longest_timeout = cap if cap else longest_timeout
    STATE.context = Context(scripts_dir or Path("alertscripts"), cap)
    STATE._log = None
    return app


def timeout_cap(redelivery: float) -> float:
    """The longest a try may take on Redis: 80 % of the visibility time-out, the rest for the countdown."""
    return redelivery * 0.8


def hop(redelivery: float, longest_timeout: float = 0.0) -> float:
    """The longest countdown of the message that makes the try. A worker holds it for the countdown and
    then for the try: both together stay below the visibility time-out, or Redis would hand it out a
    second time."""
    return max(min(redelivery / 3, (redelivery - longest_timeout) / 2), 0.5)


def countdown_for(wait: float, redelivery: float, longest_timeout: float) -> float:
    """The countdown of the next message when the try is due in `wait` seconds: the whole wait if it fits
    in the last hop, else a hop of at most half the redelivery time that leaves the last hop to do."""
    last = hop(redelivery, longest_timeout)
    if wait <= last:
        return wait
    return min(wait - last, redelivery / 2)


def publish(task: Task, alertid: int, number: int, due: float) -> None:
    """Send try `number` of `alertid` to run at time `due` (a wall clock), in hops if the wait is long."""
    wait = max(due - time.time(), 0.0)
    countdown = countdown_for(wait, STATE.redelivery, STATE.longest_timeout)
    for left in range(2, -1, -1):
        try:
            task.apply_async(args=[alertid, number, due], countdown=countdown or None)
            return
        except Exception as e:  # the broker is unreachable just now (kombu has retried already)
            if not left:
                log.error("alert %d: cannot schedule try %d, the broker is unreachable (%s); the alert log keeps "
                          "it as %s", alertid, number + 1, e, "queued" if number == 0 else "retrying")
                return
            time.sleep(1)


@app.task(name=TASK, bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def deliver(self: Task, alertid: int, number: int = 0, not_before: float = 0.0) -> str:
    """Try alert `alertid` once (try `number`), or send the try on if it is not due yet."""
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in (alertid, number)) or \
            not isinstance(not_before, int | float):
        log.error("%s: bad arguments %r, expected (alertid, try number, not_before); dropped", TASK,
                  (alertid, number, not_before))
        return "rejected"
    if not_before and not_before - time.time() > 0.05:
        publish(self, alertid, number, not_before)
        return "waiting"
    try:
        outcome = attempt(STATE.alertlog(), alertid, number, STATE.context)
    except Exception:
        log.exception("alert %d: the alert log could not be read or written; trying again in %g s", alertid,
                      DB_RETRY)
        publish(self, alertid, number, time.time() + DB_RETRY)
        return "db-error"
    if outcome.status == "retry":
        publish(self, alertid, outcome.attempt, time.time() + outcome.delay)
    return outcome.status
