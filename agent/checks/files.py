"""vfs.file.get, vfs.file.owner, vfs.file.permissions and vfs.dir.count, vfs.dir.size, vfs.dir.get,
with zabbix_agentd 6.0's parameters, JSON fields and messages.

The directory keys walk the tree without following symbolic links (lstat, as zabbix_agentd); the
directory itself is not listed but its size counts in vfs.dir.size. Entries that vanish or cannot be
read while walking are skipped. The walk stops with "Timeout while processing item." at Timeout.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import stat
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from vigil.agent import regex
from vigil.agent.checks import CheckContext, NotSupported, check
from vigil.agent.checks.keyparams import ORDINALS, at_most, invalid
from vigil.agent.checks.vfs import oserror_text
from vigil.agent.protocol.itemkey import ItemKey

TYPE_NAMES = {
    stat.S_IFREG: "file", stat.S_IFDIR: "dir", stat.S_IFLNK: "sym", stat.S_IFSOCK: "sock",
    stat.S_IFBLK: "bdev", stat.S_IFCHR: "cdev", stat.S_IFIFO: "fifo",
}
TYPE_WORDS = {v: k for k, v in TYPE_NAMES.items()}


def _lstat(path: str) -> os.stat_result:
    try:
        return os.lstat(path)
    except OSError as e:
        raise NotSupported(f"Cannot obtain file information: {oserror_text(e)}") from None


def _stat(path: str) -> os.stat_result:
    """stat(2), following a link: vfs.file.owner and vfs.file.permissions describe the target."""
    try:
        return os.stat(path)
    except OSError as e:
        raise NotSupported(f"Cannot obtain file information: {oserror_text(e)}") from None


def _user(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


def _permissions(st: os.stat_result) -> str:
    return f"{stat.S_IMODE(st.st_mode):04o}"


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(int(t)))


def file_info(path: str, st: os.stat_result) -> dict[str, Any]:
    """One entry of vfs.file.get / vfs.dir.get, fields in zabbix_agentd's order."""
    path = path.rstrip("/") or "/"
    dirname, basename = os.path.split(path)
    times = {"access": int(st.st_atime), "modify": int(st.st_mtime), "change": int(st.st_ctime)}
    return {
        "basename": basename or "/",
        "pathname": path,
        "dirname": dirname or "/",
        "type": TYPE_NAMES.get(stat.S_IFMT(st.st_mode), "file"),
        "user": _user(st.st_uid),
        "group": _group(st.st_gid),
        "permissions": _permissions(st),
        "uid": st.st_uid,
        "gid": st.st_gid,
        "size": st.st_size,
        "time": {k: _iso(v) for k, v in times.items()},
        "timestamp": times,
    }


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _path_param(key: ItemKey) -> str:
    path = key.param(0)
    if not path:
        raise invalid(0)
    return path


@check("vfs.file.get")
def vfs_file_get(key: ItemKey, ctx: CheckContext) -> str:
    at_most(key, 1)
    path = _path_param(key)
    return _dumps(file_info(path, _lstat(path)))


@check("vfs.file.owner")
def vfs_file_owner(key: ItemKey, ctx: CheckContext) -> str | int:
    at_most(key, 3)
    path = _path_param(key)
    owner = key.param(1, "user")
    if owner not in ("user", "group"):
        raise invalid(1)
    result = key.param(2, "name")
    if result not in ("name", "id"):
        raise invalid(2)
    st = _stat(path)
    ident = st.st_uid if owner == "user" else st.st_gid
    if result == "id":
        return ident
    return _user(ident) if owner == "user" else _group(ident)


@check("vfs.file.permissions")
def vfs_file_permissions(key: ItemKey, ctx: CheckContext) -> str:
    at_most(key, 1)
    return _permissions(_stat(_path_param(key)))


# --- directories ---------------------------------------------------------------------------------


# Python's words for the commonest regexp errors, in PCRE2's, which zabbix_agentd reports
_PCRE_WORDS = {
    "missing ), unterminated subpattern": "missing closing parenthesis",
    "unbalanced parenthesis": "unmatched closing parenthesis",
    "unterminated character set": "missing terminating ] for character class",
    "nothing to repeat": "quantifier does not follow a repeatable item",
    "multiple repeat": "quantifier does not follow a repeatable item",
}


def _regex(key: ItemKey, i: int) -> re.Pattern[str] | None:
    text = key.param(i)
    if not text:
        return None
    try:
        return regex.compile(text)
    except re.error as e:
        why = _PCRE_WORDS.get(e.msg, e.msg)
        raise NotSupported(f"Invalid regular expression in {ORDINALS[i]} parameter: {why}") from None


def _types(text: str, i: int) -> set[int]:
    out: set[int] = set()
    for word in (w.strip() for w in text.split(",")):
        if word == "all":
            out.update(TYPE_NAMES)
        elif word == "dev":
            out.update((stat.S_IFBLK, stat.S_IFCHR))
        elif word in TYPE_WORDS:
            out.add(TYPE_WORDS[word])
        elif word:
            raise NotSupported(f'Invalid type "{word}".')
    return out


_SUFFIX = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_TSUFFIX = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _number(text: str, i: int, units: dict[str, int]) -> int | None:
    if not text:
        return None
    mult = 1
    if text[-1] in units:
        mult, text = units[text[-1]], text[:-1]
    if not text.isdigit():
        raise invalid(i)
    return int(text) * mult


@dataclass
class DirFilter:
    incl: re.Pattern[str] | None = None
    excl: re.Pattern[str] | None = None
    excl_dir: re.Pattern[str] | None = None
    types_incl: set[int] | None = None
    types_excl: set[int] | None = None
    max_depth: int = -1
    min_size: int | None = None
    max_size: int | None = None
    min_age: int | None = None
    max_age: int | None = None

    def wants(self, name: str, st: os.stat_result, now: float) -> bool:
        kind = stat.S_IFMT(st.st_mode)
        if self.types_incl is not None and kind not in self.types_incl:
            return False
        if self.types_excl is not None and kind in self.types_excl:
            return False
        if self.incl is not None and self.incl.search(name) is None:
            return False
        if self.excl is not None and self.excl.search(name) is not None:
            return False
        if self.min_size is not None and st.st_size < self.min_size:
            return False
        if self.max_size is not None and st.st_size > self.max_size:
            return False
        age = now - st.st_mtime
        if self.min_age is not None and age < self.min_age:
            return False
        return not (self.max_age is not None and age > self.max_age)


def _depth(key: ItemKey, i: int) -> int:
    text = key.param(i)
    if not text:
        return -1
    try:
        n = int(text)
    except ValueError:
        raise invalid(i) from None
    if n < -1:
        raise invalid(i)
    return n


def _dir_filter(key: ItemKey) -> DirFilter:
    """vfs.dir.count/get: dir, regex_incl, regex_excl, types_incl, types_excl, max_depth, min_size,
    max_size, min_age, max_age, regex_excl_dir."""
    at_most(key, 11)
    f = DirFilter(incl=_regex(key, 1), excl=_regex(key, 2), excl_dir=_regex(key, 10))
    incl, excl = key.param(3), key.param(4)
    f.types_incl = _types(incl, 3) if incl else None
    f.types_excl = _types(excl, 4) if excl else None
    f.max_depth = _depth(key, 5)
    f.min_size = _number(key.param(6), 6, _SUFFIX)
    f.max_size = _number(key.param(7), 7, _SUFFIX)
    f.min_age = _number(key.param(8), 8, _TSUFFIX)
    f.max_age = _number(key.param(9), 9, _TSUFFIX)
    return f


def _open_dir(path: str) -> os.stat_result:
    try:
        st = os.stat(path)
    except OSError as e:
        raise NotSupported(f"Cannot obtain directory information: {oserror_text(e)}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise NotSupported("First parameter is not a directory.")
    return st


def walk(root: str, max_depth: int, excl_dir: re.Pattern[str] | None, timeout: float
         ) -> Iterator[tuple[str, str, os.stat_result]]:
    """(path, name, lstat) of everything under `root` without following links, breadth-first in
    directory order as zabbix_agentd lists it."""
    end = time.monotonic() + timeout
    queue: deque[tuple[str, int]] = deque([(root, 0)])
    while queue:
        d, depth = queue.popleft()
        try:
            with os.scandir(d) as it:
                entries = list(it)
        except OSError:
            continue
        for e in entries:
            if time.monotonic() > end:
                raise NotSupported("Timeout while processing item.")
            path = os.path.join(d, e.name)
            try:
                st = os.lstat(path)
            except OSError:
                continue
            is_dir = stat.S_ISDIR(st.st_mode)
            if is_dir and excl_dir is not None and excl_dir.search(e.name) is not None:
                continue  # neither listed nor entered
            yield path, e.name, st
            if is_dir and (max_depth < 0 or depth < max_depth):
                queue.append((path, depth + 1))


@check("vfs.dir.count")
def vfs_dir_count(key: ItemKey, ctx: CheckContext) -> int:
    f = _dir_filter(key)
    root = _path_param(key)
    _open_dir(root)
    now = time.time()
    return sum(1 for _, name, st in walk(root, f.max_depth, f.excl_dir, ctx.timeout) if f.wants(name, st, now))


@check("vfs.dir.get")
def vfs_dir_get(key: ItemKey, ctx: CheckContext) -> str:
    f = _dir_filter(key)
    root = _path_param(key)
    _open_dir(root)
    now = time.time()
    return _dumps([file_info(path, st) for path, name, st in walk(root, f.max_depth, f.excl_dir, ctx.timeout)
                   if f.wants(name, st, now)])


@check("vfs.dir.size")
def vfs_dir_size(key: ItemKey, ctx: CheckContext) -> int:
    """vfs.dir.size[dir,<regex_incl>,<regex_excl>,<mode>,<max_depth>,<regex_excl_dir>]"""
    at_most(key, 6)
    incl, excl, excl_dir = _regex(key, 1), _regex(key, 2), _regex(key, 5)
    mode = key.param(3, "apparent")
    if mode not in ("apparent", "disk"):
        raise invalid(3)
    max_depth = _depth(key, 4)
    root = _path_param(key)
    st = _open_dir(root)

    def size(s: os.stat_result) -> int:
        return s.st_blocks * 512 if mode == "disk" else s.st_size

    def wanted(name: str) -> bool:
        return (incl is None or incl.search(name) is not None) and (excl is None or excl.search(name) is None)

    total = size(st) if wanted(os.path.basename(root.rstrip("/")) or "/") else 0
    for _, name, est in walk(root, max_depth, excl_dir, ctx.timeout):
        if wanted(name):
            total += size(est)
    return total
