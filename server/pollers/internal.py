"""Internal items: figures the server knows itself, as Zabbix's `zabbix[...]` items.

- `vigil[proxy,NAME,lastseen]`: when the proxy last contacted the server (or was polled), Unix time;
- `vigil[proxy,NAME,delay]`: how far behind the proxy is, in seconds: the age the oldest value of its
  last batch had when it arrived, plus the time since that contact when the proxy went silent
  (past twice the poll/heartbeat pace no news is itself delay);
- `vigil[proxy,NAME,buffer]`: how many values the proxy holds unsent, as a Vigil proxy reports it
  (`"buffer": N`) in each heartbeat and data request; not supported for a proxy that never reported
  it (a Zabbix 6.0 proxy does not).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from vigil.agent.protocol.itemkey import parse as parse_key
from vigil.server.config.repo import ConfigRepo, PollItem
from vigil.server.pollers import NotSupported

SILENT_AFTER = 60  # seconds without contact after which the wait itself counts as delay


class InternalPoller:
    def __init__(self, repo: ConfigRepo, clock: Callable[[], float] = time.time) -> None:
        self.repo = repo
        self.clock = clock

    async def __call__(self, item: PollItem, timeout: float) -> str:
        key = parse_key(item.key)
        params = [str(p) for p in key.params]
        if key.name != "vigil" or len(params) != 3 or params[0] != "proxy":
            raise NotSupported(f"unknown internal item key {item.key!r}: "
                               "expected vigil[proxy,NAME,lastseen|delay|buffer]")
        name, what = params[1], params[2]
        state = (await asyncio.to_thread(self.repo.proxy_state)).get(name)
        if state is None:
            raise NotSupported(f"no proxy {name!r}")
        lastaccess, delay, _version = state
        if what == "lastseen":
            return str(lastaccess)
        if what == "delay":
            if not lastaccess:
                raise NotSupported(f"proxy {name!r} has not been in contact yet")
            silent = int(self.clock()) - lastaccess
            return str(delay + (silent if silent > SILENT_AFTER else 0))
        if what == "buffer":
            buffer = (await asyncio.to_thread(self.repo.proxy_buffers)).get(name)
            if buffer is None:
                raise NotSupported(f"proxy {name!r} has not reported the size of its buffer "
                                   "(a Zabbix 6.0 proxy does not)")
            return str(buffer)
        raise NotSupported(f"{what!r} is not one of lastseen, delay, buffer")
