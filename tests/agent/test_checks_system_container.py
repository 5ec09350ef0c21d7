"""container.* keys on the real cgroup v2 hierarchy of this machine, and their input checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from vigil.agent.checks import Checks, NotSupported
from vigil.agent.checks.container import cgroup_dir, cgroup_root, discover

from tests.conftest import stop_process, wait_until


def _mounts(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "mounts"
    p.write_text(text)
    return p


def test_cgroup_root_from_mounts(tmp_path: Path) -> None:
    pure = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid 0 0\n"
    hybrid = "cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n"
    assert cgroup_root(_mounts(tmp_path, pure)) == Path("/sys/fs/cgroup")
    assert cgroup_root(_mounts(tmp_path, hybrid)) == Path("/sys/fs/cgroup/unified")
    with pytest.raises(NotSupported, match="cgroup v2 is not mounted"):
        cgroup_root(_mounts(tmp_path, "cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n"))
    with pytest.raises(NotSupported, match="Cannot read"):
        cgroup_root(tmp_path / "missing")


def test_discovery_rules_on_a_tree(tmp_path: Path) -> None:
    for d in [
        "init.scope", "system.slice/nginx.service", "system.slice/nginx.service/inner",
        "system.slice/docker-" + "a" * 64 + ".scope", "user.slice/user-0.slice/session-3.scope",
        "user.slice/user-0.slice/user@0.service/app.slice/foo.scope", "docker/" + "b" * 64,
        "lxc.payload.web1", "machine.slice/machine-vm1.scope", "kubepods/burstable/pod1/" + "c" * 64,
        "plain/group",
    ]:
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "cgroup.procs").write_text("")  # files are not cgroups
    got = [r["{#CGROUP}"] for r in discover(tmp_path)]
    assert got == sorted([
        "/docker/" + "b" * 64,
        "/kubepods/burstable/pod1/" + "c" * 64,
        "/lxc.payload.web1",
        "/machine.slice/machine-vm1.scope",
        "/system.slice/docker-" + "a" * 64 + ".scope",
        "/system.slice/nginx.service",
        "/user.slice/user-0.slice/user@0.service",
    ])
    names = {r["{#CGROUP}"]: r["{#NAME}"] for r in discover(tmp_path)}
    assert names["/system.slice/nginx.service"] == "nginx.service"


@pytest.mark.parametrize("cgroup", ["relative", "/a/../b", "/./x", "/a/.."])
def test_bad_cgroup_paths_name_the_parameter(tmp_path: Path, cgroup: str) -> None:
    with pytest.raises(NotSupported, match="^Invalid first parameter"):
        cgroup_dir(tmp_path, cgroup)


def test_missing_cgroup_and_missing_parameters(checks: Checks, tmp_path: Path) -> None:
    with pytest.raises(NotSupported, match='Cannot find cgroup "/nope"'):
        cgroup_dir(tmp_path, "/nope")
    for key, reason in [
        ("container.cpu.util", "Invalid first parameter."),
        ("container.cpu.util[]", "Invalid first parameter."),
        ("container.memory.usage[/a,b]", "Too many parameters."),
        ("container.discovery[x]", "Item does not allow parameters."),
    ]:
        with pytest.raises(NotSupported) as e:
            checks.get(key)
        assert str(e.value) == reason, key


def _writable_root() -> Path:
    try:
        root = cgroup_root()
    except NotSupported as e:
        pytest.skip(f"no cgroup v2 here: {e}")
    if not os.access(root, os.W_OK):
        pytest.skip(f"cannot create cgroups under {root} (not root)")
    return root


@pytest.fixture
def busy_cgroup() -> Iterator[tuple[Path, str, subprocess.Popen]]:
    """A new cgroup named like a systemd service, holding a process that spins."""
    root = _writable_root()
    name = f"vigil-test-{uuid.uuid4().hex[:8]}.service"
    path = root / name
    path.mkdir()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        (path / "cgroup.procs").write_text(str(busy.pid))
        yield path, f"/{name}", busy
    finally:
        stop_process(busy)

        def removed() -> bool:  # the cgroup can be removed once the killed process is reaped
            try:
                path.rmdir()
            except OSError:
                return False
            return True

        wait_until(removed, 5, f"the test cgroup {path} to be removable")


def test_container_keys_on_a_real_cgroup(checks: Checks, busy_cgroup: tuple[Path, str, subprocess.Popen]) -> None:
    path, cgroup, _ = busy_cgroup
    rows = json.loads(checks.get("container.discovery"))
    assert {"{#CGROUP}": cgroup, "{#NAME}": path.name} in rows
    util = checks.get(f"container.cpu.util[{cgroup}]")
    assert float(util) > 10, util  # a spinning process uses a good part of one core
    assert util.count(".") == 1 and len(util.split(".")[1]) == 6
    if (path / "memory.current").exists():
        assert int(checks.get(f"container.memory.usage[{cgroup}]")) > 0
    else:  # the hybrid v1/v2 layout keeps the memory controller on v1
        with pytest.raises(NotSupported, match="memory controller is not enabled"):
            checks.get(f"container.memory.usage[{cgroup}]")
    with pytest.raises(NotSupported, match="Cannot find cgroup"):
        checks.get(f"container.cpu.util[{cgroup}-gone]")
