"""The wire protocol against bytes captured from the real Zabbix 6.0 programs (tests/vectors)."""

from __future__ import annotations

import asyncio
import json
import struct
import zlib
from pathlib import Path

import pytest
from vigil.agent.protocol import zbxd
from vigil.agent.protocol.itemkey import ItemKeyError, parse
from vigil.agent.protocol.messages import (
    ActiveChecksRequest,
    AgentData,
    ProcessedInfo,
    ProtocolError,
    SenderData,
    decode_passive_reply,
    encode_passive_reply,
    loads,
    parse_active_checks_response,
    parse_request,
    parse_response,
)

VECTORS = Path(__file__).resolve().parent.parent / "vectors"
ALL = sorted(p for p in VECTORS.rglob("*.bin"))
FRAMED = [p for p in ALL if p.read_bytes().startswith(b"ZBXD")]
UNFRAMED = [p for p in ALL if p not in FRAMED]


def _id(p: Path) -> str:
    return str(p.relative_to(VECTORS))


def test_vectors_are_there() -> None:
    assert len(FRAMED) >= 90 and len(UNFRAMED) >= 6


@pytest.mark.parametrize("path", FRAMED, ids=_id)
def test_frame_round_trip(path: Path) -> None:
    raw = path.read_bytes()
    header, body = zbxd.decode(raw)
    assert zbxd.encode_like(body, header.flags) == raw


@pytest.mark.parametrize("path", [p for p in FRAMED if p.parent.name != "proxy"], ids=_id)  # proxy/: tests/proxy
def test_message_round_trip(path: Path) -> None:
    """Every JSON body decodes into our dataclasses and re-encodes to the same bytes."""
    header, body = zbxd.decode(path.read_bytes())
    if not body.startswith(b"{"):
        # Passive checks: the bare key, or the bare value / ZBX_NOTSUPPORTED\0reason.
        if path.name.endswith(".response.bin"):
            value, error = decode_passive_reply(body)
            assert encode_passive_reply(value, error) == body
        else:
            assert str(parse(body.decode())) == body.decode()
        return
    try:
        obj = json.loads(body)
    except ValueError:
        with pytest.raises(ProtocolError, match="cannot parse as a valid JSON object"):
            loads(body)
        return
    compact = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() == body
    if "request" in obj:
        try:
            msg = parse_request(obj)
        except ProtocolError as e:
            assert "unknown request" in str(e)
            return
        encoded = msg.to_json()
    elif "data" in obj:
        encoded = parse_active_checks_response(body).to_json()
    else:
        encoded = parse_response(body).to_json()
        if obj.get("info", "").startswith("processed"):
            assert str(ProcessedInfo.parse(obj["info"])) == obj["info"]
    if compact:
        assert encoded == body
    else:  # hand-made with spaces after separators: the same message, in Zabbix's compact form
        assert json.loads(encoded) == obj


@pytest.mark.parametrize("path", UNFRAMED, ids=_id)
def test_unframed_vectors_are_refused(path: Path) -> None:
    raw = path.read_bytes()
    if not raw:
        return  # the peer's (empty) reply: it closed without answering
    with pytest.raises(zbxd.FrameError, match="missing header"):
        zbxd.decode(raw)


def test_request_types() -> None:
    def req(name: str) -> object:
        return parse_request(json.loads(zbxd.decode((VECTORS / name).read_bytes())[1]))

    s = req("zabbix60/sender-batch-TN-1.request.bin")
    assert isinstance(s, SenderData) and s.data[0].ns == 123456789 and s.clock is not None
    a = req("active-2.request.bin")
    assert isinstance(a, AgentData) and a.data[3].lastlogsize == 17 and a.data[0].id == 1
    c = req("active-1.request.bin")
    assert isinstance(c, ActiveChecksRequest) and c.host_metadata == "linux-test" and c.port == 31052


def test_large_and_compressed_flags() -> None:
    body = b'{"request":"sender data","data":[]}'
    for kw in ({"compress": True}, {"large": True}, {"compress": True, "large": True}):
        raw = zbxd.encode(body, **kw)
        header, out = zbxd.decode(raw)
        assert out == body and bool(header.flags & zbxd.FLAG_LARGE) == kw.get("large", False)


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"ZBX", "truncated header"),
        (b"ZBXD\x01\x05\x00", "truncated header"),
        (b"HTTP/1.1", "missing header"),
        (b"ZBXD\x09" + struct.pack("<II", 0, 0), "unknown protocol flags 0x09"),
        (b"ZBXD\x01" + struct.pack("<II", 10, 0) + b"short", "truncated body: 5 of 10"),
        (b"ZBXD\x01" + struct.pack("<II", 2, 0) + b"long", "2 bytes after the end"),
        (b"ZBXD\x01" + struct.pack("<II", 2000, 0), "over the maximum of 1024"),
        (b"ZBXD\x03" + struct.pack("<II", 4, 10) + b"junk", "cannot decompress"),
        (b"ZBXD\x03" + struct.pack("<II", 2000, 5000), "over the maximum"),
    ],
)
def test_bad_frames_name_the_problem(raw: bytes, message: str) -> None:
    with pytest.raises(zbxd.FrameError, match=message):
        zbxd.decode(raw, max_size=1024)


def test_compressed_size_that_lies() -> None:
    payload = zlib.compress(b"x" * 100)
    raw = b"ZBXD\x03" + struct.pack("<II", len(payload), 50) + payload
    with pytest.raises(zbxd.FrameError, match="does not match its stated size 50"):
        zbxd.decode(raw)


def test_stream_reader_truncation() -> None:
    async def read(data: bytes) -> tuple[zbxd.Header, bytes]:
        r = asyncio.StreamReader()
        r.feed_data(data)
        r.feed_eof()
        return await zbxd.read_frame(r, 1024)

    with pytest.raises(EOFError):
        asyncio.run(read(b""))
    with pytest.raises(zbxd.FrameError, match="truncated body: 3 of 10"):
        asyncio.run(read(b"ZBXD\x01" + struct.pack("<II", 10, 0) + b"abc"))
    assert asyncio.run(read(zbxd.encode(b"hi")))[1] == b"hi"


@pytest.mark.parametrize(
    "obj, message",
    [
        ({"request": "sender data"}, "missing field 'data'"),
        ({"request": "sender data", "data": {}}, "must be a list"),
        ({"request": "sender data", "data": [{"host": "h", "value": "1"}]}, r"data\[0\]: missing field 'key'"),
        ({"request": "sender data", "data": [{"host": 1, "key": "k", "value": "1"}]}, "'host' must be a string"),
        ({"request": "sender data", "data": [{"host": "h", "key": "k", "value": [1]}]}, "'value' must be"),
        ({"request": "sender data", "data": [{"host": "h", "key": "k", "value": "1", "clock": -5}]}, "'clock'"),
        ({"request": "agent data", "data": [{"host": "h", "key": "k", "value": "1", "clock": 1}]}, "'id'"),
        ({"request": "active checks"}, "missing field 'host'"),
        ({"request": "frobnicate"}, "unknown request 'frobnicate'"),
        ({}, "missing field 'request'"),
    ],
)
def test_bad_requests_name_the_field(obj: dict, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        parse_request(obj)


def test_json_depth_is_bounded() -> None:
    with pytest.raises(ProtocolError, match="nesting deeper than 64"):
        loads(b"[" * 10000 + b"]" * 10000)
    assert loads(b'{"a":"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}')


def nested(depth: int) -> str:
    """A JSON value `depth` containers deep, alternating objects and lists."""
    out = '"x"'
    for k in range(depth):
        out = f'{{"k":{out}}}' if k % 2 else f"[{out},1]"
    return out


@pytest.mark.parametrize("depth, ok", [(60, True), (61, True), (62, False)])  # 3 levels around it
def test_json_depth_is_counted_through_mixed_levels(depth: int, ok: bool) -> None:
    """The depth walk's C-level paths (levels of only dicts, of only lists, or holding no containers)
    count as the plain walk does: a deep value among 10,000 flat records in a list in an object."""
    records = ",".join(f'{{"id":{i},"itemid":1,"clock":2,"ns":3,"value":"v"}}' for i in range(10_000))
    body = f'{{"request":"proxy data","history data":[{records},{{"deep":{nested(depth)}}}],"more":1}}'.encode()
    if ok:
        assert len(loads(body)["history data"]) == 10_001
    else:
        with pytest.raises(ProtocolError, match="nesting deeper than 64"):
            loads(body)


@pytest.mark.parametrize(
    "key, name, params",
    [
        ("agent.ping", "agent.ping", ()),
        ("vfs.fs.size[/,free]", "vfs.fs.size", ("/", "free")),
        ('log["/var/log/a b.log","err, warn",,100]', "log", ("/var/log/a b.log", "err, warn", "", "100")),
        ('k[ "q\\"x" ,b]', "k", ('q"x', "b")),
        ("k[[a,b],c]", "k", (["a", "b"], "c")),
        ("system.cpu.util[,user]", "system.cpu.util", ("", "user")),
        ("k[]", "k", ("",)),
    ],
)
def test_item_keys(key: str, name: str, params: tuple) -> None:
    k = parse(key)
    assert k.name == name and k.params == params
    assert parse(str(k)) == k


@pytest.mark.parametrize(
    "key, message",
    [
        ("", "empty key"),
        ("bad key", "invalid character ' '"),
        ("k[a", "missing closing"),
        ('k["a]', "unterminated quoted"),
        ('k["a"b]', "expected ',' or ']'"),
        ("k[a]x", "unexpected text after"),
        ("k[[a,[b]]]", "may not be nested"),
        ("k" * 3000, "longer than 2048"),
    ],
)
def test_bad_item_keys(key: str, message: str) -> None:
    with pytest.raises(ItemKeyError, match=message):
        parse(key)


@pytest.mark.parametrize("body, value", [
    (b'{"a":[1,{"b":18446744073709551616}]}', [1, {"b": 2**64}]),  # orjson would read it as a float
    (b'{"a":[1.5,-99999999999999999999]}', [1.5, -99999999999999999999]),
    (b'{"a":[1.5,"12345678901234567890123"]}', [1.5, "12345678901234567890123"]),
    (b'{"a":[2.5,18446744073709551615]}', [2.5, 2**64 - 1]),
])
def test_integers_beyond_64_bits_stay_exact(body: bytes, value: list) -> None:
    got = loads(body)["a"]
    assert got == value and [type(v) for v in got] == [type(v) for v in value]
    if isinstance(value[1], dict):
        assert type(got[1]["b"]) is int
