"""server/ingest: conversion by Zabbix 6.0's rules, timestamps, the clock window, limits, agent sessions
(dedup, the resend that arrives while the first batch is being written) and bad elements.

The conversion table is what the real zabbix_server 6.0 stored for these lines
(tests/e2e/test_value_rules.py sends them to both servers and keeps it honest).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import yaml
from vigil.agent.protocol.messages import ProtocolError, parse_agent_value, parse_sender_value, read_uint
from vigil.server.config.migrate import engine_for
from vigil.server.config.model import doc_from_dict
from vigil.server.config.repo import ConfigRepo, Snapshot
from vigil.server.ingest.batcher import Batcher
from vigil.server.ingest.cache import ConfigCache
from vigil.server.ingest.convert import ConversionError, to_float, to_uint
from vigil.server.ingest.listener import IngestServer
from vigil.server.ingest.sessions import SESSION_EXPIRY, AgentSessions
from vigil.server.ingest.values import DEFAULT_WINDOW, ClockWindow, Stamps, agent_values, sender_values
from vigil.server.settings import Settings
from vigil.server.store import open_store
from vigil.server.store.base import Store, StoreError, WriteBatch

CONFIG = """
hosts:
  - host: h
    items:
      - {key: f, type: trapper, value_type: float, history: 7d}
      - {key: u, type: trapper, value_type: unsigned, history: 30d}
      - {key: c, type: trapper, value_type: char, history: 1d}
      - {key: t, type: trapper, value_type: text, history: 1d}
      - {key: l, type: trapper, value_type: log, history: 1d}
      - {key: a.f, type: agent_active, value_type: float, delay: 30s, history: 1d}
      - {key: 'log[/x]', type: agent_active, value_type: log, delay: 30s, history: 1d}
"""

# value -> what zabbix_server 6.0.14 stored for an unsigned item (None: nothing, item unsupported)
UNSIGNED_TABLE: list[tuple[str, int | None]] = [
    ("42", 42), (" 42 ", 42), ("42.0", 42), ("42.", 42), ("42.00", 42), ("042", 42), ("+42", 42),
    ('"42"', 42), ("42\n", 42), ("42\r\n", 42), ("0.0", 0),
    ("18446744073709551615", 2**64 - 1), ("18446744073709551615.0", 2**64 - 1),
    ("1e3", None), ("0x1A", None), ("1_000", None), ("٤٢", None), ("18446744073709551616", None),
    ("-1", None), ("\t42", None), ("42\t", None), ("", None), (".0", None), ("4 2", None), ("42.5", None),
    ("1.0.0", None), ("²", None),
]
FLOAT_TABLE: list[tuple[str, float | None]] = [
    ("1e308", 1e308), ("-1e308", -1e308), (" 1.5 ", 1.5), (".5", 0.5), ("5.", 5.0), ("1e-400", 0.0),
    ("+1.5", 1.5), ('"1.5"', 1.5), ("1.5\n", 1.5), ("-0", 0.0), ("1E5", 1e5), ("1e+5", 1e5), ("-.5", -0.5),
    (" -1", -1.0),
    ("1_0", None), ("1e309", None), ("-1e309", None), ("1.5e308", None), ("1.7976931348623157e308", None),
    ("inf", None), ("nan", None), ("Infinity", None), ("0x10", None), ("\t1.5", None), ("1.5\t", None),
    ("", None), ("١٫٥", None), (".", None), ("1e", None), ("٣.٥", None),
]


@pytest.mark.parametrize(("text", "expected"), UNSIGNED_TABLE)
def test_unsigned_conversion_is_zabbixs(text: str, expected: int | None) -> None:
    if expected is None:
        with pytest.raises(ConversionError, match="Numeric \\(unsigned\\)"):
            to_uint(text)
    else:
        assert to_uint(text) == expected


@pytest.mark.parametrize(("text", "expected"), FLOAT_TABLE)
def test_float_conversion_is_zabbixs(text: str, expected: float | None) -> None:
    if expected is None:
        with pytest.raises(ConversionError, match="Numeric \\(float\\)"):
            to_float(text)
    else:
        assert to_float(text) == expected


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture
def snap(migrated_url: str) -> Iterator[Snapshot]:
    engine = engine_for(migrated_url)
    repo = ConfigRepo(engine)
    repo.apply(doc_from_dict(yaml.safe_load(CONFIG)))
    yield repo.snapshot()
    engine.dispose()


NOW = int(time.time())


def sv(snap: Snapshot, data: list[Any], now: int = NOW, window: ClockWindow = DEFAULT_WINDOW,
       ) -> tuple[WriteBatch, int]:
    return sender_values(snap, data, now, 0, "test", window)


def v(key: str, value: Any, **kw: Any) -> dict[str, Any]:
    return {"host": "h", "key": key, "value": value, **kw}


# -- values through sender_values/agent_values ------------------------------------------------------


def test_numeric_values_are_converted_on_every_path(snap: Snapshot) -> None:
    """The inline float path and the general path take the same values."""
    batch, failed = sv(snap, [v("f", "1_0", clock=NOW, ns=1), v("f", "inf", clock=NOW, ns=2),
                              v("f", " 2.5 ", clock=NOW, ns=3), v("f", "1e309", clock=NOW, ns=4),
                              v("f", "1e308", clock=NOW, ns=5), v("u", "1e3"), v("u", "42.0"), v("u", "٤٢"),
                              v("f", 7), v("u", 7.5), v("f", True)])
    assert [r[3] for r in batch.floats] == [2.5, 1e308, 7.0]
    assert [r[3] for r in batch.uints] == [42]
    assert failed == 7


def test_sender_values_convert_by_the_table(snap: Snapshot) -> None:
    """sender_values' inline float path takes exactly what to_float takes."""
    for table, key in ((FLOAT_TABLE, "f"), (UNSIGNED_TABLE, "u")):
        data = [v(key, text, clock=NOW, ns=i) for i, (text, _) in enumerate(table)]
        batch, failed = sv(snap, data)
        got = {r[2]: r[3] for r in batch.floats + batch.uints}
        assert {i: got.get(i) for i in range(len(table))} == {i: want for i, (_, want) in enumerate(table)}
        assert failed == sum(want is None for _, want in table)
    long_ones = ["1" + "0" * 2100, "0." + "0" * 2100 + "1", "1" + " " * 2100]
    batch, failed = sv(snap, [v("f", text, clock=NOW, ns=0) for text in long_ones])
    assert ([r[3] for r in batch.floats], failed) == ([0.0, 1.0], 1)  # read as its first 2047 characters


def test_text_values_are_cut_at_zabbixs_limits_in_characters(snap: Snapshot) -> None:
    long = "é" * 70_000
    batch, failed = sv(snap, [v("c", long), v("t", long), v("l", long)])
    assert failed == 0
    assert [len(r[3]) for r in batch.strs] == [255]
    assert [len(r[3]) for r in batch.texts] == [65535]
    assert [len(r[6]) for r in batch.logs] == [65535]


def test_values_without_a_clock_get_distinct_increasing_stamps(snap: Snapshot) -> None:
    data = [v("u", str(i)) for i in range(5)]
    first, _ = sender_values(snap, data, NOW, 5, "a")
    second, _ = sender_values(snap, data, NOW, 5, "b")  # the same nanosecond tick
    stamps = [(r[1], r[2]) for r in first.uints + second.uints]
    assert stamps == sorted(stamps) and len(set(stamps)) == 10
    assert stamps[0] >= (NOW, 5)


def test_stamps_carry_into_the_next_second() -> None:
    s = Stamps()
    a = s.take(10 * 10**9 + 999_999_999, 2)
    b = s.take(10 * 10**9 + 999_999_999, 1)
    assert (a, b) == (10 * 10**9 + 999_999_999, 11 * 10**9 + 1)


def test_a_clock_without_ns_gets_0_1_2_in_its_request(snap: Snapshot) -> None:
    """As zabbix_server 6.0 numbers them: only values with a clock and no ns count."""
    batch, failed = sv(snap, [v("u", "1", clock=NOW, ns=5), v("u", "2", clock=NOW), v("u", "3"),
                              v("u", "4", clock=NOW), v("u", "5", clock=NOW + 1)])
    assert failed == 0
    by_value = {r[3]: (r[1], r[2]) for r in batch.uints}
    assert by_value[1] == (NOW, 5)
    assert by_value[2] == (NOW, 0) and by_value[4] == (NOW, 1) and by_value[5] == (NOW + 1, 2)



def test_clock_without_ns_numbers_one_sequence_on_fast_and_slow_paths(snap: Snapshot) -> None:
    """Float items with an int clock take the hot loop, a digit-string clock or an unsigned item the
    general one: both count the same 0, 1, 2, ... (zabbix_sender -T sends a clock and no ns)."""
    batch, failed = sv(snap, [v("f", "1.5", clock=NOW), v("f", "2.5", clock=str(NOW)), v("u", "3", clock=NOW),
                              v("f", "4.5", clock=NOW), v("f", "5.5", clock=NOW, ns=7), v("f", "6.5", clock=NOW)])
    assert failed == 0
    stamps = {r[3]: (r[1], r[2]) for r in batch.floats + batch.uints}
    assert stamps == {1.5: (NOW, 0), 2.5: (NOW, 1), 3: (NOW, 2), 4.5: (NOW, 3), 5.5: (NOW, 7), 6.5: (NOW, 4)}

# (field value, accepted) as zabbix_server 6.0 read a sender value's clock
CLOCKS: list[tuple[Any, bool]] = [
    (NOW, True), (str(NOW), True), ("0" + str(NOW), True), (" " + str(NOW), False), (str(NOW) + " ", False),
    ("1.7e9", False), (float(NOW), False), ("٤٢", False), ("-5", False), (-5, False), ("2147483648", False),
    (2**31, False), (True, False), ("", False), ("²", False), ([NOW], False),
]


@pytest.mark.parametrize(("clock", "ok"), CLOCKS, ids=[repr(c).replace(str(NOW), "NOW") for c, _ in CLOCKS])
def test_clock_digit_strings_are_read_alike_by_codec_and_ingest(snap: Snapshot, clock: Any, ok: bool) -> None:
    window = ClockWindow(ahead=2**31, age=2**31)
    _, failed = sv(snap, [v("u", "1", clock=clock)], window=window)
    assert failed == (0 if ok else 1)
    if ok:
        assert parse_sender_value(v("u", "1", clock=clock), 0).clock == NOW
    else:
        with pytest.raises(ProtocolError, match="field 'clock'"):
            parse_sender_value(v("u", "1", clock=clock), 0)


@pytest.mark.parametrize(("ns", "ok"), [("0009", True), (999_999_999, True), ("1000000000", False),
                                        (" 1", False), ("٣", False), (1.0, False)])
def test_ns_digit_strings(snap: Snapshot, ns: Any, ok: bool) -> None:
    batch, failed = sv(snap, [v("u", "1", clock=NOW, ns=ns)])
    assert failed == (0 if ok else 1)
    if ok:
        assert batch.uints[0][2] == int(ns)
        assert parse_sender_value(v("u", "1", clock=NOW, ns=ns), 0).ns == int(ns)
    else:
        with pytest.raises(ProtocolError, match="field 'ns'"):
            parse_sender_value(v("u", "1", clock=NOW, ns=ns), 0)


def test_read_uint_takes_ascii_digits_only() -> None:
    assert read_uint("00042", "id") == 42
    assert read_uint("0", "clock") == 0 and read_uint("000", "ns") == 0  # nothing left after the zeros
    for bad in ("٤٢", "²", "4_2", "+4", "", " 4", "4.0", 4.0, None, False):
        with pytest.raises(ProtocolError, match="field 'id'"):
            read_uint(bad, "id")
    with pytest.raises(ProtocolError):
        read_uint("9" * 5000, "id")  # refused, not a ValueError from int()'s digit limit


def test_agent_ids_as_digit_strings(snap: Snapshot) -> None:
    rows = [{"host": "h", "key": "a.f", "value": "1", "id": "7", "clock": NOW, "ns": 0},
            {"host": "h", "key": "a.f", "value": "2", "id": "٨", "clock": NOW, "ns": 1}]
    batch, failed = agent_values(snap, "s", rows, {}, NOW, 0, "test")
    assert (failed, batch.sessions) == (1, {"s": 7})
    assert parse_agent_value(rows[0], 0).id == 7
    with pytest.raises(ProtocolError, match="field 'id'"):
        parse_agent_value(rows[1], 1)


def test_clock_window(snap: Snapshot) -> None:
    """Default: up to 10 minutes ahead, back to the longest history retention of the items (30d)."""
    far = NOW + 365 * 86400
    ok_old, too_old = NOW - 30 * 86400 + 5, NOW - 30 * 86400 - 5
    data = [v("u", "1", clock=NOW + 590), v("u", "2", clock=NOW + 610), v("u", "3", clock=far, ns=0),
            v("f", "4", clock=far, ns=0), v("u", "5", clock=ok_old), v("u", "6", clock=too_old),
            v("f", "7", clock=too_old, ns=0)]
    batch, failed = sv(snap, data)
    assert sorted(r[3] for r in batch.uints + batch.floats) == [1, 5]
    assert failed == 5
    batch, failed = sv(snap, data, window=ClockWindow(ahead=3600, age=60))
    assert sorted(r[3] for r in batch.uints + batch.floats) == [1, 2]
    rows = [{"host": "h", "key": "a.f", "value": "1", "id": 1, "clock": c, "ns": 0}
            for c in (far, NOW + 50 * 365 * 86400, too_old)]
    assert agent_values(snap, "", rows, {}, NOW, 0, "test")[1] == 3


def test_clock_window_settings() -> None:
    s = Settings.from_env({"VIGIL_MAX_CLOCK_AHEAD": "60", "VIGIL_MAX_CLOCK_AGE": "86400"})
    assert (s.max_clock_ahead, s.max_clock_age) == (60, 86400)
    d = Settings.from_env({})
    assert (d.max_clock_ahead, d.max_clock_age) == (600, 0)


def test_elements_that_are_not_objects_fail_alone(snap: Snapshot) -> None:
    data: list[Any] = ["x", 5, None, [1], {"host": "h", "key": "a.f", "value": "1.5", "id": 1, "clock": NOW, "ns": 0}]
    batch, failed = agent_values(snap, "s", data, {}, NOW, 0, "test")
    assert failed == 4 and [r[3] for r in batch.floats] == [1.5]
    batch, failed = sv(snap, ["x", 5, None, [1], v("u", "3")])
    assert failed == 4 and [r[3] for r in batch.uints] == [3]


def test_sender_data_reaches_trapper_items_only(snap: Snapshot) -> None:
    # The lookup goes by host, then key (Snapshot.trappers): an active item's key, an unknown host or
    # key, and elements without a host or key fail alone; the rest are stored.
    assert set(snap.trappers) == {"h"} and set(snap.trappers["h"]) == {"f", "u", "c", "t", "l"}
    data: list[Any] = [v("f", "1.5"), v("a.f", "2.5"), {**v("f", "3.5"), "host": "nobody"}, v("nokey", "4"),
                       {"key": "f", "value": "5.5"}, {"host": "h", "value": "6.5"}, {**v("f", "7.5"), "host": ["h"]},
                       v("f", "8.5")]
    batch, failed = sv(snap, data)
    assert failed == 6 and [r[3] for r in batch.floats] == [1.5, 8.5]


def test_agent_values_leave_the_committed_ids_alone(snap: Snapshot) -> None:
    """Ids move forward only once their batch is committed (AgentSessions.committed)."""
    last: dict[str, int] = {"s": 2}
    rows = [{"host": "h", "key": "a.f", "value": str(i), "id": i, "clock": NOW, "ns": i} for i in (1, 2, 3, 4)]
    batch, failed = agent_values(snap, "s", rows, last, NOW, 0, "test")
    assert (failed, [r[3] for r in batch.floats], batch.sessions, last) == (2, [3.0, 4.0], {"s": 4}, {"s": 2})
    sessions = AgentSessions(last)
    sessions.committed(batch.sessions)
    assert last == {"s": 4}
    again, failed = agent_values(snap, "s", rows, last, NOW, 0, "test")
    assert (failed, len(again)) == (4, 0)


def test_sessions_silent_for_a_day_are_forgotten() -> None:
    now = [1000.0]
    last = {"old": 5}
    sessions = AgentSessions(last, clock=lambda: now[0])
    sessions.committed({"a": 1})
    now[0] += SESSION_EXPIRY - 10
    sessions.committed({"b": 1})
    assert sessions.prune() == 0
    now[0] += 20
    assert sessions.prune() == 1 and set(last) == {"old", "b"}  # "old" came from the store: its day starts now
    now[0] += SESSION_EXPIRY
    assert sessions.prune() == 2 and last == {}


# -- through the listener with a real store ----------------------------------------------------------


class GatedStore:
    """A real store whose writes wait for `gate` (and can be made to fail once): the slow commit."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.fail_next = False
        self.commits = 0

    def write(self, batch: WriteBatch) -> None:
        self.entered.set()
        self.gate.wait(60)
        if self.fail_next:
            self.fail_next = False
            raise StoreError("the database went away")
        self.inner.write(batch)
        self.commits += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


Scenario = Callable[[IngestServer, GatedStore], Awaitable[None]]


def run_ingest(url: str, scenario: Scenario, window: ClockWindow = DEFAULT_WINDOW) -> None:
    """Run `scenario` against an IngestServer on a real store whose writes go through a GatedStore."""
    engine = engine_for(url)
    repo = ConfigRepo(engine)
    repo.apply(doc_from_dict(yaml.safe_load(CONFIG)))
    gated = GatedStore(open_store(url))

    async def main() -> None:
        # One writer: the store object is shared, and the race is on the event loop, not between writers.
        batcher = Batcher(lambda: gated, 1000, writers=1)  # type: ignore[arg-type, return-value]
        batcher.start()
        server = IngestServer(ConfigCache(repo), repo, batcher, {}, gated.sessions, max_frame=2**20, timeout=3,
                              max_connections=8, clock_window=window)
        try:
            await scenario(server, gated)
        finally:
            gated.gate.set()
            await asyncio.to_thread(batcher.stop)

    try:
        asyncio.run(main())
    finally:
        gated.inner.close()
        engine.dispose()


def agent_body(session: str, ids: list[int]) -> bytes:
    rows = [{"host": "h", "key": "a.f", "value": str(i), "id": i, "clock": NOW, "ns": i} for i in ids]
    return json.dumps({"request": "agent data", "session": session, "data": rows, "clock": NOW, "ns": 0}).encode()


def reply(raw: bytes | None) -> dict[str, Any]:
    assert raw is not None
    return json.loads(raw)


async def wait_for(cond: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_a_resend_waits_for_the_first_batch_to_commit(migrated_url: str) -> None:
    run_ingest(migrated_url, _a_resend_waits_for_the_first_batch_to_commit)


async def _a_resend_waits_for_the_first_batch_to_commit(server: IngestServer, gated: GatedStore) -> None:
    first = asyncio.create_task(server._dispatch(agent_body("s1", [1, 2, 3]), "agent"))
    await wait_for(gated.entered.is_set)  # the first batch is being written, not committed
    done_before_commit: list[bool] = []

    async def resend() -> bytes | None:
        r = await server._dispatch(agent_body("s1", [1, 2, 3]), "agent")
        done_before_commit.append(gated.commits == 0)
        return r

    second = asyncio.create_task(resend())
    for _ in range(50):  # let the resend run as far as it can on its own
        await asyncio.sleep(0)
    assert not second.done(), "the resend was answered while the first batch was not yet committed"
    gated.gate.set()
    r1, r2 = reply(await first), reply(await second)
    assert r1["response"] == "success" and r1["info"].startswith("processed: 3; failed: 0")
    assert r2["response"] == "success" and r2["info"].startswith("processed: 0; failed: 3")
    assert done_before_commit == [False]
    assert [row[2] for row in gated.inner.history(_itemid(server, "a.f"), 0, 0, 2**31 - 1)] == [1.0, 2.0, 3.0]


def test_a_resend_is_stored_when_the_first_commit_fails(migrated_url: str) -> None:
    run_ingest(migrated_url, _a_resend_is_stored_when_the_first_commit_fails)


async def _a_resend_is_stored_when_the_first_commit_fails(server: IngestServer, gated: GatedStore) -> None:
    gated.fail_next = True
    first = asyncio.create_task(server._dispatch(agent_body("s2", [1, 2, 3]), "agent"))
    await wait_for(gated.entered.is_set)
    second = asyncio.create_task(server._dispatch(agent_body("s2", [1, 2, 3]), "agent"))
    for _ in range(50):
        await asyncio.sleep(0)
    gated.gate.set()
    r1, r2 = reply(await first), reply(await second)
    assert r1["response"] == "failed" and "the database went away" in r1["info"]
    assert r2["response"] == "success" and r2["info"].startswith("processed: 3; failed: 0")
    assert [row[2] for row in gated.inner.history(_itemid(server, "a.f"), 0, 0, 2**31 - 1)] == [1.0, 2.0, 3.0]
    assert gated.inner.sessions() == {"s2": 3}


def test_other_sessions_do_not_wait(migrated_url: str) -> None:
    run_ingest(migrated_url, _other_sessions_do_not_wait)


async def _other_sessions_do_not_wait(server: IngestServer, gated: GatedStore) -> None:
    first = asyncio.create_task(server._dispatch(agent_body("s3", [1]), "agent"))
    await wait_for(gated.entered.is_set)
    other = asyncio.create_task(server._dispatch(agent_body("s4", [1]), "agent"))
    await wait_for(lambda: len(server.sessions._inflight) == 2)
    gated.gate.set()
    assert reply(await first)["response"] == reply(await other)["response"] == "success"


def test_an_element_that_is_not_an_object_gets_a_reply(migrated_url: str) -> None:
    run_ingest(migrated_url, _an_element_that_is_not_an_object_gets_a_reply)


async def _an_element_that_is_not_an_object_gets_a_reply(server: IngestServer, gated: GatedStore) -> None:
    gated.gate.set()
    body = json.dumps({"request": "agent data", "session": "s5", "clock": NOW, "ns": 0, "data": [
        "x", 7, {"host": "h", "key": "a.f", "value": "1", "id": 1, "clock": NOW, "ns": 0}]}).encode()
    r = reply(await server._dispatch(body, "agent"))
    assert r["response"] == "success" and r["info"].startswith("processed: 1; failed: 2; total: 3")
    body = json.dumps({"request": "sender data", "data": [None, v("u", "4")]}).encode()
    r = reply(await server._dispatch(body, "sender"))
    assert r["response"] == "success" and r["info"].startswith("processed: 1; failed: 1; total: 2")


def test_the_listener_applies_its_clock_window(migrated_url: str) -> None:
    async def scenario(server: IngestServer, gated: GatedStore) -> None:
        gated.gate.set()
        now = int(time.time())
        body = json.dumps({"request": "sender data", "data": [v("u", "1", clock=now + 60), v("u", "2", clock=now),
                                                              v("u", "3", clock=now - 7200)]}).encode()
        r = reply(await server._dispatch(body, "sender"))
        assert r["info"].startswith("processed: 1; failed: 2")

    run_ingest(migrated_url, scenario, ClockWindow(ahead=30, age=3600))


def _itemid(server: IngestServer, key: str) -> int:
    return server.cache.snapshot.items[("h", key)].itemid
