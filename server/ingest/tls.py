"""TLS on the ingest listener, as a Zabbix server accepts it, and the per-host rules for it.

A Zabbix peer starts the TLS handshake directly on the TCP connection, so the listener looks at the
first byte: 0x16 opens a TLS handshake, anything else is plain text. When TLS is configured
(VIGIL_TLS_CERT_FILE) each accepted socket is peeked at before it gets its streams, with or without
the SSL context; without TLS the plain path is unchanged (no peek). The listener takes both kinds;
which kind each host accepts is the host's `tls_accept`
(checked per value, as Zabbix's trapper does), with its `tls_issuer`/`tls_subject` compared to the
peer certificate's names in Zabbix's RFC 4514 form.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import socket
import ssl
from dataclasses import dataclass
from typing import Any

from vigil.agent.tls import TLS_HANDSHAKE, TLSError, peer_names, server_context
from vigil.server.config.model import TLS_CERT, TLS_UNENCRYPTED
from vigil.server.config.repo import HostRef, Snapshot

log = logging.getLogger("vigil.ingest.tls")

CONNECTION_NAMES = {TLS_UNENCRYPTED: "unencrypted", TLS_CERT: "TLS with certificate"}


@dataclass(frozen=True, slots=True)
class Peer:
    """How this connection came: its kind (Zabbix's flag) and, with TLS, the certificate's names."""

    kind: int = TLS_UNENCRYPTED
    issuer: str = ""
    subject: str = ""


PLAIN = Peer()
# Set by the connection's handler task; read where the request names its hosts.
CONNECTION: contextvars.ContextVar[Peer] = contextvars.ContextVar("vigil_ingest_connection", default=PLAIN)


def note_connection(writer: asyncio.StreamWriter) -> None:
    """Record this connection's kind for `refusal` (called at the start of the handler task)."""
    obj = writer.get_extra_info("ssl_object")
    if obj is not None:
        issuer, subject = peer_names(obj)
        CONNECTION.set(Peer(TLS_CERT, issuer, subject))


def refusal(ref: HostRef, peer: Peer) -> str | None:
    """Why `ref` does not accept this connection, in Zabbix's words; None when it does."""
    if not ref.tls_accept & peer.kind:
        return f'connection of type "{CONNECTION_NAMES[peer.kind]}" is not allowed for host "{ref.host}"'
    if peer.kind == TLS_CERT:
        if ref.tls_issuer and ref.tls_issuer != peer.issuer:
            return f'certificate issuer does not match for host "{ref.host}"'
        if ref.tls_subject and ref.tls_subject != peer.subject:
            return f'certificate subject does not match for host "{ref.host}"'
    return None


class Admission:
    """Per request: replaces the values of hosts that refuse this connection with `{}` (which every
    value parser counts as failed), logging each refused host once."""

    def __init__(self) -> None:
        self._snap: Snapshot | None = None
        self._strict = False  # some host does not accept plain text, or has issuer/subject rules

    def unchecked(self, snap: Snapshot) -> bool:
        """Whether this connection may send values for every host of `snap` (filter has nothing to do)."""
        if CONNECTION.get() is not PLAIN:
            return False
        if self._snap is not snap:
            self._snap = snap
            self._strict = any(h.tls_accept != TLS_UNENCRYPTED for h in snap.hosts.values())
        return not self._strict

    def filter(self, snap: Snapshot, data: list[Any], peer: str) -> list[Any]:
        if self.unchecked(snap):
            return data  # the plain hot path: nothing to check
        conn = CONNECTION.get()
        hosts = snap.hosts
        verdicts: dict[str, str | None] = {}
        out = data
        for i, d in enumerate(data):
            host = d.get("host") if isinstance(d, dict) else None
            if not isinstance(host, str):
                continue
            if host not in verdicts:
                ref = hosts.get(host)
                verdicts[host] = refusal(ref, conn) if ref is not None else None
                if verdicts[host]:
                    log.warning("from %s: %s", peer, verdicts[host])
            if verdicts[host]:
                if out is data:
                    out = list(data)
                out[i] = {}
        return out


def context_from_settings(ca_file: str, cert_file: str, key_file: str, crl_file: str) -> ssl.SSLContext:
    try:
        return server_context(ca_file, cert_file, key_file, crl_file)
    except TLSError as e:
        raise RuntimeError(f"{e} (VIGIL_TLS_*)") from None


async def open_tls(conn: socket.socket, context: ssl.SSLContext,
                   timeout: float) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
    """Streams over an accepted socket: TLS when its first byte opens a handshake, else plain text.
    None (the socket closed, the reason logged) when nothing came or the handshake failed."""
    loop = asyncio.get_running_loop()
    conn.setblocking(False)
    peer = _name(conn)
    try:
        async with asyncio.timeout(timeout):
            first = await _peek(loop, conn)
    except (TimeoutError, OSError) as e:
        conn.close()
        if isinstance(e, TimeoutError):
            log.warning("%s sent nothing within %g s: connection closed", peer, timeout)
        return None
    if not first:
        conn.close()
        return None
    if first[0] != TLS_HANDSHAKE:
        return await asyncio.open_connection(sock=conn)
    reader = asyncio.StreamReader(limit=2**16)
    protocol = asyncio.StreamReaderProtocol(reader)
    try:
        transport, _ = await loop.connect_accepted_socket(lambda: protocol, conn, ssl=context,
                                                          ssl_handshake_timeout=timeout)
    except (OSError, TimeoutError, ssl.SSLError) as e:
        conn.close()
        why = f"invalid peer certificate: {e.verify_message}" if isinstance(e, ssl.SSLCertVerificationError) \
            else (getattr(e, "reason", None) or str(e) or type(e).__name__)
        log.warning("failed to accept an incoming connection: from %s: %s", peer, why)
        return None
    return reader, asyncio.StreamWriter(transport, protocol, reader, loop)


def _name(conn: socket.socket) -> str:
    try:
        p = conn.getpeername()
    except OSError:
        return "?"
    return f"{p[0]}:{p[1]}"


async def _peek(loop: asyncio.AbstractEventLoop, conn: socket.socket) -> bytes:
    while True:
        try:
            return conn.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            pass
        ready = loop.create_future()
        loop.add_reader(conn.fileno(), _wake, ready)
        try:
            await ready
        finally:
            loop.remove_reader(conn.fileno())


def _wake(ready: asyncio.Future[None]) -> None:
    if not ready.done():  # the reader may fire again before it is removed
        ready.set_result(None)
