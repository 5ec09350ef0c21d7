"""Zabbix time suffixes: "30", "30s", "5m", "1h", "1d", "1w" → seconds."""

from __future__ import annotations

import re

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_RE = re.compile(r"(\d+)([smhdw]?)")


def seconds(text: str | int, field: str = "duration") -> int:
    """Seconds in a Zabbix duration; ValueError naming `field` when the text is not one."""
    if isinstance(text, bool):
        raise ValueError(f"{field}: expected a duration like 30s, 5m, 1h, 7d, got {text!r}")
    if isinstance(text, int):
        if text < 0:
            raise ValueError(f"{field}: a duration cannot be negative, got {text}")
        return text
    m = _RE.fullmatch(str(text).strip())
    if not m:
        raise ValueError(f"{field}: expected a duration like 30s, 5m, 1h, 7d, got {text!r}")
    return int(m[1]) * _UNITS[m[2]]
