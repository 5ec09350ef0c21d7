"""Regular expressions as the agent evaluates them: PCRE syntax on Python's `re`.

zabbix_agentd compiles every regexp (log, logrt and their file names, log.count, vfs.file.regexp,
vfs.file.regmatch, web.page.regexp, proc.* cmdline) with PCRE. Python's `re` is close, but it has no
POSIX bracket classes: `[[:digit:]]` would be a set of the characters `[:digt` followed by `]`.
`translate` rewrites them, inside brackets only, to the ASCII ranges PCRE gives them (without UCP);
`compile` is the one entry point every check uses, so a class means the same in every key.
"""

from __future__ import annotations

import re
from functools import lru_cache

# PCRE's POSIX classes (no UCP): ASCII only. `word` is PCRE's extension.
POSIX_CLASSES = {
    "alnum": "a-zA-Z0-9", "alpha": "a-zA-Z", "ascii": r"\x00-\x7f", "blank": r" \t",
    "cntrl": r"\x00-\x1f\x7f", "digit": "0-9", "graph": "!-~", "lower": "a-z", "print": " -~",
    "punct": r"!-/:-@\[-`{-~", "space": r"\t\n\x0b\x0c\r ", "upper": "A-Z", "word": "A-Za-z0-9_",
    "xdigit": "0-9A-Fa-f",
}
# `[:^name:]` (PCRE: not in the class) inside a set: only these have a Python escape for the complement
NEGATED_CLASSES = {"digit": r"\D", "space": r"\S", "word": r"\W"}

_CLASS = re.compile(r"\[:(\^?)([a-z]*):\]")


def translate(pattern: str) -> str:
    """`pattern` with POSIX classes replaced; raises re.error where PCRE would refuse the pattern."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\":
            out.append(pattern[i:i + 2])
            i += 2
        elif c == "[":
            i = _bracket(pattern, i, out)
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _bracket(pattern: str, i: int, out: list[str]) -> int:
    """Copy the bracket expression starting at pattern[i] == "[" into `out`; returns the index after it."""
    if _CLASS.match(pattern, i):
        raise re.error("POSIX named classes are supported only within a class", pattern, i)
    n = len(pattern)
    out.append("[")
    i += 1
    if i < n and pattern[i] == "^":
        out.append("^")
        i += 1
    if i < n and pattern[i] == "]":  # a leading "]" is a literal, as in PCRE
        out.append(r"\]")
        i += 1
    while i < n:
        c = pattern[i]
        if c == "]":
            out.append("]")
            return i + 1
        if c == "\\":
            out.append(pattern[i:i + 2])
            i += 2
            continue
        if c == "[":
            m = _CLASS.match(pattern, i)
            if m is None:
                out.append(r"\[")  # a literal "[" (Python would warn of a nested set)
                i += 1
                continue
            negated, name = m.group(1), m.group(2)
            if name not in POSIX_CLASSES:
                raise re.error(f"unknown POSIX class name {name!r}", pattern, i)
            if negated:
                if name not in NEGATED_CLASSES:
                    raise re.error(f"negated POSIX class [:^{name}:] is not supported", pattern, i)
                out.append(NEGATED_CLASSES[name])
            else:
                out.append(POSIX_CLASSES[name])
            i = m.end()
            continue
        out.append(c)
        i += 1
    raise re.error("missing terminating ] for character class", pattern, n)


@lru_cache(maxsize=512)
def compile(pattern: str, flags: int = 0) -> re.Pattern[str]:
    """The pattern compiled with POSIX classes translated; raises re.error if it is not valid."""
    return re.compile(translate(pattern), flags)
