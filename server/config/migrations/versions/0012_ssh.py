"""SSH items' public-key authentication: the public and private key file names (Zabbix's publickey and
privatekey), looked up in VIGIL_SSH_KEY_LOCATION.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"


def upgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.add_column(sa.Column("publickey", sa.String(length=64), server_default="", nullable=False))
        batch.add_column(sa.Column("privatekey", sa.String(length=64), server_default="", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.drop_column("privatekey")
        batch.drop_column("publickey")
