"""Configuration → a host's items: edit and delete one (creating is hosts.new_item). An edit changes
only the fields the form shows; the rest of the item (interface, SNMP OID, HTTP request, master item,
preprocessing) stays as it is. Items from a linked template are changed in the template."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, request, url_for
from vigil.server.config.model import ConfigError, item_from_doc, item_to_doc
from vigil.web import auth, checknow
from vigil.web.app import services
from vigil.web.errors import NotFound, WebError
from vigil.web.forms import ITEM_FORM_FIELDS, FormErrors, field_of, text_field

bp = Blueprint("items", __name__)
LIMITS = {"key": 2048, "name": 255, "units": 255, "description": 10000}


def _load(hostid: int, itemid: int) -> tuple[str, Any]:
    auth.require_host(hostid, write=True)
    found = services().repo.item_spec(itemid)
    row = services().browse.item(itemid) if found is not None else None
    if found is None or row is None or row.hostid != hostid:
        raise NotFound(f"itemid: host {hostid} has no item {itemid}", "itemid")
    host, spec, templated = found
    if templated:
        raise WebError(f"itemid: item {spec.key!r} comes from a linked template: change it in the template",
                       "itemid", status=409, code="templated")
    return host, spec


def update_item(host: str, old: Any, data: Any) -> None:
    """The stored item with the form's fields over it; FormErrors naming the field, nothing changed."""
    errors: dict[str, str] = {}
    doc = item_to_doc(old)
    for name in ITEM_FORM_FIELDS:
        if name in data:
            v = text_field(data.get(name), name, errors, LIMITS.get(name, 64), required=name == "key")
            if v or name in ("name", "units", "description"):
                doc[name] = v
            else:
                doc.pop(name, None)
    if "key" not in errors and doc.get("key") != old.key:
        errors["key"] = "an item's key does not change here: create a new item with the new key"
    if "tags" in data:
        tags = []
        for n, line in enumerate(str(data.get("tags") or "").splitlines(), 1):
            if line.strip():
                k, _, v = line.partition("=")
                if not k.strip() or len(k) > 255 or len(v) > 255:
                    errors["tags"] = f"line {n}: expected TAG=VALUE, each at most 255 characters"
                    break
                tags.append({"tag": k.strip(), "value": v.strip()})
        doc["tags"] = tags
    if errors:
        raise FormErrors(errors)
    try:
        spec = item_from_doc(doc, "item")
        services().repo.upsert_item(host, spec)
    except ConfigError as e:
        name, msg = field_of(str(e), "key")
        raise FormErrors({name: msg}) from None


def form_values(spec: Any) -> dict[str, str]:
    doc = item_to_doc(spec)
    v = {k: str(doc.get(k, "")) for k in ITEM_FORM_FIELDS}
    v.update(delay=spec.delay, history=spec.history, trends=spec.trends)
    v["tags"] = "\n".join(f"{k}={x}" for k, x in spec.tags)
    return v


@bp.route("/config/hosts/<int:hostid>/items/<int:itemid>", methods=["GET", "POST"])
def edit(hostid: int, itemid: int) -> Any:
    host, spec = _load(hostid, itemid)
    d = services().browse.host(hostid)
    errors: dict[str, str] = {}
    values = form_values(spec)
    if request.method == "POST":
        values.update({k: request.form.get(k, "")[:20000] for k in (*ITEM_FORM_FIELDS, "tags")})
        try:
            update_item(host, spec, request.form)
        except FormErrors as e:
            errors = e.errors
        else:
            flash(f"Item {spec.key} updated.")
            return redirect(url_for("hosts.host", hostid=hostid))
    return render_template("item_form.html", d=d, v=values, errors=errors, itemid=itemid), 400 if errors else 200


@bp.post("/config/hosts/<int:hostid>/items/<int:itemid>/delete")
def delete(hostid: int, itemid: int) -> Any:
    _, spec = _load(hostid, itemid)
    services().repo.delete_item(itemid)
    flash(f"Item {spec.key} deleted with the triggers reading it.")
    return redirect(url_for("hosts.host", hostid=hostid))


@bp.post("/config/hosts/<int:hostid>/items/<int:itemid>/check-now")
def check_now(hostid: int, itemid: int) -> Any:
    """The item form's "Execute now": poll the item at once (web/checknow.py), then back to the form."""
    auth.require_host(hostid, write=True)
    row = services().browse.item(itemid)
    if row is None or row.hostid != hostid:
        raise NotFound(f"itemid: host {hostid} has no item {itemid}", "itemid")
    flash(checknow.summary(checknow.check_now([itemid])))
    return redirect(url_for("items.edit", hostid=hostid, itemid=itemid), 303)
