"""Trends that survive housekeeping: how far each item's history is gone, and roll-up claims.

`history_horizon` holds, per item, the start of the first hour whose history the housekeeper has
kept: everything before it went (rows deleted by retention, or a dropped partition), and only after
its hours were rolled up. The roll-up recomputes an hour from history when it lies at or after the
item's horizon; a late value for an hour before it is merged into the trend row (and removed from
history), as Zabbix merges late values into trends, instead of replacing the row with the late
values alone.

`trend_rollup` holds the hours whose dirty mark a roll-up has cleared but whose trends it has not
yet committed: the mark is cleared in its own short transaction, so writers never wait for the
recomputation, and a roll-up that fails half-way leaves its claim for the next one to finish.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "history_horizon",
        sa.Column("itemid", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("clock", sa.Integer, nullable=False),
    )
    op.create_table(
        "trend_rollup",
        sa.Column("hour", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("token", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    # A claimed hour goes back to being dirty, so the old roll-up recomputes it.
    op.execute("INSERT INTO trend_dirty (hour) SELECT hour FROM trend_rollup "
               "WHERE hour NOT IN (SELECT hour FROM trend_dirty)")
    op.drop_table("trend_rollup")
    op.drop_table("history_horizon")
