"""The configuration model and the history tables, declared once (SQLAlchemy Core).

Migrations in `server/config/migrations/` create and change these tables; a test checks that the
migrated schema equals this declaration on both backends. Numbers follow Zabbix where Zabbix has
them (item types, value types, host status) so an operator's knowledge carries over.
"""

from __future__ import annotations

from enum import IntEnum

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()


class ValueType(IntEnum):
    FLOAT = 0
    CHAR = 1
    LOG = 2
    UNSIGNED = 3
    TEXT = 4


class ItemType(IntEnum):
    AGENT = 0  # passive: the server asks the agent (pollers come in a later issue)
    TRAPPER = 2
    AGENT_ACTIVE = 7


class HostStatus(IntEnum):
    MONITORED = 0
    DISABLED = 1
    TEMPLATE = 3


VALUE_TYPE_NAMES = {
    "float": ValueType.FLOAT,
    "char": ValueType.CHAR,
    "log": ValueType.LOG,
    "unsigned": ValueType.UNSIGNED,
    "text": ValueType.TEXT,
}
ITEM_TYPE_NAMES = {
    "agent": ItemType.AGENT,
    "trapper": ItemType.TRAPPER,
    "agent_active": ItemType.AGENT_ACTIVE,
}

host_groups = Table(
    "host_groups",
    metadata,
    Column("groupid", Integer, primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
)

hosts = Table(
    "hosts",
    metadata,
    Column("hostid", Integer, primary_key=True),
    Column("host", String(128), nullable=False, unique=True),
    Column("name", String(128), nullable=False, server_default=""),
    Column("status", Integer, nullable=False, server_default="0"),
    Column("description", Text, nullable=False, server_default=""),
    # Connections accepted from the host's agent or sender, Zabbix's flags: 1 unencrypted, 4 TLS with a
    # certificate (2, PSK, is refused by the config). Issuer/subject: '' accepts any from a trusted CA.
    Column("tls_accept", Integer, nullable=False, server_default="1"),
    Column("tls_issuer", String(1024), nullable=False, server_default=""),
    Column("tls_subject", String(1024), nullable=False, server_default=""),
)

hosts_groups = Table(
    "hosts_groups",
    metadata,
    Column("hostid", Integer, ForeignKey("hosts.hostid", ondelete="CASCADE"), primary_key=True),
    Column("groupid", Integer, ForeignKey("host_groups.groupid", ondelete="CASCADE"), primary_key=True),
)

items = Table(
    "items",
    metadata,
    Column("itemid", Integer, primary_key=True),
    Column("hostid", Integer, ForeignKey("hosts.hostid", ondelete="CASCADE"), nullable=False),
    Column("key_", String(2048), nullable=False),
    Column("name", String(255), nullable=False, server_default=""),
    Column("type", Integer, nullable=False),
    Column("value_type", Integer, nullable=False),
    Column("units", String(255), nullable=False, server_default=""),
    Column("delay", String(64), nullable=False, server_default="1m"),
    Column("history", String(64), nullable=False, server_default="31d"),
    Column("trends", String(64), nullable=False, server_default="365d"),
    Column("status", Integer, nullable=False, server_default="0"),
    Column("description", Text, nullable=False, server_default=""),
    # The template item this one was copied from; changes to it reach every copy.
    Column(
        "templateid", Integer, ForeignKey("items.itemid", ondelete="CASCADE", name="items_templateid_fk"),
        nullable=True, index=True,
    ),
    UniqueConstraint("hostid", "key_", name="items_hostid_key"),
)

hosts_templates = Table(
    "hosts_templates",
    metadata,
    Column("hostid", Integer, ForeignKey("hosts.hostid", ondelete="CASCADE"), primary_key=True),
    Column("templateid", Integer, ForeignKey("hosts.hostid", ondelete="CASCADE"), primary_key=True),
)

host_macros = Table(
    "host_macros",
    metadata,
    Column("hostmacroid", Integer, primary_key=True),
    Column("hostid", Integer, ForeignKey("hosts.hostid", ondelete="CASCADE"), nullable=False),
    Column("macro", String(255), nullable=False),
    Column("value", String(2048), nullable=False, server_default=""),
    UniqueConstraint("hostid", "macro", name="host_macros_hostid_macro"),
)

item_tags = Table(
    "item_tags",
    metadata,
    Column("itemtagid", Integer, primary_key=True),
    Column("itemid", Integer, ForeignKey("items.itemid", ondelete="CASCADE"), nullable=False, index=True),
    Column("tag", String(255), nullable=False),
    Column("value", String(255), nullable=False, server_default=""),
)

# Runtime data written by ingest, not configuration: the log position an active agent reported.
item_rtdata = Table(
    "item_rtdata",
    metadata,
    Column("itemid", Integer, ForeignKey("items.itemid", ondelete="CASCADE"), primary_key=True),
    Column("lastlogsize", BigInteger, nullable=False, server_default="0"),
    Column("mtime", Integer, nullable=False, server_default="0"),
)

# Bumped by every configuration change so running servers know to reload their cache.
config_version = Table(
    "config_version",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", BigInteger, nullable=False),
)

# The highest value id accepted per active-agent session, committed with the values: an agent
# that resends a batch after a lost reply is not stored twice, even across a server restart.
agent_sessions = Table(
    "agent_sessions",
    metadata,
    Column("session", String(64), primary_key=True),
    Column("last_id", BigInteger, nullable=False),
    Column("updated", Integer, nullable=False),
)


def _history(name: str, value_col: Column) -> Table:
    return Table(
        name,
        metadata,
        Column("itemid", Integer, nullable=False),
        Column("clock", Integer, nullable=False),
        Column("ns", Integer, nullable=False, server_default="0"),
        value_col,
        Index(f"{name}_1", "itemid", "clock"),
    )


history = _history("history", Column("value", Float, nullable=False))
history_uint = _history("history_uint", Column("value", BigInteger, nullable=False))
history_str = _history("history_str", Column("value", String(255), nullable=False))
# Unindexed staging for numeric history: the SQLite store commits values here and moves them into
# history in large sorted chunks (see migration 0003); readers look at both. Unused on PostgreSQL.
history_stage = Table("history_stage", metadata, Column("itemid", Integer, nullable=False),
                      Column("clock", Integer, nullable=False),
                      Column("ns", Integer, nullable=False, server_default="0"),
                      Column("value", Float, nullable=False))
history_uint_stage = Table("history_uint_stage", metadata, Column("itemid", Integer, nullable=False),
                           Column("clock", Integer, nullable=False),
                           Column("ns", Integer, nullable=False, server_default="0"),
                           Column("value", BigInteger, nullable=False))
history_text = _history("history_text", Column("value", Text, nullable=False))
history_log = Table(
    "history_log",
    metadata,
    Column("itemid", Integer, nullable=False),
    Column("clock", Integer, nullable=False),
    Column("ns", Integer, nullable=False, server_default="0"),
    Column("timestamp", Integer, nullable=False, server_default="0"),
    Column("source", String(64), nullable=False, server_default=""),
    Column("severity", Integer, nullable=False, server_default="0"),
    Column("value", Text, nullable=False),
    Column("logeventid", Integer, nullable=False, server_default="0"),
    Index("history_log_1", "itemid", "clock"),
)


def _trends(name: str, value_type: type) -> Table:
    return Table(
        name,
        metadata,
        Column("itemid", Integer, primary_key=True),
        Column("clock", Integer, primary_key=True),
        Column("num", Integer, nullable=False),
        Column("value_min", value_type, nullable=False),
        Column("value_avg", value_type, nullable=False),
        Column("value_max", value_type, nullable=False),
    )


trends = _trends("trends", Float)
trends_uint = _trends("trends_uint", BigInteger)

# Hours whose trends must be (re)computed because values for them were written.
trend_dirty = Table(
    "trend_dirty",
    metadata,
    Column("hour", Integer, primary_key=True),
)

# Per item, the first hour whose history is kept: trends of earlier hours take late values in by
# merging, not by being recomputed from history (see migration 0004).
history_horizon = Table(
    "history_horizon",
    metadata,
    Column("itemid", Integer, primary_key=True, autoincrement=False),
    Column("clock", Integer, nullable=False),
)

# Hours a roll-up has taken the dirty mark of and not yet committed trends for.
trend_rollup = Table(
    "trend_rollup",
    metadata,
    Column("hour", Integer, primary_key=True, autoincrement=False),
    Column("token", BigInteger, nullable=False),
)

HISTORY_TABLES = {
    ValueType.FLOAT: "history",
    ValueType.UNSIGNED: "history_uint",
    ValueType.CHAR: "history_str",
    ValueType.TEXT: "history_text",
    ValueType.LOG: "history_log",
}
TREND_TABLES = {ValueType.FLOAT: "trends", ValueType.UNSIGNED: "trends_uint"}
