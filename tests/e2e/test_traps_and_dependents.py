"""`vigil server` receives SNMP traps from the real `snmptrap` (v2c and v3) and feeds dependent items of
trapper items (the real zabbix_sender) and of active agent items (the real zabbix_agentd in active
mode) through their preprocessing. Both stores."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import VigilServer, require, stop_process, wait_until
from tests.peers.snmpd import free_udp_port

ENGINE = "0x8000000001020304"
LINK_DOWN = ["1.3.6.1.6.3.1.1.5.3", "1.3.6.1.2.1.2.2.1.1.2", "i", "2", "1.3.6.1.2.1.2.2.1.2.2", "s", "eth0 is down"]
COLD_START = ["1.3.6.1.6.3.1.1.5.1", "1.3.6.1.2.1.1.5.0", "s", "sw1 restarted"]


def _values(server: VigilServer, host: str, key: str) -> list[str]:
    return [row[-1] for row in server.history(host, key)]


def snmptrap(port: int, *options: str, trap: list[str]) -> None:
    tool = shutil.which("snmptrap")
    if tool is None:
        pytest.fail("snmptrap is not installed: run scripts/test.sh, which installs the snmp package")
    r = subprocess.run([tool, *options, f"127.0.0.1:{port}", "", *trap], capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr


def test_traps_reach_the_items_of_the_sending_host(tmp_path: Path, database_url: str) -> None:
    trap_port = free_udp_port()
    users = f"-e {ENGINE} trap-priv SHA-256 authpass-t256 AES privpass-t256"
    server = VigilServer(tmp_path, database_url, VIGIL_SNMPTRAP_LISTEN=f"127.0.0.1:{trap_port}",
                         VIGIL_SNMPTRAP_COMMUNITIES="traps-ro,second", VIGIL_SNMPTRAP_USERS=users).start()
    try:
        server.import_yaml("""
hosts:
  - host: sw1
    interfaces: [{type: snmp, address: 127.0.0.1, version: 2, community: traps-ro}]
    items:
      - {key: 'snmptrap["1\\.3\\.6\\.1\\.6\\.3\\.1\\.1\\.5\\.3"]', type: snmp_trap, value_type: log}
      - {key: snmptrap.fallback, type: snmp_trap, value_type: log}
      - key: trap.ifname
        type: dependent
        master_item: 'snmptrap["1\\.3\\.6\\.1\\.6\\.3\\.1\\.1\\.5\\.3"]'
        value_type: char
        preprocessing: [{type: regex, params: ['value=STRING: "([^"]*)"', '\\1']}]
  - host: elsewhere
    interfaces: [{type: snmp, address: 192.0.2.77}]
    items:
      - {key: snmptrap.fallback, type: snmp_trap, value_type: log}
""")
        server.wait_for_config("sw1")
        link_key = 'snmptrap["1\\.3\\.6\\.1\\.6\\.3\\.1\\.1\\.5\\.3"]'
        # The server loads its pollers' configuration on its own refresh: send until the first trap lands.
        wait_until(lambda: snmptrap(trap_port, "-v2c", "-c", "traps-ro", trap=LINK_DOWN) or
                   _values(server, "sw1", "trap.ifname"), 20, "a v2c trap to reach sw1", interval=0.5)
        link = _values(server, "sw1", link_key)
        assert "eth0 is down" in link[0] and "community                      traps-ro" in link[0]
        assert set(_values(server, "sw1", "trap.ifname")) == {"eth0 is down"}

        snmptrap(trap_port, "-v3", "-l", "authPriv", "-u", "trap-priv", "-a", "SHA-256", "-A", "authpass-t256",
                 "-x", "AES", "-X", "privpass-t256", "-e", ENGINE, trap=COLD_START)
        wait_until(lambda: _values(server, "sw1", "snmptrap.fallback"), 20, "the v3 trap in the fallback item")
        (cold,) = _values(server, "sw1", "snmptrap.fallback")
        assert "sw1 restarted" in cold and "securityname                   trap-priv" in cold

        # A wrong community and a wrong v3 passphrase are logged and dropped.
        snmptrap(trap_port, "-v2c", "-c", "not-ours", trap=LINK_DOWN)
        snmptrap(trap_port, "-v3", "-l", "authPriv", "-u", "trap-priv", "-a", "SHA-256", "-A", "wrong-authpass",
                 "-x", "AES", "-X", "privpass-t256", "-e", ENGINE, trap=COLD_START)
        wait_until(lambda: server.log_text().count("dropped") >= 2, 20, "the dropped traps to be logged")
        assert "unknown community" in server.log_text()
        assert len(_values(server, "sw1", link_key)) == len(_values(server, "sw1", "trap.ifname"))
        assert len(_values(server, "sw1", "snmptrap.fallback")) == 1
        assert _values(server, "elsewhere", "snmptrap.fallback") == []
    finally:
        server.stop()


def test_a_trap_from_an_address_no_interface_has_is_logged(tmp_path: Path) -> None:
    trap_port = free_udp_port()
    server = VigilServer(tmp_path, f"sqlite:///{tmp_path / 'vigil.db'}",
                         VIGIL_SNMPTRAP_LISTEN=f"127.0.0.1:{trap_port}").start()
    try:
        server.import_yaml("""
hosts:
  - host: far
    interfaces: [{type: snmp, address: 192.0.2.10}]
    items: [{key: snmptrap.fallback, type: snmp_trap, value_type: log}]
""")
        server.wait_for_config("far")
        wait_until(lambda: snmptrap(trap_port, "-v2c", "-c", "public", trap=LINK_DOWN) or
                   "unmatched SNMP trap received from 127.0.0.1" in server.log_text(), 20,
                   "the unmatched trap to be logged", interval=0.5)
        assert _values(server, "far", "snmptrap.fallback") == []
    finally:
        server.stop()


def test_a_bad_trap_user_setting_stops_the_server_with_a_clear_error(tmp_path: Path) -> None:
    server = VigilServer(tmp_path, f"sqlite:///{tmp_path / 'vigil.db'}",
                         VIGIL_SNMPTRAP_LISTEN=f"127.0.0.1:{free_udp_port()}",
                         VIGIL_SNMPTRAP_USERS=f"-e {ENGINE} u1 SHA-999 authpass-1")
    with pytest.raises(RuntimeError, match="did not start"):
        server.start()
    assert "VIGIL_SNMPTRAP_USERS entry 1 (u1): authentication protocol 'SHA-999'" in server.log_text()


def test_dependent_items_of_trapper_and_active_agent_masters(tmp_path: Path, database_url: str) -> None:
    server = VigilServer(tmp_path, database_url).start()
    agent = None
    try:
        server.import_yaml("""
hosts:
  - host: app1
    items:
      - {key: app.stats, type: trapper, value_type: text}
      - key: app.requests
        type: dependent
        master_item: app.stats
        value_type: unsigned
        preprocessing: [{type: jsonpath, params: ['$.requests']}]
      - key: app.latency.ms
        type: dependent
        master_item: app.stats
        value_type: float
        preprocessing: [{type: jsonpath, params: ['$.latency']}, {type: multiplier, params: ['1000']}]
      - key: app.bad
        type: dependent
        master_item: app.stats
        value_type: unsigned
        preprocessing: [{type: jsonpath, params: ['$.missing']}]
      - {key: 'agent.hostname', type: agent_active, value_type: char, delay: 1s}
      - key: host.suffix
        type: dependent
        master_item: agent.hostname
        value_type: char
        preprocessing: [{type: regex, params: ['app(\\d+)', 'number \\1']}]
""")
        server.wait_for_config("app1", "agent.hostname")
        r = subprocess.run([require("zabbix_sender"), "-z", "127.0.0.1", "-p", str(server.port), "-s", "app1",
                            "-k", "app.stats", "-o", '{"requests": 42, "latency": 0.25}'],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and "processed: 1" in r.stdout, r.stdout + r.stderr
        wait_until(lambda: _values(server, "app1", "app.requests") and _values(server, "app1", "app.latency.ms"),
                   20, "the trapper master's dependent items")
        assert _values(server, "app1", "app.requests") == ["42"]
        assert _values(server, "app1", "app.latency.ms") == ["250.0"]
        assert _values(server, "app1", "app.bad") == []

        conf = tmp_path / "agentd.conf"
        conf.write_text(f"ServerActive=127.0.0.1:{server.port}\nHostname=app1\nStartAgents=0\n"
                        f"RefreshActiveChecks=60\nBufferSend=1\nLogType=console\nPidFile={tmp_path}/agentd.pid\n"
                        "AllowRoot=1\n")
        agent = subprocess.Popen([require("zabbix_agentd"), "-f", "-c", str(conf)],
                                 stdout=(tmp_path / "agentd.out").open("ab"), stderr=subprocess.STDOUT)
        wait_until(lambda: _values(server, "app1", "host.suffix"), 30, "the active agent master's dependent item")
        assert set(_values(server, "app1", "host.suffix")) == {"number 1"}
    finally:
        if agent is not None:
            stop_process(agent)
        server.stop()
