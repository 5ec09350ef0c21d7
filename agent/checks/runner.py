"""Runs checks with a deadline, so that no check can stall a passive worker or the active items.

Python cannot stop a thread, and a check can block in the kernel where no timeout reaches it:
statvfs() on a hung NFS mount, open() of a FIFO nobody writes to, a DNS lookup that does not
return. So a check runs in a thread of this pool and its caller waits for it at most `Timeout`
seconds. When the deadline passes the caller answers `ZBX_NOTSUPPORTED: Timeout while waiting for
data.` (zabbix_agentd 6.0's words for a check it had to give up on) and goes on; the thread is
abandoned: it stays blocked where it is and comes back to the pool if the call ever returns.

Abandoned threads are bounded twice:
- while an evaluation of a key is abandoned, the same key (same text) answers the timeout at once
  instead of starting another one, so an item polled every minute on a dead mount holds one thread,
  not one more each minute;
- the pool never has more than `max_threads` threads, abandoned ones included. Past that a check
  waits in the queue for a free thread and, if none frees before its deadline, answers the timeout
  without having run.

A check whose deadline passed before a thread took it is dropped, never run late. The caller's
context variables (who asked, for LogRemoteCommands) are carried into the thread.

Checks.get (agent/checks/__init__.py) gives each key exactly Timeout, except keys that bound their
own waits by Timeout (sockets, subprocesses, the collector, file scans): those get half a second
more, so their own answer ("Timeout was reached.", 0 for a silent service) comes first and this
deadline only catches what they cannot bound (a DNS lookup, a blocked open or read). agent.ping,
agent.version and agent.hostname run in the caller's thread: they cannot block.

Other designs and why not: opening files with O_NONBLOCK only covers FIFOs, not NFS or DNS; a
process per check (zabbix_agentd's fork for its threaded checks) costs milliseconds per value and
breaks the shared collector; signal.alarm works only in the main thread.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("vigil.agent.checks")

TIMEOUT_MESSAGE = "Timeout while waiting for data."
MAX_THREADS = 32  # running and abandoned checks together
IDLE_EXIT_SECONDS = 60.0

_QUEUED, _RUNNING, _DONE, _CANCELLED, _ABANDONED = range(5)


class CheckTimeout(Exception):
    """The check did not return within its deadline; str(exc) is the reason to answer."""


class _Job:
    __slots__ = ("name", "func", "context", "state", "result", "error", "done", "started")

    def __init__(self, name: str, func: Callable[[], Any]) -> None:
        self.name = name
        self.func = func
        self.context = contextvars.copy_context()
        self.state = _QUEUED
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.started = 0.0


class CheckRunner:
    """A small thread pool whose `run()` gives up on a call after a deadline (see the module doc)."""

    def __init__(self, max_threads: int = MAX_THREADS, idle_exit: float = IDLE_EXIT_SECONDS) -> None:
        if max_threads < 1:
            raise ValueError("max_threads must be at least 1")
        self.max_threads = max_threads
        self.idle_exit = idle_exit
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._queued = 0
        self._idle = 0
        self._threads = 0
        self._abandoned: dict[str, int] = {}  # key text -> abandoned evaluations still running

    @property
    def abandoned(self) -> int:
        with self._lock:
            return sum(self._abandoned.values())

    @property
    def threads(self) -> int:
        with self._lock:
            return self._threads

    def run(self, name: str, func: Callable[[], Any], timeout: float, message: str = TIMEOUT_MESSAGE) -> Any:
        """func()'s result or exception; CheckTimeout(message) if it takes over `timeout` seconds."""
        job = _Job(name, func)
        with self._lock:
            if name in self._abandoned:
                raise CheckTimeout(message)
            self._jobs.put(job)
            self._queued += 1
            if self._queued > self._idle and self._threads < self.max_threads:
                self._threads += 1
                threading.Thread(target=self._work, name=f"check-{self._threads}", daemon=True).start()
        if not job.done.wait(timeout):
            with self._lock:
                if job.state == _QUEUED:
                    job.state = _CANCELLED
                    raise CheckTimeout(message)
                if job.state == _RUNNING:
                    job.state = _ABANDONED
                    self._abandoned[name] = self._abandoned.get(name, 0) + 1
                    log.warning("check [%s] did not return within %g s; its thread is left behind "
                                "(%d left behind now)", name, timeout, sum(self._abandoned.values()))
                    raise CheckTimeout(message)
            job.done.wait()  # finished just now
        if job.error is not None:
            raise job.error
        return job.result

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            try:
                job = self._jobs.get(timeout=self.idle_exit)
            except queue.Empty:
                with self._lock:
                    self._idle -= 1
                    if self._queued <= self._idle:
                        self._threads -= 1
                        return
                continue
            with self._lock:
                self._idle -= 1
                self._queued -= 1
                if job.state == _CANCELLED:
                    continue
                job.state = _RUNNING
            job.started = time.monotonic()
            try:
                job.result = job.context.run(job.func)
            except BaseException as e:  # handed to the caller, who decides
                job.error = e
            with self._lock:
                if job.state == _ABANDONED:
                    n = self._abandoned.pop(job.name) - 1
                    if n:
                        self._abandoned[job.name] = n
                    log.info("check [%s] returned after %.1f s, past its deadline; its value is dropped",
                             job.name, time.monotonic() - job.started)
                job.state = _DONE
            job.done.set()
            job = None  # type: ignore[assignment]  # do not keep the last result alive while idle
