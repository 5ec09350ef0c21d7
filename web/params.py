"""Reading query parameters and form fields with errors that name the field."""

from __future__ import annotations

from collections.abc import Mapping

from vigil.web.errors import WebError
from vigil.web.timeparse import TimeError, parse_time


def int_arg(args: Mapping[str, str], name: str, default: int | None, lo: int, hi: int) -> int | None:
    raw = args.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise WebError(f"{name}: expected a whole number, got {raw[:40]!r}", name) from None
    if not lo <= v <= hi:
        raise WebError(f"{name}: must be between {lo} and {hi}, got {v}", name)
    return v


def ids_arg(args: Mapping[str, str], name: str, *, getlist=None) -> list[int] | None:  # type: ignore[no-untyped-def]
    """Ids given as name=1&name=2 or name=1,2; None when absent."""
    values = getlist(name) if getlist else ([args[name]] if name in args else [])
    if not values:
        return None
    out = []
    for v in values:
        for part in str(v).split(","):
            part = part.strip()
            if not part:
                continue
            if not part.isdigit() or len(part) > 12:
                raise WebError(f"{name}: expected ids (whole numbers), got {part[:40]!r}", name)
            out.append(int(part))
    if len(out) > 1000:
        raise WebError(f"{name}: at most 1000 ids", name)
    return out


def text_arg(args: Mapping[str, str], name: str, limit: int = 255) -> str:
    v = (args.get(name) or "").strip()
    if len(v) > limit:
        raise WebError(f"{name}: longer than {limit} characters", name)
    return v


def time_range(args: Mapping[str, str], now: float, default_from: str = "now-1h") -> tuple[int, int, str, str]:
    """(start, end, from text, to text) from ?from=…&to=… (Zabbix's relative syntax or unix seconds)."""
    ftext = text_arg(args, "from", 64) or default_from
    ttext = text_arg(args, "to", 64) or "now"
    try:
        start = parse_time(ftext, now)
    except TimeError as e:
        raise WebError(f"from: {e}", "from") from None
    try:
        end = parse_time(ttext, now, end=True)
    except TimeError as e:
        raise WebError(f"to: {e}", "to") from None
    if start >= end:
        raise WebError(f"from: the start ({ftext}) must be before the end ({ttext})", "from")
    if end - start > 2 * 366 * 86400:
        raise WebError("from: a range of at most 2 years", "from")
    return start, end, ftext, ttext


def tag_arg(args: Mapping[str, str], name: str = "tag") -> tuple[str, str | None] | None:
    v = text_arg(args, name)
    if not v:
        return None
    k, sep, val = v.partition("=") if "=" in v else v.partition(":")
    if not k.strip():
        raise WebError(f"{name}: expected TAG or TAG=VALUE", name)
    return k.strip(), (val.strip() if sep else None)
