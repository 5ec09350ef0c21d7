"""The proxy's task runner (proxy/tasks.py) judges a remote command as zabbix_proxy's task manager
does, runs it on itself only with EnableRemoteCommands=1, and keeps each result until the server
acknowledged the message that carried it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from vigil.agent.protocol.tasks import EXECUTE_ON_PROXY, FAIL, SUCCEED, RemoteCommand
from vigil.proxy.localconfig import LocalConfig, open_local
from vigil.proxy.tasks import TaskRunner

from tests.conftest import free_port


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    e = open_local(tmp_path / "proxy.db")
    LocalConfig(e).apply_json({
        "hosts": {"fields": ["hostid", "host", "status"], "data": [[10, "h", 0], [11, "bare", 0]]},
        "interface": {"fields": ["interfaceid", "hostid", "main", "type", "useip", "ip", "dns", "port"],
                      "data": [[100, 10, 1, 1, 1, "127.0.0.1", "", str(free_port())]]},
    })
    yield e
    e.dispose()


def cmd(command: str, *, hostid: int = 10, execute_on: int = 0, clock: int | None = None, ttl: int = 600,
        taskid: int = 7) -> RemoteCommand:
    return RemoteCommand(taskid=taskid, hostid=hostid, command=command, clock=clock or int(time.time()), ttl=ttl,
                         execute_on=execute_on, alertid=3)


def test_zabbix_reasons(engine: Engine) -> None:
    off, now = TaskRunner(engine), int(time.time())
    assert off.execute(cmd("true", clock=now - 700), now) == (FAIL, "The remote command has been expired.")
    assert off.execute(cmd("true", hostid=99), now) == (FAIL, "Unknown host.")
    assert off.execute(cmd("true", execute_on=EXECUTE_ON_PROXY), now) == (FAIL, "Remote commands are not enabled")
    status, info = off.execute(cmd("true", hostid=11), now)
    assert status == FAIL and "no agent interface" in info
    status, info = off.execute(cmd("true"), now)  # nobody listens on the interface's port
    assert status == FAIL and "cannot reach the agent at 127.0.0.1:" in info


def test_on_the_proxy_with_enable_remote_commands(engine: Engine, tmp_path: Path) -> None:
    on, now = TaskRunner(engine, enable_remote_commands=True), int(time.time())
    out = tmp_path / "ran"
    assert on.execute(cmd(f"echo hi > {out}; echo done", execute_on=EXECUTE_ON_PROXY), now) == (SUCCEED, "done")
    assert out.read_text() == "hi\n"
    status, info = on.execute(cmd("exit 3", execute_on=EXECUTE_ON_PROXY), now)
    assert status == FAIL and info == "exit code 3"


def test_results_wait_for_the_servers_ack_and_commands_run_once(engine: Engine, tmp_path: Path) -> None:
    runner = TaskRunner(engine, enable_remote_commands=True)
    out = tmp_path / "count"
    task = cmd(f"echo x >> {out}", execute_on=EXECUTE_ON_PROXY).to_json()

    async def go() -> None:
        runner.received({"response": "success", "tasks": [task]})
        runner.received({"response": "success", "tasks": [task]})  # the same reply again: run once
        await runner.wait()

    asyncio.run(go())
    assert out.read_text() == "x\n"
    body: dict = {}
    assert runner.attach(body) == [7]
    assert body["tasks"] == [{"type": 3, "clock": body["tasks"][0]["clock"], "ttl": 0, "status": 0, "info": "",
                              "parent_taskid": 7}]
    again: dict = {}
    assert runner.attach(again) == [7]  # not acknowledged yet: it goes again
    runner.delivered([7])
    assert runner.attach({}) == []
