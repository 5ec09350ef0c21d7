"""PostgreSQL: numeric history's (itemid, clock) index per partition, built when an hour closes.

Keeping the (itemid, clock) b-tree up row by row was about 64% of PostgreSQL's CPU per value
written (bench/pg_schema_cost.py: 0.49 s per 100k values with it, 0.20 without, 0.25 with the same
b-tree built once over the rows afterwards). The PostgreSQL store now makes each new day of
`history` and `history_uint` a partitioned table of its own with one partition per hour; an hour's
partition gets its index once the hour has closed (PostgresStore.index_closed_hours, run with the
trend roll-up), so the values of the hour being written go into an unindexed heap.

For that the parents lose their partitioned index `history_1` / `history_uint_1`, which PostgreSQL
would otherwise copy onto every new partition. The days that exist keep theirs: a partition
detached from its parent keeps its index as one of its own, so each is detached, the parent's index
dropped, and the partition attached again with the same bounds (which PostgreSQL checks with a scan).
The other history tables (str, text, log) and SQLite are unchanged.

Revision ID: 0024
Revises: 0023
"""

from __future__ import annotations

from alembic import op

revision = "0024"
down_revision = "0023"

_TABLES = ("history", "history_uint")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    conn = op.get_bind()
    for table in _TABLES:
        parts = conn.exec_driver_sql(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
            "WHERE p.relname = %(t)s AND p.relnamespace = current_schema()::regnamespace ORDER BY 1",
            {"t": table}).fetchall()
        for name, _ in parts:
            op.execute(f'ALTER TABLE {table} DETACH PARTITION "{name}"')
        op.execute(f"DROP INDEX IF EXISTS {table}_1")
        for name, bound in parts:
            op.execute(f'ALTER TABLE {table} ATTACH PARTITION "{name}" {bound}')


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    # A partitioned index on the parent reaches every partition: those with an equal index get it
    # attached, the others (hours not closed yet) get one built.
    for table in _TABLES:
        op.execute(f"CREATE INDEX {table}_1 ON {table} (itemid, clock)")
