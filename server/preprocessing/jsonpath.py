"""Zabbix's JSONPath dialect (6.0 "JSONPath functionality"), pure Python.

    query(path, document_text) -> str     # what the JSONPath preprocessing step stores
    compile_path(path) -> Path            # parse once; Path.definite, Path.apply(doc) -> str

Supported: `$` root; dot (`$.a.b`) and bracket (`$['a']`, `$.['a']`, `$["a","b"]`) names; `*` and `[*]`;
indexes `[0]`, `[0,2]`, `[-1]`; slices `[1:3]`, `[:2]`, `[-2:]`, `[::2]`; deep scan `..name`, `..*`,
`..[0]`; filters `[?(<expression>)]` with `@`-relative and `$`-absolute paths, string, number, true,
false and null literals, `== != < <= > >=`, `=~` (regular expression), `!`, `&&`, `||` and parentheses;
functions `length() first() sum() avg() min() max()` (also in the middle of a path, as
`$[?(@.a)].b.first().length()`); `~` after a segment returns the matched property names (or indexes).

Results, as in Zabbix: a definite path (names and single indexes only) returns the one value: a
string without quotes, a number or true/false/null as its JSON text, an object or array as compact
JSON. Any other path returns a JSON array of everything matched. Nothing matched is an error
("no data matches the path"), as is a function over an empty or non-numeric array.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

FUNCTIONS = ("length", "first", "sum", "avg", "min", "max")
_NAME = re.compile(r"[^.\[\]\s()=!<>&|,~'\"@$]+")
_INT = re.compile(r"-?[0-9]+")
_NUMBER = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NUMERIC_TEXT = re.compile(r"\s*[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\s*")
_MISSING = object()


class JSONPathError(ValueError):
    """A path that does not parse; `pos` is the 0-based offset into the path."""

    def __init__(self, message: str, pos: int) -> None:
        super().__init__(f"{message} at position {pos}")
        self.pos = pos


class NoMatch(ValueError):
    """The path is valid but the document has nothing there (or a function cannot apply)."""


# --- the parsed form --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Segment:
    kind: str  # "names" | "wildcard" | "indexes" | "slice" | "filter" | "function"
    names: tuple[str, ...] = ()
    indexes: tuple[int, ...] = ()
    slice_: tuple[int | None, int | None, int | None] = (None, None, None)
    expr: Any = None
    deep: bool = False
    keys: bool = False  # `~`: the property names instead of the values

    @property
    def definite(self) -> bool:
        if self.deep or self.keys:
            return False
        return (self.kind == "names" and len(self.names) == 1) or (self.kind == "indexes" and len(self.indexes) == 1)


@dataclass(frozen=True, slots=True)
class _PathRef:  # a path inside a filter: `@...` or `$...`
    absolute: bool
    segments: tuple[Segment, ...]


@dataclass(frozen=True, slots=True)
class _Literal:
    value: Any


@dataclass(frozen=True, slots=True)
class _Op:
    op: str  # "||" "&&" "!" or a comparison
    args: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Path:
    text: str
    segments: tuple[Segment, ...] = field(default=())

    @property
    def definite(self) -> bool:
        definite = True
        for seg in self.segments:
            if seg.kind == "function":
                definite = True
            elif not seg.definite:
                definite = False
        return definite

    def apply(self, doc: Any) -> str:
        """The step's output for a parsed document; raises NoMatch."""
        matches, definite = _evaluate(self.segments, doc, doc)
        if not matches:
            raise NoMatch(f"no data matches {self.text}")
        if definite:
            return to_text(matches[0][1])
        return dumps([v for _, v in matches])


# --- input and output ---------------------------------------------------------------------------------


class JSONFloat(float):
    """A JSON number with a fraction or exponent that remembers how the document wrote it ("1.50")."""

    text: str

    def __new__(cls, text: str) -> JSONFloat:
        f = super().__new__(cls, text)
        f.text = text
        return f


def loads(text: str) -> Any:
    """Parse JSON, keeping the written form of numbers with a fraction so a path returns it as written."""
    return json.loads(text, parse_float=JSONFloat)


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def number_text(x: float | int) -> str:
    if isinstance(x, bool):
        return "true" if x else "false"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, JSONFloat):
        return x.text
    if math.isfinite(x) and x == int(x) and abs(x) < 2**63:
        return str(int(x))
    return repr(x)


def to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return number_text(value)
    return dumps(value)


# --- parsing ------------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.t = text
        self.i = 0

    def error(self, message: str, pos: int | None = None) -> JSONPathError:
        return JSONPathError(f"invalid JSONPath {self.t!r}: {message}", self.i if pos is None else pos)

    def peek(self, n: int = 1) -> str:
        return self.t[self.i : self.i + n]

    def skip_ws(self) -> None:
        while self.i < len(self.t) and self.t[self.i] in " \t\r\n":
            self.i += 1

    def expect(self, s: str) -> None:
        if not self.t.startswith(s, self.i):
            found = self.t[self.i : self.i + 1] or "the end"
            raise self.error(f"expected {s!r}, found {found!r}")
        self.i += len(s)

    def path(self) -> Path:
        if self.peek() != "$":
            raise self.error("a path starts with '$'")
        self.i += 1
        segs = self.segments(in_filter=False)
        if self.i != len(self.t):
            raise self.error(f"unexpected {self.t[self.i]!r}")
        return Path(self.t, tuple(segs))

    def segments(self, in_filter: bool) -> list[Segment]:
        segs: list[Segment] = []
        while self.i < len(self.t):
            c = self.peek()
            if c == ".":
                deep = self.peek(2) == ".."
                self.i += 2 if deep else 1
                if self.i >= len(self.t):
                    raise self.error("a name is missing after '.'")
                c2 = self.peek()
                if c2 == "[":
                    seg = self.bracket(deep)
                elif c2 == "*":
                    self.i += 1
                    seg = Segment("wildcard", deep=deep)
                else:
                    seg = self.dot_name(deep)
            elif c == "[":
                seg = self.bracket(False)
            else:
                break
            if self.peek() == "~":
                if seg.kind == "function":
                    raise self.error("'~' cannot follow a function")
                self.i += 1
                seg = Segment(seg.kind, seg.names, seg.indexes, seg.slice_, seg.expr, seg.deep, True)
            segs.append(seg)
            if in_filter and seg.kind == "function":
                raise self.error("functions are not allowed inside a filter", self.i - 1)
        return segs

    def dot_name(self, deep: bool) -> Segment:
        m = _NAME.match(self.t, self.i)
        if m is None:
            raise self.error(f"unexpected {self.t[self.i]!r} where a name should be")
        name = m.group()
        self.i = m.end()
        if self.peek(2) == "()":
            if name not in FUNCTIONS:
                raise self.error(f"unknown function {name}(), expected one of {', '.join(FUNCTIONS)}", m.start())
            if deep:
                raise self.error("a function cannot follow '..'", m.start())
            self.i += 2
            return Segment("function", names=(name,))
        return Segment("names", names=(name,), deep=deep)

    def string(self) -> str:
        q = self.peek()
        start = self.i
        self.i += 1
        out: list[str] = []
        while True:
            if self.i >= len(self.t):
                raise self.error("unterminated string", start)
            c = self.t[self.i]
            if c == "\\" and self.i + 1 < len(self.t):
                out.append(self.t[self.i + 1])
                self.i += 2
                continue
            self.i += 1
            if c == q:
                return "".join(out)
            out.append(c)

    def bracket(self, deep: bool) -> Segment:
        self.expect("[")
        self.skip_ws()
        c = self.peek()
        if c == "*":
            self.i += 1
            self.skip_ws()
            self.expect("]")
            return Segment("wildcard", deep=deep)
        if c == "?":
            self.i += 1
            self.skip_ws()
            self.expect("(")
            expr = self.expr()
            self.skip_ws()
            self.expect(")")
            self.skip_ws()
            self.expect("]")
            return Segment("filter", expr=expr, deep=deep)
        if c in "'\"":
            names: list[str] = []
            while True:
                self.skip_ws()
                if self.peek() not in ("'", '"'):
                    raise self.error("expected a quoted name")
                names.append(self.string())
                self.skip_ws()
                if self.peek() == ",":
                    self.i += 1
                    continue
                self.expect("]")
                return Segment("names", names=tuple(names), deep=deep)
        # indexes or a slice
        start = self.i
        parts: list[str] = []
        close = self.t.find("]", self.i)
        if close < 0:
            raise self.error("missing ']'", start - 1)
        body = self.t[self.i : close]
        if ":" in body:
            parts = [p.strip() for p in body.split(":")]
            if len(parts) > 3 or any(p and not _INT.fullmatch(p) for p in parts):
                raise self.error(f"bad slice [{body}], expected [start:end] or [start:end:step] of integers", start)
            nums = [int(p) if p else None for p in parts] + [None] * (3 - len(parts))
            if nums[2] == 0:
                raise self.error("a slice step cannot be 0", start)
            self.i = close + 1
            return Segment("slice", slice_=(nums[0], nums[1], nums[2]), deep=deep)
        items = [p.strip() for p in body.split(",")]
        if not body.strip() or any(not _INT.fullmatch(p) for p in items):
            raise self.error(f"bad index [{body}], expected integers, quoted names, '*', a slice or '?(...)'", start)
        self.i = close + 1
        return Segment("indexes", indexes=tuple(int(p) for p in items), deep=deep)

    # filter expressions
    def expr(self) -> Any:
        left = self.and_expr()
        while True:
            self.skip_ws()
            if self.peek(2) != "||":
                return left
            self.i += 2
            left = _Op("||", (left, self.and_expr()))

    def and_expr(self) -> Any:
        left = self.not_expr()
        while True:
            self.skip_ws()
            if self.peek(2) != "&&":
                return left
            self.i += 2
            left = _Op("&&", (left, self.not_expr()))

    def not_expr(self) -> Any:
        self.skip_ws()
        if self.peek() == "!" and self.peek(2) != "!=":
            self.i += 1
            return _Op("!", (self.not_expr(),))
        return self.comparison()

    def comparison(self) -> Any:
        left = self.operand()
        self.skip_ws()
        for op in ("==", "!=", "<=", ">=", "=~", "<", ">"):
            if self.t.startswith(op, self.i):
                self.i += len(op)
                right = self.operand()
                if op == "=~":
                    if not isinstance(right, _Literal) or not isinstance(right.value, str):
                        raise self.error("=~ needs a quoted regular expression on its right", self.i)
                    try:
                        re.compile(right.value)
                    except re.error as e:
                        raise self.error(f"bad regular expression {right.value!r}: {e}", self.i) from None
                return _Op(op, (left, right))
        return left

    def operand(self) -> Any:
        self.skip_ws()
        c = self.peek()
        if c == "(":
            self.i += 1
            e = self.expr()
            self.skip_ws()
            self.expect(")")
            return e
        if c in "@$":
            self.i += 1
            return _PathRef(c == "$", tuple(self.segments(in_filter=True)))
        if c in "'\"":
            return _Literal(self.string())
        m = _NUMBER.match(self.t, self.i)
        if m:
            self.i = m.end()
            text = m.group()
            return _Literal(float(text) if any(ch in text for ch in ".eE") else int(text))
        for word, value in (("true", True), ("false", False), ("null", None)):
            if self.t.startswith(word, self.i):
                self.i += len(word)
                return _Literal(value)
        found = self.t[self.i : self.i + 1] or "the end"
        raise self.error(f"expected '@', '$', a string or a number in the filter, found {found!r}")


def compile_path(text: str) -> Path:
    """Parse a JSONPath; raises JSONPathError naming the position."""
    if not text:
        raise JSONPathError("invalid JSONPath: the path is empty", 0)
    try:
        return _Parser(text).path()
    except RecursionError:
        raise JSONPathError(f"invalid JSONPath {text[:64]!r}: the filter is nested too deeply", 0) from None


# --- evaluation ---------------------------------------------------------------------------------------


def _children(node: Any) -> list[tuple[Any, Any]]:
    if isinstance(node, dict):
        return list(node.items())
    if isinstance(node, list):
        return list(enumerate(node))
    return []


def _descendants(node: Any) -> list[Any]:
    """The node and every object or array below it, in document order (for `..`)."""
    ordered: list[Any] = []
    stack = [node]
    while stack:
        n = stack.pop()
        ordered.append(n)
        stack.extend(reversed([v for _, v in _children(n) if isinstance(v, dict | list)]))
    return ordered


def _step(seg: Segment, node: Any, root: Any) -> list[tuple[Any, Any]]:
    if seg.kind == "names":
        if isinstance(node, dict):
            return [(n, node[n]) for n in seg.names if n in node]
        return []
    if seg.kind == "wildcard":
        return _children(node)
    if seg.kind == "indexes":
        if not isinstance(node, list):
            return []
        out = []
        for i in seg.indexes:
            j = i + len(node) if i < 0 else i
            if 0 <= j < len(node):
                out.append((j, node[j]))
        return out
    if seg.kind == "slice":
        if not isinstance(node, list):
            return []
        a, b, s = seg.slice_
        idx = range(len(node))[slice(a, b, s)]
        return [(j, node[j]) for j in idx]
    if seg.kind == "filter":
        return [(k, v) for k, v in _children(node) if _truthy(_eval(seg.expr, v, root))]
    raise AssertionError(seg.kind)


def _evaluate(segments: tuple[Segment, ...], doc: Any, root: Any) -> tuple[list[tuple[Any, Any]], bool]:
    matches: list[tuple[Any, Any]] = [("$", doc)]
    definite = True
    for seg in segments:
        if seg.kind == "function":
            matches = [("$", _function(seg.names[0], matches, definite))]
            definite = True
            continue
        nxt: list[tuple[Any, Any]] = []
        for _, node in matches:
            nodes = _descendants(node) if seg.deep else [node]
            for n in nodes:
                nxt.extend(_step(seg, n, root))
        if seg.keys:
            nxt = [(k, k) for k, _ in nxt]
        matches = nxt
        definite = definite and seg.definite
    return matches, definite


def _as_number(v: Any) -> float | int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return v
    if isinstance(v, str) and _NUMERIC_TEXT.fullmatch(v):
        f = float(v)
        return int(f) if f == int(f) and "." not in v and "e" not in v.lower() else f
    return None


def _function(name: str, matches: list[tuple[Any, Any]], definite: bool) -> Any:
    if definite:
        if not matches:
            raise NoMatch(f"no data matches the path before {name}()")
        value = matches[0][1]
        if not isinstance(value, list):
            raise NoMatch(f"cannot apply {name}() to a JSON {type(value).__name__ if value is not None else 'null'}"
                          ", only to an array")
        items = list(value)
    else:
        items = [v for _, v in matches]
    if name == "length":
        return len(items)
    if name == "first":
        if not items:
            raise NoMatch("first(): no data matches the path")
        return items[0]
    if not items:
        raise NoMatch(f"cannot apply {name}() to an empty array")
    nums = []
    for v in items:
        n = _as_number(v)
        if n is None:
            raise NoMatch(f"cannot apply {name}() to a non-numeric value {to_text(v)[:64]!r}")
        nums.append(n)
    if name == "sum":
        return sum(nums) if all(isinstance(n, int) for n in nums) else math.fsum(nums)
    if name == "avg":
        return math.fsum(nums) / len(nums)
    if name == "min":
        return min(nums)
    return max(nums)


def _eval(e: Any, current: Any, root: Any) -> Any:
    if isinstance(e, _Literal):
        return e.value
    if isinstance(e, _PathRef):
        matches, _ = _evaluate(e.segments, root if e.absolute else current, root)
        return matches[0][1] if matches else _MISSING
    assert isinstance(e, _Op)
    if e.op == "||":
        return _truthy(_eval(e.args[0], current, root)) or _truthy(_eval(e.args[1], current, root))
    if e.op == "&&":
        return _truthy(_eval(e.args[0], current, root)) and _truthy(_eval(e.args[1], current, root))
    if e.op == "!":
        return not _truthy(_eval(e.args[0], current, root))
    a = _eval(e.args[0], current, root)
    b = _eval(e.args[1], current, root)
    if a is _MISSING or b is _MISSING:
        return False
    if e.op == "=~":
        return isinstance(a, str | int | float) and re.search(b, to_text(a)) is not None
    na, nb = _as_number(a), _as_number(b)
    if na is not None and nb is not None:
        x: Any = na
        y: Any = nb
    elif isinstance(a, bool | None) or isinstance(b, bool | None) or isinstance(a, dict | list) \
            or isinstance(b, dict | list):
        if e.op == "==":
            return a == b and type(a) is type(b)
        if e.op == "!=":
            return not (a == b and type(a) is type(b))
        return False
    else:
        x, y = to_text(a), to_text(b)
    return {
        "==": x == y,
        "!=": x != y,
        "<": x < y,
        "<=": x <= y,
        ">": x > y,
        ">=": x >= y,
    }[e.op]


def _truthy(v: Any) -> bool:
    if v is _MISSING:
        return False
    if isinstance(v, bool):
        return v
    return True  # an existing value (even null, 0 or "") makes `?(@.a)` true


def query(path: str | Path, document: str | Any) -> str:
    """Apply a path to JSON text (or an already parsed document); raises JSONPathError, NoMatch, ValueError."""
    p = compile_path(path) if isinstance(path, str) else path
    if isinstance(document, str):
        try:
            doc = loads(document)
        except ValueError as e:
            raise ValueError(f"the value is not JSON: {e}") from None
    else:
        doc = document
    return p.apply(doc)
