"""Prometheus text exposition: parsing, the "Prometheus pattern" and "Prometheus to JSON" steps.

    parse(text) -> list[Sample]                       # ValueError naming the line on bad input
    compile_pattern(text) -> Pattern                  # PatternError naming the position
    pattern_value(text, pattern, request, argument) -> str
    to_json(text, pattern) -> str

A pattern is Zabbix's PromQL-like selector: `name`, `name{label="v"}`, `{__name__=~"node_.*"}`, with
label matchers `=`, `!=`, `=~`, `!~` (regular expressions anchored to the whole value, as in PromQL)
and an optional value filter `== <number>` (also `+Inf`, `-Inf`, `NaN`).

The request says what the step returns: `value` (the one matching sample's value as written),
`label` (the value of label `argument` of the one matching sample), or a function over all matching
samples: `sum`, `min`, `max`, `avg`, `count` (NaN samples are skipped, as in Zabbix 6.0.5+). Zabbix 6.0
stores the function as request `function` with the name as argument; the name alone as request is
accepted too, and so is 5.x's two-parameter form (argument empty = value, else a label name).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache

_METRIC = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?[Ii]nf|NaN|nan|[+-]?Inf")
_TIMESTAMP = re.compile(r"-?[0-9]+")
FUNCTIONS = ("sum", "min", "max", "avg", "count")
_SUFFIXES = ("_bucket", "_sum", "_count", "_total", "_created", "_info")


class PatternError(ValueError):
    def __init__(self, message: str, pos: int) -> None:
        super().__init__(f"{message} at position {pos}")
        self.pos = pos


class PrometheusError(ValueError):
    """Input that does not parse, or a pattern that matches nothing (or too much)."""


@dataclass(frozen=True, slots=True)
class Sample:
    name: str
    labels: tuple[tuple[str, str], ...]
    value_text: str
    value: float
    timestamp: int | None
    line: str
    type: str | None = None
    help: str | None = None

    def label(self, name: str) -> str | None:
        if name == "__name__":
            return self.name
        for k, v in self.labels:
            if k == name:
                return v
        return None


def _parse_float(text: str) -> float:
    t = text.lower().lstrip("+")
    if t in ("inf", "-inf", "nan"):
        return float(t)
    return float(text)


def _quoted(text: str, i: int, where: str) -> tuple[str, int]:
    """A double-quoted label value starting at text[i] == '"' with \\\\, \\" and \\n escapes."""
    if i >= len(text) or text[i] != '"':
        raise ValueError(f"{where}: expected '\"' at column {i + 1}")
    out: list[str] = []
    j = i + 1
    while j < len(text):
        c = text[j]
        if c == "\\" and j + 1 < len(text):
            n = text[j + 1]
            out.append({"n": "\n", "\\": "\\", '"': '"'}.get(n, "\\" + n))
            j += 2
            continue
        if c == '"':
            return "".join(out), j + 1
        out.append(c)
        j += 1
    raise ValueError(f"{where}: unterminated label value starting at column {i + 1}")


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t":
        i += 1
    return i


def _parse_line(line: str, where: str) -> tuple[str, tuple[tuple[str, str], ...], str, int | None]:
    m = _METRIC.match(line)
    if m is None:
        raise ValueError(f"{where}: expected a metric name, found {line[:40]!r}")
    name = m.group()
    i = m.end()
    labels: list[tuple[str, str]] = []
    i = _skip(line, i)
    if i < len(line) and line[i] == "{":
        i = _skip(line, i + 1)
        while i < len(line) and line[i] != "}":
            lm = _LABEL.match(line, i)
            if lm is None:
                raise ValueError(f"{where}: expected a label name at column {i + 1}")
            i = _skip(line, lm.end())
            if i >= len(line) or line[i] != "=":
                raise ValueError(f"{where}: expected '=' after label {lm.group()!r} at column {i + 1}")
            value, i = _quoted(line, _skip(line, i + 1), where)
            labels.append((lm.group(), value))
            i = _skip(line, i)
            if i < len(line) and line[i] == ",":
                i = _skip(line, i + 1)
            elif i < len(line) and line[i] != "}":
                raise ValueError(f"{where}: expected ',' or '}}' at column {i + 1}")
        if i >= len(line):
            raise ValueError(f"{where}: missing '}}'")
        i += 1
    rest = line[i:].split()
    if not rest or len(rest) > 2:
        raise ValueError(f"{where}: expected a value (and an optional timestamp) after {name!r}")
    if not _FLOAT.fullmatch(rest[0]):
        raise ValueError(f"{where}: {rest[0]!r} is not a number")
    ts = None
    if len(rest) == 2:
        if not _TIMESTAMP.fullmatch(rest[1]):
            raise ValueError(f"{where}: {rest[1]!r} is not a timestamp in milliseconds")
        ts = int(rest[1])
    return name, tuple(labels), rest[0], ts


_FAST_LINE = re.compile(
    r"([a-zA-Z_:][a-zA-Z0-9_:]*)"  # the metric name
    r"(?:\{((?:[^\"}]|\"(?:[^\"\\]|\\.)*\")*)\})?"  # labels, with quoted values that may hold } or \"
    r"[ \t]+(\S+)(?:[ \t]+(-?[0-9]+))?"  # the value and an optional timestamp
)
_FAST_LABEL = re.compile(r'[ \t]*([a-zA-Z_][a-zA-Z0-9_]*)[ \t]*=[ \t]*"((?:[^"\\]|\\.)*)"[ \t]*(?:,|$)')
_UNESCAPE = re.compile(r"\\(.)")


def _fast_line(line: str) -> tuple[str, tuple[tuple[str, str], ...], str, int | None] | None:
    """The common well-formed line by regular expressions; None sends it to the careful parser."""
    m = _FAST_LINE.fullmatch(line)
    if m is None or not _FLOAT.fullmatch(m.group(3)):
        return None
    labels: list[tuple[str, str]] = []
    body = m.group(2)
    if body:
        pos = 0
        while pos < len(body):
            lm = _FAST_LABEL.match(body, pos)
            if lm is None:
                if body[pos:].strip():
                    return None
                break
            v = lm.group(2)
            if "\\" in v:
                v = _UNESCAPE.sub(lambda g: {"n": "\n", "\\": "\\", '"': '"'}.get(g.group(1), "\\" + g.group(1)), v)
            labels.append((lm.group(1), v))
            pos = lm.end()
    ts = int(m.group(4)) if m.group(4) is not None else None
    return m.group(1), tuple(labels), m.group(3), ts


def parse(text: str) -> list[Sample]:
    """Every sample of a text exposition, with the HELP and TYPE of its family; comments are skipped.

    The last few texts parsed are remembered (dependent items split one master value many times)."""
    return list(_parse_cached(text))


@lru_cache(maxsize=8)
def _parse_cached(text: str) -> tuple[Sample, ...]:
    helps: dict[str, str] = {}
    types: dict[str, str] = {}
    raw: list[tuple[str, tuple[tuple[str, str], ...], str, int | None, str]] = []
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if not s:
            continue
        if s.startswith("#"):
            parts = s[1:].strip().split(None, 2)
            if len(parts) >= 2 and parts[0] == "HELP":
                helps[parts[1]] = _unescape_help(parts[2] if len(parts) > 2 else "")
            elif len(parts) >= 2 and parts[0] == "TYPE":
                types[parts[1]] = parts[2].strip() if len(parts) > 2 else "untyped"
            continue
        if " # " in s:
            s = s.split(" # ", 1)[0].rstrip()  # an OpenMetrics exemplar is ignored
        fast = _fast_line(s)
        name, labels, value, ts = fast if fast is not None else _parse_line(s, f"line {n}")
        raw.append((name, labels, value, ts, s))
    out: list[Sample] = []
    for name, labels, value, ts, s in raw:
        family = name
        if name not in types and name not in helps:
            for suffix in _SUFFIXES:
                if name.endswith(suffix) and name[: -len(suffix)] in types:
                    family = name[: -len(suffix)]
                    break
        out.append(Sample(name, labels, value, _parse_float(value), ts, s, types.get(family), helps.get(family)))
    return tuple(out)


def _unescape_help(text: str) -> str:
    return text.replace("\\n", "\n").replace("\\\\", "\\")


# --- patterns -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Matcher:
    label: str
    op: str  # = != =~ !~
    value: str
    regex: re.Pattern[str] | None = None

    def matches(self, sample: Sample) -> bool:
        v = sample.label(self.label)
        v = "" if v is None else v  # PromQL: a missing label is the empty string
        if self.op == "=":
            return v == self.value
        if self.op == "!=":
            return v != self.value
        assert self.regex is not None
        hit = self.regex.fullmatch(v) is not None
        return hit if self.op == "=~" else not hit


@dataclass(frozen=True, slots=True)
class Pattern:
    text: str
    matchers: tuple[Matcher, ...]
    value: float | None = None  # `== value`

    def matches(self, sample: Sample) -> bool:
        if self.value is not None:
            if math.isnan(self.value):
                if not math.isnan(sample.value):
                    return False
            elif sample.value != self.value:
                return False
        return all(m.matches(sample) for m in self.matchers)


def compile_pattern(text: str) -> Pattern:
    t = text.strip()
    off = len(text) - len(text.lstrip())
    if not t:
        raise PatternError("the Prometheus pattern is empty: give a metric name or {label=\"value\"}", 0)
    i = 0
    matchers: list[Matcher] = []
    m = _METRIC.match(t)
    if m:
        matchers.append(Matcher("__name__", "=", m.group()))
        i = m.end()
    i = _skip(t, i)
    if i < len(t) and t[i] == "{":
        i = _skip(t, i + 1)
        while i < len(t) and t[i] != "}":
            lm = _LABEL.match(t, i)
            if lm is None:
                raise PatternError("expected a label name", off + i)
            i = _skip(t, lm.end())
            op = next((o for o in ("=~", "!~", "!=", "=") if t.startswith(o, i)), None)
            if op is None:
                raise PatternError(f"expected =, !=, =~ or !~ after label {lm.group()!r}", off + i)
            i = _skip(t, i + len(op))
            try:
                value, i = _quoted(t, i, "pattern")
            except ValueError:
                raise PatternError(f"expected a double-quoted value for label {lm.group()!r}", off + i) from None
            rx = None
            if op in ("=~", "!~"):
                try:
                    rx = re.compile(value)
                except re.error as e:
                    raise PatternError(f"bad regular expression {value!r} for label {lm.group()!r}: {e}",
                                       off + i) from None
            matchers.append(Matcher(lm.group(), op, value, rx))
            i = _skip(t, i)
            if i < len(t) and t[i] == ",":
                i = _skip(t, i + 1)
            elif i < len(t) and t[i] != "}":
                raise PatternError("expected ',' or '}'", off + i)
        if i >= len(t):
            raise PatternError("missing '}'", off + i)
        i = _skip(t, i + 1)
    if not matchers:
        raise PatternError("expected a metric name or '{'", off)
    value = None
    if i < len(t):
        if not t.startswith("==", i):
            raise PatternError(f"unexpected {t[i]!r}, expected '== <value>' or the end", off + i)
        vt = t[i + 2 :].strip()
        if not _FLOAT.fullmatch(vt):
            raise PatternError(f"{vt!r} after '==' is not a number", off + i + 2)
        value = _parse_float(vt)
    return Pattern(text, tuple(matchers), value)


@lru_cache(maxsize=8)
def _by_name(text: str) -> dict[str, tuple[Sample, ...]]:
    index: dict[str, list[Sample]] = {}
    for sample in _parse_cached(text):
        index.setdefault(sample.name, []).append(sample)
    return {k: tuple(v) for k, v in index.items()}


@lru_cache(maxsize=64)
def _by_label(text: str, name: str, label: str) -> dict[str, tuple[Sample, ...]]:
    index: dict[str, list[Sample]] = {}
    for sample in _by_name(text).get(name, ()):
        index.setdefault(sample.label(label) or "", []).append(sample)
    return {k: tuple(v) for k, v in index.items()}


def _select(text: str, pattern: str | Pattern) -> list[Sample]:
    """The matching samples. As in Zabbix, the parsed text is indexed by metric name and by the first
    `label="value"` condition, so the dependent items of one scrape each find their rows quickly."""
    p = compile_pattern(pattern) if isinstance(pattern, str) else pattern
    try:
        name = next((m.value for m in p.matchers if m.label == "__name__" and m.op == "="), None)
        first = next((m for m in p.matchers if m.label != "__name__" and m.op == "="), None)
        samples: tuple[Sample, ...]
        if name is not None and first is not None:
            samples = _by_label(text, name, first.label).get(first.value, ())
        elif name is not None:
            samples = _by_name(text).get(name, ())
        else:
            samples = _parse_cached(text)
    except ValueError as e:
        raise PrometheusError(f"cannot parse the Prometheus data: {e}") from None
    return [s for s in samples if p.matches(s)]


def _number(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if x == int(x) and abs(x) < 2**63:
        return str(int(x))
    return repr(x)


def pattern_value(text: str, pattern: str | Pattern, request: str = "value", argument: str = "") -> str:
    """The Prometheus pattern step; raises PatternError for a bad pattern, PrometheusError for the data."""
    req = request.strip() or "value"
    arg = argument.strip()
    if req == "function":
        req = arg
        if req not in FUNCTIONS:
            raise PrometheusError(f"unknown function {arg!r}, expected one of {', '.join(FUNCTIONS)}")
    if req not in ("value", "label", *FUNCTIONS):
        raise PrometheusError(f"unknown request {request!r}, expected value, label or function")
    if req == "label" and not arg:
        raise PrometheusError("the label request needs a label name")
    rows = _select(text, pattern)
    if not rows:
        raise PrometheusError("no data matches the pattern")
    if req in ("value", "label"):
        if len(rows) > 1:
            raise PrometheusError(f"{len(rows)} metrics match the pattern, only one may when the result is {req}"
                                  "; narrow the labels or use a function (sum, min, max, avg, count)")
        if req == "value":
            return rows[0].value_text
        v = rows[0].label(arg)
        if v is None:
            raise PrometheusError(f"the matching metric has no label {arg!r}")
        return v
    values = [r.value for r in rows if not math.isnan(r.value)]
    if req == "count":
        return str(len(values))
    if not values:
        raise PrometheusError(f"{req}: no data (at least one value that is not NaN is required)")
    if req == "sum":
        return _number(math.fsum(values))
    if req == "avg":
        return _number(math.fsum(values) / len(values))
    return _number(min(values) if req == "min" else max(values))


def to_json(text: str, pattern: str | Pattern = "") -> str:
    """The Prometheus to JSON step: the matching samples (all when the pattern is empty) as a JSON array."""
    if isinstance(pattern, str) and not pattern.strip():
        try:
            rows = parse(text)
        except ValueError as e:
            raise PrometheusError(f"cannot parse the Prometheus data: {e}") from None
    else:
        rows = _select(text, pattern)
    out = []
    for r in rows:
        o: dict[str, object] = {"name": r.name}
        if r.help is not None:
            o["help"] = r.help
        if r.type is not None:
            o["type"] = r.type
        if r.labels:
            o["labels"] = dict(r.labels)
        o["value"] = r.value_text
        o["line_raw"] = r.line
        out.append(o)
    return json.dumps(out, ensure_ascii=False, separators=(",", ":"))
