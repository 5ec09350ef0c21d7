"""The task queue (Zabbix's task tables, migrations 0020 and 0023): remote commands of actions for
hosts monitored by a proxy, the results the proxy returns, and check now ("Execute now") of items.

A command is queued NEW; the reply that carries it to its proxy marks it INPROGRESS; the proxy's
result marks it DONE and settles its alert (sent, or failed with the proxy's reason); a command still
NEW or INPROGRESS past its ttl is EXPIRED and its alert failed, naming the proxy and the ttl.

A check now is queued NEW (`queue_check_now`, from the web UI and the API, after the checks Zabbix's
task.create makes: the item exists, is polled, is enabled on a monitored host). Whoever polls the item
takes it: the server's pollers (`take_local_check_now`) for the hosts they monitor, or the reply to
the `proxy data` of the host's proxy (`take_new`), which carries `{"type":6,…,"itemid":N}`; either way
it is DONE once taken (no result comes back: the item's next value is the answer). One nobody took
within its ttl (an hour) is EXPIRED.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from vigil.agent.protocol.tasks import CHECK_NOW_TTL, REMOTE_COMMAND_TTL, CheckNow, RemoteCommand, RemoteCommandResult
from vigil.server.config import tables as t
from vigil.server.config.tables import AlertStatus, Flags, HostStatus, ItemType, TaskStatus, TaskType

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


def take_new(engine: Engine, proxyid: int) -> list[RemoteCommand | CheckNow]:
    """The proxy's NEW commands, marked INPROGRESS in the same transaction (the reply carries them),
    then the check now tasks of the items it monitors, marked DONE. A reply that then does not reach
    the proxy leaves the commands to expire, as Zabbix does (and the items to their next slot)."""
    out: list[RemoteCommand | CheckNow] = []
    out.extend(_take_commands(engine, proxyid))
    out.extend(take_proxy_check_now(engine, proxyid))
    return out


def _take_commands(engine: Engine, proxyid: int) -> list[RemoteCommand]:
    k, r = t.task, t.task_remote_command
    q = (sa.select(k.c.taskid, k.c.clock, k.c.ttl, r.c.command_type, r.c.execute_on, r.c.port, r.c.authtype,
                   r.c.username, r.c.password, r.c.publickey, r.c.privatekey, r.c.command, r.c.alertid, r.c.hostid)
         .join(r, r.c.taskid == k.c.taskid)
         .where(k.c.proxyid == proxyid, k.c.status == TaskStatus.NEW, k.c.type == TaskType.REMOTE_COMMAND)
         .order_by(k.c.taskid))
    rows = _claim(engine, q, status=TaskStatus.INPROGRESS)
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


# --- check now ---------------------------------------------------------------------------------------

# The item types Zabbix 6.0's task.create accepts for a check now (and Vigil's own Nagios checks):
# everything polled. Trapper, active agent, SNMP trap and dependent items wait for their values.
CHECK_NOW_TYPES = frozenset({ItemType.AGENT, ItemType.SIMPLE, ItemType.SNMP, ItemType.INTERNAL, ItemType.EXTERNAL,
                             ItemType.IPMI, ItemType.SSH, ItemType.TELNET, ItemType.CALCULATED, ItemType.JMX,
                             ItemType.HTTP_AGENT, ItemType.NAGIOS})
MAX_CHECK_NOW = 1000  # items in one request


class CheckNowError(Exception):
    """A check now refused; `field` names what was wrong, `status` is the HTTP status it maps to."""

    def __init__(self, message: str, field: str = "itemid", status: int = 400, code: str = "invalid") -> None:
        super().__init__(message)
        self.field, self.status, self.code = field, status, code


@dataclass(frozen=True, slots=True)
class CheckNowItem:
    itemid: int
    hostid: int
    host: str
    key: str
    proxyid: int | None  # None: the server's own pollers


def check_now_items(engine: Engine, itemids: Iterable[int]) -> list[CheckNowItem]:
    """The items to check now, in the order asked (each once), after Zabbix's checks; CheckNowError
    names the first item refused and why (nothing is queued then)."""
    ids = list(dict.fromkeys(int(i) for i in itemids))
    if not ids:
        raise CheckNowError("itemids: name at least one item")
    if len(ids) > MAX_CHECK_NOW:
        raise CheckNowError(f"itemids: {len(ids)} items, over the maximum of {MAX_CHECK_NOW} in one request",
                            "itemids")
    i, h = t.items, t.hosts
    q = (sa.select(i.c.itemid, i.c.hostid, i.c.key_, i.c.name, i.c.type, i.c.status, i.c.flags, h.c.host,
                   h.c.status.label("host_status"), h.c.proxyid)
         .join(h, h.c.hostid == i.c.hostid).where(i.c.itemid.in_(ids)))
    with engine.connect() as c:
        rows = {int(r.itemid): r for r in c.execute(q)}
    out = []
    for itemid in ids:
        r = rows.get(itemid)
        if r is None or r.host_status == HostStatus.TEMPLATE:
            raise CheckNowError(f"itemid: no item {itemid}", status=404, code="not_found")
        what = "discovery rule" if r.flags == Flags.RULE else "item"
        named = f"{what} \"{r.name or r.key_}\" ({r.key_}, itemid {itemid}) on host \"{r.host}\""
        if r.flags == Flags.PROTOTYPE:
            raise CheckNowError(f"itemid: Cannot send request: {named} is an item prototype; check the items "
                                "discovered from it, or its discovery rule", code="wrong_type")
        try:
            kind = ItemType(int(r.type)).name.lower()
        except ValueError:
            kind = f"type {r.type}"
        if r.type not in CHECK_NOW_TYPES:
            article = "an" if kind[0] in "aeiou" else "a"
            raise CheckNowError(f"itemid: Cannot send request: wrong item type: {named} is {article} {kind} "
                                "item, which is not polled (trapper, active agent, SNMP trap and dependent "
                                "items wait for their values)", code="wrong_type")
        if r.status != 0 or r.host_status != HostStatus.MONITORED:
            raise CheckNowError(f"itemid: Cannot send request: {named} is not monitored (the "
                                f"{'host' if r.host_status != HostStatus.MONITORED else what} is disabled)",
                                code="not_monitored")
        out.append(CheckNowItem(itemid, int(r.hostid), r.host, r.key_, None if r.proxyid is None else int(r.proxyid)))
    return out


def queue_check_now(engine: Engine, itemids: Iterable[int], now: int, *, ttl: int = CHECK_NOW_TTL) -> list[int]:
    """Queue a check now for each item (after `check_now_items`' checks); their taskids, in order."""
    items = check_now_items(engine, itemids)
    taskids = []
    with engine.begin() as c:
        for it in items:
            taskid = int(c.execute(t.task.insert().values(type=TaskType.CHECK_NOW, status=TaskStatus.NEW, clock=now,
                                                          ttl=ttl, proxyid=None)).inserted_primary_key[0])
            c.execute(t.task_check_now.insert().values(taskid=taskid, itemid=it.itemid))
            taskids.append(taskid)
    log.info("check now queued for %d items: %s", len(items),
             ", ".join(f"{it.host}:{it.key}" for it in items[:5]) + (" …" if len(items) > 5 else ""))
    return taskids


def _new_check_now() -> sa.Select:
    k, n = t.task, t.task_check_now
    return (sa.select(k.c.taskid, k.c.clock, k.c.ttl, n.c.itemid).join(n, n.c.taskid == k.c.taskid)
            .where(k.c.type == TaskType.CHECK_NOW, k.c.status == TaskStatus.NEW))


def take_proxy_check_now(engine: Engine, proxyid: int) -> list[CheckNow]:
    """The NEW check now tasks of the items of hosts this proxy monitors (now: hosts.proxyid, which a
    proxy group's balancer keeps), marked DONE and given the proxy in the same transaction."""
    k, n, i, h = t.task, t.task_check_now, t.items, t.hosts
    q = (_new_check_now().join(i, i.c.itemid == n.c.itemid).join(h, h.c.hostid == i.c.hostid)
         .where(h.c.proxyid == proxyid).order_by(k.c.taskid))
    rows = _claim(engine, q, status=TaskStatus.DONE, proxyid=proxyid)
    return [CheckNow(itemid=int(x.itemid), clock=int(x.clock), ttl=int(x.ttl)) for x in rows]


def take_local_check_now(engine: Engine) -> list[int]:
    """The items of the NEW check now tasks the server polls itself (hosts without a proxy; an item
    deleted meanwhile is taken too, for nothing), marked DONE; their itemids."""
    k, n, i, h = t.task, t.task_check_now, t.items, t.hosts
    q = (_new_check_now().outerjoin(i, i.c.itemid == n.c.itemid).outerjoin(h, h.c.hostid == i.c.hostid)
         .where(h.c.proxyid.is_(None)).order_by(k.c.taskid))
    rows = _claim(engine, q, status=TaskStatus.DONE)
    return list(dict.fromkeys(int(x.itemid) for x in rows))


def expire_check_now(engine: Engine, now: int) -> int:
    """Check now tasks nobody took within their ttl (the proxy did not connect, the pollers are off):
    EXPIRED, logged with the reason."""
    k = t.task
    q = _new_check_now().where(k.c.ttl > 0, k.c.clock + k.c.ttl < now)
    with engine.begin() as c:
        rows = c.execute(q).all()
        if rows:
            c.execute(k.update().where(k.c.taskid.in_([x.taskid for x in rows])).values(status=TaskStatus.EXPIRED))
    for x in rows:
        log.warning("check now task %d of item %d expired: nobody polled the item within the ttl of %d s (is its "
                    "proxy connected, are the server's pollers on?)", x.taskid, x.itemid, x.ttl)
    return len(rows)


def discovered_items(engine: Engine, ruleid: int) -> list[int]:
    """The enabled, polled items discovered by a discovery rule (through its prototypes): what "check
    all items of a rule now" checks. CheckNowError when `ruleid` is not a discovery rule."""
    i, d, p = t.items, t.item_discovery, t.item_discovery.alias("proto")
    with engine.connect() as c:
        flags = c.execute(sa.select(i.c.flags).where(i.c.itemid == ruleid)).scalar()
        if flags is None:
            raise CheckNowError(f"discovered_by: no discovery rule {ruleid}", "discovered_by", 404, "not_found")
        if flags != Flags.RULE:
            raise CheckNowError(f"discovered_by: item {ruleid} is not a discovery rule", "discovered_by")
        q = (sa.select(i.c.itemid).join(d, d.c.itemid == i.c.itemid).join(p, p.c.itemid == d.c.parent_itemid)
             .where(p.c.parent_itemid == ruleid, i.c.status == 0, i.c.type.in_([int(x) for x in CHECK_NOW_TYPES]))
             .order_by(i.c.itemid))
        return [int(x) for x in c.execute(q).scalars()]


def _claim(engine: Engine, q: sa.Select[Any], **values: Any) -> list[Any]:
    """The rows of `q` (NEW tasks), their tasks given `values` in the same transaction."""
    k = t.task
    with engine.begin() as c:
        rows = c.execute(q).all()
        if rows:
            c.execute(k.update().where(k.c.taskid.in_([x.taskid for x in rows]), k.c.status == TaskStatus.NEW)
                      .values(**values))
    return list(rows)
