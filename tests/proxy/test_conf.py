"""zabbix_proxy.conf parsing: a real file (the packaged one, and the one tests/zabbix_proxy.py writes
for the real zabbix_proxy), Include, defaults and Zabbix's ranges, bad lines named by file and line."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from vigil.proxy.conf import ConfError, ProxyConf, load, log_ignored

from tests.zabbix_proxy import ZabbixProxy


def write(tmp: Path, text: str, name: str = "zabbix_proxy.conf") -> Path:
    p = tmp / name
    p.write_text(text)
    return p


BASE = "Server=127.0.0.1:10051\nHostname=px\nDBName=/tmp/x.db\nLogType=console\n"


def test_the_file_written_for_the_real_zabbix_proxy_is_read(tmp_path: Path) -> None:
    zp = ZabbixProxy(tmp_path, "px-real", server="127.0.0.1:10051")  # writes its file only
    try:
        conf = load(zp.conf)
    finally:
        zp.stop()
    assert (conf.ProxyMode, conf.Hostname, conf.ConfigFrequency, conf.HeartbeatFrequency) == (0, "px-real", 1, 1)
    assert conf.ListenPort == zp.port and conf.DBName == str(zp.db) and conf.LogType == "file"
    assert conf.servers() == [("127.0.0.1", 10051)]
    assert {"SocketDir", "AllowRoot", "StartTrappers", "StartPreprocessors"} <= set(conf.ignored)


def test_the_packaged_file_with_its_include_directory(tmp_path: Path) -> None:
    real = Path("/etc/zabbix/zabbix_proxy.conf")
    if not real.exists():
        pytest.fail("zabbix-proxy-sqlite3 is not installed: run the README's test command")
    conf = load(real)  # comments, blank lines, Include=/etc/zabbix/zabbix_proxy.conf.d/*.conf
    assert conf.Server == "127.0.0.1" and conf.Timeout == 4 and conf.DBName == "zabbix_proxy"
    assert "DBUser" in conf.ignored and "FpingLocation" in conf.ignored


def test_defaults_are_zabbix_6_0s(tmp_path: Path) -> None:
    conf = load(write(tmp_path, BASE))
    assert conf == ProxyConf(Server="127.0.0.1:10051", Hostname="px", DBName="/tmp/x.db", LogType="console")
    assert (conf.ConfigFrequency, conf.DataSenderFrequency, conf.HeartbeatFrequency, conf.ProxyOfflineBuffer,
            conf.ProxyLocalBuffer, conf.Timeout, conf.StartPollers, conf.ListenPort) == (3600, 1, 60, 1, 0, 3, 5, 10051)


def test_include_of_a_file_a_directory_and_a_glob(tmp_path: Path) -> None:
    d = tmp_path / "conf.d"
    d.mkdir()
    (d / "a.conf").write_text("# a comment\n\nTimeout=7\n")
    (d / "b.txt").write_text("StartPollers=9\n")
    write(tmp_path, "DataSenderFrequency=5\n", "extra.conf")
    conf = load(write(tmp_path, BASE + f"Include={d}/*.conf\nInclude=extra.conf\n"))
    assert (conf.Timeout, conf.StartPollers, conf.DataSenderFrequency) == (7, 5, 5)
    conf = load(write(tmp_path, BASE + f"Include={d}\n"))
    assert (conf.Timeout, conf.StartPollers) == (7, 9)


def test_proxy_config_frequency_of_6_4_is_accepted(tmp_path: Path) -> None:
    assert load(write(tmp_path, BASE + "ProxyConfigFrequency=10\n")).ConfigFrequency == 10


def test_a_cluster_of_servers(tmp_path: Path) -> None:
    conf = load(write(tmp_path, BASE.replace("127.0.0.1:10051", "a.example:10051;b.example;[::1]:20051")))
    assert conf.servers() == [("a.example", 10051), ("b.example", 10051), ("::1", 20051)]


@pytest.mark.parametrize("line, message", [
    ("Bogus=1", r"zabbix_proxy.conf:5: Bogus: unknown parameter"),
    ("just words", r"zabbix_proxy.conf:5: 'just words' is not of the form Key=Value"),
    ("ProxyOfflineBuffer=0", r"zabbix_proxy.conf:5: ProxyOfflineBuffer=0: outside the range 1-720"),
    ("ProxyLocalBuffer=721", r"ProxyLocalBuffer=721: outside the range 0-720"),
    ("HeartbeatFrequency=3601", r"HeartbeatFrequency=3601: outside the range 0-3600"),
    ("ListenPort=80", r"ListenPort=80: outside the range 1024-32767"),
    ("Timeout=abc", r"Timeout='abc': not an integer"),
    ("HistoryCacheSize=1K", r"HistoryCacheSize=1K: outside the range"),
    ("Hostname=again", r"zabbix_proxy.conf:5: Hostname: given again \(first at .*zabbix_proxy.conf:2\)"),
    ("Include=/nonexistent/file.conf", r"Include=/nonexistent/file.conf: no such file"),
])
def test_bad_lines_name_file_line_and_key(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(ConfError, match=message):
        load(write(tmp_path, BASE + line + "\n"))


def test_log_type(tmp_path: Path) -> None:
    with pytest.raises(ConfError, match=r"zabbix_proxy.conf:4: LogType=syslog: expected one of system, file, "):
        load(write(tmp_path, BASE.replace("LogType=console", "LogType=syslog")))
    with pytest.raises(ConfError, match="LogFile: missing"):
        load(write(tmp_path, BASE.replace("LogType=console", "LogType=file")))


@pytest.mark.parametrize("drop, key", [("Server=", "Server"), ("DBName=", "DBName")])
def test_required_keys(tmp_path: Path, drop: str, key: str) -> None:
    text = "".join(x + "\n" for x in BASE.splitlines() if not x.startswith(drop))
    with pytest.raises(ConfError, match=f"{key}: missing"):
        load(write(tmp_path, text))


def test_a_bad_server_port_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfError, match="Server: 'h:99999'"):
        load(write(tmp_path, BASE.replace("127.0.0.1:10051", "h:99999")))


def test_ignored_keys_are_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    conf = load(write(tmp_path, BASE + "StartTrappers=2\nLoadModule=a.so\nLoadModule=b.so\n"))
    assert conf.ignored == ("StartTrappers", "LoadModule")
    with caplog.at_level(logging.INFO, "vigil.proxy.conf"):
        log_ignored(conf)
    assert [r.getMessage().split()[1] for r in caplog.records] == ["StartTrappers", "LoadModule"]


def test_print_config(tmp_path: Path) -> None:
    import subprocess

    from tests.conftest import vigil_bin

    r = subprocess.run([vigil_bin("vigil"), "proxy", "-c", str(write(tmp_path, BASE + "StartTrappers=3\n")),
                        "--print-config"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "ConfigFrequency=3600\n" in r.stdout and "Hostname=px\n" in r.stdout
    assert "# accepted, not implemented by Vigil: StartTrappers" in r.stdout
    r = subprocess.run([vigil_bin("vigil"), "proxy", "-c", str(write(tmp_path, BASE + "Nope=1\n", "bad.conf"))],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "bad.conf:5: Nope: unknown parameter" in r.stderr
