"""Saved filters: a user's named filters of a list page, shown as tabs above it.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"


def upgrade() -> None:
    op.create_table(
        "saved_filters",
        sa.Column("filterid", sa.Integer(), nullable=False),
        sa.Column("userid", sa.Integer(), nullable=False),
        sa.Column("page", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("query", sa.String(length=2048), server_default="", nullable=False),
        sa.Column("show_counter", sa.Integer(), server_default="0", nullable=False),
        sa.Column("sortorder", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(["userid"], ["users.userid"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("filterid"),
        sa.UniqueConstraint("userid", "page", "name", name="saved_filters_userid_page_name"),
    )


def downgrade() -> None:
    op.drop_table("saved_filters")
