"""Active agent autoregistration on the server: from agents asking for the active checks of a host the
server does not know, and from proxies' `proxy data` ("auto registration" records).

Each registration that says something new (another IP, DNS name, port, metadata, interface kind or
proxy than the last one of that host name), or that repeats one older than HEARTBEAT seconds while the
host still does not exist (an action may have been added since), is recorded in autoreg_host with an
autoregistration event (source 2); the host operations of the matching autoregistration actions run in
the same transaction (server/config/autoreg.py), and the committed event goes to `notify`, where the
escalator sends the actions' messages. The agent is told, as by Zabbix, `host [NAME] not found`; it
asks again later and then gets its checks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from vigil.agent.protocol.proxy import AutoRegistration
from vigil.server.config.alerting import ActionSpec
from vigil.server.config.autoreg import (
    CONN_DEFAULT,
    DEFAULT_PORT,
    Registration,
    RegistrationError,
    check_host_name,
    matching_actions,
    registration_from_request,
)
from vigil.server.config.proxies import ProxyRef
from vigil.server.config.repo import ConfigRepo
from vigil.server.config.tables import EventObject, EventSource
from vigil.server.ingest.tls import CONNECTION
from vigil.server.triggers.events import Event, Notice

log = logging.getLogger("vigil.autoreg")

HEARTBEAT = 120  # seconds; Zabbix's AUTO_REGISTRATION_HEARTBEAT


class Autoregistrar:
    """One per server, shared by the listener (agents) and the proxy handler (proxies)."""

    def __init__(self, repo: ConfigRepo, version: Callable[[], int], notify: Callable[[Notice], None] | None = None,
                 *, heartbeat: float = HEARTBEAT) -> None:
        self.repo = repo
        self.version = version
        self.notify = notify
        self.heartbeat = heartbeat
        self._known: dict[str, Registration] | None = None
        self._done: dict[str, float] = {}  # host -> monotonic time of its last event
        self._actions: tuple[int, dict[int, ActionSpec]] = (-1, {})
        self._lock = asyncio.Lock()  # one registration at a time: they are rare, and each is one transaction
        self.stats = {"events": 0, "hosts_created": 0, "unchanged": 0, "refused": 0}

    async def agent(self, obj: dict[str, Any], peer: str) -> str | None:
        """An unknown host's `active checks`: None when taken (the reply stays "not found"), else the
        reason it was refused."""
        try:
            # tls_accepted: how the agent connected (1 unencrypted, 4 certificate), which the new host accepts
            r = registration_from_request(obj, peer, int(time.time()), tls_accepted=CONNECTION.get().kind)
        except RegistrationError as e:
            self.stats["refused"] += 1
            log.warning("autoregistration from %s refused: %s", peer, e)
            return f"autoregistration refused: {e}"
        await self.register([r], peer)
        return None

    async def proxy(self, proxy: ProxyRef, records: Iterable[AutoRegistration], peer: str) -> str | None:
        """A proxy's "auto registration" records (already checked field by field by the parser). Returns
        why they could not be recorded (the proxy sends them again), or None."""
        regs = []
        for i, a in enumerate(records):
            try:
                regs.append(from_proxy_record(a, proxy, i))
            except RegistrationError as e:
                self.stats["refused"] += 1
                log.warning("auto registration from proxy [%s] at %s: record skipped: %s", proxy.name, peer, e)
        if regs:
            return await self.register(regs, f"proxy [{proxy.name}] at {peer}")
        return None

    async def register(self, regs: list[Registration], source: str) -> str | None:
        """Record what is new; returns why something could not be recorded (None: all done)."""
        error = None
        async with self._lock:
            if self._known is None:
                try:
                    self._known = await asyncio.to_thread(self.repo.autoreg_hosts)
                except Exception as e:
                    log.error("autoregistration from %s: cannot read the registered hosts: %s", source, e)
                    return "autoregistration: the configuration database is not available"
            for r in regs:
                last = self._known.get(r.host)
                if last is not None and last.same_as(r) and not await self._due_again(r):
                    self.stats["unchanged"] += 1
                    continue
                try:
                    await asyncio.to_thread(self._record, r, source)
                except Exception as e:  # the database is away: the agent (or proxy) registers again later
                    log.error("autoregistration of [%s] from %s not recorded: %s", r.host, source, e)
                    error = f"autoregistration of [{r.host}] not recorded: the configuration database is not available"
                    continue
                self._known[r.host] = r
                self._done[r.host] = time.monotonic()
        return error

    async def _due_again(self, r: Registration) -> bool:
        """An unchanged registration counts again after the heartbeat if its host still does not exist."""
        last = self._done.get(r.host)
        if last is not None and time.monotonic() - last < self.heartbeat:
            return False
        if last is None:  # known from the database only: start the heartbeat now
            self._done[r.host] = time.monotonic()
            return False
        return await asyncio.to_thread(self.repo.host_id, r.host) is None

    def _record(self, r: Registration, source: str) -> None:
        v = self.version()
        if self._actions[0] != v:
            self._actions = (v, self.repo.alerting().actions)
        matched = matching_actions(self._actions[1], r)
        ops = [op for _, a in matched for op in a.operations]
        done = self.repo.autoregister(r, ops)
        self.stats["events"] += 1
        if done.created:
            self.stats["hosts_created"] += 1
        log.info("autoregistration of [%s] from %s (ip %s, dns %r, port %d, metadata %r): event %d; %s", r.host,
                 source, r.ip, r.dns, r.port, r.host_metadata, done.eventid,
                 "; ".join(f"action {a.name!r}" for _, a in matched) + (": " + ", ".join(done.operations)
                                                                         if done.operations else "")
                 if matched else "no action matched")
        if self.notify is not None:
            details = (("host", r.host), ("host_metadata", r.host_metadata), ("proxy", r.proxy), ("ip", r.ip),
                       ("dns", r.dns), ("port", str(r.port)))
            self.notify(Event(eventid=done.eventid, source=int(EventSource.AUTOREGISTRATION),
                              object=int(EventObject.AUTOREG_HOST), objectid=done.autoreg_hostid, clock=r.clock,
                              ns=0, value=1, severity=0, name=r.host,
                              hostids=(done.hostid,) if done.hostid is not None else (), details=details))


def from_proxy_record(a: AutoRegistration, proxy: ProxyRef, i: int) -> Registration:
    where = f"auto registration[{i}]"
    host = check_host_name(a.host, f"{where}.host")
    port = DEFAULT_PORT
    if a.port not in ("", None):
        if not str(a.port).isdigit() or not 0 < int(a.port) <= 65535:
            raise RegistrationError(f"{where}.port: {a.port!r} is not a valid port (1-65535)")
        port = int(a.port)
    flags = getattr(a, "flags", CONN_DEFAULT)
    return Registration(host=host, ip=a.ip, dns=a.dns, port=port, host_metadata=a.host_metadata, flags=flags,
                        tls_accepted=a.tls_accepted, clock=a.clock or int(time.time()), proxyid=proxy.proxyid,
                        proxy=proxy.name)
