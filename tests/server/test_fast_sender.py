"""The compiled path of `sender data` (server/ingest/_sender.c) against sender_values, its definition.

fast_sender_values must either give exactly what orjson + sender_values give for the same body (rows,
their order, stamps, failed count) or decline (None). The tests check both halves: it agrees on every
body it takes, and it takes the bodies zabbix_sender sends, so that the check is not vacuous.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from vigil.agent.protocol import zbxd
from vigil.server.config.migrate import engine_for, upgrade
from vigil.server.config.model import doc_from_dict
from vigil.server.config.repo import ConfigRepo, Snapshot
from vigil.server.ingest import values
from vigil.server.ingest.cache import ConfigCache
from vigil.server.ingest.convert import FLOAT_SYNTAX
from vigil.server.ingest.values import DEFAULT_WINDOW, ClockWindow, Stamps, fast_sender_values, sender_values
from vigil.server.store.base import WriteBatch

from tests.server.test_ingest_values import CONFIG, FLOAT_TABLE, NOW, UNSIGNED_TABLE

VECTORS = Path(__file__).parent.parent / "vectors"
Result = tuple[WriteBatch, int, int]


@pytest.fixture(scope="module")
def snap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Snapshot]:
    # SQLite only: what is compared is the snapshot's lookup, the same whichever store made it.
    engine = engine_for(f"sqlite:///{tmp_path_factory.mktemp('fast') / 'vigil.db'}")
    upgrade(engine)
    repo = ConfigRepo(engine)
    repo.apply(doc_from_dict(yaml.safe_load(CONFIG + EXTRA_HOST)))
    yield repo.snapshot()
    engine.dispose()


EXTRA_HOST = """
  - host: 'h x'
    items:
      - {key: 'f[1,"é b"]', type: trapper, value_type: float}
"""


def slow(snap: Snapshot, body: bytes, now_ns: int, window: ClockWindow, max_values: int,
         monkeypatch: pytest.MonkeyPatch) -> Result | None:
    """What the listener does without the compiled path, for a body that is valid sender data."""
    monkeypatch.setattr(values, "STAMPS", Stamps())
    obj = orjson.loads(body)
    data = obj["data"]
    if len(data) > max_values:
        return None
    batch, failed = sender_values(snap, data, NOW, now_ns, "test", window)
    return batch, failed, len(data)


def fast(snap: Snapshot, body: bytes, now_ns: int, window: ClockWindow, max_values: int,
         monkeypatch: pytest.MonkeyPatch) -> Result | None:
    monkeypatch.setattr(values, "STAMPS", Stamps())
    return fast_sender_values(snap, body, NOW, now_ns, window, max_values)


def same(a: Result, b: Result) -> bool:
    (ba, fa, na), (bb, fb, nb) = a, b
    return (fa, na) == (fb, nb) and all(
        _exact(getattr(ba, f)) == _exact(getattr(bb, f)) for f in ("floats", "uints", "strs", "texts", "logs"))


def _exact(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    # -0.0 == 0.0 in Python: compare the type and representation too
    return [tuple((type(x), repr(x)) for x in r) for r in rows]


def both(snap: Snapshot, body: bytes, monkeypatch: pytest.MonkeyPatch, *, now_ns: int = 5,
         window: ClockWindow = DEFAULT_WINDOW, max_values: int = 10_000) -> Result | None:
    """The fast path's answer, after checking it against the slow path's when it gives one."""
    got = fast(snap, body, now_ns, window, max_values, monkeypatch)
    if got is not None:
        want = slow(snap, body, now_ns, window, max_values, monkeypatch)
        assert want is not None and same(got, want), body[:300]
    return got


def body_of(data: list[Any], **top: Any) -> bytes:
    return json.dumps({"request": "sender data", "data": data, **top}, ensure_ascii=False).encode()


def v(key: str, value: Any, host: str = "h", **kw: Any) -> dict[str, Any]:
    return {"host": host, "key": key, "value": value, **kw}


def test_the_extension_is_built() -> None:
    # setup.py builds it optionally; where tests run, a compiler is present and it must be there
    assert values._sender is not None, "server/ingest/_sender.c was not built: reinstall with a C compiler"


def test_zabbix_senders_bodies_take_the_fast_path(snap: Snapshot, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("sender-batch-T-1", "sender-ns-1", "sender-single-1", "sender-partial-fail-1"):
        raw = (VECTORS / f"{name}.request.bin").read_bytes()
        _, body = zbxd.decode(raw)
        data = orjson.loads(body)["data"]
        window = ClockWindow(ahead=2**31, age=2**31)  # the captures' clocks are of their day
        got = both(snap, body, monkeypatch, window=window)
        assert got is not None, name
        assert got[1:] == (len(data), len(data))  # no such hosts here: every value fails, none is lost


def test_each_value_type_and_time_rule(snap: Snapshot, monkeypatch: pytest.MonkeyPatch) -> None:
    data = [v("f", "1.5"), v("u", "18446744073709551615"), v("c", "é" * 300), v("t", "x" * 70_000),
            v("f", "2.5", clock=NOW), v("f", "3.5", clock=NOW, ns=999_999_999), v("u", "007", clock=NOW),
            v("f", "-0"), v("nokey", "1"), v("f", "1", host="nobody"), v('f[1,"é b"]', "1e-400", host="h x")]
    got = both(snap, body_of(data), monkeypatch, now_ns=999_999_998)  # the stamps cross into the next second
    assert got is not None
    batch, failed, count = got
    assert (failed, count) == (2, len(data))
    assert [r[3] for r in batch.floats] == [1.5, 2.5, 3.5, -0.0, 0.0]
    assert [(r[1], r[2]) for r in batch.floats[:3]] == [(NOW, 999_999_998), (NOW, 0), (NOW, 999_999_999)]
    assert [r[3] for r in batch.uints] == [2**64 - 1, 7]
    assert batch.uints[1][1:3] == (NOW, 1)  # a clock and no ns: the request's second such value
    assert [len(r[3]) for r in batch.strs + batch.texts] == [255, 65535]


@pytest.mark.parametrize(("table", "key", "simple"), [
    (FLOAT_TABLE, "f", {"1e308", "-1e308", ".5", "5.", "1e-400", "+1.5", "-0", "1E5", "1e+5", "-.5"}),
    (UNSIGNED_TABLE, "u", {"42", "042", "18446744073709551615"}),
])
def test_it_takes_plain_numbers_and_leaves_the_rest_to_sender_values(
        snap: Snapshot, monkeypatch: pytest.MonkeyPatch, table: list[tuple[str, Any]], key: str,
        simple: set[str]) -> None:
    """Zabbix's table of value rules: what needs trimming or is refused goes the general way, which logs it
    and marks the item not supported."""
    taken = set()
    for text, _ in table:
        if both(snap, body_of([v(key, text, clock=NOW)]), monkeypatch) is not None:
            taken.add(text)
    assert taken == simple


@pytest.mark.parametrize("body", [
    b'{"request":"sender data","data":[{"host":"h","key":"f","value":"1"}]',  # cut short
    b'{"request":"sender data","data":[{"host":"h","key":"f","value":"1"}]} x',  # trailing text
    b'{"request":"sender data","data":[{"host":"h","key":"f","value":"1","clock":0123}]}',  # a leading zero
    b'{"request":"sender data","data":[{"host":"h","key":"f","value":"1","clock":-1}]}',
    b'{"request":"sender data","data":[{"host":"h","key":"f","value":"1","clock":1.7e9}]}',
    b'{"request":"sender data","data":[{"host":"h","key":"f","value":"1","value":"2"}]}',  # twice
    b'{"request":"sender data","data":[{"host":"h","key":"f","value":1.5}]}',  # a JSON number
    b'{"request":"sender data","data":[{"host":"h","key":"f","value":"\\u0031"}]}',  # an escape
    b'{"request":"sender data","data":[{"host":"h\xff","key":"f","value":"1"}]}',  # not UTF-8
    b'{"request":"sender data","data":[{"host":"h","key":"f","value":"1\x01"}]}',  # a control character
    b'{"request":"sender data","data":[{"host":"h","key":"f"}]}',  # no value
    b'{"request":"sender data","data":[{}]}',
    b'{"request":"sender data","data":["x"]}',
    b'{"request":"sender data","data":{}}',
    b'{"request":"sender data"}',
    b'{"request":"agent data","data":[]}',
    b'{"request":"sender data","data":[],"session":"x"}',
    b'{"request":"sender data","request":"sender data","data":[]}',
    b'[{"request":"sender data"}]',
    b'',
])
def test_other_bodies_are_declined(snap: Snapshot, monkeypatch: pytest.MonkeyPatch, body: bytes) -> None:
    assert fast(snap, body, 0, ClockWindow(), 10_000, monkeypatch) is None


def test_out_of_window_clocks_and_bad_ns_are_declined(snap: Snapshot, monkeypatch: pytest.MonkeyPatch) -> None:
    """sender_values refuses them and says why in its log: the fast path leaves them to it."""
    for extra in ({"clock": NOW + 50 * 365 * 86400}, {"clock": 1}, {"clock": NOW, "ns": 1_000_000_000}):
        assert both(snap, body_of([v("f", "1", **extra)]), monkeypatch) is None


def test_the_request_limit_is_left_to_the_listener(snap: Snapshot, monkeypatch: pytest.MonkeyPatch) -> None:
    data = [v("f", "1")] * 4
    assert both(snap, body_of(data), monkeypatch, max_values=4) is not None
    assert both(snap, body_of(data), monkeypatch, max_values=3) is None


def test_declining_takes_no_stamps(snap: Snapshot, monkeypatch: pytest.MonkeyPatch) -> None:
    stamps = Stamps()
    monkeypatch.setattr(values, "STAMPS", stamps)
    assert fast_sender_values(snap, body_of([v("f", "1"), v("f", " 1")]), NOW, 0) is None
    assert stamps.take(0, 1) == 1  # nothing was reserved before


def test_random_bodies_agree_with_sender_values(snap: Snapshot, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(20261203)
    texts = [t for t, _ in FLOAT_TABLE + UNSIGNED_TABLE] + ["é", "", 'a"b\\/', "x" * 300, "12", "3.25",
                                                            "a\nb\tc", "\x00", "\ud800", "😀"]
    keys = ["f", "u", "c", "t", "l", "a.f", "nokey", 'f[1,"é b"]']
    taken = declined = 0
    for _ in range(1500):
        data: list[Any] = []
        for _ in range(rng.randint(0, 12)):
            host = rng.choice(["h", "h", "h", "h x", "nobody"])
            d: dict[str, Any] = v(rng.choice(keys), rng.choice(texts), host=host)
            r = rng.random()
            if r < 0.4:
                d["clock"] = NOW + rng.randint(-5, 5)
                if rng.random() < 0.5:
                    d["ns"] = rng.randint(0, 999_999_999)
            elif r < 0.45:
                d["clock"] = str(NOW)
            if rng.random() < 0.03:
                d["source"] = "x"
            data.append(d)
        top = {"clock": NOW, "ns": 1} if rng.random() < 0.5 else {}
        text = json.dumps({"request": "sender data", "data": data, **top}, ensure_ascii=rng.random() < 0.5,
                          separators=rng.choice([(",", ":"), (", ", ": "), (" ,\n", " :\t")]))
        if both(snap, text.encode("utf-8", "surrogatepass"), monkeypatch) is None:
            declined += 1
        else:
            taken += 1
    assert taken > 200 and declined > 200  # both halves were exercised


def test_mutated_bodies_are_declined_or_agree(snap: Snapshot, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever orjson refuses, or reads as something other than sender data, the fast path declines."""
    rng = random.Random(3)
    base = [body_of([v("f", "1.5", clock=NOW), v("u", "42"), v("c", 'a"\\b'), v('f[1,"é b"]', "2", host="h x")],
                    clock=NOW, ns=7),
            body_of([v("f", "-1e5", clock=NOW, ns=3), v("t", "x\ny")])]
    alphabet = b'{}[]",:\\ 0123456789.eE+-aeuxnl\x00\x1f\x7f\xc3\xa9\xff'
    agreed = 0
    for _ in range(4000):
        body = bytearray(rng.choice(base))
        for _ in range(rng.randint(1, 3)):
            at = rng.randrange(len(body))
            op = rng.random()
            if op < 0.4:
                body[at] = rng.choice(alphabet)
            elif op < 0.7:
                del body[at]
            else:
                body.insert(at, rng.choice(alphabet))
        raw = bytes(body)
        try:
            obj = orjson.loads(raw)
        except orjson.JSONDecodeError:
            obj = None
        if not (isinstance(obj, dict) and obj.get("request") == "sender data" and isinstance(obj.get("data"), list)):
            assert fast(snap, raw, 5, ClockWindow(), 10_000, monkeypatch) is None, raw
        elif both(snap, raw, monkeypatch) is not None:
            agreed += 1
    assert agreed > 100


def test_decimal_numbers_are_read_exactly(snap: Snapshot, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fast path computes short decimals itself (one exact multiply or divide): each must be the double
    float() gives, to the last bit, as must the longer ones it hands to Python's own parser."""
    rng = random.Random(17)
    texts = []
    for _ in range(12_000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 19)))
        at = rng.randint(0, len(digits))
        text = rng.choice(["", "-", "+"]) + digits[:at] + rng.choice([".", ".", ""]) + digits[at:]
        if rng.random() < 0.1:
            text += f"e{rng.randint(-30, 30)}"
        if FLOAT_SYNTAX.fullmatch(text):
            texts.append(text)
    for at in range(0, len(texts), 250):
        got = both(snap, body_of([v("f", t, clock=NOW) for t in texts[at:at + 250]]), monkeypatch)
        assert got is not None and got[1] == 0
        assert [repr(r[3]) for r in got[0].floats] == [repr(float(t)) for t in texts[at:at + 250]]


@pytest.mark.parametrize("raw", [
    b"\xc3\xa9", b"\xe2\x82\xac", b"\xf0\x9f\x98\x80", b"\xf4\x8f\xbf\xbf", b"\xed\x9f\xbf",  # valid
    b"\xc0\xaf", b"\xe0\x80\xaf", b"\xf0\x80\x80\xaf",  # overlong
    b"\xed\xa0\x80", b"\xed\xbf\xbf",  # surrogates
    b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xff", b"\x80", b"\xc3", b"\xe2\x82", b"\xc3\x28",
])
def test_utf8_is_judged_as_orjson_judges_it(snap: Snapshot, monkeypatch: pytest.MonkeyPatch, raw: bytes) -> None:
    """Every position of the body counts, even the key of a host nobody knows (never decoded here)."""
    for pad in (b"", b"abcdefg", b"abcdefghijklmnopq"):  # around the 8-byte steps of the ASCII check
        for body in (b'{"request":"sender data","data":[{"host":"h","key":"c","value":"%s%s"}]}' % (pad, raw),
                     b'{"request":"sender data","data":[{"host":"nobody","key":"%s%s","value":"1"}]}' % (pad, raw)):
            try:
                orjson.loads(body)
                valid = True
            except orjson.JSONDecodeError:
                valid = False
            got = both(snap, body, monkeypatch)
            assert (got is not None) == valid, body


def test_the_index_follows_each_snapshot(snap: Snapshot, monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled lookup is rebuilt for a new snapshot (a configuration reload) and holds copies."""
    assert values._sender is not None
    index = values._sender.Index(snap.trappers)
    assert len(index) == sum(len(keys) for keys in snap.trappers.values())
    with pytest.raises(TypeError, match="trappers"):
        values._sender.Index({"h": ["f"]})
    body = body_of([v("f", "1.5"), v("new", "2.5")])
    got = both(snap, body, monkeypatch)
    assert got is not None and got[1] == 1
    ref = snap.trappers["h"]["f"]
    other = Snapshot(snap.version + 1, snap.hosts, {**snap.items, ("h", "new"): ref}, snap.active)
    got = fast(other, body, 5, DEFAULT_WINDOW, 10_000, monkeypatch)
    assert got is not None and got[1] == 0 and [r[0] for r in got[0].floats] == [ref.itemid, ref.itemid]
    assert fast(snap, body, 5, DEFAULT_WINDOW, 10_000, monkeypatch)[1] == 1  # type: ignore[index]


def test_the_config_cache_makes_the_index_as_it_loads(tmp_path: Path) -> None:
    """Off the event loop: on the reload's thread, not at the first request after it."""
    engine = engine_for(f"sqlite:///{tmp_path / 'vigil.db'}")
    upgrade(engine)
    try:
        repo = ConfigRepo(engine)
        repo.apply(doc_from_dict(yaml.safe_load(CONFIG)))
        cache = ConfigCache(repo)
        assert values._index is not None and values._index[0] is cache.snapshot
        repo.apply(doc_from_dict(yaml.safe_load(CONFIG + EXTRA_HOST)))
        assert cache.reload_if_changed()
        assert values._index[0] is cache.snapshot and len(values._index[1]) == 6
    finally:
        engine.dispose()


def test_without_the_extension_every_body_takes_the_python_path(snap: Snapshot,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(values, "_sender", None)
    assert values.sender_index(snap) is None
    assert fast_sender_values(snap, body_of([v("f", "1.5")]), NOW, 0) is None
