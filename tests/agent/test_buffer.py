"""The active agent's buffer: bounds, Zabbix's overflow policy, ids, and the persistent file."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from vigil.agent.buffer import BufferedValue, FileStore, LogPosition, ValueBuffer


def v(key: str, value: str = "1", *, log: bool = False, lastlogsize: int | None = None) -> BufferedValue:
    return BufferedValue(key, value, 1_700_000_000, 0, is_log=log, lastlogsize=lastlogsize)


def keys(buf: ValueBuffer) -> list[str]:
    return [x.key for x in buf.batch(10_000)]


def test_ids_count_up_and_session_is_32_hex() -> None:
    buf = ValueBuffer(10)
    for k in "abc":
        buf.add(v(k))
    assert [x.id for x in buf.batch(10)] == [1, 2, 3]
    assert len(buf.session) == 32 and int(buf.session, 16) >= 0
    assert ValueBuffer(10).session != buf.session


def test_size_bounds() -> None:
    with pytest.raises(ValueError, match="BufferSize"):
        ValueBuffer(1)
    with pytest.raises(ValueError, match="BufferSize"):
        ValueBuffer(65536)


def test_full_buffer_drops_oldest_value_of_same_key_first() -> None:
    buf = ValueBuffer(3)
    for k in ("a", "b", "a"):
        buf.add(v(k))
    buf.add(v("b", "new"))
    assert [(x.key, x.id) for x in buf.batch(10)] == [("a", 1), ("a", 3), ("b", 4)]
    assert buf.stats.dropped == 1


def test_full_buffer_drops_oldest_non_log_value_when_key_is_new() -> None:
    buf = ValueBuffer(4)
    buf.add(v("log", log=True))
    buf.add(v("a"))
    buf.add(v("b"))
    buf.add(v("c"))
    buf.add(v("d"))
    assert keys(buf) == ["log", "b", "c", "d"]
    assert buf.stats.dropped == 1


def test_log_values_are_limited_to_half_the_buffer_and_never_dropped() -> None:
    buf = ValueBuffer(6)
    assert buf.log_room == 3
    taken = buf.add_many([v("log", str(i), log=True) for i in range(5)])
    assert taken == 3 and buf.log_room == 0 and buf.stats.refused_log == 1
    for i in range(10):
        buf.add(v(f"k{i}"))
    assert [x.value for x in buf.batch(10) if x.is_log] == ["0", "1", "2"]
    assert len(buf) == 6
    buf.ack(buf.batch(2))
    assert buf.log_room == 2


def test_due_follows_zabbix_rules() -> None:
    buf = ValueBuffer(4)
    assert not buf.due(100, 0, 5)  # nothing to send
    buf.add(v("a"))
    assert not buf.due(100, 99, 5)
    assert buf.due(104, 99, 5)  # BufferSend passed
    buf.add_many([v("l", log=True), v("l", log=True)])
    assert buf.due(100, 99, 5)  # half full of log values
    buf2 = ValueBuffer(2)
    buf2.add_many([v("a"), v("b")])
    assert buf2.due(100, 99, 5)  # full


def test_ack_drops_exactly_what_was_sent() -> None:
    buf = ValueBuffer(10)
    buf.add_many([v("a"), v("b")])
    sent = buf.batch(10)
    buf.add(v("c"))  # arrives while the send is in flight
    buf.ack(sent)
    assert [(x.key, x.id) for x in buf.batch(10)] == [("c", 3)]
    assert buf.stats.acked == 2


def test_value_dropped_while_in_flight_is_not_resurrected() -> None:
    buf = ValueBuffer(2)
    buf.add_many([v("a"), v("b")])
    sent = buf.batch(1)
    buf.add(v("c"))  # pushes out "a", which is in flight
    buf.ack(sent)
    assert keys(buf) == ["b", "c"]


# --- persistent file ----------------------------------------------------------------------------


def test_file_keeps_values_session_ids_and_positions(tmp_path: Path) -> None:
    path = str(tmp_path / "buf.db")
    store = FileStore(path)
    buf = ValueBuffer(10, "h@s:1", store)
    buf.add_many([v("a"), v("b")])
    buf.add_many([v("log", "line", log=True, lastlogsize=5)], {"log": LogPosition(5, 7, "x")})
    buf.ack(buf.batch(1))
    session = buf.session
    store.close()

    store = FileStore(path)
    again = ValueBuffer(10, "h@s:1", store)
    assert again.session == session
    assert [(x.key, x.id, x.is_log, x.lastlogsize) for x in again.batch(10)] == [("b", 2, False, None),
                                                                              ("log", 3, True, 5)]
    assert again.position("log") == LogPosition(5, 7, "x")
    assert again.log_room == 4
    again.add(v("c"))
    assert again.batch(10)[-1].id == 4  # ids go on, never reused
    other = ValueBuffer(10, "h@other:2", store)  # each server has its own session and values
    assert other.session != session and len(other) == 0
    store.close()


def test_overflow_drop_is_persisted(tmp_path: Path) -> None:
    path = str(tmp_path / "buf.db")
    store = FileStore(path)
    buf = ValueBuffer(2, "t", store)
    buf.add_many([v("a"), v("b"), v("c")])
    store.close()
    store = FileStore(path)
    assert keys(ValueBuffer(2, "t", store)) == ["b", "c"]
    store.close()


def test_position_saved_with_values_counts_only_those_taken(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path / "buf.db"))
    buf = ValueBuffer(4, "t", store)
    seen = []

    def pos(taken: int) -> dict[str, LogPosition]:
        seen.append(taken)
        return {"log": LogPosition(taken * 10, 0)}

    assert buf.add_many([v("log", log=True) for _ in range(3)], pos) == 2
    assert seen == [2] and buf.position("log") == LogPosition(20, 0)
    store.close()


def test_missing_directory_is_refused_with_its_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        FileStore(str(tmp_path / "no" / "dir" / "buf.db"))


def test_junk_file_is_moved_aside_and_a_fresh_buffer_made(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    store = FileStore(str(junk))
    try:
        (aside,) = tmp_path.glob("junk.db.corrupt-*")
        assert aside.read_bytes() == b"this is not sqlite" * 100  # kept for a look, not deleted
        assert store.moved_aside == str(aside)
        assert "junk.db" in caplog.text and "moved aside" in caplog.text
        buf = ValueBuffer(10, "t", store)
        buf.add(v("a"))
        assert len(buf) == 1
    finally:
        store.close()
    store = FileStore(str(junk))  # the fresh file is a good one: nothing moved this time
    try:
        assert store.moved_aside is None and keys(ValueBuffer(10, "t", store)) == ["a"]
    finally:
        store.close()


def test_truncated_file_is_moved_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "buf.db"
    store = FileStore(str(path))
    buf = ValueBuffer(65535, "t", store)
    buf.add_many([v(f"key{i % 50}", "x" * 100) for i in range(3000)])
    store.close()
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2)  # a crash of the disk, not of the agent
    store = FileStore(str(path))
    try:
        assert store.moved_aside is not None and "moved aside" in caplog.text
        assert len(ValueBuffer(65535, "t", store)) == 0
    finally:
        store.close()


def test_another_programs_database_is_moved_aside_not_written_into(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE value (x TEXT)")
        db.execute("INSERT INTO value VALUES ('theirs')")
    db.close()
    store = FileStore(str(path))
    try:
        assert store.moved_aside is not None
        with sqlite3.connect(store.moved_aside) as db:
            assert db.execute("SELECT x FROM value").fetchall() == [("theirs",)]
        db.close()
    finally:
        store.close()


def test_second_store_on_the_same_file_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "buf.db")
    first = FileStore(path)
    try:
        with pytest.raises(ValueError, match="in use by another running agent"):
            FileStore(path)
    finally:
        first.close()
    FileStore(path).close()  # free again once the first is closed


HOLDER = textwrap.dedent("""
    import sys, time
    from vigil.agent.buffer import FileStore
    store = FileStore(sys.argv[1])
    print("locked", flush=True)
    time.sleep(60)
""")


def test_file_held_by_another_process_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "buf.db")
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, path], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        with pytest.raises(ValueError, match="in use"):
            FileStore(path)
    finally:
        proc.kill()
        proc.wait(10)
    FileStore(path).close()  # the lock died with its holder


def test_check_list_is_kept_per_target(tmp_path: Path) -> None:
    from vigil.agent.protocol.messages import ActiveCheck

    path = str(tmp_path / "buf.db")
    store = FileStore(path)
    assert store.load_checks("h@s:1") is None
    checks = [ActiveCheck("vfs.fs.size[/,pused]", 30, key_orig="vfs.fs.size[{$FS},pused]"),
              ActiveCheck("log[/tmp/x.log]", 1, lastlogsize=42, mtime=7)]
    store.save_checks("h@s:1", checks)
    store.save_checks("h@s:2", [])
    store.close()
    store = FileStore(path)
    try:
        assert store.load_checks("h@s:1") == checks
        assert store.load_checks("h@s:2") == []
    finally:
        store.close()


WRITER = textwrap.dedent("""
    import sys
    from vigil.agent.buffer import BufferedValue, FileStore, ValueBuffer
    buf = ValueBuffer(65535, "t", FileStore(sys.argv[1]))
    print(buf.session, flush=True)
    i = 0
    while True:
        buf.add(BufferedValue("k", str(i), 1, 0))
        print(i, flush=True)
        i += 1
""")


def test_values_survive_sigkill_of_the_writer(tmp_path: Path) -> None:
    path = str(tmp_path / "buf.db")
    proc = subprocess.Popen([sys.executable, "-c", WRITER, path], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        session = proc.stdout.readline().strip()
        acked = -1
        deadline = time.monotonic() + 30
        while acked < 50 and time.monotonic() < deadline:
            acked = int(proc.stdout.readline())
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        printed = [int(x) for x in proc.stdout.read().split()]  # lines still in the pipe
        acked = max([acked, *printed])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert acked >= 50
    store = FileStore(path)
    buf = ValueBuffer(65535, "t", store)
    values = buf.batch(65535)
    # every add that returned is there, in order, ids without gaps; at most the one in progress is extra
    assert [int(x.value or "") for x in values][: acked + 1] == list(range(acked + 1))
    assert [x.id for x in values] == list(range(1, len(values) + 1))
    assert len(values) <= acked + 2
    assert buf.session == session
    buf.add(v("after"))
    assert buf.batch(65535)[-1].id == len(values) + 1
    store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
