"""Discovery values from every source into the LLD processor: vfs.fs.discovery polled from a real
zabbix_agentd and from vigil-agent (passive) and pushed by zabbix_agentd (active), zabbix_sender
feeding a trapper rule of a running `vigil server`, a real node_exporter through the "Prometheus
node_exporter" template, and the "IPMI sensors" template splitting one `ipmi.get` value (given by a
test poller: the IPMI poller is not part of this branch)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from vigil.server.config.migrate import engine_for
from vigil.server.config.model import doc_from_dict
from vigil.server.config.repo import ConfigRepo, PollItem
from vigil.server.config.tables import ItemType
from vigil.server.lld import LldProcessor
from vigil.server.pollers.scheduler import Scheduler, default_pollers
from vigil.server.store.base import WriteBatch

from tests.conftest import VigilServer, free_port, require, wait_until, zabbix_get
from tests.server.pollers.conftest import run_vigil_agent
from tests.server.pollers.test_prometheus import node_exporter  # noqa: F401
from tests.server.pollers.test_scheduler import FAST, _collect, _run_until, _values, repo  # noqa: F401


def _run(repo: ConfigRepo, done, what: str, pollers=None, batches=None) -> list[WriteBatch]:  # noqa: ANN001, F811
    lld = LldProcessor(repo)
    lld.start()
    batches = [] if batches is None else batches
    sched = Scheduler(repo, _collect(batches), FAST, pollers=pollers, lld=lld.submit)
    try:
        asyncio.run(_run_until(sched, lambda: done(batches), 30, what))
    finally:
        lld.stop()
    return batches


@pytest.fixture(params=["zabbix_agentd", "vigil-agent"])
def passive_agent(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[int]:
    """A real passive agent on loopback: Zabbix's zabbix_agentd 6.0 or ours."""
    if request.param == "zabbix_agentd":
        yield request.getfixturevalue("zabbix_agentd")
    else:
        yield from run_vigil_agent(tmp_path, free_port())


def test_agent_filesystems_discovered_from_a_passive_agent(repo: ConfigRepo, passive_agent: int) -> None:  # noqa: F811
    zabbix_agentd = passive_agent
    fs = json.loads(zabbix_get(zabbix_agentd, "vfs.fs.discovery"))
    fs = fs["data"] if isinstance(fs, dict) else fs
    root_type = next(x["{#FSTYPE}"] for x in fs if x["{#FSNAME}"] == "/")
    want = {x["{#FSNAME}"] for x in fs if x["{#FSTYPE}"] == root_type}
    repo.apply(doc_from_dict(yaml.safe_load(f"""
hosts:
  - host: agent1
    interfaces: [{{type: agent, address: 127.0.0.1, port: {zabbix_agentd}}}]
    discovery_rules:
      - key: vfs.fs.discovery
        type: agent
        delay: 1h
        filter: {{conditions: [{{macro: "{{#FSTYPE}}", value: "^{root_type}$"}}]}}
        item_prototypes:
          - {{key: "vfs.fs.size[{{#FSNAME}},total]", type: agent, value_type: unsigned, units: B, delay: 1s}}
""")))

    def done(batches: list[WriteBatch]) -> bool:
        found = repo.discovered_items("agent1")
        return "vfs.fs.size[/,total]" in found and bool(_values(batches, found["vfs.fs.size[/,total]"][0]))

    batches = _run(repo, done, "the root file system's total size")
    found = repo.discovered_items("agent1")
    assert {k[len("vfs.fs.size["):-len(",total]")].strip('"') for k in found} == want
    assert all(v > 0 for v in _values(batches, found["vfs.fs.size[/,total]"][0]))


def test_a_trapper_rule_fed_by_zabbix_sender(tmp_path: Path, database_url: str) -> None:
    sender = require("zabbix_sender")
    server = VigilServer(tmp_path, database_url).start()
    engine = engine_for(database_url)
    try:
        server.import_yaml("""
hosts:
  - host: app1
    discovery_rules:
      - key: app.queues
        type: trapper
        lifetime: "0"
        lld_macro_paths: {"{#QUEUE}": "$.name"}
        filter: {conditions: [{macro: "{#QUEUE}", value: "^tmp", operator: not_matches}]}
        item_prototypes:
          - {key: "app.queue.depth[{#QUEUE}]", type: trapper, value_type: unsigned, name: "Queue {#QUEUE} depth"}
""")
        server.wait_for_config("app1")
        repo = ConfigRepo(engine)

        def send(key: str, value: str) -> str:
            r = subprocess.run([sender, "-z", "127.0.0.1", "-p", str(server.port), "-s", "app1", "-k", key,
                                "-o", value], capture_output=True, text=True, timeout=30)
            return r.stdout

        out = send("app.queues", json.dumps({"data": [{"name": "orders"}, {"name": "mail"}, {"name": "tmp1"}]}))
        assert "processed: 1; failed: 0" in out
        wait_until(lambda: len(repo.discovered_items("app1")) == 2, 15, "the queues' items")
        assert set(repo.discovered_items("app1")) == {"app.queue.depth[orders]", "app.queue.depth[mail]"}
        assert server.history("app1", "app.queues") == []  # a rule's value is not history

        def stored() -> bool:
            send("app.queue.depth[orders]", "17")
            return bool(server.history("app1", "app.queue.depth[orders]"))

        wait_until(stored, 15, "a value of a discovered item")
        assert server.history("app1", "app.queue.depth[orders]")[-1][-1] == "17"
        send("app.queues", json.dumps([{"name": "orders"}]))  # lifetime 0: mail goes at once
        wait_until(lambda: set(repo.discovered_items("app1")) == {"app.queue.depth[orders]"}, 15,
                   "the lost queue's item deleted")
        assert "processed: 1; failed: 0" in send("app.queues", "this is not JSON")  # taken, then not supported
        wait_until(lambda: repo.item_states().get(repo.rule_id("app1", "app.queues"), (0, ""))[0] == 1, 15,
                   "the rule not supported")
    finally:
        server.stop()
        engine.dispose()


def test_node_exporter_filesystems_through_the_builtin_template(repo: ConfigRepo,  # noqa: F811
                                                                node_exporter: tuple[int, Path]) -> None:  # noqa: F811
    port, _ = node_exporter
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    mounts = {line.split('mountpoint="', 1)[1].split('"', 1)[0] for line in text.splitlines()
              if line.startswith("node_filesystem_size_bytes{")}
    assert mounts
    repo.apply(doc_from_dict(yaml.safe_load(f"""
hosts:
  - host: node1
    templates: [Prometheus node_exporter]
    macros: {{"{{$NODE_EXPORTER_PORT}}": "{port}", "{{$NODE_EXPORTER.INTERVAL}}": 1s,
              "{{$VFS.FS.FSTYPE.NOT_MATCHES}}": "^$"}}
    interfaces: [{{type: agent, address: 127.0.0.1}}]
""")))

    def done(batches: list[WriteBatch]) -> bool:
        found = repo.discovered_items("node1")
        return len(found) == 2 * len(mounts) and all(_values(batches, i) for i, _, _ in found.values())

    batches = _run(repo, done, "a value for every discovered file system")
    found = repo.discovered_items("node1")
    assert {k for k in found if k.endswith(",total]")} == {
        f"node.fs.size[{m},total]" if "," not in m else f'node.fs.size["{m}",total]' for m in mounts}
    some = next(iter(mounts))
    total = [line for line in text.splitlines()
             if line.startswith("node_filesystem_size_bytes{") and f'mountpoint="{some}"' in line][0]
    assert _values(batches, found[f"node.fs.size[{some},total]"][0])[0] == float(total.rsplit(" ", 1)[1])


SENSORS = [
    {"id": "0.1", "name": "CPU Temp", "sensor": {"type": 1, "text": "Temperature"},
     "reading": {"type": 1, "text": "Threshold"}, "state": {"state": 0, "text": "ok"}, "value": 41.0,
     "units": "°C"},
    {"id": "0.2", "name": "FAN 1", "sensor": {"type": 4, "text": "Fan"}, "reading": {"type": 1, "text": "Threshold"},
     "state": {"state": 2, "text": "lower critical"}, "value": 1200, "units": "RPM"},
]


def test_ipmi_sensors_discovered_from_one_ipmi_get(repo: ConfigRepo) -> None:  # noqa: F811
    sensors = [dict(x) for x in SENSORS]

    async def ipmi_get(item: PollItem, timeout: float) -> str:
        assert item.key == "ipmi.get"
        return json.dumps(sensors)

    repo.apply(doc_from_dict(yaml.safe_load("""
hosts:
  - host: bmc1
    templates: [IPMI sensors]
    macros: {"{$IPMI.INTERVAL}": 1s}
    interfaces: [{type: ipmi, address: 127.0.0.1, username: admin, password: secret}]
""")))
    pollers = default_pollers() | {ItemType.IPMI: ipmi_get}

    def done(batches: list[WriteBatch]) -> bool:
        found = repo.discovered_items("bmc1")
        return len(found) == 4 and all(_values(batches, i) for i, _, _ in found.values())

    batches = _run(repo, done, "every sensor's value and state", pollers=pollers)
    found = repo.discovered_items("bmc1")
    assert set(found) == {"ipmi.value[CPU Temp]", "ipmi.state[CPU Temp]", "ipmi.value[FAN 1]", "ipmi.state[FAN 1]"}
    assert _values(batches, found["ipmi.value[CPU Temp]"][0])[0] == 41.0
    assert _values(batches, found["ipmi.state[FAN 1]"][0])[0] == 2
    sensors[0]["value"] = 55.5  # a new reading on the next poll
    _run(repo, lambda b: 55.5 in _values(b, found["ipmi.value[CPU Temp]"][0]), "the new reading", pollers=pollers,
         batches=batches)
    with repo.engine.connect() as c:
        import sqlalchemy as sa
        from vigil.server.config import tables as t

        units = c.execute(sa.select(t.items.c.units).where(t.items.c.itemid == found["ipmi.value[FAN 1]"][0])).scalar()
    assert units == "RPM"


def test_an_active_agent_rule_from_zabbix_agentd(tmp_path: Path, vigil_server_sqlite: VigilServer) -> None:
    server = vigil_server_sqlite
    server.import_yaml("""
hosts:
  - host: act1
    discovery_rules:
      - key: vfs.fs.discovery
        type: agent_active
        delay: 1m
        filter: {conditions: [{macro: "{#FSNAME}", value: "^/$"}]}
        item_prototypes:
          - {key: "vfs.fs.size[{#FSNAME},total]", type: agent_active, value_type: unsigned, delay: 1s}
""")
    server.wait_for_config("act1", "vfs.fs.discovery")
    conf = tmp_path / "active.conf"
    conf.write_text(f"ServerActive=127.0.0.1:{server.port}\nHostname=act1\nStartAgents=0\nRefreshActiveChecks=60\n"
                    f"BufferSend=1\nLogType=console\nPidFile={tmp_path}/active.pid\nAllowRoot=1\n")
    agent = subprocess.Popen([require("zabbix_agentd"), "-f", "-c", str(conf)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    engine = engine_for(server.database_url)
    try:
        repo = ConfigRepo(engine)
        wait_until(lambda: set(repo.discovered_items("act1")) == {"vfs.fs.size[/,total]"}, 30,
                   "the root file system discovered from the agent's value")
        server.wait_for_config("act1", "vfs.fs.size[/,total]")  # the agent is told to check it too
        assert "vfs.fs.discovery" in {c["key"] for c in server.active_checks("act1")["data"]}
        assert server.history("act1", "vfs.fs.discovery") == []
    finally:
        from tests.conftest import stop_process

        stop_process(agent)
        engine.dispose()
