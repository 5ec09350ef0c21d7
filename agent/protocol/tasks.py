"""The `tasks` of Zabbix 6.0's proxy protocol (docs/proxies.md, "Tasks"), as src/libs/zbxtasks/task.c
serialises them: remote commands go from the server to a proxy (in the `success` reply to an active
proxy's `proxy data`, or to a passive proxy's reply to `proxy data` / `proxy tasks`), and their
results come back in the `tasks` of the proxy's next `proxy data`.

Every task has `type`, `clock` and `ttl`; a remote command (type 2) adds `commandtype`, `command`,
`execute_on`, `port`, `authtype`, `username`, `password`, `publickey`, `privatekey`, `alertid`,
`parent_taskid` and `hostid`; its result (type 3) adds `status` (0 done, -1 failed), `info` and
`parent_taskid` (the server's taskid of the command). A check now (type 6) goes from the server to
the proxy monitoring the item and adds only `itemid`: the proxy polls that item at once and answers
nothing (its next value is the answer). Tasks of other types (data) are skipped by whoever does not
handle them, as Zabbix skips them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vigil.agent.protocol.messages import CLOCK_MAX, ProtocolError
from vigil.agent.protocol.proxy import UINT64, _obj, _str, _uint

TASKS = "tasks"
TASK_REMOTE_COMMAND = 2
TASK_REMOTE_COMMAND_RESULT = 3
TASK_CHECK_NOW = 6

# zbx_script_t: type (ZBX_SCRIPT_TYPE_*) and execute_on (ZBX_SCRIPT_EXECUTE_ON_*)
SCRIPT_CUSTOM = 0
EXECUTE_ON_AGENT = 0
EXECUTE_ON_SERVER = 1
EXECUTE_ON_PROXY = 2

SUCCEED = 0
FAIL = -1

REMOTE_COMMAND_TTL = 600  # ZBX_REMOTE_COMMAND_TTL: 10 minutes
CHECK_NOW_TTL = 3600  # the API's ttl of a check now task (SEC_PER_HOUR)
MAX_TASKS = 10_000
_COMMAND_LIMIT = 64 * 1024
_INFO_LIMIT = 64 * 1024


@dataclass(frozen=True, slots=True)
class RemoteCommand:
    """A remote command for a proxy to run on a host it monitors (ZBX_TM_TASK_REMOTE_COMMAND)."""

    taskid: int  # the server's; the proxy returns it as its result's parent_taskid
    hostid: int
    command: str
    clock: int
    ttl: int = REMOTE_COMMAND_TTL
    execute_on: int = EXECUTE_ON_AGENT
    alertid: int = 0  # non-zero: an action's command, run on an agent with nowait
    commandtype: int = SCRIPT_CUSTOM
    port: int = 0
    authtype: int = 0
    username: str = ""
    password: str = ""
    publickey: str = ""
    privatekey: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"type": TASK_REMOTE_COMMAND, "clock": self.clock, "ttl": self.ttl, "commandtype": self.commandtype,
                "command": self.command, "execute_on": self.execute_on, "port": self.port,
                "authtype": self.authtype, "username": self.username, "password": self.password,
                "publickey": self.publickey, "privatekey": self.privatekey, "alertid": self.alertid,
                "parent_taskid": self.taskid, "hostid": self.hostid}

    def expired(self, now: int) -> bool:
        """As the proxy's task manager judges it: a ttl of 0 never expires."""
        return self.ttl != 0 and self.clock + self.ttl < now


@dataclass(frozen=True, slots=True)
class RemoteCommandResult:
    """What a proxy ran (ZBX_TM_TASK_REMOTE_COMMAND_RESULT): for the server's task `parent_taskid`."""

    parent_taskid: int
    status: int  # SUCCEED or FAIL
    info: str = ""  # the error, or the output ('' for a nowait agent command)
    clock: int = 0
    ttl: int = 0

    @property
    def ok(self) -> bool:
        return self.status == SUCCEED

    def to_json(self) -> dict[str, Any]:
        return {"type": TASK_REMOTE_COMMAND_RESULT, "clock": self.clock, "ttl": self.ttl, "status": self.status,
                "info": self.info, "parent_taskid": self.parent_taskid}


@dataclass(frozen=True, slots=True)
class CheckNow:
    """Poll an item at once (ZBX_TM_TASK_CHECK_NOW), as Zabbix's "Execute now"; no result comes back."""

    itemid: int
    clock: int
    ttl: int = CHECK_NOW_TTL

    def to_json(self) -> dict[str, Any]:
        return {"type": TASK_CHECK_NOW, "clock": self.clock, "ttl": self.ttl, "itemid": self.itemid}

    def expired(self, now: int) -> bool:
        """As the proxy's task manager judges it: a ttl of 0 never expires."""
        return self.ttl != 0 and self.clock + self.ttl < now


Task = RemoteCommand | RemoteCommandResult | CheckNow


def _int(d: dict[str, Any], name: str, where: str) -> int:
    v = d.get(name)
    if isinstance(v, bool) or not isinstance(v, int | str):
        raise ProtocolError(f"{where}.{name}: {'missing' if v is None else 'must be an integer'}")
    try:
        return int(v)
    except ValueError:
        raise ProtocolError(f"{where}.{name}: {v!r} is not an integer") from None


def parse_task(d: Any, i: int) -> Task | None:
    """One element of `tasks`; None for a type this side does not handle (data)."""
    where = f"{TASKS}[{i}]"
    d = _obj(d, where)
    kind = _uint(d, "type", where, 255)
    clock = _uint(d, "clock", where, CLOCK_MAX, 0)
    ttl = _uint(d, "ttl", where, CLOCK_MAX, 0)
    if kind == TASK_REMOTE_COMMAND:
        return RemoteCommand(
            taskid=_uint(d, "parent_taskid", where, UINT64), hostid=_uint(d, "hostid", where, UINT64),
            command=_str(d, "command", where, limit=_COMMAND_LIMIT), clock=clock, ttl=ttl,
            execute_on=_uint(d, "execute_on", where, 255), alertid=_uint(d, "alertid", where, UINT64, 0),
            commandtype=_uint(d, "commandtype", where, 255), port=_uint(d, "port", where, 65535, 0),
            authtype=_uint(d, "authtype", where, 255, 0), username=_str(d, "username", where, ""),
            password=_str(d, "password", where, ""), publickey=_str(d, "publickey", where, ""),
            privatekey=_str(d, "privatekey", where, ""))
    if kind == TASK_REMOTE_COMMAND_RESULT:
        return RemoteCommandResult(parent_taskid=_uint(d, "parent_taskid", where, UINT64),
                                   status=_int(d, "status", where), info=_str(d, "info", where, "", _INFO_LIMIT),
                                   clock=clock, ttl=ttl)
    if kind == TASK_CHECK_NOW:
        itemid = _uint(d, "itemid", where, UINT64)
        if itemid == 0:
            raise ProtocolError(f"{where}.itemid: must be a positive item id")
        return CheckNow(itemid=itemid, clock=clock, ttl=ttl)
    return None


def parse_tasks(obj: dict[str, Any]) -> list[Task]:
    """The `tasks` of a message (absent: none). ProtocolError names the first bad field."""
    v = obj.get(TASKS)
    if v is None:
        return []
    if not isinstance(v, list):
        raise ProtocolError(f"{TASKS}: must be a list")
    if len(v) > MAX_TASKS:
        raise ProtocolError(f"{TASKS}: {len(v)} tasks, over the maximum of {MAX_TASKS}")
    return [t for i, d in enumerate(v) if (t := parse_task(d, i)) is not None]

