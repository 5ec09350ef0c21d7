"""The store seam: one interface, a SQLite and a PostgreSQL implementation, the same tests for both.

The write contract: `write(batch)` stores everything in the batch in one transaction and returns
only once it is committed durably (SQLite WAL with synchronous=FULL, PostgreSQL with its commit
flushed). If it raises, nothing of the batch is stored. Ingest acknowledges values only after it
returns. Each store object is used by one thread at a time; ingest owns one for writing, readers
open their own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from server.config.tables import ValueType

HistoryRow = tuple[int, int, Any]  # clock, ns, value (log values: the text)


class StoreError(RuntimeError):
    """The store could not do what was asked; the message says what and why."""


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
class Retention:
    """Per-item retention in seconds; 0 keeps nothing (trends: none are rolled up)."""

    itemid: int
    value_type: ValueType
    history: int
    trends: int


@dataclass(slots=True)
class HousekeepReport:
    history_rows: int = 0
    trend_rows: int = 0
    partitions_dropped: list[str] = field(default_factory=list)


class Store(ABC):
    @abstractmethod
    def write(self, batch: WriteBatch) -> None:
        """Store the batch in one durable transaction (see the module's contract)."""

    @abstractmethod
    def history(
        self, itemid: int, value_type: ValueType, start: int, end: int, limit: int | None = None
    ) -> list[HistoryRow]:
        """Values with start <= clock <= end, oldest first (clock, then ns)."""

    @abstractmethod
    def trends(self, itemid: int, value_type: ValueType, start: int, end: int) -> list[Trend]:
        """Hourly trends whose hour starts in [start, end], oldest first."""

    @abstractmethod
    def latest(self, items: Mapping[int, ValueType]) -> dict[int, HistoryRow]:
        """The newest value of each item that has one."""

    @abstractmethod
    def rollup_trends(self, now: int) -> int:
        """Recompute trends for every hour written since the last roll-up; returns hours done."""

    @abstractmethod
    def housekeep(self, now: int, retention: Iterable[Retention]) -> HousekeepReport:
        """Delete history and trends older than each item's retention."""

    @abstractmethod
    def sessions(self) -> dict[str, int]:
        """Highest accepted id per active-agent session (for dropping resent values)."""

    @abstractmethod
    def close(self) -> None: ...
