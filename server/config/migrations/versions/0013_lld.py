"""Low-level discovery: items.flags (1 discovery rule, 2 item prototype, 4 discovered item) with a
rule's lifetime and filter (item_condition, evaltype, formula) and LLD macro paths; triggers.flags;
item_discovery/trigger_discovery linking what was discovered to its prototype (last found, when it
goes once lost); graphs, their items and graph_discovery.

Existing items and triggers are plain ones (flags 0); there are no graphs yet.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"


def upgrade() -> None:
    with op.batch_alter_table("items") as batch:
        batch.add_column(sa.Column("flags", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("lifetime", sa.String(255), nullable=False, server_default="30d"))
        batch.add_column(sa.Column("evaltype", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("formula", sa.String(255), nullable=False, server_default=""))
    with op.batch_alter_table("triggers") as batch:
        batch.add_column(sa.Column("flags", sa.Integer(), nullable=False, server_default="0"))
    op.create_table(
        "item_condition",
        sa.Column("item_conditionid", sa.Integer(), nullable=False),
        sa.Column("itemid", sa.Integer(), nullable=False),
        sa.Column("operator", sa.Integer(), server_default="8", nullable=False),
        sa.Column("macro", sa.String(length=64), nullable=False),
        sa.Column("value", sa.String(length=255), server_default="", nullable=False),
        sa.Column("formulaid", sa.String(length=8), server_default="", nullable=False),
        sa.ForeignKeyConstraint(["itemid"], ["items.itemid"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("item_conditionid"),
    )
    op.create_index(op.f("ix_item_condition_itemid"), "item_condition", ["itemid"], unique=False)
    op.create_table(
        "lld_macro_path",
        sa.Column("lld_macro_pathid", sa.Integer(), nullable=False),
        sa.Column("itemid", sa.Integer(), nullable=False),
        sa.Column("lld_macro", sa.String(length=255), nullable=False),
        sa.Column("path", sa.String(length=255), nullable=False),
        sa.ForeignKeyConstraint(["itemid"], ["items.itemid"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("lld_macro_pathid"),
        sa.UniqueConstraint("itemid", "lld_macro", name="lld_macro_path_itemid_macro"),
    )
    op.create_table(
        "item_discovery",
        sa.Column("itemdiscoveryid", sa.Integer(), nullable=False),
        sa.Column("itemid", sa.Integer(), nullable=False),
        sa.Column("parent_itemid", sa.Integer(), nullable=False),
        sa.Column("key_", sa.String(length=2048), server_default="", nullable=False),
        sa.Column("lastcheck", sa.Integer(), server_default="0", nullable=False),
        sa.Column("ts_delete", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(["itemid"], ["items.itemid"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["parent_itemid"], ["items.itemid"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("itemdiscoveryid"),
        sa.UniqueConstraint("itemid"),
    )
    op.create_index(op.f("ix_item_discovery_parent_itemid"), "item_discovery", ["parent_itemid"], unique=False)
    op.create_table(
        "trigger_discovery",
        sa.Column("triggerid", sa.Integer(), nullable=False),
        sa.Column("parent_triggerid", sa.Integer(), nullable=False),
        sa.Column("lastcheck", sa.Integer(), server_default="0", nullable=False),
        sa.Column("ts_delete", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(["triggerid"], ["triggers.triggerid"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["parent_triggerid"], ["triggers.triggerid"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("triggerid"),
    )
    op.create_index(op.f("ix_trigger_discovery_parent_triggerid"), "trigger_discovery", ["parent_triggerid"],
                    unique=False)
    op.create_table(
        "graphs",
        sa.Column("graphid", sa.Integer(), nullable=False),
        sa.Column("hostid", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("width", sa.Integer(), server_default="900", nullable=False),
        sa.Column("height", sa.Integer(), server_default="200", nullable=False),
        sa.Column("graphtype", sa.Integer(), server_default="0", nullable=False),
        sa.Column("flags", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(["hostid"], ["hosts.hostid"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("graphid"),
        sa.UniqueConstraint("hostid", "name", name="graphs_hostid_name"),
    )
    op.create_index(op.f("ix_graphs_hostid"), "graphs", ["hostid"], unique=False)
    op.create_table(
        "graphs_items",
        sa.Column("gitemid", sa.Integer(), nullable=False),
        sa.Column("graphid", sa.Integer(), nullable=False),
        sa.Column("itemid", sa.Integer(), nullable=False),
        sa.Column("sortorder", sa.Integer(), server_default="0", nullable=False),
        sa.Column("color", sa.String(length=6), server_default="009600", nullable=False),
        sa.Column("drawtype", sa.Integer(), server_default="0", nullable=False),
        sa.Column("yaxisside", sa.Integer(), server_default="0", nullable=False),
        sa.Column("calc_fnc", sa.Integer(), server_default="2", nullable=False),
        sa.ForeignKeyConstraint(["graphid"], ["graphs.graphid"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["itemid"], ["items.itemid"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("gitemid"),
    )
    op.create_index(op.f("ix_graphs_items_graphid"), "graphs_items", ["graphid"], unique=False)
    op.create_index(op.f("ix_graphs_items_itemid"), "graphs_items", ["itemid"], unique=False)
    op.create_table(
        "graph_discovery",
        sa.Column("graphid", sa.Integer(), nullable=False),
        sa.Column("parent_graphid", sa.Integer(), nullable=False),
        sa.Column("lastcheck", sa.Integer(), server_default="0", nullable=False),
        sa.Column("ts_delete", sa.Integer(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(["graphid"], ["graphs.graphid"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["parent_graphid"], ["graphs.graphid"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("graphid"),
    )
    op.create_index(op.f("ix_graph_discovery_parent_graphid"), "graph_discovery", ["parent_graphid"], unique=False)


def downgrade() -> None:
    for name in ("graph_discovery", "graphs_items", "graphs", "trigger_discovery", "item_discovery",
                 "lld_macro_path", "item_condition"):
        op.drop_table(name)
    with op.batch_alter_table("triggers") as batch:
        batch.drop_column("flags")
    with op.batch_alter_table("items") as batch:
        for name in ("formula", "evaltype", "lifetime", "flags"):
            batch.drop_column(name)
