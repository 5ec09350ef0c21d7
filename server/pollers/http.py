"""HTTP agent items (type 19): one request per poll, as Zabbix 6.0's HTTP agent makes it.

The URL (user macros and {HOST.*} resolved by the configuration) gets the query fields appended;
the method (GET, POST, PUT, HEAD), headers and body are sent as configured, with basic or bearer
authentication. The reply's status must be one of `status_codes` ("200,201,210-299"); redirects
are followed (at most 10) unless `follow_redirects` is off. HTTPS verifies the server's certificate
against VIGIL_SSL_CA_FILE (else the system's CAs) when `verify_peer` is on, and its name when
`verify_host` is on; a client certificate is sent when `ssl_cert_file` is set. The value is the
body, the headers, or both (headers, an empty line, the body), by `retrieve_mode`.

Any failure (connection, TLS, time-out, an unexpected status, a body over the limit) makes the item
not supported with the reason; HTTP agent items do not mark their host unreachable, as in Zabbix.
Requests run on threads (urllib), at most VIGIL_HTTP_POLLERS at once.
"""

from __future__ import annotations

import asyncio
import base64
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from http.client import HTTPException, HTTPResponse

from vigil.server.config.durations import seconds
from vigil.server.config.model import AUTH_TYPES, HTTP_METHOD_LABELS, PollSpec
from vigil.server.config.repo import PollItem
from vigil.server.pollers import NotSupported

MAX_BODY = 16 * 1024 * 1024
MAX_REDIRECTS = 10
_pool: ThreadPoolExecutor | None = None
_ca_file = ""


def configure(threads: int = 16, ca_file: str = "") -> None:
    global _pool, _ca_file
    if _pool is not None:
        _pool.shutdown(wait=False, cancel_futures=True)
    _pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="http-poller")
    _ca_file = ca_file


def shutdown() -> None:
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None


def item_timeout(item: PollItem, default: float) -> float:
    try:
        return float(seconds(item.poll.timeout))
    except ValueError:
        return default


def status_matches(code: int, spec: str) -> bool:
    """Whether `code` is in a list like "200,201,210-299" (empty: any code)."""
    spec = spec.strip()
    if not spec:
        return True
    for part in spec.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            if int(lo) <= code <= int(hi or lo):
                return True
        except ValueError:
            raise NotSupported(f"Invalid status_codes {spec!r}: expected codes and ranges like 200,201,210-299") \
                from None
    return False


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: str  # the status line and header lines as received, CRLF-separated
    body: bytes


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:  # type: ignore[override]
        return None


class _Redirects(urllib.request.HTTPRedirectHandler):
    max_redirections = MAX_REDIRECTS


def build_request(p: PollSpec) -> urllib.request.Request:
    url = p.url
    if "://" not in url:
        url = "http://" + url
    scheme = url.split("://", 1)[0].lower()
    if scheme not in ("http", "https"):
        raise NotSupported(f"Unsupported URL scheme {scheme!r}: only http:// and https:// can be requested.")
    if p.query_fields:
        url += ("&" if "?" in url else "?") + urllib.parse.urlencode(p.query_fields)
    method = HTTP_METHOD_LABELS.get(p.method, "GET")
    data = p.body.encode() if p.body and method != "HEAD" else None
    req = urllib.request.Request(url, data=data, method=method)
    for name, value in p.headers:
        req.add_header(name, value)
    if p.auth == AUTH_TYPES["basic"]:
        token = base64.b64encode(f"{p.username}:{p.password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    elif p.auth == AUTH_TYPES["bearer"]:
        req.add_header("Authorization", f"Bearer {p.password}")
    if data is not None and not req.has_header("Content-type"):
        req.add_header("Content-Type", "application/x-www-form-urlencoded" if "=" in p.body else "text/plain")
    req.add_header("User-Agent", "Vigil")
    return req


def _context(p: PollSpec) -> ssl.SSLContext:
    if p.verify_peer:
        ctx = ssl.create_default_context(cafile=_ca_file or None)
        ctx.check_hostname = p.verify_host
    else:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if p.ssl_cert_file:
        try:
            ctx.load_cert_chain(p.ssl_cert_file, p.ssl_key_file or None)
        except (OSError, ssl.SSLError) as e:
            raise NotSupported(f"Cannot load the client certificate {p.ssl_cert_file!r}: {e}") from None
    return ctx


def fetch(p: PollSpec, timeout: float) -> Reply:
    """Make the request (blocking); raises NotSupported with the reason on any failure."""
    req = build_request(p)
    handlers: list[urllib.request.BaseHandler] = [
        urllib.request.HTTPSHandler(context=_context(p)) if req.type == "https" else urllib.request.HTTPHandler(),
        _Redirects() if p.follow_redirects else _NoRedirect(),
        urllib.request.ProxyHandler({}),
    ]
    opener = urllib.request.build_opener(*handlers)
    try:
        resp = opener.open(req, timeout=timeout)
    except urllib.error.HTTPError as e:  # a status urllib does not like: still a reply to judge
        if p.follow_redirects and e.code in (301, 302, 303, 307, 308):
            e.close()
            raise NotSupported(f"Too many redirects from {req.full_url} (more than {MAX_REDIRECTS}, or a loop): "
                               f"{e.reason}") from None
        resp = e
    except urllib.error.URLError as e:
        reason = e.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            raise NotSupported(f"Cannot verify the TLS certificate of {req.host}: {reason.verify_message} "
                               "(set VIGIL_SSL_CA_FILE to the CA that signed it, or verify_peer: false)") from None
        if isinstance(reason, TimeoutError):
            raise NotSupported(f"Timeout was reached: no reply from {req.host} within {timeout:g} s") from None
        raise NotSupported(f"Cannot connect to {req.full_url}: {reason}") from None
    except TimeoutError:
        raise NotSupported(f"Timeout was reached: no reply from {req.host} within {timeout:g} s") from None
    except (OSError, HTTPException, ValueError) as e:
        raise NotSupported(f"Request to {req.full_url} failed: {e}") from None
    try:
        with resp:
            body = resp.read(MAX_BODY + 1) if req.get_method() != "HEAD" else b""
            if len(body) > MAX_BODY:
                raise NotSupported(f"The reply body is larger than {MAX_BODY} bytes.")
            status = resp.status if isinstance(resp, HTTPResponse) else resp.code
            head = _head(resp, status)
    except TimeoutError:
        raise NotSupported(f"Timeout was reached while reading the reply of {req.host}") from None
    except (OSError, HTTPException) as e:
        raise NotSupported(f"Cannot read the reply of {req.full_url}: {e}") from None
    return Reply(int(status or 0), head, body)


def _head(resp: object, status: int) -> str:
    reason = getattr(resp, "reason", "") or ""
    version = {10: "1.0", 11: "1.1"}.get(getattr(resp, "version", 11), "1.1")
    headers = getattr(resp, "headers", None)
    lines = [f"HTTP/{version} {status} {reason}".rstrip()]
    if headers is not None:
        lines += [f"{k}: {v}" for k, v in headers.items()]
    return "\r\n".join(lines) + "\r\n"


def value_of(p: PollSpec, reply: Reply) -> str:
    if not status_matches(reply.status, p.status_codes):
        raise NotSupported(f"Response code \"{reply.status}\" did not match any of the required status codes "
                           f"\"{p.status_codes}\"")
    charset = "utf-8"
    m = re.search(r"(?im)^content-type:.*charset=\"?([\w.-]+)", reply.headers)
    if m:
        charset = m.group(1)
    try:
        body = reply.body.decode(charset, errors="replace")
    except LookupError:
        body = reply.body.decode("utf-8", errors="replace")
    if p.retrieve_mode == 1:
        return reply.headers
    if p.retrieve_mode == 2:
        return reply.headers + "\r\n" + body
    return body


async def poll(item: PollItem, timeout: float) -> str:
    if _pool is None:
        configure()
    loop = asyncio.get_running_loop()
    reply = await loop.run_in_executor(_pool, fetch, item.poll, timeout)
    return value_of(item.poll, reply)
