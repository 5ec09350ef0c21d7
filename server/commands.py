"""Remote commands of action operations: on the server, or on the problem host's agent. Here in
`server/` so that both the escalator (alerts/) and the proxy (proxy/tasks.py), which runs the
commands of hosts it monitors, use the same code.

On the server a command runs as Zabbix runs it, `sh -c COMMAND`, in its own process group that is
killed at the time-out; its output (stdout and stderr, at most 64 KiB kept) and exit code are the
result. On an agent it is the passive check `system.run[COMMAND,nowait]` (Zabbix's protocol, as
zabbix_server sends it): the agent starts the command and answers at once, so there is no output;
an agent without `AllowKey=system.run[*]` answers ZBX_NOTSUPPORTED and that reason is the error.
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import subprocess
import zlib
from dataclasses import dataclass

MAX_OUTPUT = 64 * 1024
MAX_REPLY = 16 * 1024 * 1024
NOT_SUPPORTED = b"ZBX_NOTSUPPORTED"


class ReplyError(ValueError):
    """An agent's reply that is not a ZBXD frame we can read."""


@dataclass(frozen=True, slots=True)
class CommandResult:
    ok: bool
    output: str = ""
    exit_code: int | None = None
    error: str = ""  # why it failed, '' when ok


def run_on_server(command: str, timeout: float = 30.0) -> CommandResult:
    """Run `sh -c command`; a non-zero exit code or a time-out is a failure naming it."""
    if not command.strip():
        return CommandResult(False, error="the command is empty: set the operation's command")
    try:
        proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as e:
        return CommandResult(False, error=f"cannot start /bin/sh: {e}")
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        return CommandResult(False, error=f"timed out after {timeout:g} s; the command was killed")
    text = out[:MAX_OUTPUT].decode("utf-8", errors="replace").rstrip()
    if proc.returncode != 0:
        error = f"exit code {proc.returncode}" + (f": {text}" if text else "")
        return CommandResult(False, text, proc.returncode, error)
    return CommandResult(True, text, 0)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.communicate()


def quote_param(param: str) -> str:
    """An item key parameter as Zabbix quotes it: in double quotes with inner quotes escaped.
    ValueError for a parameter ending in a backslash, which a quoted parameter cannot hold."""
    if param.endswith("\\"):
        raise ValueError("a command ending in a backslash cannot be sent in system.run[]")
    return '"' + param.replace('"', '\\"') + '"'


def system_run_key(command: str, nowait: bool = True) -> str:
    return f"system.run[{quote_param(command)}{',nowait' if nowait else ''}]"


def run_on_agent(address: str, port: int, command: str, timeout: float = 30.0, nowait: bool = True) -> CommandResult:
    """Ask the agent at address:port to run `command` through system.run."""
    if not command.strip():
        return CommandResult(False, error="the command is empty: set the operation's command")
    try:
        key = system_run_key(command, nowait)
    except ValueError as e:
        return CommandResult(False, error=str(e))
    try:
        reply = exchange(address, port, key.encode(), timeout)
    except ReplyError as e:
        return CommandResult(False, error=f"the agent at {address}:{port} sent a bad reply: {e}")
    except OSError as e:
        return CommandResult(False, error=f"cannot reach the agent at {address}:{port}: {e}")
    if reply.startswith(NOT_SUPPORTED):
        reason = reply[len(NOT_SUPPORTED):].lstrip(b"\0: ").decode(errors="replace")
        return CommandResult(False, error=f"the agent at {address}:{port} refused system.run: {reason} "
                                          "(it runs remote commands only with AllowKey=system.run[*])")
    return CommandResult(True, reply.decode(errors="replace"))


# The proxy and the alerts room import this module, so the few lines of Zabbix's framing a passive check
# needs are here: "ZBXD", flags (1, | 2 zlib, | 4 8-byte lengths), the two lengths, the body.

def _recv(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ReplyError(f"the connection closed after {len(buf)} of {n} bytes")
        buf += chunk
    return bytes(buf)


def exchange(address: str, port: int, body: bytes, timeout: float) -> bytes:
    """One passive request, one reply: the reply's body."""
    with socket.create_connection((address, port), timeout=timeout) as sock:
        sock.sendall(b"ZBXD\x01" + struct.pack("<II", len(body), 0) + body)
        head = _recv(sock, 5)
        if head[:4] != b"ZBXD" or not head[4] & 1 or head[4] & ~7:
            raise ReplyError(f"not a ZBXD header: {head!r}")
        large = bool(head[4] & 4)
        length, reserved = struct.unpack("<QQ" if large else "<II", _recv(sock, 16 if large else 8))
        if length > MAX_REPLY or reserved > MAX_REPLY:
            raise ReplyError(f"a reply of {max(length, reserved)} bytes is over the {MAX_REPLY} taken")
        data = _recv(sock, length)
    if head[4] & 2:
        try:
            data = zlib.decompress(data)
        except zlib.error as e:
            raise ReplyError(f"cannot decompress the reply: {e}") from None
    return data
