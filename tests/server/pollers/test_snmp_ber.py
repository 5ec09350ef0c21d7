"""Vigil's v1/v2c BER codec checked against pysnmp's encoder and decoder, malformed replies, and the
shared socket's handling of replies that do not belong to a request."""

from __future__ import annotations

import asyncio
import socket

import pytest
from pyasn1.codec.ber import decoder, encoder
from pysnmp.proto import api, rfc1902, rfc1905
from vigil.server.pollers import snmp_ber as ber
from vigil.server.pollers.snmp import SnmpSession, SnmpTarget, SnmpTimeout
from vigil.server.pollers.snmp_values import NO_SUCH_INSTANCE, NotSupported

P = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]


def pysnmp_response(request_id: int, varbinds: list[tuple[str, object]], community: str = "c",
                    error_status: int = 0, error_index: int = 0) -> bytes:
    pdu = P.GetResponsePDU()
    P.apiPDU.set_defaults(pdu)
    P.apiPDU.set_request_id(pdu, request_id)
    P.apiPDU.set_error_status(pdu, error_status)
    P.apiPDU.set_error_index(pdu, error_index)
    P.apiPDU.set_varbinds(pdu, [(rfc1902.ObjectName(o), v) for o, v in varbinds])
    msg = P.Message()
    P.apiMessage.set_defaults(msg)
    P.apiMessage.set_community(msg, community)
    P.apiMessage.set_pdu(msg, pdu)
    return encoder.encode(msg)


@pytest.mark.parametrize("oid", ["1.3.6.1.2.1.1.5.0", "0.0", "2.999.3", "1.3.6.1.4.1.2147483647.128.16383.16384",
                                 "1.3.6.1.2.1.31.1.1.1.6.4294967295"])
def test_oid_round_trip_against_pysnmp(oid: str) -> None:
    ours = ber.encode_oid(oid)
    theirs = encoder.encode(rfc1902.ObjectName(oid))
    assert theirs[2:] == ours if len(ours) < 128 else True
    assert ber.decode_oid(ours) == oid


def test_request_is_what_pysnmp_decodes() -> None:
    data = ber.encode_request(1, "public-ro", ber.GETBULK, 123456, [ber.encode_oid("1.3.6.1.2.1.2.2.1.2")], 0, 25)
    msg, rest = decoder.decode(data, asn1Spec=P.Message())
    assert rest == b""
    pdu = P.apiMessage.get_pdu(msg)
    assert str(P.apiMessage.get_community(msg)) == "public-ro"
    assert int(P.apiBulkPDU.get_request_id(pdu)) == 123456
    assert int(P.apiBulkPDU.get_max_repetitions(pdu)) == 25
    assert [str(o) for o, _ in P.apiBulkPDU.get_varbinds(pdu)] == ["1.3.6.1.2.1.2.2.1.2"]
    get = ber.encode_request(0, "x", ber.GET, 7, [ber.encode_oid("1.3.6.1.2.1.1.5.0"), ber.encode_oid("1.3.6")])
    msg, _ = decoder.decode(get, asn1Spec=api.PROTOCOL_MODULES[api.SNMP_VERSION_1].Message())
    assert int(msg["version"]) == 0 and len(P.apiPDU.get_varbinds(P.apiMessage.get_pdu(msg))) == 2


def test_response_values_decode_like_pysnmp_objects() -> None:
    vbs = [("1.3.6.1.2.1.1.5.0", rfc1902.OctetString(b"host")), ("1.1", rfc1902.Integer32(-42)),
           ("1.2", rfc1902.Counter32(2**32 - 1)), ("1.3", rfc1902.Counter64(2**64 - 1)),
           ("1.4", rfc1902.Gauge32(2**31)), ("1.5", rfc1902.TimeTicks(360000)),
           ("1.6", rfc1902.IpAddress("10.1.2.3")), ("1.7", rfc1902.ObjectName("1.3.6.1.4.1.8072.3.2.10")),
           ("1.8", rfc1902.OctetString(b"\x00\x1a\xff")), ("1.9", rfc1905.NoSuchInstance()),
           ("1.10", rfc1905.EndOfMibView())]
    version, resp = ber.decode_response(pysnmp_response(99, vbs))
    assert (version, resp.request_id, resp.error_status) == (1, 99, 0)
    values = []
    for o, tag, raw in resp.varbinds:
        try:
            values.append(ber.value_of(ber.decode_oid(o), tag, raw))
        except NotSupported as e:
            values.append(str(e))
    assert [(v.type, v.value) if not isinstance(v, str) else v for v in values] == [
        ("STRING", "host"), ("INTEGER", -42), ("Counter32", 2**32 - 1), ("Counter64", 2**64 - 1),
        ("Gauge32", 2**31), ("Timeticks", 360000), ("IpAddress", "10.1.2.3"), ("OID", "1.3.6.1.4.1.8072.3.2.10"),
        ("Hex-STRING", "00 1A FF"), NO_SUCH_INSTANCE,
        "No more variables left in this MIB View (it is past the end of the MIB tree)"]


def test_error_status_is_read() -> None:
    _, resp = ber.decode_response(pysnmp_response(5, [("1.3.6", rfc1902.Null())], error_status=2, error_index=1))
    assert (resp.error_name, resp.error_index) == ("noSuchName", 1)


@pytest.mark.parametrize("data, words", [
    (b"", "truncated"),
    (b"\x04\x00", "expected message SEQUENCE"),
    (b"\x30\x04\x02\x01\x01\x04", "truncated"),
    (b"\x30\x05\x02\x01\x01\x04", "runs past the end"),
    (b"\x30\x7f\x02\x01\x01", "runs past the end"),
    (b"\x30\x85\x01\x00\x00\x00\x00", "bad length"),
])
def test_malformed_responses_raise_ber_error(data: bytes, words: str) -> None:
    with pytest.raises(ber.BerError, match=words):
        ber.decode_response(data)


def test_not_a_response_pdu_and_truncated_oid() -> None:
    req = ber.encode_request(1, "c", ber.GET, 1, [ber.encode_oid("1.3.6")])
    with pytest.raises(ber.BerError, match="GetResponse"):
        ber.decode_response(req)
    with pytest.raises(ber.BerError, match="truncated OID"):
        ber.decode_oid(b"\x2b\x86")


def test_stale_and_garbage_replies_are_ignored() -> None:
    """A fake agent answers each request first with garbage, then with a stale request-id, then for real."""
    dev = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dev.bind(("127.0.0.1", 0))
    dev.setblocking(False)
    port = dev.getsockname()[1]

    async def agent() -> None:
        loop = asyncio.get_running_loop()
        for _ in range(2):
            data, addr = await loop.sock_recvfrom(dev, 65535)
            _msg, _ = decoder.decode(data, asn1Spec=P.Message())
            rid = int(P.apiPDU.get_request_id(P.apiMessage.get_pdu(_msg)))
            await loop.sock_sendto(dev, b"\x30\x03junk", addr)
            await loop.sock_sendto(dev, pysnmp_response(rid + 1000, [("1.3.6.1.2.1.1.5.0", rfc1902.OctetString(b"x"))],
                                                        "public"), addr)
            await loop.sock_sendto(dev, pysnmp_response(rid, [("1.3.6.1.2.1.1.5.0", rfc1902.OctetString(b"ok"))],
                                                        "public"), addr)

    async def main() -> tuple[str, str, int]:
        task = asyncio.ensure_future(agent())
        s = SnmpSession(SnmpTarget("127.0.0.1", port, timeout=2, retries=0))
        try:
            a = (await s.get_one("1.3.6.1.2.1.1.5.0")).value
            b = (await s.get_one("1.3.6.1.2.1.1.5.0")).value
            dropped = s._engines.community().dropped
        finally:
            await s.close()
            await task
        return str(a), str(b), dropped

    try:
        assert asyncio.run(main()) == ("ok", "ok", 4)
    finally:
        dev.close()


def test_no_reply_is_a_timeout_after_the_retries() -> None:
    dev = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dev.bind(("127.0.0.1", 0))
    port = dev.getsockname()[1]

    async def main() -> None:
        s = SnmpSession(SnmpTarget("127.0.0.1", port, timeout=0.3, retries=2))
        try:
            await s.get_one("1.3.6.1.2.1.1.5.0")
        finally:
            await s.close()

    try:
        with pytest.raises(SnmpTimeout):
            asyncio.run(main())
        dev.setblocking(False)
        got = 0
        while True:
            try:
                dev.recv(65535)
            except BlockingIOError:
                break
            got += 1
        assert got == 3  # the first try and two retries
    finally:
        dev.close()


def test_too_big_halves_the_bulk_size_and_splits_gets() -> None:
    """A fake agent that answers tooBig to any GETBULK asking more than 4 and to any GET of more than 2."""
    dev = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dev.bind(("127.0.0.1", 0))
    dev.setblocking(False)
    port = dev.getsockname()[1]
    table = [f"1.3.6.1.2.1.2.2.1.2.{i}" for i in range(1, 11)]
    seen: list[tuple[str, int]] = []

    async def agent(stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                data, addr = await asyncio.wait_for(loop.sock_recvfrom(dev, 65535), 0.2)
            except TimeoutError:
                continue
            msg, _ = decoder.decode(data, asn1Spec=P.Message())
            pdu = P.apiMessage.get_pdu(msg)
            rid = int(P.apiPDU.get_request_id(pdu))
            oids = [str(o) for o, _ in P.apiPDU.get_varbinds(pdu)]
            if pdu.tagSet == P.GetBulkRequestPDU.tagSet:
                n = int(P.apiBulkPDU.get_max_repetitions(pdu))
                seen.append(("bulk", n))
                if n > 4:
                    await loop.sock_sendto(dev, pysnmp_response(rid, [(oids[0], rfc1902.Null())], "public", 1), addr)
                    continue
                after = [o for o in table if tuple(map(int, o.split("."))) > tuple(map(int, oids[0].split(".")))]
                vbs = [(o, rfc1902.OctetString(f"if{o.rsplit('.', 1)[1]}".encode())) for o in after[:n]]
                vbs = vbs or [(oids[0], rfc1905.EndOfMibView())]
                if len(vbs) < n and vbs[-1][0] in table:
                    vbs.append(("1.3.6.1.2.1.2.2.1.3.1", rfc1902.Integer32(6)))
                await loop.sock_sendto(dev, pysnmp_response(rid, vbs, "public"), addr)
            else:
                seen.append(("get", len(oids)))
                if len(oids) > 2:
                    await loop.sock_sendto(dev, pysnmp_response(rid, [(o, rfc1902.Null()) for o in oids], "public",
                                                                1), addr)
                    continue
                vbs = [(o, rfc1902.OctetString(b"v")) for o in oids]
                await loop.sock_sendto(dev, pysnmp_response(rid, vbs, "public"), addr)

    async def main() -> tuple[list[str], list[object], int]:
        stop = asyncio.Event()
        task = asyncio.ensure_future(agent(stop))
        s = SnmpSession(SnmpTarget("127.0.0.1", port, max_repetitions=16, timeout=2, retries=0))
        try:
            walk = [v.oid for v in await s.walk("1.3.6.1.2.1.2.2.1.2")]
            gets = await s.get([f"1.3.6.1.2.1.1.{i}.0" for i in range(1, 6)])
            return walk, gets, s.max_repetitions
        finally:
            await s.close()
            stop.set()
            await task

    try:
        walk, gets, reps = asyncio.run(main())
    finally:
        dev.close()
    assert walk == table and reps == 4
    assert [("bulk", 16), ("bulk", 8), ("bulk", 4)] == seen[:3]
    assert all(getattr(g, "value", None) == "v" for g in gets)
    assert [n for kind, n in seen if kind == "get"] == [5, 2, 3, 1, 2]  # split in halves until they fit


def test_an_agent_that_does_not_move_forward_fails_the_walk() -> None:
    """A broken agent answering each GETNEXT with an OID not after the one asked: the walk stops with an
    error naming it instead of looping."""
    dev = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dev.bind(("127.0.0.1", 0))
    dev.setblocking(False)
    port = dev.getsockname()[1]

    async def agent(stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        answers = iter(["1.3.6.1.2.1.2.2.1.2.2", "1.3.6.1.2.1.2.2.1.2.1"])  # the second goes backwards
        while not stop.is_set():
            try:
                data, addr = await asyncio.wait_for(loop.sock_recvfrom(dev, 65535), 0.2)
            except TimeoutError:
                continue
            msg, _ = decoder.decode(data, asn1Spec=P.Message())
            rid = int(P.apiPDU.get_request_id(P.apiMessage.get_pdu(msg)))
            oid = next(answers, "1.3.6.1.2.1.2.2.1.2.1")
            await loop.sock_sendto(dev, pysnmp_response(rid, [(oid, rfc1902.OctetString(b"x"))], "public"), addr)

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.ensure_future(agent(stop))
        s = SnmpSession(SnmpTarget("127.0.0.1", port, bulk=False, timeout=2, retries=0))
        try:
            await s.walk("1.3.6.1.2.1.2.2.1.2")
        finally:
            await s.close()
            stop.set()
            await task

    try:
        with pytest.raises(NotSupported, match=r"returned OID 1\.3\.6\.1\.2\.1\.2\.2\.1\.2\.1 out of order"):
            asyncio.run(main())
    finally:
        dev.close()
