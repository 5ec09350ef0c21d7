"""Log file monitoring for active items: log[], logrt[], log.count[] and logrt.count[].

`parse_log_key` validates a key; a `LogMonitor` holds one item's position and reads new whole
lines. Reading is two-phase so nothing is lost or repeated: `read()` returns a `LogBatch` without
moving the monitor; the caller buffers as many values as fit, then `commit(batch.state_after(k))`
moves the position to just after the k-th value taken (or past every line read when all fit).

Positions: Zabbix's `lastlogsize` (byte offset after the last line) and `mtime` (logrt: modification
time of the file it belongs to; log: a fingerprint of the bytes before lastlogsize), plus our own map
of known files (device, inode, the offset read to, hashes of the first block and of the block before
the offset, as zabbix_agentd's MD5s of the same blocks), kept as JSON so a rotated file is
recognised under its new name and finished before the newer file is read, a copytruncate copy goes
on where its original stood, and a file truncated and rewritten is read from its start. Files are
ordered by modification time, oldest first. Lines that match nothing still move the position; a
position-only record (value None) tells the server, as zabbix_agentd's "meta" values do.
See docs/log-monitoring.md.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import BinaryIO

from vigil.agent import regex

LOG_KEYS = ("log", "logrt", "log.count", "logrt.count")
MAX_LINES = 1000  # maxlines of log/logrt, and MaxLinesPerSecond
MAX_PROC_LINES = 10000  # maxproclines of log.count/logrt.count
MAX_LINE_BYTES = 256 * 1024  # a longer line is cut and its parts read as lines
BLOCK = 512  # as zabbix_agentd: the first block and the block before the position tell files apart
READ_CHUNK = 64 * 1024
SCAN_FACTOR = 4  # log/logrt look at up to 4 x maxlines x delay lines per check for matches
COUNT_FACTOR = 10  # log.count's maxproclines defaults to 10 x MaxLinesPerSecond
OPTIONS = {"log": ("", "mtime-reread", "mtime-noreread"),
           "logrt": ("", "rotate", "copytruncate", "mtime-reread", "mtime-noreread")}


class LogKeyError(ValueError):
    """A log key that cannot be monitored; the message names the bad parameter."""


class LogReadError(OSError):
    """The file or directory cannot be read now (may recover)."""


@dataclass(frozen=True, slots=True)
class LogItem:
    key: str
    rotate: bool  # logrt: the file name is a regexp in a directory
    count: bool  # log.count: send the number of matching lines instead of the lines
    path: str  # log: the file; logrt: the directory
    name_re: re.Pattern[str] | None
    regexp: re.Pattern[str] | None
    codec: str
    maxlines: int | None  # None: MaxLinesPerSecond (x10 for the count keys)
    skip: bool  # mode=skip: a new item starts at the end of the file(s)
    output: str
    maxdelay: float
    options: str
    persistent_dir: str


def _codec(name: str) -> str:
    if not name:
        return "utf-8"
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        raise LogKeyError(f"Invalid third parameter: encoding {name!r} is not supported.") from None
    # Zabbix reads UTF-16/32 without a byte order mark as little-endian.
    return {"utf-16": "utf-16-le", "utf-32": "utf-32-le"}.get(codec, codec)


def _int_param(text: str, n: str, lo: int, hi: int) -> int | None:
    if text == "":
        return None
    if not text.isdigit() or not lo <= int(text) <= hi:
        raise LogKeyError(f"Invalid {n} parameter: must be an integer in {lo}..{hi}, got {text!r}.")
    return int(text)


def parse_log_key(text: str) -> LogItem:
    from vigil.agent.protocol.itemkey import ItemKeyError, parse

    try:
        key = parse(text)
    except ItemKeyError as e:
        raise LogKeyError(f"Invalid item key format: {e}.") from None
    if key.name not in LOG_KEYS:
        raise LogKeyError(f"{key.name!r} is not a log item key.")
    count = key.name.endswith(".count")
    rotate = key.name.startswith("logrt")
    names = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth"]
    limit = 8 if count else 9
    if len(key.params) > limit:
        raise LogKeyError(f"Too many parameters: {key.name} takes at most {limit}.")
    try:
        p = [key.param(i) for i in range(limit)]
    except ItemKeyError as e:
        raise LogKeyError(f"Invalid parameter: {e}.") from None
    if count:  # log.count[file,regexp,encoding,maxproclines,mode,maxdelay,options,persistent_dir]
        p.insert(5, "")
    path, rx, enc, maxlines, mode, output, maxdelay, options, pdir = p
    if not path:
        raise LogKeyError("Invalid first parameter: the file name is empty.")
    if not os.path.isabs(path):
        raise LogKeyError(f"Invalid first parameter: {path!r} is not an absolute path.")
    name_re = None
    if rotate:
        directory, pattern = os.path.split(path)
        if not pattern:
            raise LogKeyError("Invalid first parameter: no file name regexp after the directory.")
        try:
            name_re = regex.compile(pattern)
        except re.error as e:
            raise LogKeyError(f"Invalid first parameter: bad file name regexp {pattern!r}: {e}.") from None
        path = directory or "/"
    regexp = None
    if rx:
        if rx.startswith("@"):
            raise LogKeyError(f"Invalid second parameter: global regular expression {rx!r} is not supported.")
        try:
            regexp = regex.compile(rx)
        except re.error as e:
            raise LogKeyError(f"Invalid second parameter: bad regexp {rx!r}: {e}.") from None
    lines = _int_param(maxlines, names[3], 1, MAX_PROC_LINES if count else MAX_LINES)
    if mode not in ("", "all", "skip"):
        raise LogKeyError(f"Invalid {names[4]} parameter: mode must be 'all' or 'skip', got {mode!r}.")
    try:
        delay = float(maxdelay) if maxdelay else 0.0
    except ValueError:
        delay = -1.0
    if not 0.0 <= delay <= 86400.0:
        raise LogKeyError(f"Invalid {names[5 if count else 6]} parameter: maxdelay must be 0..86400, got {maxdelay!r}.")
    if delay > 0:
        raise LogKeyError(f"Invalid {names[5 if count else 6]} parameter: maxdelay {maxdelay!r} is not supported by "
                          "vigil-agent (it never skips lines to catch up); use 0 or leave it empty.")
    if options not in OPTIONS["logrt" if rotate else "log"]:
        raise LogKeyError(f"Invalid {names[6 if count else 7]} parameter: unknown option {options!r}.")
    if options == "mtime-reread" and rotate:
        raise LogKeyError(f"Invalid {names[6 if count else 7]} parameter: option 'mtime-reread' is not supported by "
                          "vigil-agent (a file whose time changes but not its size is not read again); "
                          "use 'mtime-noreread' or leave it empty.")
    if pdir and not os.path.isabs(pdir):
        raise LogKeyError(f"Invalid {names[7 if count else 8]} parameter: {pdir!r} is not an absolute path.")
    if pdir:
        raise LogKeyError(f"Invalid {names[7 if count else 8]} parameter: persistent_dir is not supported by "
                          "vigil-agent; log positions survive a restart in PersistentBufferFile.")
    return LogItem(text, rotate, count, path, name_re, regexp, _codec(enc), lines, mode == "skip",
                   output, delay, options, pdir)


# --- position ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileMark:
    """What we know of one file: where we are in it and two blocks that tell it from another file."""

    dev: int
    ino: int
    pos: int
    head_len: int
    head: str  # sha1 of the first head_len bytes
    tail: str = ""  # sha1 of the (up to BLOCK) bytes before pos; "" in a state saved by an older agent

    @property
    def ident(self) -> str:
        return f"{self.dev}:{self.ino}"


@dataclass(slots=True)
class LogState:
    lastlogsize: int
    mtime: int  # logrt: the file's modification time; log: a fingerprint of the bytes before lastlogsize
    files: dict[str, FileMark] | None = None  # None: not yet matched to the files on disk

    def copy(self) -> LogState:
        return LogState(self.lastlogsize, self.mtime, None if self.files is None else dict(self.files))

    def to_extra(self) -> str:
        if self.files is None:
            return ""
        return json.dumps([[m.dev, m.ino, m.pos, m.head_len, m.head, m.tail] for m in self.files.values()])

    @classmethod
    def load(cls, lastlogsize: int, mtime: int, extra: str = "") -> LogState:
        files = None
        if extra:
            try:
                files = {}
                for row in json.loads(extra):
                    d, i, p, n, h = row[:5]
                    tail = str(row[5]) if len(row) > 5 else ""
                    files[f"{d}:{i}"] = FileMark(int(d), int(i), int(p), int(n), str(h), tail)
            except (ValueError, TypeError):
                files = None  # unreadable: fall back to lastlogsize/mtime
        return cls(lastlogsize, mtime, files)


@dataclass(frozen=True, slots=True)
class LogRecord:
    value: str | None  # None: a position-only ("meta") value, as zabbix_agentd sends for unmatched lines
    lastlogsize: int
    mtime: int
    mark: FileMark | None  # the file position after this line (None for a count or a meta value)


@dataclass
class LogBatch:
    records: list[LogRecord]
    initial: LogState
    final: LogState
    processed: int = 0  # lines looked at

    def state_after(self, k: int) -> LogState:
        """The position once the first `k` records are taken (all lines read when k is all of them)."""
        if k >= len(self.records):
            return self.final
        st = self.initial.copy()
        if k == 0:
            return st
        if st.files is None:
            st.files = {}
        for r in self.records[:k]:
            if r.mark is not None:
                st.files[r.mark.ident] = r.mark
        last = self.records[k - 1]
        st.lastlogsize, st.mtime = last.lastlogsize, last.mtime
        if self.final.files is not None:  # forget files that are gone; the others are identified again
            st.files = {i: m for i, m in st.files.items() if i in self.final.files}
        return st

    @property
    def values(self) -> list[str]:
        """The lines (or the count) without the position-only value."""
        return [r.value for r in self.records if r.value is not None]


@dataclass(frozen=True, slots=True)
class _File:
    path: str
    dev: int
    ino: int
    size: int
    mtime_ns: int

    @property
    def ident(self) -> str:
        return f"{self.dev}:{self.ino}"

    @property
    def mtime(self) -> int:
        return self.mtime_ns // 1_000_000_000


def _stat(path: str) -> _File:
    st = os.stat(path)
    return _File(path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _files(item: LogItem) -> list[_File]:
    if not item.rotate:
        try:
            return [_stat(item.path)]
        except OSError as e:
            raise LogReadError(f"Cannot obtain information for file \"{item.path}\": {e.strerror}") from None
    try:
        names = os.listdir(item.path)
    except OSError as e:
        raise LogReadError(f"Cannot open directory \"{item.path}\": {e.strerror}") from None
    found = []
    assert item.name_re is not None
    for n in names:
        if not item.name_re.search(n):
            continue
        try:
            f = _stat(os.path.join(item.path, n))
        except OSError:
            continue  # rotated away between listdir and stat
        if os.path.isfile(f.path):
            found.append(f)
    found.sort(key=lambda f: (f.mtime_ns, f.path))
    return found


def _sha(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def _hash(fh: BinaryIO, start: int, n: int) -> str:
    fh.seek(start)
    return _sha(fh.read(n))


def _tail(fh: BinaryIO, pos: int) -> str:
    start = max(0, pos - BLOCK)
    return _hash(fh, start, pos - start)


def _holds(fh: BinaryIO, size: int, mark: FileMark) -> bool:
    """The open file still has what `mark` saw: its first block and the block before the position."""
    if size < mark.pos or size < mark.head_len or _hash(fh, 0, mark.head_len) != mark.head:
        return False
    return not mark.tail or _tail(fh, mark.pos) == mark.tail


def _fingerprint(tail: str) -> int:
    """log[]'s `mtime`: 31 bits of the hash of the bytes before lastlogsize, never 0.

    zabbix_agentd ignores mtime for log[] (since 5.0.2) and the server only keeps and returns it,
    so it can carry what tells, after a restart without local state, whether the file at
    lastlogsize is still the one we read.
    """
    return (int(tail[:8], 16) & 0x7FFFFFFF) or 1 if tail else 0


def _newline(codec: str) -> tuple[bytes, int]:
    nl = "\n".encode(codec)
    return nl, len(nl)


_WAIT = -1  # a copy of a file that is still whole: read the original, not the copy


@dataclass
class LogMonitor:
    """One log item's reader. Not thread-safe: one collector calls it."""

    item: LogItem
    state: LogState
    new: bool = False  # a new item (server lastlogsize 0): mode=skip starts at the end
    errors: int = field(default=0)
    # MaxLinesPerSecond as a budget that refills with time, so a check rerun early (the buffer
    # was full) gets the lines of the time that passed, not a fresh check's worth
    allowance: int | None = None
    last_read: float | None = None

    @classmethod
    def start(cls, item: LogItem, lastlogsize: int, mtime: int, extra: str = "") -> LogMonitor:
        return cls(item, LogState.load(lastlogsize, mtime, extra), new=lastlogsize == 0 and not extra)

    def budgets(self, delay: float, max_lines_per_second: int) -> tuple[int, int]:
        """(lines that may be sent, lines that may be looked at) in one full check of this item."""
        secs = max(1, round(delay))
        per_sec = self._per_sec(max_lines_per_second)
        if self.item.count:
            return per_sec * secs, per_sec * secs
        return per_sec * secs, SCAN_FACTOR * per_sec * secs

    def _per_sec(self, max_lines_per_second: int) -> int:
        if self.item.count:
            return self.item.maxlines or COUNT_FACTOR * max_lines_per_second
        return self.item.maxlines or max_lines_per_second

    def _budget(self, delay: float, max_lines_per_second: int, now: float) -> tuple[int, float]:
        """(lines this check may send, the time they are counted up to)."""
        full = self.budgets(delay, max_lines_per_second)[0]
        if self.allowance is None or self.last_read is None:
            return full, now
        # whole seconds, a check up to 0.1 s early counting as on time; the rest of a second carries over
        secs = max(0, int(now - self.last_read + 0.1))
        got = self.allowance + self._per_sec(max_lines_per_second) * secs
        if got >= full:
            return full, now
        return got, self.last_read + secs

    def read(self, delay: float, max_lines_per_second: int, send_limit: int | None = None,
             now: float | None = None) -> LogBatch:
        """New whole lines since the position, as values; the monitor's position does not move.

        `send_limit` caps the values further (the room left in the buffer). Lines that did not match
        move the position too: a position-only record (value None) ends the batch then.
        """
        now = time.monotonic() if now is None else now
        files = _files(self.item)
        initial = self.state.copy()
        st = self.state.copy()
        skipped: set[str] = set()
        if st.files is None:
            st.files = self._initial_marks(files, st)
        else:
            skipped = self._identify(files, st)
        budget, counted_to = self._budget(delay, max_lines_per_second, now)
        to_send = budget
        to_look = budget if self.item.count else SCAN_FACTOR * budget
        if send_limit is not None:
            to_send = min(to_send, send_limit)
        records: list[LogRecord] = []
        processed = matched = 0
        for f in files:
            if processed >= to_look or len(records) >= to_send:
                break
            if f.ident in skipped:
                continue
            try:
                processed, matched = self._read_file(f, st, records, processed, matched, to_send, to_look)
            except FileNotFoundError:
                continue  # rotated away while we looked
            except OSError as e:
                raise LogReadError(f"Cannot read file \"{f.path}\": {e.strerror}") from None
        present = {f.ident for f in files} - skipped
        st.files = {i: m for i, m in st.files.items() if i in present}
        self.allowance = budget - (processed if self.item.count else len(records))
        self.last_read = counted_to
        if self.item.count:
            # all or nothing: taking the count takes every line read (state_after(1) is final)
            records = [LogRecord(str(matched), st.lastlogsize, st.mtime, None)]
        else:
            sent = (records[-1].lastlogsize, records[-1].mtime) if records else (initial.lastlogsize, initial.mtime)
            if (st.lastlogsize, st.mtime) != sent:
                records.append(LogRecord(None, st.lastlogsize, st.mtime, None))
        return LogBatch(records, initial, st, processed)

    def commit(self, state: LogState) -> None:
        self.state = state
        self.new = False

    def _initial_marks(self, files: list[_File], st: LogState) -> dict[str, FileMark]:
        """Match lastlogsize/mtime from the server (or a file without our map) to the files on disk."""
        marks: dict[str, FileMark] = {}
        skip_all = self.item.skip and self.new
        current_found = False
        for f in files:
            if skip_all:
                pos = f.size
                mark = self._mark(f, pos)
                st.lastlogsize, st.mtime = f.size, f.mtime if self.item.rotate else _fingerprint(mark.tail)
                marks[f.ident] = mark
                continue
            if not self.item.rotate:
                pos = self._resume_at(f, st.lastlogsize, st.mtime)
            elif f.mtime < st.mtime:
                pos = f.size  # older than the file the position belongs to: done before
            elif not current_found:
                current_found = True
                pos = self._resume_at(f, st.lastlogsize, 0)
            else:
                pos = 0
            marks[f.ident] = self._mark(f, pos)
        return marks

    def _resume_at(self, f: _File, lastlogsize: int, fingerprint: int) -> int:
        """Where to go on in `f` from the server's lastlogsize (and, for log[], our fingerprint in mtime).

        A file truncated and written past the old size while the agent was away would otherwise
        lose the lines before lastlogsize: go on there only if the bytes before it are those we read
        (the fingerprint), or, without one (a position from zabbix_agentd, or logrt), if a line ends there.
        """
        if lastlogsize == 0 or f.size < lastlogsize:
            return 0
        try:
            with open(f.path, "rb") as fh:
                if fingerprint:
                    return lastlogsize if _fingerprint(_tail(fh, lastlogsize)) == fingerprint else 0
                nl, width = _newline(self.item.codec)
                fh.seek(lastlogsize - width)
                return lastlogsize if fh.read(width) == nl else 0
        except OSError:
            return lastlogsize

    def _mark(self, f: _File, pos: int) -> FileMark:
        n = min(BLOCK, f.size)
        try:
            with open(f.path, "rb") as fh:
                head, tail = _hash(fh, 0, n), _tail(fh, pos)
        except OSError:
            n, head, tail = 0, _sha(b""), ""
        return FileMark(f.dev, f.ino, pos, n, head, tail)

    def _identify(self, files: list[_File], st: LogState) -> set[str]:
        """Give every file on disk its position: known and unchanged files keep theirs.

        A file not known (or whose content is no longer what we saw) is, in this order: with
        copytruncate, the copy of a file we read (it goes on where that one stood, or is skipped
        while the original is still whole and has it all); a file older than the position (done
        before: compressed, or renamed while the agent was away); else a new file, read from the
        start. Returns the files to skip this time.
        """
        assert st.files is not None
        holding: dict[str, bool] = {}
        for f in files:
            m = st.files.get(f.ident)
            if m is None:
                continue
            try:
                with open(f.path, "rb") as fh:
                    holding[f.ident] = _holds(fh, os.fstat(fh.fileno()).st_size, m)
            except OSError:
                holding[f.ident] = True  # cannot tell now: leave it to the read
        by_ident = {f.ident: f for f in files}
        skipped: set[str] = set()
        for f in files:
            if holding.get(f.ident):
                continue
            pos: int | None = None
            # only a new inode can be a copy: a known one that changed was truncated in place (it may
            # start as the copy does, with the same banner, and must still be read from its start)
            if self.item.options == "copytruncate" and f.ident not in st.files:
                pos = self._copy_position(f, st.files, holding, by_ident)
                if pos == _WAIT:
                    skipped.add(f.ident)
                    continue
            if pos is None:
                pos = f.size if self.item.rotate and f.mtime < st.mtime else 0
            st.files[f.ident] = self._mark(f, pos)
        return skipped

    def _copy_position(self, f: _File, marks: dict[str, FileMark], holding: dict[str, bool],
                       by_ident: dict[str, _File]) -> int | None:
        """Where the copy `f` goes on, _WAIT to skip it for now, or None if it is not a copy of a known file."""
        try:
            with open(f.path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                for m in marks.values():
                    if m.ident == f.ident or m.head_len == 0:
                        continue
                    orig = by_ident.get(m.ident)
                    if orig is not None and holding.get(m.ident):
                        if self._is_prefix_of(fh, size, orig):
                            return size if m.pos >= size else _WAIT
                    elif _holds(fh, size, m):
                        return m.pos  # the original was truncated (or is gone): the copy has the rest
        except OSError:
            return None
        return None

    @staticmethod
    def _is_prefix_of(fh: BinaryIO, size: int, orig: _File) -> bool:
        """The open file's first and last blocks are the same bytes at the same offsets in `orig`."""
        if size == 0 or orig.size < size:
            return False
        n = min(BLOCK, size)
        try:
            with open(orig.path, "rb") as oh:
                return (_hash(fh, 0, n) == _hash(oh, 0, n) and _tail(fh, size) == _tail(oh, size))
        except OSError:
            return False

    def _read_file(self, f: _File, st: LogState, records: list[LogRecord], processed: int, matched: int,
                   to_send: int, to_look: int) -> tuple[int, int]:
        assert st.files is not None
        item = self.item
        with open(f.path, "rb") as fh:
            mark = st.files.get(f.ident)
            size = os.fstat(fh.fileno()).st_size
            pos = 0 if mark is None else mark.pos
            if size < pos:
                pos = 0  # truncated since it was identified
            head_len = min(BLOCK, size)
            head = _hash(fh, 0, head_len)
            carry_from = max(0, pos - BLOCK)
            fh.seek(carry_from)
            carry = fh.read(pos - carry_from)  # the bytes just before `base`, for the tail hashes
            if mark is None or mark.pos != pos or mark.head_len != head_len:
                st.files[f.ident] = FileMark(f.dev, f.ino, pos, head_len, head, _sha(carry))
            if size <= pos:
                return processed, matched
            mtime = int(os.fstat(fh.fileno()).st_mtime) if item.rotate else 0
            nl, width = _newline(item.codec)
            fh.seek(pos)
            buf = b""
            base = pos  # file offset of buf[0]
            eof = False
            moved = False

            def tail_at(end: int) -> str:
                if end >= BLOCK:
                    return _sha(buf[end - BLOCK:end])
                return _sha(carry[len(carry) - min(len(carry), BLOCK - end):] + buf[:end])

            while processed < to_look and len(records) < to_send:
                start = pos - base
                i = _find(buf, nl, width, start)
                if i < 0:
                    if len(buf) - start >= MAX_LINE_BYTES:
                        end = start + MAX_LINE_BYTES  # an over-long line: its parts are read as lines
                        line = buf[start:end]
                    elif eof:
                        break  # a partial last line waits for its newline
                    else:
                        chunk = fh.read(READ_CHUNK)
                        if not chunk:
                            eof = True
                        carry = (carry + buf[:start])[-BLOCK:]
                        buf = buf[start:] + chunk
                        base = pos
                        continue
                else:
                    line, end = buf[start:i], i + len(nl)
                pos = base + end
                processed += 1
                moved = True
                text = line.decode(item.codec, errors="replace").removesuffix("\r")
                value = self._match(text)
                st.lastlogsize = pos
                if item.rotate:
                    st.mtime = mtime
                if value is not None:
                    matched += 1
                    if not item.count:
                        m = FileMark(f.dev, f.ino, pos, head_len, head, tail_at(end))
                        records.append(LogRecord(value, pos, mtime if item.rotate else _fingerprint(m.tail), m))
            if moved:
                final = FileMark(f.dev, f.ino, pos, head_len, head, tail_at(pos - base))
                st.files[f.ident] = final
                if not item.rotate:
                    st.mtime = _fingerprint(final.tail)
        return processed, matched

    def _match(self, text: str) -> str | None:
        rx = self.item.regexp
        if rx is None:
            return text
        m = rx.search(text)
        if m is None:
            return None
        if not self.item.output:
            return text
        return _expand(self.item.output, m)


_GROUP_REF = re.compile(r"\\([0-9])")


def _expand(template: str, m: re.Match[str]) -> str:
    def ref(g: re.Match[str]) -> str:
        n = int(g[1])
        if n > (m.re.groups or 0):
            return ""
        return m.group(n) or ""

    return _GROUP_REF.sub(ref, template)


def _find(buf: bytes, nl: bytes, width: int, start: int) -> int:
    i = buf.find(nl, start)
    while width > 1 and i >= 0 and (i - start) % width:
        i = buf.find(nl, i + 1)
    return i
