"""vfs.fs.*, vfs.dev.*, vfs.file.*: file systems, block devices and files, as zabbix_agentd 6.0 on Linux."""

from __future__ import annotations

import codecs
import hashlib
import io
import json
import logging
import os
import re
import stat
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterator
from typing import IO, Any

from vigil.agent import regex
from vigil.agent.checks import CheckContext, NotSupported, check
from vigil.agent.protocol.itemkey import ItemKey

log = logging.getLogger(__name__)
MAX_CONTENTS_SIZE = 64 * 1024  # vfs.file.contents refuses larger files, as zabbix_agentd does
MAX_LINE = 64 * 1024  # vfs.file.regexp/regmatch: zabbix_agentd's read buffer
CHUNK = 64 * 1024
MOUNTS = "/proc/mounts"
DISKSTATS = "/proc/diskstats"

_ORDINAL = ("first", "second", "third", "fourth", "fifth", "sixth")


def max_params(key: ItemKey, n: int) -> None:
    if len(key.params) > n:
        raise NotSupported("Too many parameters.")


def invalid(i: int) -> NotSupported:
    return NotSupported(f"Invalid {_ORDINAL[i]} parameter.")


def oserror_text(e: OSError) -> str:
    """`[2] No such file or directory`: how Zabbix renders errno."""
    return f"[{e.errno}] {e.strerror}"


def fmt6(v: float) -> str:
    return f"{v:.6f}"


def zbx_json(value: Any) -> str:
    """JSON as zabbix_agentd writes it: compact, non-ASCII kept, floats with 6 decimals."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k, ensure_ascii=False)}:{zbx_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(zbx_json(v) for v in value) + "]"
    if isinstance(value, float):
        return fmt6(value)
    return json.dumps(value, ensure_ascii=False)


# ----------------------------------------------------------------------------- file systems


def _mounts() -> list[tuple[str, str]]:
    """(mount point, fs type) per line of /proc/mounts, in order, duplicates kept."""
    out = []
    with open(MOUNTS, encoding="utf-8", errors="replace") as f:
        for line in f:
            fields = line.split()
            if len(fields) >= 3:
                out.append((_unescape_mount(fields[1]), fields[2]))
    return out


def _unescape_mount(s: str) -> str:
    # /proc/mounts writes space, tab, newline and backslash as octal escapes (\040 ...).
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def _statvfs(path: str) -> os.statvfs_result:
    try:
        return os.statvfs(path)
    except OSError as e:
        raise NotSupported(f"Cannot obtain filesystem information: {oserror_text(e)}") from None


def fs_size_stats(path: str) -> dict[str, Any]:
    s = _statvfs(path)
    total = s.f_blocks * s.f_frsize
    free = s.f_bavail * s.f_frsize
    used = (s.f_blocks - s.f_bfree) * s.f_frsize
    # Zabbix relates the percentages to what non-root users can use (used + available).
    base = used + free
    pfree = 100.0 * free / base if base else 0.0
    pused = 100.0 * used / base if base else 0.0
    return {"total": total, "free": free, "used": used, "pfree": pfree, "pused": pused}


def fs_inode_stats(path: str) -> dict[str, Any]:
    s = _statvfs(path)
    total, free, used = s.f_files, s.f_favail, s.f_files - s.f_ffree
    pfree = 100.0 * free / total if total else 100.0
    pused = 100.0 * used / total if total else 0.0
    return {"total": total, "free": free, "used": used, "pfree": pfree, "pused": pused}


_FS_MODES = ("total", "free", "used", "pfree", "pused")


@check("vfs.fs.size")
def fs_size(key: ItemKey, ctx: CheckContext) -> int | float:
    max_params(key, 2)
    path = key.param(0)
    if not path:
        raise NotSupported("Filesystem name cannot be empty.")
    mode = key.param(1, "total")
    if mode not in _FS_MODES:
        raise invalid(1)
    return fs_size_stats(path)[mode]


@check("vfs.fs.inode")
def fs_inode(key: ItemKey, ctx: CheckContext) -> int | float:
    max_params(key, 2)
    path = key.param(0)
    if not path:
        raise invalid(0)
    mode = key.param(1, "total")
    if mode not in _FS_MODES:
        raise invalid(1)
    return fs_inode_stats(path)[mode]


@check("vfs.fs.discovery", params=False)
def fs_discovery(key: ItemKey, ctx: CheckContext) -> str:
    return zbx_json([{"{#FSNAME}": m, "{#FSTYPE}": t} for m, t in _mounts()])


@check("vfs.fs.get", params=False)
def fs_get(key: ItemKey, ctx: CheckContext) -> str:
    out = []
    for mount, fstype in _mounts():
        try:
            size, inodes = fs_size_stats(mount), fs_inode_stats(mount)
        except NotSupported:
            continue  # an unreachable mount (stale NFS, no permission) is left out, as Zabbix does
        out.append({"fsname": mount, "fstype": fstype, "bytes": size, "inodes": inodes})
    return zbx_json(out)


# ----------------------------------------------------------------------------- block devices


def _diskstats() -> list[tuple[int, int, str, list[int]]]:
    """(major, minor, name, [read ops, read sectors, write ops, write sectors]) per device."""
    out = []
    with open(DISKSTATS) as f:
        for line in f:
            p = line.split()
            if len(p) >= 10:
                out.append((int(p[0]), int(p[1]), p[2], [int(p[3]), int(p[5]), int(p[7]), int(p[9])]))
            elif len(p) >= 7:  # old kernels list partitions with four counters
                out.append((int(p[0]), int(p[1]), p[2], [int(p[3]), int(p[4]), int(p[5]), int(p[6])]))
    return out


def _dev_rdev(devname: str) -> int | None:
    path = devname if devname.startswith("/dev/") else "/dev/" + devname
    try:
        return os.stat(path).st_rdev
    except OSError:
        return None


def disk_counters(devname: str) -> list[int] | None:
    """Summed counters for a device (by name or /dev node), or all devices for '' / 'all'."""
    everything = devname in ("", "all")
    rdev = None if everything else _dev_rdev(devname)
    total = [0, 0, 0, 0]
    found = False
    for major, minor, name, counters in _diskstats():
        if not everything and name != devname:
            if rdev is None or os.major(rdev) != major or os.minor(rdev) != minor:
                continue
        total = [a + b for a, b in zip(total, counters, strict=True)]
        found = True
        if not everything:
            break
    return total if found else None


def _kernel_devname(devname: str) -> str | None:
    rdev = _dev_rdev(devname)
    if rdev is None:
        return None
    for major, minor, name, _ in _diskstats():
        if os.major(rdev) == major and os.minor(rdev) == minor:
            return name
    return None


class DiskSampler:
    """Samples /proc/diskstats once a second for the devices asked about, keeping 15 minutes.

    zabbix_agentd's collector does the same; a device is added on its first request, so the
    first answers are 0 until a second sample exists.
    """

    HISTORY = 15 * 60 + 1
    PERIODS = {"avg1": 60, "avg5": 300, "avg15": 900}

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._lock = threading.Lock()
        self._samples: dict[str, deque[tuple[float, list[int]]]] = {}
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            try:
                self.sample()
            except Exception:  # one bad read of /proc/diskstats must not end the sampling for good
                log.exception("disk statistics sampling failed; continuing")

    def sample(self) -> None:
        with self._lock:
            names = list(self._samples)
        now = time.monotonic()
        for name in names:
            counters = disk_counters(name)
            if counters is not None:
                with self._lock:
                    self._samples[name].append((now, counters))

    def add(self, name: str) -> None:
        with self._lock:
            if name in self._samples:
                return
            self._samples[name] = deque(maxlen=self.HISTORY)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="vfs-dev-sampler", daemon=True)
                self._thread.start()
        counters = disk_counters(name)
        if counters is not None:
            with self._lock:
                self._samples[name].append((time.monotonic(), counters))

    def rate(self, name: str, index: int, mode: str) -> float:
        with self._lock:
            samples = list(self._samples.get(name, ()))
        if len(samples) < 2:
            return 0.0
        t1, last = samples[-1]
        first = samples[0]
        for s in reversed(samples):
            if t1 - s[0] >= self.PERIODS[mode]:
                first = s
                break
        dt = t1 - first[0]
        if dt <= 0:
            return 0.0
        return max(0, last[index] - first[1][index]) / dt


SAMPLER = DiskSampler()


def _dev_rw(key: ItemKey, write: bool) -> int | float:
    max_params(key, 3)
    devname = key.param(0)
    kind = key.param(1, "sps")
    if kind not in ("sps", "ops", "sectors", "operations"):
        raise invalid(1)
    ops_index, sect_index = (2, 3) if write else (0, 1)
    if kind in ("sectors", "operations"):
        if len(key.params) > 2:
            raise NotSupported("Invalid number of parameters.")
        counters = disk_counters(devname)
        if counters is None:
            raise NotSupported("Cannot obtain disk information.")
        return counters[sect_index if kind == "sectors" else ops_index]
    mode = key.param(2, "avg1")
    if mode not in DiskSampler.PERIODS:
        raise invalid(2)
    if devname in ("", "all"):
        name = ""
    else:
        kname = _kernel_devname(devname)
        if kname is None:
            raise NotSupported("Cannot obtain device name used internally by the kernel.")
        name = kname
    if disk_counters(name) is None:
        raise NotSupported("Cannot obtain disk information.")
    SAMPLER.add(name)
    return SAMPLER.rate(name, sect_index if kind == "sps" else ops_index, mode)


@check("vfs.dev.read")
def dev_read(key: ItemKey, ctx: CheckContext) -> int | float:
    return _dev_rw(key, write=False)


@check("vfs.dev.write")
def dev_write(key: ItemKey, ctx: CheckContext) -> int | float:
    return _dev_rw(key, write=True)


def _block_type(name: str) -> str | None:
    try:
        st = os.stat("/dev/" + name)
    except OSError:
        return None
    if not stat.S_ISBLK(st.st_mode):
        return None
    base = f"/sys/dev/block/{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    try:
        with open(base + "/device/type") as f:
            if f.read().strip() == "5":  # SCSI CD/DVD
                return "rom"
    except OSError:
        pass
    try:
        with open(base + "/uevent") as f:
            for line in f:
                if line.startswith("DEVTYPE="):
                    return line[len("DEVTYPE="):].rstrip("\n")
    except OSError:
        pass
    return ""


@check("vfs.dev.discovery", params=False)
def dev_discovery(key: ItemKey, ctx: CheckContext) -> str:
    try:
        names = os.listdir("/dev")
    except OSError:
        raise NotSupported("Cannot obtain device list: failed to open /dev/ directory.") from None
    out = []
    for name in names:
        t = _block_type(name)
        if t is not None:
            out.append({"{#DEVNAME}": name, "{#DEVTYPE}": t})
    return zbx_json(out)


# ----------------------------------------------------------------------------- files


def _stat(path: str) -> os.stat_result:
    try:
        return os.stat(path)
    except OSError as e:
        raise NotSupported(f"Cannot obtain file information: {oserror_text(e)}") from None


def _open(path: str) -> IO[bytes]:
    """Open for reading with Zabbix's wording; a directory fails at 'read', as with open(2)+read(2)."""
    try:
        return open(path, "rb")  # noqa: SIM115 - callers close it
    except IsADirectoryError:
        raise NotSupported("Cannot read from file.") from None
    except OSError as e:
        raise NotSupported(f"Cannot open file: {oserror_text(e)}") from None


def _required_path(key: ItemKey) -> str:
    path = key.param(0)
    if not path:
        raise invalid(0)
    return path


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise NotSupported("Timeout while processing item.")


_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


def codec_for(encoding: str, head: bytes) -> tuple[str, int]:
    """The Python codec for Zabbix's `encoding` parameter, and how many BOM bytes to skip.

    Without an encoding zabbix_agentd honours a byte-order mark and otherwise passes the bytes
    through; we read those as UTF-8 with invalid sequences replaced. An encoding Python does not
    know is treated the same way, as zabbix_agentd copies the bytes when iconv refuses it.
    """
    if encoding:
        try:
            name = codecs.lookup(encoding).name
        except LookupError:
            return "utf-8", 0
        if name == "utf-8" and head.startswith(codecs.BOM_UTF8):
            return name, 3
        if name in ("utf-16", "utf-32"):
            for bom, bom_codec in _BOMS:
                if bom_codec.startswith(name) and head.startswith(bom):
                    return bom_codec, len(bom)
        return name, 0
    for bom, bom_codec in _BOMS:
        if head.startswith(bom):
            return bom_codec, len(bom)
    return "utf-8", 0


def _text_lines(f: IO[bytes], encoding: str) -> Iterator[str]:
    head = f.read(4)
    name, skip = codec_for(encoding, head)
    f.seek(skip)
    try:
        reader = io.TextIOWrapper(f, encoding=name, errors="replace", newline="\n")
        # zabbix_agentd reads 64 KiB at a time: a longer line (a file without newlines) is cut into
        # 64 KiB "lines", and no more than that is ever held
        while line := reader.readline(MAX_LINE):
            yield line
    except OSError:
        raise NotSupported("Cannot read from file.") from None


TYPES = {
    "file": stat.S_IFREG,
    "dir": stat.S_IFDIR,
    "sym": stat.S_IFLNK,
    "sock": stat.S_IFSOCK,
    "bdev": stat.S_IFBLK,
    "cdev": stat.S_IFCHR,
    "fifo": stat.S_IFIFO,
}


def _type_set(text: str) -> set[int]:
    out: set[int] = set()
    for word in text.split(","):
        word = word.strip()
        if word == "all":
            out.update(TYPES.values())
        elif word == "dev":
            out.update((stat.S_IFBLK, stat.S_IFCHR))
        elif word in TYPES:
            out.add(TYPES[word])
        else:
            raise NotSupported(f'Invalid type "{word}".')
    return out


@check("vfs.file.exists")
def file_exists(key: ItemKey, ctx: CheckContext) -> int:
    max_params(key, 3)
    path = _required_path(key)
    incl_text, excl_text = key.param(1), key.param(2)
    excl = _type_set(excl_text) if excl_text else set()
    if incl_text:
        incl = _type_set(incl_text)
    else:
        incl = set(TYPES.values()) if excl else {stat.S_IFREG}
    try:
        lst = os.lstat(path)
    except OSError:
        return 0
    kinds = {stat.S_IFMT(lst.st_mode)}
    if stat.S_ISLNK(lst.st_mode):
        # a symbolic link is both 'sym' and whatever it points to
        try:
            kinds.add(stat.S_IFMT(os.stat(path).st_mode))
        except OSError:
            pass
    return 1 if kinds & incl and not kinds & excl else 0


@check("vfs.file.size")
def file_size(key: ItemKey, ctx: CheckContext) -> int:
    max_params(key, 2)
    path = _required_path(key)
    mode = key.param(1, "bytes")
    if mode not in ("bytes", "lines"):
        raise invalid(1)
    st = _stat(path)
    if mode == "bytes":
        return st.st_size
    deadline = Deadline(ctx.timeout)
    try:
        with open(path, "rb") as f:
            lines = 0
            while chunk := f.read(CHUNK):
                lines += chunk.count(b"\n")
                deadline.check()
    except OSError as e:
        if isinstance(e, IsADirectoryError):
            raise NotSupported(f"Cannot read from file: {oserror_text(e)}") from None
        raise NotSupported(f"Cannot open file: {oserror_text(e)}") from None
    return lines


@check("vfs.file.time")
def file_time(key: ItemKey, ctx: CheckContext) -> int:
    max_params(key, 2)
    path = _required_path(key)
    mode = key.param(1, "modify")
    attr = {"modify": "st_mtime", "access": "st_atime", "change": "st_ctime"}.get(mode)
    if attr is None:
        raise invalid(1)
    return int(getattr(_stat(path), attr))


@check("vfs.file.contents")
def file_contents(key: ItemKey, ctx: CheckContext) -> str:
    max_params(key, 2)
    path = _required_path(key)
    encoding = key.param(1)
    with _open(path) as f:
        try:
            size = os.fstat(f.fileno()).st_size
            if size > MAX_CONTENTS_SIZE:
                raise NotSupported("File is too large for this check.")
            data = f.read(MAX_CONTENTS_SIZE + 1)
        except OSError:
            raise NotSupported("Cannot read from file.") from None
    if len(data) > MAX_CONTENTS_SIZE:
        raise NotSupported("File is too large for this check.")
    name, skip = codec_for(encoding, data[:4])
    text = data[skip:].decode(name, errors="replace")
    # zabbix_agentd's answer is a C string: it ends at the first NUL
    return text.split("\x00", 1)[0].rstrip("\r\n")


def regsub(match: re.Match[str], template: str) -> str | None:
    """Zabbix's output template: \\0-\\9 groups, \\\\ a backslash, \\@ group 1 or nothing."""
    if not template:
        return match.string
    out: list[str] = []
    i = 0
    while (j := template.find("\\", i)) != -1 and j + 1 < len(template):
        c = template[j + 1]
        if c == "\\":
            out.append(template[i : j + 1])
            i = j + 2
        elif c.isdigit():
            out.append(template[i:j])
            n = int(c)
            if n <= (match.re.groups) and match.group(n) is not None:
                out.append(match.group(n))
            i = j + 2
        elif c == "@":
            # zabbix_agentd drops the text before \@ here; kept identical on purpose
            if match.re.groups < 1 or match.group(1) is None:
                return None
            out.append(match.group(1))
            i = j + 2
        else:
            out.append(template[i : j + 1])
            i = j + 1
    out.append(template[i:])
    return "".join(out)


def _line_range(key: ItemKey) -> tuple[int, int]:
    start_text, end_text = key.param(3), key.param(4)
    if start_text and not start_text.isdigit():
        raise invalid(3)
    if end_text and not end_text.isdigit():
        raise invalid(4)
    start = int(start_text) if start_text else 0
    end = int(end_text) if end_text else 2**63
    if start > end:
        raise NotSupported("Start line parameter must not exceed end line.")
    return start, end


def _compile(pattern: str) -> re.Pattern[str]:
    try:
        return regex.compile(pattern, re.MULTILINE)
    except re.error as e:
        raise NotSupported(f"Invalid regular expression in the second parameter: {e}.") from None


def _scan(key: ItemKey, ctx: CheckContext, nparams: int) -> Iterator[re.Match[str]]:
    max_params(key, nparams)
    path = _required_path(key)
    pattern = key.param(1)
    if not pattern:
        raise invalid(1)
    encoding = key.param(2)
    start, end = _line_range(key)
    rx = _compile(pattern)
    deadline = Deadline(ctx.timeout)
    with _open(path) as f:
        for number, line in enumerate(_text_lines(f, encoding), 1):
            if number % 1024 == 0:
                deadline.check()
            if number < start:
                continue
            if number > end:
                return
            m = rx.search(line.rstrip("\r\n"))
            if m is not None:
                yield m


@check("vfs.file.regexp")
def file_regexp(key: ItemKey, ctx: CheckContext) -> str:
    template = key.param(5)
    for m in _scan(key, ctx, 6):
        return regsub(m, template) or ""
    return ""


@check("vfs.file.regmatch")
def file_regmatch(key: ItemKey, ctx: CheckContext) -> int:
    for _ in _scan(key, ctx, 5):
        return 1
    return 0


# --- POSIX cksum: CRC-32 with polynomial 0x04C11DB7 fed MSB first, the length appended, complemented.
# zlib's CRC-32 is the bit-reflected form of the same polynomial, so feeding it bit-reversed bytes
# and bit-reversing its register gives the POSIX value at C speed.

_REV8 = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))
_M32 = 0xFFFFFFFF


class PosixCksum:
    def __init__(self) -> None:
        self._reg = 0  # the reflected CRC register, no initial or final xor
        self.length = 0

    def _feed(self, data: bytes) -> None:
        self._reg = zlib.crc32(data.translate(_REV8), self._reg ^ _M32) ^ _M32

    def update(self, data: bytes) -> None:
        self.length += len(data)
        self._feed(data)

    def value(self) -> int:
        n, tail = self.length, bytearray()
        while n:
            tail.append(n & 0xFF)
            n >>= 8
        reg = zlib.crc32(bytes(tail).translate(_REV8), self._reg ^ _M32) ^ _M32
        return int(f"{reg:032b}"[::-1], 2) ^ _M32


def _digest(path: str, mode: str, ctx: CheckContext) -> str | int:
    h: Any = PosixCksum() if mode == "crc32" else hashlib.new(mode)
    deadline = Deadline(ctx.timeout)
    with _open(path) as f:
        try:
            while chunk := f.read(CHUNK):
                h.update(chunk)
                deadline.check()
        except OSError:
            raise NotSupported("Cannot read from file.") from None
    return h.value() if mode == "crc32" else h.hexdigest()


@check("vfs.file.cksum")
def file_cksum(key: ItemKey, ctx: CheckContext) -> str | int:
    max_params(key, 2)
    path = _required_path(key)
    mode = key.param(1, "crc32")
    if mode not in ("crc32", "md5", "sha256"):
        raise invalid(1)
    return _digest(path, mode, ctx)


@check("vfs.file.md5sum")
def file_md5sum(key: ItemKey, ctx: CheckContext) -> str | int:
    max_params(key, 1)
    return _digest(_required_path(key), "md5", ctx)
