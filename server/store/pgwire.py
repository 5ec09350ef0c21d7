"""One write transaction in PostgreSQL's own protocol, driven from the event loop in one send.

The loop's common write is a simple query `BEGIN; ...; COPY ... FROM STDIN; COMMIT` whose rows
follow it as CopyData. libpq sends those rows only after the server has answered the COPY's start,
so the backend sleeps for a round trip it does not need, and driving libpq from the loop costs more
CPU than the exchange itself (wait_async re-registers the socket for every wait). The server reads
its input in order whenever it comes, so here the Query, the CopyData and the CopyDone go in one
write on the connection's socket, and the replies are read up to ReadyForQuery: one round trip.

This bypasses libpq for one exchange on a connection libpq holds: it starts with libpq idle (no
result pending, nothing buffered) and ends with the server idle too ('I'), after a ROLLBACK of its
own where the transaction failed, so libpq's view of the connection stays true. Only for plain
connections (TLS or GSS encryption wrap the bytes: those take libpq's path).

Nothing can be committed before the server has read the last CopyDone and finished the last COPY.
So the transaction is known not to be committed when the connection breaks (WireError.unsent)
- before the whole of it was written;
- with a reset: the server closed its socket with bytes of ours unread, and the last CopyDone is
  the last of them;
- after an error from the server (a FATAL one as it is terminated) came before the last COPY's
  CommandComplete: the server answers in order, so that COPY had not finished.
Otherwise (the stream ended, or the reset came, after the last COPY finished) the outcome is unknown.
Before writing, the socket is polled: a server that has gone while the connection was idle (a
restart, a terminated backend) has left an error or the end of the stream there, and then nothing
is sent at all.
"""

from __future__ import annotations

import asyncio
import os
import select
import struct
from dataclasses import dataclass, field

_LEN = struct.Struct(">i")
_COPY_DONE = b"c\x00\x00\x00\x04"
_ROLLBACK = b"Q\x00\x00\x00\x0dROLLBACK\x00"
_READ = 1 << 16
_MAX_MESSAGE = 1 << 30  # no reply to these statements is near this: a longer length is a broken stream


class WireError(Exception):
    """The exchange failed: `broken` when the connection is unusable, `unsent` when the transaction is
    known not to be committed (always so when the connection is not broken)."""

    def __init__(self, message: str, *, broken: bool, unsent: bool = True) -> None:
        super().__init__(message)
        self.broken = broken
        self.unsent = unsent


def transaction_bytes(query: bytes, copies: list[bytes]) -> bytes:
    """A simple Query, then each COPY's data as one CopyData and its CopyDone, in the order the
    query's COPY statements read them."""
    parts = [b"Q", _LEN.pack(len(query) + 5), query, b"\x00"]
    for data in copies:
        parts += [b"d", _LEN.pack(len(data) + 4), data, _COPY_DONE]
    return b"".join(parts)


@dataclass(slots=True)
class Replies:
    """The server's messages up to ReadyForQuery, parsed as they arrive."""

    tags: list[bytes] = field(default_factory=list)  # CommandComplete tags, in order
    error: dict[str, str] | None = None  # the first ErrorResponse's fields (code letter -> text)
    status: bytes = b""  # ReadyForQuery's transaction status: I idle, T in a transaction, E failed one
    _buf: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> bool:
        """Take bytes read from the socket; True once ReadyForQuery has come."""
        buf = self._buf
        buf += data
        at = 0
        try:
            while len(buf) - at >= 5:
                size = _LEN.unpack_from(buf, at + 1)[0]
                if not 4 <= size <= _MAX_MESSAGE:
                    raise WireError(f"PostgreSQL sent a message of length {size}: the stream is broken",
                                    broken=True, unsent=False)
                end = at + 1 + size
                if end > len(buf):
                    break
                kind, body = buf[at], bytes(buf[at + 5:end])
                at = end
                if kind == 0x43:  # C CommandComplete
                    self.tags.append(body.rstrip(b"\x00"))
                elif kind == 0x45 and self.error is None:  # E ErrorResponse
                    self.error = _fields(body)
                elif kind == 0x5A:  # Z ReadyForQuery
                    self.status = body[:1]
                    return True
                # CopyInResponse, RowDescription, DataRow, notices, parameter reports: nothing to keep
            return False
        finally:
            del buf[:at]

    def failure(self) -> WireError | None:
        """Why the transaction did not commit, or None when it did."""
        if self.error is not None:
            return WireError(describe(self.error), broken=False)
        if not self.tags or self.tags[-1] != b"COMMIT":  # a COMMIT of a failed transaction answers ROLLBACK
            last = self.tags[-1].decode(errors="replace") if self.tags else "no result"
            return WireError(f"PostgreSQL did not commit the transaction ({last!r})", broken=False)
        return None


def _fields(body: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in body.split(b"\x00"):
        if part:
            out[chr(part[0])] = part[1:].decode("utf-8", errors="replace")
    return out


def describe(error: dict[str, str]) -> str:
    """An ErrorResponse as psycopg words it: the message, its detail, and where (the context)."""
    text = error.get("M", "unknown error")
    if "D" in error:
        text += f"\nDETAIL:  {error['D']}"
    return f"{text} ({error['W']})" if "W" in error else text


def gone(fd: int) -> bool:
    """Whether an idle connection has anything to read: an error the server sent as it went, or the
    end of the stream. poll, not select: a server with many clients has descriptors past FD_SETSIZE."""
    p = select.poll()
    p.register(fd, select.POLLIN | select.POLLPRI)
    return bool(p.poll(0))


@dataclass(slots=True)
class Exchange:
    """Drives one transaction on a socket from the event loop; `broken` when the connection broke
    while a failed transaction was being rolled back (the server rolls it back on its own)."""

    fd: int
    copies: int  # COPY statements in the transaction
    broken: bool = False

    async def run(self, out: bytes) -> Replies:
        loop = asyncio.get_running_loop()
        await self._send(loop, out)
        replies = Replies()
        try:
            await self._receive(loop, replies)
        except WireError as e:
            # A reset (e.unsent from _receive) or an error counts only while the last COPY had not finished.
            copied = sum(1 for t in replies.tags if t.startswith(b"COPY "))
            e.unsent = copied < self.copies and (e.unsent or replies.error is not None)
            raise
        if replies.status != b"I":  # the transaction failed inside (E) or was left open (T): end it
            try:
                await self._send(loop, _ROLLBACK)
                await self._receive(loop, Replies())
            except WireError:
                self.broken = True
        return replies

    async def _send(self, loop: asyncio.AbstractEventLoop, out: bytes) -> None:
        view = memoryview(out)
        while view:
            try:
                view = view[os.write(self.fd, view):]
            except (BlockingIOError, InterruptedError):
                await self._wait(loop, writable=True)
            except OSError as e:
                raise WireError(f"cannot write to PostgreSQL: {e}", broken=True) from None

    async def _receive(self, loop: asyncio.AbstractEventLoop, replies: Replies) -> None:
        while True:
            try:
                data = os.read(self.fd, _READ)
            except (BlockingIOError, InterruptedError):
                await self._wait(loop, writable=False)
                continue
            except ConnectionResetError as e:  # closed with bytes of ours unread
                raise WireError(f"cannot read from PostgreSQL: {e}", broken=True) from None
            except OSError as e:
                raise WireError(f"cannot read from PostgreSQL: {e}", broken=True, unsent=False) from None
            if not data:
                why = f": {describe(replies.error)}" if replies.error else ""
                raise WireError(f"PostgreSQL closed the connection{why}", broken=True, unsent=False)
            if replies.feed(data):
                return

    async def _wait(self, loop: asyncio.AbstractEventLoop, writable: bool) -> None:
        ready = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        (loop.add_writer if writable else loop.add_reader)(self.fd, wake)
        try:
            await ready
        finally:
            (loop.remove_writer if writable else loop.remove_reader)(self.fd)
