"""`vigil up` watches its own machine: from an empty data directory, with no configuration at all,
the local vigil-agent's real values land for the built-in template's items on this host."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import psutil
import yaml

from tests.conftest import VigilServer, vigil_bin, wait_port, wait_until

TEMPLATE = "Linux by Vigil agent"


def wait_for(cond: Callable[[], bool], what: str, timeout: float = 60) -> None:
    wait_until(cond, timeout, what, interval=0.5)  # each check runs `vigil history`: not too often


def local_agents(up: subprocess.Popen[bytes]) -> list[psutil.Process]:
    return [p for p in psutil.Process(up.pid).children(recursive=True)
            if "vigil.agent.cli.agentd" in " ".join(p.cmdline())]


def test_vigil_up_collects_from_the_local_agent_and_stops_it(tmp_path: Path) -> None:
    # VIGIL_DATABASE_URL empty: the default SQLite file in VIGIL_DATA_DIR, as a new user has it
    up = VigilServer(tmp_path, "", command="up", VIGIL_LOCAL_AGENT="1")
    data = tmp_path / "data"
    assert not data.exists()
    up.proc = subprocess.Popen([vigil_bin("vigil"), "up"], env=up.env, stdout=up.log.open("ab"),
                               stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_port(up.port, 30, up.proc)
        host = socket.gethostname()

        def first(key: str) -> str | None:
            r = up.cli("history", host, key, "--from", "0", "--to", str(2**31 - 1), check=False)
            return r.stdout.split("\t")[2].rstrip("\n") if r.returncode == 0 and r.stdout else None

        keys = ("agent.ping", "system.cpu.num", "vfs.fs.size[{$VFS.FS.PATH},total]")
        wait_for(lambda: all(first(k) is not None for k in keys),
                 f"values from the local agent\n{up.log_text()[-3000:]}")
        assert first("agent.ping") == "1"
        assert first("system.cpu.num") == str(os.cpu_count())
        assert first("vfs.fs.size[{$VFS.FS.PATH},total]") == str(shutil.disk_usage("/").total)  # {$VFS.FS.PATH}=/

        exported = yaml.safe_load(up.cli("config", "export").stdout)
        assert [t["template"] for t in exported["templates"]] == [TEMPLATE]
        assert [(h["host"], h["templates"]) for h in exported["hosts"]] == [(host, [TEMPLATE])]
        assert (data / "vigil.db").exists() and (data / "vigil-agent.conf").exists()

        # the agent is supervised: killed, it comes back
        (agent,) = local_agents(up.proc)
        agent.kill()
        agent.wait(10)
        wait_for(lambda: len(local_agents(up.proc)) == 1, "the local agent to be restarted", 30)
        (agent,) = local_agents(up.proc)
        assert "local vigil-agent exited" in up.log_text()

        def pings() -> int:
            r = up.cli("history", host, "agent.ping", "--from", "0", "--to", str(2**31 - 1))
            return len(r.stdout.splitlines())

        wait_for(lambda: pings() >= 2, "a value from the restarted agent", 30)
    finally:
        if up.proc.poll() is None:
            up.proc.send_signal(signal.SIGTERM)
        try:
            code = up.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(up.proc.pid, signal.SIGKILL)
            up.proc.wait(10)
            raise AssertionError("`vigil up` did not stop within 30 s of SIGTERM") from None
    assert code == 0, up.log_text()[-3000:]
    assert not agent.is_running(), "the local agent outlived `vigil up`"
    agent_log = (data / "vigil-agent.log").read_text()
    assert "Vigil Agent stopped" in agent_log
    # ingest stops only after the agent has gone, so that the agent's last send lands
    text = up.log_text()
    assert "local vigil-agent stopped (exit code 0)" in text
    assert text.index("local vigil-agent stopped") < text.index("vigil.server INFO stopped:")
