"""A large estate for the web benchmark, filled in seconds: one host is configured through
ConfigRepo.apply (the real path), then copied to the other hosts with set-based INSERT ... SELECT
statements (SQLAlchemy Core), table by table, so that every copy has exactly the rows apply wrote
for the first one (items with their template links, tags, preprocessing, triggers with the host
name in their expressions, trigger items and tags, template links, interfaces, macros).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from vigil.server.config import tables as t


def _columns(table: sa.Table, owner: str) -> list[sa.Column]:
    """The columns to copy: all but a single-column surrogate key (the database numbers the copies)."""
    pk = list(table.primary_key.columns)
    drop = {pk[0].name} if len(pk) == 1 and pk[0].name != owner else set()
    return [col for col in table.c if col.name not in drop]


def _copy_owned(c: Connection, table: sa.Table, owner: str, src: int, new: Sequence[int],
                replace: dict[str, sa.ColumnElement] | None = None) -> None:
    """Copy the rows of `table` whose `owner` column is `src` once per host id in `new`."""
    hosts = sa.select(t.hosts.c.hostid).where(t.hosts.c.hostid.in_(list(new))).subquery("nh")
    cols = _columns(table, owner)
    subst = {owner: hosts.c.hostid, **(replace or {})}
    sel = sa.select(*[subst.get(col.name, col).label(col.name) for col in cols]).select_from(
        table.join(hosts, sa.true())).where(table.c[owner] == src)
    c.execute(sa.insert(table).from_select([col.name for col in cols], sel))


def _copy_item_children(c: Connection, table: sa.Table, src: int, new: Sequence[int]) -> None:
    """Rows keyed by itemid (tags, preprocessing): each new item gets those of the source item of its key."""
    si, ni = sa.alias(t.items, "si"), sa.alias(t.items, "ni")
    cols = _columns(table, "itemid")
    sel = (sa.select(*[(ni.c.itemid if col.name == "itemid" else col).label(col.name) for col in cols])
           .select_from(table.join(si, si.c.itemid == table.c.itemid)
                        .join(ni, sa.and_(ni.c.key_ == si.c.key_, ni.c.hostid.in_(list(new)))))
           .where(si.c.hostid == src))
    c.execute(sa.insert(table).from_select([col.name for col in cols], sel))


def _copy_trigger_children(c: Connection, src: int, new: Sequence[int]) -> None:
    st, nt = sa.alias(t.triggers, "st"), sa.alias(t.triggers, "nt")
    si, ni = sa.alias(t.items, "si"), sa.alias(t.items, "ni")
    pair = (st.join(nt, sa.and_(nt.c.description == st.c.description, nt.c.hostid.in_(list(new)))))
    ti = t.trigger_items
    c.execute(sa.insert(ti).from_select(["triggerid", "itemid"], sa.select(nt.c.triggerid, ni.c.itemid).select_from(
        pair.join(ti, ti.c.triggerid == st.c.triggerid).join(si, si.c.itemid == ti.c.itemid)
        .join(ni, sa.and_(ni.c.key_ == si.c.key_, ni.c.hostid == nt.c.hostid))).where(st.c.hostid == src)))
    tt = t.trigger_tags
    c.execute(sa.insert(tt).from_select(["triggerid", "tag", "value"], sa.select(nt.c.triggerid, tt.c.tag, tt.c.value)
                                        .select_from(pair.join(tt, tt.c.triggerid == st.c.triggerid))
                                        .where(st.c.hostid == src)))


def _analyze(c: Connection) -> None:
    """Fresh planner statistics: without them PostgreSQL joins 100,000 new items as if they were a few."""
    if c.dialect.name == "postgresql":
        c.exec_driver_sql("ANALYZE hosts, items, triggers, trigger_items")


def clone_host(engine: Engine, src_host: str, names: Sequence[str], groups: Sequence[str]) -> list[int]:
    """Create hosts `names` as copies of `src_host`, host i in host group groups[i] (made when missing).
    Returns the new host ids, in the order of `names`."""
    h = t.hosts.c
    with engine.begin() as c:
        src = c.execute(sa.select(t.hosts).where(h.host == src_host)).one()._asdict()
        want = sorted(set(groups))
        have = dict(c.execute(sa.select(t.host_groups.c.name, t.host_groups.c.groupid)
                              .where(t.host_groups.c.name.in_(want))).all())
        missing = [g for g in want if g not in have]
        if missing:
            c.execute(sa.insert(t.host_groups), [{"name": g} for g in missing])
            have = dict(c.execute(sa.select(t.host_groups.c.name, t.host_groups.c.groupid)
                                  .where(t.host_groups.c.name.in_(want))).all())
        base = {k: v for k, v in src.items() if k != "hostid"}
        c.execute(sa.insert(t.hosts), [{**base, "host": n, "name": n} for n in names])
        ids = dict(c.execute(sa.select(h.host, h.hostid).where(h.host.in_(list(names)))).all())
        new = [int(ids[n]) for n in names]
        c.execute(sa.insert(t.hosts_groups),
                  [{"hostid": i, "groupid": have[g]} for i, g in zip(new, groups, strict=True)])
        sid = int(src["hostid"])
        for table in (t.hosts_templates, t.interfaces, t.host_macros, t.host_tags, t.items):
            _copy_owned(c, table, "hostid", sid, new)
        _analyze(c)
        for table in (t.item_tags, t.item_preproc):
            _copy_item_children(c, table, sid, new)
        nh = sa.select(h.hostid, h.host).where(h.hostid.in_(new)).subquery("nh")
        expr = t.triggers.c
        c.execute(sa.insert(t.triggers).from_select(
            [col.name for col in t.triggers.c if col.name != "triggerid"],
            sa.select(*[(nh.c.hostid if col.name == "hostid" else
                         sa.func.replace(col, f"/{src_host}/", "/" + nh.c.host + "/") if col.name in
                         ("expression", "recovery_expression") else col).label(col.name)
                        for col in t.triggers.c if col.name != "triggerid"])
            .select_from(t.triggers.join(nh, sa.true())).where(expr.hostid == sid)))
        _analyze(c)
        _copy_trigger_children(c, sid, new)
        c.execute(sa.update(t.config_version).values(version=t.config_version.c.version + 1))
    return new
