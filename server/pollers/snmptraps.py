"""SNMP trap receiver (v1, v2c, v3 users) on a UDP port, and the matching of traps to items.

    receiver = TrapReceiver(on_trap, host="0.0.0.0", port=162, communities=["public"],
                            users=[TrapUser("mon", engine_id="8000000001020304", ...)])
    await receiver.start()              # binds now: a port in use raises OSError
    ...                                 # on_trap(Trap) is called for each trap accepted
    receiver.close()

    itemids = match_trap(trap.text, [(itemid, key), ...])   # the items of the host whose SNMP
                                                            # interface address is trap.address
    itemids = items_for_trap(trap, {"10.0.0.1": [(itemid, key), ...], ...})   # the same, by address

v2c informs are acknowledged to the sender and given to on_trap like traps (`Trap.inform`).

pysnmp's notification receiver does the decoding and, for v3, the authentication and decryption; the
socket is ours so that datagrams are bounded (`max_datagram`) and anything malformed, of an unknown
community, or failing v3 authentication is logged and dropped without stopping the receiver. As
snmptrapd does, a v3 user is configured under the engine ID of the device that sends (`snmptrap -e`).

A trap's text follows the record Zabbix's zabbix_trap_receiver.pl writes for the server:
`<timestamp> <source address>`, then `PDU INFO:` and `VARBINDS:` lines, one per varbind as
`  <OID>  type=<ASN.1 tag> value=<snmpwalk-style value>`. That text is the value of the matched items.
"""

from __future__ import annotations

import logging
import re
import socket
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vigil.agent.protocol.itemkey import ItemKeyError, parse
from vigil.server.pollers.snmp import _AUTH, _PRIV, AuthProtocol, PrivProtocol, SecurityLevel, SnmpConfigError
from vigil.server.pollers.snmp_values import NotSupported, SnmpValue, convert

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from pysnmp.carrier.asyncio.dgram import udp
    from pysnmp.entity import config, engine
    from pysnmp.entity.rfc3413 import ntfrcv
    from pysnmp.proto import api
    from pysnmp.proto.api import v2c

log = logging.getLogger("vigil.server.pollers.snmptraps")

DEFAULT_MAX_DATAGRAM = 16384  # bytes; larger datagrams are dropped unread
MAX_VARBINDS = 512
TIMESTAMP_FORMAT = "%H:%M:%S %Y/%m/%d"  # zabbix_trap_receiver.pl's default, in UTC

# ASN.1 tags as zabbix_trap_receiver.pl prints them in `type=`.
_TAGS = {"INTEGER": 2, "STRING": 4, "Hex-STRING": 4, "NULL": 5, "OID": 6, "IpAddress": 64, "Counter32": 65,
         "Gauge32": 66, "Timeticks": 67, "Opaque": 68, "Counter64": 70}


@dataclass(frozen=True)
class TrapUser:
    """An SNMPv3 user traps may come from, as in snmptrapd's `createUser -e ENGINEID ...`."""

    securityname: str
    engine_id: str  # hex, the sender's snmpEngineID (with or without 0x)
    securitylevel: SecurityLevel = SecurityLevel.AUTH_PRIV
    authprotocol: AuthProtocol = AuthProtocol.SHA1
    authpassphrase: str = field(default="", repr=False)
    privprotocol: PrivProtocol = PrivProtocol.AES128
    privpassphrase: str = field(default="", repr=False)

    def engine_id_bytes(self) -> bytes:
        text = self.engine_id[2:] if self.engine_id.lower().startswith("0x") else self.engine_id
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            raise SnmpConfigError(f"trap user {self.securityname!r}: engine_id {self.engine_id!r} is not hex") from None
        if not 5 <= len(raw) <= 32:
            raise SnmpConfigError(f"trap user {self.securityname!r}: engine_id must be 5-32 bytes, got {len(raw)}")
        return raw


@dataclass(frozen=True)
class Trap:
    """One trap received: where from, how, and its varbinds (v1 traps as their SNMPv2 form)."""

    address: str
    port: int
    clock: float
    version: str  # "1", "2c" or "3"
    security_name: str  # the community, or the v3 user
    varbinds: tuple[SnmpValue, ...]
    local: str = ""  # "[ip]:port" it arrived on
    inform: bool = False  # an InformRequest (acknowledged to the sender), not a trap

    @property
    def trap_oid(self) -> str:
        """snmpTrapOID.0 (for v1 traps: as RFC 2576 translates enterprise and trap numbers)."""
        for v in self.varbinds:
            if v.oid == "1.3.6.1.6.3.1.1.4.1.0":
                return str(v.value)
        return ""

    @property
    def body(self) -> str:
        """The record without its first line: what `snmptrap[regexp]` is matched against."""
        lines = ["PDU INFO:",
                 f"  {'notificationtype':<30} {'INFORM' if self.inform else 'TRAP'}",
                 f"  {'version':<30} {self.version}",
                 f"  {'receivedfrom':<30} UDP: [{self.address}]:{self.port}->{self.local}"]
        lines.append(f"  {'community' if self.version != '3' else 'securityname':<30} {self.security_name}")
        lines.append("VARBINDS:")
        for v in self.varbinds:
            lines.append(f"  .{v.oid:<29} type={_TAGS.get(v.type, 4):<2} value={v.type_text().rstrip()}")
        return "\n".join(lines)

    @property
    def text(self) -> str:
        stamp = time.strftime(TIMESTAMP_FORMAT, time.gmtime(self.clock))
        return f"{stamp} {self.address}\n{self.body}"


def items_for_trap(trap: Trap, items_by_address: Mapping[str, Iterable[tuple[int, str]]]) -> list[int]:
    """The items a received trap goes to: those of the host(s) whose SNMP interface has the trap's
    source address (`items_by_address`: interface IP -> that host's (itemid, key) pairs), matched by
    `match_trap`. A trap from an address no interface has is logged as unmatched, as Zabbix does."""
    items = items_by_address.get(trap.address)
    if items is None:
        log.info("unmatched SNMP trap received from %s: no SNMP interface has that address", trap.address)
        return []
    return match_trap(trap.text, items)


def match_trap(text: str, items: Iterable[tuple[int, str]]) -> list[int]:
    """The items a trap's text goes to, as Zabbix decides: every `snmptrap[regexp]` item whose regular
    expression matches the trap (the text after its first line; no regexp matches all), and only if
    none does, the `snmptrap.fallback` items. Keys that do not parse, `@global` regexps (not supported
    here) and invalid expressions match nothing."""
    body = text.split("\n", 1)[1] if "\n" in text else text
    matched: list[int] = []
    fallback: list[int] = []
    for itemid, key in items:
        try:
            k = parse(key)
        except ItemKeyError:
            continue
        if k.name == "snmptrap.fallback" and not k.params:
            fallback.append(itemid)
        elif k.name == "snmptrap" and len(k.params) <= 1:
            try:
                pattern = k.param(0)
            except ItemKeyError:
                continue
            if pattern.startswith("@"):
                continue
            try:
                if re.search(pattern, body, re.MULTILINE) if pattern else True:
                    matched.append(itemid)
            except re.error:
                continue
    return matched or fallback


class _BoundedUdp(udp.UdpAsyncioTransport):
    """pysnmp's UDP transport with a size bound and every datagram handled apart from the others."""

    receiver: TrapReceiver

    def datagram_received(self, datagram: bytes, transportAddress: Any) -> None:  # noqa: N803
        self.receiver._datagram(self, datagram, transportAddress)


class TrapReceiver:
    """Receives traps on one UDP port and hands each accepted one to `on_trap` (a plain callable,
    called on the event loop: keep it short, queue the work)."""

    def __init__(self, on_trap: Callable[[Trap], None], host: str = "0.0.0.0", port: int = 162,
                 communities: Sequence[str] = ("public",), users: Sequence[TrapUser] = (),
                 max_datagram: int = DEFAULT_MAX_DATAGRAM) -> None:
        if not 484 <= max_datagram <= 65535:
            raise SnmpConfigError(f"max_datagram must be 484-65535 bytes, got {max_datagram}")
        self.on_trap = on_trap
        self.host, self._port = host, port
        self.communities = tuple(communities)
        self.users = tuple(users)
        self.max_datagram = max_datagram
        self.received = 0
        self.accepted = 0
        self.dropped = 0  # too big, malformed, unknown community or user, failed authentication
        self._engine: Any = None
        self._transport: _BoundedUdp | None = None
        self._delivered = False
        self._current: tuple[Any, int] = (("", 0), 0)
        self._communities_by_index: dict[str, str] = {}
        for u in self.users:
            u.engine_id_bytes()  # checked now, not at the first trap

    @property
    def port(self) -> int:
        """The bound port (useful when started with port 0)."""
        return self._port

    async def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind((self.host, self._port))
        except OSError as e:
            sock.close()
            raise OSError(e.errno, f"cannot listen for SNMP traps on udp {self.host}:{self._port}: {e.strerror}") from e
        sock.setblocking(False)
        self._port = sock.getsockname()[1]
        eng = engine.SnmpEngine()
        transport = _BoundedUdp()
        transport.receiver = self
        config.add_transport(eng, udp.DOMAIN_NAME, transport.open_server_mode(sock=sock))
        if transport._lport is not None:
            await transport._lport  # the endpoint exists (and owns the socket) before start() returns
        for i, community in enumerate(self.communities):
            index = f"trap-community-{i}"
            config.add_v1_system(eng, index, community)
            self._communities_by_index[index] = community
        for u in self.users:
            auth = _AUTH[u.authprotocol] if u.securitylevel >= SecurityLevel.AUTH_NO_PRIV else config.USM_AUTH_NONE
            priv = _PRIV[u.privprotocol] if u.securitylevel == SecurityLevel.AUTH_PRIV else config.USM_PRIV_NONE
            config.add_v3_user(eng, u.securityname, auth, u.authpassphrase or None, priv, u.privpassphrase or None,
                               securityEngineId=v2c.OctetString(u.engine_id_bytes()))
        ntfrcv.NotificationReceiver(eng, self._notification)
        self._engine = eng
        self._transport = transport
        log.info("SNMP trap receiver listening on udp %s:%d (%d communities, %d v3 users)", self.host, self._port,
                 len(self.communities), len(self.users))

    def _datagram(self, transport: _BoundedUdp, datagram: bytes, address: Any) -> None:
        self.received += 1
        peer = f"{address[0]}:{address[1]}"
        if len(datagram) > self.max_datagram:
            self.dropped += 1
            log.warning("SNMP trap from %s dropped: %d bytes is over the %d-byte bound", peer, len(datagram),
                        self.max_datagram)
            return
        try:
            version = int(api.decodeMessageVersion(datagram))
        except Exception as e:  # noqa: BLE001 - anything that is not an SNMP message
            self.dropped += 1
            log.warning("SNMP trap from %s dropped: not an SNMP message (%s)", peer, str(e).splitlines()[0][:200])
            return
        self._delivered = False
        self._current = (address, version)
        try:
            cb = transport._callback_function
            if cb is not None:
                cb(transport, address, datagram)
        except Exception as e:  # noqa: BLE001 - one bad datagram must not stop the receiver
            log.warning("SNMP trap from %s dropped: %s", peer, str(e).splitlines()[0][:200] if str(e) else type(e))
        if not self._delivered:
            self.dropped += 1
            what = {0: "v1", 1: "v2c"}.get(version, "v3")
            reason = ("unknown community" if version in (0, 1) else "unknown user, engine ID or failed authentication")
            log.warning("SNMP %s trap from %s dropped: %s, or a PDU that is not a trap", what, peer, reason)

    def _notification(self, snmp_engine: Any, state_reference: Any, context_engine_id: Any, context_name: Any,
                      var_binds: Any, cb_ctx: Any) -> None:
        ctx = snmp_engine.observer.get_execution_context("rfc3412.receiveMessage:request")
        address = ctx.get("transportAddress") or self._current[0]
        model = int(ctx.get("securityModel", 0))
        sec_name = str(ctx.get("securityName", ""))
        version = {1: "1", 2: "2c"}.get(model, "3")
        if version != "3":
            sec_name = self._communities_by_index.get(sec_name, sec_name)
        pdu = ctx.get("pdu")
        inform = pdu is not None and pdu.tagSet == v2c.InformRequestPDU.tagSet
        values = []
        for oid, value in list(var_binds)[:MAX_VARBINDS]:
            text = ".".join(str(n) for n in oid.asTuple())
            try:
                values.append(convert(text, value))
            except NotSupported as e:
                values.append(SnmpValue(text, "STRING", str(e)))
        local = f"[{self.host}]:{self._port}"
        trap = Trap(address=str(address[0]), port=int(address[1]), clock=time.time(), version=version,
                    security_name=sec_name, varbinds=tuple(values), local=local, inform=inform)
        self._delivered = True
        self.accepted += 1
        try:
            self.on_trap(trap)
        except Exception:
            log.exception("SNMP trap handler failed for a trap from %s", trap.address)

    def close(self) -> None:
        """Stop receiving; the port is free once the event loop has run once more."""
        if self._transport is not None:
            self._transport.close_transport()
            self._transport = None
        if self._engine is not None:
            self._engine.close_dispatcher()
            self._engine = None
