"""Supervised workers: a role's loop that raises is logged and started again, with a growing pause.

One way for every long-lived thread of the server (history writers, housekeeper and roll-up): an
expected failure (the store's StoreError: the database is away) is one log line, anything else is
logged with its traceback. Either way the worker starts again after a pause that doubles up to a
cap, and goes back to the first pause once a run lasted longer than the cap.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from vigil.server.store.base import StoreError

log = logging.getLogger("vigil.supervise")

FIRST_BACKOFF = 1.0
MAX_BACKOFF = 30.0


class Backoff:
    """Pauses between attempts: first, 2×first, 4×first, … up to cap."""

    def __init__(self, first: float = FIRST_BACKOFF, cap: float = MAX_BACKOFF) -> None:
        self.first, self.cap = first, max(first, cap)
        self._next = first

    def next(self) -> float:
        pause, self._next = self._next, min(self.cap, 2 * self._next)
        return pause

    def reset(self) -> None:
        self._next = self.first


def supervise(name: str, work: Callable[[], None], stop: threading.Event, *,
              first_backoff: float = FIRST_BACKOFF, max_backoff: float = MAX_BACKOFF,
              expected: tuple[type[Exception], ...] = (StoreError,)) -> None:
    """Run `work()` until `stop` is set; when it raises or returns early, log why and run it again."""
    backoff = Backoff(first_backoff, max_backoff)
    while not stop.is_set():
        started = time.monotonic()
        try:
            work()
            if stop.is_set():
                return
            why = "returned before it was asked to stop"
            log.error("%s %s", name, why)
        except expected as e:
            why = str(e)
            log.error("%s failed: %s", name, e)
        except Exception as e:
            why = f"{type(e).__name__}: {e}"
            log.exception("%s failed unexpectedly", name)
        if time.monotonic() - started > backoff.cap:
            backoff.reset()
        pause = backoff.next()
        log.info("%s starts again in %.1f s (%s)", name, pause, why[:200])
        stop.wait(pause)
