"""The preprocessing steps and the pipeline that runs them (see the package docstring for the API)."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from vigil.server.config.durations import DurationError
from vigil.server.config.durations import seconds as duration_seconds
from vigil.server.config.tables import ValueType
from vigil.server.ingest.convert import FLOAT_SYNTAX, ConversionError, convert
from vigil.server.preprocessing import jsonpath, prometheus, xmlpath

Value = str | int | float


class StepType(IntEnum):
    MULTIPLIER = 1
    RTRIM = 2
    LTRIM = 3
    TRIM = 4
    REGEX = 5
    BOOL_TO_DECIMAL = 6
    OCTAL_TO_DECIMAL = 7
    HEX_TO_DECIMAL = 8
    DELTA_VALUE = 9  # simple change
    DELTA_SPEED = 10  # change per second
    XPATH = 11
    JSONPATH = 12
    VALIDATE_RANGE = 13
    VALIDATE_REGEX = 14
    VALIDATE_NOT_REGEX = 15
    ERROR_FIELD_JSON = 16
    ERROR_FIELD_XML = 17
    ERROR_FIELD_REGEX = 18
    THROTTLE_VALUE = 19  # discard unchanged
    THROTTLE_TIMED_VALUE = 20  # discard unchanged with heartbeat
    SCRIPT = 21  # JavaScript: not supported
    PROMETHEUS_PATTERN = 22
    PROMETHEUS_TO_JSON = 23
    CSV_TO_JSON = 24
    STR_REPLACE = 25
    VALIDATE_NOT_SUPPORTED = 26
    XML_TO_JSON = 27
    SNMP_WALK_TO_JSON = 29  # Zabbix 6.4's (snmpwalk.py)


class ErrorHandler(IntEnum):
    DEFAULT = 0  # the item becomes not supported with the step's error
    DISCARD = 1  # the value is dropped
    SET_VALUE = 2  # the value becomes error_handler_params; the following steps go on with it
    SET_ERROR = 3  # the item becomes not supported with error_handler_params as the error


STEP_NAMES: dict[int, str] = {
    1: "Custom multiplier",
    2: "Right trim",
    3: "Left trim",
    4: "Trim",
    5: "Regular expression",
    6: "Boolean to decimal",
    7: "Octal to decimal",
    8: "Hexadecimal to decimal",
    9: "Simple change",
    10: "Change per second",
    11: "XML XPath",
    12: "JSONPath",
    13: "In range",
    14: "Matches regular expression",
    15: "Does not match regular expression",
    16: "Check for error in JSON",
    17: "Check for error in XML",
    18: "Check for error using regular expression",
    19: "Discard unchanged",
    20: "Discard unchanged with heartbeat",
    21: "JavaScript",
    22: "Prometheus pattern",
    23: "Prometheus to JSON",
    24: "CSV to JSON",
    25: "Replace",
    26: "Check for not supported value",
    27: "XML to JSON",
    29: "SNMP walk to JSON",
}

_NUMERIC = {StepType.MULTIPLIER, StepType.DELTA_VALUE, StepType.DELTA_SPEED, StepType.VALIDATE_RANGE}
_STATEFUL = {StepType.DELTA_VALUE, StepType.DELTA_SPEED, StepType.THROTTLE_VALUE, StepType.THROTTLE_TIMED_VALUE}
_BOOL_TRUE = {"true", "t", "yes", "y", "on", "up", "running", "enabled", "available", "ok", "master"}
_BOOL_FALSE = {"false", "f", "no", "n", "off", "down", "unused", "disabled", "unavailable", "err", "slave"}
_UINT = re.compile(r"[0-9]+")
_OCT = re.compile(r"[0-7]+")
_HEX = re.compile(r"[0-9a-fA-F]+")
_HEX_BYTES = re.compile(r"[0-9a-fA-F]{2}(?:[ \n]+[0-9a-fA-F]{2})*")
UINT_MAX = 2**64 - 1


class StepError(ValueError):
    """A step's parameters are wrong (found when validating a step, or when it runs)."""


class _Failed(Exception):
    """The step failed on this value; custom on fail decides what happens."""


# --- the public data ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Step:
    type: int
    params: str = ""
    error_handler: int = 0
    error_handler_params: str = ""

    @property
    def name(self) -> str:
        return STEP_NAMES.get(self.type, f"type {self.type}")

    def validate(self) -> None:
        """Check the step's type, parameters and error handler; raises StepError with what to fix."""
        if self.type not in STEP_NAMES:
            raise StepError(f"unknown preprocessing step type {self.type}, expected 1..27 or 29")
        if self.type == StepType.SCRIPT:
            raise StepError("JavaScript preprocessing is not supported by Vigil; use JSONPath, regular expressions "
                            "or Prometheus steps instead")
        if self.error_handler not in (0, 1, 2, 3):
            raise StepError(f"error_handler must be 0 (default), 1 (discard), 2 (set value) or 3 (set error), "
                            f"got {self.error_handler}")
        if self.error_handler == ErrorHandler.SET_ERROR and not self.error_handler_params:
            raise StepError("error_handler 3 (set error) needs the error message in error_handler_params")
        _compiled(self)


@dataclass(frozen=True, slots=True)
class Previous:
    """What a stateful step saw last: its input value and the clock it came with."""

    value: Value
    clock: float


@dataclass(frozen=True, slots=True)
class ItemState:
    """Per item, kept by the caller between values; `run` returns the next one (never mutates this).

    `previous` is keyed by the 0-based index of the stateful step. `steps` remembers the pipeline it
    belongs to: when the item's steps change the history is dropped, as Zabbix does.
    """

    previous: Mapping[int, Previous] = field(default_factory=dict)
    steps: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Result:
    """A value, a discard, or an error (the item becomes not supported with that message)."""

    value: Value | None = None
    error: str | None = None
    discarded: bool = False
    state: ItemState = field(default_factory=ItemState)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.discarded


# --- value helpers ------------------------------------------------------------------------------------


def text_of(value: Value) -> str:
    """A value as the text Zabbix would pass on: integers as digits, floats in the shortest exact form."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return repr(value)
        s = f"{value:.15g}"
        if float(s) != value:
            s = repr(value)
        return s
    return value


def _excerpt(value: Value) -> str:
    t = text_of(value)
    return t if len(t) <= 64 else t[:61] + "..."


def _num_text(text: str) -> int | float | None:
    """Zabbix's reading of a number in text: trailing CR/LF, then spaces and double quotes at both ends
    and a leading "+" go; an unsigned integer if it is one, else a float, else None."""
    s = text.rstrip("\r\n").strip(' "')
    if s.startswith("+"):
        s = s[1:]
    if _UINT.fullmatch(s):
        return int(s)
    if FLOAT_SYNTAX.fullmatch(s):
        return float(s)
    return None


def to_number(value: Value) -> int | float:
    """Zabbix's numeric conversion: an unsigned integer if the text is one, else a float; raises _Failed."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return value
    n = _num_text(value)
    if n is None:
        raise _Failed(f'cannot convert value "{_excerpt(value)}" to a number')
    return n


def _same(a: Value, b: Value) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return text_of(a) == text_of(b)


def _param_number(text: str, what: str) -> int | float:
    n = _num_text(text.strip())
    if n is None:
        raise StepError(f'{what} "{text}" is not a number')
    return n


def _lines(params: str, n: int) -> list[str]:
    parts = params.split("\n")
    return (parts + [""] * n)[:n] if len(parts) < n else parts[: n - 1] + ["\n".join(parts[n - 1 :])]


@lru_cache(maxsize=2048)
def _regex(pattern: str) -> re.Pattern[str]:
    if not pattern:
        raise StepError("the regular expression is empty")
    try:
        return re.compile(pattern)
    except re.error as e:
        raise StepError(f'invalid regular expression "{pattern}": {e}') from None


def _substitute(m: re.Match[str], template: str) -> str:
    """Zabbix's output template: \\0 is the whole match, \\1..\\9 the groups (empty if unmatched)."""

    def group(g: re.Match[str]) -> str:
        n = int(g.group(1))
        if n > (m.re.groups or 0):
            return ""
        return m.group(n) or ""

    return re.sub(r"\\([0-9])", group, template)


def _unescape_replace(text: str) -> str:
    return re.sub(r"\\([\\nrts])", lambda g: {"\\": "\\", "n": "\n", "r": "\r", "t": "\t", "s": " "}[g.group(1)],
                  text)


# --- compiling parameters -----------------------------------------------------------------------------

Fn = Callable[[Value, float, Previous | None], tuple[Value | None, Previous | None]]
# A compiled step: (input value, clock, what the step saw last) -> (output or None to discard, new history).


@lru_cache(maxsize=4096)
def _compiled(step: Step) -> Fn:
    t = step.type
    p = step.params
    if t == StepType.MULTIPLIER:
        factor = _param_number(p, "multiplier")
        return lambda v, c, h: (_multiply(v, factor), h)
    if t in (StepType.RTRIM, StepType.LTRIM, StepType.TRIM):
        if not p:
            raise StepError("the characters to trim are missing")
        strip = {StepType.RTRIM: str.rstrip, StepType.LTRIM: str.lstrip, StepType.TRIM: str.strip}[StepType(t)]
        return lambda v, c, h: (strip(text_of(v), p), h)
    if t == StepType.REGEX or t == StepType.ERROR_FIELD_REGEX:
        pattern, output = _lines(p, 2)
        rx = _regex(pattern)
        if t == StepType.REGEX:
            return lambda v, c, h: (_regex_sub(rx, v, output), h)
        return lambda v, c, h: (_error_regex(rx, v, output), h)
    if t == StepType.BOOL_TO_DECIMAL:
        return lambda v, c, h: (_bool(v), h)
    if t == StepType.OCTAL_TO_DECIMAL:
        return lambda v, c, h: (_octal(v), h)
    if t == StepType.HEX_TO_DECIMAL:
        return lambda v, c, h: (_hex(v), h)
    if t == StepType.DELTA_VALUE:
        return lambda v, c, h: _delta(v, c, h, per_second=False)
    if t == StepType.DELTA_SPEED:
        return lambda v, c, h: _delta(v, c, h, per_second=True)
    if t == StepType.XPATH or t == StepType.ERROR_FIELD_XML:
        if not p.strip():
            raise StepError("the XPath expression is empty")
        if t == StepType.XPATH:
            return lambda v, c, h: (_xpath(p, v), h)
        return lambda v, c, h: (_error_xml(p, v), h)
    if t == StepType.JSONPATH or t == StepType.ERROR_FIELD_JSON:
        try:
            path = jsonpath.compile_path(p)
        except jsonpath.JSONPathError as e:
            raise StepError(str(e)) from None
        if t == StepType.JSONPATH:
            return lambda v, c, h: (_jsonpath(path, v), h)
        return lambda v, c, h: (_error_json(path, v), h)
    if t == StepType.VALIDATE_RANGE:
        lo_t, hi_t = _lines(p, 2)
        lo = _param_number(lo_t, "the minimum") if lo_t.strip() else None
        hi = _param_number(hi_t, "the maximum") if hi_t.strip() else None
        if lo is None and hi is None:
            raise StepError("in range needs a minimum, a maximum or both")
        if lo is not None and hi is not None and lo > hi:
            raise StepError(f"the minimum {lo_t} is greater than the maximum {hi_t}")
        return lambda v, c, h: (_in_range(v, lo, hi, lo_t.strip(), hi_t.strip()), h)
    if t in (StepType.VALIDATE_REGEX, StepType.VALIDATE_NOT_REGEX):
        rx = _regex(p)
        want = t == StepType.VALIDATE_REGEX
        return lambda v, c, h: (_match(rx, v, want), h)
    if t == StepType.THROTTLE_VALUE:
        return _throttle
    if t == StepType.THROTTLE_TIMED_VALUE:
        try:
            period = duration_seconds(p.strip(), "heartbeat")
        except DurationError as e:
            raise StepError(str(e)) from None
        if period <= 0:
            raise StepError("the heartbeat must be at least 1 second")
        return lambda v, c, h: _throttle_timed(v, c, h, period)
    if t == StepType.SCRIPT:
        raise StepError("JavaScript preprocessing is not supported by Vigil; use JSONPath, regular expressions "
                        "or Prometheus steps instead")
    if t == StepType.PROMETHEUS_PATTERN:
        parts = p.split("\n")
        pattern_text = parts[0]
        request = parts[1] if len(parts) > 1 else ""
        argument = "\n".join(parts[2:]) if len(parts) > 2 else ""
        if len(parts) == 2:  # Zabbix 5.x: pattern and an output (empty = value, else a label name)
            request, argument = ("value", "") if not parts[1].strip() else ("label", parts[1])
            if parts[1].strip() in prometheus.FUNCTIONS or parts[1].strip() == "value":
                request, argument = parts[1].strip(), ""
        try:
            pat = prometheus.compile_pattern(pattern_text)
        except prometheus.PatternError as e:
            raise StepError(f"invalid Prometheus pattern {pattern_text!r}: {e}") from None
        req = request.strip() or "value"
        if req == "function" and argument.strip() not in prometheus.FUNCTIONS:
            raise StepError(f"unknown function {argument.strip()!r}, expected one of {', '.join(prometheus.FUNCTIONS)}")
        if req not in ("value", "label", "function", *prometheus.FUNCTIONS):
            raise StepError(f"unknown result {request!r}, expected value, label or function (sum, min, max, avg, "
                            "count)")
        if req == "label" and not argument.strip():
            raise StepError("the label result needs a label name")
        return lambda v, c, h: (_prom(pat, v, req, argument), h)
    if t == StepType.SNMP_WALK_TO_JSON:
        from vigil.server.preprocessing import snmpwalk

        try:
            snmpwalk.parse_params(p)
        except snmpwalk.WalkError as e:
            raise StepError(str(e)) from None

        def walk_json(v: Value, c: float, h: Previous | None) -> tuple[Value | None, Previous | None]:
            try:
                return snmpwalk.walk_to_json(text_of(v), p), h
            except snmpwalk.WalkError as e:
                raise _Failed(str(e)) from None

        return walk_json
    if t == StepType.PROMETHEUS_TO_JSON:
        pat2: prometheus.Pattern | str = ""
        if p.strip():
            try:
                pat2 = prometheus.compile_pattern(p)
            except prometheus.PatternError as e:
                raise StepError(f"invalid Prometheus pattern {p!r}: {e}") from None
        return lambda v, c, h: (_prom_json(pat2, v), h)
    if t == StepType.CSV_TO_JSON:
        delim, quote, header = _lines(p, 3)
        if len(delim) > 1:
            raise StepError(f"the CSV delimiter must be one character, got {delim!r}")
        if len(quote) > 1:
            raise StepError(f"the CSV quotation character must be one character or empty, got {quote!r}")
        if delim and delim == quote:
            raise StepError("the CSV delimiter and quotation character must differ")
        if header.strip() not in ("", "0", "1"):
            raise StepError(f"the CSV header flag must be 0 or 1, got {header!r}")
        with_header = header.strip() == "1"
        return lambda v, c, h: (_csv(text_of(v), delim, quote, with_header), h)
    if t == StepType.STR_REPLACE:
        search, repl = _lines(p, 2)
        if not search:
            raise StepError("replace needs a search string")
        s, r = _unescape_replace(search), _unescape_replace(repl)
        return lambda v, c, h: (text_of(v).replace(s, r), h)
    if t == StepType.VALIDATE_NOT_SUPPORTED:
        return lambda v, c, h: (v, h)
    if t == StepType.XML_TO_JSON:
        return lambda v, c, h: (_xml_json(v), h)
    raise StepError(f"unknown preprocessing step type {t}, expected 1..27")


# --- the steps ----------------------------------------------------------------------------------------


def _multiply(v: Value, factor: int | float) -> Value:
    try:
        n = to_number(v)
    except _Failed:
        raise _Failed(f'cannot apply multiplier "{text_of(factor)}" to value "{_excerpt(v)}": '
                      "it is not a number") from None
    if isinstance(n, int) and isinstance(factor, int):
        return n * factor
    return float(n) * float(factor)


def _regex_sub(rx: re.Pattern[str], v: Value, output: str) -> str:
    m = rx.search(text_of(v))
    if m is None:
        raise _Failed(f'pattern "{rx.pattern}" does not match value "{_excerpt(v)}"')
    return _substitute(m, output)


def _error_regex(rx: re.Pattern[str], v: Value, output: str) -> Value:
    m = rx.search(text_of(v))
    if m is None:
        return v
    found = _substitute(m, output).strip()
    if not found:  # as in Zabbix, an empty error is no error
        return v
    raise _Failed(found)


def _trim_number(v: Value) -> str:
    return text_of(v).lstrip(' "').rstrip(' "\n\r')


def _bool(v: Value) -> int:
    s = _trim_number(v)
    n = _num_text(s) if s else None
    if n is None and s and FLOAT_SYNTAX.fullmatch(s):
        n = float(s)
    if n is not None:
        return 0 if n == 0 else 1
    low = s.lower()
    if low in _BOOL_TRUE:
        return 1
    if low in _BOOL_FALSE:
        return 0
    raise _Failed(f'cannot convert value "{_excerpt(v)}" from boolean format: expected a number, true/false, '
                  "yes/no, on/off, up/down, enabled/disabled, ok/err and the like")


def _checked_uint(n: int, v: Value) -> int:
    if n > UINT_MAX:
        raise _Failed(f'value "{_excerpt(v)}" is too large for an unsigned 64-bit integer')
    return n


def _octal(v: Value) -> int:
    s = _trim_number(v)
    if not _OCT.fullmatch(s):
        raise _Failed(f'cannot convert value "{_excerpt(v)}" from octal: expected digits 0-7')
    return _checked_uint(int(s, 8), v)


def _hex(v: Value) -> int:
    s = _trim_number(v)
    if _HEX.fullmatch(s):
        return _checked_uint(int(s, 16), v)
    if _HEX_BYTES.fullmatch(s):
        return _checked_uint(int(re.sub(r"[ \n]", "", s), 16), v)
    raise _Failed(f'cannot convert value "{_excerpt(v)}" from hexadecimal: expected hexadecimal digits '
                  "(optionally as bytes separated by spaces)")


def _delta(v: Value, clock: float, h: Previous | None, per_second: bool) -> tuple[Value | None, Previous | None]:
    """Simple change / change per second. As Zabbix: the first value only primes the history, and a value
    smaller than the previous one (a counter that wrapped or was reset) is discarded, as is one whose
    clock is not after the previous one's; the history always moves on to the new value."""
    n = to_number(v)
    new = Previous(n, clock)
    if h is None:
        return None, new
    prev = to_number(h.value)
    if n < prev:
        return None, new
    if per_second:
        dt = clock - h.clock
        if dt <= 0:
            return None, new
        return (float(n) - float(prev)) / dt, new
    if isinstance(n, int) and isinstance(prev, int):
        return n - prev, new
    return float(n) - float(prev), new


def _xpath(expr: str, v: Value) -> str:
    try:
        return xmlpath.xpath(expr, text_of(v))
    except xmlpath.XPathError as e:
        raise StepError(str(e)) from None
    except xmlpath.XMLError as e:
        raise _Failed(str(e)) from None


def _error_xml(expr: str, v: Value) -> Value:
    """Check for error in XML: a value that is not XML, or where the XPath finds nothing or only
    whitespace, passes unchanged (as in Zabbix); otherwise what it found is the error."""
    try:
        found = xmlpath.xpath(expr, text_of(v)).strip()
    except xmlpath.XPathError as e:
        raise StepError(str(e)) from None
    except xmlpath.XMLError:
        return v
    if found:
        raise _Failed(found)
    return v


def _load_json(v: Value) -> Any:
    try:
        return jsonpath.loads(text_of(v))
    except RecursionError:
        raise _Failed("cannot parse the value as JSON: it is nested too deeply") from None
    except ValueError as e:
        raise _Failed(f"cannot parse the value as JSON: {e}") from None


def _jsonpath(path: jsonpath.Path, v: Value) -> str:
    doc = _load_json(v)
    try:
        return path.apply(doc)
    except jsonpath.NoMatch as e:
        raise _Failed(str(e)) from None


def _error_json(path: jsonpath.Path, v: Value) -> Value:
    """Check for error in JSON: a value that is not JSON, or where the path finds nothing (or an empty
    string or null), passes unchanged; otherwise what the path found is the error."""
    try:
        doc = jsonpath.loads(text_of(v))
    except (ValueError, RecursionError):
        return v
    try:
        found = path.apply(doc)
    except jsonpath.NoMatch:
        return v
    found = found.strip()
    if found in ("", "null"):
        return v
    raise _Failed(found)


def _in_range(v: Value, lo: int | float | None, hi: int | float | None, lo_t: str, hi_t: str) -> Value:
    n = to_number(v)
    if (lo is not None and n < lo) or (hi is not None and n > hi):
        bounds = f"between {lo_t} and {hi_t}" if lo is not None and hi is not None else (
            f"at least {lo_t}" if lo is not None else f"at most {hi_t}")
        raise _Failed(f'value "{_excerpt(v)}" is out of range: it must be {bounds}')
    return v


def _match(rx: re.Pattern[str], v: Value, want: bool) -> Value:
    hit = rx.search(text_of(v)) is not None
    if hit != want:
        verb = "does not match" if want else "matches"
        raise _Failed(f'value "{_excerpt(v)}" {verb} regular expression "{rx.pattern}"')
    return v


def _throttle(v: Value, clock: float, h: Previous | None) -> tuple[Value | None, Previous | None]:
    if h is not None and _same(v, h.value):
        return None, h
    return v, Previous(v, clock)


def _throttle_timed(v: Value, clock: float, h: Previous | None, period: int) -> tuple[Value | None, Previous | None]:
    if h is not None and _same(v, h.value) and clock - h.clock < period:
        return None, h
    return v, Previous(v, clock)


def _prom(pat: prometheus.Pattern, v: Value, request: str, argument: str) -> str:
    try:
        return prometheus.pattern_value(text_of(v), pat, request, argument)
    except prometheus.PrometheusError as e:
        raise _Failed(str(e)) from None


def _prom_json(pat: prometheus.Pattern | str, v: Value) -> str:
    try:
        return prometheus.to_json(text_of(v), pat)
    except prometheus.PrometheusError as e:
        raise _Failed(str(e)) from None


def _csv(text: str, delim: str, quote: str, with_header: bool) -> str:
    lines = text.splitlines(keepends=True)
    if lines and lines[0].lower().startswith("sep=") and len(lines[0].rstrip("\r\n")) == 5:
        # A "sep=;" first line is never data; it names the delimiter unless the step gives one.
        delim = delim or lines[0][4]
        lines = lines[1:]
    delim = delim or ","
    reader = csv.reader(io.StringIO("".join(lines)), delimiter=delim, quotechar=quote or None,
                        quoting=csv.QUOTE_MINIMAL if quote else csv.QUOTE_NONE, strict=True)
    rows: list[list[str]] = []
    try:
        for row in reader:
            if row:
                rows.append(row)
    except csv.Error as e:
        raise _Failed(f"cannot convert CSV to JSON: line {reader.line_num}: {e}") from None
    out: list[dict[str, str]] = []
    if with_header:
        if not rows:
            return "[]"
        names = rows[0]
        seen: set[str] = set()
        for name in names:
            if name in seen:
                raise _Failed(f'cannot convert CSV to JSON: the header has column "{name}" twice')
            seen.add(name)
        for n, row in enumerate(rows[1:], 2):
            if len(row) > len(names):
                raise _Failed(f"cannot convert CSV to JSON: data row {n} has {len(row)} columns, "
                              f"more than the {len(names)} of the header")
            out.append({name: (row[i] if i < len(row) else "") for i, name in enumerate(names)})
    else:
        for row in rows:
            out.append({str(i + 1): x for i, x in enumerate(row)})
    return json.dumps(out, ensure_ascii=False, separators=(",", ":"))


def _xml_json(v: Value) -> str:
    try:
        return xmlpath.xml_to_json(text_of(v))
    except xmlpath.XMLError as e:
        raise _Failed(str(e)) from None


# --- the pipeline -------------------------------------------------------------------------------------


def _hinted(v: Value, hint: int) -> Value:
    """Zabbix's numeric type hint: for a float item numbers become floats, for an unsigned item floats in
    range lose their fraction. Text that is not a number stays as it is (the step then fails on it)."""
    n: int | float | None
    if isinstance(v, bool) or not isinstance(v, int | float):
        n = _num_text(v) if isinstance(v, str) else None
        if n is None:
            return v
    else:
        n = v
    if hint == ValueType.FLOAT:
        return float(n)
    if isinstance(n, float) and math.isfinite(n) and 0 <= n <= UINT_MAX:
        return int(n)
    return n


def _final(value: Value, value_type: int) -> Value:
    vt = ValueType(value_type)
    if vt == ValueType.UNSIGNED and isinstance(value, float):
        # Zabbix keeps the integer part of a float that a multiplier or a change step made for an
        # unsigned item.
        if math.isfinite(value) and 0 <= value < 2**64:
            return int(value)
    if vt == ValueType.UNSIGNED and isinstance(value, int) and 0 <= value <= UINT_MAX:
        return value
    if vt == ValueType.FLOAT and isinstance(value, int | float) and not isinstance(value, bool):
        f = float(value)
        if math.isfinite(f) and abs(f) <= 1e308:
            return f
    return convert(vt, text_of(value))


def run(
    steps: Sequence[Step],
    value: Value | None,
    clock: float,
    state: ItemState | None = None,
    *,
    error: str | None = None,
    value_type: int | None = None,
) -> Result:
    """Run an item's steps over one value (see the package docstring)."""
    key = tuple((s.type, s.params) for s in steps)
    prev = state.previous if state is not None and state.steps == key else {}
    history: dict[int, Previous] = dict(prev)

    def done(**kw: Any) -> Result:
        return Result(state=ItemState(MappingProxyType(dict(history)), key), **kw)

    hint = value_type if value_type in (ValueType.FLOAT, ValueType.UNSIGNED) else None
    start = 0
    if error is not None:
        # The item could not be read. Only "check for not supported value" acts on that; without one
        # the error stands and no step runs.
        idx = next((i for i, s in enumerate(steps) if s.type == StepType.VALIDATE_NOT_SUPPORTED), None)
        if idx is None:
            return done(error=error)
        s = steps[idx]
        if s.error_handler == ErrorHandler.DISCARD:
            return done(discarded=True)
        if s.error_handler == ErrorHandler.SET_VALUE:
            value = s.error_handler_params
            start = idx + 1
        elif s.error_handler == ErrorHandler.SET_ERROR:
            return done(error=s.error_handler_params)
        else:
            return done(error=error)
    if value is None:
        return done(error="no value to preprocess")

    current: Value = value
    for i in range(start, len(steps)):
        s = steps[i]
        where = f"step {i + 1} ({s.name})"
        if s.type == StepType.SCRIPT:
            return done(error=f"{where}: JavaScript preprocessing is not supported by Vigil; use JSONPath, "
                        "regular expressions or Prometheus steps instead")
        try:
            if not isinstance(s.params, str) or not isinstance(s.error_handler_params, str):
                raise StepError("the parameters must be text")
            fn = _compiled(s)
            if hint is not None and s.type in _NUMERIC:
                inp = _hinted(current, hint)
                out, h = fn(inp, clock, history.get(i))
                if s.type == StepType.VALIDATE_RANGE:
                    out = current  # the range step only looks
                elif out is not None:
                    out = _hinted(out, hint)
            else:
                out, h = fn(current, clock, history.get(i))
        except (StepError, _Failed, RecursionError) as e:  # RecursionError: absurdly nested input
            # As in Zabbix, custom on fail also covers parameters that do not compile at run time.
            if s.error_handler in (ErrorHandler.DEFAULT, ErrorHandler.SET_ERROR):
                history.pop(i, None)  # Zabbix forgets the failing step's history: it starts afresh
            if s.error_handler == ErrorHandler.DISCARD:
                return done(discarded=True)
            if s.error_handler == ErrorHandler.SET_VALUE:
                current = s.error_handler_params
                continue
            if s.error_handler == ErrorHandler.SET_ERROR and s.error_handler_params:
                return done(error=s.error_handler_params)
            return done(error=f"{where}: {e}")
        if s.type in _STATEFUL and h is not None:
            history[i] = h
        if out is None:
            return done(discarded=True)
        current = out

    if value_type is not None:
        try:
            current = _final(current, value_type)
        except ConversionError as e:
            return done(error=str(e))
    return done(value=current)


def validate(steps: Sequence[Step]) -> None:
    """Check a whole pipeline at configuration time; raises StepError naming the step."""
    for i, s in enumerate(steps):
        try:
            s.validate()
        except StepError as e:
            raise StepError(f"step {i + 1} ({s.name}): {e}") from None
        if s.type == StepType.VALIDATE_NOT_SUPPORTED and i != 0:
            raise StepError(f"step {i + 1} ({s.name}): it must be the first step")
        if s.type == StepType.VALIDATE_NOT_SUPPORTED and any(
            t.type == StepType.VALIDATE_NOT_SUPPORTED for t in steps[i + 1 :]
        ):
            raise StepError(f"step {i + 1} ({s.name}): only one such step is allowed")


def step_from_mapping(m: Mapping[str, Any]) -> Step:
    """A Step from a config mapping {type, params, error_handler, error_handler_params}; params may be a
    list of lines (joined with newlines) as in Zabbix's export format."""
    params = m.get("params", m.get("parameters", ""))
    if isinstance(params, list | tuple):
        params = "\n".join(str(x) for x in params)
    return Step(int(m["type"]), str(params), int(m.get("error_handler", 0)), str(m.get("error_handler_params", "")))
