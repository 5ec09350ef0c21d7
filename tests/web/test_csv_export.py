"""CSV export of the lists (?format=csv) on both stores: all matching rows past the page, the page's
filters and host-group rights, a header row, RFC 4180 quoting and no spreadsheet formulas."""

from __future__ import annotations

import csv
import io
import re

import pytest
from vigil.server.config.model import doc_from_dict
from vigil.server.store import open_store
from vigil.server.store.base import WriteBatch
from vigil.web import csv_export

from tests.web.conftest import Env
from tests.web.test_problems import Problems, probs  # noqa: F401  (the fixture)


def rows(c, path: str) -> list[list[str]]:  # type: ignore[no-untyped-def]
    r = c.get(path)
    assert r.status_code == 200, (path, r.status_code, r.get_data(as_text=True)[:300])
    assert r.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert r.headers["Content-Disposition"].startswith('attachment; filename="')
    raw = r.get_data(as_text=True)
    assert raw.endswith("\r\n") and "\n" not in raw.replace("\r\n", "")  # RFC 4180 line ends
    return list(csv.reader(io.StringIO(raw, newline="")))


def test_cells_that_would_run_as_formulas_are_prefixed_and_quoting_is_rfc4180() -> None:
    assert [csv_export.cell(v) for v in ("=1+2", "+1", "-2", "@SUM(A1)", "\tx", "ok", None, 3, True)] == \
        ["'=1+2", "'+1", "'-2", "'@SUM(A1)", "'\tx", "ok", "", "3", "1"]
    text = "".join(csv_export.lines(["a", "b"], [['say "hi", then', "two\nlines"], ["=cmd|' /C calc'!A0", 1.5]]))
    assert text == 'a,b\r\n"say ""hi"", then","two\nlines"\r\n\'=cmd|\' /C calc\'!A0,1.5\r\n'


def test_paged_reads_every_chunk_until_a_short_one() -> None:
    calls = []

    def fetch(limit: int, offset: int) -> list[int]:
        calls.append((limit, offset))
        return list(range(offset, min(offset + limit, 7)))

    assert list(csv_export.paged(fetch, 3)) == list(range(7)) and calls == [(3, 0), (3, 3), (3, 6)]


@pytest.fixture
def many(env: Env, monkeypatch: pytest.MonkeyPatch) -> int:
    """120 more items on web-01 with values (over two list pages), and export chunks of 50 rows."""
    monkeypatch.setattr(csv_export, "CHUNK", 50)
    env.repo.apply(doc_from_dict({"hosts": [{"host": "web-01", "name": "Web 01", "groups": ["Linux servers"],
                                             "items": [{"key": f"load[{n}]", "name": f"Load {n:03}"}
                                                       for n in range(120)]}]}))
    store = open_store(env.url)
    store.write(WriteBatch(floats=[(env.itemid("web-01", f"load[{n}]"), env.now - 5, 0, float(n))
                                   for n in range(120)]))
    store.close()
    return 120


def test_latest_data_exports_every_matching_row_with_the_pages_filter(env: Env, many: int) -> None:
    c = env.client("admin")
    page = c.get("/latest?search=load").get_data(as_text=True)
    assert len(set(re.findall(r"Load \d{3}", page))) == 50 and "Export to CSV" in page and "format=csv" in page
    out = rows(c, "/latest?search=load&page=2&format=csv")  # the page number does not limit the export
    assert out[0] == ["Host", "Name", "Key", "Last check (UTC)", "Last value", "Units", "Tags"]
    body = out[1:]
    assert len(body) == many and sorted(r[2] for r in body) == sorted(f"load[{n}]" for n in range(many))
    assert {r[0] for r in body} == {"Web 01"} and next(r for r in body if r[2] == "load[7]")[4] == "7.0"
    every = rows(c, "/latest?format=csv")[1:]
    assert len(every) == many + 4 and "db-secret" in {r[0] for r in every}


def test_exports_hold_only_rows_the_user_may_read(env: Env) -> None:
    viewer = env.client("viewer")
    hosts = rows(viewer, "/hosts?format=csv")
    assert hosts[0][:3] == ["Host", "Visible name", "Host groups"] and [r[0] for r in hosts[1:]] == ["web-01"]
    latest = rows(viewer, "/latest?format=csv")[1:]
    assert {r[0] for r in latest} == {"Web 01"} and len(latest) == 3
    assert viewer.get(f"/latest?hostid={env.hostid('db-secret')}&format=csv").status_code == 403
    assert viewer.get(f"/hosts/{env.hostid('db-secret')}?format=csv").status_code == 403
    admin_hosts = rows(env.client("admin"), "/hosts?format=csv&sort=host")
    assert [r[0] for r in admin_hosts[1:]] == ["db-secret", "web-01"]
    assert env.client().get("/hosts?format=csv").status_code == 302  # signed out: to the sign-in page


def test_a_stored_value_that_looks_like_a_formula_is_exported_as_text(env: Env) -> None:
    store = open_store(env.url)
    formula = '=HYPERLINK("http://x","a, b")'
    store.write(WriteBatch(strs=[(env.itemid("web-01", "app.version"), env.now - 1, 0, formula)]))
    store.close()
    out = rows(env.client("admin"), "/latest?search=version&format=csv")
    assert out[1][4] == '\'=HYPERLINK("http://x","a, b")'
    items = rows(env.client("admin"), f"/hosts/{env.hostid('web-01')}?format=csv")
    assert items[0][:3] == ["Host", "Name", "Key"] and len(items) == 4
    assert next(r for r in items if r[2] == "app.version")[-1].startswith("'=HYPERLINK")


def test_problems_events_and_triggers_export_with_filters_and_rights(env: Env, probs: Problems) -> None:  # noqa: F811
    admin, ops = env.client("admin"), env.client("ops")
    out = rows(admin, "/problems?format=csv&sort=severity&desc=1")
    assert out[0][:6] == ["Time (UTC)", "Severity", "Recovery time (UTC)", "Status", "Host", "Problem"]
    assert [(r[1], r[5]) for r in out[1:]] == [("Disaster", "Secret CPU"), ("High", "CPU high"),
                                               ("Warning", "Traffic seen")]
    assert [r[5] for r in rows(ops, "/problems?format=csv")[1:]] == ["Traffic seen", "CPU high"]
    assert [r[5] for r in rows(admin, "/problems?severity=4&format=csv")[1:]] == ["CPU high"]
    hist = rows(admin, "/problems?show=history&from=now-1d&format=csv")
    assert "RESOLVED" in {r[3] for r in hist[1:]}
    events = rows(ops, "/events?from=now-1d&format=csv")
    assert events[0] == ["Time (UTC)", "Status", "Severity", "Host", "Name", "Ack"]
    assert {r[4] for r in events[1:]} == {"CPU high", "Traffic seen"}
    assert {r[1] for r in events[1:]} == {"PROBLEM", "OK"}
    trig = rows(ops, "/config/triggers?format=csv")
    assert trig[0][:4] == ["Severity", "Value", "Host", "Name"]
    assert sorted(r[3] for r in trig[1:]) == ["CPU high", "Traffic seen"]
    assert [r[3] for r in rows(admin, "/config/triggers?severity=5&format=csv")[1:]] == ["Secret CPU"]
    # a bad filter is refused as on the page, naming the field, not exported unfiltered
    r = admin.get("/problems?severity=9&format=csv")
    assert r.status_code == 400 and "severity" in r.get_data(as_text=True)
