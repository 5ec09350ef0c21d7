"""agent.conf: zabbix_agentd.conf files, checked against what the real zabbix_agentd 6.0 accepts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from vigil.agent.checks import KeyRule, UserParameter
from vigil.agent.conf import AgentConfig, ConfError, load

from tests.conftest import require

DEBIAN_CONF = Path("/etc/zabbix/zabbix_agentd.conf")


def write(tmp_path: Path, text: str, name: str = "agent.conf") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_debian_zabbix_agentd_conf_loads() -> None:
    cfg = load(DEBIAN_CONF)
    assert cfg.server == ("127.0.0.1",)
    assert cfg.server_active == (("127.0.0.1", 10051),)
    assert cfg.pid_file == "/run/zabbix/zabbix_agentd.pid"
    assert cfg.log_type == "file" and cfg.log_file == "/var/log/zabbix-agent/zabbix_agentd.log"
    assert cfg.hostnames == () and cfg.hostname_item == "system.hostname"


def test_defaults_are_zabbix_60_defaults(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, "Server=127.0.0.1\n"))
    assert (cfg.listen_port, cfg.start_agents, cfg.timeout, cfg.refresh_active_checks) == (10050, 3, 3, 120)
    assert (cfg.buffer_send, cfg.buffer_size, cfg.max_lines_per_second, cfg.debug_level) == (5, 100, 20, 3)
    assert cfg.listen_ip == ("0.0.0.0",) and cfg.server_active == () and cfg.log_type == "console"
    assert cfg.passive_enabled and not cfg.active_enabled


def test_every_implemented_parameter(tmp_path: Path) -> None:
    inc = tmp_path / "agentd.d"
    inc.mkdir()
    (inc / "a.conf").write_text("UserParameter=inc.a,echo a\n")
    (inc / "b.conf").write_text("UserParameter=inc.b[*],echo $1\n")
    (inc / "skip.txt").write_text("NotAParameter=1\n")  # not matched by *.conf
    cfg = load(write(tmp_path, f"""# comment line
   # indented comment

Server=127.0.0.1, 10.0.0.0/8,::1,localhost
ServerActive=zbx.example.com,127.0.0.1:20051,[::1]:30051,::1
Hostname=web01,web 02
HostnameItem=system.uname
HostMetadata=linux web
HostMetadataItem=system.uname
ListenIP=127.0.0.1,::1
ListenPort=20050
ListenBacklog=10
StartAgents=7
RefreshActiveChecks=60
BufferSend=10
BufferSize=1000
Timeout=30
UserParameter=my.echo[*],echo "$1"
UserParameter=my.plain, uptime
UnsafeUserParameters=1
AllowKey=system.run[echo *]
DenyKey=system.run[*]
DenyKey=vfs.file.contents[/etc/shadow]
Alias=ping:agent.ping
Alias=cpu[*]:system.cpu.util[*]
LogFile={tmp_path}/agent.log
LogType=file
DebugLevel=5
PidFile={tmp_path}/agent.pid
MaxLinesPerSecond=1000
PersistentBufferFile={tmp_path}/buffer.db
Include={inc}/*.conf
TLSConnect=unencrypted
AllowRoot=1
User=zabbix
LogFileSize=0
EnableRemoteCommands=0
SourceIP=127.0.0.1
HostInterface=web01.example.com
"""))
    assert cfg.server == ("127.0.0.1", "10.0.0.0/8", "::1", "localhost")
    assert cfg.server_active == (("zbx.example.com", 10051), ("127.0.0.1", 20051), ("::1", 30051), ("::1", 10051))
    assert cfg.hostnames == ("web01", "web 02") and cfg.hostname == "web01"
    assert (cfg.hostname_item, cfg.host_metadata, cfg.host_metadata_item) == ("system.uname", "linux web",
                                                                             "system.uname")
    assert cfg.listen_ip == ("127.0.0.1", "::1") and cfg.listen_port == 20050 and cfg.listen_backlog == 10
    assert (cfg.start_agents, cfg.refresh_active_checks, cfg.buffer_send, cfg.buffer_size, cfg.timeout) == (
        7, 60, 10, 1000, 30)
    assert cfg.user_parameters == (
        UserParameter("my.echo", 'echo "$1"', True), UserParameter("my.plain", "uptime", False),
        UserParameter("inc.a", "echo a", False), UserParameter("inc.b", "echo $1", True),
    )
    assert cfg.unsafe_user_parameters
    assert cfg.key_rules == (KeyRule(True, "system.run[echo *]"), KeyRule(False, "system.run[*]"),
                             KeyRule(False, "vfs.file.contents[/etc/shadow]"), KeyRule(False, "system.run[*]"))
    assert (cfg.allow_root, cfg.user, cfg.log_file_size) == (True, "zabbix", 0)
    assert cfg.resolve_alias("ping") == "agent.ping"
    assert cfg.resolve_alias("cpu[all,idle]") == "system.cpu.util[all,idle]"
    assert cfg.resolve_alias("agent.version") == "agent.version"
    assert (cfg.log_type, cfg.log_file, cfg.debug_level) == ("file", f"{tmp_path}/agent.log", 5)
    assert cfg.pid_file == f"{tmp_path}/agent.pid" and cfg.max_lines_per_second == 1000
    assert cfg.persistent_buffer_file == f"{tmp_path}/buffer.db"
    assert cfg.files == (str(tmp_path / "agent.conf"), str(inc / "a.conf"), str(inc / "b.conf"))


def test_last_value_wins_and_empty_disables(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, "Server=127.0.0.1\nTimeout=3\nTimeout=4\nServerActive=\nStartAgents=0\n"))
    assert cfg.timeout == 4 and not cfg.active_enabled and not cfg.passive_enabled
    cfg = load(write(tmp_path, "Server=\nServerActive=127.0.0.1\n"))
    assert not cfg.passive_enabled and cfg.active_enabled


def test_include_directory_and_relative_to_working_directory(tmp_path: Path, monkeypatch) -> None:
    d = tmp_path / "conf.d"
    d.mkdir()
    (d / "one").write_text("Timeout=9\n")
    monkeypatch.chdir(tmp_path)
    assert load(write(tmp_path, "Server=127.0.0.1\nInclude=conf.d\n")).timeout == 9
    assert load(write(tmp_path, "Server=127.0.0.1\nInclude=conf.d/\n")).timeout == 9
    # a glob over an empty directory is fine, as in zabbix_agentd
    (tmp_path / "empty").mkdir()
    assert load(write(tmp_path, "Server=127.0.0.1\nInclude=empty/*.conf\n")).timeout == 3


BAD_LINES = [
    ("Timout=3", "unknown parameter 'Timout'"),
    ("timeout=3", "unknown parameter 'timeout'"),
    ("HeartbeatFrequency=60", "unknown parameter 'HeartbeatFrequency'"),  # Zabbix 6.2+, not 6.0
    ("junk", "not following \"parameter=value\" notation"),
    ("=3", "not following"),
    ("Timeout=abc", "'Timeout'"),
    ("Timeout=", "'Timeout'"),
    ("Timeout=3s", "'Timeout'"),
    ("Timeout=+3", "'Timeout'"),
    ("Timeout=0", "outside 1-30"),
    ("Timeout=31", "outside 1-30"),
    ("ListenPort=1023", "outside 1024-32767"),
    ("ListenPort=32768", "outside 1024-32767"),
    ("StartAgents=101", "outside 0-100"),
    ("StartAgents=1 2", "'StartAgents'"),
    ("RefreshActiveChecks=59", "outside 60-3600"),
    ("RefreshActiveChecks=3601", "outside 60-3600"),
    ("BufferSend=0", "outside 1-3600"),
    ("BufferSize=1", "outside 2-65535"),
    ("BufferSize=65536", "outside 2-65535"),
    ("DebugLevel=6", "outside 0-5"),
    ("MaxLinesPerSecond=0", "outside 1-1000"),
    ("MaxLinesPerSecond=1001", "outside 1-1000"),
    ("UnsafeUserParameters=2", "outside 0-1"),
    ("LogFileSize=1025", "outside 0-1024"),
    ("ServerActive=host:99999", "invalid port"),
    ("UserParameter=nocomma", "not comma-separated"),
    ("UserParameter=a b,echo", "syntax error"),
    ("UserParameter=,echo", "syntax error"),
    ("AllowKey=", "empty key pattern"),
    ("Alias=a", "cannot add alias"),
]


@pytest.mark.parametrize("line,message", BAD_LINES, ids=[b[0] for b in BAD_LINES])
def test_bad_line_names_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = write(tmp_path, f"# header\nServer=127.0.0.1\n{line}\n")
    with pytest.raises(ConfError) as e:
        load(path)
    assert str(e.value).startswith(f"{path}:3: ")
    assert message in str(e.value)
    assert (e.value.path, e.value.line) == (str(path), 3)


def _zabbix_accepts(tmp_path: Path, line: str) -> bool:
    conf = write(tmp_path, f"Server=127.0.0.1\nAllowRoot=1\nLogType=console\n{line}\n", "zabbix.conf")
    r = subprocess.run([require("zabbix_agentd"), "-c", str(conf), "-t", "agent.ping"],
                       capture_output=True, text=True, timeout=20)
    return "[u|1]" in r.stdout


ZABBIX_COMPARED = [b[0] for b in BAD_LINES if not b[0].startswith(("Alias", "LogType"))] + [
    "Timeout= 3", " Timeout=3", "Timeout=03", "StartAgents=0", "StartAgents=100", "ListenPort=1024",
    "ListenPort=32767", "RefreshActiveChecks=60", "RefreshActiveChecks=3600", "BufferSize=65535",
    "BufferSend=3600", "MaxLinesPerSecond=1", "Server=", "ServerActive=[::1]:10051,127.0.0.1",
    "UserParameter=a,", "TLSConnect=unencrypted", "LogFileSize=0", "DebugLevel=0", "ListenBacklog=0",
]


def test_accepts_and_refuses_what_zabbix_agentd_does(tmp_path: Path) -> None:
    disagree = []
    for line in ZABBIX_COMPARED:
        try:
            load(write(tmp_path, f"Server=127.0.0.1\n{line}\n"))
            ours = True
        except ConfError:
            ours = False
        if ours != _zabbix_accepts(tmp_path, line):
            disagree.append((line, ours))
    assert disagree == []


def test_duplicate_user_parameter_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "Server=127.0.0.1\nUserParameter=a[*],echo $1\nUserParameter=a,echo 2\n")
    with pytest.raises(ConfError, match=r":3: user parameter 'a,echo 2': key 'a' already exists"):
        load(path)


def test_error_in_included_file_names_that_file(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir()
    (d / "x.conf").write_text("# one\n\nTimeoutx=7\n")
    with pytest.raises(ConfError) as e:
        load(write(tmp_path, f"Server=127.0.0.1\nInclude={d}/*.conf\n"))
    assert str(e.value).startswith(f"{d}/x.conf:3: unknown parameter 'Timeoutx'")


@pytest.mark.parametrize("include,message", [
    ("/nonexistent/x.conf", "no such file or directory"),
    ("/nonexistent/*.conf", "does not exist"),
    ("/tmp/*/x.conf", "wildcards only in the file name"),
])
def test_bad_include(tmp_path: Path, include: str, message: str) -> None:
    with pytest.raises(ConfError, match=message):
        load(write(tmp_path, f"Server=127.0.0.1\nInclude={include}\n"))


def test_recursive_include_is_an_error(tmp_path: Path) -> None:
    a = tmp_path / "a.conf"
    a.write_text(f"Server=127.0.0.1\nInclude={a}\n")
    with pytest.raises(ConfError, match="recursive Include"):
        load(a)


@pytest.mark.parametrize("text,message", [
    ("Server=127.0.0.1/33", "not a valid CIDR"),
    ("Server=a b", "not an IP address, CIDR or host name"),
    ("Server=127.0.0.1,,::1", "empty entry"),
    ("ServerActive=[::1", "no closing"),
    ("ServerActive=[::1]x", "unexpected"),
    ("ServerActive=a:1,a:1", "listed twice"),
    ("Hostname=a/b", "'Hostname'"),
    ("Hostname=" + "x" * 129, "1-128 characters"),
    ("Hostname=a,a", "listed twice"),
    ("ListenIP=localhost", "not an IP address"),
    ("LogType=xx", "'LogType'"),
    ("HostMetadata=" + "m" * 256, "longer than 255"),
])
def test_bad_values(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfError, match=message):
        load(write(tmp_path, f"Server=127.0.0.1\n{text}\n"))


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    with pytest.raises(ConfError, match="cannot open config file"):
        load(tmp_path / "missing.conf")
    bad = tmp_path / "latin1.conf"
    bad.write_bytes(b"Server=127.0.0.1\nHostMetadata=caf\xe9\n")
    with pytest.raises(ConfError, match="not UTF-8"):
        load(bad)


def test_config_is_frozen(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, "Server=127.0.0.1\n"))
    assert isinstance(cfg, AgentConfig)
    with pytest.raises(AttributeError):
        cfg.timeout = 5  # type: ignore[misc]
