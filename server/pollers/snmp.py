"""SNMP v1, v2c and v3 client for the pollers, on pysnmp 7's asyncio API (`pysnmp.hlapi.v3arch.asyncio`).

    target = SnmpTarget.from_interface("10.0.0.1", 161, details)   # details: Zabbix's SNMP interface details
    session = SnmpSession(target, engines)                        # one per device, shared by its items
    values = await session.get(["1.3.6.1.2.1.1.5.0", ...])        # SnmpValue or NotSupported per OID
    rows = await session.walk("1.3.6.1.2.1.2.2.1.2")              # GETBULK (or GETNEXT) walk of a subtree
    text = await session.poll(oid_for_item(item.snmp_oid))        # what an item's value is, as text or int
    await session.close()

Errors: `SnmpTimeout` (no answer: a wrong community looks the same) and `SnmpNetworkError` (v3 wrong
password, unknown user, unsupported level...) concern the whole device: the scheduler marks the SNMP
interface unreachable. `NotSupported` concerns one OID or item. `SnmpConfigError` is bad interface
details and names the field.

Requests in flight per device are bounded (`max_in_flight`, default 2): a walk takes the bound per
request, so gets of the same device interleave with a long walk. pysnmp keeps v3 users in its engine
by name, so `SnmpEngines` gives devices whose user has the same name but other keys an engine of
their own; everything else shares one engine and one UDP socket.
"""

from __future__ import annotations

import asyncio
import json
import socket
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

from vigil.server.pollers import snmp_ber as ber
from vigil.server.pollers.snmp_oids import SnmpRequest, discovery_json, is_under, numeric_oid, oid_for_item
from vigil.server.pollers.snmp_udp import CommunityTransport, RequestTimeout
from vigil.server.pollers.snmp_values import (
    COUNTER_BITS,
    END_OF_MIB_VIEW,
    NO_SUCH_INSTANCE,
    NO_SUCH_OBJECT,
    NotSupported,
    SnmpValue,
    convert,
    walk_text,
)

with warnings.catch_warnings():  # pysnmp 7.1 warns about its own use of deprecated pysmi names
    warnings.simplefilter("ignore", DeprecationWarning)
    from pysnmp.hlapi.v3arch import asyncio as hl
    from pysnmp.proto import errind

__all__ = [
    "AuthProtocol", "NotSupported", "PollResult", "PrivProtocol", "SecurityLevel", "SnmpConfigError", "SnmpEngines",
    "SnmpError", "SnmpNetworkError", "SnmpRequest", "SnmpSession", "SnmpTarget", "SnmpTimeout", "SnmpValue",
    "oid_for_item",
]

MAX_WALK_VALUES = 200_000  # a walk stops with an error past this (an agent looping or an enormous table)
MAX_GET_OIDS_PER_REQUEST = 64
DEFAULT_MAX_IN_FLIGHT = 2


class SnmpError(Exception):
    """Base of the errors that concern a whole device."""


class SnmpNetworkError(SnmpError):
    """The device could not be asked (auth failure, unknown user, transport error): the interface is
    unreachable until it answers again."""


class SnmpTimeout(SnmpNetworkError):
    """No reply within the timeout and retries (also what a wrong community gives)."""


class SnmpConfigError(ValueError):
    """SNMP interface details that cannot be used; the message names the field."""


class SecurityLevel(IntEnum):  # Zabbix's interface details `securitylevel`
    NO_AUTH_NO_PRIV = 0
    AUTH_NO_PRIV = 1
    AUTH_PRIV = 2


class AuthProtocol(IntEnum):  # Zabbix's `authprotocol`
    MD5 = 0
    SHA1 = 1
    SHA224 = 2
    SHA256 = 3
    SHA384 = 4
    SHA512 = 5


class PrivProtocol(IntEnum):  # Zabbix's `privprotocol`; AES192/256 as Net-SNMP, the C ones as Cisco
    DES = 0
    AES128 = 1
    AES192 = 2
    AES256 = 3
    AES192C = 4
    AES256C = 5


_AUTH = {
    AuthProtocol.MD5: hl.USM_AUTH_HMAC96_MD5, AuthProtocol.SHA1: hl.USM_AUTH_HMAC96_SHA,
    AuthProtocol.SHA224: hl.USM_AUTH_HMAC128_SHA224, AuthProtocol.SHA256: hl.USM_AUTH_HMAC192_SHA256,
    AuthProtocol.SHA384: hl.USM_AUTH_HMAC256_SHA384, AuthProtocol.SHA512: hl.USM_AUTH_HMAC384_SHA512,
}
_PRIV = {
    PrivProtocol.DES: hl.USM_PRIV_CBC56_DES, PrivProtocol.AES128: hl.USM_PRIV_CFB128_AES,
    PrivProtocol.AES192: hl.USM_PRIV_CFB192_AES_BLUMENTHAL, PrivProtocol.AES256: hl.USM_PRIV_CFB256_AES_BLUMENTHAL,
    PrivProtocol.AES192C: hl.USM_PRIV_CFB192_AES, PrivProtocol.AES256C: hl.USM_PRIV_CFB256_AES,
}
# The words Zabbix's YAML export and common usage write for the codes above.
_LEVEL_WORDS = {"noauthnopriv": 0, "authnopriv": 1, "authpriv": 2}
_AUTH_WORDS = {"md5": 0, "sha": 1, "sha1": 1, "sha224": 2, "sha256": 3, "sha384": 4, "sha512": 5}
_PRIV_WORDS = {"des": 0, "aes": 1, "aes128": 1, "aes192": 2, "aes256": 3, "aes192c": 4, "aes256c": 5}
_VERSION_WORDS = {"1": 1, "snmpv1": 1, "v1": 1, "2": 2, "2c": 2, "v2c": 2, "snmpv2": 2, "snmpv2c": 2,
                  "3": 3, "v3": 3, "snmpv3": 3}


def _code(details: Mapping[str, Any], name: str, words: Mapping[str, int], default: int, top: int) -> int:
    raw = details.get(name, default)
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool):
        raise SnmpConfigError(f"SNMP interface field {name!r}: expected one of {sorted(words)}, got {raw!r}")
    if isinstance(raw, int):
        value = raw
    else:
        text = str(raw).strip().lower().replace("-", "").replace("_", "")
        if text.isdigit():
            value = int(text)
        elif text in words:
            value = words[text]
        else:
            raise SnmpConfigError(f"SNMP interface field {name!r}: expected one of {sorted(words)} "
                                  f"or a number 0-{top}, got {raw!r}")
    if not 0 <= value <= top:
        raise SnmpConfigError(f"SNMP interface field {name!r}: {value} is out of range 0-{top}")
    return value


def _text(details: Mapping[str, Any], name: str, default: str = "") -> str:
    raw = details.get(name, default)
    if raw is None:
        return default
    if not isinstance(raw, str | int):
        raise SnmpConfigError(f"SNMP interface field {name!r}: expected text, got {type(raw).__name__}")
    return str(raw)


@dataclass(frozen=True)
class SnmpTarget:
    """How to reach one SNMP agent: an SNMP interface's address and port plus its details."""

    address: str
    port: int = 161
    version: int = 2  # 1, 2 (v2c) or 3
    community: str = "public"
    securityname: str = ""
    securitylevel: SecurityLevel = SecurityLevel.NO_AUTH_NO_PRIV
    authprotocol: AuthProtocol = AuthProtocol.MD5
    authpassphrase: str = field(default="", repr=False)
    privprotocol: PrivProtocol = PrivProtocol.DES
    privpassphrase: str = field(default="", repr=False)
    contextname: str = ""
    max_repetitions: int = 10
    bulk: bool = True
    timeout: float = 3.0
    retries: int = 1

    def __post_init__(self) -> None:
        if self.version not in (1, 2, 3):
            raise SnmpConfigError(f"SNMP interface field 'version': expected 1, 2 or 3, got {self.version!r}")
        if not 0 < self.port < 65536:
            raise SnmpConfigError(f"SNMP interface field 'port': {self.port} is not a UDP port (1-65535)")
        if not 1 <= self.max_repetitions <= 1000:
            raise SnmpConfigError(f"SNMP interface field 'max_repetitions': {self.max_repetitions} is out of "
                                  "range 1-1000")
        if not 0 < self.timeout <= 60 or not 0 <= self.retries <= 10:
            raise SnmpConfigError("SNMP timeout must be in (0, 60] s and retries in 0-10")
        if self.version == 3:
            if not self.securityname:
                raise SnmpConfigError("SNMP interface field 'securityname' is required for SNMPv3")
            if self.securitylevel >= SecurityLevel.AUTH_NO_PRIV and len(self.authpassphrase) < 8:
                raise SnmpConfigError("SNMP interface field 'authpassphrase': at least 8 characters are needed "
                                      "for authNoPriv and authPriv")
            if self.securitylevel == SecurityLevel.AUTH_PRIV and len(self.privpassphrase) < 8:
                raise SnmpConfigError("SNMP interface field 'privpassphrase': at least 8 characters are needed "
                                      "for authPriv")

    @classmethod
    def from_interface(cls, address: str, port: int | str, details: Mapping[str, Any] | str,
                       timeout: float = 3.0, retries: int = 1) -> SnmpTarget:
        """From an interface row: `details` is the JSON (or dict) Zabbix keeps for SNMP interfaces
        (version, bulk, community, max_repetitions, securityname, securitylevel, authprotocol,
        authpassphrase, privprotocol, privpassphrase, contextname); codes or their names."""
        if isinstance(details, str):
            try:
                details = json.loads(details or "{}")
            except ValueError as e:
                raise SnmpConfigError(f"SNMP interface details are not JSON: {e}") from None
        if not isinstance(details, Mapping):
            raise SnmpConfigError("SNMP interface details must be an object of fields")
        try:
            port_no = int(port)
        except (TypeError, ValueError):
            raise SnmpConfigError(f"SNMP interface field 'port': {port!r} is not a number") from None
        version = _code(details, "version", _VERSION_WORDS, 2, 3)
        if version == 0:
            raise SnmpConfigError("SNMP interface field 'version': expected 1, 2 or 3, got 0")
        try:
            raw_rep = details.get("max_repetitions", "")
            max_rep = 10 if raw_rep in ("", None) else int(raw_rep)
        except (TypeError, ValueError):
            raise SnmpConfigError(f"SNMP interface field 'max_repetitions': {details.get('max_repetitions')!r} "
                                  "is not a number") from None
        return cls(
            address=address, port=port_no, version=version,
            community=_text(details, "community", "public"),
            securityname=_text(details, "securityname"),
            securitylevel=SecurityLevel(_code(details, "securitylevel", _LEVEL_WORDS, 0, 2)),
            authprotocol=AuthProtocol(_code(details, "authprotocol", _AUTH_WORDS, 0, 5)),
            authpassphrase=_text(details, "authpassphrase"),
            privprotocol=PrivProtocol(_code(details, "privprotocol", _PRIV_WORDS, 0, 5)),
            privpassphrase=_text(details, "privpassphrase"),
            contextname=_text(details, "contextname"),
            max_repetitions=max_rep,
            bulk=_code(details, "bulk", {"no": 0, "yes": 1, "false": 0, "true": 1}, 1, 1) == 1,
            timeout=timeout, retries=retries,
        )

    @property
    def endpoint(self) -> str:
        """address:port as Zabbix writes it in errors ([v6]:port for IPv6)."""
        if ":" in self.address and not self.address.startswith("["):
            return f"[{self.address}]:{self.port}"
        return f"{self.address}:{self.port}"

    def auth_data(self) -> hl.CommunityData | hl.UsmUserData:
        if self.version in (1, 2):
            return hl.CommunityData(self.community, mpModel=0 if self.version == 1 else 1)
        if self.securitylevel == SecurityLevel.NO_AUTH_NO_PRIV:
            return hl.UsmUserData(self.securityname)
        if self.securitylevel == SecurityLevel.AUTH_NO_PRIV:
            return hl.UsmUserData(self.securityname, authKey=self.authpassphrase,
                                  authProtocol=_AUTH[self.authprotocol])
        return hl.UsmUserData(self.securityname, authKey=self.authpassphrase, privKey=self.privpassphrase,
                              authProtocol=_AUTH[self.authprotocol], privProtocol=_PRIV[self.privprotocol])

    def v3_credentials(self) -> tuple[str, tuple[Any, ...]] | None:
        """(user name, its keys) for v3: what must not clash inside one pysnmp engine."""
        if self.version != 3:
            return None
        return self.securityname, (self.securitylevel, self.authprotocol, self.authpassphrase,
                                   self.privprotocol, self.privpassphrase)


@dataclass(frozen=True, slots=True)
class PollResult:
    """An SNMP item's value and where it came from: Net-SNMP's type label for a GET ("Counter32",
    "Counter64", "STRING"...), "walk" or "discovery" for the text of those."""

    value: int | str
    snmp_type: str

    @property
    def counter_bits(self) -> int | None:
        """32 or 64 when the value is a counter: where "change per second" must wrap."""
        return COUNTER_BITS.get(self.snmp_type)


class SnmpEngines:
    """What the SNMP sessions of one event loop share: one UDP socket for v1/v2c (Vigil's own codec,
    snmp_ber), and the pysnmp engines for v3: one shared by all, plus one more for each v3 user name
    that devices use with different keys (pysnmp's engine keeps one key set per user name)."""

    def __init__(self) -> None:
        self._engines: list[tuple[hl.SnmpEngine, dict[str, tuple[Any, ...]]]] = []
        self._community: dict[int, CommunityTransport] = {}

    def community(self, family: int = socket.AF_INET) -> CommunityTransport:
        """The shared v1/v2c socket of an address family (IPv4 or IPv6)."""
        if family not in self._community:
            self._community[family] = CommunityTransport(family)
        return self._community[family]

    def engine_for(self, target: SnmpTarget) -> hl.SnmpEngine:
        creds = target.v3_credentials()
        for engine, users in self._engines:
            if creds is None:
                return engine
            name, keys = creds
            if users.get(name, keys) == keys:
                users[name] = keys
                return engine
        engine = hl.SnmpEngine()
        users: dict[str, tuple[Any, ...]] = {}
        if creds is not None:
            users[creds[0]] = creds[1]
        self._engines.append((engine, users))
        return engine

    def __len__(self) -> int:
        """How many pysnmp engines there are."""
        return len(self._engines)

    def close(self) -> None:
        for engine, _ in self._engines:
            engine.close_dispatcher()
        self._engines.clear()
        for transport in self._community.values():
            transport.close()
        self._community.clear()


_TIMEOUT_TYPES = (errind.RequestTimedOut,)
_KIND_PDU = {"get": ber.GET, "next": ber.GETNEXT, "bulk": ber.GETBULK}


def _to_value(oid: str, value: Any) -> SnmpValue:
    if type(value) is tuple:  # (tag, content) from Vigil's codec
        return ber.value_of(oid, value[0], value[1])
    return convert(oid, value)


def _is_end(value: Any) -> bool:
    if type(value) is tuple:
        return bool(value[0] == ber.END_OF_MIB)
    return type(value).__name__ == "EndOfMibView"


class SnmpSession:
    """One SNMP device, shared by its items. Use from one event loop.

    v1 and v2c go through Vigil's own BER codec on the shared socket (`fast`, the default; about
    five times pysnmp's rate); pass fast=False to send them through pysnmp's hlapi like v3.
    """

    def __init__(self, target: SnmpTarget, engines: SnmpEngines | None = None,
                 max_in_flight: int = DEFAULT_MAX_IN_FLIGHT, fast: bool = True) -> None:
        if not 1 <= max_in_flight <= 64:
            raise ValueError(f"max_in_flight must be 1-64, got {max_in_flight}")
        self.target = target
        self._own_engines = engines is None
        self._engines = engines if engines is not None else SnmpEngines()
        self.fast = fast and target.version in (1, 2)
        self._engine: Any = None if self.fast else self._engines.engine_for(target)
        self._auth = None if self.fast else target.auth_data()
        self._context = hl.ContextData(contextName=target.contextname) if target.contextname else hl.ContextData()
        self._transport: hl.UdpTransportTarget | None = None
        self._address: tuple[str, int] | None = None
        self._family = socket.AF_INET
        self._transport_lock = asyncio.Lock()
        self._sem = asyncio.Semaphore(max_in_flight)
        self.max_in_flight = max_in_flight
        self.in_flight = 0
        self.peak_in_flight = 0  # the most requests this session had outstanding at once
        self.requests = 0
        self._indexes: dict[tuple[str, str], str] = {}  # dynamic index lookups: (index OID, value) -> index
        # GETBULK size: the interface's max_repetitions, halved whenever the agent answers tooBig.
        self.max_repetitions = target.max_repetitions

    async def _target(self) -> hl.UdpTransportTarget:
        if self._transport is None:
            async with self._transport_lock:
                if self._transport is None:
                    t = self.target
                    try:
                        kind = hl.Udp6TransportTarget if ":" in t.address else hl.UdpTransportTarget
                        self._transport = await kind.create(
                            (t.address.strip("[]"), t.port), timeout=t.timeout, retries=t.retries)
                    except Exception as e:  # unresolvable name and the like
                        raise SnmpNetworkError(f'Cannot connect to "{t.endpoint}": {e}.') from None
        return self._transport

    async def _resolved(self) -> tuple[str, int]:
        if self._address is None:
            t = self.target
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(t.address.strip("[]"), t.port,
                                                                     type=socket.SOCK_DGRAM)
            except OSError as e:
                raise SnmpNetworkError(f'Cannot connect to "{t.endpoint}": {e}.') from None
            infos.sort(key=lambda i: i[0] != socket.AF_INET)  # IPv4 first for a name with both
            self._family = infos[0][0]
            self._address = (str(infos[0][4][0]), t.port)
        return self._address

    async def _request(self, kind: str, oids: Sequence[str]) -> list[tuple[str, Any]]:
        """One PDU exchange under the in-flight bound: (OID text, value) per varbind of the reply."""
        async with self._sem:
            self.in_flight += 1
            self.requests += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
            try:
                if self.fast:
                    return await self._fast_request(kind, oids)
                return await self._pysnmp_request(kind, oids)
            finally:
                self.in_flight -= 1

    async def _fast_request(self, kind: str, oids: Sequence[str]) -> list[tuple[str, Any]]:
        t = self.target
        address = await self._resolved()
        encoded = [ber.encode_oid(o) for o in oids]
        version = 0 if t.version == 1 else 1
        pdu = _KIND_PDU[kind]

        def encode(rid: int) -> bytes:
            return ber.encode_request(version, t.community, pdu, rid, encoded, 0, self.max_repetitions)
        try:
            resp = await self._engines.community(self._family).request(address, encode, t.timeout, t.retries)
        except RequestTimeout:
            raise SnmpTimeout(f'Timeout while connecting to "{t.endpoint}".') from None
        except OSError as e:
            raise SnmpNetworkError(f'Cannot connect to "{t.endpoint}": {e}.') from None
        if resp.error_status:
            raise _StatusError(resp.error_name, resp.error_index)
        try:
            return [(ber.decode_oid(o), (tag, raw)) for o, tag, raw in resp.varbinds]
        except ber.BerError as e:
            raise NotSupported(f"SNMP reply from {t.endpoint} cannot be decoded: {e}") from None

    async def _pysnmp_request(self, kind: str, oids: Sequence[str]) -> list[tuple[str, Any]]:
        transport = await self._target()
        vbs = [hl.ObjectType(hl.ObjectIdentity(o)) for o in oids]
        if kind == "get":
            res = await hl.get_cmd(self._engine, self._auth, transport, self._context, *vbs, lookupMib=False)
        elif kind == "next":
            res = await hl.next_cmd(self._engine, self._auth, transport, self._context, *vbs, lookupMib=False)
        else:
            res = await hl.bulk_cmd(self._engine, self._auth, transport, self._context, 0,
                                    self.max_repetitions, *vbs, lookupMib=False)
        ei, es, ix, out = res
        if ei:
            if isinstance(ei, _TIMEOUT_TYPES):
                raise SnmpTimeout(f'Timeout while connecting to "{self.target.endpoint}".')
            raise SnmpNetworkError(f'Cannot connect to "{self.target.endpoint}": {ei}.')
        if es:
            raise _StatusError(str(es.prettyPrint() if hasattr(es, "prettyPrint") else es), int(ix or 0))
        return [(".".join(map(str, o.asTuple())), v) for o, v in out]

    async def get(self, oids: Sequence[str]) -> list[SnmpValue | NotSupported]:
        """GET each OID (numeric or a known name): per OID an SnmpValue or a NotSupported.

        Raises SnmpTimeout / SnmpNetworkError when the device does not answer.
        """
        results: list[SnmpValue | NotSupported | None] = [None] * len(oids)
        pending: list[tuple[int, str]] = []
        for i, text in enumerate(oids):
            try:
                pending.append((i, numeric_oid(text)))
            except NotSupported as e:
                results[i] = e
        chunks = [pending[i:i + MAX_GET_OIDS_PER_REQUEST] for i in range(0, len(pending), MAX_GET_OIDS_PER_REQUEST)]
        for chunk in chunks:
            await self._get_chunk(chunk, results)
        return [r if r is not None else NotSupported(NO_SUCH_OBJECT) for r in results]

    async def _get_chunk(self, chunk: list[tuple[int, str]], results: list[Any]) -> None:
        while chunk:
            try:
                reply = await self._request("get", [o for _, o in chunk])
            except _StatusError as e:
                # SNMPv1 answers a GET with one bad OID by an error for the whole PDU: as Zabbix does,
                # that OID becomes not supported and the others are asked again.
                if e.status == "tooBig" and len(chunk) > 1:
                    half = len(chunk) // 2
                    await self._get_chunk(chunk[:half], results)
                    await self._get_chunk(chunk[half:], results)
                    return
                bad = e.index - 1 if 0 < e.index <= len(chunk) else 0
                results[chunk[bad][0]] = NotSupported(f"SNMP error: {e.status}")
                if not 0 < e.index <= len(chunk):
                    for i, _ in chunk[1:]:
                        results[i] = NotSupported(f"SNMP error: {e.status}")
                    return
                chunk = chunk[:bad] + chunk[bad + 1:]
                continue
            for (i, oid), (_, value) in zip(chunk, reply, strict=False):
                try:
                    results[i] = _to_value(oid, value)
                except NotSupported as e:
                    results[i] = e
            return

    async def get_one(self, oid: str) -> SnmpValue:
        """GET one OID; raises NotSupported (or a device error)."""
        (res,) = await self.get([oid])
        if isinstance(res, NotSupported):
            raise res
        return res

    async def walk(self, oid: str, bulk: bool | None = None) -> list[SnmpValue]:
        """Every varbind under `oid` (numeric or a known name), in order: GETBULK with the target's
        max_repetitions when `bulk` (default: the interface's `bulk`; never on SNMPv1), else GETNEXT.

        As `snmpwalk` does, a subtree with nothing under it is tried as a single GET, so walking a
        leaf gives that leaf. An empty list means the agent has nothing there.
        """
        root = numeric_oid(oid)
        use_bulk = (self.target.bulk if bulk is None else bulk) and self.target.version != 1
        out: list[SnmpValue] = []
        prefix = root + "."
        cur = root
        last: tuple[int, ...] = ()
        while True:
            try:
                reply = await self._request("bulk" if use_bulk else "next", [cur])
            except _StatusError as e:
                if e.status == "noSuchName":  # SNMPv1's end of the MIB
                    break
                if e.status == "tooBig" and use_bulk and self.max_repetitions > 1:
                    self.max_repetitions //= 2  # as Zabbix does: ask for less and go on
                    continue
                raise NotSupported(f"SNMP error: {e.status}") from None
            done = not reply
            for text, value in reply:
                if _is_end(value) or not text.startswith(prefix):
                    done = True
                    break
                arcs = tuple(map(int, text.split(".")))
                if arcs <= last:
                    raise NotSupported(f"SNMP walk of {root}: the agent returned OID {text} out of order "
                                       "(OID not increasing)")
                last = arcs
                out.append(_to_value(text, value))
            if done:
                break
            if len(out) > MAX_WALK_VALUES:
                raise NotSupported(f"SNMP walk of {root} stopped after {MAX_WALK_VALUES} values")
            cur = out[-1].oid
        if not out:
            single = await self.get([root])
            if isinstance(single[0], SnmpValue):
                return [single[0]]
        return out

    async def poll(self, request: SnmpRequest | str) -> PollResult:
        """The value of an item: a GET's value (int or text, with its SNMP type), a walk[]'s
        `snmpwalk -On` lines, or a discovery[]'s LLD JSON. Raises NotSupported for the item,
        SnmpError for the device."""
        if isinstance(request, str):
            request = oid_for_item(request)
        if request.kind == "get":
            v = await self.get_one(request.oids[0])
            return PollResult(v.value, v.type)
        if request.kind == "dynamic":
            v = await self._dynamic(request)
            return PollResult(v.value, v.type)
        walks = {oid: await self.walk(oid) for oid in dict.fromkeys(request.oids)}
        if request.kind == "walk":
            return PollResult(walk_text([v for oid in request.oids for v in walks[oid]]), "walk")
        return PollResult(discovery_json(request, walks), "discovery")

    async def poll_many(self, requests: Sequence[SnmpRequest | str]) -> list[PollResult | NotSupported]:
        """Several items of this device at once, as Zabbix's poller does: all plain GETs go out together
        (up to MAX_GET_OIDS_PER_REQUEST OIDs a PDU), walks and the rest one by one. Per item a
        PollResult or the NotSupported that item gets; a device error (timeout...) raises for all."""
        out: list[PollResult | NotSupported | None] = [None] * len(requests)
        parsed: list[tuple[int, SnmpRequest]] = []
        for i, r in enumerate(requests):
            try:
                parsed.append((i, oid_for_item(r) if isinstance(r, str) else r))
            except NotSupported as e:
                out[i] = e
        gets = [(i, r) for i, r in parsed if r.kind == "get"]
        if gets:
            values = await self.get([r.oids[0] for _, r in gets])
            for (i, _), v in zip(gets, values, strict=True):
                out[i] = v if isinstance(v, NotSupported) else PollResult(v.value, v.type)
        for i, r in parsed:
            if r.kind != "get":
                try:
                    out[i] = await self.poll(r)
                except NotSupported as e:
                    out[i] = e
        return [r if r is not None else NotSupported(NO_SUCH_OBJECT) for r in out]

    async def _dynamic(self, request: SnmpRequest) -> SnmpValue:
        base, index_oid = request.oids
        cache_key = (index_oid, request.match)
        for attempt in range(2):
            index = self._indexes.get(cache_key)
            if index is None:
                for v in await self.walk(index_oid):
                    if str(v.value) == request.match and v.oid.startswith(index_oid + "."):
                        index = v.oid[len(index_oid) + 1:]
                        break
                else:
                    raise NotSupported(f'Cannot find index of "{request.match}" in {index_oid}.')
                if len(self._indexes) >= 10_000:
                    self._indexes.clear()
                self._indexes[cache_key] = index
            try:
                return await self.get_one(f"{base}.{index}")
            except NotSupported:
                del self._indexes[cache_key]  # the table may have changed: look the index up again
                if attempt:
                    raise
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self._own_engines:
            self._engines.close()


class _StatusError(Exception):
    """An SNMP error-status in a reply (noSuchName, tooBig, genErr...), with its 1-based index."""

    def __init__(self, status: str, index: int) -> None:
        super().__init__(status)
        self.status = status
        self.index = index


__all__ += ["END_OF_MIB_VIEW", "NO_SUCH_INSTANCE", "NO_SUCH_OBJECT", "is_under"]
