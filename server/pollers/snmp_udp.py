"""One UDP socket for the community-based (v1/v2c) requests of every device on an event loop.

Requests carry a request-id; a reply is accepted only with a pending id from the address it was sent
to, so late replies, duplicates and strangers are dropped. Each request is sent again after
`timeout` seconds up to `retries` times, then fails with a timeout.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
from collections.abc import Callable

from vigil.server.pollers.snmp_ber import BerError, Response, decode_response

log = logging.getLogger("vigil.server.pollers.snmp")


class RequestTimeout(Exception):
    pass


class CommunityTransport(asyncio.DatagramProtocol):
    def __init__(self, family: int = socket.AF_INET) -> None:
        self.family = family
        self._transport: asyncio.DatagramTransport | None = None
        self._pending: dict[int, tuple[tuple[str, int], asyncio.Future[Response]]] = {}
        self._next_id = random.randrange(1, 2**30)
        self._opening: asyncio.Lock | None = None
        self.dropped = 0  # datagrams that matched no pending request or did not parse

    async def _open(self) -> asyncio.DatagramTransport:
        if self._transport is None:
            if self._opening is None:
                self._opening = asyncio.Lock()
            async with self._opening:
                if self._transport is None:
                    loop = asyncio.get_running_loop()
                    sock = socket.socket(self.family, socket.SOCK_DGRAM)
                    try:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
                    except OSError:
                        pass
                    sock.bind(("::" if self.family == socket.AF_INET6 else "0.0.0.0", 0))
                    sock.setblocking(False)
                    transport, _ = await loop.create_datagram_endpoint(lambda: self, sock=sock)
                    self._transport = transport
        assert self._transport is not None
        return self._transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:  # type: ignore[override]
        try:
            _, resp = decode_response(data)
        except BerError as e:
            self.dropped += 1
            log.debug("SNMP reply from %s:%s dropped: %s", addr[0], addr[1], e)
            return
        entry = self._pending.get(resp.request_id)
        if entry is None or entry[0] != (addr[0], addr[1]) or entry[1].done():
            self.dropped += 1
            return
        entry[1].set_result(resp)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable and the like on an unconnected socket: the request times out.
        log.debug("SNMP socket error: %s", exc)

    def _id(self) -> int:
        rid = self._next_id
        self._next_id = rid + 1 if rid < 2**31 - 2 else 1
        return rid

    async def request(self, address: tuple[str, int], encode: Callable[[int], bytes], timeout: float,
                      retries: int) -> Response:
        transport = await self._open()
        rid = self._id()
        fut: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._pending[rid] = (address, fut)
        data = encode(rid)
        try:
            for _ in range(retries + 1):
                transport.sendto(data, address)
                try:
                    return await asyncio.wait_for(asyncio.shield(fut), timeout)
                except TimeoutError:
                    continue
            raise RequestTimeout()
        finally:
            self._pending.pop(rid, None)
            if not fut.done():
                fut.cancel()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None
