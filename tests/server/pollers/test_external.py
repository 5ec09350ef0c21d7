"""External checks (`type: external`): a script from VIGIL_EXTERNAL_SCRIPTS with the key's parameters as
arguments, through the scheduler on both stores; failures, time-out and a path escape."""

from __future__ import annotations

import asyncio
import re
import stat
from pathlib import Path

import pytest
from vigil.server.config.model import ConfigError, PollSpec, doc_from_dict
from vigil.server.config.repo import ConfigRepo, PollInterface, PollItem
from vigil.server.config.tables import ItemType, ValueType
from vigil.server.pollers import NotSupported, external
from vigil.server.pollers.scheduler import Scheduler
from vigil.server.store.base import WriteBatch

from tests.server.pollers.test_scheduler import (  # noqa: F401
    FAST,
    _collect,
    _import,
    _run_until,
    _state,
    _values,
    repo,
)


def _script(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    d = tmp_path / "externalscripts"
    d.mkdir()
    external.configure(str(d))
    try:
        yield d
    finally:
        external.configure("")


def test_external_checks_through_the_scheduler(repo: ConfigRepo, scripts: Path) -> None:  # noqa: F811
    _script(scripts, "sum.sh", 'echo $(($1 + $2))\necho "  "\n')
    _script(scripts, "fail.sh", "echo 'no such database' >&2\nexit 3\n")
    ids = _import(repo, """
hosts:
  - host: e1
    interfaces: [{type: agent, address: 127.0.0.1}]
    items:
      - {key: 'sum.sh[40,2]', type: external, value_type: unsigned, delay: 1s}
      - {key: 'fail.sh[x]', type: external, value_type: char, delay: 1s}
""")
    batches: list[WriteBatch] = []
    sched = Scheduler(repo, _collect(batches), FAST)
    asyncio.run(_run_until(sched, lambda: _values(batches, ids["sum.sh[40,2]"]) and _state(repo, ids["fail.sh[x]"]),
                           10, "a value and a state"))
    assert set(_values(batches, ids["sum.sh[40,2]"])) == {42}
    assert _state(repo, ids["fail.sh[x]"]) == (1, "The script fail.sh exited with 3: no such database")


def _item(key: str) -> PollItem:
    return PollItem(1, 1, "e1", ItemType.EXTERNAL, ValueType.TEXT, key, 60,
                    PollInterface(1, 1, 1, "192.0.2.7", 10050, {}), PollSpec())


def _run(key: str, timeout: float = 5) -> str:
    return asyncio.run(external.poll(_item(key), timeout))


def test_arguments_are_passed_as_a_list(scripts: Path) -> None:
    _script(scripts, "args.sh", 'for a in "$@"; do printf "<%s>" "$a"; done\n')
    assert _run('args.sh["a b",$(id),;rm -rf x,{HOST.CONN},{HOST.HOST}]') == "<a b><$(id)><;rm -rf x><192.0.2.7><e1>"


@pytest.mark.parametrize(("key", "body", "reason"), [
    ("stderr.sh", "echo oops >&2\n", "The script stderr.sh wrote to standard error only: oops"),
    ("sig.sh", "kill -9 $$\n", "The script sig.sh was killed by signal 9"),
    ("hang.sh", "sleep 60\n", "Timeout: the script hang.sh did not finish within 1 s and was killed"),
    ("missing.sh", None, "No script 'missing.sh' in "),
    ("..[x]", None, "Invalid script name '..'"),
])
def test_scripts_that_fail_say_why(scripts: Path, key: str, body: str | None, reason: str) -> None:
    if body is not None:
        _script(scripts, key, body)
    with pytest.raises(NotSupported, match=re.escape(reason)):
        _run(key, 1)


def test_external_checks_need_the_directory_setting() -> None:
    external.configure("")
    with pytest.raises(NotSupported, match="set VIGIL_EXTERNAL_SCRIPTS"):
        _run("x.sh")


def test_a_path_escaping_script_name_is_refused_at_import() -> None:
    with pytest.raises(ConfigError, match=r"hosts\[0\]\.items\[0\]\.key: '\.\.' is not a script name"):
        doc_from_dict({"hosts": [{"host": "h", "items": [{"key": "..[a]", "type": "external"}]}]})


def test_the_server_start_configures_the_new_channels_from_settings(repo: ConfigRepo, tmp_path: Path) -> None:  # noqa: F811
    from vigil.server.pollers import jmx, nagios
    from vigil.server.pollers.scheduler import start
    from vigil.server.settings import Settings

    settings = Settings.from_env({"VIGIL_JAVA_GATEWAY": "127.0.0.1:1", "VIGIL_JAVA_POLLERS": "3",
                                  "VIGIL_EXTERNAL_SCRIPTS": str(tmp_path), "VIGIL_NAGIOS_PLUGINS": str(tmp_path)})

    async def go() -> None:
        pollers = start(settings, repo, _collect([]))
        assert pollers is not None
        try:
            assert (jmx._config.gateway, jmx._config.pollers) == (("127.0.0.1", 1), 3)
            assert external._scripts == str(tmp_path) and nagios._plugins == str(tmp_path)
        finally:
            await pollers.stop()
    try:
        asyncio.run(go())
    finally:
        jmx.configure("", 5)
        nagios.configure()
        external.configure("")
