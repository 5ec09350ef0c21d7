"""A site server's forwarder: everything a full `vigil server` stores also goes to a central Vigil server.

With VIGIL_UPSTREAM=host:port and VIGIL_SITE=NAME, each history writer's store is wrapped in a
`ForwardingStore`: a batch is first committed to the forward outbox (`SiteBuffer`, the proxy's
outbox kind, in VIGIL_DATA_DIR/site-outbox.db, its own SQLite file in WAL mode with synchronous=FULL)
and then to the site's own store. The sender's acknowledgement still waits only for those two local
commits, never for the central server.

Why the outbox first: a crash between the two commits then leaves a value in the outbox that the
site's store does not have (and whose sender heard no `success`, so it may send it again); the other
order would leave a value stored and acknowledged locally that never reaches the central server. So
nothing committed locally is lost upstream; a crash at that point can at worst forward a resent
value twice. If the site's store refuses a batch, its outbox rows are deleted again.

`SiteUplink` is the proxy's active uplink (proxy/uplink.py: one `proxy data` a second, 10,000 records
at most with `"more":1`, the same records with the same ids until the central answers `success`),
preceded by `vigil site config` (server/ingest/site.py) whenever the site's configuration version
changed: the central registers the site's hosts in group Site/NAME and answers its item ids, which
are kept in the outbox file and replace the site's ids in each record sent. As the proxy does, the
session and id range of each batch are committed before it leaves, and after a restart a batch the
central may have stored without the site seeing its reply goes again under its old session and ids
(proxy/inflight.py), so a site killed at that point forwards nothing twice. A record whose item the
central does not know yet holds the batch back until the next registration; one whose item was
deleted on the site since is dropped, counted and logged.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, cast

from vigil.agent.protocol.proxy import MAX_RECORDS, SITE_CONFIG, HistoryRecord, ProxyData
from vigil.proxy.buffer import ProxyBuffer
from vigil.proxy.conf import ProxyConf
from vigil.proxy.inflight import next_records
from vigil.proxy.localconfig import LocalConfig
from vigil.proxy.uplink import VERSION, ActiveUplink, Outbox
from vigil.server.config.repo import ConfigRepo
from vigil.server.config.sites import site_hosts
from vigil.server.config.tables import ValueType
from vigil.server.store.base import (
    HistoryRow,
    HousekeepReport,
    LogEntry,
    Retention,
    Store,
    StoreError,
    Trend,
    WriteBatch,
)

log = logging.getLogger("vigil.proxy.site")

OUTBOX_FILE = "site-outbox.db"
OFFLINE_HOURS = 720  # unsent values older than 30 days are dropped (counted), as ProxyOfflineBuffer's maximum

_SITE_SCHEMA = (
    # what ProxyBuffer expects of a proxy database; a site keeps its sessions and log positions in its store
    "CREATE TABLE IF NOT EXISTS agent_sessions (session TEXT PRIMARY KEY, last_id INTEGER NOT NULL,"
    " updated INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS items (itemid INTEGER PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS item_rtdata (itemid INTEGER PRIMARY KEY, lastlogsize INTEGER, mtime INTEGER)",
    "CREATE TABLE IF NOT EXISTS site_map (site_itemid INTEGER PRIMARY KEY, central_itemid INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS site_state (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
)
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock(path: str) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(path, threading.Lock())


class SiteBuffer(ProxyBuffer):
    """The forward outbox, created on first use, with the central's item ids as last registered."""

    def __init__(self, path: str | Path) -> None:
        path = str(path)
        try:
            db = sqlite3.connect(path, isolation_level=None, timeout=30)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                for sql in _SITE_SCHEMA:
                    db.execute(sql)
            finally:
                db.close()
        except sqlite3.Error as e:
            raise StoreError(f"cannot create the site outbox {path}: {e}") from None
        super().__init__(path, offline_hours=OFFLINE_HOURS)

    def append(self, batch: WriteBatch) -> tuple[int, int]:
        """Commit the batch's values; the id range (lo, hi] they got."""
        with _lock(self.path):
            lo = self._top()
            self.write(batch)
            return lo, self._top()

    def discard(self, lo: int, hi: int) -> None:
        with self._transaction():
            self._db.execute("DELETE FROM proxy_outbox WHERE id > ? AND id <= ?", (lo, hi))

    def _top(self) -> int:
        r = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'proxy_outbox'").fetchone()
        return 0 if r is None else int(r[0])

    def mapping(self) -> tuple[int, dict[int, int]]:
        """The configuration version last registered (-1: never) and the site -> central item ids."""
        r = self._db.execute("SELECT value FROM site_state WHERE name = 'version'").fetchone()
        return (-1 if r is None else int(r[0]), dict(self._db.execute("SELECT site_itemid, central_itemid "
                                                                      "FROM site_map").fetchall()))

    def save_mapping(self, version: int, pairs: list[tuple[int, int]]) -> None:
        with self._transaction():
            self._db.execute("DELETE FROM site_map")
            self._db.executemany("INSERT INTO site_map (site_itemid, central_itemid) VALUES (?, ?)", pairs)
            self._db.execute("INSERT INTO site_state (name, value) VALUES ('version', ?) "
                             "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (version,))


class ForwardingStore(Store):
    """A history writer's store that first commits each batch's values to the forward outbox."""

    def __init__(self, inner: Store, outbox: SiteBuffer) -> None:
        self.inner = inner
        self.outbox = outbox

    def write(self, batch: WriteBatch) -> None:
        values = WriteBatch(floats=batch.floats, uints=batch.uints, strs=batch.strs, texts=batch.texts,
                            logs=batch.logs)
        span = self.outbox.append(values) if len(values) else None
        try:
            self.inner.write(batch)
        except BaseException:
            if span is not None:
                try:
                    self.outbox.discard(*span)
                except (StoreError, sqlite3.Error) as e:  # then the central may get values the site lacks
                    log.error("the site's store refused %d values and they stay in the forward outbox: %s",
                              len(values), e)
            raise

    def maintain(self, force: bool = False) -> None:
        self.inner.maintain(force)

    def history(self, itemid: int, value_type: ValueType, start: int, end: int,
                limit: int | None = None) -> list[HistoryRow]:
        return self.inner.history(itemid, value_type, start, end, limit)

    def log_history(self, itemid: int, start: int, end: int, limit: int | None = None) -> list[LogEntry]:
        return self.inner.log_history(itemid, start, end, limit)

    def trends(self, itemid: int, value_type: ValueType, start: int, end: int) -> list[Trend]:
        return self.inner.trends(itemid, value_type, start, end)

    def latest(self, items: Mapping[int, ValueType], since: int | None = None) -> dict[int, HistoryRow]:
        return self.inner.latest(items, since)

    def rollup_trends(self, now: int) -> int:
        return self.inner.rollup_trends(now)

    def housekeep(self, now: int, retention: Iterable[Retention]) -> HousekeepReport:
        return self.inner.housekeep(now, retention)

    def log_positions(self) -> dict[int, tuple[int, int]]:
        return self.inner.log_positions()

    def sessions(self) -> dict[str, int]:
        return self.inner.sessions()

    def prune_sessions(self, before: int) -> int:
        return self.inner.prune_sessions(before)

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            self.outbox.close()


class SiteOutbox(Outbox):
    """The next `proxy data` of a site: records under the central's item ids."""

    def __init__(self, buffer: SiteBuffer, repo: ConfigRepo, session: str, host: str) -> None:
        super().__init__(buffer, repo.engine, session, host)
        self.site = buffer
        self.repo = repo
        self._taken: list[HistoryRecord] = []
        self.dropped = 0
        self.held = False  # the last take stopped at a record the central has no id for yet

    def interfaces(self) -> list[Any]:
        return []

    def take(self, limit: int = MAX_RECORDS) -> tuple[ProxyData, int]:
        """The next message: an earlier run's in-flight batch first, under its old session and ids
        (proxy/inflight.py); the session and id range of what goes are committed before it leaves."""
        pending = next_records(self.site, self.session, limit)
        records = pending.records
        registered, ids = self.site.mapping()
        current = self.repo.version()
        cut = len(records)
        self.held = False
        if registered != current:  # an item newer than the last registration holds back what follows it
            cut = next((k for k, r in enumerate(records) if r.itemid not in ids), cut)
            self.held = cut < len(records)
            if self.held and pending.resend:
                cut = 0  # an in-flight batch goes again whole, once registered, never split across sessions
        out: list[HistoryRecord] = []
        for r in records[:cut]:
            central = ids.get(r.itemid)
            if central is not None:
                out.append(dataclasses.replace(r, itemid=central))
            else:
                self.dropped += 1
                log.warning("forward outbox: item %d has no id on the central server (deleted on the site "
                            "since it was stored?): value dropped, %d in all", r.itemid, self.dropped)
        self._taken = records[:cut]
        self.site.sending(pending.session, self._taken)
        now = time.time_ns()
        data = ProxyData(host=self.host, session=pending.session, version=VERSION,
                         clock=now // 1_000_000_000, ns=now % 1_000_000_000, history=out, interfaces=[],
                         more=pending.more and not self.held)
        return data, self.site.unsent()

    def acknowledged(self, data: ProxyData) -> None:
        self.site.ack(self._taken)


class SiteUplink(ActiveUplink):
    """Registers the site's hosts when its configuration changed, then drains the outbox upward."""

    def __init__(self, upstream: tuple[str, int], site: str, repo: ConfigRepo, outbox_path: Path,
                 *, timeout: float = 3.0, interval: float = 1.0) -> None:
        host, port = upstream
        conf = ProxyConf(Server=f"{host}:{port}", Hostname=site, Timeout=max(1, int(timeout)),
                         DataSenderFrequency=max(1, int(interval)), HeartbeatFrequency=0)
        super().__init__(conf, cast(LocalConfig, None), lambda: SiteBuffer(outbox_path))
        self.outbox_path = outbox_path
        self.repo = repo
        self.site = site
        self.interval = interval
        self.stats |= {"registered": 0}
        self._refused: tuple[int, str] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        log.info("site [%s]: forwarding to %s, session %s", self.site, self.conf.Server, self.session)
        await asyncio.gather(self._forward_loop(stop), self._expire_loop(stop))

    async def register(self, buffer: SiteBuffer) -> bool:
        """Send `vigil site config` if the configuration changed since the last one the central took."""
        version = await asyncio.to_thread(self.repo.version)
        if (await asyncio.to_thread(buffer.mapping))[0] == version:
            return True
        hosts = await asyncio.to_thread(site_hosts, self.repo.engine)
        reply = await self.exchange({"request": SITE_CONFIG, "host": self.site, "version": VERSION,
                                     "config_version": version, "hosts": hosts})
        if reply is None:
            return False
        if reply.get("response") != "success" or not isinstance(reply.get("items"), list):
            why = str(reply.get("info", reply))
            if self._refused != (version, why):
                log.error("site [%s]: the central server refused its hosts (values stay in the outbox): %s",
                          self.site, why)
                self._refused = (version, why)
            return False
        try:
            pairs = [(int(a), int(b)) for a, b in reply["items"]]
        except (TypeError, ValueError):
            log.error("site [%s]: the central's item map cannot be read: %.200s", self.site, reply["items"])
            return False
        await asyncio.to_thread(buffer.save_mapping, version, pairs)
        self.stats["registered"] += 1
        self._refused = None
        log.info("site [%s]: %d hosts, %d items registered on the central server (configuration %d)",
                 self.site, len(hosts), len(pairs), version)
        return True

    async def _pass(self, buffer: SiteBuffer, outbox: SiteOutbox) -> bool:
        """One registration check and one `proxy data`; True when the next should follow at once."""
        if not await self.register(buffer):
            return False
        more = await self.send_data(outbox)
        return more or (outbox.held and not self._failing)  # held back: register the newer items at once

    async def _forward_loop(self, stop: asyncio.Event) -> None:
        buffer = await asyncio.to_thread(SiteBuffer, self.outbox_path)
        outbox = SiteOutbox(buffer, self.repo, self.session, self.site)
        try:
            while True:
                more = await self._pass(buffer, outbox)
                if stop.is_set():
                    if not more:
                        return
                    continue
                if not more and not await self._sleep(stop, self.interval):
                    await self._pass(buffer, outbox)  # what the writers committed last
                    return
        finally:
            buffer.close()


def forwarder(settings: Any) -> tuple[SiteUplink, Any]:
    """For `vigil server`/`vigil up` with VIGIL_UPSTREAM and VIGIL_SITE (run/alerting.py composes it): the
    uplink to run and the wrapper for each history writer's store."""
    from vigil.server.config.migrate import engine_for

    assert settings.upstream is not None and settings.site
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = settings.data_dir / OUTBOX_FILE
    SiteBuffer(path).close()  # a data directory it cannot write stops the server before it listens
    repo = ConfigRepo(engine_for(settings.database_url, settings.pg_timeouts))
    uplink = SiteUplink(settings.upstream, settings.site, repo, path, timeout=settings.timeout)
    return uplink, lambda store: ForwardingStore(store, SiteBuffer(path))
