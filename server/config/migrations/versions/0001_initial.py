"""Hosts, host groups, items and tags; history and trend tables.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None



def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    op.create_table(
        "host_groups",
        sa.Column("groupid", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
    )
    op.create_table(
        "hosts",
        sa.Column("hostid", sa.Integer, primary_key=True),
        sa.Column("host", sa.String(128), nullable=False, unique=True),
        sa.Column("name", sa.String(128), nullable=False, server_default=""),
        sa.Column("status", sa.Integer, nullable=False, server_default="0"),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
    )
    op.create_table(
        "hosts_groups",
        sa.Column("hostid", sa.Integer, sa.ForeignKey("hosts.hostid", ondelete="CASCADE"), primary_key=True),
        sa.Column(
            "groupid", sa.Integer, sa.ForeignKey("host_groups.groupid", ondelete="CASCADE"), primary_key=True
        ),
    )
    op.create_table(
        "items",
        sa.Column("itemid", sa.Integer, primary_key=True),
        sa.Column("hostid", sa.Integer, sa.ForeignKey("hosts.hostid", ondelete="CASCADE"), nullable=False),
        sa.Column("key_", sa.String(2048), nullable=False),
        sa.Column("name", sa.String(255), nullable=False, server_default=""),
        sa.Column("type", sa.Integer, nullable=False),
        sa.Column("value_type", sa.Integer, nullable=False),
        sa.Column("units", sa.String(255), nullable=False, server_default=""),
        sa.Column("delay", sa.String(64), nullable=False, server_default="1m"),
        sa.Column("history", sa.String(64), nullable=False, server_default="31d"),
        sa.Column("trends", sa.String(64), nullable=False, server_default="365d"),
        sa.Column("status", sa.Integer, nullable=False, server_default="0"),
        sa.Column("description", sa.Text, nullable=False, server_default=""),
        sa.UniqueConstraint("hostid", "key_", name="items_hostid_key"),
    )
    op.create_table(
        "item_tags",
        sa.Column("itemtagid", sa.Integer, primary_key=True),
        sa.Column("itemid", sa.Integer, sa.ForeignKey("items.itemid", ondelete="CASCADE"), nullable=False),
        sa.Column("tag", sa.String(255), nullable=False),
        sa.Column("value", sa.String(255), nullable=False, server_default=""),
    )
    op.create_index("ix_item_tags_itemid", "item_tags", ["itemid"])
    op.create_table(
        "item_rtdata",
        sa.Column("itemid", sa.Integer, sa.ForeignKey("items.itemid", ondelete="CASCADE"), primary_key=True),
        sa.Column("lastlogsize", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("mtime", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_table(
        "config_version",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO config_version (id, version) VALUES (1, 1)")
    op.create_table(
        "agent_sessions",
        sa.Column("session", sa.String(64), primary_key=True),
        sa.Column("last_id", sa.BigInteger, nullable=False),
        sa.Column("updated", sa.Integer, nullable=False),
    )

    # History: no primary key (Zabbix has none either: two values may share a clock and ns), an
    # index on (itemid, clock) for range reads. On PostgreSQL the tables are partitioned by day on
    # clock; the store creates partitions as values arrive and the housekeeper drops them whole.
    # history_uint holds unsigned 64-bit values in a signed BIGINT as two's complement (values of
    # 2**63 and more read negative in SQL; the store converts both ways).
    # The same CHECKs on both backends, so a batch fails the same way everywhere: floats must be
    # finite (NaN and infinities are refused), SQLite gets the lengths PostgreSQL's VARCHARs enforce.
    # history and history_uint also have an index on clock alone for the hourly trend roll-up (BRIN on
    # PostgreSQL: values arrive roughly in clock order, so it costs next to nothing to keep).
    part = " PARTITION BY RANGE (clock)" if postgres else ""
    finite = "value BETWEEN -1.7976931348623157e308 AND 1.7976931348623157e308"
    types = {
        "history": ("DOUBLE PRECISION", finite) if postgres else ("REAL", finite),
        "history_uint": ("BIGINT", "") if postgres else ("BIGINT", "typeof(value) = 'integer'"),
        "history_str": ("VARCHAR(255)", "") if postgres else ("VARCHAR(255)", "length(value) <= 255"),
        "history_text": ("TEXT", ""),
    }
    for name, (sqltype, check) in types.items():
        check_sql = f", CONSTRAINT {name}_value CHECK ({check})" if check else ""
        op.execute(
            f"CREATE TABLE {name} (itemid INTEGER NOT NULL, clock INTEGER NOT NULL, "
            f"ns INTEGER DEFAULT '0' NOT NULL, value {sqltype} NOT NULL{check_sql}){part}"
        )
        op.execute(f"CREATE INDEX {name}_1 ON {name} (itemid, clock)")
        if name in ("history", "history_uint"):
            using = " USING brin" if postgres else ""
            op.execute(f"CREATE INDEX {name}_2 ON {name}{using} (clock)")
    log_check = "" if postgres else ", CONSTRAINT history_log_source CHECK (length(source) <= 64)"
    op.execute(
        "CREATE TABLE history_log (itemid INTEGER NOT NULL, clock INTEGER NOT NULL, "
        "ns INTEGER DEFAULT '0' NOT NULL, timestamp INTEGER DEFAULT '0' NOT NULL, "
        "source VARCHAR(64) DEFAULT '' NOT NULL, severity INTEGER DEFAULT '0' NOT NULL, "
        f"value TEXT NOT NULL, logeventid INTEGER DEFAULT '0' NOT NULL{log_check}){part}"
    )
    op.execute("CREATE INDEX history_log_1 ON history_log (itemid, clock)")
    for name, vtype in (("trends", sa.Float), ("trends_uint", sa.BigInteger)):
        op.create_table(
            name,
            sa.Column("itemid", sa.Integer, primary_key=True),
            sa.Column("clock", sa.Integer, primary_key=True),
            sa.Column("num", sa.Integer, nullable=False),
            sa.Column("value_min", vtype, nullable=False),
            sa.Column("value_avg", vtype, nullable=False),
            sa.Column("value_max", vtype, nullable=False),
        )
    op.create_table("trend_dirty", sa.Column("hour", sa.Integer, primary_key=True))


def downgrade() -> None:
    for name in ("trend_dirty", "trends_uint", "trends", "history_log", "history_text", "history_str",
                 "history_uint", "history", "agent_sessions", "config_version", "item_rtdata",
                 "item_tags", "items", "hosts_groups", "hosts", "host_groups"):
        op.drop_table(name)
