"""Configuration → Maintenance: one-time, daily, weekly and monthly periods over hosts and groups, with or
without data collection (seen by `config export`); garbage refused with nothing changed; rights."""

from __future__ import annotations

import pytest

from tests.web.conftest import Env, form_token

BASE = {"name": "Patch night", "collect_data": "0", "active_since": "2026-12-01T00:00:00Z",
        "active_till": "2027-01-01T00:00:00Z", "hosts": ["web-01"], "groups": ["Linux servers"],
        "description": "kernel updates",
        "periods-0-type": "one_time", "periods-0-start_date": "2026-12-05T22:00:00Z", "periods-0-period": "2h",
        "periods-1-type": "daily", "periods-1-start_time": "03:30", "periods-1-period": "30m", "periods-1-every": "2",
        "periods-2-type": "weekly", "periods-2-start_time": "22:00", "periods-2-period": "4h",
        "periods-2-dayofweek": ["sat", "sun"],
        "periods-3-type": "monthly", "periods-3-start_time": "01:00", "periods-3-period": "1h", "periods-3-day": "15",
        "periods-3-month": ["jan", "jul"],
        "periods-4-type": "monthly", "periods-4-start_time": "01:00", "periods-4-period": "1h",
        "periods-4-dayofweek": ["fri"], "periods-4-every": "5", "periods-4-month": ["dec"]}


def post(c, path: str, data: dict):  # type: ignore[no-untyped-def]
    return c.post(path, data={"csrf_token": form_token(c, "/config/maintenance/new"), **data})


def maintenances(env: Env) -> list[dict]:
    return env.repo.export().get("maintenances", [])


def test_create_edit_delete_a_maintenance(env: Env) -> None:
    c = env.client("admin")
    assert c.get("/config/maintenance/new").status_code == 200
    r = post(c, "/config/maintenance/new", BASE)
    assert r.status_code == 302, r.get_data(as_text=True)[-3000:]
    [m] = maintenances(env)
    assert m["collect_data"] is False and m["hosts"] == ["web-01"] and m["groups"] == ["Linux servers"]
    assert m["active_till"] == "2027-01-01T00:00:00Z"
    assert m["periods"] == [
        {"type": "one_time", "start_date": "2026-12-05T22:00:00Z", "period": "2h"},
        {"type": "daily", "start_time": "03:30", "period": "30m", "every": 2},
        {"type": "weekly", "start_time": "22:00", "period": "4h", "every": 1, "dayofweek": ["sat", "sun"]},
        {"type": "monthly", "start_time": "01:00", "period": "1h", "day": 15, "month": ["jan", "jul"]},
        {"type": "monthly", "start_time": "01:00", "period": "1h", "every": 5, "dayofweek": ["fri"],
         "month": ["dec"]}]
    mid = int(r.headers["Location"].rsplit("/", 1)[1])
    text = c.get(f"/config/maintenance/{mid}").get_data(as_text=True)
    assert 'value="03:30"' in text and "kernel updates" in text
    assert "No data collection" in c.get("/config/maintenance").get_data(as_text=True)
    keep = {k: v for k, v in BASE.items() if not k.startswith("periods-") or k.startswith("periods-0")}
    r = post(c, f"/config/maintenance/{mid}", {**keep, "collect_data": "1", "active_till": ""})
    assert r.status_code == 302
    [m] = maintenances(env)
    assert "collect_data" not in m and "active_till" not in m and len(m["periods"]) == 1
    assert post(c, "/config/maintenance/delete", {"maintenanceid": str(mid)}).status_code == 302
    assert maintenances(env) == []


@pytest.mark.parametrize("change, field", [
    ({"name": ""}, "name"), ({"name": "<script>x</script>"}, "name"), ({"name": "n" * 129}, "name"),
    ({"active_since": "yesterday"}, "active_since"), ({"active_till": "2020-01-01T00:00:00Z"}, "active_till"),
    ({"hosts": ["no-such-host"]}, "hosts"), ({"hosts": [], "groups": []}, "hosts"),
    ({"periods-0-period": "forever"}, "periods-0"), ({"periods-0-period": "10s"}, "periods-0"),
    ({"periods-1-start_time": "25:00"}, "periods-1"), ({"periods-1-every": "0"}, "periods-1"),
    ({"periods-2-dayofweek": []}, "periods-2"), ({"periods-3-day": "32"}, "periods-3"),
    ({"periods-3-type": "yearly"}, "periods-3"), ({"periods-0-start_date": ""}, "periods-0"),
])
def test_garbage_is_refused_and_changes_nothing(env: Env, change: dict, field: str) -> None:
    c = env.client("admin")
    r = post(c, "/config/maintenance/new", {**BASE, **change})
    text = r.get_data(as_text=True)
    assert r.status_code == 400 and f'id="err-{field}"' in text, text[-2500:]
    assert "<script>x</script>" not in text and maintenances(env) == []


def test_a_maintenance_needs_periods(env: Env) -> None:
    c = env.client("admin")
    bare = {k: v for k, v in BASE.items() if not k.startswith("periods-")}
    r = post(c, "/config/maintenance/new", bare)
    assert r.status_code == 400 and 'id="err-periods"' in r.get_data(as_text=True)


def test_rights_on_hosts_csrf_and_roles(env: Env) -> None:
    c = env.client("ops")  # read-write on Linux servers, denied Secret
    assert post(c, "/config/maintenance/new", BASE).status_code == 302
    r = post(c, "/config/maintenance/new", {**BASE, "name": "Secret work", "hosts": ["db-secret"], "groups": []})
    assert r.status_code == 403
    for user in ("viewer", "guest"):
        c = env.client(user)
        assert c.get("/config/maintenance").status_code == 403
        assert post(c, "/config/maintenance/new", {**BASE, "name": "Mine"}).status_code == 403
    c = env.client("admin")
    assert c.post("/config/maintenance/new", data={**BASE, "name": "No token"}).status_code == 400
    assert [m["name"] for m in maintenances(env)] == ["Patch night"]
