"""The task queue for proxies (Zabbix's task tables, migration 0020): remote commands of actions for
hosts monitored by a proxy, and the results the proxy returns.

A command is queued NEW; the reply that carries it to its proxy marks it INPROGRESS; the proxy's
result marks it DONE and settles its alert (sent, or failed with the proxy's reason); a command still
NEW or INPROGRESS past its ttl is EXPIRED and its alert failed, naming the proxy and the ttl.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from vigil.agent.protocol.tasks import REMOTE_COMMAND_TTL, RemoteCommand, RemoteCommandResult
from vigil.server.config import tables as t
from vigil.server.config.tables import AlertStatus, TaskStatus, TaskType

log = logging.getLogger("vigil.tasks")

RESULT_STATUS_DONE = 0


def host_proxy(engine: Engine, hostid: int) -> int | None:
    """The proxy monitoring the host; None: the server itself."""
    with engine.connect() as c:
        v = c.execute(sa.select(t.hosts.c.proxyid).where(t.hosts.c.hostid == hostid)).scalar()
    return None if v is None else int(v)


def queue_command(engine: Engine, proxyid: int, hostid: int, alertid: int, command: str, now: int, *,
                  execute_on: int = 0, ttl: int = REMOTE_COMMAND_TTL) -> int:
    """Queue an action's remote command for the proxy; its taskid."""
    with engine.begin() as c:
        taskid = int(c.execute(t.task.insert().values(type=TaskType.REMOTE_COMMAND, status=TaskStatus.NEW,
                                                      clock=now, ttl=ttl, proxyid=proxyid))
                     .inserted_primary_key[0])
        c.execute(t.task_remote_command.insert().values(
            taskid=taskid, command_type=0, execute_on=execute_on, port=0, authtype=0, command=command,
            alertid=alertid, parent_taskid=taskid, hostid=hostid))
    return taskid


def take_new(engine: Engine, proxyid: int) -> list[RemoteCommand]:
    """The proxy's NEW commands, marked INPROGRESS in the same transaction (the reply carries them).
    A reply that then does not reach the proxy leaves them to expire, as Zabbix does."""
    k, r = t.task, t.task_remote_command
    q = (sa.select(k.c.taskid, k.c.clock, k.c.ttl, r.c.command_type, r.c.execute_on, r.c.port, r.c.authtype,
                   r.c.username, r.c.password, r.c.publickey, r.c.privatekey, r.c.command, r.c.alertid, r.c.hostid)
         .join(r, r.c.taskid == k.c.taskid)
         .where(k.c.proxyid == proxyid, k.c.status == TaskStatus.NEW, k.c.type == TaskType.REMOTE_COMMAND)
         .order_by(k.c.taskid))
    with engine.begin() as c:
        rows = c.execute(q).all()
        if not rows:
            return []
        c.execute(k.update().where(k.c.taskid.in_([x.taskid for x in rows]), k.c.status == TaskStatus.NEW)
                  .values(status=TaskStatus.INPROGRESS))
    return [RemoteCommand(taskid=int(x.taskid), hostid=int(x.hostid), command=x.command, clock=int(x.clock),
                          ttl=int(x.ttl), execute_on=int(x.execute_on), alertid=int(x.alertid or 0),
                          commandtype=int(x.command_type), port=int(x.port), authtype=int(x.authtype),
                          username=x.username, password=x.password, publickey=x.publickey,
                          privatekey=x.privatekey) for x in rows]


def record_results(engine: Engine, proxyid: int, proxy: str, results: list[RemoteCommandResult], now: int) -> int:
    """Settle the alerts of the commands these results answer; returns how many were settled. A
    result for a task this proxy was not given, or one already settled (a resent batch), is skipped."""
    k, a = t.task, t.alerts
    done = 0
    with engine.begin() as c:
        for res in results:
            row = c.execute(sa.select(k.c.status, t.task_remote_command.c.alertid)
                            .join(t.task_remote_command, t.task_remote_command.c.taskid == k.c.taskid)
                            .where(k.c.taskid == res.parent_taskid, k.c.proxyid == proxyid,
                                   k.c.type == TaskType.REMOTE_COMMAND)).first()
            if row is None:
                log.warning("proxy [%s] returned a result for task %d, which it was not given", proxy,
                            res.parent_taskid)
                continue
            if row.status not in (TaskStatus.NEW, TaskStatus.INPROGRESS):
                continue
            rid = int(c.execute(k.insert().values(type=TaskType.REMOTE_COMMAND_RESULT, status=TaskStatus.DONE,
                                                  clock=now, ttl=0, proxyid=proxyid)).inserted_primary_key[0])
            c.execute(t.task_remote_command_result.insert().values(taskid=rid, status=res.status,
                                                                   parent_taskid=res.parent_taskid, info=res.info))
            c.execute(k.update().where(k.c.taskid == res.parent_taskid).values(status=TaskStatus.DONE))
            if row.alertid:
                values: dict[str, Any]
                if res.ok:
                    values = {"status": AlertStatus.SENT, "error": "", "sent_clock": now, "message": res.info}
                else:
                    why = res.info or "no reason given"
                    values = {"status": AlertStatus.FAILED, "error": f"proxy [{proxy}]: {why}"[:2048]}
                c.execute(a.update().where(a.c.alertid == row.alertid).values(**values))
            done += 1
    return done


def expire(engine: Engine, now: int) -> int:
    """Commands past their ttl without a result: EXPIRED, their alerts failed with the reason."""
    k, r, p = t.task, t.task_remote_command, t.proxies
    q = (sa.select(k.c.taskid, k.c.status, k.c.ttl, r.c.alertid, p.c.name)
         .join(r, r.c.taskid == k.c.taskid).outerjoin(p, p.c.proxyid == k.c.proxyid)
         .where(k.c.type == TaskType.REMOTE_COMMAND, k.c.status.in_([TaskStatus.NEW, TaskStatus.INPROGRESS]),
                k.c.ttl > 0, k.c.clock + k.c.ttl < now))
    with engine.begin() as c:
        rows = c.execute(q).all()
        for x in rows:
            c.execute(k.update().where(k.c.taskid == x.taskid).values(status=TaskStatus.EXPIRED))
            state = "was never sent to it" if x.status == TaskStatus.NEW else "was sent to it"
            why = (f"the proxy [{x.name}] returned no result within the remote command's ttl of {x.ttl} s "
                   f"(the command {state}; is the proxy running and connected?)")
            if x.alertid:
                c.execute(t.alerts.update().where(t.alerts.c.alertid == x.alertid)
                          .values(status=AlertStatus.FAILED, error=why[:2048]))
            log.warning("remote command task %d expired: %s", x.taskid, why)
    return len(rows)
