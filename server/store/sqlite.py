"""The embedded store: SQLite through the stdlib driver (the hot path skips SQLAlchemy).

WAL with synchronous=FULL, so a commit is on disk when write() returns. One writer at a time is
SQLite's rule; `BEGIN IMMEDIATE` takes the write lock up front so a batch never fails half-way on a
lock upgrade, and busy_timeout makes the other processes wait for it instead of failing.

Numeric values are committed into unindexed staging tables (history_stage, history_uint_stage) and
moved into history by `maintain()` in large chunks sorted by (itemid, clock). Inserting a batch
that spans many items straight into history's (itemid, clock) index dirties one leaf page per
value: ~4 MB of WAL to write and fsync per 1000 values. Staged, the same batch appends a few
pages, and a move of 50,000 values touches one or two leaf pages per item. A staged value is
committed like any other: every read, the trend roll-up and housekeeping look at both tables.

The trend roll-up holds the write lock only to clear an hour's mark and to write its trends; it reads
the hour in between with no lock (WAL readers do not stop writers).
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from vigil.server.config.tables import TREND_TABLES, ValueType
from vigil.server.store import rollup
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
    check_clocks,
    check_limit,
    encode_uints,
    from_signed64,
    history_table,
    to_signed64,
    trend_table,
)

DELETE_CHUNK = 10_000  # rows per housekeeping statement; the write lock is released in between
STAGE = {"history": "history_stage", "history_uint": "history_uint_stage"}
STAGE_MOVE_ROWS = 50_000  # staged values that make maintain() move them into history
STAGE_MAX_AGE = 1.0  # seconds; maintain() moves fewer values once they have waited this long


class SQLiteStore(Store):
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        if not Path(self.path).exists():
            raise StoreError(f"no database at {self.path}: run `vigil db upgrade` first")
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=30000", "foreign_keys=ON"):
            self._db.execute(f"PRAGMA {pragma}")
        try:
            self._db.execute("SELECT 1 FROM history, trend_dirty, agent_sessions LIMIT 0")
        except sqlite3.OperationalError as e:
            self._db.close()
            raise StoreError(f"{self.path} is not a migrated Vigil database ({e}): run `vigil db upgrade`") from None
        try:
            self._staged = sum(self._db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in STAGE.values())
        except sqlite3.OperationalError as e:
            self._db.close()
            raise StoreError(f"{self.path} lacks the history staging tables ({e}): run `vigil db upgrade`") from None
        self._moved_at = time.monotonic()

    # -- writing ----------------------------------------------------------------------------------

    def write(self, batch: WriteBatch) -> None:
        if not len(batch) and not batch.logpos and not batch.sessions:
            return
        hours: set[int] = set()
        uints = batch.uints
        for table, rows in (("history", batch.floats), ("history_uint", uints)):
            if rows:
                lo, hi = check_clocks(table, rows)
                hours |= rollup.span_buckets(lo, hi, (r[1] for r in rows), rollup.HOUR)
        if uints:
            uints = encode_uints(uints)
        for table, rows in (("history_str", batch.strs), ("history_text", batch.texts),
                            ("history_log", batch.logs)):
            if rows:
                check_clocks(table, rows)
        db = self._db
        step = "BEGIN"
        try:
            with self._transaction():
                for table, sql, rows in (
                    ("history", "INSERT INTO history_stage VALUES (?,?,?,?)", batch.floats),
                    ("history_uint", "INSERT INTO history_uint_stage VALUES (?,?,?,?)", uints),
                    ("history_str", "INSERT INTO history_str VALUES (?,?,?,?)", batch.strs),
                    ("history_text", "INSERT INTO history_text VALUES (?,?,?,?)", batch.texts),
                    ("history_log", "INSERT INTO history_log VALUES (?,?,?,?,?,?,?,?)", batch.logs),
                ):
                    if rows:
                        step = table
                        db.executemany(sql, rows)
                if hours:
                    step = "trend_dirty"
                    db.executemany("INSERT OR IGNORE INTO trend_dirty (hour) VALUES (?)", [(h,) for h in hours])
                if batch.logpos:
                    step = "item_rtdata"
                    db.executemany(
                        "INSERT INTO item_rtdata (itemid, lastlogsize, mtime) "
                        "SELECT itemid, ?, ? FROM items WHERE itemid = ? "
                        "ON CONFLICT (itemid) DO UPDATE SET lastlogsize = excluded.lastlogsize, "
                        f"mtime = excluded.mtime WHERE {LOGPOS_FORWARD}",
                        [(size, mtime, itemid) for itemid, (size, mtime) in batch.logpos.items()],
                    )
                if batch.sessions:
                    step = "agent_sessions"
                    now = int(time.time())
                    db.executemany(
                        "INSERT INTO agent_sessions (session, last_id, updated) VALUES (?, ?, ?) "
                        "ON CONFLICT (session) DO UPDATE SET last_id = max(last_id, excluded.last_id), "
                        "updated = excluded.updated",
                        [(s, i, now) for s, i in batch.sessions.items()],
                    )
                step = "COMMIT"
        except (sqlite3.Error, OverflowError, TypeError, ValueError) as e:
            raise StoreError(f"writing {len(batch)} values failed at {step}, nothing was stored: {e}") from None
        self._staged += len(batch.floats) + len(uints)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE … COMMIT, rolled back on any error (the error goes on to the caller)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def maintain(self, force: bool = False) -> None:
        if force or self._staged >= STAGE_MOVE_ROWS or (
                self._staged and time.monotonic() - self._moved_at >= STAGE_MAX_AGE):
            self.move_staged()

    def move_staged(self) -> None:
        """Move every staged value (this process's and any other's) into history, in one transaction."""
        db = self._db
        try:
            with self._transaction():
                for table, stage in STAGE.items():
                    db.execute(f"INSERT INTO {table} (itemid, clock, ns, value) "
                               f"SELECT itemid, clock, ns, value FROM {stage} ORDER BY itemid, clock")
                    db.execute(f"DELETE FROM {stage}")
        except sqlite3.Error as e:
            raise StoreError(f"moving staged values into history failed (they stay staged and readable): {e}") from None
        self._staged = 0
        self._moved_at = time.monotonic()

    # -- reading ----------------------------------------------------------------------------------

    def _query(self, sql: str, params: Iterable[object]) -> list:
        try:
            return self._db.execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as e:
            raise StoreError(f"query failed: {e}") from None

    def history(
        self, itemid: int, value_type: ValueType, start: int, end: int, limit: int | None = None
    ) -> list[HistoryRow]:
        table = history_table(value_type)
        where = "WHERE itemid = ? AND clock >= ? AND clock <= ?"
        if table in STAGE:
            rows = self._query(
                f"SELECT clock, ns, value FROM (SELECT clock, ns, value FROM {table} {where} UNION ALL "
                f"SELECT clock, ns, value FROM {STAGE[table]} {where}) ORDER BY clock, ns LIMIT ?",
                (itemid, start, end, itemid, start, end, check_limit(limit)))
        else:
            rows = self._query(f"SELECT clock, ns, value FROM {table} {where} ORDER BY clock, ns LIMIT ?",
                               (itemid, start, end, check_limit(limit)))
        if value_type == ValueType.UNSIGNED:
            return [(c, n, from_signed64(v)) for c, n, v in rows]
        return rows

    def log_history(self, itemid: int, start: int, end: int, limit: int | None = None) -> list[LogEntry]:
        rows = self._query(
            "SELECT clock, ns, timestamp, source, severity, value, logeventid FROM history_log "
            "WHERE itemid = ? AND clock >= ? AND clock <= ? ORDER BY clock, ns LIMIT ?",
            (itemid, start, end, check_limit(limit)))
        return [LogEntry(*r) for r in rows]

    def trends(self, itemid: int, value_type: ValueType, start: int, end: int) -> list[Trend]:
        table = trend_table(value_type)
        rows = self._query(
            f"SELECT clock, num, value_min, value_avg, value_max FROM {table} "
            "WHERE itemid = ? AND clock >= ? AND clock <= ? ORDER BY clock", (itemid, start, end))
        if value_type == ValueType.UNSIGNED:
            return [Trend(c, n, from_signed64(lo), from_signed64(a), from_signed64(hi)) for c, n, lo, a, hi in rows]
        return [Trend(*r) for r in rows]

    def latest(self, items: Mapping[int, ValueType], since: int | None = None) -> dict[int, HistoryRow]:
        by_type: dict[ValueType, list[int]] = {}
        for itemid, vt in items.items():
            history_table(vt)
            by_type.setdefault(ValueType(vt), []).append(int(itemid))
        if not by_type:
            return {}
        lo = 0 if since is None else int(since)
        parts: list[str] = []
        params: list[object] = []
        for vt, ids in by_type.items():
            table = history_table(vt)
            ids_json = json.dumps(ids)
            # The newest clock through the (itemid, clock) index, then the highest ns at that clock.
            parts.append(
                f"SELECT {int(vt)}, h.itemid, h.clock, h.ns, h.value FROM json_each(?) j JOIN {table} h ON h.rowid = "
                f"(SELECT rowid FROM {table} WHERE itemid = j.value AND clock = (SELECT max(clock) FROM {table} "
                "WHERE itemid = j.value AND clock >= ?) ORDER BY ns DESC LIMIT 1)")
            params += [ids_json, lo]
            if table in STAGE:
                # One pass over the (small) staging table; SQLite returns the other columns of the row
                # that has the max().
                parts.append(
                    f"SELECT {int(vt)}, itemid, clock, ns, value FROM (SELECT itemid, clock, ns, value, "
                    f"max(clock * 1000000000 + ns) FROM {STAGE[table]} WHERE clock >= ? "
                    "AND itemid IN (SELECT value FROM json_each(?)) GROUP BY itemid)")
                params += [lo, ids_json]
        out: dict[int, HistoryRow] = {}
        for vt, itemid, clock, ns, value in self._query(" UNION ALL ".join(parts), params):
            best = out.get(itemid)
            if best is None or (clock, ns) > best[:2]:
                out[itemid] = (clock, ns, from_signed64(value) if vt == ValueType.UNSIGNED else value)
        return out

    def sessions(self) -> dict[str, int]:
        return dict(self._query("SELECT session, last_id FROM agent_sessions", ()))

    def prune_sessions(self, before: int) -> int:
        try:
            with self._transaction():
                return self._db.execute("DELETE FROM agent_sessions WHERE updated < ?", (before,)).rowcount
        except sqlite3.Error as e:
            raise StoreError(f"pruning agent sessions failed: {e}") from None

    def log_positions(self) -> dict[int, tuple[int, int]]:
        return {i: (s, m) for i, s, m in self._query("SELECT itemid, lastlogsize, mtime FROM item_rtdata", ())}

    # -- trends -----------------------------------------------------------------------------------

    def rollup_trends(self, now: int) -> int:
        hours = [h for (h,) in self._query("SELECT hour FROM trend_dirty UNION SELECT hour FROM trend_rollup", ())]
        for hour in sorted(hours):
            try:
                self._rollup_hour(hour, rollup.hour_complete(hour, now))
            except sqlite3.Error as e:
                raise StoreError(f"rolling up trends for the hour at {hour} failed: {e}") from None
        return len(hours)

    def _rollup_hour(self, hour: int, complete: bool) -> None:
        """Clear the mark (a short write), read the hour (no lock: WAL readers do not stop writers),
        then write the trends in another short write. A writer that commits a value for the hour after
        the mark was cleared marks it again, so the next roll-up counts it."""
        db = self._db
        token = None
        if complete:
            token = rollup.claim_token()
            with self._transaction():
                db.execute("DELETE FROM trend_dirty WHERE hour = ?", (hour,))
                db.execute("INSERT INTO trend_rollup (hour, token) VALUES (?, ?) "
                           "ON CONFLICT (hour) DO UPDATE SET token = excluded.token", (hour, token))
        p = {"h": hour, "e": hour + rollup.HOUR, "t": rollup.BIG, "s": rollup.SCALE}
        floats = db.execute(
            "SELECT itemid, count(*), min(value), max(value), "
            "sum(CASE WHEN abs(value) > :t THEN value * :s ELSE 0.0 END), "
            "sum(CASE WHEN abs(value) > :t THEN 0.0 ELSE value END) "
            f"FROM ({_hour_rows('history')}) GROUP BY itemid", p).fetchall()
        uints = rollup.aggregate_by_item(
            (i, from_signed64(v)) for i, v in db.execute(_hour_rows("history_uint"), p))
        with self._transaction():
            if token is not None:
                row = db.execute("SELECT token FROM trend_rollup WHERE hour = ?", (hour,)).fetchone()
                if row is None or row[0] != token:
                    return  # another roll-up took the hour over after us: its results are newer
            db.executemany(_UPSERT.format(table="trends"), [
                (i, hour, n, lo, rollup.float_mean(n, lo, hi, big, small), hi) for i, n, lo, hi, big, small in floats])
            db.executemany(_UPSERT.format(table="trends_uint"), [
                (i, hour, a.num, to_signed64(int(a.min)), to_signed64(a.avg_uint()), to_signed64(int(a.max)))
                for i, a in uints.items()])
            self._merge_late(hour)
            if token is not None:
                db.execute("DELETE FROM trend_rollup WHERE hour = ?", (hour,))

    def _merge_late(self, hour: int) -> None:
        """Late values of items whose history of the hour is gone (the hour is before their horizon):
        merged into the trend row and removed from history, so that no later roll-up counts them twice."""
        db = self._db
        p = {"h": hour, "e": hour + rollup.HOUR}
        for table, trends, uint in (("history", "trends", False), ("history_uint", "trends_uint", True)):
            closed = _hour_rows(table, closed=True, stage=False, cols="rowid")
            rows = db.execute(f"DELETE FROM {table} WHERE rowid IN ({closed}) RETURNING itemid, value", p).fetchall()
            rows += db.execute(
                f"DELETE FROM {STAGE[table]} WHERE clock >= :h AND clock < :e AND EXISTS (SELECT 1 FROM "
                f"history_horizon z WHERE z.itemid = {STAGE[table]}.itemid AND z.clock > :h) RETURNING itemid, value",
                p).fetchall()
            if not rows:
                continue
            late = rollup.aggregate_by_item((i, from_signed64(v)) if uint else (i, v) for i, v in rows)
            old = {r[0]: r[1:] for r in db.execute(
                f"SELECT itemid, num, value_min, value_avg, value_max FROM {trends} WHERE clock = ? "
                "AND itemid IN (SELECT value FROM json_each(?))", (hour, json.dumps(list(late))))}
            out = []
            for i, agg in late.items():
                if uint:
                    fresh = (agg.num, int(agg.min), agg.avg_uint(), int(agg.max))
                    n, lo, avg, hi = fresh if i not in old else rollup.merge_uint_trend(
                        (old[i][0], *(from_signed64(x) for x in old[i][1:])), agg)  # type: ignore[arg-type]
                    out.append((i, hour, n, to_signed64(lo), to_signed64(avg), to_signed64(hi)))
                else:
                    fresh_f = (agg.num, agg.min, agg.avg_float(), agg.max)
                    n, lo, avg, hi = fresh_f if i not in old else rollup.merge_trends(old[i], fresh_f)
                    out.append((i, hour, n, lo, avg, hi))
            db.executemany(_UPSERT.format(table=trends), out)

    # -- housekeeping -----------------------------------------------------------------------------

    def housekeep(self, now: int, retention: Iterable[Retention]) -> HousekeepReport:
        report = HousekeepReport()
        self.move_staged()  # so that old staged values are deleted now, not at the next run
        for r in retention:
            table = history_table(r.value_type)
            if r.value_type in TREND_TABLES:
                trends = TREND_TABLES[r.value_type]
                report.history_rows += self._delete_numeric(table, r.itemid, rollup.hour_of(now - r.history))
                report.trend_rows += self._delete_chunked(trends, r.itemid, now - r.trends)
            else:
                report.history_rows += self._delete_chunked(table, r.itemid, now - r.history)
        return report

    def _delete_numeric(self, table: str, itemid: int, before: int) -> int:
        """Delete an item's numeric history before `before` (an hour's start), whole hours at a time,
        oldest first, moving the item's horizon along in the same transaction. It stops at the first
        hour not rolled up yet: its values are not in the trends yet, nor are those of later hours."""
        db = self._db
        total, span, start = 0, rollup.HOUR, None
        while True:
            try:
                with self._transaction():
                    (pending,) = db.execute(f"SELECT min(hour) FROM ({_PENDING})").fetchone()
                    limit = before if pending is None else min(before, pending)
                    if start is None:
                        (first,) = db.execute(f"SELECT min(clock) FROM {table} WHERE itemid = ? AND clock < ?",
                                              (itemid, limit)).fetchone()
                        if first is None:
                            return total
                        start = rollup.hour_of(first)
                    end = min(limit, start + span)
                    if end <= start:
                        return total
                    gone = db.execute(f"DELETE FROM {table} WHERE itemid = ? AND clock >= ? AND clock < ?",
                                      (itemid, start, end)).rowcount
                    if gone:
                        db.execute("INSERT INTO history_horizon (itemid, clock) VALUES (?, ?) ON CONFLICT (itemid) "
                                   "DO UPDATE SET clock = max(clock, excluded.clock)", (itemid, end))
            except sqlite3.Error as e:
                raise StoreError(f"housekeeping {table} for item {itemid} failed: {e}") from None
            total += gone
            if end >= limit:
                return total
            start = end
            span = span * 2 if gone < DELETE_CHUNK // 2 else max(rollup.HOUR, span // 2)

    def _delete_chunked(self, table: str, itemid: int, before: int) -> int:
        total = 0
        while True:
            try:
                cur = self._db.execute(
                    f"DELETE FROM {table} WHERE rowid IN (SELECT rowid FROM {table} "
                    "WHERE itemid = ? AND clock < ? LIMIT ?)", (itemid, before, DELETE_CHUNK))
            except sqlite3.Error as e:
                raise StoreError(f"housekeeping {table} for item {itemid} failed: {e}") from None
            total += cur.rowcount
            if cur.rowcount < DELETE_CHUNK:
                return total

    def close(self) -> None:
        self._db.close()


_PENDING = "SELECT hour FROM trend_dirty UNION ALL SELECT hour FROM trend_rollup"  # hours not rolled up yet
_UPSERT = ("INSERT INTO {table} (itemid, clock, num, value_min, value_avg, value_max) VALUES (?,?,?,?,?,?) "
           "ON CONFLICT (itemid, clock) DO UPDATE SET num = excluded.num, value_min = excluded.value_min, "
           "value_avg = excluded.value_avg, value_max = excluded.value_max")


def _hour_rows(table: str, closed: bool = False, stage: bool = True, cols: str = "itemid, value") -> str:
    """(itemid, value) of a history table and its staging table with :h <= clock < :e, for the items
    whose history of the hour is whole (the hour is at or after their horizon), or with `closed` for
    those whose history of it was removed (only late values are left).

    History has no index on clock alone (see migration 0003): the item ids are walked through the
    (itemid, clock) index one by one (a skip scan: one probe per item), then each item's hour is a
    range of that index.
    """
    test = f"{'' if closed else 'NOT '}EXISTS (SELECT 1 FROM history_horizon z WHERE z.itemid = {{0}} AND z.clock > :h)"
    sql = (
        f"WITH RECURSIVE ids(itemid) AS (SELECT min(itemid) FROM {table} UNION ALL "
        f"SELECT (SELECT min(itemid) FROM {table} WHERE itemid > ids.itemid) FROM ids WHERE ids.itemid IS NOT NULL) "
        f"SELECT {', '.join('h.' + c.strip() for c in cols.split(','))} FROM ids CROSS JOIN {table} h "
        f"ON h.itemid = ids.itemid AND h.clock >= :h AND h.clock < :e WHERE {test.format('ids.itemid')}")
    if stage:
        sql += (f" UNION ALL SELECT s.itemid, s.value FROM {STAGE[table]} s WHERE s.clock >= :h AND s.clock < :e "
                f"AND {test.format('s.itemid')}")
    return sql
