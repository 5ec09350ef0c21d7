"""Group commit: values from many connections are written in one transaction, then acknowledged.

Connection handlers `await batcher.submit(batch)`; one writer thread takes everything pending,
writes it with `store.write()` (durable on return), and only then resolves the handlers' futures,
so a reply goes out only for committed values. While one transaction commits, the next one fills
up: the busier the server, the bigger the batches. Pending values are bounded; past the bound
`submit` waits (backpressure on the senders) rather than dropping anything.

After the futures are settled the writer hands the committed batch to the `on_commit` hook (the
trigger engine's queue). After that (and when idle for a second) the writer calls `store.maintain()`,
where a store does deferred work (SQLite moves staged values into history) off the reply path.

Writers are supervised (server/supervise.py): one whose store cannot open, or that fails with
anything but a StoreError, settles what it holds with that error, is logged and starts again.

On PostgreSQL the event loop also writes itself (`on_loop` stores, Store.write_on_loop): a batch of
values alone that finds one of these stores idle is written from the handler, without the hand-over
to a writer thread and back — on a busy machine those wake-ups are much of a small transaction's
time. Anything else, or a batch such a store hands back unsent (a partition it does not know, a
broken connection: nothing stored), goes to the writer threads as above; the store is then
refreshed (reconnected, its partitions reloaded) on a thread of its own before it writes again.
A batch that finds every loop store out writing waits on the loop for the first to come back and
goes in one transaction with the others that waited (the same group commit, without threads): the
busier the machine, the more values per transaction, and PostgreSQL's cost per value falls with it.
If the last store out writing goes away (to reconnect), the waiting batches go to the threads.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Coroutine

from vigil.server.store.base import Store, StoreError, WriteBatch, WriteUnsent
from vigil.server.supervise import supervise

log = logging.getLogger("vigil.ingest.batcher")

IDLE_WAIT = 1.0  # seconds a writer waits for work before it calls store.maintain() anyway


class Batcher:
    # A writer that failed starts again after this pause, doubled each time up to the cap.
    RESTART_FIRST = 0.25
    RESTART_MAX = 5.0

    def __init__(self, open_store: Callable[[], Store], max_values: int, writers: int = 1,
                 timeout: float = 3.0, sessions: dict[str, int] | None = None,
                 on_commit: Callable[[WriteBatch], None] | None = None, on_loop: int = 0) -> None:
        self._open_store = open_store
        # Called on the writer thread with each committed batch (the trigger engine queues it: it
        # must return at once); its failure is logged, never the writer's.
        self._on_commit = on_commit
        self._max_values = max_values
        self._max_pending = max_values * 4
        self._timeout = timeout
        self._pending: list[_Entry] = []
        self._pending_values = 0
        self._cond = threading.Condition()
        self._room: asyncio.Event | None = None
        self._stopping = False
        self._stop = threading.Event()
        self._failing: dict[int, BaseException] = {}  # writer number -> why it is not running
        # PostgreSQL commits in parallel: while one writer waits for its commit to be flushed the
        # next batch is already being sent. SQLite allows one writer at a time, so it gets one.
        self._threads = [threading.Thread(target=self._supervised, args=(i,), name=f"history-writer-{i}", daemon=True)
                         for i in range(writers)]
        self._stats_lock = threading.Lock()
        self.written_values = 0
        self.transactions = 0
        self._committed_sessions = dict(sessions or {})
        # Stores whose writes the event loop drives itself (Store.write_on_loop, PostgreSQL's): a batch
        # that finds one idle is written at once, with no hand-over to a writer thread and back.
        self._on_loop = on_loop
        self._loop_stores: list[Store] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.written_on_loop = 0
        # Group commit on the loop: batches that find every loop store busy wait here and go in one
        # transaction with the next store that comes back (see _join_group).
        self._group: list[_Waiter] = []
        self._group_values = 0
        self._writing_on_loop = 0  # loop stores out writing now
        self._loop_kind: Store | None = None  # a loop store, asked what it takes (takes_on_loop)
        self._group_tasks: set[asyncio.Task[None]] = set()

    @property
    def idle_loop_stores(self) -> int:
        """Stores ready for the event loop's writes now (read on the loop)."""
        return len(self._loop_stores)

    def committed_sessions(self) -> dict[str, int]:
        """Agent sessions' highest ids as committed: those given at start, then every write's that returned."""
        with self._stats_lock:
            return dict(self._committed_sessions)

    def start(self) -> None:
        self._room = asyncio.Event()
        self._room.set()
        self._loop = asyncio.get_running_loop()
        for t in self._threads:
            t.start()
        for _ in range(self._on_loop):
            self._open_for_loop(None)

    def _open_for_loop(self, store: Store | None) -> None:
        if self._stop.is_set():
            if store is not None:
                store.close()
            return
        threading.Thread(target=self._open_loop_store, args=(store,), name="history-loop-store", daemon=True).start()

    def _open_loop_store(self, store: Store | None) -> None:
        """On a thread of its own: (re)open a store for the event loop's writes, hand it to the loop.
        Until then, or while its database is away, the writer threads take every batch."""
        pause = self.RESTART_FIRST
        while not self._stop.is_set():
            try:
                if store is None:
                    store = self._open_store()
                if not getattr(store, "writes_on_loop", False):
                    store.close()
                    return  # a store that only writes on a thread (SQLite, a site's forwarding store)
                if store.refresh():
                    break
            except Exception as e:
                log.debug("a store for the event loop's writes cannot open (%s): again in %.1f s", e, pause)
            self._stop.wait(pause)
            pause = min(self.RESTART_MAX, 2 * pause)
        else:
            if store is not None:
                store.close()
            return
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(self._adopt, store)
        except RuntimeError:  # the loop is closed: the server stopped
            store.close()

    def _adopt(self, store: Store) -> None:
        """A loop store is ready: it writes the batches that waited for it (one group), or waits idle."""
        if self._stop.is_set():
            store.close()
            return
        self._loop_kind = store
        group = [(b, fut) for b, fut in self._group if not fut.done()]  # a cancelled waiter's values stay out
        self._group, self._group_values = [], 0
        if not group:
            self._loop_stores.append(store)
            return
        self._writing_on_loop += 1  # the store is out writing from now: later batches join the next group
        self._spawn(self._write_group(group, store))

    def _spawn(self, work: Coroutine[None, None, None]) -> None:
        task = asyncio.ensure_future(work)
        self._group_tasks.add(task)
        task.add_done_callback(self._group_tasks.discard)

    def _done_writing(self) -> None:
        """A loop store's write ended. If no other is out writing, none will come back soon to take the
        group that waits (its store went to reconnect): the writer threads take those batches."""
        self._writing_on_loop -= 1
        if self._writing_on_loop == 0 and self._group:
            group, self._group, self._group_values = self._group, [], 0
            self._spawn(self._to_threads(group))

    async def _write_on_loop(self, batch: WriteBatch) -> tuple[bool, Store | None]:
        """Write the batch with an idle store of the loop's: (True, None) once committed; (False, None)
        when the store declined it; (False, store) when the store handed it back unsent (nothing stored:
        the writer threads take it, and the store is refreshed once they did, so it sees a partition
        they made)."""
        store = self._loop_stores.pop()
        self._writing_on_loop += 1
        try:
            return await self._write_with(store, batch)
        finally:
            self._done_writing()

    async def _write_with(self, store: Store, batch: WriteBatch) -> tuple[bool, Store | None]:
        try:
            done = await store.write_on_loop(batch)
        except WriteUnsent as e:
            log.info("a write on the event loop was handed to the writer threads: %s", e)
            return False, store
        except StoreError:  # the commit's outcome is unknown, or the batch is bad: its client hears it
            if store.is_open:
                self._adopt(store)
            else:
                self._open_for_loop(store)
            raise
        except BaseException:  # cancelled: the store closed its connection
            self._open_for_loop(store)
            raise
        if not done:  # declined with nothing sent: a store still open is ready for the next batch
            if store.is_open:
                self._adopt(store)
                return False, None
            return False, store
        self._adopt(store)
        with self._stats_lock:
            self.written_values += len(batch)
            self.written_on_loop += len(batch)
            self.transactions += 1
        if self._on_commit is not None:
            try:
                self._on_commit(batch)
            except Exception:
                log.exception("the on-commit hook failed for %d values", len(batch))
        return True, None

    async def submit(self, batch: WriteBatch) -> None:
        """Returns once the batch is committed; raises the store's error if it could not be.

        A batch no writer has taken within the timeout (VIGIL_TIMEOUT) fails with StoreError, so a
        client hears `failed` rather than waiting on a writer that cannot reach the store. Once a
        writer has taken it, the store's own time-outs bound the wait.
        """
        assert self._room is not None
        unsent: Store | None = None
        if self._loop_stores and not self._pending and not self._group:  # the store declines what it does not write
            done, unsent = await self._write_on_loop(batch)
            if done:
                return
        elif self._joins_group(batch):
            await self._join_group(batch)
            return
        try:
            await self._submit(batch)
        finally:
            if unsent is not None:
                self._open_for_loop(unsent)

    def _joins_group(self, batch: WriteBatch) -> bool:
        kind = self._loop_kind
        return (kind is not None and self._writing_on_loop > 0 and not self._pending
                and self._group_values + len(batch) <= kind.loop_max_values and kind.takes_on_loop(batch))

    async def _join_group(self, batch: WriteBatch) -> None:
        """Wait for the next loop store to come back and be written with it, in one transaction with
        the other batches that waited (a group commit: while the machine is busy, transactions grow
        and PostgreSQL's cost per value falls, and no one waits longer than for one commit more)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._group.append((batch, fut))
        self._group_values += len(batch)
        await fut

    async def _write_group(self, group: list[_Waiter], store: Store) -> None:
        """Write the batches that waited for a loop store as one transaction; what the store hands back
        unsent goes to the writer threads, each batch on its own (its own outcome for its own client)."""
        merged = WriteBatch()
        for b, _ in group:
            merged.extend(b)
        try:
            try:
                done, unsent = await self._write_with(store, merged)
            finally:
                self._done_writing()
        except Exception as e:  # the commit's outcome is unknown, or a row is bad: every client hears it
            _settle_waiters(group, e)  # (as the writer threads do with the batches they merge)
            return
        except BaseException:
            _settle_waiters(group, RuntimeError("the server is shutting down: values not stored"))
            raise
        if done:
            _settle_waiters(group, None)
            return
        try:
            await self._to_threads(group)
        finally:
            if unsent is not None:  # refreshed after the threads wrote: it sees a partition they made
                self._open_for_loop(unsent)

    async def _to_threads(self, group: list[_Waiter]) -> None:
        group = [(b, fut) for b, fut in group if not fut.done()]
        outcomes = await asyncio.gather(*(self._submit(b) for b, _ in group), return_exceptions=True)
        for (_, fut), outcome in zip(group, outcomes, strict=True):
            _settle(fut, outcome if isinstance(outcome, BaseException) else None)

    async def _submit(self, batch: WriteBatch) -> None:
        assert self._room is not None
        if self._pending_values >= self._max_pending:
            try:
                async with asyncio.timeout(self._timeout):
                    while self._pending_values >= self._max_pending:
                        self._room.clear()
                        await self._room.wait()
            except TimeoutError:
                raise StoreError(self._not_taken("the history writers made no room for more values")) from None
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        entry = (batch, fut, loop)
        with self._cond:
            if self._stopping:
                raise RuntimeError("the server is shutting down")
            self._pending.append(entry)
            self._pending_values += len(batch)
            self._cond.notify()
        expiry = loop.call_later(self._timeout, self._expire, entry)
        try:
            await fut
        finally:
            expiry.cancel()

    def stop(self, timeout: float = 30) -> None:
        with self._cond:
            self._stopping = True
            self._stop.set()
            self._cond.notify_all()
        for t in self._threads:
            t.join(timeout)
        for store in self._loop_stores:
            try:
                store.close()
            except Exception as e:
                log.warning("closing the history store failed: %s", e)
        self._loop_stores.clear()
        with self._cond:  # left by writers that could not run: their clients must not wait forever
            left, self._pending, self._pending_values = self._pending, [], 0
        _settle_all(left, RuntimeError("the server is shutting down: values not stored"))

    def _expire(self, entry: _Entry) -> None:
        """On the event loop, after the timeout: fail the entry if it is still waiting for a writer."""
        with self._cond:
            for k, e in enumerate(self._pending):
                if e is entry:
                    del self._pending[k]
                    self._pending_values -= len(entry[0])
                    break
            else:
                return  # a writer has it: its outcome settles the future
        _settle(entry[1], StoreError(self._not_taken("no history writer took them")))
        self._wake()

    def _not_taken(self, what: str) -> str:
        with self._cond:
            why = "; ".join(f"writer {i}: {e}" for i, e in sorted(self._failing.items()))
        return (f"{what} within {self._timeout:g} s (VIGIL_TIMEOUT)"
                + (f"; the history writers are failing ({why})" if why else ""))

    def _take(self) -> list[_Entry] | None:
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

    def _supervised(self, i: int) -> None:
        supervise(f"history writer {i}", lambda: self._run(i), self._stop,
                  first_backoff=self.RESTART_FIRST, max_backoff=self.RESTART_MAX)

    def _run(self, i: int) -> None:
        """One writer's life with one store: returns once stopping and drained, raises when the store
        cannot open or fails in a way it does not name (not a StoreError): the supervisor restarts it."""
        try:
            store = self._open_store()
        except Exception as e:
            with self._cond:
                self._failing[i] = e
            raise
        with self._cond:
            self._failing.pop(i, None)
        try:
            self._serve(store)
        except Exception as e:
            with self._cond:
                self._failing[i] = e
            raise
        finally:
            self._maintain(store)
            try:
                store.close()
            except Exception as e:
                log.warning("closing the history store failed: %s", e)

    def _serve(self, store: Store) -> None:
        last_report = time.monotonic()
        busy = 0.0
        while (taken := self._take()) is not None:
            if not taken:
                self._maintain(store)
                continue
            error: BaseException | None = None
            try:
                merged = WriteBatch()
                for b, _, _ in taken:
                    merged.extend(b)
                t0 = time.monotonic()
                try:
                    store.write(merged)
                    with self._stats_lock:
                        self.written_values += len(merged)
                        self.transactions += 1
                        for session, top in merged.sessions.items():
                            if top > self._committed_sessions.get(session, -1):
                                self._committed_sessions[session] = top
                except StoreError as e:  # the store names what failed; every waiter hears it
                    log.error("writing %d values failed: %s", len(merged), e)
                    error = e
                busy += time.monotonic() - t0
            except BaseException as e:
                _settle_all(taken, e)  # then the supervisor logs it with its traceback
                raise
            _settle_all(taken, error, self._wake)
            if error is None and self._on_commit is not None:
                try:
                    self._on_commit(merged)
                except Exception:
                    log.exception("the on-commit hook failed for %d values", len(merged))
            t0 = time.monotonic()
            self._maintain(store)
            busy += time.monotonic() - t0
            now = time.monotonic()
            if now - last_report >= 60:
                log.info("history writer: %d values in %d transactions, busy %.1f%% of the last %.0f s",
                         self.written_values, self.transactions, 100 * busy / (now - last_report),
                         now - last_report)
                last_report, busy = now, 0.0

    @staticmethod
    def _maintain(store: Store) -> None:
        try:
            store.maintain()
        except StoreError as e:  # the values stay where they are; the next call tries again
            log.error("history upkeep failed: %s", e)
        except Exception:
            log.exception("history upkeep failed unexpectedly")

    def _wake(self) -> None:
        if self._room is not None and self._pending_values < self._max_pending:
            self._room.set()


_Entry = tuple[WriteBatch, "asyncio.Future[None]", asyncio.AbstractEventLoop]
_Waiter = tuple[WriteBatch, "asyncio.Future[None]"]  # a batch waiting on the loop for a loop store


def _settle_waiters(group: list[_Waiter], error: BaseException | None) -> None:
    for _, fut in group:
        _settle(fut, error)


def _settle_all(entries: list[_Entry], error: BaseException | None,
                then: Callable[[], None] | None = None) -> None:
    """Settle the entries' futures on their loops, then call `then` there: one wake-up of each loop
    for all its entries (each call_soon_threadsafe is a write to the loop's self-pipe)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for _, fut, loop in entries:
        by_loop.setdefault(loop, []).append(fut)
    for loop, futs in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle_futures, futs, error, then)
        except RuntimeError:
            pass  # that client's event loop is closed: nobody is waiting any more


def _settle_futures(futs: list[asyncio.Future[None]], error: BaseException | None,
                    then: Callable[[], None] | None) -> None:
    for fut in futs:
        _settle(fut, error)
    if then is not None:
        then()


def _settle(fut: asyncio.Future[None], error: BaseException | None) -> None:
    if fut.done():
        return
    if error is None:
        fut.set_result(None)
    else:
        fut.set_exception(error)
