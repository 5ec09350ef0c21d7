"""Received values → rows for the store: item lookup, type conversion, timestamps, dedup.

Sender data feeds trapper items; agent data feeds agent-active items. A value for an unknown
host, an unknown or disabled item, an item of the other collection type, or that its item's value
type cannot hold counts as failed and is not stored, everything else goes into the WriteBatch.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from vigil.server.config.repo import Snapshot
from vigil.server.config.tables import ItemType, ValueType
from vigil.server.ingest.convert import TEXT_LIMIT, ConversionError, to_float, to_uint
from vigil.server.store.base import WriteBatch

log = logging.getLogger("vigil.ingest.values")

FLOAT, UNSIGNED, CHAR, TEXT, LOG = (ValueType.FLOAT, ValueType.UNSIGNED, ValueType.CHAR, ValueType.TEXT,
                                    ValueType.LOG)


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
            batch.strs.append((itemid, clock, ns, text[:255]))
        elif vt == TEXT:
            batch.texts.append((itemid, clock, ns, text[:TEXT_LIMIT]))
        else:
            d = d or {}
            source = str(d.get("source") or "").replace("\x00", "")[:64]
            batch.logs.append((itemid, clock, ns, _int(d.get("timestamp")), source,
                               _int(d.get("severity")), text, _int(d.get("eventid"))))


def _int(v: Any) -> int:
    return v if isinstance(v, int) and not isinstance(v, bool) and -2**31 <= v < 2**31 else 0


def _clock(v: Any, default: int) -> int:
    if v is None:
        return default
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**31:
        return v
    raise ValueError(f"bad clock {v!r}")


def _ns(v: Any, default: int) -> int:
    if v is None:
        return default
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 999_999_999:
        return v
    raise ValueError(f"bad ns {v!r}")


def sender_values(snap: Snapshot, data: list[Any], now_s: int, now_ns: int, peer: str) -> tuple[WriteBatch, int]:
    """Rows for `sender data` values; returns the batch and how many values failed."""
    batch = WriteBatch()
    items = snap.items
    failed = 0
    trapper = ItemType.TRAPPER
    floats = batch.floats
    isfinite = math.isfinite
    # The hot loop (~0.5 µs a value): float items sent as strings with int clock/ns are handled
    # inline; anything else takes the general path through _add, _clock and _ns.
    for i, d in enumerate(data):
        try:
            ref = items.get((d["host"], d["key"]))
            if ref is None or ref.type != trapper:
                failed += 1
                continue
            value = d["value"]
            clock = d.get("clock")
            if clock is None:
                c, n = now_s, now_ns
            else:
                # A clock without ns gets the value's index, as Zabbix does, so values sent in one
                # second keep their order.
                ns = d.get("ns")
                if type(clock) is int and 0 <= clock < 2**31 and type(ns) is int and 0 <= ns <= 999_999_999:
                    c, n = clock, ns
                else:
                    c, n = _clock(clock, now_s), _ns(ns, i)
            if type(value) is str and ref.value_type == FLOAT:
                try:
                    v = float(value)
                except ValueError:
                    v = to_float(value)  # raises the ConversionError that names the value
                if not isfinite(v):
                    to_float(value)
                floats.append((ref.itemid, c, n, v))
                continue
            if not isinstance(value, str):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError("value must be a string or a number")
                value = str(value)
            _add(batch, ref.value_type, ref.itemid, c, n, value)
        except (KeyError, TypeError, ValueError) as e:
            failed += 1
            if isinstance(e, ConversionError):
                log.debug("from %s: %s/%s: %s", peer, d.get("host"), d.get("key"), e)
            else:
                log.debug("from %s: data[%d] rejected: %s", peer, i, e)
    return batch, failed


def agent_values(snap: Snapshot, session: str, data: list[Any], last_ids: dict[str, int],
                 now_s: int, now_ns: int, peer: str) -> tuple[WriteBatch, int]:
    """Rows for `agent data` values, dropping ids already accepted in this session."""
    batch = WriteBatch()
    items = snap.items
    failed = 0
    seen = last_ids.get(session, 0) if session else 0
    top = seen
    for i, d in enumerate(data):
        try:
            vid = d.get("id")
            if session and isinstance(vid, int):
                if vid <= seen:
                    failed += 1  # already stored: a resend after a lost reply
                    continue
                top = max(top, vid)
            ref = items.get((d["host"], d["key"]))
            if ref is None or ref.type != ItemType.AGENT_ACTIVE:
                failed += 1
                continue
            lastlogsize = d.get("lastlogsize")
            if lastlogsize is not None:
                batch.logpos[ref.itemid] = (_int_big(lastlogsize), _int(d.get("mtime")))
            if d.get("state") == 1:
                continue  # not supported on the agent: counted as processed, nothing to store
            if "value" not in d and lastlogsize is not None:
                continue  # a log item's position with no line (zabbix_agentd's "meta" value)
            value = d["value"]
            if not isinstance(value, str):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ValueError("value must be a string or a number")
                value = str(value)
            _add(batch, ref.value_type, ref.itemid, _clock(d.get("clock"), now_s), _ns(d.get("ns"), now_ns),
                 value, d)
        except (KeyError, TypeError, ValueError) as e:
            failed += 1
            log.debug("from %s: data[%d] rejected: %s", peer, i, e)
    if session and top > seen:
        batch.sessions[session] = top
        last_ids[session] = top
    return batch, failed


def _int_big(v: Any) -> int:
    if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63:
        return v
    raise ValueError(f"bad lastlogsize {v!r}")
