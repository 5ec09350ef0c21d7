"""Pollers: the item fields the server's pollers need (interface, HTTP agent request, dependent
items' master, parameters), each item's preprocessing steps, and per-interface availability as
Zabbix 6.0 keeps it (available, error, errors_from, disable_until).

Existing items get the defaults: no interface (the host's main one of their kind), no master, GET
with status 200 expected. Existing interfaces start as unknown, with
no name (`ref`) for items to refer to them by.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"

_ITEM_TEXT = (("snmp_oid", sa.String(512), ""),
              ("url", sa.String(2048), ""), ("query_fields", sa.Text(), "[]"), ("posts", sa.Text(), ""),
              ("headers", sa.Text(), "[]"), ("status_codes", sa.String(255), "200"),
              ("ssl_cert_file", sa.String(255), ""), ("ssl_key_file", sa.String(255), ""),
              ("username", sa.String(255), ""), ("password", sa.String(255), ""), ("timeout", sa.String(255), "3s"))
_ITEM_INT = (("request_method", "0"), ("follow_redirects", "1"), ("verify_peer", "0"), ("verify_host", "0"),
             ("authtype", "0"), ("retrieve_mode", "0"))


def upgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.add_column(sa.Column("interfaceid", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("master_itemid", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("params", sa.Text(), nullable=False, server_default=""))
        for name, kind, default in _ITEM_TEXT:
            batch.add_column(sa.Column(name, kind, nullable=False, server_default=default))
        for name, default in _ITEM_INT:
            batch.add_column(sa.Column(name, sa.Integer(), nullable=False, server_default=default))
        batch.create_foreign_key("items_interfaceid_fk", "interfaces", ["interfaceid"], ["interfaceid"],
                                 ondelete="SET NULL")
        batch.create_foreign_key("items_master_itemid_fk", "items", ["master_itemid"], ["itemid"],
                                 ondelete="CASCADE")
        batch.create_index("ix_items_master_itemid", ["master_itemid"])
    with op.batch_alter_table("interfaces") as batch:
        batch.add_column(sa.Column("ref", sa.String(64), nullable=False, server_default=""))
        batch.add_column(sa.Column("available", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("error", sa.String(2048), nullable=False, server_default=""))
        batch.add_column(sa.Column("errors_from", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("disable_until", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "item_preproc",
        sa.Column("item_preprocid", sa.Integer(), nullable=False),
        sa.Column("itemid", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("type", sa.Integer(), nullable=False),
        sa.Column("params", sa.Text(), server_default="", nullable=False),
        sa.Column("error_handler", sa.Integer(), server_default="0", nullable=False),
        sa.Column("error_handler_params", sa.String(length=255), server_default="", nullable=False),
        sa.ForeignKeyConstraint(["itemid"], ["items.itemid"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("item_preprocid"),
        sa.UniqueConstraint("itemid", "step", name="item_preproc_itemid_step"),
    )


def downgrade() -> None:
    op.drop_table("item_preproc")
    with op.batch_alter_table("interfaces") as batch:
        for name in ("disable_until", "errors_from", "error", "available", "ref"):
            batch.drop_column(name)
    with op.batch_alter_table("items") as batch:
        batch.drop_index("ix_items_master_itemid")
        batch.drop_constraint("items_master_itemid_fk", type_="foreignkey")
        batch.drop_constraint("items_interfaceid_fk", type_="foreignkey")
        for name, _ in reversed(_ITEM_INT):
            batch.drop_column(name)
        for name, _, _ in reversed(_ITEM_TEXT):
            batch.drop_column(name)
        batch.drop_column("params")
        batch.drop_column("master_itemid")
        batch.drop_column("interfaceid")
