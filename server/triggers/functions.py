"""Zabbix 6.0 trigger functions over a DataSource: pure code, `now` is a parameter, no I/O.

Each function gets its item reference resolved through `DataSource.item` and its parameters as
text (user macros already substituted). A result that Zabbix would call "unknown" (item missing or
unsupported, not enough data, a bad parameter) raises EvaluationError saying why.

Periods are time (`30`, `5m`, `1h`, suffixes s m h d w) or counts (`#10`), with an optional time
shift (`5m:now-1h`). Trend functions take `<N><h|d|w|M|y>:<shift>` where the shift may anchor to the
start of an hour, day, week (Monday), month or year (`now/h`, `now/d-1d`, `now/M-1y`), in UTC or the
time zone the caller passes (Zabbix uses the server's local time).
"""

from __future__ import annotations

import math
import re
from calendar import monthrange
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from functools import lru_cache
from typing import Any, Protocol

from vigil.server.store.base import Trend

EPSILON = 0.000001  # Zabbix's ZBX_DOUBLE_EPSILON for = and <>
NUMERIC_TYPES = (0, 3)  # float, unsigned
TYPE_NAMES = {0: "numeric (float)", 1: "character", 2: "log", 3: "numeric (unsigned)", 4: "text"}

SUFFIXES = {
    "K": 1024.0, "M": 1024.0**2, "G": 1024.0**3, "T": 1024.0**4,
    "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0,
}
TIME_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
NUMBER_RE = re.compile(r"[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?[KMGTsmhdw]?")
_SIGNED_NUMBER = re.compile(r"\s*([+-]?)(" + NUMBER_RE.pattern + r")\s*")


class EvaluationError(Exception):
    """The expression's value is unknown; str() says why."""


class ParamError(ValueError):
    """A function parameter that is not valid; `index` is the parameter (0 = the first after the item)."""

    def __init__(self, message: str, index: int) -> None:
        super().__init__(message)
        self.index = index


@dataclass(frozen=True, slots=True)
class ItemInfo:
    itemid: int
    value_type: int  # 0 float, 1 character, 2 log, 3 unsigned, 4 text
    # Set when the item is unsupported: why. Every function but nodata() is then unknown.
    error: str | None = None
    # Since when the item can have data (its creation or the server's start): nodata(/h/k,5m) is unknown
    # until that is 5 minutes ago, so a restart does not fire every nodata trigger. None: no such limit.
    data_expected_from: int | None = None


class DataSource(Protocol):
    """What the evaluator reads; the engine's value cache implements it."""

    def item(self, host: str, key: str) -> ItemInfo | None: ...

    def values(self, itemid: int, value_type: int, end: int, seconds: int | None = None,
               count: int | None = None) -> list[tuple[int, int, Any]]:
        """(clock, ns, value) newest first: clock in (end - seconds, end], or the newest `count`
        with clock <= end."""
        ...

    def trends(self, itemid: int, value_type: int, start: int, end: int) -> list[Trend]:
        """The hourly trends of the item whose hour starts in [start, end]."""
        ...


def number(text: str) -> float | None:
    """A number as Zabbix writes one (`-1.5`, `10K`, `5m`, `1e3`), or None."""
    m = _SIGNED_NUMBER.fullmatch(text)
    if not m:
        return None
    body = m.group(2)
    mult = 1.0
    if body[-1] in SUFFIXES:
        mult = SUFFIXES[body[-1]]
        body = body[:-1]
    v = float(body) * mult
    return -v if m.group(1) == "-" else v


def to_number(v: float | str) -> float | None:
    if isinstance(v, float):
        return v
    return number(v)


def equal(a: float, b: float) -> bool:
    return abs(a - b) <= EPSILON


def compare(a: float, b: float) -> int:
    """-1, 0 or 1, numbers within EPSILON of each other being equal (Zabbix's zbx_variant_compare)."""
    if equal(a, b):
        return 0
    return -1 if a < b else 1


# --- periods -----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Period:
    seconds: int | None  # a time period, or
    count: int | None  # a count of values (#N)
    shift: str | None  # the time shift text after ':' (`now-1h`), or None


_SHIFT_STEP = re.compile(r"/([smhdwMy])|([+-])([0-9]+)([smhdwMy]?)")


def parse_time(text: str, what: str = "period", index: int = 0) -> int:
    """Seconds of `30`, `5m`, `1h`, `1d`, `1w`."""
    m = re.fullmatch(r"([0-9]+)([smhdw]?)", text)
    if not m:
        raise ParamError(f"invalid {what} {text!r}: expected a number of seconds or one with a suffix s m h d w "
                         "(like 30, 5m, 1h)", index)
    return int(m.group(1)) * TIME_UNITS.get(m.group(2) or "s", 1)


_UNIT_ORDER = "smhdwMy"


def check_shift(text: str, index: int, min_unit: str = "s") -> None:
    """`now`, followed by `/unit` anchors and `+N<unit>` / `-N<unit>` steps (units s m h d w M y); a trend
    function's shift may not use units smaller than its period's."""
    if not text.startswith("now"):
        raise ParamError(f"invalid time shift {text!r}: expected it to start with 'now' (like now-1h)", index)
    pos = 3
    while pos < len(text):
        m = _SHIFT_STEP.match(text, pos)
        if not m:
            raise ParamError(f"invalid time shift {text!r}: expected /h, /d, /w, /M, /y or +N, -N with a unit "
                             f"at {text[pos:]!r}", index)
        unit = m.group(1) or m.group(4) or "s"
        if _UNIT_ORDER.index(unit) < _UNIT_ORDER.index(min_unit):
            raise ParamError(f"invalid time shift {text!r}: its units must not be smaller than the period's "
                             f"({min_unit})", index)
        pos = m.end()


@lru_cache(maxsize=4096)
def parse_period(text: str, index: int, counts: bool = True, shift: bool = True) -> Period:
    """`5m`, `#10`, optionally followed by `:now-1h`."""
    body, sep, sh = text.partition(":")
    if sep and not shift:
        raise ParamError(f"invalid period {text!r}: this function takes no time shift", index)
    if sep:
        check_shift(sh, index)
    if body.startswith("#"):
        if not counts:
            raise ParamError(f"invalid period {text!r}: this function takes a time period, not a count (#N)", index)
        if not re.fullmatch(r"[0-9]+", body[1:]) or int(body[1:]) < 1:
            raise ParamError(f"invalid count {body!r}: expected # followed by a positive whole number (like #5)",
                             index)
        return Period(None, int(body[1:]), sh if sep else None)
    seconds = parse_time(body, "period", index)
    if seconds < 1:
        raise ParamError(f"invalid period {text!r}: it must be at least 1 second", index)
    return Period(seconds, None, sh if sep else None)


def _anchor(t: datetime, unit: str) -> datetime:
    if unit == "s":
        return t
    if unit == "m":
        return t.replace(second=0)
    if unit == "h":
        return t.replace(minute=0, second=0)
    t = t.replace(hour=0, minute=0, second=0)
    if unit == "d":
        return t
    if unit == "w":
        return t - timedelta(days=t.weekday())
    if unit == "M":
        return t.replace(day=1)
    return t.replace(month=1, day=1)  # y


def _add_months(t: datetime, months: int) -> datetime:
    total = t.year * 12 + (t.month - 1) + months
    year, month = divmod(total, 12)
    day = min(t.day, monthrange(year, month + 1)[1])
    return t.replace(year=year, month=month + 1, day=day)


def _step(t: datetime, n: int, unit: str) -> datetime:
    if unit == "M":
        return _add_months(t, n)
    if unit == "y":
        return _add_months(t, 12 * n)
    return t + timedelta(seconds=n * TIME_UNITS[unit])


def apply_shift(now: int, shift: str | None, tz: tzinfo = UTC) -> int:
    """The clock a time shift like `now-1h` or `now/d-1d` names, from `now`; days, weeks, months and years
    are those of the time zone `tz` (Zabbix uses the server's local time; the default is UTC)."""
    if shift is None:
        return now
    t = datetime.fromtimestamp(now, tz).replace(microsecond=0)
    for m in _SHIFT_STEP.finditer(shift, 3):
        if m.group(1):
            t = _anchor(t, m.group(1))
        else:
            n = int(m.group(3)) * (-1 if m.group(2) == "-" else 1)
            t = _step(t, n, m.group(4) or "s")
    return int(t.timestamp())


def period_start(end: int, length: str, tz: tzinfo = UTC) -> int:
    """The start of a trend period of `length` (`1h`, `2d`, `1M`, `1y`) that ends at `end`."""
    n, unit = int(length[:-1]), length[-1]
    return int(_step(datetime.fromtimestamp(end, tz), -n, unit).timestamp())


@lru_cache(maxsize=1024)
def parse_trend_period(text: str, index: int) -> tuple[str, str]:
    body, sep, sh = text.partition(":")
    if not sep:
        raise ParamError(f"invalid trend period {text!r}: expected a period and a time shift like 1h:now/h", index)
    if not re.fullmatch(r"[1-9][0-9]*[hdwMy]", body):
        raise ParamError(f"invalid trend period {body!r}: expected a whole number of hours, days, weeks, months "
                         "or years (like 1h, 7d, 1M, 1y)", index)
    hours = int(body[:-1]) * {"h": 1, "d": 24, "w": 168, "M": 720, "y": 8760}[body[-1]]
    if hours > 24 * 366:
        raise ParamError(f"invalid trend period {body!r}: it may be at most a year", index)
    check_shift(sh, index, min_unit=body[-1])
    return body, sh


# --- operators of count() and find() -----------------------------------------------------------

OPERATORS = ("eq", "ne", "gt", "ge", "lt", "le", "like", "bitand", "regexp", "iregexp")


def check_operator(op: str, pattern: str | None, index: int, has_macros: bool) -> None:
    if op and op not in OPERATORS:
        raise ParamError(f"unknown operator {op!r}: expected one of {', '.join(OPERATORS)}", index)
    if pattern is None or has_macros:
        return
    if op in ("regexp", "iregexp"):
        try:
            re.compile(pattern)
        except re.error as e:
            raise ParamError(f"invalid regular expression {pattern!r}: {e}", index + 1) from None
    elif op == "bitand":
        if not re.fullmatch(r"[0-9]+(/[0-9]+)?", pattern):
            raise ParamError(f"invalid bitand pattern {pattern!r}: expected a mask or value/mask of whole numbers",
                             index + 1)


@lru_cache(maxsize=1024)
def _matcher(op: str, pattern: str | None, value_type: int) -> Callable[[Any], bool] | None:
    """What count() and find() test each value with, as Zabbix's evaluate_COUNT does; None: every value counts."""
    numeric = value_type in NUMERIC_TYPES and op not in ("regexp", "iregexp")
    given = op
    if not op:
        op = "eq" if numeric else "like"
    if numeric:
        if not pattern:
            if given:
                raise EvaluationError(f"operator {op!r} needs a pattern to compare numeric values with")
            return None
        if op == "like":
            raise EvaluationError("operator 'like' is not supported for numeric values (use eq, or regexp)")
        if op == "bitand":
            if value_type != 3:
                raise EvaluationError("operator 'bitand' is not supported for float values")
            m = re.fullmatch(r"([0-9]+)(?:/([0-9]+))?", pattern)
            if not m:
                raise EvaluationError(f"invalid bitand pattern {pattern!r}: expected a mask or value/mask")
            want = int(m.group(1))
            mask = int(m.group(2)) if m.group(2) is not None else want
            return lambda v: (int(v) & mask) == want
        p = number(pattern)
        if p is None or value_type == 3 and (p < 0 or p != int(p)):
            kind = "unsigned" if value_type == 3 else "float"
            raise EvaluationError(f"pattern {pattern!r} is not a valid numeric {kind} value")
        if value_type == 3:  # unsigned: exact
            return {
                "eq": lambda v: v == p, "ne": lambda v: v != p, "gt": lambda v: v > p,
                "ge": lambda v: v >= p, "lt": lambda v: v < p, "le": lambda v: v <= p,
            }[op]
        return {
            "eq": lambda v: equal(v, p), "ne": lambda v: not equal(v, p),
            "gt": lambda v: v - p > EPSILON, "ge": lambda v: v - p >= -EPSILON,
            "lt": lambda v: p - v > EPSILON, "le": lambda v: v - p <= EPSILON,
        }[op]
    if op not in ("like", "eq", "ne", "regexp", "iregexp"):
        raise EvaluationError(f"operator {op!r} is not supported for textual values (use like, eq, ne, regexp "
                              "or iregexp)")
    pat = pattern or ""
    if not pat and op in ("like", "regexp", "iregexp"):
        return None  # "" is in every value
    if op in ("regexp", "iregexp"):
        try:
            rx = re.compile(pat, re.IGNORECASE if op == "iregexp" else 0)
        except re.error as e:
            raise EvaluationError(f"invalid regular expression {pat!r}: {e}") from None
        return lambda v: rx.search(_text(v, value_type)) is not None
    if op == "like":
        return lambda v: pat in _text(v, value_type)
    if op == "eq":
        return lambda v: _text(v, value_type) == pat
    return lambda v: _text(v, value_type) != pat


def _text(v: Any, value_type: int) -> str:
    """A value as count()'s text operators see it (floats with 4 decimals, as Zabbix prints them there)."""
    if value_type == 0:
        return f"{float(v):.4f}"
    if value_type == 3:
        return str(int(v))
    return str(v)


# --- the functions -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Spec:
    min_params: int  # after the item reference
    max_params: int
    check: Callable[[Sequence[str], Callable[[int], bool]], None]  # params, has_macro(i) -> raises ParamError


def _check_nothing(params: Sequence[str], has_macro: Callable[[int], bool]) -> None:
    pass


def _check_last(params: Sequence[str], has_macro: Callable[[int], bool]) -> None:
    if params and params[0] and not has_macro(0):
        p = parse_period(params[0], 0)
        if p.count is None:
            raise ParamError(f"invalid parameter {params[0]!r}: last() takes a count like #2 (the value before "
                             "the last), not a time period", 0)


def _check_period(counts: bool = True, required: bool = True) -> Callable[..., None]:
    def check(params: Sequence[str], has_macro: Callable[[int], bool]) -> None:
        if not params or not params[0]:
            if required:
                raise ParamError("missing period: expected a time period (like 5m) or a count (like #10)", 0)
            return
        if not has_macro(0):
            parse_period(params[0], 0, counts=counts)
    return check


def _check_count(params: Sequence[str], has_macro: Callable[[int], bool]) -> None:
    _check_period(required=False)(params, has_macro)
    if len(params) > 1 and not has_macro(1):
        check_operator(params[1], params[2] if len(params) > 2 else None, 1, len(params) > 2 and has_macro(2))


def _check_nodata(params: Sequence[str], has_macro: Callable[[int], bool]) -> None:
    if not has_macro(0):
        if params[0].startswith("#"):
            raise ParamError(f"invalid period {params[0]!r}: nodata() takes seconds, not a count", 0)
        if ":" in params[0]:
            raise ParamError(f"invalid period {params[0]!r}: nodata() takes no time shift", 0)
        if parse_time(params[0], "period", 0) < 1:
            raise ParamError(f"invalid period {params[0]!r}: it must be at least 1 second", 0)
    if len(params) > 1 and params[1] not in ("", "strict") and not has_macro(1):
        raise ParamError(f"invalid mode {params[1]!r}: nodata() takes only 'strict'", 1)


def _check_changecount(params: Sequence[str], has_macro: Callable[[int], bool]) -> None:
    _check_period()(params, has_macro)
    if len(params) > 1 and params[1] not in ("", "all", "dec", "inc") and not has_macro(1):
        raise ParamError(f"invalid mode {params[1]!r}: expected all, dec or inc", 1)


def _check_percentile(params: Sequence[str], has_macro: Callable[[int], bool]) -> None:
    _check_period()(params, has_macro)
    if not has_macro(1):
        p = number(params[1]) if re.fullmatch(r"[0-9]+(\.[0-9]+)?", params[1].strip()) else None
        if p is None or not 0 <= p <= 100:
            raise ParamError(f"invalid percentage {params[1]!r}: expected a number from 0 to 100", 1)


def _check_first(params: Sequence[str], has_macro: Callable[[int], bool]) -> None:
    if not has_macro(0):
        parse_period(params[0], 0, counts=False)


def _check_fuzzytime(params: Sequence[str], has_macro: Callable[[int], bool]) -> None:
    if not has_macro(0):
        if params[0].startswith("#") or ":" in params[0]:
            raise ParamError(f"invalid period {params[0]!r}: fuzzytime() takes seconds (like 60 or 1m)", 0)
        parse_time(params[0], "period", 0)


def _check_trend(params: Sequence[str], has_macro: Callable[[int], bool]) -> None:
    if not has_macro(0):
        parse_trend_period(params[0], 0)


SPECS: dict[str, Spec] = {
    "last": Spec(0, 1, _check_last),
    "min": Spec(1, 1, _check_period()),
    "max": Spec(1, 1, _check_period()),
    "avg": Spec(1, 1, _check_period()),
    "sum": Spec(1, 1, _check_period()),
    "count": Spec(1, 3, _check_count),
    "find": Spec(0, 3, _check_count),
    "nodata": Spec(1, 2, _check_nodata),
    "change": Spec(0, 0, _check_nothing),
    "changecount": Spec(1, 2, _check_changecount),
    "percentile": Spec(2, 2, _check_percentile),
    "first": Spec(1, 1, _check_first),
    "fuzzytime": Spec(1, 1, _check_fuzzytime),
    "trendavg": Spec(1, 1, _check_trend),
    "trendmax": Spec(1, 1, _check_trend),
    "trendmin": Spec(1, 1, _check_trend),
    "trendsum": Spec(1, 1, _check_trend),
    "trendcount": Spec(1, 1, _check_trend),
}
TIME_FUNCTIONS = {"nodata", "fuzzytime", "trendavg", "trendmax", "trendmin", "trendsum", "trendcount"}


def validate(name: str, params: Sequence[str], has_macro: Callable[[int], bool]) -> None:
    """Raise ParamError when the parameters of `name` are wrong (the count is checked by the parser)."""
    SPECS[name].check(params, has_macro)


def is_time_based(name: str, params: Sequence[str]) -> bool:
    """Whether the function's value changes with time alone (it needs evaluation on a timer)."""
    if name in TIME_FUNCTIONS:
        return True
    if name in ("last", "change") and not params:
        return False
    if params and params[0]:
        p = params[0]
        if "{$" in p:
            return True
        return ":" in p or not p.startswith("#")
    return False


def call(name: str, item: ItemInfo, params: Sequence[str], data: DataSource, now: int, where: str,
         checked: bool = False, tz: tzinfo = UTC) -> float | str:
    """The value of function `name` on `item`; `where` names the call in errors (`last(/h/k)`).

    `checked`: the parameters were validated already (by the parser, having no macros)."""
    if item.error is not None and name != "nodata":
        raise EvaluationError(f"{where}: the item is not supported: {item.error}")
    if not checked:
        try:
            SPECS[name].check(params, lambda i: False)
        except ParamError as e:
            raise EvaluationError(f"{where}: {e}") from None
    result = _IMPL[name](_Ctx(item, params, data, now, where, tz))
    return result if isinstance(result, str) else float(result)


@dataclass(slots=True)
class _Ctx:
    item: ItemInfo
    params: Sequence[str]
    data: DataSource
    now: int
    where: str
    tz: tzinfo

    def param(self, i: int) -> str:
        return self.params[i] if i < len(self.params) else ""

    def fail(self, why: str) -> EvaluationError:
        return EvaluationError(f"{self.where}: {why}")

    def numeric(self) -> None:
        if self.item.value_type not in NUMERIC_TYPES:
            raise self.fail(f"the item's type is {TYPE_NAMES.get(self.item.value_type, self.item.value_type)}, "
                            "this function needs a numeric item")

    def history(self, period: str, default_count: int | None = None) -> list[Any]:
        """The values of the period, newest first."""
        if not period:
            if default_count is None:
                raise self.fail("missing period")
            p = Period(None, default_count, None)
        else:
            p = parse_period(period, 0)
        end = apply_shift(self.now, p.shift, self.tz)
        rows = self.data.values(self.item.itemid, self.item.value_type, end, seconds=p.seconds, count=p.count)
        return [self.value(v) for _c, _n, v in rows]

    def value(self, v: Any) -> Any:
        if self.item.value_type == 0:
            return float(v)
        if self.item.value_type == 3:
            return int(v)
        return v.value if hasattr(v, "value") else str(v)

    def result(self, v: Any) -> float | str:
        return float(v) if self.item.value_type in NUMERIC_TYPES else v

    def nonempty(self, values: list[Any]) -> list[Any]:
        if not values:
            raise self.fail(f"no data in period {self.param(0)!r}")
        return values


def _last(c: _Ctx) -> float | str:
    p = parse_period(c.param(0) or "#1", 0)
    assert p.count is not None
    end = apply_shift(c.now, p.shift, c.tz)
    rows = c.data.values(c.item.itemid, c.item.value_type, end, count=p.count)
    if len(rows) < p.count:
        have = "no values" if not rows else f"only {len(rows)} value{'s' if len(rows) > 1 else ''}"
        raise c.fail(f"not enough data: value #{p.count} is asked for, the item has {have}")
    return c.result(c.value(rows[p.count - 1][2]))


def _min(c: _Ctx) -> float:
    c.numeric()
    return min(c.nonempty(c.history(c.param(0))))


def _max(c: _Ctx) -> float:
    c.numeric()
    return max(c.nonempty(c.history(c.param(0))))


def _avg(c: _Ctx) -> float:
    c.numeric()
    values = c.nonempty(c.history(c.param(0)))
    return math.fsum(values) / len(values)


def _sum(c: _Ctx) -> float:
    c.numeric()
    return math.fsum(c.history(c.param(0)))  # no values: 0, as Zabbix


def _matches(c: _Ctx) -> tuple[list[Any], Callable[[Any], bool] | None]:
    op = c.param(1)
    pattern = c.params[2] if len(c.params) > 2 else None
    try:
        match = _matcher(op, pattern, c.item.value_type)
    except EvaluationError as e:
        raise c.fail(str(e)) from None
    return c.history(c.param(0), default_count=1), match


def _count(c: _Ctx) -> float:
    values, match = _matches(c)
    return float(len(values) if match is None else sum(1 for v in values if match(v)))


def _find(c: _Ctx) -> float:
    values, match = _matches(c)
    return 1.0 if (values if match is None else any(match(v) for v in values)) else 0.0


def _nodata(c: _Ctx) -> float:
    seconds = parse_time(c.param(0))
    rows = c.data.values(c.item.itemid, c.item.value_type, c.now, seconds=seconds)
    if rows:
        return 0.0
    since = c.item.data_expected_from
    if since is not None and since + seconds > c.now:
        raise c.fail(f"the item has not had {seconds} seconds to send data since the server started or the item "
                     f"was created (at {since})")
    return 1.0


def _change(c: _Ctx) -> float:
    rows = c.data.values(c.item.itemid, c.item.value_type, c.now, count=2)
    if len(rows) < 2:
        raise c.fail(f"not enough data: change() needs two values, the item has {len(rows)}")
    new, old = c.value(rows[0][2]), c.value(rows[1][2])
    if c.item.value_type in NUMERIC_TYPES:
        return new - old
    return 0.0 if new == old else 1.0


def _changecount(c: _Ctx) -> float:
    mode = c.param(1) or "all"
    values = c.history(c.param(0))
    if len(values) < 2:
        raise c.fail(f"not enough data: changecount() needs two values in period {c.param(0)!r}, "
                     f"found {len(values)}")
    vt = c.item.value_type
    changes = 0
    for new, old in zip(values, values[1:], strict=False):
        if vt not in NUMERIC_TYPES or mode == "all":  # text: every change, whatever the mode (as Zabbix)
            changes += (new != old) if vt in (1, 2, 3, 4) else not equal(new, old)
        elif mode == "inc":
            changes += new > old and (vt == 3 or not equal(new, old))
        else:
            changes += new < old and (vt == 3 or not equal(new, old))
    return float(changes)


def _percentile(c: _Ctx) -> float:
    c.numeric()
    values = sorted(c.nonempty(c.history(c.param(0))))
    pct = float(c.param(1))
    index = 1 if pct == 0 else math.ceil(len(values) * pct / 100)
    return values[index - 1]


def _first(c: _Ctx) -> float | str:
    return c.result(c.nonempty(c.history(c.param(0)))[-1])


def _fuzzytime(c: _Ctx) -> float:
    c.numeric()
    seconds = parse_time(c.param(0))
    rows = c.data.values(c.item.itemid, c.item.value_type, c.now, count=1)
    if not rows:
        raise c.fail("no data: fuzzytime() needs the item's last value")
    ts = float(rows[0][2])
    return 1.0 if c.now - seconds <= ts <= c.now + seconds else 0.0


def _trends(c: _Ctx) -> list[Trend]:
    c.numeric()
    length, shift = parse_trend_period(c.param(0), 0)
    end = apply_shift(c.now, shift, c.tz)
    start = period_start(end, length, c.tz)
    # A trend's clock is the start of its hour: the last hour of the period starts an hour before its end.
    return c.data.trends(c.item.itemid, c.item.value_type, start, end - 3600)


def _trend_nonempty(c: _Ctx, trends: list[Trend]) -> list[Trend]:
    if not trends:
        raise c.fail(f"no trend data in period {c.param(0)!r}")
    return trends


def _trendavg(c: _Ctx) -> float:
    trends = _trend_nonempty(c, _trends(c))
    num = sum(t.num for t in trends)
    return math.fsum(t.avg * t.num for t in trends) / num


def _trendmax(c: _Ctx) -> float:
    return max(t.max for t in _trend_nonempty(c, _trends(c)))


def _trendmin(c: _Ctx) -> float:
    return min(t.min for t in _trend_nonempty(c, _trends(c)))


def _trendsum(c: _Ctx) -> float:
    return math.fsum(t.avg * t.num for t in _trends(c))  # no trends: 0, as Zabbix


def _trendcount(c: _Ctx) -> float:
    return float(sum(t.num for t in _trends(c)))


_IMPL: dict[str, Callable[[_Ctx], float | str]] = {
    "last": _last, "min": _min, "max": _max, "avg": _avg, "sum": _sum, "count": _count, "find": _find,
    "nodata": _nodata, "change": _change, "changecount": _changecount, "percentile": _percentile,
    "first": _first, "fuzzytime": _fuzzytime, "trendavg": _trendavg, "trendmax": _trendmax,
    "trendmin": _trendmin, "trendsum": _trendsum, "trendcount": _trendcount,
}
