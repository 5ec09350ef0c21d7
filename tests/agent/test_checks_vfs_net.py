"""vfs.*, net.*, web.page.*, system.run and UserParameters: Vigil's answers against the real zabbix_agentd 6.0.

One zabbix_agentd (with system.run allowed and a few UserParameters) and one small HTTP server are
started per module; every deterministic key is asked of both and the answers compared byte for byte.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from vigil.agent.checks import CheckContext, Checks, KeyRule, NotSupported, UserParameter, vfs
from vigil.agent.checks.vfs import DiskSampler, PosixCksum

from tests.conftest import free_port, require, stop_process, wait_port, wait_until, zabbix_get

TIMEOUT = 2  # the agent's Timeout, in both agents, so the timeout cases stay short

USER_PARAMETERS = {
    "up.flex": UserParameter("up.flex", 'echo "a=$1 b=$2 nine=$9 zero=$0"', True),
    "up.fixed": UserParameter("up.fixed", "echo fixed", False),
    "up.fail": UserParameter("up.fail", "echo out; echo err >&2; exit 3", False),
    "up.empty": UserParameter("up.empty", "true", False),
}


def zabbix_conf_lines() -> str:
    lines = (f"UserParameter={u.name}{'[*]' if u.flexible else ''},{u.command}\n" for u in USER_PARAMETERS.values())
    return "".join(lines)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("vfsfiles")
    (d / "f.txt").write_bytes(b"line one\nfoo=42 bar\nsecond foo=7\nlast")
    (d / "empty.txt").write_bytes(b"")
    (d / "trail.txt").write_bytes(b"a\nb\n\n\n")
    (d / "crlf.txt").write_bytes(b"a\r\nb\r\n")
    (d / "nul.txt").write_bytes(b"a\x00b\n")
    (d / "u16.txt").write_bytes(b"\xff\xfeh\x00i\x00")
    (d / "bom.txt").write_bytes(b"\xef\xbb\xbfbom\n")
    (d / "sp.txt").write_bytes(b"a  \n")
    (d / "latin.txt").write_bytes(b"h\xe9llo\n")
    (d / "big.txt").write_bytes(b"a" * 70000)
    (d / "random.bin").write_bytes(os.urandom(300_000))
    (d / "dir").mkdir()
    (d / "lnk").symlink_to("f.txt")
    (d / "broken").symlink_to("/nonexistent/target")
    os.utime(d / "f.txt", (1609459200, 1577836800))
    return d


class FixedHandler(http.server.BaseHTTPRequestHandler):
    """Answers with fixed headers so two requests get the same bytes."""

    protocol_version = "HTTP/1.1"
    pages = {
        "/index.html": b"hello world\nvalue=17\n",
        "/trail.html": b"a\n\n\n",
        "/q?x=1": b"query seen",
    }

    def version_string(self) -> str:
        return "fixed/1.0"

    def date_time_string(self, timestamp: float | None = None) -> str:
        return "Sun, 01 Jan 2023 00:00:00 GMT"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path == "/slow":
            threading.Event().wait(TIMEOUT + 1)
            return
        body = self.pages.get(self.path)
        if body is None:
            self.send_response(404)
            body = b"not found\n"
        else:
            self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Agent", self.headers.get("User-Agent", ""))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture(scope="module")
def http_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FixedHandler)
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def agent_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real zabbix_agentd with system.run allowed and the UserParameters above."""
    binary = require("zabbix_agentd")
    d = tmp_path_factory.mktemp("zbxagent")
    port = free_port()
    conf = d / "zabbix_agentd.conf"
    conf.write_text(
        f"Server=127.0.0.1\nServerActive=\nListenIP=127.0.0.1\nListenPort={port}\nHostname=zbx-peer\n"
        f"LogType=console\nPidFile={d}/zabbix_agentd.pid\nStartAgents=3\nAllowRoot=1\nTimeout={TIMEOUT}\n"
        "AllowKey=system.run[*]\n" + zabbix_conf_lines()
    )
    proc = subprocess.Popen([binary, "-f", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, proc=proc)
        yield port
    finally:
        stop_process(proc)


def ours(key: str, *, unsafe: bool = False, allow_run: bool = True) -> str:
    ctx = CheckContext(hostname="x", timeout=float(TIMEOUT), user_parameters=USER_PARAMETERS,
                       unsafe_user_parameters=unsafe)
    checks = Checks(ctx, [KeyRule(True, "system.run[*]")] if allow_run else None)
    try:
        return checks.get(key)
    except NotSupported as e:
        return f"ZBX_NOTSUPPORTED: {e}"


def theirs(port: int, key: str) -> str:
    """zabbix_get's answer as bytes decoded, so CR/LF are kept exactly."""
    r = subprocess.run(
        [require("zabbix_get"), "-s", "127.0.0.1", "-p", str(port), "-k", key, "-t", str(TIMEOUT + 3)],
        capture_output=True, timeout=TIMEOUT + 10,
    )
    return (r.stdout + r.stderr).decode("utf-8", errors="replace").removesuffix("\n")


SAME_ANSWER = [
    # file systems
    "vfs.fs.size[/,total]", "vfs.fs.size[/]", 'vfs.fs.size["/",total]', "vfs.fs.size[/proc,pfree]",
    "vfs.fs.size[/proc,pused]", "vfs.fs.size[/no/such/fs,free]", "vfs.fs.size[/,bad]", "vfs.fs.size",
    "vfs.fs.size[]", "vfs.fs.size[/,free,x]", "vfs.fs.inode[/,total]", "vfs.fs.inode[/proc,pfree]",
    "vfs.fs.inode[/proc,pused]", "vfs.fs.inode[]", "vfs.fs.inode[/nosuch]", "vfs.fs.inode[/,bad]",
    "vfs.fs.discovery", "vfs.fs.discovery[x]", "vfs.fs.get[]",
    # vfs.file.exists and its type lists
    "vfs.file.exists[{d}/f.txt]", "vfs.file.exists[{d}/nope]", "vfs.file.exists[{d}/dir]",
    "vfs.file.exists[{d}/dir,dir]", "vfs.file.exists[{d}/dir,any]", "vfs.file.exists[{d}/lnk]",
    "vfs.file.exists[{d}/lnk,sym]", "vfs.file.exists[{d}/lnk,file,sym]", "vfs.file.exists[{d}/lnk,all,file]",
    "vfs.file.exists[{d}/broken]", "vfs.file.exists[{d}/broken,sym]", "vfs.file.exists[{d}/broken,all]",
    "vfs.file.exists[/dev/null]", "vfs.file.exists[/dev/null,dev]", "vfs.file.exists[/dev/null,cdev]",
    "vfs.file.exists[{d}/dir,,file]", "vfs.file.exists[{d}/dir,,dir]", 'vfs.file.exists[{d}/f.txt,"file, dir"]',
    'vfs.file.exists[{d}/f.txt,"file,,dir"]', "vfs.file.exists[]", "vfs.file.exists",
    "vfs.file.exists[{d}/f.txt,file,file,x]",
    # size, time
    "vfs.file.size[{d}/f.txt]", "vfs.file.size[{d}/f.txt,bytes]", "vfs.file.size[{d}/f.txt,lines]",
    "vfs.file.size[{d}/trail.txt,lines]", "vfs.file.size[{d}/empty.txt,lines]", "vfs.file.size[{d}/lnk]",
    "vfs.file.size[{d}/f.txt,bad]", "vfs.file.size[{d}/nope]", "vfs.file.size[{d}/dir,lines]",
    "vfs.file.size[]", "vfs.file.size[{d}/f.txt,lines,x]",
    "vfs.file.time[{d}/f.txt]", "vfs.file.time[{d}/f.txt,modify]", "vfs.file.time[{d}/f.txt,access]",
    "vfs.file.time[{d}/f.txt,change]", "vfs.file.time[{d}/lnk]", "vfs.file.time[{d}/f.txt,bad]",
    "vfs.file.time[{d}/nope]",
    # contents: trailing newlines, NUL, byte-order marks, encodings, limits
    "vfs.file.contents[{d}/f.txt]", "vfs.file.contents[{d}/trail.txt]", "vfs.file.contents[{d}/crlf.txt]",
    "vfs.file.contents[{d}/nul.txt]", "vfs.file.contents[{d}/u16.txt]", "vfs.file.contents[{d}/u16.txt,UTF-16]",
    "vfs.file.contents[{d}/bom.txt]", "vfs.file.contents[{d}/sp.txt]", "vfs.file.contents[{d}/empty.txt]",
    "vfs.file.contents[{d}/latin.txt,ISO-8859-1]", "vfs.file.contents[{d}/big.txt]",
    "vfs.file.contents[{d}/nope]", "vfs.file.contents[{d}/dir]", "vfs.file.contents[]",
    "vfs.file.contents[{d}/f.txt,,x]",
    # regexp: lines, groups, output templates, line ranges
    "vfs.file.regexp[{d}/f.txt,foo]", 'vfs.file.regexp[{d}/f.txt,"foo=([0-9]+)",,3,,"\\1"]',
    'vfs.file.regexp[{d}/f.txt,"foo=([0-9]+)",,,2,"v=\\1 all=\\0 none=\\2 \\\\x \\@"]',
    "vfs.file.regexp[{d}/f.txt,foo,,,,x\\y]", 'vfs.file.regexp[{d}/f.txt,foo,,,,"\\@"]',
    "vfs.file.regexp[{d}/f.txt,nomatch]", "vfs.file.regexp[{d}/f.txt]", "vfs.file.regexp[{d}/f.txt,]",
    "vfs.file.regexp[{d}/f.txt,foo,,x]", "vfs.file.regexp[{d}/f.txt,foo,,-1]", "vfs.file.regexp[{d}/f.txt,foo,,1,x]",
    "vfs.file.regexp[{d}/f.txt,foo,,0]", "vfs.file.regexp[{d}/f.txt,foo,,3,2]", "vfs.file.regexp[{d}/f.txt,foo,,,0]",
    "vfs.file.regexp[{d}/nope,foo]", "vfs.file.regexp[{d}/dir,foo]", "vfs.file.regexp[{d}/f.txt,foo,,,,,x]",
    "vfs.file.regexp[{d}/crlf.txt,a]", "vfs.file.regexp[{d}/f.txt,bar$]", "vfs.file.regexp[{d}/f.txt,(?i)LINE]",
    "vfs.file.regexp[{d}/latin.txt,h.llo,ISO-8859-1]",
    "vfs.file.regmatch[{d}/f.txt,foo]", "vfs.file.regmatch[{d}/f.txt,zzz]", "vfs.file.regmatch[{d}/f.txt,foo,,3]",
    # checksums
    "vfs.file.cksum[{d}/f.txt]", "vfs.file.cksum[{d}/f.txt,crc32]", "vfs.file.cksum[{d}/f.txt,md5]",
    "vfs.file.cksum[{d}/f.txt,sha256]", "vfs.file.cksum[{d}/random.bin]", "vfs.file.cksum[{d}/random.bin,md5]",
    "vfs.file.cksum[{d}/empty.txt]", "vfs.file.cksum[{d}/f.txt,bad]", "vfs.file.cksum[{d}/nope]",
    "vfs.file.cksum[{d}/dir]", "vfs.file.cksum[]", "vfs.file.md5sum[{d}/f.txt]", "vfs.file.md5sum[{d}/nope]",
    "vfs.file.md5sum[{d}/f.txt,x]",
    # block devices: parameter checking (the counters themselves move)
    "vfs.dev.read[,bps]", "vfs.dev.read[,sps,bad]", "vfs.dev.read[,sectors,avg1]", "vfs.dev.read[nosuch]",
    "vfs.dev.write[nosuch,ops]", "vfs.dev.read[,sps,avg1,x]", "vfs.dev.discovery",
    # interfaces and sockets
    "net.if.discovery", "net.if.in[lo,errors]", "net.if.out[lo,carrier]", "net.if.out[lo,frame]",
    "net.if.total[lo,frame]", "net.if.total[lo,compressed]", "net.if.collisions[lo]", "net.if.in[nosuch]",
    "net.if.in[]", "net.if.in[lo,bad]", "net.if.in[lo,bytes,x]",
    "net.tcp.listen[{agent}]", "net.tcp.listen[{closed}]", "net.tcp.listen[abc]", "net.tcp.listen[]",
    "net.tcp.listen[70000]", "net.udp.listen[abc]", "net.udp.listen[{closed}]",
    "net.tcp.port[,{agent}]", "net.tcp.port[127.0.0.1,{agent}]", "net.tcp.port[localhost,{http}]",
    "net.tcp.port[127.0.0.1,{closed}]", "net.tcp.port[127.0.0.1]", "net.tcp.port[127.0.0.1,abc]",
    "net.tcp.port[127.0.0.1,70000]", "net.tcp.port[nosuch.invalid,80]",
    # web pages
    "web.page.get[127.0.0.1,/index.html,{http}]", "web.page.get[127.0.0.1,index.html,{http}]",
    "web.page.get[http://127.0.0.1:{http}/index.html]", "web.page.get[http://127.0.0.1:{http}/index.html#frag]",
    "web.page.get[localhost,/q?x=1,{http}]", "web.page.get[127.0.0.1,/trail.html,{http}]",
    "web.page.get[127.0.0.1,/nosuch,{http}]", "web.page.get[127.0.0.1,/,{closed}]", "web.page.get[]",
    "web.page.get[127.0.0.1,/,abc]", "web.page.get[http://127.0.0.1:{http}/index.html,/x]",
    "web.page.get[ftp://127.0.0.1/]", "web.page.get[nosuch.invalid,/,80]", "web.page.get[127.0.0.1,/,{http},x]",
    'web.page.regexp[127.0.0.1,/index.html,{http},"value=([0-9]+)",,"\\1"]',
    "web.page.regexp[127.0.0.1,/index.html,{http},value]", "web.page.regexp[127.0.0.1,/index.html,{http},X-Agent.*]",
    "web.page.regexp[127.0.0.1,/index.html,{http},zzz]", "web.page.regexp[127.0.0.1,/index.html,{http},.,3]",
    "web.page.regexp[127.0.0.1,/index.html,{http}]", "web.page.regexp[127.0.0.1,/index.html,{http},value,x]",
    "web.page.regexp[127.0.0.1,/index.html,{http},a,0]", "web.page.regexp[127.0.0.1,/index.html,{http},a,-1]",
    'web.page.regexp[127.0.0.1,/index.html,{http},"world\\nvalue"]',
    "web.page.regexp[127.0.0.1,/index.html,{http},^value]", "web.page.regexp[127.0.0.1,/,{http},a,,,x]",
    "web.page.perf[127.0.0.1,/,{closed}]", "web.page.perf[127.0.0.1,/,{http},x]",
    # system.run (allowed) and UserParameters
    "system.run[echo hi]", "system.run[exit 3]", "system.run[echo x; exit 3]", "system.run[echo hi,nowait]",
    "system.run[echo hi,wait]", "system.run[echo hi,bad]", "system.run", "system.run[]", "system.run[echo a,wait,x]",
    'system.run[printf "a  \\n\\n  "]', 'system.run[printf "\\n\\nab"]', "system.run[echo out; echo err >&2]",
    "system.run[sleep {slow}]",
    "up.flex[1,2]", "up.flex", "up.flex[[a,b],c]", "up.flex[x;y]", "up.flex[a b,$HOME]", "up.flex[`id`]",
    'up.flex["a\\"b"]', "up.flex[1,2,3,4,5,6,7,8,9]", "up.fixed", "up.fixed[1]", "up.fixed[]", "up.fail",
    "up.empty", "up.unknown",
    # malformed keys
    "vfs.file.contents[{d}/f.txt", "vfs.file.contents[{d}/f.txt]x",
]


@pytest.fixture(scope="module")
def values(files: Path, http_port: int, agent_port: int) -> dict[str, str]:
    closed = free_port()
    return {"d": str(files), "http": str(http_port), "agent": str(agent_port), "closed": str(closed),
            "slow": str(TIMEOUT + 1)}


@pytest.mark.parametrize("template", SAME_ANSWER)
def test_same_answer_as_zabbix_agentd(template: str, values: dict[str, str], agent_port: int) -> None:
    key = template.format(**values)
    expected = theirs(agent_port, key)
    got = ours(key)
    if key.startswith("vfs.file.contents[") and not key.endswith("]"):
        # a malformed key: Zabbix says only "Invalid item key format."; we also say where
        assert expected == "ZBX_NOTSUPPORTED: Invalid item key format."
        assert got.startswith("ZBX_NOTSUPPORTED: Invalid item key format: ")
        return
    assert got == expected


def test_fs_size_numbers(agent_port: int) -> None:
    total, used, free = (int(ours(f"vfs.fs.size[/,{m}]")) for m in ("total", "used", "free"))
    assert total == int(theirs(agent_port, "vfs.fs.size[/,total]"))
    # used and free move with every write on the disk; they must agree to within 1% of the total
    assert abs(used - int(theirs(agent_port, "vfs.fs.size[/,used]"))) < total / 100
    assert abs(free - int(theirs(agent_port, "vfs.fs.size[/,free]"))) < total / 100
    s = os.statvfs("/")
    assert total == s.f_blocks * s.f_frsize
    pfree, pused = float(ours("vfs.fs.size[/,pfree]")), float(ours("vfs.fs.size[/,pused]"))
    assert abs(pfree + pused - 100.0) < 0.01
    assert abs(pfree - float(theirs(agent_port, "vfs.fs.size[/,pfree]"))) < 1.0
    assert ours("vfs.fs.size[/,pused]").count(".") == 1 and len(ours("vfs.fs.size[/,pused]").split(".")[1]) == 6


def test_fs_get_same_file_systems(agent_port: int) -> None:
    mine = json.loads(ours("vfs.fs.get"))
    real = json.loads(theirs(agent_port, "vfs.fs.get"))
    assert [(f["fsname"], f["fstype"]) for f in mine] == [(f["fsname"], f["fstype"]) for f in real]
    assert [f["bytes"]["total"] for f in mine] == [f["bytes"]["total"] for f in real]
    assert [f["inodes"]["total"] for f in mine] == [f["inodes"]["total"] for f in real]
    assert set(mine[0]) == set(real[0]) and set(mine[0]["bytes"]) == set(real[0]["bytes"])
    raw = ours("vfs.fs.get")
    assert re.search(r'"pfree":\d+\.\d{6}[,}]', raw)  # floats written with 6 decimals, as Zabbix does


def test_fs_discovery_macros(agent_port: int) -> None:
    mine = json.loads(ours("vfs.fs.discovery"))
    assert mine == json.loads(theirs(agent_port, "vfs.fs.discovery"))
    assert {"{#FSNAME}": "/", "{#FSTYPE}": mine[[m["{#FSNAME}"] for m in mine].index("/")]["{#FSTYPE}"]} in mine


def test_net_if_discovery_set_equal(agent_port: int) -> None:
    mine = {d["{#IFNAME}"] for d in json.loads(ours("net.if.discovery"))}
    assert "lo" in mine
    assert mine == {d["{#IFNAME}"] for d in json.loads(theirs(agent_port, "net.if.discovery"))}


@pytest.mark.parametrize("key", ["net.if.in[lo]", "net.if.out[lo,packets]", "net.if.total[lo,bytes]",
                                 "vfs.dev.read[,sectors]", "vfs.dev.write[all,operations]"])
def test_counters_between_ours(key: str, agent_port: int) -> None:
    """A counter read by zabbix_agentd lies between two of ours taken before and after it."""
    before = int(ours(key))
    real = int(theirs(agent_port, key))
    after = int(ours(key))
    assert before <= real <= after


def test_dev_rate_keys_answer_floats() -> None:
    for key in ("vfs.dev.read[]", "vfs.dev.write[all,ops,avg5]", "vfs.dev.read[,sps,avg15]"):
        v = ours(key)
        assert float(v) >= 0.0 and len(v.split(".")[1]) == 6, (key, v)


def test_disk_sampler_rates() -> None:
    s = DiskSampler()
    q = s._samples["x"] = __import__("collections").deque(maxlen=s.HISTORY)
    assert s.rate("x", 1, "avg1") == 0.0  # no samples yet, as zabbix_agentd answers at first
    for t in range(0, 400):
        q.append((float(t), [t * 2, t * 10, 0, 0]))
    assert s.rate("x", 1, "avg1") == pytest.approx(10.0)
    assert s.rate("x", 0, "avg5") == pytest.approx(2.0)
    assert s.rate("x", 0, "avg15") == pytest.approx(2.0)  # less than 15 minutes known: all of it
    q.append((400.0, [0, 0, 0, 0]))  # a counter reset never gives a negative rate
    assert s.rate("x", 1, "avg1") == 0.0


IO_BYTES = 8 * 2**20


def _block_device_of(path: Path) -> str:
    """The kernel's name of the block device holding `path`, as /proc/diskstats lists it."""
    st = os.stat(path)
    for major, minor, name, _ in vfs._diskstats():
        if (major, minor) == (os.major(st.st_dev), os.minor(st.st_dev)) and Path("/dev", name).exists():
            return name
    pytest.skip(f"{path} is on no block device of /proc/diskstats with a /dev node (tmpfs, overlay?)")


def _write_synced(path: Path) -> None:
    with path.open("wb") as f:
        f.write(os.urandom(IO_BYTES))
        f.flush()
        os.fsync(f.fileno())  # returns once the device has completed the writes: they are counted


def _read_uncached(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # the pages are clean (fsynced): dropped
        while os.read(fd, 2**20):
            pass
    finally:
        os.close(fd)


@pytest.mark.parametrize("direction", ["write", "read"])
def test_dev_rates_follow_real_io(direction: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Known I/O on the device holding tmp_path moves vfs.dev.read/write: the rate in sectors/s over
    the sampler's own interval accounts for at least the bytes that went to the device."""
    dev = _block_device_of(tmp_path)
    data = tmp_path / "io.bin"
    if direction == "read":
        _write_synced(data)  # on the device before the first sample
    sps, ops = f"vfs.dev.{direction}[{dev},sps]", f"vfs.dev.{direction}[/dev/{dev},ops]"

    def counted() -> bool:
        # A fresh sampler each try, sampled only here: the interval spans this try's I/O and no more,
        # so the other processes' I/O on a busy machine cannot add up to the amount looked for.
        sampler = DiskSampler(interval=3600)
        monkeypatch.setattr(vfs, "SAMPLER", sampler)
        assert ours(sps) == "0.000000" and ours(ops) == "0.000000"  # one sample: no rate yet, as zabbix_agentd
        (_write_synced if direction == "write" else _read_uncached)(data)
        sampler.sample()
        samples = sampler._samples[dev]
        interval = samples[-1][0] - samples[0][0]
        return float(ours(sps)) * interval >= IO_BYTES / 512 - 1 and float(ours(ops)) > 0

    wait_until(counted, 20, f"{IO_BYTES} bytes of {direction}s on {dev} in {sps} and {ops}")


def test_cksum_matches_posix_cksum_program(files: Path) -> None:
    cksum = shutil.which("cksum")
    assert cksum is not None
    for name in ("f.txt", "random.bin", "empty.txt", "big.txt"):
        expected = subprocess.run([cksum, str(files / name)], capture_output=True, text=True).stdout.split()[0]
        assert ours(f"vfs.file.cksum[{files / name}]") == expected
    c = PosixCksum()
    data = (files / "random.bin").read_bytes()
    for i in range(0, len(data), 7777):
        c.update(data[i : i + 7777])
    assert str(c.value()) == ours(f"vfs.file.cksum[{files / 'random.bin'}]")
    assert c.value() != zlib.crc32(data)  # not the zlib CRC-32


def test_cksum_md5_sha256(files: Path) -> None:
    data = (files / "random.bin").read_bytes()
    assert ours(f"vfs.file.cksum[{files}/random.bin,sha256]") == hashlib.sha256(data).hexdigest()
    assert ours(f"vfs.file.md5sum[{files}/random.bin]") == hashlib.md5(data).hexdigest()


def test_tcp_listen_and_port_on_our_own_socket() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert ours(f"net.tcp.listen[{port}]") == "1"
        assert ours(f"net.tcp.port[127.0.0.1,{port}]") == "1"
    assert ours(f"net.tcp.listen[{port}]") == "0"
    assert ours(f"net.tcp.port[127.0.0.1,{port}]") == "0"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.bind(("127.0.0.1", 0))
        assert ours(f"net.udp.listen[{u.getsockname()[1]}]") == "1"


def test_web_page_perf_is_seconds(http_port: int) -> None:
    v = ours(f"web.page.perf[127.0.0.1,/index.html,{http_port}]")
    assert 0.0 < float(v) < TIMEOUT and len(v.split(".")[1]) == 6


def test_web_page_timeout(http_port: int) -> None:
    assert ours(f"web.page.get[127.0.0.1,/slow,{http_port}]") == (
        "ZBX_NOTSUPPORTED: Cannot perform cURL request: Timeout was reached.")


def test_web_page_sends_zabbix_user_agent(http_port: int) -> None:
    assert ours(f"web.page.regexp[127.0.0.1,/index.html,{http_port},X-Agent: (.*),,\\1]") == "Zabbix 6.0.14"


def test_system_run_denied_by_default(zabbix_agentd: int) -> None:
    assert ours("system.run[echo hi]", allow_run=False) == "ZBX_NOTSUPPORTED: Unsupported item key."
    assert zabbix_get(zabbix_agentd, "system.run[echo hi]") == "ZBX_NOTSUPPORTED: Unsupported item key."


def test_system_run_timeout_kills_the_command(tmp_path: Path) -> None:
    marker = tmp_path / "survived"
    out = ours(f"system.run[sleep {TIMEOUT + 1}; touch {marker}]")
    assert out == "ZBX_NOTSUPPORTED: Timeout while executing a shell script."
    threading.Event().wait(1.5)
    assert not marker.exists()


def test_system_run_nowait_runs_in_background(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    assert ours(f"system.run[touch {marker},nowait]") == "1"
    for _ in range(50):
        if marker.exists():
            break
        threading.Event().wait(0.05)
    assert marker.exists()


def test_unsafe_user_parameters_lets_special_characters_through() -> None:
    assert ours("up.flex[x;y]").startswith('ZBX_NOTSUPPORTED: Special characters "\\, \', ", `, *')
    assert ours("up.flex[x;y]").endswith('#, @, 0x0a" are not allowed in the parameters.')
    # $2 reaches the shell as `$z`, which expands to nothing; $0 is the command itself
    assert ours("up.flex[x;y,$z]", unsafe=True) == "a=x;y b= nine= zero=echo a= b= nine= zero=sh"


@pytest.mark.parametrize(("key", "reason"), [
    ("vfs.file.regexp[/etc/hostname,(]", "Invalid regular expression in the second parameter"),
    ("web.page.regexp[127.0.0.1,/,80,(]", "Invalid regular expression in the fourth parameter"),
    ('vfs.file.contents["/etc/hostname]', "Invalid item key format"),
    ("vfs.fs.size[/,[a,b]]", "Invalid parameter"),
])
def test_bad_input_is_refused_with_a_reason(key: str, reason: str) -> None:
    """Where Vigil is stricter than zabbix_agentd (a regexp that does not compile is an error here)."""
    assert ours(key).startswith(f"ZBX_NOTSUPPORTED: {reason}")
