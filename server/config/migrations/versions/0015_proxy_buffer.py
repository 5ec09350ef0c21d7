"""Proxies: how many unsent values a Vigil proxy reported holding (`"buffer": N` in its heartbeat and
data). NULL: the proxy never reported it (a Zabbix 6.0 proxy does not).

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"


def upgrade() -> None:
    with op.batch_alter_table("proxies") as batch:
        batch.add_column(sa.Column("buffer", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("proxies") as batch:
        batch.drop_column("buffer")
