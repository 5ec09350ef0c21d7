"""Received values → rows for the store: item lookup, type conversion, timestamps, dedup.

Sender data feeds trapper items; agent data feeds agent-active items. A value for an unknown
host, an unknown or disabled item, an item of the other collection type, an element that is not an
object, a bad clock/ns/id, a clock outside the accepted window, or a value its item's value type
cannot hold counts as failed and is not stored; everything else goes into the WriteBatch.

Timestamps follow Zabbix: a value without a clock gets the time it was received, distinct and
increasing in the order values came, across requests too (`Stamps`); a value with a clock but no ns
gets 0, 1, 2, ... in the order such values appear in its request.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from vigil.agent.protocol.messages import CLOCK_MAX, ID_MAX, NS_MAX, read_uint
from vigil.server.config.repo import Snapshot
from vigil.server.config.tables import ItemType, ValueType
from vigil.server.ingest.convert import (
    CHAR_LIMIT,
    FLOAT_MAX,
    LOG_LIMIT,
    NUMBER_TEXT_LIMIT,
    TEXT_LIMIT,
    ConversionError,
    to_float,
    to_uint,
)
from vigil.server.store.base import WriteBatch

try:
    from vigil.server.ingest import _sender
except ImportError:  # built without a C compiler (setup.py): every request goes through sender_values
    _sender = None  # type: ignore[assignment]

log = logging.getLogger("vigil.ingest.values")

FLOAT, UNSIGNED, CHAR, TEXT, LOG = (ValueType.FLOAT, ValueType.UNSIGNED, ValueType.CHAR, ValueType.TEXT,
                                    ValueType.LOG)
LOG_SOURCE_LIMIT = 64
NAN = float("nan")
_NS = 1_000_000_000


class Stamps:
    """Distinct, increasing receive times in nanoseconds for values sent without a clock."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def take(self, now_ns: int, n: int) -> int:
        """The first of `n` consecutive nanosecond stamps, none before `now_ns` or any given out before."""
        with self._lock:
            first = max(now_ns, self._last + 1)
            self._last = first + max(n, 1) - 1
            return first


STAMPS = Stamps()


@dataclass(frozen=True, slots=True)
class ClockWindow:
    """Clocks accepted relative to now: at most `ahead` seconds in the future and `age` in the past;
    age 0 takes the longest history retention of the configured items (no limit when none has one)."""

    ahead: int = 600
    age: int = 0

    def bounds(self, now_s: int, snap: Snapshot) -> tuple[int, int]:
        age = self.age or snap.max_history
        return (max(0, now_s - age) if age else 0), min(CLOCK_MAX, now_s + self.ahead)


DEFAULT_WINDOW = ClockWindow()


class _Times:
    """Per request: the clock and ns each value is stored with."""

    __slots__ = ("lo", "hi", "next_stamp", "next_ns")

    def __init__(self, snap: Snapshot, n: int, now_s: int, now_ns: int, window: ClockWindow) -> None:
        self.lo, self.hi = window.bounds(now_s, snap)
        self.next_stamp = STAMPS.take(now_s * _NS + now_ns, n)
        self.next_ns = 0

    def of(self, d: dict[str, Any]) -> tuple[int, int]:
        clock = d.get("clock")
        if clock is None:
            self.next_stamp += 1
            return divmod(self.next_stamp - 1, _NS)
        c = read_uint(clock, "clock", CLOCK_MAX)
        if not self.lo <= c <= self.hi:
            raise ValueError(f"clock {c} is outside the accepted window {self.lo}..{self.hi} "
                             "(VIGIL_MAX_CLOCK_AGE, VIGIL_MAX_CLOCK_AHEAD)")
        ns = d.get("ns")
        if ns is None:
            self.next_ns += 1
            return c, self.next_ns - 1
        return c, read_uint(ns, "ns", NS_MAX)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("field 'value' must be a string or a number")
    return str(value)


def _add(batch: WriteBatch, vt: ValueType, itemid: int, clock: int, ns: int, text: str,
         d: dict[str, Any] | None = None) -> None:
    if vt == FLOAT:
        batch.floats.append((itemid, clock, ns, to_float(text)))
    elif vt == UNSIGNED:
        batch.uints.append((itemid, clock, ns, to_uint(text)))
    else:
        if "\x00" in text:
            # PostgreSQL text cannot hold NUL; dropping it here keeps both stores alike and keeps one
            # value from failing the whole transaction it shares with other senders' values.
            text = text.replace("\x00", "")
        if vt == CHAR:
            batch.strs.append((itemid, clock, ns, text[:CHAR_LIMIT]))
        elif vt == TEXT:
            batch.texts.append((itemid, clock, ns, text[:TEXT_LIMIT]))
        else:
            d = d or {}
            source = str(d.get("source") or "").replace("\x00", "")[:LOG_SOURCE_LIMIT]
            batch.logs.append((itemid, clock, ns, _int(d.get("timestamp")), source,
                               _int(d.get("severity")), text[:LOG_LIMIT], _int(d.get("eventid"))))


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and -2**31 <= v < 2**31 else 0


def sender_values(snap: Snapshot, data: list[Any], now_s: int, now_ns: int, peer: str,
                  window: ClockWindow = DEFAULT_WINDOW,
                  unsupported: list[tuple[int, int, str]] | None = None) -> tuple[WriteBatch, int]:
    """Rows for `sender data` values; returns the batch and how many values failed.

    A value its item's type cannot hold also goes into `unsupported` as (itemid, clock, error): the
    item becomes not supported, as in Zabbix.
    """
    batch = WriteBatch()
    trappers = snap.trappers
    failed = 0
    times = _Times(snap, len(data), now_s, now_ns, window)
    lo, hi = times.lo, times.hi
    floats = batch.floats
    float_max, ns_max, nan, number_limit = FLOAT_MAX, NS_MAX, NAN, NUMBER_TEXT_LIMIT
    now_c, now_n = divmod(times.next_stamp, _NS)  # the receive stamps this request reserved
    # The hot loop (about 1.2 µs a value here) handles inline what most senders send: int clock and ns
    # (or none) inside the window, or no clock; float items with plain numbers in strings. float() takes more
    # than Zabbix does, but not once the text is ASCII without "_" or white space at its ends and the
    # number is within ±1e308: that is Zabbix's syntax (str.strip returns the string itself when there
    # is nothing to strip). Anything else goes through times.of and _add.
    for i, d in enumerate(data):
        try:
            if type(d) is not dict:
                raise ValueError("must be an object")
            host, key = d["host"], d["key"]
            keys = trappers.get(host)
            ref = keys.get(key) if keys is not None else None
            if ref is None:
                failed += 1
                continue
            clock = d.get("clock")
            if clock is None:
                c, n = now_c, now_n
                now_n += 1
                if now_n > ns_max:
                    now_c, now_n = now_c + 1, 0
            else:
                n = d.get("ns")
                if type(clock) is int and lo <= clock <= hi:
                    c = clock
                    if n is None:  # zabbix_sender -T sends a clock and no ns: 0, 1, 2, ... as times.of
                        n = times.next_ns
                        times.next_ns = n + 1
                    elif type(n) is not int or not 0 <= n <= ns_max:
                        c, n = times.of(d)
                else:
                    c, n = times.of(d)
            value = d.get("value")
            if ref.value_type == FLOAT and type(value) is str and value.isascii() and "_" not in value \
                    and value.strip() is value and len(value) <= number_limit:
                try:
                    v = float(value)
                except ValueError:
                    v = nan
                if -float_max <= v <= float_max:
                    floats.append((ref.itemid, c, n, v))
                    continue
            _add(batch, ref.value_type, ref.itemid, c, n, _text(value))
        except (KeyError, TypeError, ValueError) as e:
            failed += 1
            _rejected(peer, i, d, e)
            if unsupported is not None and isinstance(e, ConversionError):
                unsupported.append((ref.itemid, c, str(e)))
    return batch, failed


# The compiled lookup of the last snapshot seen: by the bytes of host and key, no str made per value. It
# holds the snapshot too, which is immutable, so `is` tells a new one.
_index: tuple[Snapshot, Any] | None = None


def sender_index(snap: Snapshot) -> Any:
    """The compiled lookup of the snapshot's trapper items (None without the C extension), made once per
    snapshot: ConfigCache makes it as it loads one, off the event loop (35 ms for 100,000 items)."""
    global _index
    if _sender is None:
        return None
    index = _index
    if index is None or index[0] is not snap:
        index = _index = (snap, _sender.Index(snap.trappers))
    return index[1]


def fast_sender_values(snap: Snapshot, body: bytes, now_s: int, now_ns: int,
                       window: ClockWindow = DEFAULT_WINDOW,
                       max_values: int = 10_000) -> tuple[WriteBatch, int, int] | None:
    """sender_values of a common `sender data` body, read from its bytes by the C extension
    (server/ingest/_sender.c): the batch, how many values failed and how many there were. None when the
    body is of any other kind, or holds a value sender_values would trim, refuse or log: then the caller
    parses it and calls sender_values, which defines the rules either way."""
    index = sender_index(snap)
    if index is None:
        return None
    lo, hi = window.bounds(now_s, snap)
    now = now_s * _NS + now_ns
    got = _sender.values(body, index, lo, hi, lambda n: STAMPS.take(now, n), max_values)
    if got is None:
        return None
    floats, uints, strs, texts, failed, count = got
    return WriteBatch(floats=floats, uints=uints, strs=strs, texts=texts), failed, count


def agent_values(snap: Snapshot, session: str, data: list[Any], last_ids: dict[str, int],
                 now_s: int, now_ns: int, peer: str,
                 window: ClockWindow = DEFAULT_WINDOW,
                 unsupported: list[tuple[int, int, str]] | None = None) -> tuple[WriteBatch, int]:
    """Rows for `agent data` values, dropping ids at or below the session's last committed id.

    A value the agent reports not supported (state 1, its value the reason) or that its item's type
    cannot hold goes into `unsupported` as (itemid, clock, error).

    `last_ids` is only read: the caller moves it forward once the batch is committed
    (`batch.sessions` holds the new highest id), see ingest.sessions.
    """
    batch = WriteBatch()
    items = snap.items
    failed = 0
    seen = last_ids.get(session, 0) if session else 0
    top = seen
    times = _Times(snap, len(data), now_s, now_ns, window)
    for i, d in enumerate(data):
        try:
            if not isinstance(d, dict):
                raise ValueError("must be an object")
            vid = d.get("id")
            if session and vid is not None:
                vid = read_uint(vid, "id", ID_MAX)
                if vid <= seen:
                    failed += 1  # already stored: a resend after a lost reply
                    continue
                top = max(top, vid)
            ref = items.get((d.get("host"), d.get("key")))
            if ref is None or ref.type != ItemType.AGENT_ACTIVE:
                failed += 1
                continue
            c, n = times.of(d)
            lastlogsize = d.get("lastlogsize")
            if lastlogsize is not None:
                mtime = d.get("mtime")
                batch.logpos[ref.itemid] = (read_uint(lastlogsize, "lastlogsize", 2**63 - 1),
                                            0 if mtime is None else read_uint(mtime, "mtime", 2**31 - 1))
            if d.get("state") == 1:
                if unsupported is not None:
                    why = d.get("value")
                    unsupported.append((ref.itemid, c, str(why) if why not in (None, "") else "not supported"))
                continue  # not supported on the agent: counted as processed, nothing to store
            if "value" not in d and lastlogsize is not None:
                continue  # a log item's position with no line (zabbix_agentd's "meta" value)
            try:
                _add(batch, ref.value_type, ref.itemid, c, n, _text(d.get("value")), d)
            except ConversionError as e:
                if unsupported is not None:
                    unsupported.append((ref.itemid, c, str(e)))
                raise
        except (KeyError, TypeError, ValueError) as e:
            failed += 1
            _rejected(peer, i, d, e)
    if session and top > seen:
        batch.sessions[session] = top
    return batch, failed


def _rejected(peer: str, i: int, d: Any, e: Exception) -> None:
    if isinstance(e, ConversionError) and isinstance(d, dict):
        log.debug("from %s: %s/%s: %s", peer, d.get("host"), d.get("key"), e)
    else:
        log.debug("from %s: data[%d] rejected: %s", peer, i, e)
