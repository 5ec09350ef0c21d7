"""Every migration keeps the data of the revision before it, on both stores.

The revisions come from the migration scripts themselves, so a new migration is tested here without
anyone touching this file. For each revision the database is migrated to the one before it, filled
with configuration, runtime data and history of every value type (SEED, plus a generated row for any
table SEED does not know), migrated one step, and every row must still be there with its values.
A migration that changes rows on purpose declares how in EXPECTED_CHANGES.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from vigil.server.config import migrate
from vigil.server.config.migrate import MigrationError, current_revision, engine_for, head_revision, upgrade
from vigil.server.config.tables import metadata
from vigil.server.store.postgres import partition_name

from tests.conftest import Dropper, new_pg_database

Snapshot = dict[str, tuple[frozenset[str], Counter]]  # table -> (columns, rows)
PARTITION = re.compile(r"_p\d{8}$")
DAY = 86400


def revisions() -> list[tuple[str, str | None]]:
    """(revision, the revision before it), oldest first, read from the migration scripts."""
    script = ScriptDirectory(str(migrate.MIGRATIONS))
    return [(r.revision, r.down_revision) for r in reversed(list(script.walk_revisions()))]  # type: ignore[misc]


# Data a user's database holds: a template with an item, macros and tags linked to a host that
# inherits them, items of every value type with history, trends, a log position and an agent session.
# Clocks span two days so PostgreSQL has two partitions per history table.
C0, C1 = 1_700_000_000, 1_700_000_000 + DAY + 5
SEED: dict[str, list[dict[str, Any]]] = {
    "host_groups": [{"groupid": 1, "name": "Linux servers"}, {"groupid": 2, "name": "Templates/Apps"}],
    "hosts": [
        {"hostid": 1, "host": "Template App", "name": "Template App", "status": 3, "description": "a template"},
        {"hostid": 2, "host": "web01", "name": "Web server 01", "status": 0, "description": "front\nend"},
        {"hostid": 3, "host": "db01", "name": "Datenbank ü", "status": 1, "description": ""},
    ],
    "hosts_groups": [{"hostid": 1, "groupid": 2}, {"hostid": 2, "groupid": 1}, {"hostid": 3, "groupid": 1}],
    "hosts_templates": [{"hostid": 2, "templateid": 1}],
    "host_macros": [
        {"hostmacroid": 1, "hostid": 1, "macro": "{$HISTORY}", "value": "7d"},
        {"hostmacroid": 2, "hostid": 2, "macro": "{$HISTORY}", "value": "14d"},
    ],
    "items": [
        {"itemid": 10, "hostid": 1, "key_": "app.requests", "name": "Requests", "type": 2, "value_type": 0,
         "units": "rps", "delay": "30s", "history": "{$HISTORY}", "trends": "90d", "status": 0,
         "description": "from the template", "templateid": None},
        {"itemid": 11, "hostid": 2, "key_": "app.requests", "name": "Requests", "type": 2, "value_type": 0,
         "units": "rps", "delay": "30s", "history": "{$HISTORY}", "trends": "90d", "status": 0,
         "description": "from the template", "templateid": 10},
        {"itemid": 12, "hostid": 2, "key_": "net.if.in[eth0]", "name": "In", "type": 7, "value_type": 3,
         "units": "B", "delay": "1m", "history": "31d", "trends": "365d", "status": 0, "description": "",
         "templateid": None},
        {"itemid": 13, "hostid": 2, "key_": "agent.version", "name": "Version", "type": 0, "value_type": 1,
         "units": "", "delay": "1h", "history": "31d", "trends": "0", "status": 1, "description": "",
         "templateid": None},
        {"itemid": 14, "hostid": 3, "key_": "vfs.file.contents[/etc/motd]", "name": "MOTD", "type": 7,
         "value_type": 4, "units": "", "delay": "1m", "history": "31d", "trends": "0", "status": 0,
         "description": "", "templateid": None},
        {"itemid": 15, "hostid": 3, "key_": "log[/var/log/syslog,error]", "name": "Syslog", "type": 7,
         "value_type": 2, "units": "", "delay": "1m", "history": "31d", "trends": "0", "status": 0,
         "description": "", "templateid": None},
    ],
    "item_tags": [
        {"itemtagid": 1, "itemid": 10, "tag": "component", "value": "app"},
        {"itemtagid": 2, "itemid": 11, "tag": "component", "value": "app"},
        {"itemtagid": 3, "itemid": 12, "tag": "interface", "value": "eth0"},
        {"itemtagid": 4, "itemid": 15, "tag": "log", "value": ""},
    ],
    "item_rtdata": [{"itemid": 15, "lastlogsize": 2**40 + 7, "mtime": C1}, {"itemid": 14, "lastlogsize": 0,
                                                                             "mtime": 0}],
    "agent_sessions": [{"session": "0123456789abcdef0123456789abcdef", "last_id": 9001, "updated": C1}],
    "history": [
        {"itemid": 11, "clock": C0, "ns": 0, "value": 1.5},
        {"itemid": 11, "clock": C0, "ns": 0, "value": 1.5},  # Zabbix allows duplicates: both are kept
        {"itemid": 11, "clock": C1, "ns": 999_999_999, "value": -1.7976931348623157e308},
    ],
    "history_uint": [
        {"itemid": 12, "clock": C0, "ns": 1, "value": 2**63 - 1},
        {"itemid": 12, "clock": C1, "ns": 2, "value": -1},  # 2**64-1 in the signed column
    ],
    "history_str": [{"itemid": 13, "clock": C0, "ns": 0, "value": "6.0.0 ü"}],
    "history_text": [{"itemid": 14, "clock": C1, "ns": 5, "value": "line 1\n\tline 2 \\ ✓"}],
    "history_log": [{"itemid": 15, "clock": C1, "ns": 3, "timestamp": C1 - 1, "source": "kernel", "severity": 4,
                     "value": "error: disk\tfull", "logeventid": 42}],
    "history_stage": [{"itemid": 11, "clock": C1, "ns": 4, "value": 0.25}],
    "history_uint_stage": [{"itemid": 12, "clock": C1, "ns": 6, "value": 5}],
    "trends": [{"itemid": 11, "clock": C0 - C0 % 3600, "num": 2, "value_min": 1.5, "value_avg": 1.5,
                "value_max": 1.5}],
    "trends_uint": [{"itemid": 12, "clock": C0 - C0 % 3600, "num": 1, "value_min": 2**63 - 1,
                     "value_avg": 2**63 - 1, "value_max": 2**63 - 1}],
    "trend_dirty": [{"hour": C1 - C1 % 3600}],
}
UPDATES = {"config_version": ({"version": 7}, {"id": 1})}  # a row the first migration inserts itself

# revision -> what it does to the rows on purpose, as a change of the expected snapshot.
EXPECTED_CHANGES: dict[str, Callable[[Snapshot], Snapshot]] = {}


def _tables(conn: sa.Connection) -> sa.MetaData:
    md = sa.MetaData()
    md.reflect(conn, only=lambda name, _md: name != "alembic_version" and not PARTITION.search(name))
    return md


def _generated_row(table: sa.Table, seeded: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """A row for a table SEED does not know (a new migration's): references point at seeded rows."""
    row: dict[str, Any] = {}
    for col in table.columns:
        fk = next(iter(col.foreign_keys), None)
        if fk is not None:
            target = seeded.get(fk.column.table.name) or []
            row[col.name] = target[0][fk.column.name] if target else None
        elif isinstance(col.type, sa.Integer):
            row[col.name] = 1
        elif isinstance(col.type, sa.Float | sa.Numeric):
            row[col.name] = 0.5
        elif isinstance(col.type, sa.Boolean):
            row[col.name] = True
        elif isinstance(col.type, sa.String):
            row[col.name] = "seed"[: col.type.length or 4]
        else:
            pytest.fail(f"cannot make up a value for {table.name}.{col.name} ({col.type}): add rows for "
                        f"{table.name} to SEED in tests/server/test_migrations.py")
    return row


def _partitions(conn: sa.Connection, tables: sa.MetaData, rows: dict[str, list[dict[str, Any]]]) -> None:
    """The daily partitions the PostgreSQL store would have made for these rows."""
    for name, table_rows in rows.items():
        parted = conn.exec_driver_sql(
            "SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid WHERE c.relname = %s",
            (name,)).first()
        if parted is None or "clock" not in tables.tables[name].c:
            continue
        for day in {r["clock"] - r["clock"] % DAY for r in table_rows}:
            conn.exec_driver_sql(f"CREATE TABLE {partition_name(name, day)} PARTITION OF {name} "
                                 f"FOR VALUES FROM ({day}) TO ({day + DAY})")


def _advance_sequences(conn: sa.Connection, tables: sa.MetaData) -> None:
    """Rows inserted with their ids leave the serial sequences behind; the application's would not."""
    for table in tables.sorted_tables:
        for col in table.primary_key.columns:
            seq = conn.exec_driver_sql("SELECT pg_get_serial_sequence(%s, %s)", (table.name, col.name)).scalar()
            if seq is not None:
                conn.exec_driver_sql(f"SELECT setval('{seq}', (SELECT max({col.name}) FROM {table.name}))")


def seed(engine: sa.Engine) -> None:
    """Fill every table of the database's current revision with rows (SEED's, else generated)."""
    with engine.begin() as conn:
        tables = _tables(conn)
        rows: dict[str, list[dict[str, Any]]] = {}
        for table in tables.sorted_tables:
            if table.name in UPDATES:
                continue
            if table.name in SEED:
                rows[table.name] = [{k: v for k, v in r.items() if k in table.c} for r in SEED[table.name]]
            else:
                rows[table.name] = [_generated_row(table, rows)]
        if engine.dialect.name == "postgresql":
            _partitions(conn, tables, rows)
        for table in tables.sorted_tables:
            if table.name in rows:
                conn.execute(table.insert(), rows[table.name])
        if engine.dialect.name == "postgresql":
            _advance_sequences(conn, tables)
        for name, (values, where) in UPDATES.items():
            if name in tables.tables:
                t = tables.tables[name]
                conn.execute(t.update().where(*[t.c[k] == v for k, v in where.items()]).values(**values))


def snapshot(engine: sa.Engine) -> Snapshot:
    """Every row of every table (history through the parents on PostgreSQL), as counted tuples."""
    with engine.connect() as conn:
        tables = _tables(conn)
        out: Snapshot = {}
        for table in tables.sorted_tables:
            cols = sorted(table.c.keys())
            rows = conn.execute(table.select()).mappings()
            out[table.name] = (frozenset(cols), Counter(tuple((c, r[c]) for c in cols) for r in rows))
        return out


def _project(rows: Counter, keep: frozenset[str]) -> Counter:
    return Counter(tuple((c, v) for c, v in row if c in keep) for row in rows.elements())


def changes(revision: str, expected: Snapshot, after: Snapshot) -> list[str]:
    """What the migration did to the rows it found, beyond what it declared."""
    problems = []
    for name, (cols, rows) in expected.items():
        if name not in after:
            problems.append(f"dropped table {name} and its {rows.total()} rows")
            continue
        new_cols, new_rows = after[name]
        if cols - new_cols:
            problems.append(f"dropped columns {sorted(cols - new_cols)} of {name}")
        kept = _project(new_rows, cols & new_cols)
        was = _project(rows, cols & new_cols)
        if kept != was:
            problems.append(f"{name}: lost {list((was - kept).elements())}, gained {list((kept - was).elements())}")
    return [f"migration {revision} {p}" for p in problems]


def fk_violations(engine: sa.Engine) -> list[tuple]:
    if engine.dialect.name != "sqlite":
        return []
    with engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql("PRAGMA foreign_key_check")]


STEPS = [(rev, down) for rev, down in revisions() if down is not None]


class RevisionCopies:
    """Databases migrated from empty one step at a time, one kept at each revision (a PostgreSQL
    template database, an SQLite file), made once for this module: a test that starts at a revision
    gets a copy instead of migrating from empty again, a cost that grew with every migration (the
    walk from empty is test_empty_database_upgrades_one_step_at_a_time_to_the_declared_schema's)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.order = [r for r, _ in revisions()]
        self.sqlite: dict[str, Path] = {}
        self.pg: dict[str, str] = {}

    def _before(self, revision: str) -> str | None:
        i = self.order.index(revision)
        return self.order[i - 1] if i else None

    def sqlite_at(self, revision: str) -> Path:
        if revision not in self.sqlite:
            path = self.tmp / f"at-{revision}.db"
            before = self._before(revision)
            if before is not None:
                _copy_sqlite(self.sqlite_at(before), path)
            _upgrade_to(f"sqlite:///{path}", revision)
            self.sqlite[revision] = path
        return self.sqlite[revision]

    def pg_at(self, revision: str) -> str:
        if revision not in self.pg:
            before = self._before(revision)
            name, url = new_pg_database(self.pg_at(before) if before is not None else None)
            self.pg[revision] = name
            _upgrade_to(url, revision)
        return self.pg[revision]

    def close(self, drop: Callable[[str], None]) -> None:
        for name in self.pg.values():
            drop(name)


def _copy_sqlite(src: Path, dest: Path) -> None:
    import sqlite3

    a, b = sqlite3.connect(src), sqlite3.connect(dest)
    try:
        a.backup(b)
    finally:
        a.close()
        b.close()


def _upgrade_to(url: str, revision: str) -> None:
    engine = engine_for(url)
    try:
        upgrade(engine, revision)
        assert current_revision(engine) == revision
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def revision_copies(tmp_path_factory: pytest.TempPathFactory, pg_dropper: Dropper) -> Iterator[RevisionCopies]:
    copies = RevisionCopies(tmp_path_factory.mktemp("revisions"))
    try:
        yield copies
    finally:
        copies.close(pg_dropper.drop)


@pytest.fixture
def at_revision(request: pytest.FixtureRequest, database_url: str,
                revision_copies: RevisionCopies) -> Callable[[str], str]:
    """A database on database_url's backend at a revision, as a URL: a copy of `RevisionCopies`'."""
    dropper = request.getfixturevalue("pg_dropper")

    def at(revision: str) -> str:
        if database_url.startswith("sqlite:///"):
            _copy_sqlite(revision_copies.sqlite_at(revision), Path(database_url.removeprefix("sqlite:///")))
            return database_url
        name, url = new_pg_database(revision_copies.pg_at(revision))
        request.addfinalizer(lambda: dropper.drop(name))
        return url
    return at


@pytest.mark.parametrize(("revision", "previous"), STEPS, ids=[f"{d}-{r}" for r, d in STEPS])
def test_upgrade_keeps_every_row(at_revision: Callable[[str], str], revision: str, previous: str) -> None:
    engine = engine_for(at_revision(previous))
    try:
        seed(engine)
        before = snapshot(engine)
        assert [t for t, (_, rows) in before.items() if not rows] == [], "tables the seed left empty"
        expected = EXPECTED_CHANGES.get(revision, lambda s: s)(before)

        upgrade(engine, revision)

        assert current_revision(engine) == revision
        assert changes(revision, expected, snapshot(engine)) == []
        assert fk_violations(engine) == []
    finally:
        engine.dispose()


def _schema_diff(engine: sa.Engine) -> list:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": False})
        return [d for d in compare_metadata(ctx, metadata)
                if d[0] in ("add_table", "remove_table", "add_column", "remove_column")]


def test_empty_database_upgrades_one_step_at_a_time_to_the_declared_schema(database_url: str) -> None:
    engine = engine_for(database_url)
    try:
        assert current_revision(engine) is None
        for revision, _ in revisions():
            upgrade(engine, revision)
            assert current_revision(engine) == revision
        assert revision == head_revision()
        assert _schema_diff(engine) == []
        upgrade(engine)  # at head already: nothing to do, nothing fails
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_sqlite_foreign_keys_are_on_again_after_an_upgrade(tmp_path: Path) -> None:
    engine = engine_for(f"sqlite:///{tmp_path / 'v.db'}")
    try:
        upgrade(engine)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


BREAKS_A_TAG = '''"""A migration that leaves a tag pointing at no item.

Revision ID: 9999
Revises: {head}
"""
from alembic import op

revision = "9999"
down_revision = "{head}"


def upgrade() -> None:
    op.execute("DELETE FROM items WHERE itemid = 12")


def downgrade() -> None:
    pass
'''


def test_sqlite_migration_that_breaks_a_foreign_key_is_refused_and_rolled_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Foreign keys are off while migrations run (else SQLite's table rebuilds cascade-delete), so a
    # migration that orphans rows must be caught by PRAGMA foreign_key_check before the commit.
    scripts = tmp_path / "migrations"
    shutil.copytree(migrate.MIGRATIONS, scripts, ignore=shutil.ignore_patterns("__pycache__"))
    (scripts / "versions" / "9999_breaks_a_tag.py").write_text(BREAKS_A_TAG.format(head=head_revision()))
    engine = engine_for(f"sqlite:///{tmp_path / 'v.db'}")
    try:
        upgrade(engine)
        seed(engine)
        before = snapshot(engine)
        monkeypatch.setattr(migrate, "MIGRATIONS", scripts)
        with pytest.raises(MigrationError, match=r"item_tags.*items"):
            upgrade(engine, "9999")
        monkeypatch.undo()
        assert current_revision(engine) == head_revision()
        assert snapshot(engine) == before
    finally:
        engine.dispose()


def test_seed_fills_a_table_a_new_migration_adds_and_moves_the_ids_on(database_url: str) -> None:
    # So the next migration after one that adds a table is tested on rows in that table too.
    engine = engine_for(database_url)
    try:
        upgrade(engine)
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE item_notes (noteid INTEGER PRIMARY KEY, "
                                 "itemid INTEGER NOT NULL REFERENCES items (itemid) ON DELETE CASCADE, "
                                 "note VARCHAR(255) NOT NULL, weight DOUBLE PRECISION NOT NULL)")
        seed(engine)
        cols, rows = snapshot(engine)["item_notes"]
        assert cols == {"noteid", "itemid", "note", "weight"}
        assert list(rows) == [(("itemid", 10), ("note", "seed"), ("noteid", 1), ("weight", 0.5))]
        with engine.begin() as conn:  # the next id is past the seeded ones, as after real use
            new = conn.exec_driver_sql("INSERT INTO hosts (host) VALUES ('new') RETURNING hostid").scalar()
        assert new == max(h["hostid"] for h in SEED["hosts"]) + 1
    finally:
        engine.dispose()


def test_0011_gives_existing_items_an_empty_ipmi_sensor(at_revision: Callable[[str], str]) -> None:
    engine = engine_for(at_revision("0010"))
    try:
        seed(engine)
        upgrade(engine, "0011")
        with engine.connect() as conn:
            sensors = conn.execute(sa.text("SELECT ipmi_sensor FROM items")).scalars().all()
        assert sensors and set(sensors) == {""}
    finally:
        engine.dispose()


def test_0015_leaves_existing_proxies_without_a_reported_buffer(at_revision: Callable[[str], str]) -> None:
    engine = engine_for(at_revision("0014"))
    try:
        seed(engine)
        with engine.connect() as conn:
            before = conn.execute(sa.text("SELECT proxyid, name, lastaccess, delay FROM proxies")).all()
        upgrade(engine, "0015")
        with engine.connect() as conn:
            after = conn.execute(sa.text("SELECT proxyid, name, lastaccess, delay, buffer FROM proxies")).all()
        assert before and [tuple(r[:4]) for r in after] == [tuple(r) for r in before]
        assert {r[4] for r in after} == {None}  # never reported: vigil[proxy,NAME,buffer] stays not supported
    finally:
        engine.dispose()
