"""Active agent autoregistration: autoreg_host (the server's record of each autoregistered host name),
proxy_autoreg_host (a Vigil proxy's records not yet delivered), and the host groups, templates and tags
of autoregistration actions' operations (opgroup, optemplate, optag). Only new tables: existing rows
are untouched.

Revision ID: 0019
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0017"


def upgrade() -> None:
    op.create_table(
        "autoreg_host",
        sa.Column("autoreg_hostid", sa.Integer(), nullable=False),
        sa.Column("proxyid", sa.Integer(), nullable=True),
        sa.Column("host", sa.String(length=128), nullable=False),
        sa.Column("listen_ip", sa.String(length=64), server_default="", nullable=False),
        sa.Column("listen_port", sa.Integer(), server_default="0", nullable=False),
        sa.Column("listen_dns", sa.String(length=255), server_default="", nullable=False),
        sa.Column("host_metadata", sa.String(length=255), server_default="", nullable=False),
        sa.Column("flags", sa.Integer(), server_default="0", nullable=False),
        sa.Column("tls_accepted", sa.Integer(), server_default="1", nullable=False),
        sa.Column("clock", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(["proxyid"], ["proxies.proxyid"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("autoreg_hostid"),
        sa.UniqueConstraint("host"),
    )
    op.create_table(
        "proxy_autoreg_host",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clock", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=128), nullable=False),
        sa.Column("listen_ip", sa.String(length=64), server_default="", nullable=False),
        sa.Column("listen_dns", sa.String(length=255), server_default="", nullable=False),
        sa.Column("listen_port", sa.Integer(), server_default="0", nullable=False),
        sa.Column("host_metadata", sa.String(length=255), server_default="", nullable=False),
        sa.Column("flags", sa.Integer(), server_default="0", nullable=False),
        sa.Column("tls_accepted", sa.Integer(), server_default="1", nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "opgroup",
        sa.Column("operationid", sa.Integer(), nullable=False),
        sa.Column("groupid", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["operationid"], ["operations.operationid"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["groupid"], ["host_groups.groupid"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("operationid", "groupid"),
    )
    op.create_table(
        "optemplate",
        sa.Column("operationid", sa.Integer(), nullable=False),
        sa.Column("templateid", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["operationid"], ["operations.operationid"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["templateid"], ["hosts.hostid"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("operationid", "templateid"),
    )
    op.create_table(
        "optag",
        sa.Column("optagid", sa.Integer(), nullable=False),
        sa.Column("operationid", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=255), nullable=False),
        sa.Column("value", sa.String(length=255), server_default="", nullable=False),
        sa.ForeignKeyConstraint(["operationid"], ["operations.operationid"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("optagid"),
    )
    op.create_index(op.f("ix_optag_operationid"), "optag", ["operationid"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_optag_operationid"), table_name="optag")
    for table in ("optag", "optemplate", "opgroup", "proxy_autoreg_host", "autoreg_host"):
        op.drop_table(table)
