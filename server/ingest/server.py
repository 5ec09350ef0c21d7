"""The composition of `vigil server`: configuration cache, history writer, listener, housekeeping."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable

from vigil.server.config.migrate import check_current, engine_for
from vigil.server.config.repo import ConfigRepo
from vigil.server.ingest.batcher import Batcher
from vigil.server.ingest.cache import ConfigCache
from vigil.server.ingest.listener import IngestServer
from vigil.server.settings import Settings
from vigil.server.store import open_store

log = logging.getLogger("vigil.server")


async def serve(settings: Settings, stop: asyncio.Event,
                on_ready: Callable[[], Awaitable[None]] | None = None) -> None:
    """Run ingest until `stop` is set. Raises if the database is not migrated or the port is taken."""
    engine = engine_for(settings.database_url)
    check_current(engine)
    repo = ConfigRepo(engine)
    cache = ConfigCache(repo)

    def read_sessions() -> dict[str, int]:
        store = open_store(settings.database_url)
        try:
            return store.sessions()
        finally:
            store.close()

    last_ids = read_sessions()
    batcher = Batcher(lambda: open_store(settings.database_url), settings.batch_max_values,
                      settings.history_writers)
    batcher.start()
    ingest = IngestServer(cache, repo, batcher, last_ids, read_sessions, max_frame=settings.max_frame_bytes,
                          timeout=settings.timeout, max_connections=settings.max_connections,
                          max_body=settings.max_body_bytes, max_values=settings.max_request_values)
    host, port = settings.listen
    try:
        server = await ingest.start_server(host, port, backlog=1024)
    except OSError as e:
        batcher.stop()
        raise RuntimeError(f"cannot listen on {host}:{port} (VIGIL_LISTEN): {e.strerror or e}") from None
    log.info("listening for Zabbix protocol traffic on %s:%d, store %s", host, port,
             "SQLite" if settings.is_sqlite else "PostgreSQL")
    housekeeper_stop = threading.Event()
    hk = threading.Thread(target=_housekeeper, args=(settings, repo, housekeeper_stop), name="housekeeper",
                          daemon=True)
    hk.start()
    refresher = asyncio.create_task(cache.run(settings.config_refresh, stop))
    try:
        if on_ready is not None:
            await on_ready()
        async with server:
            await stop.wait()
    finally:
        server.close()
        await refresher
        housekeeper_stop.set()
        batcher.stop()
        engine.dispose()
        log.info("stopped: %d requests, %d values stored, %d failed",
                 ingest.stats["requests"], ingest.stats["values"], ingest.stats["failed"])


def _housekeeper(settings: Settings, repo: ConfigRepo, stop: threading.Event) -> None:
    from vigil.server.store.housekeeper import run
    from vigil.server.store.retention import from_items

    store = open_store(settings.database_url)
    try:
        run(store, settings, lambda: from_items(repo.retention_rows()), stop)
    finally:
        store.close()
