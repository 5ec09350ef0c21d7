"""web.page.get, web.page.regexp, web.page.perf: one HTTP GET, answered as zabbix_agentd 6.0 does.

The host parameter may also be a whole URL (`http://host:port/path`), in which case path and port
must be empty. The answer of web.page.get is the status line and the headers exactly as the server
sent them, then the body. As zabbix_agentd (libcurl with verification off), https does not verify
the server's certificate or name. The whole exchange, not each read, is bounded by Timeout.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any

from vigil.agent.checks import AGENT_VERSION, CheckContext, NotSupported, check
from vigil.agent.checks.vfs import regsub
from vigil.agent.protocol.itemkey import ItemKey

MAX_BODY = 16 * 1024 * 1024  # bound what one check may hold in memory
MAX_REGEXP_OUTPUT = 64 * 1024  # web.page.regexp's default (and largest) length


@dataclass(frozen=True, slots=True)
class Target:
    scheme: str
    host: str
    port: int
    path: str  # with query, without fragment


def _target(key: ItemKey) -> Target:
    host = key.param(0)
    path = key.param(1)
    port_text = key.param(2)
    if not host:
        raise NotSupported("Invalid first parameter.")
    if "://" in host:
        if path or port_text:
            raise NotSupported('Parameters "path" and "port" must be empty if URL is specified in "host".')
        u = urllib.parse.urlsplit(host)
        if u.scheme not in ("http", "https"):
            raise NotSupported(f"Unsupported scheme: {u.scheme}.")
        try:
            port = u.port or (443 if u.scheme == "https" else 80)
        except ValueError:
            raise NotSupported("Invalid first parameter.") from None
        if not u.hostname:
            raise NotSupported("Invalid first parameter.")
        full = u.path or "/"
        if u.query:
            full += "?" + u.query
        return Target(u.scheme, u.hostname, port, full)
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise NotSupported("Invalid third parameter.")
        port = int(port_text)
    else:
        port = 80
    if not path.startswith("/"):
        path = "/" + path
    return Target("http", host, port, path)


def _curl_error(e: BaseException) -> NotSupported:
    """zabbix_agentd reports libcurl's error text; these are the ones a GET can meet."""
    if isinstance(e, socket.gaierror):
        text = "Couldn't resolve host name."
    elif isinstance(e, TimeoutError | socket.timeout):
        text = "Timeout was reached."
    elif isinstance(e, ssl.SSLError):
        text = "SSL connect error."
    elif isinstance(e, ConnectionRefusedError | ConnectionResetError) or isinstance(e, OSError) and e.errno in (
        101, 113, 111,
    ):
        text = "Couldn't connect to server."
    else:
        text = "Failure when receiving data from the peer."
    return NotSupported(f"Cannot perform cURL request: {text}")


class _Recorder:
    """The response's file object: keeps the header bytes as received and enforces the deadline."""

    def __init__(self, fp: Any, deadline: float) -> None:
        self.fp = fp
        self.deadline = deadline
        self.head: list[bytes] | None = []

    def __getattr__(self, name: str) -> Any:  # flush, fileno, ...: the socket file's own
        return getattr(self.fp, name)

    def _check(self) -> None:
        if time.monotonic() > self.deadline:
            raise TimeoutError

    def readline(self, limit: int = -1) -> bytes:
        # piece by piece: a server dripping one byte at a time must not keep one readline() going
        out = bytearray()
        while limit < 0 or len(out) < limit:
            self._check()
            buf = self.fp.peek(1)
            if not buf:
                break
            i = buf.find(b"\n")
            n = i + 1 if i >= 0 else len(buf)
            if limit >= 0:
                n = min(n, limit - len(out))
            out += self.fp.read(n)
            if out.endswith(b"\n"):
                break
        line = bytes(out)
        if self.head is not None:
            self.head.append(line)
        return line

    def read(self, n: int = -1) -> bytes:
        self._check()
        return self.fp.read(n) if n >= 0 else self._read_all()

    def _read_all(self) -> bytes:
        chunks = []
        while chunk := self.read1(65536):
            chunks.append(chunk)
        return b"".join(chunks)

    def read1(self, n: int = -1) -> bytes:
        self._check()
        return self.fp.read1(n)

    def readinto(self, b: Any) -> int:
        self._check()
        return self.fp.readinto(b)

    def peek(self, n: int = 0) -> bytes:
        return self.fp.peek(n)

    def close(self) -> None:
        self.fp.close()

    @property
    def closed(self) -> bool:
        return bool(self.fp.closed)


class _Response(http.client.HTTPResponse):
    deadline = 0.0

    def __init__(self, sock: socket.socket, *args: Any, **kw: Any) -> None:
        super().__init__(sock, *args, **kw)
        self.recorder = _Recorder(self.fp, self.deadline)
        self.fp = self.recorder  # type: ignore[assignment]

    def begin(self) -> None:
        super().begin()
        self.raw_head = b"".join(self.recorder.head or ())
        self.recorder.head = None


def _insecure_context() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def fetch(t: Target, timeout: float) -> tuple[str, str]:
    """(status line and headers ending with a blank line, body) of a GET of `t`."""
    host_header = f"[{t.host}]" if ":" in t.host else t.host
    default_port = 443 if t.scheme == "https" else 80
    if t.port != default_port:
        host_header += f":{t.port}"
    conn: http.client.HTTPConnection
    if t.scheme == "https":
        conn = http.client.HTTPSConnection(t.host, t.port, timeout=timeout, context=_insecure_context())
    else:
        conn = http.client.HTTPConnection(t.host, t.port, timeout=timeout)
    deadline = time.monotonic() + timeout
    conn.response_class = type("Response", (_Response,), {"deadline": deadline})
    try:
        conn.putrequest("GET", t.path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host_header)
        conn.putheader("User-Agent", f"Zabbix {AGENT_VERSION}")
        conn.putheader("Accept", "*/*")
        conn.endheaders()
        resp = conn.getresponse()
        assert isinstance(resp, _Response)
        chunks = []
        size = 0
        while chunk := resp.read1(65536) if hasattr(resp, "read1") else resp.read(65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_BODY:
                raise NotSupported("Cannot perform cURL request: Maximum file size exceeded.")
            if time.monotonic() > deadline:
                raise TimeoutError
    except NotSupported:
        raise
    except (OSError, http.client.HTTPException) as e:
        raise _curl_error(e) from None
    finally:
        conn.close()
    return resp.raw_head.decode("utf-8", errors="replace"), b"".join(chunks).decode("utf-8", errors="replace")


def _too_many(key: ItemKey, n: int) -> None:
    if len(key.params) > n:
        raise NotSupported("Too many parameters.")


@check("web.page.get")
def page_get(key: ItemKey, ctx: CheckContext) -> str:
    _too_many(key, 3)
    head, body = fetch(_target(key), ctx.timeout)
    return (head + body).rstrip("\r\n")


@check("web.page.perf")
def page_perf(key: ItemKey, ctx: CheckContext) -> float:
    _too_many(key, 3)
    target = _target(key)
    start = time.perf_counter()
    fetch(target, ctx.timeout)
    return time.perf_counter() - start


@check("web.page.regexp")
def page_regexp(key: ItemKey, ctx: CheckContext) -> str:
    import re

    from vigil.agent import regex

    _too_many(key, 6)
    if len(key.params) < 4:
        raise NotSupported("Invalid number of parameters.")
    target = _target(key)
    pattern = key.param(3)
    length_text = key.param(4)
    if length_text and not length_text.isdigit():
        raise NotSupported("Invalid fifth parameter.")
    length = min(int(length_text), MAX_REGEXP_OUTPUT) if length_text else MAX_REGEXP_OUTPUT
    template = key.param(5) or "\\0"
    try:
        rx = regex.compile(pattern)
    except re.error as e:
        raise NotSupported(f"Invalid regular expression in the fourth parameter: {e}.") from None
    head, body = fetch(target, ctx.timeout)
    for line in (head + body).split("\n"):
        m = rx.search(line.rstrip("\r"))
        if m is not None:
            return (regsub(m, template) or "")[:length]
    return ""
