"""TLS with certificates, as zabbix_agentd, zabbix_get and zabbix_sender speak it (standard `ssl` only).

Zabbix starts the TLS handshake directly on the TCP connection (no ZBXD before it); a listener tells
TLS from plain text by the first byte (0x16, a TLS handshake record, against the 'Z' of ZBXD). Both
ends present a certificate signed by a CA of TLSCAFile, optionally checked against TLSCRLFile; host
names are not checked. TLSServerCertIssuer/TLSServerCertSubject are compared as strings with the
peer's names in RFC 4514 form (last RDN first, `CN=agent1,OU=Ops,O=Example,DC=example,DC=com`), as
Zabbix prints them.

PSK is refused: Python before 3.13 has no PSK callbacks in `ssl`, and the agent takes no dependency
for it. The cipher parameters for TLS 1.3 cannot be set through `ssl` either and are refused.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # ssl costs an agent ~4.5 MB of RSS: imported when TLS is configured
    import ssl

TLS_PARAMETERS = frozenset({
    "TLSAccept", "TLSCAFile", "TLSCRLFile", "TLSCertFile", "TLSCipherAll", "TLSCipherAll13",
    "TLSCipherCert", "TLSCipherCert13", "TLSCipherPSK", "TLSCipherPSK13", "TLSConnect", "TLSKeyFile",
    "TLSPSKFile", "TLSPSKIdentity", "TLSServerCertIssuer", "TLSServerCertSubject",
})
UNENCRYPTED, PSK, CERT = "unencrypted", "psk", "cert"
MODES = (UNENCRYPTED, PSK, CERT)
TLS_HANDSHAKE = 0x16  # the first byte of a TLS ClientHello record
PSK_REASON = ("PSK is not supported by Vigil: Python's ssl module before 3.13 has no PSK callbacks "
              "(this runs on Python {0}); use certificates (cert) or unencrypted")
_NEEDS = (("TLSCAFile", "TLSCertFile"), ("TLSCRLFile", "TLSCertFile"), ("TLSCertFile", "TLSKeyFile"),
          ("TLSCertFile", "TLSCAFile"), ("TLSKeyFile", "TLSCertFile"), ("TLSServerCertIssuer", "TLSCertFile"),
          ("TLSServerCertSubject", "TLSCertFile"))

# OpenSSL's short names of the attributes Python's ssl reports by their long names.
SHORT_NAMES = {
    "commonName": "CN", "countryName": "C", "localityName": "L", "stateOrProvinceName": "ST",
    "organizationName": "O", "organizationalUnitName": "OU", "domainComponent": "DC", "surname": "SN",
    "givenName": "GN", "streetAddress": "street", "userId": "UID",
    "jurisdictionCountryName": "jurisdictionC", "jurisdictionStateOrProvinceName": "jurisdictionST",
    "jurisdictionLocalityName": "jurisdictionL",
}


class TLSError(ConnectionError):
    """A TLS connection refused or failed; the message says why, in Zabbix's words where it has them.
    A ConnectionError, so callers that retry failed connections retry these too."""


def psk_refusal() -> str:
    import sys

    return PSK_REASON.format(".".join(map(str, sys.version_info[:2])))


def check_tls_parameter(name: str, value: str) -> None:
    """Raise ValueError (the reason and what to do) for a line that cannot be honoured."""
    if name == "TLSConnect":
        if value not in MODES:
            raise ValueError(f'invalid value of "{name}" parameter: {value!r} (expected unencrypted or cert)')
        if value == PSK:
            raise ValueError(f"{name}=psk: {psk_refusal()}")
    elif name == "TLSAccept":
        modes = [m.strip() for m in value.split(",")]
        if not value or any(m not in MODES for m in modes):
            raise ValueError(f'invalid value of "{name}" parameter: {value!r} '
                             "(expected a comma-separated list of unencrypted, cert)")
        if PSK in modes:
            raise ValueError(f"{name}={value}: {psk_refusal()}")
    elif name in ("TLSPSKIdentity", "TLSPSKFile", "TLSCipherPSK", "TLSCipherPSK13"):
        raise ValueError(f"{name}: {psk_refusal()}; remove {name}")
    elif name in ("TLSCipherCert13", "TLSCipherAll13"):
        raise ValueError(f"{name}: Python's ssl module cannot set TLS 1.3 cipher suites; remove {name} "
                         "(the defaults of OpenSSL are used)")
    elif not value:
        raise ValueError(f'parameter "{name}" must not be empty')


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """The TLS parameters of one configuration; `load()` reads the files into contexts."""

    connect: str = UNENCRYPTED
    accept: frozenset[str] = frozenset({UNENCRYPTED})
    ca_file: str = ""
    crl_file: str = ""
    cert_file: str = ""
    key_file: str = ""
    server_cert_issuer: str = ""
    server_cert_subject: str = ""
    ciphers: str = ""  # TLSCipherCert, else TLSCipherAll (OpenSSL cipher string, TLS 1.2)
    _contexts: dict[str, ssl.SSLContext] = field(default_factory=dict, compare=False, repr=False)

    @property
    def uses_cert(self) -> bool:
        return self.connect == CERT or CERT in self.accept

    def load(self) -> None:
        """Read the CA, CRL, certificate and key now (before leaving root). Raises TLSError."""
        if self.uses_cert and not self._contexts:
            self._contexts["client"] = client_context(self.ca_file, self.cert_file, self.key_file,
                                                      self.crl_file, self.ciphers)
            self._contexts["server"] = server_context(self.ca_file, self.cert_file, self.key_file,
                                                      self.crl_file, self.ciphers)

    def connector(self) -> Connector | None:
        """How to wrap outgoing connections (TLSConnect), or None for plain text."""
        if self.connect != CERT:
            return None
        self.load()
        return Connector(self._contexts["client"], self.server_cert_issuer, self.server_cert_subject)

    def acceptor(self) -> Acceptor | None:
        """How to accept incoming connections (TLSAccept), or None when only plain text is accepted."""
        if CERT not in self.accept:
            return None
        self.load()
        return Acceptor(self._contexts["server"], UNENCRYPTED in self.accept,
                        self.server_cert_issuer, self.server_cert_subject)


def config_from(values: Mapping[str, str], where: Mapping[str, tuple[str, int]]) -> TLSConfig:
    """A TLSConfig from the TLS* values of a config file, checked as zabbix_agentd checks them.

    `where` gives each parameter's (file, line) for the message; raises TLSConfigError."""
    connect = values.get("TLSConnect", UNENCRYPTED)
    accept = frozenset(m.strip() for m in values.get("TLSAccept", UNENCRYPTED).split(","))

    def fail(name: str, message: str) -> TLSConfigError:
        path, line = where.get(name, (None, None))
        return TLSConfigError(message, path, line)

    cert_file = values.get("TLSCertFile", "")
    for name, needs in _NEEDS:  # in zabbix_agentd's order, so the first complaint is the same
        if values.get(name) and not values.get(needs):
            raise fail(name, f'parameter "{name}" is defined, but "{needs}" is not defined')
    if cert_file and connect != CERT and CERT not in accept:
        raise fail("TLSCertFile", 'parameter "TLSCertFile" is defined, but "TLSConnect" is not defined '
                                  "(set TLSConnect or TLSAccept to cert)")
    for name in ("TLSConnect", "TLSAccept"):
        mode = connect if name == "TLSConnect" else (CERT if CERT in accept else "")
        if mode == CERT and not cert_file:
            raise fail(name, f'parameter "{name}" value requires "TLSCertFile", but it is not defined')
    for name in ("TLSCipherCert", "TLSCipherAll"):
        if values.get(name):
            import ssl

            try:
                ssl.create_default_context().set_ciphers(values[name])
            except ssl.SSLError:
                raise fail(name, f'invalid value of "{name}" parameter: no cipher can be selected from '
                                 f"{values[name]!r}") from None
    return TLSConfig(connect, accept, values.get("TLSCAFile", ""), values.get("TLSCRLFile", ""), cert_file,
                     values.get("TLSKeyFile", ""), values.get("TLSServerCertIssuer", ""),
                     values.get("TLSServerCertSubject", ""),
                     values.get("TLSCipherCert", "") or values.get("TLSCipherAll", ""))


class TLSConfigError(ValueError):
    def __init__(self, message: str, path: str | None, line: int | None) -> None:
        super().__init__(message)
        self.path, self.line = path, line


# --- contexts ------------------------------------------------------------------------------------


def _context(purpose: int, ca_file: str, cert_file: str, key_file: str, crl_file: str, ciphers: str) -> ssl.SSLContext:
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT if purpose == 0 else ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2  # as Zabbix: TLS 1.2 and up
    ctx.check_hostname = False  # Zabbix checks the CA and, if asked, issuer and subject; not host names
    ctx.verify_mode = ssl.CERT_REQUIRED  # both ends present a certificate
    if ciphers:
        ctx.set_ciphers(ciphers)
    try:
        ctx.load_verify_locations(cafile=ca_file)
    except (OSError, ssl.SSLError) as e:
        raise TLSError(f'cannot load CA certificate(s) from file "{ca_file}": {_why(e)}') from None
    if crl_file:
        try:
            ctx.load_verify_locations(cafile=crl_file)
        except (OSError, ssl.SSLError) as e:
            raise TLSError(f'cannot load CRL(s) from file "{crl_file}": {_why(e)}') from None
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_CHAIN  # as Zabbix: every certificate of the chain
    try:
        ctx.load_cert_chain(cert_file, key_file)
    except (OSError, ssl.SSLError) as e:
        raise TLSError(f'cannot load certificate or private key from file "{cert_file}" or "{key_file}": '
                       f"{_why(e)}") from None
    return ctx


def client_context(ca_file: str, cert_file: str, key_file: str, crl_file: str = "",
                   ciphers: str = "") -> ssl.SSLContext:
    return _context(0, ca_file, cert_file, key_file, crl_file, ciphers)


def server_context(ca_file: str, cert_file: str, key_file: str, crl_file: str = "",
                   ciphers: str = "") -> ssl.SSLContext:
    return _context(1, ca_file, cert_file, key_file, crl_file, ciphers)


def _why(e: BaseException) -> str:
    import ssl

    if isinstance(e, ssl.SSLCertVerificationError):
        return f"invalid peer certificate: {e.verify_message}"
    if isinstance(e, ssl.SSLError):
        return e.reason or str(e)
    if isinstance(e, OSError) and e.strerror:
        return f"[{e.errno}] {e.strerror}"
    return str(e) or type(e).__name__


# --- names ---------------------------------------------------------------------------------------


def _escape(value: str) -> str:
    out = []
    for i, c in enumerate(value):
        if c in ',+"\\<>;' or (i == 0 and c in "# ") or (i == len(value) - 1 and c == " "):
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\{ord(c):02X}")
        else:
            out.append(c)
    return "".join(out)


def dn_string(name: Any) -> str:
    """A name as Python's ssl reports it (`getpeercert()["subject"]`) in the string form Zabbix compares:
    RFC 4514, last RDN first, OpenSSL's short attribute names, non-ASCII characters as they are."""
    rdns = []
    for rdn in reversed(name or ()):
        rdns.append("+".join(f"{SHORT_NAMES.get(k, k)}={_escape(v)}" for k, v in reversed(rdn)))
    return ",".join(rdns)


def peer_names(sock: ssl.SSLSocket | ssl.SSLObject) -> tuple[str, str]:
    """(issuer, subject) of the verified peer certificate."""
    cert = sock.getpeercert() or {}
    return dn_string(cert.get("issuer")), dn_string(cert.get("subject"))


def check_names(sock: ssl.SSLSocket | ssl.SSLObject, issuer: str, subject: str) -> None:
    """Raise TLSError in zabbix_get's words when the peer's issuer or subject is not the one required."""
    if not issuer and not subject:
        return
    peer_issuer, peer_subject = peer_names(sock)
    if issuer and peer_issuer != issuer:
        raise TLSError(f'issuer: peer: "{peer_issuer}", required: "{issuer}"')
    if subject and peer_subject != subject:
        raise TLSError(f'subject: peer: "{peer_subject}", required: "{subject}"')


# --- connections ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Connector:
    """Wraps an outgoing TCP connection in TLS: handshake, then the issuer/subject check."""

    context: ssl.SSLContext
    issuer: str = ""
    subject: str = ""

    def wrap(self, sock: socket.socket) -> ssl.SSLSocket:
        """The TLS socket over `sock` (whose timeout applies). Raises TLSError; `sock` is then closed."""
        try:
            tls = self.context.wrap_socket(sock, server_side=False)
        except OSError as e:  # ssl.SSLError included
            sock.close()
            if isinstance(e, TimeoutError):
                raise TLSError("timed out during the TLS handshake") from None
            raise TLSError(_why(e)) from None
        try:
            check_names(tls, self.issuer, self.subject)
        except TLSError:
            tls.close()
            raise
        return tls

    __call__ = wrap


@dataclass(frozen=True)
class Acceptor:
    """Accepts incoming connections as TLSAccept says: TLS with certificates, and plain text if allowed."""

    context: ssl.SSLContext
    unencrypted: bool
    issuer: str = ""
    subject: str = ""

    def accept(self, conn: socket.socket, host: str, timeout: float) -> socket.socket:
        """The connection to read the request from: `conn` itself or its TLS socket. Raises TLSError with
        what zabbix_agentd logs after "failed to accept an incoming connection: "."""
        try:
            first = conn.recv(1, socket.MSG_PEEK)
        except (BlockingIOError, TimeoutError):  # SO_RCVTIMEO of the listener expired
            raise TLSError(f"from {host}: nothing received within {timeout:g} s") from None
        except OSError as e:
            raise TLSError(f"from {host}: {_why(e)}") from None
        if not first:
            return conn  # closed without a byte: the plain path logs it quietly
        if first[0] != TLS_HANDSHAKE:
            if not self.unencrypted:
                _discard(conn)  # closing with unread data would reset the connection instead of ending it
                raise TLSError(f"from {host}: unencrypted connections are not allowed")
            return conn
        if not isinstance(conn, socket.socket):  # the listener's bare C-level socket: ssl wants the full one
            conn = socket.socket(conn.family, conn.type, conn.proto, conn.detach())
        conn.settimeout(timeout)  # the kernel timeouts of the plain path would surface as SSLWantRead
        try:
            tls = self.context.wrap_socket(conn, server_side=True)
        except OSError as e:  # ssl.SSLError included
            if isinstance(e, TimeoutError):
                raise TLSError(f"from {host}: timed out during the TLS handshake") from None
            raise TLSError(f"from {host}: {_why(e)}") from None
        try:
            check_names(tls, self.issuer, self.subject)
        except TLSError as e:
            _close_notify(tls)
            what = "issuer" if str(e).startswith("issuer") else "subject"
            raise TLSError(f"certificate {what} does not match for {host}") from None
        return tls


def _discard(conn: socket.socket) -> None:
    try:
        conn.recv(65536, socket.MSG_DONTWAIT)
    except OSError:
        pass


def _close_notify(tls: ssl.SSLSocket) -> None:
    """End the TLS session properly, so the peer reads an end, not a broken connection (as Zabbix)."""
    try:
        tls.settimeout(1.0)
        tls.unwrap().close()
    except (OSError, ValueError):
        tls.close()
