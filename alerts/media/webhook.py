"""Webhook: an HTTP POST (or PUT, PATCH, DELETE; GET without a body) of a JSON body (urllib, no redirects followed).

Parameters: url, method (POST), headers {name: value}, body (the template; the alert's message is
its rendered text), timeout, verify_tls (true), ca_file. Without a body template the request is a
JSON object of the alert: {"alert_id", "sendto", "subject", "message"}. Every request carries
`X-Vigil-Alert-Id: ID`, the same on every try. A status outside 2xx is a failure, reported with the
status and the start of the answer.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Any

from vigil.alerts.media import MediaError, Message, param_bool, param_str, timeout_of
from vigil.server.store.alertlog import MediaType

METHODS = ("POST", "PUT", "PATCH", "DELETE", "GET")
BODY_IN_ERROR = 200  # characters of the answer quoted in the error
READ_LIMIT = 64 * 1024


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # a 3xx then surfaces as an HTTPError: not delivered


def body_of(media: MediaType, msg: Message) -> bytes:
    if "body" in media.params and str(media.params["body"]).strip():
        return msg.message.encode()
    return json.dumps({"alert_id": msg.alertid, "sendto": msg.sendto, "subject": msg.subject,
                       "message": msg.message}, ensure_ascii=False).encode()


def _headers(media: MediaType, msg: Message) -> dict[str, str]:
    raw = media.params.get("headers") or {}
    if isinstance(raw, list):  # [{name, value}] as Zabbix exports them
        try:
            raw = {h["name"]: h["value"] for h in raw}
        except (TypeError, KeyError):
            raise MediaError(media, "parameter 'headers': expected {name: value} or [{name, value}]",
                             permanent=True) from None
    if not isinstance(raw, dict):
        raise MediaError(media, "parameter 'headers': expected {name: value}", permanent=True)
    headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "vigil-webhook"}
    for k, v in raw.items():
        if any(c in f"{k}{v}" for c in "\r\n") or not str(k).strip():
            raise MediaError(media, f"parameter 'headers': header {k!r} holds a line break or is empty",
                             permanent=True)
        headers = {h: x for h, x in headers.items() if h.lower() != str(k).lower()}
        headers[str(k)] = str(v)
    headers["X-Vigil-Alert-Id"] = str(msg.alertid)
    return headers


def send(media: MediaType, msg: Message) -> None:
    url = param_str(media, "url")
    if not url.startswith(("http://", "https://")):
        raise MediaError(media, f"parameter 'url': expected http:// or https://, got {url!r}", permanent=True)
    method = param_str(media, "method", "POST").upper()
    if method not in METHODS:
        raise MediaError(media, f"parameter 'method': expected {', '.join(METHODS)}, got {method!r}",
                         permanent=True)
    headers = _headers(media, msg)
    body: bytes | None = body_of(media, msg) if method != "GET" else None
    if body is not None and "json" in next((v for k, v in headers.items() if k.lower() == "content-type"), "").lower():
        try:
            json.loads(body)
        except ValueError as e:
            raise MediaError(media, f"the rendered body is not JSON ({e}); fix the media type's body template",
                             permanent=True) from None
    timeout = timeout_of(media)
    ctx = ssl.create_default_context()
    if media.params.get("ca_file"):
        try:
            ctx.load_verify_locations(cafile=str(media.params["ca_file"]))
        except (OSError, ssl.SSLError) as e:
            raise MediaError(media, f"parameter 'ca_file': cannot read it: {e}", permanent=True) from None
    if not param_bool(media, "verify_tls", True):
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    opener = urllib.request.build_opener(_NoRedirect(), urllib.request.HTTPSHandler(context=ctx))
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    where = f"{method} {url}"
    try:
        with opener.open(request, timeout=timeout) as r:
            r.read(READ_LIMIT)
    except urllib.error.HTTPError as e:
        try:
            text = e.read(BODY_IN_ERROR * 4).decode(errors="replace")
        except OSError:
            text = ""
        text = " ".join(text.split())[:BODY_IN_ERROR]
        raise MediaError(media, f"{where} answered {e.code} {e.reason}" + (f": {text}" if text else "")) from None
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, TimeoutError):
            raise MediaError(media, f"{where}: no answer within {timeout:g} s") from None
        raise MediaError(media, f"{where}: {reason}") from None
    except TimeoutError:
        raise MediaError(media, f"{where}: no answer within {timeout:g} s") from None
    except OSError as e:
        raise MediaError(media, f"{where}: {e}") from None
