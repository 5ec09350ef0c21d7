"""Latest data: every item's last value, change, sparkline and trend, filtered by host, group, tag, name;
the checked items are graphed or executed now (web/checknow.py) from the same list (POST /latest/bulk,
also the host page's list)."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from vigil.server.config.tables import ValueType
from vigil.web import auth, checknow, csv_export, data, exports
from vigil.web.app import services
from vigil.web.errors import WebError
from vigil.web.params import ids_arg, int_arg, tag_arg, text_arg

bp = Blueprint("latest", __name__)
PAGE = 50


@bp.get("/latest")
def index() -> Any:
    svc = services()
    scope = auth.scope()
    args = request.args
    hostids = ids_arg(args, "hostid", getlist=args.getlist)
    for h in hostids or []:
        auth.require_host(h)
    groupid = int_arg(args, "groupid", None, 1, 2**31 - 1)
    page_no = int_arg(args, "page", 1, 1, 100000) or 1
    tag = tag_arg(args)
    search = text_arg(args, "search")
    if csv_export.wants_csv():
        return exports.latest(scope, hostids=hostids, groupid=groupid, search=search, tag=tag)
    page = svc.browse.items(scope, hostids=hostids, groupid=groupid, search=search, tag=tag, limit=PAGE,
                            offset=(page_no - 1) * PAGE)
    rows = data.latest(svc.store, page.rows, int(time.time()))
    hosts = svc.browse.host_names(scope)
    return render_template("latest.html", rows=rows, total=page.total, page=page_no,
                           pages=max(1, -(-page.total // PAGE)),
                           groups=svc.browse.host_groups(scope), hosts=hosts,
                           tags=sorted({tg for r in page.rows for tg in r.tags}),
                           can_check_now=auth.current_user().can_configure,
                           f={"hostid": hostids or [], "groupid": groupid, "tag": args.get("tag", ""),
                              "search": search})


@bp.post("/latest/bulk")
def bulk() -> Any:
    """The checked rows of a latest data list: `action=graph` shows their graph (numeric items only),
    `action=check_now` executes them now and goes back to the list (`back`)."""
    ids = ids_arg(request.form, "itemid", getlist=request.form.getlist) or []
    action = request.form.get("action", "graph")
    if action == "graph":
        numeric = [i for i in ids if (it := services().browse.item(i)) is not None
                   and it.value_type in (ValueType.FLOAT, ValueType.UNSIGNED)]
        if not numeric:
            raise WebError("itemid: check at least one numeric item to graph", "itemid")
        return redirect(url_for("graphs.index", itemid=numeric), 303)
    if action != "check_now":
        raise WebError(f"action: graph or check_now, got {action[:40]!r}", "action")
    flash(checknow.summary(checknow.check_now(ids)))
    return redirect(_back(request.form.get("back", "")), 303)


def _back(target: str) -> str:
    """A path on this site to go back to (never another site's address)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("latest.index")
    return target
