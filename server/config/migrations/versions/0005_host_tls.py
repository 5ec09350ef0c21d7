"""Hosts: which connections their agents and senders may use (tls_accept) and the certificate's
issuer and subject they must present, as Zabbix's hosts table has them.

Existing hosts get tls_accept 1 (unencrypted), what they were accepted with before.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    with op.batch_alter_table("hosts") as batch:
        batch.add_column(sa.Column("tls_accept", sa.Integer, nullable=False, server_default="1"))
        batch.add_column(sa.Column("tls_issuer", sa.String(1024), nullable=False, server_default=""))
        batch.add_column(sa.Column("tls_subject", sa.String(1024), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("hosts") as batch:
        batch.drop_column("tls_subject")
        batch.drop_column("tls_issuer")
        batch.drop_column("tls_accept")
