"""Proxies: Zabbix 6.0 proxies (active or passive) and the hosts they monitor (hosts.proxyid).

Existing hosts stay monitored by the server itself (proxyid NULL).

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    op.create_table(
        "proxies",
        sa.Column("proxyid", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("mode", sa.Integer(), server_default="0", nullable=False),
        sa.Column("address", sa.String(length=255), server_default="", nullable=False),
        sa.Column("allowed_addresses", sa.String(length=1024), server_default="", nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("lastaccess", sa.Integer(), server_default="0", nullable=False),
        sa.Column("version", sa.String(length=32), server_default="", nullable=False),
        sa.Column("delay", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("proxyid"),
        sa.UniqueConstraint("name"),
    )
    with op.batch_alter_table("hosts") as batch:
        batch.add_column(sa.Column("proxyid", sa.Integer(), nullable=True))
        batch.create_foreign_key("hosts_proxyid_fk", "proxies", ["proxyid"], ["proxyid"], ondelete="SET NULL")
        batch.create_index("ix_hosts_proxyid", ["proxyid"])


def downgrade() -> None:
    with op.batch_alter_table("hosts") as batch:
        batch.drop_index("ix_hosts_proxyid")
        batch.drop_constraint("hosts_proxyid_fk", type_="foreignkey")
        batch.drop_column("proxyid")
    op.drop_table("proxies")
