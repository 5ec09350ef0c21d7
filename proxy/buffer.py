"""The proxy's durable buffer: a `Store` whose `write()` appends values to an outbox in the proxy's
SQLite file (WAL, synchronous=FULL), in one transaction with the agent sessions and log positions.

So the server's `Batcher` on this store answers a sender, an agent or a poller only once its values
are committed here, and an active agent's resend is recognised by its (session, id) as on the server.
The uplink reads the oldest unsent records (`batch`), and `ack`s them once the server acknowledged
them: they are deleted, or kept as sent for `ProxyLocalBuffer` hours. `expire` drops unsent values
older than `ProxyOfflineBuffer` hours and counts them (the total is kept in the file).

Each record's id is its outbox row id (AUTOINCREMENT: increasing, never reused), which the uplink
sends as the record's `id`. Before a batch is sent its session and id range are committed
(`sending`); `inflight` returns them after a restart, so the records the server may have stored
without the proxy seeing its reply go again under their old session and ids, never under a new one.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from vigil.agent.protocol.proxy import HistoryRecord
from vigil.server.config.tables import ValueType
from vigil.server.store.base import (
    LOGPOS_FORWARD,
    HistoryRow,
    HousekeepReport,
    LogEntry,
    Retention,
    Store,
    StoreError,
    Trend,
    WriteBatch,
)

log = logging.getLogger("vigil.proxy.buffer")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS proxy_outbox ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, itemid INTEGER NOT NULL, clock INTEGER NOT NULL,"
    " ns INTEGER NOT NULL DEFAULT 0, value TEXT, state INTEGER NOT NULL DEFAULT 0, lastlogsize INTEGER,"
    " mtime INTEGER, timestamp INTEGER NOT NULL DEFAULT 0, source TEXT NOT NULL DEFAULT '',"
    " severity INTEGER NOT NULL DEFAULT 0, logeventid INTEGER NOT NULL DEFAULT 0,"
    " sent INTEGER NOT NULL DEFAULT 0)",  # 0: not yet acknowledged; else when the server acknowledged it
    "CREATE INDEX IF NOT EXISTS proxy_outbox_unsent ON proxy_outbox (id) WHERE sent = 0",
    "CREATE INDEX IF NOT EXISTS proxy_outbox_sent ON proxy_outbox (sent) WHERE sent <> 0",
    "CREATE TABLE IF NOT EXISTS proxy_totals (name TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    # The batch handed to the server and not yet acknowledged: its session and id range. After a
    # restart those records go again under that session (the server drops what it already stored).
    "CREATE TABLE IF NOT EXISTS proxy_inflight (session TEXT NOT NULL, lo INTEGER NOT NULL, hi INTEGER NOT NULL)",
)
_INSERT = ("INSERT INTO proxy_outbox (itemid, clock, ns, value, state, lastlogsize, mtime, timestamp, source, "
           "severity, logeventid) VALUES (?,?,?,?,?,?,?,?,?,?,?)")
_COLUMNS = "id, itemid, clock, ns, value, state, lastlogsize, mtime, timestamp, source, severity, logeventid"
HOUR = 3600
# The next unsent records after an id, rendered as `history data` by SQLite (one statement, no row
# objects): for records that are plain values, as HistoryRecord.to_json() renders them; `other`
# counts the records that are not (a log line's fields, a state, a log position), which need it.
_PLAIN = ("state = 0 AND lastlogsize IS NULL AND mtime IS NULL AND timestamp = 0 AND source = '' AND severity = 0 "
          "AND logeventid = 0 AND value IS NOT NULL")
_PLAIN_JSON = (f"SELECT count(*), min(id), max(id), sum(NOT ({_PLAIN})), json_group_array(json_object('id', id, "
               "'itemid', itemid, 'clock', clock, 'ns', ns, 'value', value)) FROM (SELECT * FROM proxy_outbox "
               "WHERE sent = 0 AND id > ? ORDER BY id LIMIT ?)")


class ProxyBuffer(Store):
    """The outbox in the proxy's DBName file (its configuration is migrated there first)."""

    def __init__(self, path: str | Path, *, local_hours: int = 0, offline_hours: int = 1) -> None:
        self.path = str(path)
        self.local_hours = local_hours
        self.offline_hours = offline_hours
        if not Path(self.path).exists():
            raise StoreError(f"no proxy database at {self.path}")
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=30000"):
            self._db.execute(f"PRAGMA {pragma}")
        try:
            with self._transaction():
                for sql in _SCHEMA:
                    self._db.execute(sql)
            self._db.execute("SELECT 1 FROM agent_sessions, item_rtdata LIMIT 0")
        except sqlite3.Error as e:
            self._db.close()
            raise StoreError(f"{self.path} is not a proxy database ({e})") from None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # --- writing: what the Batcher calls -------------------------------------------------------

    def write(self, batch: WriteBatch) -> None:
        if not len(batch) and not batch.logpos and not batch.sessions:
            return
        rows: list[list[object]] = []
        for vals, conv in ((batch.floats, repr), (batch.uints, str), (batch.strs, str), (batch.texts, str)):
            rows += [[i, c, n, conv(v), 0, None, None, 0, "", 0, 0] for i, c, n, v in vals]
        last_log: dict[int, list[object]] = {}
        for i, c, n, ts, source, severity, value, eventid in batch.logs:
            row: list[object] = [i, c, n, value, 0, None, None, ts, source, severity, eventid]
            rows.append(row)
            last_log[i] = row
        for itemid, (size, mtime) in batch.logpos.items():  # the position travels with the item's last line
            row = last_log.get(itemid)
            if row is None:
                now_s, now_ns = divmod(time.time_ns(), 1_000_000_000)
                row = [itemid, now_s, now_ns, None, 0, None, None, 0, "", 0, 0]
                rows.append(row)
            row[5], row[6] = size, mtime
        try:
            with self._transaction():
                if rows:
                    self._db.executemany(_INSERT, rows)
                if batch.logpos:
                    self._db.executemany(
                        "INSERT INTO item_rtdata (itemid, lastlogsize, mtime) SELECT itemid, ?, ? FROM items "
                        "WHERE itemid = ? ON CONFLICT (itemid) DO UPDATE SET lastlogsize = excluded.lastlogsize, "
                        f"mtime = excluded.mtime WHERE {LOGPOS_FORWARD}",
                        [(size, mtime, itemid) for itemid, (size, mtime) in batch.logpos.items()])
                if batch.sessions:
                    now = int(time.time())
                    self._db.executemany(
                        "INSERT INTO agent_sessions (session, last_id, updated) VALUES (?, ?, ?) "
                        "ON CONFLICT (session) DO UPDATE SET last_id = max(last_id, excluded.last_id), "
                        "updated = excluded.updated", [(s, i, now) for s, i in batch.sessions.items()])
        except (sqlite3.Error, OverflowError, TypeError, ValueError) as e:
            raise StoreError(f"buffering {len(batch)} values failed, nothing was buffered: {e}") from None

    def write_unsupported(self, rows: list[tuple[int, int, str]]) -> None:
        """(itemid, clock, error) of items that became not supported: sent with state 1."""
        if not rows:
            return
        try:
            with self._transaction():
                self._db.executemany(_INSERT, [[i, c, 0, e or "not supported", 1, None, None, 0, "", 0, 0]
                                               for i, c, e in rows])
        except sqlite3.Error as e:
            raise StoreError(f"buffering {len(rows)} not-supported states failed: {e}") from None

    # --- reading and acknowledging: what the uplink calls --------------------------------------

    def batch(self, limit: int = 10_000) -> list[HistoryRecord]:
        """The oldest unsent records, ids increasing."""
        cur = self._db.execute(f"SELECT {_COLUMNS} FROM proxy_outbox WHERE sent = 0 ORDER BY id LIMIT ?", (limit,))
        return [HistoryRecord(*r) for r in cur]  # _COLUMNS are HistoryRecord's fields in order

    def batch_after(self, after: int, limit: int = 10_000) -> list[HistoryRecord]:
        """The oldest unsent records with ids above `after` (the batch that follows one in flight)."""
        cur = self._db.execute(f"SELECT {_COLUMNS} FROM proxy_outbox WHERE sent = 0 AND id > ? ORDER BY id LIMIT ?",
                               (after, limit))
        return [HistoryRecord(*r) for r in cur]

    def batch_after_json(self, after: int, limit: int = 10_000) -> tuple[int, int, int, str] | None:
        """What `batch_after` returns, as (count, lowest id, highest id, the `history data` JSON array
        of their `HistoryRecord.to_json()`), rendered by SQLite in one statement, when every one is a
        plain record (a value and nothing but id, itemid, clock and ns); None when one is not (or none
        is unsent): then `batch_after` is read instead."""
        try:
            n, lo, hi, other, text = self._db.execute(_PLAIN_JSON, (after, limit)).fetchone()
        except sqlite3.Error:  # a value SQLite's JSON cannot hold: the records are read one by one
            return None
        if not n or other:
            return None
        return int(n), int(lo), int(hi), str(text)

    def batch_range(self, lo: int, hi: int) -> list[HistoryRecord]:
        """The unsent records with ids lo..hi (an in-flight batch of an earlier run), ids increasing."""
        cur = self._db.execute(f"SELECT {_COLUMNS} FROM proxy_outbox WHERE sent = 0 AND id BETWEEN ? AND ? "
                               "ORDER BY id", (lo, hi))
        return [HistoryRecord(*r) for r in cur]  # _COLUMNS are HistoryRecord's fields in order

    def sending(self, session: str, records: list[HistoryRecord]) -> None:
        """Commit, before they are sent, that these records (ids increasing) go under `session`."""
        if not records:
            return
        with self._transaction():
            self._db.execute("DELETE FROM proxy_inflight")
            self._db.execute("INSERT INTO proxy_inflight (session, lo, hi) VALUES (?, ?, ?)",
                             (session, records[0].id, records[-1].id))

    def inflight(self) -> tuple[str, int, int] | None:
        """(session, lo, hi) of the batch sent and not yet acknowledged, if any."""
        r = self._db.execute("SELECT session, lo, hi FROM proxy_inflight").fetchone()
        return None if r is None else (str(r[0]), int(r[1]), int(r[2]))

    def clear_inflight(self) -> None:
        with self._transaction():
            self._db.execute("DELETE FROM proxy_inflight")

    def ack(self, records: list[HistoryRecord], now: int | None = None,
            then: tuple[str, list[HistoryRecord]] | None = None) -> bool:
        """The server acknowledged these records (a `batch()`'s, ids increasing). `then`: the
        (session, records) of the next batch, read before this acknowledgement, committed as in
        flight in the same transaction (as `sending` would). False when `then` is no longer what the
        buffer holds (`expire` dropped some of it meanwhile): it must be read again, not sent."""
        span = (records[0].id, records[-1].id, len(records)) if records else None
        nxt = None if then is None else (then[0], *((then[1][0].id, then[1][-1].id, len(then[1])) if then[1]
                                                    else (0, 0, 0)))
        return self.ack_span(span, now, nxt)

    def ack_span(self, span: tuple[int, int, int] | None, now: int | None = None,
                 then: tuple[str, int, int, int] | None = None) -> bool:
        """`ack` by id ranges: `span` (lo, hi, count) acknowledged, `then` (session, lo, hi, count)
        the next batch (count 0: none) committed as in flight if it is still whole."""
        kept = then is not None
        if span is None:
            if then is not None and then[3]:
                kept = self._unchanged(then[1], then[2], then[3])
                if kept:
                    with self._transaction():
                        self._db.execute("DELETE FROM proxy_inflight")
                        self._db.execute("INSERT INTO proxy_inflight (session, lo, hi) VALUES (?, ?, ?)", then[:3])
            return kept
        lo, hi, _ = span
        with self._transaction():
            self._db.execute("DELETE FROM proxy_inflight WHERE lo >= ? AND hi <= ?", (lo, hi))
            if then is not None and then[3]:
                kept = self._unchanged(then[1], then[2], then[3])
                if kept:
                    self._db.execute("DELETE FROM proxy_inflight")
                    self._db.execute("INSERT INTO proxy_inflight (session, lo, hi) VALUES (?, ?, ?)", then[:3])
            if self.local_hours:
                self._db.execute("UPDATE proxy_outbox SET sent = ? WHERE id BETWEEN ? AND ? AND sent = 0",
                                 (int(time.time()) if now is None else now, lo, hi))
            else:
                self._db.execute("DELETE FROM proxy_outbox WHERE id BETWEEN ? AND ? AND sent = 0", (lo, hi))
        return kept

    def _unchanged(self, lo: int, hi: int, count: int) -> bool:
        """Whether every one of `count` records with ids lo..hi is still unsent in the buffer."""
        (n,) = self._db.execute("SELECT count(*) FROM proxy_outbox WHERE sent = 0 AND id BETWEEN ? AND ?",
                                (lo, hi)).fetchone()
        return int(n) == count

    def unsent(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM proxy_outbox WHERE sent = 0").fetchone()[0])

    def last_id(self) -> int:
        """The highest id ever given (AUTOINCREMENT's counter: ids are not reused)."""
        r = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'proxy_outbox'").fetchone()
        return 0 if r is None else int(r[0])

    def oldest_unsent_clock(self) -> int | None:
        r = self._db.execute("SELECT clock FROM proxy_outbox WHERE sent = 0 ORDER BY id LIMIT 1").fetchone()
        return None if r is None else int(r[0])

    def expire(self, now: int) -> int:
        """Drop unsent values older than ProxyOfflineBuffer (counted, logged, added to `dropped()`)
        and sent ones older than ProxyLocalBuffer; returns how many unsent ones were dropped."""
        with self._transaction():
            dropped = self._db.execute("DELETE FROM proxy_outbox WHERE sent = 0 AND clock < ?",
                                       (now - self.offline_hours * HOUR,)).rowcount
            self._db.execute("DELETE FROM proxy_outbox WHERE sent <> 0 AND sent < ?",
                             (now - self.local_hours * HOUR,))
            if dropped:
                self._db.execute("INSERT INTO proxy_totals (name, value) VALUES ('dropped', ?) "
                                 "ON CONFLICT (name) DO UPDATE SET value = value + excluded.value", (dropped,))
        if dropped:
            log.warning("dropped %d buffered values older than ProxyOfflineBuffer (%d h) that the server never "
                        "acknowledged; %d dropped in all", dropped, self.offline_hours, self.dropped())
        return dropped

    def dropped(self) -> int:
        r = self._db.execute("SELECT value FROM proxy_totals WHERE name = 'dropped'").fetchone()
        return 0 if r is None else int(r[0])

    def sent_kept(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM proxy_outbox WHERE sent <> 0").fetchone()[0])

    # --- the Store seam: what a proxy keeps and what it does not -------------------------------

    def sessions(self) -> dict[str, int]:
        return dict(self._db.execute("SELECT session, last_id FROM agent_sessions").fetchall())

    def prune_sessions(self, before: int) -> int:
        with self._transaction():
            return self._db.execute("DELETE FROM agent_sessions WHERE updated < ?", (before,)).rowcount

    def log_positions(self) -> dict[int, tuple[int, int]]:
        return {i: (s, m) for i, s, m in self._db.execute("SELECT itemid, lastlogsize, mtime FROM item_rtdata")}

    def _none(self, what: str) -> StoreError:
        return StoreError(f"{what}: the proxy's buffer keeps no history; the server's store has it")

    def history(self, itemid: int, value_type: ValueType, start: int, end: int,
                limit: int | None = None) -> list[HistoryRow]:
        raise self._none("history")

    def log_history(self, itemid: int, start: int, end: int, limit: int | None = None) -> list[LogEntry]:
        raise self._none("log_history")

    def trends(self, itemid: int, value_type: ValueType, start: int, end: int) -> list[Trend]:
        raise self._none("trends")

    def latest(self, items: Mapping[int, ValueType], since: int | None = None) -> dict[int, HistoryRow]:
        raise self._none("latest")

    def rollup_trends(self, now: int) -> int:
        raise self._none("rollup_trends")

    def housekeep(self, now: int, retention: Iterable[Retention]) -> HousekeepReport:
        raise self._none("housekeep")

    def close(self) -> None:
        self._db.close()
