"""The loop's write in PostgreSQL's protocol (server/store/pgwire.py): the bytes it sends, the replies
it reads, and what it concludes when the connection breaks — on a real PostgreSQL where a server can
be made to do it, and against a socket the test answers itself for the orders of replies a real
server gives only by chance (a reset or the end of the stream at one exact point)."""

from __future__ import annotations

import asyncio
import math
import socket
import struct
import threading
from collections.abc import Callable

import psycopg
import pytest
from vigil.server.config.tables import ValueType
from vigil.server.store import open_store, pgwire
from vigil.server.store.base import StoreError, WriteBatch, WriteUnsent
from vigil.server.store.postgres import ROLLUP_LOCK, PostgresStore

T0 = 1_700_000_000 - 1_700_000_000 % 3600
GUARD = 20.0


def message(kind: bytes, body: bytes = b"") -> bytes:
    return kind + struct.pack(">i", len(body) + 4) + body


def error(severity: str, code: str, text: str, **more: str) -> bytes:
    fields = [f"S{severity}", f"V{severity}", f"C{code}", f"M{text}", *(k + v for k, v in more.items())]
    return message(b"E", b"".join(f.encode() + b"\x00" for f in fields) + b"\x00")


COPY_IN = message(b"G", b"\x01\x00\x04" + b"\x00\x01" * 4)
READY = message(b"Z", b"I")


def tag(text: str) -> bytes:
    return message(b"C", text.encode() + b"\x00")


def split(data: bytes) -> list[tuple[bytes, bytes]]:
    out, at = [], 0
    while at < len(data):
        size = struct.unpack_from(">i", data, at + 1)[0]
        out.append((data[at:at + 1], data[at + 5:at + 1 + size]))
        at += 1 + size
    return out


def test_a_transaction_is_its_query_then_each_copys_data_and_end() -> None:
    out = pgwire.transaction_bytes(b"BEGIN; COPY a FROM STDIN; COPY b FROM STDIN; COMMIT", [b"rows-a", b"rows-b"])
    assert split(out) == [(b"Q", b"BEGIN; COPY a FROM STDIN; COPY b FROM STDIN; COMMIT\x00"), (b"d", b"rows-a"),
                          (b"c", b""), (b"d", b"rows-b"), (b"c", b"")]


def test_replies_are_parsed_whatever_the_reads_cut_them_into() -> None:
    stream = (tag("BEGIN") + message(b"T", b"\x00\x01x\x00" + bytes(18)) + message(b"D", b"\x00\x01\xff\xff\xff\xff")
              + tag("SELECT 1") + message(b"N", b"SNOTICE\x00Mhello\x00\x00") + COPY_IN + tag("COPY 2") + tag("COMMIT")
              + READY)
    for cut in range(1, len(stream)):
        r = pgwire.Replies()
        assert not r.feed(stream[:cut]) or cut == len(stream)
        assert r.feed(stream[cut:])
        assert r.tags == [b"BEGIN", b"SELECT 1", b"COPY 2", b"COMMIT"] and r.status == b"I"
        assert r.failure() is None


def test_an_error_is_named_as_the_server_words_it() -> None:
    r = pgwire.Replies()
    assert r.feed(tag("BEGIN") + COPY_IN + error("ERROR", "23514", 'new row for relation "history_p1" violates '
                                                 'check constraint "history_value"', D="Failing row contains (1).",
                                                 W="COPY history, line 2") + message(b"Z", b"E"))
    failure = r.failure()
    assert failure is not None and not failure.broken
    assert str(failure) == ('new row for relation "history_p1" violates check constraint "history_value"\n'
                            'DETAIL:  Failing row contains (1). (COPY history, line 2)')
    assert r.status == b"E"


def test_a_commit_that_answers_rollback_is_a_failure() -> None:
    r = pgwire.Replies()
    assert r.feed(tag("BEGIN") + tag("COPY 1") + tag("ROLLBACK") + READY)
    assert "did not commit the transaction ('ROLLBACK')" in str(r.failure())


def test_a_length_no_reply_has_breaks_the_stream() -> None:
    with pytest.raises(pgwire.WireError, match="length 2") as e:
        pgwire.Replies().feed(b"C\x00\x00\x00\x02")
    assert e.value.broken


class FakeServer:
    """A TCP peer on loopback that reads what the client sends (all of it, or none when `read` is False)
    and answers with `reply`, then closes — or resets, when it closes with the client's bytes unread."""

    def __init__(self, reply: bytes, *, read: bool = True, then: Callable[[socket.socket], None] | None = None) -> None:
        self._listen = socket.create_server(("127.0.0.1", 0))
        self.client = socket.create_connection(self._listen.getsockname())
        self.client.setblocking(False)
        self.received = b""
        self._reply, self._read, self._then = reply, read, then
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._listen.accept()
        conn.settimeout(GUARD)
        try:
            if self._read:
                while not self.received.endswith(pgwire.transaction_bytes(b"q", [b"rows"])[-5:]):
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    self.received += chunk
            else:
                while len(conn.recv(1, socket.MSG_PEEK)) == 0:  # the client's bytes have come
                    pass
            conn.sendall(self._reply)
            if self._then is not None:
                self._then(conn)
        finally:
            conn.close()

    def run(self) -> tuple[pgwire.Replies | None, pgwire.WireError | None]:
        async def go() -> pgwire.Replies:
            async with asyncio.timeout(GUARD):
                return await pgwire.Exchange(self.client.fileno(), 1).run(pgwire.transaction_bytes(b"q", [b"rows"]))

        try:
            return asyncio.run(go()), None
        except pgwire.WireError as e:
            return None, e
        finally:
            self._thread.join(GUARD)
            self.client.close()
            self._listen.close()


def test_a_reset_before_any_reply_means_nothing_was_committed() -> None:
    # The server closed with the client's bytes unread, so it never read the last CopyDone.
    replies, e = FakeServer(b"", read=False).run()
    assert replies is None and e is not None and e.broken and e.unsent


def test_a_fatal_error_before_the_copy_finished_means_nothing_was_committed() -> None:
    fatal = error("FATAL", "57P01", "terminating connection due to administrator command")
    replies, e = FakeServer(tag("BEGIN") + COPY_IN + fatal).run()
    assert e is not None and e.broken and e.unsent
    assert "terminating connection due to administrator command" in str(e)


def test_the_end_of_the_stream_after_the_copy_finished_leaves_the_outcome_unknown() -> None:
    replies, e = FakeServer(tag("BEGIN") + COPY_IN + tag("COPY 1")).run()
    assert e is not None and e.broken and not e.unsent
    assert "closed the connection" in str(e)


def reset(conn: socket.socket) -> None:
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends a reset


def test_a_reset_after_the_copy_finished_leaves_the_outcome_unknown() -> None:
    # The server had read everything: a reset now is not one of unread bytes (a middlebox's, say).
    replies, e = FakeServer(tag("BEGIN") + COPY_IN + tag("COPY 1"), then=reset).run()
    assert e is not None and e.broken and not e.unsent


def test_a_garbled_stream_after_the_copy_started_leaves_the_outcome_unknown() -> None:
    replies, e = FakeServer(tag("BEGIN") + COPY_IN + b"C\xff\xff\xff\xff").run()
    assert e is not None and e.broken and not e.unsent and "the stream is broken" in str(e)


def test_the_end_of_the_stream_before_any_reply_leaves_the_outcome_unknown() -> None:
    # All of it was read, so the commit may have been made before the server went.
    replies, e = FakeServer(b"").run()
    assert e is not None and e.broken and not e.unsent


def test_a_failed_transaction_is_rolled_back_on_the_same_connection() -> None:
    rolled: list[bytes] = []

    def answer_rollback(conn: socket.socket) -> None:
        rolled.append(conn.recv(64))
        conn.sendall(tag("ROLLBACK") + READY)

    replies, e = FakeServer(tag("BEGIN") + COPY_IN + error("ERROR", "23514", "bad row") + message(b"Z", b"E"),
                            then=answer_rollback).run()
    assert e is None and replies is not None
    assert rolled == [message(b"Q", b"ROLLBACK\x00")]
    assert str(replies.failure()) == "bad row"


# -- on a real PostgreSQL -----------------------------------------------------------------------------

def values(n: int, itemid: int, at: int = T0) -> WriteBatch:
    return WriteBatch(floats=[(itemid, at + i, 0, float(i)) for i in range(n)])


def stored(url: str, itemid: int) -> int:
    with psycopg.connect(url) as c:
        return c.execute("SELECT count(*) FROM history WHERE itemid = %s", (itemid,)).fetchone()[0]


def loop_store(url: str) -> PostgresStore:
    store = open_store(url)
    assert isinstance(store, PostgresStore)
    store.write(values(1, 1))  # makes the day's partition, which the loop's write does not
    return store


def test_a_plain_connection_writes_on_the_wire_and_libpq_finds_it_idle_after(migrated_pg_url: str) -> None:
    store = loop_store(migrated_pg_url)
    try:
        assert store._plain
        assert asyncio.run(store.write_on_loop(values(250, 2)))
        assert stored(migrated_pg_url, 2) == 250
        # libpq's view of the connection is still true: it runs the next statement as if nothing happened
        assert store._pg.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert store.latest({2: ValueType.FLOAT})[2] == (T0 + 249, 0, 249.0)
    finally:
        store.close()


def test_a_bad_row_is_rolled_back_with_the_servers_message_and_the_connection_goes_on(migrated_pg_url: str) -> None:
    store = loop_store(migrated_pg_url)
    try:
        bad = WriteBatch(floats=[(3, T0, 0, 1.0), (3, T0 + 1, 0, math.inf)])
        with pytest.raises(WriteUnsent, match='check constraint "history_value"'):
            asyncio.run(store.write_on_loop(bad))
        assert stored(migrated_pg_url, 3) == 0
        assert store.is_open and store._pg.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert asyncio.run(store.write_on_loop(values(5, 3)))
        assert stored(migrated_pg_url, 3) == 5
    finally:
        store.close()


def test_a_backend_terminated_while_the_transaction_waits_stored_nothing(migrated_pg_url: str) -> None:
    # The roll-up's lock, held elsewhere, keeps the transaction at its start; then the backend is
    # terminated: its FATAL error (or a reset) comes before the COPY finished, so nothing was committed
    # and the batch may go to another writer, not fail as unknown.
    store = loop_store(migrated_pg_url)
    holder = psycopg.connect(migrated_pg_url)
    try:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (ROLLUP_LOCK,))
        pid = store._pg.info.backend_pid

        async def body() -> None:
            write = asyncio.create_task(store.write_on_loop(values(250, 4)))
            async with asyncio.timeout(GUARD):
                while not await asyncio.to_thread(lambda: holder.execute(
                        "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()[0]):
                    await asyncio.sleep(0.02)
            await asyncio.to_thread(lambda: holder.execute("SELECT pg_terminate_backend(%s)", (pid,)))
            with pytest.raises(WriteUnsent):
                await write

        asyncio.run(body())
        holder.rollback()
        assert stored(migrated_pg_url, 4) == 0
        assert not store.is_open
    finally:
        holder.close()
        store.close()


def test_a_backend_terminated_while_idle_is_found_gone_before_anything_is_sent(migrated_pg_url: str) -> None:
    store = loop_store(migrated_pg_url)
    try:
        with psycopg.connect(migrated_pg_url, autocommit=True) as c:
            c.execute("SELECT pg_terminate_backend(%s)", (store._pg.info.backend_pid,))
            c.execute("SELECT pg_sleep(0.1)")
        with pytest.raises(WriteUnsent, match="gone"):
            asyncio.run(store.write_on_loop(values(3, 5)))
        assert not store.is_open
        store.write(values(3, 5))  # the thread's way reconnects and stores it, once
        assert stored(migrated_pg_url, 5) == 3
    finally:
        store.close()


def test_an_unknown_outcome_is_a_store_error_that_says_so(migrated_pg_url: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    store = loop_store(migrated_pg_url)

    async def ends_after_the_copy(self: pgwire.Exchange, out: bytes) -> pgwire.Replies:
        raise pgwire.WireError("PostgreSQL closed the connection", broken=True, unsent=False)

    try:
        monkeypatch.setattr(pgwire.Exchange, "run", ends_after_the_copy)
        with pytest.raises(StoreError, match="may or may not be stored"):
            asyncio.run(store.write_on_loop(values(3, 6)))
        assert not store.is_open
    finally:
        store.close()
