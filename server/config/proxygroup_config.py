"""Proxy groups in the configuration: import/export of `proxy_groups:`, a proxy's `group:` and a
host's `proxy_group:`, what the balancer reads and writes (hosts.proxyid of the group's hosts), and
what Administration -> Proxy groups and the host form read and change.

A mixin of ConfigRepo (server/config/repo.py), kept apart so the proxy groups' SQL stays in one place.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from vigil.server.config import tables as t
from vigil.server.config.model import ConfigError, ProxyGroupSpec, failover_seconds, proxy_group_to_doc
from vigil.server.config.tables import HostStatus, ItemType, ProxyGroupState

# A drained host's items take sender values from this address only, i.e. from no one.
SINK_ADDRESS = "255.255.255.255"
# A proxy is done with a drained host once it sent a `proxy data` with no "more" this long after it was
# first sent the host as a sink: values it took just before flow from its cache into its buffer first.
DRAIN_GRACE = 5


@dataclass(frozen=True, slots=True)
class GroupState:
    """One proxy group as the balancer sees it."""

    proxy_groupid: int
    name: str
    failover_delay: int  # seconds
    min_online: int
    state: int  # ProxyGroupState as last written
    last_seen: dict[int, int]  # proxyid -> lastaccess, every proxy of the group
    hosts: dict[int, int | None]  # hostid -> proxyid, every host (not template) of the group
    proxy_names: dict[int, str]


@dataclass(frozen=True, slots=True)
class ProxyGroupRow:
    """A proxy group as Administration -> Proxy groups lists it."""

    proxy_groupid: int
    name: str
    failover_delay: str
    min_online: int
    description: str
    state: int  # ProxyGroupState as the balancer last wrote it
    proxies: list[tuple[int, str, bool]]  # (proxyid, name, online: heard from within failover_delay), by name
    hosts: int

    @property
    def online(self) -> int:
        return sum(1 for _, _, up in self.proxies if up)


def _chunks(ids: list[int], size: int = 500) -> list[list[int]]:
    return [ids[i:i + size] for i in range(0, len(ids), size)]


class ProxyGroupConfig:
    engine: Engine

    # --- import / export ----------------------------------------------------------------------------

    def apply_proxy_groups(self, c: Connection, specs: list[ProxyGroupSpec] | None, delete_missing: bool) -> None:
        if specs is None:
            return
        for g in specs:
            values = {"failover_delay": g.failover_delay, "min_online": g.min_online, "description": g.description}
            gid = c.execute(sa.select(t.proxy_groups.c.proxy_groupid).where(t.proxy_groups.c.name == g.name)).scalar()
            if gid is None:
                c.execute(sa.insert(t.proxy_groups).values(name=g.name, **values))
            else:
                c.execute(sa.update(t.proxy_groups).where(t.proxy_groups.c.proxy_groupid == gid).values(**values))
        if delete_missing:  # their hosts go back to the server, as a deleted proxy's do
            gone = sa.select(t.proxy_groups.c.proxy_groupid).where(
                t.proxy_groups.c.name.not_in([g.name for g in specs]))
            c.execute(sa.update(t.hosts).where(t.hosts.c.proxy_groupid.in_(gone)).values(proxyid=None))
            c.execute(sa.delete(t.proxy_groups).where(t.proxy_groups.c.proxy_groupid.in_(gone)))

    def proxy_group_id(self, c: Connection, name: str, where: str) -> int | None:
        """The group's id ('' : None); an unknown name is an error naming the field."""
        if not name:
            return None
        gid = c.execute(sa.select(t.proxy_groups.c.proxy_groupid).where(t.proxy_groups.c.name == name)).scalar()
        if gid is None:
            known = sorted(c.execute(sa.select(t.proxy_groups.c.name)).scalars())
            raise ConfigError(f"{where}: no proxy group {name!r} (known: {', '.join(known) or 'none'}; "
                              "add it under proxy_groups:)")
        return int(gid)

    def set_host_proxy_group(self, c: Connection, hostid: int, proxy: str | None, group: str | None,
                             where: str) -> None:
        """After set_host_proxy: a host given a proxy leaves its group; one given a group keeps its proxy
        only if that proxy is in the group (else the balancer assigns one)."""
        row = c.execute(sa.select(t.hosts.c.proxyid, t.hosts.c.proxy_groupid)
                        .where(t.hosts.c.hostid == hostid)).one()
        if proxy:
            if row.proxy_groupid is not None:
                c.execute(sa.update(t.hosts).where(t.hosts.c.hostid == hostid).values(proxy_groupid=None))
            return
        if group is None:
            return
        gid = self.proxy_group_id(c, group, f"{where}.proxy_group")
        if gid is None:  # proxy_group: null: out of the group, back to the server
            if row.proxy_groupid is not None:
                c.execute(sa.update(t.hosts).where(t.hosts.c.hostid == hostid)
                          .values(proxy_groupid=None, proxyid=None))
            return
        proxyid = row.proxyid
        if proxyid is not None:
            member = c.execute(sa.select(t.proxies.c.proxy_groupid).where(t.proxies.c.proxyid == proxyid)).scalar()
            if member != gid:
                proxyid = None
        c.execute(sa.update(t.hosts).where(t.hosts.c.hostid == hostid).values(proxy_groupid=gid, proxyid=proxyid))

    def export_proxy_groups(self, c: Connection) -> tuple[list[dict[str, Any]], dict[int, str]]:
        """The groups as document entries, and each grouped host's group name by hostid."""
        rows = c.execute(sa.select(t.proxy_groups).order_by(t.proxy_groups.c.name)).all()
        docs = [proxy_group_to_doc(ProxyGroupSpec(r.name, r.failover_delay, r.min_online, r.description))
                for r in rows]
        names = {r.proxy_groupid: r.name for r in rows}
        hosts = {r.hostid: names[r.proxy_groupid] for r in c.execute(
            sa.select(t.hosts.c.hostid, t.hosts.c.proxy_groupid).where(t.hosts.c.proxy_groupid.is_not(None)))}
        return docs, hosts

    def proxy_group_names(self, c: Connection) -> dict[int, str]:
        return dict(c.execute(sa.select(t.proxy_groups.c.proxy_groupid, t.proxy_groups.c.name)).all())

    # --- what the balancer reads and writes ---------------------------------------------------------

    def proxy_group_states(self) -> list[GroupState]:
        with self.engine.connect() as c:
            groups = c.execute(sa.select(t.proxy_groups).order_by(t.proxy_groups.c.proxy_groupid)).all()
            proxies = c.execute(sa.select(t.proxies.c.proxyid, t.proxies.c.name, t.proxies.c.lastaccess,
                                          t.proxies.c.proxy_groupid)
                                .where(t.proxies.c.proxy_groupid.is_not(None))).all()
            hosts = c.execute(sa.select(t.hosts.c.hostid, t.hosts.c.proxyid, t.hosts.c.proxy_groupid)
                              .where(t.hosts.c.proxy_groupid.is_not(None),
                                     t.hosts.c.status != HostStatus.TEMPLATE)).all()
        out = []
        for g in groups:
            try:
                delay = failover_seconds(g.failover_delay, f"proxy group {g.name}: failover_delay")
            except ConfigError:
                delay = 60  # checked on import; a row written some other way falls back to the default
            members = [p for p in proxies if p.proxy_groupid == g.proxy_groupid]
            out.append(GroupState(g.proxy_groupid, g.name, delay, g.min_online, g.state,
                                  {p.proxyid: p.lastaccess for p in members},
                                  {h.hostid: h.proxyid for h in hosts if h.proxy_groupid == g.proxy_groupid},
                                  {p.proxyid: p.name for p in members}))
        return out

    def save_proxy_group(self, proxy_groupid: int, moved: dict[int, tuple[int | None, int | None]],
                         state: ProxyGroupState, now: int) -> None:
        """Write a balancing: the hosts that moved (hostid -> (from, to)) and the group's state. Moving a
        host is a configuration change (its proxy's `proxy config` and the ingest views follow it); the
        proxy it left keeps it as a sink until it has delivered its buffer (see add_drained_tables)."""
        with self.engine.begin() as c:
            c.execute(sa.update(t.proxy_groups).where(t.proxy_groups.c.proxy_groupid == proxy_groupid)
                      .values(state=int(state)))
            if not moved:
                return
            # Only hosts still in this group: an import may have moved one meanwhile.
            still = set(c.execute(sa.select(t.hosts.c.hostid).where(
                t.hosts.c.proxy_groupid == proxy_groupid)).scalars())
            moved = {h: m for h, m in moved.items() if h in still}
            by_target: dict[int | None, list[int]] = {}
            for hostid, (_, new) in moved.items():
                by_target.setdefault(new, []).append(hostid)
            for new, hostids in by_target.items():
                for chunk in _chunks(hostids):
                    c.execute(sa.update(t.hosts).where(t.hosts.c.hostid.in_(chunk)).values(proxyid=new))
            proxies = set(c.execute(sa.select(t.proxies.c.proxyid)).scalars())
            pairs = [(h, p) for h, (old, new) in moved.items() for p in (old, new) if p is not None]
            if pairs:
                d = t.proxy_drains.c
                c.execute(sa.delete(t.proxy_drains).where(d.hostid == sa.bindparam("h"),
                                                          d.proxyid == sa.bindparam("p")),
                          [{"h": h, "p": p} for h, p in pairs])
            drains = [{"hostid": h, "proxyid": old, "moved": now, "config_sent": 0}
                      for h, (old, new) in moved.items() if old is not None and old in proxies and old != new]
            if drains:
                c.execute(sa.insert(t.proxy_drains), drains)
            c.execute(sa.update(t.config_version).where(t.config_version.c.id == 1)
                      .values(version=t.config_version.c.version + 1))

    # --- draining: a moved host stays with its old proxy until that proxy delivered its buffer --------

    def draining_proxies(self) -> set[int]:
        with self.engine.connect() as c:
            return set(c.execute(sa.select(t.proxy_drains.c.proxyid).distinct()).scalars())

    def drained_hosts(self, proxyid: int) -> list[int]:
        with self.engine.connect() as c:
            return sorted(c.execute(sa.select(t.proxy_drains.c.hostid)
                                    .where(t.proxy_drains.c.proxyid == proxyid)).scalars())

    def add_drained_tables(self, proxyid: int, out: dict[str, tuple[list[str], list[list[Any]]]]) -> None:
        """Add the hosts that moved off the proxy to what it is sent, as sinks: their items as trapper
        items that take values from no address, so the proxy collects nothing new for them but still
        sends what it buffered (6.0 sends a buffered value only if its item is in its configuration,
        enabled, on a monitored host). Marks when the proxy was first sent them so."""
        from vigil.server.config.proxies import PROXY_ITEM_TYPES, _item_row

        now = int(time.time())
        with self.engine.begin() as c:
            hostids = sorted(c.execute(sa.select(t.proxy_drains.c.hostid).join(
                t.hosts, t.hosts.c.hostid == t.proxy_drains.c.hostid).where(
                t.proxy_drains.c.proxyid == proxyid, t.hosts.c.status == HostStatus.MONITORED,
                sa.or_(t.hosts.c.proxyid.is_(None), t.hosts.c.proxyid != proxyid))).scalars())
            if not hostids:
                return
            hosts = c.execute(sa.select(t.hosts).where(t.hosts.c.hostid.in_(hostids))
                              .order_by(t.hosts.c.hostid)).all()
            items = c.execute(sa.select(t.items).where(
                t.items.c.hostid.in_(hostids), t.items.c.status == 0,
                t.items.c.type.in_([int(x) for x in PROXY_ITEM_TYPES])).order_by(t.items.c.itemid)).all()
            c.execute(sa.update(t.proxy_drains).where(t.proxy_drains.c.proxyid == proxyid,
                                                      t.proxy_drains.c.config_sent == 0).values(config_sent=now))
        fields, rows = out["hosts"]
        for h in hosts:
            row = dict.fromkeys(fields, "")
            row.update(hostid=h.hostid, host=h.host, name=h.name or h.host, status=int(HostStatus.MONITORED),
                       ipmi_authtype=-1, ipmi_privilege=2, tls_connect=1, tls_accept=h.tls_accept)
            rows.append([row[f] for f in fields])
        fields, rows = out["items"]
        sink = {"type": int(ItemType.TRAPPER), "trapper_hosts": SINK_ADDRESS, "interfaceid": None,
                "master_itemid": None, "delay": "0"}
        for i in items:
            row = dict(zip(fields, _item_row(i, {}), strict=True))
            row.update(sink)
            rows.append([row[f] for f in fields])
        out["item_rtdata"][1].extend([i.itemid, 0, 0] for i in items)

    def end_drains(self, proxyid: int, now: int) -> int:
        """The proxy sent a `proxy data` with nothing more to follow: the hosts it was sent as sinks at
        least DRAIN_GRACE seconds ago are delivered and leave its configuration. Returns how many."""
        with self.engine.begin() as c:
            n = c.execute(sa.delete(t.proxy_drains).where(
                t.proxy_drains.c.proxyid == proxyid, t.proxy_drains.c.config_sent > 0,
                t.proxy_drains.c.config_sent <= now - DRAIN_GRACE)).rowcount
            if n:
                c.execute(sa.update(t.config_version).where(t.config_version.c.id == 1)
                          .values(version=t.config_version.c.version + 1))
        return int(n or 0)

    # --- what the web pages read and change (Administration -> Proxy groups, proxy and host forms) ---

    def proxy_group_rows(self, now: int | None = None) -> list[ProxyGroupRow]:
        """Every proxy group with its proxies (online or not, as the balancer counts them) and hosts, by name."""
        now = int(time.time()) if now is None else now
        h = t.hosts.c
        with self.engine.connect() as c:
            groups = c.execute(sa.select(t.proxy_groups).order_by(t.proxy_groups.c.name)).all()
            proxies = c.execute(sa.select(t.proxies.c.proxyid, t.proxies.c.name, t.proxies.c.lastaccess,
                                          t.proxies.c.proxy_groupid)
                                .where(t.proxies.c.proxy_groupid.is_not(None)).order_by(t.proxies.c.name)).all()
            hosts = dict(c.execute(sa.select(h.proxy_groupid, sa.func.count()).where(
                h.proxy_groupid.is_not(None), h.status != HostStatus.TEMPLATE).group_by(h.proxy_groupid)).all())
        out = []
        for g in groups:
            try:
                delay = failover_seconds(g.failover_delay, "failover_delay")
            except ConfigError:
                delay = 60  # as the balancer reads it
            members = [(p.proxyid, p.name, bool(p.lastaccess) and now - p.lastaccess <= delay)
                       for p in proxies if p.proxy_groupid == g.proxy_groupid]
            out.append(ProxyGroupRow(g.proxy_groupid, g.name, g.failover_delay, g.min_online, g.description,
                                     g.state, members, int(hosts.get(g.proxy_groupid, 0))))
        return out

    def proxy_group_row(self, proxy_groupid: int) -> ProxyGroupRow | None:
        return next((r for r in self.proxy_group_rows() if r.proxy_groupid == proxy_groupid), None)

    def write_proxy_group(self, spec: ProxyGroupSpec, proxy_groupid: int | None) -> int:
        """Create (proxy_groupid None) or change a group, renaming it if need be; ConfigError 'name: ...'
        when the name is taken, 'proxy_groupid: ...' when the group is gone. Its proxies and hosts stay."""
        values = {"name": spec.name, "failover_delay": spec.failover_delay, "min_online": spec.min_online,
                  "description": spec.description}
        g = t.proxy_groups.c
        with self.engine.begin() as c:
            other = c.execute(sa.select(g.proxy_groupid).where(g.name == spec.name)).scalar()
            if other is not None and other != proxy_groupid:
                raise ConfigError(f"name: a proxy group named {spec.name!r} exists already")
            if proxy_groupid is None:
                proxy_groupid = int(c.execute(sa.insert(t.proxy_groups).values(**values)).inserted_primary_key[0])
            elif c.execute(sa.update(t.proxy_groups).where(g.proxy_groupid == proxy_groupid)
                           .values(**values)).rowcount == 0:
                raise ConfigError(f"proxy_groupid: no proxy group {proxy_groupid}")
            self._bump_version(c)
            return proxy_groupid

    def delete_proxy_groups(self, ids: list[int]) -> list[str]:
        """Delete the groups: their hosts go back to the server, their proxies stay, in no group. The names
        of those deleted."""
        g = t.proxy_groups.c
        with self.engine.begin() as c:
            names = list(c.execute(sa.select(g.name).where(g.proxy_groupid.in_(ids)).order_by(g.name)).scalars())
            if names:
                c.execute(sa.update(t.hosts).where(t.hosts.c.proxy_groupid.in_(ids))
                          .values(proxyid=None, proxy_groupid=None))
                c.execute(sa.update(t.proxies).where(t.proxies.c.proxy_groupid.in_(ids)).values(proxy_groupid=None))
                c.execute(sa.delete(t.proxy_groups).where(g.proxy_groupid.in_(ids)))
                self._bump_version(c)
            return names

    def proxy_groups_of_proxies(self) -> dict[int, str]:
        """proxyid -> the name of its group (proxies in none are left out)."""
        with self.engine.connect() as c:
            return dict(c.execute(sa.select(t.proxies.c.proxyid, t.proxy_groups.c.name).join(
                t.proxy_groups, t.proxy_groups.c.proxy_groupid == t.proxies.c.proxy_groupid)).all())

    def host_proxy_group_names(self, hostids: list[int] | None = None) -> dict[int, str]:
        """hostid -> the name of its proxy group (hosts in none are left out)."""
        q = (sa.select(t.hosts.c.hostid, t.proxy_groups.c.name)
             .join(t.proxy_groups, t.proxy_groups.c.proxy_groupid == t.hosts.c.proxy_groupid))
        if hostids is not None:
            q = q.where(t.hosts.c.hostid.in_(hostids))
        with self.engine.connect() as c:
            return {int(r.hostid): r.name for r in c.execute(q)}

    @staticmethod
    def _bump_version(c: Connection) -> None:
        c.execute(sa.update(t.config_version).where(t.config_version.c.id == 1)
                  .values(version=t.config_version.c.version + 1))
