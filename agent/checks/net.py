"""net.if.*, net.tcp.port, net.tcp.listen, net.udp.listen: network interfaces and sockets on Linux.

net.if.in/out/total answer the kernel's counters from /proc/net/dev as they are (Zabbix turns
them into rates with a "change per second" preprocessing step on the server), so no sampling
is needed here.
"""

from __future__ import annotations

import socket

from vigil.agent.checks import CheckContext, NotSupported, check
from vigil.agent.protocol.itemkey import ItemKey

NET_DEV = "/proc/net/dev"

# /proc/net/dev columns after the name: 8 receive counters, then 8 transmit counters
_RX = ("bytes", "packets", "errors", "dropped", "overruns", "frame", "compressed", "multicast")
_TX = ("bytes", "packets", "errors", "dropped", "overruns", "collisions", "carrier", "compressed")
_TOTAL = ("bytes", "packets", "errors", "dropped", "overruns", "compressed")


def _too_many(key: ItemKey, n: int) -> None:
    if len(key.params) > n:
        raise NotSupported("Too many parameters.")


def _net_dev() -> dict[str, tuple[dict[str, int], dict[str, int]]]:
    try:
        with open(NET_DEV) as f:
            lines = f.readlines()
    except OSError as e:
        raise NotSupported(f"Cannot open {NET_DEV}: {e.strerror}") from None
    out = {}
    for line in lines:
        name, sep, rest = line.partition(":")
        if not sep:
            continue
        fields = rest.split()
        if len(fields) < 16:
            continue
        values = [int(v) for v in fields[:16]]
        out[name.strip()] = (dict(zip(_RX, values[:8], strict=True)), dict(zip(_TX, values[8:], strict=True)))
    return out


def _interface(key: ItemKey) -> tuple[dict[str, int], dict[str, int]]:
    _too_many(key, 2)
    name = key.param(0)
    if not name:
        raise NotSupported("Network interface name cannot be empty.")
    stats = _net_dev().get(name)
    if stats is None:
        raise NotSupported("Cannot find information for this network interface in /proc/net/dev.")
    return stats


def _mode(key: ItemKey, allowed: tuple[str, ...]) -> str:
    mode = key.param(1, "bytes")
    if mode not in allowed:
        raise NotSupported("Invalid second parameter.")
    return mode


@check("net.if.in")
def if_in(key: ItemKey, ctx: CheckContext) -> int:
    rx, _ = _interface(key)
    return rx[_mode(key, _RX)]


@check("net.if.out")
def if_out(key: ItemKey, ctx: CheckContext) -> int:
    _, tx = _interface(key)
    return tx[_mode(key, _TX)]


@check("net.if.total")
def if_total(key: ItemKey, ctx: CheckContext) -> int:
    rx, tx = _interface(key)
    mode = _mode(key, _TOTAL)
    return rx[mode] + tx[mode]


@check("net.if.collisions")
def if_collisions(key: ItemKey, ctx: CheckContext) -> int:
    _too_many(key, 1)
    _, tx = _interface(key)
    return tx["collisions"]


@check("net.if.discovery", params=False)
def if_discovery(key: ItemKey, ctx: CheckContext) -> str:
    from vigil.agent.checks.vfs import zbx_json

    return zbx_json([{"{#IFNAME}": name} for name in _net_dev()])


def _port(text: str, error: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise NotSupported(error)
    return int(text)


@check("net.tcp.port")
def tcp_port(key: ItemKey, ctx: CheckContext) -> int:
    _too_many(key, 2)
    host = key.param(0, "127.0.0.1")
    port = _port(key.param(1), "Invalid second parameter.")
    try:
        with socket.create_connection((host, port), timeout=ctx.timeout):
            return 1
    except (OSError, UnicodeError):
        return 0


def _proc_net_has(files: tuple[str, ...], port: int, state: str) -> bool:
    """Whether a socket in `state` (hex, as in /proc/net/tcp) has local port `port`."""
    for path in files:
        try:
            with open(path) as f:
                next(f, None)  # header
                for line in f:
                    fields = line.split()
                    if len(fields) < 4:
                        continue
                    local_port = fields[1].rsplit(":", 1)[-1]
                    if fields[3] == state and int(local_port, 16) == port:
                        return True
        except FileNotFoundError:
            continue  # no IPv6 on this host
    return False


@check("net.tcp.listen")
def tcp_listen(key: ItemKey, ctx: CheckContext) -> int:
    _too_many(key, 1)
    port = _port(key.param(0), "Invalid first parameter.")
    return int(_proc_net_has(("/proc/net/tcp", "/proc/net/tcp6"), port, "0A"))


@check("net.udp.listen")
def udp_listen(key: ItemKey, ctx: CheckContext) -> int:
    _too_many(key, 1)
    port = _port(key.param(0), "Invalid first parameter.")
    return int(_proc_net_has(("/proc/net/udp", "/proc/net/udp6"), port, "07"))
