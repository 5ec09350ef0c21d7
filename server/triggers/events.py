"""What the trigger engine hands the composition root's `notify` callable, as plain dataclasses.

`server` never imports `alerts`: `vigil up` and `vigil server` pass the engine a `notify(Notice)`
that the alerts room's escalator implements. `notify` must not block (queue and return); it is
called only after the event or update is committed to the store.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Event:
    """A committed event: a trigger going to PROBLEM (value 1) or OK (value 0), or an internal one."""

    eventid: int
    source: int  # tables.EventSource: 0 triggers, 3 internal
    object: int  # tables.EventObject: 0 trigger, 1 host, 4 item
    objectid: int  # triggerid, hostid or itemid
    clock: int
    ns: int
    value: int  # 1 problem (internal: unsupported / unreachable), 0 OK (normal again)
    severity: int  # tables.Severity
    name: str  # the trigger's name with macros expanded (internal: what happened)
    hostids: tuple[int, ...] = ()  # the hosts whose items the trigger reads (internal: the host)
    tags: tuple[tuple[str, str], ...] = ()
    # For an OK event: the problem events it resolves (a multiple-problem trigger may have several open).
    resolves: tuple[int, ...] = ()
    suppressed: bool = False  # a host is in maintenance (reserved for the alerts room to decide)
    # Autoregistration (source 2): what the agent said (host, host_metadata, proxy, ip, dns, port).
    details: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class ProblemUpdate:
    """An acknowledgement, message, severity change or close of an open problem (a row of acknowledges)."""

    acknowledgeid: int
    eventid: int  # the problem event
    userid: int | None
    clock: int
    message: str
    action: int  # Zabbix's bits: 1 close, 2 acknowledge, 4 message, 8 change severity, 16 unacknowledge
    old_severity: int = 0
    new_severity: int = 0
    # Set when this update closed the problem: the OK event the engine wrote for it.
    closed_by: int | None = field(default=None)


Notice = Event | ProblemUpdate
