"""Saved filters (the filter tabs above every list) on both stores: save, show with a counter, rename,
toggle the counter, delete; each user sees and changes only their own; CSRF and bad input refused."""

from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from vigil.server.config import tables as t
from vigil.server.config.saved_filters import MAX_PER_PAGE, SavedFilterError, SavedFilters
from vigil.web.pages.saved_filters import normalise

from tests.web.conftest import Env, form_token
from tests.web.test_problems import Problems, probs  # noqa: F401  (the fixture)


def _rows(env: Env) -> list[tuple]:
    with env.repo.engine.connect() as c:
        return [tuple(r) for r in c.execute(sa.select(t.saved_filters.c.userid, t.saved_filters.c.page,
                                                      t.saved_filters.c.name, t.saved_filters.c.query,
                                                      t.saved_filters.c.show_counter)
                                            .order_by(t.saved_filters.c.filterid))]


def _uid(env: Env, name: str) -> int:
    u = env.users.by_name(name)
    assert u is not None
    return int(u.userid)


def _tabs(page: str) -> list[tuple[str, str]]:
    """(name, count or '') of each saved tab on a page."""
    return [(m.group(1).strip(), m.group(3) or "") for m in re.finditer(
        r'data-filterid="\d+">([^<]+?)( <b class="count">(\d+)</b>)?</a>', page)]


def test_normalise_drops_page_format_and_empty_fields_and_sorts() -> None:
    assert normalise("severity=4&page=3&format=csv&hostid=&search=a+b&severity=2") == \
        "search=a+b&severity=2&severity=4"
    assert normalise("") == ""


def test_save_a_filter_shows_a_tab_with_a_live_counter(env: Env, probs: Problems) -> None:  # noqa: F811
    c = env.client("admin")
    page = c.get("/problems?severity=4&page=1").get_data(as_text=True)
    assert "Save as…" in page and 'name="query" value="severity=4"' in page
    token = form_token(c, "/problems")
    r = c.post("/filters", data={"csrf_token": token, "page": "problems.index", "name": " High ",
                                 "query": "severity=4&page=2", "show_counter": "1"})
    assert r.status_code == 302 and r.headers["Location"].endswith("/problems?severity=4")
    assert _rows(env) == [(_uid(env, "admin"), "problems.index", "High", "severity=4", 1)]
    r = c.post("/filters", data={"csrf_token": token, "page": "problems.index", "name": "Mine",
                                 "query": "severity=2&severity=5"})
    assert r.status_code == 302
    listing = c.get("/problems").get_data(as_text=True)
    # High counts the one open High problem; Mine has no counter asked for
    assert _tabs(listing) == [("High", "1"), ("Mine", "")]
    active = c.get("/problems?severity=4").get_data(as_text=True)
    assert re.search(r'class="ftab on" href="/problems\?severity=4"', active)
    assert "Edit tab" in active and "Save as…" not in active
    # the counter follows the data: a second High problem counts at once
    from vigil.server.store.events import Cycle, NewEvent

    probs.events.commit(Cycle(events=[NewEvent(0, 0, probs.cpu_trigger, env.now - 10, 0, 1, "CPU high", 4, (),
                                               problem=True)]))
    assert _tabs(c.get("/hosts").get_data(as_text=True)) == []  # tabs are per page
    assert _tabs(c.get("/problems").get_data(as_text=True))[0] == ("High", "2")


def test_rename_toggle_counter_replace_and_delete(env: Env) -> None:
    c = env.client("ops")
    token = form_token(c, "/hosts")
    assert c.post("/filters", data={"csrf_token": token, "page": "hosts.monitoring", "name": "Web",
                                    "query": "search=web"}).status_code == 302
    fid = SavedFilters(env.repo.engine).list(_uid(env, "ops"), "hosts.monitoring")[0].filterid
    r = c.post(f"/filters/{fid}", data={"csrf_token": token, "action": "rename", "name": "Web servers"})
    assert r.status_code == 302 and r.headers["Location"].endswith("/hosts?search=web")
    assert c.post(f"/filters/{fid}", data={"csrf_token": token, "action": "counter",
                                           "show_counter": "1"}).status_code == 302
    assert c.post(f"/filters/{fid}", data={"csrf_token": token, "action": "replace",
                                           "query": "search=web&status=enabled&page=4"}).status_code == 302
    assert _rows(env) == [(_uid(env, "ops"), "hosts.monitoring", "Web servers", "search=web&status=enabled", 1)]
    page = c.get("/hosts?search=web&status=enabled").get_data(as_text=True)
    assert _tabs(page) == [("Web servers", "")]  # hosts has no counter: no badge even when asked
    r = c.post(f"/filters/{fid}/delete", data={"csrf_token": token})
    assert r.status_code == 302 and r.headers["Location"].endswith("/hosts")
    assert _rows(env) == []


def test_a_user_sees_and_changes_only_their_own_filters(env: Env) -> None:
    admin, viewer = env.client("admin"), env.client("viewer")
    token = form_token(admin, "/hosts")
    admin.post("/filters", data={"csrf_token": token, "page": "hosts.monitoring", "name": "Admin's",
                                 "query": "search=db"})
    before = _rows(env)
    fid = SavedFilters(env.repo.engine).list(_uid(env, "admin"), "hosts.monitoring")[0].filterid
    assert "Admin&#39;s" not in viewer.get("/hosts").get_data(as_text=True)
    vt = form_token(viewer, "/hosts")
    for path, data in ((f"/filters/{fid}", {"action": "rename", "name": "stolen"}),
                       (f"/filters/{fid}", {"action": "replace", "query": "search=x"}),
                       (f"/filters/{fid}/delete", {})):
        r = viewer.post(path, data={"csrf_token": vt, **data}, headers={"Accept": "text/html"})
        assert r.status_code == 404, path
        assert "you have no saved filter" in r.get_data(as_text=True)
    assert _rows(env) == before
    # the same name is free for another user
    assert viewer.post("/filters", data={"csrf_token": vt, "page": "hosts.monitoring", "name": "Admin's",
                                         "query": ""}).status_code == 302
    assert len(_rows(env)) == 2


def test_changes_without_csrf_or_by_a_guest_are_refused(env: Env) -> None:
    c = env.client("admin")
    r = c.post("/filters", data={"page": "hosts.monitoring", "name": "x", "query": "search=a"})
    assert r.status_code == 400 and "csrf_token" in r.get_data(as_text=True)
    guest = env.client("guest")
    assert "Save as…" not in guest.get("/hosts?search=web").get_data(as_text=True)
    r = guest.post("/filters", data={"csrf_token": form_token(guest, "/hosts"), "page": "hosts.monitoring",
                                     "name": "x", "query": "search=a"})
    assert r.status_code == 403
    assert _rows(env) == []


@pytest.mark.parametrize(("data", "field", "message"), [
    ({"page": "nope.index", "name": "x"}, "page", "not a list with saved filters"),
    ({"page": "hosts.monitoring", "name": "  "}, "name", "required"),
    ({"page": "hosts.monitoring", "name": "x" * 65}, "name", "longer than 64"),
    ({"page": "hosts.monitoring", "name": "tab\there"}, "name", "no control characters"),
    ({"page": "hosts.monitoring", "name": "long", "query": "search=" + "a" * 3000}, "query", "longer than 2048"),
])
def test_bad_input_names_the_field_and_saves_nothing(env: Env, data: dict, field: str, message: str) -> None:
    c = env.client("admin")
    r = c.post("/filters", data={"csrf_token": form_token(c, "/hosts"), "query": "search=a", **data})
    body = r.get_data(as_text=True)
    assert r.status_code == 400 and f"{field}: " in body and message in body, body[:300]
    assert _rows(env) == []


def test_a_script_tag_in_a_name_is_stored_as_text_and_escaped(env: Env) -> None:
    c = env.client("admin")
    c.post("/filters", data={"csrf_token": form_token(c, "/hosts"), "page": "hosts.monitoring",
                             "name": "<script>alert(1)</script>", "query": "search=web"})
    page = c.get("/hosts").get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert(1)" not in page


def test_repository_duplicates_limits_and_ownership(env: Env) -> None:
    sf = SavedFilters(env.repo.engine)
    a, v = _uid(env, "admin"), _uid(env, "viewer")
    fid = sf.create(a, "latest.index", "CPU", "search=cpu")
    with pytest.raises(SavedFilterError) as e:
        sf.create(a, "latest.index", "CPU", "search=other")
    assert e.value.field == "name" and "already" in e.value.message
    other = sf.create(a, "latest.index", "Net", "search=net")
    with pytest.raises(SavedFilterError):
        sf.update(a, other, name="CPU")  # renaming onto another tab's name
    assert sf.get(v, fid) is None and not sf.update(v, fid, name="x") and not sf.delete(v, fid)
    for n in range(MAX_PER_PAGE - 2):
        sf.create(a, "latest.index", f"f{n}", "")
    with pytest.raises(SavedFilterError) as e:
        sf.create(a, "latest.index", "one too many", "")
    assert f"at most {MAX_PER_PAGE}" in e.value.message
    assert [f.name for f in sf.list(a, "latest.index")][:2] == ["CPU", "Net"]
    assert sf.delete(a, fid) and sf.get(a, fid) is None


def test_a_deleted_user_takes_their_filters_along(env: Env) -> None:
    sf = SavedFilters(env.repo.engine)
    uid = _uid(env, "nobody")
    sf.create(uid, "hosts.monitoring", "x", "")
    assert env.users.delete_user(uid)
    assert _rows(env) == []


def test_a_counter_whose_filter_no_longer_applies_shows_why(env: Env, probs: Problems) -> None:  # noqa: F811
    sf = SavedFilters(env.repo.engine)
    sf.create(_uid(env, "ops"), "problems.index", "Secret", f"hostid={env.hostid('db-secret')}", show_counter=True)
    page = env.client("ops").get("/problems").get_data(as_text=True)
    assert re.search(r'Secret <b class="count bad" title="hostid: you have no rights to host \d+', page)


def test_save_as_can_replace_the_filter_of_an_existing_tab(env: Env) -> None:
    c = env.client("admin")
    token = form_token(c, "/latest")
    c.post("/filters", data={"csrf_token": token, "page": "latest.index", "name": "CPU", "query": "search=cpu"})
    fid = SavedFilters(env.repo.engine).list(_uid(env, "admin"), "latest.index")[0].filterid
    page = c.get("/latest?search=cpu.util").get_data(as_text=True)
    assert f'<option value="{fid}">CPU</option>' in page and "Replace" in page
    r = c.post("/filters", data={"csrf_token": token, "page": "latest.index", "query": "search=cpu.util",
                                 "replace": str(fid)})
    assert r.status_code == 302 and r.headers["Location"].endswith("/latest?search=cpu.util")
    assert _rows(env)[0][2:4] == ("CPU", "search=cpu.util")
    # another list's tab, or another user's, is not replaced
    r = c.post("/filters", data={"csrf_token": token, "page": "hosts.monitoring", "query": "x=1", "replace": str(fid)})
    assert r.status_code == 400 and "replace: " in r.get_data(as_text=True)
    v = env.client("viewer")
    r = v.post("/filters", data={"csrf_token": form_token(v, "/latest"), "page": "latest.index", "query": "x=1",
                                 "replace": str(fid)})
    assert r.status_code == 404
    assert _rows(env)[0][2:4] == ("CPU", "search=cpu.util")
