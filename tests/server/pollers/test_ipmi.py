"""IPMI items through the scheduler against a real ipmi_sim BMC (RMCP+ on a free loopback port):
sensor readings, a reading changed through the emulator console, ipmi.get's JSON, a wrong password
and an unknown sensor, and a BMC that stops and comes back. Both stores (the `repo` fixture)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from vigil.server.config.model import ConfigError, doc_from_dict
from vigil.server.config.repo import ConfigRepo
from vigil.server.pollers.ipmi import IpmiConfigError, IpmiTarget
from vigil.server.pollers.scheduler import PollerSettings, Scheduler
from vigil.server.store.base import WriteBatch

from tests.peers.ipmi_sim import ADMIN, MONITOR, IpmiSim
from tests.server.pollers.test_scheduler import (  # noqa: F401
    _collect,
    _import,
    _interface,
    _run_until,
    _state,
    _values,
    repo,
)

# ipmi_sim answers its first requests slowly (pyghmi retries them): the first SDR download can take
# seconds, so IPMI polls get a longer time-out than the other pollers' tests.
IPMI_FAST = PollerSettings(pollers=20, timeout=10, unreachable_period=2, unreachable_delay=1, unavailable_delay=1,
                           config_refresh=0.2, flush_interval=0.05)


@pytest.fixture
def bmc(tmp_path: Path) -> Iterator[IpmiSim]:
    sim = IpmiSim.start(tmp_path)
    try:
        yield sim
    finally:
        sim.stop()


def _doc(sim: IpmiSim, user: tuple[str, str], items: str, extra: str = "") -> str:
    return f"""
hosts:
  - host: server1
    interfaces:
      - {{type: ipmi, address: 127.0.0.1, port: {sim.port}, username: {user[0]}, password: {user[1]}{extra}}}
    items:
{items}
"""


SENSORS = """      - {key: cpu.temp, type: ipmi, ipmi_sensor: CPU Temp, value_type: float, units: °C, delay: 1s}
      - {key: fan1, type: ipmi, ipmi_sensor: FAN1, value_type: float, delay: 1s}
      - {key: v12, type: ipmi, ipmi_sensor: 12V, value_type: float, delay: 1s}
      - {key: psu1, type: ipmi, ipmi_sensor: PSU1 Status, value_type: unsigned, delay: 1s}
      - {key: ipmi.get, type: ipmi, value_type: text, delay: 1s}
      - {key: nope, type: ipmi, ipmi_sensor: No Such Sensor, value_type: float, delay: 1s}
"""


def test_sensor_readings_a_changed_reading_and_ipmi_get(repo: ConfigRepo, bmc: IpmiSim) -> None:  # noqa: F811
    ids = _import(repo, _doc(bmc, MONITOR, SENSORS, ", privilege: user"))
    batches: list[WriteBatch] = []
    sched = Scheduler(repo, _collect(batches), IPMI_FAST)
    asyncio.run(_run_until(sched, lambda: all(_values(batches, ids[k]) for k in ("cpu.temp", "fan1", "v12", "psu1",
                                                                                 "ipmi.get"))
                           and _state(repo, ids["nope"]), 60, "IPMI values"))
    assert set(_values(batches, ids["cpu.temp"])) == {45.0}
    assert set(_values(batches, ids["fan1"])) == {4800.0}
    assert {round(v, 6) for v in _values(batches, ids["v12"])} == {12.0}
    assert set(_values(batches, ids["psu1"])) == {1}  # discrete: state bits, bit 0 "presence detected"
    state, error = _state(repo, ids["nope"])  # type: ignore[misc]
    assert state == 1 and "'No Such Sensor' does not exist" in error and "CPU Temp" in error
    assert _interface(repo)["available"] == 1

    sensors = json.loads(_values(batches, ids["ipmi.get"])[-1])
    by_id = {s["id"]: s for s in sensors}
    assert set(by_id) == {"CPU Temp", "Inlet Temp", "FAN1", "12V", "3.3V", "PSU1 Status"}
    cpu = by_id["CPU Temp"]
    assert set(cpu) == {"id", "name", "sensor", "reading", "state", "value", "units"}
    assert cpu["sensor"] == {"type": 1, "text": "Temperature"}
    assert cpu["reading"] == {"type": 1, "text": "Threshold"}
    assert cpu["state"] == {"state": 0, "text": "ok"} and cpu["value"] == 45.0 and cpu["units"] == "°C"
    assert by_id["FAN1"]["sensor"]["type"] == 4 and by_id["FAN1"]["units"] == "RPM"
    assert by_id["3.3V"]["sensor"]["type"] == 2 and by_id["3.3V"]["value"] == pytest.approx(3.3)
    psu = by_id["PSU1 Status"]
    assert (psu["sensor"], psu["reading"]) == ({"type": 8, "text": "Power Supply"},
                                               {"type": 0x6F, "text": "Sensor specific"})
    assert psu["state"] == {"state": 1, "text": "Present"} and psu["value"] == 1

    # The emulator console sets CPU Temp to 90 °C (over its upper critical threshold) and asserts the
    # power supply's "failure" state (bit 1).
    bmc.set_sensor(1, 90)
    bmc.console("sensor_set_bit 0x20 0 6 1 1 1")
    mark = len(batches)
    asyncio.run(_run_until(sched, lambda: 90.0 in _values(batches[mark:], ids["cpu.temp"])
                           and 3 in _values(batches[mark:], ids["psu1"])
                           and _values(batches[mark:], ids["ipmi.get"]), 30, "the new readings"))
    hot = {s["id"]: s for s in json.loads(_values(batches, ids["ipmi.get"])[-1])}["CPU Temp"]
    assert hot["value"] == 90.0
    # upper non-critical (bit 3) and upper critical (bit 4) going high are asserted
    assert hot["state"]["state"] & 0b11000 == 0b11000 and "upper critical" in hot["state"]["text"]


def test_a_wrong_password_is_a_clear_interface_error(repo: ConfigRepo, bmc: IpmiSim) -> None:  # noqa: F811
    _import(repo, _doc(bmc, (MONITOR[0], "not-the-password"), SENSORS.split("\n")[0]))
    sched = Scheduler(repo, _collect([]), IPMI_FAST)
    asyncio.run(_run_until(sched, lambda: _interface(repo)["error"] != "", 20, "the interface error"))
    err = _interface(repo)["error"]
    assert f"IPMI interface [127.0.0.1]:{bmc.port} refused user 'monitor'" in err
    assert "Incorrect password" in err


def test_a_stopped_bmc_becomes_unavailable_and_comes_back(repo: ConfigRepo, bmc: IpmiSim) -> None:  # noqa: F811
    ids = _import(repo, _doc(bmc, ADMIN, SENSORS.split("\n")[0], ", privilege: admin"))
    batches: list[WriteBatch] = []
    sched = Scheduler(repo, _collect(batches), IPMI_FAST)
    asyncio.run(_run_until(sched, lambda: _values(batches, ids["cpu.temp"]), 60, "a first value"))
    bmc.stop()
    asyncio.run(_run_until(sched, lambda: _interface(repo)["available"] == 2, 40, "the BMC to be unavailable"))
    assert f"[127.0.0.1]:{bmc.port}" in _interface(repo)["error"]
    bmc.start_again()
    mark = len(batches)
    asyncio.run(_run_until(sched, lambda: _interface(repo)["available"] == 1 and _values(batches[mark:],
                                                                                           ids["cpu.temp"]),
                           60, "the BMC to be available again"))
    itf = _interface(repo)
    assert (itf["error"], itf["errors_from"], itf["disable_until"]) == ("", 0, 0)


def test_ipmi_fields_are_checked_at_import_and_at_poll_time() -> None:
    base = {"hosts": [{"host": "h", "interfaces": [{"type": "ipmi", "address": "10.0.0.1"}], "items": []}]}
    bad_item = json.loads(json.dumps(base))
    bad_item["hosts"][0]["items"] = [{"key": "t", "type": "ipmi", "value_type": "float"}]
    with pytest.raises(ConfigError, match=r"items\[0\]\.ipmi_sensor: an ipmi item needs the sensor"):
        doc_from_dict(bad_item)
    bad_item["hosts"][0]["items"] = [{"key": "t", "type": "trapper", "ipmi_sensor": "FAN1"}]
    with pytest.raises(ConfigError, match=r"ipmi_sensor: only ipmi items have a sensor"):
        doc_from_dict(bad_item)
    bad_priv = json.loads(json.dumps(base))
    bad_priv["hosts"][0]["interfaces"][0]["privilege"] = "root"
    with pytest.raises(ConfigError, match=r"interfaces\[0\]\.privilege: 'root' is not one of callback, user"):
        doc_from_dict(bad_priv)
    ok = doc_from_dict({"hosts": [{"host": "h", "interfaces": [{"type": "ipmi", "address": "10.0.0.1",
                                                                 "authtype": "RMCP_PLUS", "privilege": "Admin"}],
                                   "items": [{"key": "ipmi.get", "type": "ipmi", "value_type": "text"}]}]})
    itf = ok.hosts[0].interfaces[0]  # type: ignore[index]
    assert itf.port == "623" and itf.details == {"authtype": "rmcp_plus", "privilege": "admin"}
    assert IpmiTarget.from_interface("10.0.0.1", 623, itf.details).privilege == 4
    with pytest.raises(IpmiConfigError, match="'md5' is IPMI 1.5"):
        IpmiTarget.from_interface("10.0.0.1", 623, {"authtype": "md5"})


def test_ipmi_interface_and_sensor_round_trip_through_the_store(repo: ConfigRepo) -> None:  # noqa: F811
    ids = _import(repo, """
hosts:
  - host: server2
    interfaces:
      - {type: ipmi, address: 192.0.2.5, username: monitor, password: '{$IPMI.PASS}', privilege: operator}
    macros: {'{$IPMI.PASS}': s3cret}
    items:
      - {key: fan, type: ipmi, ipmi_sensor: FAN1, value_type: float, delay: 30s}
""")
    exported = repo.export()
    host = next(h for h in exported["hosts"] if h["host"] == "server2")
    assert host["items"][0]["ipmi_sensor"] == "FAN1"
    assert host["interfaces"][0] == {"type": "ipmi", "address": "192.0.2.5", "interface_ref": "ipmi1",
                                   "main": True, "username": "monitor", "password": "{$IPMI.PASS}",
                                   "privilege": "operator"}
    item = repo.poll_config().items[ids["fan"]]
    assert item.poll.ipmi_sensor == "FAN1" and item.interface is not None
    assert (item.interface.port, item.interface.details["password"]) == (623, "s3cret")
