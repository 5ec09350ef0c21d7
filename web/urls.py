"""`url_for` for templates, cached per endpoint and argument names: a list page links every row to a
host, an event, a trigger..., and werkzeug's URL building (rule matching, converters, query encoding)
costs tens of microseconds a call, hundreds of calls a page.

A call's URL shape is built once with sentinel numbers in the values' places; later calls put their
values into that shape: a non-negative integer anywhere (its text is the same in a path and in a
query string), and in the query string also text and non-empty lists, encoded as werkzeug encodes
them. Anything else (None, flags, text for a path part, `_external`, `_anchor`...) goes to Flask's
`url_for` unchanged.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import quote_plus

from flask import has_request_context, request, url_for

SENTINEL = 7_919_100_003  # no route or query text holds this number by itself
QUERY_SAFE = "!$'()*,/:;?@"  # werkzeug's (urls._urlencode)
# (pieces between the values, for each cut the argument's index and whether it is in the query string)
Shape = tuple[list[str], tuple[tuple[int, bool], ...]]
_cache: dict[tuple[str, str, tuple[str, ...]], Shape | None] = {}
_lock = threading.Lock()


def _shape(endpoint: str, names: tuple[str, ...]) -> Shape | None:
    """The URL cut at the sentinels; None when it cannot be cut so."""
    marks = [str(SENTINEL + i) for i in range(len(names))]
    built = url_for(endpoint, **{n: SENTINEL + i for i, n in enumerate(names)})
    query_at = built.find("?")
    pieces, order, rest, offset = [], [], built, 0
    while True:
        hits = [(rest.find(m), i) for i, m in enumerate(marks) if m in rest]
        if not hits:
            break
        pos, i = min(hits)
        pieces.append(rest[:pos])
        order.append((i, query_at != -1 and offset + pos > query_at))
        rest = rest[pos + len(marks[i]):]
        offset += pos + len(marks[i])
    pieces.append(rest)
    if sorted(i for i, _ in order) != list(range(len(names))) or any(str(SENTINEL)[:4] in p for p in pieces):
        return None  # a value was dropped, repeated or transformed by its converter
    return pieces, tuple(order)


def _fits(v: Any, in_query: bool) -> bool:
    if type(v) is int:
        return v >= 0
    if not in_query:
        return False
    if type(v) is str:
        return True
    return type(v) in (list, tuple) and bool(v) and all((type(x) is int and x >= 0) or type(x) is str for x in v)


def fast_url_for(endpoint: str, **values: Any) -> str:
    if (not values or endpoint.startswith((".", "_")) or any(k.startswith("_") for k in values)
            or not has_request_context()):
        return url_for(endpoint, **values)
    names = tuple(values)
    key = (request.script_root, endpoint, names)
    shape = _cache.get(key, False)
    if shape is False:
        shape = _shape(endpoint, names)
        with _lock:
            _cache[key] = shape
    args = list(values.values())
    if shape is None or not all(_fits(args[i], q) for i, q in shape[1]):
        return url_for(endpoint, **values)
    pieces, order = shape
    out = [pieces[0]]
    for piece, (i, _) in zip(pieces[1:], order, strict=True):
        v = args[i]
        if type(v) is int:
            out.append(str(v))
        elif type(v) is str:
            out.append(quote_plus(v, QUERY_SAFE))
        else:  # a list: the key again before every further value, as werkzeug's urlencode(doseq) does
            out.append(("&" + quote_plus(names[i], QUERY_SAFE) + "=").join(
                str(x) if type(x) is int else quote_plus(x, QUERY_SAFE) for x in v))
        out.append(piece)
    return "".join(out)
