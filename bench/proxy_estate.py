"""The proxy benches' estate: thousands of trapper items made by SQL in the server's SQLite file
(`vigil config import` of 10,000 items takes minutes on a loaded machine)."""

from __future__ import annotations

import sqlite3


def copy_trap_items(database_url: str, items: int) -> sqlite3.Connection:
    """trap.1 … trap.{items-1}: copies of trap.0's row, made by SQL in the server's SQLite file and
    committed; the open connection is returned."""
    db = sqlite3.connect(database_url.removeprefix("sqlite:///"))
    cols = [r[1] for r in db.execute("PRAGMA table_info(items)")]
    (first,) = db.execute("SELECT itemid FROM items WHERE key_ = 'trap.0'").fetchone()
    (top,) = db.execute("SELECT max(itemid) FROM items").fetchone()
    changed = ("itemid", "key_", "name")
    copied = ", ".join("?" if c in changed else c for c in cols)
    rows = [(*(top + i if c == "itemid" else f"trap.{i}" for c in cols if c in changed), first)
            for i in range(1, items)]
    db.executemany(f"INSERT INTO items ({', '.join(cols)}) SELECT {copied} FROM items WHERE itemid = ?", rows)
    db.execute("UPDATE config_version SET version = version + 1")
    db.commit()
    return db
