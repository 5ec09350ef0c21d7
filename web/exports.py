"""The CSV exports of the lists: each takes the filter its page parsed and the caller's scope, and reads every
matching row through the page's own read in chunks (web/csv_export.py streams them). Times are UTC."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from flask import Response
from vigil.server.config.browse import Scope
from vigil.server.config.browse_problems import ProblemFilter
from vigil.server.config.browse_triggers import TriggerFilter
from vigil.web import csv_export, data
from vigil.web import format as fmt
from vigil.web.app import services
from vigil.web.filters import AVAILABILITY, SEVERITY_LABELS


def _tags(tags: Any) -> str:
    return ", ".join(f"{k}: {v}" if v else k for k, v in tags)


def _chunks(fetch: Callable[[int, int], list[Any]]) -> Iterator[list[Any]]:
    """The rows of a paged read a chunk at a time (for reads that add to each chunk, as latest values)."""
    offset = 0
    while True:
        rows = fetch(csv_export.CHUNK, offset)
        if rows:
            yield rows
        if len(rows) < csv_export.CHUNK:
            return
        offset += csv_export.CHUNK


def hosts(scope: Scope, **filters: Any) -> Response:
    svc = services()
    proxies = svc.repo.host_proxy_names()

    def rows() -> Iterator[list[Any]]:
        for chunk in _chunks(lambda lim, off: svc.browse.hosts(scope, limit=lim, offset=off, **filters).rows):
            alive = data.active_available(svc.store, svc.browse, [h.hostid for h in chunk if h.available == 0],
                                          int(time.time()))
            for h in chunk:
                a = 1 if h.hostid in alive else h.available
                yield [h.host, h.name, ", ".join(n for _, n in h.groups), ", ".join(h.templates), h.items,
                       AVAILABILITY[a][0], "Enabled" if h.enabled else "Disabled", proxies.get(h.hostid, ""),
                       h.description]

    return csv_export.response("hosts", ["Host", "Visible name", "Host groups", "Templates", "Items", "Availability",
                                         "Status", "Monitored by proxy", "Description"], rows())


def latest(scope: Scope, **filters: Any) -> Response:
    svc = services()

    def rows() -> Iterator[list[Any]]:
        now = int(time.time())
        for chunk in _chunks(lambda lim, off: svc.browse.items(scope, limit=lim, offset=off, **filters).rows):
            for r in data.latest(svc.store, chunk, now, sparklines=False):
                it = r.item
                yield [it.host_name, it.name, it.key, csv_export.clock(r.clock),
                       "" if r.value is None else r.value, it.units, _tags(it.tags)]

    return csv_export.response("latest-data", ["Host", "Name", "Key", "Last check (UTC)", "Last value", "Units",
                                               "Tags"], rows())


def items(scope: Scope, **filters: Any) -> Response:
    svc = services()

    def rows() -> Iterator[list[Any]]:
        now = int(time.time())
        for chunk in _chunks(lambda lim, off: svc.browse.items(scope, limit=lim, offset=off, **filters).rows):
            for r in data.latest(svc.store, chunk, now, sparklines=False):
                it = r.item
                yield [it.host, it.name, it.key, it.type.name.lower(), it.value_type.name.lower(), it.delay,
                       it.units, "Enabled" if it.status == 0 else "Disabled", "yes" if it.templated else "",
                       _tags(it.tags), csv_export.clock(r.clock), "" if r.value is None else r.value]

    return csv_export.response("items", ["Host", "Name", "Key", "Type", "Value type", "Interval", "Units", "Status",
                                         "From template", "Tags", "Last check (UTC)", "Last value"], rows())


def problems(scope: Scope, f: ProblemFilter, now: int, sort: str, desc: bool) -> Response:
    from vigil.web.triage import problems_repo

    pr = problems_repo()

    def rows() -> Iterator[list[Any]]:
        for p in csv_export.paged(lambda lim, off: pr.problems(scope, f, now, sort=sort, desc=desc, limit=lim,
                                                               offset=off).rows):
            yield [csv_export.clock(p.clock), SEVERITY_LABELS[p.severity],
                   csv_export.clock(p.r_clock) if p.resolved else "", "RESOLVED" if p.resolved else "PROBLEM",
                   p.host_name, p.name, fmt.duration(p.duration(now)), "Yes" if p.acknowledged else "No",
                   p.alerts, _tags(p.tags)]

    return csv_export.response("problems", ["Time (UTC)", "Severity", "Recovery time (UTC)", "Status", "Host",
                                            "Problem", "Duration", "Ack", "Actions", "Tags"], rows())


def events(scope: Scope, **filters: Any) -> Response:
    from vigil.web.triage import problems_repo

    pr = problems_repo()

    def rows() -> Iterator[list[Any]]:
        for e in csv_export.paged(lambda lim, off: pr.events(scope, limit=lim, offset=off, **filters).rows):
            yield [csv_export.clock(e.clock), "PROBLEM" if e.value else "OK",
                   SEVERITY_LABELS[e.severity] if e.value else "", e.host_name, e.name,
                   ("Yes" if e.acknowledged else "No") if e.value else ""]

    return csv_export.response("events", ["Time (UTC)", "Status", "Severity", "Host", "Name", "Ack"], rows())


def triggers(scope: Scope, f: TriggerFilter, sort: str, desc: bool) -> Response:
    from vigil.web.triage import triggers_repo

    tr = triggers_repo()

    def rows() -> Iterator[list[Any]]:
        for r in csv_export.paged(lambda lim, off: tr.triggers(scope, f, sort=sort, desc=desc, limit=lim,
                                                               offset=off).rows):
            yield [SEVERITY_LABELS[r.severity], "PROBLEM" if r.value else "OK", r.host_name, r.name, r.expression,
                   "Enabled" if r.enabled else "Disabled", "yes" if r.templated else "", _tags(r.tags)]

    return csv_export.response("triggers", ["Severity", "Value", "Host", "Name", "Expression", "Status",
                                            "From template", "Tags"], rows())
