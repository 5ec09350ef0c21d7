"""Low-level discovery in the server: the values of discovery rules, whoever brings them.

The scheduler hands over a polled (or dependent) rule's value after its preprocessing; ingest a
trapper rule's value from zabbix_sender and an active agent's `vfs.fs.discovery`. None of them goes
to history: `LldProcessor` applies each to the configuration (ConfigRepo.discover, in
server/config/discovery.py, which bumps the configuration version so the pollers and ingest pick the
discovered items up). It works on one thread of its own, so a big discovery never holds up polls or
ingest; a rule whose next value arrives before its last one was applied has only the newest applied.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from vigil.server.config.discovery import DiscoveryResult
from vigil.server.config.lld import DiscoveryError
from vigil.server.config.repo import ConfigRepo

log = logging.getLogger("vigil.lld")
MAX_VALUE = 16 * 1024 * 1024  # characters of one discovery value


class LldProcessor:
    def __init__(self, repo: ConfigRepo, clock: Callable[[], float] = time.time) -> None:
        self.repo = repo
        self.clock = clock
        self._pending: OrderedDict[int, str] = OrderedDict()
        self._cond = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._states: dict[int, str] = {}  # rules not supported, with why
        self.processed = 0
        self.failed = 0

    def submit(self, ruleid: int, value: str, clock_ns: int = 0) -> None:
        """Queue a rule's value (thread-safe, never blocks)."""
        with self._cond:
            self._pending.pop(ruleid, None)
            self._pending[ruleid] = value
            self._cond.notify()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lld", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                ruleid, value = self._pending.popitem(last=False)
            self.process(ruleid, value)

    def process(self, ruleid: int, value: str) -> DiscoveryResult | None:
        """Apply one value now; its failure makes the rule not supported (item_state), saying why."""
        now = int(self.clock())
        try:
            if len(value) > MAX_VALUE:
                raise DiscoveryError(f"the value is {len(value)} characters long, over the maximum of {MAX_VALUE}")
            res = self.repo.discover(ruleid, value, now)
        except DiscoveryError as e:
            self.failed += 1
            self._state(ruleid, f"Cannot apply the discovery value: {e}", now)
            return None
        except Exception as e:  # the database is away: the rule's next value tries again
            self.failed += 1
            log.warning("discovery rule %d: %s", ruleid, str(e).splitlines()[0])
            return None
        self.processed += 1
        for err in res.errors:
            log.info("discovery rule %d: %s", ruleid, err)
        self._state(ruleid, "", now)
        if res.created or res.deleted or res.lost:
            log.info("discovery rule %d: %d rows, %d kept; %d created, %d updated, %d lost, %d deleted", ruleid,
                     res.rows, res.kept, res.created, res.updated, res.lost, res.deleted)
        return res

    def _state(self, ruleid: int, error: str, now: int) -> None:
        if self._states.get(ruleid, "") == error:
            return
        self._states[ruleid] = error
        if error:
            log.info("discovery rule %d is not supported: %s", ruleid, error)
        try:
            self.repo.save_item_states([(ruleid, 1 if error else 0, error, now)])
        except Exception as e:
            log.warning("cannot record the state of discovery rule %d: %s", ruleid, str(e).splitlines()[0])
            self._states.pop(ruleid, None)
