"""ZBXD framing: "ZBXD", a flags byte, two little-endian lengths, then the body.

Flags: 0x01 protocol marker (always set), 0x02 zlib-compressed body (the second length is then the
uncompressed size), 0x04 large packet (both lengths are 8 bytes instead of 4).
"""

from __future__ import annotations

import socket
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # asyncio costs the agent ~9 MB of RSS; only the server reads frames from streams
    import asyncio


class ByteReader(Protocol):
    """What frames are read from: an asyncio.StreamReader, or the server's SocketStream."""

    async def readexactly(self, n: int, /) -> bytes: ...


MAGIC = b"ZBXD"
FLAG_PROTOCOL = 0x01
FLAG_COMPRESSED = 0x02
FLAG_LARGE = 0x04
KNOWN_FLAGS = FLAG_PROTOCOL | FLAG_COMPRESSED | FLAG_LARGE

DEFAULT_MAX_FRAME = 128 * 1024 * 1024
_SMALL = struct.Struct("<II")
_LARGE = struct.Struct("<QQ")


class FrameError(ValueError):
    """A frame that cannot be accepted; `offset` is the byte where the problem was found."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(f"{message} (at byte {offset})")
        self.offset = offset


class FrameTooLarge(FrameError):
    """A well-formed header announcing more than the receiver takes; a reply can still be sent."""

    def __init__(self, message: str, offset: int, header: Header) -> None:
        super().__init__(message, offset)
        self.header = header


@dataclass(frozen=True, slots=True)
class Header:
    flags: int
    data_length: int
    reserved: int

    @property
    def size(self) -> int:
        return 5 + (16 if self.flags & FLAG_LARGE else 8)

    @property
    def body_length(self) -> int:
        """Size of the body once decompressed."""
        return self.reserved if self.flags & FLAG_COMPRESSED else self.data_length


def header_size(flags: int) -> int:
    return 5 + (16 if flags & FLAG_LARGE else 8)


def parse_header(data: bytes, max_size: int = DEFAULT_MAX_FRAME, max_body: int | None = None) -> Header:
    """Parse a header from the first bytes of `data` (at least 5, and the lengths once flags are known).

    `max_size` bounds what is read off the wire, `max_body` (if given) the body once decompressed.
    """
    if len(data) < 5:
        raise FrameError(f"truncated header: {len(data)} of at least 13 bytes", len(data))
    if data[:4] != MAGIC:
        raise FrameError(f"missing header: expected 'ZBXD', got {bytes(data[:4])!r}", 0)
    flags = data[4]
    if not flags & FLAG_PROTOCOL or flags & ~KNOWN_FLAGS:
        raise FrameError(f"unknown protocol flags 0x{flags:02x}", 4)
    need = header_size(flags)
    if len(data) < need:
        raise FrameError(f"truncated header: {len(data)} of {need} bytes", len(data))
    fmt = _LARGE if flags & FLAG_LARGE else _SMALL
    data_length, reserved = fmt.unpack_from(data, 5)
    header = Header(flags, data_length, reserved)
    if data_length > max_size:
        raise FrameTooLarge(f"frame of {data_length} bytes is over the maximum of {max_size}", 5, header)
    if flags & FLAG_COMPRESSED and reserved > max_size:
        raise FrameTooLarge(f"uncompressed size {reserved} is over the maximum of {max_size}", 5 + fmt.size // 2,
                            header)
    if max_body is not None and header.body_length > max_body:
        raise FrameTooLarge(f"body of {header.body_length} bytes once decompressed is over the maximum of "
                            f"{max_body}", 5 + fmt.size // 2 if flags & FLAG_COMPRESSED else 5, header)
    return header


def encode(body: bytes, *, compress: bool = False, large: bool = False, level: int = 6) -> bytes:
    """Frame `body`; compress with zlib (by default at level 6, as Zabbix does) when asked."""
    flags = FLAG_PROTOCOL
    if compress:
        flags |= FLAG_COMPRESSED
        payload, reserved = zlib.compress(body, level), len(body)
    else:
        payload, reserved = body, 0
    if large or len(payload) > 0xFFFFFFFF:
        flags |= FLAG_LARGE
        return MAGIC + bytes((flags,)) + _LARGE.pack(len(payload), reserved) + payload
    return MAGIC + bytes((flags,)) + _SMALL.pack(len(payload), reserved) + payload


def encode_like(body: bytes, flags: int) -> bytes:
    """Frame `body` the way a request with `flags` was framed (replies mirror the request)."""
    return encode(body, compress=bool(flags & FLAG_COMPRESSED), large=bool(flags & FLAG_LARGE))


def decode_body(header: Header, payload: bytes) -> bytes:
    """The body of a frame; a compressed one is inflated to at most its stated size (+1 to see a lie)."""
    if not header.flags & FLAG_COMPRESSED:
        return bytes(payload)
    try:
        d = zlib.decompressobj()
        body = d.decompress(payload, header.reserved + 1)
    except zlib.error as e:
        raise FrameError(f"cannot decompress body: {e}", header.size) from None
    if len(body) != header.reserved or not d.eof:
        raise FrameError(
            f"compressed body does not match its stated size {header.reserved} (got {len(body)})",
            header.size,
        )
    return body


def decode(data: bytes, max_size: int = DEFAULT_MAX_FRAME) -> tuple[Header, bytes]:
    """Decode one whole frame held in `data`; returns its header and the uncompressed body."""
    header = parse_header(data, max_size)
    end = header.size + header.data_length
    if len(data) < end:
        raise FrameError(f"truncated body: {len(data) - header.size} of {header.data_length} bytes", len(data))
    if len(data) > end:
        raise FrameError(f"{len(data) - end} bytes after the end of the frame", end)
    return header, decode_body(header, data[header.size : end])


async def read_frame(
    reader: asyncio.StreamReader, max_size: int = DEFAULT_MAX_FRAME
) -> tuple[Header, bytes]:
    """Read one frame from a stream. Raises FrameError on bad input, EOFError on a clean close."""
    header, payload = await read_raw_frame(reader, max_size)
    return header, decode_body(header, payload)


async def read_raw_frame(
    reader: ByteReader, max_size: int = DEFAULT_MAX_FRAME, max_body: int | None = None
) -> tuple[Header, bytes]:
    """Read one frame's header and payload, still compressed if it was (decode_body inflates it).

    Raises FrameTooLarge before reading a payload over `max_size` or a body over `max_body`,
    FrameError on other bad input, EOFError on a clean close.
    """
    import asyncio

    try:
        first = await reader.readexactly(5)
    except asyncio.IncompleteReadError as e:
        if not e.partial:
            raise EOFError("connection closed before any data") from None
        raise FrameError(f"truncated header: {len(e.partial)} of at least 13 bytes", len(e.partial)) from None
    if first[:4] != MAGIC:
        raise FrameError(f"missing header: expected 'ZBXD', got {first[:4]!r}", 0)
    need = header_size(first[4])
    try:
        rest = await reader.readexactly(need - 5)
    except asyncio.IncompleteReadError as e:
        raise FrameError(f"truncated header: {5 + len(e.partial)} of {need} bytes", 5 + len(e.partial)) from None
    header = parse_header(first + rest, max_size, max_body)
    try:
        payload = await reader.readexactly(header.data_length)
    except asyncio.IncompleteReadError as e:
        raise FrameError(
            f"truncated body: {len(e.partial)} of {header.data_length} bytes", header.size + len(e.partial)
        ) from None
    return header, payload


def _recv_exactly(sock: socket.socket, n: int, offset: int, what: str) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            if offset == 0 and not buf and what == "header":
                raise EOFError("connection closed before any data")
            raise FrameError(f"truncated {what}: {len(buf)} of {n} bytes", offset + len(buf))
        buf += chunk
    return bytes(buf)


def recv_frame(sock: socket.socket, max_size: int = DEFAULT_MAX_FRAME) -> tuple[Header, bytes]:
    """Blocking counterpart of read_frame for the command-line tools (the socket's timeout applies)."""
    first = _recv_exactly(sock, 5, 0, "header")
    if first[:4] != MAGIC:
        raise FrameError(f"missing header: expected 'ZBXD', got {first[:4]!r}", 0)
    rest = _recv_exactly(sock, header_size(first[4]) - 5, 5, "header")
    header = parse_header(first + rest, max_size)
    payload = _recv_exactly(sock, header.data_length, header.size, "body")
    return header, decode_body(header, payload)


def exchange(
    host: str,
    port: int,
    body: bytes,
    timeout: float = 3.0,
    source_ip: str | None = None,
    max_size: int = DEFAULT_MAX_FRAME,
    wrap: Callable[[socket.socket], socket.socket] | None = None,
) -> bytes:
    """One request, one reply over a fresh connection, as every Zabbix peer does. `wrap` (TLS, from
    agent/tls.py) takes the connected socket and returns the one to talk over."""
    sock = socket.create_connection((host, port), timeout=timeout,
                                    source_address=(source_ip, 0) if source_ip else None)
    if wrap is not None:
        sock = wrap(sock)
    with sock:
        sock.sendall(encode(body))
        _, reply = recv_frame(sock, max_size)
        return reply
