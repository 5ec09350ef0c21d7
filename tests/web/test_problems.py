"""Problems, events and triggers: pages and API over a real store (SQLite and PostgreSQL), with rights."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from vigil.server.config.alerting import TriggerSpec
from vigil.server.config.tables import Severity
from vigil.server.store.alertlog import AlertLog, NewAlert
from vigil.server.store.events import ACTION_ACK, ACTION_MESSAGE, Cycle, EventStore, NewEvent

from tests.web.conftest import Env, csrf, form_token


@dataclass
class Problems:
    cpu: int  # eventid of "CPU high" on web-01 (High, manual close allowed)
    net: int  # "Traffic seen" on web-01 (Warning, no manual close), acknowledged=0
    secret: int  # on db-secret, which ops and viewer may not see
    old: int  # a resolved problem of the CPU trigger
    cpu_trigger: int
    net_trigger: int
    events: EventStore


@pytest.fixture
def probs(env: Env) -> Problems:
    repo = env.repo
    t_cpu = repo.save_trigger("web-01", TriggerSpec("CPU high", "last(/web-01/cpu.util)>15", severity=Severity.HIGH,
                                                    manual_close=True, tags=[("component", "cpu")]))
    t_net = repo.save_trigger("web-01", TriggerSpec("Traffic seen", "last(/web-01/net.bytes)>0",
                                                    severity=Severity.WARNING))
    t_sec = repo.save_trigger("db-secret", TriggerSpec("Secret CPU", "last(/db-secret/cpu.util)>50",
                                                       severity=Severity.DISASTER))
    es = EventStore(repo.engine)
    now = env.now

    def ev(trid: int, name: str, sev: int, clock: int, tags: tuple = ()) -> NewEvent:
        return NewEvent(0, 0, trid, clock, 0, 1, name, sev, tags, problem=True)

    old = ev(t_cpu, "CPU high", 4, now - 7200, (("component", "cpu"),))
    es.commit(Cycle(events=[old]))
    es.commit(Cycle(events=[NewEvent(0, 0, t_cpu, now - 6000, 0, 0, "CPU high", 4, resolves=(old.eventid,))]))
    evs = [ev(t_cpu, "CPU high", 4, now - 300, (("component", "cpu"),)), ev(t_net, "Traffic seen", 2, now - 100),
           ev(t_sec, "Secret CPU", 5, now - 50)]
    es.commit(Cycle(events=evs))
    return Problems(evs[0].eventid, evs[1].eventid, evs[2].eventid, old.eventid, t_cpu, t_net, es)


def text(c, path: str, status: int = 200) -> str:  # type: ignore[no-untyped-def]
    r = c.get(path)
    assert r.status_code == status, (path, r.status_code, r.get_data(as_text=True)[:400])
    return r.get_data(as_text=True)


def test_problems_page_lists_filters_and_sorts(env: Env, probs: Problems) -> None:
    c = env.client("admin")
    page = text(c, "/problems")
    assert "CPU high" in page and "Traffic seen" in page and "Secret CPU" in page
    assert 'class="sev sev-4"' in page and "PROBLEM" in page
    # each problem's menu goes to its event, a graph of its item around it, and its trigger
    assert f"/graphs?itemid={env.itemid('web-01', 'cpu.util')}&amp;from={env.now - 300 - 3600}" in page
    assert f"/config/triggers/{probs.cpu_trigger}" in page and f"/events/{probs.cpu}" in page
    assert "Secret CPU" not in text(c, "/problems?severity=4") and "CPU high" in text(c, "/problems?severity=high")
    assert "Secret CPU" not in text(c, f"/problems?hostid={env.hostid('web-01')}")
    tagged = text(c, "/problems?tag=component=cpu")
    assert "CPU high" in tagged and "Traffic seen" not in tagged
    assert "No problems match" in text(c, "/problems?ack=yes")
    young = text(c, "/problems?age=4m")
    assert "Traffic seen" in young and "CPU high" not in young
    # open problems hide the resolved one; history shows it
    assert f"/events/{probs.old}" not in page
    assert f"/events/{probs.old}" in text(c, "/problems?show=history&from=now-1d") and "RESOLVED" in text(
        c, "/problems?show=history&from=now-1d")
    by_sev = text(c, "/problems?sort=severity&desc=1")
    assert by_sev.index("Secret CPU") < by_sev.index("CPU high") < by_sev.index("Traffic seen")
    by_sev = text(c, "/problems?sort=severity&desc=0")
    assert by_sev.index("Traffic seen") < by_sev.index("CPU high")


@pytest.mark.parametrize("query, field", [("severity=7", "severity"), ("age=soon", "age"), ("ack=maybe", "ack"),
                                          ("show=all", "show"), ("sort=password", "sort"), ("hostid=x", "hostid"),
                                          ("show=history&from=yesterday", "from")])
def test_problems_page_names_the_bad_parameter(env: Env, probs: Problems, query: str, field: str) -> None:
    assert f"<code>{field}</code>" in text(env.client("admin"), f"/problems?{query}", 400)


def test_empty_problems_page_says_what_to_do(env: Env) -> None:
    page = text(env.client("admin"), "/problems")
    assert "No open problems" in page and "add triggers to a host" in page


def test_dashboard_counts_link_to_the_filtered_problems_page(env: Env, probs: Problems) -> None:
    page = text(env.client("ops"), "/")
    assert 'href="/problems?severity=4"' in page
    # ops is denied the Secret group: its disaster is not counted
    assert '<b>0</b>Disaster' in page.replace("\n", "") or ">0</b>Disaster" in page


def test_rights_decide_what_is_seen_and_changed(env: Env, probs: Problems) -> None:
    ops = env.client("ops")
    assert "Secret CPU" not in text(ops, "/problems") and "CPU high" in text(ops, "/problems")
    text(ops, f"/events/{probs.secret}", 403)
    viewer = env.client("viewer")
    page = text(viewer, "/problems")
    assert "CPU high" in page and 'name="eventid"' not in page  # read-only: no triage
    tok = csrf(page)
    r = viewer.post("/problems/update", data={"csrf_token": tok, "eventid": probs.cpu, "acknowledge": "1"})
    assert r.status_code == 403
    guest = env.client("guest")  # read-write rights, but a guest changes nothing
    r = guest.post("/problems/update", data={"csrf_token": csrf(text(guest, "/problems")), "eventid": probs.cpu,
                                             "acknowledge": "1"})
    assert r.status_code == 403
    nobody = env.client("nobody")
    assert "No open problems" in text(nobody, "/problems")
    text(nobody, f"/events/{probs.cpu}", 403)
    assert probs.events.acknowledges_after(0) == []


def test_bulk_acknowledge_with_a_message_through_the_ui(env: Env, probs: Problems) -> None:
    c = env.client("ops")
    tok = csrf(text(c, "/problems"))
    r = c.post("/problems/update", data={"csrf_token": tok, "eventid": [probs.cpu, probs.net], "acknowledge": "1",
                                         "message": "looking <b>now</b>", "next": "/problems?ack=no"})
    assert r.status_code == 302 and r.headers["Location"] == "/problems?ack=no"
    acks = probs.events.acknowledges_after(0)
    assert sorted(a.eventid for a in acks) == sorted([probs.cpu, probs.net])
    assert all(a.action == ACTION_ACK | ACTION_MESSAGE and a.message == "looking <b>now</b>" for a in acks)
    assert "No problems match" in text(c, f"/problems?ack=no&hostid={env.hostid('web-01')}")
    event = text(c, f"/events/{probs.cpu}")
    assert "looking &lt;b&gt;now&lt;/b&gt;" in event and "ops" in event and "acknowledged, commented" in event


def test_close_and_severity_are_checked_before_anything_changes(env: Env, probs: Problems) -> None:
    c = env.client("admin")
    tok = csrf(text(c, "/problems"))
    # the net trigger does not allow manual close: the whole bulk update is refused
    r = c.post("/problems/update", data={"csrf_token": tok, "eventid": [probs.cpu, probs.net], "close": "1",
                                         "acknowledge": ""})
    assert r.status_code == 400 and "<code>close</code>" in r.get_data(as_text=True)
    r = c.post("/problems/update", data={"csrf_token": tok, "eventid": probs.cpu, "severity": "9"})
    assert r.status_code == 400 and "<code>severity</code>" in r.get_data(as_text=True)
    r = c.post("/problems/update", data={"csrf_token": tok, "eventid": probs.cpu})
    assert r.status_code == 400  # no change chosen
    assert probs.events.acknowledges_after(0) == []
    r = c.post("/problems/update", data={"eventid": probs.cpu, "acknowledge": "1"})  # no CSRF token
    assert r.status_code == 400 and "csrf" in r.get_data(as_text=True)
    assert probs.events.acknowledges_after(0) == []
    r = c.post("/problems/update", data={"csrf_token": tok, "eventid": probs.cpu, "close": "1", "severity": "5"})
    assert r.status_code == 302
    (a,) = probs.events.acknowledges_after(0)
    assert a.action & 1 and a.action & 8 and a.new_severity == 5 and a.old_severity == 4


def test_event_page_shows_details_graph_updates_alerts_and_history(env: Env, probs: Problems) -> None:
    AlertLog(env.repo.engine).create(NewAlert(None, probs.cpu, None, None, None, "ops@example.com",
                                              "Problem: CPU high", "body", 1, env.now - 200))
    probs.events.acknowledge(probs.cpu, None, "from the command line", ACTION_ACK | ACTION_MESSAGE)
    page = text(env.client("admin"), f"/events/{probs.cpu}")
    assert "last(/web-01/cpu.util)&gt;15" in page and "Allowed" in page  # trigger details
    assert 'data-figure-id="event-figure"' in page and '"shapes"' in page  # the item's graph around it
    assert "ops@example.com" in page and "Problem: CPU high" in page and "Queued" in page
    assert "from the command line" in page and "vigil ack (command line)" in page
    assert f"/events/{probs.old}" in page  # the trigger's event list
    assert 'id="update"' in page  # triage form for an open problem
    text(env.client("admin"), "/events/999999", 404)
    assert "CPU high" in text(env.client("admin"), "/events?from=now-1d")


# --- triggers ----------------------------------------------------------------------------------------

def test_trigger_list_and_form_validate_preview_and_save(env: Env, probs: Problems) -> None:
    c = env.client("ops")
    web = env.hostid("web-01")
    page = text(c, f"/config/triggers?hostid={web}")
    assert "CPU high" in page and "Traffic seen" in page and "Secret CPU" not in page and "Create trigger" in page
    assert "Traffic seen" not in text(c, f"/config/triggers?hostid={web}&severity=4")
    tok = form_token(c, f"/config/hosts/{web}/triggers/new")
    r = c.post(f"/config/hosts/{web}/triggers/new", data={"csrf_token": tok, "name": "Bad", "severity": "3",
                                                          "expression": "last(/web-01/cpu.util)>>5", "enabled": "1"})
    body = r.get_data(as_text=True)
    assert r.status_code == 400 and "at position 23" in body and 'class="expr-caret"' in body
    r = c.post(f"/config/hosts/{web}/triggers/new", data={"csrf_token": tok, "name": "Bad", "severity": "3",
                                                          "expression": "last(/web-01/nope)>5", "enabled": "1"})
    assert r.status_code == 400 and "has no item" in r.get_data(as_text=True)
    r = c.post(f"/config/hosts/{web}/triggers/new", data={"csrf_token": tok, "name": "CPU high", "severity": "3",
                                                          "expression": "last(/web-01/cpu.util)>5", "enabled": "1"})
    assert r.status_code == 400 and "already" in r.get_data(as_text=True)
    r = c.post(f"/config/hosts/{web}/triggers/new", data={"csrf_token": tok, "name": "Peek", "severity": "3",
                                                          "expression": "last(/db-secret/cpu.util)>5", "enabled": "1"})
    assert r.status_code == 400 and "no rights to host" in r.get_data(as_text=True)
    # check: cpu.util's last value is 19, so > 15 fires and > 50 does not
    r = c.post(f"/config/hosts/{web}/triggers/new", data={"csrf_token": tok, "name": "Hot", "action": "check",
                                                          "expression": "last(/web-01/cpu.util)>15", "severity": "4"})
    body = r.get_data(as_text=True)
    assert r.status_code == 200 and "<b>PROBLEM</b>" in body and "<b>19</b>" in body
    assert env.repo.export()["hosts"][0].get("triggers", []) and "Hot" not in str(env.repo.export())
    r = c.post(f"/config/hosts/{web}/triggers/new", data={"csrf_token": tok, "name": "Hot", "severity": "4",
                                                          "expression": "last(/web-01/cpu.util)>50", "enabled": "1",
                                                          "tags": "scope=perf"})
    assert r.status_code == 302
    trid = int(r.headers["Location"].rsplit("/", 1)[1])
    form = text(c, f"/config/triggers/{trid}")
    assert "<b>OK</b>" in form and "No problems yet" in form
    r = c.post(f"/config/triggers/{trid}", data={"csrf_token": tok, "name": "Hotter", "severity": "5",
                                                 "expression": "last(/web-01/cpu.util)>60", "enabled": "1"})
    assert r.status_code == 302
    names = [t["name"] for t in next(h for h in env.repo.export()["hosts"] if h["host"] == "web-01")["triggers"]]
    assert "Hotter" in names and "Hot" not in names
    recent = text(c, f"/config/triggers/{probs.cpu_trigger}")
    assert f"/events/{probs.cpu}" in recent and f"/events/{probs.old}" in recent
    r = c.post("/config/triggers/delete", data={"csrf_token": tok, "triggerid": trid, "hostid": web})
    assert r.status_code == 302
    text(c, f"/config/triggers/{trid}", 404)


def test_trigger_pages_refuse_those_without_rights(env: Env, probs: Problems) -> None:
    web = env.hostid("web-01")
    viewer = env.client("viewer")
    assert "CPU high" in text(viewer, f"/config/triggers?hostid={web}")
    text(viewer, f"/config/hosts/{web}/triggers/new", 403)
    form = text(viewer, f"/config/triggers/{probs.cpu_trigger}")  # read-only: no buttons that would fail
    assert "Would it fire now?" in form and 'value="save"' not in form and "Delete trigger" not in form
    r = viewer.post(f"/config/triggers/{probs.cpu_trigger}", data={"csrf_token": form_token(viewer), "name": "x",
                                                                    "expression": "last(/web-01/cpu.util)>1"})
    assert r.status_code == 403
    tok = form_token(viewer)
    r = viewer.post("/config/triggers/delete", data={"csrf_token": tok, "triggerid": probs.cpu_trigger})
    assert r.status_code == 403
    text(env.client("ops"), f"/config/hosts/{env.hostid('db-secret')}/triggers/new", 403)


# --- API ---------------------------------------------------------------------------------------------

def token(env: Env, user: str) -> dict[str, str]:
    found = env.users.by_name(user)
    assert found is not None
    uid = found.userid
    _, secret = env.users.create_token(uid, f"t-{user}", env.now, 0, creator=uid)
    return {"Authorization": f"Bearer {secret}"}


def test_api_problems_list_and_actions(env: Env, probs: Problems) -> None:
    c = env.app.test_client()
    ops, viewer, guest = token(env, "ops"), token(env, "viewer"), token(env, "guest")
    r = c.get("/api/v1/problems?severity=4&severity=2&sort=severity", headers=ops)
    assert r.status_code == 200
    rows = r.get_json()["data"]
    assert [p["name"] for p in rows] == ["CPU high", "Traffic seen"] and r.get_json()["total"] == 2
    assert rows[0]["severity_name"] == "High" and rows[0]["tags"] == [{"tag": "component", "value": "cpu"}]
    r = c.post("/api/v1/problems/acknowledge", json={"eventids": [probs.cpu], "message": "on it"}, headers=ops)
    assert r.status_code == 200 and r.get_json()["data"]["updated"] == [probs.cpu]
    assert c.get("/api/v1/problems?ack=yes", headers=ops).get_json()["data"][0]["eventid"] == probs.cpu
    r = c.post("/api/v1/problems/close", json={"eventids": [probs.net]}, headers=ops)
    assert r.status_code == 400 and r.get_json()["error"]["field"] == "close"
    r = c.post("/api/v1/problems/severity", json={"eventids": [probs.cpu]}, headers=ops)
    assert r.status_code == 400 and r.get_json()["error"]["field"] == "severity"
    r = c.post("/api/v1/problems/severity", json={"eventids": [probs.cpu], "severity": "loud"}, headers=ops)
    assert r.status_code == 400 and r.get_json()["error"] == {
        "code": "bad_request", "field": "severity",
        "message": r.get_json()["error"]["message"]} and "loud" in r.get_json()["error"]["message"]
    r = c.post("/api/v1/problems/comment", json={"eventids": ["x"], "message": "m"}, headers=ops)
    assert r.status_code == 400 and r.get_json()["error"]["field"] == "eventids"
    r = c.post("/api/v1/problems/comment", json={"eventids": [probs.cpu], "message": "m", "colour": 1}, headers=ops)
    assert r.status_code == 400 and r.get_json()["error"]["field"] == "colour"
    r = c.post("/api/v1/problems/acknowledge", json={"eventids": [probs.secret]}, headers=ops)
    assert r.status_code == 403 and r.get_json()["error"]["field"] == "eventids[0]"
    r = c.post("/api/v1/problems/acknowledge", json={"eventids": [probs.net]}, headers=viewer)
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "forbidden"
    r = c.post("/api/v1/problems/comment", json={"eventids": [probs.net], "message": "hi"}, headers=guest)
    assert r.status_code == 403
    assert c.get(f"/api/v1/events/{probs.secret}", headers=viewer).status_code == 403
    assert c.get("/api/v1/problems", headers=viewer).get_json()["total"] == 2
    (a,) = probs.events.acknowledges_after(0)
    assert a.eventid == probs.cpu and a.message == "on it"
    ev = c.get(f"/api/v1/events/{probs.cpu}", headers=ops).get_json()["data"]
    assert ev["status"] == "problem" and ev["updates"][0]["message"] == "on it" and ev["host"] == "web-01"
    evs = c.get(f"/api/v1/events?triggerid={probs.cpu_trigger}&from=now-1d", headers=ops).get_json()
    assert [e["status"] for e in evs["data"]] == ["problem", "ok", "problem"]


def test_api_triggers_crud_with_field_errors_and_rights(env: Env, probs: Problems) -> None:
    c = env.app.test_client()
    ops, viewer = token(env, "ops"), token(env, "viewer")
    web = env.hostid("web-01")
    listed = c.get(f"/api/v1/triggers?hostid={web}", headers=ops).get_json()
    assert {t["name"] for t in listed["data"]} == {"CPU high", "Traffic seen"}
    one = c.get(f"/api/v1/triggers/{probs.cpu_trigger}", headers=ops).get_json()["data"]
    assert one["would_fire"]["value"] == "problem" and one["would_fire"]["functions"][0]["value"] == "19"
    assert len(one["recent_problems"]) == 2
    r = c.post("/api/v1/triggers", json={"hostid": web, "name": "API", "expression": "last(/web-01/cpu.util)>"},
               headers=ops)
    err = r.get_json()["error"]
    assert r.status_code == 400 and err["field"] == "expression" and "position" in err["message"]
    r = c.post("/api/v1/triggers", json={"hostid": web, "name": "", "expression": "last(/web-01/cpu.util)>1"},
               headers=ops)
    assert r.status_code == 400 and r.get_json()["error"]["field"] == "name"
    r = c.post("/api/v1/triggers", json={"hostid": web, "name": "X", "expression": "last(/web-01/cpu.util)>1",
                                         "severity": "huge"}, headers=ops)
    assert r.status_code == 400 and r.get_json()["error"]["field"] == "severity"
    r = c.post("/api/v1/triggers", json={"hostid": web, "name": "X" * 300, "expression": "last(/web-01/cpu.util)>1"},
               headers=ops)
    assert r.status_code == 400 and r.get_json()["error"]["field"] == "name"
    r = c.post("/api/v1/triggers", json={"hostid": web, "name": "API", "expression": "last(/web-01/cpu.util)>1"},
               headers=viewer)
    assert r.status_code == 403
    r = c.post("/api/v1/triggers", json={"hostid": env.hostid("db-secret"), "name": "API",
                                         "expression": "last(/db-secret/cpu.util)>1"}, headers=ops)
    assert r.status_code == 403 and r.get_json()["error"]["field"] == "hostid"
    r = c.post("/api/v1/triggers", json={"hostid": web, "name": "API", "expression": "last(/web-01/cpu.util)>1",
                                         "severity": "average", "manual_close": True}, headers=ops)
    assert r.status_code == 201
    trid = r.get_json()["data"]["triggerid"]
    assert r.get_json()["data"]["severity"] == 3 and r.get_json()["data"]["manual_close"] is True
    r = c.patch(f"/api/v1/triggers/{trid}", json={"severity": 5, "name": "API renamed"}, headers=ops)
    assert r.status_code == 200 and r.get_json()["data"]["name"] == "API renamed"
    assert r.get_json()["data"]["expression"] == "last(/web-01/cpu.util)>1"
    assert c.patch(f"/api/v1/triggers/{trid}", json={"severity": 5}, headers=viewer).status_code == 403
    assert c.patch(f"/api/v1/triggers/{trid}", json={"nonsense": 1}, headers=ops).get_json()["error"][
        "field"] == "nonsense"
    r = c.post("/api/v1/triggers/check", json={"hostid": web, "expression": "last(/web-01/cpu.util)>100"}, headers=ops)
    assert r.get_json()["data"]["value"] == "ok"
    r = c.post("/api/v1/triggers/check", json={"hostid": web, "expression": "last(/web-01/cpu.util"}, headers=ops)
    assert r.status_code == 400 and r.get_json()["error"]["field"] == "expression"
    assert c.delete(f"/api/v1/triggers/{trid}", headers=viewer).status_code == 403
    assert c.delete(f"/api/v1/triggers/{trid}", headers=ops).status_code == 200
    assert c.get(f"/api/v1/triggers/{trid}", headers=ops).status_code == 404
    doc = c.get("/api/v1/openapi.json").get_json()
    assert {"/triggers", "/triggers/{triggerid}", "/problems", "/problems/acknowledge", "/events/{eventid}"} <= set(
        doc["paths"])


def test_recently_resolved_problems_stay_listed_for_an_hour_when_asked(env: Env, probs: Problems) -> None:
    probs.events.commit(Cycle(events=[NewEvent(0, 0, probs.net_trigger, env.now - 30, 0, 0, "Traffic seen", 2,
                                               resolves=(probs.net,))]))
    c = env.client("admin")
    assert f"/events/{probs.net}" not in text(c, "/problems")
    recent = text(c, "/problems?show=recent")
    assert f"/events/{probs.net}" in recent and "RESOLVED" in recent
    assert f"/events/{probs.old}" not in recent  # resolved 100 minutes ago
    api = c.get("/api/v1/problems?show=recent&severity=2").get_json()["data"]
    assert [(p["eventid"], p["status"], p["duration"]) for p in api] == [(probs.net, "resolved", 70)]
