"""The store seam: one interface, a SQLite and a PostgreSQL implementation, the same tests for both.

The write contract: `write(batch)` stores everything in the batch in one transaction and returns
only once it is committed durably (SQLite WAL with synchronous=FULL, PostgreSQL with its commit
flushed). If it raises, nothing of the batch is stored. Ingest acknowledges values only after it
returns. Each store object is used by one thread at a time; ingest owns one for writing, readers
open their own.

Unsigned values: history_uint and trends_uint are signed 64-bit columns on both backends, so values of
2**63 and more are kept as their two's complement (`to_signed64`) and turned back on read
(`from_signed64`); the stores do this, callers always see 0 <= value < 2**64.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from vigil.server.config.tables import HISTORY_TABLES, TREND_TABLES, ValueType

HistoryRow = tuple[int, int, Any]  # clock, ns, value (log values: the text)

UINT64_MAX = 2**64 - 1
_TWO63 = 2**63
_TWO64 = 2**64


def to_signed64(value: int) -> int:
    """An unsigned 64-bit value as the signed BIGINT that stores it."""
    return value - _TWO64 if value >= _TWO63 else value


def from_signed64(value: int) -> int:
    """The unsigned value a signed BIGINT column holds."""
    return value + _TWO64 if value < 0 else value


_INT63_MAX = _TWO63 - 1


def check_clocks(table: str, rows: list, clock_index: int = 1) -> tuple[int, int]:
    try:
        lo = min(r[clock_index] for r in rows)
        hi = max(r[clock_index] for r in rows)
    except TypeError as e:
        raise StoreError(f"{table}: a clock is not an integer ({e})") from None
    if lo < 0 or hi > 2**31 - 1:
        bad = lo if lo < 0 else hi
        raise StoreError(f"{table}: clock {bad} is outside 0..2147483647")
    return lo, hi


def encode_uints(rows: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """Check the unsigned values and turn those of 2**63 and more into their signed form."""
    try:
        lo = min(r[3] for r in rows)
        hi = max(r[3] for r in rows)
    except TypeError as e:
        raise StoreError(f"history_uint: a value is not an integer ({e})") from None
    if lo < 0 or hi > UINT64_MAX:
        bad = next(r for r in rows if not 0 <= r[3] <= UINT64_MAX)
        raise StoreError(f"history_uint: value {bad[3]} of item {bad[0]} is outside 0..2**64-1")
    if hi > _INT63_MAX:
        return [(i, c, n, to_signed64(v)) for i, c, n, v in rows]
    return rows


def check_limit(limit: int | None) -> int:
    if limit is None:
        return -1
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise StoreError(f"limit must be a non-negative integer or None, got {limit!r}")
    return limit


def history_table(value_type: ValueType) -> str:
    try:
        return HISTORY_TABLES[ValueType(value_type)]
    except ValueError:
        raise StoreError(f"value_type {value_type!r} is not one of 0-4") from None


def trend_table(value_type: ValueType) -> str:
    try:
        return TREND_TABLES[ValueType(value_type)]
    except (ValueError, KeyError):
        raise StoreError(f"value_type {value_type!r} has no trends (only float 0 and unsigned 3 do)") from None


# A logrt[] item's position is only moved forward, whatever order two writers commit in: a later
# mtime (the agent went on to a newer file, even a smaller one) or the same mtime and a size not
# smaller. A log[] item's position is taken as it comes, as Zabbix's server does: a smaller size is
# how the agent reports a truncated file, and its mtime is no time (zabbix_agentd sends none,
# vigil-agent its fingerprint of the file's content); batches of one agent session are never in
# flight together (ingest.sessions), so those positions arrive in order.
LOGPOS_FORWARD = ("substr((SELECT i.key_ FROM items i WHERE i.itemid = excluded.itemid), 1, 5) <> 'logrt' OR "
                  "excluded.mtime > item_rtdata.mtime OR "
                  "(excluded.mtime = item_rtdata.mtime AND excluded.lastlogsize >= item_rtdata.lastlogsize)")


class StoreError(RuntimeError):
    """The store could not do what was asked; the message says what and why."""


@dataclass(frozen=True, slots=True)
class PgTimeouts:
    """PostgreSQL time-outs in seconds (VIGIL_PG_*); 0 for a statement or lock time-out means none."""

    connect: float = 10.0
    statement: float = 0.0
    lock: float = 0.0

    def connect_args(self) -> dict[str, Any]:
        """Keyword arguments for psycopg.connect (and SQLAlchemy's connect_args): libpq's own parameters."""
        options = f"-c statement_timeout={round(self.statement * 1000)} -c lock_timeout={round(self.lock * 1000)}"
        # libpq takes whole seconds and treats 1 as 2; round up so a time-out is never shorter than asked.
        # tcp_user_timeout: a connection whose sent data the network has not acknowledged for as long (the
        # database host vanished) counts as broken, instead of blocking its writer for the kernel's ~15 min.
        return {"connect_timeout": max(2, math.ceil(self.connect)), "options": options,
                "tcp_user_timeout": round(self.connect * 1000)}


class WriteUnsent(Exception):
    """A store's write_on_loop failed before its commit was sent: nothing was stored, and its write()
    on a thread may take the batch (reconnecting, reloading what it knows of the database)."""


@dataclass(slots=True)
class WriteBatch:
    """Rows to write in one transaction, split by value type as the tables are."""

    floats: list[tuple[int, int, int, float]] = field(default_factory=list)  # itemid, clock, ns, value
    uints: list[tuple[int, int, int, int]] = field(default_factory=list)
    strs: list[tuple[int, int, int, str]] = field(default_factory=list)
    texts: list[tuple[int, int, int, str]] = field(default_factory=list)
    # itemid, clock, ns, timestamp, source, severity, value, logeventid
    logs: list[tuple[int, int, int, int, str, int, str, int]] = field(default_factory=list)
    logpos: dict[int, tuple[int, int]] = field(default_factory=dict)  # itemid -> (lastlogsize, mtime)
    sessions: dict[str, int] = field(default_factory=dict)  # agent session -> highest id accepted

    def __len__(self) -> int:
        return len(self.floats) + len(self.uints) + len(self.strs) + len(self.texts) + len(self.logs)

    def extend(self, other: WriteBatch) -> None:
        self.floats += other.floats
        self.uints += other.uints
        self.strs += other.strs
        self.texts += other.texts
        self.logs += other.logs
        self.logpos.update(other.logpos)
        for s, i in other.sessions.items():
            if i > self.sessions.get(s, -1):
                self.sessions[s] = i


@dataclass(frozen=True, slots=True)
class Trend:
    clock: int  # start of the hour
    num: int
    min: float
    avg: float
    max: float


@dataclass(frozen=True, slots=True)
class LogEntry:
    """A value of a log item with the fields the agent sent along."""

    clock: int
    ns: int
    timestamp: int
    source: str
    severity: int
    value: str
    logeventid: int


KEEP_FOREVER = 2**31  # a retention longer than any clock: nothing of the item is ever old enough to go


@dataclass(frozen=True, slots=True)
class Retention:
    """Per-item retention in seconds; 0 keeps nothing (trends: none are rolled up).

    An item whose periods cannot be resolved is listed with `Retention.keep()`: it keeps all its
    data, and on PostgreSQL no partition of its value type is dropped while it is listed so.
    """

    itemid: int
    value_type: ValueType
    history: int
    trends: int

    @classmethod
    def keep(cls, itemid: int, value_type: ValueType) -> Retention:
        return cls(itemid, value_type, KEEP_FOREVER, KEEP_FOREVER)

    @property
    def kept_forever(self) -> bool:
        return self.history >= KEEP_FOREVER


@dataclass(slots=True)
class HousekeepReport:
    history_rows: int = 0
    trend_rows: int = 0
    partitions_dropped: list[str] = field(default_factory=list)
    partitions_created: list[str] = field(default_factory=list)  # made ahead for the next days


class Store(ABC):
    SESSION_EXPIRY = 86400  # an agent session silent this many seconds is forgotten, as Zabbix's server does
    # A store that can write from an event loop (PostgreSQL's) says so; the history writers then let
    # the loop drive its common writes itself (server/ingest/batcher.py).
    writes_on_loop = False
    loop_max_values = 0  # most values one write_on_loop() takes

    @abstractmethod
    def write(self, batch: WriteBatch) -> None:
        """Store the batch in one durable transaction (see the module's contract)."""

    async def write_on_loop(self, batch: WriteBatch) -> bool:
        """write() driven from the caller's event loop, for a store whose writes_on_loop is true: True
        once committed; False, with nothing sent, for a batch it leaves to write() (kinds or sizes that
        would hold the loop up, a closed connection); WriteUnsent when it
        failed with nothing stored and must be refresh()ed on a thread before it writes again."""
        return False

    def takes_on_loop(self, batch: WriteBatch) -> bool:
        """Whether write_on_loop() would take a batch of this kind (its size aside): no I/O."""
        return False

    @property
    def is_open(self) -> bool:
        """Whether the store can write now (no attempt to reconnect: safe on an event loop)."""
        return True

    def refresh(self) -> bool:
        """Blocking: make the store usable again after WriteUnsent (reconnect, reload what it knows
        of the database); whether it is."""
        return True

    @abstractmethod
    def history(
        self, itemid: int, value_type: ValueType, start: int, end: int, limit: int | None = None
    ) -> list[HistoryRow]:
        """Values with start <= clock <= end, oldest first (clock, then ns); at most the oldest `limit`."""

    def histories(self, windows: Mapping[int, tuple[ValueType, int, int]],
                  limit: int | None = None) -> dict[int, list[HistoryRow]]:
        """history() of several items at once: itemid -> (value_type, start, end) gives itemid -> its rows,
        oldest first, at most the oldest `limit` each. A store may answer in one query (PostgreSQL does)."""
        return {i: self.history(i, vt, lo, hi, limit) for i, (vt, lo, hi) in windows.items()}

    @abstractmethod
    def log_history(self, itemid: int, start: int, end: int, limit: int | None = None) -> list[LogEntry]:
        """Like history() for a log item, with every field of each entry."""

    @abstractmethod
    def trends(self, itemid: int, value_type: ValueType, start: int, end: int) -> list[Trend]:
        """Hourly trends whose hour starts in [start, end], oldest first."""

    @abstractmethod
    def latest(self, items: Mapping[int, ValueType], since: int | None = None) -> dict[int, HistoryRow]:
        """The newest value of each item that has one with clock >= `since` (None: however old).

        One query for all the items, whatever their number and types. Pass `since` (e.g. now minus
        the longest age worth showing): on PostgreSQL only the partitions from that day on are read,
        so a dead item costs no search through years of history.
        """

    @abstractmethod
    def rollup_trends(self, now: int) -> int:
        """Recompute trends for every hour written since the last roll-up; returns hours done.

        Each item has a horizon: the first hour whose history housekeeping kept. An hour at or after
        it is recomputed whole from history (so running it twice changes nothing, and a late value
        recomputes its hour). For an hour before it, whose history is gone, a late value is merged
        into the trend row (count, min, max, average weighted; unsigned averages in exact integers)
        and removed from history, so it is counted once. An hour's mark is cleared only once the hour
        has ended (hour + 3600 <= now), in a short transaction of its own before the hour is read:
        writers never wait for the recomputation, and one that commits a value for the hour after
        that marks it again.
        Float averages cannot overflow and are computed alike on both stores (rollup.float_mean).
        """

    @abstractmethod
    def housekeep(self, now: int, retention: Iterable[Retention]) -> HousekeepReport:
        """Delete history and trends older than each item's retention (clock < now - retention).

        Numeric history goes in whole hours (clock < the start of the hour of now - retention), and
        only up to the first hour not rolled up yet; the item's horizon moves with it. On
        PostgreSQL the partitions of today and the next days are made first (`partitions_created`),
        and whole daily partitions older than the shortest cutoff of the items of that value type
        (of all items, for a type no listed item has) are dropped and their names reported, except a
        day with an hour not yet rolled up; an item listed with Retention.keep() keeps its type's
        partitions. Items not listed keep their rows except where a partition goes. An empty list
        deletes nothing.
        """

    @abstractmethod
    def log_positions(self) -> dict[int, tuple[int, int]]:
        """(lastlogsize, mtime) per log item, as the last batch with `logpos` for it left them."""

    @abstractmethod
    def sessions(self) -> dict[str, int]:
        """Highest accepted id per active-agent session (for dropping resent values)."""

    @abstractmethod
    def prune_sessions(self, before: int) -> int:
        """Forget agent sessions last written before `before` (epoch seconds); returns how many."""

    def maintain(self, force: bool = False) -> None:
        """Deferred upkeep, called by the history writer after its replies went out and when idle.
        `force` does all of it now (an idle server's writer gets there within a second anyway).

        The SQLite store moves staged rows into history here; the default does nothing. It must not
        lose or hide a committed value if it fails or is interrupted.
        """
        return None

    @abstractmethod
    def close(self) -> None: ...
