"""The composition of `vigil proxy`: the local configuration database, the durable buffer behind the
server's Batcher, the server's ConfigCache and IngestServer on ListenIP:ListenPort (sender data,
agent data, active checks, answered exactly as the server does), the server's poller Scheduler, the
uplink to the server (active or passive), expiry of old buffered values, logging and the pid file.

On SIGTERM: stop accepting, let the pollers hand in their last values, let the writer commit what
it holds, then (active mode) one last `proxy data`, and exit.
"""

from __future__ import annotations

import asyncio
import logging
import logging.handlers
import os
import sys
import time
from pathlib import Path

from vigil.proxy.autoreg import ProxyAutoreg
from vigil.proxy.buffer import ProxyBuffer
from vigil.proxy.conf import ProxyConf, log_ignored
from vigil.proxy.localconfig import LocalConfig, open_local
from vigil.proxy.memory import trim_every
from vigil.proxy.uplink import ActiveUplink, PassiveUplink
from vigil.server.config.repo import ConfigRepo
from vigil.server.ingest.batcher import Batcher
from vigil.server.ingest.cache import ConfigCache
from vigil.server.ingest.listener import IngestServer
from vigil.server.store.base import StoreError

log = logging.getLogger("vigil.proxy")

# Zabbix's DebugLevel 0-5 as logging levels; Vigil's informational lines (start, configuration applied,
# totals) come at the default 3, with the warnings.
_LEVELS = {0: logging.WARNING, 1: logging.CRITICAL, 2: logging.ERROR, 3: logging.INFO, 4: logging.DEBUG,
           5: logging.DEBUG}
BATCH_VALUES = 10_000
MAX_FRAME = 128 << 20
MAX_CONNECTIONS = 1000
CONFIG_REFRESH = 1.0  # seconds between checks of the local configuration version
TRIM_EVERY = 5.0  # seconds between returns of freed memory to the system (proxy/memory.py)


def setup_logging(conf: ProxyConf) -> None:
    handler: logging.Handler
    if conf.LogType == "console":
        handler = logging.StreamHandler(sys.stderr)
    elif conf.LogType == "system":
        handler = logging.handlers.SysLogHandler("/dev/log") if os.path.exists("/dev/log") \
            else logging.StreamHandler(sys.stderr)
    else:
        Path(conf.LogFile).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(conf.LogFile)
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS[conf.DebugLevel])


def write_pid(path: str) -> None:
    p = Path(path)
    if p.exists():
        try:
            pid = int(p.read_text().strip() or 0)
        except ValueError:
            pid = 0
        if pid and pid != os.getpid():
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                pass
            except PermissionError:
                raise RuntimeError(f"PidFile {path}: process {pid} is running") from None
            else:
                raise RuntimeError(f"PidFile {path}: process {pid} is running (another vigil proxy?)")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(f"{os.getpid()}\n")


class _Observer:
    """What ingest tells besides values: not-supported states go to the buffer (sent with state 1)."""

    def __init__(self, conf: ProxyConf) -> None:
        self.conf = conf
        self._tasks: set[asyncio.Task[None]] = set()

    def unsupported(self, rows: list[tuple[int, int, str]]) -> None:
        if not rows:
            return
        task = asyncio.get_running_loop().create_task(asyncio.to_thread(self._write, list(rows)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _write(self, rows: list[tuple[int, int, str]]) -> None:
        buffer = open_buffer(self.conf)
        try:
            buffer.write_unsupported(rows)
        except StoreError as e:
            log.warning("%d not-supported states not buffered: %s", len(rows), e)
        finally:
            buffer.close()

    def agent_seen(self, hostid: int) -> None:
        return None

    async def settle(self) -> None:
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def open_buffer(conf: ProxyConf) -> ProxyBuffer:
    return ProxyBuffer(conf.DBName, local_hours=conf.ProxyLocalBuffer, offline_hours=conf.ProxyOfflineBuffer)


def _start_pollers(conf: ProxyConf, repo: ConfigRepo, batcher: Batcher, observer: _Observer) -> tuple:
    from vigil.server.pollers import http, simple
    from vigil.server.pollers.scheduler import PollerSettings, Scheduler, default_pollers

    http.configure()
    simple.configure()
    sched = Scheduler(repo, batcher.submit, PollerSettings(pollers=conf.StartPollers, timeout=conf.Timeout,
                                                           config_refresh=CONFIG_REFRESH),
                      pollers=default_pollers(), unsupported=observer.unsupported)
    halt = asyncio.Event()
    return sched, halt, asyncio.create_task(sched.run(halt), name="pollers")


async def serve(conf: ProxyConf, stop: asyncio.Event, *, expire_every: float = 60.0) -> None:
    log_ignored(conf)
    engine = await asyncio.to_thread(open_local, conf.DBName)
    local = LocalConfig(engine)
    repo = ConfigRepo(engine)
    cache = ConfigCache(repo)
    first = open_buffer(conf)
    last_ids = first.sessions()
    log.info("proxy [%s] starting (%s mode): %d values buffered and not yet sent, %d dropped before",
             conf.Hostname, "passive" if conf.passive else "active", first.unsent(), first.dropped())
    first.close()
    observer = _Observer(conf)
    batcher = Batcher(lambda: open_buffer(conf), BATCH_VALUES, 1, timeout=float(conf.Timeout), sessions=last_ids)
    batcher.start()

    def read_sessions() -> dict[str, int]:
        try:
            b = open_buffer(conf)
        except StoreError:
            return batcher.committed_sessions()
        try:
            return b.sessions()
        finally:
            b.close()

    ingest = IngestServer(cache, repo, batcher, last_ids, read_sessions, max_frame=MAX_FRAME,
                          timeout=float(conf.Timeout), max_connections=MAX_CONNECTIONS, max_body=MAX_FRAME,
                          max_values=BATCH_VALUES, observer=observer)
    passive = PassiveUplink(conf, local, lambda: open_buffer(conf)) if conf.passive else None
    ingest.proxies = passive  # type: ignore[assignment]
    ingest.autoreg = ProxyAutoreg(engine).agent  # unknown hosts' active checks (proxy/autoreg.py)
    try:
        listener = await ingest.start_server(conf.ListenIP, conf.ListenPort, backlog=1024)
    except OSError as e:
        batcher.stop()
        engine.dispose()
        raise RuntimeError(f"cannot listen on {conf.ListenIP}:{conf.ListenPort} (ListenIP, ListenPort): "
                           f"{e.strerror or e}") from None
    log.info("listening on %s:%d for senders and agents%s", conf.ListenIP, conf.ListenPort,
             " and the server" if conf.passive else "")
    refresher = asyncio.create_task(cache.run(CONFIG_REFRESH, stop))
    trimmer = asyncio.create_task(trim_every(TRIM_EVERY, stop))
    pollers = None
    reschedule = None  # check now tasks (proxy/tasks.py): the pollers' Scheduler.check_now
    if conf.StartPollers:
        sched, halt, task = _start_pollers(conf, repo, batcher, observer)
        ingest.on_stored = sched.received
        pollers = (halt, task)
        reschedule = sched.check_now
    uplink_stop = asyncio.Event()
    active = ActiveUplink(conf, local, lambda: open_buffer(conf), expire_every=expire_every) \
        if not conf.passive else None
    from vigil.proxy.tasks import TaskRunner

    runner = TaskRunner(local.engine, enable_remote_commands=conf.EnableRemoteCommands == 1,
                        log_remote_commands=conf.LogRemoteCommands == 1,
                        reschedule=reschedule)
    for uplink in (active, passive):
        if uplink is not None:
            uplink.tasks = runner  # remote commands of the server's actions (proxy/tasks.py)
    up = asyncio.create_task(active.run(uplink_stop)) if active is not None else \
        asyncio.create_task(_expire_only(conf, uplink_stop, expire_every))
    try:
        async with listener:
            await stop.wait()
    finally:
        listener.close()
        if pollers is not None:  # before the writer stops, so their last values are buffered
            pollers[0].set()
            try:
                await pollers[1]
            except Exception:
                log.exception("the pollers failed")
        await refresher
        await trimmer
        await observer.settle()
        await asyncio.to_thread(batcher.stop)
        uplink_stop.set()  # active: one last proxy data with what was just committed
        try:
            await asyncio.wait_for(up, max(conf.Timeout * 4, 10))
        except TimeoutError:
            log.warning("the last proxy data did not finish in time; the values stay buffered")
        except Exception:
            log.exception("the uplink failed")
        if passive is not None:
            passive.close()
        stats = (active or passive).stats if (active or passive) else {}
        engine.dispose()
        log.info("stopped: %d requests, %d values accepted, %d failed; %d values sent in %d batches",
                 ingest.stats["requests"], ingest.stats["values"], ingest.stats["failed"], stats.get("sent", 0),
                 stats.get("batches", 0))


async def _expire_only(conf: ProxyConf, stop: asyncio.Event, every: float) -> None:
    """Passive mode: the server fetches the data; expiry still runs here."""
    while not stop.is_set():
        try:
            def expire() -> None:
                b = open_buffer(conf)
                try:
                    b.expire(int(time.time()))
                finally:
                    b.close()

            await asyncio.to_thread(expire)
        except StoreError as e:
            log.warning("buffer expiry failed: %s", e)
        try:
            await asyncio.wait_for(stop.wait(), every)
        except TimeoutError:
            pass


def main(conf: ProxyConf) -> int:
    """Run until SIGTERM/SIGINT; the exit status."""
    import signal

    try:
        setup_logging(conf)
    except OSError as e:
        print(f"vigil proxy: LogFile {conf.LogFile}: {e.strerror or e}", file=sys.stderr)
        return 1
    try:
        write_pid(conf.PidFile)
    except (OSError, RuntimeError) as e:
        log.error("cannot start: %s", e)
        print(f"vigil proxy: {e if isinstance(e, RuntimeError) else f'PidFile {conf.PidFile}: {e.strerror or e}'}",
              file=sys.stderr)
        return 1

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(conf, stop)

    try:
        asyncio.run(runner())
    except RuntimeError as e:
        log.error("%s", e)
        print(f"vigil proxy: {e}", file=sys.stderr)
        return 1
    finally:
        try:
            Path(conf.PidFile).unlink()
        except OSError:
            pass
    return 0
