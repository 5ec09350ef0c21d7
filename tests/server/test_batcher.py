"""The history writer (group commit) and the housekeeper as supervised workers, on a real SQLite store.

A store that cannot open, or that raises something other than StoreError, must not leave a client
waiting forever or end a worker for the life of the process: the client hears `failed`, the error
is logged with its traceback, the worker starts again and later work is done.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from vigil.server.config.migrate import engine_for, upgrade
from vigil.server.config.tables import ValueType
from vigil.server.ingest.batcher import Batcher
from vigil.server.store import housekeeper, open_store
from vigil.server.store.base import Store, StoreError, WriteBatch

T0 = 1_700_000_000 - 1_700_000_000 % 3600
END = 2**31 - 1
GUARD = 8.0  # seconds: a submit still waiting after this is hanging (VIGIL_TIMEOUT is 3 by default)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'vigil.db'}"
    engine = engine_for(url)
    upgrade(engine)
    engine.dispose()
    return url


def batch(*values: float, itemid: int = 1) -> WriteBatch:
    return WriteBatch(floats=[(itemid, T0 + i, 0, v) for i, v in enumerate(values)])


def stored(url: str, itemid: int = 1) -> list[float]:
    s = open_store(url)
    try:
        s.maintain(force=True)
        return [v for _, _, v in s.history(itemid, ValueType.FLOAT, 0, END)]
    finally:
        s.close()


def wait_for(cond: Callable[[], bool], what: str, timeout: float = GUARD) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class Flaky:
    """A real store (the rest of the seam forwarded) whose write raises `error` for its first `failures` calls."""

    def __init__(self, inner: Store, error: Exception, counter: list[int], failures: int = 1) -> None:
        self.inner, self.error, self.counter, self.failures = inner, error, counter, failures

    def write(self, batch: WriteBatch) -> None:
        self.counter[0] += 1
        if self.counter[0] <= self.failures:
            raise self.error
        self.inner.write(batch)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)

    def maintain(self, force: bool = False) -> None:
        self.inner.maintain(force)

    def close(self) -> None:
        self.inner.close()


@pytest.fixture
def run_batcher() -> Iterator[Callable[[Batcher, Callable[[], object]], object]]:
    """Runs a coroutine against a started Batcher on a fresh event loop; stops the batcher afterwards."""
    started: list[Batcher] = []

    def run(b: Batcher, body: Callable[[], object]) -> object:
        async def main() -> object:
            b.start()
            started.append(b)
            return await body()  # type: ignore[misc]

        return asyncio.run(main())

    try:
        yield run
    finally:
        for b in started:
            b.stop(timeout=GUARD)


def test_values_from_many_clients_are_committed_before_submit_returns(sqlite_url: str, run_batcher) -> None:
    b = Batcher(lambda: open_store(sqlite_url), max_values=7)

    async def body() -> None:
        await asyncio.gather(*(b.submit(batch(float(k), itemid=k)) for k in range(1, 21)))
        for k in range(1, 21):
            assert stored(sqlite_url, k) == [float(k)]

    run_batcher(b, body)
    assert b.written_values == 20


def test_a_writer_whose_store_cannot_open_fails_the_client_instead_of_hanging(run_batcher) -> None:
    def cannot_open() -> Store:
        raise StoreError("cannot connect to PostgreSQL at db.example:5432: Connection refused")

    b = Batcher(cannot_open, max_values=100)

    async def body() -> None:
        with pytest.raises(StoreError, match="Connection refused"):
            await asyncio.wait_for(b.submit(batch(1.0)), GUARD)

    run_batcher(b, body)


def test_a_writer_starts_again_once_its_store_opens(sqlite_url: str, run_batcher,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    attempts = [0]

    def opens_on_third_try() -> Store:
        attempts[0] += 1
        if attempts[0] < 3:
            raise StoreError(f"cannot connect (attempt {attempts[0]})")
        return open_store(sqlite_url)

    b = Batcher(opens_on_third_try, max_values=100)

    async def body() -> None:
        deadline = time.monotonic() + GUARD
        while True:
            try:
                await asyncio.wait_for(b.submit(batch(2.5)), GUARD)
                return
            except StoreError:
                assert time.monotonic() < deadline, "the writer never came back"
                await asyncio.sleep(0.05)

    run_batcher(b, body)
    assert attempts[0] == 3
    assert stored(sqlite_url) == [2.5]
    assert "cannot connect (attempt 1)" in caplog.text


def test_an_unexpected_error_is_logged_with_its_traceback_and_the_writer_restarts(
        sqlite_url: str, run_batcher, caplog: pytest.LogCaptureFixture) -> None:
    writes, opened = [0], [0]
    boom = sa.exc.OperationalError("COPY history", {}, ConnectionResetError("server closed the connection"))

    def factory() -> Store:
        opened[0] += 1
        return Flaky(open_store(sqlite_url), boom, writes)  # type: ignore[return-value]

    b = Batcher(factory, max_values=100)

    async def body() -> None:
        with pytest.raises(sa.exc.OperationalError):
            await asyncio.wait_for(b.submit(batch(1.0)), GUARD)
        await asyncio.wait_for(b.submit(batch(2.0)), GUARD)

    with caplog.at_level(logging.ERROR):
        run_batcher(b, body)
    assert stored(sqlite_url) == [2.0]
    assert opened[0] == 2, "the writer should have opened a fresh store after the unexpected error"
    traced = [r for r in caplog.records if r.exc_info and r.exc_info[1] is boom]
    assert traced, f"no log record with the traceback of {boom!r}: {caplog.text}"


def test_an_expected_store_error_fails_that_batch_only(sqlite_url: str, run_batcher) -> None:
    writes, opened = [0], [0]

    def factory() -> Store:
        opened[0] += 1
        return Flaky(open_store(sqlite_url), StoreError("writing 1 values failed"), writes)  # type: ignore[return-value]

    b = Batcher(factory, max_values=100)

    async def body() -> None:
        with pytest.raises(StoreError, match="writing 1 values failed"):
            await asyncio.wait_for(b.submit(batch(1.0)), GUARD)
        await asyncio.wait_for(b.submit(batch(3.0)), GUARD)

    run_batcher(b, body)
    assert stored(sqlite_url) == [3.0]
    assert opened[0] == 1


class Stuck:
    """A real store whose first write blocks until released (a writer waiting on a lock)."""

    def __init__(self, inner: Store, release: threading.Event, entered: threading.Event) -> None:
        self.inner, self.release, self.entered = inner, release, entered

    def write(self, batch: WriteBatch) -> None:
        if not self.entered.is_set():
            self.entered.set()
            self.release.wait(GUARD)
        self.inner.write(batch)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)


def test_a_batch_no_writer_takes_fails_within_the_timeout_and_is_not_stored(sqlite_url: str, run_batcher) -> None:
    release, entered = threading.Event(), threading.Event()
    b = Batcher(lambda: Stuck(open_store(sqlite_url), release, entered), max_values=1,  # type: ignore[arg-type]
                timeout=0.3)

    async def body() -> None:
        first = asyncio.ensure_future(b.submit(batch(1.0)))
        await asyncio.to_thread(entered.wait, GUARD)
        with pytest.raises(StoreError, match=r"no history writer took them within 0.3 s \(VIGIL_TIMEOUT\)"):
            await asyncio.wait_for(b.submit(batch(2.0, itemid=2)), GUARD)
        release.set()
        await asyncio.wait_for(first, GUARD)  # taken before the timeout: its outcome, not the timeout

    run_batcher(b, body)
    assert stored(sqlite_url, 1) == [1.0]
    assert stored(sqlite_url, 2) == []


def test_stop_fails_clients_no_writer_can_serve(run_batcher) -> None:
    def cannot_open() -> Store:
        raise StoreError("cannot connect")

    b = Batcher(cannot_open, max_values=100)
    outcome: list[BaseException] = []

    async def body() -> None:
        task = asyncio.ensure_future(b.submit(batch(1.0)))
        await asyncio.sleep(0)
        await asyncio.to_thread(b.stop, GUARD)
        try:
            await asyncio.wait_for(task, GUARD)
        except BaseException as e:  # noqa: BLE001 - any failure is the right answer; hanging is not
            outcome.append(e)

    run_batcher(b, body)
    assert outcome and not isinstance(outcome[0], TimeoutError), outcome


# -- the housekeeper --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Every:
    housekeeping_interval: float = 0.05
    trends_interval: float = 0.05


class Surprising:
    """A real store whose roll-up raises an arbitrary exception on its first call."""

    def __init__(self, inner: Store, calls: list[int]) -> None:
        self.inner, self.calls = inner, calls

    def rollup_trends(self, now: int) -> int:
        self.calls[0] += 1
        if self.calls[0] == 1:
            raise ZeroDivisionError("a bug in the roll-up")
        return self.inner.rollup_trends(now)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self.inner, name)

    def close(self) -> None:
        self.inner.close()


def test_a_supervised_housekeeper_outlives_an_arbitrary_exception(sqlite_url: str,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    calls, opened, retention_reads = [0], [0], [0]

    def factory() -> Store:
        opened[0] += 1
        return Surprising(open_store(sqlite_url), calls)  # type: ignore[return-value]

    def retention() -> list:
        retention_reads[0] += 1
        if retention_reads[0] == 2:
            raise sa.exc.ProgrammingError("SELECT items", {}, Exception("relation does not exist"))
        return []

    stop = threading.Event()
    t = threading.Thread(target=housekeeper.supervised, args=(factory, Every(), retention, stop),
                         kwargs={"first_backoff": 0.05}, daemon=True)
    with caplog.at_level(logging.INFO):
        t.start()
        try:
            wait_for(lambda: calls[0] >= 4 and retention_reads[0] >= 4, "roll-ups and housekeeping after the errors")
        finally:
            stop.set()
            t.join(GUARD)
    assert not t.is_alive()
    assert opened[0] >= 2, "the housekeeper should have opened a fresh store after the unexpected error"
    assert [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], ZeroDivisionError)], caplog.text
    assert [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], sa.exc.ProgrammingError)]
    assert "trend roll-up recomputed" in caplog.text
