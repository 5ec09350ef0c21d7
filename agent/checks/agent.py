"""agent.ping, agent.version, agent.hostname."""

from __future__ import annotations

from vigil.agent.checks import AGENT_VERSION, CheckContext, check
from vigil.agent.protocol.itemkey import ItemKey


@check("agent.ping", params=False)
def ping(key: ItemKey, ctx: CheckContext) -> int:
    return 1


@check("agent.version", params=False)
def version(key: ItemKey, ctx: CheckContext) -> str:
    return AGENT_VERSION


@check("agent.hostname", params=False)
def hostname(key: ItemKey, ctx: CheckContext) -> str:
    return ctx.hostname
