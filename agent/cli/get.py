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

PROG = "vigil-get"
MAX_REPLY = 128 * 1024 * 1024
USAGE = f"""usage:
  {PROG} -s host-name-or-IP [-p port-number] [-I IP-address] [-t timeout]
               -k item-key
  {PROG} -h
  {PROG} -V
"""
OPTIONS = Options("spIkt", "hV", frozenset({"host", "port", "source-address", "key", "timeout"}),
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
    return p


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


def get_value(host: str, port: int, key: str, timeout: float, source: str | None = None) -> str:
    """The line zabbix_get would print: the value or `ZBX_NOTSUPPORTED: reason`. Raises GetError."""
    with _connect(host, port, timeout, source) as s:
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
        line = get_value(args.host, int(args.port), args.key, int(args.timeout), args.source_address)
    except GetError as e:
        print(f"{PROG} [{pid}]: {e}", file=sys.stderr)
        return 1
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
