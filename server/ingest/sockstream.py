"""An accepted plain socket as the stream reader and writer the listener uses, on the loop's sock_* calls.

A Zabbix connection is one request and one reply, most of them a few kilobytes that are already in
the socket when it is accepted. asyncio.open_connection builds a transport, a protocol, a reader
and a writer for it, registers the socket with the selector and removes it again, and calls back
on close: about a sixth of the event loop's time per connection under a sender's load. Here a read
is tried first and the socket is registered only when it would block (loop.sock_recv), and the
reply goes out in one send. TLS connections keep asyncio's streams (server/ingest/tls.py).
"""

from __future__ import annotations

import asyncio
import socket

_READ = 1 << 16


class SocketStream:
    """readexactly/read as asyncio.StreamReader has them; write/drain/close as asyncio.StreamWriter."""

    __slots__ = ("_sock", "_loop", "_buf", "_eof", "_out", "peer")

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop, peer: str) -> None:
        self._sock = sock
        self._loop = loop
        self._buf = bytearray()
        self._eof = False
        self._out = b""
        self.peer = peer

    async def _fill(self) -> None:
        chunk = await self._loop.sock_recv(self._sock, _READ)
        if chunk:
            self._buf += chunk
        else:
            self._eof = True

    async def readexactly(self, n: int) -> bytes:
        while len(self._buf) < n:
            if self._eof:
                partial = bytes(self._buf)
                self._buf.clear()
                raise asyncio.IncompleteReadError(partial, n)
            await self._fill()
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    async def read(self, n: int) -> bytes:
        """Up to n bytes, b"" at the end of the stream."""
        if not self._buf and not self._eof:
            await self._fill()
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return data

    def write(self, data: bytes) -> None:
        """Sends what the socket takes now; drain() sends the rest."""
        if not self._out:
            try:
                data = data[self._sock.send(data):]
            except (BlockingIOError, InterruptedError):
                pass
        self._out += data

    def pending(self) -> int:
        """Bytes written and not sent yet."""
        return len(self._out)

    async def drain(self) -> None:
        if self._out:
            out, self._out = self._out, b""
            await self._loop.sock_sendall(self._sock, out)

    def close(self) -> None:
        self._sock.close()

    async def wait_closed(self) -> None:
        return None

    def get_extra_info(self, name: str) -> object:
        return None  # no TLS: tls.note_connection asks for the ssl_object
