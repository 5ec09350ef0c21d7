"""Values as people read them, pure: units with prefixes and consistent precision, durations, sparklines."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

# Units Zabbix never gives a prefix to (its "blacklist"); B and Bps use powers of 1024.
NO_PREFIX = {"%", "ms", "rpm", "RPM", "s", "uptime", "unixtime", "°C", "C", "dB"}
BINARY = {"B", "Bps"}
PREFIXES = ["", "K", "M", "G", "T", "P", "E"]


def significant(v: float, digits: int = 4) -> str:
    """At most `digits` significant digits, no trailing zeros, no exponent for everyday numbers."""
    if v == 0 or not math.isfinite(v):
        return "0" if v == 0 else str(v)
    if abs(v) >= 10 ** digits:
        return f"{v:.0f}"
    decimals = max(0, digits - 1 - int(math.floor(math.log10(abs(v)))))
    decimals = min(decimals, 6)
    s = f"{v:.{decimals}f}"
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def duration(seconds: float) -> str:
    s = int(abs(seconds))
    parts = []
    for name, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            parts.append(f"{s // size}{name}")
            s %= size
    if not parts or len(parts) < 2 and s:
        parts.append(f"{s}s")
    return ("-" if seconds < 0 else "") + " ".join(parts[:3])


def value(v: object, units: str = "") -> str:
    """A value with its units: 1536 B -> '1.5 KB', 95.83571 % -> '95.84 %', 93784 s -> '1d 2h 3m'."""
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    x = float(v)  # type: ignore[arg-type]
    if units in ("s", "uptime"):
        return duration(x)
    if units == "unixtime":
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(x))
    if units == "%":
        return f"{significant(x, 4) if abs(x) < 1 else f'{x:.2f}'.rstrip('0').rstrip('.')} %"
    if not units or units in NO_PREFIX:
        text = significant(x) if isinstance(v, float) else str(v)
        return f"{text} {units}".rstrip()
    base = 1024 if units in BINARY else 1000
    i = 0
    while abs(x) >= base and i < len(PREFIXES) - 1:
        x /= base
        i += 1
    return f"{significant(x)} {PREFIXES[i]}{units}"


def change(new: object, old: object, units: str = "") -> str:
    if not isinstance(new, int | float) or not isinstance(old, int | float):
        return ""
    d = new - old
    if d == 0:
        return "0"
    text = value(abs(d) if units not in ("unixtime",) else d, units if units != "unixtime" else "")
    return ("+" if d > 0 else "−") + text


def sparkline(points: Sequence[float], width: int = 100, height: int = 22) -> str:
    """An SVG polyline's points attribute for the values, scaled into width x height."""
    if len(points) < 2:
        return ""
    lo, hi = min(points), max(points)
    span = (hi - lo) or 1.0
    step = width / (len(points) - 1)
    return " ".join(f"{i * step:.1f},{height - 1 - (p - lo) / span * (height - 2):.1f}" for i, p in enumerate(points))


def trend(points: Sequence[float]) -> str:
    """'up', 'down' or 'flat': the last value against the mean of the window."""
    if len(points) < 2:
        return "flat"
    mean = sum(points) / len(points)
    spread = (max(points) - min(points)) or 1.0
    d = (points[-1] - mean) / spread
    return "up" if d > 0.15 else "down" if d < -0.15 else "flat"
