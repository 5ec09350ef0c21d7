"""PostgreSQL's own CPU per stored value for variants of the history table, one connection, no server.

Each variant is a fresh table in a database the bench makes and drops. Rows go in as `vigil server`
writes them on the loop: COPY in binary, 250 values a transaction (one clock, 250 distinct items of
1,000, in item order), synchronous_commit on. The figure is the backend's CPU (utime + stime from
/proc, read before and after) per 100k values; the wall time per 100k is printed beside it.

    python bench/pg_schema_cost.py [--quick] [-N 1000000] [--per-tx 250]

Variants: `current` is the schema of migration 0001/0003 (b-tree (itemid, clock), BRIN (clock), the
finite-value CHECK); each other one leaves out or changes one part, and `lean` all three at once.
It tells what a schema change is worth to PostgreSQL before it is tried in bench/ingest.py --vs-zabbix.
Prints `pg_cpu_per_100k_<variant>: S s` for each variant.
"""

from __future__ import annotations

import argparse
import os
import struct
import time
import uuid

import psycopg

ADMIN = os.environ.get("VIGIL_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
ITEMS = 1000
BATCH = 250  # values per sender request in bench/ingest.py: one clock, distinct items
FINITE = "CONSTRAINT v CHECK (value BETWEEN -1.7976931348623157e308 AND 1.7976931348623157e308)"
BTREE = "CREATE INDEX ON t (itemid, clock)"
BRIN = "CREATE INDEX ON t USING brin (clock)"

# name -> (the CHECK or "", the index statements)
VARIANTS: dict[str, tuple[str, list[str]]] = {
    "current": (FINITE, [BTREE, BRIN]),
    "no_check": ("", [BTREE, BRIN]),
    "no_brin": (FINITE, [BTREE]),
    "btree_dedup_off": (FINITE, [BTREE + " WITH (deduplicate_items = off)", BRIN]),
    "no_btree": (FINITE, [BRIN]),
    "lean": ("", [BTREE + " WITH (deduplicate_items = off)"]),
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


def measure(url: str, check: str, indexes: list[str], n: int, per_tx: int) -> tuple[float, float]:
    """(backend CPU s, wall s) per 100k values for one variant."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS t")
        columns = "itemid INTEGER NOT NULL, clock INTEGER NOT NULL, ns INTEGER DEFAULT 0 NOT NULL, " \
                  "value DOUBLE PRECISION NOT NULL"
        # autovacuum off: its runs would land in some variants and not others
        conn.execute(f"CREATE TABLE t ({columns}{', ' + check if check else ''}) WITH (autovacuum_enabled = false)")
        for stmt in indexes:
            conn.execute(stmt)
        conn.execute("SET synchronous_commit = on")
        row = conn.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        pid = row[0]
        payloads = [copy_data(b, per_tx) for b in range(0, n // BATCH, per_tx // BATCH)]
        cpu0, wall0 = cpu_seconds(pid), time.perf_counter()
        for data in payloads:
            with conn.transaction(), conn.cursor().copy("COPY t FROM STDIN (FORMAT binary)") as cp:
                cp.write(data)
        cpu1, wall1 = cpu_seconds(pid), time.perf_counter()
        stored = conn.execute("SELECT count(*) FROM t").fetchone()
        assert stored is not None and stored[0] == len(payloads) * per_tx, stored
        conn.execute("DROP TABLE t")
    scale = 1e5 / (len(payloads) * per_tx)
    return (cpu1 - cpu0) * scale, (wall1 - wall0) * scale


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="300,000 values a variant (within 60 s)")
    ap.add_argument("-N", type=int, help="values a variant (default 1,000,000; --quick 300,000)")
    ap.add_argument("--per-tx", type=int, default=BATCH, help="values a transaction, a multiple of 250")
    ap.add_argument("--variant", action="append", choices=list(VARIANTS), help="only these (repeatable)")
    args = ap.parse_args()
    if args.per_tx % BATCH:
        ap.error(f"--per-tx must be a multiple of {BATCH}, not {args.per_tx}")
    n = args.N or (300_000 if args.quick else 1_000_000)
    db = f"vigil_bench_schema_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {db}")
    results: dict[str, float] = {}
    try:
        url = ADMIN.rsplit("/", 1)[0] + "/" + db
        for name in args.variant or list(VARIANTS):
            check, indexes = VARIANTS[name]
            cpu, wall = measure(url, check, indexes, n, args.per_tx)
            results[name] = cpu
            print(f"  {name}: backend CPU {cpu:.3f} s, wall {wall:.3f} s per 100k values ({args.per_tx} a transaction)",
                  flush=True)
    finally:
        with psycopg.connect(ADMIN, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
    for name, cpu in results.items():
        print(f"pg_cpu_per_100k_{name}: {cpu:.3f} s")


if __name__ == "__main__":
    main()
