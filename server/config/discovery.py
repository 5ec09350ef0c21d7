"""The SQL of low-level discovery (a mixin of ConfigRepo): rules and prototypes written at import,
copied to linked hosts, exported, and `discover()`, which applies one value of a rule.

A template's rule is copied to each linked host (flags 1, templateid: the template's rule) as
its items are, so the host polls it; its prototypes, filter, macro paths and lifetime stay on the
rule where they are written (the template's), which `discover()` reads through templateid.
Discovered items, triggers and graphs (flags 4) belong to the host; item_discovery,
trigger_discovery and graph_discovery link each to its prototype, with when it was last found and,
once lost, when it is deleted (ts_delete = last found + lifetime).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from vigil.server.config import tables as t
from vigil.server.config.lld import (
    Condition,
    DiscoveryError,
    DiscoveryRuleSpec,
    GraphItem,
    GraphSpec,
    LldFilter,
    check_regex,
    lifetime_seconds,
    mask_lld,
    masked_trigger,
    row_passes,
    rows_from_value,
    substitute,
    substitute_key,
)
from vigil.server.config.model import ConfigError, ItemSpec, PreprocStep, resolve_macros
from vigil.server.config.tables import Flags, HostStatus

if TYPE_CHECKING:
    from vigil.server.config.repo import ImportReport

log = logging.getLogger("vigil.lld")


@dataclass
class DiscoveryResult:
    rows: int = 0  # rows in the value
    kept: int = 0  # rows the filter kept
    created: int = 0  # items, triggers and graphs made
    updated: int = 0
    lost: int = 0  # marked lost (deleted after the lifetime)
    deleted: int = 0
    errors: list[str] = field(default_factory=list)  # prototypes that could not be applied to a row


class DiscoveryConfig:
    engine: Any

    # --- import -------------------------------------------------------------------------------------

    def _write_rules(self, c: Connection, hostid: int, owner: str, template: bool, rules: list[DiscoveryRuleSpec],
                     report: ImportReport, where: str, authoritative: bool) -> None:
        keep = []
        for i, r in enumerate(rules):
            w = f"{where}.discovery_rules[{i}]"
            try:
                ruleid = self._upsert_item(c, hostid, r.rule, report)  # type: ignore[attr-defined]
            except ConfigError as e:
                raise ConfigError(f"{w}.key: {e}") from None
            keep.append(ruleid)
            c.execute(sa.update(t.items).where(t.items.c.itemid == ruleid).values(
                flags=int(Flags.RULE), lifetime=r.lifetime, evaltype=r.filter.evaltype, formula=r.filter.formula))
            c.execute(sa.delete(t.item_condition).where(t.item_condition.c.itemid == ruleid))
            if r.filter.conditions:
                c.execute(sa.insert(t.item_condition), [
                    {"itemid": ruleid, "operator": x.operator, "macro": x.macro, "value": x.value,
                     "formulaid": x.formulaid} for x in r.filter.conditions])
            c.execute(sa.delete(t.lld_macro_path).where(t.lld_macro_path.c.itemid == ruleid))
            if r.macro_paths:
                c.execute(sa.insert(t.lld_macro_path), [{"itemid": ruleid, "lld_macro": m, "path": p}
                                                        for m, p in r.macro_paths.items()])
            self._write_prototypes(c, hostid, ruleid, owner, template, r, report, w)
        self.resolve_masters(c, hostid, [r.rule for r in rules], f"{where}.discovery_rules")  # type: ignore[attr-defined]
        if authoritative:
            gone = list(c.execute(sa.select(t.items.c.itemid).where(
                t.items.c.hostid == hostid, t.items.c.flags == int(Flags.RULE), t.items.c.templateid.is_(None),
                t.items.c.itemid.not_in(keep))).scalars())
            for ruleid in gone:
                self._delete_rule(c, ruleid, report)

    def _prototype_ids(self, c: Connection, ruleid: int) -> dict[str, int]:
        return dict(c.execute(sa.select(t.items.c.key_, t.items.c.itemid)
                              .join(t.item_discovery, t.item_discovery.c.itemid == t.items.c.itemid)
                              .where(t.item_discovery.c.parent_itemid == ruleid,
                                     t.items.c.flags == int(Flags.PROTOTYPE))).all())

    def _delete_discovered(self, c: Connection, parents: list[int], report: ImportReport | None = None) -> int:
        """Delete what was discovered from these prototypes (items, and the triggers reading them)."""
        if not parents:
            return 0
        found = sa.select(t.item_discovery.c.itemid).where(t.item_discovery.c.parent_itemid.in_(parents))
        n = self._delete_triggers_reading(c, found)  # type: ignore[attr-defined]
        ids = list(c.execute(found).scalars())
        if ids:
            c.execute(sa.delete(t.items).where(t.items.c.itemid.in_(ids)))
        self._drop_empty_graphs(c)
        if report is not None:
            report.items_deleted += len(ids)
            report.triggers_deleted += n
        return len(ids)

    def _drop_empty_graphs(self, c: Connection) -> None:
        c.execute(sa.delete(t.graphs).where(t.graphs.c.graphid.not_in(sa.select(t.graphs_items.c.graphid))))

    def _delete_rule(self, c: Connection, ruleid: int, report: ImportReport) -> None:
        protos = list(self._prototype_ids(c, ruleid).values())
        copies = list(c.execute(sa.select(t.items.c.itemid).where(t.items.c.templateid == ruleid)).scalars())
        for copy in copies:
            self._delete_discovered_on(c, copy, protos, report)
        self._delete_discovered(c, protos, report)
        report.triggers_deleted += self._delete_triggers_reading(c, protos)  # type: ignore[attr-defined]
        c.execute(sa.delete(t.items).where(t.items.c.itemid.in_(protos + [ruleid])))
        self._drop_empty_graphs(c)

    def _delete_discovered_on(self, c: Connection, rulecopy: int, protos: list[int], report: ImportReport) -> None:
        hostid = c.execute(sa.select(t.items.c.hostid).where(t.items.c.itemid == rulecopy)).scalar()
        found = (sa.select(t.item_discovery.c.itemid).join(t.items, t.items.c.itemid == t.item_discovery.c.itemid)
                 .where(t.item_discovery.c.parent_itemid.in_(protos), t.items.c.hostid == hostid))
        report.triggers_deleted += self._delete_triggers_reading(c, found)  # type: ignore[attr-defined]
        ids = list(c.execute(found).scalars())
        if ids:
            report.items_deleted += c.execute(sa.delete(t.items).where(t.items.c.itemid.in_(ids))).rowcount

    def _write_prototypes(self, c: Connection, hostid: int, ruleid: int, owner: str, template: bool,
                          r: DiscoveryRuleSpec, report: ImportReport, where: str) -> None:
        have = self._prototype_ids(c, ruleid)
        want = {p.key for p in r.item_prototypes}
        gone = [i for k, i in have.items() if k not in want]
        if gone:
            self._delete_discovered(c, gone, report)
            report.triggers_deleted += self._delete_triggers_reading(c, gone)  # type: ignore[attr-defined]
            report.items_deleted += c.execute(sa.delete(t.items).where(t.items.c.itemid.in_(gone))).rowcount
        for j, p in enumerate(r.item_prototypes):
            row = c.execute(sa.select(t.items.c.itemid, t.items.c.flags).where(
                t.items.c.hostid == hostid, t.items.c.key_ == p.key)).first()
            if row is not None and row.flags != Flags.PROTOTYPE:
                raise ConfigError(f"{where}.item_prototypes[{j}].key: {p.key!r} is the key of an item already")
            itemid = self._upsert_item(c, hostid, p, report)  # type: ignore[attr-defined]
            c.execute(sa.update(t.items).where(t.items.c.itemid == itemid).values(flags=int(Flags.PROTOTYPE)))
            if row is None:
                c.execute(sa.insert(t.item_discovery).values(itemid=itemid, parent_itemid=ruleid, key_=""))
        self.resolve_masters(c, hostid, r.item_prototypes, f"{where}.item_prototypes")  # type: ignore[attr-defined]
        # trigger prototypes: by name among the rule's (their items are the rule's prototypes)
        cache: dict[str, Any] = {}
        existing = self._existing_triggers(c, hostid)  # type: ignore[attr-defined]
        mine = set(self._trigger_prototypes_of(c, ruleid))
        keep = []
        for j, tr in enumerate(r.trigger_prototypes):
            w = f"{where}.trigger_prototypes[{j}]"
            row = existing.get(tr.name)
            if row is not None and row.triggerid not in mine:
                raise ConfigError(f"{w}.name: {tr.name!r} is the name of another trigger of {owner!r}")
            itemids = self._trigger_itemids(c, owner, template, masked_trigger(tr), w, cache)  # type: ignore[attr-defined]
            protos = set(self._prototype_ids(c, ruleid).values())
            if not protos.intersection(itemids):
                raise ConfigError(f"{w}.expression: a trigger prototype reads at least one of the rule's item "
                                  "prototypes")
            trid = self._upsert_trigger(c, hostid, tr, itemids, report, w, existing=existing)  # type: ignore[attr-defined]
            c.execute(sa.update(t.triggers).where(t.triggers.c.triggerid == trid).values(flags=int(Flags.PROTOTYPE)))
            keep.append(trid)
        gone_tr = [x for x in mine if x not in keep]
        if gone_tr:
            report.triggers_deleted += c.execute(sa.delete(t.triggers).where(
                t.triggers.c.triggerid.in_(gone_tr))).rowcount
        # graph prototypes
        protos_by_key = self._prototype_ids(c, ruleid)
        plain = dict(c.execute(sa.select(t.items.c.key_, t.items.c.itemid).where(
            t.items.c.hostid == hostid, t.items.c.flags == 0)).all())
        mine_g = self._graph_prototypes_of(c, ruleid)
        keep_g = []
        for j, g in enumerate(r.graph_prototypes):
            w = f"{where}.graph_prototypes[{j}]"
            ids = []
            for k, gi in enumerate(g.items):
                iid = protos_by_key.get(gi.key, plain.get(gi.key))
                if iid is None:
                    raise ConfigError(f"{w}.items[{k}].key: {gi.key!r} is not an item prototype of the rule nor an "
                                      f"item of {owner!r}")
                ids.append(iid)
            row = c.execute(sa.select(t.graphs.c.graphid).where(t.graphs.c.hostid == hostid,
                                                                 t.graphs.c.name == g.name)).first()
            if row is not None and row.graphid not in mine_g:
                raise ConfigError(f"{w}.name: {g.name!r} is the name of another graph of {owner!r}")
            gid = self._put_graph(c, hostid, g, ids, int(Flags.PROTOTYPE), row.graphid if row else None)
            keep_g.append(gid)
        gone_g = [x for x in mine_g if x not in keep_g]
        if gone_g:
            c.execute(sa.delete(t.graphs).where(t.graphs.c.graphid.in_(gone_g)))

    def _put_graph(self, c: Connection, hostid: int, g: GraphSpec, itemids: list[int], flags: int,
                   graphid: int | None) -> int:
        values = {"name": g.name, "width": g.width, "height": g.height, "graphtype": g.graphtype, "flags": flags}
        if graphid is None:
            graphid = int(c.execute(sa.insert(t.graphs).values(hostid=hostid, **values)).inserted_primary_key[0])
        else:
            c.execute(sa.update(t.graphs).where(t.graphs.c.graphid == graphid).values(**values))
        c.execute(sa.delete(t.graphs_items).where(t.graphs_items.c.graphid == graphid))
        c.execute(sa.insert(t.graphs_items), [
            {"graphid": graphid, "itemid": iid, "sortorder": n, "color": gi.color, "drawtype": gi.drawtype,
             "yaxisside": gi.yaxisside, "calc_fnc": gi.calc_fnc}
            for n, (gi, iid) in enumerate(zip(g.items, itemids, strict=True))])
        return graphid

    def _trigger_prototypes_of(self, c: Connection, ruleid: int) -> list[int]:
        protos = sa.select(t.item_discovery.c.itemid).where(t.item_discovery.c.parent_itemid == ruleid)
        return list(c.execute(sa.select(t.triggers.c.triggerid).distinct()
                              .join(t.trigger_items, t.trigger_items.c.triggerid == t.triggers.c.triggerid)
                              .where(t.triggers.c.flags == int(Flags.PROTOTYPE),
                                     t.trigger_items.c.itemid.in_(protos))).scalars())

    def _graph_prototypes_of(self, c: Connection, ruleid: int) -> list[int]:
        protos = sa.select(t.item_discovery.c.itemid).where(t.item_discovery.c.parent_itemid == ruleid)
        return list(c.execute(sa.select(t.graphs.c.graphid).distinct()
                              .join(t.graphs_items, t.graphs_items.c.graphid == t.graphs.c.graphid)
                              .where(t.graphs.c.flags == int(Flags.PROTOTYPE),
                                     t.graphs_items.c.itemid.in_(protos))).scalars())

    def template_rules(self, c: Connection, templateid: int) -> tuple[list[Any], list[tuple[ItemSpec, int]]]:
        """A template's discovery rules: their items rows and specs. (ConfigRepo._copy_template_items
        copies them to linked hosts with the template's items, flags, lifetime and filter included.)"""
        rows = c.execute(sa.select(t.items).where(t.items.c.hostid == templateid, t.items.c.flags == int(Flags.RULE))
                         .order_by(t.items.c.itemid)).all()
        return rows, self._item_specs(c, rows)  # type: ignore[attr-defined]

    def _unlink_discovered(self, c: Connection, hostid: int, templateid: int, report: ImportReport) -> None:
        """Before a template's rules leave a host: what they discovered there goes too."""
        rules = sa.select(t.items.c.itemid).where(t.items.c.hostid == templateid, t.items.c.flags == int(Flags.RULE))
        protos = list(c.execute(sa.select(t.item_discovery.c.itemid)
                                .where(t.item_discovery.c.parent_itemid.in_(rules))).scalars())
        if not protos:
            return
        for copy in c.execute(sa.select(t.items.c.itemid).where(t.items.c.hostid == hostid,
                                                                t.items.c.templateid.in_(rules))).scalars().all():
            self._delete_discovered_on(c, copy, protos, report)
        self._drop_empty_graphs(c)

    # --- export -------------------------------------------------------------------------------------

    def rules_of(self, c: Connection, hostid: int) -> list[DiscoveryRuleSpec]:
        """A host's or template's own discovery rules with their prototypes."""
        rows = c.execute(sa.select(t.items).where(t.items.c.hostid == hostid, t.items.c.flags == int(Flags.RULE),
                                                  t.items.c.templateid.is_(None)).order_by(t.items.c.itemid)).all()
        out = []
        for (spec, ruleid), r in zip(self._item_specs(c, rows), rows, strict=True):  # type: ignore[attr-defined]
            out.append(self._rule_spec(c, ruleid, spec, r))
        return out

    def _rule_spec(self, c: Connection, ruleid: int, spec: ItemSpec, r: Any) -> DiscoveryRuleSpec:
        from vigil.server.config.tables import ValueType

        spec.value_type = ValueType.TEXT
        conds = [Condition(x.macro, x.value, x.operator, x.formulaid) for x in c.execute(
            sa.select(t.item_condition).where(t.item_condition.c.itemid == ruleid)
            .order_by(t.item_condition.c.item_conditionid))]
        paths = dict(c.execute(sa.select(t.lld_macro_path.c.lld_macro, t.lld_macro_path.c.path)
                               .where(t.lld_macro_path.c.itemid == ruleid)
                               .order_by(t.lld_macro_path.c.lld_macro_pathid)).all())
        prows = c.execute(sa.select(t.items).join(t.item_discovery, t.item_discovery.c.itemid == t.items.c.itemid)
                          .where(t.item_discovery.c.parent_itemid == ruleid, t.items.c.flags == int(Flags.PROTOTYPE))
                          .order_by(t.items.c.itemid)).all()
        protos = self._item_specs(c, prows)  # type: ignore[attr-defined]
        trids = set(self._trigger_prototypes_of(c, ruleid))
        triggers = [s for s, trid in self._triggers_of(c, r.hostid, flags=int(Flags.PROTOTYPE))  # type: ignore[attr-defined]
                    if trid in trids]
        graphs = []
        for gid in sorted(self._graph_prototypes_of(c, ruleid)):
            graphs.append(self._graph_spec(c, gid))
        return DiscoveryRuleSpec(rule=spec, lifetime=r.lifetime, macro_paths=paths,
                                 filter=LldFilter(r.evaltype, r.formula, conds),
                                 item_prototypes=[s for s, _ in protos], trigger_prototypes=triggers,
                                 graph_prototypes=graphs)

    def _graph_spec(self, c: Connection, graphid: int) -> GraphSpec:
        g = c.execute(sa.select(t.graphs).where(t.graphs.c.graphid == graphid)).one()
        items = [GraphItem(r.key_, r.color, r.drawtype, r.yaxisside, r.calc_fnc) for r in c.execute(
            sa.select(t.graphs_items, t.items.c.key_).join(t.items, t.items.c.itemid == t.graphs_items.c.itemid)
            .where(t.graphs_items.c.graphid == graphid).order_by(t.graphs_items.c.sortorder))]
        return GraphSpec(g.name, g.width, g.height, g.graphtype, items)

    def graphs_of(self, host: str) -> list[tuple[GraphSpec, int]]:
        """The graphs of a host (discovered ones included), with their flags."""
        with self.engine.connect() as c:
            hid = c.execute(sa.select(t.hosts.c.hostid).where(t.hosts.c.host == host)).scalar()
            rows = c.execute(sa.select(t.graphs.c.graphid, t.graphs.c.flags).where(t.graphs.c.hostid == hid)
                             .order_by(t.graphs.c.name)).all()
            return [(self._graph_spec(c, r.graphid), r.flags) for r in rows]

    # --- running a rule -----------------------------------------------------------------------------

    def discover(self, ruleid: int, value: str, now: int) -> DiscoveryResult:
        """Apply one value of a host's discovery rule: make or update what its prototypes give for each
        row the filter keeps, mark what was not found lost and delete what was lost longer than the
        rule's lifetime. Raises DiscoveryError (the rule is then not supported) for a bad value."""
        with self.engine.begin() as c:
            rule = c.execute(sa.select(t.items, t.hosts.c.host, t.hosts.c.status.label("host_status"))
                             .join(t.hosts, t.hosts.c.hostid == t.items.c.hostid)
                             .where(t.items.c.itemid == ruleid, t.items.c.flags == int(Flags.RULE))).first()
            if rule is None or rule.host_status == HostStatus.TEMPLATE:
                raise DiscoveryError(f"item {ruleid} is not a discovery rule of a host")
            root = c.execute(sa.select(t.items).where(t.items.c.itemid == (rule.templateid or ruleid))).one()
            spec = self._rule_spec(c, root.itemid, self._item_specs(c, [root])[0][0], root)  # type: ignore[attr-defined]
            macros = self.macros_for_conn(c, rule.hostid)
            lifetime = lifetime_seconds(resolve_macros(spec.lifetime, macros))
            values = []
            for i, cond in enumerate(spec.filter.conditions):
                v = resolve_macros(cond.value, macros)
                if cond.operator in (8, 9):
                    try:
                        check_regex(v, f"filter.conditions[{i}].value")
                    except ConfigError as e:
                        raise DiscoveryError(str(e)) from None
                values.append(v)
            rows = rows_from_value(value, spec.macro_paths)
            kept = [row for row in rows if row_passes(spec.filter, row, values)]
            res = DiscoveryResult(rows=len(rows), kept=len(kept))
            self._discover_items(c, rule, root, spec, kept, now, lifetime, res)
            if res.created or res.updated or res.deleted or res.lost:
                c.execute(sa.update(t.config_version).where(t.config_version.c.id == 1)
                          .values(version=t.config_version.c.version + 1))
            return res

    def macros_for_conn(self, c: Connection, hostid: int) -> dict[str, str]:
        out = dict(c.execute(sa.select(t.global_macros.c.macro, t.global_macros.c.value)).all())
        for tid in c.execute(sa.select(t.hosts_templates.c.templateid).where(t.hosts_templates.c.hostid == hostid)
                             .order_by(t.hosts_templates.c.templateid.desc())).scalars().all():
            out.update(c.execute(sa.select(t.host_macros.c.macro, t.host_macros.c.value)
                                 .where(t.host_macros.c.hostid == tid)).all())
        out.update(c.execute(sa.select(t.host_macros.c.macro, t.host_macros.c.value)
                             .where(t.host_macros.c.hostid == hostid)).all())
        return out

    def _discover_items(self, c: Connection, rule: Any, root: Any, spec: DiscoveryRuleSpec,
                        rows: list[dict[str, str]], now: int, lifetime: int, res: DiscoveryResult) -> None:
        from vigil.agent.protocol.itemkey import ItemKeyError
        from vigil.agent.protocol.itemkey import parse as parse_key
        from vigil.server.config.repo import ImportReport, poll_row

        hostid = rule.hostid
        protos = self._prototype_ids(c, root.itemid)  # key -> prototype itemid
        report = ImportReport()
        existing = {r.itemid: r for r in c.execute(
            sa.select(t.items.c.itemid, t.items.c.key_, t.items.c.flags, t.item_discovery.c.parent_itemid,
                      t.item_discovery.c.ts_delete)
            .join(t.item_discovery, t.item_discovery.c.itemid == t.items.c.itemid, isouter=True)
            .where(t.items.c.hostid == hostid))}
        by_key = {r.key_: r for r in existing.values()}
        mine = {i for i, r in existing.items() if r.flags == Flags.DISCOVERED and r.parent_itemid in protos.values()}
        old_specs = {iid: s for s, iid in self._item_specs(c, c.execute(  # type: ignore[attr-defined]
            sa.select(t.items).where(t.items.c.itemid.in_(mine))).all())} if mine else {}
        found: set[int] = set()
        keys_of_row: list[dict[str, int]] = []  # per row: prototype key -> discovered itemid
        seen: list[int] = []  # discovered before and found again: lastcheck now, no longer lost
        batch = _Inserts()  # rows of what is new, written together
        new: dict[str, tuple[ItemSpec, int, str, dict[str, int]]] = {}  # key -> (item, prototype, its key, row's)
        deps: list[tuple[int, str]] = []  # (itemid, master key) of discovered dependent items
        for row in rows:
            made: dict[str, int] = {}
            for pkey, pid in protos.items():
                proto = next(s for s in spec.item_prototypes if s.key == pkey)
                key = substitute_key(pkey, row)
                try:
                    parse_key(key)
                except ItemKeyError as e:
                    res.errors.append(f"item prototype {pkey!r}: {key!r} is not a valid key: {e}")
                    continue
                item = _substituted_item(proto, key, row)
                have = by_key.get(key)
                if have is not None and (have.flags != Flags.DISCOVERED or have.parent_itemid != pid):
                    res.errors.append(f"item prototype {pkey!r}: an item with key {key!r} exists on the host "
                                      "already")
                    continue
                if (have is not None and have.itemid in found) or key in new:
                    continue  # two rows giving the same key: the first one wins
                if have is None:  # inserted below, all at once
                    new[key] = (item, pid, pkey, made)
                    continue
                else:
                    itemid = have.itemid
                    old = old_specs.get(itemid)
                    if old is None or dataclasses.replace(old, poll=dataclasses.replace(old.poll, master_item="")) \
                            != dataclasses.replace(item, poll=dataclasses.replace(item.poll, master_item="")):
                        values = _plain_row(item) | poll_row(c, hostid, item)
                        c.execute(sa.update(t.items).where(t.items.c.itemid == itemid).values(**values))
                        self._set_tags(c, itemid, item.tags)  # type: ignore[attr-defined]
                        self.set_preprocessing(c, itemid, item.poll.preprocessing)  # type: ignore[attr-defined]
                        res.updated += 1
                    if have.ts_delete:
                        res.updated += 1  # found again
                    seen.append(itemid)
                found.add(itemid)
                made[pkey] = itemid
                if item.poll.master_item:
                    deps.append((itemid, item.poll.master_item))
            keys_of_row.append(made)
        if new:
            extra = {"flags": int(Flags.DISCOVERED), "hostid": hostid}
            rows_new = [_plain_row(item) | poll_row(c, hostid, item) | extra for item, _, _, _ in new.values()]
            for i in range(0, len(rows_new), 1000):
                c.execute(sa.insert(t.items), rows_new[i:i + 1000])
            ids: dict[str, int] = {}
            keys_new = list(new)
            for i in range(0, len(keys_new), 500):
                ids.update(c.execute(sa.select(t.items.c.key_, t.items.c.itemid).where(
                    t.items.c.hostid == hostid, t.items.c.key_.in_(keys_new[i:i + 500]))).all())
            for key, (item, pid, pkey, made) in new.items():
                itemid = ids[key]
                batch.add(t.item_discovery, itemid=itemid, parent_itemid=pid, key_=pkey, lastcheck=now, ts_delete=0)
                for k, v in item.tags:
                    batch.add(t.item_tags, itemid=itemid, tag=k, value=v)
                for n, x in enumerate(item.poll.preprocessing):
                    batch.add(t.item_preproc, itemid=itemid, step=n + 1, type=x.type, params=x.params,
                              error_handler=x.error_handler, error_handler_params=x.error_handler_params)
                by_key[key] = _Row(itemid, key, int(Flags.DISCOVERED), pid, 0)
                found.add(itemid)
                made[pkey] = itemid
                if item.poll.master_item:
                    deps.append((itemid, item.poll.master_item))
                res.created += 1
        _found_again(c, t.item_discovery, t.item_discovery.c.itemid, seen, now)
        batch.flush(c)
        keys = {r.key_: r.itemid for r in by_key.values()}
        for itemid, master_key in deps:
            master = keys.get(master_key)
            if master is None:
                res.errors.append(f"discovered item {itemid}: no master item {master_key!r} on the host")
                continue
            c.execute(sa.update(t.items).where(t.items.c.itemid == itemid, sa.or_(
                t.items.c.master_itemid.is_(None), t.items.c.master_itemid != master)).values(master_itemid=master))
        # triggers
        host = rule.host
        owner = c.execute(sa.select(t.hosts.c.host).where(t.hosts.c.hostid == root.hostid)).scalar_one()
        tprotos = [(s, trid) for s, trid in self._triggers_of(c, root.hostid, flags=int(Flags.PROTOTYPE))  # type: ignore[attr-defined]
                   if trid in set(self._trigger_prototypes_of(c, root.itemid))]
        tfound: set[int] = set()
        tmine = dict(c.execute(sa.select(t.trigger_discovery.c.triggerid, t.trigger_discovery.c.parent_triggerid)
                               .join(t.triggers, t.triggers.c.triggerid == t.trigger_discovery.c.triggerid)
                               .where(t.triggers.c.hostid == hostid,
                                      t.trigger_discovery.c.parent_triggerid.in_([x for _, x in tprotos]))).all()) \
            if tprotos else {}
        tby_name = dict(c.execute(sa.select(t.triggers.c.description, t.triggers.c.triggerid)
                                  .where(t.triggers.c.hostid == hostid)).all())
        tcur = {r.triggerid: r for r in c.execute(sa.select(t.triggers).where(
            t.triggers.c.hostid == hostid, t.triggers.c.flags == int(Flags.DISCOVERED)))}
        tseen: list[int] = []
        for row in rows:
            for tspec, ptrid in tprotos:
                try:
                    expr_items: list[int] = []
                    texts = []
                    for text in (tspec.expression, tspec.recovery_expression if tspec.recovery_mode == 1 else ""):
                        out, funcs = _prototype_expression(text, owner, host)
                        for fhost, fkey in funcs:
                            key = substitute_key(fkey, row)
                            if "{#" in fkey:
                                out = out.replace(f"/{fhost}/{fkey}", f"/{fhost}/{key}")
                            iid = keys.get(key) if fhost == host else None
                            if iid is None:
                                raise ConfigError(f"no item {key!r} on the host")
                            expr_items.append(iid)
                        texts.append(substitute(out, row))
                    new = dataclasses.replace(
                        tspec, name=substitute(tspec.name, row), expression=texts[0], recovery_expression=texts[1],
                        description=substitute(tspec.description, row), opdata=substitute(tspec.opdata, row),
                        tags=[(substitute(k, row), substitute(v, row)) for k, v in tspec.tags], dependencies=[])
                except ConfigError as e:
                    res.errors.append(f"trigger prototype {tspec.name!r}: {e}")
                    continue
                trid = tby_name.get(new.name)
                if trid is not None and tmine.get(trid) != ptrid:
                    if trid not in tfound:
                        res.errors.append(f"trigger prototype {tspec.name!r}: a trigger {new.name!r} exists on the "
                                          "host already")
                    continue
                values = self._trigger_values(new) | {"flags": int(Flags.DISCOVERED)}  # type: ignore[attr-defined]
                if trid is None:
                    trid = int(c.execute(sa.insert(t.triggers).values(hostid=hostid, **values))
                               .inserted_primary_key[0])
                    batch.add(t.trigger_discovery, triggerid=trid, parent_triggerid=ptrid, lastcheck=now, ts_delete=0)
                    for k, v in new.tags:
                        batch.add(t.trigger_tags, triggerid=trid, tag=k, value=v)
                    for i in dict.fromkeys(expr_items):
                        batch.add(t.trigger_items, triggerid=trid, itemid=i)
                    tby_name[new.name] = trid
                    tmine[trid] = ptrid
                    res.created += 1
                    tfound.add(trid)
                    continue
                else:
                    cur = tcur.get(trid)
                    changed = cur is None or any(getattr(cur, k) != v for k, v in values.items())
                    if changed:
                        c.execute(sa.update(t.triggers).where(t.triggers.c.triggerid == trid).values(**values))
                        res.updated += 1
                    tseen.append(trid)
                if changed:
                    c.execute(sa.delete(t.trigger_tags).where(t.trigger_tags.c.triggerid == trid))
                    if new.tags:
                        c.execute(sa.insert(t.trigger_tags), [{"triggerid": trid, "tag": k, "value": v}
                                                              for k, v in new.tags])
                    c.execute(sa.delete(t.trigger_items).where(t.trigger_items.c.triggerid == trid))
                    c.execute(sa.insert(t.trigger_items), [{"triggerid": trid, "itemid": i}
                                                           for i in dict.fromkeys(expr_items)])
                tfound.add(trid)
        _found_again(c, t.trigger_discovery, t.trigger_discovery.c.triggerid, tseen, now)
        batch.flush(c)
        # graphs
        gprotos = [(gid, self._graph_spec(c, gid)) for gid in sorted(self._graph_prototypes_of(c, root.itemid))]
        proto_ids = {v: k for k, v in protos.items()}
        gmine = dict(c.execute(sa.select(t.graph_discovery.c.graphid, t.graph_discovery.c.parent_graphid)
                               .join(t.graphs, t.graphs.c.graphid == t.graph_discovery.c.graphid)
                               .where(t.graphs.c.hostid == hostid)).all())
        gby_name = dict(c.execute(sa.select(t.graphs.c.name, t.graphs.c.graphid)
                                  .where(t.graphs.c.hostid == hostid)).all())
        gfound: set[int] = set()
        gcur: dict[int, list[Any]] = {}
        for r in c.execute(sa.select(t.graphs).where(t.graphs.c.hostid == hostid,
                                                     t.graphs.c.flags == int(Flags.DISCOVERED))):
            gcur[r.graphid] = [(r.name, r.width, r.height, r.graphtype)]
        for r in c.execute(sa.select(t.graphs_items).join(t.graphs, t.graphs.c.graphid == t.graphs_items.c.graphid)
                           .where(t.graphs.c.hostid == hostid, t.graphs.c.flags == int(Flags.DISCOVERED))
                           .order_by(t.graphs_items.c.graphid, t.graphs_items.c.sortorder)):
            if r.graphid in gcur:
                gcur[r.graphid].append((r.itemid, r.color, r.drawtype, r.yaxisside, r.calc_fnc))
        gseen: list[int] = []
        for row, made in zip(rows, keys_of_row, strict=True):
            for pgid, g in gprotos:
                ids = []
                for gi in g.items:
                    iid = made.get(gi.key) if gi.key in proto_ids.values() else keys.get(gi.key)
                    if iid is not None:
                        ids.append((gi, iid))
                if not ids:
                    continue
                name = substitute(g.name, row)
                gid = gby_name.get(name)
                if gid is not None and gmine.get(gid) != pgid:
                    if gid not in gfound:
                        res.errors.append(f"graph prototype {g.name!r}: a graph {name!r} exists on the host already")
                    continue
                new_g = GraphSpec(name, g.width, g.height, g.graphtype, [gi for gi, _ in ids])
                if gid is None:
                    gid = int(c.execute(sa.insert(t.graphs).values(
                        hostid=hostid, name=name, width=g.width, height=g.height, graphtype=g.graphtype,
                        flags=int(Flags.DISCOVERED))).inserted_primary_key[0])
                    for n, (gi, iid) in enumerate(ids):
                        batch.add(t.graphs_items, graphid=gid, itemid=iid, sortorder=n, color=gi.color,
                                  drawtype=gi.drawtype, yaxisside=gi.yaxisside, calc_fnc=gi.calc_fnc)
                    batch.add(t.graph_discovery, graphid=gid, parent_graphid=pgid, lastcheck=now, ts_delete=0)
                    gby_name[name] = gid
                    gmine[gid] = pgid
                    res.created += 1
                else:
                    want = [(name, g.width, g.height, g.graphtype)] + [
                        (i, gi.color, gi.drawtype, gi.yaxisside, gi.calc_fnc) for gi, i in ids]
                    if gcur.get(gid) != want:
                        self._put_graph(c, hostid, new_g, [i for _, i in ids], int(Flags.DISCOVERED), gid)
                        res.updated += 1
                    gseen.append(gid)
                gfound.add(gid)
        _found_again(c, t.graph_discovery, t.graph_discovery.c.graphid, gseen, now)
        batch.flush(c)
        # lost ones: marked, then deleted once their lifetime is over
        self._age(c, t.item_discovery, t.item_discovery.c.itemid, [i for i in mine if i not in found], now,
                  lifetime, res, report)
        self._age(c, t.trigger_discovery, t.trigger_discovery.c.triggerid,
                  [i for i in tmine if i not in tfound], now, lifetime, res, report)
        self._age(c, t.graph_discovery, t.graph_discovery.c.graphid,
                  [i for i, p in gmine.items() if i not in gfound and p in {x for x, _ in gprotos}], now, lifetime,
                  res, report)
        self._drop_empty_graphs(c)

    def _age(self, c: Connection, table: sa.Table, idcol: Any, lost: list[int], now: int, lifetime: int,
             res: DiscoveryResult, report: ImportReport) -> None:
        if not lost:
            return
        rows = []
        for i in range(0, len(lost), 500):
            rows += c.execute(sa.select(idcol, table.c.lastcheck, table.c.ts_delete)
                              .where(idcol.in_(lost[i:i + 500]))).all()
        delete = []
        marks: dict[int, list[int]] = {}  # ts_delete -> the ones newly lost with it
        for oid, lastcheck, ts_delete in rows:
            if not ts_delete:
                ts_delete = (lastcheck or now) + lifetime
                if ts_delete > now:
                    marks.setdefault(ts_delete, []).append(oid)
                    res.lost += 1
            if ts_delete <= now:
                delete.append(oid)
        for ts_delete, ids in marks.items():
            for i in range(0, len(ids), 500):
                c.execute(sa.update(table).where(idcol.in_(ids[i:i + 500])).values(ts_delete=ts_delete))
        if not delete:
            return
        if table is t.item_discovery:
            res.deleted += self._delete_triggers_reading(c, delete)  # type: ignore[attr-defined]
            res.deleted += c.execute(sa.delete(t.items).where(t.items.c.itemid.in_(delete))).rowcount
        elif table is t.trigger_discovery:
            res.deleted += c.execute(sa.delete(t.triggers).where(t.triggers.c.triggerid.in_(delete))).rowcount
        else:
            res.deleted += c.execute(sa.delete(t.graphs).where(t.graphs.c.graphid.in_(delete))).rowcount

    def discovered_items(self, host: str) -> dict[str, tuple[int, int, int]]:
        """key -> (itemid, lastcheck, ts_delete) of a host's discovered items."""
        with self.engine.connect() as c:
            return {r.key_: (r.itemid, r.lastcheck, r.ts_delete) for r in c.execute(
                sa.select(t.items.c.itemid, t.items.c.key_, t.item_discovery.c.lastcheck, t.item_discovery.c.ts_delete)
                .join(t.item_discovery, t.item_discovery.c.itemid == t.items.c.itemid)
                .join(t.hosts, t.hosts.c.hostid == t.items.c.hostid)
                .where(t.hosts.c.host == host, t.items.c.flags == int(Flags.DISCOVERED)))}

    def rule_id(self, host: str, key: str) -> int | None:
        with self.engine.connect() as c:
            return c.execute(sa.select(t.items.c.itemid).join(t.hosts, t.hosts.c.hostid == t.items.c.hostid)
                             .where(t.hosts.c.host == host, t.items.c.key_ == key,
                                    t.items.c.flags == int(Flags.RULE))).scalar()


class _Inserts:
    """Rows to insert, per table, written with one executemany each (in the order tables came)."""

    def __init__(self) -> None:
        self.rows: dict[sa.Table, list[dict[str, Any]]] = {}

    def add(self, table: sa.Table, **row: Any) -> None:
        self.rows.setdefault(table, []).append(row)

    def flush(self, c: Connection) -> None:
        for table, rows in self.rows.items():
            for i in range(0, len(rows), 1000):
                c.execute(sa.insert(table), rows[i:i + 1000])
        self.rows = {}


def _found_again(c: Connection, table: sa.Table, idcol: Any, ids: list[int], now: int) -> None:
    for i in range(0, len(ids), 500):
        c.execute(sa.update(table).where(idcol.in_(ids[i:i + 500])).values(lastcheck=now, ts_delete=0))


@dataclass
class _Row:
    itemid: int
    key_: str
    flags: int
    parent_itemid: int | None
    ts_delete: int


def _plain_row(it: ItemSpec) -> dict[str, Any]:
    return {"key_": it.key, "name": it.name, "type": int(it.type), "value_type": int(it.value_type),
            "units": it.units, "delay": it.delay, "history": it.history, "trends": it.trends,
            "status": 0 if it.enabled else 1, "description": it.description, "templateid": None}


def _substituted_item(p: ItemSpec, key: str, row: dict[str, str]) -> ItemSpec:
    s = lambda text: substitute(text, row)  # noqa: E731
    poll = dataclasses.replace(
        p.poll, master_item=substitute_key(p.poll.master_item, row), params=s(p.poll.params),
        snmp_oid=s(p.poll.snmp_oid), url=s(p.poll.url), body=s(p.poll.body),
        query_fields=[(s(a), s(b)) for a, b in p.poll.query_fields], headers=[(s(a), s(b)) for a, b in p.poll.headers],
        preprocessing=[PreprocStep(x.type, s(x.params), x.error_handler, s(x.error_handler_params))
                       for x in p.poll.preprocessing])
    return dataclasses.replace(p, key=key, name=s(p.name), description=s(p.description), units=s(p.units),
                               tags=[(s(a), s(b)) for a, b in p.tags], poll=poll)


@lru_cache(maxsize=1024)
def _prototype_expression(text: str, owner: str, host: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """A trigger prototype's expression for a host: the template's name (and {HOST.HOST}) replaced by
    the host's, and the (host, key) its functions read, keys with their LLD macros still in (parsed
    once per prototype, not once per discovered row)."""
    from vigil.server.config.alerting import parse_expression

    if not text:
        return "", ()
    masked = mask_lld(text)
    if owner != host:
        masked = parse_expression(masked, "expression").rename_host(owner, host)
    if "{HOST.HOST}" in masked:
        masked = parse_expression(masked, "expression").rename_host("{HOST.HOST}", host)
    funcs = tuple((f.host, f.key) for f in parse_expression(masked, "expression").functions)
    return _UNMASK.sub(r"{#\1}", masked), funcs


_UNMASK = re.compile(r"\{\$LLD\.([A-Z0-9_.]+)\}")
