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
    AGENT = 0  # passive: the server asks the agent (server/pollers/agent.py)
    TRAPPER = 2
    SIMPLE = 3  # simple checks: net.tcp.service, icmpping... run by the server itself
    SNMP = 4
    INTERNAL = 5  # the server's own figures: vigil[proxy,NAME,lastseen|delay] (server/pollers/internal.py)
    AGENT_ACTIVE = 7
    EXTERNAL = 10  # a script from VIGIL_EXTERNAL_SCRIPTS (server/pollers/external.py)
    IPMI = 12
    SSH = 13  # ssh.run[...]: the item's script over SSH (server/pollers/ssh.py)
    TELNET = 14  # telnet.run[...] (server/pollers/telnet.py)
    CALCULATED = 15  # a formula over other items' values (server/pollers/calculated.py)
    JMX = 16
    SNMP_TRAP = 17
    DEPENDENT = 18  # its value is its master item's, through its own preprocessing
    HTTP_AGENT = 19
    NAGIOS = 100  # Vigil's own (not a Zabbix type): a Nagios plugin run by the server (server/pollers/nagios.py)


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
    "simple": ItemType.SIMPLE,
    "snmp": ItemType.SNMP,
    "internal": ItemType.INTERNAL,
    "ipmi": ItemType.IPMI,
    "ssh": ItemType.SSH,
    "telnet": ItemType.TELNET,
    "calculated": ItemType.CALCULATED,
    "jmx": ItemType.JMX,
    "snmp_trap": ItemType.SNMP_TRAP,
    "dependent": ItemType.DEPENDENT,
    "http_agent": ItemType.HTTP_AGENT,
    "external": ItemType.EXTERNAL,
    "nagios": ItemType.NAGIOS,
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

# A host's tags (Zabbix 6.0 host tags): problems of the host's triggers carry them.
host_tags = Table(
    "host_tags",
    metadata,
    Column("hosttagid", Integer, primary_key=True),
    Column("hostid", Integer, ForeignKey("hosts.hostid", ondelete="CASCADE"), nullable=False, index=True),
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


# On PostgreSQL history's and history_uint's index is not the parent's: each hour partition gets its
# own once the hour has closed (migration 0024, PostgresStore.index_closed_hours).
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


# --- Triggers, events and alerting (migration 0006). Numbers follow Zabbix's where it has them. ------


class Severity(IntEnum):
    NOT_CLASSIFIED = 0
    INFORMATION = 1
    WARNING = 2
    AVERAGE = 3
    HIGH = 4
    DISASTER = 5


SEVERITY_NAMES = {"not classified": Severity.NOT_CLASSIFIED, "information": Severity.INFORMATION,
                  "warning": Severity.WARNING, "average": Severity.AVERAGE, "high": Severity.HIGH,
                  "disaster": Severity.DISASTER}


class EventSource(IntEnum):
    TRIGGERS = 0
    AUTOREGISTRATION = 2  # an active agent of an unknown host asked for its checks (migration 0019)
    INTERNAL = 3


class EventObject(IntEnum):
    TRIGGER = 0
    HOST = 1  # internal: the host's agent stopped (value 1) or started again (value 0) answering
    ITEM = 4  # internal: the item became not supported (value 1) or normal again (value 0)
    AUTOREG_HOST = 3  # autoregistration: objectid is autoreg_host.autoreg_hostid (Zabbix's "active agent")


class MediaKind(IntEnum):
    EMAIL = 0
    SCRIPT = 1
    WEBHOOK = 4


MEDIA_KIND_NAMES = {"email": MediaKind.EMAIL, "script": MediaKind.SCRIPT, "webhook": MediaKind.WEBHOOK}


class AlertStatus(IntEnum):
    QUEUED = 0  # written, handed to delivery, not yet tried
    SENT = 1
    FAILED = 2  # gave up: retries used up, or an error no retry can fix
    RETRYING = 3  # the last try failed; another follows


class Role(IntEnum):  # Zabbix's default role ids
    USER = 1
    ADMIN = 2
    SUPER_ADMIN = 3
    GUEST = 4


# Where the server reaches a host's agent, SNMP agent, BMC or JMX port (Zabbix's interface types).
interfaces = Table(
    "interfaces",
    metadata,
    Column("interfaceid", Integer, primary_key=True),
    Column("hostid", Integer, ForeignKey("hosts.hostid", ondelete="CASCADE"), nullable=False, index=True),
    Column("type", Integer, nullable=False),  # 1 agent, 2 SNMP, 3 IPMI, 4 JMX
    Column("main", Integer, nullable=False, server_default="1"),
    Column("useip", Integer, nullable=False, server_default="1"),
    Column("ip", String(64), nullable=False, server_default=""),
    Column("dns", String(255), nullable=False, server_default=""),
    Column("port", String(64), nullable=False, server_default="10050"),
    Column("details", Text, nullable=False, server_default="{}"),  # JSON: SNMP version, community, v3 user...
)

global_macros = Table(
    "global_macros",
    metadata,
    Column("globalmacroid", Integer, primary_key=True),
    Column("macro", String(255), nullable=False, unique=True),
    Column("value", String(2048), nullable=False, server_default=""),
)

triggers = Table(
    "triggers",
    metadata,
    Column("triggerid", Integer, primary_key=True),
    # The host or template whose configuration holds the trigger (its expression may name others).
    Column("hostid", Integer, ForeignKey("hosts.hostid", ondelete="CASCADE"), nullable=False, index=True),
    Column("description", String(255), nullable=False),  # the name, with macros unexpanded
    Column("expression", Text, nullable=False),
    Column("recovery_mode", Integer, nullable=False, server_default="0"),  # 0 expression, 1 recovery expr, 2 none
    Column("recovery_expression", Text, nullable=False, server_default=""),
    Column("priority", Integer, nullable=False, server_default="0"),  # Severity
    Column("type", Integer, nullable=False, server_default="0"),  # 0 single problem, 1 multiple
    Column("manual_close", Integer, nullable=False, server_default="0"),
    Column("status", Integer, nullable=False, server_default="0"),  # 0 enabled, 1 disabled
    Column("comments", Text, nullable=False, server_default=""),
    Column("opdata", String(255), nullable=False, server_default=""),
    Column("templateid", Integer, ForeignKey("triggers.triggerid", ondelete="CASCADE", name="triggers_templateid_fk"),
           nullable=True, index=True),
    UniqueConstraint("hostid", "description", name="triggers_host_name"),
)

# The items a trigger's expressions read: a value of one of them means the trigger is evaluated.
trigger_items = Table(
    "trigger_items",
    metadata,
    Column("triggerid", Integer, ForeignKey("triggers.triggerid", ondelete="CASCADE"), primary_key=True),
    Column("itemid", Integer, ForeignKey("items.itemid", ondelete="CASCADE"), primary_key=True, index=True),
)

trigger_tags = Table(
    "trigger_tags",
    metadata,
    Column("triggertagid", Integer, primary_key=True),
    Column("triggerid", Integer, ForeignKey("triggers.triggerid", ondelete="CASCADE"), nullable=False, index=True),
    Column("tag", String(255), nullable=False),
    Column("value", String(255), nullable=False, server_default=""),
)

trigger_depends = Table(
    "trigger_depends",
    metadata,
    Column("triggerid_down", Integer, ForeignKey("triggers.triggerid", ondelete="CASCADE"), primary_key=True),
    Column("triggerid_up", Integer, ForeignKey("triggers.triggerid", ondelete="CASCADE"), primary_key=True),
)

# Runtime state, not configuration: a trigger's value (0 OK, 1 PROBLEM), whether it could be
# evaluated (state 0 normal, 1 unknown, with the error) and when its value last changed.
trigger_rtdata = Table(
    "trigger_rtdata",
    metadata,
    Column("triggerid", Integer, ForeignKey("triggers.triggerid", ondelete="CASCADE"), primary_key=True),
    Column("value", Integer, nullable=False, server_default="0"),
    Column("state", Integer, nullable=False, server_default="0"),
    Column("error", String(2048), nullable=False, server_default=""),
    Column("lastchange", Integer, nullable=False, server_default="0"),
)

# Runtime: an item's state (0 normal, 1 not supported) and why; a host agent's availability.
item_state = Table(
    "item_state",
    metadata,
    Column("itemid", Integer, ForeignKey("items.itemid", ondelete="CASCADE"), primary_key=True),
    Column("state", Integer, nullable=False, server_default="0"),
    Column("error", String(2048), nullable=False, server_default=""),
    Column("clock", Integer, nullable=False, server_default="0"),
)

host_availability = Table(
    "host_availability",
    metadata,
    Column("hostid", Integer, ForeignKey("hosts.hostid", ondelete="CASCADE"), primary_key=True),
    Column("available", Integer, nullable=False, server_default="0"),  # 0 unknown, 1 available, 2 unavailable
    Column("error", String(2048), nullable=False, server_default=""),
    Column("lastaccess", Integer, nullable=False, server_default="0"),
)

events = Table(
    "events",
    metadata,
    Column("eventid", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("source", Integer, nullable=False),  # EventSource
    Column("object", Integer, nullable=False),  # EventObject
    Column("objectid", Integer, nullable=False),
    Column("clock", Integer, nullable=False),
    Column("ns", Integer, nullable=False, server_default="0"),
    Column("value", Integer, nullable=False),  # 1 problem (or unknown/unsupported), 0 OK
    Column("acknowledged", Integer, nullable=False, server_default="0"),
    Column("name", String(2048), nullable=False, server_default=""),  # the trigger's name, macros expanded
    Column("severity", Integer, nullable=False, server_default="0"),
    Index("events_source_object", "source", "object", "objectid", "clock"),
    Index("events_clock", "source", "clock"),
)

event_tags = Table(
    "event_tags",
    metadata,
    Column("eventtagid", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("eventid", BigInteger, ForeignKey("events.eventid", ondelete="CASCADE"), nullable=False, index=True),
    Column("tag", String(255), nullable=False),
    Column("value", String(255), nullable=False, server_default=""),
)

# A problem event until it is resolved (r_eventid set) and a while after, as Zabbix's problem table.
problems = Table(
    "problems",
    metadata,
    Column("eventid", BigInteger, ForeignKey("events.eventid", ondelete="CASCADE"), primary_key=True),
    Column("source", Integer, nullable=False),
    Column("object", Integer, nullable=False),
    Column("objectid", Integer, nullable=False),
    Column("clock", Integer, nullable=False),
    Column("ns", Integer, nullable=False, server_default="0"),
    Column("r_eventid", BigInteger, ForeignKey("events.eventid", ondelete="SET NULL"), nullable=True),
    Column("r_clock", Integer, nullable=False, server_default="0"),
    Column("r_ns", Integer, nullable=False, server_default="0"),
    Column("userid", Integer, nullable=True),  # who closed it by hand
    Column("name", String(2048), nullable=False, server_default=""),
    Column("acknowledged", Integer, nullable=False, server_default="0"),
    Column("severity", Integer, nullable=False, server_default="0"),
    Index("problems_open", "source", "object", "objectid", "r_eventid"),
    Index("problems_clock", "clock"),
)

# Acknowledgements and other problem updates. action: Zabbix's bit flags 1 close, 2 acknowledge,
# 4 message, 8 change severity, 16 unacknowledge.
acknowledges = Table(
    "acknowledges",
    metadata,
    Column("acknowledgeid", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("userid", Integer, nullable=True),
    Column("eventid", BigInteger, ForeignKey("events.eventid", ondelete="CASCADE"), nullable=False, index=True),
    Column("clock", Integer, nullable=False),
    Column("message", Text, nullable=False, server_default=""),
    Column("action", Integer, nullable=False, server_default="0"),
    Column("old_severity", Integer, nullable=False, server_default="0"),
    Column("new_severity", Integer, nullable=False, server_default="0"),
)

media_types = Table(
    "media_types",
    metadata,
    Column("mediatypeid", Integer, primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("type", Integer, nullable=False),  # MediaKind
    Column("status", Integer, nullable=False, server_default="0"),  # 0 enabled, 1 disabled
    # JSON object of the kind's parameters (smtp_server, url, headers, body, script, timeout, ...)
    # and its default subject/message templates.
    Column("params", Text, nullable=False, server_default="{}"),
    Column("maxattempts", Integer, nullable=False, server_default="3"),
    Column("attempt_interval", String(32), nullable=False, server_default="10s"),
    Column("description", Text, nullable=False, server_default=""),
)

users = Table(
    "users",
    metadata,
    Column("userid", Integer, primary_key=True),
    Column("username", String(100), nullable=False, unique=True),
    Column("name", String(100), nullable=False, server_default=""),
    Column("surname", String(100), nullable=False, server_default=""),
    Column("passwd", String(255), nullable=False, server_default=""),  # a password hash; '' cannot sign in
    Column("roleid", Integer, nullable=False, server_default="1"),  # Role
    Column("attempt_failed", Integer, nullable=False, server_default="0"),
    Column("attempt_clock", Integer, nullable=False, server_default="0"),
)

usrgrp = Table(
    "usrgrp",
    metadata,
    Column("usrgrpid", Integer, primary_key=True),
    Column("name", String(64), nullable=False, unique=True),
)

users_groups = Table(
    "users_groups",
    metadata,
    Column("userid", Integer, ForeignKey("users.userid", ondelete="CASCADE"), primary_key=True),
    Column("usrgrpid", Integer, ForeignKey("usrgrp.usrgrpid", ondelete="CASCADE"), primary_key=True),
)

media = Table(
    "media",
    metadata,
    Column("mediaid", Integer, primary_key=True),
    Column("userid", Integer, ForeignKey("users.userid", ondelete="CASCADE"), nullable=False, index=True),
    Column("mediatypeid", Integer, ForeignKey("media_types.mediatypeid", ondelete="CASCADE"), nullable=False),
    Column("sendto", String(1024), nullable=False),
    Column("active", Integer, nullable=False, server_default="0"),  # 0 enabled, 1 disabled
    Column("severity", Integer, nullable=False, server_default="63"),  # bit per Severity
    Column("period", String(1024), nullable=False, server_default="1-7,00:00-24:00"),
)

actions = Table(
    "actions",
    metadata,
    Column("actionid", Integer, primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("eventsource", Integer, nullable=False, server_default="0"),  # EventSource
    Column("status", Integer, nullable=False, server_default="0"),
    Column("esc_period", String(255), nullable=False, server_default="1h"),  # default step duration
    Column("evaltype", Integer, nullable=False, server_default="0"),  # 0 and/or, 1 and, 2 or
    Column("pause_suppressed", Integer, nullable=False, server_default="1"),  # wait out maintenance
    Column("notify_if_canceled", Integer, nullable=False, server_default="1"),
)

action_conditions = Table(
    "action_conditions",
    metadata,
    Column("conditionid", Integer, primary_key=True),
    Column("actionid", Integer, ForeignKey("actions.actionid", ondelete="CASCADE"), nullable=False, index=True),
    # Zabbix's numbers: 0 host group, 1 host, 2 trigger, 3 event name, 4 severity, 6 time period,
    # 16 problem is suppressed, 25 tag name, 26 tag value.
    Column("conditiontype", Integer, nullable=False),
    # 0 equals, 1 does not equal, 2 contains, 3 does not contain, 5 is greater than or equals,
    # 6 is less than or equals, 10 yes, 11 no
    Column("operator", Integer, nullable=False, server_default="0"),
    Column("value", String(255), nullable=False, server_default=""),
    Column("value2", String(255), nullable=False, server_default=""),
)

operations = Table(
    "operations",
    metadata,
    Column("operationid", Integer, primary_key=True),
    Column("actionid", Integer, ForeignKey("actions.actionid", ondelete="CASCADE"), nullable=False, index=True),
    Column("recovery", Integer, nullable=False, server_default="0"),  # 0 problem, 1 recovery, 2 update
    Column("operationtype", Integer, nullable=False, server_default="0"),  # 0 send message, 1 remote command
    Column("esc_step_from", Integer, nullable=False, server_default="1"),
    Column("esc_step_to", Integer, nullable=False, server_default="1"),  # 0: up to the last step
    Column("esc_period", String(255), nullable=False, server_default="0"),  # 0: the action's default
    Column("mediatypeid", Integer, ForeignKey("media_types.mediatypeid", ondelete="SET NULL"), nullable=True),
    Column("subject", String(255), nullable=False, server_default=""),  # '' : the media type's default
    Column("message", Text, nullable=False, server_default=""),
    Column("command", Text, nullable=False, server_default=""),
    Column("execute_on", Integer, nullable=False, server_default="1"),  # 0 the host's agent, 1 the server
)

op_users = Table(
    "op_users",
    metadata,
    Column("operationid", Integer, ForeignKey("operations.operationid", ondelete="CASCADE"), primary_key=True),
    Column("userid", Integer, ForeignKey("users.userid", ondelete="CASCADE"), primary_key=True),
)

op_groups = Table(
    "op_groups",
    metadata,
    Column("operationid", Integer, ForeignKey("operations.operationid", ondelete="CASCADE"), primary_key=True),
    Column("usrgrpid", Integer, ForeignKey("usrgrp.usrgrpid", ondelete="CASCADE"), primary_key=True),
)

# Runtime: an action working through its steps for one problem.
escalations = Table(
    "escalations",
    metadata,
    Column("escalationid", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("actionid", Integer, ForeignKey("actions.actionid", ondelete="CASCADE"), nullable=False),
    Column("eventid", BigInteger, ForeignKey("events.eventid", ondelete="CASCADE"), nullable=False),
    Column("r_eventid", BigInteger, nullable=True),
    Column("acknowledgeid", BigInteger, nullable=True),
    Column("esc_step", Integer, nullable=False, server_default="0"),
    Column("status", Integer, nullable=False, server_default="0"),  # 0 active, 1 recovery, 2 sleep, 3 completed
    Column("nextcheck", Integer, nullable=False, server_default="0"),
    UniqueConstraint("actionid", "eventid", "acknowledgeid", name="escalations_action_event"),
    Index("escalations_nextcheck", "status", "nextcheck"),
)

# The alert log: one row per message or command, whatever the number of tries. Its id is the
# alert id a receiver sees (X-Vigil-Alert-Id, Message-ID, {ALERT.ID}).
alerts = Table(
    "alerts",
    metadata,
    Column("alertid", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("actionid", Integer, ForeignKey("actions.actionid", ondelete="SET NULL"), nullable=True),
    Column("eventid", BigInteger, ForeignKey("events.eventid", ondelete="CASCADE"), nullable=True, index=True),
    Column("p_eventid", BigInteger, nullable=True),  # the problem of a recovery or update message
    Column("userid", Integer, ForeignKey("users.userid", ondelete="SET NULL"), nullable=True),
    Column("mediatypeid", Integer, ForeignKey("media_types.mediatypeid", ondelete="SET NULL"), nullable=True),
    Column("clock", Integer, nullable=False),
    Column("sendto", String(1024), nullable=False, server_default=""),
    Column("subject", String(255), nullable=False, server_default=""),
    Column("message", Text, nullable=False, server_default=""),
    Column("status", Integer, nullable=False, server_default="0"),  # AlertStatus
    Column("retries", Integer, nullable=False, server_default="0"),
    Column("error", String(2048), nullable=False, server_default=""),
    Column("esc_step", Integer, nullable=False, server_default="0"),
    Column("alerttype", Integer, nullable=False, server_default="0"),  # 0 message, 1 command
    Column("sent_clock", Integer, nullable=False, server_default="0"),
    Index("alerts_status", "status", "clock"),
)

maintenances = Table(
    "maintenances",
    metadata,
    Column("maintenanceid", Integer, primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("maintenance_type", Integer, nullable=False, server_default="0"),  # 0 with data, 1 no data
    Column("description", Text, nullable=False, server_default=""),
    Column("active_since", Integer, nullable=False, server_default="0"),
    Column("active_till", Integer, nullable=False, server_default="0"),
)

maintenances_hosts = Table(
    "maintenances_hosts",
    metadata,
    Column("maintenanceid", Integer, ForeignKey("maintenances.maintenanceid", ondelete="CASCADE"), primary_key=True),
    Column("hostid", Integer, ForeignKey("hosts.hostid", ondelete="CASCADE"), primary_key=True),
)

maintenances_groups = Table(
    "maintenances_groups",
    metadata,
    Column("maintenanceid", Integer, ForeignKey("maintenances.maintenanceid", ondelete="CASCADE"), primary_key=True),
    Column("groupid", Integer, ForeignKey("host_groups.groupid", ondelete="CASCADE"), primary_key=True),
)

# Zabbix's timeperiods: type 0 one time only, 2 daily, 3 weekly, 4 monthly.
timeperiods = Table(
    "timeperiods",
    metadata,
    Column("timeperiodid", Integer, primary_key=True),
    Column("maintenanceid", Integer, ForeignKey("maintenances.maintenanceid", ondelete="CASCADE"), nullable=False,
           index=True),
    Column("timeperiod_type", Integer, nullable=False, server_default="0"),
    Column("every", Integer, nullable=False, server_default="1"),
    Column("month", Integer, nullable=False, server_default="0"),  # bit per month (Jan = 1)
    Column("dayofweek", Integer, nullable=False, server_default="0"),  # bit per day (Monday = 1)
    Column("day", Integer, nullable=False, server_default="0"),
    Column("start_time", Integer, nullable=False, server_default="0"),  # seconds after midnight
    Column("period", Integer, nullable=False, server_default="3600"),
    Column("start_date", Integer, nullable=False, server_default="0"),  # one-time: epoch seconds
)


# --- Pollers (migration 0007): what the server's pollers need of items and interfaces. -------------


class InterfaceType(IntEnum):  # Zabbix's numbers
    AGENT = 1
    SNMP = 2
    IPMI = 3
    JMX = 4


INTERFACE_TYPE_NAMES = {"agent": InterfaceType.AGENT, "snmp": InterfaceType.SNMP, "ipmi": InterfaceType.IPMI,
                        "jmx": InterfaceType.JMX}
# The interface an item of each type is polled through (items of other types need none).
ITEM_INTERFACE = {ItemType.AGENT: InterfaceType.AGENT, ItemType.SNMP: InterfaceType.SNMP,
                  ItemType.IPMI: InterfaceType.IPMI, ItemType.JMX: InterfaceType.JMX}


class Availability(IntEnum):  # an interface's, as Zabbix 6.0 keeps it per interface
    UNKNOWN = 0
    AVAILABLE = 1
    UNAVAILABLE = 2


# The preprocessing steps of an item, in order (Zabbix's item_preproc). type: Zabbix's step numbers;
# params: the step's parameters joined by newlines; error_handler 0 default (set not supported),
# 1 discard value, 2 set value to error_handler_params, 3 set error to error_handler_params.
item_preproc = Table(
    "item_preproc",
    metadata,
    Column("item_preprocid", Integer, primary_key=True),
    Column("itemid", Integer, ForeignKey("items.itemid", ondelete="CASCADE"), nullable=False),
    Column("step", Integer, nullable=False),
    Column("type", Integer, nullable=False),
    Column("params", Text, nullable=False, server_default=""),
    Column("error_handler", Integer, nullable=False, server_default="0"),
    Column("error_handler_params", String(255), nullable=False, server_default=""),
    UniqueConstraint("itemid", "step", name="item_preproc_itemid_step"),
)

# Columns migration 0007 adds to `items` and `interfaces` (declared here, added to the tables above).
ITEM_POLLER_COLUMNS = (
    # The host interface to poll through; NULL: the host's main interface of the item type's kind.
    Column("interfaceid", Integer, ForeignKey("interfaces.interfaceid", ondelete="SET NULL",
                                              name="items_interfaceid_fk"), nullable=True),
    # Dependent items: the item whose value they take.
    Column("master_itemid", Integer, ForeignKey("items.itemid", ondelete="CASCADE", name="items_master_itemid_fk"),
           nullable=True, index=True),
    Column("params", Text, nullable=False, server_default=""),  # calculated formula, script...
    Column("snmp_oid", String(512), nullable=False, server_default=""),  # SNMP items: OID, walk[...], discovery[...]
    # HTTP agent
    Column("url", String(2048), nullable=False, server_default=""),
    Column("query_fields", Text, nullable=False, server_default="[]"),  # JSON list of [name, value]
    Column("request_method", Integer, nullable=False, server_default="0"),  # 0 GET, 1 POST, 2 PUT, 3 HEAD
    Column("posts", Text, nullable=False, server_default=""),  # the request body
    Column("headers", Text, nullable=False, server_default="[]"),  # JSON list of [name, value]
    Column("status_codes", String(255), nullable=False, server_default="200"),
    Column("follow_redirects", Integer, nullable=False, server_default="1"),
    Column("verify_peer", Integer, nullable=False, server_default="0"),
    Column("verify_host", Integer, nullable=False, server_default="0"),
    Column("ssl_cert_file", String(255), nullable=False, server_default=""),
    Column("ssl_key_file", String(255), nullable=False, server_default=""),
    Column("authtype", Integer, nullable=False, server_default="0"),  # 0 none, 1 basic, 5 bearer
    Column("username", String(255), nullable=False, server_default=""),
    Column("password", String(255), nullable=False, server_default=""),
    Column("retrieve_mode", Integer, nullable=False, server_default="0"),  # 0 body, 1 headers, 2 both
    Column("timeout", String(255), nullable=False, server_default="3s"),
)
INTERFACE_POLLER_COLUMNS = (
    Column("ref", String(64), nullable=False, server_default=""),  # how a host's items name it (interface_ref)
    # Zabbix 6.0's per-interface availability: errors_from is when the current run of network errors
    # began (0: none), disable_until when the interface is next tried.
    Column("available", Integer, nullable=False, server_default="0"),
    Column("error", String(2048), nullable=False, server_default=""),
    Column("errors_from", Integer, nullable=False, server_default="0"),
    Column("disable_until", Integer, nullable=False, server_default="0"),
)
# Migration 0009: JMX items' endpoint URL ('' : Zabbix's default, service:jmx:rmi:///jndi/rmi://{HOST.CONN}:
# {HOST.PORT}/jmxrmi).
ITEM_POLLER_COLUMNS += (Column("jmx_endpoint", String(255), nullable=False, server_default=""),)

# Migration 0011: IPMI items' sensor (Zabbix's items.ipmi_sensor).
ITEM_IPMI_COLUMNS = (
    Column("ipmi_sensor", String(128), nullable=False, server_default=""),
)
# Columns migration 0012 adds to `items`: SSH public-key authentication, file names in VIGIL_SSH_KEY_LOCATION.
ITEM_SSH_COLUMNS = (
    Column("publickey", String(64), nullable=False, server_default=""),
    Column("privatekey", String(64), nullable=False, server_default=""),
)
for _col in ITEM_POLLER_COLUMNS + ITEM_IPMI_COLUMNS + ITEM_SSH_COLUMNS:
    items.append_column(_col)
for _col in INTERFACE_POLLER_COLUMNS:
    interfaces.append_column(_col)
# --- Web UI and API (migration 0008): API tokens and user-group rights on host groups, as Zabbix's
# `token` and `rights` tables. ---------------------------------------------------------------------


class Permission(IntEnum):  # Zabbix's rights.permission
    DENY = 0
    READ = 2
    READ_WRITE = 3


tokens = Table(
    "tokens",
    metadata,
    Column("tokenid", Integer, primary_key=True),
    Column("name", String(64), nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("userid", Integer, ForeignKey("users.userid", ondelete="CASCADE"), nullable=False, index=True),
    Column("token", String(128), nullable=False, unique=True),  # SHA-256 hex of the secret, never the secret
    Column("lastaccess", Integer, nullable=False, server_default="0"),
    Column("status", Integer, nullable=False, server_default="0"),  # 0 active, 1 revoked
    Column("expires_at", Integer, nullable=False, server_default="0"),  # 0: never
    Column("created_at", Integer, nullable=False, server_default="0"),
    Column("creator_userid", Integer, ForeignKey("users.userid", ondelete="SET NULL"), nullable=True),
    UniqueConstraint("userid", "name", name="tokens_userid_name"),
)

# What the members of a user group may do with the hosts of a host group (Permission). A deny in any
# of a user's groups wins; otherwise the highest grant counts. Super admins need no rights.
rights = Table(
    "rights",
    metadata,
    Column("rightid", Integer, primary_key=True),
    Column("groupid", Integer, ForeignKey("usrgrp.usrgrpid", ondelete="CASCADE"), nullable=False, index=True),
    Column("permission", Integer, nullable=False, server_default="0"),
    Column("id", Integer, ForeignKey("host_groups.groupid", ondelete="CASCADE"), nullable=False, index=True),
    UniqueConstraint("groupid", "id", name="rights_groupid_id"),
)

# --- Proxies (migration 0010): Zabbix 6.0 proxies that collect for the server, and the hosts they
# monitor. -------------------------------------------------------------------------------------------


class ProxyMode(IntEnum):  # as zabbix_proxy's ProxyMode
    ACTIVE = 0  # the proxy connects to the server (config, heartbeat, data)
    PASSIVE = 1  # the server connects to the proxy at `address`


PROXY_MODE_NAMES = {"active": ProxyMode.ACTIVE, "passive": ProxyMode.PASSIVE}

proxies = Table(
    "proxies",
    metadata,
    Column("proxyid", Integer, primary_key=True),
    Column("name", String(128), nullable=False, unique=True),  # the proxy's Hostname
    Column("mode", Integer, nullable=False, server_default="0"),  # ProxyMode
    Column("address", String(255), nullable=False, server_default=""),  # passive: host:port the server polls
    # Active: the addresses/CIDRs the proxy may connect from, comma separated ('' any).
    Column("allowed_addresses", String(1024), nullable=False, server_default=""),
    Column("description", Text, nullable=False, server_default=""),
    # Runtime: last contact, the version it reported, and the age of its oldest value last delivered.
    Column("lastaccess", Integer, nullable=False, server_default="0"),
    Column("version", String(32), nullable=False, server_default=""),
    Column("delay", Integer, nullable=False, server_default="0"),
    # Migration 0015: the unsent values a Vigil proxy last reported; NULL: never reported (Zabbix 6.0).
    Column("buffer", BigInteger, nullable=True),
)

# The proxy monitoring a host; NULL: the server itself.
HOST_PROXY_COLUMN = Column("proxyid", Integer, ForeignKey("proxies.proxyid", ondelete="SET NULL",
                                                          name="hosts_proxyid_fk"), nullable=True, index=True)
hosts.append_column(HOST_PROXY_COLUMN)


# --- Low-level discovery (migration 0013), Zabbix's way: items.flags tells a discovery rule (1), an
# item prototype (2) and a discovered item (4) from a plain item (0); triggers.flags and graphs.flags
# the same for trigger and graph prototypes (2) and what was discovered from them (4). ------------


class Flags(IntEnum):
    PLAIN = 0
    RULE = 1
    PROTOTYPE = 2
    DISCOVERED = 4


ITEM_LLD_COLUMNS = (
    Column("flags", Integer, nullable=False, server_default="0"),
    # Discovery rules: how long a lost resource's items live on ("30d"; "0": deleted at once), and the
    # filter's evaluation (0 and/or, 1 and, 2 or, 3 custom formula) with its formula.
    Column("lifetime", String(255), nullable=False, server_default="30d"),
    Column("evaltype", Integer, nullable=False, server_default="0"),
    Column("formula", String(255), nullable=False, server_default=""),
)
for _col in ITEM_LLD_COLUMNS:
    items.append_column(_col)
TRIGGER_LLD_COLUMNS = (Column("flags", Integer, nullable=False, server_default="0"),)
for _col in TRIGGER_LLD_COLUMNS:
    triggers.append_column(_col)

# A discovery rule's filter conditions (Zabbix's item_condition): operator 8 matches, 9 does not
# match, 12 exists, 13 does not exist; formulaid names it in a custom formula.
item_condition = Table(
    "item_condition",
    metadata,
    Column("item_conditionid", Integer, primary_key=True),
    Column("itemid", Integer, ForeignKey("items.itemid", ondelete="CASCADE"), nullable=False, index=True),
    Column("operator", Integer, nullable=False, server_default="8"),
    Column("macro", String(64), nullable=False),
    Column("value", String(255), nullable=False, server_default=""),
    Column("formulaid", String(8), nullable=False, server_default=""),
)

# A discovery rule's LLD macros taken from each row by JSONPath.
lld_macro_path = Table(
    "lld_macro_path",
    metadata,
    Column("lld_macro_pathid", Integer, primary_key=True),
    Column("itemid", Integer, ForeignKey("items.itemid", ondelete="CASCADE"), nullable=False),
    Column("lld_macro", String(255), nullable=False),
    Column("path", String(255), nullable=False),
    UniqueConstraint("itemid", "lld_macro", name="lld_macro_path_itemid_macro"),
)

# A prototype's rule (parent_itemid: the rule) and a discovered item's prototype (parent_itemid: the
# prototype, key_ its key when discovered), with when it was last found and, once lost, when it goes.
item_discovery = Table(
    "item_discovery",
    metadata,
    Column("itemdiscoveryid", Integer, primary_key=True),
    Column("itemid", Integer, ForeignKey("items.itemid", ondelete="CASCADE"), nullable=False, unique=True),
    Column("parent_itemid", Integer, ForeignKey("items.itemid", ondelete="CASCADE"), nullable=False, index=True),
    Column("key_", String(2048), nullable=False, server_default=""),
    Column("lastcheck", Integer, nullable=False, server_default="0"),
    Column("ts_delete", Integer, nullable=False, server_default="0"),
)

trigger_discovery = Table(
    "trigger_discovery",
    metadata,
    Column("triggerid", Integer, ForeignKey("triggers.triggerid", ondelete="CASCADE"), primary_key=True),
    Column("parent_triggerid", Integer, ForeignKey("triggers.triggerid", ondelete="CASCADE"), nullable=False,
           index=True),
    Column("lastcheck", Integer, nullable=False, server_default="0"),
    Column("ts_delete", Integer, nullable=False, server_default="0"),
)

# Graphs (Zabbix's graphs/graphs_items; hostid added: the host or template whose configuration holds it).
# graphtype 0 normal, 1 stacked; drawtype 0 line, 1 filled, 2 bold line, 3 dot, 4 dashed, 5 gradient.
graphs = Table(
    "graphs",
    metadata,
    Column("graphid", Integer, primary_key=True),
    Column("hostid", Integer, ForeignKey("hosts.hostid", ondelete="CASCADE"), nullable=False, index=True),
    Column("name", String(128), nullable=False),
    Column("width", Integer, nullable=False, server_default="900"),
    Column("height", Integer, nullable=False, server_default="200"),
    Column("graphtype", Integer, nullable=False, server_default="0"),
    Column("flags", Integer, nullable=False, server_default="0"),
    UniqueConstraint("hostid", "name", name="graphs_hostid_name"),
)

graphs_items = Table(
    "graphs_items",
    metadata,
    Column("gitemid", Integer, primary_key=True),
    Column("graphid", Integer, ForeignKey("graphs.graphid", ondelete="CASCADE"), nullable=False, index=True),
    Column("itemid", Integer, ForeignKey("items.itemid", ondelete="CASCADE"), nullable=False, index=True),
    Column("sortorder", Integer, nullable=False, server_default="0"),
    Column("color", String(6), nullable=False, server_default="009600"),
    Column("drawtype", Integer, nullable=False, server_default="0"),
    Column("yaxisside", Integer, nullable=False, server_default="0"),  # 0 left, 1 right
    Column("calc_fnc", Integer, nullable=False, server_default="2"),  # 1 min, 2 avg, 4 max, 7 all
)

graph_discovery = Table(
    "graph_discovery",
    metadata,
    Column("graphid", Integer, ForeignKey("graphs.graphid", ondelete="CASCADE"), primary_key=True),
    Column("parent_graphid", Integer, ForeignKey("graphs.graphid", ondelete="CASCADE"), nullable=False, index=True),
    Column("lastcheck", Integer, nullable=False, server_default="0"),
    Column("ts_delete", Integer, nullable=False, server_default="0"),
)

# --- Proxy groups (migration 0016): Zabbix 7.0's HA and load balancing of proxies. A host with a
# proxy_groupid is monitored by the group; hosts.proxyid then holds the proxy the balancer
# (server/config/proxygroups.py) assigned it to, and is rewritten when that proxy goes silent. ------


class ProxyGroupState(IntEnum):  # as Zabbix 7.0's proxy_group.state (Vigil sets 0, 1 and 3)
    UNKNOWN = 0
    OFFLINE = 1
    ONLINE = 3


proxy_groups = Table(
    "proxy_groups",
    metadata,
    Column("proxy_groupid", Integer, primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("failover_delay", String(32), nullable=False, server_default="1m"),
    Column("min_online", Integer, nullable=False, server_default="1"),
    Column("description", Text, nullable=False, server_default=""),
    Column("state", Integer, nullable=False, server_default="0"),  # ProxyGroupState, written by the balancer
)

PROXY_GROUP_COLUMN = Column("proxy_groupid", Integer, ForeignKey("proxy_groups.proxy_groupid", ondelete="SET NULL",
                                                                 name="proxies_proxy_groupid_fk"),
                            nullable=True, index=True)
proxies.append_column(PROXY_GROUP_COLUMN)
HOST_PROXY_GROUP_COLUMN = Column("proxy_groupid", Integer,
                                 ForeignKey("proxy_groups.proxy_groupid", ondelete="SET NULL",
                                            name="hosts_proxy_groupid_fk"), nullable=True, index=True)
hosts.append_column(HOST_PROXY_GROUP_COLUMN)

# A host that moved off a proxy stays in that proxy's configuration as a sink until the proxy has
# delivered what it buffered for it: a 6.0 proxy skips, and forgets, buffered values of items that are
# no longer in its configuration. config_sent: when the proxy was first sent a configuration with the
# host as a sink (0: not yet).
proxy_drains = Table(
    "proxy_drains",
    metadata,
    Column("hostid", Integer, ForeignKey("hosts.hostid", ondelete="CASCADE"), primary_key=True),
    Column("proxyid", Integer, ForeignKey("proxies.proxyid", ondelete="CASCADE"), primary_key=True, index=True),
    Column("moved", Integer, nullable=False, server_default="0"),
    Column("config_sent", Integer, nullable=False, server_default="0"),
)

# --- Saved filters (migration 0017): a user's named filters of a list page, shown as tabs above it
# (Zabbix's tabbed filter). `page` is the list (problems, hosts, latest...), `query` the URL's query
# string; `show_counter` asks for a count badge on the tab where the page can count cheaply. ----------

saved_filters = Table(
    "saved_filters",
    metadata,
    Column("filterid", Integer, primary_key=True),
    Column("userid", Integer, ForeignKey("users.userid", ondelete="CASCADE"), nullable=False),
    Column("page", String(32), nullable=False),
    Column("name", String(64), nullable=False),
    Column("query", String(2048), nullable=False, server_default=""),
    Column("show_counter", Integer, nullable=False, server_default="0"),
    Column("sortorder", Integer, nullable=False, server_default="0"),
    UniqueConstraint("userid", "page", "name", name="saved_filters_userid_page_name"),
)

# --- Active agent autoregistration (migration 0019), Zabbix 6.0's way. autoreg_host: what the last
# autoregistration of a host name said (flags: 0 default, 1 the agent gave an IP, 2 a DNS name as its
# interface), so an unchanged request makes no new event; proxyid: the proxy it came through (NULL: the
# server). proxy_autoreg_host: a Vigil proxy's records not yet delivered to its server. opgroup,
# optemplate and optag: the host groups, templates and tags of an autoregistration action's operations.

autoreg_host = Table(
    "autoreg_host",
    metadata,
    Column("autoreg_hostid", Integer, primary_key=True),
    Column("proxyid", Integer, ForeignKey("proxies.proxyid", ondelete="SET NULL"), nullable=True),
    Column("host", String(128), nullable=False, unique=True),
    Column("listen_ip", String(64), nullable=False, server_default=""),
    Column("listen_port", Integer, nullable=False, server_default="0"),
    Column("listen_dns", String(255), nullable=False, server_default=""),
    Column("host_metadata", String(255), nullable=False, server_default=""),
    Column("flags", Integer, nullable=False, server_default="0"),
    Column("tls_accepted", Integer, nullable=False, server_default="1"),
    Column("clock", Integer, nullable=False, server_default="0"),  # when it last made an event
)

proxy_autoreg_host = Table(
    "proxy_autoreg_host",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("clock", Integer, nullable=False),
    Column("host", String(128), nullable=False),
    Column("listen_ip", String(64), nullable=False, server_default=""),
    Column("listen_dns", String(255), nullable=False, server_default=""),
    Column("listen_port", Integer, nullable=False, server_default="0"),
    Column("host_metadata", String(255), nullable=False, server_default=""),
    Column("flags", Integer, nullable=False, server_default="0"),
    Column("tls_accepted", Integer, nullable=False, server_default="1"),
)

opgroup = Table(
    "opgroup",
    metadata,
    Column("operationid", Integer, ForeignKey("operations.operationid", ondelete="CASCADE"), primary_key=True),
    Column("groupid", Integer, ForeignKey("host_groups.groupid", ondelete="CASCADE"), primary_key=True),
)

optemplate = Table(
    "optemplate",
    metadata,
    Column("operationid", Integer, ForeignKey("operations.operationid", ondelete="CASCADE"), primary_key=True),
    Column("templateid", Integer, ForeignKey("hosts.hostid", ondelete="CASCADE"), primary_key=True),
)

optag = Table(
    "optag",
    metadata,
    Column("optagid", Integer, primary_key=True),
    Column("operationid", Integer, ForeignKey("operations.operationid", ondelete="CASCADE"), nullable=False,
           index=True),
    Column("tag", String(255), nullable=False),
    Column("value", String(255), nullable=False, server_default=""),
)


# --- Tasks for proxies (migration 0020): Zabbix 6.0's task tables. A remote command of an action for
# a host monitored by a proxy is a `task` of type 2 with its `task_remote_command` row; the result the
# proxy returns is a task of type 3 with its `task_remote_command_result` (docs/proxies.md, "Tasks"). -


class TaskType(IntEnum):  # ZBX_TM_TASK_*
    REMOTE_COMMAND = 2
    REMOTE_COMMAND_RESULT = 3
    CHECK_NOW = 6  # "Execute now" of an item (migration 0023: task_check_now)


class TaskStatus(IntEnum):  # ZBX_TM_STATUS_*
    NEW = 1
    INPROGRESS = 2  # sent to the proxy
    DONE = 3
    EXPIRED = 4


task = Table(
    "task",
    metadata,
    Column("taskid", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("type", Integer, nullable=False),  # TaskType
    Column("status", Integer, nullable=False, server_default="0"),  # TaskStatus
    Column("clock", Integer, nullable=False, server_default="0"),
    Column("ttl", Integer, nullable=False, server_default="0"),
    Column("proxyid", Integer, ForeignKey("proxies.proxyid", ondelete="CASCADE"), nullable=True),
    Index("task_status_proxyid", "status", "proxyid"),
)

task_remote_command = Table(
    "task_remote_command",
    metadata,
    Column("taskid", BigInteger().with_variant(Integer, "sqlite"),
           ForeignKey("task.taskid", ondelete="CASCADE"), primary_key=True),
    Column("command_type", Integer, nullable=False, server_default="0"),
    Column("execute_on", Integer, nullable=False, server_default="0"),
    Column("port", Integer, nullable=False, server_default="0"),
    Column("authtype", Integer, nullable=False, server_default="0"),
    Column("username", String(64), nullable=False, server_default=""),
    Column("password", String(64), nullable=False, server_default=""),
    Column("publickey", String(64), nullable=False, server_default=""),
    Column("privatekey", String(64), nullable=False, server_default=""),
    Column("command", Text, nullable=False, server_default=""),
    Column("alertid", BigInteger, nullable=True),
    Column("parent_taskid", BigInteger, nullable=False),
    Column("hostid", Integer, nullable=False),
)

task_remote_command_result = Table(
    "task_remote_command_result",
    metadata,
    Column("taskid", BigInteger().with_variant(Integer, "sqlite"),
           ForeignKey("task.taskid", ondelete="CASCADE"), primary_key=True),
    Column("status", Integer, nullable=False, server_default="0"),
    Column("parent_taskid", BigInteger, nullable=False),
    Column("info", Text, nullable=False, server_default=""),
)

# "Execute now" (migration 0023): a task of type 6 with the item in `task_check_now`; the server's
# pollers take those of their own items, the reply to a proxy's `proxy data` those of its items.
task_check_now = Table(
    "task_check_now",
    metadata,
    Column("taskid", BigInteger().with_variant(Integer, "sqlite"),
           ForeignKey("task.taskid", ondelete="CASCADE"), primary_key=True),
    Column("itemid", BigInteger, nullable=False),
)
