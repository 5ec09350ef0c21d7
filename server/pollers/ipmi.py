"""IPMI items over RMCP+ (IPMI 2.0 LAN) with pyghmi: one session per BMC, shared by its items.

An item of type ipmi names a sensor (`ipmi_sensor`, the SDR's ID string, e.g. "CPU Temp"); its value
is the reading: a float in the sensor's units for threshold sensors, and for discrete sensors the
asserted state bits (bytes 3-4 of Get Sensor Reading, bit n = state offset n) as an unsigned number,
as Zabbix gives them. The key `ipmi.get` (no sensor) gives every sensor as a JSON array, in Zabbix
6's shape, for low-level discovery:

    [{"id": "CPU Temp", "name": "CPU Temp", "sensor": {"type": 1, "text": "Temperature"},
      "reading": {"type": 1, "text": "Threshold"}, "state": {"state": 0, "text": "ok"},
      "value": 45.0, "units": "°C"}, ...]

`id` is what an item's ipmi_sensor takes; sensor.type is the IPMI sensor type code, reading.type the
event/reading type code (1 threshold, 0x6f sensor-specific...), state.state the state bits.

pyghmi is blocking, so each BMC's calls run on a bounded thread pool (VIGIL_IPMI_POLLERS threads),
one at a time per BMC (a pyghmi session is not shared between threads). A call that outlives the
item's time-out is abandoned by the poll (the interface becomes unreachable) and ends in its thread
by pyghmi's own retries, which this module shortens. pyghmi keeps sessions in a process-wide cache
keyed on the credentials; a session that broke (the BMC went away) stays in that cache and would be
handed out again, so it is dropped from it before a new session is made (`_forget_broken`).
"""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from vigil.server.config.repo import PollItem
from vigil.server.pollers import NotSupported, Unreachable

# Zabbix's host IPMI settings (hosts.ipmi_authtype / ipmi_privilege), by the names the YAML takes.
AUTHTYPES = {"default": -1, "none": 0, "md2": 1, "md5": 2, "straight": 4, "oem": 5, "rmcp_plus": 6}
PRIVILEGES = {"callback": 1, "user": 2, "operator": 3, "admin": 4, "oem": 5}
RMCP_PLUS = {-1, 6}  # what pyghmi speaks: IPMI 2.0 RMCP+ only
SESSION_MAXTIMEOUT = 1  # pyghmi's per-packet retry ceiling (s) once logged in; its default 4 means ~28 s to fail
_READING_TYPES = {0x01: "Threshold", 0x6f: "Sensor specific"}
_SENSOR_READING = 0x2D  # Get Sensor Reading (netfn 4, sensor/event)


class IpmiConfigError(ValueError):
    """Interface details that cannot work (bad privilege, an authentication type pyghmi lacks)."""


def _choice(details: dict[str, str], name: str, names: dict[str, int], default: str) -> int:
    raw = str(details.get(name, "") or default).strip().lower()
    if raw.lstrip("-").isdigit() and int(raw) in names.values():
        return int(raw)
    if raw not in names:
        raise IpmiConfigError(f"interface {name}: {raw!r} is not one of {', '.join(names)}")
    return names[raw]


@dataclass(frozen=True, slots=True)
class IpmiTarget:
    address: str
    port: int
    username: str
    password: str = field(repr=False)
    privilege: int = 2

    @classmethod
    def from_interface(cls, address: str, port: int, details: dict[str, str]) -> IpmiTarget:
        authtype = _choice(details, "authtype", AUTHTYPES, "default")
        if authtype not in RMCP_PLUS:
            name = next(k for k, v in AUTHTYPES.items() if v == authtype)
            raise IpmiConfigError(f"interface authtype: {name!r} is IPMI 1.5, which Vigil does not speak; "
                                  "use default or rmcp_plus (IPMI 2.0 RMCP+)")
        privilege = _choice(details, "privilege", PRIVILEGES, "user")
        if privilege == PRIVILEGES["oem"]:
            raise IpmiConfigError("interface privilege: 'oem' cannot be requested over RMCP+; use callback, user, "
                                  "operator or admin")
        return cls(address, port or 623, str(details.get("username", "")), str(details.get("password", "")),
                   privilege)

    def where(self) -> str:
        return f"IPMI interface [{self.address}]:{self.port}"


@dataclass(frozen=True, slots=True)
class Reading:
    """One sensor's reading, decoded."""

    number: int
    name: str
    sensor_type: int
    sensor_text: str
    reading_type: int
    value: float | None  # threshold sensors; None for discrete ones
    units: str
    state: int  # the state bits (bytes 3-4 of Get Sensor Reading, 15 bits)
    states: tuple[str, ...]
    unavailable: bool

    def item_value(self) -> str:
        if self.unavailable:
            raise NotSupported(f"IPMI sensor {self.name!r}: the reading is unavailable (scanning disabled or "
                               "the device is absent)")
        if self.value is not None:
            return repr(float(self.value))
        return str(self.state)

    def as_json(self) -> dict[str, Any]:
        return {"id": self.name, "name": self.name,
                "sensor": {"type": self.sensor_type, "text": self.sensor_text},
                "reading": {"type": self.reading_type,
                            "text": _READING_TYPES.get(self.reading_type,
                                                       "Generic discrete" if 2 <= self.reading_type <= 0x0c
                                                       else "OEM")},
                "state": {"state": self.state, "text": ", ".join(self.states) if self.states else "ok"},
                "value": None if self.unavailable else (self.value if self.value is not None else self.state),
                "units": self.units}


class _Bmc:
    """One BMC: its pyghmi Command (made on first use, dropped after an error) and the lock that keeps
    its calls one at a time."""

    def __init__(self, target: IpmiTarget) -> None:
        self.target = target
        self.lock = threading.Lock()
        self.command: Any = None

    def _connect(self) -> Any:
        from pyghmi.exceptions import IpmiException
        from pyghmi.ipmi import command

        t = self.target
        _forget_broken(t)
        try:
            c = command.Command(bmc=t.address, userid=t.username, password=t.password, port=t.port,
                                privlevel=t.privilege, keepalive=True)
        except IpmiException as e:
            raise _network_error(t, e) from None
        except OSError as e:
            raise Unreachable(f"cannot reach {t.where()}: {e.strerror or e}") from None
        session = getattr(c, "ipmi_session", None)
        if session is not None:
            session.maxtimeout = SESSION_MAXTIMEOUT
        return c

    def read(self, sensor: str | None, timeout: float) -> list[Reading]:
        """Readings of `sensor` (a one-element list) or of every sensor (None). Runs in a pool thread."""
        from pyghmi.exceptions import IpmiException

        if not self.lock.acquire(timeout=timeout):
            raise Unreachable(f"{self.target.where()}: the previous request to this BMC has not been answered "
                              f"within {timeout:g} s")
        try:
            if self.command is None:
                self.command = self._connect()
            try:
                return _readings(self.command, sensor, self.target)
            except IpmiException as e:
                self.command = None
                raise _network_error(self.target, e) from None
            except OSError as e:
                self.command = None
                raise Unreachable(f"{self.target.where()}: {e.strerror or e}") from None
        finally:
            self.lock.release()


def _readings(c: Any, sensor: str | None, target: IpmiTarget) -> list[Reading]:
    from pyghmi.exceptions import IpmiException

    sdr = c.init_sdr()
    entries = [sdr.sensors[n] for n in sdr.get_sensor_numbers()]
    if sensor is not None:
        entries = [e for e in entries if e.name == sensor]
        if not entries:
            names = ", ".join(sorted(e.name for e in (sdr.sensors[n] for n in sdr.get_sensor_numbers())))
            raise NotSupported(f"IPMI sensor {sensor!r} does not exist on {target.where()} (it has: {names})")
    out = []
    for e in entries:
        rsp = c.raw_command(command=_SENSOR_READING, netfn=4, rslun=e.sensor_lun, data=(e.sensor_number,))
        if "error" in rsp:
            if rsp.get("code") == 0xCB and sensor is None:  # sensor not present: skip it in ipmi.get
                continue
            if rsp.get("code") in (0xCB, 0xCD):
                raise NotSupported(f"IPMI sensor {e.name!r}: {rsp['error']}")
            raise IpmiException(rsp["error"], code=rsp.get("code", 0))
        data = bytes(rsp["data"])
        decoded = e.decode_sensor_reading(c, data)
        state = (data[2] | (data[3] << 8 if len(data) > 3 else 0)) & 0x7FFF if len(data) > 2 else 0
        threshold = e.reading_type == 0x01
        out.append(Reading(number=e.sensor_number, name=e.name, sensor_type=int(e.sensor_type_number),
                           sensor_text=str(e.sensor_type), reading_type=int(e.reading_type),
                           value=decoded.value if threshold and decoded.value is not None else None,
                           units=decoded.units or "", state=state & (0x3F if threshold else 0x7FFF),
                           states=tuple(decoded.states or ()), unavailable=bool(decoded.unavailable)))
    return out


def _network_error(t: IpmiTarget, e: Exception) -> Unreachable:
    text = str(e) or type(e).__name__
    if "password" in text.lower() or "unauthorized" in text.lower() or "privilege" in text.lower():
        return Unreachable(f"{t.where()} refused user {t.username!r}: {text} (check the interface's username, "
                           "password and privilege)")
    return Unreachable(f"{t.where()}: {text}")


def _forget_broken(t: IpmiTarget) -> None:
    """Drop a broken pyghmi session for these credentials from pyghmi's process-wide cache, where it
    would otherwise be returned to the next Command (and fail at once with 'Session no longer connected')."""
    try:
        from pyghmi.ipmi.private import session
    except ImportError:
        return
    cache = session.Session.initting_sessions
    for key, s in list(cache.items()):
        if key[:4] == (t.address, t.username, t.password, t.port) and getattr(s, "broken", False):
            cache.pop(key, None)


class IpmiPoller:
    """The scheduler's poller for ItemType.IPMI: one _Bmc per interface, `threads` calls at once."""

    def __init__(self, threads: int = 8) -> None:
        self._bmcs: dict[int, _Bmc] = {}
        self._threads = threads
        self._pool: ThreadPoolExecutor | None = None  # made on first use, again after close()

    async def __call__(self, item: PollItem, timeout: float) -> str:
        itf = item.interface
        if itf is None:
            raise NotSupported("the host has no ipmi interface to poll this item through")
        try:
            target = IpmiTarget.from_interface(itf.address, itf.port, itf.details)
        except IpmiConfigError as e:
            raise NotSupported(str(e)) from None
        sensor = item.poll.ipmi_sensor
        if item.key.startswith("ipmi.get"):
            if item.key.strip() not in ("ipmi.get", "ipmi.get[]"):
                raise NotSupported("ipmi.get takes no parameters")
            sensor = ""
        elif not sensor:
            raise NotSupported("an ipmi item needs the sensor to read (ipmi_sensor), or the key ipmi.get")
        bmc = self._bmcs.get(itf.interfaceid)
        if bmc is None or bmc.target != target:
            bmc = self._bmcs[itf.interfaceid] = _Bmc(target)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._threads, thread_name_prefix="ipmi")
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self._pool, bmc.read, sensor or None, timeout)
        try:
            readings = await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            raise Unreachable(f"{target.where()} did not answer within {timeout:g} s") from None
        if sensor:
            return readings[0].item_value()
        return json.dumps([r.as_json() for r in readings], ensure_ascii=False)

    async def close(self) -> None:
        """Stop taking calls (sessions stay in pyghmi's cache; a call still waiting ends in its thread)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

