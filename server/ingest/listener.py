"""The Zabbix-protocol ingest listener (port 10051): sender data, active checks, agent data.

One request and one reply per connection, as Zabbix does. Every connection is bounded: the whole
frame must arrive within the timeout, frames over the maximum are refused, at most
max_connections are served at once. Bad input gets a `failed` reply naming the problem when the
frame could be read, otherwise the connection is closed; either way a log line names the peer and
the problem, and the server goes on serving everyone else.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from vigil.agent.protocol import zbxd
from vigil.agent.protocol.messages import (
    ACTIVE_CHECKS,
    AGENT_DATA,
    SENDER_DATA,
    ProcessedInfo,
    dumps,
    failure,
    success,
)
from vigil.server.config.repo import ConfigRepo
from vigil.server.ingest.batcher import Batcher
from vigil.server.ingest.cache import ConfigCache
from vigil.server.ingest.sessions import AgentSessions
from vigil.server.ingest.values import DEFAULT_WINDOW, ClockWindow, agent_values, sender_values
from vigil.server.store.base import WriteBatch

try:
    import orjson

    def _loads(body: bytes) -> Any:
        return orjson.loads(body)

    _JSON_ERRORS: tuple[type[Exception], ...] = (orjson.JSONDecodeError, ValueError)
except ImportError:  # pragma: no cover - orjson comes with the server extra
    from vigil.agent.protocol.messages import ProtocolError
    from vigil.agent.protocol.messages import loads as _loads

    _JSON_ERRORS = (ProtocolError,)

log = logging.getLogger("vigil.ingest")

# orjson refuses nesting deeper than 1024 levels itself; the standard library's parser is given
# the same bound by agent.protocol.messages.loads.


class IngestServer:
    def __init__(self, cache: ConfigCache, repo: ConfigRepo, batcher: Batcher, last_ids: dict[str, int],
                 read_sessions: Callable[[], dict[str, int]], *,
                 max_frame: int, timeout: float, max_connections: int,
                 clock_window: ClockWindow = DEFAULT_WINDOW) -> None:
        self.read_sessions = read_sessions
        self.sessions = AgentSessions(last_ids)
        self.clock_window = clock_window
        self.cache = cache
        self.repo = repo
        self.batcher = batcher
        self.last_ids = last_ids
        self.max_frame = max_frame
        self.timeout = timeout
        self._slots = asyncio.Semaphore(max_connections)
        self.stats = {"requests": 0, "values": 0, "failed": 0, "refused": 0}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = _peer(writer)
        async with self._slots:
            try:
                await self._serve(reader, writer, peer)
            except (ConnectionError, OSError) as e:
                log.info("connection from %s lost: %s", peer, e)
            finally:
                writer.close()
                try:
                    await writer.wait_closed()
                except (ConnectionError, OSError):
                    pass

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str) -> None:
        try:
            # asyncio.timeout, not wait_for: wait_for wraps the read in a task of its own, which cost
            # ~10% of the event loop's time per connection.
            async with asyncio.timeout(self.timeout):
                header, body = await zbxd.read_frame(reader, self.max_frame)
        except EOFError:
            return
        except TimeoutError:
            self.stats["refused"] += 1
            log.warning("%s sent no whole frame within %g s: connection closed", peer, self.timeout)
            return
        except zbxd.FrameError as e:
            self.stats["refused"] += 1
            log.warning("refused a frame from %s: %s", peer, e)
            if e.offset > 0 and "over the maximum" in str(e):
                writer.write(zbxd.encode(failure(str(e))))
                await _drain(writer, self.timeout)
            return
        self.stats["requests"] += 1
        reply = await self._dispatch(body, peer)
        if reply is not None:
            writer.write(zbxd.encode_like(reply, header.flags))
            await _drain(writer, self.timeout)

    async def _dispatch(self, body: bytes, peer: str) -> bytes | None:
        started = time.perf_counter()
        try:
            obj = _loads(body)
        except _JSON_ERRORS as e:
            log.warning("invalid JSON from %s: %s", peer, e)
            return failure(f"cannot parse as a valid JSON object: {e}")
        if not isinstance(obj, dict):
            log.warning("JSON from %s is not an object", peer)
            return failure("cannot parse as a valid JSON object: the body is not an object")
        request = obj.get("request")
        if request == SENDER_DATA or request == AGENT_DATA:
            data = obj.get("data")
            if not isinstance(data, list):
                log.warning("%s from %s: field 'data' is %s", request, peer,
                            "missing" if data is None else "not a list")
                return failure("field 'data' must be a list" if data is not None else "missing field 'data'")
            now = time.time_ns()
            now_s, now_ns = divmod(now, 1_000_000_000)
            snap = self.cache.snapshot
            if request == SENDER_DATA:
                batch, failed = sender_values(snap, data, now_s, now_ns, peer, self.clock_window)
                error = await self._store(batch, request, peer)
            else:
                session = obj.get("session")
                if not isinstance(session, str) or len(session) > 64:
                    session = ""
                # One batch per session in flight: a resend waits for the first batch's commit.
                async with self.sessions.turn(session):
                    batch, failed = agent_values(snap, session, data, self.last_ids, now_s, now_ns, peer,
                                                 self.clock_window)
                    error = await self._store(batch, request, peer)
                    if error is None and batch.sessions:
                        self.sessions.committed(batch.sessions)
            if error is not None:
                return failure(f"values were not stored: {error}")
            self.stats["values"] += len(data) - failed
            self.stats["failed"] += failed
            info = ProcessedInfo(len(data) - failed, failed, len(data), time.perf_counter() - started)
            return success(info)
        if request == ACTIVE_CHECKS:
            return await self._active_checks(obj, peer)
        log.warning("unknown request %r from %s", request, peer)
        what = "missing field 'request'" if request is None else f"unknown request {str(request)[:64]!r}"
        return failure(what)

    async def _store(self, batch: WriteBatch, request: str, peer: str) -> Exception | None:
        if len(batch) or batch.logpos or batch.sessions:
            try:
                await self.batcher.submit(batch)
            except Exception as e:
                log.error("%s from %s: not stored: %s", request, peer, e)
                return e
        return None

    async def _active_checks(self, obj: dict[str, Any], peer: str) -> bytes:
        host = obj.get("host")
        if not isinstance(host, str) or not host:
            log.warning("active checks from %s: missing field 'host'", peer)
            return failure("missing field 'host'")
        snap = self.cache.snapshot
        ref = snap.hosts.get(host)
        if ref is None:
            log.warning("active checks from %s: host [%s] not found", peer, host)
            return failure(f"host [{host}] not found")
        if not ref.enabled:
            return failure(f"host [{host}] not monitored")
        items = snap.active.get(ref.hostid, [])
        positions = await asyncio.to_thread(self.repo.log_positions, [i.itemid for i in items]) if items else {}
        data = [
            {"key": i.key, "delay": i.delay, "lastlogsize": positions.get(i.itemid, (0, 0))[0],
             "mtime": positions.get(i.itemid, (0, 0))[1]}
            for i in items
        ]
        return dumps({"response": "success", "data": data})


async def _drain(writer: asyncio.StreamWriter, timeout: float) -> None:
    if not writer.transport.get_write_buffer_size():
        return  # a reply that fit in the socket's buffer went out in write() already
    try:
        async with asyncio.timeout(timeout):
            await writer.drain()
    except TimeoutError:
        pass


def _peer(writer: asyncio.StreamWriter) -> str:
    p = writer.get_extra_info("peername")
    if isinstance(p, tuple) and len(p) >= 2:
        return f"{p[0]}:{p[1]}"
    return str(p)
