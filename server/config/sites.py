"""What the central server reads about site servers' hosts (server/ingest/site.py registers them)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from vigil.server.config import tables as t

SITE_GROUP = "Site/"  # a site's hosts are in host group Site/NAME


def site_group(site: str) -> str:
    return SITE_GROUP + site


def host_owners(engine: Engine, hosts: list[str]) -> dict[str, tuple[int | None, list[str]]]:
    """host name -> (its proxy's id, its host groups) for those of `hosts` that exist (hosts or templates)."""
    if not hosts:
        return {}
    out: dict[str, tuple[int | None, list[str]]] = {}
    with engine.connect() as c:
        rows = c.execute(sa.select(t.hosts.c.hostid, t.hosts.c.host, t.hosts.c.proxyid)
                         .where(t.hosts.c.host.in_(hosts))).all()
        ids = {r.hostid: r.host for r in rows}
        for r in rows:
            out[r.host] = (r.proxyid, [])
        if ids:
            q = (sa.select(t.hosts_groups.c.hostid, t.host_groups.c.name)
                 .join(t.host_groups, t.host_groups.c.groupid == t.hosts_groups.c.groupid)
                 .where(t.hosts_groups.c.hostid.in_(list(ids))))
            for hostid, group in c.execute(q):
                out[ids[hostid]][1].append(group)
    return out


def item_ids(engine: Engine, hosts: list[str]) -> dict[tuple[str, str], int]:
    """(host, key) -> itemid of the items of these hosts."""
    if not hosts:
        return {}
    with engine.connect() as c:
        q = (sa.select(t.hosts.c.host, t.items.c.key_, t.items.c.itemid)
             .join(t.hosts, t.hosts.c.hostid == t.items.c.hostid).where(t.hosts.c.host.in_(hosts)))
        return {(h, k): int(i) for h, k, i in c.execute(q)}


def site_hosts(engine: Engine) -> list[dict[str, Any]]:
    """What a site server registers on its central server: its hosts (not templates) with their plain and
    discovered items (own and from templates), as `vigil site config` carries them (server/ingest/site.py)."""
    from vigil.server.config.model import VALUE_TYPE_NAMES
    from vigil.server.config.tables import Flags, HostStatus

    vt_names = {v: k for k, v in VALUE_TYPE_NAMES.items()}
    hosts: dict[int, dict[str, Any]] = {}
    with engine.connect() as c:
        for r in c.execute(sa.select(t.hosts.c.hostid, t.hosts.c.host, t.hosts.c.name)
                           .where(t.hosts.c.status != int(HostStatus.TEMPLATE)).order_by(t.hosts.c.hostid)):
            hosts[r.hostid] = {"host": r.host, "name": r.name or r.host, "items": []}
        q = (sa.select(t.items.c.itemid, t.items.c.hostid, t.items.c.key_, t.items.c.name, t.items.c.units,
                       t.items.c.value_type)
             .where(t.items.c.hostid.in_(list(hosts)) if hosts else sa.false(),
                    t.items.c.flags.in_([int(Flags.PLAIN), int(Flags.DISCOVERED)]))
             .order_by(t.items.c.itemid))
        rows = c.execute(q).all()
        tags: dict[int, list[dict[str, str]]] = {}
        if rows:
            for r in c.execute(sa.select(t.item_tags.c.itemid, t.item_tags.c.tag, t.item_tags.c.value)
                               .where(t.item_tags.c.itemid.in_([r.itemid for r in rows]))
                               .order_by(t.item_tags.c.itemtagid)):
                tags.setdefault(r.itemid, []).append({"tag": r.tag, "value": r.value})
    for r in rows:
        hosts[r.hostid]["items"].append({"itemid": int(r.itemid), "key": r.key_, "name": r.name or "",
                                         "units": r.units or "", "value_type": vt_names[r.value_type],
                                         "tags": tags.get(r.itemid, [])})
    return list(hosts.values())
