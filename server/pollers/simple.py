"""Simple checks, run by the server itself: net.tcp.service[…], net.tcp.service.perf[…], icmpping[…],
icmppingloss[…] and icmppingsec[…], with Zabbix 6.0's parameters and results.

- `net.tcp.service[service,<ip>,<port>]` is 1 when the service answers as it should (ssh: an
  `SSH-` banner; smtp and ftp: `220`; pop: `+OK`; imap: `* OK`; nntp: `200`/`201`; ldap: a
  response to an anonymous bind; https: a TLS handshake and an HTTP reply; tcp, http and telnet: the
  connection is accepted), else 0. `.perf` gives the seconds the check took, 0 when it failed.
  The ip defaults to the item's interface address, the port to the service's own.
- `icmpping[<target>,<packets>,<interval>,<size>,<timeout>]` is 1 if any reply came, else 0;
  `icmppingloss[…]` the lost percentage; `icmppingsec[…,<mode>]` the min, avg (default) or max
  round trip in seconds, 0 when nothing came back. Defaults: 3 packets, 1000 ms apart, 56 bytes,
  500 ms time-out. They run `fping` (VIGIL_FPING, else fping on PATH); without it they send the
  echo requests themselves through an ICMP socket (unprivileged where net.ipv4.ping_group_range
  allows, else raw as root; IPv4); if neither works an item is not supported, saying what to do.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import ssl
import struct
import time

from vigil.agent.protocol.itemkey import ItemKeyError, parse
from vigil.server.config.repo import PollItem
from vigil.server.pollers import NotSupported

# service -> (default port, banner a good reply starts with (None: the connection is enough), what to send after)
SERVICES: dict[str, tuple[int | None, tuple[bytes, ...] | None, bytes]] = {
    "tcp": (None, None, b""),
    "http": (80, None, b""),
    "telnet": (23, None, b""),
    "ssh": (22, (b"SSH-",), b"SSH-2.0-vigil\r\n"),
    "smtp": (25, (b"220",), b"QUIT\r\n"),
    "ftp": (21, (b"220",), b"QUIT\r\n"),
    "pop": (110, (b"+OK",), b"QUIT\r\n"),
    "nntp": (119, (b"200", b"201"), b"QUIT\r\n"),
    "imap": (143, (b"* OK",), b"a1 LOGOUT\r\n"),
    "ldap": (389, None, b""),
    "https": (443, None, b""),
}
# An LDAPv3 anonymous simple bind, message id 1 (RFC 4511); the answer is a BindResponse ([APPLICATION 1]).
LDAP_BIND = bytes.fromhex("300c020101600702010304008000")
KEYS = ("net.tcp.service", "net.tcp.service.perf", "icmpping", "icmppingloss", "icmppingsec")
_fping_lock = asyncio.Semaphore(8)  # replaced by the scheduler's setting (VIGIL_PINGERS) through configure()
_fping_path: str | None = None
_fping_setting = ""
_configured = False


def configure(fping: str = "", pingers: int = 8) -> None:
    """Where fping is ('' : search PATH and /usr/sbin) and how many may run at once."""
    global _fping_lock, _fping_path, _fping_setting, _configured
    _fping_setting = fping
    if fping:
        _fping_path = fping if os.access(fping, os.X_OK) else None
    else:
        _fping_path = shutil.which("fping") or next(
            (p for p in ("/usr/sbin/fping", "/usr/bin/fping") if os.access(p, os.X_OK)), None)
    _fping_lock = asyncio.Semaphore(pingers)
    _configured = True


def timeout_for(item: PollItem, default: float) -> float:
    """How long the check may take: pings need their packets' time, others the server's time-out."""
    try:
        key = parse(item.key)
    except ItemKeyError:
        return default
    if key.name.startswith("icmpping"):
        try:
            packets, interval, _, timeout = _ping_params(key.params)
        except NotSupported:
            return default
        return packets * interval / 1000 + timeout / 1000 + default
    return default


async def poll(item: PollItem, timeout: float) -> str:
    try:
        key = parse(item.key)
    except ItemKeyError as e:
        raise NotSupported(f"Invalid item key format: {e}") from None
    address = item.interface.address if item.interface is not None else ""
    if key.name in ("net.tcp.service", "net.tcp.service.perf"):
        return await _tcp_service(key.name.endswith(".perf"), key.params, address, timeout)
    if key.name in ("icmpping", "icmppingloss", "icmppingsec"):
        return await _ping(key.name, key.params, address)
    raise NotSupported(f"Unsupported item key for simple checks: {key.name!r} (known: {', '.join(KEYS)})")


def _param(params: tuple, i: int) -> str:
    if i >= len(params):
        return ""
    p = params[i]
    if isinstance(p, list):
        raise NotSupported(f"Invalid parameter #{i + 1}: it must not be an array.")
    return p.strip()


async def _tcp_service(perf: bool, params: tuple, address: str, timeout: float) -> str:
    if len(params) > 3:
        raise NotSupported("Too many parameters.")
    service = _param(params, 0)
    if service not in SERVICES:
        if service == "ntp":
            raise NotSupported("Invalid first parameter: ntp is not checked by Vigil's simple checks "
                               f"(known: {', '.join(SERVICES)}).")
        raise NotSupported(f"Invalid first parameter: {service!r} is not one of {', '.join(SERVICES)}.")
    host = _param(params, 1) or address
    if not host:
        raise NotSupported("Invalid second parameter: no IP given and the host has no interface to take it from.")
    port_text = _param(params, 2)
    default_port = SERVICES[service][0]
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise NotSupported(f"Invalid third parameter: {port_text!r} is not a port number.")
        port = int(port_text)
    elif default_port is None:
        raise NotSupported("Invalid third parameter: the tcp service needs a port number.")
    else:
        port = default_port
    t0 = time.perf_counter()
    ok = await _check(service, host, port, timeout)
    took = time.perf_counter() - t0
    if perf:
        return f"{took:.6f}" if ok else "0"
    return "1" if ok else "0"


async def _check(service: str, host: str, port: int, timeout: float) -> bool:
    _, expect, farewell = SERVICES[service]
    ctx = None
    if service == "https":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # up, not trusted: as Zabbix's check does not verify either
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port, ssl=ctx)
            if service == "https":
                writer.write(f"HEAD / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                await writer.drain()
                return (await reader.read(5)) == b"HTTP/"
            if service == "ldap":
                writer.write(LDAP_BIND)
                await writer.drain()
                reply = await reader.read(64)
                return len(reply) > 7 and reply[0] == 0x30 and 0x61 in reply[:8]
            if expect is None:
                return True
            line = await reader.readline()
            ok = line.startswith(expect)
            if farewell:
                writer.write(farewell)
                await writer.drain()
            return ok
    except (OSError, TimeoutError, ssl.SSLError, asyncio.IncompleteReadError):
        return False
    finally:
        if writer is not None:
            writer.close()


def _ping_params(params: tuple) -> tuple[int, int, int, int]:
    def num(i: int, default: int, lo: int, hi: int, what: str) -> int:
        text = _param(params, i)
        if not text:
            return default
        if not text.isdigit() or not lo <= int(text) <= hi:
            raise NotSupported(f"Invalid parameter #{i + 1} ({what}): {text!r}, expected {lo} to {hi}.")
        return int(text)

    return (num(1, 3, 1, 10000, "packets"), num(2, 1000, 20, 3_600_000, "interval in ms"),
            num(3, 56, 24, 65507, "size in bytes"), num(4, 500, 50, 3_600_000, "timeout in ms"))


async def _ping(name: str, params: tuple, address: str) -> str:
    if len(params) > (7 if name == "icmppingsec" else 6):
        raise NotSupported("Too many parameters.")
    target = _param(params, 0) or address
    if not target:
        raise NotSupported("Invalid first parameter: no target given and the host has no interface to take it from.")
    packets, interval, size, timeout = _ping_params(params)
    mode = _param(params, 5) if name == "icmppingsec" else ""
    if mode not in ("", "min", "avg", "max"):
        raise NotSupported(f"Invalid sixth parameter: {mode!r} is not one of min, avg, max.")
    times = await fping(target, packets, interval, size, timeout)
    got = [t for t in times if t is not None]
    if name == "icmpping":
        return "1" if got else "0"
    if name == "icmppingloss":
        return f"{100.0 * (len(times) - len(got)) / len(times):g}"
    if not got:
        return "0"
    sec = {"min": min(got), "max": max(got)}.get(mode, sum(got) / len(got)) / 1000
    return f"{max(sec, 0.0001) if sec > 0 else 0.0001:.6f}"  # Zabbix never reports less than 0.1 ms


async def fping(target: str, packets: int, interval: int, size: int, timeout: int) -> list[float | None]:
    """Round trips in ms per packet (None: lost), from `fping -C`; NotSupported when fping cannot run."""
    if not _configured:
        configure()
    if _fping_path is None:
        async with _fping_lock:
            try:
                return await asyncio.to_thread(socket_ping, target, packets, interval, size, timeout)
            except PermissionError:
                where = f"at VIGIL_FPING={_fping_setting!r}" if _fping_setting else "on PATH or in /usr/sbin"
                raise NotSupported(f"Cannot run icmpping checks: no fping {where} and no permission for ICMP "
                                   "sockets (apt-get install fping, set VIGIL_FPING to its path, or allow "
                                   "unprivileged ping with sysctl net.ipv4.ping_group_range)") from None
    args = [_fping_path, "-C", str(packets), "-p", str(interval), "-b", str(size), "-t", str(timeout), "-q",
            target]
    async with _fping_lock:
        try:
            proc = await asyncio.create_subprocess_exec(*args, stdin=asyncio.subprocess.DEVNULL,
                                                        stdout=asyncio.subprocess.PIPE,
                                                        stderr=asyncio.subprocess.PIPE)
        except OSError as e:
            raise NotSupported(f"Cannot run {_fping_path}: {e.strerror or e}") from None
        try:
            out, err = await proc.communicate()
        except asyncio.CancelledError:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
    for line in (err + out).decode(errors="replace").splitlines():
        head, sep, rest = line.partition(" : ")
        if sep and head.strip() == target:
            fields = rest.split()
            if len(fields) == packets:
                return [None if f == "-" else float(f) for f in fields]
    message = (err or out).decode(errors="replace").strip().splitlines()
    if proc.returncode == 2 and not message:
        raise NotSupported(f"Cannot ping {target!r}: the name does not resolve to an address.")
    raise NotSupported(f"fping failed for {target!r} (exit {proc.returncode}): "
                       f"{message[-1] if message else 'no output'}")


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def socket_ping(target: str, packets: int, interval: int, size: int, timeout: int) -> list[float | None]:
    """Echo requests through an ICMP socket (blocking): round trips in ms, None for a lost packet.
    Raises PermissionError when neither an unprivileged nor a raw ICMP socket may be opened."""
    try:
        addr = socket.gethostbyname(target)
    except OSError:
        raise NotSupported(f"Cannot ping {target!r}: the name does not resolve to an address.") from None
    try:
        sock, raw = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_ICMP), False
    except PermissionError:
        sock, raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP), True
    ident = os.getpid() & 0xFFFF
    out: list[float | None] = []
    with sock:
        for seq in range(packets):
            payload = bytes(max(size - 8, 0))
            head = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
            packet = struct.pack("!BBHHH", 8, 0, _checksum(head + payload), ident, seq) + payload
            t0 = time.perf_counter()
            sock.sendto(packet, (addr, 0))
            got: float | None = None
            while (left := t0 + timeout / 1000 - time.perf_counter()) > 0:
                sock.settimeout(left)
                try:
                    data, peer = sock.recvfrom(65535)
                except TimeoutError:
                    break
                if raw:
                    data = data[(data[0] & 0x0F) * 4:]
                if len(data) < 8 or peer[0] != addr:
                    continue
                kind, _, _, rid, rseq = struct.unpack("!BBHHH", data[:8])
                if kind == 0 and rseq == seq and (rid == ident or not raw):
                    got = (time.perf_counter() - t0) * 1000
                    break
            out.append(got)
            if seq + 1 < packets:
                time.sleep(max(0.0, t0 + interval / 1000 - time.perf_counter()))
    return out
