"""A small, fast BER codec for SNMP v1/v2c requests and responses (no I/O).

pysnmp decodes with pyasn1, which spends most of a bulk walk's time building ASN.1 objects: about 15 %
of Net-SNMP's rate. For community-based SNMP (nothing to authenticate or decrypt) the poller encodes
its GET, GETNEXT and GETBULK requests and decodes the responses here, straight into SnmpValue, and
keeps pysnmp for SNMPv3 and for traps. Every length is checked against the datagram; anything that
does not parse raises BerError naming the offset.
"""

from __future__ import annotations

from dataclasses import dataclass

from vigil.server.pollers.snmp_values import (
    COUNTER32,
    COUNTER64,
    END_OF_MIB_VIEW,
    GAUGE32,
    INTEGER,
    IP_ADDRESS,
    NO_SUCH_INSTANCE,
    NO_SUCH_OBJECT,
    NULL,
    OID,
    OPAQUE,
    TIMETICKS,
    NotSupported,
    SnmpValue,
    _printable,
    hex_text,
)

GET, GETNEXT, RESPONSE, GETBULK = 0xA0, 0xA1, 0xA2, 0xA5
_EXCEPTIONS = {0x80: NO_SUCH_OBJECT, 0x81: NO_SUCH_INSTANCE, 0x82: END_OF_MIB_VIEW}
END_OF_MIB = 0x82
ERROR_STATUS = ["noError", "tooBig", "noSuchName", "badValue", "readOnly", "genErr", "noAccess", "wrongType",
                "wrongLength", "wrongEncoding", "wrongValue", "noCreation", "inconsistentValue",
                "resourceUnavailable", "commitFailed", "undoFailed", "authorizationError", "notWritable",
                "inconsistentName"]


class BerError(ValueError):
    """A datagram that is not a well-formed SNMP message."""


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(b),)) + b


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + _len(len(content)) + content


def _int(v: int) -> bytes:
    return _tlv(0x02, v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big", signed=True))


def encode_oid(oid: str) -> bytes:
    """The content octets of an OID given as dotted text (no leading dot)."""
    arcs = [int(a) for a in oid.split(".")]
    if len(arcs) < 2:
        raise ValueError(f"OID {oid!r} needs two arcs")
    out = bytearray()
    for arc in [arcs[0] * 40 + arcs[1], *arcs[2:]]:
        if arc < 0x80:
            out.append(arc)
            continue
        chunk = []
        while arc:
            chunk.append(arc & 0x7F)
            arc >>= 7
        chunk.reverse()
        out.extend([c | 0x80 for c in chunk[:-1]] + [chunk[-1]])
    return bytes(out)


def decode_oid(b: bytes) -> str:
    arcs: list[int] = []
    v = 0
    for byte in b:
        v = (v << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(v)
            v = 0
    if not arcs or b[-1] & 0x80:
        raise BerError("truncated OID")
    first = arcs[0]
    head = f"{first // 40}.{first % 40}" if first < 80 else f"2.{first - 80}"
    if len(arcs) == 1:
        return head
    return head + "." + ".".join(map(str, arcs[1:]))


def encode_request(version: int, community: str, pdu: int, request_id: int, oids: list[bytes],
                   non_repeaters: int = 0, max_repetitions: int = 0) -> bytes:
    """A v1 (version 0) or v2c (1) message; `oids` are content octets from encode_oid."""
    vbs = b"".join(_tlv(0x30, _tlv(0x06, o) + b"\x05\x00") for o in oids)
    a, b = (non_repeaters, max_repetitions) if pdu == GETBULK else (0, 0)
    body = _int(request_id) + _int(a) + _int(b) + _tlv(0x30, vbs)
    return _tlv(0x30, _int(version) + _tlv(0x04, community.encode()) + _tlv(pdu, body))


@dataclass(slots=True)
class Response:
    request_id: int
    error_status: int
    error_index: int
    varbinds: list[tuple[bytes, int, bytes]]  # (OID content octets, value tag, value content octets)

    @property
    def error_name(self) -> str:
        s = self.error_status
        return ERROR_STATUS[s] if 0 <= s < len(ERROR_STATUS) else f"error {s}"


def _header(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the TLV at `pos`."""
    if pos + 2 > end:
        raise BerError(f"truncated element at offset {pos}")
    tag = data[pos]
    n = data[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0 or k > 4 or pos + k > end:
            raise BerError(f"bad length at offset {pos - 1}")
        n = int.from_bytes(data[pos:pos + k], "big")
        pos += k
    if pos + n > end:
        raise BerError(f"element at offset {pos} runs past the end of the message")
    return tag, pos, pos + n


def _expect(data: bytes, pos: int, end: int, tag: int, what: str) -> tuple[int, int]:
    t, s, e = _header(data, pos, end)
    if t != tag:
        raise BerError(f"expected {what} at offset {pos}, got tag 0x{t:02X}")
    return s, e


def decode_response(data: bytes, community: str | None = None) -> tuple[int, Response]:
    """(version, Response) from a datagram; raises BerError if it is not a v1/v2c GetResponse."""
    end = len(data)
    s, e = _expect(data, 0, end, 0x30, "message SEQUENCE")
    vs, ve = _expect(data, s, e, 0x02, "version")
    version = int.from_bytes(data[vs:ve], "big", signed=True)
    cs, ce = _expect(data, ve, e, 0x04, "community")
    if community is not None and data[cs:ce] != community.encode():
        raise BerError("response for another community")
    tag, ps, pe = _header(data, ce, e)
    if tag != RESPONSE:
        raise BerError(f"expected a GetResponse PDU at offset {ce}, got tag 0x{tag:02X}")
    rs, re_ = _expect(data, ps, pe, 0x02, "request-id")
    es, ee = _expect(data, re_, pe, 0x02, "error-status")
    xs, xe = _expect(data, ee, pe, 0x02, "error-index")
    ls, le = _expect(data, xe, pe, 0x30, "varbind list")
    vbs: list[tuple[bytes, int, bytes]] = []
    pos = ls
    while pos < le:
        bs, be = _expect(data, pos, le, 0x30, "varbind")
        os_, oe = _expect(data, bs, be, 0x06, "OID")
        vt, v_s, v_e = _header(data, oe, be)
        vbs.append((data[os_:oe], vt, data[v_s:v_e]))
        pos = be
    return version, Response(int.from_bytes(data[rs:re_], "big", signed=True),
                             int.from_bytes(data[es:ee], "big", signed=True),
                             int.from_bytes(data[xs:xe], "big", signed=True), vbs)


def value_of(oid: str, tag: int, raw: bytes) -> SnmpValue:
    """A varbind's value as an SnmpValue, as snmp_values.convert does for pysnmp's objects."""
    if tag == 0x02:
        return SnmpValue(oid, INTEGER, int.from_bytes(raw, "big", signed=True))
    if tag == 0x04:
        if _printable(raw):
            return SnmpValue(oid, "STRING", raw.rstrip(b"\x00").decode("ascii"), raw)
        return SnmpValue(oid, "Hex-STRING", hex_text(raw), raw)
    if tag == 0x41:
        return SnmpValue(oid, COUNTER32, int.from_bytes(raw, "big"))
    if tag == 0x42:
        return SnmpValue(oid, GAUGE32, int.from_bytes(raw, "big"))
    if tag == 0x43:
        return SnmpValue(oid, TIMETICKS, int.from_bytes(raw, "big"))
    if tag == 0x46:
        return SnmpValue(oid, COUNTER64, int.from_bytes(raw, "big"))
    if tag == 0x06:
        return SnmpValue(oid, OID, decode_oid(raw))
    if tag == 0x40:
        return SnmpValue(oid, IP_ADDRESS, ".".join(str(b) for b in raw))
    if tag == 0x05:
        return SnmpValue(oid, NULL, "")
    if tag == 0x44:
        return SnmpValue(oid, OPAQUE, hex_text(raw), raw)
    if tag in _EXCEPTIONS:
        raise NotSupported(_EXCEPTIONS[tag])
    raise NotSupported(f"Value of OID {oid} has an unknown SNMP type 0x{tag:02X}")
