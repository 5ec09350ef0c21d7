"""JMX items through the real Zabbix Java gateway (Debian's zabbix-java-gateway), whose own JVM is the
target: values equal to what the JVM reports, one request per endpoint, and a gateway that is not set,
down, answering garbage or never answering."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from vigil.server.config.model import ConfigError, doc_from_dict
from vigil.server.config.repo import ConfigRepo
from vigil.server.config.tables import ItemType
from vigil.server.pollers import jmx
from vigil.server.pollers.scheduler import Scheduler
from vigil.server.store.base import WriteBatch

from tests.conftest import free_port
from tests.peers.java_gateway import HEAP_MAX, JavaGateway, java_properties
from tests.server.pollers.conftest import Listener
from tests.server.pollers.test_scheduler import (  # noqa: F401
    FAST,
    _collect,
    _import,
    _interface,
    _run_until,
    _state,
    _values,
    repo,
)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JavaGateway]:
    gw = JavaGateway.start(tmp_path_factory.mktemp("java-gateway"))
    try:
        yield gw
    finally:
        gw.stop()


@pytest.fixture
def use_gateway() -> Iterator[object]:
    """jmx.configure for one test, put back to 'no gateway' afterwards."""
    def use(address: str, pollers: int = 5) -> None:
        jmx.configure(address, pollers)
    try:
        yield use
    finally:
        jmx.configure("", 5)


# The real gateway's first RMI connection to a JVM can take seconds on a busy machine.
PATIENT = dataclasses.replace(FAST, timeout=6)


def _doc(port: int, items: str, host: str = "java1") -> str:
    return f"""
hosts:
  - host: {host}
    interfaces: [{{type: jmx, address: 127.0.0.1, port: {port}}}]
    items:
{items}
"""


MEMORY = '"java.lang:type=Memory"'
ITEMS = f"""
      - {{key: 'jmx[java.lang:type=Runtime,Pid]', type: jmx, value_type: unsigned, delay: 1s}}
      - {{key: 'jmx[java.lang:type=Runtime,SpecName]', type: jmx, value_type: char, delay: 1s}}
      - {{key: 'jmx[java.lang:type=Runtime,VmVendor]', type: jmx, value_type: char, delay: 1s}}
      - {{key: 'jmx[{MEMORY},HeapMemoryUsage.max]', type: jmx, value_type: unsigned, delay: 1s}}
      - {{key: 'jmx[{MEMORY},HeapMemoryUsage.used]', type: jmx, value_type: unsigned, delay: 1s}}
      - {{key: 'jmx[java.lang:type=Threading,ThreadCount]', type: jmx, value_type: unsigned, delay: 1s}}
      - {{key: 'jmx[java.lang:type=NoSuchBean,Nothing]', type: jmx, value_type: char, delay: 1s}}
      - {{key: 'jmx.discovery[beans,"java.lang:type=GarbageCollector,name=*"]', type: jmx, value_type: text,
          delay: 1s}}
      - {{key: 'jmx.get[attributes,"java.lang:type=Runtime"]', type: jmx, value_type: text, delay: 1s}}
"""


def test_jmx_values_are_what_the_jvm_reports(repo: ConfigRepo, gateway: JavaGateway,  # noqa: F811
                                             use_gateway) -> None:
    use_gateway(gateway.address)
    ids = _import(repo, _doc(gateway.jmx_port, ITEMS))
    poller = jmx.JmxPoller()
    batches: list[WriteBatch] = []
    sched = Scheduler(repo, _collect(batches), PATIENT, pollers={ItemType.JMX: poller})
    wanted = [i for k, i in ids.items() if "NoSuchBean" not in k]
    asyncio.run(_run_until(sched, lambda: all(_values(batches, i) for i in wanted)
                           and _state(repo, ids["jmx[java.lang:type=NoSuchBean,Nothing]"]), 20, "JMX values"))
    props = java_properties()

    def first(key: str) -> object:
        return _values(batches, ids[key])[0]

    assert first("jmx[java.lang:type=Runtime,Pid]") == gateway.proc.pid
    assert first("jmx[java.lang:type=Runtime,SpecName]") == props["java.vm.specification.name"]
    assert first("jmx[java.lang:type=Runtime,VmVendor]") == props["java.vm.vendor"]
    assert set(_values(batches, ids[f"jmx[{MEMORY},HeapMemoryUsage.max]"])) == {HEAP_MAX}  # -Xmx64m
    used = _values(batches, ids[f"jmx[{MEMORY},HeapMemoryUsage.used]"])
    assert all(0 < u <= HEAP_MAX for u in used)
    threads = _values(batches, ids["jmx[java.lang:type=Threading,ThreadCount]"])
    assert all(5 <= n <= gateway.threads() + 5 for n in threads)  # Java threads within the kernel's count, live
    gcs = json.loads(first('jmx.discovery[beans,"java.lang:type=GarbageCollector,name=*"]'))["data"]  # type: ignore
    assert {g["{#JMXNAME}"] for g in gcs} >= {"G1 Young Generation", "G1 Old Generation"}  # -XX:+UseG1GC
    runtime = {a["name"]: a["value"] for a in json.loads(first('jmx.get[attributes,"java.lang:type=Runtime"]'))}  # type: ignore
    assert runtime["SpecName"] == props["java.vm.specification.name"] and runtime["Pid"] == str(gateway.proc.pid)
    state, error = _state(repo, ids["jmx[java.lang:type=NoSuchBean,Nothing]"])  # type: ignore[misc]
    assert state == 1 and "java.lang:type=NoSuchBean" in error  # the gateway's own words
    assert _interface(repo)["available"] == 1
    assert poller.requests < poller.keys  # the items of the endpoint share requests
    assert max(len(b.uints) + len(b.strs) + len(b.texts) for b in batches) >= 2


def test_an_item_jmx_endpoint_and_the_gateway_failing_to_reach_the_jvm(repo: ConfigRepo,  # noqa: F811
                                                                      gateway: JavaGateway, use_gateway) -> None:
    use_gateway(gateway.address)
    nobody = free_port()  # the interface points at nothing; the item's own endpoint at the JVM
    ids = _import(repo, _doc(nobody, f"""
      - {{key: 'jmx[java.lang:type=Runtime,Pid]', type: jmx, value_type: unsigned, delay: 1s,
          jmx_endpoint: 'service:jmx:rmi:///jndi/rmi://{{HOST.CONN}}:{gateway.jmx_port}/jmxrmi'}}
"""))
    batches: list[WriteBatch] = []
    sched = Scheduler(repo, _collect(batches), PATIENT, pollers={ItemType.JMX: jmx.JmxPoller()})
    asyncio.run(_run_until(sched, lambda: _values(batches, ids["jmx[java.lang:type=Runtime,Pid]"]), 20, "a value"))
    assert _values(batches, ids["jmx[java.lang:type=Runtime,Pid]"])[0] == gateway.proc.pid

    _import(repo, _doc(nobody, """
      - {key: 'jmx[java.lang:type=Runtime,Pid]', type: jmx, value_type: unsigned, delay: 1s}
"""))
    sched = Scheduler(repo, _collect(batches), PATIENT, pollers={ItemType.JMX: jmx.JmxPoller()})
    asyncio.run(_run_until(sched, lambda: _interface(repo)["errors_from"] > 0, 20, "a JMX network error"))
    assert f"rmi://127.0.0.1:{nobody}/jmxrmi" in _interface(repo)["error"]  # the gateway's "failed" reason


def test_jmx_items_without_a_gateway_say_how_to_set_one(repo: ConfigRepo) -> None:  # noqa: F811
    jmx.configure("", 5)
    ids = _import(repo, _doc(12345, "      - {key: 'jmx[a:b=c,D]', type: jmx, value_type: char, delay: 1s}"))
    sched = Scheduler(repo, _collect([]), FAST, pollers={ItemType.JMX: jmx.JmxPoller()})
    asyncio.run(_run_until(sched, lambda: _state(repo, ids["jmx[a:b=c,D]"]), 10, "a state"))
    assert "VIGIL_JAVA_GATEWAY" in _state(repo, ids["jmx[a:b=c,D]"])[1]  # type: ignore[index]


class FakeGateway:
    """A TCP server answering every connection with `reply` (garbage, for the bad-input tests)."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                try:
                    conn.settimeout(2)
                    conn.recv(65536)
                    conn.sendall(self.reply)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def _frame(body: bytes) -> bytes:
    return b"ZBXD\x01" + struct.pack("<II", len(body), 0) + body


@pytest.mark.parametrize(("reply", "reason"), [
    (b"HTTP/1.1 400 Bad Request\r\n\r\n", "missing header"),
    (_frame(b"<html>no</html>"), "not JSON"),
    (_frame(b'{"response":"success","data":[]}'), "0 results for 1 keys"),
    (_frame(b'{"response":"maybe"}'), "response 'maybe'"),
])
def test_a_gateway_answering_garbage_makes_the_items_not_supported(repo: ConfigRepo, use_gateway,  # noqa: F811
                                                                   reply: bytes, reason: str) -> None:
    fake = FakeGateway(reply)
    try:
        use_gateway(f"127.0.0.1:{fake.port}")
        ids = _import(repo, _doc(12345, "      - {key: 'jmx[a:b=c,D]', type: jmx, value_type: char, delay: 1s}"))
        sched = Scheduler(repo, _collect([]), FAST, pollers={ItemType.JMX: jmx.JmxPoller()})
        asyncio.run(_run_until(sched, lambda: _state(repo, ids["jmx[a:b=c,D]"]), 10, "a state"))
    finally:
        fake.close()
    state, error = _state(repo, ids["jmx[a:b=c,D]"])  # type: ignore[misc]
    assert state == 1 and "invalid reply from the Java gateway" in error and reason in error


@pytest.mark.parametrize("case", ["down", "silent"])
def test_a_gateway_down_or_silent_is_a_network_error_of_the_jmx_interface(repo: ConfigRepo, use_gateway,  # noqa: F811
                                                                         case: str) -> None:
    silent = Listener("silent") if case == "silent" else None
    try:
        use_gateway(f"127.0.0.1:{silent.port if silent else free_port()}")
        ids = _import(repo, _doc(12345, "      - {key: 'jmx[a:b=c,D]', type: jmx, value_type: char, delay: 1s}"))
        sched = Scheduler(repo, _collect([]), FAST, pollers={ItemType.JMX: jmx.JmxPoller()})
        asyncio.run(_run_until(sched, lambda: _interface(repo)["errors_from"] > 0, 10, "an interface error"))
    finally:
        if silent is not None:
            silent.close()
    error = _interface(repo)["error"]
    if case == "down":
        assert "Cannot connect to the Java gateway" in error and "VIGIL_JAVA_GATEWAY" in error
    else:
        assert f"did not answer within {FAST.timeout:g} s" in error  # bounded by the item's time-out
    assert _state(repo, ids["jmx[a:b=c,D]"]) is None


def test_parse_reply_pairs_values_and_errors_with_the_keys() -> None:
    reply = b'{"response":"success","data":[{"value":"1"},{"error":"no such bean"},{"value":2}]}'
    assert jmx.parse_reply(reply, 3) == [("1", None), (None, "no such bean"), ("2", None)]
    with pytest.raises(jmx.GatewayError, match=r"data\[0\] has neither"):
        jmx.parse_reply(b'{"response":"success","data":[{}]}', 1)
    with pytest.raises(jmx.Unreachable, match="Connection refused"):
        jmx.parse_reply(b'{"response":"failed","error":"Connection refused"}', 1)


@pytest.mark.parametrize(("item", "problem"), [
    ({"key": "jmx.nope[a]", "type": "jmx"}, "items[0].key: 'jmx.nope[a]': a jmx item's key is one of"),
    ({"key": "k", "type": "agent", "jmx_endpoint": "service:jmx:x"}, "items[0].jmx_endpoint: only jmx items"),
    ({"key": "jmx[a,b]", "type": "jmx", "jmx_endpoint": "http://x"}, "items[0].jmx_endpoint: 'http://x' is not"),
])
def test_bad_jmx_items_are_refused_naming_the_field(item: dict, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        doc_from_dict({"hosts": [{"host": "h", "items": [item]}]})


def test_jmx_endpoint_round_trips_through_the_repo(repo: ConfigRepo, tmp_path: Path) -> None:  # noqa: F811
    ep = "service:jmx:rmi:///jndi/rmi://{HOST.CONN}:9999/jmxrmi"
    _import(repo, _doc(12345, f"""
      - {{key: 'jmx[a:b=c,D]', type: jmx, value_type: char, jmx_endpoint: '{ep}', username: u, password: p}}
      - {{key: 'jmx[a:b=c,E]', type: jmx, value_type: char}}
"""))
    items = {i["key"]: i for i in repo.export()["hosts"][0]["items"]}
    assert items["jmx[a:b=c,D]"]["jmx_endpoint"] == ep and items["jmx[a:b=c,D]"]["username"] == "u"
    assert "jmx_endpoint" not in items["jmx[a:b=c,E]"]  # the default is not written out
    polled = {p.key: p for p in repo.poll_config().items.values()}
    assert polled["jmx[a:b=c,D]"].poll.jmx_endpoint == "service:jmx:rmi:///jndi/rmi://127.0.0.1:9999/jmxrmi"
    assert polled["jmx[a:b=c,E]"].poll.jmx_endpoint == "service:jmx:rmi:///jndi/rmi://127.0.0.1:12345/jmxrmi"


def test_the_generic_java_jmx_template_reads_every_item(repo: ConfigRepo, gateway: JavaGateway,  # noqa: F811
                                                        use_gateway) -> None:
    from vigil.run.up import builtin_templates
    from vigil.server.config.builtins import builtin_names

    assert "Generic Java JMX" in builtin_names()  # linked by name, imported on first use
    use_gateway(gateway.address)
    repo.apply(doc_from_dict(builtin_templates("Generic Java JMX")))
    ids = _import(repo, f"""
hosts:
  - host: app1
    interfaces: [{{type: jmx, address: 127.0.0.1, port: {gateway.jmx_port}}}]
    templates: [Generic Java JMX]
""")
    host_items = {i.itemid: i for i in repo.poll_config().items.values() if i.host == "app1"}
    assert len(host_items) == 17
    batches: list[WriteBatch] = []
    sched = Scheduler(repo, _collect(batches), PATIENT, pollers={ItemType.JMX: jmx.JmxPoller()})
    sched.load(repo.poll_config())
    for itemid in host_items:  # due now rather than within their minute
        sched._schedule(itemid, 0)
    rate_items = {i for i, it in host_items.items() if "CollectionCount" in it.key}  # need two values
    asyncio.run(_run_until(sched, lambda: all(_values(batches, i) for i in host_items if i not in rate_items)
                           and sched.stats.polls >= len(host_items), 20, "every template item"))
    assert all(_state(repo, i) in (None, (0, "")) for i in host_items), [
        (host_items[i].key, _state(repo, i)) for i in host_items if _state(repo, i) not in (None, (0, ""))]
    used = _values(batches, ids['jmx["java.lang:type=Memory",HeapMemoryUsage.used]'])[0]
    committed = _values(batches, ids['jmx["java.lang:type=Memory",HeapMemoryUsage.committed]'])[0]
    assert 0 < used <= committed <= HEAP_MAX


@pytest.mark.parametrize(("text", "want"), [("", ""), ("gw.example", "gw.example:10052"),
                                            ("127.0.0.1:10053", "127.0.0.1:10053"), ("[::1]:10052", "[::1]:10052")])
def test_the_java_gateway_setting(text: str, want: str) -> None:
    from vigil.server.settings import Settings

    s = Settings.from_env({"VIGIL_JAVA_GATEWAY": text, "VIGIL_JAVA_POLLERS": "7"})
    assert (s.java_gateway, s.java_pollers) == (want, 7)


@pytest.mark.parametrize("text", ["host:notaport", "host:0", ":10052"])
def test_a_bad_java_gateway_setting_names_the_variable(text: str) -> None:
    from vigil.server.settings import Settings, SettingsError

    with pytest.raises(SettingsError, match="VIGIL_JAVA_GATEWAY"):
        Settings.from_env({"VIGIL_JAVA_GATEWAY": text})


def test_migration_0009_gives_existing_jmx_items_the_default_endpoint(database_url: str) -> None:
    import sqlalchemy as sa
    from vigil.server.config import tables as t
    from vigil.server.config.migrate import engine_for, upgrade

    engine = engine_for(database_url)
    try:
        upgrade(engine, "0008")
        with engine.begin() as c:
            c.execute(sa.text("INSERT INTO hosts (hostid, host, name, status) VALUES (1, 'j', 'j', 0)"))
            c.execute(sa.text("INSERT INTO interfaces (hostid, type, main, useip, ip, dns, port, details, ref) "
                              "VALUES (1, 4, 1, 1, '192.0.2.5', '', '9010', '{}', 'jmx1')"))
            c.execute(sa.text("INSERT INTO items (itemid, hostid, key_, type, value_type, delay, username) "
                              "VALUES (7, 1, 'jmx[a:b=c,D]', 16, 4, '1m', 'monitor')"))
        upgrade(engine)
        with engine.connect() as c:
            row = c.execute(sa.select(t.items.c.jmx_endpoint, t.items.c.username)).one()
        assert tuple(row) == ("", "monitor")
        item = ConfigRepo(engine).poll_config().items[7]
        assert item.poll.jmx_endpoint == "service:jmx:rmi:///jndi/rmi://192.0.2.5:9010/jmxrmi"
        assert item.poll.username == "monitor"
    finally:
        engine.dispose()


class EchoGateway(FakeGateway):
    """Speaks the gateway protocol: records each request and answers every key with its own text."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        super().__init__(b"")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                data = b""
                while len(data) < 13 or len(data) < 13 + struct.unpack("<I", data[5:9])[0]:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                req = json.loads(data[13:])
                self.requests.append(req)
                conn.sendall(_frame(json.dumps({"response": "success",
                                                "data": [{"value": k} for k in req["keys"]]}).encode()))


def test_items_of_one_endpoint_share_requests_of_at_most_32_keys(use_gateway) -> None:
    from vigil.server.config.model import PollSpec
    from vigil.server.config.repo import PollInterface, PollItem
    from vigil.server.config.tables import ValueType

    fake = EchoGateway()
    try:
        use_gateway(f"127.0.0.1:{fake.port}")
        itf = PollInterface(1, 1, 4, "192.0.2.9", 9010, {})
        spec = PollSpec(jmx_endpoint="service:jmx:rmi:///jndi/rmi://192.0.2.9:9010/jmxrmi", username="u",
                        password="p")
        items = [PollItem(i, 1, "h", ItemType.JMX, ValueType.CHAR, f"jmx[a:b=c,A{i}]", 1, itf, spec)
                 for i in range(40)]
        items.append(PollItem(99, 1, "h", ItemType.JMX, ValueType.CHAR, "jmx[a:b=c,Other]", 1, itf,
                              dataclasses.replace(spec, username="someone-else")))
        poller = jmx.JmxPoller()

        async def all_at_once() -> list[object]:
            return await asyncio.gather(*(poller(it, 5) for it in items))
        values = asyncio.run(all_at_once())
    finally:
        fake.close()
    assert values == [it.key for it in items]  # each item its own answer, in order
    assert sorted(len(r["keys"]) for r in fake.requests) == [1, 8, 32]
    first = next(r for r in fake.requests if len(r["keys"]) == 32)
    assert {k: v for k, v in first.items() if k != "keys"} == {
        "request": "java gateway jmx", "conn": "192.0.2.9", "port": 9010,
        "jmx_endpoint": "service:jmx:rmi:///jndi/rmi://192.0.2.9:9010/jmxrmi", "username": "u", "password": "p"}
    assert next(r for r in fake.requests if len(r["keys"]) == 1)["username"] == "someone-else"
