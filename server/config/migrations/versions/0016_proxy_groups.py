"""Proxy groups (Zabbix 7.0's HA and load balancing): proxy_groups, and proxy_groupid on proxies and
hosts.

Existing proxies belong to no group and existing hosts keep the proxy they have (proxy_groupid NULL).

Revision ID: 0016
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
# 0015 (proxies' buffer column) is on another branch; when both are merged this revises "0015".
down_revision = "0014"


def upgrade() -> None:
    op.create_table(
        "proxy_groups",
        sa.Column("proxy_groupid", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("failover_delay", sa.String(length=32), server_default="1m", nullable=False),
        sa.Column("min_online", sa.Integer(), server_default="1", nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("state", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("proxy_groupid"),
        sa.UniqueConstraint("name"),
    )
    for table in ("proxies", "hosts"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("proxy_groupid", sa.Integer(), nullable=True))
            batch.create_foreign_key(f"{table}_proxy_groupid_fk", "proxy_groups", ["proxy_groupid"],
                                     ["proxy_groupid"], ondelete="SET NULL")
            batch.create_index(f"ix_{table}_proxy_groupid", ["proxy_groupid"])


def downgrade() -> None:
    for table in ("hosts", "proxies"):
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f"ix_{table}_proxy_groupid")
            batch.drop_constraint(f"{table}_proxy_groupid_fk", type_="foreignkey")
            batch.drop_column("proxy_groupid")
    op.drop_table("proxy_groups")
