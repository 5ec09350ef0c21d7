"""vigil-agent in active mode against the real zabbix_server 6.0, not only against Vigil's own server.

The host's items use user macros, so the server sends `key` (expanded) and `key_orig` and accepts values
only under `key_orig`: every item must get vigil-agent's values in Zabbix's history, and none may turn
unsupported.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import stop_process, vigil_bin, wait_until
from tests.peers.zabbix_server.peer import AGENT_ACTIVE, FLOAT, LOG, UNSIGNED, ZabbixServer

HOST = "vz-agent"
MACROS = {"{$FS}": "/", "{$IF}": "lo", "{$LOGFILE}": "", "{$LOAD.MODE}": "avg1"}
ITEMS = [  # key as configured in Zabbix, value type
    ("vfs.fs.size[{$FS},pused]", FLOAT),
    ("vfs.fs.size[{$FS},total]", UNSIGNED),
    ("net.if.in[{$IF}]", UNSIGNED),
    ("system.cpu.load[all,{$LOAD.MODE}]", FLOAT),
    ("agent.ping", UNSIGNED),
    ("log[{$LOGFILE}]", LOG),
]


@pytest.fixture
def zabbix(tmp_path: Path) -> Iterator[tuple[ZabbixServer, dict[str, int], Path]]:
    logfile = tmp_path / "app.log"
    logfile.write_text("")
    zbx = ZabbixServer(tmp_path)
    try:
        hostid = zbx.add_host(HOST)
        for n, (macro, value) in enumerate(MACROS.items()):
            zbx.sql("INSERT INTO hostmacro (hostmacroid, hostid, macro, value, description, type) "
                    "VALUES (%s, %s, %s, %s, '', 0)",
                    (hostid * 10 + n, hostid, macro, str(logfile) if macro == "{$LOGFILE}" else value))
        ids = {}
        for key, vt in ITEMS:
            ids[key] = zbx.add_item(hostid, key, vt, AGENT_ACTIVE)
            zbx.sql("UPDATE items SET delay = '2s' WHERE itemid = %s", (ids[key],))
        zbx.start()
        yield zbx, ids, logfile
    finally:
        zbx.drop()


def test_vigil_agent_values_reach_zabbix_under_key_orig(zabbix: tuple[ZabbixServer, dict[str, int], Path],
                                                        tmp_path: Path) -> None:
    zbx, ids, logfile = zabbix
    conf = tmp_path / "vigil_agentd.conf"
    conf.write_text(
        f"ServerActive=127.0.0.1:{zbx.port}\nHostname={HOST}\nStartAgents=0\nRefreshActiveChecks=60\n"
        f"BufferSend=1\nLogType=file\nLogFile={tmp_path / 'vigil-agent.log'}\nAllowRoot=1\n")
    out = (tmp_path / "vigil-agent.out").open("wb")
    agent = subprocess.Popen([vigil_bin("vigil-agent"), "-f", "-c", str(conf)], stdout=out,
                             stderr=subprocess.STDOUT, start_new_session=True)
    try:
        def missing() -> list[str]:
            return [key for key, vt in ITEMS if not zbx.history(ids[key], vt)]

        def write_line() -> bool:
            assert agent.poll() is None, (tmp_path / "vigil-agent.out").read_text()
            with logfile.open("a") as f:
                f.write("app started\n")
            return not missing()

        wait_until(write_line, 90, "values of every item in Zabbix's history", 1.0)
        states = dict(zbx.sql("SELECT itemid, state FROM item_rtdata WHERE itemid = ANY(%s)", (list(ids.values()),)))
        errors = dict(zbx.sql("SELECT itemid, error FROM item_rtdata WHERE itemid = ANY(%s)", (list(ids.values()),)))
        unsupported = {key: errors[ids[key]] for key, _ in ITEMS if states[ids[key]] != 0}
        assert unsupported == {}
        (fs_used,) = zbx.history(ids["vfs.fs.size[{$FS},pused]"], FLOAT)[0][2:3]
        assert 0 <= float(fs_used) <= 100
        assert zbx.history(ids["log[{$LOGFILE}]"], LOG)[0][2] == "app started"
    finally:
        stop_process(agent)
        out.close()
