"""Configuration → Templates: one template's items, triggers and the hosts it is linked to. (The list is
hosts.templates; linking and unlinking is done in the host form.)"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, render_template
from vigil.server.config.template_browse import TemplateBrowse
from vigil.web import auth
from vigil.web.app import services
from vigil.web.errors import NotFound

bp = Blueprint("tpl", __name__)


@bp.get("/config/templates/<int:templateid>")
def view(templateid: int) -> Any:
    auth.current_user()
    svc = services()
    tb = TemplateBrowse(svc.engine)
    row = tb.template(templateid)
    if row is None:
        raise NotFound(f"templateid: no template {templateid}", "templateid")
    total, items = tb.items(templateid)
    readable = {h.hostid for h in svc.browse.hosts(auth.scope(), hostids=[h for h, _ in tb.linked_hosts(templateid)],
                                                   limit=1000).rows}
    linked = [(h, name) for h, name in tb.linked_hosts(templateid) if h in readable]
    return render_template("template.html", t=row, items=items, total=total,
                           triggers=tb.triggers(templateid), linked=linked)
