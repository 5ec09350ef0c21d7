"""Templates: host-template links, items inherited from a template, user macros.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    op.create_table(
        "hosts_templates",
        sa.Column("hostid", sa.Integer, sa.ForeignKey("hosts.hostid", ondelete="CASCADE"), primary_key=True),
        sa.Column("templateid", sa.Integer, sa.ForeignKey("hosts.hostid", ondelete="CASCADE"), primary_key=True),
    )
    with op.batch_alter_table("items") as batch:
        batch.add_column(sa.Column("templateid", sa.Integer, nullable=True))
        batch.create_foreign_key("items_templateid_fk", "items", ["templateid"], ["itemid"], ondelete="CASCADE")
    op.create_index("ix_items_templateid", "items", ["templateid"])
    op.create_table(
        "host_macros",
        sa.Column("hostmacroid", sa.Integer, primary_key=True),
        sa.Column("hostid", sa.Integer, sa.ForeignKey("hosts.hostid", ondelete="CASCADE"), nullable=False),
        sa.Column("macro", sa.String(255), nullable=False),
        sa.Column("value", sa.String(2048), nullable=False, server_default=""),
        sa.UniqueConstraint("hostid", "macro", name="host_macros_hostid_macro"),
    )


def downgrade() -> None:
    op.drop_table("host_macros")
    op.drop_index("ix_items_templateid", "items")
    with op.batch_alter_table("items") as batch:
        batch.drop_constraint("items_templateid_fk", type_="foreignkey")
        batch.drop_column("templateid")
    op.drop_table("hosts_templates")
