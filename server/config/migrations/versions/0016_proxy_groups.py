"""Proxy groups (Zabbix 7.0's HA and load balancing): proxy_groups, proxy_groupid on proxies and
hosts, and proxy_drains (hosts kept in their old proxy's configuration until it delivered its buffer).

Existing proxies belong to no group and existing hosts keep the proxy they have (proxy_groupid NULL).

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"


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
    op.create_table(
        "proxy_drains",
        sa.Column("hostid", sa.Integer(), nullable=False),
        sa.Column("proxyid", sa.Integer(), nullable=False),
        sa.Column("moved", sa.Integer(), server_default="0", nullable=False),
        sa.Column("config_sent", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(["hostid"], ["hosts.hostid"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["proxyid"], ["proxies.proxyid"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("hostid", "proxyid"),
    )
    op.create_index(op.f("ix_proxy_drains_proxyid"), "proxy_drains", ["proxyid"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_proxy_drains_proxyid"), table_name="proxy_drains")
    op.drop_table("proxy_drains")
    for table in ("hosts", "proxies"):
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f"ix_{table}_proxy_groupid")
            batch.drop_constraint(f"{table}_proxy_groupid_fk", type_="foreignkey")
            batch.drop_column("proxy_groupid")
    op.drop_table("proxy_groups")
