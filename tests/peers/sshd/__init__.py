"""A real OpenSSH sshd (Debian's `openssh-server`) on a free loopback port, everything in a temporary directory.

`Sshd.start(tmp)` makes a host key, a client key pair (the public one in authorized_keys) and an
sshd_config in `tmp`, starts `/usr/sbin/sshd -D -e -f CONFIG` and waits for its banner. The tests run
as root, so the login is root's with `PermitRootLogin prohibit-password` (keys only: root has no
password to log in with, and the tests do not give it one); the only thing outside `tmp` is
`/run/sshd`, sshd's privilege-separation directory, made when missing as the package's service does.
Sessions get HOME set to an
empty `tmp/home` (sshd's SetEnv): bash run by sshd reads ~/.bashrc before each command, and root's
here may be slow to run (pyenv), which is not what the tests and the bench measure. `stop()` ends it
by its own pid. `new_host_key()` replaces the host key (a restart), to show a
changed key.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def free_port() -> int:
    from tests.conftest import free_port as fp

    return fp()


@dataclass
class Sshd:
    tmp: Path
    port: int = 0
    user: str = field(default_factory=getpass.getuser)
    proc: subprocess.Popen | None = None

    @property
    def key_dir(self) -> Path:
        return self.tmp / "keys"  # the client's key pair: id_ed25519 / id_ed25519.pub, and a wrong one

    @classmethod
    def start(cls, tmp: Path, port: int | None = None) -> Sshd:
        if not os.path.exists(SSHD) or shutil.which("ssh-keygen") is None:
            raise RuntimeError("openssh-server is not installed: run the README's test command, which installs it")
        s = cls(tmp, port or free_port())
        tmp.mkdir(parents=True, exist_ok=True)
        s.key_dir.mkdir(exist_ok=True)
        for name in ("id_ed25519", "wrong_ed25519"):
            _keygen(s.key_dir / name)
        _keygen(tmp / "ssh_host_ed25519_key")
        (tmp / "authorized_keys").write_text((s.key_dir / "id_ed25519.pub").read_text())
        os.chmod(tmp / "authorized_keys", 0o600)
        (tmp / "sshd_config").write_text(
            f"Port {s.port}\nListenAddress 127.0.0.1\nHostKey {tmp}/ssh_host_ed25519_key\n"
            f"PidFile {tmp}/sshd.pid\nAuthorizedKeysFile {tmp}/authorized_keys\nStrictModes no\n"
            "UsePAM no\nPermitRootLogin prohibit-password\nPasswordAuthentication yes\n"
            "KbdInteractiveAuthentication no\nMaxSessions 10\nMaxStartups 100:30:200\nLogLevel ERROR\n"
            f"PrintMotd no\nSetEnv HOME={tmp}/home\n")
        (tmp / "home").mkdir(exist_ok=True)
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        s._run()
        return s

    def _run(self) -> None:
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.tmp / "sshd_config")],
                                     stdout=subprocess.DEVNULL, stderr=open(self.tmp / "sshd.log", "ab"))
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited with {self.proc.returncode}: {(self.tmp / 'sshd.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), 0.5) as c:
                    c.settimeout(2)
                    if c.recv(64).startswith(b"SSH-2.0-"):
                        return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"sshd does not answer on 127.0.0.1:{self.port}")
            time.sleep(0.05)

    def new_host_key(self) -> None:
        self.stop()
        for f in self.tmp.glob("ssh_host_ed25519_key*"):
            f.unlink()
        _keygen(self.tmp / "ssh_host_ed25519_key")
        self._run()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True,
                   stdout=subprocess.DEVNULL)
