"""The web UI's composition: the WSGI app over the configured database, served by waitress.

`vigil web` serves it alone (or run `gunicorn 'vigil.run.web:wsgi()'` / `gunicorn 'vigil.web.app:create_app()'`);
`vigil up` serves it in a thread next to ingest and makes the first admin.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from pathlib import Path

from flask import Flask
from vigil.server.config.migrate import engine_for
from vigil.server.config.tables import Role
from vigil.server.config.users import UserRepo
from vigil.server.settings import Settings

log = logging.getLogger("vigil.web")
INITIAL_PASSWORD_FILE = "initial-admin-password"


def wsgi(settings: Settings | None = None) -> Flask:
    from vigil.web.app import create_app

    return create_app(settings)


def ensure_admin(settings: Settings) -> str | None:
    """On a store without users: create `Admin` (super admin) with a random password, write it to
    VIGIL_DATA_DIR/initial-admin-password (mode 0600) and return it; None if users exist already."""
    engine = engine_for(settings.database_url)
    try:
        users = UserRepo(engine)
        if users.count():
            return None
        password = secrets.token_urlsafe(12)
        users.create_user("Admin", password, Role.SUPER_ADMIN, name="Zabbix-style first administrator")
    finally:
        engine.dispose()
    path = Path(settings.data_dir) / INITIAL_PASSWORD_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(password + "\n")
    os.chmod(path, 0o600)
    return password


class WebServer:
    """The app on VIGIL_WEB_LISTEN in a waitress server thread; stop() ends it."""

    def __init__(self, settings: Settings, app: Flask | None = None) -> None:
        from waitress.server import create_server

        self.app = app or wsgi(settings)
        host, port = settings.web_listen
        self.server = create_server(self.app, host=host, port=port, threads=settings.web_threads,
                                    ident="vigil", clear_untrusted_proxy_headers=True, channel_timeout=60)
        self.thread = threading.Thread(target=self._run, name="vigil-web", daemon=True)

    def _run(self) -> None:
        try:
            self.server.run()
        except OSError:  # closed by stop()
            pass

    @property
    def url(self) -> str:
        host, port = self.server.effective_host, self.server.effective_port
        if ":" in str(host):
            host = f"[{host}]"
        return f"http://{host}:{port}/"

    def start(self) -> WebServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.close()
        for channel in list(self.server._map.values()):  # keep-alive connections would keep the loop up
            channel.close()
        self.server.task_dispatcher.shutdown()
        self.thread.join(10)
        self.app.extensions["vigil"].close()
