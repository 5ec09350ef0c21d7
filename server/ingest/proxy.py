"""The server's side of Zabbix 6.0 proxies: `proxy config`, `proxy heartbeat` and `proxy data` from
active proxies (through the ingest listener), and the poller of passive proxies.

Values from a proxy keep their own clock and ns and go through the same batcher as sender data: the
proxy is told `success` only once they are committed. A proxy resends a batch whose reply it did not
get with the same session and ids, so the highest committed id per (proxy, session) is kept with the
values (the agent-session table, under the key `proxy:<proxyid>:<session>`) and records at or below
it are dropped as duplicates. A record for an item the proxy does not monitor, or one its item's
value type cannot hold, is skipped and counted failed; the others are stored.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from vigil.agent.protocol import zbxd
from vigil.agent.protocol.messages import (
    CLOCK_MAX,
    ID_MAX,
    NS_MAX,
    ProcessedInfo,
    ProtocolError,
    dumps,
    failure,
    loads,
    success,
)
from vigil.agent.protocol.proxy import (
    HISTORY_DATA,
    MAX_RECORDS,
    PROXY_CONFIG,
    PROXY_DATA,
    PROXY_HEARTBEAT,
    PROXY_TASKS,
    ConfigReply,
    HistoryRecord,
    ProxyData,
    Table,
    parse_history_record,
    parse_proxy_data,
    proxy_name,
)
from vigil.server.config.proxies import ProxyRef
from vigil.server.config.repo import ConfigRepo
from vigil.server.config.tables import ProxyMode, ValueType
from vigil.server.ingest.convert import UINT_MAX, ConversionError
from vigil.server.ingest.proxytasks import ProxyTasks
from vigil.server.ingest.sessions import AgentSessions
from vigil.server.ingest.values import DEFAULT_WINDOW, ClockWindow, _add
from vigil.server.store.base import WriteBatch

log = logging.getLogger("vigil.ingest.proxy")
UNSIGNED = int(ValueType.UNSIGNED)
TOUCH_EVERY = 1.0  # seconds between records of a draining proxy's last contact, delay and buffer

Submit = Callable[[WriteBatch], Awaitable[None]]


def session_key(proxyid: int, session: str) -> str:
    return f"proxy:{proxyid}:{session}"


@dataclass
class _ProxyView:
    """What one proxy's data is checked against, read once per configuration version."""

    version: int
    items: dict[int, tuple[int, int, int]]  # itemid -> (hostid, type, value_type)
    interfaces: set[int]


@dataclass
class Outcome:
    processed: int = 0
    failed: int = 0
    duplicates: int = 0
    error: str = ""  # set: the batch was refused whole (nothing stored)
    reason: str = ""  # why the first skipped record was skipped

    def skip(self, why: str) -> None:
        self.failed += 1
        if not self.reason:
            self.reason = why


class ProxyHandler:
    """Answers proxy requests; one per server, shared by the listener and the passive poller."""

    tasks: ProxyTasks | None = None  # remote commands to proxies and their results (server/ingest/proxytasks.py)

    def __init__(self, repo: ConfigRepo, submit: Submit, last_ids: dict[str, int], sessions: AgentSessions,
                 version: Callable[[], int], *, clock_window: ClockWindow = DEFAULT_WINDOW,
                 max_history: Callable[[], int] = lambda: 0,
                 unsupported: Callable[[list[tuple[int, int, str]]], None] | None = None) -> None:
        self.repo = repo
        self.submit = submit
        self.last_ids = last_ids
        self.sessions = sessions
        self.version = version
        self.clock_window = clock_window
        self.max_history = max_history
        self.unsupported = unsupported
        self._views: dict[int, _ProxyView] = {}
        self._proxies: tuple[int, dict[str, ProxyRef]] = (-1, {})
        self.stats = {"records": 0, "duplicates": 0, "failed": 0}
        self._draining: tuple[int, set[int]] = (-1, set())  # proxies keeping moved hosts (proxy groups)
        self.autoreg: Any = None  # server/ingest/autoreg.py's Autoregistrar: "auto registration" records
        self._touched: dict[int, float] = {}  # proxyid -> when its last contact was recorded (monotonic)

    # --- configuration ----------------------------------------------------------------------------

    async def proxies(self) -> dict[str, ProxyRef]:
        v = self.version()
        if self._proxies[0] != v:
            self._proxies = (v, await asyncio.to_thread(self.repo.proxies))
        return self._proxies[1]

    async def view(self, proxy: ProxyRef) -> _ProxyView:
        v = self.version()
        view = self._views.get(proxy.proxyid)
        if view is None or view.version != v:
            items, itfs = await asyncio.to_thread(
                lambda: (self.repo.proxy_items(proxy.proxyid), self.repo.proxy_interfaces(proxy.proxyid)))
            view = self._views[proxy.proxyid] = _ProxyView(v, items, itfs)
        return view

    async def config_reply(self, proxy: ProxyRef) -> ConfigReply:
        tables = await asyncio.to_thread(self.repo.proxy_tables, proxy.proxyid)
        return ConfigReply({name: Table(fields, rows) for name, (fields, rows) in tables.items()})

    # --- active proxies, through the listener ---------------------------------------------------

    async def handle(self, request: str, obj: dict[str, Any], peer: str) -> bytes | None:
        """The reply to a proxy request from an active proxy (None: close without one)."""
        try:
            name = proxy_name(obj)
        except ProtocolError as e:
            log.warning("%s from %s: %s", request, peer, e)
            return failure(str(e))
        try:
            proxy = (await self.proxies()).get(name)
        except Exception as e:
            log.warning("%s from %s: cannot read the proxies: %s", request, peer, e)
            return failure("the configuration database is not available")
        if proxy is None:
            log.warning("%s from %s: proxy [%s] not found", request, peer, name)
            return failure(f"proxy \"{name}\" not found")
        if proxy.mode != ProxyMode.ACTIVE:
            log.warning("%s from %s: proxy [%s] is configured as passive", request, peer, name)
            return failure(f"proxy \"{name}\" is configured for passive mode")
        if not _allowed(proxy, peer):
            log.warning("%s from %s: proxy [%s] may connect only from %s", request, peer, name,
                        ", ".join(proxy.allowed_addresses))
            return failure(f"connection of proxy \"{name}\" from {_ip(peer)} is not allowed")
        version = str(obj.get("version", ""))
        buffer = reported_buffer(obj, name, peer) if request in (PROXY_HEARTBEAT, PROXY_DATA) else None
        if request == PROXY_CONFIG:
            try:
                reply = await self.config_reply(proxy)
            except Exception as e:
                log.warning("proxy config for [%s] from %s: %s", name, peer, e)
                return failure("cannot read the configuration: the database is not available")
            await self._touch(proxy, version)
            log.info("sent the configuration to proxy [%s] at %s: %d hosts, %d items", name, peer,
                     len(reply.tables["hosts"].data), len(reply.tables["items"].data))
            return dumps(reply.active_json())
        if request == PROXY_HEARTBEAT:
            await self._touch(proxy, version, buffer=buffer)
            return dumps({"response": "success"})
        if request == PROXY_DATA:
            started = time.perf_counter()
            try:
                data, raw = parse_data(obj)
            except ProtocolError as e:
                log.warning("proxy data from [%s] at %s refused: %s", name, peer, e)
                return failure(f"invalid proxy data: {e}")
            out = await self.take(proxy, data, peer, buffer, raw)
            if out.error:
                return failure(out.error)
            total = out.processed + out.failed + out.duplicates
            reply = success(ProcessedInfo(out.processed, out.failed + out.duplicates, total,
                                          time.perf_counter() - started))
            return reply if self.tasks is None else await self.tasks.reply(proxy, obj, reply)
        if request == PROXY_TASKS:
            return dumps({"response": "success"})
        return failure(f"unknown request {request!r}")

    async def _touch(self, proxy: ProxyRef, version: str, delay: int | None = None,
                     buffer: int | None = None) -> None:
        try:
            await asyncio.to_thread(self.repo.touch_proxy, proxy.proxyid, int(time.time()), version, delay, buffer)
        except Exception as e:  # last-seen is not worth failing a request for
            log.info("cannot record the last contact of proxy [%s]: %s", proxy.name, e)

    # --- proxy data, from either mode -----------------------------------------------------------

    async def take(self, proxy: ProxyRef, data: ProxyData, peer: str, buffer: int | None = None,
                   raw: list[Any] | None = None) -> Outcome:
        """Store a parsed `proxy data`; returns once it is committed (or refused). `buffer`: the
        unsent values the proxy reported with it (a Vigil proxy does), recorded with its last contact.
        `raw`: its `history data` as received, not parsed yet (`parse_data`); then `data.history`
        is not looked at, and a malformed record refuses the whole message as the parser would."""
        try:
            view = await self.view(proxy)
        except Exception as e:
            log.warning("proxy data from [%s] at %s: cannot read its items: %s", proxy.name, peer, e)
            return Outcome(error="the configuration database is not available")
        now = int(time.time())
        key = session_key(proxy.proxyid, data.session) if data.session else ""
        out = Outcome()
        async with self.sessions.turn(key):
            seen = self.last_ids.get(key, 0) if key else 0
            try:
                batch, unsupported, span = self._batch(proxy, view, data.history if raw is None else raw, seen,
                                                       now, out, raw is not None)
            except ProtocolError as e:
                log.warning("proxy data from [%s] at %s refused: %s", proxy.name, peer, e)
                return Outcome(error=f"invalid proxy data: {e}")
            if key and span.count and span.last > seen:
                batch.sessions[key] = span.last
            availability = [(a.interfaceid, a.available, a.error) for a in data.interfaces
                            if a.interfaceid in view.interfaces]
            if len(batch) or batch.logpos or batch.sessions:
                try:
                    await self.submit(batch)
                except Exception as e:
                    log.error("proxy data from [%s] at %s: not stored: %s", proxy.name, peer, e)
                    return Outcome(error=f"values were not stored: {e}")
                if batch.sessions:
                    self.sessions.committed(batch.sessions)
        if not data.more:
            await self._end_drains(proxy, now)
        if data.autoregistration and self.autoreg is not None:
            if error := await self.autoreg.proxy(proxy, data.autoregistration, peer):
                return Outcome(error=error)  # sent again; its values are dropped as already stored
        if availability:
            try:
                await asyncio.to_thread(self.repo.save_proxy_availability, availability)
            except Exception as e:
                log.warning("proxy data from [%s]: interface availability not saved: %s", proxy.name, e)
        if unsupported and self.unsupported is not None:
            self.unsupported(unsupported)
        # Delay: how old the oldest value of this batch is, i.e. how far behind the proxy's buffer is.
        # While a proxy drains its buffer (full batches, "more") this is recorded once a second, not
        # after every batch (each is a commit of its own that the next batch's values wait behind);
        # the batch that ends a drain is always recorded.
        last = self._touched.get(proxy.proxyid, -1e9)
        if not data.more or time.monotonic() - last >= TOUCH_EVERY:
            self._touched[proxy.proxyid] = time.monotonic()
            delay = max(0, now - span.oldest) if span.count else 0
            await self._touch(proxy, data.version, delay, buffer)
        self.stats["records"] += out.processed
        self.stats["duplicates"] += out.duplicates
        self.stats["failed"] += out.failed
        if out.failed or out.duplicates:
            log.info("proxy data from [%s]: %d stored, %d failed, %d already stored (resent)%s", proxy.name,
                     out.processed, out.failed, out.duplicates, f"; first failure: {out.reason}" if out.reason else "")
        return out

    async def _end_drains(self, proxy: ProxyRef, now: int) -> None:
        """A proxy group's host that moved off this proxy leaves its configuration once the proxy has
        caught up (server/config/proxygroup_config.py)."""
        try:
            v = self.version()
            if self._draining[0] != v:
                self._draining = (v, await asyncio.to_thread(self.repo.draining_proxies))
            if proxy.proxyid in self._draining[1]:
                if n := await asyncio.to_thread(self.repo.end_drains, proxy.proxyid, now):
                    log.info("proxy [%s] delivered its buffer for %d hosts that moved to other proxies of "
                             "its group", proxy.name, n)
        except Exception as e:  # tried again at its next data
            log.info("proxy [%s]: cannot update its moved hosts: %s", proxy.name, e)

    def _batch(self, proxy: ProxyRef, view: _ProxyView, records: list[Any], seen: int, now: int,
               out: Outcome, raw: bool = False) -> tuple[WriteBatch, list[tuple[int, int, str]], _Span]:
        """The values of these records, in one pass: HistoryRecords (`raw` False) or the `history data`
        dicts as received (`raw`: each is parsed here, and a malformed one or ids that do not increase
        raise ProtocolError naming it, as parse_proxy_data would; the batch is then refused whole).

        The common record (an unsigned value for an item of this proxy, the five plain fields, inside
        the clock window, not resent) is checked and converted inline, without a HistoryRecord; every
        other one goes through parse_history_record and `_record`, the general rules."""
        age = self.clock_window.age or self.max_history()
        lo, hi = (max(0, now - age) if age else 0), now + self.clock_window.ahead
        top = min(hi, CLOCK_MAX)
        batch = WriteBatch()
        unsupported: list[tuple[int, int, str]] = []
        items, uints = view.items, batch.uints
        span = _Span()
        last = 0  # the id before, within this message
        oldest = CLOCK_MAX + 1
        for i, d in enumerate(records):
            if raw:
                if type(d) is dict and len(d) == 5:
                    # the plain record: exactly id, itemid, clock, ns and value (a KeyError: some other five)
                    try:
                        rid, itemid, clock, ns, v = d["id"], d["itemid"], d["clock"], d["ns"], d["value"]
                    except KeyError:
                        rid = None
                    if (type(rid) is int and type(itemid) is int and type(clock) is int and type(ns) is int
                            and type(v) is str and seen < rid <= ID_MAX and rid > last and lo <= clock <= top
                            and 0 <= ns <= NS_MAX and (item := items.get(itemid)) is not None
                            and item[2] == UNSIGNED and len(v) <= 20 and v.isascii() and v.isdigit()
                            and (n := int(v)) <= UINT_MAX):
                        uints.append((itemid, clock, ns, n))  # as to_uint() reads it
                        out.processed += 1
                        last = rid
                        if clock < oldest:
                            oldest = clock
                        continue
                r = parse_history_record(d, i)
                if r.id <= last:
                    raise ProtocolError(f"{HISTORY_DATA}[{i}].id: {r.id} does not follow {last}: ids must "
                                        "increase within a session")
                last = r.id
            else:
                r = d
                last = r.id
            if r.clock < oldest:
                oldest = r.clock
            self._record(r, items, seen, lo, hi, batch, unsupported, out)
        span.count, span.last, span.oldest = len(records), last, oldest
        return batch, unsupported, span

    @staticmethod
    def _record(r: HistoryRecord, items: dict[int, tuple[int, int, int]], seen: int, lo: int, hi: int,
                batch: WriteBatch, unsupported: list[tuple[int, int, str]], out: Outcome) -> None:
        """One record into the batch by the general rules (the inline case of `_batch` is one of them)."""
        if r.id <= seen:
            out.duplicates += 1
            return
        item = items.get(r.itemid)
        if (item is not None and item[2] == UNSIGNED and lo <= r.clock <= hi and r.state == 0
                and r.lastlogsize is None and (v := r.value) is not None and len(v) <= 20 and v.isascii()
                and v.isdigit() and int(v) <= UINT_MAX):
            batch.uints.append((r.itemid, r.clock, r.ns, int(v)))  # the common record, as to_uint() reads it
            out.processed += 1
            return
        if item is None:
            out.skip(f"item {r.itemid} is not an enabled item of a host monitored by this proxy")
            return
        if not lo <= r.clock <= hi:
            out.skip(f"item {r.itemid}: clock {r.clock} is outside the accepted window {lo}..{hi} "
                     "(VIGIL_MAX_CLOCK_AGE, VIGIL_MAX_CLOCK_AHEAD)")
            return
        if r.lastlogsize is not None:
            batch.logpos[r.itemid] = (r.lastlogsize, r.mtime or 0)
        if r.state == 1:
            unsupported.append((r.itemid, r.clock, r.value or "not supported"))
            out.processed += 1
            return
        if r.value is None:
            out.processed += 1  # a log item's position without a line
            return
        vt = item[2]  # an int; _add compares it with the IntEnum members
        extra = ({"timestamp": r.timestamp, "source": r.source, "severity": r.severity, "eventid": r.logeventid}
                 if vt == ValueType.LOG else None)
        try:
            _add(batch, ValueType(vt) if extra is not None else vt, r.itemid, r.clock, r.ns, r.value, extra)
        except (ConversionError, ValueError) as e:
            out.skip(f"item {r.itemid}: {e}")
            unsupported.append((r.itemid, r.clock, str(e)))
            return
        out.processed += 1


@dataclass
class _Span:
    """What `_batch` saw of a message's records: how many, the last id, the oldest clock."""

    count: int = 0
    last: int = 0
    oldest: int = 0


def parse_data(obj: dict[str, Any], *, passive: bool = False) -> tuple[ProxyData, list[Any] | None]:
    """A `proxy data` body parsed but for its `history data` records, which come back as received
    (None: none, or parsed already) for `ProxyHandler.take` to check and convert in one pass.

    Everything parse_proxy_data checks before the records and beside them is checked here the same
    way and in the same order (the section's type and size, the session, clock and ns, then the first
    record, then the other sections); the remaining records are checked by `take`."""
    raw = obj.get(HISTORY_DATA)
    if type(raw) is not list or not 1 < len(raw) <= MAX_RECORDS:
        return parse_proxy_data(obj, passive=passive), None
    head = dict(obj)
    head[HISTORY_DATA] = raw[:1]  # the first record parsed (and its errors named) where the parser would
    data = parse_proxy_data(head, passive=passive)
    data.history = []
    return data, raw


BUFFER_MAX = 2**63 - 1


def reported_buffer(obj: dict[str, Any], name: str, peer: str) -> int | None:
    """The top-level `"buffer": N` (values held unsent) a Vigil proxy sends; None when absent or bad.

    A bad value is logged and ignored: the request it came with is still served."""
    if "buffer" not in obj:
        return None
    value = obj["buffer"]
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= BUFFER_MAX:
        log.warning("proxy [%s] at %s: buffer: %r ignored: must be a whole number from 0 to %d", name, peer,
                    obj["buffer"], BUFFER_MAX)
        return None
    return value


def _ip(peer: str) -> str:
    host = peer.rsplit(":", 1)[0] if ":" in peer else peer
    return host.strip("[]")


def _allowed(proxy: ProxyRef, peer: str) -> bool:
    if not proxy.allowed_addresses:
        return True
    ip = _ip(peer)
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    for allowed in proxy.allowed_addresses:
        try:
            if addr in ipaddress.ip_network(allowed, strict=False):
                return True
        except ValueError:
            if allowed == ip:  # a DNS name: compared as written
                return True
    return False


# --- passive proxies: the server connects to them --------------------------------------------------


class PassivePoller:
    """Every poll interval: push the configuration to each passive proxy when due (or changed), then
    ask it for its data, store it, and acknowledge on the same connection once it is committed."""

    def __init__(self, handler: ProxyHandler, *, interval: float, config_frequency: float, timeout: float,
                 max_frame: int, max_body: int) -> None:
        self.handler = handler
        self.interval = interval
        self.config_frequency = config_frequency
        self.timeout = timeout
        self.max_frame = max_frame
        self.max_body = max_body
        self._pushed: dict[int, tuple[int, float]] = {}  # proxyid -> (config version, when)
        self._failing: set[int] = set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                proxies = [p for p in (await self.handler.proxies()).values() if p.mode == ProxyMode.PASSIVE]
            except Exception as e:
                log.warning("cannot read the passive proxies: %s", e)
                proxies = []
            if proxies:
                await asyncio.gather(*(self.poll(p) for p in proxies))
            try:
                await asyncio.wait_for(stop.wait(), self.interval)
            except TimeoutError:
                pass

    async def poll(self, proxy: ProxyRef) -> None:
        from vigil.server.config.model import ConfigError, proxy_address

        try:
            host, port = proxy_address(proxy.address, f"proxy {proxy.name}.address")
        except ConfigError as e:
            log.warning("%s", e)
            return
        try:
            version = self.handler.version()
            pushed = self._pushed.get(proxy.proxyid)
            if pushed is None or pushed[0] != version or time.monotonic() - pushed[1] >= self.config_frequency:
                await self.push_config(proxy, host, port)
                self._pushed[proxy.proxyid] = (version, time.monotonic())
            await self.fetch_data(proxy, host, port)
        except (OSError, EOFError, TimeoutError, zbxd.FrameError, ProtocolError) as e:
            if proxy.proxyid not in self._failing:
                log.warning("passive proxy [%s] at %s:%d: %s", proxy.name, host, port, e or type(e).__name__)
                self._failing.add(proxy.proxyid)
            return
        if proxy.proxyid in self._failing:
            self._failing.discard(proxy.proxyid)
            log.info("passive proxy [%s] at %s:%d answers again", proxy.name, host, port)

    async def _exchange(self, host: str, port: int, body: bytes,
                        then: Callable[[dict[str, Any]], Awaitable[bytes | None]] | None = None) -> dict[str, Any]:
        async with asyncio.timeout(self.timeout * 4):
            reader, writer = await asyncio.open_connection(host, port)
        try:
            async with asyncio.timeout(self.timeout * 4):
                writer.write(zbxd.encode(body, compress=True))
                await writer.drain()
                header, payload = await zbxd.read_raw_frame(reader, self.max_frame, self.max_body)
            obj = loads(zbxd.decode_body(header, payload))
            if not isinstance(obj, dict):
                raise ProtocolError("the reply is not a JSON object")
            if then is not None:
                ack = await then(obj)  # may take as long as the commit takes
                if ack is not None:
                    async with asyncio.timeout(self.timeout * 4):
                        writer.write(zbxd.encode(ack, compress=True))
                        await writer.drain()
            return obj
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    async def push_config(self, proxy: ProxyRef, host: str, port: int) -> None:
        reply = await self.handler.config_reply(proxy)
        answer = await self._exchange(host, port, dumps(reply.passive_json()))
        if answer.get("response") != "success":
            raise ProtocolError(f"the proxy refused its configuration: {answer.get('info', answer)}")
        log.info("pushed the configuration to passive proxy [%s]: %d hosts, %d items", proxy.name,
                 len(reply.tables["hosts"].data), len(reply.tables["items"].data))

    async def fetch_data(self, proxy: ProxyRef, host: str, port: int) -> Outcome:
        result = Outcome()

        async def store(obj: dict[str, Any]) -> bytes | None:
            nonlocal result
            try:
                data, raw = parse_data(obj, passive=True)
            except ProtocolError as e:
                log.warning("proxy data from passive proxy [%s] refused: %s", proxy.name, e)
                result = Outcome(error=str(e))
                return failure(f"invalid proxy data: {e}")
            result = await self.handler.take(proxy, data, f"{host}:{port}", reported_buffer(obj, proxy.name, host),
                                             raw)
            if result.error:
                return failure(result.error)
            ack = dumps({"response": "success"})
            return ack if self.handler.tasks is None else await self.handler.tasks.reply(proxy, obj, ack)

        await self._exchange(host, port, dumps({"request": PROXY_DATA}), store)
        return result

