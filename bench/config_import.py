"""Configuration import at scale: N hosts linked to one template of 100 items.

    python bench/config_import.py [--quick] [--hosts 1000] [--stores sqlite,postgresql] [--count]

The template is the shipped "Linux by Vigil agent" with items added up to 100 (tags, preprocessing,
a dependent item), 20 triggers (one depending on another), a discovery rule with prototypes and a
graph prototype; each host has groups, macros, tags, an agent interface and one item of its own.
For each store, on a fresh database (SQLite in a temporary directory, PostgreSQL at --pg-admin):
  config_import_<store>       host items written per second by the first import
  config_reimport_<store>     seconds to import the same document again (nothing changes)
  config_change_<store>       seconds to import it with one template item changed
--count prints the SQL statements each import issues (a before_cursor_execute listener).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PG_ADMIN = os.environ.get("VIGIL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
TEMPLATE_ITEMS = 100


def template() -> dict[str, Any]:
    from vigil.server.config.builtins import builtin_document

    tpl = copy.deepcopy(builtin_document("Linux by Vigil agent")["templates"][0])
    tpl["template"] = "Bench Linux"
    items = tpl["items"]
    items.append({"key": "bench.json", "name": "Bench JSON", "type": "trapper", "value_type": "text"})
    n = 0
    while len(items) < TEMPLATE_ITEMS:
        it: dict[str, Any] = {"key": f"bench.metric[{n}]", "name": f"Bench metric {n}", "type": "agent_active",
                              "value_type": "float", "delay": "1m", "units": "%" if n % 3 else "B",
                              "tags": {"component": f"c{n % 7}", "bench": "yes"}}
        if n % 5 == 0:
            it["preprocessing"] = [{"type": "multiplier", "params": "8"}]
        if n % 11 == 0:
            it = {"key": f"bench.part[{n}]", "name": f"Bench part {n}", "type": "dependent",
                  "master_item": "bench.json", "value_type": "float",
                  "preprocessing": [{"type": "jsonpath", "params": f"$.v{n}"}]}
        items.append(it)
        n += 1
    metrics = [it["key"] for it in items if it["key"].startswith("bench.metric[")]
    tpl["triggers"] = [
        {"name": f"Bench trigger {i}", "expression": f"last(/Bench Linux/{key})>{{$HIGH}}",
         "severity": "average", "tags": {"scope": "performance"},
         **({"dependencies": ["Bench trigger 1"]} if i == 2 else {})}
        for i, key in enumerate(metrics[:20])]
    tpl["macros"] = {**tpl.get("macros", {}), "{$HIGH}": "90"}
    tpl["discovery_rules"] = [{
        "key": "vfs.fs.discovery", "type": "agent_active", "delay": "1h", "lifetime": "7d",
        "item_prototypes": [{"key": "vfs.fs.size[{#FSNAME},pused]", "name": "{#FSNAME}: used", "type": "agent_active",
                             "value_type": "float", "units": "%"},
                            {"key": "vfs.fs.size[{#FSNAME},free]", "name": "{#FSNAME}: free", "type": "agent_active",
                             "value_type": "unsigned", "units": "B"}],
        "trigger_prototypes": [{"name": "{#FSNAME}: disk full",
                                "expression": "last(/Bench Linux/vfs.fs.size[{#FSNAME},pused])>95"}],
        "graph_prototypes": [{"name": "{#FSNAME}: space",
                              "items": [{"key": "vfs.fs.size[{#FSNAME},pused]", "color": "00AA00"}]}],
    }]
    return tpl


def document(hosts: int) -> dict[str, Any]:
    return {"templates": [template()], "hosts": [
        {"host": f"bench-{h:05d}", "groups": [f"Group {h % 20}", "Bench"], "templates": ["Bench Linux"],
         "macros": {"{$HIGH}": "95"} if h % 2 else {},
         "tags": [{"tag": "site", "value": f"s{h % 5}"}],
         "interfaces": [{"type": "agent", "address": f"10.0.{h // 250}.{h % 250 + 1}", "port": 10050}],
         "items": [{"key": "bench.own", "name": "Own trapper", "type": "trapper"}]}
        for h in range(hosts)]}


class Counter:
    def __init__(self, engine: Any) -> None:
        import sqlalchemy as sa

        self.n = 0
        sa.event.listen(engine, "before_cursor_execute", self._count)

    def _count(self, *_: Any) -> None:
        self.n += 1


def run(url: str, store: str, hosts: int, count: bool) -> list[str]:
    from vigil.server.config.migrate import engine_for, upgrade
    from vigil.server.config.model import doc_from_dict
    from vigil.server.config.repo import ConfigRepo

    engine = engine_for(url)
    try:
        upgrade(engine)
        repo = ConfigRepo(engine)
        counter = Counter(engine)
        doc = document(hosts)
        out = []

        def timed(what: str, d: dict[str, Any]) -> float:
            before = counter.n
            t0 = time.perf_counter()
            report = repo.apply(doc_from_dict(d))
            took = time.perf_counter() - t0
            note = f", {counter.n - before} statements" if count else ""
            print(f"# {store} {what}: {took:.2f} s{note}; {report}", file=sys.stderr)
            return took

        first = timed("import", doc)
        host_items = hosts * (TEMPLATE_ITEMS + 2)  # the template's, its discovery rule, the host's own
        out.append(f"config_import_{store}: {host_items / first:.0f} items/s")
        out.append(f"config_reimport_{store}: {timed('re-import', doc):.2f} s")
        changed = copy.deepcopy(doc)
        changed["templates"][0]["items"][0]["delay"] = "45s"
        out.append(f"config_change_{store}: {timed('one item changed', changed):.2f} s")
        return out
    finally:
        engine.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="10 hosts (done within a minute on a shared machine)")
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--stores", default="sqlite,postgresql")
    ap.add_argument("--pg-admin", default=PG_ADMIN)
    ap.add_argument("--count", action="store_true", help="count the SQL statements of each import")
    a = ap.parse_args()
    hosts = 10 if a.quick else a.hosts
    lines: list[str] = []
    for store in a.stores.split(","):
        if store == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                lines += run(f"sqlite:///{Path(tmp) / 'bench.db'}", store, hosts, a.count)
        elif store == "postgresql":
            import psycopg

            name = "vigil_bench_config_" + uuid.uuid4().hex[:8]
            with psycopg.connect(a.pg_admin, autocommit=True) as c:
                c.execute(f"CREATE DATABASE {name}")
            try:
                lines += run(a.pg_admin.rsplit("/", 1)[0] + "/" + name, "postgres", hosts, a.count)
            finally:
                with psycopg.connect(a.pg_admin, autocommit=True) as c:
                    c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        else:
            ap.error(f"--stores: unknown store {store!r} (sqlite, postgresql)")
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
