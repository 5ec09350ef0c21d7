"""The configuration cache ingest reads instead of the database, reloaded when config changes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from vigil.server.config.repo import ConfigRepo, Snapshot
from vigil.server.ingest.values import sender_index

log = logging.getLogger("vigil.ingest.config")


class ConfigCache:
    def __init__(self, repo: ConfigRepo) -> None:
        self.repo = repo
        self.snapshot: Snapshot = repo.snapshot()
        sender_index(self.snapshot)
        self._followers: list[tuple[Callable[[], Any], Callable[[Any], None]]] = []
        log.info("configuration loaded: %d hosts, %d items", len(self.snapshot.hosts), len(self.snapshot.items))

    def follow(self, fetch: Callable[[], Any], apply: Callable[[Any], None]) -> None:
        """At each reload, `fetch()` runs on the reload's thread after the snapshot is read and
        `apply(what it returned)` on the loop in the same step that swaps the snapshot in: whoever
        sees the new snapshot (a client served by ingest) can count on the follower having its part
        too (the pollers' dependent items of a trapper item that ingest now accepts). A fetch that
        fails fails the whole reload; the next one tries again."""
        self._followers.append((fetch, apply))

    def _fetch_if_changed(self) -> tuple[Snapshot, list[Any], float] | None:
        if self.repo.version() == self.snapshot.version:
            return None
        t0 = time.monotonic()
        snap = self.repo.snapshot()
        sender_index(snap)  # here, on the reload's thread, rather than at the next request on the event loop
        return snap, [fetch() for fetch, _ in self._followers], t0

    def _apply(self, fetched: tuple[Snapshot, list[Any], float]) -> None:
        snap, parts, t0 = fetched
        self.snapshot = snap
        for (_, apply), part in zip(self._followers, parts, strict=True):
            apply(part)
        log.info("configuration reloaded: %d hosts, %d items in %.3f s",
                 len(snap.hosts), len(snap.items), time.monotonic() - t0)

    def reload_if_changed(self) -> bool:
        """Reload now if the configuration changed (followers included); call it on the loop's thread."""
        fetched = self._fetch_if_changed()
        if fetched is not None:
            self._apply(fetched)
        return fetched is not None

    async def reload(self) -> bool:
        """As reload_if_changed, with the database reads on a thread."""
        fetched = await asyncio.to_thread(self._fetch_if_changed)
        if fetched is not None:
            self._apply(fetched)
        return fetched is not None

    async def run(self, interval: float, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except TimeoutError:
                pass
            if stop.is_set():
                return
            try:
                await self.reload()
            except Exception as e:  # the database may be away; keep serving the old config
                if failures == 0:  # once per outage, not every interval; the engine reconnects by itself
                    log.warning("cannot check for configuration changes (serving the configuration loaded "
                                "before): %s", str(e).splitlines()[0] if str(e) else repr(e))
                failures += 1
                continue
            if failures:
                log.info("configuration checks work again after %d failed", failures)
                failures = 0
