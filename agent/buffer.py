"""The active agent's value buffer: bounded in memory, optionally mirrored in a SQLite file.

One `ValueBuffer` per (ServerActive, Hostname) pair, as zabbix_agentd has one per active-checks
process. Every value gets its `id` (counting up within the buffer's `session`) when it enters, so a
resend after a lost reply carries the same (session, id) and the server drops the duplicates.

Overflow follows zabbix_agentd: a full buffer makes room for a new ordinary value by dropping the
oldest value of the same key, else the oldest ordinary value; log values are never dropped, and once
they fill half of the buffer no further log value is accepted (log reading waits instead).

With a `FileStore`, each value (and each log position that moved with it) is written in the same
SQLite transaction before `add` returns; the buffer is rebuilt from the file on start, with the
values' original session and ids, so a restart neither loses nor repeats anything. The file also
keeps the last check list each server sent, so an agent started while its server is down goes on
collecting. One agent at a time: the file is locked (flock) while open. A file SQLite cannot read
at start is renamed aside (`NAME.corrupt-TIME`) and a fresh one made, with a warning.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from vigil.agent.protocol.messages import ActiveCheck, AgentValue, ProtocolError, parse_active_check

log = logging.getLogger(__name__)

MIN_BUFFER_SIZE = 2
MAX_BUFFER_SIZE = 65535


@dataclass(slots=True)
class BufferedValue:
    key: str
    value: str | None
    clock: int
    ns: int
    state: int | None = None  # 1: not supported, `value` holds the reason
    lastlogsize: int | None = None
    mtime: int | None = None
    is_log: bool = False  # log and log.count items: never dropped, bounded to half the buffer
    id: int = 0  # given by the buffer
    seq: int = 0  # local insertion order, the row id in the file

    def to_agent_value(self, host: str) -> AgentValue:
        return AgentValue(host, self.key, self.value, self.id, self.clock, self.ns,
                          lastlogsize=self.lastlogsize, mtime=self.mtime, state=self.state)


@dataclass(frozen=True, slots=True)
class LogPosition:
    """Where a log item stands: Zabbix's lastlogsize/mtime plus our own file-tracking state (JSON)."""

    lastlogsize: int
    mtime: int
    extra: str = ""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS session (
    target TEXT PRIMARY KEY, session TEXT NOT NULL, next_id INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS value (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, target TEXT NOT NULL, id INTEGER NOT NULL,
    key TEXT NOT NULL, value TEXT, state INTEGER, lastlogsize INTEGER, mtime INTEGER,
    clock INTEGER NOT NULL, ns INTEGER NOT NULL, is_log INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS value_target ON value (target, seq);
CREATE TABLE IF NOT EXISTS logpos (
    target TEXT NOT NULL, key TEXT NOT NULL, lastlogsize INTEGER NOT NULL, mtime INTEGER NOT NULL,
    extra TEXT NOT NULL, PRIMARY KEY (target, key));
CREATE TABLE IF NOT EXISTS checklist (
    target TEXT PRIMARY KEY, checks TEXT NOT NULL, saved INTEGER NOT NULL);
"""


class BufferFileError(ValueError):
    """PersistentBufferFile cannot be used (in use by another agent, no such directory, no access)."""


def _unreadable(sqlite3: Any, e: Exception) -> bool:
    """True when the file's content is the problem (not SQLite, damaged, or another program's tables)."""
    if not isinstance(e, sqlite3.OperationalError):
        return True  # SQLITE_NOTADB, SQLITE_CORRUPT, our own integrity-check failure
    return getattr(e, "sqlite_errorname", "") == "SQLITE_ERROR"  # no such table/column: a foreign schema


def _aside(path: str) -> str:
    """Rename `path` (and its -wal/-shm files, which must not meet a fresh file) out of the way."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    target = f"{path}.corrupt-{stamp}"
    n = 1
    while os.path.exists(target):
        n += 1
        target = f"{path}.corrupt-{stamp}-{n}"
    os.replace(path, target)
    for suffix in ("-wal", "-shm", "-journal"):
        if os.path.exists(path + suffix):
            os.replace(path + suffix, target + suffix)
    return target


class FileStore:
    """PersistentBufferFile: one SQLite database (WAL, synchronous=FULL) shared by all buffers."""

    def __init__(self, path: str) -> None:
        if not path:
            raise BufferFileError("PersistentBufferFile: empty path")
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise BufferFileError(f"PersistentBufferFile: directory {parent!r} does not exist")
        self.path = path
        self.lock = threading.Lock()
        self.moved_aside: str | None = None
        self._lock_fd = self._take_lock()
        import sqlite3  # here, not at the top: an agent without PersistentBufferFile saves its memory

        try:
            self.db = self._open(sqlite3)
        except sqlite3.DatabaseError as e:
            os.close(self._lock_fd)
            if not _unreadable(sqlite3, e):  # no access, disk full, ...: the file may be fine, leave it
                raise BufferFileError(f"PersistentBufferFile {path!r}: cannot open: {e}") from None
            self.moved_aside = _aside(path)
            log.warning("PersistentBufferFile %r cannot be read (%s): moved aside to %r; starting with an empty "
                        "buffer", path, e, self.moved_aside)
            self._lock_fd = self._take_lock()
            try:
                self.db = self._open(sqlite3)
            except sqlite3.DatabaseError as e2:
                os.close(self._lock_fd)
                raise BufferFileError(f"PersistentBufferFile {path!r}: cannot create a fresh buffer: {e2}") from None

    def _take_lock(self) -> int:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise BufferFileError(f"PersistentBufferFile {self.path!r}: cannot open: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise BufferFileError(f"PersistentBufferFile {self.path!r} is in use by another running agent; "
                                  "give each agent its own file") from None
        return fd

    def _open(self, sqlite3: Any) -> Any:
        """Open and check the file: a truncated or foreign file fails here, not at the first write."""
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=10)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            row = db.execute("PRAGMA quick_check").fetchone()
            if row is None or row[0] != "ok":
                raise sqlite3.DatabaseError(f"integrity check: {row[0] if row else 'no answer'}")
            db.executescript(_SCHEMA)
            db.execute("SELECT seq, target, id, key, value, state, lastlogsize, mtime, clock, ns, is_log "
                       "FROM value LIMIT 1").fetchall()
            db.execute("SELECT target, key, lastlogsize, mtime, extra FROM logpos LIMIT 1").fetchall()
            db.execute("SELECT target, session, next_id FROM session LIMIT 1").fetchall()
        except BaseException:
            db.close()
            raise
        return db

    def close(self) -> None:
        with self.lock:
            self.db.close()
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
                self._lock_fd = -1

    def save_checks(self, target: str, checks: list[ActiveCheck]) -> None:
        """Keep the last check list from `target`'s server (written only when it changed)."""
        text = json.dumps([c.to_dict() for c in checks], separators=(",", ":"))
        with self.lock:
            row = self.db.execute("SELECT checks FROM checklist WHERE target=?", (target,)).fetchone()
            if row is not None and row[0] == text:
                return
            self.db.execute("INSERT OR REPLACE INTO checklist VALUES (?, ?, ?)", (target, text, int(time.time())))

    def load_checks(self, target: str) -> list[ActiveCheck] | None:
        """The saved check list, None when there is none (an unreadable row counts as none)."""
        with self.lock:
            row = self.db.execute("SELECT checks FROM checklist WHERE target=?", (target,)).fetchone()
        if row is None:
            return None
        out = []
        try:
            for i, d in enumerate(json.loads(row[0])):
                out.append(parse_active_check(d, f"saved check {i}"))
        except (ValueError, TypeError, ProtocolError) as e:
            log.warning("saved check list for %s in %s is unreadable (%s); waiting for the server's", target,
                        self.path, e)
            return None
        return out

    def session(self, target: str) -> tuple[str, int]:
        """(session, next id) for `target`, created on first use."""
        with self.lock:
            row = self.db.execute("SELECT session, next_id FROM session WHERE target=?", (target,)).fetchone()
            if row is not None:
                return str(row[0]), int(row[1])
            s = uuid.uuid4().hex
            self.db.execute("INSERT INTO session VALUES (?, ?, 1)", (target, s))
            return s, 1

    def load(self, target: str) -> tuple[list[BufferedValue], dict[str, LogPosition]]:
        with self.lock:
            rows = self.db.execute(
                "SELECT seq, id, key, value, state, lastlogsize, mtime, clock, ns, is_log FROM value "
                "WHERE target=? ORDER BY seq", (target,)).fetchall()
            pos = self.db.execute("SELECT key, lastlogsize, mtime, extra FROM logpos WHERE target=?",
                                  (target,)).fetchall()
        values = [BufferedValue(key=r[2], value=r[3], state=r[4], lastlogsize=r[5], mtime=r[6], clock=r[7],
                                ns=r[8], is_log=bool(r[9]), id=r[1], seq=r[0]) for r in rows]
        return values, {r[0]: LogPosition(r[1], r[2], r[3]) for r in pos}

    def write(self, target: str, add: list[BufferedValue], remove: Iterable[int], next_id: int,
              positions: dict[str, LogPosition]) -> None:
        """One transaction: insert `add` (their seq is set), delete rows `remove`, save id and positions."""
        with self.lock:
            cur = self.db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                for seq in remove:
                    cur.execute("DELETE FROM value WHERE seq=?", (seq,))
                for v in add:
                    cur.execute(
                        "INSERT INTO value (target, id, key, value, state, lastlogsize, mtime, clock, ns, is_log) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (target, v.id, v.key, v.value, v.state, v.lastlogsize, v.mtime, v.clock, v.ns, int(v.is_log)))
                    v.seq = int(cur.lastrowid or 0)
                if add:
                    cur.execute("UPDATE session SET next_id=? WHERE target=?", (next_id, target))
                for key, p in positions.items():
                    cur.execute("INSERT OR REPLACE INTO logpos VALUES (?, ?, ?, ?, ?)",
                                (target, key, p.lastlogsize, p.mtime, p.extra))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def delete(self, target: str, seqs: Iterable[int]) -> None:
        with self.lock:
            self.db.execute("BEGIN IMMEDIATE")
            self.db.executemany("DELETE FROM value WHERE seq=?", [(s,) for s in seqs])
            self.db.execute("COMMIT")


@dataclass
class BufferStats:
    dropped: int = 0  # ordinary values pushed out by a full buffer
    refused_log: int = 0  # log values not accepted because log values fill half the buffer
    acked: int = 0


@dataclass
class ValueBuffer:
    """Values waiting to be sent to one server for one host. Thread-safe."""

    size: int
    target: str = ""
    store: FileStore | None = None
    session: str = ""
    next_id: int = 1
    stats: BufferStats = field(default_factory=BufferStats)

    def __post_init__(self) -> None:
        if not MIN_BUFFER_SIZE <= self.size <= MAX_BUFFER_SIZE:
            raise ValueError(f"BufferSize must be in {MIN_BUFFER_SIZE}..{MAX_BUFFER_SIZE}, got {self.size}")
        self.values: list[BufferedValue] = []
        self.positions: dict[str, LogPosition] = {}
        self.pcount = 0
        self._seq = 0
        self.cond = threading.Condition()
        if self.store is not None:
            self.session, self.next_id = self.store.session(self.target)
            self.values, self.positions = self.store.load(self.target)
            self.pcount = sum(v.is_log for v in self.values)
            if self.values:
                log.info("buffer for %s: %d unsent values loaded from %s", self.target, len(self.values),
                         self.store.path)
        elif not self.session:
            self.session = uuid.uuid4().hex

    def __len__(self) -> int:
        with self.cond:
            return len(self.values)

    @property
    def log_room(self) -> int:
        """How many more log values would be accepted now."""
        with self.cond:
            return max(0, self.size // 2 - self.pcount)

    def add(self, value: BufferedValue) -> bool:
        return self.add_many([value]) == 1

    def add_many(self, values: list[BufferedValue],
                 positions: dict[str, LogPosition] | Callable[[int], dict[str, LogPosition]] | None = None) -> int:
        """Append values in order; returns how many were taken (log values stop at the half-buffer limit).

        `positions` (log positions) are saved in the same transaction; given as a function, it is
        called with the number of values taken, so the position saved is the one after the last of them.
        """
        with self.cond:
            taken: list[BufferedValue] = []
            removed: list[int] = []
            accepted = 0
            for v in values:
                if v.is_log and self.pcount >= self.size // 2:
                    self.stats.refused_log += 1
                    break
                if len(self.values) >= self.size:
                    victim = self._victim(v)
                    if victim is None:  # only log values left: cannot happen while pcount < size/2
                        break
                    old = self.values.pop(victim)
                    self.stats.dropped += 1
                    if old.seq:
                        removed.append(old.seq)
                    taken = [t for t in taken if t is not old]
                    if self.stats.dropped == 1 or self.stats.dropped % 100 == 0:
                        log.warning("buffer for %s is full: dropped value of %r (%d dropped so far)",
                                    self.target, old.key, self.stats.dropped)
                v.id = self.next_id
                self.next_id += 1
                if self.store is None:
                    self._seq += 1
                    v.seq = self._seq
                self.values.append(v)
                taken.append(v)
                accepted += 1
                self.pcount += v.is_log
            if callable(positions):
                positions = positions(accepted)
            if positions:
                self.positions.update(positions)
            if self.store is not None and (taken or removed or positions):
                self.store.write(self.target, taken, removed, self.next_id, positions or {})
            self.cond.notify_all()
            return accepted

    def _victim(self, new: BufferedValue) -> int | None:
        if not new.is_log:
            for i, v in enumerate(self.values):
                if v.key == new.key and not v.is_log:
                    return i
        for i, v in enumerate(self.values):
            if not v.is_log:
                return i
        return None

    def set_positions(self, positions: dict[str, LogPosition]) -> None:
        if positions:
            self.add_many([], positions)

    def position(self, key: str) -> LogPosition | None:
        with self.cond:
            return self.positions.get(key)

    def forget_positions(self, keep: Iterable[str]) -> None:
        """Drop positions of log items no longer in the check list (memory only; the file keeps them)."""
        keep = set(keep)
        with self.cond:
            for k in [k for k in self.positions if k not in keep]:
                del self.positions[k]

    def due(self, now: float, last_sent: float, buffer_send: float) -> bool:
        """zabbix_agentd's rule: send when BufferSend passed, the buffer is full or half of it is log values."""
        with self.cond:
            if not self.values:
                return False
            return (now - last_sent >= buffer_send or len(self.values) >= self.size
                    or self.pcount >= self.size // 2)

    def batch(self, limit: int) -> list[BufferedValue]:
        """The oldest values, at most `limit`; they stay buffered until `ack`."""
        with self.cond:
            return list(self.values[:limit])

    def ack(self, sent: list[BufferedValue]) -> None:
        """Drop exactly the values the server accepted (values added meanwhile stay)."""
        seqs = {v.seq for v in sent}
        with self.cond:
            before = len(self.values)
            self.values = [v for v in self.values if v.seq not in seqs]
            self.pcount = sum(v.is_log for v in self.values)
            self.stats.acked += before - len(self.values)
            if self.store is not None:
                self.store.delete(self.target, seqs)
            self.cond.notify_all()
