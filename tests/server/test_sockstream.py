"""SocketStream (server/ingest/sockstream.py): an accepted plain socket read and written as the listener's
streams, on real loopback TCP connections — bytes that come in pieces, a stream that ends early, a
reply bigger than the socket's buffer to a peer that reads late."""

from __future__ import annotations

import asyncio
import socket

import pytest
from vigil.server.ingest.sockstream import SocketStream

GUARD = 10.0


def pair() -> tuple[socket.socket, socket.socket]:
    """(the client's end, the server's accepted end, non-blocking as the listener makes it)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        conn, _ = listener.accept()
    conn.setblocking(False)
    return client, conn


def run(body: object) -> None:
    async def guarded() -> None:
        async with asyncio.timeout(GUARD):
            await body  # type: ignore[misc]

    asyncio.run(guarded())


def test_readexactly_waits_for_bytes_that_come_in_pieces() -> None:
    client, conn = pair()

    async def body() -> None:
        stream = SocketStream(conn, asyncio.get_running_loop(), "peer")
        loop = asyncio.get_running_loop()
        for piece, at in ((b"ZB", 0.05), (b"XD\x01", 0.1), (b"rest-of-it", 0.15)):
            loop.call_later(at, client.sendall, piece)
        assert await stream.readexactly(5) == b"ZBXD\x01"
        assert await stream.readexactly(4) == b"rest"
        assert await stream.read(100) == b"-of-it"

    try:
        run(body())
    finally:
        client.close()
        conn.close()


def test_a_stream_that_ends_early_gives_what_came() -> None:
    client, conn = pair()
    client.sendall(b"ZBXD")
    client.close()

    async def body() -> None:
        stream = SocketStream(conn, asyncio.get_running_loop(), "peer")
        with pytest.raises(asyncio.IncompleteReadError) as e:
            await stream.readexactly(13)
        assert e.value.partial == b"ZBXD" and e.value.expected == 13
        assert await stream.read(10) == b""

    try:
        run(body())
    finally:
        conn.close()


def test_a_reply_the_socket_cannot_take_at_once_is_sent_whole_by_drain() -> None:
    client, conn = pair()
    reply = bytes(range(256)) * 40_000  # 10 MB: more than loopback's buffers hold

    async def body() -> None:
        stream = SocketStream(conn, asyncio.get_running_loop(), "peer")
        stream.write(reply)
        assert 0 < stream.pending() < len(reply)

        def read_all() -> bytes:
            got = bytearray()
            while len(got) < len(reply):
                chunk = client.recv(1 << 20)
                if not chunk:
                    break
                got += chunk
            return bytes(got)

        reading = asyncio.create_task(asyncio.to_thread(read_all))
        await stream.drain()
        assert stream.pending() == 0
        stream.close()
        assert await reading == reply

    try:
        run(body())
    finally:
        client.close()
