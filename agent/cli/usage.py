"""Command-line mistakes answered as zabbix_get and zabbix_sender answer them.

They read options with zbx_getopt: a mistake prints `prog [PID]: <what>` on stderr (getopt's
wording: "invalid option -- x", "option requires an argument -- k", "unrecognized option `--x'")
and the usage on stdout, and the program exits 1. argparse would print both on stderr and exit 2,
so options are checked here first.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass


class UsageError(Exception):
    """A mistake on the command line; `message` may be empty (only the usage is printed)."""

    def __init__(self, message: str = "", usage: bool = True, stray: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage and not stray  # print the usage after the message
        self.stray = stray  # a stray argument: zabbix_get suggests --help instead


@dataclass(frozen=True)
class Options:
    with_arg: str  # short options taking a value, e.g. "spIkt"
    flags: str  # short options without one
    long_with_arg: frozenset[str]
    long_flags: frozenset[str]


def check(argv: Sequence[str], opts: Options) -> None:
    """Raise UsageError for what zbx_getopt refuses: unknown options, missing values, stray arguments."""
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            if i + 1 < len(argv):
                raise UsageError(f'invalid parameter "{argv[i + 1]}"', stray=True)
            return
        if arg.startswith("--"):
            name, eq, _ = arg[2:].partition("=")
            if name in opts.long_with_arg:
                if not eq:
                    if i + 1 >= len(argv):
                        raise UsageError(f"option `--{name}' requires an argument")
                    i += 1
            elif name not in opts.long_flags or eq:
                raise UsageError(f"unrecognized option `--{name}'")
        elif arg.startswith("-") and arg != "-":
            for j, c in enumerate(arg[1:], 1):
                if c in opts.with_arg:
                    if j == len(arg) - 1:
                        if i + 1 >= len(argv):
                            raise UsageError(f"option requires an argument -- {c}")
                        i += 1
                    break
                if c not in opts.flags:
                    raise UsageError(f"invalid option -- {c}")
        else:
            raise UsageError(f'invalid parameter "{arg}"', stray=True)
        i += 1


def fail(prog: str, usage: str, e: UsageError, try_help: bool) -> int:
    """Print the mistake as zabbix_get/zabbix_sender do; returns the exit code (1)."""
    if e.message:
        print(f"{prog} [{os.getpid()}]: {e.message}", file=sys.stderr)
    if e.stray and try_help:
        print(f"Try '{prog} --help' for more information.")
    elif e.usage:
        print(usage, end="")
    return 1
