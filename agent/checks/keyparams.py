"""Parameter helpers shared by the check families, with Zabbix's wording for bad parameters."""

from __future__ import annotations

from collections.abc import Iterable

from vigil.agent.checks import NotSupported
from vigil.agent.protocol.itemkey import ItemKey

ORDINALS = ("first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth", "eleventh",
            "twelfth")


def invalid(i: int) -> NotSupported:
    """'Invalid third parameter.' for i == 2 (0-based), as zabbix_agentd words it."""
    name = ORDINALS[i] if i < len(ORDINALS) else f"#{i + 1}"
    return NotSupported(f"Invalid {name} parameter.")


def at_most(key: ItemKey, n: int) -> None:
    if len(key.params) > n:
        raise NotSupported("Too many parameters.")


def text(key: ItemKey, i: int, default: str = "") -> str:
    """Parameter i as text; an array parameter is given back as its `[a,b]` text, as Zabbix does."""
    if i >= len(key.params):
        return default
    p = key.params[i]
    if isinstance(p, list):
        return "[" + ",".join(p) + "]"
    return p if p != "" else default


def choice(key: ItemKey, i: int, allowed: Iterable[str], default: str) -> str:
    """Parameter i, which must be one of `allowed` ('' means `default`)."""
    value = text(key, i, default)
    if value not in allowed:
        raise invalid(i)
    return value
