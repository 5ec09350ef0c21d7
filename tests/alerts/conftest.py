"""Fixtures for the alerts tests: a migrated database with an AlertLog, media types written with
SQLAlchemy, a real SMTP server (aiosmtpd on loopback) and a real HTTP receiver (http.server)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from vigil.server.config.migrate import engine_for
from vigil.server.config.tables import MediaKind, media_types
from vigil.server.store.alertlog import AlertLog, NewAlert

from tests.conftest import free_port


@pytest.fixture
def engine(migrated_url: str) -> Iterator[Engine]:
    e = engine_for(migrated_url)
    try:
        yield e
    finally:
        e.dispose()


@pytest.fixture
def alertlog(engine: Engine) -> AlertLog:
    return AlertLog(engine)


def add_media_type(engine: Engine, name: str, kind: MediaKind, params: dict[str, Any], *, maxattempts: int = 3,
                   attempt_interval: str = "1s", status: int = 0) -> int:
    with engine.begin() as c:
        return int(c.execute(media_types.insert().values(
            name=name, type=int(kind), status=status, params=json.dumps(params), maxattempts=maxattempts,
            attempt_interval=attempt_interval).returning(media_types.c.mediatypeid)).scalar_one())


def set_params(engine: Engine, mediatypeid: int, params: dict[str, Any]) -> None:
    with engine.begin() as c:
        c.execute(media_types.update().where(media_types.c.mediatypeid == mediatypeid)
                  .values(params=json.dumps(params)))


def new_alert(log: AlertLog, mediatypeid: int | None, sendto: str = "ops@example.com",
              subject: str = "Problem: CPU load is high", message: str = "Host web01: load 9.5") -> int:
    return log.create(NewAlert(actionid=None, eventid=None, p_eventid=None, userid=None, mediatypeid=mediatypeid,
                               sendto=sendto, subject=subject, message=message, esc_step=1, clock=int(time.time())))


# --- a real HTTP receiver ----------------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def alert_id(self) -> str | None:
        return self.headers.get("x-vigil-alert-id")


@dataclass
class Receiver:
    """An HTTP server on loopback recording every request. `statuses`: the answers, in order (then
    200); `hold`: while set, requests are held open without an answer until it is cleared."""

    port: int
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    answer_body: bytes = b"ok"
    hold: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def ids(self) -> list[str | None]:
        with self.lock:
            return [r.alert_id for r in self.requests]


def _handler(rx: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _any(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with rx.lock:
                rx.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                status = rx.statuses.pop(0) if rx.statuses else 200
                held = rx.hold.is_set()
            if held:
                rx.release.wait(60)
                return  # the connection closes without an answer
            self.send_response(status)
            self.send_header("Content-Length", str(len(rx.answer_body)))
            self.end_headers()
            self.wfile.write(rx.answer_body)

        do_POST = do_PUT = do_GET = do_PATCH = do_DELETE = _any

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rx = Receiver(free_port())
    server = ThreadingHTTPServer(("127.0.0.1", rx.port), _handler(rx))
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield rx
    finally:
        rx.release.set()
        server.shutdown()
        server.server_close()


# --- a real SMTP server ------------------------------------------------------------------------------


@dataclass
class Mailbox:
    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)  # (mail from, rcpt tos, data)
    refuse_rcpt: str | None = None  # an answer like "550 5.1.1 no such user" to every RCPT TO


class Handler:
    def __init__(self, box: Mailbox) -> None:
        self.box = box

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: Any) -> str:
        if self.box.refuse_rcpt:
            return self.box.refuse_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.box.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 Message accepted"


def smtp_server(box: Mailbox, **kwargs: Any) -> Callable[[], None]:
    """Start aiosmtpd on a free loopback port; returns its port and the stop function."""
    from aiosmtpd.controller import Controller

    port = free_port()
    ctl = Controller(Handler(box), hostname="127.0.0.1", port=port, **kwargs)
    ctl.start()
    box.port = port  # type: ignore[attr-defined]
    return ctl.stop


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.tlscerts import make_certs

    return make_certs(tmp_path_factory.mktemp("certs") / "c")


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path
