"""A real Net-SNMP snmpd (Debian's `snmpd` package) on a free loopback UDP port, run as a non-root process.

`Snmpd.start(tmp)` writes `snmpd.conf` from the template beside this file (v1/v2c community, SNMPv3
users for every auth/priv combination the tests use, created with `createUser` lines), starts
`snmpd -f` (as `nobody` when the tests run as root) and waits until it answers a GET. `stop()` ends it
by its own pid. Based on the checked set-up in shared/peers/snmp (NOTES.md there).
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent
COMMUNITY = "public-ro"
SYS_NAME = "vigil-snmpd"
SYS_LOCATION = 'rack "3" \\back'  # a quote and a backslash: Net-SNMP escapes both in walk output


@dataclass(frozen=True)
class User:
    """An SNMPv3 user of the test agent, with the Zabbix interface details to reach it."""

    name: str
    level: str  # noAuthNoPriv / authNoPriv / authPriv (Zabbix's words)
    auth: str = ""  # Zabbix's authprotocol word: MD5, SHA1, SHA224...
    authpass: str = ""
    priv: str = ""  # Zabbix's privprotocol word: DES, AES128, AES192, AES256
    privpass: str = ""

    def details(self, **extra: object) -> dict[str, object]:
        d: dict[str, object] = {"version": 3, "securityname": self.name, "securitylevel": self.level}
        if self.auth:
            d |= {"authprotocol": self.auth, "authpassphrase": self.authpass}
        if self.priv:
            d |= {"privprotocol": self.priv, "privpassphrase": self.privpass}
        return d | extra


_NET_SNMP_AUTH = {"MD5": "MD5", "SHA1": "SHA", "SHA224": "SHA-224", "SHA256": "SHA-256", "SHA384": "SHA-384",
                  "SHA512": "SHA-512"}
_NET_SNMP_PRIV = {"DES": "DES", "AES128": "AES", "AES192": "AES-192", "AES256": "AES-256"}

USERS: dict[str, User] = {u.name: u for u in [
    User("u-noauth", "noAuthNoPriv"),
    User("u-md5", "authNoPriv", "MD5", "authpass-md5"),
    User("u-sha", "authNoPriv", "SHA1", "authpass-sha"),
    User("u-sha224", "authNoPriv", "SHA224", "authpass-224"),
    User("u-sha256", "authNoPriv", "SHA256", "authpass-256"),
    User("u-sha384", "authNoPriv", "SHA384", "authpass-384"),
    User("u-sha512", "authNoPriv", "SHA512", "authpass-512"),
    User("u-md5-des", "authPriv", "MD5", "authpass-md5d", "DES", "privpass-md5d"),
    User("u-sha-des", "authPriv", "SHA1", "authpass-shad", "DES", "privpass-shad"),
    User("u-sha-aes", "authPriv", "SHA1", "authpass-shaa", "AES128", "privpass-shaa"),
    User("u-sha256-aes", "authPriv", "SHA256", "authpass-256a", "AES128", "privpass-256a"),
    User("u-sha512-aes", "authPriv", "SHA512", "authpass-512a", "AES128", "privpass-512a"),
    User("u-sha-aes192", "authPriv", "SHA1", "authpass-a192", "AES192", "privpass-a192"),
    User("u-sha256-aes256", "authPriv", "SHA256", "authpass-a256", "AES256", "privpass-a256"),
]}


def free_udp_port() -> int:
    """A UDP port free on both 127.0.0.1 and ::1 (20000-32000)."""
    for _ in range(500):
        p = random.randint(20000, 32000)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s4, \
                socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s6:
            try:
                s4.bind(("127.0.0.1", p))
                s6.bind(("::1", p))
            except OSError:
                continue
            return p
    raise RuntimeError("no free UDP port found in 20000-32000")


def config_text(port: int, engine_id: str) -> str:
    lines = [(HERE / "snmpd.conf.in").read_text().format(port=port, engine_id=engine_id, community=COMMUNITY,
                                                         sys_name=SYS_NAME, sys_location=SYS_LOCATION)]
    for u in USERS.values():
        line = f"createUser {u.name}"
        if u.auth:
            line += f' {_NET_SNMP_AUTH[u.auth]} "{u.authpass}"'
        if u.priv:
            line += f' {_NET_SNMP_PRIV[u.priv]} "{u.privpass}"'
        lines.append(line)
        level = {"noAuthNoPriv": "noauth", "authNoPriv": "auth", "authPriv": "priv"}[u.level]
        lines.append(f"rouser {u.name} {level} .1")
    return "\n".join(lines) + "\n"


def _snmpd() -> str:
    path = shutil.which("snmpd") or ("/usr/sbin/snmpd" if os.path.exists("/usr/sbin/snmpd") else None)
    if path is None or shutil.which("snmpget") is None:
        import pytest

        pytest.fail("snmpd / snmpget are not installed: run scripts/test.sh, which installs snmpd and snmp")
    return path


class Snmpd:
    """One running snmpd. Its state lives in a directory of its own that `nobody` may write."""

    def __init__(self, port: int, state: Path, proc: subprocess.Popen) -> None:
        self.port = port
        self.state = state
        self.proc = proc
        self.address = "127.0.0.1"

    @classmethod
    def start(cls, engine_id: str = "vigil-test") -> Snmpd:
        binary = _snmpd()
        state = Path(tempfile.mkdtemp(prefix="vigil-snmpd-"))
        state.chmod(0o777)
        for attempt in range(3):
            port = free_udp_port()
            (state / "snmpd.conf").write_text(config_text(port, f"{engine_id}-{port}"))
            cmd = [binary, "-f", "-C", "-c", str(state / "snmpd.conf"), "-Lf", str(state / "snmpd.log"),
                   "-I", "-smux,mteTrigger,mteTriggerConf"]
            if os.geteuid() == 0:  # never run the peer as root
                cmd = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", *cmd]
            env = dict(os.environ, SNMP_PERSISTENT_DIR=str(state / "persist"), MIBS="", MIBDIRS="/nonexistent")
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            peer = cls(port, state, proc)
            if peer._wait_ready(15):
                return peer
            peer.stop(keep_state=True)
            if attempt == 2:
                log = (state / "snmpd.log").read_text(errors="replace") if (state / "snmpd.log").exists() else ""
                raise RuntimeError(f"snmpd did not answer on udp 127.0.0.1:{port}: {log[-2000:]}")
        raise AssertionError("unreachable")

    def _wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            r = subprocess.run(["snmpget", "-v2c", "-c", COMMUNITY, "-t", "0.3", "-r", "0", "-On",
                                f"127.0.0.1:{self.port}", ".1.3.6.1.2.1.1.5.0"], capture_output=True, text=True,
                               timeout=10)
            if r.returncode == 0 and SYS_NAME in r.stdout:
                return True
            time.sleep(0.1)
        return False

    def cli(self, tool: str, *args: str, timeout: float = 60) -> str:
        """Run a Net-SNMP command-line tool (snmpwalk, snmpbulkwalk...) against this agent, v2c."""
        r = subprocess.run([tool, "-v2c", "-c", COMMUNITY, "-On", *args[:-1], f"127.0.0.1:{self.port}", args[-1]],
                           capture_output=True, text=True, timeout=timeout, env=dict(os.environ, MIBS=""))
        if r.returncode != 0:
            raise AssertionError(f"{tool} failed: {r.stderr}")
        return r.stdout

    def log(self) -> str:
        p = self.state / "snmpd.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def pause(self) -> None:
        """Stop answering (SIGSTOP) without closing the port: a device that stopped responding."""
        self.proc.send_signal(19)

    def resume(self) -> None:
        self.proc.send_signal(18)

    def stop(self, keep_state: bool = False) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(18)  # in case it was paused
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if not keep_state:
            shutil.rmtree(self.state, ignore_errors=True)
