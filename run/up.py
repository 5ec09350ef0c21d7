"""`vigil up`: everything on one machine — ingest on the embedded store and a local agent.

It migrates the store, imports the built-in "Linux by Vigil agent" template, makes sure this
machine is a host linked to it, starts ingest, then a vigil-agent in active mode reporting to it
(restarted if it dies), and serves the web UI. Triggers fire alerts delivered in this process (run/alerting.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from vigil.run.alerting import serve_with_alerts
from vigil.server.config.builtins import builtin_document
from vigil.server.config.migrate import engine_for, upgrade
from vigil.server.config.model import doc_from_dict
from vigil.server.config.repo import ConfigRepo
from vigil.server.settings import Settings

log = logging.getLogger("vigil.up")

BUILTIN_TEMPLATE = "Linux by Vigil agent"


# The built-in templates `vigil up` imports at every start, so that an upgrade's changes reach them
# (the others, "Generic Java JMX" and the SNMP, IPMI and Prometheus ones, are imported when a host
# first links them: vigil.server.config.builtins).
BUILTIN_NAMES = (BUILTIN_TEMPLATE,)


def builtin_templates(name: str = BUILTIN_TEMPLATE) -> dict:
    doc = builtin_document(name)
    if doc is None:
        raise KeyError(f"no built-in template {name!r}")
    return doc


def local_hostname() -> str:
    return socket.gethostname() or "localhost"


def prepare(settings: Settings, hostname: str) -> None:
    """Migrate, import the built-in template, and link it to this machine's host."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = engine_for(settings.database_url)
    try:
        upgrade(engine)
        repo = ConfigRepo(engine)
        for name in BUILTIN_NAMES:
            repo.apply(doc_from_dict(builtin_templates(name)))
        if not repo.host_exists(hostname):
            repo.apply(doc_from_dict({"hosts": [{"host": hostname, "groups": ["Vigil servers"],
                                                 "templates": [BUILTIN_TEMPLATE]}]}))
            log.info("created host %s with the template %r", hostname, BUILTIN_TEMPLATE)
    finally:
        engine.dispose()


def agent_config(settings: Settings, hostname: str) -> Path:
    host, port = settings.listen
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    path = settings.data_dir / "vigil-agent.conf"
    path.write_text(
        "# Written by `vigil up` for the agent watching this machine; rewritten at every start.\n"
        f"Hostname={hostname}\nServerActive={host}:{port}\nServer=\nStartAgents=0\n"
        "RefreshActiveChecks=60\nBufferSend=5\n"
        # The agent is part of `vigil up` and runs as whoever started it; leaving root would lock it
        # out of its own log and buffer in the data directory.
        "AllowRoot=1\n"
        f"LogType=file\nLogFile={(settings.data_dir / 'vigil-agent.log').absolute()}\n"
        f"PersistentBufferFile={(settings.data_dir / 'vigil-agent-buffer.db').absolute()}\n"
    )
    return path


def _die_with_parent() -> None:  # runs in the child before exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


async def supervise_agent(conf: Path, stop: asyncio.Event) -> None:
    delay = 1.0
    while not stop.is_set():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "vigil.agent.cli.agentd", "-c", str(conf),
            stdin=subprocess.DEVNULL, preexec_fn=_die_with_parent if os.name == "posix" else None,
        )
        log.info("local vigil-agent started (pid %d, config %s)", proc.pid, conf)
        waiter = asyncio.create_task(proc.wait())
        stopper = asyncio.create_task(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if stop.is_set():
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(waiter, 10)
                except TimeoutError:
                    proc.kill()
                    await waiter
            log.info("local vigil-agent stopped (exit code %s)", proc.returncode)
            return
        stopper.cancel()
        log.warning("local vigil-agent exited with %s; restarting in %.0f s", proc.returncode, delay)
        try:
            await asyncio.wait_for(stop.wait(), delay)
        except TimeoutError:
            pass
        delay = min(delay * 2, 60)


# --- web UI inside `vigil up` -------------------------------------------------------------------------


def start_web(settings: Settings) -> object:
    """Create Admin on first start (password printed once and kept in the data directory until
    changed), then serve the web UI on VIGIL_WEB_LISTEN in a thread. Returns the server (stop())."""
    from vigil.run.web import INITIAL_PASSWORD_FILE, WebServer, ensure_admin

    password = ensure_admin(settings)
    try:
        server = WebServer(settings)
    except OSError as e:
        raise RuntimeError(f"cannot listen on {settings.web_listen[0]}:{settings.web_listen[1]} (VIGIL_WEB_LISTEN): "
                           f"{e.strerror}") from None
    server.start()
    print(f"vigil up: web UI at {server.url}", flush=True)
    if password is not None:
        print(f"vigil up: sign in as Admin with password {password} (also in "
              f"{settings.data_dir / INITIAL_PASSWORD_FILE} until you change it)", flush=True)
    return server


# --- end of web block -----------------------------------------------------------------------------------


async def up(settings: Settings, stop: asyncio.Event) -> None:
    hostname = local_hostname()
    await asyncio.to_thread(prepare, settings, hostname)
    web = await asyncio.to_thread(start_web, settings)
    tasks: list[asyncio.Task[None]] = []
    # Ingest stops only after the local agent has exited, so the agent's last send still lands.
    ingest_stop = asyncio.Event()

    async def ready() -> None:
        if settings.local_agent:
            tasks.append(asyncio.create_task(supervise_agent(agent_config(settings, hostname), stop)))
        log.info("vigil up: ingest on %s:%d; data in %s", *settings.listen, settings.data_dir)

    async def stop_in_order() -> None:
        await stop.wait()
        for t in tasks:
            await t
        ingest_stop.set()

    stopper = asyncio.create_task(stop_in_order())
    try:
        await serve_with_alerts(settings, ingest_stop, in_process=True, on_ready=ready)
    finally:
        stop.set()
        await stopper
        await asyncio.to_thread(web.stop)  # type: ignore[attr-defined]
