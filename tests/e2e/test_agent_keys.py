"""The real zabbix_get asks the vigil-agent process for every key of the agent issue, and the real
zabbix_agentd for the same key: the answers must agree (exactly where the value holds still, in
kind and size where it moves). Vigil's own container keys have no Zabbix counterpart: they must
answer a value or a clear ZBX_NOTSUPPORTED reason."""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import free_port, require, stop_process, vigil_bin, wait_port, zabbix_get


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("keys")
    (d / "f.txt").write_text("alpha 1\nbeta 22\ngamma 333\n")
    tree = d / "tree"  # the directory keys' own tree: nothing else touches it
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_text("hello\n")
    (tree / "sub" / "b.txt").write_text("hi\n")
    (tree / "sub" / "c.log").write_text("x" * 5000)
    (tree / "l").symlink_to("a.txt")
    for _ in os.walk(tree):  # the first listing of a new directory sets its atime: not between two asks
        pass
    (d / "nonl.txt").write_text("b" * 100000 + "XYZ" + "c" * 100000)  # no newline: read 64 KiB at a time
    return d


@pytest.fixture(scope="module")
def web() -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = b"<html>vigil test page 42</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("x-lower", " spaced  value")  # sent as "x-lower:  spaced  value"
            self.send_header("X-Twice", "1")
            self.send_header("X-Twice", "2")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1]
    httpd.shutdown()


CONF = ("Server=127.0.0.1\nServerActive=\nListenIP=127.0.0.1\nListenPort={port}\nHostname=keys-host\n"
        "LogType=console\nPidFile={pid}\nStartAgents=3\nTimeout=5\nAllowKey=system.run[echo *]\n")


@pytest.fixture(scope="module")
def agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    """(vigil-agent port, zabbix_agentd port), both configured alike."""
    d = tmp_path_factory.mktemp("agents")
    procs = []
    ports = []
    for name, cmd in (("vigil", [vigil_bin("vigil-agent"), "-c"]), ("zabbix", [require("zabbix_agentd"), "-f", "-c"])):
        port = free_port()
        conf = d / f"{name}.conf"
        conf.write_text(CONF.format(port=port, pid=d / f"{name}.pid") + "AllowRoot=1\n")
        procs.append(subprocess.Popen([*cmd, str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_port(port, 15, procs[-1])
        ports.append(port)
    try:
        yield ports[0], ports[1]
    finally:
        for p in procs:
            stop_process(p)


def _num(text: str) -> float:
    assert re.fullmatch(r"-?\d+(\.\d+)?", text), f"not a number: {text!r}"
    return float(text)


EXACT = [
    "agent.ping", "agent.version", "system.hostname", "system.uname", "system.cpu.num", "system.cpu.num[max]",
    "system.swap.size[,total]", "vm.memory.size[total]", "vfs.fs.size[/,total]", "vfs.fs.inode[/,total]",
    "vfs.file.exists[{f}/f.txt]", "vfs.file.exists[{f}/missing]", "vfs.file.size[{f}/f.txt]",
    "vfs.file.size[{f}/f.txt,lines]", "vfs.file.time[{f}/f.txt]", "vfs.file.contents[{f}/f.txt]",
    "vfs.file.regexp[{f}/f.txt,b.ta (\\d+),,,,\\1]", "vfs.file.cksum[{f}/f.txt]", "vfs.file.cksum[{f}/f.txt,sha256]",
    "vfs.file.md5sum[{f}/f.txt]", "net.tcp.port[127.0.0.1,{web}]", "net.tcp.port[127.0.0.1,1]",
    "net.tcp.listen[{web}]", "net.udp.listen[1]", "kernel.maxfiles", "kernel.maxproc",
    "web.page.regexp[127.0.0.1,/,{web},page (\\d+),,\\1]", "system.run[echo vigil]", "system.run[id]",
    "vfs.fs.size[/no/such/fs,free]", "vfs.file.contents[/nonexistent]", "no.such.key", "agent.ping[extra]",
    "system.cpu.load[all,avg99]", "vm.memory.size[bogus]", "proc.num[,,bogus]",
    "vfs.file.regexp[{f}/nonl.txt,XYZ]", "vfs.file.regexp[{f}/nonl.txt,c+,,,,\\0]",
    "vfs.file.regexp[{f}/nonl.txt,^c+,,,,\\0]", "vfs.file.regexp[{f}/nonl.txt,XYZ,,2,,\\0]",
    "vfs.file.regmatch[{f}/nonl.txt,XYZ,,3]",
    # keys operators expect (issue 11)
    "system.sw.arch", "system.sw.os", "system.sw.os[name]", "system.sw.os[short]", "system.sw.os[bad]",
    "system.hw.cpu[0,vendor]", "system.hw.cpu[0,model]", "system.hw.cpu[all,maxfreq]",
    "system.hw.cpu[99]", "system.hw.cpu[all,bogus]",
    "vfs.file.owner[{f}/tree/a.txt]", "vfs.file.owner[{f}/tree/a.txt,group,id]", "vfs.file.owner[{f}/tree/a.txt,bad]",
    "vfs.file.permissions[{f}/tree/a.txt]", "vfs.file.permissions[{f}/tree]", "vfs.file.permissions[/nonexistent]",
    "vfs.file.get[{f}/tree/a.txt]", "vfs.file.get[{f}/tree/l]", "vfs.file.get[{f}/tree/sub]",
    "vfs.file.get[/nonexistent]",
    "vfs.dir.count[{f}/tree]", "vfs.dir.count[{f}/tree,,,file]", "vfs.dir.count[{f}/tree,,,,dir,0]",
    "vfs.dir.count[{f}/tree,txt$]", "vfs.dir.count[{f}/tree,,^a]", "vfs.dir.count[{f}/tree,,,,,,,,,,sub]",
    "vfs.dir.count[{f}/tree,,,,,,4]", "vfs.dir.count[{f}/tree,,,,,,1K]", "vfs.dir.count[{f}/tree,,,bogus]",
    "vfs.dir.count[/nonexistent]", "vfs.dir.count[{f}/f.txt]",
    "vfs.dir.size[{f}/tree]", "vfs.dir.size[{f}/tree,,,disk]", "vfs.dir.size[{f}/tree,txt$]",
    "vfs.dir.size[{f}/tree,,,,0]", "vfs.dir.size[{f}/tree,,,bogus]", "vfs.dir.size[/nonexistent]",
    "net.tcp.service[tcp,,{web}]", "net.tcp.service[http,127.0.0.1,{web}]", "net.tcp.service[tcp,127.0.0.1,1]",
    "net.tcp.service[ssh,127.0.0.1,{web}]", "net.tcp.service[tcp]", "net.tcp.service[bogus]",
    "net.tcp.service.perf[tcp,127.0.0.1,1]", "net.udp.service[ntp,127.0.0.1,1]", "net.udp.service[bogus]",
    "net.tcp.socket.count[,{web},,,listen]", "net.tcp.socket.count[,,,,bogus]", "net.udp.socket.count[,1]",
    "sensor[x,y]", "system.sw.packages[^bash$,,short]", "system.sw.packages[^bash,dpkg]", "system.sw.packages[^zzz]",
    "system.sw.packages[,bogus]", "system.sw.packages[(]", "system.hw.cpu[all,vendor]",
    "vfs.file.get[{f}/tree/]", "vfs.file.permissions[{f}/tree/l]", "vfs.file.owner[{f}/tree/l,,id]",
    "vfs.dir.count[{f}/tree,(]", "vfs.dir.count[{f}/tree,,,,,,,,,,(]", "vfs.dir.size[{f}/tree,,,,,(]",
    "vfs.dir.count[{f}/tree,,,sym]", "vfs.dir.size[{f}/tree,,,,,sub]", "vfs.dir.count[{f}/tree,,,,,,,,1h]",
    "vfs.dir.count[{f}/tree,,,,,,,,,1h]", "vfs.dir.count[{f}/tree,,,,,-1]", "vfs.dir.size[{f}/tree/]",
    "net.tcp.socket.count[,nosuchservice]", "net.tcp.socket.count[localhost]", "net.tcp.socket.count[,70000]",
    "net.tcp.service[tcp,127.0.0.1,0]", "net.udp.socket.count[,,,,established]",
    'vfs.dir.count[{f}/tree,"^[[:alpha:]]+\\.txt$"]', 'system.sw.packages["^[[:alpha:]]ash$",,short]',
]
# Values that move between the two asks: same kind, close enough.
CLOSE = {
    "system.uptime": 3, "system.boottime": 2, "system.localtime": 3, "system.users.num": 0.5,
    "system.cpu.load[all,avg1]": 2.0, "system.cpu.load[percpu,avg5]": 2.0,
    "system.cpu.util[,user]": 100, "system.cpu.util[,idle,avg1]": 100, "system.cpu.switches": 0.5,
    "system.cpu.intr": 0.5, "system.swap.size[,free]": 0.1, "vm.memory.size[available]": 0.1,
    "vm.memory.size[pavailable]": 10, "vfs.fs.size[/,free]": 0.05, "vfs.fs.size[/,pused]": 5,
    "vfs.fs.inode[/,pfree]": 5, "vfs.dev.read[,operations]": 0.5, "vfs.dev.write[,sectors]": 0.5,
    "net.if.in[lo]": 0.5, "net.if.out[lo,packets]": 0.5, "net.if.total[lo]": 0.5,
    "proc.num": 0.5, "proc.num[,root]": 0.5, "proc.mem[,root]": 0.5,
    "proc.cpu.util[,root]": 400, "web.page.perf[127.0.0.1,/,{web}]": 1,
    "net.tcp.service.perf[tcp,127.0.0.1,{web}]": 1, "net.tcp.socket.count[127.0.0.1]": 0.5,
    "system.hw.cpu[0,curfreq]": 0.2,
}
# Lists with each CPU's current frequency (it moves between the two asks: 2599MHz, then 2600MHz):
# the same text once the current MHz are taken out, and each within 2% of zabbix_agentd's.
CURFREQ = ["system.hw.cpu", "system.hw.cpu[all,curfreq]"]
_CUR_MHZ = re.compile(r"(: |working at )(\d+)MHz")
JSON_SETS = ["vfs.fs.discovery", "net.if.discovery", "vfs.fs.get"]


def _key(k: str, files: Path, web: int) -> str:
    return k.replace("{f}", str(files)).replace("{web}", str(web))


@pytest.mark.parametrize("key", EXACT)
def test_same_answer(agents: tuple[int, int], files: Path, web: int, key: str) -> None:
    k = _key(key, files, web)
    # longer than the agents' Timeout (5 s): a silent service answers 0 only after it
    assert zabbix_get(agents[0], k, timeout=10) == zabbix_get(agents[1], k, timeout=10)


@pytest.mark.parametrize("key", sorted(CLOSE))
def test_close_answer(agents: tuple[int, int], files: Path, web: int, key: str) -> None:
    k = _key(key, files, web)
    ours, theirs = zabbix_get(agents[0], k), zabbix_get(agents[1], k)
    a, b = _num(ours), _num(theirs)
    assert ("." in ours) == ("." in theirs), f"{k}: {ours!r} and {theirs!r} differ in kind"
    tol = CLOSE[key]
    if tol < 1:  # relative, for counters and sizes
        assert abs(a - b) <= tol * max(abs(a), abs(b), 1), (k, ours, theirs)
    else:
        assert abs(a - b) <= tol, (k, ours, theirs)


@pytest.mark.parametrize("key", CURFREQ)
def test_current_frequencies(agents: tuple[int, int], key: str) -> None:
    ours, theirs = zabbix_get(agents[0], key), zabbix_get(agents[1], key)
    assert _CUR_MHZ.sub(r"\1MHz", ours) == _CUR_MHZ.sub(r"\1MHz", theirs)
    a, b = ([int(m[2]) for m in _CUR_MHZ.finditer(x)] for x in (ours, theirs))
    assert len(a) == len(b), (ours, theirs)  # none on a machine that shows no frequency: the text decides
    assert all(abs(x - y) <= 0.02 * max(x, y) for x, y in zip(a, b, strict=True)), (ours, theirs)


@pytest.mark.parametrize("key", JSON_SETS)
def test_json_lists(agents: tuple[int, int], key: str) -> None:
    ours, theirs = json.loads(zabbix_get(agents[0], key)), json.loads(zabbix_get(agents[1], key))
    name = "{#FSNAME}" if key == "vfs.fs.discovery" else "{#IFNAME}" if key == "net.if.discovery" else "fsname"
    assert {x[name] for x in ours} == {x[name] for x in theirs}


def test_web_page_get(agents: tuple[int, int], web: int) -> None:
    ours, theirs = (zabbix_get(p, f"web.page.get[127.0.0.1,/,{web}]") for p in agents)
    assert ours.startswith("HTTP/1.") and ours.endswith("<html>vigil test page 42</html>")
    # headers as received, in order, spacing and repeats kept (Date moves between the two asks)
    assert "x-lower:  spaced  value\n" in ours and ours.count("X-Twice: ") == 2

    def undated(text: str) -> list[str]:
        return [line for line in text.split("\n") if not line.startswith("Date: ")]
    assert undated(ours) == undated(theirs)


def test_dir_get_lists_the_tree_as_zabbix_agentd(agents: tuple[int, int], files: Path) -> None:
    for key in (f"vfs.dir.get[{files}/tree]", f"vfs.dir.get[{files}/tree,,,file]",
                f"vfs.dir.get[{files}/tree,,,,,0]", "vfs.dir.get[/nonexistent]"):
        ours, theirs = (zabbix_get(p, key) for p in agents)
        if theirs.startswith("ZBX_NOTSUPPORTED"):
            assert ours == theirs
            continue
        a, b = json.loads(ours), json.loads(theirs)
        assert len(a) > 0
        assert a == b, key  # same entries, same order (breadth-first, in directory order)


@pytest.mark.parametrize("key", ["container.discovery", "container.cpu.util[/]", "container.memory.usage[/]",
                                 "container.cpu.util[/no/such/cgroup]"])
def test_container_keys_answer_or_say_why(agents: tuple[int, int], key: str) -> None:
    out = zabbix_get(agents[0], key)
    if out.startswith("ZBX_NOTSUPPORTED"):
        assert len(out) > len("ZBX_NOTSUPPORTED: ") + 5, out  # a reason, not a bare refusal
        assert "no/such" not in key or "cgroup" in out.lower()
    elif key == "container.discovery":
        assert isinstance(json.loads(out), list)
    else:
        _num(out)
    assert zabbix_get(agents[0], "agent.ping") == "1"


def test_agent_hostname_comes_from_the_config(agents: tuple[int, int]) -> None:
    assert zabbix_get(agents[0], "agent.hostname") == "keys-host"


@pytest.fixture(scope="module")
def https_web(tmp_path_factory: pytest.TempPathFactory, web: int) -> Iterator[int]:
    """An https server with a self-signed certificate for another name: nothing would verify it."""
    import ssl

    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=not-this-host.example", "-keyout", str(d / "k.pem"), "-out", str(d / "c.pem")],
                   check=True, capture_output=True)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = b"secure page 7"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(d / "c.pem", d / "k.pem")
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield httpd.server_address[1]
    httpd.shutdown()


def test_web_page_does_not_verify_tls_certificates(agents: tuple[int, int], https_web: int) -> None:
    for key in (f"web.page.regexp[https://127.0.0.1:{https_web}/,,,page (\\d+),,\\1]",
                f"net.tcp.service[https,127.0.0.1,{https_web}]"):
        ours, theirs = (zabbix_get(p, key) for p in agents)
        assert ours == theirs, key
    ours = zabbix_get(agents[0], f"web.page.get[https://127.0.0.1:{https_web}/]")
    assert ours.startswith("HTTP/1.0 200 OK") and ours.endswith("secure page 7")


def test_a_check_stuck_on_a_fifo_answers_the_timeout(agents: tuple[int, int], tmp_path: Path) -> None:
    """zabbix_agentd 6.0.14 never answers this one: its listener stays blocked in open(2), and once
    StartAgents such requests came in it answers nothing at all. vigil-agent answers at Timeout (5 s
    here) with zabbix_agentd's words for a check it gives up on, and goes on answering."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    try:
        assert zabbix_get(agents[0], f"vfs.file.contents[{fifo}]", timeout=15) == \
            "ZBX_NOTSUPPORTED: Timeout while waiting for data."
        assert zabbix_get(agents[0], f"vfs.file.regmatch[{fifo},x]", timeout=15) == \
            "ZBX_NOTSUPPORTED: Timeout while waiting for data."
        assert zabbix_get(agents[0], "agent.ping") == "1"
    finally:
        for _ in range(2):  # let the two blocked opens return
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                break
