"""A fault front for outage drills: a loopback TCP relay between a proxy and the Vigil server.

The proxy is pointed at the front's port; the front relays each ZBXD request to the server and the
reply back, or, depending on its mode, plays a broken server:

- PASS     forward the request, return the reply (the server being down closes the connection);
- FAIL     answer `{"response":"failed","info":"drill"}` without forwarding;
- CLOSE    close without answering and without forwarding;
- SWALLOW  forward the request, read the server's reply, drop it and close: the server stored the
           batch, the proxy was never told so.

A `match` predicate on the decoded request picks which requests the mode applies to (the others
pass); `then` switches the front to another mode after the first request the mode applied to, so a
drill can act (kill the server) knowing exactly one batch was swallowed. The front runs its own
asyncio loop in a thread, so a synchronous test drives it.
"""

from __future__ import annotations

import asyncio
import enum
import json
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from vigil.agent.protocol import zbxd


class Mode(enum.Enum):
    PASS = "pass"
    FAIL = "fail"
    CLOSE = "close"
    SWALLOW = "swallow"


FAILED_REPLY = json.dumps({"response": "failed", "info": "drill"}).encode()
MAX_FRAME = 256 * 1024 * 1024


def is_history_batch(request: dict[str, Any]) -> bool:
    """A `proxy data` request that carries values (not an empty keep-alive)."""
    return request.get("request") == "proxy data" and bool(request.get("history data"))


async def _read_frame(reader: asyncio.StreamReader) -> tuple[zbxd.Header, bytes]:
    """One whole frame as raw bytes (header included) and its header."""
    head = await reader.readexactly(5)
    rest = await reader.readexactly(zbxd.header_size(head[4]) - 5)
    header = zbxd.parse_header(head + rest, MAX_FRAME)
    payload = await reader.readexactly(header.data_length)
    return header, head + rest + payload


class FaultFront:
    """Listens on 127.0.0.1:`port` (0: any free one) and relays to 127.0.0.1:`upstream`."""

    def __init__(self, upstream: int, port: int = 0) -> None:
        self.upstream = upstream
        self.port = port
        self.mode = Mode.PASS
        self.match: Callable[[dict[str, Any]], bool] = lambda request: True
        self.then: Mode | None = None
        self.applied: Counter[Mode] = Counter()   # requests each fault mode was applied to
        self.requests: Counter[str] = Counter()   # requests seen, by their "request" field
        self.hit = threading.Event()              # set when a mode with `then` has been applied
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None

    def set(self, mode: Mode, match: Callable[[dict[str, Any]], bool] | None = None,
            then: Mode | None = None) -> None:
        with self._lock:
            self.mode = mode
            self.match = match or (lambda request: True)
            self.then = then
            self.hit.clear()

    def start(self) -> FaultFront:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self._loop = loop
            self._server = loop.run_until_complete(asyncio.start_server(self._serve, "127.0.0.1", self.port))
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            self._server.close()
            loop.set_exception_handler(lambda loop, context: None)  # connections cut by the stop itself
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

        self._thread = threading.Thread(target=run, name="fault-front", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fault front did not start listening")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    def _decide(self, request: dict[str, Any]) -> Mode:
        with self._lock:
            self.requests[str(request.get("request"))] += 1
            if self.mode is Mode.PASS or not self.match(request):
                return Mode.PASS
            mode = self.mode
            self.applied[mode] += 1
            if self.then is not None:
                self.mode, self.then = self.then, None
                self.hit.set()
            return mode

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            header, frame = await _read_frame(reader)
            try:
                request = json.loads(zbxd.decode_body(header, frame[header.size:]))
            except (ValueError, zbxd.FrameError):
                request = {}
            mode = self._decide(request if isinstance(request, dict) else {})
            if mode is Mode.FAIL:
                writer.write(zbxd.encode_like(FAILED_REPLY, header.flags))
                await writer.drain()
            elif mode in (Mode.PASS, Mode.SWALLOW):
                reply = await self._forward(frame)
                if mode is Mode.PASS and reply is not None:
                    writer.write(reply)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, zbxd.FrameError):
            pass
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass

    async def _forward(self, frame: bytes) -> bytes | None:
        """The server's reply to `frame`, or None when it is down or closes without one."""
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.upstream), 5)
        except (TimeoutError, OSError):
            return None
        try:
            up_writer.write(frame)
            await up_writer.drain()
            _, reply = await asyncio.wait_for(_read_frame(up_reader), 60)
            return reply
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, zbxd.FrameError):
            return None
        finally:
            up_writer.close()
            try:
                await up_writer.wait_closed()
            except ConnectionError:
                pass
