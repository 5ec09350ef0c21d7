"""Active checks: fetch the check list from each ServerActive, run the items on schedule, push values.

Per (ServerActive cluster, Hostname) pair there is one `ActiveWorker`, as zabbix_agentd has one
active-checks process per server: its own check list, buffer, session and two threads. The collector
runs each item at its own `delay`, first runs spread over the first few seconds; it never waits on
the network. The sender fetches the list (`active checks`) at start and every RefreshActiveChecks
seconds, handing it to the collector, and pushes the buffer as `agent data` when BufferSend seconds
passed, the buffer is full or half of it is log values, and drops the values only once the server
answered "success"; a failure keeps them for a retry with back-off, and the retry carries the same
session and ids so the server can drop what it already has.

Not-supported items are sent as zabbix_agentd 6.0 does: `state: 1` and the reason as the value.

Each row names the key to evaluate (`key`, the server's macros expanded) and the key to report under
(`key_orig`, as configured), as zabbix_agentd does; an item is known by its `key_orig`. A row that
cannot be used is skipped with a warning, the rest of the list runs. A failed request is retried
within seconds, backing off to `retry_max`. `ServerActive=a;b` makes one worker for the cluster: it
talks to one node and moves to the next when that one cannot be reached (Zabbix 6.0 has no redirect
reply; a standby node simply does not answer). With PersistentBufferFile the last check list is kept
in the file, so an agent started while its server is down collects from it at once.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from vigil.agent.buffer import BufferedValue, FileStore, LogPosition, ValueBuffer
from vigil.agent.checks import CALLER
from vigil.agent.logmon import LOG_KEYS, LogKeyError, LogMonitor, LogReadError, parse_log_key
from vigil.agent.protocol import zbxd
from vigil.agent.protocol.messages import (
    ActiveCheck,
    ActiveChecksRequest,
    ActiveChecksResponse,
    AgentData,
    ProtocolError,
    Response,
    parse_active_checks_response,
    parse_response,
)

log = logging.getLogger("vigil.agent.active")

DEFAULT_AGENT_PORT = 10050
REFRESH_RETRY = 60.0  # after a "failed" reply (host unknown or disabled): a configuration matter, no hurry
FIRST_RETRY = 1.0  # after a failed connection: again in 1 s, doubling up to retry_max
LOG_ERRORS_SUPPRESSED = 2  # zabbix_agentd reports a log item unsupported on the third error in a row
# zabbix_agentd runs a new check at once; spreading first runs over a few seconds keeps a long list
# from firing in one burst without making an hourly item wait up to an hour for its first value.
FIRST_RUN_SPREAD = 5.0


class CheckSource(Protocol):
    def get(self, text: str) -> str: ...


Node = tuple[str, int]
Cluster = tuple[Node, ...]


def _cluster(server: Node | Cluster) -> Cluster:
    """A ServerActive entry as a cluster: one (host, port) or a tuple of them (HA nodes)."""
    if len(server) == 2 and isinstance(server[0], str):
        return (server,)  # type: ignore[return-value]
    return tuple(server)  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class ActiveSettings:
    """What active checks need from the configuration (see `settings_from_config`)."""

    servers: tuple[Cluster, ...]  # each a cluster of one or more nodes; a bare (host, port) is taken too
    hostnames: tuple[str, ...]
    host_metadata: str | None = None
    refresh_active_checks: float = 120.0
    buffer_send: float = 5.0
    buffer_size: int = 100
    timeout: float = 3.0
    max_lines_per_second: int = 20
    persistent_buffer_file: str | None = None
    listen_ip: str | None = None  # sent as `ip` in `active checks` (passive listener on, ListenIP set)
    listen_port: int | None = None  # sent as `port` (passive listener on, not 10050)
    retry_max: float = 10.0  # longest wait between two send attempts after failures
    resolve_alias: Callable[[str], str] | None = None
    tls_wrap: Callable[[Any], Any] | None = None  # TLSConnect=cert: agent/tls.py's Connector

    def __post_init__(self) -> None:
        object.__setattr__(self, "servers", tuple(_cluster(s) for s in self.servers))  # type: ignore[arg-type]
        if self.buffer_send <= 0:
            raise ValueError(f"BufferSend must be positive, got {self.buffer_send}")
        if self.refresh_active_checks <= 0:
            raise ValueError(f"RefreshActiveChecks must be positive, got {self.refresh_active_checks}")
        if not 1 <= self.max_lines_per_second <= 1000:
            raise ValueError(f"MaxLinesPerSecond must be in 1..1000, got {self.max_lines_per_second}")
        if self.timeout <= 0:
            raise ValueError(f"Timeout must be positive, got {self.timeout}")


def settings_from_config(config: Any, checks: CheckSource | None = None) -> ActiveSettings:
    """ActiveSettings from agent.conf.AgentConfig; Hostname/HostMetadata items are evaluated here."""
    hostnames = tuple(config.hostnames)
    if not hostnames and checks is not None and config.hostname_item:
        hostnames = (checks.get(config.hostname_item)[:128],)
    metadata = config.host_metadata or None
    if metadata is None and config.host_metadata_item and checks is not None:
        metadata = checks.get(config.host_metadata_item)[:255]
    passive = bool(config.passive_enabled)
    listen_ip = config.listen_ip[0] if passive and config.listen_ip and config.listen_ip != ("0.0.0.0",) else None
    port = config.listen_port if passive and config.listen_port != DEFAULT_AGENT_PORT else None
    clusters = getattr(config, "server_active_clusters", ()) or config.server_active
    return ActiveSettings(
        servers=tuple(clusters), hostnames=hostnames, host_metadata=metadata,
        refresh_active_checks=config.refresh_active_checks, buffer_send=config.buffer_send,
        buffer_size=config.buffer_size, timeout=config.timeout,
        max_lines_per_second=config.max_lines_per_second,
        persistent_buffer_file=config.persistent_buffer_file or None,
        listen_ip=listen_ip, listen_port=port, resolve_alias=config.resolve_alias,
        tls_wrap=config.tls.connector() if getattr(config, "tls", None) is not None else None,
    )


@dataclass
class _Item:
    key: str  # what is evaluated: the server expanded its macros
    delay: int
    nextcheck: float
    lastlogsize: int = 0
    mtime: int = 0
    monitor: LogMonitor | None = None
    key_error: str | None = None  # a log key that cannot be parsed
    unsupported: str | None = None  # last reason, to log transitions only
    key_orig: str = ""  # what values are reported under; the item's identity

    def __post_init__(self) -> None:
        if not self.key_orig:
            self.key_orig = self.key


def _spread(host: str, key: str, delay: int) -> float:
    """A stable offset in [0, min(delay, FIRST_RUN_SPREAD)) so items do not all fire together."""
    return (zlib.crc32(f"{host}\0{key}".encode()) / 2**32) * min(delay, FIRST_RUN_SPREAD)


class ActiveWorker:
    def __init__(self, settings: ActiveSettings, server: Node | Cluster, host: str, checks: CheckSource,
                 store: FileStore | None = None) -> None:
        self.settings = settings
        self.nodes = _cluster(server)
        self.node = 0  # the node of the cluster in use
        self.server = self.nodes[0]
        self.host = host
        self.checks = checks
        self.name = ";".join(f"{h}:{p}" for h, p in self.nodes)
        self.target = f"{host}@{self.name}"
        self.store = store
        self.buffer = ValueBuffer(settings.buffer_size, self.target, store)
        self.items: dict[str, _Item] = {}  # by key_orig
        self.next_refresh = 0.0
        self.refresh_wait = FIRST_RETRY
        self.last_sent = time.monotonic()
        self.send_failing = False
        self.refresh_failing = False
        self._skipped: set[str] = set()
        self._last_stamp = 0
        self._lock = threading.Lock()
        self._incoming: ActiveChecksResponse | Response | None = None  # fetched, for the collector to use
        self._wake = threading.Event()  # set by a new list and by stop
        saved = store.load_checks(self.target) if store is not None else None
        if saved:
            log.info("active checks for [%s@%s]: %d checks from the saved list until the server answers",
                     host, self.name, len(saved))
            self.apply(saved, time.monotonic())

    def wake(self) -> None:
        """Make the collector look now (a new list, or stop)."""
        self._wake.set()

    def _stamp(self) -> tuple[int, int]:
        """(clock, ns) now, strictly increasing: values of one item never share a timestamp."""
        t = max(time.time_ns(), self._last_stamp + 1)
        self._last_stamp = t
        return divmod(t, 1_000_000_000)

    def _exchange(self, body: bytes) -> bytes:
        """One request to the node in use; on a connection failure, to the next node of the cluster."""
        error: Exception | None = None
        for _ in range(len(self.nodes)):
            i = self.node
            host, port = self.nodes[i]
            try:
                reply = zbxd.exchange(host, port, body, timeout=self.settings.timeout, wrap=self.settings.tls_wrap)
            except (OSError, EOFError, zbxd.FrameError) as e:
                error = e
                if len(self.nodes) > 1:
                    log.debug("active checks: node [%s:%d] failed (%s), trying the next", host, port, e)
                    self.node = (i + 1) % len(self.nodes)
                continue
            if (host, port) != self.server:
                log.warning("active checks for [%s]: now talking to node [%s:%d] of [%s]", self.host, host, port,
                            self.name)
                self.server = (host, port)
            return reply
        assert error is not None
        raise error

    # --- check list ---------------------------------------------------------------------------

    def refresh(self, now: float) -> bool:
        """Fetch the check list and use it at once; True when the server sent one."""
        reply = self.fetch(now)
        return reply is not None and self.use(reply, now)

    def fetch(self, now: float) -> ActiveChecksResponse | Response | None:
        """Ask for the check list (the network part; sets next_refresh). None when no answer came."""
        s = self.settings
        req = ActiveChecksRequest(self.host, s.host_metadata, s.listen_ip, s.listen_port)
        try:
            reply = parse_active_checks_response(self._exchange(req.to_json()))
        except (OSError, EOFError, zbxd.FrameError, ProtocolError) as e:
            if not self.refresh_failing:
                log.warning("active check configuration update from [%s] started to fail (%s)", self.name, e)
            self.refresh_failing = True
            self.next_refresh = now + self.refresh_wait
            self.refresh_wait = min(self.refresh_wait * 2, s.retry_max, s.refresh_active_checks)
            return None
        self.refresh_wait = FIRST_RETRY
        if self.refresh_failing:
            log.warning("active check configuration update from [%s] is working again", self.name)
            self.refresh_failing = False
        ok = isinstance(reply, ActiveChecksResponse)
        self.next_refresh = now + (s.refresh_active_checks if ok else min(REFRESH_RETRY, s.refresh_active_checks))
        return reply

    def use(self, reply: ActiveChecksResponse | Response, now: float) -> bool:
        """Take a reply from `fetch` (on the collector's thread: it owns `items`)."""
        if not isinstance(reply, ActiveChecksResponse):
            log.warning("no active checks on server [%s]: %s", self.name, reply.info or reply.response)
            self._use([], now)
            return False
        skipped = set(reply.skipped)
        for reason in reply.skipped:  # a new list logs its bad rows once, not at every refresh
            (log.debug if reason in self._skipped else log.warning)(
                "active check list from [%s]: row skipped, %s", self.name, reason)
        self._skipped = skipped
        self._use(reply.data, now)
        return True

    def _use(self, checks: list[ActiveCheck], now: float) -> None:
        self.apply(checks, now)
        if self.store is not None:
            self.store.save_checks(self.target, checks)

    def apply(self, checks: list[ActiveCheck], now: float) -> None:
        """Replace the check list; items still listed keep their schedule and log position."""
        new: dict[str, _Item] = {}
        for c in checks:
            if c.delay <= 0:
                log.debug("active check %r has no interval, skipped", c.key_orig)
                continue
            old = self.items.get(c.key_orig)
            if old is not None and old.key == c.key:
                if old.delay != c.delay:
                    old.nextcheck = min(old.nextcheck, now + c.delay)
                    old.delay = c.delay
                new[c.key_orig] = old
                continue
            item = _Item(c.key, c.delay, now + _spread(self.host, c.key_orig, c.delay), c.lastlogsize, c.mtime,
                         key_orig=c.key_orig)
            # A macro that changed makes it another file: start from the server's position, not ours.
            self._attach_log(item, use_saved=old is None)
            new[c.key_orig] = item
        gone = set(self.items) - set(new)
        if gone:
            log.debug("active checks removed: %s", ", ".join(sorted(gone)))
        self.items = new
        self.buffer.forget_positions(k for k, i in new.items() if i.monitor is not None)

    # --- key access rules (AllowKey/DenyKey): the hook before an item runs ----------------------

    def _denied(self, item: _Item) -> bool:
        """True when AllowKey/DenyKey deny this item. They hold for active items as for passive ones,
        log[]/logrt[] included (zabbix_agentd checks them in process_log_check too); other keys are
        checked after Alias, as Checks.get does."""
        allowed = getattr(self.checks, "allowed", None)
        if allowed is None:
            return False
        key = item.key
        if key.split("[", 1)[0] not in LOG_KEYS and self.settings.resolve_alias is not None:
            key = self.settings.resolve_alias(key)
        return not allowed(key)

    def _attach_log(self, item: _Item, use_saved: bool = True) -> None:
        name = item.key.split("[", 1)[0]
        if name not in LOG_KEYS or self._denied(item):  # a denied log file is never opened
            return
        try:
            parsed = parse_log_key(item.key)
        except LogKeyError as e:
            item.key_error = str(e)
            return
        saved = self.buffer.position(item.key_orig) if use_saved else None
        if saved is not None:  # the persistent buffer knows better than the server
            item.monitor = LogMonitor.start(parsed, saved.lastlogsize, saved.mtime, saved.extra)
        else:
            item.monitor = LogMonitor.start(parsed, item.lastlogsize, item.mtime)

    # --- collection ---------------------------------------------------------------------------

    def run_due(self, now: float) -> float:
        """Run every item that is due; returns when the next one is."""
        for item in list(self.items.values()):
            if item.nextcheck > now:
                continue
            blocked = self._run(item)
            if blocked:
                item.nextcheck = now + 1.0  # the buffer has no room for log values yet
            else:
                item.nextcheck += item.delay * max(1, int((now - item.nextcheck) // item.delay) + 1)
        return min((i.nextcheck for i in self.items.values()), default=now + 1.0)

    def _run(self, item: _Item) -> bool:
        if self._denied(item):
            self._unsupported(item, "Unsupported item key.")
            return False
        if item.key_error is not None:
            self._unsupported(item, item.key_error)
            return False
        if item.monitor is not None:
            return self._run_log(item, item.monitor)
        key = item.key
        if self.settings.resolve_alias is not None:
            key = self.settings.resolve_alias(key)
        try:
            value = self.checks.get(key)
        except Exception as e:  # NotSupported, or a check that broke: both make the item unsupported
            reason = str(e) if type(e).__name__ == "NotSupported" else f"Cannot evaluate {key}: {e}"
            self._unsupported(item, reason)
            return False
        if item.unsupported is not None:
            log.info("active check \"%s\" is supported again", item.key)
            item.unsupported = None
        clock, ns = self._stamp()
        self.buffer.add(BufferedValue(item.key_orig, value, clock, ns))
        return False

    def _unsupported(self, item: _Item, reason: str) -> None:
        if item.unsupported != reason:
            log.warning("active check \"%s\" is not supported: %s", item.key, reason)
            item.unsupported = reason
        clock, ns = self._stamp()
        is_log = item.monitor is not None
        pos = item.monitor.state if item.monitor is not None else None
        self.buffer.add(BufferedValue(item.key_orig, reason, clock, ns, state=1, is_log=is_log,
                                      lastlogsize=pos.lastlogsize if pos else None,
                                      mtime=pos.mtime if pos else None))

    def _run_log(self, item: _Item, mon: LogMonitor) -> bool:
        room = self.buffer.log_room
        if room == 0:
            return True
        try:
            batch = mon.read(item.delay, self.settings.max_lines_per_second, send_limit=room)
        except LogReadError as e:
            mon.errors += 1
            if mon.errors > LOG_ERRORS_SUPPRESSED:
                self._unsupported(item, str(e))
            else:
                log.debug("suppressing log processing error #%d of \"%s\": %s", mon.errors, item.key, e)
            return False
        mon.errors = 0
        if item.unsupported is not None:
            item.unsupported = None
        # mtime for log[] too: logmon keeps its fingerprint of the file there (see logmon._fingerprint)
        values = [BufferedValue(item.key_orig, r.value, *self._stamp(), lastlogsize=r.lastlogsize,
                                mtime=r.mtime, is_log=True) for r in batch.records]

        def position(taken: int) -> dict[str, LogPosition]:
            st = batch.state_after(taken)
            return {item.key_orig: LogPosition(st.lastlogsize, st.mtime, st.to_extra())}

        taken = self.buffer.add_many(values, position)
        mon.commit(batch.state_after(taken))
        return taken < len(values) or (not mon.item.count and len(values) >= room)  # more may wait

    # --- sending ------------------------------------------------------------------------------

    def send(self) -> bool:
        """Send the oldest buffered values once; True when the server took them (or nothing to send)."""
        batch = self.buffer.batch(self.settings.buffer_size)
        if not batch:
            return True
        clock, ns = divmod(time.time_ns(), 1_000_000_000)
        msg = AgentData(self.buffer.session, [v.to_agent_value(self.host) for v in batch], clock, ns)
        try:
            reply = parse_response(self._exchange(msg.to_json()))
        except (OSError, EOFError, zbxd.FrameError, ProtocolError) as e:
            self._send_failed(str(e) or type(e).__name__)
            return False
        if not reply.ok:
            self._send_failed(f"server answered {reply.response!r}: {reply.info}")
            return False
        self.buffer.ack(batch)
        if self.send_failing:
            log.warning("active check data upload to [%s] is working again", self.name)
            self.send_failing = False
        log.debug("sent %d values to [%s]: %s", len(batch), self.name, reply.info)
        return True

    def _send_failed(self, reason: str) -> None:
        if not self.send_failing:
            log.warning("active check data upload to [%s] started to fail (%s); %d values kept for retry",
                        self.name, reason, len(self.buffer))
        self.send_failing = True

    # --- threads ------------------------------------------------------------------------------

    def collector_loop(self, stop: threading.Event) -> None:
        CALLER.set(f"active checks from [{self.name}]")  # for LogRemoteCommands
        while not stop.is_set():
            now = time.monotonic()
            self._wake.clear()
            try:
                with self._lock:
                    reply, self._incoming = self._incoming, None
                if reply is not None:
                    self.use(reply, now)
                next_due = self.run_due(time.monotonic())
            except Exception:
                log.exception("active checks for [%s] failed; continuing", self.name)
                next_due = now + 1.0
            self._wake.wait(max(0.01, min(next_due - time.monotonic(), 1.0)))

    def sender_loop(self, stop: threading.Event) -> None:
        """Sends values and fetches the check list: a server that hangs never holds up collection."""
        backoff = 1.0
        retry_at = 0.0
        while not stop.is_set():
            now = time.monotonic()
            if now >= self.next_refresh:
                try:
                    reply = self.fetch(now)
                except Exception:
                    log.exception("active check configuration update from [%s] failed; continuing", self.name)
                    reply = None
                    self.next_refresh = now + self.settings.retry_max
                if reply is not None:
                    with self._lock:
                        self._incoming = reply
                    self.wake()
                continue
            if now >= retry_at and self.buffer.due(now, self.last_sent, self.settings.buffer_send):
                try:
                    ok = self.send()
                except Exception:
                    log.exception("sending to [%s] failed; continuing", self.name)
                    ok = False
                if ok:
                    self.last_sent = now
                    backoff = 1.0
                else:
                    retry_at = time.monotonic() + backoff
                    backoff = min(backoff * 2, self.settings.retry_max)
                continue
            with self.buffer.cond:
                self.buffer.cond.wait(max(0.01, min(0.2, self.next_refresh - now)))

    def flush(self, attempts: int = 1) -> None:
        """At shutdown: one last try to hand over what is buffered."""
        for _ in range(attempts):
            if not len(self.buffer) or not self.send():
                return


class ActiveChecks:
    """Active checks for every ServerActive cluster and Hostname.

    Made in the main thread: what can fail at start (no host name, a PersistentBufferFile another
    agent holds) fails here, so the agent refuses to start instead of running without active checks.
    """

    def __init__(self, config: Any, checks: CheckSource) -> None:
        self.settings = config if isinstance(config, ActiveSettings) else settings_from_config(config, checks)
        s = self.settings
        if s.servers and not s.hostnames:
            raise ValueError("Hostname: no host name to ask active checks for")
        self.store = FileStore(s.persistent_buffer_file) if s.servers and s.persistent_buffer_file else None
        try:
            self.workers = [ActiveWorker(s, srv, host, checks, self.store) for srv in s.servers for host in s.hostnames]
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.store is not None:
            self.store.close()
            self.store = None

    def run(self, stop: threading.Event) -> None:
        """Until `stop` is set (blocks; two threads per worker), then a last send and the file closed."""
        settings = self.settings
        if not self.workers:
            stop.wait()
            self.close()
            return
        threads = []
        for w in self.workers:
            for target, role in ((w.collector_loop, "collect"), (w.sender_loop, "send")):
                t = threading.Thread(target=target, args=(stop,), name=f"active-{role} {w.host}@{w.name}",
                                     daemon=True)
                t.start()
                threads.append(t)
        try:
            stop.wait()
        finally:
            stop.set()
            for w in self.workers:
                w.wake()
            for t in threads:
                t.join(settings.timeout + 5)
            for w in self.workers:
                try:
                    w.flush(attempts=max(1, len(w.buffer) // settings.buffer_size + 1))
                except Exception:
                    log.exception("final send to [%s] failed", w.name)
            self.close()


def run_active(config: Any, checks: CheckSource, stop: threading.Event) -> None:
    """Active checks for every ServerActive until `stop` is set (blocks; starts two threads per server)."""
    ActiveChecks(config, checks).run(stop)
