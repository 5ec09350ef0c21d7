"""telnet.run against a Telnet target made by the test (tests/peers/telnetd.py), like a router's console."""

from __future__ import annotations

import asyncio

import pytest
from vigil.server.config.model import PollSpec
from vigil.server.config.repo import PollInterface, PollItem
from vigil.server.config.tables import ItemType, ValueType
from vigil.server.pollers import NotSupported, Unreachable, telnet

from tests.conftest import free_port
from tests.peers.telnetd import DONT, ECHO, NAWS, SGA, TTYPE, WONT, Telnetd


def item(key: str, script: str, user: str = "admin", password: str = "cisco") -> PollItem:
    return PollItem(1, 1, "h", ItemType.TELNET, ValueType.TEXT, key, 60,
                    PollInterface(1, 1, 1, "127.0.0.1", 10050, {}),
                    PollSpec(params=script, username=user, password=password))


def run(peer: Telnetd, *items_: PollItem, timeout: float = 5) -> list[str | BaseException]:
    async def main() -> list[str | BaseException]:
        await peer.start()
        try:
            return list(await asyncio.gather(*(telnet.poll(i(peer.port), timeout) for i in items_),
                                             return_exceptions=True))
        finally:
            await peer.stop()
    return asyncio.run(main())  # type: ignore[arg-type]


def test_login_commands_and_output_up_to_the_next_prompt() -> None:
    peer = Telnetd()
    [one, two] = run(peer, lambda port: item(f"telnet.run[clock,127.0.0.1,{port}]", "show clock"),
                     lambda port: item(f"telnet.run[two,,{port}]", "echo first line\n\necho second\nbogus"))
    assert one == "*10:15:02.123 UTC Wed Dec 2 2026"
    assert two == "first line\nsecond\n% Invalid input detected at '^' marker."
    assert peer.logins == 2
    # every option the device offered or asked for was refused, once each
    assert sorted(set(peer.replies)) == sorted({(DONT, ECHO), (DONT, SGA), (WONT, TTYPE), (WONT, NAWS)})
    assert len(peer.replies) == 8


@pytest.mark.parametrize("prompt", ["switch>", "[admin@mikrotik] >", "user@host:~$", "% "])
def test_every_documented_prompt_ends_the_output(prompt: str) -> None:
    [out] = run(Telnetd(prompt=prompt), lambda port: item(f"telnet.run[e,,{port}]", "echo hi"))
    assert out == "hi"


def test_a_wrong_password_fails_saying_so() -> None:
    [err] = run(Telnetd(), lambda port: item(f"telnet.run[e,,{port}]", "show clock", password="wrong"))
    assert isinstance(err, NotSupported)
    assert "Login failed on [127.0.0.1]:" in str(err) and "user 'admin'" in str(err)
    assert "Username:" in str(err)


def test_a_stalled_target_and_endless_output_are_bounded() -> None:
    [err] = run(Telnetd(stall="login"), lambda port: item(f"telnet.run[e,,{port}]", "show clock"), timeout=0.5)
    assert isinstance(err, NotSupported)
    assert str(err).endswith("did not answer within 0.5 s while waiting for the login prompt")
    [err] = run(Telnetd(), lambda port: item(f"telnet.run[e,,{port}]", "hang"), timeout=0.5)
    assert isinstance(err, NotSupported) and "while waiting for the prompt after 'hang'" in str(err)
    [err] = run(Telnetd(), lambda port: item(f"telnet.run[e,,{port}]", "show big"))
    assert isinstance(err, NotSupported) and "sent more than 524288 bytes" in str(err)


def test_bad_keys_and_nothing_listening() -> None:
    port = free_port()
    r = asyncio.run(_all(item(f"telnet.run[e,127.0.0.1,{port}]", "x"), item("telnet.run[]", "x"),
                         item("telnet.run[e,,70000]", "x"), item("telnet.run[e,,23,klingon]", "x"),
                         item("telnet.run[e,,23]", "x", user="")))
    assert isinstance(r[0], Unreachable) and f"[127.0.0.1]:{port}" in str(r[0])
    assert isinstance(r[1], NotSupported) and "description (required)" in str(r[1])
    assert isinstance(r[2], NotSupported) and "port '70000'" in str(r[2])
    assert isinstance(r[3], NotSupported) and "unknown encoding 'klingon'" in str(r[3])
    assert isinstance(r[4], NotSupported) and "no username" in str(r[4])


async def _all(*items_: PollItem) -> list[str | BaseException]:
    return list(await asyncio.gather(*(telnet.poll(i, 2) for i in items_), return_exceptions=True))
