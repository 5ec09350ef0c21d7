"""SSH checks: `ssh.run[<unique short description>,<ip>,<port>,<encoding>,<ssh options>]`.

The item's script (`params`) runs on the host (the key's ip, else the interface's address; port 22 by
default) as `username`, with a password (authtype 0) or a key pair (authtype 1: `publickey` and
`privatekey` are file names in VIGIL_SSH_KEY_LOCATION, `password` the private key's passphrase). Its
standard output, trailing white space removed and decoded with the key's encoding (UTF-8 by
default), is the value.

Host keys are checked against VIGIL_DATA_DIR/ssh_known_hosts (OpenSSH's format): the first key a
host shows is recorded there; a different one later fails the item naming the host and both
fingerprints (delete the host's line from the file to accept the new key). Connections are kept per
host and login and reused by later items and polls (at most MAX_SESSIONS channels at once on each,
sshd's MaxSessions); one idle for IDLE seconds is closed, and at most `max_connections` are kept.
Every poll is bounded by the item's time-out as a whole: connecting, the key exchange, logging in,
starting the script and reading its output (at most MAX_OUTPUT bytes).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vigil.server.config.repo import PollItem
from vigil.server.pollers import NotSupported, Unreachable
from vigil.server.pollers.scriptkey import parse_script_key

log = logging.getLogger("vigil.pollers.ssh")

MAX_OUTPUT = 512 * 1024
MAX_SESSIONS = 8  # channels open at once on one connection (sshd's default MaxSessions is 10)
IDLE = 60.0  # seconds an unused connection stays open
# ssh.run's 5th parameter, Zabbix 6.0's names -> asyncssh's connect() arguments
OPTIONS = {"kexalgorithms": "kex_algs", "hostkeyalgorithms": "server_host_key_algs", "ciphers": "encryption_algs",
           "macs": "mac_algs"}


@dataclass(frozen=True, slots=True)
class Target:
    address: str
    port: int
    username: str
    authtype: int  # 0 password, 1 public key
    password: str  # or the private key's passphrase
    publickey: str
    privatekey: str
    options: tuple[tuple[str, str], ...]

    @property
    def where(self) -> str:
        return f"[{self.address}]:{self.port}"


@dataclass(frozen=True, slots=True)
class Check:
    target: Target
    script: str
    encoding: str


def parse(item: PollItem) -> Check:
    """The item's key and fields as a Check; NotSupported naming the bad part."""
    k = parse_script_key(item, "ssh.run", 22, ["description", "ip", "port", "encoding", "ssh options"])
    options: list[tuple[str, str]] = []
    for part in k.key.param(4).split(";"):
        if not part.strip():
            continue
        name, eq, value = part.partition("=")
        if not eq or name.strip().lower() not in OPTIONS or not value.strip():
            raise NotSupported(f"Invalid item key: ssh option {part.strip()!r}: expected one of KexAlgorithms, "
                               "HostKeyAlgorithms, Ciphers, MACs as Name=value[,value...]")
        options.append((OPTIONS[name.strip().lower()], value.strip()))
    p = item.poll
    if not p.params.strip():
        raise NotSupported("The item has no script (params) to run")
    if not p.username:
        raise NotSupported("The item has no username to log in as")
    if p.auth == 1 and not (p.publickey and p.privatekey):
        raise NotSupported("Public key authentication needs the publickey and privatekey file names")
    return Check(Target(k.address, k.port, p.username, p.auth, p.password, p.publickey, p.privatekey,
                        tuple(options)), p.params, k.encoding)


class KnownHosts:
    """Host keys by `[address]:port`, in OpenSSH's known_hosts format; a new host's key is appended
    (trust on first use). The file is read again when it changes (an operator removed a line)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._keys: dict[str, list[str]] = {}  # host pattern -> "type base64" entries
        self._stamp: tuple[int, int] | None = None

    @staticmethod
    def name(address: str, port: int) -> str:
        return address if port == 22 else f"[{address}]:{port}"

    def _load(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._keys, self._stamp = {}, None
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        keys: dict[str, list[str]] = {}
        for line in self.path.read_text(errors="replace").splitlines():
            fields = line.split()
            if len(fields) >= 3 and not line.startswith("#"):
                for host in fields[0].split(","):
                    keys.setdefault(host, []).append(f"{fields[1]} {fields[2]}")
        self._keys, self._stamp = keys, stamp

    def check(self, address: str, port: int, key: Any) -> str:
        """'' when `key` (an asyncssh SSHKey) is the host's known key or was just recorded; otherwise why not."""
        import asyncssh

        self._load()
        name = self.name(address, port)
        entry = key.export_public_key("openssh").decode().split()
        mine = f"{entry[0]} {entry[1]}"
        known = self._keys.get(name)
        if not known:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as f:
                f.write(f"{name} {mine}\n")
            self._keys[name] = [mine]
            log.info("ssh: recorded the host key of %s (%s) in %s", name, key.get_fingerprint(), self.path)
            return ""
        if mine in known:
            return ""
        old = []
        for k in known:
            try:
                old.append(asyncssh.import_public_key(k).get_fingerprint())
            except (asyncssh.KeyImportError, ValueError):
                old.append("an unreadable key")
        return (f"Host key of {name} has changed: it shows {key.get_algorithm()} key {key.get_fingerprint()}, "
                f"{self.path} has {', '.join(old)}. If the host's key was replaced on purpose, delete its line "
                "from that file")


class _Client:
    """asyncssh's client callbacks: host keys go through KnownHosts; the refusal's reason is kept."""

    def __init__(self, known: KnownHosts, target: Target) -> None:
        self.known, self.target, self.refused = known, target, ""

    def __call__(self) -> Any:  # asyncssh wants a factory
        import asyncssh

        outer = self

        class Client(asyncssh.SSHClient):
            def validate_host_public_key(self, host: str, addr: str, port: int, key: Any) -> bool:
                outer.refused = outer.known.check(outer.target.address, outer.target.port, key)
                return not outer.refused

        return Client()


@dataclass
class _Conn:
    conn: Any
    channels: asyncio.Semaphore
    used: float
    busy: int = 0


class SshPoller:
    """ssh.run items, connections reused per Target (see the module's words)."""

    def __init__(self, key_dir: Path | None = None, known_hosts: Path | None = None, max_connections: int = 1000,
                 idle: float = IDLE) -> None:
        self.key_dir = key_dir if key_dir is not None else CONFIG["key_dir"]
        self.known = KnownHosts(known_hosts if known_hosts is not None else CONFIG["known_hosts"])
        self.max_connections, self.idle = max_connections, idle
        self._conns: dict[Target, _Conn] = {}
        self._locks: dict[Target, asyncio.Lock] = {}
        self.connects = 0  # connections made (for tests and the bench)
        self._timer: asyncio.TimerHandle | None = None

    async def __call__(self, item: PollItem, timeout: float) -> str:
        check = parse(item)
        deadline = time.monotonic() + timeout
        try:
            async with asyncio.timeout(timeout):
                return await self._run(check, deadline)
        except TimeoutError:
            raise NotSupported(f"Timeout: {check.target.where} did not complete the SSH check within {timeout:g} s"
                               ) from None

    async def _run(self, check: Check, deadline: float) -> str:
        import asyncssh

        reconnected = False
        for attempt in range(6):
            entry = await self._connection(check.target, deadline)
            async with entry.channels:
                entry.busy += 1
                try:
                    return await self._exec(entry, check)
                except asyncssh.ChannelOpenError as e:
                    if _closed(entry.conn) and not reconnected:
                        self._drop(check.target, entry)
                        reconnected = True
                    elif attempt == 5:
                        raise NotSupported(f"{check.target.where} refused a session: {_reason(e)}") from None
                    else:  # sshd counts a session closed a moment after the channel is: wait for that
                        await asyncio.sleep(0.02 * (attempt + 1))
                except (asyncssh.ConnectionLost, BrokenPipeError, ConnectionResetError) as e:
                    # the server closed a kept connection (restarted, idle limit): once more on a new one
                    self._drop(check.target, entry)
                    if reconnected:
                        raise Unreachable(f"SSH connection to {check.target.where} failed: {_reason(e)}") from None
                    reconnected = True
                finally:
                    entry.busy -= 1
                    entry.used = time.monotonic()
        raise NotSupported(f"{check.target.where} refused a session again and again")

    async def _exec(self, entry: _Conn, check: Check) -> str:
        # stdout only, as Zabbix; stderr discarded as it comes, so a chatty one cannot fill the channel's window
        proc = await entry.conn.create_process(check.script, encoding=None, stdin=asyncssh_devnull(),
                                               stderr=asyncssh_devnull())
        try:
            out = bytearray()
            while True:
                chunk = await proc.stdout.read(65536)
                if not chunk:
                    break
                out += chunk
                if len(out) > MAX_OUTPUT:
                    raise NotSupported(f"The script's output on {check.target.where} is larger than "
                                       f"{MAX_OUTPUT} bytes")
            await proc.wait_closed()
        finally:
            proc.close()
        text = out.decode(check.encoding, errors="replace").rstrip()
        if not text and proc.exit_status not in (0, None):
            raise NotSupported(f"The script exited with status {proc.exit_status} on {check.target.where} "
                               "without output")
        return text

    async def _connection(self, target: Target, deadline: float) -> _Conn:
        self._reap()
        entry = self._conns.get(target)
        if entry is not None and not _closed(entry.conn):
            return entry
        lock = self._locks.setdefault(target, asyncio.Lock())
        async with lock:
            entry = self._conns.get(target)
            if entry is not None and not _closed(entry.conn):
                return entry
            conn = await self._connect(target, deadline)
            entry = self._conns[target] = _Conn(conn, asyncio.Semaphore(MAX_SESSIONS), time.monotonic())
            self._arm()
            return entry

    def _arm(self) -> None:
        """Look for idle connections every `idle` seconds while there are any (no polls may come to do it)."""
        if self._timer is None and self._conns:
            self._timer = asyncio.get_running_loop().call_later(self.idle, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._reap()
        self._arm()

    async def _connect(self, target: Target, deadline: float) -> Any:
        import asyncssh

        kw: dict[str, Any] = dict(target.options)
        if target.authtype == 1:
            try:
                key = asyncssh.read_private_key(str(self.key_dir / target.privatekey), target.password or None)
                cert = self.key_dir / target.publickey
                if not cert.is_file():
                    raise NotSupported(f"Public key file {cert} does not exist (VIGIL_SSH_KEY_LOCATION)")
            except (OSError, asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as e:
                raise NotSupported(f"Cannot read the private key {self.key_dir / target.privatekey}: "
                                   f"{_reason(e)}") from None
            kw.update(client_keys=[key], password=None, preferred_auth="publickey")
        else:
            kw.update(client_keys=None, password=target.password, preferred_auth="password,keyboard-interactive")
        client = _Client(self.known, target)
        left = max(deadline - time.monotonic(), 0.01)
        self.connects += 1
        try:
            return await asyncssh.connect(
                target.address, target.port, username=target.username, known_hosts=([], [], []), config=None,
                agent_path=None, client_factory=client, connect_timeout=left, login_timeout=left,
                keepalive_interval=0, **kw)
        except asyncssh.HostKeyNotVerifiable as e:
            raise NotSupported(client.refused or f"Host key of {target.where} not accepted: {e}") from None
        except asyncssh.PermissionDenied:
            how = "public key" if target.authtype == 1 else "password"
            raise NotSupported(f"Authentication failed on {target.where}: user {target.username!r} was refused "
                               f"with the {how}") from None
        except (asyncssh.KeyExchangeFailed, asyncssh.ProtocolNotSupported, asyncssh.ProtocolError) as e:
            raise NotSupported(f"SSH handshake with {target.where} failed: {_reason(e)}") from None
        except asyncssh.Error as e:
            raise Unreachable(f"SSH connection to {target.where} failed: {_reason(e)}") from None
        except OSError as e:
            raise Unreachable(f"Cannot connect to {target.where}: {_reason(e)}") from None
        except ValueError as e:  # asyncssh: an algorithm name it does not know in the ssh options
            raise NotSupported(f"Invalid ssh options for {target.where}: {e}") from None

    def _reap(self) -> None:
        """Close connections idle for longer than `idle`, and the least recently used ones past the bound."""
        now = time.monotonic()
        for target, entry in list(self._conns.items()):
            if entry.busy == 0 and (now - entry.used > self.idle or _closed(entry.conn)):
                self._drop(target, entry)
        if len(self._conns) >= self.max_connections:
            idle = sorted((e.used, t) for t, e in self._conns.items() if e.busy == 0)
            for _, target in idle[:len(self._conns) - self.max_connections + 1]:
                self._drop(target, self._conns[target])

    def _drop(self, target: Target, entry: _Conn) -> None:
        if self._conns.get(target) is entry:
            del self._conns[target]
        entry.conn.close()

    @property
    def open_connections(self) -> int:
        return sum(1 for e in self._conns.values() if not _closed(e.conn))

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        conns = [e.conn for e in self._conns.values()]
        self._conns.clear()
        for c in conns:
            c.close()
        for c in conns:
            try:
                async with asyncio.timeout(2):
                    await c.wait_closed()
            except (TimeoutError, OSError):
                pass


def asyncssh_devnull() -> Any:
    import asyncssh

    return asyncssh.DEVNULL


def _closed(conn: Any) -> bool:
    return conn.is_closed() if hasattr(conn, "is_closed") else getattr(conn, "_transport", None) is None


def _reason(e: BaseException) -> str:
    text = getattr(e, "reason", "") or str(e) or type(e).__name__
    return text.strip()


CONFIG: dict[str, Path] = {"key_dir": Path("vigil-data/ssh-keys"), "known_hosts": Path("vigil-data/ssh_known_hosts")}


def configure(data_dir: Path, key_location: str) -> None:
    """`vigil server`'s settings for the SshPoller the scheduler makes (VIGIL_SSH_KEY_LOCATION, VIGIL_DATA_DIR)."""
    CONFIG["key_dir"] = Path(key_location).expanduser() if key_location else data_dir / "ssh-keys"
    CONFIG["known_hosts"] = data_dir / "ssh_known_hosts"
    os.makedirs(data_dir, exist_ok=True)
