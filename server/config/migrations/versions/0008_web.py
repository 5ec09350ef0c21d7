"""Web UI and API: API tokens (hashed, with expiry and last use) and user-group rights on host groups.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    op.create_table(
        "tokens",
        sa.Column("tokenid", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("userid", sa.Integer(), nullable=False),
        sa.Column("token", sa.String(length=128), nullable=False),
        sa.Column("lastaccess", sa.Integer(), server_default="0", nullable=False),
        sa.Column("status", sa.Integer(), server_default="0", nullable=False),
        sa.Column("expires_at", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.Integer(), server_default="0", nullable=False),
        sa.Column("creator_userid", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["userid"], ["users.userid"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["creator_userid"], ["users.userid"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("tokenid"),
        sa.UniqueConstraint("token"),
        sa.UniqueConstraint("userid", "name", name="tokens_userid_name"),
    )
    op.create_index(op.f("ix_tokens_userid"), "tokens", ["userid"], unique=False)
    op.create_table(
        "rights",
        sa.Column("rightid", sa.Integer(), nullable=False),
        sa.Column("groupid", sa.Integer(), nullable=False),
        sa.Column("permission", sa.Integer(), server_default="0", nullable=False),
        sa.Column("id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["groupid"], ["usrgrp.usrgrpid"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["id"], ["host_groups.groupid"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("rightid"),
        sa.UniqueConstraint("groupid", "id", name="rights_groupid_id"),
    )
    op.create_index(op.f("ix_rights_groupid"), "rights", ["groupid"], unique=False)
    op.create_index(op.f("ix_rights_id"), "rights", ["id"], unique=False)


def downgrade() -> None:
    op.drop_table("rights")
    op.drop_table("tokens")
