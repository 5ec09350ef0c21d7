"""logrt with copytruncate, position-only values and POSIX classes: the real zabbix_agentd 6.0 and
vigil-agent, same configuration, same collecting server (Vigil's), same assertions: every matching
line arrives once, in order, and the server's position follows unmatched lines too."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import VigilServer, require, wait_until
from tests.e2e.test_agent_active import HOST, ActiveAgent, Store


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Callable[[str, int], ActiveAgent]]:
    started: list[ActiveAgent] = []

    def make(kind: str, port: int) -> ActiveAgent:
        a = ActiveAgent(kind, tmp_path, port, HOST, 0)
        started.append(a)
        return a.start()

    try:
        yield make
    finally:
        for a in started:
            a.stop()


def _write(path: Path, *lines: str) -> None:
    with path.open("a") as f:
        f.write("".join(x + "\n" for x in lines))


def _copytruncate(d: Path) -> None:
    """The real logrotate with copytruncate: app.log is copied to app.log.1, then truncated in place."""
    conf = d.parent / "logrotate.conf"
    conf.write_text(f"{d}/app.log {{\n  copytruncate\n  rotate 5\n  nocompress\n  missingok\n}}\n")
    r = subprocess.run([require("logrotate"), "-f", "-s", str(d.parent / "logrotate.state"), str(conf)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert (d / "app.log.1").exists() and (d / "app.log").stat().st_size == 0


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["zabbix_agentd", "vigil-agent"])
def test_copytruncate_rotation_sends_each_line_once(vigil_server_sqlite: VigilServer, kind: str, tmp_path: Path,
                                                   agents: Callable[[str, int], ActiveAgent]) -> None:
    server = vigil_server_sqlite
    logs = tmp_path / "logs"
    logs.mkdir()
    app = logs / "app.log"
    app.touch()
    key = rf'logrt["{logs}/^app\.log(\.[0-9]+)?$","^[0-9]+ [a-z]+",,,,,,copytruncate]'
    server.import_yaml(f"hosts:\n  - host: {HOST}\n    items:\n"
                       f"      - {{key: '{key}', type: agent_active, value_type: log, delay: 1s}}\n")
    server.wait_for_config(HOST, key)
    store = Store(server.database_url)

    def got() -> list[str]:
        return [r[2] for r in store.rows(key)]

    def position() -> tuple[int, int]:
        check = next(c for c in server.active_checks(HOST)["data"] if c["key"] == key)
        return int(check["lastlogsize"]), int(check["mtime"])

    try:
        agent = agents(kind, server.port)
        sent = [f"{i} alpha" for i in range(5)]
        _write(app, sent[0], "# noise", *sent[1:3], "  also noise", *sent[3:])
        wait_until(lambda: got() == sent, 30, f"the first lines from {kind}\n{agent.output()[-2000:]}")

        # unmatched lines at the end: the agent tells the server where it is without a value
        _write(app, "# trailing noise", "# more noise")
        wait_until(lambda: position()[0] == app.stat().st_size, 30,
                   f"{kind} to report the position after the unmatched lines")

        # logrotate copytruncate: app.log.1 is a new file holding lines already sent
        _write(app, "5 beta")
        wait_until(lambda: len(got()) == 6, 30, f"the line before the rotation from {kind}")
        _copytruncate(logs)
        _write(app, "6 gamma", "# noise", "7 gamma")
        sent += ["5 beta", "6 gamma", "7 gamma"]
        wait_until(lambda: len(got()) >= len(sent), 30, f"the lines after the rotation from {kind}")
        _write(app, "8 delta")  # a later line shows no repeat of the copy was still under way
        sent.append("8 delta")
        wait_until(lambda: len(got()) >= len(sent), 30, f"the last line from {kind}")
        assert got() == sent
    finally:
        store.close()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["zabbix_agentd", "vigil-agent"])
def test_posix_classes_in_log_regexps(vigil_server_sqlite: VigilServer, kind: str, tmp_path: Path,
                                      agents: Callable[[str, int], ActiveAgent]) -> None:
    server = vigil_server_sqlite
    app = tmp_path / "posix.log"
    _write(app, "id=42 ok", "id=x7 no", "\tindented", "ERROR 500: boom", "error 500: lower")
    key = f'log[{app},"^(id=[[:digit:]]+|[[:space:]]+[[:alpha:]]+|[[:upper:]]+ [[:digit:]]{{3}}[[:punct:]])"]'
    server.import_yaml(f"hosts:\n  - host: {HOST}\n    items:\n"
                       f"      - {{key: '{key}', type: agent_active, value_type: log, delay: 1s}}\n")
    server.wait_for_config(HOST, key)
    store = Store(server.database_url)
    try:
        agent = agents(kind, server.port)
        want = ["id=42 ok", "\tindented", "ERROR 500: boom"]
        wait_until(lambda: [r[2] for r in store.rows(key)] == want, 30,
                   f"the matching lines from {kind}\n{agent.output()[-2000:]}")
        # log[]'s mtime: zabbix_agentd sends none (the server keeps 0); vigil-agent's fingerprint is never 0
        mtime = next(c["mtime"] for c in server.active_checks(HOST)["data"] if c["key"] == key)
        assert (mtime == 0) == (kind == "zabbix_agentd")
    finally:
        store.close()


@pytest.mark.slow
@pytest.mark.parametrize("persistent", [False, True])
def test_truncated_and_rewritten_while_the_agent_is_stopped_loses_no_line(
        vigil_server_sqlite: VigilServer, tmp_path: Path, persistent: bool,
        agents: Callable[[str, int], ActiveAgent]) -> None:
    """Lines of one length (the old position is a line end in the new content too), with and without
    a persistent buffer. zabbix_agentd goes on from lastlogsize and loses the lines before it."""
    server = vigil_server_sqlite
    app = tmp_path / "app.log"
    app.touch()
    key = f"log[{app}]"
    server.import_yaml(f"hosts:\n  - host: {HOST}\n    items:\n"
                       f"      - {{key: '{key}', type: agent_active, value_type: log, delay: 1s}}\n")
    server.wait_for_config(HOST, key)
    store = Store(server.database_url)

    def got() -> list[str]:
        return [r[2] for r in store.rows(key)]

    def start() -> ActiveAgent:
        a = ActiveAgent("vigil-agent", tmp_path, server.port, HOST, 0)
        if persistent:
            with a.conf.open("a") as f:
                f.write(f"PersistentBufferFile={tmp_path}/buffer.db\n")
        return a.start()

    try:
        before = [f"1764600000.{i:03d} before {i}" for i in range(6)]
        _write(app, *before)
        agent = start()
        wait_until(lambda: got() == before, 30, f"the first lines\n{agent.output()[-2000:]}")
        agent.stop()
        _write(app, "written while stopped, then truncated away")
        app.write_text("")
        after = [f"1764600100.{i:03d} after {i:03d}"[:len(before[0])] for i in range(300)]
        _write(app, *after)
        assert app.read_bytes()[len("".join(x + "\n" for x in before)) - 1:][:1] == b"\n"
        agent = start()
        wait_until(lambda: len(got()) >= len(before) + len(after), 30,
                   f"the lines written after the truncation\n{agent.output()[-2000:]}")
        _write(app, "the last line")
        wait_until(lambda: got()[-1:] == ["the last line"], 30, "a later line")
        assert got() == [*before, *after, "the last line"]
        agent.stop()
    finally:
        store.close()
