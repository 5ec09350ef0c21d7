"""The production store: PostgreSQL through psycopg 3, history written with COPY into daily partitions.

History tables are `PARTITION BY RANGE (clock)` parents; a partition per table and UTC day
(`history_p20240131`, `history_uint_p20240131`, …). The housekeeper makes those of today and the next
PARTITIONS_AHEAD_DAYS days ahead, each waiting at most PARTITION_LOCK_TIMEOUT for the parent's lock,
so writers find them at midnight; a batch with a clock outside that window creates its partition
itself, in its own short transaction before the batch's, so the batch never holds the catalog lock.

Numeric history's days are partitioned again, by hour (`history_p20240131_h13`), and an hour's
(itemid, clock) index is built only once the hour has closed (index_closed_hours, run with the
roll-up; migration 0024): keeping that b-tree up row by row was most of PostgreSQL's cost per value.
So the recent hours are unindexed heaps, which reads of many items (latest, histories) scan once
rather than item by item; a read of one item scans them too, at most an hour or two of values.
Days made before migration 0024 stay whole, with their index.

Trend roll-up and concurrent writers: a writer holds a shared advisory lock for the length of its
transaction; the roll-up takes it exclusively only for the instant it clears an hour's dirty mark,
in a transaction of its own (the hour is claimed in trend_rollup meanwhile), and recomputes the hour
afterwards. So every writer either committed before the roll-up read the hour (its values are
counted) or marks the hour dirty again after the roll-up cleared it (the next run counts them); no
value is left out and no writer waits for a recomputation.
"""

from __future__ import annotations

import functools
import logging
import operator
import re
import struct
import time
from collections.abc import Generator, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import errors, generators, sql, waiting
from psycopg.waiting import Wait
from vigil.server.config.tables import HISTORY_TABLES, TREND_TABLES, ValueType
from vigil.server.store import pgwire, rollup
from vigil.server.store.base import (
    LOGPOS_FORWARD,
    HistoryRow,
    HousekeepReport,
    LogEntry,
    PgTimeouts,
    Retention,
    Store,
    StoreError,
    Trend,
    WriteBatch,
    WriteUnsent,
    check_clocks,
    check_limit,
    encode_uints,
    from_signed64,
    history_table,
    to_signed64,
    trend_table,
)

try:  # the compiled COPY encoder is optional (setup.py): without it, the same bytes from Python
    from vigil.server.store import _copy
except ImportError:
    _copy = None  # type: ignore[assignment]

log = logging.getLogger("vigil.store.postgres")

PARTITIONS_AHEAD_DAYS = 3  # the housekeeper keeps partitions for today and this many days ahead
PARTITION_LOCK_TIMEOUT = "1s"  # most a partition's creation or drop waits for its parent's lock
ROLLUP_LOCK = 0x76_69_67_69_6C_74  # advisory lock key shared by writers and the trend roll-up ("vigilt")
_INT32_MAX = 2**31 - 1
_PARTITION = re.compile(r"(history(?:_uint|_str|_text|_log)?)_p(\d{8})")
_HOUR_PARTITION = re.compile(r"(history(?:_uint)?)_p(\d{8})_h(\d{2})")
_BY_HOUR = ("history", "history_uint")  # their days are partitioned by hour (migration 0024)
INDEX_AFTER = 60  # seconds after an hour closed that its partition's index is built (late values come cheap till then)
_HOT_TTL = 5.0  # seconds a reader trusts what it found out about the unindexed hours
_ITEMS_PER_DELETE = 1000
_TRENDS_OF = {"history": "trends", "history_uint": "trends_uint"}
_PENDING = "SELECT hour FROM trend_dirty UNION ALL SELECT hour FROM trend_rollup"  # hours not rolled up yet
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_COLUMNS = {
    "history": "itemid, clock, ns, value",
    "history_uint": "itemid, clock, ns, value",
    "history_str": "itemid, clock, ns, value",
    "history_text": "itemid, clock, ns, value",
    "history_log": "itemid, clock, ns, timestamp, source, severity, value, logeventid",
}
# COPY's binary format: a header, then per row the field count and each field as length + bytes.
_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_BINARY_TRAILER = b"\xff\xff"
_FLOAT_ROW = struct.Struct(">hiiiiiiid")  # 4 fields: int4 itemid, int4 clock, int4 ns, float8 value
_UINT_ROW = struct.Struct(">hiiiiiiiq")  # … int8 value
_ITEM = operator.itemgetter(0)
_COPY_CHUNK = 1 << 20  # bytes handed to libpq at a time (psycopg splits big COPY data alike)
_COPY_IN, _COMMAND_OK, _FATAL_ERROR = (psycopg.pq.ExecStatus.COPY_IN, psycopg.pq.ExecStatus.COMMAND_OK,
                                       psycopg.pq.ExecStatus.FATAL_ERROR)
WAIT_W = Wait.W
LOOP_MAX_VALUES = 2000  # most values a write on the event loop takes (its COPY data is built there)
_LOOP_WAIT = 1.0  # wait_async's interval: its timer's period while a reply is awaited (0 would spin)
_UINT_DECODE = "CASE WHEN value < 0 THEN value + 18446744073709551616 ELSE value END"


def _enc(expr: str) -> str:
    return f"(CASE WHEN {expr} >= 9223372036854775808 THEN {expr} - 18446744073709551616 ELSE {expr} END)::bigint"


def _esc(s: str) -> str:
    """A string as a field of COPY's text format."""
    if "\\" in s or "\t" in s or "\n" in s or "\r" in s:
        return s.translate(_ESCAPES)
    return s


@functools.lru_cache(maxsize=1024)  # asked on every write on the loop, where formatting the date was 2% of its time
def partition_name(table: str, day: int) -> str:
    return f"{table}_p{datetime.fromtimestamp(day, UTC):%Y%m%d}"


def hour_partition_name(table: str, hour: int) -> str:
    return f"{partition_name(table, hour - hour % rollup.DAY)}_h{hour % rollup.DAY // rollup.HOUR:02d}"


def _copy_binary(table: str, rows: list) -> bytes:
    """Numeric rows in COPY's binary format: one struct.pack per row, about 0.2 µs each."""
    pack = (_FLOAT_ROW if table == "history" else _UINT_ROW).pack
    try:
        return b"".join([_BINARY_HEADER, *[pack(4, 4, i, 4, c, 4, n, 8, v) for i, c, n, v in rows], _BINARY_TRAILER])
    except (struct.error, TypeError, ValueError):
        for r in rows:
            try:
                pack(4, 4, r[0], 4, r[1], 4, r[2], 8, r[3])
            except (struct.error, TypeError, ValueError) as e:
                raise StoreError(f"{table}: row {r!r} cannot be stored ({e}); nothing was stored") from None
        raise


def _compiled_copy(rows: list, uint: bool) -> tuple[bytes, int, int] | None:
    """What _copy_binary(_by_item(rows)) and check_clocks give, from the compiled encoder (server/store/
    _copy.c, a tenth of the time); None where it is not built or declines the rows (then the Python path
    names what is wrong with them)."""
    return _copy.numeric(rows, uint) if _copy is not None else None


def _copy_end(pgconn: psycopg.pq.abc.PGconn) -> Generator[Any, Any, None]:
    """psycopg's copy_end without its fetch: the results of a multi-statement query are fetched by the caller."""
    while pgconn.put_copy_end(None) == 0:
        while not (yield WAIT_W):
            continue
    while True:
        while not (yield WAIT_W):
            continue
        if pgconn.flush() == 0:
            break


def _check_results(results: list, pgconn: psycopg.pq.abc.PGconn, copy_in: bool) -> None:
    """Every result of the statements so far succeeded; the last is a COPY waiting for rows (copy_in)
    or the COMMIT."""
    for r in results:
        if r.status == _FATAL_ERROR:
            raise errors.error_from_result(r, encoding=pgconn._encoding)
    last = results[-1] if results else None
    if copy_in:
        if last is None or last.status != _COPY_IN:
            raise psycopg.OperationalError("PostgreSQL did not start the COPY")
    elif last is None or last.status != _COMMAND_OK or last.command_status != b"COMMIT":
        # a COMMIT of a transaction that failed answers ROLLBACK, not an error
        raise psycopg.OperationalError("PostgreSQL did not commit the transaction "
                                       f"({last.command_status if last is not None else 'no result'!r})")


@dataclass(slots=True)
class _Step:
    committing: bool = False  # the last COPY's end is sent: from here on the outcome is unknown if the line breaks


def _transaction(pgconn: psycopg.pq.abc.PGconn, query: bytes, copies: list[tuple[str, bytes]],
                 step: _Step) -> Generator[Any, Any, None]:
    """The whole transaction as one simple query, `head; COPY ...; COMMIT`, its rows sent as each COPY
    asks for them: two round trips instead of one per statement (each a wake-up of the writer and of
    the backend, which on a busy machine is most of a small transaction's time). psycopg's cursors
    refuse COPY mixed with other statements, so this drives libpq through psycopg's generators, which
    a thread (Connection.wait) or an event loop (waiting.wait_async) can run alike. Until the last
    COPY's end is sent, nothing can be committed: a connection that breaks before that is a failed
    write like any other; after it, the outcome is unknown.

    Not libpq's pipeline mode with INSERT ... SELECT FROM unnest(binary arrays), which saves the round
    trip to COPY's start: in one run of bench/ingest.py --vs-zabbix (2026-12-04) PostgreSQL's CPU per value
    rose by a fifth (per-row inserts, not COPY's multi-row ones) and values/s fell 8%; and a connection
    the server closed unseen takes the whole transaction, COMMIT included, so its outcome is unknown
    where COPY's first round trip shows that nothing was stored."""
    pgconn.send_query(query)
    results = yield from generators.execute(pgconn)
    for k, (_, data) in enumerate(copies):
        _check_results(results, pgconn, copy_in=True)
        view = memoryview(data)
        for at in range(0, len(view), _COPY_CHUNK):
            yield from generators.copy_to(pgconn, view[at:at + _COPY_CHUNK], flush=False)
        step.committing = k == len(copies) - 1
        yield from _copy_end(pgconn)
        results = yield from generators.fetch_many(pgconn)
    _check_results(results, pgconn, copy_in=False)


def _by_item(rows: list) -> list:
    # By itemid alone, a key of ints (a third of the time of (itemid, clock) tuples): the sort is stable,
    # so an item's rows keep the order they came in, which is what puts them on one index leaf anyway.
    try:
        return sorted(rows, key=_ITEM)
    except TypeError:  # a bad row: left in place for _copy_binary to name it
        return rows


def _copy_text(table: str, rows: list) -> bytes:
    """Rows in COPY's text format, built with one f-string per row (the fastest way in CPython)."""
    try:
        if table == "history_log":
            text = "".join([f"{i}\t{c}\t{n}\t{t}\t{_esc(src)}\t{sev}\t{_esc(v)}\t{e}\n"
                            for i, c, n, t, src, sev, v, e in rows])
        else:
            text = "".join([f"{i}\t{c}\t{n}\t{_esc(v)}\n" for i, c, n, v in rows])
        return text.encode()
    except (TypeError, ValueError, UnicodeError) as e:
        raise StoreError(f"{table}: a row cannot be written ({e}); nothing was stored") from None


class PostgresStore(Store):
    # After a failed connection attempt the next one waits this long, doubled each time up to the cap:
    # a database that is away costs an attempt every few seconds, one that is back is found soon.
    RECONNECT_FIRST = 0.25
    RECONNECT_MAX = 5.0

    def __init__(self, url: str, timeouts: PgTimeouts | None = None, defer_index: bool = True) -> None:
        self.url = url
        self.defer_index = defer_index  # VIGIL_PG_DEFER_INDEX: hour partitions indexed once closed, or at once
        self._connect_args = (timeouts or PgTimeouts()).connect_args()
        self._pause = 0.0
        self._retry_at = 0.0
        self._attempts = 0
        self._pg = self._connect()
        self._partitions: set[str] = set()
        self._by_hour: set[str] = set()
        self._hot: dict[str, int] = {}
        self._hot_checked = -_HOT_TTL
        self._load_partitions()

    def _connect(self) -> psycopg.Connection:
        try:
            conn = psycopg.connect(self.url, autocommit=True, **self._connect_args)
        except psycopg.Error as e:
            raise StoreError(f"cannot connect to PostgreSQL at {_safe(self.url)}: {e}") from None
        try:
            conn.execute("SET synchronous_commit = on")
            conn.execute("SELECT 1 FROM history, trend_dirty, agent_sessions LIMIT 0")
            # The loop's writes speak the protocol on the socket itself (pgwire), which TLS or GSS
            # encryption would wrap: those connections keep libpq's way.
            encrypted = conn.pgconn.ssl_in_use or bool(conn.execute(
                "SELECT count(*) FROM pg_stat_gssapi WHERE pid = pg_backend_pid() AND encrypted").fetchone()[0])
            self._plain = not encrypted
        except errors.UndefinedTable as e:
            conn.close()
            raise StoreError(
                f"{_safe(self.url)} is not a migrated Vigil database ({e}): run `vigil db upgrade`") from None
        except psycopg.Error as e:
            conn.close()
            raise StoreError(f"cannot connect to PostgreSQL at {_safe(self.url)}: {e}") from None
        return conn

    @property
    def _conn(self) -> psycopg.Connection:
        """The connection; one that broke (server restarted, network gone) is opened again, at most
        one attempt per pause. While it cannot be, every operation fails at once with StoreError."""
        if not self._pg.closed:
            return self._pg
        now = time.monotonic()
        if now < self._retry_at:
            raise StoreError(f"PostgreSQL at {_safe(self.url)} is unreachable; "
                             f"next connection attempt in {self._retry_at - now:.1f} s")
        if self._attempts == 0:
            log.warning("lost the connection to PostgreSQL at %s: reconnecting", _safe(self.url))
        self._attempts += 1
        try:
            self._pg = self._connect()
        except StoreError:
            self._pause = min(self.RECONNECT_MAX, max(self.RECONNECT_FIRST, 2 * self._pause))
            self._retry_at = time.monotonic() + self._pause
            raise
        log.info("reconnected to PostgreSQL at %s (attempt %d)", _safe(self.url), self._attempts)
        self._pause = self._retry_at = 0.0
        self._attempts = 0
        return self._pg

    # -- partitions -------------------------------------------------------------------------------

    def _load_partitions(self) -> None:
        rows = self._conn.execute(
            "SELECT c.relname, c.relkind = 'p' FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = ANY(%s) "
            "AND p.relnamespace = current_schema()::regnamespace",
            (list(HISTORY_TABLES.values()),)).fetchall()
        self._partitions = {r[0] for r in rows}
        self._by_hour = {r[0] for r in rows if r[1]}  # days partitioned by hour

    def partitions(self) -> list[str]:
        """Names of the history partitions that exist, oldest day first."""
        self._load_partitions()
        return sorted(self._partitions, key=lambda n: (n.rsplit("_p", 1)[1], n))

    @staticmethod
    def _create_partition_sql(table: str, day: int, index_by: int) -> sql.Composed:
        """A day's partition; numeric history's with its 24 hours, those closed INDEX_AFTER before
        `index_by` indexed. Several statements in one query: one implicit transaction, so a day never
        lacks an hour."""
        def bounds(lo: int, hi: int) -> sql.Composed:
            upper = sql.SQL("MAXVALUE") if hi > _INT32_MAX else sql.Literal(hi)
            return sql.SQL("FOR VALUES FROM ({}) TO ({})").format(sql.Literal(lo), upper)

        create = sql.SQL("CREATE TABLE IF NOT EXISTS {} PARTITION OF {} {}")
        name = sql.Identifier(partition_name(table, day))
        if table not in _BY_HOUR:
            return create.format(name, sql.Identifier(table), bounds(day, day + rollup.DAY))
        stmts = [create.format(name, sql.Identifier(table), bounds(day, day + rollup.DAY)) + sql.SQL(
            " PARTITION BY RANGE (clock)")]
        for hour in range(day, min(day + rollup.DAY, _INT32_MAX + 1), rollup.HOUR):
            leaf = sql.Identifier(hour_partition_name(table, hour))
            stmts.append(create.format(leaf, name, bounds(hour, hour + rollup.HOUR)))
            if hour + rollup.HOUR + INDEX_AFTER <= index_by:
                stmts.append(PostgresStore._index_sql(table, hour))
        return sql.SQL("; ").join(stmts)

    @staticmethod
    def _index_sql(table: str, hour: int) -> sql.Composed:
        name = hour_partition_name(table, hour)
        return sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (itemid, clock)").format(
            sql.Identifier(f"{name}_1"), sql.Identifier(name))

    def _unindexed_hours(self) -> list[tuple[str, int]]:
        """(table, hour) of numeric history's hour partitions that have no index yet, oldest first."""
        rows = self._conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "JOIN pg_inherits d ON d.inhrelid = i.inhparent JOIN pg_class p ON p.oid = d.inhparent "
            "WHERE p.relname = ANY(%s) AND p.relnamespace = current_schema()::regnamespace "
            "AND NOT EXISTS (SELECT 1 FROM pg_index x WHERE x.indrelid = c.oid)", (list(_BY_HOUR),)).fetchall()
        out = []
        for (name,) in rows:
            if (m := _HOUR_PARTITION.fullmatch(name)) is not None:
                day = int(datetime.strptime(m[2], "%Y%m%d").replace(tzinfo=UTC).timestamp())
                out.append((m[1], day + int(m[3]) * rollup.HOUR))
        return sorted(out, key=lambda r: (r[1], r[0]))

    def _index_by(self, now: int) -> int:
        """The time up to which hour partitions are indexed: now, or every hour without defer_index."""
        return now if self.defer_index else 2 * _INT32_MAX

    def index_closed_hours(self, now: int) -> list[str]:
        """Build the (itemid, clock) index of every hour partition whose hour closed INDEX_AFTER ago
        or more (every one without defer_index); returns their names. A build waits at most
        PARTITION_LOCK_TIMEOUT for writers of that hour and is tried again at the next run if it
        cannot get the lock."""
        done: list[str] = []
        index_by = self._index_by(now)
        for table, hour in self._unindexed_hours():
            if hour + rollup.HOUR + INDEX_AFTER > index_by:
                break
            name = hour_partition_name(table, hour)
            try:
                with self._conn.transaction():
                    self._conn.execute(f"SET LOCAL lock_timeout = '{PARTITION_LOCK_TIMEOUT}'")
                    self._conn.execute(self._index_sql(table, hour))
            except errors.LockNotAvailable as e:
                log.warning("partition %s not indexed yet (tried again at the next run): %s", name, _describe(e))
                continue
            done.append(name)
        if done:
            log.info("indexed the closed hours %s", ", ".join(done))
        return done

    def _hot_from(self, table: str) -> int | None:
        """The first hour of `table` whose partition has no index (later ones may have none either),
        or None when every hour is indexed; looked up at most every _HOT_TTL seconds."""
        now = time.monotonic()
        if now >= self._hot_checked + _HOT_TTL:
            hot: dict[str, int] = {}
            for t, hour in self._unindexed_hours():
                hot.setdefault(t, hour)
            self._hot, self._hot_checked = hot, now
        return self._hot.get(table)

    def _ensure_partitions(self, wanted: Iterable[tuple[str, int]]) -> None:
        """The write path's fallback: the housekeeper makes the partitions of the next days ahead
        (make_partitions_ahead), so this creates one only for a clock outside that window."""
        wanted = sorted(wanted)
        if any(partition_name(t, d) not in self._partitions for t, d in wanted):
            try:
                self._load_partitions()  # made ahead by the housekeeper since we last looked
            except psycopg.Error as e:  # the connection broke: the next write opens a new one
                raise StoreError(f"cannot read the history partitions: {_describe(e)}") from None
        for table, day in wanted:
            name = partition_name(table, day)
            if name in self._partitions:
                continue
            stmt = self._create_partition_sql(table, day, self._index_by(int(time.time())))
            for attempt in range(3):
                try:
                    self._conn.execute(stmt)
                    break
                except (errors.UniqueViolation, errors.DuplicateTable) as e:
                    # Another process created it between our check and our CREATE: IF NOT EXISTS sees it now.
                    if attempt == 2:
                        raise StoreError(f"cannot create partition {name} of {table}: {e}") from None
                except psycopg.Error as e:
                    raise StoreError(f"cannot create partition {name} of {table}: {e}") from None
            self._partitions.add(name)
            if table in _BY_HOUR:
                self._by_hour.add(name)

    def make_partitions_ahead(self, now: int, days: int = PARTITIONS_AHEAD_DAYS) -> list[str]:
        """Create the partitions of today and the next `days` days that are missing; returns their names.

        Creating a partition locks its parent table exclusively, so each waits at most
        PARTITION_LOCK_TIMEOUT for readers and writers in flight (and holds up the writers queued
        behind it no longer than that); one that cannot get the lock is tried again at the next run.
        """
        self._load_partitions()
        created: list[str] = []
        today = rollup.day_of(now)
        for table in HISTORY_TABLES.values():
            for d in range(days + 1):
                day = today + d * rollup.DAY
                name = partition_name(table, day)
                if day > _INT32_MAX or name in self._partitions:
                    continue
                try:
                    with self._conn.transaction():
                        self._conn.execute(f"SET LOCAL lock_timeout = '{PARTITION_LOCK_TIMEOUT}'")
                        self._conn.execute(self._create_partition_sql(table, day, self._index_by(now)))
                except psycopg.Error as e:
                    # The next days of this table wait for the next run: one wait per table at most.
                    log.warning("partition %s not made ahead (tried again at the next run): %s", name, _describe(e))
                    break
                self._partitions.add(name)
                if table in _BY_HOUR:
                    self._by_hour.add(name)
                created.append(name)
        if created:
            log.info("made partitions ahead: %s", ", ".join(created))
        return created

    # -- writing ----------------------------------------------------------------------------------

    writes_on_loop = True
    loop_max_values = LOOP_MAX_VALUES

    def takes_on_loop(self, batch: WriteBatch) -> bool:
        return not (batch.logpos or batch.sessions or batch.texts or batch.logs)

    @property
    def is_open(self) -> bool:
        return not self._pg.closed

    def refresh(self) -> bool:
        """Open the connection again if it broke (when a retry is due), reload the partitions it knows."""
        try:
            self._load_partitions()  # through self._conn, which reconnects
            return True
        except (StoreError, psycopg.Error):
            return False

    def write(self, batch: WriteBatch) -> None:
        if not len(batch) and not batch.logpos and not batch.sessions:
            return
        copies, hours, days = self._prepare(batch)
        self._ensure_partitions(days)
        try:
            self._write(batch, copies, hours)
        except psycopg.Error as first:
            if not self._pg.closed:
                # A partition we believed in may have been dropped by a housekeeper in another process.
                try:
                    self._load_partitions()
                except psycopg.Error:
                    # The server is going away (a shutdown's error came before the connection closed):
                    # the write failed as a whole; the next one finds the connection closed.
                    raise StoreError(f"writing {len(batch)} values failed, nothing was stored: "
                                     f"{_describe(first)}") from None
                if all(partition_name(t, d) in self._partitions for t, d in days):
                    raise StoreError(
                        f"writing {len(batch)} values failed, nothing was stored: {_describe(first)}") from None
            # else the connection broke before COMMIT: nothing was stored, and a fresh connection (the
            # database restarted and is back) may take the batch at once.
            self._ensure_partitions(days)
            try:
                self._write(batch, copies, hours)
            except psycopg.Error as e:
                raise StoreError(f"writing {len(batch)} values failed, nothing was stored: {_describe(e)}") from None

    async def write_on_loop(self, batch: WriteBatch) -> bool:
        """The common write — values only, into partitions it knows, on an open connection — driven
        from the caller's event loop: the same transaction as write(), without the wake-ups between
        threads that are much of a small transaction's time on a busy machine.

        False, with nothing sent, for anything else. WriteUnsent, with nothing stored, when it needs a
        partition it does not know or the statement or connection failed before the commit was sent:
        write() then takes the batch and names any error. StoreError when the connection broke while
        committing. Not for use beside write() on a thread.
        """
        if self._pg.closed or not self.takes_on_loop(batch) or not 0 < len(batch) <= LOOP_MAX_VALUES:
            return False  # texts and big batches: their COPY data would hold the loop up
        copies, hours, days = self._prepare(batch)
        unknown = sorted(n for n in (partition_name(t, d) for t, d in days) if n not in self._partitions)
        if unknown:
            raise WriteUnsent(f"partition {unknown[0]} is not known yet")
        if self._plain:
            return await self._write_wire(batch, copies, hours)
        conn, step = self._pg, _Step()
        try:
            await waiting.wait_async(_transaction(conn.pgconn, self._transaction_sql(hours, copies), copies, step),
                                     conn.pgconn.socket, interval=_LOOP_WAIT)
        except psycopg.Error as e:
            # StoreError if the outcome is unknown; a live connection is rolled back here (one short round trip)
            self._after_failed_query(conn, batch, e, step.committing)
            raise WriteUnsent(_describe(e)) from None  # rolled back, or broken before the commit
        except BaseException:
            conn.close()  # cancelled mid-exchange: the server rolls back what it did not commit
            raise
        return True

    async def _write_wire(self, batch: WriteBatch, copies: list[tuple[str, bytes]], hours: set[int]) -> bool:
        """write_on_loop's transaction in one send on the socket (pgwire), the same outcomes."""
        conn = self._pg
        fd = conn.pgconn.socket
        if pgwire.gone(fd):
            conn.close()
            raise WriteUnsent("the connection to PostgreSQL is gone (the server closed it while it was idle)")
        exchange = pgwire.Exchange(fd, len(copies))
        try:
            replies = await exchange.run(pgwire.transaction_bytes(self._transaction_sql(hours, copies),
                                                                  [data for _, data in copies]))
        except pgwire.WireError as e:
            conn.close()
            if not e.unsent:
                raise StoreError(f"the connection to PostgreSQL broke while committing {len(batch)} values: "
                                 f"they may or may not be stored ({e})") from None
            raise WriteUnsent(str(e)) from None
        except BaseException:
            conn.close()  # cancelled mid-exchange: the server rolls back what it did not commit
            raise
        if exchange.broken:
            conn.close()
        failure = replies.failure()
        if failure is not None:
            raise WriteUnsent(str(failure))  # rolled back; the writer threads name the error
        return True

    def _prepare(self, batch: WriteBatch) -> tuple[list[tuple[str, bytes]], set[int], set[tuple[str, int]]]:
        """The batch's COPY data per table, the hours it marks for the roll-up and the partitions it needs."""
        hours: set[int] = set()
        days: set[tuple[str, int]] = set()
        copies: list[tuple[str, bytes]] = []
        for table, rows in (("history", batch.floats), ("history_uint", batch.uints), ("history_str", batch.strs),
                            ("history_text", batch.texts), ("history_log", batch.logs)):
            if not rows:
                continue
            numeric = table in ("history", "history_uint")
            compiled = _compiled_copy(rows, table == "history_uint") if numeric else None
            if compiled is not None:
                data, lo, hi = compiled
            else:
                lo, hi = check_clocks(table, rows)
            clocks = [r[1] for r in rows] if hi - lo > rollup.HOUR else ()
            days |= {(table, d) for d in rollup.span_buckets(lo, hi, clocks, rollup.DAY)}
            if numeric:
                hours |= rollup.span_buckets(lo, hi, clocks, rollup.HOUR)
                if compiled is None:
                    if table == "history_uint":
                        rows = encode_uints(rows)
                    # Grouped by item, consecutive rows land on the same index leaf: about a third
                    # less server time per COPY than in arrival order, where each row is on another item.
                    data = _copy_binary(table, _by_item(rows))
                copies.append((table, data))
            else:
                copies.append((table, _copy_text(table, rows)))
        return copies, hours, days

    @staticmethod
    def _head(hours: set[int]) -> str:
        # Round trips are most of a small transaction's time: the first one opens it, takes the
        # roll-up lock and marks the hours (several statements in one simple query: no parameters,
        # the hours are integers computed here), then one per COPY and one to commit.
        head = "BEGIN"
        if hours:
            marks = ",".join(f"({int(h)})" for h in sorted(hours))
            head += (f"; SELECT pg_advisory_xact_lock_shared({ROLLUP_LOCK}); "
                     f"INSERT INTO trend_dirty (hour) VALUES {marks} ON CONFLICT DO NOTHING")
        return head

    @classmethod
    def _transaction_sql(cls, hours: set[int], copies: list[tuple[str, bytes]]) -> bytes:
        return "; ".join([cls._head(hours), *(f"COPY {t} ({_COLUMNS[t]}) FROM STDIN"
                                              f"{' (FORMAT BINARY)' if d.startswith(_BINARY_HEADER) else ''}"
                                              for t, d in copies), "COMMIT"]).encode()

    def _write(self, batch: WriteBatch, copies: list[tuple[str, bytes]], hours: set[int]) -> None:
        conn = self._conn
        if copies and not batch.logpos and not batch.sessions:
            self._write_one_query(conn, batch, copies, hours)
            return
        head = self._head(hours)
        committing = False
        with conn.cursor() as cur:
            cur.execute(head)
            try:
                self._write_rows(cur, batch, copies)
                committing = True
                cur.execute("COMMIT")
            except BaseException as e:
                if conn.closed:
                    if committing:
                        # The commit may have reached the server before the connection went: unknowable here.
                        raise StoreError(
                            f"the connection to PostgreSQL broke while committing {len(batch)} values: they may "
                            f"or may not be stored ({_describe(e) if isinstance(e, psycopg.Error) else e})") from None
                elif conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                    try:
                        cur.execute("ROLLBACK")
                    except psycopg.Error:
                        pass  # the connection is broken: the server rolls back on its own
                raise

    def _write_one_query(self, conn: psycopg.Connection, batch: WriteBatch, copies: list[tuple[str, bytes]],
                         hours: set[int]) -> None:
        """The whole transaction as one simple query (_transaction), driven on this thread."""
        step = _Step()
        try:
            with conn.lock:
                conn.wait(_transaction(conn.pgconn, self._transaction_sql(hours, copies), copies, step))
        except BaseException as e:
            self._after_failed_query(conn, batch, e, step.committing)
            raise

    @staticmethod
    def _after_failed_query(conn: psycopg.Connection, batch: WriteBatch, e: BaseException, committing: bool) -> None:
        """After _transaction failed: a broken connection is closed (StoreError if the commit may have
        reached the server), a live one rolled back; the caller raises what failed."""
        pgconn = conn.pgconn
        if conn.closed or pgconn.status != psycopg.pq.ConnStatus.OK:
            if committing:
                raise StoreError(
                    f"the connection to PostgreSQL broke while committing {len(batch)} values: they may "
                    f"or may not be stored ({_describe(e) if isinstance(e, psycopg.Error) else e})") from None
            if not conn.closed:
                conn.close()
            if not isinstance(e, psycopg.Error):
                raise psycopg.OperationalError(str(e)) from e
            return
        if conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            try:
                conn.execute("ROLLBACK")
            except psycopg.Error:
                pass  # the connection is broken: the server rolls back on its own

    @staticmethod
    def _write_rows(cur: psycopg.Cursor, batch: WriteBatch, copies: list[tuple[str, bytes]]) -> None:
        for table, data in copies:
            binary = " (FORMAT BINARY)" if data.startswith(_BINARY_HEADER) else ""
            with cur.copy(f"COPY {table} ({_COLUMNS[table]}) FROM STDIN{binary}") as cp:
                cp.write(data)
        if batch.logpos:
            ids = list(batch.logpos)
            cur.execute(
                "INSERT INTO item_rtdata (itemid, lastlogsize, mtime) "
                "SELECT v.itemid, v.lastlogsize, v.mtime "
                "FROM unnest(%s::int[], %s::bigint[], %s::int[]) AS v(itemid, lastlogsize, mtime) "
                "WHERE EXISTS (SELECT 1 FROM items i WHERE i.itemid = v.itemid) "
                "ON CONFLICT (itemid) DO UPDATE SET lastlogsize = EXCLUDED.lastlogsize, mtime = EXCLUDED.mtime "
                f"WHERE {LOGPOS_FORWARD}",
                (ids, [batch.logpos[i][0] for i in ids], [batch.logpos[i][1] for i in ids]))
        if batch.sessions:
            names = list(batch.sessions)
            cur.execute(
                "INSERT INTO agent_sessions (session, last_id, updated) "
                "SELECT s, i, %s FROM unnest(%s::text[], %s::bigint[]) AS v(s, i) "
                "ON CONFLICT (session) DO UPDATE SET "
                "last_id = GREATEST(agent_sessions.last_id, EXCLUDED.last_id), updated = EXCLUDED.updated",
                (int(time.time()), names, [batch.sessions[s] for s in names]))

    # -- reading ----------------------------------------------------------------------------------

    def _query(self, query: str, params: Iterable[object] | Mapping[str, object], binary: bool = False) -> list:
        """All rows; binary=True fetches numbers in binary, which parses ~40% faster for long ranges."""
        for attempt in (1, 2):
            conn = self._conn
            try:
                with conn.cursor(binary=binary) as cur:
                    return cur.execute(query, params).fetchall()  # type: ignore[arg-type]
            except psycopg.Error as e:
                if attempt == 1 and conn.closed:
                    continue  # the connection broke: a read is safe to ask again on a fresh one
                raise StoreError(f"query failed: {_describe(e)}") from None
        raise AssertionError("unreachable")

    def history(
        self, itemid: int, value_type: ValueType, start: int, end: int, limit: int | None = None
    ) -> list[HistoryRow]:
        table = history_table(value_type)
        lim = None if limit is None else check_limit(limit)
        rows = self._query(
            f"SELECT clock, ns, value FROM {table} WHERE itemid = %s AND clock >= %s AND clock <= %s "
            "ORDER BY clock, ns LIMIT %s", (itemid, start, end, lim), binary=True)
        if value_type == ValueType.UNSIGNED:
            return [(c, n, from_signed64(v)) for c, n, v in rows]
        return rows

    def histories(self, windows: Mapping[int, tuple[ValueType, int, int]],
                  limit: int | None = None) -> dict[int, list[HistoryRow]]:
        out: dict[int, list[HistoryRow]] = {i: [] for i in windows}
        by_type: dict[ValueType, list[tuple[int, int, int]]] = {}
        for itemid, (vt, lo, hi) in windows.items():
            history_table(vt)
            by_type.setdefault(ValueType(vt), []).append((itemid, int(lo), int(hi)))
        lim = None if limit is None else check_limit(limit)
        for vt, rows in by_type.items():
            # one query per value type; the constant bounds let PostgreSQL skip the other partitions
            table = HISTORY_TABLES[vt]
            ids, los, his = [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]
            lo, hi = min(los), max(his)
            hot = self._hot_from(table)
            split = hi + 1 if hot is None else max(lo, min(hot, hi + 1))
            binary = vt in (ValueType.FLOAT, ValueType.UNSIGNED)
            found: list[tuple] = []
            if split > lo:  # indexed hours: item by item through the index
                found += self._query(
                    f"SELECT w.itemid, h.clock, h.ns, h.value FROM unnest(%s::int[], %s::int[], %s::int[]) "
                    f"AS w(itemid, lo, hi) CROSS JOIN LATERAL (SELECT clock, ns, value FROM {table} "
                    "WHERE itemid = w.itemid AND clock >= w.lo AND clock <= w.hi AND clock >= %s AND clock < %s "
                    "ORDER BY clock, ns LIMIT %s) h", (ids, los, his, lo, split, lim), binary=binary)
            if split <= hi:  # the unindexed hours (and any after them): read once for all the items
                found += self._query(
                    f"SELECT itemid, clock, ns, value FROM (SELECT h.itemid, h.clock, h.ns, h.value, row_number() "
                    f"OVER (PARTITION BY h.itemid ORDER BY h.clock, h.ns) AS n FROM {table} h "
                    "JOIN unnest(%s::int[], %s::int[], %s::int[]) AS w(itemid, lo, hi) ON h.itemid = w.itemid "
                    "AND h.clock >= w.lo AND h.clock <= w.hi WHERE h.clock >= %s AND h.clock <= %s) r "
                    "WHERE %s::int IS NULL OR n <= %s", (ids, los, his, split, hi, lim, lim), binary=binary)
            uint = vt == ValueType.UNSIGNED
            for itemid, clock, ns, value in sorted(found, key=lambda r: (r[0], r[1], r[2])):
                if lim is None or len(out[itemid]) < lim:
                    out[itemid].append((clock, ns, from_signed64(value) if uint else value))
        return out

    def log_history(self, itemid: int, start: int, end: int, limit: int | None = None) -> list[LogEntry]:
        lim = None if limit is None else check_limit(limit)
        rows = self._query(
            "SELECT clock, ns, timestamp, source, severity, value, logeventid FROM history_log "
            "WHERE itemid = %s AND clock >= %s AND clock <= %s ORDER BY clock, ns LIMIT %s",
            (itemid, start, end, lim))
        return [LogEntry(*r) for r in rows]

    def trends(self, itemid: int, value_type: ValueType, start: int, end: int) -> list[Trend]:
        table = trend_table(value_type)
        rows = self._query(
            f"SELECT clock, num, value_min, value_avg, value_max FROM {table} "
            "WHERE itemid = %s AND clock >= %s AND clock <= %s ORDER BY clock", (itemid, start, end), binary=True)
        if value_type == ValueType.UNSIGNED:
            return [Trend(c, n, from_signed64(lo), from_signed64(a), from_signed64(hi)) for c, n, lo, a, hi in rows]
        return [Trend(*r) for r in rows]

    def latest(self, items: Mapping[int, ValueType], since: int | None = None) -> dict[int, HistoryRow]:
        by_type: dict[ValueType, list[int]] = {}
        for itemid, vt in items.items():
            history_table(vt)
            by_type.setdefault(ValueType(vt), []).append(itemid)
        if not by_type:
            return {}
        lo = 0 if since is None else int(since)
        ctes, parts, cte_params, params = [], [], [], []
        for vt, ids in by_type.items():
            table = HISTORY_TABLES[vt]
            hot = self._hot_from(table) if table in _BY_HOUR else None
            newest = (f"SELECT {int(vt)} AS vt, i.itemid, h.clock, h.ns, h.value::text "
                      "FROM unnest(%s::int[]) AS i(itemid) ")
            older = (f"CROSS JOIN LATERAL (SELECT clock, ns, value FROM {table} WHERE itemid = i.itemid "
                     "AND clock >= %s AND clock < %s ORDER BY clock DESC, ns DESC LIMIT 1) h")
            if hot is None:
                # `clock >= since` lets PostgreSQL skip the partitions of older days altogether.
                parts.append(newest + older)
                params += [ids, lo, _INT32_MAX + 1]
                continue
            # The unindexed hours are read once for all the items; only the items without a value
            # there are looked for one by one in the indexed hours before them.
            ctes.append(f"hot{int(vt)} AS (SELECT DISTINCT ON (itemid) itemid, clock, ns, value FROM {table} "
                        "WHERE itemid = ANY(%s) AND clock >= %s ORDER BY itemid, clock DESC, ns DESC)")
            cte_params += [ids, max(lo, hot)]
            parts.append(f"SELECT {int(vt)}, itemid, clock, ns, value::text FROM hot{int(vt)}")
            if lo < hot:
                parts.append(newest + older + f" WHERE NOT EXISTS (SELECT 1 FROM hot{int(vt)} n "
                                              "WHERE n.itemid = i.itemid)")
                params += [ids, lo, hot]
        with_ = f"WITH {', '.join(ctes)} " if ctes else ""
        rows = self._query(with_ + " UNION ALL ".join(parts), cte_params + params)
        out: dict[int, HistoryRow] = {}
        for vt, itemid, clock, ns, text in rows:
            if vt == ValueType.FLOAT:
                value: object = float(text)
            elif vt == ValueType.UNSIGNED:
                value = from_signed64(int(text))
            else:
                value = text
            out[itemid] = (clock, ns, value)
        return out

    def sessions(self) -> dict[str, int]:
        return dict(self._query("SELECT session, last_id FROM agent_sessions", ()))

    def prune_sessions(self, before: int) -> int:
        try:
            with self._conn.transaction(), self._conn.cursor() as cur:
                cur.execute("DELETE FROM agent_sessions WHERE updated < %s", (before,))
                return cur.rowcount
        except psycopg.Error as e:
            raise StoreError(f"pruning agent sessions failed: {_describe(e)}") from None

    def log_positions(self) -> dict[int, tuple[int, int]]:
        return {i: (s, m) for i, s, m in self._query("SELECT itemid, lastlogsize, mtime FROM item_rtdata", ())}

    # -- trends -----------------------------------------------------------------------------------

    def rollup_trends(self, now: int) -> int:
        try:
            self.index_closed_hours(now)
        except psycopg.Error as e:
            raise StoreError(f"indexing the closed hours' history failed: {_describe(e)}") from None
        hours = [h for (h,) in self._query(
            "SELECT hour FROM trend_dirty UNION SELECT hour FROM trend_rollup ORDER BY 1", ())]
        for hour in hours:
            try:
                self._rollup_hour(hour, rollup.hour_complete(hour, now))
            except psycopg.Error as e:
                raise StoreError(f"rolling up trends for the hour at {hour} failed: {_describe(e)}") from None
        return len(hours)

    def _rollup_hour(self, hour: int, complete: bool) -> None:
        token = None
        if complete:
            token = rollup.claim_token()
            with self._conn.transaction(), self._conn.cursor() as cur:
                # Claim the hour first (this waits only for another roll-up of it), then wait for the
                # writers in flight (they may hold values for this hour) and clear the mark, and commit:
                # the writers' lock is held exclusively only for that instant, and from then on a value
                # for this hour marks it dirty again. The recomputation runs in its own transaction.
                cur.execute("INSERT INTO trend_rollup (hour, token) VALUES (%s, %s) "
                            "ON CONFLICT (hour) DO UPDATE SET token = EXCLUDED.token", (hour, token))
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (ROLLUP_LOCK,))
                cur.execute("DELETE FROM trend_dirty WHERE hour = %s", (hour,))
        with self._conn.transaction(), self._conn.cursor(binary=True) as cur:
            if token is not None:
                row = cur.execute("SELECT token FROM trend_rollup WHERE hour = %s FOR UPDATE", (hour,)).fetchone()
                if row is None or row[0] != token:
                    return  # another roll-up took the hour over after us: its results are newer
            for table, trends in (("history", "trends"), ("history_uint", "trends_uint")):
                if (found := self._hour_partition(table, hour)) is not None:
                    self._rollup_table(cur, hour, *found, trends)
            if token is not None:
                cur.execute("DELETE FROM trend_rollup WHERE hour = %s", (hour,))

    def _rollup_table(self, cur: psycopg.Cursor, hour: int, part: str, ids: str, trends: str) -> None:
        """Trends of one hour of one history partition: recomputed from history for the items whose
        history of the hour is whole; for those whose history of it is gone (the hour is before their
        horizon) the late values are merged into the trend row and leave history."""
        uint = trends == "trends_uint"
        p = {"h": hour, "e": hour + rollup.HOUR, "t": rollup.BIG, "s": rollup.SCALE}
        value = f"({_UINT_DECODE})" if uint else "h.value"
        sums = f"sum({value})" if uint else (
            "sum(CASE WHEN abs(h.value) > %(t)s THEN h.value * %(s)s ELSE 0 END), "
            "sum(CASE WHEN abs(h.value) > %(t)s THEN 0 ELSE h.value END)")
        rows = cur.execute(
            f"{ids} SELECT ids.itemid, EXISTS (SELECT 1 FROM history_horizon z "
            f"WHERE z.itemid = ids.itemid AND z.clock > %(h)s), count(*), min({value}), max({value}), {sums} "
            f"FROM ids JOIN {part} h ON h.itemid = ids.itemid AND h.clock >= %(h)s AND h.clock < %(e)s "
            "GROUP BY ids.itemid", p).fetchall()
        out: list[tuple] = []
        late: list[int] = []
        for r in rows:
            if r[1]:
                late.append(r[0])
            elif uint:
                itemid, _, n, lo, hi, total = r
                out.append((itemid, n, to_signed64(int(lo)), to_signed64(int(total) // n), to_signed64(int(hi))))
            else:
                itemid, _, n, lo, hi, big, small = r
                out.append((itemid, n, lo, rollup.float_mean(n, lo, hi, big, small), hi))
        if out:
            self._put_trends(cur, trends, hour, out)
        if late:
            self._merge_late(cur, hour, part, trends, late)

    @staticmethod
    def _merge_late(cur: psycopg.Cursor, hour: int, part: str, trends: str, ids: list[int]) -> None:
        uint = trends == "trends_uint"
        gone = cur.execute(f"DELETE FROM {part} WHERE itemid = ANY(%s) AND clock >= %s AND clock < %s "
                           "RETURNING itemid, value", (ids, hour, hour + rollup.HOUR)).fetchall()
        aggs = rollup.aggregate_by_item((i, from_signed64(v)) if uint else (i, v) for i, v in gone)
        if not aggs:
            return
        old = {r[0]: r[1:] for r in cur.execute(
            f"SELECT itemid, num, value_min, value_avg, value_max FROM {trends} WHERE itemid = ANY(%s) "
            "AND clock = %s FOR UPDATE", (list(aggs), hour))}
        out: list[tuple] = []
        for i, agg in aggs.items():
            if uint:
                fresh = (agg.num, int(agg.min), agg.avg_uint(), int(agg.max))
                n, lo, avg, hi = fresh if i not in old else rollup.merge_uint_trend(
                    (old[i][0], *(from_signed64(x) for x in old[i][1:])), agg)  # type: ignore[arg-type]
                out.append((i, n, to_signed64(lo), to_signed64(avg), to_signed64(hi)))
            else:
                fresh_f = (agg.num, agg.min, agg.avg_float(), agg.max)
                out.append((i, *(fresh_f if i not in old else rollup.merge_trends(old[i], fresh_f))))
        PostgresStore._put_trends(cur, trends, hour, out)

    @staticmethod
    def _put_trends(cur: psycopg.Cursor, trends: str, hour: int, out: list[tuple]) -> None:
        """Write (itemid, num, min, avg, max) rows of one hour, replacing what the hour had."""
        kind = "bigint" if trends == "trends_uint" else "float8"
        cur.execute(
            f"INSERT INTO {trends} (itemid, clock, num, value_min, value_avg, value_max) "
            f"SELECT i, %s, n, lo, a, hi FROM unnest(%s::int[], %s::int[], %s::{kind}[], %s::{kind}[], "
            f"%s::{kind}[]) AS v(i, n, lo, a, hi) ON CONFLICT (itemid, clock) DO UPDATE SET num = EXCLUDED.num, "
            "value_min = EXCLUDED.value_min, value_avg = EXCLUDED.value_avg, value_max = EXCLUDED.value_max",
            (hour, *map(list, zip(*out, strict=True))))

    def _hour_partition(self, table: str, hour: int) -> tuple[str, str] | None:
        """The quoted partition of `table` that holds the hour, with a CTE `ids` of the items in it;
        None if there is none (no values). An hour's own partition is read whole, a day's (made
        before migration 0024) item by item through its index."""
        name = partition_name(table, hour - hour % rollup.DAY)
        if name not in self._partitions:
            # Values marked dirty were committed after their partition was: a fresh look finds it.
            self._load_partitions()
            if name not in self._partitions:
                return None
        if name in self._by_hour:
            leaf = sql.Identifier(hour_partition_name(table, hour)).as_string(self._conn)
            return leaf, f"WITH ids(itemid) AS (SELECT DISTINCT itemid FROM {leaf})"
        part = sql.Identifier(name).as_string(self._conn)
        return part, _skip_scan(part)

    # -- housekeeping -----------------------------------------------------------------------------

    def housekeep(self, now: int, retention: Iterable[Retention]) -> HousekeepReport:
        report = HousekeepReport()
        try:
            report.partitions_created = self.make_partitions_ahead(now)
        except psycopg.Error as e:
            raise StoreError(f"housekeeping failed listing partitions: {_describe(e)}") from None
        items = list(retention)
        if not items:
            return report
        # History goes before `cutoff`: numeric history in whole hours, so an hour's trend row is
        # either computed from all its history or past the item's horizon (late values merge in).
        cutoff: dict[str, dict[int, list[int]]] = {}
        for r in items:
            table = history_table(r.value_type)
            before = rollup.hour_of(now - r.history) if table in _TRENDS_OF else now - r.history
            cutoff.setdefault(table, {}).setdefault(before, []).append(r.itemid)
        overall = min(min(c) for c in cutoff.values())
        try:
            self._load_partitions()
            for name in sorted(self._partitions):
                m = _PARTITION.fullmatch(name)
                if m is None:
                    continue
                day = int(datetime.strptime(m[2], "%Y%m%d").replace(tzinfo=UTC).timestamp())
                # A day goes whole only once every listed item of its type is past it (an item whose
                # retention is not known is listed as kept for ever, so its days stay).
                if day + rollup.DAY <= min(cutoff.get(m[1], {overall: []})) and self._drop_partition(name, m[1], day):
                    report.partitions_dropped.append(name)
            for table, groups in sorted(cutoff.items()):
                for before, ids in sorted(groups.items()):
                    for i in range(0, len(ids), _ITEMS_PER_DELETE):
                        report.history_rows += self._delete_history(table, ids[i:i + _ITEMS_PER_DELETE], before)
            trend_groups: dict[tuple[str, int], list[int]] = {}
            for r in items:
                if r.value_type in TREND_TABLES:
                    trend_groups.setdefault((TREND_TABLES[r.value_type], now - r.trends), []).append(r.itemid)
            for (table, before), ids in sorted(trend_groups.items()):
                for i in range(0, len(ids), _ITEMS_PER_DELETE):
                    cur = self._conn.execute(f"DELETE FROM {table} WHERE itemid = ANY(%s) AND clock < %s",
                                             (ids[i:i + _ITEMS_PER_DELETE], before))
                    report.trend_rows += cur.rowcount
        except psycopg.Error as e:
            raise StoreError(f"housekeeping failed: {_describe(e)}") from None
        return report

    def _delete_history(self, table: str, ids: list[int], before: int) -> int:
        if table not in _TRENDS_OF:
            return self._conn.execute(f"DELETE FROM {table} WHERE itemid = ANY(%s) AND clock < %s",
                                      (ids, before)).rowcount
        # One statement, one snapshot: history goes up to the first hour not rolled up yet (its
        # values, and those of later hours, are not all in the trends yet), and the horizon of each
        # item that lost rows moves to where it stopped.
        row = self._conn.execute(
            f"WITH lim AS (SELECT LEAST(%s, (SELECT min(hour) FROM ({_PENDING}) p)) AS c), "
            f"gone AS (DELETE FROM {table} WHERE itemid = ANY(%s) AND clock < (SELECT c FROM lim) RETURNING itemid), "
            "hz AS (INSERT INTO history_horizon (itemid, clock) SELECT DISTINCT itemid, (SELECT c FROM lim) FROM gone "
            "ON CONFLICT (itemid) DO UPDATE SET clock = EXCLUDED.clock WHERE history_horizon.clock < EXCLUDED.clock) "
            "SELECT count(*) FROM gone", (before, ids)).fetchone()
        return int(row[0]) if row else 0

    def _drop_partition(self, name: str, table: str, day: int) -> bool:
        """Drop a day's partition unless an hour of it or before it is still to be rolled up; the
        horizon of its items moves past the day in the same transaction. Dropping locks the parent
        table: waited for at most PARTITION_LOCK_TIMEOUT; while it is held (writers wait) only the
        items written since the first pass are looked for, the hours checked and the table dropped."""
        part = sql.Identifier(name).as_string(self._conn)
        horizon = (f"{_skip_scan(part)} INSERT INTO history_horizon (itemid, clock) SELECT itemid, %s FROM ids "
                   "WHERE itemid IS NOT NULL ON CONFLICT (itemid) DO UPDATE SET clock = EXCLUDED.clock "
                   "WHERE history_horizon.clock < EXCLUDED.clock")
        dropped = False
        try:
            with self._conn.transaction(), self._conn.cursor() as cur:
                cur.execute(f"SET LOCAL lock_timeout = '{PARTITION_LOCK_TIMEOUT}'")
                numeric = table in _TRENDS_OF
                if numeric:
                    cur.execute(horizon, (day + rollup.DAY,))
                cur.execute(sql.SQL("LOCK TABLE ONLY {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(table)))
                if numeric:
                    if cur.execute(f"SELECT 1 FROM ({_PENDING}) p WHERE hour < %s LIMIT 1",
                                   (day + rollup.DAY,)).fetchone():
                        log.info("partition %s kept until its hours and those before are rolled up", name)
                        raise psycopg.Rollback()
                    cur.execute(horizon, (day + rollup.DAY,))  # items first written to the day meanwhile
                cur.execute(f"DROP TABLE IF EXISTS {part}")
                dropped = True
        except errors.LockNotAvailable as e:
            log.warning("partition %s not dropped (tried again at the next run): %s", name, _describe(e))
            return False
        if not dropped:
            return False
        self._partitions.discard(name)
        return True

    def close(self) -> None:
        self._pg.close()


def _skip_scan(part: str) -> str:
    """A CTE `ids` of the item ids in a partition, one (itemid, clock) index probe per item.

    History has no index on clock alone (see migration 0003); an hour is read item by item as a range
    of the (itemid, clock) index. PostgreSQL 15 has no skip scan of its own, hence the recursion.
    """
    return (f"WITH RECURSIVE ids(itemid) AS ((SELECT itemid FROM {part} ORDER BY itemid LIMIT 1) UNION ALL "
            f"SELECT (SELECT p.itemid FROM {part} p WHERE p.itemid > ids.itemid ORDER BY p.itemid LIMIT 1) "
            "FROM ids WHERE ids.itemid IS NOT NULL)")


def _describe(e: psycopg.Error) -> str:
    where = e.diag.context if e.diag is not None and e.diag.context else ""
    text = str(e).strip()
    return f"{text} ({where.strip()})" if where else text


def _safe(url: str) -> str:
    """The URL without a password, for messages."""
    return re.sub(r"(//[^:/@]+):[^@/]*@", r"\1:***@", url)
