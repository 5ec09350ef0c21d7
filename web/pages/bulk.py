"""The bulk delete / enable / disable of a configuration list (actions, media types)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import flash, redirect, request, url_for
from vigil.web import auth
from vigil.web.app import services
from vigil.web.errors import WebError
from vigil.web.params import ids_arg


def bulk_change(kind: str, idfield: str, noun: str, get: Callable[[int], Any], index: str) -> Any:
    """Apply the form's `action` (delete, enable, disable) to the `idfield` ids ticked; `get` reads one
    object (None: gone meanwhile), `kind` is the repo's name for it; then back to the `index` page."""
    auth.require_configure()
    ids = ids_arg(request.form, idfield, getlist=request.form.getlist) or []
    if not ids:
        raise WebError(f"{idfield}: choose at least one {noun}", idfield)
    action = request.form.get("action", "delete")
    if action not in ("delete", "enable", "disable"):
        raise WebError("action: delete, enable or disable", "action")
    repo, n = services().repo, 0
    for oid in ids:
        spec = get(oid)
        if spec is None:
            continue
        if action == "delete":
            n += repo.delete_alerting(kind, oid)
        else:
            spec.enabled = action == "enable"
            repo.save_alerting(kind, spec, oid)
            n += 1
    flash(f"{n} {noun}{'s' if n != 1 else ''} {action}d.")
    return redirect(url_for(index))
