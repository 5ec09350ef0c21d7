"""Turning the text of a received value into what its item's value type stores, by Zabbix 6.0's rules.

Checked against the real zabbix_server 6.0 on the same input (tests/e2e/test_value_rules.py):

- Both numeric types first drop trailing CR/LF, then spaces (not tabs) at both ends, then one pair of
  double quotes around the rest. Unsigned items also drop one leading "+".
- Unsigned: a zero fraction goes ("42.", "42.00"; not in exponent notation), then only ASCII decimal
  digits up to 2**64-1 remain: no sign, exponent, hexadecimal, underscores or other scripts' digits.
- Float: an optional sign, ASCII digits with at most one "." (a digit on at least one side) and an
  optional exponent; no inf/nan, hexadecimal or underscores. Values beyond ±1e308 are refused;
  ones too small for a double become 0.
- Char, text and log values are cut at 255, 65,535 and 65,535 characters.
"""

from __future__ import annotations

import re

from vigil.server.config.tables import ValueType

UINT_MAX = 2**64 - 1
FLOAT_MAX = 1e308  # Zabbix refuses larger magnitudes ("too small or too large") though a double holds them
CHAR_LIMIT = 255
TEXT_LIMIT = 65535
LOG_LIMIT = 65535
NUMBER_TEXT_LIMIT = 2047  # Zabbix reads a numeric value through a 2048-byte buffer

_DIGITS = re.compile(r"[0-9]+")
FLOAT_SYNTAX = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class ConversionError(ValueError):
    pass


def _trim(text: str) -> str:
    s = text[:NUMBER_TEXT_LIMIT].rstrip("\r\n").strip(" ")
    if len(s) >= 2 and s[0] == '"' and s[-1] == '"':
        s = s[1:-1]
    return s


def to_float(text: str) -> float:
    s = _trim(text)
    if FLOAT_SYNTAX.fullmatch(s) is None:
        raise ConversionError(f'value "{text[:64]}" is not suitable for value type "Numeric (float)"')
    v = float(s)
    if not -FLOAT_MAX <= v <= FLOAT_MAX:
        raise ConversionError(f'value "{text[:64]}" is too small or too large for value type "Numeric (float)"')
    return v


def to_uint(text: str) -> int:
    s = _trim(text)
    if s[:1] == "+":
        s = s[1:]
    if "." in s and "e" not in s and "E" not in s and s.count(".") == 1:
        s = s.rstrip("0")
        s = s[:-1] if s.endswith(".") else s + "x"  # a non-zero fraction: refused below
    if _DIGITS.fullmatch(s) is None:
        raise ConversionError(f'value "{text[:64]}" is not suitable for value type "Numeric (unsigned)"')
    v = int(s)
    if v > UINT_MAX:
        raise ConversionError(f'value "{text[:64]}" is out of range for value type "Numeric (unsigned)"')
    return v


def convert(value_type: ValueType, text: str) -> float | int | str:
    if value_type == ValueType.FLOAT:
        return to_float(text)
    if value_type == ValueType.UNSIGNED:
        return to_uint(text)
    if value_type == ValueType.CHAR:
        return text[:CHAR_LIMIT]
    return text[:TEXT_LIMIT]
