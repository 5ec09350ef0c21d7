"""The SNMP trap receiver, fed by Net-SNMP's real `snmptrap` (v1, v2c, v3), and trap-to-item matching."""

from __future__ import annotations

import asyncio
import logging
import shutil
import socket
import subprocess
import time

import pytest
from vigil.server.pollers.snmp import AuthProtocol, PrivProtocol, SecurityLevel, SnmpConfigError
from vigil.server.pollers.snmp_values import SnmpValue
from vigil.server.pollers.snmptraps import Trap, TrapReceiver, TrapUser, items_for_trap, match_trap

ENGINE = "0x8000000001020304"
V3_PRIV = TrapUser("trap-priv", ENGINE, SecurityLevel.AUTH_PRIV, AuthProtocol.SHA256, "authpass-t256",
                   PrivProtocol.AES128, "privpass-t256")
V3_AUTH = TrapUser("trap-auth", ENGINE, SecurityLevel.AUTH_NO_PRIV, AuthProtocol.MD5, "authpass-tmd5")
V3_DES = TrapUser("trap-des", ENGINE, SecurityLevel.AUTH_PRIV, AuthProtocol.SHA1, "authpass-tdes",
                  PrivProtocol.DES, "privpass-tdes")
V3_NONE = TrapUser("trap-none", ENGINE, SecurityLevel.NO_AUTH_NO_PRIV)
V3_AES256 = TrapUser("trap-aes256", ENGINE, SecurityLevel.AUTH_PRIV, AuthProtocol.SHA512, "authpass-t512",
                     PrivProtocol.AES256, "privpass-t512")
LINK_DOWN = ["1.3.6.1.6.3.1.1.5.3", "1.3.6.1.2.1.2.2.1.1.2", "i", "2", "1.3.6.1.2.1.2.2.1.2.2", "s", "eth0 is down"]


def snmptrap(port: int, *args: str) -> None:
    tool = shutil.which("snmptrap")
    if tool is None:
        pytest.fail("snmptrap is not installed: run scripts/test.sh, which installs the snmp package")
    # options first, then the receiver, then the trap (a v1 trap's enterprise... fields start at "-v1"'s 4th)
    split = 3 if args[0] == "-v1" else len(args) - len(LINK_DOWN) - 1
    r = subprocess.run([tool, *args[:split], f"127.0.0.1:{port}", *args[split:]],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, r.stderr


V2C = ["-v2c", "-c", "traps-ro", "", *LINK_DOWN]
V3_PRIV_ARGS = ["-v3", "-l", "authPriv", "-u", "trap-priv", "-a", "SHA-256", "-A", "authpass-t256", "-x", "AES",
                "-X", "privpass-t256", "-e", ENGINE, "", *LINK_DOWN]


def receive(sends: list[list[str]], want: int, **kw: object) -> tuple[list[Trap], TrapReceiver]:
    """Start a receiver on a free port, send each trap with snmptrap, and wait for `want` traps."""
    got: list[Trap] = []

    async def main() -> TrapReceiver:
        r = TrapReceiver(got.append, host="127.0.0.1", port=0, communities=["traps-ro", "other"],
                         users=[V3_PRIV, V3_AUTH, V3_DES, V3_NONE, V3_AES256], **kw)  # type: ignore[arg-type]
        await r.start()
        loop = asyncio.get_running_loop()
        try:
            for args in sends:
                await loop.run_in_executor(None, snmptrap, r.port, *args)
            deadline = time.monotonic() + 10
            while len(got) < want and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)  # anything beyond `want` would show up here
        finally:
            r.close()
        return r

    return got, asyncio.run(main())


def test_v2c_trap_text_and_fields() -> None:
    (trap,), r = receive([V2C], 1)
    assert (trap.address, trap.version, trap.security_name) == ("127.0.0.1", "2c", "traps-ro")
    assert trap.trap_oid == "1.3.6.1.6.3.1.1.5.3"
    first, *rest = trap.text.split("\n")
    assert first.endswith(" 127.0.0.1") and time.strptime(first[:19], "%H:%M:%S %Y/%m/%d")
    assert rest[0] == "PDU INFO:" and "VARBINDS:" in rest
    assert "  .1.3.6.1.6.3.1.1.4.1.0         type=6  value=OID: .1.3.6.1.6.3.1.1.5.3" in rest
    assert "  .1.3.6.1.2.1.2.2.1.1.2         type=2  value=INTEGER: 2" in rest
    assert '  .1.3.6.1.2.1.2.2.1.2.2         type=4  value=STRING: "eth0 is down"' in rest
    assert any(line.startswith("  .1.3.6.1.2.1.1.3.0 ") and "type=67 value=Timeticks: (" in line for line in rest)
    assert (r.received, r.accepted, r.dropped) == (1, 1, 0)


def test_v1_trap_is_translated_to_its_v2_form() -> None:
    v1 = ["-v1", "-c", "other", "1.3.6.1.4.1.8072.2.3", "127.0.0.1", "6", "17", "", *LINK_DOWN[1:]]
    (trap,), _ = receive([v1], 1)
    assert (trap.version, trap.security_name) == ("1", "other")
    assert trap.trap_oid == "1.3.6.1.4.1.8072.2.3.0.17"  # enterprise.0.specific, as RFC 2576 says
    assert "value=INTEGER: 2" in trap.text and "value=IpAddress: 127.0.0.1" in trap.text


@pytest.mark.parametrize("args, user", [
    (V3_PRIV_ARGS, "trap-priv"),
    (["-v3", "-l", "authNoPriv", "-u", "trap-auth", "-a", "MD5", "-A", "authpass-tmd5", "-e", ENGINE, "", *LINK_DOWN],
     "trap-auth"),
    (["-v3", "-l", "authPriv", "-u", "trap-des", "-a", "SHA", "-A", "authpass-tdes", "-x", "DES", "-X",
      "privpass-tdes", "-e", ENGINE, "", *LINK_DOWN], "trap-des"),
    (["-v3", "-l", "noAuthNoPriv", "-u", "trap-none", "-e", ENGINE, "", *LINK_DOWN], "trap-none"),
    (["-v3", "-l", "authPriv", "-u", "trap-aes256", "-a", "SHA-512", "-A", "authpass-t512", "-x", "AES-256", "-X",
      "privpass-t512", "-e", ENGINE, "", *LINK_DOWN], "trap-aes256"),
])
def test_v3_traps_of_configured_users(args: list[str], user: str) -> None:
    (trap,), _ = receive([args], 1)
    assert (trap.version, trap.security_name) == ("3", user)
    assert '  .1.3.6.1.2.1.2.2.1.2.2         type=4  value=STRING: "eth0 is down"' in trap.text.split("\n")


def test_unknown_community_bad_password_and_unknown_engine_are_dropped(caplog: pytest.LogCaptureFixture) -> None:
    bad_pass = [a if a != "privpass-t256" else "wrong-privpass" for a in V3_PRIV_ARGS]
    bad_auth = [a if a != "authpass-t256" else "wrong-authpass" for a in V3_PRIV_ARGS]
    other_engine = [a if a != ENGINE else "0x80000000010203ff" for a in V3_PRIV_ARGS]
    with caplog.at_level(logging.WARNING, logger="vigil.server.pollers.snmptraps"):
        got, r = receive([["-v2c", "-c", "nope", "", *LINK_DOWN], bad_auth, bad_pass, other_engine, V2C], 1)
    # only the last, good one arrives; a wrong privacy key may decrypt to garbage pysnmp cannot parse
    assert [t.security_name for t in got] == ["traps-ro"]
    assert (r.received, r.accepted, r.dropped) == (5, 1, 4)
    assert "unknown community" in caplog.text and "127.0.0.1" in caplog.text


def test_malformed_and_oversized_datagrams_are_logged_and_dropped(caplog: pytest.LogCaptureFixture) -> None:
    got: list[Trap] = []

    async def main() -> TrapReceiver:
        r = TrapReceiver(got.append, host="127.0.0.1", port=0, communities=["traps-ro"], max_datagram=1024)
        await r.start()
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for junk in (b"", b"\x30\x03garbage", b"\x30\x82\xff\xff", b"x" * 2000, bytes(range(256)) * 3):
                s.sendto(junk, ("127.0.0.1", r.port))
        await loop.run_in_executor(None, snmptrap, r.port, *V2C)  # still receiving after the junk
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        r.close()
        return r

    with caplog.at_level(logging.WARNING, logger="vigil.server.pollers.snmptraps"):
        r = asyncio.run(main())
    assert len(got) == 1 and got[0].security_name == "traps-ro"
    assert r.accepted == 1 and r.dropped == r.received - 1 and r.received >= 5
    assert "over the 1024-byte bound" in caplog.text and "not an SNMP message" in caplog.text


def test_a_failing_handler_does_not_stop_the_receiver(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[Trap] = []

    def handler(t: Trap) -> None:
        seen.append(t)
        if len(seen) == 1:
            raise RuntimeError("boom")

    async def main() -> None:
        r = TrapReceiver(handler, host="127.0.0.1", port=0, communities=["traps-ro"])
        await r.start()
        loop = asyncio.get_running_loop()
        for _ in range(2):
            await loop.run_in_executor(None, snmptrap, r.port, *V2C)
        deadline = time.monotonic() + 10
        while len(seen) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        r.close()

    with caplog.at_level(logging.ERROR, logger="vigil.server.pollers.snmptraps"):
        asyncio.run(main())
    assert len(seen) == 2 and "handler failed" in caplog.text


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

        async def main() -> None:
            await TrapReceiver(lambda t: None, host="127.0.0.1", port=port).start()

        with pytest.raises(OSError, match=f"cannot listen for SNMP traps on udp 127.0.0.1:{port}"):
            asyncio.run(main())


def test_bad_trap_user_engine_id() -> None:
    with pytest.raises(SnmpConfigError, match="engine_id"):
        TrapReceiver(lambda t: None, users=[TrapUser("u", "zz")])
    with pytest.raises(SnmpConfigError, match="5-32 bytes"):
        TrapReceiver(lambda t: None, users=[TrapUser("u", "0x0102")])


def _trap(*varbinds: SnmpValue) -> str:
    return Trap("10.0.0.9", 40000, 1_700_000_000, "2c", "public", varbinds, "[0.0.0.0]:162").text


LINK = _trap(SnmpValue("1.3.6.1.6.3.1.1.4.1.0", "OID", "1.3.6.1.6.3.1.1.5.3"),
             SnmpValue("1.3.6.1.2.1.2.2.1.2.2", "STRING", "eth0"))


def test_match_trap_regexp_items() -> None:
    items = [(1, "snmptrap[linkDown|1\\.3\\.6\\.1\\.6\\.3\\.1\\.1\\.5\\.3]"), (2, 'snmptrap["eth0"]'),
             (3, "snmptrap[eth1]"), (4, "snmptrap.fallback"), (5, "snmptrap"), (6, "snmptrap[]")]
    assert match_trap(LINK, items) == [1, 2, 5, 6]


def test_match_trap_fallback_only_when_nothing_matched() -> None:
    items = [(3, "snmptrap[eth1]"), (4, "snmptrap.fallback"), (7, "system.uptime")]
    assert match_trap(LINK, items) == [4]
    assert match_trap(LINK, [(3, "snmptrap[eth1]")]) == []


def test_match_trap_ignores_the_timestamp_and_address_line() -> None:
    assert match_trap(LINK, [(1, "snmptrap[10\\.0\\.0\\.9$]"), (2, "snmptrap[^PDU INFO:]")]) == [2]
    assert match_trap(LINK, [(1, "snmptrap[2023/11]")]) == []  # the timestamp is not matched


def test_match_trap_bad_keys_and_patterns_match_nothing() -> None:
    items = [(1, "snmptrap[(unclosed]"), (2, "snmptrap[@Global regexp]"), (3, "snmptrap[a,b]"),
             (4, "snmptrap[[x]]"), (5, "snmptrap[eth0"), (9, "snmptrap.fallback")]
    assert match_trap(LINK, items) == [9]


def test_v2c_inform_is_acknowledged_and_received() -> None:
    got: list[Trap] = []

    async def main() -> subprocess.CompletedProcess:
        r = TrapReceiver(got.append, host="127.0.0.1", port=0, communities=["traps-ro"])
        await r.start()
        try:
            return await asyncio.get_running_loop().run_in_executor(None, lambda: subprocess.run(
                ["snmpinform", "-v2c", "-c", "traps-ro", "-t", "2", "-r", "1", f"127.0.0.1:{r.port}", "",
                 *LINK_DOWN], capture_output=True, text=True, timeout=20))
        finally:
            r.close()

    done = asyncio.run(main())
    assert done.returncode == 0, done.stderr  # snmpinform exits 0 only once the inform was acknowledged
    assert len(got) == 1 and got[0].inform and "notificationtype               INFORM" in got[0].text


def test_items_for_trap_by_source_address(caplog: pytest.LogCaptureFixture) -> None:
    trap = Trap("10.0.0.9", 40000, 1_700_000_000, "2c", "public", (), "[0.0.0.0]:162")
    by_address = {"10.0.0.9": [(1, "snmptrap.fallback")], "10.0.0.10": [(2, "snmptrap")]}
    assert items_for_trap(trap, by_address) == [1]
    with caplog.at_level(logging.INFO, logger="vigil.server.pollers.snmptraps"):
        assert items_for_trap(Trap("10.9.9.9", 1, 0, "1", "public", ()), by_address) == []
    assert "unmatched SNMP trap received from 10.9.9.9" in caplog.text


def test_close_releases_the_port_for_a_restart() -> None:
    got: list[Trap] = []

    async def main() -> None:
        first = TrapReceiver(got.append, host="127.0.0.1", port=0, communities=["traps-ro"])
        await first.start()
        port = first.port
        first.close()
        await asyncio.sleep(0.05)
        second = TrapReceiver(got.append, host="127.0.0.1", port=port, communities=["traps-ro"])
        await second.start()  # would raise "cannot listen" if the first still held the port
        try:
            await asyncio.get_running_loop().run_in_executor(None, snmptrap, port, *V2C)
            deadline = time.monotonic() + 10
            while not got and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        finally:
            second.close()

    asyncio.run(main())
    assert len(got) == 1
