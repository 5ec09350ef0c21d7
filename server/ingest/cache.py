"""The configuration cache ingest reads instead of the database, reloaded when config changes."""

from __future__ import annotations

import asyncio
import logging
import time

from vigil.server.config.repo import ConfigRepo, Snapshot
from vigil.server.ingest.values import sender_index

log = logging.getLogger("vigil.ingest.config")


class ConfigCache:
    def __init__(self, repo: ConfigRepo) -> None:
        self.repo = repo
        self.snapshot: Snapshot = repo.snapshot()
        sender_index(self.snapshot)
        log.info("configuration loaded: %d hosts, %d items", len(self.snapshot.hosts), len(self.snapshot.items))

    def reload_if_changed(self) -> bool:
        if self.repo.version() == self.snapshot.version:
            return False
        t0 = time.monotonic()
        snap = self.repo.snapshot()
        sender_index(snap)  # here, on the reload's thread, rather than at the next request on the event loop
        self.snapshot = snap
        log.info("configuration reloaded: %d hosts, %d items in %.3f s",
                 len(self.snapshot.hosts), len(self.snapshot.items), time.monotonic() - t0)
        return True

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
                await asyncio.to_thread(self.reload_if_changed)
            except Exception as e:  # the database may be away; keep serving the old config
                if failures == 0:  # once per outage, not every interval; the engine reconnects by itself
                    log.warning("cannot check for configuration changes (serving the configuration loaded "
                                "before): %s", str(e).splitlines()[0] if str(e) else repr(e))
                failures += 1
                continue
            if failures:
                log.info("configuration checks work again after %d failed", failures)
                failures = 0
