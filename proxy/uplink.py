"""The proxy's side of Zabbix 6.0's server-proxy protocol (messages in agent/protocol/proxy.py).

Active mode (ProxyMode=0), the proxy connects out: `proxy config` every ConfigFrequency,
`proxy heartbeat` every HeartbeatFrequency (0: none), `proxy data` every DataSenderFrequency with
the oldest unsent records of the buffer (at most 10,000; then `"more":1` and the next batch at once)
and the interfaces whose availability changed. Records leave the buffer only after the server's
`{"response":"success"}`; on `failed`, no reply or a broken connection the same records go again with
the same ids. `Server=a:port;b:port` (a cluster's nodes) are tried in turn.

Passive mode (ProxyMode=1), the server connects in (through the listener's `proxies` hook): it
answers `proxy config` (tables under "data"), `proxy data` (records marked sent only once the
server's `success` arrives on the same connection) and `proxy tasks`, from `Server=` addresses only.

Every heartbeat and data message also carries `"buffer": N`, the number of unsent values (a Vigil
server keeps it for `vigil[proxy,NAME,buffer]`; Zabbix ignores fields it does not know).
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import secrets
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from vigil.agent.protocol import zbxd
from vigil.agent.protocol.messages import ProtocolError, dumps, failure, loads
from vigil.agent.protocol.proxy import (
    HISTORY_DATA,
    MAX_RECORDS,
    PROXY_CONFIG,
    PROXY_DATA,
    PROXY_HEARTBEAT,
    PROXY_TASKS,
    ConfigRequest,
    InterfaceAvailability,
    ProxyData,
)
from vigil.proxy import autoreg
from vigil.proxy.buffer import ProxyBuffer
from vigil.proxy.conf import ProxyConf
from vigil.proxy.localconfig import LocalConfig, LocalConfigError
from vigil.proxy.tasks import TaskRunner
from vigil.server.config import tables as t
from vigil.server.ingest.listener import FollowUp
from vigil.server.store.base import StoreError

log = logging.getLogger("vigil.proxy.uplink")

VERSION = "6.0.14"  # the protocol version a 6.0 server expects of its proxies
MAX_FRAME = 1 << 30


class Outbox:
    """What one `proxy data` carries, read from the buffer, and what to do once the server took it."""

    def __init__(self, buffer: ProxyBuffer, engine: sa.Engine, session: str, host: str) -> None:
        self.buffer = buffer
        self.engine = engine
        self.session = session
        self.host = host
        self._reported: dict[int, tuple[int, str]] = {}  # interfaceid -> availability the server acknowledged
        self._counted = (-1e9, 0, 0)  # (when counted, unsent then, highest id then)
        self._count_cost = 0.0  # seconds the last count took

    def interfaces(self) -> list[InterfaceAvailability]:
        with self.engine.connect() as c:
            rows = c.execute(sa.select(t.interfaces.c.interfaceid, t.interfaces.c.available,
                                       t.interfaces.c.error)).all()
        return [InterfaceAvailability(i, a, e or "") for i, a, e in rows
                if self._reported.get(i, (0, "")) != (a, e or "")]

    def take(self, limit: int = MAX_RECORDS) -> tuple[ProxyData, int]:
        """The next message (not yet marked sent) and how many values are unsent in all.

        A batch an earlier run sent without seeing the reply goes first, under its own session and
        ids (the server drops what it stored of it); only records never sent go under this run's
        session. The session and id range are committed before the message leaves."""
        session, records, more = self.session, [], False
        inflight = self.buffer.inflight()
        if inflight is not None and inflight[0] != self.session:
            records = self.buffer.batch_range(inflight[1], inflight[2])
            if records:
                session, more = inflight[0], True
                log.info("resending %d records of session %s that the server may have stored (ids %d..%d)",
                         len(records), session, records[0].id, records[-1].id)
            else:
                self.buffer.clear_inflight()
        if not records:
            records = self.buffer.batch(limit)
            more = len(records) >= limit
        self.buffer.sending(session, records)
        now = time.time_ns()
        data = ProxyData(host=self.host, session=session, version=VERSION, clock=now // 1_000_000_000,
                         ns=now % 1_000_000_000, history=records, interfaces=self.interfaces(), more=more,
                         autoregistration=autoreg.pending(self.engine))
        return data, self.unsent()

    def take_after(self, data: ProxyData, limit: int = MAX_RECORDS) -> tuple[ProxyData, int]:
        """The message after `data` (a full batch of this run's session, still in flight): read while
        the server stores `data`, marked in flight only with `data`'s acknowledgement (`acknowledged(data,
        then=...)`), so a restart before that resends `data`, never this one under its ids."""
        return self._after(data.history[-1].id, len(data.history), limit)

    def _after(self, after: int, count: int, limit: int) -> tuple[ProxyData, int]:
        """The message of the records after id `after`, while the `count` up to it are in flight."""
        records = self.buffer.batch_after(after, limit)
        now = time.time_ns()
        nxt = ProxyData(host=self.host, session=self.session, version=VERSION, clock=now // 1_000_000_000,
                        ns=now % 1_000_000_000, history=records, interfaces=self.interfaces(),
                        more=len(records) >= limit)
        return nxt, max(0, self.unsent() - count)

    def prepare_after(self, ready: Prepared, limit: int = MAX_RECORDS) -> Prepared:
        """`take_after` framed: the message after `ready`'s. When the records are all plain values
        their `history data` is rendered by SQLite (`ProxyBuffer.batch_after_json`) and put into the
        frame as it is, with no record objects; the message's `history` is then empty and `span` says
        which records it carries."""
        lo, hi, count = ready.ids()
        rendered = self.buffer.batch_after_json(hi, limit)
        if rendered is None:
            return prepare(self._after(hi, count, limit))
        n, first, last, text = rendered
        now = time.time_ns()
        nxt = ProxyData(host=self.host, session=self.session, version=VERSION, clock=now // 1_000_000_000,
                        ns=now % 1_000_000_000, history=[], interfaces=self.interfaces(), more=n >= limit)
        unsent = max(0, self.unsent() - count)
        history = text.encode()
        return Prepared(nxt, unsent, frame_with(body(nxt, unsent), history), (first, last, n), history)

    def unsent(self) -> int:
        """The unsent count for the "buffer" field: counted at most once a second, and at most 10%
        of the time (a count over 1,000,000 buffered values takes longer than reading a batch and
        was a fifth of the proxy's time in a drain); in between, what was acknowledged is taken off
        and what was buffered (ids beyond the highest then) is added."""
        now, top = time.monotonic(), self.buffer.last_id()
        if now - self._counted[0] >= max(1.0, 10 * self._count_cost):
            n = self.buffer.unsent()
            self._count_cost = time.monotonic() - now
            self._counted = (now, n, top)
        return max(0, self._counted[1] + top - self._counted[2])

    def acknowledged(self, data: ProxyData, then: ProxyData | None = None, *,
                     span: tuple[int, int, int] | None = None, then_span: tuple[int, int, int] | None = None) -> bool:
        """The server took `data`; `then` (from `take_after`) is the next message, now in flight
        unless False is returned (the buffer changed under it: it is not to be sent). `span` and
        `then_span`: the (lowest id, highest id, count) of messages built without records
        (`prepare_after`)."""
        span = span or _span(data.history)
        nxt = None
        if then is not None:
            nxt = (then.session, *(then_span or _span(then.history) or (0, 0, 0)))
        kept = self.buffer.ack_span(span, then=nxt)
        when, unsent, top = self._counted
        self._counted = (when, unsent - (span[2] if span else 0), top)
        for a in data.interfaces:
            self._reported[a.interfaceid] = (a.available, a.error)
        autoreg.acknowledged(self.engine, data.autoregistration)
        return kept


def body(data: ProxyData, unsent: int, *, request: bool = True) -> dict[str, Any]:
    out = data.to_json(request=request)
    out["buffer"] = unsent
    return out


# zlib level 1: a 10,000-record batch compresses 9x faster than at Zabbix's level 6, to 2% more bytes
# (any level inflates the same way on the other side).
COMPRESS_LEVEL = 1


def _span(records: list[Any]) -> tuple[int, int, int] | None:
    return (records[0].id, records[-1].id, len(records)) if records else None


@dataclass
class Prepared:
    """A `proxy data` ready to go: the message and its frame. `span` and `history` (the rendered
    `history data` array): a message whose records are only in the frame (`Outbox.prepare_after`)."""

    data: ProxyData
    unsent: int
    frame: bytes
    span: tuple[int, int, int] | None = None  # (lowest id, highest id, count)
    history: bytes | None = None

    def ids(self) -> tuple[int, int, int]:
        """(lowest id, highest id, count) of the records it carries; (0, 0, 0): none."""
        return self.span or _span(self.data.history) or (0, 0, 0)


def prepare(taken: tuple[ProxyData, int]) -> Prepared:
    data, unsent = taken
    return Prepared(data, unsent, zbxd.encode(dumps(body(data, unsent)), compress=True, level=COMPRESS_LEVEL))


def frame_with(obj: dict[str, Any], history: bytes | None) -> bytes:
    """The frame of `obj` with `history` (a rendered JSON array) as its `history data`."""
    text = dumps(obj)
    if history is not None:
        text = b"%s,\"%s\":%s}" % (text[:-1], HISTORY_DATA.encode(), history)
    return zbxd.encode(text, compress=True, level=COMPRESS_LEVEL)


class ActiveUplink:
    tasks: TaskRunner | None = None  # remote commands from the server, results back (proxy/tasks.py)

    def __init__(self, conf: ProxyConf, local: LocalConfig, open_buffer: Callable[[], ProxyBuffer],
                 *, expire_every: float = 60.0) -> None:
        self.conf = conf
        self.local = local
        self.open_buffer = open_buffer
        self.session = secrets.token_hex(16)
        self.servers = conf.servers()
        self._current = 0
        self.expire_every = expire_every
        self.stats = {"sent": 0, "batches": 0, "failures": 0, "configs": 0}
        self._failing = False
        self._applied: bytes | None = None  # digest of the last configuration reply applied
        self._next: Prepared | None = None  # the data loop's next batch, read and marked in flight already
        self._unsent_at: tuple[float, int] | None = None  # (when, unsent) as the last proxy data reported

    async def exchange(self, obj: dict[str, Any], frame: bytes | None = None) -> dict[str, Any] | None:
        """Send one request (`obj`, or `frame`: `obj` framed already) to the first server that answers,
        in turn from the one that last did; its reply (None: no server answered). The connection is
        closed after the reply."""
        payload = frame if frame is not None else zbxd.encode(dumps(obj), compress=True, level=COMPRESS_LEVEL)
        timeout = self.conf.Timeout
        last: Exception | None = None
        for k in range(len(self.servers)):
            i = (self._current + k) % len(self.servers)
            host, port = self.servers[i]
            try:
                async with asyncio.timeout(timeout):
                    reader, writer = await asyncio.open_connection(host, port)
            except (OSError, TimeoutError) as e:
                last = e
                continue
            try:
                async with asyncio.timeout(max(timeout * 4, 30)):  # the server commits before it answers
                    writer.write(payload)
                    await writer.drain()
                    header, raw = await zbxd.read_raw_frame(reader, MAX_FRAME, MAX_FRAME)
                reply = loads(zbxd.decode_body(header, raw))
                if not isinstance(reply, dict):
                    raise ProtocolError("the reply is not a JSON object")
                self._current = i
                return reply
            except (OSError, EOFError, TimeoutError, zbxd.FrameError, ProtocolError) as e:
                last = e
                self._current = (i + 1) % len(self.servers)
                return self._lost(host, port, obj, e)
            finally:
                writer.close()
                try:
                    await writer.wait_closed()
                except (ConnectionError, OSError):
                    pass
        if not self._failing:
            log.warning("cannot connect to the server (%s): %s", self.conf.Server, last or "no address")
            self._failing = True
        return None

    def _lost(self, host: str, port: int, obj: dict[str, Any], e: BaseException) -> None:
        log.warning("%s to %s:%d: no reply: %s", obj.get("request"), host, port, e or type(e).__name__)
        return None

    async def run(self, stop: asyncio.Event) -> None:
        log.info("active proxy [%s]: server %s, session %s", self.conf.Hostname, self.conf.Server, self.session)
        loops = [self._config_loop(stop), self._data_loop(stop), self._expire_loop(stop)]
        if self.conf.HeartbeatFrequency:
            loops.append(self._heartbeat_loop(stop))
        await asyncio.gather(*loops)

    async def _sleep(self, stop: asyncio.Event, seconds: float) -> bool:
        """False once stopping."""
        try:
            await asyncio.wait_for(stop.wait(), seconds)
        except TimeoutError:
            pass
        return not stop.is_set()

    async def _config_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            wait = self.conf.ConfigFrequency if await self.fetch_config() else min(self.conf.ConfigFrequency, 10)
            if not await self._sleep(stop, wait):
                return

    async def fetch_config(self) -> bool:
        reply = await self.exchange(ConfigRequest(self.conf.Hostname, VERSION).to_json())
        if reply is None:
            return False
        if reply.get("response") == "failed":
            log.warning("the server refused the configuration request: %s", reply.get("info", ""))
            return False
        # The same reply as the one applied last is not applied again: applying 10,000 items holds
        # the SQLite file's write lock for seconds, and the buffer's writes wait behind it.
        digest = hashlib.sha256(dumps(reply)).digest()
        if digest == self._applied:
            return True
        try:
            applied = await asyncio.to_thread(self.local.apply_json, reply)
        except (LocalConfigError, sa.exc.SQLAlchemyError) as e:
            log.error("configuration from the server not applied (keeping the previous one): %s", e)
            return False
        self._applied = digest
        self.stats["configs"] += 1
        log.info("configuration %d applied: %d hosts, %d items", applied.version, applied.hosts, applied.items)
        return True

    async def _heartbeat_loop(self, stop: asyncio.Event) -> None:
        buffer = await asyncio.to_thread(self.open_buffer)
        try:
            while await self._sleep(stop, self.conf.HeartbeatFrequency):
                # What the last proxy data said, when it went within the last DataSenderFrequency or
                # two: counting a large buffer again here would cost as much as the data loop's count.
                fresh = self._unsent_at is not None and \
                    time.monotonic() - self._unsent_at[0] <= 2 * self.conf.DataSenderFrequency + 1
                unsent = self._unsent_at[1] if fresh and self._unsent_at is not None \
                    else await asyncio.to_thread(buffer.unsent)
                reply = await self.exchange({"request": PROXY_HEARTBEAT, "host": self.conf.Hostname,
                                             "version": VERSION, "buffer": unsent})
                if reply is not None and reply.get("response") != "success":
                    log.warning("heartbeat refused: %s", reply.get("info", reply))
        finally:
            buffer.close()

    async def _data_loop(self, stop: asyncio.Event) -> None:
        """A `proxy data` every DataSenderFrequency, counted from when the last one started (as
        zabbix_proxy does), and the next at once while full batches go."""
        buffer = await asyncio.to_thread(self.open_buffer)
        outbox = Outbox(buffer, self.local.engine, self.session, self.conf.Hostname)
        try:
            while True:
                started = time.monotonic()
                more = await self.send_data(outbox, pipeline=True)
                if stop.is_set():
                    if not more:
                        return
                    continue  # one more pass when stopping: what the pollers handed in last
                wait = self.conf.DataSenderFrequency - (time.monotonic() - started)
                if not more and not await self._sleep(stop, max(0.0, wait)):
                    await self.send_data(outbox, pipeline=True)
                    return
        finally:
            buffer.close()

    async def send_data(self, outbox: Outbox, *, pipeline: bool = False) -> bool:
        """One `proxy data`; True when a full batch went and the next should follow at once.

        `pipeline` (the data loop's own outbox): while the server stores a full batch, the next one is
        read and framed; it is marked in flight in the transaction that marks this one sent."""
        t0 = time.perf_counter()
        ready, self._next = self._next, None
        if ready is None:
            try:
                ready = await asyncio.to_thread(lambda: prepare(outbox.take()))
            except (StoreError, sa.exc.SQLAlchemyError, sqlite3.Error, OSError) as e:
                log.error("cannot read the buffer: %s", e)
                return False
        data, unsent = ready.data, ready.unsent
        lo, hi, count = ready.ids()
        t1 = time.perf_counter()
        ahead: asyncio.Future[Prepared] | None = None
        if pipeline and data.more and data.session == self.session and count:
            ahead = asyncio.ensure_future(asyncio.to_thread(outbox.prepare_after, ready))
        frame, carried = ready.frame, []
        if self.tasks is not None and self.tasks.pending():  # remote command results go along: framed again
            obj = body(data, unsent)
            carried = self.tasks.attach(obj)
            frame = frame_with(obj, ready.history)
        reply = await self.exchange({"request": PROXY_DATA}, frame)
        t2 = time.perf_counter()
        nxt: Prepared | None = None
        if ahead is not None:
            try:
                nxt = await ahead
            except (StoreError, sa.exc.SQLAlchemyError, sqlite3.Error, OSError) as e:
                log.error("cannot read the buffer: %s", e)  # read again by the next take
        if reply is None:
            self.stats["failures"] += 1
            return False
        if reply.get("response") != "success":
            self.stats["failures"] += 1
            log.warning("the server refused %d records (they go again): %s", count, reply.get("info", reply))
            return False
        self._unsent_at = (time.monotonic(), max(0, unsent - count))
        if nxt is None:
            if ready.span is None:  # (a site's outbox takes the message alone)
                await asyncio.to_thread(outbox.acknowledged, data)
            else:
                await asyncio.to_thread(lambda: outbox.acknowledged(data, span=ready.span))
        else:
            following = nxt
            if not await asyncio.to_thread(lambda: outbox.acknowledged(data, following.data, span=ready.span,
                                                                       then_span=following.span)):
                nxt = None
        self._next = nxt
        if self.tasks is not None:
            self.tasks.delivered(carried)
            self.tasks.received(reply)
        if count:
            log.debug("proxy data: %d records; read %.3f s, server %.3f s, marked sent %.3f s%s", count,
                      t1 - t0, t2 - t1, time.perf_counter() - t2, " (next batch read meanwhile)" if nxt else "")
        if self._failing:
            log.info("the server answers again; %d values were waiting", unsent)
            self._failing = False
        self.stats["sent"] += count
        self.stats["batches"] += 1
        return data.more

    async def _expire_loop(self, stop: asyncio.Event) -> None:
        buffer = await asyncio.to_thread(self.open_buffer)
        try:
            while True:
                await asyncio.to_thread(buffer.expire, int(time.time()))
                if not await self._sleep(stop, self.expire_every):
                    return
        finally:
            buffer.close()


def allowed(peer: str, allow: list[str]) -> bool:
    """Whether a peer (`ip:port`) is one of Server='s addresses, CIDRs or names (names as written)."""
    ip = peer.rsplit(":", 1)[0].strip("[]") if ":" in peer else peer
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip in allow
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    for a in allow:
        try:
            if addr in ipaddress.ip_network(a, strict=False):
                return True
        except ValueError:
            if a == ip or (a == "localhost" and addr.is_loopback):
                return True
    return False


class PassiveUplink:
    """The listener's `proxies` hook in passive mode: answers the server's requests."""

    tasks: TaskRunner | None = None  # remote commands from the server, results back (proxy/tasks.py)

    def __init__(self, conf: ProxyConf, local: LocalConfig, open_buffer: Callable[[], ProxyBuffer]) -> None:
        self.conf = conf
        self.local = local
        self.allow = conf.allowed()
        self.session = secrets.token_hex(16)
        self.open_buffer = open_buffer
        self._buffer: ProxyBuffer | None = None
        self._outbox: Outbox | None = None
        self._turn = asyncio.Lock()  # one proxy data exchange at a time: records are marked in order
        self.stats = {"sent": 0, "batches": 0, "failures": 0, "configs": 0}

    def outbox(self) -> Outbox:
        if self._outbox is None:
            self._buffer = self.open_buffer()
            self._outbox = Outbox(self._buffer, self.local.engine, self.session, "")
        return self._outbox

    def close(self) -> None:
        if self._buffer is not None:
            self._buffer.close()

    async def handle(self, request: str, obj: dict[str, Any], peer: str) -> bytes | FollowUp | None:
        if not allowed(peer, self.allow):
            log.warning("%s from %s refused: not one of Server=%s", request, peer, self.conf.Server)
            return failure(f"connection from {peer.rsplit(':', 1)[0]} is not allowed")
        if request == PROXY_CONFIG:
            tables = obj.get("data")
            if not isinstance(tables, dict):
                log.warning("proxy config from %s: no \"data\" object of tables", peer)
                return failure("cannot find pair with name \"data\"")
            try:
                applied = await asyncio.to_thread(self.local.apply_json, tables)
            except (LocalConfigError, sa.exc.SQLAlchemyError) as e:
                log.error("configuration from %s not applied (keeping the previous one): %s", peer, e)
                return failure(f"cannot apply the configuration: {e}")
            self.stats["configs"] += 1
            log.info("configuration %d applied: %d hosts, %d items", applied.version, applied.hosts, applied.items)
            return dumps({"response": "success", "version": VERSION})
        if request == PROXY_DATA:
            return await self._data(peer)
        if request == PROXY_TASKS:
            now = time.time_ns()
            obj = {"version": VERSION, "clock": now // 1_000_000_000, "ns": now % 1_000_000_000}
            if self.tasks is None:
                return dumps(obj)
            return FollowUp(dumps(obj), self._tasks_then(self.tasks.attach(obj)))
        log.warning("%s from %s: not answered by a passive proxy", request, peer)
        return failure(f"{request!r} is not a request a passive proxy answers")

    async def _data(self, peer: str) -> FollowUp | bytes:
        await self._turn.acquire()
        try:
            outbox = self.outbox()
            data, unsent = await asyncio.to_thread(outbox.take)
        except BaseException as e:
            self._turn.release()
            if isinstance(e, StoreError | sa.exc.SQLAlchemyError):
                log.error("cannot read the buffer: %s", e)
                return failure(f"cannot read the buffer: {e}")
            raise

        async def then(answer: bytes | None) -> None:
            try:
                reply = loads(answer) if answer is not None else None
                if isinstance(reply, dict) and reply.get("response") == "success":
                    await asyncio.to_thread(outbox.acknowledged, data)
                    await self._tasks_then(carried)(answer)
                    self.stats["sent"] += len(data.history)
                    self.stats["batches"] += 1
                else:
                    self.stats["failures"] += 1
                    log.warning("the server at %s did not acknowledge %d records (they go again): %s", peer,
                                len(data.history), reply if reply is not None else "no answer")
            except ProtocolError as e:
                log.warning("the server's answer from %s cannot be read: %s", peer, e)
            finally:
                self._turn.release()

        obj = body(data, unsent, request=False)
        carried = self.tasks.attach(obj) if self.tasks is not None else []
        return FollowUp(dumps(obj), then)

    def _tasks_then(self, carried: list[int]) -> Callable[[bytes | None], Awaitable[None]]:
        """What the server's answer to a message that carried these results does: on `success`,
        they are delivered, and the remote commands it holds start."""
        async def then(answer: bytes | None) -> None:
            try:
                reply = loads(answer) if answer is not None else None
            except ProtocolError:
                return
            if self.tasks is not None and isinstance(reply, dict) and reply.get("response") == "success":
                self.tasks.delivered(carried)
                self.tasks.received(reply)
        return then
