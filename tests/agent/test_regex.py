"""POSIX classes mean the same in every regexp the agent evaluates, as zabbix_agentd's PCRE reads them."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from vigil.agent import regex
from vigil.agent.checks import CheckContext, Checks, NotSupported

from tests.conftest import free_port, require, stop_process, wait_port, zabbix_get


@pytest.mark.parametrize(("pattern", "python"), [
    ("[[:digit:]]+", "[0-9]+"),
    ("[^[:space:]]", r"[^\t\n\x0b\x0c\r ]"),
    ("[[:alpha:]_][[:alnum:]_]*", "[a-zA-Z_][a-zA-Z0-9_]*"),
    ("[[:^digit:]x]", r"[\Dx]"),
    ("[]a]", r"[\]a]"),  # a leading ] is a literal
    ("[a[b]", r"[a\[b]"),  # so is a [ that starts no class
    (r"\[[[:upper:]]\]", r"\[[A-Z]\]"),
    (r"\[:digit:\]", r"\[:digit:\]"),  # escaped: not a class
    ("(?i)err(or)?", "(?i)err(or)?"),
])
def test_translate(pattern: str, python: str) -> None:
    assert regex.translate(pattern) == python


@pytest.mark.parametrize(("pattern", "words"), [
    ("[:digit:]", "only within a class"),
    ("[[:digits:]]", "unknown POSIX class name 'digits'"),
    ("[[:^alpha:]]", "not supported"),
    ("[[:digit:]", "missing terminating ]"),
])
def test_patterns_pcre_refuses_are_errors(pattern: str, words: str) -> None:
    with pytest.raises(re.error, match=re.escape(words)):
        regex.compile(pattern)


def test_classes_are_ascii_as_in_pcre() -> None:
    assert regex.compile("^[[:digit:]]+$").match("123") and not regex.compile("^[[:digit:]]+$").match("١٢٣")
    assert regex.compile("^[[:punct:]]+$").match("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
    assert regex.compile("[[:space:]]").search("a\vb") and not regex.compile("[[:space:]]").search("a\u00a0b")


# --- the same answers as zabbix_agentd --------------------------------------------------------------

LINES = "id=42 user=ann\nstatus: OK\n\tindented line\nid=x7 user=bob\nERROR 500: failed\n"
KEYS = [
    'vfs.file.regexp[{f},"id=([[:digit:]]+)",,,,"\\1"]',
    'vfs.file.regexp[{f},"^[[:space:]]+[[:alpha:]]+"]',
    'vfs.file.regexp[{f},"^[[:upper:]]+ [[:digit:]]{{3}}"]',
    'vfs.file.regexp[{f},"user=[^[:space:]]+$",,3]',
    'vfs.file.regexp[{f},"[[:punct:]] [[:upper:]]"]',
    'vfs.file.regexp[{f},"id=[[:alpha:]][[:digit:]]"]',
    'vfs.file.regexp[{f},"[[:xdigit:]]{{2}}"]',
    'vfs.file.regmatch[{f},"^[[:lower:]]+: [[:upper:]]+$"]',
    'vfs.file.regmatch[{f},"^[[:digit:]]"]',
    'vfs.file.regmatch[{f},"[[:alnum:]]=[[:digit:]]"]',
    'proc.num[,,,"sleep 76[[:digit:]]{{4}}1"]',
]


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """A real zabbix_agentd answering passive checks, a text file and a sleeping process to match."""
    d = tmp_path_factory.mktemp("zbxregex")
    (d / "f.txt").write_text(LINES)
    port = free_port()
    conf = d / "zabbix_agentd.conf"
    conf.write_text(f"Server=127.0.0.1\nServerActive=\nListenIP=127.0.0.1\nListenPort={port}\nHostname=rx\n"
                    f"LogType=console\nPidFile={d}/zabbix_agentd.pid\nStartAgents=2\nAllowRoot=1\n")
    sleeper = subprocess.Popen(["sleep", "7654321"])
    proc = subprocess.Popen([require("zabbix_agentd"), "-f", "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc=proc)
        yield port, d / "f.txt"
    finally:
        stop_process(proc)
        stop_process(sleeper)


def _ours(key: str) -> str:
    ctx = CheckContext(hostname="rx")
    try:
        return Checks(ctx).get(key)
    except NotSupported as e:
        return f"ZBX_NOTSUPPORTED: {e}"
    finally:
        if ctx.collector is not None:
            ctx.collector.stop()


@pytest.mark.parametrize("template", KEYS)
def test_same_answer_as_zabbix_agentd(template: str, agent: tuple[int, Path]) -> None:
    port, path = agent
    key = template.format(f=path)
    expected = zabbix_get(port, key)
    assert not expected.startswith("ZBX_NOTSUPPORTED"), expected
    assert _ours(key) == expected
