"""A user's saved filters (the filter tabs above a list page): the SQL, and the checks that name the bad field.

Every method takes the user's id and reads or changes only that user's rows, so one user can neither
see nor change another's filters: a filter id of someone else is answered as if it did not exist.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from vigil.server.config import reads
from vigil.server.config import tables as t

NAME_LIMIT = 64
QUERY_LIMIT = 2048
MAX_PER_PAGE = 50  # tabs per user and page


class SavedFilterError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class SavedFilter:
    filterid: int
    page: str
    name: str
    query: str  # the list URL's query string, without the leading '?'
    show_counter: bool


def _name(name: object) -> str:
    if not isinstance(name, str):
        raise SavedFilterError("name", "expected text")
    name = name.strip()
    if not name:
        raise SavedFilterError("name", "required: give the filter a name")
    if len(name) > NAME_LIMIT:
        raise SavedFilterError("name", f"longer than {NAME_LIMIT} characters")
    if any(ord(ch) < 32 for ch in name):
        raise SavedFilterError("name", "no control characters")
    return name


def _query(query: object) -> str:
    if not isinstance(query, str):
        raise SavedFilterError("query", "expected text")
    query = query.lstrip("?")
    if len(query) > QUERY_LIMIT:
        raise SavedFilterError("query", f"the filter is longer than {QUERY_LIMIT} characters")
    if any(ord(ch) < 32 for ch in query) or "#" in query:
        raise SavedFilterError("query", "not a URL query string")
    return query


def _row(r: sa.Row) -> SavedFilter:
    return SavedFilter(int(r.filterid), r.page, r.name, r.query, bool(r.show_counter))


class SavedFilters:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def list(self, userid: int, page: str) -> list[SavedFilter]:
        c_ = t.saved_filters.c
        with reads.connect(self.engine) as c:
            return [_row(r) for r in c.execute(sa.select(t.saved_filters)
                                               .where(c_.userid == userid, c_.page == page)
                                               .order_by(c_.sortorder, c_.filterid))]

    def get(self, userid: int, filterid: int) -> SavedFilter | None:
        c_ = t.saved_filters.c
        with self.engine.connect() as c:
            r = c.execute(sa.select(t.saved_filters).where(c_.userid == userid, c_.filterid == filterid)).first()
            return _row(r) if r is not None else None

    def _taken(self, c: sa.Connection, userid: int, page: str, name: str, other: int | None = None) -> bool:
        c_ = t.saved_filters.c
        q = sa.select(c_.filterid).where(c_.userid == userid, c_.page == page, c_.name == name)
        if other is not None:
            q = q.where(c_.filterid != other)
        return c.execute(q).first() is not None

    def create(self, userid: int, page: str, name: object, query: object, show_counter: bool = False) -> int:
        name, query = _name(name), _query(query)
        c_ = t.saved_filters.c
        with self.engine.begin() as c:
            if self._taken(c, userid, page, name):
                raise SavedFilterError("name", f"you have a filter named {name!r} on this page already")
            n, top = c.execute(sa.select(sa.func.count(), sa.func.max(c_.sortorder))
                               .where(c_.userid == userid, c_.page == page)).one()
            if n >= MAX_PER_PAGE:
                raise SavedFilterError("name", f"at most {MAX_PER_PAGE} saved filters a page: delete one first")
            r = c.execute(sa.insert(t.saved_filters).values(
                userid=userid, page=page, name=name, query=query, show_counter=int(show_counter),
                sortorder=(top or 0) + 1))
            return int(r.inserted_primary_key[0])

    def update(self, userid: int, filterid: int, *, name: object = None, query: object = None,
               show_counter: bool | None = None) -> bool:
        """Change the given fields of the user's filter; False when the user has no such filter."""
        values: dict[str, object] = {}
        c_ = t.saved_filters.c
        with self.engine.begin() as c:
            page = c.execute(sa.select(c_.page).where(c_.userid == userid, c_.filterid == filterid)).scalar()
            if page is None:
                return False
            if name is not None:
                values["name"] = _name(name)
                if self._taken(c, userid, page, values["name"], other=filterid):  # type: ignore[arg-type]
                    raise SavedFilterError("name", f"you have a filter named {values['name']!r} on this page already")
            if query is not None:
                values["query"] = _query(query)
            if show_counter is not None:
                values["show_counter"] = int(show_counter)
            if values:
                c.execute(sa.update(t.saved_filters).where(c_.userid == userid, c_.filterid == filterid)
                          .values(**values))
            return True

    def delete(self, userid: int, filterid: int) -> bool:
        c_ = t.saved_filters.c
        with self.engine.begin() as c:
            return c.execute(sa.delete(t.saved_filters)
                             .where(c_.userid == userid, c_.filterid == filterid)).rowcount > 0
