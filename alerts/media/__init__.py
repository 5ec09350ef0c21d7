"""Media types: how one alert goes out (SMTP e-mail, webhook, script).

`send(media, message, context)` sends once or raises MediaError naming the media type and what
failed. Retries, backoff and the alert log are delivery's business (alerts/delivery.py), not the
media's. A media type's parameters are the JSON object on MediaTypeSpec (server/config/alerting.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vigil.server.config.tables import MediaKind
from vigil.server.store.alertlog import MediaType

DEFAULT_TIMEOUT = 10.0  # seconds, when a media type sets none
MAX_TIMEOUT = 600.0


class MediaError(Exception):
    """One try failed. `permanent`: retrying cannot help (a bad parameter), so delivery gives up at once."""

    def __init__(self, media: MediaType | str, what: str, *, permanent: bool = False) -> None:
        name = media if isinstance(media, str) else media.name
        super().__init__(f"media type {name!r}: {what}")
        self.permanent = permanent


@dataclass(frozen=True, slots=True)
class Message:
    alertid: int
    sendto: str
    subject: str
    message: str
    clock: int  # when the alert was written (the e-mail's Date)


@dataclass(frozen=True, slots=True)
class Context:
    """What the process gives the media: where relative alert scripts live, and the longest time-out
    a try may take (a Celery worker's: below the broker's redelivery time; None: no limit)."""

    scripts_dir: Path = Path("alertscripts")
    timeout_cap: float | None = None


def param_str(media: MediaType, name: str, default: str | None = None) -> str:
    v = media.params.get(name, default)
    if v is None:
        raise MediaError(media, f"parameter {name!r} is missing", permanent=True)
    if isinstance(v, bool) or not isinstance(v, str | int | float):
        raise MediaError(media, f"parameter {name!r}: expected text, got {v!r}", permanent=True)
    return str(v)


def param_bool(media: MediaType, name: str, default: bool) -> bool:
    v = media.params.get(name, default)
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str) and v.lower() in ("0", "1", "true", "false", "yes", "no"):
        return v.lower() in ("1", "true", "yes")
    raise MediaError(media, f"parameter {name!r}: expected true or false, got {v!r}", permanent=True)


def param_int(media: MediaType, name: str, default: int, lo: int, hi: int) -> int:
    v: Any = media.params.get(name, default)
    try:
        if isinstance(v, bool):
            raise ValueError
        n = int(v)
    except (TypeError, ValueError):
        raise MediaError(media, f"parameter {name!r}: expected a whole number, got {v!r}", permanent=True) from None
    if not lo <= n <= hi:
        raise MediaError(media, f"parameter {name!r}: must be between {lo} and {hi}, got {n}", permanent=True)
    return n


def timeout_of(media: MediaType) -> float:
    """The media type's time-out in seconds ("10", "10s", "1m" or a number); DEFAULT_TIMEOUT if unset."""
    v: Any = media.params.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(v, str):
        text = v.strip().lower()
        scale = 60.0 if text.endswith("m") else 1.0
        text = text.rstrip("sm")
    else:
        text, scale = v, 1.0
    try:
        if isinstance(v, bool):
            raise ValueError
        t = float(text) * scale
    except (TypeError, ValueError):
        raise MediaError(media, f"parameter 'timeout': expected seconds like 10 or 30s, got {v!r}",
                         permanent=True) from None
    if not 0 < t <= MAX_TIMEOUT:
        raise MediaError(media, f"parameter 'timeout': must be above 0 and at most {MAX_TIMEOUT:g} s, got {v!r}",
                         permanent=True)
    return t


def send(media: MediaType, message: Message, context: Context | None = None) -> None:
    """Send `message` once through `media`; raises MediaError if that did not work."""
    if "__invalid__" in media.params:
        raise MediaError(media, str(media.params["__invalid__"]), permanent=True)
    if media.kind == MediaKind.EMAIL:
        from vigil.alerts.media import email

        email.send(media, message)
    elif media.kind == MediaKind.WEBHOOK:
        from vigil.alerts.media import webhook

        webhook.send(media, message)
    elif media.kind == MediaKind.SCRIPT:
        from vigil.alerts.media import script

        script.send(media, message, context or Context())
    else:
        raise MediaError(media, f"unknown type {int(media.kind)} (expected 0 email, 1 script or 4 webhook)",
                         permanent=True)


__all__ = ["Context", "MediaError", "Message", "send", "timeout_of"]
