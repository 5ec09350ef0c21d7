"""The passive-check listener: one ZBXD request (a bare item key) per connection, one reply, close.

Design: `StartAgents` worker threads, each blocking in accept() on the shared listening socket and
serving its connection from start to end. This mirrors zabbix_agentd's StartAgents processes: a
slow check holds one worker while the others keep answering. Measured
on 2 cores with 3 client processes, a bare blocking-accept server answered ~10k req/s and the
same server on asyncio (streams or bare protocols) ~5.7k: the event loop's per-connection objects
and callbacks cost more than the check. The full listener (bench/agent.py, StartAgents=3 for both)
uses ~33 us of CPU per agent.ping, zabbix_agentd ~28 us, and answers about as many requests per
second (agent_passive_ratio_vs_zabbix ~1.0; 0.8 before accepts were deferred until the request has
arrived and the socket module's Python layer was left out of the per-connection path).

Every request is bounded: peers not in Server are closed unanswered, a request must start with the
ZBXD header and fit in MAX_REQUEST bytes, and must arrive within Timeout seconds. Each rejection is
logged with the peer's address, as zabbix_agentd does, and the listener carries on; peers refused by
Server are logged at most once per peer every REJECT_LOG_INTERVAL seconds, with a count of the
refusals in between, so a port scan cannot fill the disk.
"""

from __future__ import annotations

import _socket
import ipaddress
import logging
import selectors
import socket
import struct
import threading
from collections.abc import Callable, Sequence

from vigil.agent.checks import CALLER, NotSupported
from vigil.agent.conf import AgentConfig
from vigil.agent.log import RateLimit
from vigil.agent.protocol import zbxd
from vigil.agent.protocol.messages import encode_passive_reply
from vigil.agent.tls import Acceptor, TLSError

log = logging.getLogger("vigil.agent.passive")

MAX_REQUEST = 64 * 1024  # a passive request is one key; zabbix_agentd would take up to 1 GiB
REJECT_LOG_INTERVAL = 60.0
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class RequestError(Exception):
    """A request that gets no reply; the message is what the log says after the peer's address."""

    def __init__(self, message: str, quiet: bool = False) -> None:
        super().__init__(message)
        self.quiet = quiet  # not worth a warning (a port probe that sends nothing)


def _normalize(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


class PeerFilter:
    """The Server= list: IPs, CIDRs and host names (resolved once, when built)."""

    def __init__(self, entries: Sequence[str]) -> None:
        self.text = ",".join(entries)
        self.exact: set[str] = set()
        self.networks: list[IPNetwork] = []
        for entry in entries:
            if "/" in entry:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
                continue
            try:
                addrs = [ipaddress.ip_address(entry)]
            except ValueError:
                try:
                    infos = socket.getaddrinfo(entry, None, type=socket.SOCK_STREAM)
                except socket.gaierror as e:
                    log.warning("cannot resolve Server entry %r: %s; it is skipped", entry, e.strerror)
                    continue
                addrs = [ipaddress.ip_address(str(i[4][0]).split("%")[0]) for i in infos]
            for a in addrs:
                a = _normalize(a)
                self.exact.add(str(a))
                if a.version == 4:
                    self.exact.add(f"::ffff:{a}")

    def allows(self, host: str) -> bool:
        if host in self.exact:
            return True
        if not self.networks:
            return False
        try:
            ip = _normalize(ipaddress.ip_address(host.split("%")[0]))
        except ValueError:
            return False
        return any(ip in n for n in self.networks if n.version == ip.version)


def read_request(conn: _socket.socket, max_size: int = MAX_REQUEST) -> bytes:
    """Read one ZBXD frame from `conn` (its timeout applies) and return the body.

    Raises RequestError with the reason for anything that does not deserve a reply.
    """
    buf = b""
    need = 13
    header: zbxd.Header | None = None
    while True:
        try:
            chunk = conn.recv(65536)
        except (TimeoutError, BlockingIOError):  # BlockingIOError: SO_RCVTIMEO expired
            raise RequestError(f"timed out after {len(buf)} bytes. Message ignored.") from None
        if not chunk:
            if not buf:
                raise RequestError("is empty: the peer closed without sending anything", quiet=True)
            if header is None:
                raise RequestError(f"is missing data length ({len(buf)}-byte header). Message ignored.")
            raise RequestError(f"is shorter than expected {header.data_length} bytes. Message ignored.")
        buf += chunk
        if buf[:4] != zbxd.MAGIC[: len(buf[:4])]:
            raise RequestError("is missing header. Message ignored.")
        if header is None and len(buf) >= 5:
            need = zbxd.header_size(buf[4])
            if len(buf) >= need:
                try:
                    header = zbxd.parse_header(buf[:need], max_size)
                except zbxd.FrameError as e:
                    raise RequestError(f"has a bad header: {e}. Message ignored.") from None
                need = header.size + header.data_length
        if header is not None and len(buf) >= need:
            if len(buf) > need:
                raise RequestError(f"is longer than expected {header.data_length} bytes. Message ignored.")
            try:
                return zbxd.decode_body(header, buf[header.size:])
            except zbxd.FrameError as e:
                raise RequestError(f"has a bad body: {e}. Message ignored.") from None


class PassiveListener:
    """Serves passive checks with `workers` threads until stop() is called.

    `get(key)` returns the value as text or raises NotSupported(reason).
    """

    def __init__(
        self,
        get: Callable[[str], str],
        *,
        server: Sequence[str],
        listen_ips: Sequence[str] = ("0.0.0.0",),
        port: int = 10050,
        workers: int = 3,
        timeout: float = 3.0,
        backlog: int = socket.SOMAXCONN,
        max_request: int = MAX_REQUEST,
        tls: Acceptor | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.get = get
        self.server = list(server)
        self.listen_ips = list(listen_ips)
        self.port = port
        self.workers = workers
        self.timeout = timeout
        self.backlog = backlog
        self.max_request = max_request
        self.tls = tls  # None: plain text only (TLSAccept=unencrypted)
        self.peers = PeerFilter([])
        self.sockets: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self.stopping = threading.Event()
        self._timeval = struct.pack("ll", int(timeout), int((timeout % 1) * 1_000_000))
        self.served = 0  # replies sent; approximate (not locked), for the log on stop
        self.rejections = RateLimit(REJECT_LOG_INTERVAL)

    @classmethod
    def from_config(cls, cfg: AgentConfig, get: Callable[[str], str]) -> PassiveListener:
        return cls(
            get, server=cfg.server, listen_ips=cfg.listen_ip, port=cfg.listen_port,
            workers=cfg.start_agents, timeout=cfg.timeout, backlog=cfg.listen_backlog, tls=cfg.tls.acceptor(),
        )

    @property
    def addresses(self) -> list[tuple[str, int]]:
        return [s.getsockname()[:2] for s in self.sockets]

    def start(self) -> None:
        """Resolve Server, bind every ListenIP and start the workers. OSError if a bind fails."""
        self.peers = PeerFilter(self.server)
        try:
            for ip in self.listen_ips:
                family = socket.AF_INET6 if ":" in ip else socket.AF_INET
                s = socket.socket(family, socket.SOCK_STREAM)
                self.sockets.append(s)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6 and ip == "::":
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                # Kernel-side timeouts, set here once: accepted sockets inherit them, and they stay
                # blocking (socket.settimeout() would add a poll() before every recv and send).
                # accept() itself then wakes every Timeout seconds, which is harmless.
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, self._timeval)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, self._timeval)
                if hasattr(socket, "TCP_DEFER_ACCEPT"):
                    # accept() hands over a connection once its request has arrived, so a worker does not
                    # sit in recv() while the peer gets round to sending; a silent peer is handed over
                    # after a second and then gets Timeout as before
                    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_DEFER_ACCEPT, 1)
                s.bind((ip, self.port))
                s.listen(self.backlog)
        except OSError:
            self.stop()
            raise
        loop = self._accept_one if len(self.sockets) == 1 else self._accept_many
        for i in range(self.workers):
            t = threading.Thread(target=loop, name=f"passive-{i + 1}", daemon=True)
            t.start()
            self.threads.append(t)
        log.info("listening for passive checks on %s with %d workers, allowed hosts: %r",
                 ", ".join(f"[{h}]:{p}" for h, p in self.addresses), self.workers, self.peers.text)

    def stop(self) -> None:
        self.stopping.set()
        for s in self.sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)  # wakes the threads blocked in accept()
            except OSError:
                pass
            s.close()
        for t in self.threads:
            t.join(self.timeout + 2)
        self.threads.clear()
        self.sockets.clear()

    # --- workers --------------------------------------------------------------------------------

    def _accept_one(self) -> None:
        sock = self.sockets[0]
        family = sock.family
        while not self.stopping.is_set():
            try:
                # the C-level accept and socket: socket.socket's Python layer (enum conversions when
                # made, reference bookkeeping when closed) costs more than a passive request's own work
                fd, addr = sock._accept()  # type: ignore[attr-defined]
            except BlockingIOError:  # SO_RCVTIMEO: nobody connected for Timeout seconds
                continue
            except OSError:
                if self.stopping.is_set():
                    return
                log.warning("failed to accept an incoming connection", exc_info=True)
                continue
            self.handle(_socket.socket(family, socket.SOCK_STREAM, 0, fd), addr[0])

    def _accept_many(self) -> None:
        with selectors.DefaultSelector() as sel:
            for s in self.sockets:
                s.setblocking(False)
                sel.register(s, selectors.EVENT_READ)
            while not self.stopping.is_set():
                for k, _ in sel.select(0.5):
                    try:
                        conn, addr = k.fileobj.accept()  # type: ignore[union-attr]
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        if self.stopping.is_set():
                            return
                        raise
                    conn.setblocking(True)
                    self.handle(conn, addr[0])

    def handle(self, conn: _socket.socket, host: str) -> None:
        """Serve one connection and close it; never raises."""
        try:
            if not self.peers.allows(host):
                self._log_rejected(host)
                return
            if self.tls is not None:
                try:
                    conn = self.tls.accept(conn, host, self.timeout)
                except TLSError as e:
                    log.warning("failed to accept an incoming connection: %s", e)
                    return
            try:
                body = read_request(conn, self.max_request)
            except RequestError as e:
                log.log(logging.DEBUG if e.quiet else logging.WARNING, "Message from %s %s", host, e)
                return
            except OSError as e:
                log.debug("cannot read a request from %s: %s", host, e)
                return
            conn.sendall(zbxd.encode(self.answer(body, host)))
            self.served += 1
        except OSError as e:
            log.debug("cannot send a reply to %s: %s", host, e)
        except Exception:
            log.exception("unexpected error serving a request from %s", host)
        finally:
            conn.close()

    def _log_rejected(self, host: str) -> None:
        log_now, suppressed, key = self.rejections.check(host)
        if not log_now:
            return
        more = f" ({suppressed} more rejected since the last such line)" if suppressed else ""
        who = host if key == host else f"{host} {key}"
        log.warning('failed to accept an incoming connection: connection from "%s" rejected, allowed hosts: "%s"%s',
                    who, self.peers.text, more)

    def answer(self, body: bytes, host: str) -> bytes:
        """The reply body for a request body: the value, or ZBX_NOTSUPPORTED NUL reason."""
        try:
            key = body.decode("utf-8").rstrip(" \r\n\0")
        except UnicodeDecodeError:
            return encode_passive_reply(None, "Invalid item key format: the key is not UTF-8 text.")
        log.debug("Requested [%s] from %s", key if len(key) <= 256 else key[:256] + "...", host)
        CALLER.set(f"passive check from {host}")
        try:
            return encode_passive_reply(self.get(key))
        except NotSupported as e:
            return encode_passive_reply(None, str(e) or "Unsupported item key.")
        except Exception as e:  # a check's own bug must not take the listener down
            log.exception("check %r failed", key)
            return encode_passive_reply(None, f"Cannot obtain value: {type(e).__name__}: {e}")
