"""Log monitoring: whole lines once each, in order, across rotation, truncation and restarts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from vigil.agent.logmon import (
    MAX_LINE_BYTES,
    LogKeyError,
    LogMonitor,
    LogReadError,
    LogState,
    parse_log_key,
)


def _collect(mon: LogMonitor, *, delay: float = 1, mlps: int = 1000, limit: int | None = None) -> list[str]:
    """One check on schedule (`delay` after the last) that takes everything it read (the buffer has room).

    The lines only: a position-only value at the end is taken too but not returned."""
    now = (mon.last_read or 0.0) + delay
    batch = mon.read(delay, mlps, send_limit=limit, now=now)
    mon.commit(batch.state_after(len(batch.records)))
    return batch.values


def _drain(mon: LogMonitor, **kw: object) -> list[str]:
    out: list[str] = []
    for _ in range(100):
        before = (mon.state.lastlogsize, mon.state.to_extra())
        got = _collect(mon, **kw)  # type: ignore[arg-type]
        if not got and before == (mon.state.lastlogsize, mon.state.to_extra()):
            return out
        out += got
    raise AssertionError("log reader never ran dry")


def _append(path: Path, *lines: str, end: str = "\n") -> None:
    with path.open("a") as f:
        f.write("".join(line + end for line in lines))


def _restart(mon: LogMonitor, *, with_extra: bool = True) -> LogMonitor:
    st = mon.state
    return LogMonitor.start(mon.item, st.lastlogsize, st.mtime, st.to_extra() if with_extra else "")


# --- key parsing --------------------------------------------------------------------------------


def test_parse_full_log_key() -> None:
    item = parse_log_key('log[/var/log/app.log,"err(or)?",UTF-8,50,skip,\\1,0,,]')
    assert item.path == "/var/log/app.log" and not item.rotate and not item.count
    assert item.regexp is not None and item.regexp.pattern == "err(or)?"
    assert item.maxlines == 50 and item.skip and item.output == "\\1" and item.codec == "utf-8"


def test_parse_logrt_splits_directory_and_name_regexp() -> None:
    item = parse_log_key(r'logrt["/var/log/app\.log(\.[0-9]+)?$"]')
    assert item.rotate and item.path == "/var/log"
    assert item.name_re is not None and item.name_re.search("app.log.1") and not item.name_re.search("other.log")


def test_parse_count_key_maxproclines_allows_more() -> None:
    assert parse_log_key("log.count[/tmp/x,,,5000]").maxlines == 5000
    with pytest.raises(LogKeyError, match="fourth"):
        parse_log_key("log[/tmp/x,,,5000]")


@pytest.mark.parametrize(("key", "words"), [
    ("log[]", "first parameter"),
    ("log[relative/path]", "absolute"),
    ("log[/tmp/x,(unclosed]", "second parameter"),
    ("log[/tmp/x,@global]", "global regular expression"),
    ("log[/tmp/x,,no-such-codec]", "encoding"),
    ("log[/tmp/x,,,0]", "fourth"),
    ("log[/tmp/x,,,abc]", "fourth"),
    ("log[/tmp/x,,,,sometimes]", "mode"),
    ("log[/tmp/x,,,,,,-1]", "maxdelay"),
    ("log[/tmp/x,,,,,,,copytruncate]", "unknown option"),
    ("logrt[/tmp/x,,,,,,,bogus]", "unknown option"),
    ("logrt[/tmp/(]", "file name regexp"),
    ("log[/tmp/x,,,,,,,,rel]", "absolute"),
    ("log[/tmp/x,,,,,,,,,extra]", "Too many"),
    ("system.cpu.load", "not a log item key"),
    ("log[/tmp/x", "Invalid item key format"),
])
def test_parse_rejects_bad_keys_naming_the_parameter(key: str, words: str) -> None:
    with pytest.raises(LogKeyError, match=words):
        parse_log_key(key)


# --- reading -------------------------------------------------------------------------------------


def test_reads_whole_lines_only_and_a_partial_line_waits(tmp_path: Path) -> None:
    f = tmp_path / "app.log"
    f.write_text("one\ntwo\nthr")
    mon = LogMonitor.start(parse_log_key(f"log[{f}]"), 0, 0)
    assert _collect(mon) == ["one", "two"]
    assert mon.state.lastlogsize == len("one\ntwo\n")
    assert _collect(mon) == []
    _append(f, "ee", "four")
    assert _collect(mon) == ["three", "four"]
    assert mon.state.lastlogsize == f.stat().st_size


def test_values_carry_the_position_after_their_line(tmp_path: Path) -> None:
    f = tmp_path / "app.log"
    f.write_text("a\r\nbb\nccc\n")
    batch = LogMonitor.start(parse_log_key(f"log[{f}]"), 0, 0).read(1, 100)
    assert [(r.value, r.lastlogsize) for r in batch.records] == [("a", 3), ("bb", 6), ("ccc", 10)]


def test_regexp_filter_and_output_template(tmp_path: Path) -> None:
    f = tmp_path / "app.log"
    f.write_text("user=ann code=200\nnoise\nuser=bob code=500\nuser=cy\n")
    mon = LogMonitor.start(parse_log_key(rf'log[{f},"user=(\w+) code=([0-9]+)",,,,"\2 by \1 [\0] \5"]'), 0, 0)
    assert _collect(mon) == ["200 by ann [user=ann code=200] ", "500 by bob [user=bob code=500] "]
    assert mon.state.lastlogsize == f.stat().st_size  # non-matching lines are passed too


def test_mode_skip_starts_at_end_for_a_new_item_only(tmp_path: Path) -> None:
    f = tmp_path / "app.log"
    f.write_text("old1\nold2\n")
    key = f"log[{f},,,,skip]"
    mon = LogMonitor.start(parse_log_key(key), 0, 0)
    assert _collect(mon) == []
    _append(f, "new")
    assert _collect(mon) == ["new"]
    # a known item (the server has a position) is not skipped
    known = LogMonitor.start(parse_log_key(key), 5, 0)
    assert _collect(known) == ["old2", "new"]


def test_mode_all_reads_existing_content(tmp_path: Path) -> None:
    f = tmp_path / "app.log"
    f.write_text("old1\nold2\n")
    assert _collect(LogMonitor.start(parse_log_key(f"log[{f},,,,all]"), 0, 0)) == ["old1", "old2"]


def test_truncation_restarts_from_zero(tmp_path: Path) -> None:
    f = tmp_path / "app.log"
    f.write_text("line1\nline2\n")
    mon = LogMonitor.start(parse_log_key(f"log[{f}]"), 0, 0)
    assert _collect(mon) == ["line1", "line2"]
    f.write_text("x\n")  # truncated, shorter than the position
    assert _collect(mon) == ["x"]


def test_replaced_file_is_read_from_start(tmp_path: Path) -> None:
    f = tmp_path / "app.log"
    f.write_text("first file line\n")
    mon = LogMonitor.start(parse_log_key(f"log[{f}]"), 0, 0)
    assert _collect(mon) == ["first file line"]
    f.rename(tmp_path / "old.log")
    f.write_text("a much longer line in the new file\n")  # bigger than the old position: not a truncation
    assert _collect(mon) == ["a much longer line in the new file"]


def test_missing_file_is_a_read_error(tmp_path: Path) -> None:
    mon = LogMonitor.start(parse_log_key(f"log[{tmp_path}/none.log]"), 0, 0)
    with pytest.raises(LogReadError, match="none.log"):
        mon.read(1, 10)


def test_encoding_and_invalid_bytes_are_replaced(tmp_path: Path) -> None:
    f = tmp_path / "app.log"
    f.write_bytes("caf\u00e9\n".encode("cp1252") + b"ok\n")
    assert _collect(LogMonitor.start(parse_log_key(f"log[{f},,CP1252]"), 0, 0)) == ["caf\u00e9", "ok"]
    g = tmp_path / "bad.log"
    g.write_bytes(b"a\xffb\n")
    assert _collect(LogMonitor.start(parse_log_key(f"log[{g}]"), 0, 0)) == ["a\ufffdb"]
    h = tmp_path / "wide.log"
    h.write_bytes("x\u0a0ay\nz\n".encode("utf-16-le"))  # U+0A0A holds a 0x0a byte off the 2-byte grid
    assert _collect(LogMonitor.start(parse_log_key(f"log[{h},,UTF-16LE]"), 0, 0)) == ["x\u0a0ay", "z"]


def test_overlong_line_is_cut(tmp_path: Path) -> None:
    f = tmp_path / "app.log"
    f.write_bytes(b"x" * (MAX_LINE_BYTES + 10) + b"\nnext\n")
    got = _drain(LogMonitor.start(parse_log_key(f"log[{f}]"), 0, 0))
    assert [len(v) for v in got] == [MAX_LINE_BYTES, 10, 4]


# --- pacing ----------------------------------------------------------------------------------------


def test_maxlines_limits_values_per_check(tmp_path: Path) -> None:
    f = tmp_path / "app.log"
    _append(f, *(f"l{i}" for i in range(25)))
    mon = LogMonitor.start(parse_log_key(f"log[{f},,,10]"), 0, 0)
    sizes = []
    got: list[str] = []
    for _ in range(4):
        chunk = _collect(mon, delay=1, mlps=1000)
        sizes.append(len(chunk))
        got += chunk
    assert sizes == [10, 10, 5, 0]
    assert got == [f"l{i}" for i in range(25)]


def test_max_lines_per_second_times_delay_is_the_default(tmp_path: Path) -> None:
    f = tmp_path / "app.log"
    _append(f, *(f"l{i}" for i in range(50)))
    mon = LogMonitor.start(parse_log_key(f"log[{f}]"), 0, 0)
    assert len(_collect(mon, delay=3, mlps=5)) == 15


def test_non_matching_lines_scanned_up_to_four_times_maxlines(tmp_path: Path) -> None:
    f = tmp_path / "app.log"
    _append(f, *(["noise"] * 100), "MATCH")
    mon = LogMonitor.start(parse_log_key(f"log[{f},MATCH,,10]"), 0, 0)
    batch = mon.read(1, 1000)
    assert batch.processed == 40 and batch.values == []
    # the scanned noise is passed even without values, and the server is told (a position-only value)
    assert [(r.value, r.lastlogsize) for r in batch.records] == [(None, 40 * 6)]
    mon.commit(batch.state_after(1))
    assert mon.state.lastlogsize == 40 * 6
    assert _drain(mon) == ["MATCH"]


def test_send_limit_from_the_buffer_and_partial_take(tmp_path: Path) -> None:
    f = tmp_path / "app.log"
    _append(f, "a", "skip-me", "b", "c")
    mon = LogMonitor.start(parse_log_key(f'log[{f},"^[abc]$"]'), 0, 0)
    batch = mon.read(1, 1000, send_limit=2)
    assert [r.value for r in batch.records] == ["a", "b"]
    mon.commit(batch.state_after(1))  # only "a" fitted
    assert mon.state.lastlogsize == 2
    assert _drain(mon) == ["b", "c"]


def test_log_count_counts_matches_per_check(tmp_path: Path) -> None:
    f = tmp_path / "app.log"
    _append(f, "err 1", "ok", "err 2", "err 3")
    mon = LogMonitor.start(parse_log_key(f"log.count[{f},err,,2]"), 0, 0)
    counts = [_collect(mon, delay=1)[0] for _ in range(3)]
    assert counts == ["1", "2", "0"]  # 2 lines looked at per check
    batch = mon.read(1, 1000)
    assert [r.lastlogsize for r in batch.records] == [f.stat().st_size]


def test_log_count_refused_keeps_position(tmp_path: Path) -> None:
    f = tmp_path / "app.log"
    _append(f, "err", "err")
    mon = LogMonitor.start(parse_log_key(f"log.count[{f},err]"), 0, 0)
    batch = mon.read(1, 10)
    mon.commit(batch.state_after(0))
    assert mon.state.lastlogsize == 0
    assert _collect(mon) == ["2"]


# --- rotation --------------------------------------------------------------------------------------


def _rotate(d: Path, name: str = "app.log") -> None:
    """logrotate's default: rename app.log.N -> N+1, app.log -> app.log.1, create an empty app.log."""
    olds = sorted((p for p in d.iterdir() if p.name.startswith(name + ".")), key=lambda p: -int(p.suffix[1:]))
    for p in olds:
        p.rename(d / f"{name}.{int(p.suffix[1:]) + 1}")
    (d / name).rename(d / f"{name}.1")
    (d / name).touch()


def _bump(path: Path, ns: int) -> None:
    """Make modification times strictly ordered even on coarse clocks."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + ns))


def test_logrt_finishes_rotated_file_before_the_new_one(tmp_path: Path) -> None:
    f = tmp_path / "app.log"
    _append(f, "1", "2")
    mon = LogMonitor.start(parse_log_key(rf"logrt[{tmp_path}/app\.log.*]"), 0, 0)
    assert _collect(mon) == ["1", "2"]
    _append(f, "3", "4")  # written, then rotated before the agent looked
    _rotate(tmp_path)
    _append(f, "5")
    _bump(f, 10_000_000)
    assert _drain(mon) == ["3", "4", "5"]
    _append(f, "6")
    _rotate(tmp_path)
    _append(f, "7")
    _bump(f, 20_000_000)
    _rotate(tmp_path)
    _append(f, "8")
    _bump(f, 30_000_000)
    assert _drain(mon) == ["6", "7", "8"]


def test_logrt_values_carry_mtime_of_their_file(tmp_path: Path) -> None:
    f = tmp_path / "app.log"
    _append(f, "x")
    os.utime(f, (1_700_000_000, 1_700_000_000))
    batch = LogMonitor.start(parse_log_key(rf"logrt[{tmp_path}/app\.log]"), 0, 0).read(1, 10)
    assert [(r.value, r.lastlogsize, r.mtime) for r in batch.records] == [("x", 2, 1_700_000_000)]


def test_logrt_copytruncate(tmp_path: Path) -> None:
    """The copy (app.log.1, a new inode holding lines already sent) is not read again; the truncated
    original is read from its start."""
    f = tmp_path / "app.log"
    _append(f, "1", "2", "3")
    mon = LogMonitor.start(parse_log_key(rf"logrt[{tmp_path}/app\.log.*,,,,,,,copytruncate]"), 0, 0)
    assert _collect(mon) == ["1", "2", "3"]
    _copytruncate(tmp_path)
    _append(f, "4")
    _bump(f, 10_000_000)
    assert _drain(mon) == ["4"]


def test_logrt_restart_from_saved_state_neither_loses_nor_repeats(tmp_path: Path) -> None:
    f = tmp_path / "app.log"
    key = parse_log_key(rf"logrt[{tmp_path}/app\.log.*]")
    _append(f, "1", "2", "3")
    mon = LogMonitor.start(key, 0, 0)
    batch = mon.read(1, 1000)
    mon.commit(batch.state_after(2))  # agent stopped after two values were taken
    _append(f, "4")
    _rotate(tmp_path)
    _append(f, "5")
    _bump(f, 10_000_000)
    again = _restart(mon)
    assert _drain(again) == ["3", "4", "5"]


def test_restart_from_server_position_only(tmp_path: Path) -> None:
    """No local state: lastlogsize/mtime as the server returns them in `active checks`."""
    f = tmp_path / "app.log"
    _append(f, "1", "2")
    mon = LogMonitor.start(parse_log_key(rf"logrt[{tmp_path}/app\.log.*]"), 0, 0)
    assert _collect(mon) == ["1", "2"]
    _append(f, "3")
    os.utime(f, (1_700_000_100, 1_700_000_100))
    _rotate(tmp_path)
    _append(f, "4")
    os.utime(f, (1_700_000_200, 1_700_000_200))
    server_pos = mon.state.lastlogsize
    # the server saw "2" at offset 4 in a file modified at ...100 or earlier
    fresh = LogMonitor.start(mon.item, server_pos, 1_700_000_050)
    assert _drain(fresh) == ["3", "4"]


def test_log_restart_from_server_lastlogsize(tmp_path: Path) -> None:
    f = tmp_path / "app.log"
    _append(f, "1", "2", "3")
    assert _drain(LogMonitor.start(parse_log_key(f"log[{f}]"), 4, 0)) == ["3"]
    # a position past the end: the file was truncated or replaced meanwhile, read it all
    assert _drain(LogMonitor.start(parse_log_key(f"log[{f}]"), 100, 0)) == ["1", "2", "3"]


def test_state_json_round_trip_and_garbage(tmp_path: Path) -> None:
    f = tmp_path / "app.log"
    _append(f, "x")
    mon = LogMonitor.start(parse_log_key(rf"logrt[{tmp_path}/app\.log]"), 0, 0)
    _collect(mon)
    again = LogState.load(mon.state.lastlogsize, mon.state.mtime, mon.state.to_extra())
    assert again.files == mon.state.files
    assert LogState.load(3, 4, "not json").files is None


def test_many_rotations_while_writing_every_line_once(tmp_path: Path) -> None:
    f = tmp_path / "app.log"
    f.touch()
    mon = LogMonitor.start(parse_log_key(rf"logrt[{tmp_path}/app\.log.*,,,50]"), 0, 0)
    written: list[str] = []
    got: list[str] = []
    n = 0
    for round_ in range(12):
        for _ in range(7):
            written.append(f"line {n}")
            _append(f, f"line {n}")
            n += 1
        if round_ % 3 == 2:
            mon = _restart(mon)
        if round_ % 2 == 1:
            _rotate(tmp_path)
            _bump(f, 5_000_000 * (round_ + 1))
        got += _collect(mon, delay=1, mlps=1000)
    got += _drain(mon)
    assert got == written


# --- copytruncate ----------------------------------------------------------------------------------


def _copytruncate(d: Path, name: str = "app.log", *, keep_mtime: bool = False) -> None:
    """logrotate's copytruncate: app.log.N -> N+1, copy app.log to app.log.1, truncate app.log in place."""
    import shutil

    olds = sorted((p for p in d.iterdir() if p.name.startswith(name + ".")), key=lambda p: -int(p.suffix[1:]))
    for p in olds:
        p.rename(d / f"{name}.{int(p.suffix[1:]) + 1}")
    (shutil.copy2 if keep_mtime else shutil.copyfile)(d / name, d / f"{name}.1")
    with (d / name).open("r+") as f:
        f.truncate(0)


CT_KEY = r"logrt[{d}/app\.log.*,,,,,,,copytruncate]"


@pytest.mark.parametrize("keep_mtime", [False, True])
def test_copytruncate_copy_is_not_read_again(tmp_path: Path, keep_mtime: bool) -> None:
    f = tmp_path / "app.log"
    _append(f, "1", "2", "3")
    mon = LogMonitor.start(parse_log_key(CT_KEY.format(d=tmp_path)), 0, 0)
    assert _collect(mon) == ["1", "2", "3"]
    _copytruncate(tmp_path, keep_mtime=keep_mtime)
    _append(f, "4")
    _bump(f, 10_000_000)
    assert _drain(mon) == ["4"]
    _append(f, "5")
    _copytruncate(tmp_path, keep_mtime=keep_mtime)  # app.log.1 -> app.log.2, a new copy
    _append(f, "6")
    _bump(f, 20_000_000)
    assert _drain(mon) == ["5", "6"]


def test_copytruncate_lines_written_before_the_copy_come_from_the_copy(tmp_path: Path) -> None:
    f = tmp_path / "app.log"
    _append(f, "1")
    mon = LogMonitor.start(parse_log_key(CT_KEY.format(d=tmp_path)), 0, 0)
    assert _collect(mon) == ["1"]
    _append(f, "2", "3")  # not read yet when the file is copied and truncated
    _copytruncate(tmp_path)
    _append(f, "4")
    _bump(f, 10_000_000)
    assert _drain(mon) == ["2", "3", "4"]


def test_copytruncate_copy_seen_before_the_truncation(tmp_path: Path) -> None:
    """The agent looks between logrotate's copy and its truncate: the lines come from the original once."""
    import shutil

    f = tmp_path / "app.log"
    _append(f, "1")
    mon = LogMonitor.start(parse_log_key(CT_KEY.format(d=tmp_path)), 0, 0)
    assert _collect(mon) == ["1"]
    _append(f, "2")
    shutil.copyfile(f, tmp_path / "app.log.1")
    _bump(f, 10_000_000)
    assert _drain(mon) == ["2"]
    _append(f, "3")  # written to the original after the copy: lost to the copy, read from the original
    assert _drain(mon) == ["3"]
    with f.open("r+") as fh:
        fh.truncate(0)
    _append(f, "4")
    _bump(f, 20_000_000)
    assert _drain(mon) == ["4"]


def test_copytruncate_restart_from_saved_state(tmp_path: Path) -> None:
    f = tmp_path / "app.log"
    _append(f, "1", "2")
    mon = LogMonitor.start(parse_log_key(CT_KEY.format(d=tmp_path)), 0, 0)
    assert _collect(mon) == ["1", "2"]
    _append(f, "3")
    _copytruncate(tmp_path)  # while the agent is stopped
    _append(f, "4")
    _bump(f, 10_000_000)
    assert _drain(_restart(mon)) == ["3", "4"]


def test_without_copytruncate_a_copy_is_a_new_file(tmp_path: Path) -> None:
    """As zabbix_agentd's default (rotate): a file with a new inode and a newer time is read whole."""
    f = tmp_path / "app.log"
    _append(f, "1")
    mon = LogMonitor.start(parse_log_key(rf"logrt[{tmp_path}/app\.log.*]"), 0, 0)
    assert _collect(mon) == ["1"]
    _copytruncate(tmp_path)
    _bump(tmp_path / "app.log.1", 10_000_000)
    _append(f, "2")
    _bump(f, 20_000_000)
    assert _drain(mon) == ["1", "2"]


# --- rotated files older than the position, truncation while stopped ---------------------------------


def test_file_older_than_the_position_is_not_read(tmp_path: Path) -> None:
    """logrotate's compress: app.log.2.gz is a new file, but its time is the rotated file's (gzip keeps it)."""
    f = tmp_path / "app.log"
    _append(f, "1", "2")
    os.utime(f, (1_700_000_100, 1_700_000_100))
    mon = LogMonitor.start(parse_log_key(rf"logrt[{tmp_path}/app\.log.*]"), 0, 0)
    assert _collect(mon) == ["1", "2"]
    gz = tmp_path / "app.log.2.gz"
    gz.write_bytes(b"\x1f\x8b\x08binary\ngarbage\n")
    os.utime(gz, (1_700_000_000, 1_700_000_000))
    _append(f, "3")
    os.utime(f, (1_700_000_200, 1_700_000_200))
    assert _drain(mon) == ["3"]
    assert _drain(_restart(mon)) == []


def test_truncated_and_rewritten_past_the_position_with_the_same_first_block(tmp_path: Path) -> None:
    """A file that starts with the same banner each time it is rewritten: the block before the
    position tells it from the file we read."""
    f = tmp_path / "app.log"
    banner = [f"# app 1.0 started; option {i:02d} = default" for i in range(14)]  # more than 512 bytes
    _append(f, *banner, "before 1", "before 2")
    key = parse_log_key(f"log[{f}]")
    mon = LogMonitor.start(key, 0, 0)
    assert _collect(mon)[-2:] == ["before 1", "before 2"]
    f.write_text("")  # truncated while the agent was stopped, then rewritten past the old size
    after = [f"after {i}" for i in range(300)]
    _append(f, *banner, *after)
    assert _drain(_restart(mon)) == [*banner, *after]


def test_truncated_and_rewritten_while_stopped_loses_no_line(tmp_path: Path) -> None:
    """Written, truncated and written again while the agent is stopped: all 300 new lines arrive,
    with the agent's saved state and with only the server's lastlogsize."""
    f = tmp_path / "app.log"
    _append(f, *(f"{1_700_000_000 + i}.125 before {i}" for i in range(6)))
    mon = LogMonitor.start(parse_log_key(f"log[{f}]"), 0, 0)
    assert len(_collect(mon)) == 6
    _append(f, "written while stopped")
    f.write_text("")
    after = [f"{1_700_000_100 + i}.5 after {i}" for i in range(300)]
    _append(f, *after)
    # the old position falls inside a line of the new content: it cannot be where we stopped
    assert f.read_bytes()[mon.state.lastlogsize - 1:mon.state.lastlogsize] != b"\n"
    assert _drain(_restart(mon)) == after
    assert _drain(_restart(mon, with_extra=False)) == after


# --- position-only values ----------------------------------------------------------------------------


def test_unmatched_lines_give_a_position_only_value(tmp_path: Path) -> None:
    f = tmp_path / "app.log"
    _append(f, "noise", "error 1", "noise", "noise")
    mon = LogMonitor.start(parse_log_key(f"log[{f},error]"), 0, 0)
    batch = mon.read(1, 100, now=1)
    assert [(r.value, r.lastlogsize) for r in batch.records] == [("error 1", 14), (None, f.stat().st_size)]
    mon.commit(batch.state_after(len(batch.records)))
    assert mon.read(1, 100, now=2).records == []  # nothing new: nothing to say
    _append(f, "error 2")
    batch = mon.read(1, 100, now=3)
    assert [r.value for r in batch.records] == ["error 2"]  # the line carries the position itself


def test_restart_from_a_position_only_value_neither_rescans_nor_skips(tmp_path: Path) -> None:
    f = tmp_path / "app.log"
    key = rf"logrt[{tmp_path}/app\.log$,^ERR]"
    _append(f, "ERR one", *(["debug"] * 50))
    mon = LogMonitor.start(parse_log_key(key), 0, 0)
    batch = mon.read(1, 100, now=1)
    mon.commit(batch.state_after(len(batch.records)))
    last = batch.records[-1]
    assert last.value is None and last.lastlogsize == f.stat().st_size
    # restarted without local state: the server returns what the last value (the meta one) said
    again = LogMonitor.start(parse_log_key(key), last.lastlogsize, last.mtime)
    first = again.read(1, 100, now=1)
    assert first.processed == 0 and first.records == []
    _append(f, "ERR two")
    assert _drain(again) == ["ERR two"]


def test_mode_skip_reports_where_it_skipped_to(tmp_path: Path) -> None:
    f = tmp_path / "app.log"
    _append(f, "old1", "old2")
    batch = LogMonitor.start(parse_log_key(f"log[{f},,,,skip]"), 0, 0).read(1, 100, now=1)
    assert [(r.value, r.lastlogsize) for r in batch.records] == [(None, f.stat().st_size)]


# --- MaxLinesPerSecond --------------------------------------------------------------------------------


def test_max_lines_per_second_holds_when_checks_rerun_early(tmp_path: Path) -> None:
    """A log item blocked by a full buffer reruns every second: each rerun gets a second's lines,
    not a whole interval's."""
    f = tmp_path / "app.log"
    _append(f, *(f"l{i}" for i in range(1000)))
    mon = LogMonitor.start(parse_log_key(f"log[{f}]"), 0, 0)
    sizes = []
    for now in (100.0, 101.0, 102.0, 103.0, 113.0, 113.5):
        batch = mon.read(10, 5, now=now)
        mon.commit(batch.state_after(len(batch.records)))
        sizes.append(len(batch.values))
    # 10 s x 5 lines, then 5 a second, then a full interval's again (no more), then nothing in half a second
    assert sizes == [50, 5, 5, 5, 50, 0]
    batch = mon.read(10, 5, now=114.0)  # the half second carried over
    assert len(batch.values) == 5


def test_count_keys_budget_lines_looked_at(tmp_path: Path) -> None:
    f = tmp_path / "app.log"
    _append(f, *(["err"] * 100))
    mon = LogMonitor.start(parse_log_key(f"log.count[{f},err,,10]"), 0, 0)
    got = []
    for now in (10.0, 11.0, 11.0):
        batch = mon.read(5, 100, now=now)
        mon.commit(batch.state_after(1))
        got.append(batch.values)
    assert got == [["50"], ["10"], ["0"]]


# --- options that change what is read -----------------------------------------------------------------


@pytest.mark.parametrize(("key", "words"), [
    ("log[/tmp/x,,,,,,5]", "maxdelay '5' is not supported"),
    ("log.count[/tmp/x,,,,,0.5]", "sixth parameter: maxdelay '0.5' is not supported"),
    ("logrt[/tmp/x,,,,,,,mtime-reread]", "'mtime-reread' is not supported"),
    ("log[/tmp/x,,,,,,,,/var/lib/zabbix]", "persistent_dir is not supported"),
    ("logrt.count[/tmp/x,,,,,,,/var/lib/zabbix]", "eighth parameter: persistent_dir is not supported"),
])
def test_options_vigil_does_not_implement_are_refused_by_name(key: str, words: str) -> None:
    with pytest.raises(LogKeyError, match=words):
        parse_log_key(key)


def test_options_that_are_honoured_parse() -> None:
    assert parse_log_key("logrt[/tmp/x,,,,,,,copytruncate]").options == "copytruncate"
    assert parse_log_key("logrt[/tmp/x,,,,,,0,mtime-noreread]").options == "mtime-noreread"
    assert parse_log_key("log[/tmp/x,,,,,,,mtime-reread]").options == "mtime-reread"  # log[]: mtime is ignored


def test_mtime_noreread_a_touched_file_is_not_read_again(tmp_path: Path) -> None:
    f = tmp_path / "app.log"
    _append(f, "1", "2")
    mon = LogMonitor.start(parse_log_key(rf"logrt[{tmp_path}/app\.log,,,,,,,mtime-noreread]"), 0, 0)
    assert _collect(mon) == ["1", "2"]
    _bump(f, 5_000_000_000)
    assert _drain(mon) == []


# --- regular expressions ------------------------------------------------------------------------------


def test_posix_classes_in_the_line_and_file_name_regexps(tmp_path: Path) -> None:
    _append(tmp_path / "app1.log", "code 500 at x", "code abc", "  indented")
    _append(tmp_path / "appx.log", "code 404 elsewhere")
    mon = LogMonitor.start(parse_log_key(
        rf'logrt["{tmp_path}/^app[[:digit:]]+\.log$","code ([[:digit:]]+)|^[[:space:]]+[[:alpha:]]+$"]'), 0, 0)
    assert _drain(mon) == ["code 500 at x", "  indented"]


def test_copytruncate_original_rewritten_with_the_copys_first_line_is_read(tmp_path: Path) -> None:
    """The truncated original starts again with the same line as its copy: it is not taken for a copy."""
    f = tmp_path / "app.log"
    _append(f, "app started", "1")
    mon = LogMonitor.start(parse_log_key(CT_KEY.format(d=tmp_path)), 0, 0)
    assert _collect(mon) == ["app started", "1"]
    _copytruncate(tmp_path)
    _append(f, "2")
    _bump(f, 10_000_000)
    assert _drain(mon) == ["2"]
    with f.open("r+") as fh:  # truncated in place again, and the application starts over
        fh.truncate(0)
    _append(f, "app started")
    _bump(f, 20_000_000)
    assert _drain(mon) == ["app started"]


def test_truncated_and_rewritten_to_a_line_end_at_the_old_position(tmp_path: Path) -> None:
    """Lines of one length: the old position is a line end in the new content too. log[]'s mtime
    carries a fingerprint of the bytes before lastlogsize, so the server's position alone tells."""
    f = tmp_path / "app.log"
    _append(f, *(f"before {i}" for i in range(6)))
    mon = LogMonitor.start(parse_log_key(f"log[{f}]"), 0, 0)
    batch = mon.read(1, 100, now=1)
    mon.commit(batch.state_after(len(batch.records)))
    server = (batch.records[-1].lastlogsize, batch.records[-1].mtime)  # what the last value told the server
    assert server[1] != 0
    f.write_text("")
    after = [f"after{i:03d}" for i in range(300)]
    _append(f, *after)
    assert f.read_bytes()[server[0] - 1:server[0]] == b"\n"
    assert _drain(LogMonitor.start(mon.item, *server)) == after


def test_log_restart_from_server_position_and_fingerprint_goes_on(tmp_path: Path) -> None:
    f = tmp_path / "app.log"
    _append(f, "1", "noise", "2")
    mon = LogMonitor.start(parse_log_key(f"log[{f},\"^[0-9]\"]"), 0, 0)
    batch = mon.read(1, 100, now=1)
    mon.commit(batch.state_after(len(batch.records)))
    _append(f, "3")
    last = batch.records[-1]
    assert _drain(LogMonitor.start(mon.item, last.lastlogsize, last.mtime)) == ["3"]


def test_active_worker_blocked_log_item_keeps_to_max_lines_per_second(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker reruns a log item blocked by a full buffer every second; over those reruns it sends
    at most one interval's lines plus MaxLinesPerSecond a second (before: a fresh interval's each time)."""
    from vigil.agent import logmon
    from vigil.agent.active import ActiveSettings, ActiveWorker
    from vigil.agent.checks import CheckContext, Checks
    from vigil.agent.protocol.messages import ActiveCheck

    f = tmp_path / "app.log"
    _append(f, *(f"l{i}" for i in range(2000)))
    clock = [1000.0]
    monkeypatch.setattr(logmon.time, "monotonic", lambda: clock[0])
    settings = ActiveSettings(servers=(("127.0.0.1", 1),), hostnames=("h",), buffer_size=40, max_lines_per_second=5)
    worker = ActiveWorker(settings, ("127.0.0.1", 1), "h", Checks(CheckContext(hostname="h")))
    worker.apply([ActiveCheck(key=f"log[{f}]", delay=10, lastlogsize=0, mtime=0)], clock[0])
    sent = 0
    for _ in range(30):  # 30 s: the sender empties the buffer between two runs
        worker.run_due(clock[0])
        batch = worker.buffer.batch(100)
        sent += sum(v.value is not None for v in batch)
        worker.buffer.ack(batch)
        clock[0] += 1.0
    # the first run comes within 5 s (spread), later ones on schedule or a second apart when blocked
    assert sent >= 10 * 5 * 2  # it keeps going: at least two intervals' lines in 30 s
    assert sent <= 10 * 5 + 5 * 30  # at most one interval's lines, then 5 a second (before: 20 every second)
