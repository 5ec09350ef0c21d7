"""SNMP values as Vigil sees them: pysnmp's typed values turned into ints and text, as Zabbix 6 does.

No I/O. `convert(oid, value)` gives an `SnmpValue` with the SNMP type kept (so "change per second"
preprocessing can tell a Counter32 wrap from a Counter64 one) and `line()` gives the text Zabbix 6.4's
`walk[]` items hold, which is Net-SNMP's `snmpwalk -On` line: `.1.3.6.1.2.1.1.5.0 = STRING: "name"`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Zabbix's texts for the three SNMPv2 exceptions a varbind can carry instead of a value.
NO_SUCH_OBJECT = "No Such Object available on this agent at this OID"
NO_SUCH_INSTANCE = "No Such Instance currently exists at this OID"
END_OF_MIB_VIEW = "No more variables left in this MIB View (it is past the end of the MIB tree)"

# Net-SNMP's type labels, as its `snmpwalk` prints them and as Zabbix 6.4's walk text carries them.
INTEGER = "INTEGER"
STRING = "STRING"
HEX_STRING = "Hex-STRING"
OID = "OID"
IP_ADDRESS = "IpAddress"
COUNTER32 = "Counter32"
COUNTER64 = "Counter64"
GAUGE32 = "Gauge32"
TIMETICKS = "Timeticks"
OPAQUE = "Opaque"
NULL = "NULL"

NUMERIC_TYPES = frozenset({INTEGER, COUNTER32, COUNTER64, GAUGE32, TIMETICKS})
# The width a counter wraps at, for "change per second" on counters.
COUNTER_BITS = {COUNTER32: 32, COUNTER64: 64}


class NotSupported(Exception):
    """The agent answered, but not with a value for this OID (NoSuchObject, an SNMP error status, a bad
    OID in the item): the item becomes not supported, the interface stays available."""


@dataclass(frozen=True, slots=True)
class SnmpValue:
    """One varbind: the OID as dotted text without a leading dot, Net-SNMP's type label, and the value
    (int for the numeric types, text otherwise)."""

    oid: str
    type: str
    value: int | str
    raw: bytes | None = None  # the octets of an OCTET STRING or Opaque, as received

    @property
    def counter_bits(self) -> int | None:
        """32 or 64 for a counter, else None: where a "change per second" step must wrap."""
        return COUNTER_BITS.get(self.type)

    def line(self) -> str:
        """This varbind as one line of `snmpwalk -On` output (and of a Zabbix 6.4 `walk[]` value)."""
        return f".{self.oid} = {self.type_text()}"

    def type_text(self) -> str:
        t, v = self.type, self.value
        if t == STRING:
            return f'STRING: "{_escape(str(v))}"'
        if t in (HEX_STRING, OPAQUE):
            return f"{t}: {hex_text(self.raw or b'', walk=True)}"
        if t == OID:
            return f"OID: .{v}"
        if t == TIMETICKS:
            return f"Timeticks: ({v}) {uptime_text(int(v))}"
        if t == NULL:
            return "NULL"
        return f"{t}: {v}"


def _escape(text: str) -> str:
    # Net-SNMP's sprint_realloc_asciistring escapes backslashes and double quotes inside the quotes.
    return text.replace("\\", "\\\\").replace('"', '\\"')


def uptime_text(ticks: int) -> str:
    """Net-SNMP's rendering of TimeTicks (hundredths of a second): `1 day, 2:03:04.05`."""
    centis = ticks % 100
    secs = ticks // 100
    days, secs = divmod(secs, 86400)
    hours, secs = divmod(secs, 3600)
    minutes, secs = divmod(secs, 60)
    clock = f"{hours}:{minutes:02d}:{secs:02d}.{centis:02d}"
    if days == 0:
        return clock
    return f"{days} day{'s' if days != 1 else ''}, {clock}"


def hex_text(raw: bytes, walk: bool = False) -> str:
    """Octets as Net-SNMP prints a Hex-STRING: `00 1A 2B`, upper case. In walk lines Net-SNMP keeps
    a space after every byte and breaks the line after each 16; as an item value Zabbix trims."""
    if not walk:
        return " ".join(f"{b:02X}" for b in raw)
    rows = [raw[i:i + 16] for i in range(0, len(raw), 16)] or [b""]
    return "\n".join("".join(f"{b:02X} " for b in row) for row in rows)


def _printable(raw: bytes) -> bool:
    # As Net-SNMP decides between STRING and Hex-STRING: every byte printable ASCII or white space;
    # one NUL at the very end (C strings sent with their terminator) is allowed.
    body = raw[:-1] if raw.endswith(b"\x00") else raw
    return all(32 <= b < 127 or b in (9, 10, 11, 12, 13) for b in body)


def convert(oid: str, value: Any) -> SnmpValue:
    """A pysnmp value (from a response varbind) as an SnmpValue.

    Raises NotSupported with Zabbix's text for NoSuchObject, NoSuchInstance and EndOfMibView.
    """
    name = type(value).__name__
    if name == "NoSuchObject":
        raise NotSupported(NO_SUCH_OBJECT)
    if name == "NoSuchInstance":
        raise NotSupported(NO_SUCH_INSTANCE)
    if name == "EndOfMibView":
        raise NotSupported(END_OF_MIB_VIEW)
    if name in ("Integer", "Integer32"):
        return SnmpValue(oid, INTEGER, int(value))
    if name in ("Gauge32", "Unsigned32"):
        return SnmpValue(oid, GAUGE32, int(value))
    if name == "Counter32":
        return SnmpValue(oid, COUNTER32, int(value))
    if name == "Counter64":
        return SnmpValue(oid, COUNTER64, int(value))
    if name == "TimeTicks":
        return SnmpValue(oid, TIMETICKS, int(value))
    if name == "IpAddress":
        raw = bytes(value.asOctets())
        return SnmpValue(oid, IP_ADDRESS, ".".join(str(b) for b in raw))
    if name in ("ObjectIdentifier", "ObjectName"):
        return SnmpValue(oid, OID, ".".join(str(n) for n in value.asTuple()))
    if name == "Null":
        return SnmpValue(oid, NULL, "")
    if name == "Opaque":
        raw = bytes(value.asOctets())
        return SnmpValue(oid, OPAQUE, hex_text(raw), raw)
    if hasattr(value, "asOctets"):  # OctetString and its subtypes (DisplayString, Bits, PhysAddress...)
        raw = bytes(value.asOctets())
        if _printable(raw):
            return SnmpValue(oid, STRING, raw.rstrip(b"\x00").decode("ascii"), raw)
        return SnmpValue(oid, HEX_STRING, hex_text(raw), raw)
    raise NotSupported(f"Value of OID {oid} has an unknown SNMP type {name}")


def walk_text(values: list[SnmpValue]) -> str:
    """The value of a Zabbix 6.4 `walk[]` item: one `snmpwalk -On` line per varbind."""
    return "\n".join(v.line() for v in values)
