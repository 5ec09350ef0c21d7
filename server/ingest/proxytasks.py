"""Tasks in the server's exchanges with proxies (docs/proxies.md, "Tasks"), as Zabbix 6.0's server
does them in zbx_send_proxy_data_response(): the `success` reply to a proxy's `proxy data` (an active
proxy's request, or a passive proxy's reply to `proxy data` / `proxy tasks`) carries the proxy's new
remote commands in `tasks`; the `tasks` of its `proxy data` carry their results back.

The same replies carry the check now tasks (type 6) of the items the proxy monitors
(server/store/tasks.py, "check now").

ProxyHandler calls `reply(proxy, obj)` once per such reply; `expire_loop` fails the alerts of
commands past their ttl and expires check now tasks nobody took.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from sqlalchemy.engine import Engine
from vigil.agent.protocol.messages import ProtocolError
from vigil.agent.protocol.tasks import TASKS, CheckNow, RemoteCommandResult, parse_tasks
from vigil.server.config.proxies import ProxyRef
from vigil.server.store import tasks as store

log = logging.getLogger("vigil.ingest.proxytasks")


class ProxyTasks:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def results(self, proxy: ProxyRef, obj: dict[str, Any]) -> None:
        """Settle the alerts of the command results in a proxy's `proxy data`."""
        if TASKS not in obj:
            return
        try:
            results = [x for x in parse_tasks(obj) if isinstance(x, RemoteCommandResult)]
        except ProtocolError as e:
            log.warning("proxy data from [%s]: tasks skipped: %s", proxy.name, e)
            return
        if results:
            n = await asyncio.to_thread(store.record_results, self.engine, proxy.proxyid, proxy.name, results,
                                        int(time.time()))
            log.info("proxy [%s] returned %d remote command results", proxy.name, n)

    async def reply(self, proxy: ProxyRef, obj: dict[str, Any], reply: bytes) -> bytes:
        """`reply` (a `success` JSON object) with the proxy's new commands added; the results in
        `obj` are recorded first. A database error leaves the reply as it was: the commands wait
        for the next one."""
        try:
            await self.results(proxy, obj)
            commands = await asyncio.to_thread(store.take_new, self.engine, proxy.proxyid)
        except Exception as e:
            log.warning("proxy [%s]: tasks not exchanged: %s", proxy.name, e)
            return reply
        if not commands:
            return reply
        d = json.loads(reply)
        d[TASKS] = [c.to_json() for c in commands]
        checks = sum(1 for c in commands if isinstance(c, CheckNow))
        if checks < len(commands):
            log.info("sending %d remote commands to proxy [%s]", len(commands) - checks, proxy.name)
        if checks:
            log.info("sending check now of %d items to proxy [%s]", checks, proxy.name)
        return json.dumps(d, separators=(",", ":")).encode()

    async def expire_loop(self, stop: asyncio.Event, interval: float = 1.0) -> None:
        while not stop.is_set():
            try:
                await asyncio.to_thread(store.expire, self.engine, int(time.time()))
                await asyncio.to_thread(store.expire_check_now, self.engine, int(time.time()))
            except Exception as e:
                log.warning("cannot expire remote command tasks: %s", e)
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except TimeoutError:
                pass
