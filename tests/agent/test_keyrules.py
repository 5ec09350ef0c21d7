"""AllowKey/DenyKey as zabbix_agentd 6.0 applies them: the real zabbix_agentd is the oracle.

`zabbix_agentd -c conf -t key` answers "Unsupported item key." for a known key exactly when its
rules deny it, so each rule set below is loaded by both agents and every key is asked of both.
Start-up refusals and warnings are compared the same way, and the bypasses of the issue are asked
of both running agents with the real zabbix_get.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from vigil.agent.active import ActiveSettings, ActiveWorker
from vigil.agent.checks import CALLER, CheckContext, Checks, NotSupported
from vigil.agent.conf import ConfError, load
from vigil.agent.keyrules import KeyRule, KeyRules, KeyRulesError
from vigil.agent.protocol.messages import ActiveCheck

from tests.conftest import free_port, require, stop_process, wait_port, wait_until, zabbix_get

VIGIL_AGENT = str(Path(sys.executable).parent / "vigil-agent")
DENIED = "[m|ZBX_NOTSUPPORTED] [Unsupported item key.]"
BASE = "LogType=console\nAllowRoot=1\nServer=127.0.0.1\n"


def write_conf(tmp_path: Path, rules: str, name: str = "agent.conf") -> Path:
    p = tmp_path / name
    p.write_text(BASE + rules + "\n")
    return p


def zabbix_t(conf: Path, key: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require("zabbix_agentd"), "-c", str(conf), "-t", key],
                          capture_output=True, text=True, timeout=20)


def zabbix_denies(conf: Path, key: str) -> bool:
    r = zabbix_t(conf, key)
    assert r.returncode == 0, r.stderr
    return DENIED in r.stdout


# (rules, keys): every key is one zabbix_agentd knows, so "Unsupported item key." means denied.
CASES: list[tuple[str, list[str]]] = [
    ("DenyKey=vfs.file.contents[/etc/shadow]",
     ["vfs.file.contents[/etc/shadow]", 'vfs.file.contents["/etc/shadow"]', "vfs.file.contents[ /etc/shadow]",
      'vfs.file.contents[  "/etc/shadow"  ]', "vfs.file.contents[/etc/shadow ]", "vfs.file.contents[/etc/shadow,]",
      "vfs.file.contents[/etc/shadow,UTF-8]", "vfs.file.contents[/etc/hostname]", "vfs.file.contents"]),
    ("DenyKey=vfs.file.*[*shadow*]",
     ["vfs.file.exists[/etc/shadow]", 'vfs.file.md5sum["/etc/shadow"]', "vfs.file.size[/etc/passwd]",
      "vfs.file.exists[/etc/shadow,file]", "vfs.file.exists"]),
    ("DenyKey=vfs.file.exists",
     ["vfs.file.exists", "vfs.file.exists[]", "vfs.file.exists[/etc]"]),
    ("DenyKey=vfs.file.exists[]",
     ["vfs.file.exists", "vfs.file.exists[]", 'vfs.file.exists[""]', "vfs.file.exists[/etc]"]),
    ("DenyKey=vfs.file.exists[*]",
     ["vfs.file.exists", "vfs.file.exists[]", "vfs.file.exists[/etc]", "vfs.file.exists[/etc,dir]"]),
    ("DenyKey=vfs.file.exists[/etc,*]",
     ["vfs.file.exists[/etc]", "vfs.file.exists[/etc,dir]", "vfs.file.exists[/etc,dir,1]", "vfs.file.exists[/tmp]"]),
    ("DenyKey=vfs.file.exists[*,dir]",
     ["vfs.file.exists[/etc]", "vfs.file.exists[/etc,dir]", "vfs.file.exists[,dir]", "vfs.file.exists[/etc, dir]"]),
    ("DenyKey=vfs.file.exists[/e*c,*,*]",
     ["vfs.file.exists[/etc]", "vfs.file.exists[/etc,dir]", "vfs.file.exists[/tmp,dir]"]),
    ("DenyKey=vfs.file.exists[[a,b]]",
     ["vfs.file.exists[[a,b]]", 'vfs.file.exists["a,b"]', "vfs.file.exists[[a, b]]", 'vfs.file.exists[[ a,"b"]]']),
    ('DenyKey=vfs.file.exists["/etc"]', ["vfs.file.exists[/etc]", 'vfs.file.exists["/etc"]']),
    ("DenyKey=VFS.file.exists[*]", ["vfs.file.exists[/etc]"]),
    ("DenyKey=*[*]", ["agent.ping", "vfs.file.exists[/etc]", "vfs.file.exists[]"]),
    ("DenyKey=*[]", ["agent.ping", "vfs.file.exists[/etc]"]),
    ("DenyKey=agent.*", ["agent.ping", "agent.version", "agent.ping[]", "vfs.file.exists[/etc]"]),
    ("DenyKey=agent.ping\nAllowKey=*", ["agent.ping", "agent.version", "system.run[echo 1]"]),
    ("AllowKey=system.run[echo *]", ["system.run[echo a]", 'system.run["echo a"]', "system.run[id]", "agent.ping"]),
    ("DenyKey=system.run[rm *]\nAllowKey=system.run[*]",
     ['system.run["rm -rf /x"]', "system.run[ rm -rf /x]", "system.run[echo rm]"]),
    ("AllowKey=system.run[*]", ["system.run[echo 1]", "system.run[echo 1,nowait]"]),
    ("EnableRemoteCommands=1", ["system.run[echo 1]"]),
    ("EnableRemoteCommands=0", ["system.run[echo 1]"]),
    ("DenyKey=system.run[echo a*]\nEnableRemoteCommands=1", ["system.run[echo a1]", "system.run[echo b]"]),
    ("EnableRemoteCommands=1\nDenyKey=system.run[echo a*]", ["system.run[echo a1]", "system.run[echo b]"]),
    ("DenyKey=agent.ping\nAllowKey=agent.ping", ["agent.ping"]),
    ("Alias=my.ping:agent.ping\nDenyKey=agent.ping", ["my.ping", "agent.ping"]),
    ("Alias=my.ping:agent.ping\nDenyKey=my.ping", ["my.ping", "agent.ping"]),
]


@pytest.mark.parametrize("rules,keys", CASES, ids=[c[0].replace("\n", " ; ") for c in CASES])
def test_rules_decide_as_zabbix_agentd(tmp_path: Path, rules: str, keys: list[str]) -> None:
    conf = write_conf(tmp_path, rules)
    cfg = load(conf)
    checks = Checks(CheckContext(hostname="x"), cfg.access)
    disagree = []
    for key in keys:
        ours = not checks.allowed(cfg.resolve_alias(key))
        if ours != zabbix_denies(conf, key):
            disagree.append((key, "vigil denies" if ours else "vigil allows"))
    assert disagree == []


def test_denied_key_answers_unsupported_item_key(tmp_path: Path) -> None:
    cfg = load(write_conf(tmp_path, "DenyKey=vfs.file.contents[/etc/shadow]"))
    checks = Checks(CheckContext(hostname="x"), cfg.access)
    for key in ('vfs.file.contents["/etc/shadow"]', "vfs.file.contents[ /etc/shadow]"):
        with pytest.raises(NotSupported, match=r"^Unsupported item key\.$"):
            checks.get(key)
    assert checks.get("vfs.file.exists[/etc/hostname]") == "1"


# --- start-up: what zabbix_agentd refuses, and its warnings -------------------------------------

START_CASES = [
    "AllowKey=agent.*",
    "AllowKey=*",
    "AllowKey=*\nDenyKey=agent.ping",
    "DenyKey=agent.ping\nAllowKey=*",
    "DenyKey=*",
    "DenyKey=agent.ping\nDenyKey=*\nDenyKey=agent.version",
    "AllowKey=system.run[*]",
    "AllowKey=system.run[*]\nAllowKey=agent.*",
    "DenyKey=agent.ping\nAllowKey=agent.ping\nDenyKey=agent.ping",
    "DenyKey=agent.ping\nAllowKey=agent.version\nAllowKey=system.run[x]\nAllowKey=vfs.*",
    "EnableRemoteCommands=1\nEnableRemoteCommands=0",
    "EnableRemoteCommands=2",
    "DenyKey=agent.ping[a",
    "DenyKey=agent ping",
    "DenyKey=[a]",
    "DenyKey=",
    "DenyKey=agent.ping]",
    "DenyKey=agent.ping[a]x",
]


@pytest.mark.parametrize("rule", ["DenyKey=agent.ping[[a]", 'DenyKey=agent.ping["a]', "DenyKey=agent.ping[a]b]"])
def test_rules_zabbix_accepts_but_that_cannot_mean_anything_are_refused(tmp_path: Path, rule: str) -> None:
    """zabbix_agentd takes these without a word, but their parameters are not item-key syntax, so
    they can never deny what they seem to: vigil-agent refuses them, naming the line."""
    conf = write_conf(tmp_path, rule)
    assert zabbix_t(conf, "agent.version").returncode == 0
    with pytest.raises(ConfError, match=rf"^{re.escape(str(conf))}:4: wrong value of 'DenyKey': failed to process"):
        load(conf)


def _zabbix_start(conf: Path) -> tuple[bool, list[str]]:
    r = zabbix_t(conf, "agent.version")
    warnings = [re.sub(r"^zabbix_agentd \[\d+\]: Warning: ", "", line).strip()
                for line in r.stderr.splitlines() if ": Warning: " in line]
    return r.returncode == 0, warnings


@pytest.mark.parametrize("rules", START_CASES, ids=[c.replace("\n", " ; ") for c in START_CASES])
def test_start_refusals_and_warnings_as_zabbix_agentd(tmp_path: Path, rules: str) -> None:
    conf = write_conf(tmp_path, rules)
    zabbix_ok, zabbix_warnings = _zabbix_start(conf)
    try:
        cfg = load(conf)
    except ConfError as e:
        assert not zabbix_ok, f"vigil refuses what zabbix_agentd accepts: {e}"
        assert str(e).startswith(f"{conf}"), "the error names the file"
        return
    assert zabbix_ok, "vigil accepts what zabbix_agentd refuses"
    assert [w for w in cfg.warnings if "failed to process" not in w] == zabbix_warnings


def test_malformed_rule_names_file_and_line(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "DenyKey=agent.ping\nDenyKey=agent.ping[a")
    with pytest.raises(ConfError) as e:
        load(conf)
    assert str(e.value).startswith(f"{conf}:5: wrong value of 'DenyKey': failed to process access rule")
    assert (e.value.path, e.value.line) == (str(conf), 5)


def test_match_all_rules_refused_by_the_agent_process(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, f"ListenPort={free_port()}\nAllowKey=agent.*")
    r = subprocess.run([VIGIL_AGENT, "-c", str(conf)], capture_output=True, text=True, timeout=20)
    assert r.returncode == 1
    assert 'Warning: removed redundant trailing AllowKey "agent.*" rule' in r.stderr
    assert "Item key access rules are configured to match all keys" in r.stderr and str(conf) in r.stderr


def test_rules_are_compiled_once() -> None:
    rules = KeyRules.build([KeyRule(False, "vfs.file.*[*shadow*]")])
    assert not isinstance(rules.rules[0]._name_m, str) and not isinstance(rules.rules[0]._param_m[0], str)
    assert rules.rules[-1].pattern == "system.run[*]"  # the implicit deny ends the list
    with pytest.raises(KeyRulesError):
        KeyRules.build([KeyRule(True, "*")])


# --- UserParameter cannot shadow a built-in key ------------------------------------------------

@pytest.mark.parametrize("name", ["agent.ping", "system.run[*]", "log", "vfs.dir.count", "my.key"])
def test_user_parameter_cannot_shadow_a_builtin_key(tmp_path: Path, name: str) -> None:
    conf = write_conf(tmp_path, f"UserParameter={name},echo 5")
    zabbix = zabbix_t(conf, "agent.ping")
    try:
        load(conf)
        ours = True
    except ConfError as e:
        ours = False
        assert str(e).startswith(f"{conf}:4: ") and "already exists" in str(e)
    assert ours == (zabbix.returncode == 0), zabbix.stderr
    if not ours:
        assert "already exists" in zabbix.stderr


def test_hostname_item_is_the_agents_own_use(tmp_path: Path) -> None:
    """HostnameItem=system.run[...] works although system.run is denied, as zabbix_agentd."""
    conf = write_conf(tmp_path, "HostnameItem=system.run[echo myhost]\nDenyKey=system.run[*]")
    assert "[s|myhost]" in zabbix_t(conf, "agent.hostname").stdout
    r = subprocess.run([VIGIL_AGENT, "-c", str(conf), "-t", "agent.hostname"], capture_output=True, text=True,
                       timeout=20)
    assert "[s|myhost]" in r.stdout, r.stdout + r.stderr
    assert "Unsupported item key." in subprocess.run(
        [VIGIL_AGENT, "-c", str(conf), "-t", "system.run[echo x]"], capture_output=True, text=True, timeout=20).stdout


# --- both running agents, asked by the real zabbix_get -----------------------------------------

@pytest.fixture
def both_agents(tmp_path: Path) -> Iterator[tuple[int, int, Path]]:
    """zabbix_agentd and vigil-agent with the same rules; yields (vigil port, zabbix port, marker file)."""
    marker = tmp_path / "marker"
    marker.write_text("still here\n")
    rules = ("DenyKey=vfs.file.contents[/etc/shadow]\nDenyKey=vfs.file.contents[*secret*]\n"
             "DenyKey=system.run[rm *]\nAllowKey=system.run[*]\n")
    (tmp_path / "secret.txt").write_text("the secret\n")
    procs = []
    ports = []
    try:
        for name, cmd in (("vigil", [VIGIL_AGENT, "-c"]), ("zabbix", [require("zabbix_agentd"), "-f", "-c"])):
            port = free_port()
            conf = tmp_path / f"{name}.conf"
            conf.write_text(f"Server=127.0.0.1\nServerActive=\nListenIP=127.0.0.1\nListenPort={port}\nHostname=h\n"
                            f"LogType=console\nStartAgents=2\nAllowRoot=1\n{rules}")
            procs.append(subprocess.Popen([*cmd, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_port(port, 15, procs[-1])
            ports.append(port)
        yield ports[0], ports[1], marker
    finally:
        for p in procs:
            stop_process(p)


def test_bypass_keys_are_denied_by_both_agents(both_agents: tuple[int, int, Path], tmp_path: Path) -> None:
    vigil, zabbix, marker = both_agents
    secret = tmp_path / "secret.txt"
    keys = ['vfs.file.contents["/etc/shadow"]', "vfs.file.contents[ /etc/shadow]", f'vfs.file.contents["{secret}"]',
            f"vfs.file.contents[ {secret}]", f'system.run["rm -f {marker}"]', f"system.run[ rm -f {marker}]"]
    # (system.run[rm ...,nowait] has two parameters: DenyKey=system.run[rm *] does not match it, in
    # zabbix_agentd either; a rule for both forms is system.run[rm *,*].)
    for key in keys:
        assert zabbix_get(zabbix, key) == "ZBX_NOTSUPPORTED: Unsupported item key.", key
        assert zabbix_get(vigil, key) == "ZBX_NOTSUPPORTED: Unsupported item key.", key
    assert marker.read_text() == "still here\n"
    # what the rules allow still works, identically
    for key in ("system.run[echo ok]", f"vfs.file.contents[{marker}]"):
        assert zabbix_get(vigil, key) == zabbix_get(zabbix, key)


# --- active items, log[] included --------------------------------------------------------------

def test_denied_active_items_are_not_supported_and_the_log_is_never_read(tmp_path: Path) -> None:
    secret = tmp_path / "secret.log"
    secret.write_text("password=hunter2\n")
    cfg = load(write_conf(tmp_path, "DenyKey=log[*secret*]\nDenyKey=logrt[*secret*]\nDenyKey=agent.version"))
    checks = Checks(CheckContext(hostname="h"), cfg.access)
    settings = ActiveSettings(servers=(("127.0.0.1", 1),), hostnames=("h",))
    w = ActiveWorker(settings, ("127.0.0.1", 1), "h", checks)
    w.apply([ActiveCheck(f"log[{secret}]", 1), ActiveCheck(f'logrt["{tmp_path}/secret.*"]', 1),
             ActiveCheck("agent.version", 1), ActiveCheck("agent.ping", 1)], 0)
    w.run_due(100.0)
    got = {v.key: v for v in w.buffer.batch(10)}
    for key in (f"log[{secret}]", f'logrt["{tmp_path}/secret.*"]', "agent.version"):
        assert (got[key].state, got[key].value) == (1, "Unsupported item key."), key
    assert got["agent.ping"].value == "1"
    assert all("hunter2" not in (v.value or "") for v in got.values())
    assert all(i.monitor is None for i in w.items.values())


# --- LogRemoteCommands -------------------------------------------------------------------------

def test_log_remote_commands_logs_the_command_and_its_caller(caplog: pytest.LogCaptureFixture) -> None:
    checks = Checks(CheckContext(hostname="h", log_remote_commands=True), [KeyRule(True, "system.run[*]")])
    CALLER.set("passive check from 127.0.0.9")
    with caplog.at_level("WARNING", logger="vigil.agent"):
        assert checks.get("system.run[echo hi]") == "hi"
    (rec,) = [r for r in caplog.records if "Executing command" in r.getMessage()]
    assert rec.levelname == "WARNING"
    assert "'echo hi'" in rec.getMessage() and "passive check from 127.0.0.9" in rec.getMessage()
    quiet = Checks(CheckContext(hostname="h"), [KeyRule(True, "system.run[*]")])
    caplog.clear()
    with caplog.at_level("WARNING", logger="vigil.agent"):
        quiet.get("system.run[echo hi]")
    assert not [r for r in caplog.records if "Executing command" in r.getMessage()]


def test_log_remote_commands_names_the_active_server(caplog: pytest.LogCaptureFixture) -> None:
    checks = Checks(CheckContext(hostname="h", log_remote_commands=True), [KeyRule(True, "system.run[*]")])
    settings = ActiveSettings(servers=(("127.0.0.1", 1),), hostnames=("h",), timeout=1)
    w = ActiveWorker(settings, ("127.0.0.1", 1), "h", checks)
    w.apply([ActiveCheck("system.run[echo from-active]", 1)], time.monotonic())
    w.next_refresh = time.monotonic() + 3600  # the list is given here; no server to ask
    stop = threading.Event()
    with caplog.at_level("WARNING", logger="vigil.agent"):
        t = threading.Thread(target=w.collector_loop, args=(stop,), daemon=True)
        t.start()
        try:
            wait_until(lambda: len(w.buffer), 15, "the active system.run value")
        finally:
            stop.set()
            t.join(10)
    assert [v.value for v in w.buffer.batch(10)][:1] == ["from-active"]
    (rec,) = [r for r in caplog.records if "Executing command 'echo from-active'" in r.getMessage()]
    assert "active checks from [127.0.0.1:1]" in rec.getMessage()


def test_print_leaves_denied_keys_out_as_zabbix_agentd(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, "DenyKey=vfs.file.*[*]\nDenyKey=agent.version")
    outputs = []
    for cmd in ([require("zabbix_agentd")], [VIGIL_AGENT]):
        r = subprocess.run([*cmd, "-c", str(conf), "-p"], capture_output=True, text=True, timeout=120)
        outputs.append({line.split("[", 1)[0].split()[0] for line in r.stdout.splitlines() if line.strip()})
    for names in outputs:
        assert "agent.ping" in names and "agent.version" not in names
        assert not [n for n in names if n.startswith("vfs.file.")]
