"""Zabbix item-key syntax: `name[param,"quoted, param",[array,param]]`.

Names are letters, digits, `_`, `-` and `.`. A parameter is unquoted (no `,` or `]`), quoted
(`"..."` with `\\"` for a quote), or an array `[a,b]` one level deep. Leading spaces before a
parameter are skipped, as Zabbix does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_KEY_LENGTH = 2048
_NAME = re.compile(r"[0-9A-Za-z_.\-]+")



class ArrayParam(list[str]):
    """An array parameter `[a,"b"]`: its items, and `text` as zabbix_agentd hands the whole array to
    access rules and UserParameters (`a,"b"`: items joined by commas, quotes kept, spaces around
    items dropped)."""

    text: str = ""


Param = str | list[str]


class ItemKeyError(ValueError):
    """A key that cannot be parsed; `offset` is the position of the problem."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} at position {offset}")
        self.offset = offset


@dataclass(frozen=True, slots=True)
class ItemKey:
    name: str
    params: tuple[Param, ...]
    has_brackets: bool = False

    def param(self, i: int, default: str = "") -> str:
        """Parameter i as text ('' or `default` when absent or empty). Arrays are not allowed here."""
        if i >= len(self.params):
            return default
        p = self.params[i]
        if isinstance(p, list):
            raise ItemKeyError(f"parameter {i + 1} must not be an array", 0)
        return p if p != "" else default

    def __str__(self) -> str:
        if not self.has_brackets:
            return self.name
        return f"{self.name}[{','.join(_quote(p) for p in self.params)}]"


def _quote(p: Param) -> str:
    if isinstance(p, list):
        return "[" + ",".join(_quote(x) for x in p) + "]"
    if p == "" or not any(c in p for c in ',]"[') and not p.startswith(" "):
        return p
    return '"' + p.replace('"', '\\"') + '"'


def parse(key: str) -> ItemKey:
    if len(key) > MAX_KEY_LENGTH:
        raise ItemKeyError(f"key is longer than {MAX_KEY_LENGTH} characters", MAX_KEY_LENGTH)
    m = _NAME.match(key)
    if not m:
        raise ItemKeyError("invalid character in key name" if key else "empty key", 0)
    name = m.group()
    pos = m.end()
    if pos == len(key):
        return ItemKey(name, ())
    if key[pos] != "[":
        raise ItemKeyError(f"invalid character {key[pos]!r} in key name", pos)
    params, pos = _params(key, pos + 1, nested=False)
    if pos != len(key):
        raise ItemKeyError("unexpected text after the closing ']'", pos)
    return ItemKey(name, tuple(params), True)


def _params(key: str, pos: int, nested: bool) -> tuple[list[Param], int]:
    params: list[Param] = []
    n = len(key)
    while True:
        while pos < n and key[pos] == " ":
            pos += 1
        if pos >= n:
            raise ItemKeyError("missing closing ']'", pos)
        c = key[pos]
        if c == '"':
            value, pos = _quoted(key, pos)
            while pos < n and key[pos] == " ":
                pos += 1
            params.append(value)
        elif c == "[":
            if nested:
                raise ItemKeyError("arrays may not be nested", pos)
            start = pos
            inner, pos = _params(key, pos + 1, nested=True)
            arr = ArrayParam(p for p in inner if isinstance(p, str))
            arr.text = _array_text(key[start + 1:pos - 1])
            params.append(arr)
            while pos < n and key[pos] == " ":
                pos += 1
        else:
            start = pos
            while pos < n and key[pos] not in ",]":
                if key[pos] == "[" and not nested:
                    # Zabbix allows '[' inside an unquoted parameter only as a literal; we do too.
                    pass
                pos += 1
            params.append(key[start:pos])
        if pos >= n:
            raise ItemKeyError("missing closing ']'", pos)
        if key[pos] == "]":
            return params, pos + 1
        if key[pos] != ",":
            raise ItemKeyError(f"expected ',' or ']' but found {key[pos]!r}", pos)
        pos += 1


def _quoted(key: str, pos: int) -> tuple[str, int]:
    out = []
    i = pos + 1
    n = len(key)
    while i < n:
        c = key[i]
        if c == "\\" and i + 1 < n and key[i + 1] == '"':
            out.append('"')
            i += 2
            continue
        if c == '"':
            return "".join(out), i + 1
        out.append(c)
        i += 1
    raise ItemKeyError("unterminated quoted parameter", pos)


def _array_text(inner: str) -> str:
    """The text of an array's items as Zabbix's get_param() gives it: the raw items, quotes and
    escapes kept, spaces before an item and after a quoted item dropped, commas kept."""
    out: list[str] = []
    i, n = 0, len(inner)
    while i < n:
        c = inner[i]
        if c == " ":
            i += 1
        elif c == ",":
            out.append(c)
            i += 1
        elif c == '"':
            j = i + 1
            while j < n and inner[j] != '"':
                j += 2 if inner[j] == "\\" and j + 1 < n and inner[j + 1] == '"' else 1
            out.append(inner[i:j + 1])
            i = j + 1
        else:
            j = inner.find(",", i)
            j = n if j < 0 else j
            out.append(inner[i:j])
            i = j
    return "".join(out)
