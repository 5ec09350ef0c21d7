"""Host tags (Configuration → Hosts: tags), as Zabbix 6.0's host_tag.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"


def upgrade() -> None:
    op.create_table(
        "host_tags",
        sa.Column("hosttagid", sa.Integer(), nullable=False),
        sa.Column("hostid", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=255), nullable=False),
        sa.Column("value", sa.String(length=255), server_default="", nullable=False),
        sa.ForeignKeyConstraint(["hostid"], ["hosts.hostid"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("hosttagid"),
    )
    op.create_index(op.f("ix_host_tags_hostid"), "host_tags", ["hostid"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_host_tags_hostid"), table_name="host_tags")
    op.drop_table("host_tags")
