"""The alerts room wired to the trigger engine: the escalator and how its alerts are delivered.

`vigil up` delivers in an in-process pool (LocalDispatcher); `vigil server` hands each alert to the
broker for `vigil worker` processes (CeleryDispatcher). Either way the escalator runs in a thread of
the server's process and is the engine's `notify`.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from vigil.alerts.delivery import CeleryDispatcher, LocalDispatcher
from vigil.alerts.escalator import Escalator
from vigil.server.config.migrate import check_current, engine_for
from vigil.server.config.repo import ConfigRepo
from vigil.server.ingest.server import serve
from vigil.server.settings import Settings
from vigil.server.store.alertlog import AlertLog

log = logging.getLogger("vigil.alerting")


class Alerting:
    def __init__(self, settings: Settings, *, in_process: bool) -> None:
        self.engine = engine_for(settings.database_url, settings.pg_timeouts)
        self.local: LocalDispatcher | None = None
        self.celery: CeleryDispatcher | None = None
        if in_process:
            self.local = LocalDispatcher(self.engine, settings.alert_threads)
            dispatcher = self.local
        else:
            self.celery = CeleryDispatcher(settings.broker_url, settings.alert_queue, settings.alert_redelivery)
            dispatcher = self.celery
        self.escalator = Escalator.from_settings(self.engine, ConfigRepo(self.engine), AlertLog(self.engine),
                                                 dispatcher, settings)
        self.notify = self.escalator.notify
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.escalator.run, args=(self._stop,), name="escalator", daemon=True)

    def start(self) -> None:
        if self.local is not None:
            self.local.start()
        self._thread.start()
        log.info("alerts: escalator started, delivery %s",
                 "in this process" if self.local is not None else "through the broker to `vigil worker`")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        self.escalator.close()
        if self.local is not None:
            self.local.stop()
        if self.celery is not None:
            self.celery.close()
        self.engine.dispose()


async def serve_with_alerts(settings: Settings, stop: asyncio.Event, *, in_process: bool = False,
                            **serve_args: object) -> None:
    """`serve` with the escalator as the trigger engine's `notify` (`vigil server`; `vigil up` in process)."""
    engine = engine_for(settings.database_url, settings.pg_timeouts)
    try:
        await asyncio.to_thread(check_current, engine)
    finally:
        engine.dispose()
    site = None
    if settings.site:  # a site server: everything stored also goes to VIGIL_UPSTREAM (proxy/site.py)
        from vigil.proxy.site import forwarder

        site, serve_args["wrap_store"] = forwarder(settings)
    alerting = Alerting(settings, in_process=in_process)
    alerting.start()
    uplink = asyncio.create_task(site.run(stop)) if site is not None else None
    try:
        await serve(settings, stop, notify=alerting.notify, **serve_args)  # type: ignore[arg-type]
    finally:
        stop.set()
        if uplink is not None:
            await uplink
            site.repo.engine.dispose()
        await asyncio.to_thread(alerting.stop)
