"""Autoregistration on the server's side: the actions' conditions (pure), reading an agent's request,
the YAML of autoregistration actions, and, on both stores, what recording a registration does to the
configuration (server/config/autoreg.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from vigil.server.config.alerting import ActionSpec, ConditionSpec, action_from_doc, action_to_doc
from vigil.server.config.autoreg import (
    CONN_DEFAULT,
    CONN_DNS,
    CONN_IP,
    HOST_METADATA,
    HOST_NAME,
    LIKE,
    NOT_LIKE,
    NOT_REGEXP,
    PROXY,
    REGEXP,
    AutoregConditionError,
    Registration,
    RegistrationError,
    autoreg_condition_matches,
    matching_actions,
    registration_from_request,
)
from vigil.server.config.migrate import engine_for
from vigil.server.config.model import ConfigError, doc_from_dict
from vigil.server.config.repo import ConfigRepo
from vigil.server.config.tables import EventSource


def cond(kind: int, op: int, value: str) -> ConditionSpec:
    return ConditionSpec(type=kind, operator=op, value=value)


@pytest.mark.parametrize(("c", "host", "metadata", "proxy", "expected"), [
    (cond(HOST_METADATA, LIKE, "web"), "h", "linux web", "", True),
    (cond(HOST_METADATA, LIKE, "web"), "h", "linux db", "", False),
    (cond(HOST_METADATA, NOT_LIKE, "windows"), "h", "linux web", "", True),
    (cond(HOST_METADATA, NOT_LIKE, "linux"), "h", "linux web", "", False),
    (cond(HOST_METADATA, REGEXP, r"^linux\b.*web$"), "h", "linux nginx web", "", True),
    (cond(HOST_METADATA, REGEXP, r"^web"), "h", "linux web", "", False),
    (cond(HOST_METADATA, NOT_REGEXP, r"^win"), "h", "linux", "", True),
    (cond(HOST_METADATA, NOT_REGEXP, r"^lin"), "h", "linux", "", False),
    (cond(HOST_NAME, LIKE, "web-"), "web-01", "", "", True),
    (cond(HOST_NAME, REGEXP, r"^db-\d+$"), "web-01", "", "", False),
    (cond(HOST_NAME, REGEXP, r"^db-\d+$"), "db-07", "", "", True),
    (cond(PROXY, 0, "branch"), "h", "", "branch", True),
    (cond(PROXY, 0, "branch"), "h", "", "", False),
    (cond(PROXY, 1, "branch"), "h", "", "", True),
])
def test_condition_matching(c: ConditionSpec, host: str, metadata: str, proxy: str, expected: bool) -> None:
    assert autoreg_condition_matches(c, host, metadata, proxy) is expected


@pytest.mark.parametrize(("c", "message"), [
    (cond(HOST_METADATA, REGEXP, "(unclosed"), "is not a regular expression"),
    (cond(HOST_NAME, 4, "x"), "operator 4 is not one of"),
    (cond(PROXY, LIKE, "x"), "condition proxy: operator 2"),
    (cond(4, 0, "3"), "condition type 4 is not one of an autoregistration action"),
])
def test_conditions_that_cannot_be_evaluated_say_why(c: ConditionSpec, message: str) -> None:
    with pytest.raises(AutoregConditionError, match=message.replace("(", r"\(")):
        autoreg_condition_matches(c, "h", "m", "")


def action(name: str, conditions: list[ConditionSpec], evaltype: int = 0, enabled: bool = True,
           source: int = EventSource.AUTOREGISTRATION) -> ActionSpec:
    return ActionSpec(name=name, event_source=source, evaltype=evaltype, enabled=enabled, conditions=conditions)


def test_matching_actions_follow_zabbix_evaluation_and_skip_the_others() -> None:
    web, not_win = cond(HOST_METADATA, LIKE, "web"), cond(HOST_METADATA, NOT_LIKE, "windows")
    actions = {
        1: action("and/or: same type OR'ed", [web, not_win]),
        2: action("and", [web, not_win], evaltype=1),
        3: action("or", [cond(HOST_NAME, LIKE, "zzz"), web], evaltype=2),
        4: action("all", []),
        5: action("disabled", [], enabled=False),
        6: action("trigger action", [], source=EventSource.TRIGGERS),
        7: action("bad regexp", [cond(HOST_NAME, REGEXP, "(")]),
        8: action("types AND'ed", [web, cond(PROXY, 0, "branch")]),
    }
    names = lambda r: [a.name for _, a in matching_actions(actions, r)]  # noqa: E731
    assert names(Registration("h1", host_metadata="linux db")) == ["and/or: same type OR'ed", "all"]
    assert names(Registration("h2", host_metadata="linux web")) == ["and/or: same type OR'ed", "and", "or", "all"]
    assert names(Registration("h3", host_metadata="windows web", proxy="branch")) == [
        "and/or: same type OR'ed", "or", "all", "types AND'ed"]


def test_an_agents_request_is_read_as_zabbix_reads_it() -> None:
    r = registration_from_request({"host": "web-01", "host_metadata": "linux web"}, "127.0.0.5:40000", 100)
    assert (r.host, r.ip, r.dns, r.port, r.host_metadata, r.flags, r.clock) == (
        "web-01", "127.0.0.5", "", 10050, "linux web", CONN_DEFAULT, 100)
    r = registration_from_request({"host": "w", "ip": "10.0.0.9", "port": 20050}, "[::ffff:127.0.0.1]:1", 1)
    assert (r.ip, r.port, r.flags) == ("10.0.0.9", 20050, CONN_DEFAULT)
    assert registration_from_request({"host": "w"}, "::ffff:127.0.0.1:5", 1).ip == "127.0.0.1"
    r = registration_from_request({"host": "w", "interface": "10.1.1.1"}, "127.0.0.1:1", 1)
    assert (r.ip, r.dns, r.flags) == ("10.1.1.1", "", CONN_IP)
    r = registration_from_request({"host": "w", "interface": "web.example.org"}, "127.0.0.1:1", 1)
    assert (r.ip, r.dns, r.flags) == ("127.0.0.1", "web.example.org", CONN_DNS)


@pytest.mark.parametrize(("obj", "message"), [
    ({}, "host: missing"),
    ({"host": ""}, "host: must be a non-empty string"),
    ({"host": "a" * 129}, "host: longer than 128 characters"),
    ({"host": "bad/host"}, r"invalid host name \[bad/host\]: character '/'"),
    ({"host": "h", "host_metadata": "m" * 10240}, "host_metadata: 10240 characters, over the maximum of 255"),
    ({"host": "h", "host_metadata": 5}, "host_metadata: must be a string"),
    ({"host": "h", "interface": "i" * 256}, "interface: 256 characters"),
    ({"host": "h", "ip": "300.1.1.1"}, "ip: '300.1.1.1' is not a valid IP address"),
    ({"host": "h", "port": 0}, "port: '0' is not a valid port"),
    ({"host": "h", "port": "http"}, "port: 'http' is not a valid port"),
])
def test_bad_requests_are_refused_naming_the_field(obj: dict[str, Any], message: str) -> None:
    with pytest.raises(RegistrationError, match=message):
        registration_from_request(obj, "127.0.0.1:1", 1)


def test_a_registration_is_new_when_anything_the_agent_says_changed() -> None:
    r = Registration("h", ip="1.2.3.4", port=10050, host_metadata="m")
    assert r.same_as(Registration("h", ip="1.2.3.4", port=10050, host_metadata="m", clock=99))
    for other in (Registration("h", ip="1.2.3.5", host_metadata="m"), Registration("h", ip="1.2.3.4", port=1,
                  host_metadata="m"), Registration("h", ip="1.2.3.4", host_metadata="n"),
                  Registration("h", ip="1.2.3.4", host_metadata="m", proxyid=3)):
        assert not r.same_as(other)


# --- YAML -----------------------------------------------------------------------------------------

AUTOREG_ACTION = """
name: Linux web
event_source: autoregistration
evaltype: and
conditions:
  - {type: host_metadata, value: linux}
  - {type: host_name, operator: matches, value: "^web-[0-9]+$"}
  - {type: proxy, operator: not equals, value: dmz}
operations:
  - add_host: true
  - add_to_groups: [Web servers]
  - link_templates: [Linux by Vigil agent]
  - add_host_tags: [{tag: role, value: web}, {tag: autoreg}]
  - disable_host: true
  - {send_to_users: [admin], subject: "Registered {HOST.HOST}"}
"""


def test_an_autoregistration_action_reads_and_writes_as_yaml() -> None:
    doc = yaml.safe_load(AUTOREG_ACTION)
    a = action_from_doc(doc, "actions[0]")
    assert a.event_source == EventSource.AUTOREGISTRATION and a.evaltype == 1
    assert [(c.type, c.operator, c.value) for c in a.conditions] == [
        (24, 2, "linux"), (22, 8, "^web-[0-9]+$"), (20, 1, "dmz")]
    assert [op.kind for op in a.operations] == [2, 4, 6, 13, 9, 0]
    assert a.operations[1].host_groups == ["Web servers"] and a.operations[2].templates == ["Linux by Vigil agent"]
    assert a.operations[3].tags == [("role", "web"), ("autoreg", "")]
    assert action_from_doc(action_to_doc(a), "again") == a


@pytest.mark.parametrize(("change", "message"), [
    ({"conditions": [{"type": "severity", "value": "high"}]},
     "actions[0].conditions[0].type: 'severity' is not a condition of an autoregistration action"),
    ({"event_source": "triggers", "operations": [{"send_to_users": ["a"]}]},
     "actions[0].conditions[0].type: 'host_metadata' is not a condition of a triggers action"),
    ({"conditions": [{"type": "host_name", "operator": "matches", "value": "(x"}]},
     "actions[0].conditions[0].value: '(x' is not a regular expression"),
    ({"conditions": [{"type": "proxy", "operator": "contains", "value": "x"}]},
     "actions[0].conditions[0].operator: 'contains' is not one of equals, not equals for a proxy condition"),
    ({"operations": [{"add_host": True, "disable_host": True}]},
     "actions[0].operations[0]: a host operation is one of"),
    ({"operations": [{"add_host": "yes"}]}, "actions[0].operations[0].add_host: must be true"),
    ({"operations": [{"add_to_groups": []}]}, "actions[0].operations[0].add_to_groups: at least one host group"),
    ({"operations": [{"add_host_tags": [{"tag": ""}]}]}, r"actions\[0\].operations\[0\].add_host_tags\[0\]: a tag"),
    ({"operations": [{"add_host": True, "step_from": 2}]}, "actions[0].operations[0]: a host operation is one of"),
    ({"recovery_operations": [{"send_to_users": ["a"]}]},
     "actions[0].recovery_operations: an autoregistration action has operations only"),
])
def test_bad_autoregistration_actions_are_refused_naming_the_field(change: dict[str, Any], message: str) -> None:
    doc = yaml.safe_load(AUTOREG_ACTION) | change
    with pytest.raises(ConfigError) as e:
        action_from_doc(doc, "actions[0]")
    assert message.replace("\\", "") in str(e.value) or __import__("re").search(message, str(e.value)), str(e.value)


# --- the configuration, on both stores -------------------------------------------------------------

CONFIG = """
proxies:
  - {name: branch, mode: active}
templates:
  - template: Web template
    items:
      - {key: agent.ping, type: agent_active, value_type: unsigned, delay: 1s}
users:
  - username: ops
actions:
  - name: Web
    event_source: autoregistration
    conditions: [{type: host_metadata, value: web}, {type: proxy, value: branch}]
    operations:
      - add_to_groups: [Web servers]
      - link_templates: [Web template]
      - add_host_tags: [{tag: role, value: web}]
      - {send_to_users: [ops]}
  - name: Quarantine
    event_source: autoregistration
    conditions: [{type: host_name, operator: matches, value: "^tmp-"}]
    operations: [{disable_host: true}]
"""


@pytest.fixture
def repo(migrated_url: str) -> Iterator[ConfigRepo]:
    engine = engine_for(migrated_url)
    try:
        r = ConfigRepo(engine)
        r.apply(doc_from_dict(yaml.safe_load(CONFIG)))
        yield r
    finally:
        engine.dispose()


def q(repo: ConfigRepo, sql: str, **args: Any) -> list[tuple]:
    with repo.engine.connect() as c:
        return [tuple(r) for r in c.execute(sa.text(sql), args)]


def register(repo: ConfigRepo, r: Registration) -> Any:
    ops = [op for _, a in matching_actions(repo.alerting().actions, r) for op in a.operations]
    return repo.autoregister(r, ops)


def test_actions_read_back_with_their_host_operations(repo: ConfigRepo) -> None:
    actions = {a.name: a for a in repo.alerting().actions.values()}
    web = actions["Web"]
    assert [(op.kind, op.host_groups, op.templates, op.tags) for op in web.operations] == [
        (4, ["Web servers"], [], []), (6, [], ["Web template"], []), (13, [], [], [("role", "web")]), (0, [], [], [])]
    assert web.operations[3].users == ["ops"]
    exported = [a for a in repo.export()["actions"] if a["name"] == "Web"][0]
    assert exported["operations"][:3] == [{"add_to_groups": ["Web servers"]}, {"link_templates": ["Web template"]},
                                          {"add_host_tags": [{"tag": "role", "value": "web"}]}]
    with pytest.raises(ConfigError, match=r"actions\[0\].operations\[0\].link_templates\[0\]: no template named"):
        repo.apply(doc_from_dict(yaml.safe_load("""
actions:
  - {name: X, event_source: autoregistration, operations: [{link_templates: [Nope]}]}""")))
    with pytest.raises(ConfigError, match=r"actions\[0\].conditions\[0\].value: no proxy named 'nowhere'"):
        repo.apply(doc_from_dict(yaml.safe_load("""
actions:
  - {name: X, event_source: autoregistration, conditions: [{type: proxy, value: nowhere}],
     operations: [{add_host: true}]}""")))


def test_a_registration_makes_the_host_its_actions_describe(repo: ConfigRepo) -> None:
    proxyid = q(repo, "SELECT proxyid FROM proxies WHERE name = 'branch'")[0][0]
    version = repo.version()
    r = Registration("web-01", ip="10.0.0.5", dns="web-01.lan", port=20050, host_metadata="linux web",
                     flags=CONN_DNS, clock=1000, proxyid=proxyid, proxy="branch")
    done = register(repo, r)
    assert done.created and done.hostid is not None and repo.version() == version + 1
    hid = done.hostid
    assert q(repo, "SELECT host, name, status, proxyid FROM hosts WHERE hostid = :h", h=hid) == [
        ("web-01", "web-01", 0, proxyid)]
    assert q(repo, "SELECT type, main, useip, ip, dns, port FROM interfaces WHERE hostid = :h", h=hid) == [
        (1, 1, 0, "10.0.0.5", "web-01.lan", "20050")]  # a DNS interface: useip 0
    assert q(repo, "SELECT g.name FROM hosts_groups hg JOIN host_groups g ON g.groupid = hg.groupid "
                   "WHERE hg.hostid = :h", h=hid) == [("Web servers",)]
    assert q(repo, "SELECT key_ FROM items WHERE hostid = :h", h=hid) == [("agent.ping",)]  # the template's
    assert q(repo, "SELECT tag, value FROM host_tags WHERE hostid = :h", h=hid) == [("role", "web")]
    assert q(repo, "SELECT source, object, objectid, clock, value, name FROM events") == [
        (2, 3, done.autoreg_hostid, 1000, 1, "web-01")]
    assert q(repo, "SELECT host, proxyid, listen_ip, listen_dns, listen_port, host_metadata, flags FROM "
                   "autoreg_host") == [("web-01", proxyid, "10.0.0.5", "web-01.lan", 20050, "linux web", CONN_DNS)]
    assert repo.autoreg_hosts()["web-01"].same_as(r)

    # Again, from the server itself with another address: the record and the interface follow, the
    # host leaves the proxy (a second event), and nothing is added twice.
    again = Registration("web-01", ip="10.0.0.6", port=10050, host_metadata="linux web", clock=1100)
    done2 = register(repo, again)  # the proxy condition no longer holds: no operation
    assert done2.hostid is None and done2.eventid != done.eventid
    assert q(repo, "SELECT listen_ip, proxyid FROM autoreg_host") == [("10.0.0.6", None)]
    done3 = register(repo, Registration("web-01", ip="10.0.0.7", host_metadata="linux web", clock=1200,
                                        proxyid=proxyid, proxy="branch"))
    assert done3.hostid == hid and not done3.created
    assert q(repo, "SELECT ip, useip FROM interfaces WHERE hostid = :h", h=hid) == [("10.0.0.7", 1)]
    assert q(repo, "SELECT count(*) FROM hosts_groups WHERE hostid = :h", h=hid) == [(1,)]
    assert q(repo, "SELECT count(*) FROM host_tags WHERE hostid = :h", h=hid) == [(1,)]
    assert q(repo, "SELECT count(*) FROM events WHERE source = 2") == [(3,)]


def test_no_matching_action_records_the_event_only(repo: ConfigRepo) -> None:
    version = repo.version()
    done = register(repo, Registration("db-01", ip="10.0.0.8", host_metadata="linux db", clock=5))
    assert done.hostid is None and repo.version() == version
    assert q(repo, "SELECT count(*) FROM hosts WHERE host = 'db-01'") == [(0,)]
    assert q(repo, "SELECT count(*) FROM autoreg_host") == [(1,)]


def test_a_disable_operation_makes_the_host_disabled_in_discovered_hosts(repo: ConfigRepo) -> None:
    done = register(repo, Registration("tmp-01", ip="10.0.0.9", clock=5))
    assert done.created
    assert q(repo, "SELECT status FROM hosts WHERE host = 'tmp-01'") == [(1,)]
    assert q(repo, "SELECT g.name FROM hosts_groups hg JOIN host_groups g ON g.groupid = hg.groupid "
                   "WHERE hg.hostid = :h", h=done.hostid) == [("Discovered hosts",)]
