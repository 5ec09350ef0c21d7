"""CSV export of the lists (`?format=csv` on a list's own URL): every row the filter matches, not only the
page shown, streamed in chunks, RFC 4180 quoting (CRLF line ends, quotes doubled), a header row, and cells
that a spreadsheet would run as a formula (starting with = + - @, or a tab / carriage return) prefixed
with a single quote (OWASP's advice against CSV injection).

Pages fetch their rows through the same read they show the list with, under the same host-group scope,
so an export holds exactly what the user may read.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from flask import Response, request, stream_with_context

CHUNK = 1000  # rows read per query while streaming
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def wants_csv() -> bool:
    return request.args.get("format") == "csv"


def cell(v: Any) -> str:
    """A value as a CSV cell that no spreadsheet evaluates."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "1" if v else "0"
    s = str(v)
    if s.startswith(FORMULA_START):
        return "'" + s
    return s


def lines(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[str]:
    """The CSV text, one line (CRLF-terminated, RFC 4180) at a time, header first."""
    buf = io.StringIO()
    w = csv.writer(buf, dialect="excel", lineterminator="\r\n", quoting=csv.QUOTE_MINIMAL)

    def take() -> str:
        out = buf.getvalue()
        buf.seek(0)
        buf.truncate()
        return out

    w.writerow([cell(h) for h in header])
    yield take()
    n = 0
    for r in rows:
        w.writerow([cell(v) for v in r])
        n += 1
        if n % 200 == 0:
            yield take()
    rest = take()
    if rest:
        yield rest


def paged(fetch: Callable[[int, int], list[Any]], chunk: int | None = None) -> Iterator[Any]:
    """Every row of a paged read: fetch(limit, offset) until a short page."""
    chunk = chunk or CHUNK
    offset = 0
    while True:
        rows = fetch(chunk, offset)
        yield from rows
        if len(rows) < chunk:
            return
        offset += chunk


def response(name: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Response:
    """A streamed CSV download named NAME-YYYYmmdd-HHMMSS.csv (in UTC)."""
    fname = f"{_SAFE_NAME.sub('-', name)}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.csv"
    r = Response(stream_with_context(lines(header, rows)), mimetype="text/csv")
    r.headers["Content-Type"] = "text/csv; charset=utf-8"
    r.headers["Content-Disposition"] = f'attachment; filename="{fname}"'
    r.headers["Cache-Control"] = "no-store"
    return r


def clock(ts: int | None) -> str:
    """A unix time as ISO 8601 in UTC, which spreadsheets read as a date."""
    if not ts:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(int(ts)))
