"""Host and item forms: validation into field errors, then the change through ConfigRepo.

The same code serves the HTML forms and the JSON API, so both refuse the same input the same way.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vigil.server.config.browse import Browse
from vigil.server.config.model import ConfigError, doc_from_dict, item_from_doc
from vigil.server.config.repo import ConfigRepo
from vigil.web.errors import NotFound

HOST_RE = re.compile(r"[0-9A-Za-z_. \-]+")
MACRO_RE = re.compile(r"\{\$[A-Z0-9_.]+\}")
DNS_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9\-.]{0,253}[A-Za-z0-9])?")
_FIELD = re.compile(r"^(?:hosts\[\d+\]|item)\.(\w+)")


class FormErrors(Exception):
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


def field_of(message: str, default: str) -> tuple[str, str]:
    """('key', 'the rest') from a ConfigError such as "item.key: 'x[' is not a valid item key"."""
    m = _FIELD.match(message)
    if m:
        return m.group(1), message[m.end():].lstrip(":[]0123456789. ").strip() or message
    return default, message


def saved_or_errors(save: Callable[[], int], id_field: str) -> tuple[int | None, dict[str, str]]:
    """(the saved row's id, {}) or (None, {field: message}) from the ConfigError that `save` raised.

    An error on `id_field` (the row was deleted meanwhile) is a 404, not a field error.
    """
    try:
        return save(), {}
    except ConfigError as e:
        name, _, msg = str(e).partition(": ")
        if name == id_field:
            raise NotFound(str(e), id_field) from None
        return None, {name: msg}


@dataclass
class HostForm:
    host: str = ""
    name: str = ""
    groups: list[str] = field(default_factory=list)
    templates: list[str] = field(default_factory=list)
    macros: dict[str, str] = field(default_factory=dict)
    description: str = ""
    enabled: bool = True
    ip: str = ""
    dns: str = ""
    port: str = "10050"
    tags: list[tuple[str, str]] = field(default_factory=list)
    proxy: str | None = None  # the proxy monitoring the host; '': the server; None: left as it is
    proxy_group: str | None = None  # the proxy group monitoring it ('': none); None: left as it is

    @property
    def macros_text(self) -> str:
        return "\n".join(f"{k}={v}" for k, v in self.macros.items())

    @property
    def tags_text(self) -> str:
        return "\n".join(f"{k}={v}" if v else k for k, v in self.tags)


def parse_tags(v: Any, errors: dict[str, str], name: str = "tags") -> list[tuple[str, str]]:
    """Tags from TAG=VALUE lines (a form) or [{tag, value}] / {tag: value} (JSON); each part at most 255."""
    out: list[tuple[str, str]] = []
    if v is None or v == "":
        return out
    if isinstance(v, str):
        pairs = []
        for n, line in enumerate(v.splitlines(), 1):
            if line.strip():
                k, _, val = line.partition("=")
                pairs.append((n, k.strip(), val.strip()))
    elif isinstance(v, dict):
        pairs = [(i + 1, str(k), "" if x is None else str(x)) for i, (k, x) in enumerate(v.items())]
    elif isinstance(v, list) and all(isinstance(x, dict) and isinstance(x.get("tag"), str) for x in v):
        pairs = [(i + 1, x["tag"].strip(), str(x.get("value", ""))) for i, x in enumerate(v)]
    else:
        errors[name] = "expected TAG=VALUE lines, [{tag, value}] or {tag: value}"
        return out
    for n, k, val in pairs:
        if not k or len(k) > 255 or len(val) > 255:
            errors[name] = f"line {n}: expected TAG=VALUE, a tag of 1 to 255 characters and a value of at most 255"
            return []
        out.append((k, val))
    if len(out) > 500:
        errors[name] = "at most 500 tags"
    return out


def text_field(v: Any, name: str, errors: dict[str, str], limit: int, required: bool = False) -> str:
    """A form's text field, stripped; a non-text value, one over `limit` (cut to it) or a missing required
    one is an error under `name`."""
    if v is None:
        v = ""
    if not isinstance(v, str):
        errors[name] = "expected text"
        return ""
    v = v.strip()
    if len(v) > limit:
        errors[name] = f"longer than {limit} characters"
        return v[:limit]
    if required and not v:
        errors[name] = "required"
    return v


def _names(v: Any, name: str, errors: dict[str, str]) -> list[str]:
    if v is None:
        return []
    if isinstance(v, str):
        v = [x for x in re.split(r"[,\n]", v)]
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        errors[name] = "expected a list of names"
        return []
    out = []
    for x in v:
        x = x.strip()
        if not x:
            continue
        if len(x) > 255:
            errors[name] = "a name longer than 255 characters"
            continue
        if x not in out:
            out.append(x)
    return out


def parse_host(data: Mapping[str, Any], *, lists: Mapping[str, list[str]] | None = None) -> tuple[HostForm, dict]:
    """A HostForm and its errors from form fields or a JSON object. `lists`: multi-valued form fields."""
    errors: dict[str, str] = {}
    f = HostForm()
    f.host = text_field(data.get("host"), "host", errors, 128, required=True)
    if f.host and "host" not in errors and not HOST_RE.fullmatch(f.host):
        errors["host"] = "only letters, digits, spaces, '.', '_' and '-'"
    f.name = text_field(data.get("name"), "name", errors, 128)
    groups = lists["groups"] if lists is not None and "groups" in lists else data.get("groups")
    f.groups = _names(groups, "groups", errors)
    if lists is not None and data.get("new_group"):
        f.groups += [g for g in _names(data.get("new_group"), "new_group", errors) if g not in f.groups]
    if not f.groups and "groups" not in errors:
        errors["groups"] = "choose at least one host group"
    templates = lists["templates"] if lists is not None and "templates" in lists else data.get("templates")
    f.templates = _names(templates, "templates", errors)
    f.description = text_field(data.get("description"), "description", errors, 10000)
    status = data.get("status", "enabled")
    if lists is not None:
        status = "enabled" if data.get("enabled") else "disabled"
    if status not in ("enabled", "disabled"):
        errors["status"] = "enabled or disabled"
    f.enabled = status == "enabled"
    macros = data.get("macros")
    if isinstance(macros, str):
        parsed: dict[str, str] = {}
        for n, line in enumerate(macros.splitlines(), 1):
            if not line.strip():
                continue
            k, sep, v = line.partition("=")
            if not sep or not MACRO_RE.fullmatch(k.strip()):
                errors["macros"] = f"line {n}: expected {{$NAME}}=value with NAME in A-Z, 0-9, _ and ."
                break
            parsed[k.strip()] = v.strip()
        f.macros = parsed
    elif isinstance(macros, dict):
        for k, v in macros.items():
            if not isinstance(k, str) or not MACRO_RE.fullmatch(k) or not isinstance(v, str | int | float):
                errors["macros"] = f"{str(k)[:40]!r}: expected {{$NAME}}: value"
                break
        else:
            f.macros = {k: str(v) for k, v in macros.items()}
    elif macros is not None:
        errors["macros"] = "expected {$NAME}=value lines or an object"
    if len(f.macros_text) > 65535:
        errors["macros"] = "longer than 65535 characters"
    f.ip = text_field(data.get("ip"), "ip", errors, 64)
    if f.ip and "ip" not in errors:
        try:
            ipaddress.ip_address(f.ip)
        except ValueError:
            errors["ip"] = f"{f.ip[:40]!r} is not an IPv4 or IPv6 address"
    f.dns = text_field(data.get("dns"), "dns", errors, 255)
    if f.dns and "dns" not in errors and not DNS_RE.fullmatch(f.dns):
        errors["dns"] = "not a DNS name"
    f.tags = parse_tags(data.get("tags"), errors)
    if data.get("proxy") is not None:
        f.proxy = text_field(data.get("proxy"), "proxy", errors, 128)
    if data.get("proxy_group") is not None:
        f.proxy_group = text_field(data.get("proxy_group"), "proxy_group", errors, 128)
    f.port = text_field(data.get("port", "10050"), "port", errors, 64) or "10050"
    if "port" not in errors and not MACRO_RE.fullmatch(f.port):
        if not f.port.isdigit() or not 1 <= int(f.port) <= 65535:
            errors["port"] = "a port from 1 to 65535 or a {$MACRO}"
    return f, errors


def save_host(repo: ConfigRepo, browse: Browse, f: HostForm, hostid: int | None, *,
              may_create_groups: bool) -> int:
    """Create (hostid None) or update the host; FormErrors with the fields at fault, nothing changed."""
    errors: dict[str, str] = {}
    existing = {name for _, name in browse.host_groups()}
    new_groups = [g for g in f.groups if g not in existing]
    if new_groups and not may_create_groups:
        errors["groups"] = f"no host group named {new_groups[0]!r} (only a super admin creates host groups)"
    templates = {name for _, name in browse.templates()}
    missing = [x for x in f.templates if x not in templates]
    if missing:
        errors["templates"] = f"no template named {missing[0]!r}"
    other = browse.host_id(f.host)
    if other is not None and other != hostid:
        errors["host"] = f"a host named {f.host!r} exists already"
    elif other is None and repo.host_exists(f.host):
        errors["host"] = f"{f.host!r} is the name of a template"
    if errors:
        raise FormErrors(errors)
    doc = {"host": f.host, "name": f.name, "groups": f.groups, "templates": f.templates, "macros": f.macros,
           "description": f.description, "status": "enabled" if f.enabled else "disabled",
           "tags": [{"tag": k, "value": v} for k, v in f.tags]}
    if f.proxy_group:  # the balancer picks its proxy: an empty proxy must not unassign it on every save
        doc["proxy_group"] = f.proxy_group
        if f.proxy:
            doc["proxy"] = f.proxy  # refused: a proxy or a proxy group, not both
    else:
        if f.proxy is not None:
            doc["proxy"] = f.proxy
        if f.proxy_group == "" and not f.proxy:  # given a proxy, a host leaves its group anyway
            doc["proxy_group"] = ""
    try:
        spec = doc_from_dict({"hosts": [doc]})
        if hostid is not None:
            current = browse.host(hostid)
            if current is not None and current.row.host != f.host:
                browse.rename_host(hostid, f.host)
        repo.apply(spec)
    except ConfigError as e:
        name, msg = field_of(str(e), "host")
        raise FormErrors({name: msg}) from None
    new_id = browse.host_id(f.host)
    assert new_id is not None
    browse.set_agent_interface(new_id, f.ip, f.dns, f.port)
    return new_id


ITEM_FORM_FIELDS = ("key", "name", "type", "value_type", "units", "delay", "history", "trends", "description")


def save_item(repo: ConfigRepo, browse: Browse, host: str, hostid: int, data: Mapping[str, Any], *,
              new: bool) -> int:
    errors: dict[str, str] = {}
    doc: dict[str, Any] = {}
    limits = {"key": 2048, "name": 255, "units": 255, "description": 10000}
    for name in ITEM_FORM_FIELDS:
        v = text_field(data.get(name), name, errors, limits.get(name, 64), required=name == "key")
        if v:
            doc[name] = v
    tags_text = data.get("tags") or ""
    if isinstance(tags_text, str) and tags_text.strip():
        tags = []
        for n, line in enumerate(tags_text.splitlines(), 1):
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
    except ConfigError as e:
        name, msg = field_of(str(e), "key")
        raise FormErrors({name: msg}) from None
    if new and browse.items(hostids=[hostid], keys=[spec.key], limit=1).total:
        raise FormErrors({"key": f"the host has an item with key {spec.key!r} already"})
    try:
        repo.upsert_item(host, spec)
    except ConfigError as e:
        name, msg = field_of(str(e), "key")
        raise FormErrors({name: msg}) from None
    rows = browse.items(hostids=[hostid], keys=[spec.key], limit=1).rows
    return rows[0].itemid
