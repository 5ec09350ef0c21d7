"""Tasks for proxies: Zabbix 6.0's task, task_remote_command and task_remote_command_result tables,
which carry remote commands of actions to the proxy monitoring a host and their results back.

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"


def _id() -> sa.types.TypeEngine:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "task",
        sa.Column("taskid", _id(), nullable=False),
        sa.Column("type", sa.Integer(), nullable=False),
        sa.Column("status", sa.Integer(), server_default="0", nullable=False),
        sa.Column("clock", sa.Integer(), server_default="0", nullable=False),
        sa.Column("ttl", sa.Integer(), server_default="0", nullable=False),
        sa.Column("proxyid", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["proxyid"], ["proxies.proxyid"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("taskid"),
    )
    op.create_index("task_status_proxyid", "task", ["status", "proxyid"])
    op.create_table(
        "task_remote_command",
        sa.Column("taskid", _id(), nullable=False),
        sa.Column("command_type", sa.Integer(), server_default="0", nullable=False),
        sa.Column("execute_on", sa.Integer(), server_default="0", nullable=False),
        sa.Column("port", sa.Integer(), server_default="0", nullable=False),
        sa.Column("authtype", sa.Integer(), server_default="0", nullable=False),
        sa.Column("username", sa.String(length=64), server_default="", nullable=False),
        sa.Column("password", sa.String(length=64), server_default="", nullable=False),
        sa.Column("publickey", sa.String(length=64), server_default="", nullable=False),
        sa.Column("privatekey", sa.String(length=64), server_default="", nullable=False),
        sa.Column("command", sa.Text(), server_default="", nullable=False),
        sa.Column("alertid", sa.BigInteger(), nullable=True),
        sa.Column("parent_taskid", sa.BigInteger(), nullable=False),
        sa.Column("hostid", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["taskid"], ["task.taskid"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("taskid"),
    )
    op.create_table(
        "task_remote_command_result",
        sa.Column("taskid", _id(), nullable=False),
        sa.Column("status", sa.Integer(), server_default="0", nullable=False),
        sa.Column("parent_taskid", sa.BigInteger(), nullable=False),
        sa.Column("info", sa.Text(), server_default="", nullable=False),
        sa.ForeignKeyConstraint(["taskid"], ["task.taskid"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("taskid"),
    )


def downgrade() -> None:
    op.drop_table("task_remote_command_result")
    op.drop_table("task_remote_command")
    op.drop_index("task_status_proxyid", table_name="task")
    op.drop_table("task")
