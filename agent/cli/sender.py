"""vigil-sender: zabbix_sender's options, input format, output lines and exit codes.

Exit codes: 0 all values processed; 2 some or all failed on the server; 1 nothing could be sent
(bad options or input, connection refused, bad reply).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TextIO

from vigil.agent.cli.get import TLS_OPTIONS, add_tls_options, tls_connector
from vigil.agent.cli.usage import Options, UsageError, check, fail
from vigil.agent.protocol import zbxd
from vigil.agent.protocol.messages import ProcessedInfo, ProtocolError, SenderData, SenderValue, parse_response
from vigil.agent.tls import Connector, TLSError

BATCH = 250  # values per connection, as zabbix_sender
PROG = "vigil-sender"
VERSION = "vigil-sender (Vigil) 0.1.0, Zabbix protocol 6.0"
_C = " " * (len(PROG) + 4)
USAGE = f"""usage:
  {PROG} [-v] -z server [-p port] [-I IP-address] [-t timeout] -s host
{_C}-k key -o value
  {PROG} [-v] -z server [-p port] [-I IP-address] [-t timeout] [-s host]
{_C}[-T] [-N] [-r] -i input-file
  {PROG} [-v] -c config-file [-z server] [-p port] [-I IP-address]
{_C}[-t timeout] [-s host] -k key -o value
  {PROG} [-v] -c config-file [-z server] [-p port] [-I IP-address]
{_C}[-t timeout] [-s host] [-T] [-N] [-r] -i input-file
  {PROG} [-v] -z server [-p port] [-I IP-address] [-t timeout] -s host
{_C}--tls-connect cert --tls-ca-file CA-file
{_C}[--tls-crl-file CRL-file]
{_C}[--tls-server-cert-issuer cert-issuer]
{_C}[--tls-server-cert-subject cert-subject]
{_C}--tls-cert-file cert-file --tls-key-file key-file
{_C}[--tls-cipher cipher-string] -k key -o value
  {PROG} -h
  {PROG} -V
"""
OPTIONS = Options(
    "czpItskoi", "TNrvhV",
    frozenset({"config", "zabbix-server", "port", "source-address", "timeout", "host", "key", "value", "input-file"})
    | {o.replace("agent-cert", "server-cert") for o in TLS_OPTIONS},
    frozenset({"with-timestamps", "with-ns", "real-time", "verbose", "help", "version"}),
)


class InputError(ValueError):
    pass


def _token(line: str, pos: int) -> tuple[str | None, int]:
    """The next whitespace-delimited or double-quoted token starting at pos."""
    n = len(line)
    while pos < n and line[pos] in " \t":
        pos += 1
    if pos >= n:
        return None, pos
    if line[pos] == '"':
        out = []
        i = pos + 1
        while i < n:
            c = line[i]
            if c == "\\" and i + 1 < n and line[i + 1] in '"\\':
                out.append(line[i + 1])
                i += 2
                continue
            if c == '"':
                return "".join(out), i + 1
            out.append(c)
            i += 1
        return None, n  # unterminated quote
    start = pos
    while pos < n and line[pos] not in " \t":
        pos += 1
    return line[start:pos], pos


def parse_line(line: str, lineno: int, default_host: str | None, with_ts: bool, with_ns: bool) -> SenderValue:
    line = line.rstrip("\r\n")
    host, pos = _token(line, 0)
    if host is None:
        raise InputError(f"[line {lineno}] 'Hostname' required")
    if host == "-":
        if not default_host:
            raise InputError(f"[line {lineno}] '-' encountered as 'Hostname', but no default hostname was specified")
        host = default_host
    key, pos = _token(line, pos)
    if key is None:
        raise InputError(f"[line {lineno}] 'Key' required")
    clock = ns = None
    if with_ts:
        tok, pos = _token(line, pos)
        if tok is None or not tok.isdigit():
            raise InputError(f"[line {lineno}] invalid 'Timestamp' value detected")
        clock = int(tok)
        if with_ns:
            tok, pos = _token(line, pos)
            if tok is None or not tok.isdigit() or int(tok) > 999_999_999:
                raise InputError(f"[line {lineno}] invalid 'Timestamp' value detected")
            ns = int(tok)
    while pos < len(line) and line[pos] in " \t":
        pos += 1
    if pos >= len(line):
        raise InputError(f"[line {lineno}] 'Key value' required")
    if line[pos] == '"':
        value, end = _token(line, pos)
        if value is None:
            raise InputError(f"[line {lineno}] 'Key value' required")
    else:
        value = line[pos:]
    return SenderValue(host, key, value, clock, ns)


@dataclass
class Totals:
    sent: int = 0
    skipped: int = 0
    processed: int = 0
    failed: int = 0


# The config file's TLS parameters and the options they stand for (the options win, as zabbix_sender's)
CONFIG_TLS = {"TLSConnect": "tls_connect", "TLSCAFile": "tls_ca_file", "TLSCRLFile": "tls_crl_file",
              "TLSServerCertIssuer": "tls_issuer", "TLSServerCertSubject": "tls_subject",
              "TLSCertFile": "tls_cert_file", "TLSKeyFile": "tls_key_file", "TLSPSKIdentity": "tls_psk_identity",
              "TLSPSKFile": "tls_psk_file", "TLSCipherCert": "tls_cipher"}


def read_config(path: str, tls: dict[str, str] | None = None) -> tuple[list[tuple[str, int]], str | None, str | None]:
    """ServerActive, Hostname and SourceIP from an agent config file (other lines are ignored); its TLS
    parameters go into `tls`, by option name."""
    servers: list[tuple[str, int]] = []
    hostname = source = None
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for lineno, raw in enumerate(f, 1):
                line = raw.strip()
                if not line or line.startswith("#"):
                    continue
                name, sep, value = line.partition("=")
                if not sep:
                    raise InputError(f"{path}:{lineno}: expected Key=Value, got {line!r}")
                name, value = name.strip(), value.strip()
                if name == "ServerActive" and value:
                    servers = [_host_port(x.strip()) for x in value.split(",") if x.strip()]
                elif name == "Hostname" and value:
                    hostname = value.split(",")[0].strip()
                elif name == "SourceIP" and value:
                    source = value
                elif name in CONFIG_TLS and value and tls is not None:
                    tls[CONFIG_TLS[name]] = value
    except OSError as e:
        raise InputError(f"cannot open config file [{path}]: {e.strerror}") from None
    return servers, hostname, source


def _host_port(text: str) -> tuple[str, int]:
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else 10051
    host, sep, port = text.rpartition(":")
    if sep and port.isdigit() and ":" not in host:
        return host, int(port)
    return text, 10051


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, add_help=False, description="Send values to a Vigil or Zabbix server.")
    p.add_argument("-c", "--config", help="agent configuration file (ServerActive, Hostname, SourceIP)")
    p.add_argument("-z", "--zabbix-server", dest="server", help="server or proxy to send to")
    p.add_argument("-p", "--port", help="server port (default: 10051)")
    p.add_argument("-I", "--source-address", dest="source", help="source IP address")
    p.add_argument("-t", "--timeout", default="60", help="timeout in seconds, 1-300 (default: 60)")
    p.add_argument("-s", "--host", help="host name the item belongs to")
    p.add_argument("-k", "--key", help="item key")
    p.add_argument("-o", "--value", help="item value")
    p.add_argument("-i", "--input-file", dest="input", help="file of values, or - for standard input")
    p.add_argument("-T", "--with-timestamps", action="store_true", help="lines are: host key timestamp value")
    p.add_argument("-N", "--with-ns", action="store_true", help="lines are: host key timestamp ns value (with -T)")
    p.add_argument("-r", "--real-time", action="store_true", help="send each value as soon as it is read")
    p.add_argument("-v", "--verbose", action="count", default=0, help="verbose mode, -vv for more details")
    p.add_argument("-h", "--help", action="help", help="display this help message")
    p.add_argument("-V", "--version", action="version", version=VERSION)
    add_tls_options(p, "server")
    return p


def _err(msg: str) -> None:
    print(f"{PROG} [{os.getpid()}]: ERROR: {msg}")  # on standard output, as zabbix_sender does


class Sender:
    def __init__(self, server: str, port: int, timeout: float, source: str | None, verbose: int, out: TextIO,
                 tls: Connector | None = None):
        self.server, self.port, self.timeout, self.source = server, port, timeout, source
        self.tls = tls
        self.verbose, self.out = verbose, out
        self.totals = Totals()

    def send(self, values: list[SenderValue], stamp: bool) -> None:
        """Send one batch; raises OSError/ProtocolError/FrameError when it could not be delivered."""
        now = time.time_ns()
        msg = SenderData(values, now // 1_000_000_000 if stamp else None, now % 1_000_000_000 if stamp else None)
        if self.verbose > 1:
            print(f"{PROG} [{os.getpid()}]: DEBUG: sending {len(values)} values to [{self.server}]:{self.port}",
                  file=sys.stderr)
        reply = zbxd.exchange(self.server, self.port, msg.to_json(), timeout=self.timeout, source_ip=self.source,
                              wrap=self.tls)
        resp = parse_response(reply)
        if not resp.ok:
            raise ProtocolError(f"server answered \"{resp.response}\": {resp.info}")
        info = ProcessedInfo.parse(resp.info or "")
        print(f'Response from "{self.server}:{self.port}": "{resp.info}"', file=self.out)
        self.totals.sent += len(values)
        self.totals.processed += info.processed
        self.totals.failed += info.failed


def _values(args: argparse.Namespace, default_host: str | None) -> Iterator[SenderValue]:
    f = sys.stdin if args.input == "-" else open(args.input, encoding="utf-8", errors="replace")  # noqa: SIM115
    try:
        for lineno, line in enumerate(f, 1):
            yield parse_line(line, lineno, default_host, args.with_timestamps, args.with_ns)
    finally:
        if f is not sys.stdin:
            f.close()


def _usage_checks(argv: list[str]) -> argparse.Namespace:
    """The options, or UsageError as zabbix_sender words it (checked in its order)."""
    check(argv, OPTIONS)
    args = build_parser().parse_args(argv)
    if args.port is not None:
        if not args.port.isdigit() or not 1 <= int(args.port) <= 65535:
            raise UsageError(f'option "-p" used with invalid port number "{args.port}", valid port numbers are 1-65535',
                             usage=False)
        args.port = int(args.port)
    if not args.timeout.isdigit() or not 1 <= int(args.timeout) <= 300:
        raise UsageError("Invalid timeout, valid range 1:300 seconds", usage=False)
    args.timeout = int(args.timeout)
    if not args.config and not args.server:
        raise UsageError("either '-c' or '-z' option must be specified")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = _usage_checks(argv)
    except UsageError as e:
        return fail(PROG, USAGE, e, try_help=False)
    servers: list[tuple[str, int]] = []
    hostname = source = None
    try:
        if args.config:
            from_config: dict[str, str] = {}
            servers, hostname, source = read_config(args.config, from_config)
            for option, value in from_config.items():
                if getattr(args, option) is None:
                    setattr(args, option, value)
    except InputError as e:
        _err(str(e))
        return 1
    if args.server:
        port = args.port or (servers[0][1] if servers else 10051)
        servers = [(args.server, port)] + servers[1:]
    elif servers and args.port:
        servers[0] = (servers[0][0], args.port)
    host = args.host or hostname
    single = args.key is not None or args.value is not None
    usable = (
        bool(servers)
        and (args.key is not None and args.value is not None and bool(host) and not args.input
             if single else bool(args.input))
        and (args.with_timestamps or not args.with_ns)
    )
    if not usable:
        return fail(PROG, USAGE, UsageError("too few or mutually exclusive options used"), try_help=False)
    try:
        tls = tls_connector(args, "server")
    except ValueError as e:
        _err(str(e))
        return 1
    server, port = servers[0]
    sender = Sender(server, port, args.timeout, args.source or source, args.verbose, sys.stdout, tls)
    try:
        if single:
            sender.send([SenderValue(host, args.key, args.value)], stamp=False)
        else:
            batch: list[SenderValue] = []
            for v in _values(args, host):
                batch.append(v)
                if len(batch) >= BATCH or args.real_time:
                    sender.send(batch, args.with_timestamps)
                    batch = []
            if batch:
                sender.send(batch, args.with_timestamps)
    except InputError as e:
        _err(str(e))
        return _finish(sender, failed_send=True)
    except TLSError as e:
        _err(f"cannot establish TLS to [{server}]:{port}: {e}")  # shown without -v: the reason is the point
        return _finish(sender, failed_send=True)
    except OSError as e:
        if isinstance(e, FileNotFoundError | PermissionError | IsADirectoryError) and e.filename:
            _err(f"cannot open [{e.filename}]: [{e.errno}] {e.strerror}")
        elif args.verbose:
            _err(f"unable to connect to [{server}]:{port}: {e.strerror or e}")
        return _finish(sender, failed_send=True)
    except (ProtocolError, zbxd.FrameError, EOFError) as e:
        print(f'{PROG} [{os.getpid()}]: Warning: incorrect answer from "{server}:{port}": {e}', file=sys.stderr)
        return _finish(sender, failed_send=True)
    return _finish(sender, failed_send=False)


def _finish(sender: Sender, failed_send: bool) -> int:
    t = sender.totals
    if failed_send and t.sent == 0:
        print("Sending failed." + ("" if sender.verbose > 1 else " Use option -vv for more detailed output."))
        return 1
    print(f"sent: {t.sent}; skipped: {t.skipped}; total: {t.sent + t.skipped}")
    if failed_send:
        print("Sending failed." + ("" if sender.verbose > 1 else " Use option -vv for more detailed output."))
        return 1
    return 2 if t.failed else 0


if __name__ == "__main__":
    sys.exit(main())
