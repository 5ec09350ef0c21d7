"""A real HTTP(S) test server for HTTP agent items: status codes, redirects, auth, echo, slow replies."""

from __future__ import annotations

import base64
import http.server
import json
import ssl
import threading
import time
from pathlib import Path


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        path = self.path.split("?", 1)[0]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if path == "/ok":
            self._send(200, b"hello", {"X-Test": "yes", "Content-Type": "text/plain; charset=utf-8"})
        elif path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            self._send(code, f"status {code}".encode())
        elif path == "/redirect":
            self._send(302, b"moved", {"Location": "/ok"})
        elif path == "/loop":
            self._send(302, b"again", {"Location": "/loop"})
        elif path == "/basic":
            want = "Basic " + base64.b64encode(b"alice:s3cret").decode()
            if self.headers.get("Authorization") == want:
                self._send(200, b"welcome alice")
            else:
                self._send(401, b"who are you", {"WWW-Authenticate": 'Basic realm="t"'})
        elif path == "/bearer":
            if self.headers.get("Authorization") == "Bearer tok-123":
                self._send(200, b"token ok")
            else:
                self._send(401, b"no token")
        elif path == "/echo":
            self._send(200, json.dumps({"method": self.command, "path": self.path,
                                        "headers": dict(self.headers.items()),
                                        "body": body.decode()}).encode(), {"Content-Type": "application/json"})
        elif path == "/slow":
            time.sleep(float(self.headers.get("X-Delay", "3")))
            self._send(200, b"finally")
        elif path == "/metrics":
            self._send(200, Path(self.server.metrics_file).read_bytes() if self.server.metrics_file else b"",
                       {"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})
        else:
            self._send(404, b"not found")

    do_GET = do_POST = do_PUT = do_HEAD = _handle


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    metrics_file: str = ""


def start(cert: Path | None = None, key: Path | None = None) -> Server:
    srv = Server(("127.0.0.1", 0), Handler)
    if cert is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


def stop(srv: Server) -> None:
    srv.shutdown()
    srv.server_close()
