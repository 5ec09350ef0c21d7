"""system.run and UserParameters: shell commands, run as zabbix_agentd 6.0 runs them.

Commands go to `/bin/sh -c` with stdin from /dev/null and stderr merged into stdout; the answer
is the output with trailing whitespace removed, whatever the exit code. A command still running
after the agent's Timeout is killed with its whole process group.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import threading

from vigil.agent.checks import CALLER, CheckContext, NotSupported, check
from vigil.agent.protocol.itemkey import ItemKey

SHELL = "/bin/sh"
MAX_OUTPUT = 16 * 1024 * 1024
WHITESPACE = " \t\r\n"
# What zabbix_agentd refuses in UserParameter arguments unless UnsafeUserParameters=1.
SPECIAL = "\\'\"`*?[]{}~$!&;()<>|#@\n"
SPECIAL_TEXT = ", ".join("0x0a" if c == "\n" else c for c in SPECIAL)
_PARAM_REF = re.compile(r"\$([0-9])")
log = logging.getLogger("vigil.agent.checks.userparam")


def run_shell(command: str, timeout: float) -> str:
    proc = subprocess.Popen(
        ["sh", "-c", command],
        executable=SHELL,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so a timeout kills grandchildren too
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise NotSupported("Timeout while executing a shell script.") from None
    finally:
        if proc.poll() is None:
            _kill_group(proc)
    if len(out) > MAX_OUTPUT:
        raise NotSupported("Command output exceeded limit.")
    return out.decode("utf-8", errors="replace").rstrip(WHITESPACE)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()


def start_detached(command: str) -> None:
    proc = subprocess.Popen(
        ["sh", "-c", command],
        executable=SHELL,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    # reap it when it ends so no zombie is left behind
    threading.Thread(target=proc.wait, name="system.run-nowait", daemon=True).start()


@check("system.run")
def system_run(key: ItemKey, ctx: CheckContext) -> str | int:
    if len(key.params) > 2:
        raise NotSupported("Too many parameters.")
    command = key.param(0)
    if not command:
        raise NotSupported("Invalid first parameter.")
    mode = key.param(1, "wait")
    if mode not in ("wait", "nowait"):
        raise NotSupported("Invalid second parameter.")
    # LogRemoteCommands=1: zabbix_agentd logs the command as a warning; we add who asked for it.
    log.log(logging.WARNING if ctx.log_remote_commands else logging.DEBUG,
            "Executing command '%s' (%s, requested by %s)", command, mode, CALLER.get() or "the agent itself")
    if mode == "wait":
        return run_shell(command, ctx.timeout)
    start_detached(command)
    return 1


def expand(command: str, params: list[str]) -> str:
    """`$0` is the command itself, `$1`..`$9` the key's parameters ('' when absent)."""

    def repl(m: re.Match[str]) -> str:
        n = int(m.group(1))
        if n == 0:
            return command
        return params[n - 1] if n <= len(params) else ""

    return _PARAM_REF.sub(repl, command)


@check("__userparam__")
def user_parameter(key: ItemKey, ctx: CheckContext) -> str:
    up = ctx.user_parameters[key.name]
    if not up.flexible:
        if key.has_brackets:
            raise NotSupported("Item does not allow parameters.")
        return run_shell(up.command, ctx.timeout)
    # zabbix_agentd passes an array parameter as its items joined by commas
    params = [",".join(p) if isinstance(p, list) else p for p in key.params]
    if not ctx.unsafe_user_parameters:
        for p in params:
            if any(c in SPECIAL for c in p):
                raise NotSupported(f'Special characters "{SPECIAL_TEXT}" are not allowed in the parameters.')
    return run_shell(expand(up.command, params), ctx.timeout)
