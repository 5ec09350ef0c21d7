"""net.tcp.service, net.tcp.service.perf, net.udp.service, net.tcp.socket.count, net.udp.socket.count,
with zabbix_agentd 6.0's parameters and answers.

A service check connects and, for the text protocols, reads the greeting and politely leaves, as
zabbix_agentd's tcp_expect does; each step is bounded by Timeout and a silent server gives 0.
https is a TLS handshake without certificate verification.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import struct
import time

from vigil.agent.checks import CheckContext, NotSupported, check
from vigil.agent.checks.keyparams import at_most, invalid
from vigil.agent.protocol.itemkey import ItemKey

# service -> (default port, greeting expected (None: connecting is enough), what to send to leave)
TCP_SERVICES: dict[str, tuple[int, tuple[bytes, ...] | None, bytes]] = {
    "tcp": (0, None, b""),
    "http": (80, None, b""),
    "https": (443, None, b""),
    "ssh": (22, (b"SSH",), b""),
    "smtp": (25, (b"220",), b"QUIT\r\n"),
    "ftp": (21, (b"220",), b"QUIT\r\n"),
    "pop": (110, (b"+OK",), b"QUIT\r\n"),
    "nntp": (119, (b"200", b"201"), b"QUIT\r\n"),
    "imap": (143, (b"* OK",), b"a1 LOGOUT\r\n"),
    "telnet": (23, None, b""),
    "ldap": (389, None, b""),
}


def _service_params(key: ItemKey) -> tuple[str, str, int]:
    at_most(key, 3)
    service = key.param(0)
    if service not in TCP_SERVICES:
        raise invalid(0)
    host = key.param(1, "127.0.0.1")
    port_text = key.param(2)
    if port_text:
        if not port_text.isdigit() or int(port_text) > 65535:
            raise invalid(2)
        port = int(port_text)
    else:
        port = TCP_SERVICES[service][0]
        if port == 0:
            raise invalid(2)
    return service, host, port


def tcp_service(service: str, host: str, port: int, timeout: float) -> bool:
    _, expect, leave = TCP_SERVICES[service]
    end = time.monotonic() + timeout
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            if service == "https":
                ctx = ssl.create_default_context()
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                s.settimeout(max(0.01, end - time.monotonic()))
                with ctx.wrap_socket(s, server_hostname=host):
                    return True
            if expect is None:
                return True
            got = b""
            while b"\n" not in got and len(got) < 1024:
                s.settimeout(max(0.01, end - time.monotonic()))
                chunk = s.recv(1024)
                if not chunk:
                    break
                got += chunk
                if any(got.startswith(e) for e in expect):
                    break
            ok = any(got.startswith(e) for e in expect)
            if ok and service == "ssh":
                s.sendall(b"SSH-2.0-zabbix_agent\r\n")
            elif leave:
                s.sendall(leave)
            return ok
    except (OSError, UnicodeError, ssl.SSLError):
        return False


@check("net.tcp.service")
def net_tcp_service(key: ItemKey, ctx: CheckContext) -> int:
    service, host, port = _service_params(key)
    return int(tcp_service(service, host, port, ctx.timeout))


@check("net.tcp.service.perf")
def net_tcp_service_perf(key: ItemKey, ctx: CheckContext) -> float:
    service, host, port = _service_params(key)
    start = time.perf_counter()
    if not tcp_service(service, host, port, ctx.timeout):
        return 0.0
    return time.perf_counter() - start


def _ntp(host: str, port: int, timeout: float) -> bool:
    request = b"\x1b" + b"\0" * 47  # LI 0, version 3, mode 3 (client)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
        family, _, _, _, addr = infos[0]
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.connect(addr)  # connected: a closed port answers ECONNREFUSED at once
            s.send(request)
            data = s.recv(1024)
    except (OSError, UnicodeError, IndexError):
        return False
    if len(data) < 48:
        return False
    mode, stratum = data[0] & 7, data[1]
    transmit = struct.unpack("!I", data[40:44])[0]
    return mode == 4 and stratum != 0 and transmit != 0


def _udp_params(key: ItemKey) -> tuple[str, int]:
    at_most(key, 3)
    if key.param(0) != "ntp":
        raise invalid(0)
    port_text = key.param(2)
    if port_text and (not port_text.isdigit() or not 0 < int(port_text) < 65536):
        raise invalid(2)
    return key.param(1, "127.0.0.1"), int(port_text) if port_text else 123


@check("net.udp.service")
def net_udp_service(key: ItemKey, ctx: CheckContext) -> int:
    host, port = _udp_params(key)
    return int(_ntp(host, port, ctx.timeout))


@check("net.udp.service.perf")
def net_udp_service_perf(key: ItemKey, ctx: CheckContext) -> float:
    host, port = _udp_params(key)
    start = time.perf_counter()
    return time.perf_counter() - start if _ntp(host, port, ctx.timeout) else 0.0


# --- socket counts -------------------------------------------------------------------------------

TCP_STATES = {
    "established": 1, "syn_sent": 2, "syn_recv": 3, "fin_wait1": 4, "fin_wait2": 5, "time_wait": 6,
    "close": 7, "close_wait": 8, "last_ack": 9, "listen": 10, "closing": 11,
}
UDP_STATES = {"established": 1, "unconn": 7}


def _addr_param(key: ItemKey, i: int) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    text = key.param(i)
    if not text:
        return None
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise NotSupported(f'IP is not supported: "{text}"') from None


def _port_param(key: ItemKey, i: int, proto: str) -> int | None:
    text = key.param(i)
    if not text:
        return None
    if text.isdigit():
        if int(text) > 65535:
            raise NotSupported(f"Invalid port number: {text}")
        return int(text)
    try:
        return socket.getservbyname(text, proto)
    except OSError:
        raise NotSupported(f'The service "{text}" is not available for the requested socket type.') from None


def _hex_addr(text: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    host, port = text.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(raw[::-1])
    else:
        ip = ipaddress.IPv6Address(b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
    return ip, int(port, 16)


def _in(ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
        net: ipaddress.IPv4Network | ipaddress.IPv6Network | None) -> bool:
    return net is None or (ip.version == net.version and ip in net)


def _socket_count(key: ItemKey, proto: str, states: dict[str, int]) -> int:
    at_most(key, 5)
    laddr, raddr = _addr_param(key, 0), _addr_param(key, 2)
    lport, rport = _port_param(key, 1, proto), _port_param(key, 3, proto)
    state_text = key.param(4)
    if state_text and state_text not in states:
        raise invalid(4)
    state = states.get(state_text)
    count = 0
    found = False
    for name in (proto, proto + "6"):
        path = f"/proc/net/{name}"
        try:
            with open(path) as f:
                lines = f.readlines()[1:]
        except OSError:
            continue
        found = True
        for line in lines:
            p = line.split()
            if len(p) < 4:
                continue
            try:
                lip, lp = _hex_addr(p[1])
                rip, rp = _hex_addr(p[2])
                st = int(p[3], 16)
            except ValueError:
                continue
            if state is not None and st != state:
                continue
            if lport is not None and lp != lport or rport is not None and rp != rport:
                continue
            if _in(lip, laddr) and _in(rip, raddr):
                count += 1
    if not found:
        raise NotSupported(f"Cannot open /proc/net/{proto}: {os.strerror(2)}")
    return count


@check("net.tcp.socket.count")
def net_tcp_socket_count(key: ItemKey, ctx: CheckContext) -> int:
    return _socket_count(key, "tcp", TCP_STATES)


@check("net.udp.socket.count")
def net_udp_socket_count(key: ItemKey, ctx: CheckContext) -> int:
    return _socket_count(key, "udp", UDP_STATES)
