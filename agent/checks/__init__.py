"""Item keys the agent answers, one module per key family, all registered here.

A check is a function `(key: ItemKey, ctx: CheckContext) -> str | int | float` registered with
`@check("name")`. It raises NotSupported(reason) when it cannot answer; the reason is what
zabbix_get prints after `ZBX_NOTSUPPORTED: `. `Checks.get(text)` is what the passive listener and
the active scheduler call: it parses the key, applies AllowKey/DenyKey, runs UserParameters and
formats the result as Zabbix does (floats with 6 decimals). Every check but the trivial agent.*
ones runs under the agent's Timeout (see agent/checks/runner.py): one that does not return in time
answers "Timeout while waiting for data." and holds neither the passive worker nor the active items.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from vigil.agent.checks.runner import CheckRunner, CheckTimeout
from vigil.agent.keyrules import KeyRule, KeyRules
from vigil.agent.protocol.itemkey import ItemKey, ItemKeyError, parse

AGENT_VERSION = "6.0.14"  # what agent.version answers: the Zabbix protocol level we speak


class NotSupported(Exception):
    """The key cannot be answered; str(exc) is the reason shown to the user."""


CheckFunc = Callable[[ItemKey, "CheckContext"], Any]


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    func: CheckFunc
    params: bool  # False: the key must not have parameters ("Item does not allow parameters.")


REGISTRY: dict[str, Check] = {}
# Who asked for the key being evaluated in this thread ("127.0.0.1", "active checks from [host:port]"),
# set by the passive listener and the active checks, for LogRemoteCommands.
CALLER: ContextVar[str] = ContextVar("vigil_agent_caller", default="")
# Keys that only read the agent's own state: not worth a thread hand-off (agent.ping is the hot path).
INLINE = frozenset({"agent.ping", "agent.version", "agent.hostname"})
# Keys that bound their own waits by Timeout (sockets, subprocesses, the collector) and answer in
# their own words when it passes ("Timeout was reached.", 0 for a silent service, the shell's
# message), as zabbix_agentd does: the runner's deadline comes a little after theirs, as a safety net
# (a DNS lookup, a pipe left open by a command's grandchild). Every other key gets exactly Timeout,
# as zabbix_agentd's alarm does for its threaded checks.
OWN_TIMEOUT = frozenset({
    "web.page.get", "web.page.perf", "web.page.regexp", "net.tcp.port", "net.tcp.service", "net.tcp.service.perf",
    "net.udp.service", "net.udp.service.perf", "proc.cpu.util", "system.cpu.util", "container.cpu.util",
    "system.sw.packages", "vfs.dir.count", "vfs.dir.size", "vfs.dir.get", "vfs.file.size", "vfs.file.regexp",
    "vfs.file.regmatch", "vfs.file.cksum", "vfs.file.md5sum",
})
OWN_GRACE = 0.5
SHELL_GRACE = 1.0
SHELL_TIMEOUT_MESSAGE = "Timeout while executing a shell script."
FAMILIES = ("agent", "system", "kernel", "proc", "procget", "vfs", "files", "software", "netsvc", "net", "web",
            "container", "userparam")


def check(name: str, *, params: bool = True) -> Callable[[CheckFunc], CheckFunc]:
    def register(func: CheckFunc) -> CheckFunc:
        if name in REGISTRY:
            raise RuntimeError(f"item key {name!r} registered twice")
        REGISTRY[name] = Check(name, func, params)
        return func

    return register


@dataclass(frozen=True, slots=True)
class UserParameter:
    name: str
    command: str
    flexible: bool  # declared as `name[*]`: $1..$9 are replaced by the key's parameters


@dataclass
class CheckContext:
    """What checks may need from the agent: its settings and the shared background collector."""

    hostname: str = ""
    timeout: float = 3.0
    user_parameters: dict[str, UserParameter] = field(default_factory=dict)
    unsafe_user_parameters: bool = False
    log_remote_commands: bool = False
    collector: Any = None  # agent.checks.collector.Collector once started
    lock: threading.Lock = field(default_factory=threading.Lock)


def format_value(v: Any) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, float):
        return f"{v:.6f}"
    return str(v)


def load_families() -> None:
    for fam in FAMILIES:
        importlib.import_module(f"{__name__}.{fam}")


class Checks:
    """The agent's item keys with its AllowKey/DenyKey rules applied."""

    def __init__(self, ctx: CheckContext, rules: KeyRules | Sequence[KeyRule] | None = None) -> None:
        load_families()
        self.ctx = ctx
        # KeyRules ends the list with zabbix_agentd's implicit DenyKey=system.run[*].
        self.rules = rules if isinstance(rules, KeyRules) else KeyRules.build(rules or ())
        self.runner = CheckRunner()

    def allowed(self, key: str) -> bool:
        """False when AllowKey/DenyKey deny `key` (text). A key that cannot be parsed is not denied
        here: it never runs, and evaluating it reports "Invalid item key format" as zabbix_agentd."""
        try:
            return self.rules.allowed(parse(key))
        except ItemKeyError:
            return True

    def get(self, text: str, local: bool = False) -> str:
        """The value of a key as text, or NotSupported with Zabbix's wording.

        `local`: the agent's own use (HostnameItem, HostMetadataItem), which zabbix_agentd exempts
        from the access rules.
        """
        try:
            key = parse(text)
        except ItemKeyError as e:
            raise NotSupported(f"Invalid item key format: {e}.") from None
        if not local and not self.rules.allowed(key):
            raise NotSupported("Unsupported item key.")
        up = self.ctx.user_parameters.get(key.name)
        if up is not None:
            return format_value(self._run(text, REGISTRY["__userparam__"].func, key, shell=True, grace=SHELL_GRACE))
        c = REGISTRY.get(key.name)
        if c is None or c.name.startswith("__"):
            raise NotSupported("Unsupported item key.")
        if key.has_brackets and not c.params:
            raise NotSupported("Item does not allow parameters.")
        try:
            if c.name in INLINE:
                return format_value(c.func(key, self.ctx))
            return format_value(self._run(text, c.func, key, shell=c.name == "system.run",
                                          grace=OWN_GRACE if c.name in OWN_TIMEOUT else 0.0))
        except NotSupported:
            raise
        except ItemKeyError as e:
            raise NotSupported(f"Invalid parameter: {e}.") from None
        except (OSError, ValueError) as e:
            raise NotSupported(f"Cannot obtain {key.name}: {e}") from None

    def _run(self, text: str, func: CheckFunc, key: ItemKey, shell: bool, grace: float) -> Any:
        timeout = self.ctx.timeout + (SHELL_GRACE if shell else grace)
        try:
            if shell:
                return self.runner.run(text, lambda: func(key, self.ctx), timeout, SHELL_TIMEOUT_MESSAGE)
            return self.runner.run(text, lambda: func(key, self.ctx), timeout)
        except CheckTimeout as e:
            raise NotSupported(str(e)) from None
