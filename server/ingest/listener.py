"""The Zabbix-protocol ingest listener (port 10051): sender data, active checks, agent data.

One request and one reply per connection, as Zabbix does. Every connection is bounded: the whole
frame must arrive within the timeout; frames over the maximum, bodies over max_body once
decompressed and requests of more than max_values values are refused; at most max_connections
sockets are open at once (past that the listener stops accepting and the kernel's backlog holds
the rest). Bodies over INLINE_BYTES are inflated and parsed on a small thread pool, off the event
loop. Bad input gets a `failed` reply naming the problem when the frame could be read, otherwise
the connection is closed; either way a log line names the peer and the problem, and the server
goes on serving everyone else.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from vigil.agent.protocol import zbxd
from vigil.agent.protocol.messages import (
    ACTIVE_CHECKS,
    AGENT_DATA,
    SENDER_DATA,
    ProcessedInfo,
    dumps,
    failure,
)
from vigil.agent.protocol.proxy import MAX_RECORDS as PROXY_MAX_RECORDS
from vigil.agent.protocol.proxy import PROXY_REQUESTS, SITE_CONFIG
from vigil.server.config.repo import ConfigRepo
from vigil.server.config.tables import ItemType
from vigil.server.ingest.batcher import Batcher
from vigil.server.ingest.cache import ConfigCache
from vigil.server.ingest.proxy import ProxyHandler
from vigil.server.ingest.sessions import AgentSessions
from vigil.server.ingest.sockstream import SocketStream
from vigil.server.ingest.tls import CONNECTION, Admission, note_connection, open_tls, refusal
from vigil.server.ingest.values import (
    DEFAULT_WINDOW,
    ClockWindow,
    agent_values,
    fast_sender_values,
    sender_values,
)
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

T = TypeVar("T")
# Plain connections are served on their socket (SocketStream), TLS ones on asyncio's streams.
Reader = asyncio.StreamReader | SocketStream
Writer = asyncio.StreamWriter | SocketStream

# Bodies up to this size are inflated and parsed inline: a hop to a thread costs more than that work.
INLINE_BYTES = 64 * 1024
DECODE_THREADS = 2  # also bounds how many big bodies are inflated or parsed at once
DISCARD_CHUNK = 64 * 1024
PRESCAN_HEAD = 1 << 20  # bytes looked at first when counting a big body's values
LOG_EVERY = 60.0  # seconds between two "connection limit reached" (or accept error) log lines
FILES_BESIDE_CONNECTIONS = 64  # store, log, decoding threads' and the loop's own descriptors
ACCEPT_RETRY = 0.1  # seconds before accepting again after the process ran out of file descriptors

# orjson refuses nesting deeper than 1024 levels itself; the standard library's parser is given
# the same bound by agent.protocol.messages.loads.


@dataclass(frozen=True, slots=True)
class FollowUp:
    """A reply after which the listener reads one more frame on the same connection and hands its body
    (None: none came in time, or it could not be read) to `then`: a passive proxy's `proxy data`, which
    the server acknowledges on the connection it asked on (the `proxies` hook may return one)."""

    reply: bytes
    then: Callable[[bytes | None], Awaitable[None]]


class Observer(Protocol):
    """What ingest tells the trigger engine besides committed values (must not block)."""

    def unsupported(self, rows: list[tuple[int, int, str]]) -> None: ...  # (itemid, clock, error)

    def agent_seen(self, hostid: int) -> None: ...


class IngestServer:
    def __init__(self, cache: ConfigCache, repo: ConfigRepo, batcher: Batcher, last_ids: dict[str, int],
                 read_sessions: Callable[[], dict[str, int]], *,
                 max_frame: int, timeout: float, max_connections: int, max_body: int = 16 * 1024 * 1024,
                 max_values: int = 10_000, clock_window: ClockWindow = DEFAULT_WINDOW,
                 tls: ssl.SSLContext | None = None, observer: Observer | None = None,
                 lld: Callable[[int, str, int], None] | None = None) -> None:
        self.observer = observer
        self.proxies: ProxyHandler | None = None  # proxy config/heartbeat/data (server/ingest/proxy.py)
        # `vigil site config` from site servers (server/ingest/site.py): returns the reply
        self.sites: Callable[[dict[str, Any], str], Awaitable[bytes]] | None = None
        # Values stored: the pollers' scheduler feeds the dependent items of trapper and active agent items
        # from them (Scheduler.received), set by `vigil server` once its pollers run.
        self.on_stored: Callable[[WriteBatch], None] | None = None
        self.lld = lld  # where discovery rules' values go (vigil.server.lld.LldProcessor.submit)
        # Active checks of an unknown host: autoregistration (server/ingest/autoreg.py; a Vigil proxy's own
        # in proxy/autoreg.py); returns why the request was refused, or None.
        self.autoreg: Callable[[dict[str, Any], str], Awaitable[str | None]] | None = None
        self.read_sessions = read_sessions
        self.sessions = AgentSessions(last_ids)
        self.clock_window = clock_window
        self.cache = cache
        self.repo = repo
        self.batcher = batcher
        self.last_ids = last_ids
        self.max_frame = max_frame
        self.max_body = max_body
        self.max_values = max_values
        self.timeout = timeout
        self.max_connections = max_connections
        self.open_connections = 0  # sockets accepted and not yet closed
        self._acceptors: set[_Acceptor] = set()
        self._connections: set[asyncio.Task[None]] = set()
        self._decoder = ThreadPoolExecutor(DECODE_THREADS, thread_name_prefix="ingest-decode")
        self._logged: dict[str, float] = {}
        self.tls = tls  # None: plain text only (VIGIL_TLS_CERT_FILE unset)
        self.admission = Admission()  # hosts' tls_accept
        self.stats = {"requests": 0, "values": 0, "failed": 0, "refused": 0, "paused": 0, "peak_connections": 0}

    async def start_server(self, host: str, port: int, *, backlog: int = 1024) -> Listener:
        """Listen on every address of `host` and serve connections, at most max_connections at once."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        socks: list[socket.socket] = []
        try:
            for family, kind, proto, _, address in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                socks.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(address)
                sock.listen(backlog)
                sock.setblocking(False)
        except BaseException:
            for sock in socks:
                sock.close()
            raise
        _check_file_limit(self.max_connections)
        # Not asyncio.start_server: it accepts whatever the kernel has queued, so a limit could only
        # queue sockets inside the process (each an open fd and buffers). Here nothing is accepted
        # while the limit is reached; the kernel's listen backlog holds the rest. Nor loop.sock_accept:
        # it registers the socket with the selector and removes it again for every connection; an
        # _Acceptor keeps it registered while there is room.
        acceptors = [_Acceptor(self, s, loop) for s in socks]
        for a in acceptors:
            self._acceptors.add(a)
            a.resume()
        return Listener(self, socks, acceptors)

    def _accepted(self, conn: socket.socket, address: Any) -> None:
        self.open_connections += 1
        if self.open_connections > self.stats["peak_connections"]:
            self.stats["peak_connections"] = self.open_connections
        task = asyncio.get_running_loop().create_task(self._connection(conn, address))
        self._connections.add(task)
        task.add_done_callback(self._connections.discard)

    async def _connection(self, conn: socket.socket, address: Any) -> None:
        try:
            if self.tls is None:
                stream = SocketStream(conn, asyncio.get_running_loop(), _address(address))
                await self.handle(stream, stream)
                return
            try:
                opened = await open_tls(conn, self.tls, self.timeout)
                if opened is None:
                    return
                reader, writer = opened
            except OSError as e:
                conn.close()
                log.info("cannot set up an accepted connection: %s", e)
                return
            await self.handle(reader, writer)
        finally:
            self.open_connections -= 1
            for acceptor in self._acceptors:
                if acceptor.full:
                    acceptor.resume()

    async def finish(self) -> None:
        """Once nothing is accepted any more: wait up to the timeout for open connections, cancel the rest."""
        if self._connections:
            _, late = await asyncio.wait(set(self._connections), timeout=self.timeout)
            for task in late:
                task.cancel()
        self._decoder.shutdown(wait=False, cancel_futures=True)

    def _rate_log(self, what: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._logged.get(what, -LOG_EVERY) >= LOG_EVERY:
            self._logged[what] = now
            log.warning(message, *args)

    async def _off_loop(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._decoder, fn, *args)

    async def handle(self, reader: Reader, writer: Writer) -> None:
        peer = _peer(writer)
        note_connection(writer)
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

    async def _serve(self, reader: Reader, writer: Writer, peer: str) -> None:
        try:
            # asyncio.timeout, not wait_for: wait_for wraps the read in a task of its own, which cost
            # ~10% of the event loop's time per connection.
            async with asyncio.timeout(self.timeout):
                try:
                    header, payload = await zbxd.read_raw_frame(reader, self.max_frame, self.max_body)
                except zbxd.FrameTooLarge as e:
                    if e.header.data_length <= self.max_body:
                        # Read what was sent, so the client gets the reply rather than a reset.
                        await _discard(reader, e.header.data_length)
                    raise
        except EOFError:
            return
        except TimeoutError:
            self.stats["refused"] += 1
            log.warning("%s sent no whole frame within %g s: connection closed", peer, self.timeout)
            return
        except zbxd.FrameTooLarge as e:
            self.stats["refused"] += 1
            log.warning("refused a frame from %s: %s (VIGIL_MAX_FRAME_BYTES %d, VIGIL_MAX_BODY_BYTES %d)", peer, e,
                        self.max_frame, self.max_body)
            writer.write(zbxd.encode(failure(str(e))))
            await _drain(writer, self.timeout)
            return
        except zbxd.FrameError as e:
            self.stats["refused"] += 1
            log.warning("refused a frame from %s: %s", peer, e)
            return
        try:
            if len(payload) <= INLINE_BYTES and header.body_length <= INLINE_BYTES:
                body, over = zbxd.decode_body(header, payload), 0
            else:
                body, over = await self._off_loop(_decode_big, header, payload, self.max_values)
        except zbxd.FrameError as e:
            self.stats["refused"] += 1
            log.warning("refused a frame from %s: %s", peer, e)
            return
        del payload
        self.stats["requests"] += 1
        if over:
            log.warning("request from %s: more than %d values, over %s: none stored", peer, over,
                        "a proxy batch's records" if over != self.max_values else "VIGIL_MAX_REQUEST_VALUES")
            writer.write(zbxd.encode_like(failure(f"request of more than {over} values is over the "
                                                  f"maximum of {over}; none were stored"), header.flags))
            await _drain(writer, self.timeout)
            return
        reply = await self._dispatch(body, peer)
        if isinstance(reply, FollowUp):
            answer: bytes | None = None
            try:
                writer.write(zbxd.encode_like(reply.reply, header.flags))
                await _drain(writer, self.timeout)
                async with asyncio.timeout(self.timeout * 4):  # the other side may be committing first
                    h, p = await zbxd.read_raw_frame(reader, self.max_frame, self.max_body)
                answer = zbxd.decode_body(h, p)
            except (EOFError, TimeoutError, zbxd.FrameError) as e:
                log.warning("%s sent no answer to the reply: %s", peer, e or type(e).__name__)
            finally:  # whatever happened, the hook learns it (None: no answer)
                await reply.then(answer)
        elif reply is not None:
            writer.write(zbxd.encode_like(reply, header.flags))
            await _drain(writer, self.timeout)

    async def _dispatch(self, body: bytes, peer: str) -> bytes | FollowUp | None:
        started = time.perf_counter()
        if len(body) <= INLINE_BYTES:
            snap = self.cache.snapshot
            if not snap.trapper_rules and self.admission.unchecked(snap):
                now_s, now_ns = divmod(time.time_ns(), 1_000_000_000)
                fast = fast_sender_values(snap, body, now_s, now_ns, self.clock_window, self.max_values)
                if fast is not None:
                    batch, failed, count = fast
                    error = await self._store(batch, SENDER_DATA, peer)
                    return self._values_reply(error, count, failed, started)
        try:
            obj = _loads(body) if len(body) <= INLINE_BYTES else await self._off_loop(_loads, body)
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
            if len(data) > self.max_values:
                log.warning("%s from %s: %d values, over VIGIL_MAX_REQUEST_VALUES (%d): none stored", request, peer,
                            len(data), self.max_values)
                return failure(f"request of {len(data)} values is over the maximum of {self.max_values}; "
                               "none were stored")
            now = time.time_ns()
            now_s, now_ns = divmod(now, 1_000_000_000)
            snap = self.cache.snapshot
            data = self.admission.filter(snap, data, peer)
            discovered = 0
            if snap.lld and self.lld is not None:
                data, discovered = self._discovery_values(snap, data, request == SENDER_DATA, now)
            observer = self.observer
            unsupported: list[tuple[int, int, str]] | None = [] if observer is not None else None
            if request == SENDER_DATA:
                batch, failed = sender_values(snap, data, now_s, now_ns, peer, self.clock_window, unsupported)
                error = await self._store(batch, request, peer)
            else:
                session = obj.get("session")
                if not isinstance(session, str) or len(session) > 64:
                    session = ""
                # One batch per session in flight: a resend waits for the first batch's commit.
                async with self.sessions.turn(session):
                    batch, failed = agent_values(snap, session, data, self.last_ids, now_s, now_ns, peer,
                                                 self.clock_window, unsupported)
                    error = await self._store(batch, request, peer)
                    if error is None and batch.sessions:
                        self.sessions.committed(batch.sessions)
                if observer is not None:
                    for host in {d.get("host") for d in data if type(d) is dict}:
                        ref = snap.hosts.get(host) if isinstance(host, str) else None
                        if ref is not None:
                            observer.agent_seen(ref.hostid)
            if unsupported and error is None:
                observer.unsupported(unsupported)  # type: ignore[union-attr]
            return self._values_reply(error, len(data) + discovered, failed, started)
        if request == ACTIVE_CHECKS:
            return await self._active_checks(obj, peer)
        if request in PROXY_REQUESTS and self.proxies is not None:
            return await self.proxies.handle(request, obj, peer)
        if request == SITE_CONFIG and self.sites is not None:
            return await self.sites(obj, peer)
        log.warning("unknown request %r from %s", request, peer)
        what = "missing field 'request'" if request is None else f"unknown request {str(request)[:64]!r}"
        return failure(what)

    def _values_reply(self, error: Exception | None, total: int, failed: int, started: float) -> bytes:
        if error is not None:
            return failure(f"values were not stored: {error}")
        self.stats["values"] += total - failed
        self.stats["failed"] += failed
        return success_reply(ProcessedInfo(total - failed, failed, total, time.perf_counter() - started))

    def _discovery_values(self, snap: Any, data: list[Any], sender: bool, now: int) -> tuple[list[Any], int]:
        """Values of discovery rules (trapper rules from a sender, active ones from an agent) go to the
        LLD processor instead of history; returns the other values and how many went."""
        kind = ItemType.TRAPPER if sender else ItemType.AGENT_ACTIVE
        rest, n = [], 0
        for d in data:
            ref = snap.lld.get((d.get("host"), d.get("key"))) if type(d) is dict else None
            if ref is None or ref.type != kind or not isinstance(d.get("value"), str) or d.get("state") == 1:
                rest.append(d)
                continue
            self.lld(ref.itemid, d["value"], now)  # type: ignore[misc]
            n += 1
        return (rest, n) if n else (data, 0)

    async def _store(self, batch: WriteBatch, request: str, peer: str) -> Exception | None:
        if len(batch) or batch.logpos or batch.sessions:
            try:
                await self.batcher.submit(batch)
            except Exception as e:
                log.error("%s from %s: not stored: %s", request, peer, e)
                return e
            if self.on_stored is not None and len(batch):
                try:
                    self.on_stored(batch)
                except Exception:  # dependent items must not make the sender's values fail
                    log.exception("%s from %s: feeding dependent items failed", request, peer)
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
            if self.autoreg is not None and (refused := await self.autoreg(obj, peer)):
                return failure(refused)
            return failure(f"host [{host}] not found")
        if not ref.enabled:
            return failure(f"host [{host}] not monitored")
        refused = refusal(ref, CONNECTION.get())
        if refused:
            log.warning("active checks from %s: %s", peer, refused)
            return failure(refused)
        if self.observer is not None:
            self.observer.agent_seen(ref.hostid)
        items = snap.active.get(ref.hostid, [])
        try:
            positions = await asyncio.to_thread(self.repo.log_positions, [i.itemid for i in items]) if items else {}
        except Exception as e:  # the database is away: the agent keeps its last list and asks again
            log.warning("active checks from %s for [%s]: cannot read log positions: %s", peer, host, e)
            return failure(f"cannot read the active checks of host [{host}]: the database is not available")
        data = []
        for i in items:  # as Zabbix: `key` with macros expanded, `key_orig` as configured when it differs
            row: dict[str, Any] = {"key": i.key}
            if i.key_orig and i.key_orig != i.key:
                row["key_orig"] = i.key_orig
            lastlogsize, mtime = positions.get(i.itemid, (0, 0))
            row.update(delay=i.delay, lastlogsize=lastlogsize, mtime=mtime)
            data.append(row)
        return dumps({"response": "success", "data": data})


def success_reply(info: ProcessedInfo) -> bytes:
    """What messages.success(info) makes, without a json.dumps per request (digits and ASCII words:
    nothing to escape)."""
    return b'{"response":"success","info":"%s"}' % str(info).encode()


def _check_file_limit(max_connections: int) -> None:
    try:
        import resource
    except ImportError:  # pragma: no cover - not on Unix
        return
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < max_connections + FILES_BESIDE_CONNECTIONS:
        log.warning("VIGIL_MAX_CONNECTIONS is %d but this process may open only %d files (ulimit -n): past that, "
                    "connections wait in the backlog as if the limit were lower", max_connections, soft)


class _Acceptor:
    """Accepts connections on one listening socket from a reader callback, while there is room.

    Past max_connections it stops reading the socket (`full`) until a connection closes; when accept
    fails for want of file descriptors or memory it stops for ACCEPT_RETRY seconds."""

    BATCH = 16  # connections accepted per wake-up at most, so that a flood does not starve the others

    def __init__(self, ingest: IngestServer, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self.ingest = ingest
        self.sock = sock
        self.loop = loop
        self.stopped = False
        self.reading = False
        self.full = False
        self._retry: asyncio.TimerHandle | None = None

    def resume(self) -> None:
        self.full = False
        if not self.stopped and not self.reading and self._retry is None and self.sock.fileno() != -1:
            self.loop.add_reader(self.sock, self._ready)
            self.reading = True

    def pause(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        if self.reading:
            self.reading = False
            if self.sock.fileno() != -1:
                self.loop.remove_reader(self.sock)

    def stop(self) -> None:
        """For good, before the socket is closed (the selector must not keep a closed descriptor)."""
        self.stopped = True
        self.pause()
        self.ingest._acceptors.discard(self)

    def _ready(self) -> None:
        ingest = self.ingest
        for _ in range(self.BATCH):
            if ingest.open_connections >= ingest.max_connections:
                ingest.stats["paused"] += 1
                ingest._rate_log("full", "%d connections open (VIGIL_MAX_CONNECTIONS): accepting no more until one "
                                 "closes; new ones wait in the kernel's listen backlog", ingest.open_connections)
                self.pause()
                self.full = True
                return
            try:
                conn, address = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as e:
                if self.sock.fileno() == -1:
                    self.pause()
                    return  # the listener was closed
                # Out of file descriptors (EMFILE) or memory: the connection stays in the backlog.
                ingest._rate_log("accept", "cannot accept a connection: %s (%d open); retrying", e,
                                 ingest.open_connections)
                self.pause()
                self._retry = self.loop.call_later(ACCEPT_RETRY, self._retried)
                return
            conn.setblocking(False)
            ingest._accepted(conn, address)

    def _retried(self) -> None:
        self._retry = None
        self.resume()


class Listener:
    """The listening sockets of an IngestServer and their acceptors, used like an asyncio.Server."""

    def __init__(self, ingest: IngestServer, sockets: list[socket.socket], acceptors: list[_Acceptor]) -> None:
        self.ingest = ingest
        self.sockets = sockets
        self._acceptors = acceptors

    def close(self) -> None:
        """Stop accepting; connections already open are served to the end."""
        for a in self._acceptors:
            a.stop()
        for sock in self.sockets:
            sock.close()

    async def wait_closed(self) -> None:
        """Wait, up to the timeout, for open connections to finish."""
        await self.ingest.finish()

    async def __aenter__(self) -> Listener:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()


_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_PROXY_DATA = re.compile(rb'\s*\{\s*"request"\s*:\s*"proxy data"')


# A 6.0 proxy's full batch holds up to MAX_RECORDS records in each of its sections (history, discovery,
# auto registration, interface and host availability), whatever VIGIL_MAX_REQUEST_VALUES says; each
# section is bounded again by agent.protocol.proxy.parse_proxy_data. Tasks and the top object: the margin.
PROXY_MAX_OBJECTS = 5 * PROXY_MAX_RECORDS + 100


def _decode_big(header: zbxd.Header, payload: bytes, max_values: int) -> tuple[bytes, int]:
    """The body, and the limit of values it goes over (0: none): parsed, a body of many small values
    costs ~16x its size, so they are counted before it is parsed (the top object is one more)."""
    body = zbxd.decode_body(header, payload)
    limit = PROXY_MAX_OBJECTS if _PROXY_DATA.match(body) else max_values
    return body, limit if _more_objects_than(body, limit + 1) else 0


def _more_objects_than(body: bytes, limit: int) -> bool:
    """Whether the JSON text holds more than `limit` objects (a value of sender/agent data is one)."""
    if body.count(b"{") <= limit:
        return False  # the usual answer, without looking inside strings
    # A flood of small values shows in its first MiB already; a '"' left once the strings are cut
    # out opens one the prefix cut in two, and braces after it are inside that string.
    head = _STRING.sub(b"", body[:PRESCAN_HEAD])
    if len(body) > PRESCAN_HEAD and b'"' in head:
        head = head[:head.rindex(b'"')]
    if head.count(b"{") > limit:
        return True
    return _STRING.sub(b"", body).count(b"{") > limit


async def _discard(reader: Reader, n: int) -> None:
    while n > 0:
        chunk = await reader.read(min(n, DISCARD_CHUNK))
        if not chunk:
            return
        n -= len(chunk)


async def _drain(writer: Writer, timeout: float) -> None:
    if not (writer.pending() if isinstance(writer, SocketStream) else writer.transport.get_write_buffer_size()):
        return  # a reply that fit in the socket's buffer went out in write() already
    try:
        async with asyncio.timeout(timeout):
            await writer.drain()
    except TimeoutError:
        pass


def _peer(writer: Writer) -> str:
    if isinstance(writer, SocketStream):
        return writer.peer
    return _address(writer.get_extra_info("peername"))


def _address(p: Any) -> str:
    if isinstance(p, tuple) and len(p) >= 2:
        return f"{p[0]}:{p[1]}"
    return str(p)
