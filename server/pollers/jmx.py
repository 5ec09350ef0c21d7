"""JMX items through the Zabbix Java gateway (Debian's zabbix-java-gateway), as Zabbix 6.0's server
reads them: Vigil has no JMX client of its own.

The server sends the gateway one ZBXD frame
`{"request":"java gateway jmx","conn":…,"port":…,"jmx_endpoint":…,"username":…,"password":…,"keys":[…]}`
and reads one back: `{"response":"success","data":[{"value":…} | {"error":…}, …]}` in the order of
the keys, or `{"response":"failed","error":…}` when the gateway could not reach the JVM.

- Items of one endpoint (address, port, endpoint URL, username, password) that are due together go
  in one request, at most MAX_ITEMS keys each (Zabbix's batch size); at most VIGIL_JAVA_POLLERS
  requests are open at once.
- A per-key `error` makes that item not supported with the gateway's words; `failed`, a gateway
  that cannot be reached or does not answer within the time-out are network errors of the item's
  JMX interface (Zabbix's GATEWAY_ERROR and NETWORK_ERROR both deactivate the interface); a reply
  that is not the protocol makes the items not supported, naming what was wrong with it.
- Without VIGIL_JAVA_GATEWAY every JMX item is not supported, saying so.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass, field

from vigil.agent.protocol import zbxd
from vigil.server.config.repo import PollItem
from vigil.server.pollers import NotSupported, Unreachable

MAX_ITEMS = 32  # keys per request, as Zabbix's server sends (MAX_JAVA_ITEMS)
MAX_REPLY = 16 * 1024 * 1024
DEFAULT_PORT = 10052


@dataclass(slots=True)
class _Config:
    gateway: tuple[str, int] | None = None
    pollers: int = 5


_config = _Config()


def configure(gateway: str = "", pollers: int = 5) -> None:
    """VIGIL_JAVA_GATEWAY (host:port, '' : none) and VIGIL_JAVA_POLLERS."""
    global _config
    gw = None
    if gateway:
        host, _, port = gateway.rpartition(":")
        gw = (host.strip("[]"), int(port)) if host else (gateway, DEFAULT_PORT)
    _config = _Config(gw, pollers)


class GatewayError(Exception):
    """The gateway's reply is not the protocol (the items become not supported)."""


async def request(gateway: tuple[str, int], body: dict, timeout: float) -> list[tuple[str | None, str | None]]:
    """One request to the gateway: (value, error) per key, in the order sent. Raises Unreachable (no
    connection, no answer in time, `failed`) or GatewayError (a reply that is not the protocol)."""
    where = f"the Java gateway at [{gateway[0]}]:{gateway[1]}"
    writer = None
    try:
        async with asyncio.timeout(timeout):
            try:
                reader, writer = await asyncio.open_connection(*gateway)
            except OSError as e:
                raise Unreachable(f"Cannot connect to {where} (VIGIL_JAVA_GATEWAY): {_reason(e)}") from None
            writer.write(zbxd.encode(json.dumps(body).encode()))
            await writer.drain()
            try:
                _, reply = await zbxd.read_frame(reader, MAX_REPLY)
            except EOFError:
                raise Unreachable(f"{where} closed the connection without a reply") from None
            except zbxd.FrameError as e:
                raise GatewayError(f"invalid reply from {where}: {e}") from None
    except TimeoutError:
        raise Unreachable(f"Timeout: {where} did not answer within {timeout:.3g} s") from None
    except OSError as e:
        raise Unreachable(f"{where}: {_reason(e)}") from None
    finally:
        if writer is not None:
            writer.close()
    return parse_reply(reply, len(body["keys"]), where)


def parse_reply(reply: bytes, count: int, where: str = "the Java gateway") -> list[tuple[str | None, str | None]]:
    try:
        doc = json.loads(reply)
    except (ValueError, UnicodeDecodeError):
        raise GatewayError(f"invalid reply from {where}: not JSON: {reply[:60]!r}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("response"), str):
        raise GatewayError(f"invalid reply from {where}: no \"response\" field")
    if doc["response"] == "failed":
        raise Unreachable(f"Java gateway: {doc.get('error') or 'failed without a reason'}")
    if doc["response"] != "success":
        raise GatewayError(f"invalid reply from {where}: response {doc['response'][:40]!r}")
    data = doc.get("data")
    if not isinstance(data, list) or len(data) != count:
        got = f"{len(data)} results" if isinstance(data, list) else "no data list"
        raise GatewayError(f"invalid reply from {where}: {got} for {count} keys")
    out: list[tuple[str | None, str | None]] = []
    for i, d in enumerate(data):
        if isinstance(d, dict) and "value" in d and d["value"] is not None:
            v = d["value"]
            out.append((v if isinstance(v, str) else json.dumps(v), None))
        elif isinstance(d, dict) and isinstance(d.get("error"), str):
            out.append((None, d["error"]))
        else:
            raise GatewayError(f"invalid reply from {where}: data[{i}] has neither a value nor an error")
    return out


@dataclass(slots=True)
class _Batch:
    ident: tuple[str, int, str, str, str]  # address, port, endpoint, username, password
    timeout: float
    keys: list[str] = field(default_factory=list)
    waiters: list[asyncio.Future[tuple[str | None, str | None]]] = field(default_factory=list)


class JmxPoller:
    """The scheduler's poll function for JMX items: collects the keys of one endpoint that are asked for in
    the same turn of the loop into one gateway request."""

    own_limit = True  # VIGIL_JAVA_POLLERS bounds it, not the scheduler's VIGIL_POLLERS

    def __init__(self) -> None:
        self._pending: dict[tuple[str, int, str, str, str], _Batch] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._sem: asyncio.Semaphore | None = None
        self._sem_size = 0
        self.requests = 0  # gateway requests sent (for tests and the bench)
        self.keys = 0

    async def __call__(self, item: PollItem, timeout: float) -> str:
        gateway = _config.gateway
        if gateway is None:
            raise NotSupported("JMX items are read through the Zabbix Java gateway: set VIGIL_JAVA_GATEWAY=host:port "
                               "(and start zabbix-java-gateway)")
        itf = item.interface
        if itf is None:
            raise NotSupported("the host has no jmx interface to poll this item through")
        ident = (itf.address, itf.port, item.poll.jmx_endpoint, item.poll.username, item.poll.password)
        loop = asyncio.get_running_loop()
        batch = self._pending.get(ident)
        if batch is None:
            batch = self._pending[ident] = _Batch(ident, timeout)
            loop.call_soon(self._start, batch, gateway)  # after the others due in this turn have joined
        waiter: asyncio.Future[tuple[str | None, str | None]] = loop.create_future()
        batch.keys.append(item.key)
        batch.waiters.append(waiter)
        if len(batch.keys) >= MAX_ITEMS:
            self._pending.pop(ident, None)
        value, error = await waiter
        if error is not None:
            raise NotSupported(error)
        assert value is not None
        return value

    def _start(self, batch: _Batch, gateway: tuple[str, int]) -> None:
        if self._pending.get(batch.ident) is batch:
            del self._pending[batch.ident]
        task = asyncio.create_task(self._send(batch, gateway))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: _Batch, gateway: tuple[str, int]) -> None:
        if self._sem is None or self._sem_size != _config.pollers:
            self._sem, self._sem_size = asyncio.Semaphore(_config.pollers), _config.pollers
        address, port, endpoint, username, password = batch.ident
        body = {"request": "java gateway jmx", "conn": address, "port": port, "jmx_endpoint": endpoint,
                "username": username, "password": password, "keys": batch.keys}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + batch.timeout  # waiting for a free request slot counts too
        try:
            async with asyncio.timeout(batch.timeout):
                await self._sem.acquire()
        except TimeoutError:
            _fail(batch, Unreachable(f"Timeout: no free Java gateway request within {batch.timeout:g} s "
                                     "(VIGIL_JAVA_POLLERS)"))
            return
        try:
            self.requests += 1
            self.keys += len(batch.keys)
            results = await request(gateway, body, max(deadline - loop.time(), 0.001))
        except GatewayError as e:
            _fail(batch, NotSupported(str(e)))
        except (Unreachable, NotSupported) as e:
            _fail(batch, e)
        except Exception as e:  # noqa: BLE001 - every waiter must hear of it
            _fail(batch, e)
        else:
            for waiter, result in zip(batch.waiters, results, strict=True):
                if not waiter.done():
                    waiter.set_result(result)
        finally:
            self._sem.release()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _fail(batch: _Batch, e: Exception) -> None:
    for waiter in batch.waiters:
        if not waiter.done():
            waiter.set_exception(type(e)(*e.args))


def _reason(e: OSError) -> str:
    if e.errno:
        return f"[{e.errno}] {os.strerror(e.errno)}"
    return str(e) or type(e).__name__
