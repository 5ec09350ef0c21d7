"""Turning the text of a received value into what its item's value type stores."""

from __future__ import annotations

import math

from vigil.server.config.tables import ValueType

UINT_MAX = 2**64 - 1
CHAR_LIMIT = 255  # history_str.value, as Zabbix: longer values are cut, not refused
TEXT_LIMIT = 65535


class ConversionError(ValueError):
    pass


def to_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ConversionError(f'value "{text[:64]}" is not suitable for value type "Numeric (float)"') from None
    if not math.isfinite(v):
        raise ConversionError(f'value "{text[:64]}" is not a finite number')
    return v


def to_uint(text: str) -> int:
    s = text.strip()
    try:
        v = int(s, 16) if s[:2].lower() == "0x" else int(s)
    except ValueError:
        # Zabbix accepts "10.0" style integers written as floats with no fraction.
        try:
            f = float(s)
        except ValueError:
            f = math.nan
        if not math.isfinite(f) or f != int(f):
            raise ConversionError(
                f'value "{text[:64]}" is not suitable for value type "Numeric (unsigned)"'
            ) from None
        v = int(f)
    if not 0 <= v <= UINT_MAX:
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
