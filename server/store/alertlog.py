"""The alert log (table `alerts`) and the media types delivery reads, in SQLAlchemy Core on both stores.

One row per message or command, whatever the number of tries: its id is the alert id a receiver
sees on every try (X-Vigil-Alert-Id, Message-ID, {ALERT.ID}). `retries` counts the failed tries so
far; `error` is the last failure. A row moves queued → (retrying →)* sent | failed, and a row that
says sent is never sent again (the delivery function checks before every try).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from vigil.server.config.tables import AlertStatus, MediaKind, alerts, media_types

ERROR_MAX = 2048  # alerts.error is String(2048)
SUBJECT_MAX = 255  # alerts.subject is String(255)
SENDTO_MAX = 1024


class AlertLogError(ValueError):
    """An alert that cannot be written as given; the message names the field."""


@dataclass(frozen=True, slots=True)
class NewAlert:
    actionid: int | None
    eventid: int | None
    p_eventid: int | None
    userid: int | None
    mediatypeid: int | None
    sendto: str
    subject: str
    message: str
    esc_step: int
    clock: int
    alerttype: int = 0  # 0 message, 1 command


@dataclass(frozen=True, slots=True)
class Alert:
    alertid: int
    actionid: int | None
    eventid: int | None
    p_eventid: int | None
    userid: int | None
    mediatypeid: int | None
    clock: int
    sendto: str
    subject: str
    message: str
    status: AlertStatus
    retries: int
    error: str
    esc_step: int
    alerttype: int
    sent_clock: int


@dataclass(frozen=True, slots=True)
class MediaType:
    """A media_types row as delivery needs it; `params` is the JSON object described on MediaTypeSpec."""

    mediatypeid: int
    name: str
    kind: MediaKind | int  # an unknown number stays an int, and delivery says so
    enabled: bool
    params: dict[str, Any] = field(default_factory=dict)
    maxattempts: int = 3
    attempt_interval: str = "10s"


def _alert(row: sa.Row[Any]) -> Alert:
    m = row._mapping
    return Alert(
        alertid=int(m["alertid"]), actionid=m["actionid"], eventid=m["eventid"], p_eventid=m["p_eventid"],
        userid=m["userid"], mediatypeid=m["mediatypeid"], clock=int(m["clock"]), sendto=m["sendto"],
        subject=m["subject"], message=m["message"], status=AlertStatus(m["status"]), retries=int(m["retries"]),
        error=m["error"], esc_step=int(m["esc_step"]), alerttype=int(m["alerttype"]),
        sent_clock=int(m["sent_clock"]),
    )


def _media_type(row: sa.Row[Any]) -> MediaType:
    m = row._mapping
    try:
        params = json.loads(m["params"] or "{}")
    except ValueError as e:
        params = {"__invalid__": f"params is not JSON: {e}"}
    if not isinstance(params, dict):
        params = {"__invalid__": "params is not a JSON object"}
    try:
        kind: MediaKind | int = MediaKind(m["type"])
    except ValueError:
        kind = int(m["type"])
    return MediaType(mediatypeid=int(m["mediatypeid"]), name=m["name"], kind=kind, enabled=m["status"] == 0,
                     params=params, maxattempts=int(m["maxattempts"]), attempt_interval=m["attempt_interval"])


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class AlertLog:
    """Reads and writes the alert log; safe to share between threads (each call takes its own connection)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create(self, new: NewAlert) -> int:
        """Write a queued alert and return its id (commit before dispatching it)."""
        if new.alerttype not in (0, 1):
            raise AlertLogError(f"alerttype: expected 0 (message) or 1 (command), got {new.alerttype!r}")
        if len(new.sendto) > SENDTO_MAX:
            raise AlertLogError(f"sendto: at most {SENDTO_MAX} characters, got {len(new.sendto)}")
        values = dict(actionid=new.actionid, eventid=new.eventid, p_eventid=new.p_eventid, userid=new.userid,
                      mediatypeid=new.mediatypeid, clock=new.clock, sendto=new.sendto,
                      subject=clip(new.subject, SUBJECT_MAX), message=new.message, status=int(AlertStatus.QUEUED),
                      retries=0, error="", esc_step=new.esc_step, alerttype=new.alerttype, sent_clock=0)
        with self.engine.begin() as c:
            return int(c.execute(alerts.insert().values(**values).returning(alerts.c.alertid)).scalar_one())

    def get(self, alertid: int) -> Alert | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(alerts).where(alerts.c.alertid == alertid)).first()
        return None if row is None else _alert(row)

    def media_type(self, mediatypeid: int) -> MediaType | None:
        with self.engine.connect() as c:
            row = c.execute(sa.select(media_types).where(media_types.c.mediatypeid == mediatypeid)).first()
        return None if row is None else _media_type(row)

    def media_types(self) -> list[MediaType]:
        with self.engine.connect() as c:
            rows = c.execute(sa.select(media_types).order_by(media_types.c.mediatypeid)).all()
        return [_media_type(r) for r in rows]

    def _set(self, alertid: int, **values: Any) -> bool:
        # Never overwrite a row that says sent: a late failure report of a duplicate try loses.
        with self.engine.begin() as c:
            r = c.execute(alerts.update().where(alerts.c.alertid == alertid,
                                                alerts.c.status != int(AlertStatus.SENT)).values(**values))
            return r.rowcount == 1

    def mark_sent(self, alertid: int, clock: int) -> bool:
        """Record the alert as sent at `clock`; False if there is no such row or it already said sent."""
        return self._set(alertid, status=int(AlertStatus.SENT), sent_clock=clock)

    def mark_retrying(self, alertid: int, retries: int, error: str) -> bool:
        """A try failed and another follows: `retries` failed tries so far, `error` the last one's reason."""
        return self._set(alertid, status=int(AlertStatus.RETRYING), retries=retries, error=clip(error, ERROR_MAX))

    def mark_failed(self, alertid: int, retries: int, error: str) -> bool:
        """Given up: retries used up, or an error no retry can fix."""
        return self._set(alertid, status=int(AlertStatus.FAILED), retries=retries, error=clip(error, ERROR_MAX))

    def pending(self, limit: int = 10000) -> list[Alert]:
        """Alerts still to deliver (queued or retrying), oldest first."""
        q = (sa.select(alerts).where(alerts.c.status.in_([int(AlertStatus.QUEUED), int(AlertStatus.RETRYING)]))
             .order_by(alerts.c.clock, alerts.c.alertid).limit(limit))
        with self.engine.connect() as c:
            return [_alert(r) for r in c.execute(q).all()]

    def recent(self, limit: int = 100) -> list[Alert]:
        """The newest alerts first, for the CLI and the web."""
        with self.engine.connect() as c:
            rows = c.execute(sa.select(alerts).order_by(alerts.c.alertid.desc()).limit(limit)).all()
        return [_alert(r) for r in rows]
