"""The Flask app factory: `create_app()` is the WSGI app `vigil web` serves (and gunicorn can:
`gunicorn 'vigil.web.app:create_app()'`). Settings come from VIGIL_* variables when it is called,
never at import time.
"""

from __future__ import annotations

import gzip
import logging
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, jsonify, render_template, request
from sqlalchemy.engine import Engine
from vigil.server.config.browse import Browse
from vigil.server.config.repo import ConfigRepo
from vigil.server.config.users import UserRepo
from vigil.server.settings import Settings
from vigil.server.store import Store, open_store
from vigil.web.errors import WebError

log = logging.getLogger("vigil.web")
MAX_BODY = 2 * 1024 * 1024  # forms and API bodies; a 10 MB field is refused before it is read


@dataclass
class Services:
    """What the views use, built once per app: repositories over one engine, a store per thread."""

    settings: Settings
    engine: Engine
    browse: Browse
    users: UserRepo
    repo: ConfigRepo
    _local: threading.local = field(default_factory=threading.local)
    _stores: list[Store] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def store(self) -> Store:
        """The history store of this thread (the stores hold one connection each)."""
        s = getattr(self._local, "store", None)
        if s is None:
            s = open_store(self.settings.database_url, self.settings.pg_timeouts)
            self._local.store = s
            with self._lock:
                self._stores.append(s)
        return s

    def close(self) -> None:
        with self._lock:
            for s in self._stores:
                s.close()
            self._stores.clear()
        self.engine.dispose()


def services() -> Services:
    from flask import current_app

    return current_app.extensions["vigil"]  # type: ignore[no-any-return]


def secret_key(settings: Settings) -> str:
    """VIGIL_SECRET_KEY, or the key in VIGIL_DATA_DIR/secret-key, made once with mode 0600."""
    if settings.secret_key:
        return settings.secret_key
    path = Path(settings.data_dir) / "secret-key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another worker may have made it an instant ago and be writing it
            key = path.read_text().strip()
            if len(key) >= 32:
                return key
            time.sleep(0.02)
        raise RuntimeError(f"{path} holds no usable key (under 32 characters): delete it to make a new one") from None
    key = secrets.token_hex(32)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return key


def create_app(settings: Settings | None = None, *, engine: Engine | None = None,
               config: dict[str, Any] | None = None) -> Flask:
    from vigil.server.config.migrate import check_current, engine_for

    settings = settings or Settings.from_env()
    if engine is None:
        engine = engine_for(settings.database_url, settings.pg_timeouts)
        check_current(engine)
    # instance_path given: Flask cannot find it for the vigil.* namespace (folders mapped by setup.py).
    app = Flask("vigil.web", root_path=str(Path(__file__).parent),
                instance_path=str(Path(settings.data_dir).absolute()), static_folder="static",
                template_folder="templates")
    app.config.update(
        SECRET_KEY=secret_key(settings),
        SESSION_COOKIE_NAME="vigil_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.web_cookie_secure,
        PERMANENT_SESSION_LIFETIME=30 * 86400,  # "remember me for 30 days", as Zabbix
        MAX_CONTENT_LENGTH=MAX_BODY,
        MAX_FORM_MEMORY_SIZE=MAX_BODY,
        JSON_SORT_KEYS=False,
        SEND_FILE_MAX_AGE_DEFAULT=3600,
    )
    app.config.update(config or {})
    app.jinja_env.autoescape = True
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True
    svc = Services(settings, engine, Browse(engine), UserRepo(engine), ConfigRepo(engine))
    app.extensions["vigil"] = svc

    from vigil.server.config import reads

    @app.before_request
    def share_reads() -> None:
        # registered before auth's hook (below): the user's lookup is the first read on the shared connection
        reads.begin(engine)

    @app.teardown_request
    def end_reads(_exc: BaseException | None) -> None:
        reads.end()


    from vigil.web import auth, filters
    from vigil.web.api import bp as api_bp
    from vigil.web.pages import dashboard, graphs, hosts, latest, problems, triggers, users
    from vigil.web.pages.config_pages import CONFIG_PAGES

    filters.init_app(app)
    auth.init_app(app)
    app.register_blueprint(auth.bp)
    app.register_blueprint(api_bp)
    for mod in (dashboard, hosts, latest, graphs, users, problems, triggers, *CONFIG_PAGES):
        app.register_blueprint(mod.bp)

    plotly_js: dict[str, bytes] = {}

    @app.get("/static/plotly.min.js")
    def plotly() -> Response:
        """plotly.js from the installed plotly package (no CDN), gzipped once in memory."""
        if not plotly_js:
            import plotly as _p

            raw = (Path(_p.__file__).parent / "package_data" / "plotly.min.js").read_bytes()
            plotly_js["raw"], plotly_js["gz"] = raw, gzip.compress(raw, 6)
        gz = "gzip" in request.headers.get("Accept-Encoding", "")
        r = Response(plotly_js["gz" if gz else "raw"], mimetype="text/javascript")
        if gz:
            r.headers["Content-Encoding"] = "gzip"
        r.headers["Vary"] = "Accept-Encoding"
        r.headers["Cache-Control"] = "public, max-age=86400"
        return r

    @app.errorhandler(WebError)
    def web_error(e: WebError) -> Any:
        if _wants_json():
            return jsonify(e.to_json()), e.status
        if e.status == 401:
            from flask import redirect, url_for

            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return render_template("error.html", error=e), e.status

    @app.errorhandler(404)
    def not_found(e: Exception) -> Any:
        return web_error(WebError(f"no page at {request.path}", status=404, code="not_found"))

    @app.errorhandler(405)
    def bad_method(e: Exception) -> Any:
        return web_error(WebError(f"{request.method} is not allowed on {request.path}", status=405,
                                  code="method_not_allowed"))

    @app.errorhandler(413)
    def too_large(e: Exception) -> Any:
        return web_error(WebError(f"the request body is larger than {MAX_BODY // 1024} KiB", status=413,
                                  code="too_large"))

    @app.errorhandler(500)
    def server_error(e: Exception) -> Any:
        orig = getattr(e, "original_exception", None) or e
        log.error("error answering %s %s", request.method, request.path, exc_info=orig)
        return web_error(WebError("something went wrong on the server; the log has the details", status=500,
                                  code="internal"))

    @app.after_request
    def headers(r: Response) -> Response:
        r.headers.setdefault("X-Content-Type-Options", "nosniff")
        r.headers.setdefault("X-Frame-Options", "DENY")
        r.headers.setdefault("Referrer-Policy", "same-origin")
        r.headers.setdefault("Content-Security-Policy",
                             "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                             "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'")
        if getattr(g, "user", None) is not None and r.mimetype == "text/html":
            r.headers.setdefault("Cache-Control", "no-store")
        return r

    return app


def _wants_json() -> bool:
    return request.path.startswith("/api/")
