"""Triggers, media types, users, actions and maintenance as plain dataclasses.

These are what `vigil config import` reads from the YAML document (docs/config-format.md) and what
the trigger engine and the alerts room are handed by `ConfigRepo`. Severities, condition types and
operators use Zabbix's numbers (server/config/tables.py) so an operator's knowledge carries over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vigil.server.config.tables import MediaKind, Severity


@dataclass
class TriggerSpec:
    name: str  # Zabbix's "description": the name, macros unexpanded
    expression: str
    recovery_expression: str = ""  # '' : the problem ends when the expression is false
    recovery_mode: int = 0  # 0 expression, 1 recovery expression, 2 none (closed by hand only)
    severity: Severity = Severity.NOT_CLASSIFIED
    multiple: bool = False  # a new problem event at every PROBLEM evaluation (Zabbix's "multiple")
    manual_close: bool = False
    enabled: bool = True
    description: str = ""  # Zabbix's "comments"
    opdata: str = ""
    tags: list[tuple[str, str]] = field(default_factory=list)
    # Triggers this one depends on, by "host:trigger name" ("name" alone: the same host/template).
    dependencies: list[str] = field(default_factory=list)


@dataclass
class MediaTypeSpec:
    name: str
    kind: MediaKind
    # email: smtp_server, smtp_port, smtp_helo, smtp_email (From), smtp_security (none|starttls|ssl),
    #        username, password, verify_peer, content_type (plain|html)
    # webhook: url, method, headers {name: value}, body, timeout (seconds), verify_tls
    # script: script (path), parameters [..], timeout
    # every kind: subject, message (default templates), recovery_subject, recovery_message,
    #             update_subject, update_message
    params: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True
    max_attempts: int = 3
    attempt_interval: str = "10s"
    description: str = ""


@dataclass
class MediaSpec:
    media_type: str  # the media type's name
    send_to: str
    severity: int = 63  # a bit per Severity that is sent (63: all)
    period: str = "1-7,00:00-24:00"
    enabled: bool = True


@dataclass
class UserSpec:
    username: str
    name: str = ""
    surname: str = ""
    role: int = 1  # tables.Role
    groups: list[str] = field(default_factory=list)
    medias: list[MediaSpec] = field(default_factory=list)


@dataclass
class ConditionSpec:
    type: int  # Zabbix's conditiontype (tables.action_conditions)
    operator: int = 0
    value: str = ""
    value2: str = ""


@dataclass
class OperationSpec:
    kind: int = 0  # 0 send a message, 1 run a remote command
    step_from: int = 1
    step_to: int = 1  # 0: every step from step_from on
    step_duration: str = "0"  # 0: the action's default
    users: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    media_type: str | None = None  # None: every media of the user
    subject: str = ""
    message: str = ""
    command: str = ""
    execute_on: int = 1  # 0 the problem host's agent (system.run), 1 the server


@dataclass
class ActionSpec:
    name: str
    event_source: int = 0  # tables.EventSource
    enabled: bool = True
    step_duration: str = "1h"  # the default escalation step duration (esc_period)
    evaltype: int = 0  # 0 and/or, 1 and, 2 or
    pause_suppressed: bool = True
    conditions: list[ConditionSpec] = field(default_factory=list)
    operations: list[OperationSpec] = field(default_factory=list)
    recovery_operations: list[OperationSpec] = field(default_factory=list)
    update_operations: list[OperationSpec] = field(default_factory=list)


@dataclass
class TimePeriodSpec:
    type: int = 0  # 0 one time only, 2 daily, 3 weekly, 4 monthly
    every: int = 1
    month: int = 0
    dayofweek: int = 0
    day: int = 0
    start_time: int = 0  # seconds after midnight
    period: int = 3600
    start_date: int = 0


@dataclass
class MaintenanceSpec:
    name: str
    collect_data: bool = True  # Zabbix's maintenance_type 0 (with data collection)
    active_since: int = 0
    active_till: int = 0
    description: str = ""
    hosts: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    periods: list[TimePeriodSpec] = field(default_factory=list)
