"""ssh.run against a real OpenSSH sshd (tests/peers/sshd) started on a free loopback port.

The sshd runs as root from a temporary directory with its own host key and authorized_keys (root
logs in with a key only: PermitRootLogin prohibit-password). Password logins are checked against
asyncssh's own SSH server (a real server implementation that accepts one password), since root has
no password the tests could use with sshd.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from vigil.server.config.model import PollSpec
from vigil.server.config.repo import PollInterface, PollItem
from vigil.server.config.tables import ItemType, ValueType
from vigil.server.pollers import NotSupported, Unreachable
from vigil.server.pollers.ssh import SshPoller

from tests.conftest import free_port
from tests.peers.sshd import Sshd
from tests.server.pollers.conftest import Listener


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    s = Sshd.start(tmp_path / "sshd")
    try:
        yield s
    finally:
        s.stop()


def item(key: str, script: str, user: str, itemid: int = 1, auth: int = 1, password: str = "",
         publickey: str = "id_ed25519.pub", privatekey: str = "id_ed25519") -> PollItem:
    spec = PollSpec(params=script, username=user, auth=auth, password=password,
                    publickey=publickey if auth else "", privatekey=privatekey if auth else "")
    return PollItem(itemid, 1, "h", ItemType.SSH, ValueType.TEXT, key, 60, PollInterface(1, 1, 1, "127.0.0.1", 10050,
                                                                                          {}), spec)


def poller(s: Sshd, tmp_path: Path) -> SshPoller:
    return SshPoller(key_dir=s.key_dir, known_hosts=tmp_path / "data" / "ssh_known_hosts")


def run(p: SshPoller, *items: PollItem, timeout: float = 5) -> list[str | BaseException]:
    async def main() -> list[str | BaseException]:
        try:
            return list(await asyncio.gather(*(p(i, timeout) for i in items), return_exceptions=True))
        finally:
            await p.close()
    return asyncio.run(main())


def test_ssh_run_returns_the_scripts_output_over_one_reused_connection(sshd: Sshd, tmp_path: Path) -> None:
    p = poller(sshd, tmp_path)
    key = f"ssh.run[uname,127.0.0.1,{sshd.port}]"

    async def main() -> list[str]:
        try:
            out = [await p(item(key, "echo hello; echo  world  ", sshd.user), 5)]
            out += await asyncio.gather(*(p(item(f"ssh.run[n{i},,{sshd.port}]", f"expr {i} + 1", sshd.user, i), 5)
                                          for i in range(25)))
            out.append(await p(item(key, "printf 'caf\\351'", sshd.user), 5))  # latin-1 bytes, default utf-8
            out.append(await p(item(f"ssh.run[l1,,{sshd.port},iso-8859-1]", "printf 'caf\\351'", sshd.user), 5))
            return out
        finally:
            await p.close()

    out = asyncio.run(main())
    assert out[0] == "hello\nworld"  # trailing white space removed, inner kept
    assert out[1:26] == [str(i + 1) for i in range(25)]
    assert out[26] == "caf\ufffd" and out[27] == "café"
    assert p.connects == 1  # 28 checks, more than MaxSessions at once, over one connection
    known = (tmp_path / "data" / "ssh_known_hosts").read_text()
    assert known.startswith(f"[127.0.0.1]:{sshd.port} ssh-ed25519 ")  # recorded on first use


def test_a_wrong_key_fails_naming_the_user_and_host(sshd: Sshd, tmp_path: Path) -> None:
    p = poller(sshd, tmp_path)
    r = run(p, item(f"ssh.run[x,127.0.0.1,{sshd.port}]", "echo hi", sshd.user, publickey="wrong_ed25519.pub",
                    privatekey="wrong_ed25519"),
            item(f"ssh.run[y,127.0.0.1,{sshd.port}]", "echo hi", sshd.user, 2, publickey="none.pub",
                 privatekey="none"),
            item(f"ssh.run[z,127.0.0.1,{sshd.port}]", "echo hi", sshd.user, 3, auth=0, password="not-it"))
    assert isinstance(r[0], NotSupported)
    assert str(r[0]) == (f"Authentication failed on [127.0.0.1]:{sshd.port}: user {sshd.user!r} was refused with "
                         "the public key")
    assert isinstance(r[1], NotSupported) and "Cannot read the private key" in str(r[1]) and "none" in str(r[1])
    assert isinstance(r[2], NotSupported) and "refused with the password" in str(r[2])


def test_a_changed_host_key_fails_with_both_fingerprints(sshd: Sshd, tmp_path: Path) -> None:
    import asyncssh

    p = poller(sshd, tmp_path)
    it = item(f"ssh.run[x,127.0.0.1,{sshd.port}]", "echo first", sshd.user)
    assert run(p, it) == ["first"]
    old = asyncssh.read_public_key(str(sshd.tmp / "ssh_host_ed25519_key.pub")).get_fingerprint()
    sshd.new_host_key()
    new = asyncssh.read_public_key(str(sshd.tmp / "ssh_host_ed25519_key.pub")).get_fingerprint()
    [err] = run(p, it)
    assert isinstance(err, NotSupported)
    msg = str(err)
    assert f"Host key of [127.0.0.1]:{sshd.port} has changed" in msg
    assert new in msg and old in msg and new != old
    # accepted again once the operator removes the host's line
    (tmp_path / "data" / "ssh_known_hosts").write_text("")
    assert run(poller(sshd, tmp_path), it) == ["first"]


def test_a_server_that_accepts_and_never_answers_fails_at_the_timeout(tmp_path: Path) -> None:
    lst = Listener("silent")
    try:
        p = SshPoller(key_dir=tmp_path, known_hosts=tmp_path / "kh")
        [err] = run(p, item(f"ssh.run[x,127.0.0.1,{lst.port}]", "echo hi", "root", auth=0, password="x"),
                    timeout=0.5)
        assert isinstance(err, NotSupported)
        assert str(err) == f"Timeout: [127.0.0.1]:{lst.port} did not complete the SSH check within 0.5 s"
        assert lst.accepted == 1
    finally:
        lst.close()


def test_nothing_listening_is_a_network_error(tmp_path: Path) -> None:
    port = free_port()
    [err] = run(SshPoller(key_dir=tmp_path, known_hosts=tmp_path / "kh"),
                item(f"ssh.run[x,127.0.0.1,{port}]", "echo hi", "root", auth=0, password="x"))
    assert isinstance(err, Unreachable) and f"[127.0.0.1]:{port}" in str(err)


def test_output_larger_than_the_bound_and_bad_keys_are_refused(sshd: Sshd, tmp_path: Path) -> None:
    r = run(poller(sshd, tmp_path),
            item(f"ssh.run[big,127.0.0.1,{sshd.port}]", "head -c 2000000 /dev/zero", sshd.user),
            item("ssh.run[x,127.0.0.1,99999]", "echo", sshd.user),
            item(f"ssh.run[x,127.0.0.1,{sshd.port},no-such-codec]", "echo", sshd.user),
            item(f"ssh.run[x,127.0.0.1,{sshd.port},,Bogus=1]", "echo", sshd.user),
            item(f"ssh.run[x,127.0.0.1,{sshd.port},,Ciphers=aes256-ctr]", "echo ok", sshd.user),
            item(f"ssh.run[x,127.0.0.1,{sshd.port}]", "exit 3", sshd.user),
            item(f"ssh.run[x,127.0.0.1,{sshd.port}]", "head -c 3000000 /dev/zero >&2; echo out", sshd.user))
    assert isinstance(r[0], NotSupported) and "larger than 524288 bytes" in str(r[0])
    assert isinstance(r[1], NotSupported) and "port '99999'" in str(r[1])
    assert isinstance(r[2], NotSupported) and "unknown encoding 'no-such-codec'" in str(r[2])
    assert isinstance(r[3], NotSupported) and "ssh option 'Bogus=1'" in str(r[3])
    assert r[4] == "ok"
    assert isinstance(r[5], NotSupported) and "exited with status 3" in str(r[5])
    assert r[6] == "out"  # 3 MB on stderr (more than the channel's window) is not waited on


def test_password_authentication(tmp_path: Path) -> None:
    import asyncssh

    host_key = asyncssh.generate_private_key("ssh-ed25519")

    class Server(asyncssh.SSHServer):
        def begin_auth(self, username: str) -> bool:
            return True

        def password_auth_supported(self) -> bool:
            return True

        def validate_password(self, username: str, password: str) -> bool:
            return (username, password) == ("monitor", "s3cret")

    async def handle(proc: asyncssh.SSHServerProcess) -> None:
        proc.stdout.write(f"ran: {proc.command}\n")
        proc.exit(0)

    async def main() -> list[str | BaseException]:
        server = await asyncssh.create_server(Server, "127.0.0.1", 0, server_host_keys=[host_key],
                                              process_factory=handle)
        port = server.sockets[0].getsockname()[1]
        p = SshPoller(key_dir=tmp_path, known_hosts=tmp_path / "kh")
        try:
            return list(await asyncio.gather(
                p(item(f"ssh.run[a,127.0.0.1,{port}]", "uptime", "monitor", auth=0, password="s3cret"), 5),
                p(item(f"ssh.run[b,127.0.0.1,{port}]", "uptime", "monitor", 2, auth=0, password="wrong"), 5),
                return_exceptions=True))
        finally:
            await p.close()
            server.close()
            await server.wait_closed()

    r = asyncio.run(main())
    assert r[0] == "ran: uptime"
    assert isinstance(r[1], NotSupported) and "user 'monitor' was refused with the password" in str(r[1])


def test_an_idle_connection_is_closed_and_made_again_when_needed(sshd: Sshd, tmp_path: Path) -> None:
    p = SshPoller(key_dir=sshd.key_dir, known_hosts=tmp_path / "kh", idle=0.3)
    it = item(f"ssh.run[x,127.0.0.1,{sshd.port}]", "echo again", sshd.user)

    async def main() -> tuple[str, int, str]:
        try:
            first = await p(it, 5)
            for _ in range(200):  # the poller's own timer closes it; nothing else polls meanwhile
                if p.open_connections == 0:
                    break
                await asyncio.sleep(0.05)
            closed = p.open_connections
            return first, closed, await p(it, 5)
        finally:
            await p.close()

    first, open_after_idle, again = asyncio.run(main())
    assert (first, open_after_idle, again) == ("again", 0, "again")
    assert p.connects == 2


def test_ssh_and_telnet_items_from_the_yaml_through_the_scheduler(sshd: Sshd, tmp_path: Path, migrated_url: str
                                                                  ) -> None:
    """Configuration on both stores -> scheduler -> the real sshd and the test's Telnet target -> values."""
    from vigil.server.config.migrate import engine_for
    from vigil.server.config.repo import ConfigRepo
    from vigil.server.pollers import telnet
    from vigil.server.pollers.scheduler import Scheduler
    from vigil.server.store.base import WriteBatch

    from tests.peers.telnetd import Telnetd
    from tests.server.pollers.test_scheduler import FAST, _import, _run_until, _state

    engine = engine_for(migrated_url)
    repo = ConfigRepo(engine)
    got: dict[int, list[str]] = {}

    async def submit(b: WriteBatch) -> None:
        for itemid, _c, _n, v in b.texts:
            got.setdefault(itemid, []).append(v)

    async def main() -> dict[str, int]:
        peer = await Telnetd().start()
        try:
            ids = _import(repo, f"""
hosts:
  - host: box
    interfaces: [{{type: agent, address: 127.0.0.1, port: 10050}}]
    items:
      - {{key: 'ssh.run[who,,{sshd.port}]', type: ssh, value_type: text, delay: 1s, username: {sshd.user},
         auth: publickey, publickey: id_ed25519.pub, privatekey: id_ed25519, params: 'echo {{HOST.HOST}} via ssh'}}
      - {{key: 'ssh.run[bad,,{sshd.port}]', type: ssh, value_type: text, delay: 1s, username: {sshd.user},
         auth: publickey, publickey: wrong_ed25519.pub, privatekey: wrong_ed25519, params: 'echo no'}}
      - {{key: 'telnet.run[clock,,{peer.port}]', type: telnet, value_type: text, delay: 1s, username: admin,
         password: cisco, params: show clock}}
""")
            sched = Scheduler(repo, submit, FAST, pollers={
                ItemType.SSH: SshPoller(key_dir=sshd.key_dir, known_hosts=tmp_path / "kh"),
                ItemType.TELNET: telnet.poll})
            bad = ids[f"ssh.run[bad,,{sshd.port}]"]
            await _run_until(sched, lambda: all(got.get(ids[k]) for k in ids if "bad" not in k)
                             and sched.item_state(bad)[0] == 1, 20, "the ssh and telnet values")
            return ids
        finally:
            await peer.stop()

    try:
        ids = asyncio.run(main())
        assert got[ids[f"ssh.run[who,,{sshd.port}]"]][0] == "box via ssh"
        telnet_key = next(k for k in ids if k.startswith("telnet.run"))
        assert got[ids[telnet_key]][0] == "*10:15:02.123 UTC Wed Dec 2 2026"
        state = _state(repo, ids[f"ssh.run[bad,,{sshd.port}]"])
        assert state is not None and state[0] == 1 and "refused with the public key" in state[1]
    finally:
        engine.dispose()
