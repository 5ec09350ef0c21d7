"""Media types, users, user groups, actions and maintenance in the configuration, on both backends:
import/export, the alerting() read API, and every refusal naming its field."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from vigil.server.config import tables as t
from vigil.server.config.alerting import NEVER
from vigil.server.config.migrate import engine_for, upgrade
from vigil.server.config.model import ConfigError, doc_from_dict
from vigil.server.config.repo import ConfigRepo
from vigil.server.config.tables import MediaKind, Role

# The document ../shared/acceptance/alerts.sh imports (its receiver port fixed), copied so the test stands alone.
ACCEPTANCE_YAML = """
hosts:
  - host: acc-al
    groups: [Acceptance]
    items:
      - {key: acc.temp, type: trapper, value_type: float}
    triggers:
      - {name: "Hot on {HOST.NAME}", expression: "last(/acc-al/acc.temp)>50", severity: high}
media_types:
  - name: acc-hook
    type: webhook
    url: http://127.0.0.1:18080/hook
    body: '{"event": "{EVENT.ID}", "status": "{EVENT.STATUS}", "trigger": "{TRIGGER.NAME}"}'
users:
  - username: acc-oncall
    medias: [{media_type: acc-hook, send_to: acc}]
actions:
  - name: acc-notify
    operations: [{step_from: 1, step_to: 1, send_to_users: [acc-oncall]}]
    recovery_operations: [{send_to_users: [acc-oncall]}]
"""


@pytest.fixture
def repo(migrated_url: str) -> Iterator[ConfigRepo]:
    engine = engine_for(migrated_url)
    try:
        yield ConfigRepo(engine)
    finally:
        engine.dispose()


def load(repo: ConfigRepo, text: str, **kw: Any) -> Any:
    return repo.apply(doc_from_dict(yaml.safe_load(text)), **kw)


FULL = """
host_groups: [Linux servers]
hosts:
  - host: web01
    groups: [Linux servers]
    items:
      - {key: cpu.load}
    triggers:
      - {name: CPU high, expression: "last(/web01/cpu.load)>5", severity: high}
  - host: db01
    groups: [Databases]
macros: {"{$ONCALL}": ops}
media_types:
  - name: Email
    type: email
    smtp_server: 127.0.0.1
    smtp_port: 2525
    smtp_email: vigil@example.com
    smtp_security: starttls
    username: vigil
    password: secret
    subject: "Problem: {{ TRIGGER.NAME }}"
    max_attempts: 5
    attempt_interval: 30s
  - name: Hook
    type: webhook
    url: https://hooks.example.com/v1
    headers: {Authorization: Bearer abc, X-Team: ops}
    body: '{"id": "{EVENT.ID}"}'
    timeout: 10s
    status: disabled
    ca_file: /etc/vigil/ca.pem
  - name: Relay
    type: email
    smtp_server: relay.example.com
    smtp_email: vigil@example.com
    smtp_security: ssl
  - name: Script
    type: script
    script: /usr/local/bin/page
    parameters: ["{ALERT.SENDTO}", "{ALERT.SUBJECT}"]
    description: pager
user_groups: [Operators, Managers]
users:
  - username: alice
    name: Alice
    surname: Smith
    role: admin
    groups: [Operators]
    medias:
      - {media_type: Email, send_to: alice@example.com, severity: [high, disaster], period: "1-5,09:00-18:00"}
      - {media_type: Hook, send_to: alice, severity: 12, status: disabled}
  - username: bob
    groups: [Operators, Managers]
    role: super admin
    medias: [{media_type: Script, send_to: "+100"}]
actions:
  - name: Page on high
    step_duration: 30m
    evaltype: and
    pause_suppressed: false
    conditions:
      - {type: severity, operator: ">=", value: high}
      - {type: host_group, value: Linux servers}
      - {type: host, operator: not equals, value: db01}
      - {type: trigger, value: "web01:CPU high"}
      - {type: trigger_name, value: CPU}
      - {type: time_period, operator: not in, value: "6-7,00:00-24:00"}
      - {type: maintenance, operator: "no"}
      - {type: tag, value: service}
      - {type: tag_value, operator: contains, value: web, value2: service}
    operations:
      - {step_from: 1, step_to: 2, send_to_users: [alice], media_type: Email, subject: "Down", message: "{HOST.NAME}"}
      - {step_from: 3, step_to: 0, step_duration: 10m, send_to_groups: [Managers]}
      - {step_from: 2, step_to: 2, command: "systemctl restart app", execute_on: agent}
    recovery_operations:
      - {send_to_users: [alice, bob]}
    update_operations:
      - {send_to_groups: [Operators], message: "updated"}
  - name: Agent unreachable
    event_source: internal
    status: disabled
    operations: [{step_from: 1, step_to: 1, command: /bin/true}]
maintenances:
  - name: Weekly patching
    collect_data: false
    active_since: 2026-01-01T00:00:00Z
    active_till: 2027-01-01T00:00:00Z
    description: patch tuesday
    hosts: [web01]
    groups: [Databases]
    periods:
      - {type: weekly, every: 1, dayofweek: [tue, thu], start_time: "22:00", period: 2h}
      - {type: one_time, start_date: "2026-12-24T08:00:00+01:00", period: 1d}
      - {type: daily, every: 2, start_time: "03:30", period: 30m}
      - {type: monthly, month: [jan, jul], day: 15, start_time: "01:00", period: 1h}
      - {type: monthly, month: [dec], dayofweek: [fri], every: 5, period: 4h}
  - name: Forever
    active_since: 1700000000
    hosts: [db01]
    periods: [{type: daily}]
"""


def test_everything_is_stored_and_read_back(repo: ConfigRepo) -> None:
    load(repo, FULL)
    cfg = repo.alerting()
    email = cfg.media_types[cfg.media_type_ids["Email"]]
    assert email.kind == MediaKind.EMAIL and email.max_attempts == 5 and email.attempt_interval == "30s"
    assert email.params["smtp_server"] == "127.0.0.1" and email.params["smtp_port"] == 2525
    assert email.params["smtp_security"] == "starttls" and email.params["subject"] == "Problem: {{ TRIGGER.NAME }}"
    assert email.params["content_type"] == "plain"  # defaults filled in for delivery
    hook = cfg.media_types[cfg.media_type_ids["Hook"]]
    assert not hook.enabled and hook.params["timeout"] == 10 and hook.params["method"] == "POST"
    assert hook.params["headers"] == {"Authorization": "Bearer abc", "X-Team": "ops"}
    assert hook.params["ca_file"] == "/etc/vigil/ca.pem"
    relay = cfg.media_types[cfg.media_type_ids["Relay"]]
    assert "smtp_port" not in relay.params and "ca_file" not in relay.params  # delivery's defaults (465 for ssl)
    script = cfg.media_types[cfg.media_type_ids["Script"]]
    assert script.params["parameters"] == ["{ALERT.SENDTO}", "{ALERT.SUBJECT}"] and script.description == "pager"

    alice = cfg.users[cfg.user_ids["alice"]]
    assert (alice.name, alice.surname, alice.role, alice.groups) == ("Alice", "Smith", Role.ADMIN, ["Operators"])
    assert [(m.media_type, m.send_to, m.severity, m.period, m.enabled) for m in alice.medias] == [
        ("Email", "alice@example.com", (1 << 4) | (1 << 5), "1-5,09:00-18:00", True),
        ("Hook", "alice", 12, "1-7,00:00-24:00", False)]
    bob = cfg.users[cfg.user_ids["bob"]]
    assert bob.role == Role.SUPER_ADMIN and bob.medias[0].severity == 63
    name, members = cfg.user_groups[cfg.group_ids["Operators"]]
    assert name == "Operators" and set(members) == {cfg.user_ids["alice"], cfg.user_ids["bob"]}
    assert cfg.user_groups[cfg.group_ids["Managers"]][1] == (cfg.user_ids["bob"],)

    page = cfg.actions[next(i for i, a in cfg.actions.items() if a.name == "Page on high")]
    assert (page.step_duration, page.evaltype, page.pause_suppressed, page.event_source) == ("30m", 1, False, 0)
    assert [(c.type, c.operator, c.value, c.value2) for c in page.conditions] == [
        (4, 5, "4", ""), (0, 0, "Linux servers", ""), (1, 1, "db01", ""), (2, 0, "web01:CPU high", ""),
        (3, 2, "CPU", ""), (6, 7, "6-7,00:00-24:00", ""), (16, 11, "", ""), (25, 0, "service", ""),
        (26, 2, "web", "service")]
    op1, op2, op3 = page.operations
    assert (op1.kind, op1.step_from, op1.step_to, op1.users, op1.media_type, op1.subject, op1.message) == \
        (0, 1, 2, ["alice"], "Email", "Down", "{HOST.NAME}")
    assert (op2.step_from, op2.step_to, op2.step_duration, op2.groups, op2.media_type) == (3, 0, "10m", ["Managers"],
                                                                                           None)
    assert (op3.kind, op3.command, op3.execute_on) == (1, "systemctl restart app", 0)
    assert page.recovery_operations[0].users == ["alice", "bob"]
    assert page.update_operations[0].groups == ["Operators"] and page.update_operations[0].message == "updated"
    internal = cfg.actions[next(i for i, a in cfg.actions.items() if a.name == "Agent unreachable")]
    assert internal.event_source == 3 and not internal.enabled and internal.operations[0].execute_on == 1

    patch = cfg.maintenances[next(i for i, m in cfg.maintenances.items() if m.name == "Weekly patching")]
    assert not patch.collect_data and patch.hosts == ["web01"] and patch.groups == ["Databases"]
    assert (patch.active_since, patch.active_till) == (1767225600, 1798761600)
    weekly, once, daily, monthly, lastfri = patch.periods
    assert (weekly.type, weekly.every, weekly.dayofweek, weekly.start_time, weekly.period) == (3, 1, 2 | 8, 79200, 7200)
    assert (once.type, once.start_date, once.period) == (0, 1798095600, 86400)
    assert (daily.type, daily.every, daily.start_time, daily.period) == (2, 2, 12600, 1800)
    assert (monthly.type, monthly.month, monthly.day, monthly.dayofweek) == (4, 1 | 64, 15, 0)
    assert (lastfri.month, lastfri.dayofweek, lastfri.every, lastfri.day) == (2048, 16, 5, 0)
    forever = cfg.maintenances[next(i for i, m in cfg.maintenances.items() if m.name == "Forever")]
    assert (forever.active_since, forever.active_till, forever.collect_data) == (1700000000, NEVER, True)
    assert forever.periods[0].period == 3600

    web01, db01 = cfg.host_ids["web01"], cfg.host_ids["db01"]
    assert cfg.host_groups[web01] == ("Linux servers",) and cfg.host_groups[db01] == ("Databases",)
    assert cfg.trigger_ids["web01:CPU high"] == next(r.triggerid for r in repo.triggers() if r.name == "CPU high")
    assert set(cfg.host_group_ids) == {"Linux servers", "Databases"}


def test_round_trip_export_import_is_identity(repo: ConfigRepo, tmp_path: Path) -> None:
    load(repo, FULL)
    exported = repo.export()
    assert [m["name"] for m in exported["media_types"]] == ["Email", "Hook", "Relay", "Script"]
    assert exported["media_types"][2] == {"name": "Relay", "type": "email", "smtp_server": "relay.example.com",
                                          "smtp_email": "vigil@example.com", "smtp_security": "ssl"}
    email = exported["media_types"][0]
    assert email == {"name": "Email", "type": "email", "smtp_server": "127.0.0.1", "smtp_port": 2525,
                     "smtp_email": "vigil@example.com", "smtp_security": "starttls", "username": "vigil",
                     "password": "secret", "subject": "Problem: {{ TRIGGER.NAME }}", "max_attempts": 5,
                     "attempt_interval": "30s"}
    alice = exported["users"][0]
    assert alice["medias"][0]["severity"] == ["high", "disaster"]
    assert alice["medias"][1]["severity"] == ["warning", "average"]
    page = next(a for a in exported["actions"] if a["name"] == "Page on high")
    assert page["conditions"][0] == {"type": "severity", "operator": ">=", "value": "high"}
    assert page["conditions"][6] == {"type": "maintenance", "operator": "no"}
    patch = next(m for m in exported["maintenances"] if m["name"] == "Weekly patching")
    assert patch["active_since"] == "2026-01-01T00:00:00Z"
    assert patch["periods"][1] == {"type": "one_time", "start_date": "2026-12-24T07:00:00Z", "period": "1d"}
    assert patch["periods"][0] == {"type": "weekly", "start_time": "22:00", "period": "2h", "every": 1,
                                   "dayofweek": ["tue", "thu"]}
    assert exported["macros"] == {"{$ONCALL}": "ops"}

    text = yaml.safe_dump(exported, sort_keys=False)
    engine = engine_for(f"sqlite:///{tmp_path / 'other.db'}")
    try:
        upgrade(engine)
        other = ConfigRepo(engine)
        load(other, text)
        assert other.export() == exported
    finally:
        engine.dispose()
    # the same document again changes nothing, ids stay
    ids = repo.alerting()
    load(repo, text)
    assert repo.export() == exported
    again = repo.alerting()
    assert (again.user_ids, again.media_type_ids, again.group_ids) == (ids.user_ids, ids.media_type_ids, ids.group_ids)
    assert set(again.actions) == set(ids.actions) and set(again.maintenances) == set(ids.maintenances)


def test_changes_replace_lists_and_delete_missing_removes_the_rest(repo: ConfigRepo) -> None:
    load(repo, FULL)
    doc = yaml.safe_load(FULL)
    doc["users"] = [{"username": "alice", "medias": [{"media_type": "Script", "send_to": "1"}]}]
    doc["actions"] = [{"name": "Page on high", "operations": [{"send_to_groups": ["Managers"]}]}]
    doc["maintenances"] = doc["maintenances"][1:]
    repo.apply(doc_from_dict(doc))
    cfg = repo.alerting()
    assert set(cfg.user_ids) == {"alice", "bob"}  # kept: not in the document
    alice = cfg.users[cfg.user_ids["alice"]]
    assert alice.groups == [] and [m.media_type for m in alice.medias] == ["Script"] and alice.role == Role.USER
    page = cfg.actions[next(i for i, a in cfg.actions.items() if a.name == "Page on high")]
    assert page.conditions == [] and len(page.operations) == 1 and page.recovery_operations == []
    assert len(cfg.maintenances) == 2
    repo.apply(doc_from_dict(doc), delete_missing=True)
    cfg = repo.alerting()
    assert set(cfg.user_ids) == {"alice"}
    assert [a.name for a in cfg.actions.values()] == ["Page on high"]
    assert [m.name for m in cfg.maintenances.values()] == ["Forever"]
    assert set(cfg.media_type_ids) == {"Email", "Hook", "Relay", "Script"}
    with repo.engine.connect() as c:  # bob's media and group memberships went with him
        assert c.execute(sa.select(sa.func.count()).select_from(t.media)).scalar_one() == 1


def test_the_acceptance_document_imports(repo: ConfigRepo) -> None:
    report = load(repo, ACCEPTANCE_YAML)
    assert report.triggers_created == 1
    [trig] = repo.triggers()
    assert trig.name == "Hot on {HOST.NAME}" and trig.expression == "last(/acc-al/acc.temp)>50"
    assert trig.itemids == (repo.item("acc-al", "acc.temp")[0],)  # type: ignore[index]
    cfg = repo.alerting()
    hook = cfg.media_types[cfg.media_type_ids["acc-hook"]]
    assert hook.kind == MediaKind.WEBHOOK and hook.params["url"] == "http://127.0.0.1:18080/hook"
    assert "{EVENT.ID}" in hook.params["body"]
    user = cfg.users[cfg.user_ids["acc-oncall"]]
    assert user.medias[0].media_type == "acc-hook" and user.medias[0].send_to == "acc"
    [action] = cfg.actions.values()
    assert action.operations[0].users == ["acc-oncall"] and action.recovery_operations[0].users == ["acc-oncall"]
    assert doc_from_dict(repo.export()) is not None
    load(repo, yaml.safe_dump(repo.export()))  # and its export imports back


def doc(**sections: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"media_types": [{"name": "m", "type": "script", "script": "/bin/true"}]}
    base.update(sections)
    return base


@pytest.mark.parametrize("document, message", [
    ({"alerts": []}, "document: unknown field 'alerts'"),
    ({"media_types": [{"name": "", "type": "script", "script": "s"}]}, "media_types[0].name: required"),
    (doc(maintenances=[{"hosts": ["h"], "periods": [{"type": "daily"}]}]), "maintenances[0].name: required"),
    ({"media_types": [{"name": "x"}]}, "media_types[0].type: required: one of email, script, webhook"),
    ({"media_types": [{"name": "x", "type": "sms"}]}, "media_types[0].type: 'sms' is not one of email, script, "
                                                      "webhook"),
    ({"media_types": [{"name": "x", "type": "webhook"}]}, "media_types[0].url: required for a webhook media type"),
    ({"media_types": [{"name": "x", "type": "webhook", "url": "ftp://h/x"}]},
     "media_types[0].url: 'ftp://h/x' is not an http:// or https:// URL"),
    ({"media_types": [{"name": "x", "type": "webhook", "url": "http://h/", "headers": ["a"]}]},
     "media_types[0].headers: expected a mapping"),
    ({"media_types": [{"name": "x", "type": "webhook", "url": "http://h/", "headers": {"Bad Name": "1"}}]},
     "media_types[0].headers.Bad Name: not a valid HTTP header"),
    ({"media_types": [{"name": "x", "type": "webhook", "url": "http://h/", "smtp_server": "s"}]},
     "media_types[0]: unknown field 'smtp_server'"),
    ({"media_types": [{"name": "x", "type": "webhook", "url": "http://h/", "timeout": "5m"}]},
     "media_types[0].timeout: '5m' is outside 1s..60s"),
    ({"media_types": [{"name": "x", "type": "email", "smtp_email": "a@b"}]},
     "media_types[0].smtp_server: required for a email media type"),
    ({"media_types": [{"name": "x", "type": "email", "smtp_server": "s"}]},
     "media_types[0].smtp_email: required"),
    ({"media_types": [{"name": "x", "type": "email", "smtp_server": "s", "smtp_email": "nobody"}]},
     "media_types[0].smtp_email: 'nobody' is not an e-mail address"),
    ({"media_types": [{"name": "x", "type": "email", "smtp_server": "s", "smtp_email": "a@b", "smtp_security": "tls"}]},
     "media_types[0].smtp_security: 'tls' is not one of none, starttls, ssl"),
    ({"media_types": [{"name": "x", "type": "email", "smtp_server": "s", "smtp_email": "a@b", "smtp_port": 0}]},
     "media_types[0].smtp_port: expected a port number"),
    ({"media_types": [{"name": "x", "type": "script"}]}, "media_types[0].script: required"),
    ({"media_types": [{"name": "x", "type": "script", "script": "s", "max_attempts": 0}]},
     "media_types[0].max_attempts: expected a whole number from 1 to 100"),
    ({"media_types": [{"name": "x", "type": "script", "script": "s", "attempt_interval": "2h"}]},
     "media_types[0].attempt_interval: '2h' is longer than 3600 seconds"),
    ({"media_types": [{"name": "m", "type": "script", "script": "s"}, {"name": "m", "type": "script", "script": "t"}]},
     "media_types[1].name: 'm' appears twice (also media_types[0])"),
    (doc(users=[{"name": "no username"}]), "users[0].username: required"),
    (doc(users=[{"username": "u", "role": "root"}]), "users[0].role: 'root' is not one of user, admin, super admin, "
                                                     "guest"),
    (doc(users=[{"username": "u", "medias": [{"media_type": "m"}]}]), "users[0].medias[0].send_to: required"),
    (doc(users=[{"username": "u", "medias": [{"media_type": "m", "send_to": "x", "severity": ["urgent"]}]}]),
     "users[0].medias[0].severity[0]: 'urgent' is not one of"),
    (doc(users=[{"username": "u", "medias": [{"media_type": "m", "send_to": "x", "severity": 64}]}]),
     "users[0].medias[0].severity: 64 is not a bitmask"),
    (doc(users=[{"username": "u", "medias": [{"media_type": "m", "send_to": "x", "period": "weekdays"}]}]),
     "users[0].medias[0].period: 'weekdays' is not a time period"),
    (doc(users=[{"username": "u", "medias": [{"media_type": "m", "send_to": "x", "colour": 1}]}]),
     "users[0].medias[0]: unknown field 'colour'"),
    (doc(users=[{"username": "u"}, {"username": "u"}]), "users[1].username: 'u' appears twice"),
    (doc(user_groups=["a", "a"]), "user_groups[1]: 'a' appears twice"),
    (doc(actions=[{"name": "a"}]), "actions[0]: an action needs operations"),
    (doc(actions=[{"name": "a", "operations": [{"step_from": 1}]}]),
     "actions[0].operations[0]: send_to_users, send_to_groups or command is required"),
    (doc(actions=[{"name": "a", "operations": [{"send_to_users": ["u"], "command": "x"}]}]),
     "actions[0].operations[0]: an operation either sends a message"),
    (doc(actions=[{"name": "a", "operations": [{"send_to_users": ["u"], "step_from": 3, "step_to": 2}]}]),
     "actions[0].operations[0].step_to: 2 is before step_from 3"),
    (doc(actions=[{"name": "a", "operations": [{"send_to_users": ["u"], "step_duration": "10s"}]}]),
     "actions[0].operations[0].step_duration: '10s' is outside 0"),
    (doc(actions=[{"name": "a", "recovery_operations": [{"send_to_users": ["u"], "step_from": 2}]}]),
     "actions[0].recovery_operations[0]: unknown field 'step_from'"),
    (doc(actions=[{"name": "a", "operations": [{"command": "x", "execute_on": "proxy"}]}]),
     "actions[0].operations[0].execute_on: 'proxy' is not one of agent, server"),
    (doc(actions=[{"name": "a", "event_source": "discovery", "operations": [{"command": "x"}]}]),
     "actions[0].event_source: 'discovery' is not one of triggers, internal"),
    (doc(actions=[{"name": "a", "evaltype": "xor", "operations": [{"command": "x"}]}]),
     "actions[0].evaltype: 'xor' is not one of and/or, and, or"),
    (doc(actions=[{"name": "a", "conditions": [{"type": "colour", "value": "x"}], "operations": [{"command": "x"}]}]),
     "actions[0].conditions[0].type: 'colour' is not one of host_group"),
    (doc(actions=[{"name": "a", "conditions": [{"type": "host", "operator": "contains", "value": "x"}],
                   "operations": [{"command": "x"}]}]),
     "actions[0].conditions[0].operator: 'contains' is not one of equals, not equals for a host condition"),
    (doc(actions=[{"name": "a", "conditions": [{"type": "severity", "value": "urgent"}],
                   "operations": [{"command": "x"}]}]),
     "actions[0].conditions[0].value: 'urgent' is not one of"),
    (doc(actions=[{"name": "a", "conditions": [{"type": "host"}], "operations": [{"command": "x"}]}]),
     "actions[0].conditions[0].value: required"),
    (doc(actions=[{"name": "a", "conditions": [{"type": "tag_value", "value": "v"}],
                   "operations": [{"command": "x"}]}]),
     "actions[0].conditions[0].value2: the tag name is required"),
    (doc(actions=[{"name": "a", "conditions": [{"type": "time_period", "value": "always"}],
                   "operations": [{"command": "x"}]}]),
     "actions[0].conditions[0].value: 'always' is not a time period"),
    (doc(actions=[{"name": "a", "conditions": [{"type": "maintenance", "value": "x"}],
                   "operations": [{"command": "x"}]}]),
     "actions[0].conditions[0].value: a maintenance condition has no value"),
    (doc(maintenances=[{"name": "m", "periods": [{"type": "daily"}]}]), "maintenances[0]: a maintenance needs hosts "
                                                                        "or groups"),
    (doc(maintenances=[{"name": "m", "hosts": ["h"]}]), "maintenances[0].periods: at least one period is required"),
    (doc(maintenances=[{"name": "m", "hosts": ["h"], "active_since": "yesterday", "periods": [{"type": "daily"}]}]),
     "maintenances[0].active_since: 'yesterday' is not an ISO time"),
    (doc(maintenances=[{"name": "m", "hosts": ["h"], "active_since": 200, "active_till": 100,
                        "periods": [{"type": "daily"}]}]), "maintenances[0].active_till: must be after active_since"),
    (doc(maintenances=[{"name": "m", "hosts": ["h"], "periods": [{"type": "hourly"}]}]),
     "maintenances[0].periods[0].type: 'hourly' is not one of one_time, daily, weekly, monthly"),
    (doc(maintenances=[{"name": "m", "hosts": ["h"], "periods": [{"type": "one_time"}]}]),
     "maintenances[0].periods[0].start_date: required for a one_time period"),
    (doc(maintenances=[{"name": "m", "hosts": ["h"], "periods": [{"type": "daily", "start_time": "25:00"}]}]),
     "maintenances[0].periods[0].start_time: '25:00' is not a time of day"),
    (yaml.safe_load("maintenances: [{name: m, hosts: [h], periods: [{type: daily, start_time: 22:00}]}]"),
     "maintenances[0].periods[0].start_time: 1320 is a number; quote the time of day"),
    (doc(maintenances=[{"name": "m", "hosts": ["h"], "periods": [{"type": "weekly", "dayofweek": ["funday"]}]}]),
     "maintenances[0].periods[0].dayofweek[0]: 'funday' is not one of mon, tue"),
    (doc(maintenances=[{"name": "m", "hosts": ["h"], "periods": [{"type": "weekly"}]}]),
     "maintenances[0].periods[0].dayofweek: expected a list of mon"),
    (doc(maintenances=[{"name": "m", "hosts": ["h"], "periods": [{"type": "monthly", "month": ["jan"]}]}]),
     "maintenances[0].periods[0]: a monthly period has either day"),
    (doc(maintenances=[{"name": "m", "hosts": ["h"], "periods": [{"type": "daily", "period": "10s"}]}]),
     "maintenances[0].periods[0].period: '10s' is outside 1m..25y"),
    (doc(maintenances=[{"name": "m", "hosts": ["h"], "periods": [{"type": "daily", "day": 3}]}]),
     "maintenances[0].periods[0]: unknown field 'day'"),
])
def test_bad_documents_are_refused_naming_the_field(document: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as e:
        doc_from_dict(document)
    assert str(e.value).startswith(message), str(e.value)


@pytest.mark.parametrize("document, message", [
    (doc(users=[{"username": "u", "medias": [{"media_type": "nope", "send_to": "x"}]}]),
     "users[0].medias[0].media_type: no media type named 'nope' (add it under media_types:)"),
    (doc(users=[{"username": "u", "groups": ["Ghosts"]}]),
     "users[0].groups[0]: no user group named 'Ghosts' (add it under user_groups:)"),
    (doc(actions=[{"name": "a", "operations": [{"send_to_users": ["nobody"]}]}]),
     "actions[0].operations[0].send_to_users[0]: no user named 'nobody'"),
    (doc(actions=[{"name": "a", "operations": [{"send_to_groups": ["nobody"]}]}]),
     "actions[0].operations[0].send_to_groups[0]: no user group named 'nobody'"),
    (doc(users=[{"username": "u"}], actions=[{"name": "a", "recovery_operations": [
        {"send_to_users": ["u"], "media_type": "sms"}]}]),
     "actions[0].recovery_operations[0].media_type: no media type named 'sms'"),
    (doc(actions=[{"name": "a", "conditions": [{"type": "host", "value": "ghost"}], "operations": [{"command": "x"}]}]),
     "actions[0].conditions[0].value: no host named 'ghost'"),
    (doc(actions=[{"name": "a", "conditions": [{"type": "host", "value": "T"}], "operations": [{"command": "x"}]}]),
     "actions[0].conditions[0].value: no host named 'T'"),
    (doc(actions=[{"name": "a", "conditions": [{"type": "host_group", "value": "Ghosts"}],
                   "operations": [{"command": "x"}]}]),
     "actions[0].conditions[0].value: no host group named 'Ghosts'"),
    (doc(actions=[{"name": "a", "conditions": [{"type": "trigger", "value": "h:nope"}],
                   "operations": [{"command": "x"}]}]),
     "actions[0].conditions[0].value: host 'h' has no trigger 'nope'"),
    (doc(actions=[{"name": "a", "conditions": [{"type": "trigger", "value": "just a name"}],
                   "operations": [{"command": "x"}]}]),
     "actions[0].conditions[0].value: 'just a name' is not \"host:trigger name\""),
    (doc(maintenances=[{"name": "m", "hosts": ["ghost"], "periods": [{"type": "daily"}]}]),
     "maintenances[0].hosts[0]: no host named 'ghost'"),
    (doc(maintenances=[{"name": "m", "groups": ["Ghosts"], "periods": [{"type": "daily"}]}]),
     "maintenances[0].groups[0]: no host group named 'Ghosts'"),
])
def test_missing_references_are_refused_on_save(repo: ConfigRepo, document: dict[str, Any], message: str) -> None:
    load(repo, "templates: [{template: T}]\nhosts: [{host: h, items: [{key: k}], "
               "triggers: [{name: t, expression: 'last(/h/k)>1'}]}]")
    before = repo.export()
    with pytest.raises(ConfigError) as e:
        repo.apply(doc_from_dict(document))
    assert str(e.value).startswith(message), str(e.value)
    assert repo.export() == before  # nothing of the document was written


def test_vigil_config_export_imports_back_unchanged(migrated_url: str, tmp_path: Path) -> None:
    """Through the CLI as an operator runs it: import, export, import the export elsewhere, export again."""
    from tests.conftest import VigilServer

    first = VigilServer(tmp_path, migrated_url)
    first.import_yaml(FULL)
    exported = first.cli("config", "export").stdout
    assert "triggers:" in exported and "media_types:" in exported and "maintenances:" in exported
    other = VigilServer(tmp_path, f"sqlite:///{tmp_path / 'other.db'}")
    other.cli("db", "upgrade")
    (tmp_path / "exported.yaml").write_text(exported)
    r = other.cli("config", "import", str(tmp_path / "exported.yaml"))
    assert "triggers: 1 created" in r.stdout
    assert other.cli("config", "export").stdout == exported
    bad = tmp_path / "bad.yaml"
    bad.write_text("hosts:\n  - host: h\n    items: [{key: k}]\n    triggers:\n"
                   "      - {name: t, expression: 'last(/h/k)>1 and'}\n")
    r = other.cli("config", "import", str(bad), check=False)
    assert r.returncode == 1
    assert "hosts[0].triggers[0].expression:" in r.stderr and "at position 16" in r.stderr, r.stderr
    assert "nothing was imported" in r.stderr
