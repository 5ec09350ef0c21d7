"""Jinja filters and globals shared by the templates."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

from flask import Flask, request
from vigil.server.config.tables import Severity
from vigil.web import format as fmt

SEVERITY_LABELS = {Severity.NOT_CLASSIFIED: "Not classified", Severity.INFORMATION: "Information",
                   Severity.WARNING: "Warning", Severity.AVERAGE: "Average", Severity.HIGH: "High",
                   Severity.DISASTER: "Disaster"}
AVAILABILITY = {0: ("Unknown", "unknown"), 1: ("Available", "ok"), 2: ("Not available", "bad")}


def ago(clock: int | None) -> str:
    if not clock:
        return ""
    return fmt.duration(max(0, int(time.time()) - int(clock))) + " ago"


def url_with(**changes: Any) -> str:
    """This page's URL with some query parameters changed (None removes one): filters stay in the URL."""
    args = request.args.to_dict(flat=False)
    for k, v in changes.items():
        if v is None:
            args.pop(k, None)
        else:
            args[k] = [str(v)]
    q = urlencode(args, doseq=True)
    return request.path + ("?" + q if q else "")


def init_app(app: Flask) -> None:
    app.jinja_env.filters["value"] = fmt.value
    app.jinja_env.filters["ago"] = ago
    app.jinja_env.globals.update(url_with=url_with, severities=SEVERITY_LABELS, availability=AVAILABILITY)
    from vigil.web.urls import fast_url_for

    app.jinja_env.globals["url_for"] = fast_url_for  # templates only; views keep Flask's
