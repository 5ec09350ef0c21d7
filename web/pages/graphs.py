"""Graphs: several items on one interactive Plotly chart, over a time range from 1 hour to 1 year."""

from __future__ import annotations

import json
import time
from typing import Any

from flask import Blueprint, render_template, request
from vigil.web import auth, charts, data
from vigil.web.app import services
from vigil.web.errors import NotFound, WebError
from vigil.web.params import ids_arg, time_range

bp = Blueprint("graphs", __name__)
QUICK = [("now-1h", "1 hour"), ("now-3h", "3 hours"), ("now-12h", "12 hours"), ("now-1d", "1 day"),
         ("now-2d", "2 days"), ("now-7d", "7 days"), ("now-30d", "30 days"), ("now-3M", "3 months"),
         ("now-1y", "1 year"), ("now/d", "Today"), ("now-1d/d", "Yesterday"), ("now/w", "This week")]


@bp.get("/graphs")
def index() -> Any:
    svc = services()
    ids = ids_arg(request.args, "itemid", getlist=request.args.getlist) or []
    if len(ids) > 20:
        raise WebError("itemid: at most 20 items on one graph", "itemid")
    now = time.time()
    start, end, ftext, ttext = time_range(request.args, now)
    items = []
    for i in ids:
        it = svc.browse.item(i)
        if it is None:
            raise NotFound(f"itemid: no item {i}", "itemid")
        auth.require_host(it.hostid)
        items.append(it)
    fig = None
    source = "history"
    if items:
        series, source = data.series(svc.store, items, start, end, svc.browse)
        fig = json.dumps(charts.figure(series, start, end, height=420))
    span = end - start
    return render_template("graphs.html", items=items, figure=fig, source=source, start=start, end=end,
                           ftext=ftext, ttext=ttext, quick=QUICK, span=span,
                           shift_back=(start - span, end - span), shift_fwd=(start + span, end + span),
                           zoom_out=(start - span // 2, end + span // 2), now=int(now))
