"""The `vigil` admin CLI as an operator uses it: import errors, history and trends output, shell config."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import VigilServer, vigil_bin


@pytest.fixture
def cli(tmp_path: Path) -> VigilServer:
    """A store with the schema, no server process (these commands work on the database alone)."""
    s = VigilServer(tmp_path, f"sqlite:///{tmp_path / 'vigil.db'}")
    s.cli("db", "upgrade")
    return s


def test_import_errors_name_the_field_and_import_nothing(cli: VigilServer, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("hosts:\n  - host: a\n    items:\n      - {key: ok.key}\n      - {key: x, value_type: flot}\n")
    r = cli.cli("config", "import", str(bad), check=False)
    assert r.returncode == 1
    assert "hosts[0].items[1].value_type: 'flot' is not one of float" in r.stderr and "nothing was imported" in r.stderr
    assert "host: a" not in cli.cli("config", "export").stdout

    bad.write_text("hosts:\n  - host: a\n    items: [{key: x\n")
    r = cli.cli("config", "import", str(bad), check=False)
    assert r.returncode == 1 and "not valid YAML at line" in r.stderr
    r = cli.cli("config", "import", str(tmp_path / "missing.yaml"), check=False)
    assert r.returncode == 1 and "cannot read" in r.stderr


def test_shell_configuration_and_history(cli: VigilServer, tmp_path: Path) -> None:
    cli.cli("host", "create", "db01", "--group", "Databases")
    r = cli.cli("host", "create", "db01", check=False)
    assert r.returncode == 1 and "exists already" in r.stderr
    cli.cli("item", "create", "db01", "db.conn", "--value-type", "unsigned", "--units", "conn", "--tag", "team=dba")
    r = cli.cli("item", "create", "nohost", "k", check=False)
    assert r.returncode == 1 and "host 'nohost' not found" in r.stderr
    r = cli.cli("item", "create", "db01", "k", "--value-type", "bogus", check=False)
    assert r.returncode == 1 and "value_type: 'bogus'" in r.stderr
    export = cli.cli("config", "export").stdout
    assert "db.conn" in export and "team" in export and "Databases" in export

    r = cli.cli("history", "db01", "no.such.key", check=False)
    assert r.returncode == 1 and "no item 'no.such.key' on host 'db01'" in r.stderr
    r = cli.cli("history", "db01", "db.conn", "--from", "yesterday", check=False)
    assert r.returncode == 1 and "cannot read time 'yesterday'" in r.stderr
    r = cli.cli("history", "db01", "db.conn", "--from", "now", "--to", "now-1h", check=False)
    assert r.returncode == 1 and "is after" in r.stderr


def test_history_and_trends_through_a_running_server(tmp_path: Path) -> None:
    srv = VigilServer(tmp_path, f"sqlite:///{tmp_path / 'vigil.db'}").start()
    try:
        srv.import_yaml("hosts:\n  - host: h1\n    items:\n      - {key: t.f, value_type: float}\n"
                        "      - {key: t.u, value_type: unsigned}\n")
        srv.wait_for_config("h1")
        hour = (int(time.time()) // 3600 - 3) * 3600
        lines = [f"h1 t.f {hour + i * 600} {v}" for i, v in enumerate([1, 2, 3, 4, 5, 6, 10, 20])]
        lines += [f"h1 t.u {hour + 60} 5", f"h1 t.u {hour + 120} 7"]
        r = subprocess.run([vigil_bin("vigil-sender"), "-z", "127.0.0.1", "-p", str(srv.port), "-T", "-r", "-i", "-"],
                           input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stdout.count("Response from") == len(lines), r.stdout  # -r: one by one
        rows = srv.history("h1", "t.f")
        assert [float(x[2]) for x in rows] == [1, 2, 3, 4, 5, 6, 10, 20]
        r = srv.cli("history", "h1", "t.f", "--from", str(hour + 600), "--to", str(hour + 1800), "--limit", "2")
        assert [line.split("\t")[2] for line in r.stdout.splitlines()] == ["2.0", "3.0"]
        trends = [x for x in srv.history("h1", "t.f", "--trends")]
        assert trends == [[str(hour), "6", "1.0", "3.5", "6.0"], [str(hour + 3600), "2", "10.0", "15.0", "20.0"]]
        assert srv.history("h1", "t.u", "--trends") == [[str(hour), "2", "5", "6", "7"]]
    finally:
        srv.stop()
