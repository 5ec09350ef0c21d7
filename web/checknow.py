""""Execute now" (Zabbix's check now) for the item pages, latest data and the API: the caller needs
read-write rights on each item's host (and a role that may change configuration, as Zabbix 6.0's
Admin); the items are checked and queued by server/store/tasks.py, whose error names the item."""

from __future__ import annotations

import time
from dataclasses import dataclass

import sqlalchemy as sa
from vigil.server.config import tables as t
from vigil.server.store import tasks as store
from vigil.web import auth
from vigil.web.app import services
from vigil.web.errors import NotFound, WebError


@dataclass(frozen=True, slots=True)
class Queued:
    taskids: list[int]
    items: list[store.CheckNowItem]

    def to_json(self) -> dict:
        return {"taskids": self.taskids, "items": [
            {"itemid": i.itemid, "hostid": i.hostid, "host": i.host, "key": i.key,
             "by": "proxy" if i.proxyid is not None else "server", "taskid": k}
            for i, k in zip(self.items, self.taskids, strict=True)]}


def _hosts_of(itemids: list[int]) -> dict[int, int]:
    i, h = t.items, t.hosts
    q = (sa.select(i.c.itemid, i.c.hostid).join(h, h.c.hostid == i.c.hostid)
         .where(i.c.itemid.in_(itemids), h.c.status != t.HostStatus.TEMPLATE))
    with services().engine.connect() as c:
        return {int(a): int(b) for a, b in c.execute(q)}


def require_writable(ids: list[int], field: str = "itemid") -> None:
    """NotFound for an unknown item, Forbidden without read-write rights on an item's host."""
    hosts = _hosts_of(ids)
    for itemid in ids:
        if itemid not in hosts:
            raise NotFound(f"{field}: no item {itemid}", field)
    for hostid in dict.fromkeys(hosts[i] for i in ids):
        auth.require_host(hostid, write=True)


def check_now(itemids: list[int], field: str = "itemid") -> Queued:
    """Queue a check now of each item, or raise the WebError naming the first one refused (then none
    is queued): 404 for an unknown item, 403 without read-write rights on its host, 400 for an item
    that is not polled, is disabled or is on a disabled host."""
    ids = list(dict.fromkeys(itemids))
    if not ids:
        raise WebError(f"{field}: choose at least one item to execute now", field)
    if len(ids) > store.MAX_CHECK_NOW:
        raise WebError(f"{field}: {len(ids)} items, over the maximum of {store.MAX_CHECK_NOW} at once", field)
    require_writable(ids, field)
    engine = services().engine
    try:
        items = store.check_now_items(engine, ids)
        taskids = store.queue_check_now(engine, ids, int(time.time()))
    except store.CheckNowError as e:
        msg = str(e)
        if field != "itemid" and msg.startswith("itemid: "):
            msg = f"{field}: {msg[len('itemid: '):]}"
        raise WebError(msg, field, status=e.status, code=e.code) from None
    return Queued(taskids, items)


def summary(q: Queued) -> str:
    """The flash message after a check now, as Zabbix's "Request sent successfully"."""
    by_proxy = sum(1 for i in q.items if i.proxyid is not None)
    n = len(q.items)
    what = f"{q.items[0].host}: {q.items[0].key}" if n == 1 else f"{n} items"
    tail = f" ({by_proxy} through their proxy)" if by_proxy and n > 1 else (" through its proxy" if by_proxy else "")
    return f"Request sent successfully: {what} will be checked now{tail}."
