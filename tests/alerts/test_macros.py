"""Message templates: Zabbix macros, Jinja2, JSON escaping, and broken templates."""

from __future__ import annotations

import json
import time

import pytest
from vigil.alerts import macros
from vigil.alerts.macros import HostFacts, ItemFacts, MessageContext, TemplateFailure, UpdateFacts, render

CLOCK = 1704067200 + 3 * 3600 + 4 * 60 + 5


def ctx(**kw: object) -> MessageContext:
    base: dict[str, object] = dict(
        eventid=101, clock=CLOCK, name='Load is "high" on web1', severity=4, triggerid=42,
        trigger_name="Load is high on {HOST.NAME}", trigger_expression="last(/web1/system.cpu.load)>5",
        trigger_value=1, tags=(("service", "nginx"), ("scope", "")),
        hosts=[HostFacts(7, "web1", "Web server 1")],
        items=[ItemFacts(9, "CPU load", "system.cpu.load", "7.5", "8.25")],
        now=CLOCK + 2 * 86400 + 3600 + 125, user_macros={"{$TEAM}": "ops", "{$X:ctx}": "ctx value"})
    base.update(kw)
    return MessageContext(**base)  # type: ignore[arg-type]


def test_every_macro() -> None:
    c = ctx(alert_id=555, alert_sendto="ops@example.com", alert_subject="subj", alert_message="msg",
            user_fullname="Ann Smith (ann)")
    lt = time.localtime(CLOCK)
    cases = {
        "{HOST.NAME}": "Web server 1", "{HOST.HOST}": "web1", "{TRIGGER.NAME}": "Load is high on {HOST.NAME}",
        "{TRIGGER.SEVERITY}": "High", "{TRIGGER.STATUS}": "PROBLEM", "{TRIGGER.ID}": "42",
        "{TRIGGER.EXPRESSION}": "last(/web1/system.cpu.load)>5", "{ITEM.NAME}": "CPU load",
        "{ITEM.KEY}": "system.cpu.load", "{ITEM.VALUE}": "7.5", "{ITEM.LASTVALUE}": "8.25",
        "{ITEM.VALUE1}": "7.5", "{HOST.NAME1}": "Web server 1", "{EVENT.ID}": "101",
        "{EVENT.NAME}": 'Load is "high" on web1', "{EVENT.DATE}": time.strftime("%Y.%m.%d", lt),
        "{EVENT.TIME}": time.strftime("%H:%M:%S", lt), "{EVENT.STATUS}": "PROBLEM", "{EVENT.VALUE}": "1",
        "{EVENT.SEVERITY}": "High", "{EVENT.DURATION}": "2d 1h 2m", "{EVENT.AGE}": "2d 1h 2m",
        "{EVENT.TAGS}": "service:nginx, scope", "{EVENT.RECOVERY.ID}": "*UNKNOWN*", "{EVENT.ACK.STATUS}": "No",
        "{EVENT.UPDATE.MESSAGE}": "*UNKNOWN*", "{USER.FULLNAME}": "Ann Smith (ann)",
        "{ALERT.SENDTO}": "ops@example.com", "{ALERT.SUBJECT}": "subj", "{ALERT.MESSAGE}": "msg",
        "{ALERT.ID}": "555", "{$TEAM}": "ops", "{$X:ctx}": "ctx value", "{$NOPE}": "{$NOPE}",
        "{ITEM.NAME2}": "*UNKNOWN*", "{NOT.A.MACRO}": "{NOT.A.MACRO}",
    }
    for text, want in cases.items():
        assert render(text, c) == want, text
        if "{$" not in text:
            assert macros.expand(text, c) == want, text


def test_recovery_and_update_macros() -> None:
    r = ctx(recovery_eventid=202, recovery_clock=CLOCK + 3600 + 60, trigger_value=0)
    assert render("{EVENT.STATUS} {EVENT.VALUE} {EVENT.RECOVERY.ID} {EVENT.DURATION} {TRIGGER.STATUS}", r) == \
        "RESOLVED 0 202 1h 1m OK"
    assert render("{EVENT.RECOVERY.TIME}", r) == time.strftime("%H:%M:%S", time.localtime(CLOCK + 3660))
    u = ctx(acknowledged=True, update=UpdateFacts(3, CLOCK + 60, "on it", 2 | 4, "Bob Jones (bob)"))
    assert render("{USER.FULLNAME} {EVENT.UPDATE.ACTION}: {EVENT.UPDATE.MESSAGE} ack={EVENT.ACK.STATUS}", u) == \
        "Bob Jones (bob) acknowledged, commented: on it ack=Yes"


def test_age_format() -> None:
    assert [macros.age(s) for s in (0, 59, 60, 3599, 3600, 86400, 90061, -5)] == \
        ["0m", "0m", "1m", "59m", "1h 0m", "1d 0h 0m", "1d 1h 1m", "0m"]


def test_jinja_variables_and_macros_inside_tags() -> None:
    c = ctx()
    assert render("{{ host.name }}/{{ trigger.severity }}/{{ item.lastvalue }}/{{ event.tags.service }}", c) == \
        "Web server 1/High/8.25/nginx"
    assert render('{% if "{TRIGGER.SEVERITY}" == "High" %}page{% else %}mail{% endif %}', c) == "page"
    assert render("{% if {ITEM.LASTVALUE} | float > 8 %}over{% endif %}", c) == "over"
    assert render("{{ {EVENT.NAME} | upper }}", c) == 'LOAD IS "HIGH" ON WEB1'
    assert render('{{ macros["HOST.HOST"] }} {{ macros["$TEAM"] }} {{ "{$TEAM}" }}', c) == "web1 ops ops"
    assert render("{% for h in hosts %}{{ h.host }};{% endfor %}", c) == "web1;"


def test_a_value_is_never_template_syntax() -> None:
    c = ctx(hosts=[HostFacts(7, "evil", "{{ 7 * 7 }} {% if x %}")], name="it's {{ 1 + 1 }}")
    assert render("{HOST.NAME} | {EVENT.NAME}", c) == "{{ 7 * 7 }} {% if x %} | it's {{ 1 + 1 }}"
    assert render("{% if '{EVENT.NAME}' %}{EVENT.NAME}{% endif %}", c) == "it's {{ 1 + 1 }}"


def test_json_escaping_keeps_a_body_valid() -> None:
    c = ctx(hosts=[HostFacts(7, "web1", 'Web "front" \\ 1\n')])
    body = render('{"host": "{HOST.NAME}", "event": "{EVENT.NAME}", "id": {EVENT.ID}}', c, json_escape=True)
    assert json.loads(body) == {"host": 'Web "front" \\ 1\n', "event": 'Load is "high" on web1', "id": 101}
    assert render('{"host": "{HOST.NAME}"}', c) == '{"host": "Web "front" \\ 1\n"}'


@pytest.mark.parametrize(("template", "words"), [
    ("{% if %}", "template error at line 1"),
    ("line\n{{ event.name ", "template error at line 2"),
    ("{% for x in %}", "template error"),
    ("{{ event.clock.__class__.__mro__ }}", "template error"),  # the sandbox refuses
    ("{{ 1 / 0 }}", "ZeroDivisionError"),
])
def test_broken_templates_raise_template_failure(template: str, words: str) -> None:
    with pytest.raises(TemplateFailure, match=words):
        render(template, ctx())


def test_defaults() -> None:
    assert macros.default_templates("problem", {}) == macros.DEFAULTS["problem"]
    assert macros.default_templates("recovery", {"recovery_subject": "R {EVENT.NAME}"})[0] == "R {EVENT.NAME}"
    assert macros.default_templates("update", {"subject": "ignored"})[0] == macros.DEFAULTS["update"][0]
    assert render(macros.DEFAULTS["problem"][0], ctx()) == 'Problem: Load is "high" on web1'
    text = render(macros.DEFAULTS["problem"][1], ctx())
    assert "Host: Web server 1\nSeverity: High\nOriginal problem ID: 101" in text
