"""Active-agent sessions: the highest committed value id per session, and one batch in flight each.

An agent resends a batch whose reply it did not get, with the same session and ids. Ids at or below
the session's last *committed* id are dropped as duplicates. A resend that arrives while the first
batch is still being written must not be told `success` for values that are not durable yet, nor be
stored twice: so each session has at most one batch between "ids read" and "commit settled", and a
second request of that session waits for it (`turn`). The ids move forward only once the commit
succeeded (`committed`); if it failed, the waiting resend finds the old ids and stores its values.

Like Zabbix's server, a session silent for a day is forgotten (`prune`; the store's copy is pruned
by the housekeeper through Store.prune_sessions).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

from vigil.server.store.base import Store

SESSION_EXPIRY = Store.SESSION_EXPIRY


class AgentSessions:
    def __init__(self, last_ids: dict[str, int], clock: Callable[[], float] = time.monotonic) -> None:
        self.last_ids = last_ids  # session -> highest committed id; shared with the caller
        self._inflight: dict[str, asyncio.Future[None]] = {}
        self._seen: dict[str, float] = {}
        self._clock = clock
        self._next_prune = clock() + 3600

    @contextlib.asynccontextmanager
    async def turn(self, session: str) -> AsyncIterator[None]:
        """Hold the session's one slot from reading its ids until its batch's commit is settled."""
        if not session:
            yield
            return
        while (busy := self._inflight.get(session)) is not None:
            await asyncio.shield(busy)
        mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inflight[session] = mine
        try:
            yield
        finally:
            del self._inflight[session]
            mine.set_result(None)

    def committed(self, sessions: dict[str, int]) -> None:
        """The batch carrying these highest ids is durable: later resends of them are duplicates."""
        now = self._clock()
        for session, top in sessions.items():
            if top > self.last_ids.get(session, 0):
                self.last_ids[session] = top
            self._seen[session] = now
        if now >= self._next_prune:
            self.prune(now)

    def prune(self, now: float | None = None) -> int:
        """Forget sessions without a committed batch for SESSION_EXPIRY seconds; returns how many."""
        now = self._clock() if now is None else now
        self._next_prune = now + 3600
        for session in list(self.last_ids):
            self._seen.setdefault(session, now)  # read from the store at start: its age counts from now
        old = [s for s, t in self._seen.items() if now - t >= SESSION_EXPIRY and s not in self._inflight]
        for s in old:
            self._seen.pop(s, None)
            self.last_ids.pop(s, None)
        return len(old)
