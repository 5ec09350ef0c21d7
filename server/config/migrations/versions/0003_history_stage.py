"""Staging tables for numeric history (used by the SQLite store); no index on clock alone.

Every row inserted into history's (itemid, clock) index lands on a different leaf page when a batch
spans many items, so on SQLite a 1000-value commit rewrote ~1000 pages (4 MB of WAL, fsynced).
The SQLite store now commits values into these unindexed tables (a few appended pages per commit)
and moves them into history in large, sorted chunks. They carry the same CHECKs as history, so a
bad value fails its own batch and the move can never fail. PostgreSQL writes history directly; the
tables exist there too only so both schemas equal the declared ones.

The indexes on clock alone (history_2, history_uint_2) go on both backends: on SQLite the b-tree
doubled the cost of moving staged values into history; on PostgreSQL the BRIN index cost ~10% of
ingest throughput (every COPY'd row updates it). The trend roll-up now reads an hour item by item
as ranges of the (itemid, clock) index.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    finite = "value BETWEEN -1.7976931348623157e308 AND 1.7976931348623157e308"
    types = {
        "history_stage": ("DOUBLE PRECISION", finite) if postgres else ("REAL", finite),
        "history_uint_stage": ("BIGINT", "") if postgres else ("BIGINT", "typeof(value) = 'integer'"),
    }
    for name, (sqltype, check) in types.items():
        check_sql = f", CONSTRAINT {name}_value CHECK ({check})" if check else ""
        op.execute(
            f"CREATE TABLE {name} (itemid INTEGER NOT NULL, clock INTEGER NOT NULL, "
            f"ns INTEGER DEFAULT '0' NOT NULL, value {sqltype} NOT NULL{check_sql})"
        )
    op.execute("DROP INDEX IF EXISTS history_2")
    op.execute("DROP INDEX IF EXISTS history_uint_2")


def downgrade() -> None:
    using = " USING brin" if op.get_bind().dialect.name == "postgresql" else ""
    op.execute(f"CREATE INDEX history_2 ON history{using} (clock)")
    op.execute(f"CREATE INDEX history_uint_2 ON history_uint{using} (clock)")
    # Staged rows are committed values: put them where readers look before dropping the tables.
    for table in ("history", "history_uint"):
        op.execute(f"INSERT INTO {table} (itemid, clock, ns, value) SELECT itemid, clock, ns, value FROM {table}_stage")
        op.drop_table(f"{table}_stage")
