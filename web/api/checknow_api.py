"""/api/v1 check now ("Execute now"): poll items at once, as Zabbix 6.0's task.create of type 6.

`POST /items/{itemid}/check-now` checks one item (or a discovery rule: it runs its discovery now);
`POST /items/check-now` takes `{"itemids": [..]}` or `{"discovered_by": RULEID}` (every enabled,
polled item the rule discovered). 202 with the tasks queued; the item's next value is the answer.
"""

from __future__ import annotations

from typing import Any

from flask import jsonify
from vigil.server.store import tasks as store
from vigil.web.api import _json_body, bp
from vigil.web.app import services
from vigil.web.checknow import Queued, check_now, require_writable
from vigil.web.errors import WebError


def _accepted(q: Queued) -> Any:
    resp = jsonify({"data": q.to_json()})
    resp.status_code = 202
    return resp


@bp.post("/items/<int:itemid>/check-now")
def check_item_now(itemid: int) -> Any:
    return _accepted(check_now([itemid]))


@bp.post("/items/check-now")
def check_items_now() -> Any:
    body = _json_body()
    unknown = sorted(set(body) - {"itemids", "discovered_by"})
    if unknown:
        raise WebError(f"{unknown[0]}: not a field here (known: discovered_by, itemids)", unknown[0])
    if ("itemids" in body) == ("discovered_by" in body):
        raise WebError("itemids: give either itemids (a list of item ids) or discovered_by (a discovery rule's id)",
                       "itemids")
    if "discovered_by" in body:
        rule = body["discovered_by"]
        if isinstance(rule, bool) or not isinstance(rule, int) or rule <= 0:
            raise WebError("discovered_by: must be a discovery rule's id (a positive integer)", "discovered_by")
        require_writable([rule], "discovered_by")
        try:
            ids = store.discovered_items(services().engine, rule)
        except store.CheckNowError as e:
            raise WebError(str(e), e.field, status=e.status, code=e.code) from None
        if not ids:
            raise WebError(f"discovered_by: discovery rule {rule} has discovered no polled items yet",
                           "discovered_by")
        return _accepted(check_now(ids, "discovered_by"))
    ids = body["itemids"]
    if not isinstance(ids, list) or not all(isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in ids):
        raise WebError("itemids: must be a list of item ids (positive integers)", "itemids")
    return _accepted(check_now(ids, "itemids"))
