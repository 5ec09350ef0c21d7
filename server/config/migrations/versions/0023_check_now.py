"""Check now ("Execute now" of an item): Zabbix 6.0's task_check_now table, the item of a task of
type 6 (server/store/tasks.py).

Revision ID: 0023
Revises: 0020
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0020"


def upgrade() -> None:
    op.create_table(
        "task_check_now",
        sa.Column("taskid", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("itemid", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["taskid"], ["task.taskid"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("taskid"),
    )


def downgrade() -> None:
    op.drop_table("task_check_now")
