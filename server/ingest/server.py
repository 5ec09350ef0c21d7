"""The composition of `vigil server`: configuration cache, history writer, listener, housekeeping."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable

import sqlalchemy as sa
from vigil.server.config.migrate import check_current, engine_for
from vigil.server.config.repo import ConfigRepo
from vigil.server.ingest.batcher import Batcher
from vigil.server.ingest.cache import ConfigCache
from vigil.server.ingest.listener import IngestServer
from vigil.server.ingest.tls import context_from_settings
from vigil.server.ingest.values import ClockWindow
from vigil.server.settings import Settings
from vigil.server.store import StoreError, open_store
from vigil.server.store.base import Retention, Store
from vigil.server.store.events import EventStore
from vigil.server.triggers.evaluator import EngineSettings, TriggerEngine
from vigil.server.triggers.events import Notice

log = logging.getLogger("vigil.server")


async def serve(settings: Settings, stop: asyncio.Event,
                on_ready: Callable[[], Awaitable[None]] | None = None,
                notify: Callable[[Notice], None] | None = None,
                wrap_store: Callable[[Store], Store] | None = None) -> None:
    """Run ingest and the trigger engine until `stop` is set; `notify` gets each committed event and
    problem update (it must not block). `wrap_store` wraps each history writer's store (a site server's
    forwarding outbox, proxy/site.py). Raises if the database is not migrated or the port is taken."""
    if settings.snmptrap_listen is not None:  # a bad VIGIL_SNMPTRAP_USERS stops the server before it listens
        from vigil.server.pollers.trapserver import parse_users

        try:
            parse_users(settings.snmptrap_users)
        except ValueError as e:
            raise RuntimeError(str(e)) from None
    pg = settings.pg_timeouts
    engine = engine_for(settings.database_url, pg)
    check_current(engine)
    repo = ConfigRepo(engine)
    cache = ConfigCache(repo)

    def stored_sessions() -> dict[str, int]:
        store = open_store(settings.database_url, pg)
        try:
            return store.sessions()
        finally:
            store.close()

    def read_sessions() -> dict[str, int]:
        # After a failed write the listener forgets the ids it marked as seen: from the database, or,
        # while it is away, from what this process committed, so a resend is neither dropped nor doubled.
        try:
            return stored_sessions()
        except StoreError as e:
            log.warning("agent sessions read from the history writers' record: %s", e)
            return batcher.committed_sessions()

    last_ids = stored_sessions()
    triggers = TriggerEngine(EventStore(engine), repo, cache, lambda: open_store(settings.database_url, pg), notify,
                             EngineSettings(settings.trigger_timer, settings.ack_poll, settings.agent_unreachable,
                                            settings.value_cache_size))
    triggers.start()
    def writer_store() -> Store:
        store = open_store(settings.database_url, pg, settings.pg_defer_index)
        return store if wrap_store is None else wrap_store(store)

    batcher = Batcher(writer_store, settings.batch_max_values,
                      settings.history_writers, timeout=settings.timeout, sessions=last_ids,
                      on_commit=triggers.on_commit,
                      on_loop=settings.history_writers if settings.database_url.startswith("postgres") else 0)
    batcher.start()
    from vigil.server.lld import LldProcessor

    lld = LldProcessor(repo)  # discovery rules' values, from the pollers and from ingest
    lld.start()
    try:
        tls = context_from_settings(settings.tls_ca_file, settings.tls_cert_file, settings.tls_key_file,
                                    settings.tls_crl_file) if settings.tls_enabled else None
    except RuntimeError:
        batcher.stop()
        lld.stop()
        triggers.stop()
        raise
    ingest = IngestServer(cache, repo, batcher, last_ids, read_sessions, max_frame=settings.max_frame_bytes,
                          timeout=settings.timeout, max_connections=settings.max_connections,
                          max_body=settings.max_body_bytes, max_values=settings.max_request_values,
                          clock_window=ClockWindow(settings.max_clock_ahead, settings.max_clock_age),
                          tls=tls, observer=triggers, lld=lld.submit)
    # --- proxies (server/ingest/proxy.py): active ones through the listener, passive ones polled -------
    from vigil.server.ingest.proxy import PassivePoller, ProxyHandler

    ingest.proxies = ProxyHandler(repo, batcher.submit, last_ids, ingest.sessions, lambda: cache.snapshot.version,
                                  clock_window=ingest.clock_window, max_history=lambda: cache.snapshot.max_history,
                                  unsupported=triggers.unsupported)
    from vigil.server.ingest.site import SiteRegistrar

    ingest.sites = SiteRegistrar(repo, ingest.proxies)  # site servers register their hosts (server/ingest/site.py)
    from vigil.server.ingest.autoreg import Autoregistrar

    autoreg = Autoregistrar(repo, lambda: cache.snapshot.version, notify)  # active agent autoregistration
    ingest.autoreg = autoreg.agent
    ingest.proxies.autoreg = autoreg
    from vigil.server.ingest.proxytasks import ProxyTasks

    ingest.proxies.tasks = ProxyTasks(repo.engine)  # remote commands through proxies
    # --- end proxies ---------------------------------------------------------------------------------
    host, port = settings.listen
    try:
        server = await ingest.start_server(host, port, backlog=1024)
    except OSError as e:
        batcher.stop()
        lld.stop()
        triggers.stop()
        raise RuntimeError(f"cannot listen on {host}:{port} (VIGIL_LISTEN): {e.strerror or e}") from None
    log.info("listening for Zabbix protocol traffic on %s:%d%s, store %s", host, port,
             " (plain text and TLS with certificates)" if tls is not None else "",
             "SQLite" if settings.is_sqlite else "PostgreSQL")
    housekeeper_stop = threading.Event()
    hk = threading.Thread(target=_housekeeper, args=(settings, repo, housekeeper_stop), name="housekeeper",
                          daemon=True)
    hk.start()
    refresher = asyncio.create_task(cache.run(settings.config_refresh, stop))
    passive = asyncio.create_task(PassivePoller(
        ingest.proxies, interval=settings.proxy_poll_interval, config_frequency=settings.proxy_config_frequency,
        timeout=settings.timeout, max_frame=settings.max_frame_bytes, max_body=settings.max_body_bytes).run(stop))
    from vigil.server.ingest.proxybalancer import ProxyBalancer

    balancer = asyncio.create_task(ProxyBalancer(repo, settings.proxy_group_interval).run(stop))
    task_expiry = asyncio.create_task(ingest.proxies.tasks.expire_loop(stop))
    # --- pollers (server/pollers/): passive agents, simple checks, HTTP agent items -------------------
    from vigil.server.pollers.scheduler import start as start_pollers
    from vigil.server.pollers.trapserver import start as start_traps

    pollers = start_pollers(settings, repo, batcher.submit, triggers.unsupported, lld.submit, follow=cache.follow)
    traps = None
    if pollers is not None:
        ingest.on_stored = pollers.scheduler.received  # dependent items of trapper and active agent items
        try:
            traps = await start_traps(settings, pollers.scheduler.trap)
        except (OSError, ValueError) as e:
            await pollers.stop()
            server.close()
            batcher.stop()
            lld.stop()
            triggers.stop()
            raise RuntimeError(str(e)) from None
    elif settings.snmptrap_listen is not None:
        log.warning("VIGIL_SNMPTRAP_LISTEN is set but VIGIL_POLLERS=0: traps are not received")
    # --- end pollers ---------------------------------------------------------------------------------
    try:
        if on_ready is not None:
            await on_ready()
        async with server:
            await stop.wait()
    finally:
        server.close()
        if traps is not None:
            traps.close()
        if pollers is not None:  # pollers: before the writers stop, so their last values are stored
            await pollers.stop()
        await refresher
        await passive
        await balancer
        await task_expiry
        housekeeper_stop.set()
        batcher.stop()
        lld.stop()
        triggers.stop()  # after the writers: it evaluates what they committed last
        engine.dispose()
        log.info("stopped: %d requests, %d values stored, %d failed",
                 ingest.stats["requests"], ingest.stats["values"], ingest.stats["failed"])


def _housekeeper(settings: Settings, repo: ConfigRepo, stop: threading.Event) -> None:
    from vigil.server.store.housekeeper import supervised
    from vigil.server.store.retention import from_items

    def retention() -> list[Retention]:
        try:
            return from_items(repo.retention_rows())
        except sa.exc.OperationalError as e:  # the database is away: the next run tries again
            raise StoreError(f"cannot read the items' retention periods: {e.orig or e}") from None

    supervised(lambda: open_store(settings.database_url, settings.pg_timeouts, settings.pg_defer_index),
               settings, retention, stop)
