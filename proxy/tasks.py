"""Remote command and check now tasks on the proxy (docs/proxies.md, "Tasks"), as zabbix_proxy's task
manager runs them. A check now (type 6) reschedules its item in the proxy's pollers at once (past its
ttl, or for an item the proxy does not poll, it is dropped, as Zabbix drops it); nothing goes back.
A remote command runs as zabbix_proxy runs
them: a command that came in the server's reply runs on the host's agent (`system.run[…,nowait]`
for an action's command, as the server would run it: server/commands.py) or, with execute_on proxy
and EnableRemoteCommands=1, on the proxy itself (`sh -c`); its result goes in the `tasks` of the next
`proxy data` until the server acknowledges that message.

Like Zabbix: a command past its ttl is not run ("The remote command has been expired."), a host the
proxy does not monitor is "Unknown host.", and execute_on proxy without EnableRemoteCommands=1 is
"Remote commands are not enabled". Results are kept in memory: a proxy restarted before delivering
one leaves the server to fail the alert at the ttl.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from vigil.agent.protocol.messages import ProtocolError
from vigil.agent.protocol.tasks import (
    EXECUTE_ON_AGENT,
    EXECUTE_ON_PROXY,
    FAIL,
    SCRIPT_CUSTOM,
    SUCCEED,
    TASKS,
    CheckNow,
    RemoteCommand,
    RemoteCommandResult,
    parse_tasks,
)
from vigil.server import commands
from vigil.server.config import tables as t

log = logging.getLogger("vigil.proxy.tasks")


class TaskRunner:
    def __init__(self, engine: Engine, *, enable_remote_commands: bool = False, log_remote_commands: bool = False,
                 timeout: float = 30.0, reschedule: Callable[[list[int]], int] | None = None) -> None:
        self.engine = engine  # the proxy's local configuration
        self.reschedule = reschedule  # the pollers' Scheduler.check_now (None: the proxy polls nothing)
        self.enable_remote_commands = enable_remote_commands
        self.log_remote_commands = log_remote_commands
        self.timeout = timeout
        self._lock = threading.Lock()
        self._results: dict[int, RemoteCommandResult] = {}  # parent_taskid -> result not yet delivered
        self._seen: set[int] = set()  # taskids taken (a reply resent by a server is run once)
        self._running: set[asyncio.Task[None]] = set()

    # --- the uplink's hooks --------------------------------------------------------------------

    def pending(self) -> bool:
        """Whether results wait for a `proxy data` to carry them."""
        with self._lock:
            return bool(self._results)

    def attach(self, body: dict[str, Any]) -> list[int]:
        """Add the undelivered results to a `proxy data` body; their parent taskids."""
        with self._lock:
            results = list(self._results.values())
        if results:
            body[TASKS] = [r.to_json() for r in results]
        return [r.parent_taskid for r in results]

    def delivered(self, taskids: list[int]) -> None:
        """The server acknowledged the message that carried these results."""
        with self._lock:
            for i in taskids:
                self._results.pop(i, None)

    def received(self, reply: dict[str, Any]) -> None:
        """Start the remote commands of a server's `success` reply (in the running event loop)."""
        if TASKS not in reply:
            return
        try:
            tasks = parse_tasks(reply)
        except ProtocolError as e:
            log.warning("tasks of the server's reply skipped: %s", e)
            return
        self._check_now([x for x in tasks if isinstance(x, CheckNow)], int(time.time()))
        for task in tasks:
            if not isinstance(task, RemoteCommand) or task.taskid in self._seen:
                continue
            self._seen.add(task.taskid)
            job = asyncio.get_running_loop().create_task(self._run(task))
            self._running.add(job)
            job.add_done_callback(self._running.discard)

    def _check_now(self, checks: list[CheckNow], now: int) -> None:
        if not checks:
            return
        live = [c.itemid for c in checks if not c.expired(now)]
        if len(live) < len(checks):
            log.warning("%d check now tasks dropped: past their ttl", len(checks) - len(live))
        if not live:
            return
        if self.reschedule is None:
            log.warning("check now of %d items dropped: the proxy's pollers are off (StartPollers=0)", len(live))
            return
        n = self.reschedule(live)
        log.info("check now: %d of %d items rescheduled", n, len(live))

    async def wait(self, timeout: float = 60.0) -> None:
        """Wait for the commands started so far (tests, shutdown)."""
        if self._running:
            await asyncio.wait(list(self._running), timeout=timeout)

    # --- running one ---------------------------------------------------------------------------

    async def _run(self, task: RemoteCommand) -> None:
        try:
            status, info = await asyncio.to_thread(self.execute, task, int(time.time()))
        except Exception as e:  # a result still goes back: the alert must not wait for the ttl
            log.exception("remote command task %d failed", task.taskid)
            status, info = FAIL, f"the proxy could not run the command: {e}"
        result = RemoteCommandResult(task.taskid, status, info, clock=int(time.time()))
        with self._lock:
            self._results[task.taskid] = result
        if status != SUCCEED:
            log.warning("remote command task %d for host %d failed: %s", task.taskid, task.hostid, info)

    def execute(self, task: RemoteCommand, now: int) -> tuple[int, str]:
        """(status, info) as zabbix_proxy's tm_execute_remote_command() returns them."""
        if task.expired(now):
            return FAIL, "The remote command has been expired."
        if not self._host_known(task.hostid):
            return FAIL, "Unknown host."
        if task.commandtype != SCRIPT_CUSTOM:
            return FAIL, f"remote commands of script type {task.commandtype} are not supported by Vigil's proxy " \
                         "(only custom scripts, type 0)"
        if task.execute_on == EXECUTE_ON_PROXY:
            if not self.enable_remote_commands:
                return FAIL, "Remote commands are not enabled"
            self._log(task)
            r = commands.run_on_server(task.command, self.timeout)
            return (SUCCEED, r.output) if r.ok else (FAIL, r.error)
        if task.execute_on != EXECUTE_ON_AGENT:
            return FAIL, f"execute_on {task.execute_on} is not the agent (0) nor the proxy (2)"
        address = self._agent(task.hostid)
        if address is None:
            return FAIL, "the host has no agent interface to run the command on"
        self._log(task)
        r = commands.run_on_agent(address[0], address[1], task.command, self.timeout, nowait=task.alertid != 0)
        if not r.ok:
            return FAIL, r.error
        return SUCCEED, "" if task.alertid else r.output  # an action's command: nowait, no output

    def _log(self, task: RemoteCommand) -> None:
        (log.warning if self.log_remote_commands else log.debug)("Executing command '%s'", task.command)

    def _host_known(self, hostid: int) -> bool:
        with self.engine.connect() as c:
            return c.execute(sa.select(t.hosts.c.hostid).where(t.hosts.c.hostid == hostid)).first() is not None

    def _agent(self, hostid: int) -> tuple[str, int] | None:
        i = t.interfaces
        with self.engine.connect() as c:
            r = c.execute(sa.select(i.c.useip, i.c.ip, i.c.dns, i.c.port)
                          .where(i.c.hostid == hostid, i.c.type == 1)
                          .order_by(i.c.main.desc(), i.c.interfaceid)).first()
        if r is None:
            return None
        try:
            port = int(str(r.port).strip() or "10050")
        except ValueError:
            port = 10050
        return (r.ip if r.useip else r.dns) or "127.0.0.1", port
