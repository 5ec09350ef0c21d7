"""PostgreSQL's own CPU per stored value for variants of the history table, one connection, no server.

Each variant is a fresh table in a database the bench makes and drops. Rows go in as `vigil server`
writes them on the loop: COPY in binary, 250 values a transaction (one clock, 250 distinct items of
1,000, in item order), synchronous_commit on. The figure is the backend's CPU (utime + stime from
/proc, read before and after) per 100k values; the wall time per 100k is printed beside it.

    python bench/pg_schema_cost.py [--quick] [-N 1000000] [--per-tx 250] [--rounds 3] [--variant NAME ...]

Variants: `current` is the schema migrations 0001 and 0003 leave (b-tree (itemid, clock) and the
finite-value CHECK; 0003 dropped the BRIN index on clock). Each other one adds, leaves out or changes
one part: `lean` has neither the CHECK nor the b-tree's deduplication; `btree_built_after` builds the
b-tree once all rows are in (its CPU counted), as it would be for a partition no longer written;
`current_with_head` runs the statements of the server's transaction (BEGIN, the roll-up's shared
advisory lock, the hour's mark in trend_dirty, COPY, COMMIT; in more round trips than the server's
one) where the others run only BEGIN, COPY, COMMIT. It tells what a schema change is worth to
PostgreSQL before it is tried in bench/ingest.py --vs-zabbix. A variant costs more per value at
1,000,000 values than at 200,000 (current: 0.55 against 0.38 s, seen here): compare at the same -N.

One round measures every variant once; rounds interleave, so drift on the machine falls on all variants
alike. The figure is a variant's median round, its spread (lowest to highest round) beside it: on a
machine with other work the same variant varies by 20% from one round to the next (seen here), so a
difference smaller than the spread is not one. Prints `pg_cpu_per_100k_<variant>: S s` for each.
"""

from __future__ import annotations

import argparse
import os
import statistics
import struct
import sys
import time
import uuid
from dataclasses import dataclass

import psycopg
from vigil.server.store.postgres import ROLLUP_LOCK

ADMIN = os.environ.get("VIGIL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
ITEMS = 1000
BATCH = 250  # values per sender request in bench/ingest.py: one clock, distinct items
FINITE = "CONSTRAINT v CHECK (value BETWEEN -1.7976931348623157e308 AND 1.7976931348623157e308)"
BTREE = "CREATE INDEX ON t (itemid, clock)"
BRIN = "CREATE INDEX ON t USING brin (clock)"

HEAD = f"SELECT pg_advisory_xact_lock_shared({ROLLUP_LOCK}); INSERT INTO d (hour) VALUES (%d) ON CONFLICT DO NOTHING"


@dataclass(frozen=True)
class Variant:
    check: str  # the CHECK or ""
    indexes: list[str]
    head: bool = False  # the server's statements before the COPY (HEAD)
    after: tuple[str, ...] = ()  # run once all rows are in, their CPU counted (on the backend alone)


VARIANTS: dict[str, Variant] = {
    "current": Variant(FINITE, [BTREE]),
    "current_with_head": Variant(FINITE, [BTREE], head=True),
    "no_check": Variant("", [BTREE]),
    "btree_dedup_off": Variant(FINITE, [BTREE + " WITH (deduplicate_items = off)"]),
    "with_brin": Variant(FINITE, [BTREE, BRIN]),
    "no_btree": Variant(FINITE, []),
    # the b-tree built once over all rows (as it would be when an hour's partition closes), not row by row
    "btree_built_after": Variant(FINITE, [], after=("SET max_parallel_maintenance_workers = 0", BTREE)),
    "lean": Variant("", [BTREE + " WITH (deduplicate_items = off)"]),
}

_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
_ROW = struct.Struct("!hiiiiiiid")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def copy_data(batch_no: int, per_tx: int) -> bytes:
    """One transaction's rows: per_tx / BATCH requests in a row, each 250 items at one clock."""
    parts = [_HEADER]
    for b in range(batch_no, batch_no + per_tx // BATCH):
        start, clock = (b * BATCH) % ITEMS, 1_700_000_000 + b * BATCH // ITEMS
        parts.extend(_ROW.pack(4, 4, i, 4, clock, 4, 0, 8, i * 1.5) for i in range(start, start + BATCH))
    parts.append(b"\xff\xff")
    return b"".join(parts)


def measure(url: str, v: Variant, n: int, per_tx: int) -> tuple[float, float]:
    """(backend CPU s, wall s) per 100k values for one variant."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS t")
        conn.execute("DROP TABLE IF EXISTS d")
        columns = "itemid INTEGER NOT NULL, clock INTEGER NOT NULL, ns INTEGER DEFAULT 0 NOT NULL, " \
                  "value DOUBLE PRECISION NOT NULL"
        # autovacuum off: its runs would land in some variants and not others
        conn.execute(f"CREATE TABLE t ({columns}{', ' + v.check if v.check else ''}) WITH (autovacuum_enabled = false)")
        conn.execute("CREATE TABLE d (hour INTEGER PRIMARY KEY)")
        for stmt in v.indexes:
            conn.execute(stmt)
        conn.execute("SET synchronous_commit = on")
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        pid = row[0]
        batches = range(0, n // BATCH, per_tx // BATCH)
        payloads = [copy_data(b, per_tx) for b in batches]
        # the hour of each transaction's first clock, as the server marks it (copy_data's clocks)
        heads = [(HEAD % ((1_700_000_000 + b * BATCH // ITEMS) // 3600)).encode() for b in batches]
        cpu0, wall0 = cpu_seconds(pid), time.perf_counter()
        for head, data in zip(heads, payloads, strict=True):
            with conn.transaction():
                if v.head:
                    conn.execute(head)
                with conn.cursor().copy("COPY t FROM STDIN (FORMAT binary)") as cp:
                    cp.write(data)
        for stmt in v.after:
            conn.execute(stmt)
        cpu1, wall1 = cpu_seconds(pid), time.perf_counter()
        stored = conn.execute("SELECT count(*) FROM t").fetchone()
        assert stored is not None and stored[0] == len(payloads) * per_tx, stored
        conn.execute("DROP TABLE t")
        conn.execute("DROP TABLE d")
    scale = 1e5 / (len(payloads) * per_tx)
    return (cpu1 - cpu0) * scale, (wall1 - wall0) * scale


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="200,000 values a variant, one round (within 60 s)")
    ap.add_argument("-N", type=int, help="values a variant (default 1,000,000; --quick 200,000)")
    ap.add_argument("--per-tx", type=int, default=BATCH, help="values a transaction, a multiple of 250")
    ap.add_argument("--rounds", type=int, help="rounds, each variant once a round (default 3; --quick 1)")
    ap.add_argument("--variant", action="append", choices=list(VARIANTS), help="only these (repeatable)")
    args = ap.parse_args()
    if args.per_tx % BATCH:
        ap.error(f"--per-tx must be a multiple of {BATCH}, not {args.per_tx}")
    rounds = args.rounds or (1 if args.quick else 3)
    if rounds < 1:
        ap.error(f"--rounds must be at least 1, not {rounds}")
    n = args.N or (200_000 if args.quick else 1_000_000)
    db = f"vigil_bench_schema_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {db}")
    names = args.variant or list(VARIANTS)
    results: dict[str, list[float]] = {name: [] for name in names}
    try:
        url = ADMIN.rsplit("/", 1)[0] + "/" + db
        for r in range(rounds):
            for name in names:
                cpu, wall = measure(url, VARIANTS[name], n, args.per_tx)
                results[name].append(cpu)
                print(f"  round {r + 1}/{rounds} {name}: backend CPU {cpu:.3f} s, wall {wall:.3f} s per 100k values "
                      f"({args.per_tx} a transaction)", flush=True)
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    for name, cpus in results.items():
        print(f"  {name}: median {statistics.median(cpus):.3f} s, rounds {min(cpus):.3f} to {max(cpus):.3f} s",
              file=sys.stderr)
    for name, cpus in results.items():
        print(f"pg_cpu_per_100k_{name}: {statistics.median(cpus):.3f} s")


if __name__ == "__main__":
    main()
