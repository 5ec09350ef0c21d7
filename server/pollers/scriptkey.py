"""The parts `ssh.run[…]` and `telnet.run[…]` share: `<description>,<ip>,<port>,<encoding>` first."""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from vigil.agent.protocol import itemkey
from vigil.server.config.repo import PollItem
from vigil.server.pollers import NotSupported


@dataclass(frozen=True)
class ScriptKey:
    key: itemkey.ItemKey
    address: str  # the key's ip, else the interface's address
    port: int
    encoding: str


def parse_script_key(item: PollItem, name: str, default_port: int, params: list[str]) -> ScriptKey:
    """`item.key` as `name[description,ip,port,encoding,…]` (`params`: the names of all its parameters),
    or NotSupported naming the bad part."""
    try:
        key = itemkey.parse(item.key)
    except itemkey.ItemKeyError as e:
        raise NotSupported(f"Invalid item key: {e}") from None
    if key.name != name:
        raise NotSupported(f"Unsupported item key {key.name!r}: {name.split('.')[0]} items take "
                           f"{name}[{','.join(params)}]")
    if len(key.params) > len(params) or not key.param(0):
        raise NotSupported(f"Invalid item key: {name} takes a description (required), {', '.join(params[1:-1])} "
                           f"and {params[-1]}")
    address = key.param(1) or (item.interface.address if item.interface is not None else "")
    if not address:
        raise NotSupported("Invalid item key: no ip given and the host has no interface to connect to")
    port = key.param(2, str(default_port))
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise NotSupported(f"Invalid item key: port {port!r} is not a number 1-65535")
    encoding = key.param(3, "utf-8")
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise NotSupported(f"Invalid item key: unknown encoding {encoding!r}") from None
    return ScriptKey(key, address, int(port), encoding)
