"""vigil-get and vigil-sender answer a missing or unknown option as zabbix_get and zabbix_sender do:
the same stream for the message and for the usage, the same first usage line, the same exit code."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import free_port, require

BIN = Path(sys.executable).parent
PEERS = {"vigil-get": "zabbix_get", "vigil-sender": "zabbix_sender"}


def run(program: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([program, *args], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)


def shape(r: subprocess.CompletedProcess[str], name: str) -> tuple[int, str, str]:
    """(exit code, stdout's first line, stderr's message) with the program's name and PID taken out."""
    def clean(text: str) -> str:
        line = text.splitlines()[0] if text else ""
        return re.sub(rf"{name} \[\d+\]: ", "PROG: ", line).replace(name, "PROG")
    return r.returncode, clean(r.stdout), clean(r.stderr)


def compare(ours: str, args: list[str]) -> None:
    theirs = PEERS[ours]
    a = shape(run(str(BIN / ours), args), ours)
    b = shape(run(require(theirs), args), theirs)
    assert a == b, f"{ours} {args}: {a} != {theirs}: {b}"


PORT = str(free_port())  # nothing listens there: a usable command would fail to connect, not print usage

GET_CASES = [
    [], ["-s", "127.0.0.1"], ["-k", "agent.ping"], ["-p", PORT, "-k", "agent.ping"],
    ["-s", "127.0.0.1", "-k", "agent.ping", "-x"], ["-s", "127.0.0.1", "-k"], ["-s"],
    ["-s", "127.0.0.1", "-k", "agent.ping", "-p"], ["--bogus"], ["-s", "127.0.0.1", "--key"],
    ["-s", "127.0.0.1", "-k", "agent.ping", "extra"], ["-s", "127.0.0.1", "-k", "agent.ping", "-t", "0"],
]


@pytest.mark.parametrize("args", GET_CASES, ids=[" ".join(a).replace(PORT, "PORT") or "(none)" for a in GET_CASES])
def test_vigil_get_usage_as_zabbix_get(args: list[str]) -> None:
    compare("vigil-get", args)


SENDER_CASES = [
    [], ["-z", "127.0.0.1"], ["-s", "h", "-k", "k", "-o", "1"], ["-z", "127.0.0.1", "-s", "h", "-k", "k"],
    ["-z", "127.0.0.1", "-s", "h", "-o", "1"], ["-z", "127.0.0.1", "-k", "k", "-o", "1"],
    ["-z", "127.0.0.1", "-s", "h", "-k", "k", "-o", "1", "-x"], ["-z", "127.0.0.1", "-s", "h", "-k", "k", "-o"],
    ["-z"], ["--bogus"], ["-z", "127.0.0.1", "-i"], ["-z", "127.0.0.1", "-s", "h", "-k", "k", "-o", "1", "-i", "f"],
    ["-z", "127.0.0.1", "-s", "h", "-k", "k", "-o", "1", "extra"],
    ["-z", "127.0.0.1", "-p", "abc", "-s", "h", "-k", "k", "-o", "1"],
    ["-z", "127.0.0.1", "-t", "0", "-s", "h", "-k", "k", "-o", "1"],
    ["-z", "127.0.0.1", "-vv", "-Q", "-s", "h", "-k", "k", "-o", "1"],
]


@pytest.mark.parametrize("args", SENDER_CASES, ids=[" ".join(a) or "(none)" for a in SENDER_CASES])
def test_vigil_sender_usage_as_zabbix_sender(args: list[str]) -> None:
    compare("vigil-sender", args)


def test_help_and_version_still_exit_0() -> None:
    for prog in PEERS:
        for opt in ("-h", "-V"):
            r = run(str(BIN / prog), [opt])
            assert r.returncode == 0 and r.stdout and not r.stderr, (prog, opt)
