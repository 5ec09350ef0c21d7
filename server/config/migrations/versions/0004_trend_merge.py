"""Trends that survive housekeeping: closed trend rows, and roll-up claims.

`trends.closed` / `trends_uint.closed` is 1 once the housekeeper has removed the history the row
was computed from (rows deleted by retention, or a dropped partition). The roll-up recomputes an
open row from history; into a closed one it merges late values (and removes them from history), as
Zabbix merges late values into trends, instead of replacing the row with the late values alone.

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
    for table in ("trends", "trends_uint"):
        op.add_column(table, sa.Column("closed", sa.Integer, nullable=False, server_default="0"))
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
    for table in ("trends", "trends_uint"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("closed")
