"""The "SNMP walk to JSON" step (Zabbix 6.4's type 29): the `snmpwalk -On` lines of a `walk[]` item
into LLD rows, one object per index with `{#SNMPINDEX}` and a macro per configured OID.

Parameters are triples, one per line: the macro, the OID whose subtree gives its values, and the
format (0 as it is, 1 UTF-8 from a Hex-STRING, 2 MAC address from a Hex-STRING, 3 integer from BITS).
A walk value is parsed as Net-SNMP prints it: `.OID = TYPE: value`, a STRING quoted with `\\"` and
`\\\\` escaped (and possibly spanning lines), Timeticks as `(ticks) text` (the ticks are taken).
"""

from __future__ import annotations

import json
import re

MACRO = re.compile(r"\{#[A-Z0-9_.]+\}")
_LINE = re.compile(r"\.?((?:[0-9]+\.)*[0-9]+) = (?:([A-Za-z0-9-]+): ?)?(.*)")
FORMATS = {"0", "1", "2", "3"}


class WalkError(ValueError):
    pass


def parse_params(params: str) -> list[tuple[str, str, str]]:
    lines = params.split("\n")
    if not params.strip() or len(lines) % 3:
        raise WalkError("expected triples of lines: {#MACRO}, OID, format (0 unchanged, 1 UTF-8 from hex, 2 MAC "
                        "from hex, 3 integer from BITS)")
    out = []
    for i in range(0, len(lines), 3):
        macro, oid, fmt = (x.strip() for x in lines[i:i + 3])
        if not MACRO.fullmatch(macro):
            raise WalkError(f"{macro!r} is not an LLD macro like {{#NAME}}")
        if not re.fullmatch(r"\.?(?:[0-9]+\.)*[0-9]+", oid):
            raise WalkError(f"{oid!r} is not a numeric OID")
        if fmt not in FORMATS:
            raise WalkError(f"format {fmt!r} is not one of 0, 1, 2, 3")
        out.append((macro, oid.lstrip("."), fmt))
    return out


def parse_walk(text: str) -> list[tuple[str, str, str]]:
    """(OID, type, value) of every varbind of the walk's text."""
    out: list[tuple[str, str, str]] = []
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i].rstrip("\r")
        i += 1
        if not line.strip():
            continue
        m = _LINE.fullmatch(line)
        if m is None:
            raise WalkError(f"cannot parse the walk's line {line[:80]!r}")
        oid, kind, value = m.group(1), (m.group(2) or ""), m.group(3)
        if kind == "STRING" and value.startswith('"'):
            while not _closed(value) and i < len(lines):
                value += "\n" + lines[i]
                i += 1
            value = re.sub(r'\\(["\\])', r"\1", value[1:-1] if _closed(value) else value[1:])
        elif kind == "Timeticks":
            tm = re.match(r"\((\d+)\)", value)
            value = tm.group(1) if tm else value
        elif kind == "Hex-STRING":
            while i < len(lines) and re.fullmatch(r"[0-9A-Fa-f]{2}( [0-9A-Fa-f]{2})* ?", lines[i]):
                value += " " + lines[i]
                i += 1
            value = " ".join(value.split())
        out.append((oid, kind, value))
    return out


def _closed(value: str) -> bool:
    """Whether a quoted STRING value has its closing quote (not an escaped one)."""
    if len(value) < 2 or not value.endswith('"'):
        return False
    n = len(value) - 2
    backslashes = 0
    while n >= 1 and value[n] == "\\":
        backslashes += 1
        n -= 1
    return backslashes % 2 == 0


def _formatted(kind: str, value: str, fmt: str) -> str:
    if fmt == "0" or kind not in ("Hex-STRING", "BITS", "STRING"):
        return value
    hexes = value.split()
    if fmt == "1":
        try:
            return bytes(int(h, 16) for h in hexes).decode("utf-8", "replace").rstrip("\x00")
        except ValueError:
            return value
    if fmt == "2":
        return ":".join(h.upper() for h in hexes)
    try:
        return str(int("".join(hexes), 16)) if hexes else "0"
    except ValueError:
        return value


def walk_to_json(text: str, params: str) -> str:
    spec = parse_params(params)
    rows: dict[str, dict[str, str]] = {}
    for oid, kind, value in parse_walk(text):
        for macro, root, fmt in spec:
            if oid.startswith(root + "."):
                index = oid[len(root) + 1:]
                row = rows.setdefault(index, {"{#SNMPINDEX}": index})
                row[macro] = _formatted(kind, value, fmt)
    return json.dumps(list(rows.values()), ensure_ascii=False)
