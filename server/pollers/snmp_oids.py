"""What an SNMP item asks for: its `snmp_oid` field parsed into a get, a walk or a discovery. No I/O.

The field takes what Zabbix 6 takes:
- a single OID, numeric (`1.3.6.1.2.1.1.5.0`, a leading dot allowed) or a name from the small table
  below with its index (`sysName.0`, `IF-MIB::ifHCInOctets.2`): one GET;
- `get[OID]` (Zabbix 6.4): the same;
- `walk[OID1,OID2,...]` (Zabbix 6.4): walks of each subtree, the value is their `snmpwalk -On` lines;
- `discovery[{#MACRO1},OID1,{#MACRO2},OID2,...]` (Zabbix 6.0's SNMP low-level discovery): walks,
  the value is the LLD JSON with `{#SNMPINDEX}` and the macros per index;
- a dynamic index (Zabbix 6.0): `ifInOctets["index","ifDescr","eth0"]` is the GET of ifInOctets at
  the index whose ifDescr is "eth0" (found by a walk of ifDescr, remembered until it stops working).

Vigil ships no MIB compiler: other names must be written as numeric OIDs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from vigil.agent.protocol.itemkey import ItemKeyError, parse
from vigil.server.pollers.snmp_values import NotSupported, SnmpValue

MAX_ARC = 2**32 - 1
MAX_OIDS_PER_ITEM = 128

_SYSTEM = "1.3.6.1.2.1.1"
_IF = "1.3.6.1.2.1.2.2.1"
_IFX = "1.3.6.1.2.1.31.1.1.1"
_HRSTORAGE = "1.3.6.1.2.1.25.2.3.1"

# Names common in templates, without a MIB compiler: name -> numeric OID (object, not instance).
NAMES: dict[str, str] = {
    "sysDescr": f"{_SYSTEM}.1", "sysObjectID": f"{_SYSTEM}.2", "sysUpTime": f"{_SYSTEM}.3",
    "sysContact": f"{_SYSTEM}.4", "sysName": f"{_SYSTEM}.5", "sysLocation": f"{_SYSTEM}.6",
    "sysServices": f"{_SYSTEM}.7",
    "ifNumber": "1.3.6.1.2.1.2.1", "ifTable": "1.3.6.1.2.1.2.2", "ifEntry": _IF,
    "ifXTable": "1.3.6.1.2.1.31.1.1", "ifXEntry": _IFX,
    "hrSystemUptime": "1.3.6.1.2.1.25.1.1", "hrStorageTable": "1.3.6.1.2.1.25.2.3",
    "hrProcessorLoad": "1.3.6.1.2.1.25.3.3.1.2",
    "snmpTrapOID": "1.3.6.1.6.3.1.1.4.1", "snmpTrapEnterprise": "1.3.6.1.6.3.1.1.4.3",
}
_IF_COLUMNS = ("ifIndex ifDescr ifType ifMtu ifSpeed ifPhysAddress ifAdminStatus ifOperStatus ifLastChange "
               "ifInOctets ifInUcastPkts ifInNUcastPkts ifInDiscards ifInErrors ifInUnknownProtos ifOutOctets "
               "ifOutUcastPkts ifOutNUcastPkts ifOutDiscards ifOutErrors ifOutQLen").split()
_IFX_COLUMNS = ("ifName ifInMulticastPkts ifInBroadcastPkts ifOutMulticastPkts ifOutBroadcastPkts ifHCInOctets "
                "ifHCInUcastPkts ifHCInMulticastPkts ifHCInBroadcastPkts ifHCOutOctets ifHCOutUcastPkts "
                "ifHCOutMulticastPkts ifHCOutBroadcastPkts ifLinkUpDownTrapEnable ifHighSpeed ifPromiscuousMode "
                "ifConnectorPresent ifAlias ifCounterDiscontinuityTime").split()
_HRSTORAGE_COLUMNS = ("hrStorageIndex hrStorageType hrStorageDescr hrStorageAllocationUnits hrStorageSize "
                      "hrStorageUsed hrStorageAllocationFailures").split()
for _base, _cols in ((_IF, _IF_COLUMNS), (_IFX, _IFX_COLUMNS), (_HRSTORAGE, _HRSTORAGE_COLUMNS)):
    for _i, _name in enumerate(_cols, 1):
        NAMES[_name] = f"{_base}.{_i}"

_NAMED = re.compile(r"^(?:[A-Za-z][A-Za-z0-9-]*::)?([A-Za-z][A-Za-z0-9]*)((?:\.\d+)*)$")
_MACRO = re.compile(r"^\{#[A-Z0-9_.]+\}$")


class OidError(NotSupported):
    """The item's OID text cannot be understood; the message says what to write instead."""


def numeric_oid(text: str) -> str:
    """`text` as a numeric OID without the leading dot; names from NAMES are resolved.

    Raises OidError naming the bad part.
    """
    t = text.strip()
    if not t:
        raise OidError("the OID is empty: give a numeric OID such as 1.3.6.1.2.1.1.5.0")
    if t[0] == "." or t[0].isdigit():
        arcs = t[1:].split(".") if t[0] == "." else t.split(".")
        for pos, arc in enumerate(arcs):
            if not arc.isdigit() or not arc.isascii():
                raise OidError(f"cannot parse OID {text!r}: arc {pos + 1} ({arc!r}) is not a number")
            if int(arc) > MAX_ARC:
                raise OidError(f"cannot parse OID {text!r}: arc {pos + 1} is larger than {MAX_ARC}")
        if len(arcs) < 2 or int(arcs[0]) > 2:
            raise OidError(f"cannot parse OID {text!r}: it needs at least two arcs and must start with 0, 1 or 2")
        return ".".join(str(int(a)) for a in arcs)
    m = _NAMED.match(t)
    if not m or m.group(1) not in NAMES:
        raise OidError(f"cannot resolve OID {text!r}: Vigil knows only a few MIB names (sysName, ifDescr, "
                       f"ifHCInOctets...); write the OID in numeric form such as 1.3.6.1.2.1.1.5.0")
    return NAMES[m.group(1)] + m.group(2)


@dataclass(frozen=True, slots=True)
class SnmpRequest:
    """What one item asks of the device. `oids` are numeric without a leading dot; for a discovery,
    `macros[i]` is the LLD macro filled from the walk of `oids[i]`."""

    kind: Literal["get", "walk", "discovery", "dynamic"]
    oids: tuple[str, ...]  # for "dynamic": (base OID, index OID)
    macros: tuple[str, ...] = ()
    match: str = ""  # for "dynamic": the value the index OID must have


def oid_for_item(snmp_oid: str) -> SnmpRequest:
    """Parse an SNMP item's `snmp_oid` field (see the module docstring). Raises OidError."""
    text = snmp_oid.strip()
    head = text.split("[", 1)[0].strip()
    if head in ("walk", "get", "discovery") and "[" in text:
        try:
            key = parse(text)
        except ItemKeyError as e:
            raise OidError(f"cannot parse {head}[] in the SNMP OID field: {e}") from None
        params = [p for p in key.params]
        if any(isinstance(p, list) for p in params):
            raise OidError(f"{head}[] takes OIDs separated by commas, not arrays")
        texts = [str(p).strip() for p in params]
        if not texts or all(t == "" for t in texts):
            raise OidError(f"{head}[] needs at least one OID, as in {head}[1.3.6.1.2.1.2.2.1.2]")
        if len(texts) > MAX_OIDS_PER_ITEM:
            raise OidError(f"{head}[] takes at most {MAX_OIDS_PER_ITEM} OIDs, got {len(texts)}")
        if head == "get":
            if len(texts) != 1:
                raise OidError(f"get[] takes exactly one OID, got {len(texts)}")
            return SnmpRequest("get", (numeric_oid(texts[0]),))
        if head == "walk":
            return SnmpRequest("walk", tuple(_param_oid(t, i) for i, t in enumerate(texts, 1)))
        if len(texts) % 2:
            raise OidError("discovery[] takes pairs of a macro and an OID: discovery[{#IFDESCR},1.3.6.1.2.1.2.2.1.2]")
        macros, oids = texts[0::2], texts[1::2]
        for i, m in enumerate(macros):
            if not _MACRO.match(m):
                raise OidError(f"discovery[] parameter {2 * i + 1} ({m!r}) must be an LLD macro such as {{#IFDESCR}}")
        if len(set(macros)) != len(macros):
            raise OidError("discovery[] names the same macro twice")
        return SnmpRequest("discovery", tuple(_param_oid(t, 2 * i + 2) for i, t in enumerate(oids)), tuple(macros))
    if text.endswith("]") and "[" in text:
        return _dynamic(text)
    return SnmpRequest("get", (numeric_oid(text),))


def _dynamic(text: str) -> SnmpRequest:
    base, inner = text[:-1].split("[", 1)
    try:
        key = parse("dynamic[" + inner + "]")
    except ItemKeyError as e:
        raise OidError(f"cannot parse the dynamic index in {text!r}: {e}") from None
    params = list(key.params)
    if len(params) != 3 or any(isinstance(p, list) for p in params) or params[0] != "index":
        raise OidError(f'a dynamic index is written OID["index","<index OID>","<value>"], as in '
                       f'ifInOctets["index","ifDescr","eth0"]; got {text!r}')
    return SnmpRequest("dynamic", (numeric_oid(base), _param_oid(str(params[1]), 2)), match=str(params[2]))


def _param_oid(text: str, pos: int) -> str:
    if text == "":
        raise OidError(f"parameter {pos} is empty: give an OID")
    try:
        return numeric_oid(text)
    except OidError as e:
        raise OidError(f"parameter {pos}: {e}") from None


def is_under(oid: str, root: str) -> bool:
    return oid == root or oid.startswith(root + ".")


def discovery_rows(request: SnmpRequest, walks: Mapping[str, Iterable[SnmpValue]]) -> list[dict[str, str]]:
    """Zabbix 6.0's SNMP discovery rows: one per index found under any of the OIDs, with
    `{#SNMPINDEX}` (the OID's suffix under the walked OID) and each macro whose OID has that index."""
    rows: dict[str, dict[str, str]] = {}
    for macro, root in zip(request.macros, request.oids, strict=True):
        for v in walks.get(root, ()):
            if not is_under(v.oid, root) or v.oid == root:
                continue
            index = v.oid[len(root) + 1:]
            row = rows.setdefault(index, {"{#SNMPINDEX}": index})
            row[macro] = str(v.value)
    return list(rows.values())


def discovery_json(request: SnmpRequest, walks: Mapping[str, Iterable[SnmpValue]]) -> str:
    return json.dumps(discovery_rows(request, walks), separators=(",", ":"))
