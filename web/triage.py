"""Problems for the pages and the API: the filter from query parameters, and problem updates
(acknowledge, comment, change severity, close) in bulk with the rights checked first.

Reading needs read rights to every host of the problem's trigger; changing needs read-write rights
to them and a role that may act (not a guest). A bulk update checks every problem before it changes
any: one it may not change refuses the whole request (403), as does a close of a problem whose
trigger does not allow manual close (400, field `close`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from flask import current_app
from vigil.server.config.browse_problems import RECENT_SECONDS, SHOWS, SORTS, ProblemBrowse, ProblemFilter
from vigil.server.config.browse_triggers import TriggerBrowse
from vigil.server.config.durations import seconds as parse_seconds
from vigil.server.config.model import ConfigError
from vigil.server.config.tables import SEVERITY_NAMES, Permission
from vigil.server.store.events import (
    ACTION_ACK,
    ACTION_CLOSE,
    ACTION_MESSAGE,
    ACTION_SEVERITY,
    ACTION_UNACK,
    EventError,
    EventStore,
)
from vigil.web import auth
from vigil.web.app import services
from vigil.web.errors import Forbidden, NotFound, WebError
from vigil.web.params import ids_arg, int_arg, tag_arg, text_arg, time_range

MAX_MESSAGE = 2048
__all__ = ["RECENT_SECONDS", "Update", "problem_args", "problems_repo", "triggers_repo", "events_store"]


def problems_repo() -> ProblemBrowse:
    ext = current_app.extensions
    if "vigil.problems" not in ext:
        ext["vigil.problems"] = ProblemBrowse(services().engine)
    return ext["vigil.problems"]  # type: ignore[no-any-return]


def triggers_repo() -> TriggerBrowse:
    ext = current_app.extensions
    if "vigil.triggers" not in ext:
        ext["vigil.triggers"] = TriggerBrowse(services().engine)
    return ext["vigil.triggers"]  # type: ignore[no-any-return]


def events_store() -> EventStore:
    ext = current_app.extensions
    if "vigil.events" not in ext:
        ext["vigil.events"] = EventStore(services().engine)
    return ext["vigil.events"]  # type: ignore[no-any-return]


def severity_arg(text: str, name: str = "severity") -> int:
    s = text.strip().lower().replace("_", " ")
    if s.isdigit() and 0 <= int(s) <= 5:
        return int(s)
    if s in SEVERITY_NAMES:
        return int(SEVERITY_NAMES[s])
    raise WebError(f"{name}: {text[:40]!r} is not a severity (0-5 or not classified, information, warning, "
                   "average, high, disaster)", name)


def problem_args(args: Any, now: int) -> tuple[ProblemFilter, dict[str, Any]]:
    """The ProblemFilter of ?severity&hostid&groupid&tag&name&age&ack&show&from&to, and the values as given
    (for the filter bar and links that keep it)."""
    sevs = frozenset(severity_arg(v) for v in args.getlist("severity") if v.strip())
    hostids = ids_arg(args, "hostid", getlist=args.getlist)
    for h in hostids or []:
        auth.require_host(h)
    groupid = int_arg(args, "groupid", None, 1, 2**31 - 1)
    triggerid = int_arg(args, "triggerid", None, 1, 2**31 - 1)
    tag = tag_arg(args)
    name = text_arg(args, "name")
    age = text_arg(args, "age", 16)
    max_age = None
    if age:
        try:
            max_age = parse_seconds(age, "age")
        except (ConfigError, ValueError):
            raise WebError(f"age: {age!r} is not a duration (like 30m, 2h, 7d)", "age") from None
        if max_age <= 0:
            raise WebError("age: must be more than 0", "age")
    ack = text_arg(args, "ack", 8)
    if ack not in ("", "yes", "no"):
        raise WebError("ack: yes, no or empty for both", "ack")
    show = text_arg(args, "show", 16) or "problems"
    if show not in SHOWS:
        raise WebError(f"show: one of {', '.join(SHOWS)}", "show")
    start = end = None
    ftext, ttext = text_arg(args, "from", 64), text_arg(args, "to", 64)
    if show == "history":
        start, end, ftext, ttext = time_range(args, now, "now-7d")
    f = ProblemFilter(severities=sevs, hostids=tuple(hostids) if hostids is not None else None, groupid=groupid,
                      triggerid=triggerid, tag=tag, name=name, max_age=max_age,
                      acknowledged=None if not ack else ack == "yes", show=show, start=start, end=end)
    given = {"severity": sorted(sevs), "hostid": hostids or [], "groupid": groupid, "triggerid": triggerid,
             "tag": text_arg(args, "tag"), "name": name, "age": age, "ack": ack, "show": show, "from": ftext,
             "to": ttext}
    return f, given


def sort_args(args: Any) -> tuple[str, bool]:
    sort = text_arg(args, "sort", 16) or "clock"
    if sort not in SORTS:
        raise WebError(f"sort: one of {', '.join(SORTS)}", "sort")
    desc = text_arg(args, "desc", 2)
    if desc not in ("", "0", "1"):
        raise WebError("desc: 0 or 1", "desc")
    return sort, desc != "0"


def trigger_permission(triggerids: Sequence[int]) -> dict[int, int]:
    """triggerid -> the caller's permission on it: the lowest over its hosts."""
    a = auth.access()
    return {tr: min((a.host(groups) for groups in hosts.values()), default=Permission.DENY)
            for tr, hosts in problems_repo().trigger_host_groups(triggerids).items()}


def require_event(eventid: int, *, write: bool = False) -> int:
    """The trigger id of the event, after checking the caller may read (or change) it: 404 / 403."""
    triggerid = problems_repo().trigger_of_event(eventid)
    if triggerid is None:
        raise NotFound(f"eventid: no trigger event {eventid}", "eventid")
    perm = trigger_permission([triggerid]).get(triggerid, Permission.DENY)
    if perm < Permission.READ:
        raise Forbidden(f"eventid: you have no rights to the hosts of event {eventid}", "eventid")
    if write:
        if not auth.current_user().can_act:
            raise Forbidden(f"eventid: your role ({auth.current_user().role_label}) cannot change problems",
                            "eventid")
        if perm < Permission.READ_WRITE:
            raise Forbidden(f"eventid: you may see event {eventid} but not change it (read-only rights)", "eventid")
    return triggerid


@dataclass
class Update:
    """One problem update applied to several problems."""

    acknowledge: bool = False
    unacknowledge: bool = False
    message: str = ""
    severity: int | None = None
    close: bool = False
    done: list[int] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)

    @property
    def action(self) -> int:
        a = 0
        a |= ACTION_ACK if self.acknowledge else 0
        a |= ACTION_UNACK if self.unacknowledge else 0
        a |= ACTION_MESSAGE if self.message else 0
        a |= ACTION_SEVERITY if self.severity is not None else 0
        a |= ACTION_CLOSE if self.close else 0
        return a

    def describe(self) -> str:
        parts = []
        if self.acknowledge:
            parts.append("acknowledged")
        if self.unacknowledge:
            parts.append("unacknowledged")
        if self.message:
            parts.append("commented")
        if self.severity is not None:
            from vigil.web.filters import SEVERITY_LABELS

            parts.append(f"severity set to {SEVERITY_LABELS[self.severity]}")
        if self.close:
            parts.append("closing")
        return ", ".join(parts)


def parse_update(data: Mapping[str, Any]) -> Update:
    """An Update from form fields or a JSON object: acknowledge, unacknowledge, message, severity, close."""
    def flag(name: str) -> bool:
        v = data.get(name)
        if isinstance(v, bool):
            return v
        if v is None or v == "":
            return False
        if isinstance(v, str) and v.lower() in ("1", "on", "true", "yes"):
            return True
        if isinstance(v, str) and v.lower() in ("0", "off", "false", "no"):
            return False
        raise WebError(f"{name}: expected true or false", name)

    u = Update(acknowledge=flag("acknowledge"), unacknowledge=flag("unacknowledge"), close=flag("close"))
    msg = data.get("message")
    if msg is not None and not isinstance(msg, str):
        raise WebError("message: expected text", "message")
    u.message = (msg or "").strip()
    if len(u.message) > MAX_MESSAGE:
        raise WebError(f"message: longer than {MAX_MESSAGE} characters", "message")
    sev = data.get("severity")
    if sev not in (None, ""):
        if isinstance(sev, bool) or not isinstance(sev, str | int):
            raise WebError("severity: expected 0-5 or a severity name", "severity")
        u.severity = severity_arg(str(sev))
    if u.acknowledge and u.unacknowledge:
        raise WebError("unacknowledge: cannot acknowledge and unacknowledge at once", "unacknowledge")
    if not u.action:
        raise WebError("message: choose at least one change: acknowledge, a message, a new severity or close",
                       "message")
    return u


def apply_update(eventids: Sequence[int], u: Update, userid: int) -> Update:
    """Check every problem, then write the update to each through EventStore.acknowledge."""
    if not eventids:
        raise WebError("eventids: select at least one problem", "eventids")
    if len(eventids) > 500:
        raise WebError("eventids: at most 500 problems at once", "eventids")
    triggers = problems_repo().triggers_of_events(eventids)
    for i, eid in enumerate(eventids):
        if eid not in triggers:
            raise NotFound(f"eventids[{i}]: no trigger event {eid}", f"eventids[{i}]")
    if not auth.current_user().can_act:
        raise Forbidden(f"eventids: your role ({auth.current_user().role_label}) cannot change problems", "eventids")
    perms = trigger_permission(list(set(triggers.values())))
    for i, eid in enumerate(eventids):
        p = perms.get(triggers[eid], Permission.DENY)
        if p < Permission.READ:
            raise Forbidden(f"eventids[{i}]: you have no rights to the hosts of event {eid}", f"eventids[{i}]")
        if p < Permission.READ_WRITE:
            raise Forbidden(f"eventids[{i}]: you may see problem {eid} but not change it (read-only rights)",
                            f"eventids[{i}]")
    if u.close:
        briefs = {tr: problems_repo().trigger(tr) for tr in set(triggers.values())}
        for eid in eventids:
            b = briefs.get(triggers[eid])
            if b is None or not b.manual_close:
                raise WebError(f"close: problem {eid}'s trigger does not allow manual close (allow it on the "
                               "trigger's form)", "close")
    store = events_store()
    for eid in eventids:
        try:
            store.acknowledge(eid, userid, u.message, u.action, u.severity)
        except EventError as e:
            u.skipped.append((eid, str(e)))
        else:
            u.done.append(eid)
    return u
