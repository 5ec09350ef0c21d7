"""Reads for the web UI and the API's alerting configuration: media types, actions, maintenance, users'
media and lockout (SQLAlchemy Core). Lists are paginated and searched in the query; one object is
read as the alerts room sees it (ConfigRepo.alerting), so a form shows exactly what an export writes.
Writes go through ConfigRepo.save_alerting / delete_alerting / save_user.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from vigil.server.config import reads
from vigil.server.config import tables as t
from vigil.server.config.alerting import ActionSpec, MaintenanceSpec, MediaTypeSpec, UserSpec
from vigil.server.config.browse import Page, Scope, _search
from vigil.server.config.repo import ConfigRepo
from vigil.server.config.tables import HostStatus, MediaKind


@dataclass(frozen=True, slots=True)
class MediaTypeRow:
    mediatypeid: int
    name: str
    kind: MediaKind
    enabled: bool
    description: str
    actions: int  # actions with an operation sending through it


@dataclass(frozen=True, slots=True)
class ActionRow:
    actionid: int
    name: str
    enabled: bool
    eventsource: int
    conditions: int
    operations: int


@dataclass(frozen=True, slots=True)
class MaintenanceRow:
    maintenanceid: int
    name: str
    collect_data: bool
    active_since: int
    active_till: int
    description: str
    hosts: int
    groups: int


@dataclass(frozen=True, slots=True)
class UserState:
    userid: int
    username: str
    attempt_failed: int
    attempt_clock: int


def _page(c: sa.Connection, q: sa.Select, limit: int | None, offset: int) -> tuple[int, list]:
    total = int(c.execute(sa.select(sa.func.count()).select_from(q.order_by(None).subquery())).scalar() or 0)
    if limit is not None:
        q = q.limit(limit).offset(offset)
    return total, list(c.execute(q))


class AlertingBrowse:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def media_types(self, *, search: str = "", kind: int | None = None, enabled: bool | None = None,
                    limit: int | None = 100, offset: int = 0) -> Page:
        used = (sa.select(sa.func.count(sa.distinct(t.operations.c.actionid)))
                .where(t.operations.c.mediatypeid == t.media_types.c.mediatypeid).scalar_subquery())
        q = sa.select(t.media_types, used.label("used")).order_by(t.media_types.c.name)
        if search:
            q = q.where(_search(t.media_types.c.name, search))
        if kind is not None:
            q = q.where(t.media_types.c.type == kind)
        if enabled is not None:
            q = q.where(t.media_types.c.status == (0 if enabled else 1))
        with reads.connect(self.engine) as c:
            total, rows = _page(c, q, limit, offset)
        return Page(total, [MediaTypeRow(int(r.mediatypeid), r.name, MediaKind(r.type), r.status == 0, r.description,
                                         int(r.used or 0)) for r in rows])

    def media_type_names(self) -> list[tuple[int, str]]:
        with reads.connect(self.engine) as c:
            return [(int(a), b) for a, b in c.execute(sa.select(t.media_types.c.mediatypeid, t.media_types.c.name)
                                                      .order_by(t.media_types.c.name))]

    def media_type(self, mediatypeid: int) -> MediaTypeSpec | None:
        return ConfigRepo(self.engine).alerting().media_types.get(mediatypeid)

    def actions(self, *, search: str = "", enabled: bool | None = None, limit: int | None = 100,
                offset: int = 0) -> Page:
        conds = (sa.select(sa.func.count()).where(t.action_conditions.c.actionid == t.actions.c.actionid)
                 .scalar_subquery())
        ops = sa.select(sa.func.count()).where(t.operations.c.actionid == t.actions.c.actionid).scalar_subquery()
        q = sa.select(t.actions, conds.label("nconds"), ops.label("nops")).order_by(t.actions.c.name)
        if search:
            q = q.where(_search(t.actions.c.name, search))
        if enabled is not None:
            q = q.where(t.actions.c.status == (0 if enabled else 1))
        with reads.connect(self.engine) as c:
            total, rows = _page(c, q, limit, offset)
        return Page(total, [ActionRow(int(r.actionid), r.name, r.status == 0, r.eventsource, int(r.nconds),
                                      int(r.nops)) for r in rows])

    def action(self, actionid: int) -> ActionSpec | None:
        return ConfigRepo(self.engine).alerting().actions.get(actionid)

    def maintenances(self, *, search: str = "", limit: int | None = 100, offset: int = 0) -> Page:
        mh, mg = t.maintenances_hosts, t.maintenances_groups
        hosts = sa.select(sa.func.count()).where(mh.c.maintenanceid == t.maintenances.c.maintenanceid)
        groups = sa.select(sa.func.count()).where(mg.c.maintenanceid == t.maintenances.c.maintenanceid)
        q = sa.select(t.maintenances, hosts.scalar_subquery().label("nh"),
                      groups.scalar_subquery().label("ng")).order_by(t.maintenances.c.name)
        if search:
            q = q.where(_search(t.maintenances.c.name, search))
        with reads.connect(self.engine) as c:
            total, rows = _page(c, q, limit, offset)
        return Page(total, [MaintenanceRow(int(r.maintenanceid), r.name, r.maintenance_type == 0, r.active_since,
                                           r.active_till, r.description, int(r.nh), int(r.ng)) for r in rows])

    def maintenance(self, maintenanceid: int) -> MaintenanceSpec | None:
        return ConfigRepo(self.engine).alerting().maintenances.get(maintenanceid)

    def user_spec(self, userid: int) -> UserSpec | None:
        return ConfigRepo(self.engine).alerting().users.get(userid)

    def user_states(self) -> dict[int, UserState]:
        with reads.connect(self.engine) as c:
            return {int(r.userid): UserState(int(r.userid), r.username, r.attempt_failed, r.attempt_clock)
                    for r in c.execute(sa.select(t.users.c.userid, t.users.c.username, t.users.c.attempt_failed,
                                                 t.users.c.attempt_clock))}

    def user_group_names(self) -> list[tuple[int, str]]:
        with reads.connect(self.engine) as c:
            return [(int(a), b) for a, b in c.execute(sa.select(t.usrgrp.c.usrgrpid, t.usrgrp.c.name)
                                                      .order_by(t.usrgrp.c.name))]

    def host_picks(self, scope: Scope | None = None, limit: int = 2000) -> list[tuple[str, str]]:
        """(host name, visible name) of the hosts in scope, for pickers that refer to hosts by name."""
        h = t.hosts.c
        scope = scope or Scope()
        q = (sa.select(h.host, h.name).where(h.status != HostStatus.TEMPLATE, scope.hosts_clause(h.hostid))
             .order_by(h.host).limit(limit))
        with reads.connect(self.engine) as c:
            return [(a, b or a) for a, b in c.execute(q)]
