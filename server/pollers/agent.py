"""Passive agent checks: connect to the interface, send the key in a ZBXD frame, read the reply.

As Zabbix 6.0's server does: one connection per value, the key framed with the ZBXD header, the
reply either the value or `ZBX_NOTSUPPORTED\\0reason`. A refused, reset or silent connection is a
network error (the interface becomes unreachable); a reply that is not a frame, or an empty one,
makes the item not supported, since the agent did answer.
"""

from __future__ import annotations

import asyncio
import os

from vigil.agent.protocol import zbxd
from vigil.agent.protocol.messages import decode_passive_reply
from vigil.server.config.repo import PollItem
from vigil.server.pollers import NotSupported, Unreachable

MAX_REPLY = 16 * 1024 * 1024  # Zabbix 6.0 reads a passive reply of at most 16 MiB too


async def get(address: str, port: int, key: str, timeout: float) -> str:
    """The agent's value of `key`; raises NotSupported or Unreachable."""
    where = f"[[{address}]:{port}]"
    writer = None
    try:
        async with asyncio.timeout(timeout):
            try:
                reader, writer = await asyncio.open_connection(address, port)
            except OSError as e:
                raise Unreachable(f"Get value from agent failed: cannot connect to {where}: {_reason(e)}") from None
            writer.write(zbxd.encode(key.encode()))
            await writer.drain()
            try:
                _, body = await zbxd.read_frame(reader, MAX_REPLY)
            except EOFError:
                raise Unreachable(f"Get value from agent failed: {where} closed the connection without a reply "
                                  "(is the server's address in the agent's Server= list?)") from None
            except zbxd.FrameError as e:
                raise NotSupported(f"Get value from agent failed: invalid reply from {where}: {e}") from None
            except OSError as e:
                raise Unreachable(f"Get value from agent failed: {where}: {_reason(e)}") from None
    except TimeoutError:
        raise Unreachable(f"Get value from agent failed: {where} did not answer within {timeout:g} s "
                          "(VIGIL_TIMEOUT)") from None
    except OSError as e:
        raise Unreachable(f"Get value from agent failed: {where}: {_reason(e)}") from None
    finally:
        if writer is not None:
            writer.close()
    value, reason = decode_passive_reply(body)
    if value is None:
        raise NotSupported(reason or "the agent does not support this key")
    return value


async def poll(item: PollItem, timeout: float) -> str:
    itf = item.interface
    if itf is None:  # the scheduler marks such items not supported before polling; kept for direct callers
        raise NotSupported("the host has no agent interface to poll this item through")
    return await get(itf.address, itf.port, item.key, timeout)


def _reason(e: OSError) -> str:
    if e.errno:
        return f"[{e.errno}] {os.strerror(e.errno)}"
    return str(e) or type(e).__name__
