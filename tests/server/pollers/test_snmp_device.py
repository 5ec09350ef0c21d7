"""The SNMP client against a real Net-SNMP snmpd on loopback: v1, v2c, every v3 auth/priv combination,
walks checked against Net-SNMP's own snmpwalk, and the faults (bad credentials, a silent device)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from vigil.server.pollers.snmp import (
    NotSupported,
    SnmpEngines,
    SnmpNetworkError,
    SnmpSession,
    SnmpTarget,
    SnmpTimeout,
    SnmpValue,
)
from vigil.server.pollers.snmp_values import NO_SUCH_INSTANCE, NO_SUCH_OBJECT

from tests.peers.snmpd import COMMUNITY, SYS_LOCATION, SYS_NAME, USERS, Snmpd, free_udp_port

SYSTEM = "1.3.6.1.2.1.1"
IF_DESCR = "1.3.6.1.2.1.2.2.1.2"
HR_STORAGE_DESCR = "1.3.6.1.2.1.25.2.3.1.3"
# v1/v2c run through Vigil's own BER codec by default, and through pysnmp with fast=False: both are tested.
codecs = pytest.mark.parametrize("fast", [True, False], ids=["vigil-ber", "pysnmp"])


@pytest.fixture(scope="module")
def snmpd() -> Iterator[Snmpd]:
    peer = Snmpd.start()
    try:
        yield peer
    finally:
        peer.stop()


def target(peer: Snmpd, details: dict | None = None, **kw: object) -> SnmpTarget:
    d = {"version": 2, "community": COMMUNITY} if details is None else details
    return SnmpTarget.from_interface("127.0.0.1", peer.port, d, **kw)  # type: ignore[arg-type]


def run(coro_fn, *targets: SnmpTarget, **session_kw):  # noqa: ANN001, ANN201
    """Run `coro_fn(*sessions)` in a fresh event loop with one session per target on shared engines."""
    async def main():  # noqa: ANN202
        engines = SnmpEngines()
        sessions = [SnmpSession(t, engines, **session_kw) for t in targets]
        try:
            return await coro_fn(*sessions)
        finally:
            engines.close()
    return asyncio.run(main())


@codecs
def test_v2c_get_types_and_missing_oids(snmpd: Snmpd, fast: bool) -> None:
    async def go(s: SnmpSession):  # noqa: ANN202
        return await s.get(["sysName.0", f"{SYSTEM}.6.0", f"{SYSTEM}.3.0", f"{SYSTEM}.2.0", f"{SYSTEM}.99.0",
                            f"{SYSTEM}.5.7", "1.3.6.1.2.1.31.1.1.1.6.1", "not-an-oid"])
    name, loc, up, objid, no_obj, no_inst, hc, bad = run(go, target(snmpd), fast=fast)
    assert (name.type, name.value) == ("STRING", SYS_NAME)
    assert loc.value == SYS_LOCATION
    assert up.type == "Timeticks" and isinstance(up.value, int) and up.value >= 0
    assert (objid.type, objid.value) == ("OID", "1.3.6.1.4.1.8072.3.2.10")
    assert isinstance(no_obj, NotSupported) and str(no_obj) == NO_SUCH_OBJECT
    assert isinstance(no_inst, NotSupported) and str(no_inst) == NO_SUCH_INSTANCE
    assert hc.type == "Counter64" and hc.counter_bits == 64  # ifHCInOctets.1 of lo
    assert isinstance(bad, NotSupported) and "numeric form" in str(bad)


@codecs
def test_v1_get_one_bad_oid_does_not_spoil_the_others(snmpd: Snmpd, fast: bool) -> None:
    async def go(s: SnmpSession):  # noqa: ANN202
        return await s.get([f"{SYSTEM}.5.0", f"{SYSTEM}.99.0", f"{SYSTEM}.6.0"])
    name, missing, loc = run(go, target(snmpd, {"version": 1, "community": COMMUNITY}), fast=fast)
    assert name.value == SYS_NAME and loc.value == SYS_LOCATION
    assert isinstance(missing, NotSupported) and "noSuchName" in str(missing)


@pytest.mark.parametrize("version", [1, 2])
@codecs
def test_walk_equals_net_snmp_snmpwalk(snmpd: Snmpd, fast: bool, version: int) -> None:
    """The walk text of the system group is what Net-SNMP's `snmpwalk -On` prints (sysUpTime aside)."""
    async def go(s: SnmpSession):  # noqa: ANN202
        return (await s.poll(f"walk[{SYSTEM}]")).value
    ours = run(go, target(snmpd, {"version": version, "community": COMMUNITY}), fast=fast)
    theirs = snmpd.cli("snmpwalk", SYSTEM).rstrip("\n")
    assert ours.count("\n") > 20
    def drop_uptime(text: str) -> list[str]:
        return [line for line in text.split("\n") if not line.startswith(f".{SYSTEM}.3.0 ")]
    assert drop_uptime(ours) == drop_uptime(theirs)


@codecs
def test_bulk_and_getnext_walks_agree_and_stop_at_the_subtree(snmpd: Snmpd, fast: bool) -> None:
    async def go(s: SnmpSession):  # noqa: ANN202
        return await s.walk(HR_STORAGE_DESCR, bulk=True), await s.walk(HR_STORAGE_DESCR, bulk=False), s.requests
    bulk, nxt, _ = run(go, target(snmpd, {"version": 2, "community": COMMUNITY, "max_repetitions": 3}), fast=fast)
    assert [v.oid for v in bulk] == [v.oid for v in nxt]
    assert all(v.oid.startswith(HR_STORAGE_DESCR + ".") for v in bulk)
    assert ("1.3.6.1.2.1.25.2.3.1.3.1", "Physical memory") in [(v.oid, v.value) for v in bulk]
    expected = [line.split(" = ", 1)[0][1:] for line in snmpd.cli("snmpwalk", HR_STORAGE_DESCR).splitlines()]
    assert [v.oid for v in bulk] == expected


@codecs
def test_walk_of_a_leaf_and_of_nothing(snmpd: Snmpd, fast: bool) -> None:
    async def go(s: SnmpSession):  # noqa: ANN202
        return await s.walk(f"{SYSTEM}.5.0"), await s.walk("1.3.6.1.2.1.1.77"), await s.walk("1.3.6.1.9.9")
    leaf, none, past_end = run(go, target(snmpd), fast=fast)
    assert [(v.oid, v.value) for v in leaf] == [(f"{SYSTEM}.5.0", SYS_NAME)]
    assert none == [] and past_end == []


def test_poll_item_forms(snmpd: Snmpd) -> None:
    async def go(s: SnmpSession):  # noqa: ANN202
        return (await s.poll("sysName.0"), await s.poll(f"get[{SYSTEM}.7.0]"),
                await s.poll(f"walk[{IF_DESCR},1.3.6.1.2.1.2.2.1.3]"),
                await s.poll(f"discovery[{{#IFDESCR}},{IF_DESCR},{{#IFTYPE}},1.3.6.1.2.1.2.2.1.3]"))
    name, services, walk_result, disc_result = run(go, target(snmpd))
    assert (name.value, name.snmp_type, services.value, services.snmp_type) == (SYS_NAME, "STRING", 72, "INTEGER")
    assert (walk_result.snmp_type, disc_result.snmp_type) == ("walk", "discovery")
    walk, disc = walk_result.value, disc_result.value
    lines = walk.split("\n")
    assert f'.{IF_DESCR}.1 = STRING: "lo"' in lines and ".1.3.6.1.2.1.2.2.1.3.1 = INTEGER: 24" in lines
    rows = json.loads(disc)
    assert {"{#SNMPINDEX}": "1", "{#IFDESCR}": "lo", "{#IFTYPE}": "24"} in rows
    assert len(rows) == sum(1 for line in lines if line.startswith(f".{IF_DESCR}."))


def test_poll_raises_not_supported_for_a_missing_oid(snmpd: Snmpd) -> None:
    async def go(s: SnmpSession):  # noqa: ANN202
        with pytest.raises(NotSupported, match="No Such Object"):
            await s.poll(f"{SYSTEM}.99.0")
        return await s.poll("sysName.0")  # the session still works
    assert run(go, target(snmpd)).value == SYS_NAME


def test_poll_counters_say_their_width(snmpd: Snmpd) -> None:
    async def go(s: SnmpSession):  # noqa: ANN202
        return await s.poll("ifInOctets.1"), await s.poll("IF-MIB::ifHCInOctets.1"), await s.poll("sysUpTime.0")
    c32, c64, up = run(go, target(snmpd))
    assert (c32.snmp_type, c32.counter_bits, c64.snmp_type, c64.counter_bits) == ("Counter32", 32, "Counter64", 64)
    assert up.counter_bits is None and isinstance(c64.value, int)


def test_dynamic_index_item(snmpd: Snmpd) -> None:
    """Zabbix 6.0's ifType["index","ifDescr","lo"]: the index is found by a walk, then remembered."""
    async def go(s: SnmpSession):  # noqa: ANN202
        first = await s.poll('ifType["index","ifDescr","lo"]')
        requests = s.requests
        second = await s.poll('1.3.6.1.2.1.2.2.1.4["index","1.3.6.1.2.1.2.2.1.2","lo"]')  # ifMtu
        used = s.requests - requests
        with pytest.raises(NotSupported, match='Cannot find index of "no-such-if"'):
            await s.poll('ifType["index","ifDescr","no-such-if"]')
        return first, second, used
    first, second, used = run(go, target(snmpd))
    assert (first.value, first.snmp_type) == (24, "INTEGER")  # softwareLoopback
    assert second.value == 65536 and used == 1  # the index of "lo" came from the cache: one GET


@pytest.mark.parametrize("user", list(USERS))
def test_v3_every_level_and_protocol(snmpd: Snmpd, user: str) -> None:
    async def go(s: SnmpSession):  # noqa: ANN202
        return await s.get_one("sysName.0"), await s.walk(IF_DESCR)
    name, ifs = run(go, target(snmpd, USERS[user].details()))
    assert name.value == SYS_NAME
    assert "lo" in [v.value for v in ifs]


def test_v3_bulk_walk_with_context_of_the_default_view(snmpd: Snmpd) -> None:
    async def go(s: SnmpSession):  # noqa: ANN202
        return await s.walk("1.3.6.1.2.1.2.2.1")
    rows = run(go, target(snmpd, USERS["u-sha256-aes256"].details(max_repetitions=50)))
    assert len(rows) > 20 and {v.type for v in rows} >= {"INTEGER", "STRING", "Counter32", "Gauge32"}


@codecs
def test_wrong_community_is_a_timeout(snmpd: Snmpd, fast: bool) -> None:
    async def go(s: SnmpSession):  # noqa: ANN202
        await s.get(["sysName.0"])
    with pytest.raises(SnmpTimeout) as e:
        run(go, target(snmpd, {"version": 2, "community": "wrong"}, timeout=0.5, retries=0), fast=fast)
    assert str(e.value) == f'Timeout while connecting to "127.0.0.1:{snmpd.port}".'


@pytest.mark.parametrize("details, words", [
    (USERS["u-sha"].details(authpassphrase="wrong-password"), "Wrong SNMP PDU digest"),
    (USERS["u-sha-aes"].details(privpassphrase="wrong-privpass"), ""),
    (USERS["u-sha"].details(securityname="nobody-here"), "Unknown USM user"),
    (USERS["u-sha"].details(securitylevel="authPriv", privprotocol="AES128", privpassphrase="privpass-x"),
     "security level"),
])
def test_v3_bad_credentials_are_clear_network_errors(snmpd: Snmpd, details: dict, words: str) -> None:
    async def go(s: SnmpSession):  # noqa: ANN202
        await s.get(["sysName.0"])
    with pytest.raises(SnmpNetworkError) as e:
        run(go, target(snmpd, details, timeout=1, retries=0))
    assert str(e.value).startswith(f'Cannot connect to "127.0.0.1:{snmpd.port}": ') or isinstance(e.value, SnmpTimeout)
    if words:
        assert not isinstance(e.value, SnmpTimeout) and words.lower() in str(e.value).lower()


def test_same_v3_user_name_with_other_keys_gets_its_own_engine(snmpd: Snmpd) -> None:
    good = target(snmpd, USERS["u-sha"].details())
    bad = target(snmpd, USERS["u-sha"].details(authpassphrase="another-pass"), timeout=1, retries=0)

    async def go(g: SnmpSession, b: SnmpSession):  # noqa: ANN202
        first = await g.get_one("sysName.0")
        with pytest.raises(SnmpNetworkError):
            await b.get_one("sysName.0")
        return first, await g.get_one("sysName.0")

    engines = SnmpEngines()

    async def main():  # noqa: ANN202
        try:
            return await go(SnmpSession(good, engines), SnmpSession(bad, engines)), len(engines)
        finally:
            engines.close()
    (first, again), count = asyncio.run(main())
    assert first.value == again.value == SYS_NAME and count == 2


@codecs
def test_a_silent_device_times_out_without_holding_up_the_others(snmpd: Snmpd, fast: bool) -> None:
    silent = SnmpTarget.from_interface("127.0.0.1", free_udp_port(), {"version": 2, "community": COMMUNITY},
                                       timeout=1.5, retries=1)

    async def go(dead: SnmpSession, live: SnmpSession):  # noqa: ANN202
        dead_task = asyncio.ensure_future(dead.get(["sysName.0"]))
        live_result = await live.get(["sysName.0"])
        dead_pending = not dead_task.done()  # the live device answered while the silent one was still waiting
        with pytest.raises(SnmpTimeout):
            await dead_task
        return live_result, dead_pending, await live.get_one("sysName.0")

    live_result, dead_pending, again = run(go, silent, target(snmpd), fast=fast)
    assert live_result[0].value == SYS_NAME and dead_pending and again.value == SYS_NAME


def test_a_paused_agent_times_out_and_answers_again_when_resumed(snmpd: Snmpd) -> None:
    async def go(s: SnmpSession):  # noqa: ANN202
        snmpd.pause()
        try:
            with pytest.raises(SnmpTimeout):
                await s.get_one("sysName.0")
        finally:
            snmpd.resume()
        return await s.get_one("sysName.0")
    assert run(go, target(snmpd, timeout=0.5, retries=0)).value == SYS_NAME


@codecs
def test_many_concurrent_gets_are_bounded_per_device(snmpd: Snmpd, fast: bool) -> None:
    async def go(s: SnmpSession):  # noqa: ANN202
        results = await asyncio.gather(*(s.get_one(f"{SYSTEM}.{1 + i % 7}.0") for i in range(60)))
        return results, s.peak_in_flight, s.requests
    results, peak, requests = run(go, target(snmpd), max_in_flight=3, fast=fast)
    assert all(isinstance(r, SnmpValue) for r in results) and requests == 60
    assert 1 < peak <= 3


def test_walks_and_gets_of_one_device_share_the_bound(snmpd: Snmpd) -> None:
    async def go(s: SnmpSession):  # noqa: ANN202
        walk, *gets = await asyncio.gather(s.walk("1.3.6.1.2.1.2.2.1", bulk=False),
                                           *(s.get_one("sysName.0") for _ in range(10)))
        return walk, gets, s.peak_in_flight
    walk, gets, peak = run(go, target(snmpd), max_in_flight=2)
    assert len(walk) > 20 and all(g.value == SYS_NAME for g in gets) and peak == 2


@codecs
def test_ipv6_loopback(snmpd: Snmpd, fast: bool) -> None:
    async def go(s: SnmpSession):  # noqa: ANN202
        return await s.get_one("sysName.0"), await s.walk(IF_DESCR)
    t = SnmpTarget.from_interface("::1", snmpd.port, {"version": 2, "community": COMMUNITY})
    name, ifs = run(go, t, fast=fast)
    assert name.value == SYS_NAME and "lo" in [v.value for v in ifs]
    assert t.endpoint == f"[::1]:{snmpd.port}"


def test_ipv6_v3(snmpd: Snmpd) -> None:
    async def go(s: SnmpSession):  # noqa: ANN202
        return await s.get_one("sysName.0")
    t = SnmpTarget.from_interface("::1", snmpd.port, USERS["u-sha-aes"].details())
    assert run(go, t).value == SYS_NAME


def test_v3_context_name_is_sent(snmpd: Snmpd) -> None:
    """snmpd serves only the default context: asking in another one gets no value (so the name went out)."""
    async def go(s: SnmpSession):  # noqa: ANN202
        await s.get_one("sysName.0")
    with pytest.raises(SnmpNetworkError):
        run(go, target(snmpd, USERS["u-sha"].details(contextname="no-such-context"), timeout=1, retries=0))


@codecs
def test_poll_many_batches_gets_into_one_request(snmpd: Snmpd, fast: bool) -> None:
    items = ["sysName.0", f"{SYSTEM}.99.0", "ifDescr.1", "bad oid", f"walk[{IF_DESCR}]", "ifHCOutOctets.1",
             'ifMtu["index","ifDescr","lo"]']

    async def go(s: SnmpSession):  # noqa: ANN202
        results = await s.poll_many(items)
        return results, s.requests
    results, requests = run(go, target(snmpd), fast=fast)
    name, missing, descr, bad, walk, hc, mtu = results
    assert (name.value, descr.value, mtu.value) == (SYS_NAME, "lo", 65536)
    assert hc.snmp_type == "Counter64" and walk.snmp_type == "walk" and '"lo"' in walk.value
    assert isinstance(missing, NotSupported) and str(missing) == NO_SUCH_OBJECT
    assert isinstance(bad, NotSupported) and "numeric form" in str(bad)
    n = len(walk.value.split("\n"))
    walk_requests = -(-(n + 1) // 10)  # GETBULKs of 10 until one reaches past the subtree
    assert requests == 1 + walk_requests + (walk_requests + 1)  # the GETs as one; walk; dynamic index


def test_closing_the_engines_leaves_no_socket_open(snmpd: Snmpd) -> None:
    import os

    async def once() -> None:
        engines = SnmpEngines()
        for details, fast in ((USERS["u-sha"].details(), False), ({"version": 2, "community": COMMUNITY}, True)):
            await SnmpSession(target(snmpd, details), engines, fast=fast).get_one("sysName.0")
        engines.close()
        await asyncio.sleep(0.05)  # asyncio closes a transport's socket on the next loop iteration

    async def main() -> tuple[int, int]:
        await once()
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(3):
            await once()
        return before, len(os.listdir("/proc/self/fd"))

    before, after = asyncio.run(main())
    assert after == before
