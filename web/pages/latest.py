"""Latest data: every item's last value, change, sparkline and trend, filtered by host, group, tag, name."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, render_template, request
from vigil.web import auth, csv_export, data, exports
from vigil.web.app import services
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
                           f={"hostid": hostids or [], "groupid": groupid, "tag": args.get("tag", ""),
                              "search": search})
