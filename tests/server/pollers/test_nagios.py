"""Nagios plugins as items: the real check_disk, check_load, check_procs and check_tcp of Debian's
monitoring-plugins-basic through the scheduler, their perfdata landing on items made for it; the
plugin guidelines' output format; a plugin that hangs, prints 1 MB, exits 127 or is not there."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from vigil.server.config import tables as t
from vigil.server.config.model import ConfigError, PollSpec, doc_from_dict
from vigil.server.config.repo import ConfigRepo, PollInterface, PollItem
from vigil.server.config.tables import ItemType, ValueType
from vigil.server.pollers import NotSupported, nagios
from vigil.server.pollers.scheduler import Scheduler
from vigil.server.store.base import WriteBatch

from tests.conftest import wait_until
from tests.server.pollers.conftest import Listener
from tests.server.pollers.test_scheduler import (  # noqa: F401
    FAST,
    _collect,
    _import,
    _run_until,
    _state,
    _values,
    repo,
)

PLUGINS = Path("/usr/lib/nagios/plugins")


@pytest.fixture(autouse=True)
def _default_plugin_directory() -> Iterator[None]:
    try:
        yield
    finally:
        nagios.configure()


@pytest.fixture
def plugins_dir() -> Path:
    if not (PLUGINS / "check_tcp").exists():
        pytest.fail("monitoring-plugins-basic is not installed: run the README's test command, which installs it")
    return PLUGINS


# --- the output format (the plugin guidelines' examples) -------------------------------------------

def test_perfdata_labels_units_and_thresholds() -> None:
    r = nagios.parse_output(1, "DISK WARNING - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968\n"
                               "/ 15272 MB (77%);\n/boot 68 MB (69%);\n"
                               "/home 69357 MB (27%);\n/var/log 819 MB (84%); | /boot=68MB;88;93;0;98\n"
                               "/home=69357MB;253404;253409;0;253414 \n/var/log=818MB;970;975;0;980")
    assert (r.state, r.message) == (1, "DISK WARNING - free space: / 3326 MB (56%);")
    assert [p.label for p in r.perfdata] == ["/", "/boot", "/home", "/var/log"]
    root = r.perfdata[0]
    assert (root.value, root.units, root.uom, root.warn, root.crit) == (2643 * 1024 ** 2, "B", "MB", "5948", "5958")
    assert (root.min, root.max) == (0.0, 5968 * 1024 ** 2)
    assert r.long_output.splitlines()[0] == "/ 15272 MB (77%);"


@pytest.mark.parametrize(("text", "want"), [
    ("'label with spaces'=5s", [("label with spaces", 5.0, "s")]),
    ("'it''s'=250ms", [("it's", 0.25, "s")]),
    ("t=12us p=99.5% c=1234c kb=2KB tb=1TB", [("t", 12e-6, "s"), ("p", 99.5, "%"), ("c", 1234.0, ""),
                                               ("kb", 2048.0, "B"), ("tb", 1024.0 ** 4, "B")]),
    ("a=U b=1 x=5furlongs junk c=-2.5e1", [("b", 1.0, ""), ("c", -25.0, "")]),  # undetermined, bad UOM skipped
    ("a=1 a=2", [("a", 1.0, "")]),  # a repeated label: the first counts
    ("", []),
])
def test_perfdata_tokens(text: str, want: list[tuple[str, float, str]]) -> None:
    got = [(p.label, p.value, p.units) for p in nagios.parse_perfdata(text)]
    assert got == [(label, pytest.approx(v), u) for label, v, u in want]


@pytest.mark.parametrize(("code", "state", "message"), [
    (0, 0, "fine"), (2, 2, "fine"), (3, 3, "fine"),
    (4, 3, "exit status 4 is not a Nagios state: fine"),
    (-9, 3, "exit status -9 is not a Nagios state (killed by a signal): fine"),
])
def test_exit_status_to_state(code: int, state: int, message: str) -> None:
    r = nagios.parse_output(code, "fine|x=1\n")
    assert (r.state, r.message) == (state, message)
    assert json.loads(r.feed())["perfdata"]["x"]["value"] == 1.0


# --- the real plugins through the scheduler ---------------------------------------------------------

def _host(items: str) -> str:
    return f"""
hosts:
  - host: n1
    interfaces: [{{type: agent, address: 127.0.0.1, port: 10050}}]
    items:
{items}
"""


def _items(repo: ConfigRepo) -> dict[str, tuple[int, int, int | None, str]]:  # noqa: F811
    with repo.engine.connect() as c:
        return {r.key_: (r.itemid, r.type, r.master_itemid, r.units) for r in c.execute(sa.select(t.items))}


def test_real_plugins_give_a_state_a_message_and_perfdata_items(repo: ConfigRepo, plugins_dir: Path) -> None:  # noqa: F811
    nagios.configure(str(plugins_dir))
    listener = Listener("banner", b"hello\r\n")
    closed = Listener("silent")
    closed_port = closed.port
    closed.close()  # nothing listens there now
    disk = "nagios.check[check_disk,-w,0%,-c,0%,-p,/]"
    load = "nagios.check[check_load,-w,1000,1000,1000,-c,2000,2000,2000]"
    procs = "nagios.check[check_procs]"
    tcp = f"nagios.check[check_tcp,-H,{{HOST.CONN}},-p,{listener.port}]"
    refused = f"nagios.check[check_tcp,-H,{{HOST.CONN}},-p,{closed_port}]"
    try:
        ids = _import(repo, _host("".join(f"      - {{key: '{k}', type: nagios, value_type: unsigned, delay: 1s}}\n"
                                          for k in (disk, load, procs, tcp, refused))))
        batches: list[WriteBatch] = []
        sched = Scheduler(repo, _collect(batches), dataclasses.replace(FAST, timeout=10))
        perf = {"disk": f"nagios.perf[/,{disk[13:-1]}]", "load": f"nagios.perf[load1,{load[13:-1]}]",
                "procs": "nagios.perf[procs,check_procs]", "tcp": f"nagios.perf[time,{tcp[13:-1]}]"}

        def done() -> bool:
            items = _items(repo)
            return all(k in items and _values(batches, items[k][0]) for k in perf.values()) and all(
                _values(batches, ids[k]) for k in (disk, load, procs, tcp, refused))
        asyncio.run(_run_until(sched, done, 30, "the plugins' states and perfdata values"))
    finally:
        listener.close()
    items = _items(repo)
    assert {_values(batches, ids[k])[0] for k in (disk, load, procs, tcp)} == {0}  # OK
    assert _values(batches, ids[refused])[0] == 2  # CRITICAL: connection refused
    assert items[perf["disk"]][1:] == (int(ItemType.DEPENDENT), ids[disk], "B")
    fs = os.statvfs("/")
    used = (fs.f_blocks - fs.f_bfree) * fs.f_frsize
    assert _values(batches, items[perf["disk"]][0])[0] == pytest.approx(used, rel=0.05)
    assert abs(_values(batches, items[perf["load"]][0])[0] - os.getloadavg()[0]) < 3  # a live value
    assert _values(batches, items[perf["procs"]][0])[0] >= 3
    assert 0 <= _values(batches, items[perf["tcp"]][0])[0] < 10 and items[perf["tcp"]][3] == "s"
    message = _values(batches, items[f"nagios.message[{tcp[13:-1]}]"][0])[0]
    assert message.startswith("TCP OK") and f"port {listener.port}" in message
    refused_message = _values(batches, items[f"nagios.message[{refused[13:-1]}]"][0])
    assert refused_message and "Connection refused" in refused_message[0]


# --- bad plugins ------------------------------------------------------------------------------------

def _plugin(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _item(key: str) -> PollItem:
    return PollItem(1, 1, "h", ItemType.NAGIOS, ValueType.UNSIGNED, key, 60,
                    PollInterface(1, 1, 1, "127.0.0.1", 10050, {}), PollSpec())


def _check(key: str, timeout: float = 5) -> object:
    return asyncio.run(nagios.NagiosPoller()(_item(key), timeout))


def test_a_hanging_plugin_is_killed_with_its_children(tmp_path: Path) -> None:
    nagios.configure(str(tmp_path))
    _plugin(tmp_path, "check_hang", f"sleep 60 & echo $! > {tmp_path}/child\nwait\n")
    with pytest.raises(NotSupported, match=r"Timeout: the plugin check_hang did not finish within 1 s and was killed"):
        _check("nagios.check[check_hang]", 1)
    child = int((tmp_path / "child").read_text())

    def gone() -> bool:
        try:
            return Path(f"/proc/{child}/stat").read_text().split(") ")[1][0] == "Z"  # killed, not yet reaped
        except (FileNotFoundError, IndexError):
            return True
    wait_until(gone, 5, "the plugin's child to be killed")


def test_a_plugin_printing_a_megabyte_is_cut(tmp_path: Path) -> None:
    nagios.configure(str(tmp_path))
    _plugin(tmp_path, "check_big", "printf 'BIG OK|x=1\\n'\nhead -c 1048576 /dev/zero | tr '\\0' 'y'\nexit 1\n")
    r = _check("nagios.check[check_big]")
    assert r.value == "1"  # type: ignore[attr-defined]
    feed = json.loads(r.feed)  # type: ignore[attr-defined]
    assert feed["message"] == "BIG OK" and feed["perfdata"]["x"]["value"] == 1.0
    assert len(r.feed) < nagios.MAX_OUTPUT  # type: ignore[attr-defined]


@pytest.mark.parametrize(("key", "body", "reason"), [
    ("nagios.check[check_127]", "exec /nonexistent/command\n",
     "The plugin check_127 exited with 127 (command not found): "),
    ("nagios.check[check_missing]", None, "No plugin 'check_missing' in "),
    ("nagios.check[check_noexec]", "", "is not executable"),
    ("nagios.check[../../../../bin/sh,-c,id]", None, "Invalid plugin name '../../../../bin/sh'"),
    ("nagios.check[check_x,[a,b]]", None, "must not be arrays"),
])
def test_plugins_that_cannot_run_say_why(tmp_path: Path, key: str, body: str | None, reason: str) -> None:
    nagios.configure(str(tmp_path))
    if body is not None:
        name = key[13:].split(",")[0].rstrip("]")
        _plugin(tmp_path, name, body)
        if name == "check_noexec":
            (tmp_path / name).chmod(0o644)
    with pytest.raises(NotSupported, match=re.escape(reason)):
        _check(key)


def test_arguments_are_a_list_never_a_shell(tmp_path: Path) -> None:
    nagios.configure(str(tmp_path))
    _plugin(tmp_path, "check_args", 'for a in "$@"; do printf "<%s>" "$a"; done; echo\n')
    r = _check('nagios.check[check_args,"a b",$(id),;touch x,{HOST.CONN}]')
    assert json.loads(r.feed)["message"] == "<a b><$(id)><;touch x><127.0.0.1>"  # type: ignore[attr-defined]
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(("key", "problem"), [
    ("nagios.check[../x]", "is not a plugin name"),
    ("nagios.check", "nagios.check[plugin,<arg>,...]"),
    ("check_disk[-w,1]", "nagios.check[plugin,<arg>,...]"),
])
def test_bad_nagios_keys_are_refused_at_import(key: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=r"hosts\[0\]\.items\[0\]\.key: .*" + re.escape(problem)):
        doc_from_dict({"hosts": [{"host": "h", "items": [{"key": key, "type": "nagios"}]}]})


def test_add_nagios_items_makes_the_missing_ones_once(repo: ConfigRepo) -> None:  # noqa: F811
    ids = _import(repo, _host("      - {key: 'nagios.check[check_procs]', type: nagios, value_type: unsigned}\n"))
    check = ids["nagios.check[check_procs]"]
    result = nagios.parse_output(0, "PROCS OK: 3 processes | procs=3;;;0;")
    wanted = nagios.dependent_items("nagios.check[check_procs]", result)
    before = repo.version()
    assert repo.add_nagios_items(check, wanted) == 2
    assert repo.version() > before
    after = repo.version()
    assert repo.add_nagios_items(check, wanted) == 0 and repo.version() == after
    cfg = repo.poll_config()
    deps = {cfg.items[i].key: cfg.items[i] for i in cfg.dependents[check]}
    assert set(deps) == {"nagios.message[check_procs]", "nagios.perf[procs,check_procs]"}
    assert deps["nagios.perf[procs,check_procs]"].poll.preprocessing[0].params == '$.perfdata["procs"].value'


def test_the_state_is_kept_when_the_items_cannot_be_made(tmp_path: Path) -> None:
    from vigil.server.config.migrate import engine_for

    nagios.configure(str(tmp_path))
    _plugin(tmp_path, "check_ok", "echo 'OK | a=1'\n")
    poller = nagios.NagiosPoller()
    engine = engine_for(f"sqlite:///{tmp_path}/no/such/dir/vigil.db")  # the database cannot be opened
    poller.bind(ConfigRepo(engine))
    try:
        r = asyncio.run(poller(_item("nagios.check[check_ok]"), 5))
    finally:
        engine.dispose()
    assert r.value == "0" and json.loads(r.feed)["perfdata"]["a"]["value"] == 1.0
    assert poller._made == {}  # tried again at the next check
