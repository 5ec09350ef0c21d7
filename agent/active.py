"""Active checks: fetch the check list from each ServerActive, run the items on schedule, push values.

Per (ServerActive, Hostname) pair there is one `ActiveWorker`, as zabbix_agentd has one active-checks
process per server: its own check list, buffer, session and two threads. The collector refreshes
the list (`active checks`) at start and every RefreshActiveChecks seconds and runs each item at its
own `delay`, first runs spread over the first few seconds. The sender pushes the buffer as `agent
data` when BufferSend seconds passed, the buffer is full or half of it is log values, and drops the
values only once the server answered "success"; a failure keeps them for a retry with back-off,
and the retry carries the same session and ids so the server can drop what it already has.

Not-supported items are sent as zabbix_agentd 6.0 does: `state: 1` and the reason as the value.
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
from vigil.agent.logmon import LOG_KEYS, LogKeyError, LogMonitor, LogReadError, parse_log_key
from vigil.agent.protocol import zbxd
from vigil.agent.protocol.messages import (
    ActiveCheck,
    ActiveChecksRequest,
    ActiveChecksResponse,
    AgentData,
    ProtocolError,
    parse_active_checks_response,
    parse_response,
)

log = logging.getLogger("vigil.agent.active")

DEFAULT_AGENT_PORT = 10050
REFRESH_RETRY = 60.0  # zabbix_agentd asks again after 60 s when the list could not be fetched
LOG_ERRORS_SUPPRESSED = 2  # zabbix_agentd reports a log item unsupported on the third error in a row
# zabbix_agentd runs a new check at once; spreading first runs over a few seconds keeps a long list
# from firing in one burst without making an hourly item wait up to an hour for its first value.
FIRST_RUN_SPREAD = 5.0


class CheckSource(Protocol):
    def get(self, text: str) -> str: ...


@dataclass(frozen=True, slots=True)
class ActiveSettings:
    """What active checks need from the configuration (see `settings_from_config`)."""

    servers: tuple[tuple[str, int], ...]
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

    def __post_init__(self) -> None:
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
    return ActiveSettings(
        servers=tuple(config.server_active), hostnames=hostnames, host_metadata=metadata,
        refresh_active_checks=config.refresh_active_checks, buffer_send=config.buffer_send,
        buffer_size=config.buffer_size, timeout=config.timeout,
        max_lines_per_second=config.max_lines_per_second,
        persistent_buffer_file=config.persistent_buffer_file or None,
        listen_ip=listen_ip, listen_port=port, resolve_alias=config.resolve_alias,
    )


@dataclass
class _Item:
    key: str
    delay: int
    nextcheck: float
    lastlogsize: int = 0
    mtime: int = 0
    monitor: LogMonitor | None = None
    key_error: str | None = None  # a log key that cannot be parsed
    unsupported: str | None = None  # last reason, to log transitions only


def _spread(host: str, key: str, delay: int) -> float:
    """A stable offset in [0, min(delay, FIRST_RUN_SPREAD)) so items do not all fire together."""
    return (zlib.crc32(f"{host}\0{key}".encode()) / 2**32) * min(delay, FIRST_RUN_SPREAD)


class ActiveWorker:
    def __init__(self, settings: ActiveSettings, server: tuple[str, int], host: str, checks: CheckSource,
                 store: FileStore | None = None) -> None:
        self.settings = settings
        self.server = server
        self.host = host
        self.checks = checks
        self.name = f"{server[0]}:{server[1]}"
        self.buffer = ValueBuffer(settings.buffer_size, f"{host}@{self.name}", store)
        self.items: dict[str, _Item] = {}
        self.next_refresh = 0.0
        self.last_sent = time.monotonic()
        self.send_failing = False
        self.refresh_failing = False
        self._last_stamp = 0

    def _stamp(self) -> tuple[int, int]:
        """(clock, ns) now, strictly increasing: values of one item never share a timestamp."""
        t = max(time.time_ns(), self._last_stamp + 1)
        self._last_stamp = t
        return divmod(t, 1_000_000_000)

    # --- check list ---------------------------------------------------------------------------

    def refresh(self, now: float) -> bool:
        s = self.settings
        req = ActiveChecksRequest(self.host, s.host_metadata, s.listen_ip, s.listen_port)
        try:
            body = zbxd.exchange(self.server[0], self.server[1], req.to_json(), timeout=s.timeout)
            reply = parse_active_checks_response(body)
        except (OSError, EOFError, zbxd.FrameError, ProtocolError) as e:
            if not self.refresh_failing:
                log.warning("active check configuration update from [%s] started to fail (%s)", self.name, e)
            self.refresh_failing = True
            self.next_refresh = now + min(REFRESH_RETRY, s.refresh_active_checks)
            return False
        if self.refresh_failing:
            log.warning("active check configuration update from [%s] is working again", self.name)
            self.refresh_failing = False
        if not isinstance(reply, ActiveChecksResponse):
            log.warning("no active checks on server [%s]: %s", self.name, reply.info or reply.response)
            self.apply([], now)
            self.next_refresh = now + min(REFRESH_RETRY, s.refresh_active_checks)
            return False
        self.apply(reply.data, now)
        self.next_refresh = now + s.refresh_active_checks
        return True

    def apply(self, checks: list[ActiveCheck], now: float) -> None:
        """Replace the check list; items still listed keep their schedule and log position."""
        new: dict[str, _Item] = {}
        for c in checks:
            if c.delay <= 0:
                log.debug("active check %r has no interval, skipped", c.key)
                continue
            old = self.items.get(c.key)
            if old is not None:
                if old.delay != c.delay:
                    old.nextcheck = min(old.nextcheck, now + c.delay)
                    old.delay = c.delay
                new[c.key] = old
                continue
            item = _Item(c.key, c.delay, now + _spread(self.host, c.key, c.delay), c.lastlogsize, c.mtime)
            self._attach_log(item)
            new[c.key] = item
        gone = set(self.items) - set(new)
        if gone:
            log.debug("active checks removed: %s", ", ".join(sorted(gone)))
        self.items = new
        self.buffer.forget_positions(k for k, i in new.items() if i.monitor is not None)

    def _attach_log(self, item: _Item) -> None:
        name = item.key.split("[", 1)[0]
        if name not in LOG_KEYS:
            return
        try:
            parsed = parse_log_key(item.key)
        except LogKeyError as e:
            item.key_error = str(e)
            return
        saved = self.buffer.position(item.key)
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
        self.buffer.add(BufferedValue(item.key, value, clock, ns))
        return False

    def _unsupported(self, item: _Item, reason: str) -> None:
        if item.unsupported != reason:
            log.warning("active check \"%s\" is not supported: %s", item.key, reason)
            item.unsupported = reason
        clock, ns = self._stamp()
        is_log = item.monitor is not None
        pos = item.monitor.state if item.monitor is not None else None
        self.buffer.add(BufferedValue(item.key, reason, clock, ns, state=1, is_log=is_log,
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
        values = [BufferedValue(item.key, r.value, *self._stamp(), lastlogsize=r.lastlogsize,
                                mtime=r.mtime, is_log=True) for r in batch.records]

        def position(taken: int) -> dict[str, LogPosition]:
            st = batch.state_after(taken)
            return {item.key: LogPosition(st.lastlogsize, st.mtime, st.to_extra())}

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
            body = zbxd.exchange(self.server[0], self.server[1], msg.to_json(), timeout=self.settings.timeout)
            reply = parse_response(body)
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
        while not stop.is_set():
            now = time.monotonic()
            try:
                if now >= self.next_refresh:
                    self.refresh(now)
                next_due = self.run_due(time.monotonic())
            except Exception:
                log.exception("active checks for [%s] failed; continuing", self.name)
                next_due = now + 1.0
            wait = min(next_due, self.next_refresh) - time.monotonic()
            stop.wait(max(0.01, min(wait, 1.0)))

    def sender_loop(self, stop: threading.Event) -> None:
        backoff = 1.0
        retry_at = 0.0
        while not stop.is_set():
            now = time.monotonic()
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
                self.buffer.cond.wait(0.2)

    def flush(self, attempts: int = 1) -> None:
        """At shutdown: one last try to hand over what is buffered."""
        for _ in range(attempts):
            if not len(self.buffer) or not self.send():
                return


def run_active(config: Any, checks: CheckSource, stop: threading.Event) -> None:
    """Active checks for every ServerActive until `stop` is set (blocks; starts two threads per server)."""
    settings = config if isinstance(config, ActiveSettings) else settings_from_config(config, checks)
    if not settings.servers:
        stop.wait()
        return
    if not settings.hostnames:
        raise ValueError("Hostname: no host name to ask active checks for")
    store = FileStore(settings.persistent_buffer_file) if settings.persistent_buffer_file else None
    workers = [ActiveWorker(settings, srv, host, checks, store) for srv in settings.servers
               for host in settings.hostnames]
    threads = []
    for w in workers:
        for target, role in ((w.collector_loop, "collect"), (w.sender_loop, "send")):
            t = threading.Thread(target=target, args=(stop,), name=f"active-{role} {w.host}@{w.name}", daemon=True)
            t.start()
            threads.append(t)
    try:
        stop.wait()
    finally:
        stop.set()
        for t in threads:
            t.join(settings.timeout + 5)
        for w in workers:
            try:
                w.flush(attempts=max(1, len(w.buffer) // settings.buffer_size + 1))
            except Exception:
                log.exception("final send to [%s] failed", w.name)
        if store is not None:
            store.close()
