"""Group commit: values from many connections are written in one transaction, then acknowledged.

Connection handlers `await batcher.submit(batch)`; one writer thread takes everything pending,
writes it with `store.write()` (durable on return), and only then resolves the handlers' futures,
so a reply goes out only for committed values. While one transaction commits, the next one fills
up: the busier the server, the bigger the batches. Pending values are bounded; past the bound
`submit` waits (backpressure on the senders) rather than dropping anything.

After the futures are settled (and when idle for a second) the writer calls `store.maintain()`,
where a store does deferred work (SQLite moves staged values into history) off the reply path.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

from vigil.server.store.base import Store, WriteBatch

log = logging.getLogger("vigil.ingest.batcher")

IDLE_WAIT = 1.0  # seconds a writer waits for work before it calls store.maintain() anyway


class Batcher:
    def __init__(self, open_store: Callable[[], Store], max_values: int, writers: int = 1) -> None:
        self._open_store = open_store
        self._max_values = max_values
        self._max_pending = max_values * 4
        self._pending: list[tuple[WriteBatch, asyncio.Future[None], asyncio.AbstractEventLoop]] = []
        self._pending_values = 0
        self._cond = threading.Condition()
        self._room: asyncio.Event | None = None
        self._stopping = False
        # PostgreSQL commits in parallel: while one writer waits for its commit to be flushed the
        # next batch is already being sent. SQLite allows one writer at a time, so it gets one.
        self._threads = [threading.Thread(target=self._run, name=f"history-writer-{i}", daemon=True)
                         for i in range(writers)]
        self._stats_lock = threading.Lock()
        self.written_values = 0
        self.transactions = 0

    def start(self) -> None:
        self._room = asyncio.Event()
        self._room.set()
        for t in self._threads:
            t.start()

    async def submit(self, batch: WriteBatch) -> None:
        """Returns once the batch is committed; raises the store's error if it could not be."""
        assert self._room is not None
        while self._pending_values >= self._max_pending:
            self._room.clear()
            await self._room.wait()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        with self._cond:
            if self._stopping:
                raise RuntimeError("the server is shutting down")
            self._pending.append((batch, fut, loop))
            self._pending_values += len(batch)
            self._cond.notify()
        await fut

    def stop(self, timeout: float = 30) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout)

    def _take(self) -> list[tuple[WriteBatch, asyncio.Future[None], asyncio.AbstractEventLoop]] | None:
        """What to write next: [] after IDLE_WAIT seconds without work, None once stopping and drained."""
        with self._cond:
            if not self._pending and not self._stopping:
                self._cond.wait(IDLE_WAIT)
            if not self._pending:
                return None if self._stopping else []
            taken, n = [], 0
            while self._pending and (n == 0 or n + len(self._pending[0][0]) <= self._max_values):
                item = self._pending.pop(0)
                n += len(item[0])
                taken.append(item)
            self._pending_values -= n
            return taken

    def _run(self) -> None:
        store = self._open_store()
        last_report = time.monotonic()
        busy = 0.0
        try:
            while (taken := self._take()) is not None:
                if not taken:
                    self._maintain(store)
                    continue
                merged = WriteBatch()
                for b, _, _ in taken:
                    merged.extend(b)
                t0 = time.monotonic()
                error: BaseException | None = None
                try:
                    store.write(merged)
                    with self._stats_lock:
                        self.written_values += len(merged)
                        self.transactions += 1
                except Exception as e:  # the store names what failed; every waiter hears it
                    log.error("writing %d values failed, none were stored: %s", len(merged), e)
                    error = e
                busy += time.monotonic() - t0
                for _, fut, loop in taken:
                    loop.call_soon_threadsafe(_settle, fut, error)
                for loop in {lp for _, _, lp in taken}:
                    loop.call_soon_threadsafe(self._wake)
                t0 = time.monotonic()
                self._maintain(store)
                busy += time.monotonic() - t0
                now = time.monotonic()
                if now - last_report >= 60:
                    log.info("history writer: %d values in %d transactions, busy %.1f%% of the last %.0f s",
                             self.written_values, self.transactions, 100 * busy / (now - last_report),
                             now - last_report)
                    last_report, busy = now, 0.0
        finally:
            self._maintain(store)
            store.close()

    @staticmethod
    def _maintain(store: Store) -> None:
        try:
            store.maintain()
        except Exception as e:  # the values stay where they are; the next call tries again
            log.error("history upkeep failed: %s", e)

    def _wake(self) -> None:
        if self._room is not None and self._pending_values < self._max_pending:
            self._room.set()


def _settle(fut: asyncio.Future[None], error: BaseException | None) -> None:
    if fut.done():
        return
    if error is None:
        fut.set_result(None)
    else:
        fut.set_exception(error)
