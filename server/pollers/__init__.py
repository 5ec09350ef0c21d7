"""The server's pollers: the scheduler (scheduler.py) and one module per kind of item it polls.

A poller is an async function `poll(item: PollItem, timeout: float) -> str` (vigil.server.config.repo.
PollItem): it returns the value as text, raises `NotSupported(reason)` when the device answered but
cannot give this value (the item becomes not supported), or `Unreachable(reason)` on a network
error (the item's interface is marked unreachable and retried after back-off). The scheduler bounds
every call with the item's time-out and counts a time-out as Unreachable for interfaces that track
availability (agent, SNMP, IPMI, JMX), as NotSupported for the others.

A poller may return `Polled(value, feed)` instead of text: the item stores `value`, and its
dependent items receive `feed` rather than the item's own value (a Nagios check stores its state
and feeds its message and perfdata items the whole parsed result). A poller with a `bind(repo)`
method is given the configuration repo when the scheduler is made.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Polled:
    value: str
    feed: str  # what the item's dependent items receive


class NotSupported(Exception):
    """The device answered, but not with a value for this item: the item becomes not supported."""


class Unreachable(Exception):
    """A network error talking to the item's interface (refused, reset, timed out, no route)."""
