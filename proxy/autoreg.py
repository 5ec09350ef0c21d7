"""Autoregistration on `vigil proxy`, as a 6.0 zabbix_proxy does it: an active agent asking for the
checks of a host the proxy does not know is recorded in proxy_autoreg_host (the proxy's local database)
when it says something new, and the records go to the server in the next `proxy data` under
"auto registration"; they leave the table only once the server answered `success`.

The agent is answered `host [NAME] not found`, as the server would; once the server's configuration
gives the proxy that host, the agent gets its checks at its next request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from vigil.agent.protocol.proxy import MAX_RECORDS, AutoRegistration
from vigil.server.config import tables as t
from vigil.server.config.autoreg import Registration, RegistrationError, registration_from_request

log = logging.getLogger("vigil.proxy.autoreg")


class ProxyAutoreg:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._last: dict[str, Registration] = {}  # host -> what this run recorded last

    async def agent(self, obj: dict[str, Any], peer: str) -> str | None:
        """The listener's hook for an unknown host's `active checks` (None: taken)."""
        try:
            r = registration_from_request(obj, peer, int(time.time()))
        except RegistrationError as e:
            log.warning("autoregistration from %s refused: %s", peer, e)
            return f"autoregistration refused: {e}"
        last = self._last.get(r.host)
        if last is not None and last.same_as(r):
            return None
        try:
            await asyncio.to_thread(self.record, r)
        except sa.exc.SQLAlchemyError as e:  # the agent asks again
            log.error("autoregistration of [%s] from %s not recorded: %s", r.host, peer, e)
            return None
        self._last[r.host] = r
        log.info("autoregistration of [%s] from %s recorded (metadata %r): it goes to the server with the next "
                 "proxy data", r.host, peer, r.host_metadata)
        return None

    def record(self, r: Registration) -> None:
        with self.engine.begin() as c:
            c.execute(sa.insert(t.proxy_autoreg_host).values(
                clock=r.clock, host=r.host, listen_ip=r.ip, listen_dns=r.dns, listen_port=r.port,
                host_metadata=r.host_metadata, flags=r.flags, tls_accepted=r.tls_accepted))


def pending(engine: Engine, limit: int = MAX_RECORDS) -> list[AutoRegistration]:
    """The records not yet acknowledged by the server, oldest first."""
    a = t.proxy_autoreg_host
    with engine.connect() as c:
        rows = c.execute(sa.select(a).order_by(a.c.id).limit(limit)).all()
    return [AutoRegistration(clock=r.clock, host=r.host, ip=r.listen_ip, dns=r.listen_dns, port=str(r.listen_port),
                             host_metadata=r.host_metadata, tls_accepted=r.tls_accepted, id=r.id, flags=r.flags)
            for r in rows]


def acknowledged(engine: Engine, records: list[AutoRegistration]) -> None:
    if records:
        with engine.begin() as c:
            c.execute(sa.delete(t.proxy_autoreg_host).where(t.proxy_autoreg_host.c.id <= max(r.id for r in records)))
