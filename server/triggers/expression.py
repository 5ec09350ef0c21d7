"""Zabbix 6.0 trigger expressions: parse once, evaluate many times. Pure code, no I/O.

    parse("last(/web 1/system.cpu.load[all,avg1])>5 and nodata(/web 1/agent.ping,5m)=0")

Operators, highest precedence first (as Zabbix 6 documents): unary `-`, `not`; `*` `/`; `+` `-`;
`<` `<=` `>` `>=`; `=` `<>`; `and`; `or`. Operands are numbers (with suffixes K M G T or s m h d w),
strings in double quotes, user macros `{$NAME}` / `{$NAME:"context"}` and function calls
`name(/host/key,param,...)`.

Evaluation follows Zabbix's "unknown": a function that cannot be computed (missing item, no data)
makes the result unknown (EvaluationError) unless `or` has a true side or `and` a false side.
Comparisons and logic give 1 or 0; `=` and `<>` of numbers allow Zabbix's epsilon (0.000001).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, tzinfo

from vigil.agent.protocol import itemkey
from vigil.server.triggers import functions as fn
from vigil.server.triggers.functions import DataSource, EvaluationError, ItemInfo

__all__ = [
    "AGGREGATES", "DataSource", "EvaluationError", "Expression", "ExpressionError", "FOREACH", "ForeachCall",
    "FunctionCall", "ItemInfo", "evaluate", "key_matches", "parse", "filter_matches",
]

# Calculated items only (parse(..., calculated=True)): aggregate functions over a foreach function
# (`avg(last_foreach(/*/key?[group="G"]))`) or over a list of calls (`max(last(/a/k),last(/b/k))`).
AGGREGATES = ("avg", "sum", "min", "max", "count")
# foreach function -> (the history function computing each item's value, whether the period is required)
FOREACH = {"last_foreach": ("last", False), "avg_foreach": ("avg", True), "min_foreach": ("min", True),
           "max_foreach": ("max", True), "sum_foreach": ("sum", True), "count_foreach": ("count", True),
           "exists_foreach": ("", False)}

MAX_LENGTH = 65535
MAX_NESTING = 64  # parentheses and unary operators inside each other
MAX_HEIGHT = 250  # operators on the longest path of the syntax tree (evaluation recurses along it)
_HOST = re.compile(r"[0-9A-Za-z_. \-]+|\{HOST\.HOST\}")
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MACRO = re.compile(r"\{\$([A-Z0-9_.]+)(?::(\"(?:[^\"\\]|\\.)*\"|[^}]*))?\}")


class ExpressionError(ValueError):
    """A syntax error; `pos` is the 0-based offset into the text, str() ends with "at position N"."""

    def __init__(self, message: str, pos: int) -> None:
        super().__init__(f"{message} at position {pos}")
        self.message = message
        self.pos = pos


@dataclass(frozen=True, slots=True)
class FunctionCall:
    name: str
    host: str
    key: str
    params: tuple[str, ...]  # the parameters after the item reference, quotes removed
    pos: int  # offset of the function name

    def __str__(self) -> str:
        return f"{self.name}(/{self.host}/{self.key}{''.join(',' + p for p in self.params)})"


# An item filter's condition: ("group", op, name), ("tag", op, "name" or "name:value"), ("and"|"or", a, b).
Filter = tuple


@dataclass(frozen=True, slots=True)
class ForeachCall:
    """`last_foreach(/*/key[a,*]?[group="G" and tag="t:v"],5m)`: host `*` is any host, `*` in a key
    parameter any value; `filter` None when there is no `?[...]`."""

    name: str
    host: str
    key: str
    filter: Filter | None
    period: str
    pos: int
    text: str  # as written


# --- the syntax tree ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Num:
    value: float


@dataclass(frozen=True, slots=True)
class _Str:
    value: str


@dataclass(frozen=True, slots=True)
class _Macro:
    text: str
    pos: int


@dataclass(frozen=True, slots=True)
class _Call:
    index: int  # into Expression.functions


@dataclass(frozen=True, slots=True)
class _Unary:
    op: str
    operand: _Node
    pos: int
    height: int


@dataclass(frozen=True, slots=True)
class _Binary:
    op: str
    left: _Node
    right: _Node
    pos: int
    height: int


@dataclass(frozen=True, slots=True)
class _Aggregate:
    name: str
    foreach: int | None  # into Expression.foreach
    calls: tuple[_Call, ...]  # the list form
    pos: int


def _height(node: _Node) -> int:
    return node.height if isinstance(node, _Unary | _Binary) else 0


_Node = _Num | _Str | _Macro | _Call | _Unary | _Binary | _Aggregate


@dataclass(frozen=True, slots=True)
class _CallSite:
    host_span: tuple[int, int]
    param_macros: tuple[bool, ...]  # per parameter: holds a user macro
    span: tuple[int, int]  # the whole call in the text

    @property
    def has_macros(self) -> bool:
        return any(self.param_macros)


@dataclass(frozen=True, eq=False)
class Expression:
    """A parsed expression; two are equal when their texts are."""

    text: str
    functions: list[FunctionCall]
    _root: _Node = field(repr=False)
    _sites: tuple[_CallSite, ...] = field(repr=False)
    _macros: frozenset[str] = field(repr=False)
    foreach: tuple[ForeachCall, ...] = ()  # calculated items' aggregates

    def item_refs(self) -> set[tuple[str, str]]:
        """The (host, key) pairs the expression reads."""
        return {(f.host, f.key) for f in self.functions}

    def macros(self) -> set[str]:
        """The user macros used, as written (`{$NAME}`, `{$NAME:"ctx"}`)."""
        return set(self._macros)

    def rename_host(self, old: str, new: str) -> str:
        """The text with every `/old/key` reference on host `new` instead."""
        out, last = [], 0
        for f, site in zip(self.functions, self._sites, strict=True):
            if f.host == old:
                a, b = site.host_span
                out.append(self.text[last:a])
                out.append(new)
                last = b
        out.append(self.text[last:])
        return "".join(out)

    @property
    def time_based(self) -> bool:
        """Whether the value can change with time alone (nodata, fuzzytime, trends, time periods or
        shifts): the engine must evaluate it on a timer too."""
        return any(fn.is_time_based(f.name, f.params) for f in self.functions)

    def __str__(self) -> str:
        return self.text

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Expression) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


# --- the parser --------------------------------------------------------------------------------

def parse(text: str, *, calculated: bool = False) -> Expression:
    """Parse a trigger expression; raise ExpressionError with the position of what is wrong.

    `calculated`: a calculated item's formula, which may also leave the host out (`last(//key)`: the
    item's own host, "" in FunctionCall.host) and use aggregate functions (AGGREGATES, FOREACH)."""
    if not isinstance(text, str):
        raise ExpressionError(f"expected the expression as text, got {type(text).__name__}", 0)
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"the expression is longer than {MAX_LENGTH} characters", MAX_LENGTH)
    return _Parser(text, calculated).run()


_BINARY_LEVELS: tuple[tuple[str, ...], ...] = (
    ("or",), ("and",), ("=", "<>"), ("<", "<=", ">", ">="), ("+", "-"), ("*", "/"),
)


class _Parser:
    def __init__(self, text: str, calculated: bool = False) -> None:
        self.text = text
        self.calculated = calculated
        self.foreach: list[ForeachCall] = []
        self.pos = 0
        self.functions: list[FunctionCall] = []
        self.sites: list[_CallSite] = []
        self.macros: set[str] = set()
        self.nesting = 0

    def run(self) -> Expression:
        if not self.text.strip():
            raise ExpressionError("empty expression: expected a function like last(/host/key) or a value", 0)
        root = self.binary(0)
        self.skip()
        if self.pos < len(self.text):
            c = self.text[self.pos]
            if c == ")":
                raise ExpressionError("unexpected ')' without a matching '('", self.pos)
            raise ExpressionError(f"expected an operator or the end of the expression, found {self.near()}",
                                  self.pos)
        if not self.functions and not self.foreach:
            what = "a calculated item" if self.calculated else "a trigger"
            raise ExpressionError(f"the expression uses no function: {what} needs at least one, like "
                                  "last(/host/key)", 0)
        return Expression(self.text, self.functions, root, tuple(self.sites), frozenset(self.macros),
                          tuple(self.foreach))

    # helpers
    def skip(self) -> None:
        n = len(self.text)
        while self.pos < n and self.text[self.pos] in " \t\r\n":
            self.pos += 1

    def near(self) -> str:
        if self.pos >= len(self.text):
            return "the end of the expression"
        m = _WORD.match(self.text, self.pos)
        return repr(m.group()) if m else repr(self.text[self.pos])

    def peek_op(self, ops: tuple[str, ...]) -> str | None:
        self.skip()
        t, p = self.text, self.pos
        for op in sorted(ops, key=len, reverse=True):
            if op.isalpha():
                m = _WORD.match(t, p)
                if m and m.group() == op:
                    return op
            elif t.startswith(op, p):
                if op in ("<", ">") and t.startswith(op + "=", p):
                    continue
                if op == "<" and t.startswith("<>", p):
                    continue
                return op
        return None

    # grammar
    def binary(self, level: int) -> _Node:
        if level == len(_BINARY_LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while True:
            op = self.peek_op(_BINARY_LEVELS[level])
            if op is None:
                return left
            pos = self.pos
            self.pos += len(op)
            self.skip()
            if self.pos >= len(self.text):
                raise ExpressionError(f"expected a value after '{op}', found the end of the expression", self.pos)
            right = self.binary(level + 1)
            height = max(_height(left), _height(right)) + 1
            if height > MAX_HEIGHT:
                raise ExpressionError(f"the expression is too long: more than {MAX_HEIGHT} operators in a chain; "
                                      "split it into several triggers or use count()/find()", pos)
            left = _Binary(op, left, right, pos, height)

    def nest(self, pos: int) -> None:
        self.nesting += 1
        if self.nesting > MAX_NESTING:
            raise ExpressionError(f"the expression is nested too deeply: more than {MAX_NESTING} levels of "
                                  "parentheses and unary operators", pos)

    def unary(self) -> _Node:
        self.skip()
        op = self.peek_op(("-", "not"))
        if op is not None:
            pos = self.pos
            self.pos += len(op)
            self.nest(pos)
            operand = self.unary()
            self.nesting -= 1
            return _Unary(op, operand, pos, _height(operand) + 1)
        return self.primary()

    def primary(self) -> _Node:
        self.skip()
        t, start = self.text, self.pos
        if start >= len(t):
            raise ExpressionError("expected a value, a function or '(', found the end of the expression", start)
        c = t[start]
        if c == "(":
            self.pos += 1
            self.nest(start)
            inner = self.binary(0)
            self.nesting -= 1
            self.skip()
            if self.pos >= len(t) or t[self.pos] != ")":
                raise ExpressionError(f"expected ')' to close the '(' at offset {start}, found {self.near()}",
                                      self.pos)
            self.pos += 1
            return inner
        if c == '"':
            value, self.pos = self.quoted(start)
            return _Str(value)
        if c.isdigit():
            m = fn.NUMBER_RE.match(t, start)
            assert m
            end = m.end()
            if end < len(t) and (t[end].isalnum() or t[end] in "._"):
                while end < len(t) and (t[end].isalnum() or t[end] in "._"):
                    end += 1
                raise ExpressionError(f"invalid number {t[start:end]!r}: expected digits with an optional suffix "
                                      "K M G T or s m h d w", start)
            self.pos = end
            v = fn.number(m.group())
            assert v is not None
            return _Num(v)
        if t.startswith("{$", start):
            return _Macro(self.macro(), start)
        if c == "{":
            raise ExpressionError("invalid macro: expected a user macro like {$NAME}", start)
        m = _WORD.match(t, start)
        if m:
            return self.call(m.group(), start, m.end())
        if c == ")":
            raise ExpressionError("expected a value, a function or '(', found ')'", start)
        raise ExpressionError(f"expected a value, a function or '(', found {c!r}", start)

    def quoted(self, start: int) -> tuple[str, int]:
        t = self.text
        out, i = [], start + 1
        while i < len(t):
            c = t[i]
            if c == "\\" and i + 1 < len(t) and t[i + 1] in '"\\':
                out.append(t[i + 1])
                i += 2
                continue
            if c == '"':
                return "".join(out), i + 1
            out.append(c)
            i += 1
        raise ExpressionError("unterminated string: expected a closing '\"'", start)

    def macro(self) -> str:
        m = _MACRO.match(self.text, self.pos)
        if not m:
            raise ExpressionError("invalid user macro: expected {$NAME} with A-Z, 0-9, '_' and '.' in the name "
                                  "(or {$NAME:\"context\"})", self.pos)
        self.pos = m.end()
        self.macros.add(m.group())
        return m.group()

    def call(self, name: str, start: int, end: int) -> _Node:
        t = self.text
        self.pos = end
        self.skip()
        if self.pos >= len(t) or t[self.pos] != "(":
            raise ExpressionError(f"unexpected {name!r}: expected a function call like {name}(/host/key), a "
                                  "number, a string or a macro", start)
        if self.calculated and name in FOREACH:
            raise ExpressionError(f"{name}() can only be the parameter of an aggregate function, like "
                                  f"avg({name}(/*/key?[group=\"name\"]))", start)
        if name not in fn.SPECS:
            known = sorted(fn.SPECS) if not self.calculated else sorted(set(fn.SPECS) | set(FOREACH))
            raise ExpressionError(f"unknown function {name!r}: expected one of {', '.join(known)}", start)
        self.pos += 1
        self.skip()
        if self.calculated and name in AGGREGATES and self.pos < len(t) and t[self.pos] != "/":
            return self.aggregate(name, start)
        if self.pos >= len(t) or t[self.pos] != "/":
            raise ExpressionError(f"function {name}() needs an item reference /host/key as its first parameter, "
                                  f"found {self.near()}", self.pos)
        host, host_span, key = self.item_ref()
        params: list[str] = []
        param_pos: list[int] = []
        has_macro: list[bool] = []
        while True:
            self.skip()
            if self.pos >= len(t):
                raise ExpressionError(f"expected ')' to close {name}( at offset {start}, found the end of the "
                                      "expression", self.pos)
            if t[self.pos] == ")":
                self.pos += 1
                break
            if t[self.pos] != ",":
                raise ExpressionError(f"expected ',' or ')' in {name}(), found {self.near()}", self.pos)
            self.pos += 1
            self.skip()
            param_pos.append(self.pos)
            value, macro = self.param()
            params.append(value)
            has_macro.append(macro)
        spec = fn.SPECS[name]
        if not spec.min_params <= len(params) <= spec.max_params:
            if spec.min_params == spec.max_params:
                want = f"{spec.min_params}"
            elif len(params) > spec.max_params:
                want = f"at most {spec.max_params}"
            else:
                want = f"at least {spec.min_params}"
            s = "" if want.endswith(" 1") or want == "1" else "s"
            raise ExpressionError(f"function {name}() takes {want} parameter{s} after the item reference, "
                                  f"got {len(params)}", start)
        try:
            fn.validate(name, params, lambda i: i < len(has_macro) and has_macro[i])
        except fn.ParamError as e:
            where = param_pos[e.index] if e.index < len(param_pos) else self.pos - 1
            raise ExpressionError(f"{name}(): {e}", where) from None
        self.functions.append(FunctionCall(name, host, key, tuple(params), start))
        self.sites.append(_CallSite(host_span, tuple(has_macro), (start, self.pos)))
        return _Call(len(self.functions) - 1)

    def aggregate(self, name: str, start: int) -> _Node:
        """`avg(last_foreach(...))` or `avg(last(/a/k),last(/b/k),...)`; self.pos is after the '('."""
        t = self.text
        m = _WORD.match(t, self.pos)
        if m and m.group() in FOREACH:
            fpos = self.pos
            self.pos = m.end()
            self.skip()
            if self.pos >= len(t) or t[self.pos] != "(":
                raise ExpressionError(f"expected '(' after {m.group()}", self.pos)
            self.pos += 1
            self.skip()
            index = self.foreach_call(m.group(), fpos)
            self.skip()
            if self.pos >= len(t) or t[self.pos] != ")":
                raise ExpressionError(f"{name}() takes one foreach function, expected ')' after it, found "
                                      f"{self.near()}", self.pos)
            self.pos += 1
            return _Aggregate(name, index, (), start)
        calls: list[_Call] = []
        while True:
            self.skip()
            cm = _WORD.match(t, self.pos)
            if not cm:
                raise ExpressionError(f"{name}() of several items takes functions like last(/host/key) or one "
                                      f"foreach function like last_foreach(/*/key), found {self.near()}", self.pos)
            node = self.call(cm.group(), self.pos, cm.end())
            if not isinstance(node, _Call):
                raise ExpressionError(f"{name}() cannot hold another aggregate function", cm.start())
            calls.append(node)
            self.skip()
            if self.pos < len(t) and t[self.pos] == ",":
                self.pos += 1
                continue
            if self.pos < len(t) and t[self.pos] == ")":
                self.pos += 1
                return _Aggregate(name, None, tuple(calls), start)
            raise ExpressionError(f"expected ',' or ')' in {name}(), found {self.near()}", self.pos)

    def foreach_call(self, name: str, start: int) -> int:
        t = self.text
        if self.pos >= len(t) or t[self.pos] != "/":
            raise ExpressionError(f"{name}() needs an item filter /host/key as its first parameter, found "
                                  f"{self.near()}", self.pos)
        host, _span, key = self.item_ref(wildcard=True)
        flt = None
        if t.startswith("?[", self.pos):
            self.pos += 2
            flt = self.filter_or()
            self.skip()
            if self.pos >= len(t) or t[self.pos] != "]":
                raise ExpressionError(f"expected ']' to end the item filter, found {self.near()}", self.pos)
            self.pos += 1
        period = ""
        self.skip()
        if self.pos < len(t) and t[self.pos] == ",":
            self.pos += 1
            self.skip()
            ppos = self.pos
            period, _macro = self.param()
            try:
                fn.parse_period(period, 0, counts=False, shift=False)
            except fn.ParamError as e:
                raise ExpressionError(f"{name}(): {e}", ppos) from None
            if name == "exists_foreach":
                raise ExpressionError("exists_foreach() takes no time period", ppos)
        elif FOREACH[name][1]:
            raise ExpressionError(f"{name}() needs a time period after the item filter, like {name}(/*/key,5m)",
                                  self.pos)
        self.skip()
        if self.pos >= len(t) or t[self.pos] != ")":
            raise ExpressionError(f"expected ')' to close {name}(, found {self.near()}", self.pos)
        self.pos += 1
        self.foreach.append(ForeachCall(name, host, key, flt, period, start, t[start:self.pos]))
        return len(self.foreach) - 1

    # the item filter: condition (and|or condition)*, conditions group="..." / tag="..." with = or <>
    def filter_or(self) -> Filter:
        left = self.filter_and()
        while self.peek_op(("or",)):
            self.pos += 2
            left = ("or", left, self.filter_and())
        return left

    def filter_and(self) -> Filter:
        left = self.filter_term()
        while self.peek_op(("and",)):
            self.pos += 3
            left = ("and", left, self.filter_term())
        return left

    def filter_term(self) -> Filter:
        self.skip()
        t = self.text
        if self.pos < len(t) and t[self.pos] == "(":
            open_at = self.pos
            self.pos += 1
            inner = self.filter_or()
            self.skip()
            if self.pos >= len(t) or t[self.pos] != ")":
                raise ExpressionError(f"expected ')' to close the '(' at offset {open_at} in the item filter, "
                                      f"found {self.near()}", self.pos)
            self.pos += 1
            return inner
        m = _WORD.match(t, self.pos)
        if not m or m.group() not in ("group", "tag"):
            raise ExpressionError(f"expected group=\"...\" or tag=\"...\" in the item filter, found {self.near()}",
                                  self.pos)
        self.pos = m.end()
        self.skip()
        op = "<>" if t.startswith("<>", self.pos) else "=" if t.startswith("=", self.pos) else None
        if op is None:
            raise ExpressionError(f"expected '=' or '<>' after {m.group()} in the item filter, found {self.near()}",
                                  self.pos)
        self.pos += len(op)
        self.skip()
        if self.pos >= len(t) or t[self.pos] != '"':
            raise ExpressionError(f"expected a quoted {m.group()} name after {m.group()}{op}, found {self.near()}",
                                  self.pos)
        value, self.pos = self.quoted(self.pos)
        return (m.group(), op, value)

    def item_ref(self, wildcard: bool = False) -> tuple[str, tuple[int, int], str]:
        t = self.text
        self.pos += 1  # '/'
        if self.calculated and self.pos < len(t) and t[self.pos] == "/":  # //key: the calculated item's host
            host, span = "", (self.pos, self.pos)
        elif wildcard and t.startswith("*/", self.pos):
            host, span = "*", (self.pos, self.pos + 1)
            self.pos += 1
        else:
            m = _HOST.match(t, self.pos)
            if not m or m.group().strip() == "":
                what = "'/' (an empty host: triggers need the host name)" if self.pos < len(t) and \
                    t[self.pos] == "/" else self.near()
                raise ExpressionError(f"expected a host name after '/', found {what}", self.pos)
            host, span = m.group(), (m.start(), m.end())
            self.pos = m.end()
        return self._key_after_host(host, span)

    def _key_after_host(self, host: str, span: tuple[int, int]) -> tuple[str, tuple[int, int], str]:
        t = self.text
        if self.pos >= len(t) or t[self.pos] != "/":
            raise ExpressionError(f"expected '/' between the host name and the item key, found {self.near()}",
                                  self.pos)
        self.pos += 1
        kstart = self.pos
        km = itemkey._NAME.match(t, kstart)
        if not km:
            raise ExpressionError(f"expected an item key after /{host}/, found {self.near()}", kstart)
        self.pos = km.end()
        if self.pos < len(t) and t[self.pos] == "[":
            try:
                _params, self.pos = itemkey._params(t, self.pos + 1, nested=False)
            except itemkey.ItemKeyError as e:
                raise ExpressionError(f"invalid item key: {str(e).rsplit(' at position', 1)[0]}", e.offset) from None
        key = t[kstart:self.pos]
        return host, span, key

    def param(self) -> tuple[str, bool]:
        """One function parameter: quoted, or unquoted up to ',' or ')'; and whether it holds a user macro."""
        t, start = self.text, self.pos
        if start < len(t) and t[start] == '"':
            value, self.pos = self.quoted(start)
            for m in _MACRO.finditer(value):
                self.macros.add(m.group())
            return value, "{$" in value
        i, macro = start, False
        while i < len(t) and t[i] not in ",)":
            if t.startswith("{$", i):
                self.pos = i
                self.macro()
                i, macro = self.pos, True
                continue
            if t[i] == '"':
                raise ExpressionError("unexpected '\"' inside a parameter: quote the whole parameter", i)
            if t[i] == "(":
                raise ExpressionError("unexpected '(' inside a parameter", i)
            i += 1
        self.pos = i
        return t[start:i].rstrip(" \t\r\n"), macro


# --- evaluation --------------------------------------------------------------------------------

def evaluate(expr: Expression, data: DataSource, now: int, macros: Mapping[str, str], *,
             tz: tzinfo = UTC) -> float:
    """The value of the expression at `now`: 1/0 for comparisons and logic, or the number computed.

    `macros` maps user macros as written in configuration (`{$NAME}`, `{$NAME:"ctx"}`) to their values.
    `tz` is the time zone of the day, week, month and year anchors of time shifts (`now/d`).
    Raises EvaluationError when the value is unknown, saying why."""
    v = _Evaluator(expr, data, now, macros, tz).eval(expr._root)
    n = fn.to_number(v)
    if n is None:
        raise EvaluationError(f"the expression's value {v!r} is not a number")
    return n


_Value = float | str

_COMPARISONS = {
    "=": lambda c: c == 0, "<>": lambda c: c != 0, "<": lambda c: c < 0,
    "<=": lambda c: c <= 0, ">": lambda c: c > 0, ">=": lambda c: c >= 0,
}


def _compare(a: _Value, b: _Value) -> int:
    """As Zabbix compares operands: two strings as text; otherwise as numbers (within the epsilon) when both
    are or convert to numbers; else as text."""
    if isinstance(a, str) and isinstance(b, str):
        return (a > b) - (a < b)
    x, y = fn.to_number(a), fn.to_number(b)
    if x is not None and y is not None:
        return fn.compare(x, y)
    sa, sb = _as_text(a), _as_text(b)
    return (sa > sb) - (sa < sb)


def _as_text(v: _Value) -> str:
    if isinstance(v, str):
        return v
    return str(int(v)) if v.is_integer() else repr(v)


class _Evaluator:
    def __init__(self, expr: Expression, data: DataSource, now: int, macros: Mapping[str, str],
                 tz: tzinfo) -> None:
        self.tz = tz
        self.expr = expr
        self.data = data
        self.now = now
        self.macros = macros
        self.cache: dict[tuple[str, str, str, tuple[str, ...]], _Value | EvaluationError] = {}

    def eval(self, node: _Node) -> _Value:
        t = type(node)
        if t is _Binary:
            return self.binary(node)  # type: ignore[arg-type]
        if t is _Call:
            return self.call(node.index)  # type: ignore[union-attr]
        if t is _Num or t is _Str:
            return node.value  # type: ignore[union-attr]
        if t is _Macro:
            return self.macro_value(node.text)  # type: ignore[union-attr]
        if t is _Aggregate:
            return self.aggregate(node)  # type: ignore[arg-type]
        assert isinstance(node, _Unary)
        x = self.number(self.eval(node.operand), node.op)
        return -x if node.op == "-" else (1.0 if fn.equal(x, 0.0) else 0.0)

    def binary(self, node: _Binary) -> _Value:
        op = node.op
        if op == "and" or op == "or":
            return self.logic(node)
        a, b = self.eval(node.left), self.eval(node.right)
        cmp = _COMPARISONS.get(op)
        if cmp is not None:
            return 1.0 if cmp(_compare(a, b)) else 0.0
        x, y = self.number(a, op), self.number(b, op)
        if op == "+":
            r = x + y
        elif op == "-":
            r = x - y
        elif op == "*":
            r = x * y
        else:
            if fn.equal(y, 0.0):
                raise EvaluationError(f"division by zero at position {node.pos}")
            r = x / y
        if not math.isfinite(r):
            raise EvaluationError(f"the result of '{op}' at position {node.pos} is too large ({r})")
        return r

    def logic(self, node: _Binary) -> float:
        results: list[bool | EvaluationError] = []
        for side in (node.left, node.right):
            try:
                results.append(not fn.equal(self.number(self.eval(side), node.op), 0.0))
            except EvaluationError as e:
                results.append(e)
        decisive = node.op == "or"  # a true side decides `or`, a false side decides `and`
        if any(r is decisive for r in results):
            return 1.0 if decisive else 0.0
        for r in results:
            if isinstance(r, EvaluationError):
                raise r
        return 0.0 if decisive else 1.0

    def number(self, v: _Value, op: str) -> float:
        if type(v) is float:
            return v
        n = fn.to_number(v)
        if n is None:
            raise EvaluationError(f"operator '{op}' needs a number, got the string {v!r}")
        return n

    def macro(self, text: str) -> str:
        v = _resolve_macro(text, self.macros)
        if v is None:
            raise EvaluationError(f"user macro {text} is not defined on the host, its templates or globally")
        return v

    def macro_value(self, text: str) -> _Value:
        """A macro used as an operand: a number when its value is one (`10K` too), else a string."""
        v = self.macro(text)
        n = fn.number(v)
        return v if n is None else n

    def call(self, index: int) -> _Value:
        """The value of a function call; the same call written twice is computed once."""
        f = self.expr.functions[index]
        key = (f.name, f.host, f.key, f.params)
        hit = self.cache.get(key)
        if hit is not None:
            if isinstance(hit, EvaluationError):
                raise hit
            return hit
        try:
            result = self._call(f, self.expr._sites[index])
        except EvaluationError as e:
            self.cache[key] = e
            raise
        self.cache[key] = result
        return result

    def aggregate(self, node: _Aggregate) -> float:
        """avg/sum/min/max/count of the numbers the foreach function or the listed calls give; items
        without data are left out (Zabbix's rule), none with data is unknown."""
        values: list[float] = []
        why = ""
        if node.foreach is not None:
            fc = self.expr.foreach[node.foreach]
            values, why = self.foreach(fc)
            what = fc.text
        else:
            for c in node.calls:
                try:
                    n = fn.to_number(self.call(c.index))
                except EvaluationError as e:
                    why = why or str(e)
                    continue
                if n is not None:
                    values.append(n)
            what = f"{len(node.calls)} functions"
        if not values:
            raise EvaluationError(f"{node.name}() at position {node.pos}: no data from {what}"
                                  + (f" ({why})" if why else ""))
        if node.name == "count":
            return float(len(values))
        if node.name == "sum":
            return math.fsum(values)
        if node.name == "avg":
            return math.fsum(values) / len(values)
        return min(values) if node.name == "min" else max(values)

    def foreach(self, fc: ForeachCall) -> tuple[list[float], str]:
        select = getattr(self.data, "select", None)
        if select is None:
            raise EvaluationError(f"{fc.text}: aggregate functions are evaluated for calculated items only")
        items = select(fc.host, fc.key, fc.filter)
        if not items:
            raise EvaluationError(f"{fc.text}: no item matches the filter")
        out: list[float] = []
        why = ""
        base = FOREACH[fc.name][0]
        for label, item in items:
            if not base:  # exists_foreach: every enabled item
                out.append(1.0)
                continue
            try:
                if item.error is not None:
                    raise EvaluationError(f"{label}: the item is not supported: {item.error}")
                if base == "last" and fc.period:
                    rows = self.data.values(item.itemid, item.value_type, self.now,
                                            seconds=fn.parse_period(fc.period, 0).seconds)
                    if not rows:
                        raise EvaluationError(f"{label}: no data in period {fc.period!r}")
                    v: _Value = rows[0][2] if not hasattr(rows[0][2], "value") else rows[0][2].value
                else:
                    v = fn.call(base, item, (fc.period,) if fc.period else (), self.data, self.now, label,
                                tz=self.tz)
            except EvaluationError as e:
                why = why or str(e)
                continue
            n = fn.to_number(v) if isinstance(v, str) else float(v)
            if n is not None:
                out.append(n)
        return out, why

    def _call(self, f: FunctionCall, site: _CallSite) -> _Value:
        params = f.params
        if site.has_macros:
            params = tuple(
                _MACRO.sub(lambda m: self.macro(m.group()), p) if macro else p
                for p, macro in zip(f.params, site.param_macros, strict=True)
            )
        where = self.expr.text[site.span[0]:site.span[1]]
        item = self.data.item(f.host, f.key)
        if item is None:
            on = f"host {f.host!r}" if f.host else "the calculated item's host"
            raise EvaluationError(f"{where}: no item {f.key!r} on {on}")
        return fn.call(f.name, item, params, self.data, self.now, where, checked=not site.has_macros,
                       tz=self.tz)


def _resolve_macro(text: str, macros: Mapping[str, str]) -> str | None:
    """`{$NAME}` from the mapping; `{$NAME:ctx}` matches the same context quoted or not, else `{$NAME}`."""
    if text in macros:
        return macros[text]
    m = _MACRO.fullmatch(text)
    if m is None or m.group(2) is None:
        return None
    name, ctx = m.group(1), _context(m.group(2))
    for k, v in macros.items():
        km = _MACRO.fullmatch(k)
        if km and km.group(1) == name and km.group(2) is not None and _context(km.group(2)) == ctx:
            return v
    return macros.get("{$" + name + "}")


def _context(raw: str) -> str:
    if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
        return re.sub(r"\\(.)", r"\1", raw[1:-1])
    return raw.strip()


def key_matches(pattern: str, key: str) -> bool:
    """Whether `key` is selected by a foreach item filter's key: the same key, a `*` parameter
    matching any value of that parameter."""
    if pattern == key:
        return True
    if "*" not in pattern:
        return False
    try:
        p, k = itemkey.parse(pattern), itemkey.parse(key)
    except itemkey.ItemKeyError:
        return False
    if p.name != k.name or len(p.params) != len(k.params):
        return False
    return all(a == "*" or a == b for a, b in zip(p.params, k.params, strict=True))


def filter_matches(flt: Filter | None, groups: set[str] | frozenset[str],
                   tags: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> bool:
    """Whether an item on a host in `groups` with item `tags` passes the filter (`tag="name"` matches the
    tag with any value, `tag="name:value"` that value)."""
    if flt is None:
        return True
    kind = flt[0]
    if kind == "and":
        return filter_matches(flt[1], groups, tags) and filter_matches(flt[2], groups, tags)
    if kind == "or":
        return filter_matches(flt[1], groups, tags) or filter_matches(flt[2], groups, tags)
    _, op, value = flt
    if kind == "group":
        hit = value in groups
    else:
        name, sep, val = value.partition(":")
        hit = any(t == name and (not sep or v == val) for t, v in tags)
    return hit if op == "=" else not hit
