"""Dashboard: host availability, problems by severity, and this machine's CPU, memory, disk and network."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from flask import Blueprint, render_template
from vigil.web import auth, charts, data
from vigil.web.app import services

bp = Blueprint("dashboard", __name__)

# (title, item keys) drawn for the watched host; keys a host lacks are left out.
PANELS = [
    ("CPU utilization", ["system.cpu.util[,user]", "system.cpu.util[,system]", "system.cpu.util[,iowait]",
                         "system.cpu.util"]),
    ("Load average", ["system.cpu.load[all,avg1]", "system.cpu.load[all,avg5]", "system.cpu.load[all,avg15]"]),
    ("Memory available", ["vm.memory.size[pavailable]"]),
    ("Disk space used", ["vfs.fs.size[/,pused]"]),
    ("Network traffic", []),  # any net.if.in/out items of the host
]


def watched_host(scope: Any) -> Any:
    """This machine's host when it is monitored and visible, else the first host linked to the built-in
    Linux template, else the first host."""
    browse = services().browse
    return (browse.first_host(scope, host=socket.gethostname())
            or browse.first_host(scope, template="Linux by Vigil agent"))


@bp.get("/")
def index() -> Any:
    svc = services()
    scope = auth.scope()
    now = int(time.time())
    avail = data.availability(svc.store, svc.browse, scope, now)
    from vigil.web.triage import problems_repo

    problems = problems_repo().counts(scope)
    host = watched_host(scope)
    panels = []
    if host is not None:
        items = svc.browse.items(scope, hostids=[host.hostid], numeric=True, limit=None, with_tags=False).rows
        by_key = {i.key: i for i in items}
        for title, keys in PANELS:
            chosen = [by_key[k] for k in keys if k in by_key]
            if title == "Network traffic":
                chosen = [i for i in items if i.key.startswith(("net.if.in", "net.if.out"))][:6]
            if title == "CPU utilization" and len(chosen) > 1:
                chosen = [c for c in chosen if c.key != "system.cpu.util"]
            start = now - 3600
            series, _ = data.series(svc.store, chosen, start, now)
            fig = charts.figure(series, start, now, height=220, compact=False) if chosen else None
            panels.append({"title": title, "figure": json.dumps(fig) if fig else None,
                           "itemids": [c.itemid for c in chosen],
                           "empty": not any(s.points for s in series)})
    total = sum(avail.values())
    return render_template("dashboard.html", avail=avail, total=total, problems=problems, host=host,
                           panels=panels)
