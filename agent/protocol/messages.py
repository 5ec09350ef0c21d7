"""The JSON messages of the Zabbix 6 protocol as plain dataclasses.

`parse_request` turns a frame body into one of the request types and fails with a ProtocolError
naming the bad field; every type has `to_json()` giving the compact JSON Zabbix itself writes, with
fields in Zabbix's order, so a captured message decodes and re-encodes byte-for-byte.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

try:  # the server has it; the agent needs only the standard library (and psutil)
    import orjson
except ImportError:  # pragma: no cover - exercised by an agent installed without the server's extra
    orjson = None  # type: ignore[assignment]

SENDER_DATA = "sender data"
AGENT_DATA = "agent data"
ACTIVE_CHECKS = "active checks"
NOT_SUPPORTED = "ZBX_NOTSUPPORTED"

MAX_JSON_DEPTH = 64
CLOCK_MAX = 2**31 - 1  # Zabbix reads clock as a 31-bit unsigned number
NS_MAX = 999_999_999
ID_MAX = 2**63 - 1  # ids are kept in a signed 64-bit column


class ProtocolError(ValueError):
    """A message that is valid JSON but not a valid request; names the offending field."""


def dumps(obj: Any) -> bytes:
    if orjson is None:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    try:
        return orjson.dumps(obj)  # the same compact UTF-8 JSON, 10x faster on a 10,000-record batch
    except (TypeError, orjson.JSONEncodeError):  # ints beyond 64 bits, non-str keys, lone surrogates
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"')
_LONG_NUMBER = re.compile(rb"[0-9]{20}")  # orjson reads integers beyond 64 bits as floats; json keeps them exact
_BRACKETS = re.compile(rb"[\[\]{}]")


def _depth_ok(body: bytes, limit: int) -> bool:
    """False when brackets nest deeper than `limit`: checked before parsing so that the parser's
    own recursion limit is never what says no."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return True
    depth = 0
    for m in _BRACKETS.finditer(_STRINGS.sub(b'""', body)):
        if m.group() in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return False
        else:
            depth -= 1
    return True


_CONTAINERS = (dict, list)


def _children(level: list[Any]) -> Iterable[Any]:
    """The values held by a level's dicts and lists (C-level iteration when they are all dicts or all lists)."""
    kinds = set(map(type, level))
    if kinds == {dict}:
        return chain.from_iterable(map(dict.values, level))
    if kinds == {list}:
        return chain.from_iterable(level)
    return (v for c in level for v in (c.values() if type(c) is dict else c))


def _depth(obj: dict[str, Any], limit: int) -> tuple[bool, bool]:
    """(False when a parsed object nests deeper than `limit`, as `_depth_ok` counts; whether it
    holds a float), walked level by level.

    Without a Python loop over a level that holds no containers or only containers: a 10,000-record
    batch (a list of flat dicts) is checked by map/chain/set alone."""
    level: list[Any] = [obj]
    depth = 1
    floats = False
    while level:
        if depth > limit:
            return False, floats
        found = set(map(type, _children(level)))
        floats = floats or float in found
        if dict not in found and list not in found:
            return True, floats
        level = (list(_children(level)) if found <= set(_CONTAINERS)
                 else [v for v in _children(level) if type(v) in _CONTAINERS])
        depth += 1
    return True, floats


def loads(body: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse a JSON body; ProtocolError with Zabbix's wording when it is not a JSON object."""
    if orjson is not None:
        try:
            obj = orjson.loads(body)  # fast; what it refuses and json accepts (NaN) goes the slow way
        except orjson.JSONDecodeError:
            pass
        else:
            if type(obj) is dict:
                ok, floats = _depth(obj, max_depth)
                # A number orjson read as a float may have been a 20-digit integer: the slow way then.
                if ok and (not floats or _LONG_NUMBER.search(body) is None):
                    return obj
    if not _depth_ok(body, max_depth):
        raise ProtocolError(f"cannot parse as a valid JSON object: nesting deeper than {max_depth} levels")
    try:
        obj = json.loads(body)
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolError(f"cannot parse as a valid JSON object: {e}") from None
    if not isinstance(obj, dict):
        raise ProtocolError("cannot parse as a valid JSON object: the body is not an object")
    return obj


def _str(d: dict[str, Any], name: str, where: str, *, required: bool = True) -> str | None:
    v = d.get(name)
    if v is None:
        if required:
            raise ProtocolError(f"{where}: missing field {name!r}")
        return None
    if not isinstance(v, str):
        raise ProtocolError(f"{where}: field {name!r} must be a string, got {type(v).__name__}")
    return v


def read_uint(v: Any, name: str, hi: int = 2**64 - 1) -> int:
    """An integer field (clock, ns, id, ...) as Zabbix reads it: a JSON integer, or a JSON string of
    ASCII digits only (leading zeros allowed; no sign, spaces, fraction or exponent), from 0 to `hi`.
    The codec and the server's ingest both read fields through this one function."""
    if type(v) is str and v.isascii() and v.isdigit():
        digits = v.lstrip("0")
        n = int(digits or "0") if len(digits) <= 20 else hi + 1
    elif type(v) is int:
        n = v
    else:
        raise ProtocolError(f"field {name!r} must be an integer from 0 to {hi}, got {_shown(v)}")
    if not 0 <= n <= hi:
        raise ProtocolError(f"field {name!r} must be an integer from 0 to {hi}, got {_shown(v)}")
    return n


def _shown(v: Any) -> str:
    try:
        text = json.dumps(v, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(v)
    return text if len(text) <= 64 else text[:61] + "..."


def _int(d: dict[str, Any], name: str, where: str, *, hi: int = 2**63 - 1) -> int | None:
    v = d.get(name)
    if v is None:
        return None
    try:
        return read_uint(v, name, hi)
    except ProtocolError as e:
        raise ProtocolError(f"{where}: {e}") from None


def _value(d: dict[str, Any], where: str) -> str:
    v = d.get("value")
    if isinstance(v, str):
        return v
    if isinstance(v, bool) or v is None or isinstance(v, dict | list):
        raise ProtocolError(f"{where}: field 'value' must be a string or a number, got {json.dumps(v)}")
    return str(v)


# --- sender data --------------------------------------------------------------------------------


@dataclass(slots=True)
class SenderValue:
    host: str
    key: str
    value: str
    clock: int | None = None
    ns: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"host": self.host, "key": self.key, "value": self.value}
        if self.clock is not None:
            d["clock"] = self.clock
            if self.ns is not None:
                d["ns"] = self.ns
        return d


@dataclass(slots=True)
class SenderData:
    data: list[SenderValue]
    clock: int | None = None
    ns: int | None = None
    request: str = SENDER_DATA

    def to_json(self) -> bytes:
        d: dict[str, Any] = {"request": self.request, "data": [v.to_dict() for v in self.data]}
        if self.clock is not None:
            d["clock"] = self.clock
            d["ns"] = self.ns or 0
        return dumps(d)


# --- agent data ---------------------------------------------------------------------------------


@dataclass(slots=True)
class AgentValue:
    host: str
    key: str
    value: str | None
    id: int
    clock: int
    ns: int
    lastlogsize: int | None = None
    mtime: int | None = None
    state: int | None = None  # 1: not supported, `value` then holds the reason
    timestamp: int | None = None  # log items: time parsed from the line
    source: str | None = None  # eventlog fields, kept for symmetry with Zabbix
    severity: int | None = None
    eventid: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"host": self.host, "key": self.key}
        if self.value is not None:
            d["value"] = self.value
        if self.state is not None:
            d["state"] = self.state
        if self.lastlogsize is not None:
            d["lastlogsize"] = self.lastlogsize
        if self.mtime is not None:
            d["mtime"] = self.mtime
        for name in ("timestamp", "source", "severity", "eventid"):
            v = getattr(self, name)
            if v is not None:
                d[name] = v
        d["id"] = self.id
        d["clock"] = self.clock
        d["ns"] = self.ns
        return d


@dataclass(slots=True)
class AgentData:
    session: str
    data: list[AgentValue]
    clock: int
    ns: int
    request: str = AGENT_DATA

    def to_json(self) -> bytes:
        return dumps(
            {
                "request": self.request,
                "session": self.session,
                "data": [v.to_dict() for v in self.data],
                "clock": self.clock,
                "ns": self.ns,
            }
        )


# --- active checks ------------------------------------------------------------------------------


@dataclass(slots=True)
class ActiveChecksRequest:
    host: str
    host_metadata: str | None = None
    ip: str | None = None
    port: int | None = None
    request: str = ACTIVE_CHECKS

    def to_json(self) -> bytes:
        d: dict[str, Any] = {"request": self.request, "host": self.host}
        if self.host_metadata is not None:
            d["host_metadata"] = self.host_metadata
        if self.ip is not None:
            d["ip"] = self.ip
        if self.port is not None:
            d["port"] = self.port
        return dumps(d)


@dataclass(slots=True)
class ActiveCheck:
    """One row of an `active checks` reply.

    `key` has the server's macros expanded and is what the agent evaluates; `key_orig` is the key as
    configured (`vfs.fs.size[{$FS},pused]`) and is what values are reported under. The server sends
    `key_orig` only when the two differ; empty means the same as `key`.
    """

    key: str
    delay: int
    lastlogsize: int = 0
    mtime: int = 0
    key_orig: str = ""

    def __post_init__(self) -> None:
        if not self.key_orig:
            self.key_orig = self.key

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"key": self.key}
        if self.key_orig != self.key:
            d["key_orig"] = self.key_orig
        d.update(delay=self.delay, lastlogsize=self.lastlogsize, mtime=self.mtime)
        return d


@dataclass(slots=True)
class ActiveChecksResponse:
    data: list[ActiveCheck] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # why rows were left out, one line each

    def to_json(self) -> bytes:
        return dumps({"response": "success", "data": [c.to_dict() for c in self.data]})


# --- replies ------------------------------------------------------------------------------------

_INFO = re.compile(
    r"processed: (\d+); failed: (\d+); total: (\d+); seconds spent: (\d+(?:\.\d+)?)"
)


@dataclass(slots=True)
class ProcessedInfo:
    processed: int
    failed: int
    total: int
    seconds: float

    def __str__(self) -> str:
        return (
            f"processed: {self.processed}; failed: {self.failed}; total: {self.total}; "
            f"seconds spent: {self.seconds:.6f}"
        )

    @classmethod
    def parse(cls, info: str) -> ProcessedInfo:
        m = _INFO.fullmatch(info)
        if not m:
            raise ProtocolError(f"info: not a 'processed: N; failed: N; total: N; seconds spent: S' string: {info!r}")
        return cls(int(m[1]), int(m[2]), int(m[3]), float(m[4]))


@dataclass(slots=True)
class Response:
    response: str  # "success" | "failed"
    info: str | None = None

    def to_json(self) -> bytes:
        d: dict[str, Any] = {"response": self.response}
        if self.info is not None:
            d["info"] = self.info
        return dumps(d)

    @property
    def ok(self) -> bool:
        return self.response == "success"


def success(info: ProcessedInfo) -> bytes:
    return Response("success", str(info)).to_json()


def failure(info: str) -> bytes:
    return Response("failed", info).to_json()


# --- parsing ------------------------------------------------------------------------------------

Request = SenderData | AgentData | ActiveChecksRequest


def parse_sender_value(d: Any, i: int) -> SenderValue:
    where = f"data[{i}]"
    if not isinstance(d, dict):
        raise ProtocolError(f"{where}: must be an object")
    host = _str(d, "host", where)
    key = _str(d, "key", where)
    assert host is not None and key is not None
    return SenderValue(host, key, _value(d, where), _int(d, "clock", where, hi=CLOCK_MAX),
                       _int(d, "ns", where, hi=NS_MAX))


def parse_agent_value(d: Any, i: int) -> AgentValue:
    where = f"data[{i}]"
    if not isinstance(d, dict):
        raise ProtocolError(f"{where}: must be an object")
    host = _str(d, "host", where)
    key = _str(d, "key", where)
    assert host is not None and key is not None
    state = _int(d, "state", where, hi=1)
    value = _value(d, where) if "value" in d else None
    if value is None and state != 1:
        raise ProtocolError(f"{where}: missing field 'value'")
    vid = _int(d, "id", where, hi=ID_MAX)
    clock = _int(d, "clock", where, hi=CLOCK_MAX)
    ns = _int(d, "ns", where, hi=NS_MAX)
    if vid is None or clock is None:
        raise ProtocolError(f"{where}: missing field {'id' if vid is None else 'clock'!r}")
    return AgentValue(
        host, key, value, vid, clock, ns or 0,
        lastlogsize=_int(d, "lastlogsize", where), mtime=_int(d, "mtime", where), state=state,
        timestamp=_int(d, "timestamp", where), source=_str(d, "source", where, required=False),
        severity=_int(d, "severity", where), eventid=_int(d, "eventid", where),
    )


def _data_list(obj: dict[str, Any]) -> list[Any]:
    data = obj.get("data")
    if not isinstance(data, list):
        raise ProtocolError("field 'data' must be a list" if data is not None else "missing field 'data'")
    return data


def parse_request(obj: dict[str, Any]) -> Request:
    """Turn a parsed JSON object into a request. Unknown requests raise ProtocolError."""
    req = obj.get("request")
    if req == SENDER_DATA:
        data = _data_list(obj)
        return SenderData(
            [parse_sender_value(d, i) for i, d in enumerate(data)],
            _int(obj, "clock", "request", hi=CLOCK_MAX), _int(obj, "ns", "request", hi=NS_MAX),
        )
    if req == AGENT_DATA:
        data = _data_list(obj)
        session = _str(obj, "session", "request", required=False) or ""
        clock = _int(obj, "clock", "request", hi=CLOCK_MAX) or 0
        return AgentData(session, [parse_agent_value(d, i) for i, d in enumerate(data)], clock,
                         _int(obj, "ns", "request", hi=NS_MAX) or 0)
    if req == ACTIVE_CHECKS:
        host = _str(obj, "host", "request")
        assert host is not None
        return ActiveChecksRequest(host, _str(obj, "host_metadata", "request", required=False),
                                   _str(obj, "ip", "request", required=False), _int(obj, "port", "request", hi=65535))
    if req is None:
        raise ProtocolError("missing field 'request'")
    raise ProtocolError(f"unknown request {req!r}")


def parse_response(body: bytes) -> Response:
    obj = loads(body)
    resp = _str(obj, "response", "response")
    assert resp is not None
    return Response(resp, _str(obj, "info", "response", required=False))


def parse_active_checks_response(body: bytes) -> ActiveChecksResponse | Response:
    """A list of checks, or a Response('failed', info) when the server refused.

    A row that cannot be used is left out and its reason added to `skipped`; the other rows stand,
    as zabbix_agentd skips a row with a missing tag and runs the rest.
    """
    obj = loads(body)
    if obj.get("response") != "success":
        return Response(str(obj.get("response")), _str(obj, "info", "response", required=False))
    checks = []
    skipped = []
    for i, d in enumerate(_data_list(obj)):
        try:
            checks.append(parse_active_check(d, f"data[{i}]"))
        except ProtocolError as e:
            skipped.append(str(e))
    return ActiveChecksResponse(checks, skipped)


def parse_active_check(d: Any, where: str) -> ActiveCheck:
    if not isinstance(d, dict):
        raise ProtocolError(f"{where}: must be an object")
    key = _str(d, "key", where)
    if not key:
        raise ProtocolError(f"{where}: field 'key' is empty")
    key_orig = _str(d, "key_orig", where, required=False) or key
    return ActiveCheck(key, _delay(d, where), _int(d, "lastlogsize", where) or 0, _int(d, "mtime", where) or 0,
                       key_orig)


def _delay(d: dict[str, Any], where: str) -> int:
    """Seconds, as a 6.0 server sends them (an integer; older servers: a string of digits, maybe with `s`).

    Anything else ("1m", a flexible interval) is refused rather than guessed: zabbix_agentd's atoi()
    would read "1m" as 1 second and poll sixty times too often.
    """
    v = d.get("delay")
    if isinstance(v, str):
        text = v[:-1] if v.endswith("s") else v
        if text.isdigit():
            v = int(text)
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 86400 * 365:
        shown = "missing" if v is None else repr(d.get("delay"))
        raise ProtocolError(f"{where}: field 'delay' must be a number of seconds, got {shown} (key {d.get('key')!r})")
    return v


def encode_passive_reply(value: str | None, error: str | None = None) -> bytes:
    """Body of a passive-check reply: the value as text, or ZBX_NOTSUPPORTED NUL reason."""
    if error is not None:
        return NOT_SUPPORTED.encode() + b"\0" + error.encode()
    return (value or "").encode()


def decode_passive_reply(body: bytes) -> tuple[str | None, str | None]:
    """(value, None) or (None, reason) for a ZBX_NOTSUPPORTED reply."""
    if body.startswith(NOT_SUPPORTED.encode()):
        rest = body[len(NOT_SUPPORTED):]
        reason = rest[1:] if rest.startswith(b"\0") else rest.lstrip(b": ")
        return None, reason.decode(errors="replace")
    return body.decode(errors="replace"), None
