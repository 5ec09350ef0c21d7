"""Saved filters: the filter tabs above every list page (Zabbix's tabbed filter), done once for all lists.

A list template calls the `filter_tabs()` macro of `_filter_tabs.html`; it asks `filter_tabs_for()` for
the signed-in user's tabs of this page (by the page's endpoint) and shows them with "Save as", rename,
delete and the "show counter" toggle, all posted here with the session's CSRF token. A filter is the
list URL's query string, normalised (no page number, no export format, no empty fields, sorted), so
the tab of the filter being looked at is found by comparing strings.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from flask import Blueprint, flash, redirect, request, url_for
from vigil.server.config.saved_filters import SavedFilter, SavedFilterError, SavedFilters
from vigil.web import auth
from vigil.web.app import services
from vigil.web.errors import Forbidden, NotFound, WebError
from werkzeug.datastructures import MultiDict

log = logging.getLogger("vigil.web")
bp = Blueprint("saved_filters", __name__)

# The list pages with a filter bar, by endpoint (the `page` of a saved filter).
PAGES = {
    "problems.index": "Problems",
    "problems.events": "Event history",
    "hosts.monitoring": "Hosts",
    "hosts.configuration": "Configuration: hosts",
    "latest.index": "Latest data",
    "triggers.index": "Triggers",
    "proxies.index": "Proxies",
}
IGNORED = ("page", "format", "csrf_token")


def normalise(query: str) -> str:
    """The query string as a saved filter keeps it: no page, export format or empty fields; sorted."""
    pairs = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k not in IGNORED and v.strip()]
    return urlencode(sorted(pairs))


def _count_problems(args: MultiDict[str, str]) -> int:
    from vigil.web.triage import problem_args, problems_repo

    now = int(time.time())
    f, _ = problem_args(args, now)
    return problems_repo().problems(auth.scope(), f, now, limit=0).total


# Pages whose filtered rows are cheap to count: the count badge of a tab with "show counter" on.
COUNTERS: dict[str, Callable[[MultiDict[str, str]], int]] = {"problems.index": _count_problems}


@dataclass(frozen=True, slots=True)
class Tab:
    f: SavedFilter
    href: str
    active: bool
    count: int | None  # None: no counter asked for, or the page cannot count
    count_error: str = ""  # the filter no longer applies (a host removed, rights taken away)


def _repo() -> SavedFilters:
    return SavedFilters(services().engine)


def filter_tabs_for(page: str) -> dict[str, Any]:
    """What the filter_tabs macro shows for the signed-in user on `page`."""
    user = auth.current_user()
    current = normalise(request.query_string.decode("utf-8", "replace"))
    tabs = []
    for f in _repo().list(user.userid, page):
        count, err = None, ""
        if f.show_counter and page in COUNTERS:
            try:
                count = COUNTERS[page](MultiDict(parse_qsl(f.query, keep_blank_values=True)))
            except WebError as e:
                err = e.message
        tabs.append(Tab(f, request.path + ("?" + f.query if f.query else ""), f.query == current, count, err))
    return {"page": page, "tabs": tabs, "query": current, "active": next((x for x in tabs if x.active), None),
            "can_save": user.can_act, "counts": page in COUNTERS}


def _page_arg() -> str:
    page = request.form.get("page", "")
    if page not in PAGES:
        raise WebError(f"page: not a list with saved filters, got {page[:40]!r}", "page")
    return page


def _back(page: str, query: str) -> Any:
    return redirect(url_for(page) + ("?" + query if query else ""))


def _require_can_save() -> None:
    if not auth.current_user().can_act:
        raise Forbidden("a guest cannot save filters")


def _error(e: SavedFilterError) -> WebError:
    return WebError(str(e), e.field)


@bp.post("/filters")
def create() -> Any:
    """Save the filter under a new name, or (replace=ID) store it in one of the user's tabs of the page."""
    _require_can_save()
    page = _page_arg()
    query = normalise(request.form.get("query", ""))
    replace = request.form.get("replace", "")
    if replace:
        if not replace.isdigit() or len(replace) > 12:
            raise WebError(f"replace: expected a saved filter's id, got {replace[:40]!r}", "replace")
        target = _own(int(replace))
        if target.page != page:
            raise WebError(f"replace: filter {target.name!r} belongs to another list", "replace")
        _repo().update(auth.current_user().userid, target.filterid, query=query)
        flash(f"Filter {target.name} updated.")
        return _back(page, query)
    try:
        _repo().create(auth.current_user().userid, page, request.form.get("name", ""), query,
                       show_counter=request.form.get("show_counter") == "1")
    except SavedFilterError as e:
        raise _error(e) from None
    flash(f"Filter {request.form.get('name', '').strip()} saved.")
    return _back(page, query)


def _own(filterid: int) -> SavedFilter:
    f = _repo().get(auth.current_user().userid, filterid)
    if f is None:
        raise NotFound(f"filterid: you have no saved filter {filterid}", "filterid")
    return f


@bp.post("/filters/<int:filterid>")
def update(filterid: int) -> Any:
    """Rename, set the counter, or store the filter now shown under the tab (action=rename|counter|replace)."""
    _require_can_save()
    f = _own(filterid)
    action = request.form.get("action", "rename")
    userid = auth.current_user().userid
    try:
        if action == "rename":
            _repo().update(userid, filterid, name=request.form.get("name", ""),
                           show_counter=request.form.get("show_counter") == "1")
        elif action == "counter":
            _repo().update(userid, filterid, show_counter=request.form.get("show_counter") == "1")
        elif action == "replace":
            _repo().update(userid, filterid, query=normalise(request.form.get("query", "")))
        else:
            raise WebError(f"action: rename, counter or replace, got {action[:40]!r}", "action")
    except SavedFilterError as e:
        raise _error(e) from None
    fresh = _own(filterid)
    flash(f"Filter {fresh.name} updated.")
    return _back(f.page, fresh.query)


@bp.post("/filters/<int:filterid>/delete")
def delete(filterid: int) -> Any:
    _require_can_save()
    f = _own(filterid)
    _repo().delete(auth.current_user().userid, filterid)
    flash(f"Filter {f.name} deleted.")
    return _back(f.page, "")


bp.add_app_template_global(filter_tabs_for)
