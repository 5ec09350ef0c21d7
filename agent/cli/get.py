"""vigil-get: ask an agent for one value, as zabbix_get does (same options, output and exit codes).

Prints the value, or `ZBX_NOTSUPPORTED: reason`, and exits 0 when the agent answered; on any
other failure prints `vigil-get [PID]: ...` to stderr in zabbix_get's wording and exits 1.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys

from vigil.agent.checks import AGENT_VERSION
from vigil.agent.cli.usage import Options, UsageError, check, fail
from vigil.agent.protocol import zbxd
from vigil.agent.protocol.messages import decode_passive_reply
from vigil.agent.tls import CERT, MODES, PSK, UNENCRYPTED, Connector, TLSError, client_context, psk_refusal

PROG = "vigil-get"
MAX_REPLY = 128 * 1024 * 1024
USAGE = f"""usage:
  {PROG} -s host-name-or-IP [-p port-number] [-I IP-address] [-t timeout]
               -k item-key
  {PROG} -s host-name-or-IP [-p port-number] [-I IP-address] [-t timeout]
               --tls-connect cert --tls-ca-file CA-file
               [--tls-crl-file CRL-file] [--tls-agent-cert-issuer cert-issuer]
               [--tls-agent-cert-subject cert-subject]
               --tls-cert-file cert-file --tls-key-file key-file
               [--tls-cipher cipher-string] -k item-key
  {PROG} -h
  {PROG} -V
"""
TLS_OPTIONS = frozenset({"tls-connect", "tls-ca-file", "tls-crl-file", "tls-agent-cert-issuer",
                         "tls-agent-cert-subject", "tls-cert-file", "tls-key-file", "tls-cipher",
                         "tls-psk-identity", "tls-psk-file"})
OPTIONS = Options("spIkt", "hV", frozenset({"host", "port", "source-address", "key", "timeout"}) | TLS_OPTIONS,
                  frozenset({"help", "version"}))


class GetError(Exception):
    """A failure to print as `vigil-get [PID]: <message>`."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, add_help=False, description="Get data from Zabbix agent.")
    p.add_argument("-s", "--host", metavar="host-name-or-IP", help="host name or IP address of a host")
    p.add_argument("-p", "--port", metavar="port-number", default="10050",
                   help="port number of agent running on the host (default: 10050)")
    p.add_argument("-I", "--source-address", metavar="IP-address", help="source IP address")
    p.add_argument("-t", "--timeout", metavar="seconds", default="30",
                   help="timeout, valid range: 1-30 seconds (default: 30 seconds)")
    p.add_argument("-k", "--key", metavar="item-key", help="key of the item to retrieve value for")
    p.add_argument("-h", "--help", action="help", help="display this help message")
    p.add_argument("-V", "--version", action="version",
                   version=f"{PROG} (Vigil) compatible with zabbix_get {AGENT_VERSION}")
    add_tls_options(p, "agent")
    return p


def add_tls_options(p: argparse.ArgumentParser, peer: str) -> None:
    """zabbix_get's (peer "agent") and zabbix_sender's (peer "server") TLS options."""
    g = p.add_argument_group("TLS connection options")
    g.add_argument("--tls-connect", metavar="value", help=f"how to connect to {peer}: unencrypted (default) or cert")
    g.add_argument("--tls-ca-file", metavar="CA-file", help="top-level CA(s) certificates for peer verification")
    g.add_argument("--tls-crl-file", metavar="CRL-file", help="revoked certificates")
    g.add_argument(f"--tls-{peer}-cert-issuer", dest="tls_issuer", metavar="cert-issuer",
                   help=f"allowed {peer} certificate issuer")
    g.add_argument(f"--tls-{peer}-cert-subject", dest="tls_subject", metavar="cert-subject",
                   help=f"allowed {peer} certificate subject")
    g.add_argument("--tls-cert-file", metavar="cert-file", help="the certificate or certificate chain")
    g.add_argument("--tls-key-file", metavar="key-file", help="the private key")
    g.add_argument("--tls-cipher", metavar="cipher-string", help="OpenSSL cipher string (TLS 1.2)")
    g.add_argument("--tls-psk-identity", metavar="PSK-identity", help="not supported (see --tls-connect)")
    g.add_argument("--tls-psk-file", metavar="PSK-file", help="not supported (see --tls-connect)")


def tls_connector(args: argparse.Namespace, peer: str) -> Connector | None:
    """The TLS wrapper the options ask for, None for unencrypted; ValueError (zabbix_get's wording) if
    they do not fit together or the files cannot be read."""
    mode = args.tls_connect or UNENCRYPTED
    if mode not in MODES:
        raise ValueError('invalid value of "--tls-connect" parameter')
    if mode == PSK or args.tls_psk_identity or args.tls_psk_file:
        raise ValueError(f"--tls-connect psk: {psk_refusal()}")
    given = {"--tls-cert-file": args.tls_cert_file, "--tls-ca-file": args.tls_ca_file,
             "--tls-key-file": args.tls_key_file, "--tls-crl-file": args.tls_crl_file,
             f"--tls-{peer}-cert-issuer": args.tls_issuer, f"--tls-{peer}-cert-subject": args.tls_subject,
             "--tls-cipher": args.tls_cipher}
    if mode == CERT:
        for name in ("--tls-cert-file", "--tls-ca-file", "--tls-key-file"):
            if not given[name]:
                raise ValueError(f'parameter "--tls-connect" value requires "{name}", but it is not defined')
    for name, value in given.items():
        if value is not None and name != "--tls-cert-file" and not args.tls_cert_file:
            raise ValueError(f'parameter "{name}" is defined, but "--tls-cert-file" is not defined')
    if args.tls_cert_file and not args.tls_key_file:
        raise ValueError('parameter "--tls-cert-file" is defined, but "--tls-key-file" is not defined')
    if mode == UNENCRYPTED:
        if args.tls_cert_file:
            raise ValueError('parameter "--tls-cert-file" is defined, but "--tls-connect" is not set to cert')
        return None
    try:
        ctx = client_context(args.tls_ca_file, args.tls_cert_file, args.tls_key_file, args.tls_crl_file or "",
                             args.tls_cipher or "")
    except TLSError as e:
        raise ValueError(str(e)) from None
    except Exception as e:  # ssl.SSLError from set_ciphers
        raise ValueError(f'invalid value of "--tls-cipher" option: {e}') from None
    return Connector(ctx, args.tls_issuer or "", args.tls_subject or "")


def _connect(host: str, port: int, timeout: float, source: str | None) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise GetError(f"Get value error: cannot resolve [{host}]") from None
    last: OSError | None = None
    for family, kind, proto, _, addr in infos:
        s = socket.socket(family, kind, proto)
        s.settimeout(timeout)
        try:
            if source:
                try:
                    s.bind((source, 0))
                except OSError as e:
                    raise GetError(f"Get value error: bind() failed: [{e.errno}] {e.strerror}") from None
            s.connect(addr)
            return s
        except TimeoutError:
            s.close()
            raise GetError("Timeout while executing operation") from None
        except GetError:
            s.close()
            raise
        except OSError as e:
            s.close()
            last = e
    assert last is not None
    raise GetError(f"Get value error: cannot connect to [[{host}]:{port}]: [{last.errno}] {last.strerror}")


def get_value(host: str, port: int, key: str, timeout: float, source: str | None = None,
              tls: Connector | None = None) -> str:
    """The line zabbix_get would print: the value or `ZBX_NOTSUPPORTED: reason`. Raises GetError."""
    s = _connect(host, port, timeout, source)
    if tls is not None:
        try:
            s = tls.wrap(s)
        except TLSError as e:
            raise GetError(f"Get value error: TCP successful, cannot establish TLS to [[{host}]:{port}]: {e}") from None
    with s:
        try:
            s.sendall(zbxd.encode(key.encode()))
            try:
                _, body = zbxd.recv_frame(s, MAX_REPLY)
            except EOFError:
                raise GetError("Check access restrictions in Zabbix agent configuration") from None
        except TimeoutError:
            raise GetError("Timeout while executing operation") from None
        except zbxd.FrameError as e:
            raise GetError(f"Get value error: {e}") from None
        except ConnectionResetError as e:
            raise GetError(
                f"Get value error: ZBX_TCP_READ() failed: [{e.errno}] {e.strerror}\n"
                f"{PROG} [{os.getpid()}]: Check access restrictions in Zabbix agent configuration"
            ) from None
        except OSError as e:
            raise GetError(f"Get value error: [{e.errno}] {e.strerror}") from None
    value, reason = decode_passive_reply(body)
    if reason is not None:
        return f"ZBX_NOTSUPPORTED: {reason}"
    return value or ""


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        check(argv, OPTIONS)
    except UsageError as e:
        return fail(PROG, USAGE, e, try_help=True)
    args = build_parser().parse_args(argv)
    if not args.host or args.key is None:
        return fail(PROG, USAGE, UsageError(), try_help=True)
    pid = os.getpid()
    if not args.timeout.isdigit() or not 1 <= int(args.timeout) <= 30:
        print(f"{PROG} [{pid}]: Invalid timeout, valid range 1:30 seconds", file=sys.stderr)
        return 1
    if not args.port.isdigit() or not 1 <= int(args.port) <= 65535:
        print(f"{PROG} [{pid}]: Invalid port number {args.port!r}, valid range 1:65535", file=sys.stderr)
        return 1
    try:
        tls = tls_connector(args, "agent")
    except ValueError as e:
        print(f"{PROG} [{pid}]: ERROR: {e}", file=sys.stderr)
        return 1
    try:
        line = get_value(args.host, int(args.port), args.key, int(args.timeout), args.source_address, tls)
    except GetError as e:
        print(f"{PROG} [{pid}]: {e}", file=sys.stderr)
        return 1
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
