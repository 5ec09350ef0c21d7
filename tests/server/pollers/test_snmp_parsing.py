"""SNMP without a device: item OID fields, interface details, value conversion and walk text."""

from __future__ import annotations

import json

import pytest
from pysnmp.proto import rfc1902, rfc1905
from vigil.server.pollers.snmp import (
    AuthProtocol,
    PrivProtocol,
    SecurityLevel,
    SnmpConfigError,
    SnmpTarget,
)
from vigil.server.pollers.snmp_oids import OidError, SnmpRequest, discovery_json, numeric_oid, oid_for_item
from vigil.server.pollers.snmp_values import (
    END_OF_MIB_VIEW,
    NO_SUCH_INSTANCE,
    NO_SUCH_OBJECT,
    NotSupported,
    SnmpValue,
    convert,
    uptime_text,
    walk_text,
)


@pytest.mark.parametrize("text, oid", [
    ("1.3.6.1.2.1.1.5.0", "1.3.6.1.2.1.1.5.0"),
    (".1.3.6.1.2.1.1.5.0", "1.3.6.1.2.1.1.5.0"),
    (" 1.3.6.1.2.1.1.5.0 ", "1.3.6.1.2.1.1.5.0"),
    ("sysName.0", "1.3.6.1.2.1.1.5.0"),
    ("SNMPv2-MIB::sysUpTime.0", "1.3.6.1.2.1.1.3.0"),
    ("IF-MIB::ifHCInOctets.2", "1.3.6.1.2.1.31.1.1.1.6.2"),
    ("ifDescr", "1.3.6.1.2.1.2.2.1.2"),
    ("ifInOctets.10", "1.3.6.1.2.1.2.2.1.10.10"),
    ("hrStorageUsed.1", "1.3.6.1.2.1.25.2.3.1.6.1"),
])
def test_numeric_oid(text: str, oid: str) -> None:
    assert numeric_oid(text) == oid


@pytest.mark.parametrize("text, words", [
    ("", "empty"),
    ("1.3.x.1", "arc 3 ('x') is not a number"),
    ("1.3..1", "arc 3"),
    ("7.1", "must start with 0, 1 or 2"),
    ("1", "at least two arcs"),
    ("1.3.6.99999999999", "larger than"),
    ("ciscoMemoryPoolUsed.1", "numeric form"),
    ("IF-MIB::ifFoo.1", "cannot resolve OID 'IF-MIB::ifFoo.1'"),
])
def test_bad_oids_say_what_is_wrong(text: str, words: str) -> None:
    with pytest.raises(OidError, match=None) as e:
        numeric_oid(text)
    assert words in str(e.value)
    assert isinstance(e.value, NotSupported)  # an item with a bad OID becomes not supported


def test_oid_for_item_forms() -> None:
    assert oid_for_item("1.3.6.1.2.1.1.5.0") == SnmpRequest("get", ("1.3.6.1.2.1.1.5.0",))
    assert oid_for_item("get[sysName.0]") == SnmpRequest("get", ("1.3.6.1.2.1.1.5.0",))
    assert oid_for_item('walk[1.3.6.1.2.1.2.2.1.2, "ifHCInOctets"]') == SnmpRequest(
        "walk", ("1.3.6.1.2.1.2.2.1.2", "1.3.6.1.2.1.31.1.1.1.6"))
    assert oid_for_item("discovery[{#IFDESCR},1.3.6.1.2.1.2.2.1.2,{#IFNAME},ifName]") == SnmpRequest(
        "discovery", ("1.3.6.1.2.1.2.2.1.2", "1.3.6.1.2.1.31.1.1.1.1"), ("{#IFDESCR}", "{#IFNAME}"))


def test_dynamic_index_forms() -> None:
    assert oid_for_item('ifInOctets["index","ifDescr","GigabitEthernet0/1"]') == SnmpRequest(
        "dynamic", ("1.3.6.1.2.1.2.2.1.10", "1.3.6.1.2.1.2.2.1.2"), match="GigabitEthernet0/1")
    assert oid_for_item('IF-MIB::ifInOctets["index","1.3.6.1.2.1.31.1.1.1.1","a,b"]').match == "a,b"


@pytest.mark.parametrize("text, words", [
    ('ifInOctets["index","ifDescr"]', 'OID["index","<index OID>","<value>"]'),
    ('ifInOctets["idx","ifDescr","eth0"]', 'OID["index"'),
    ('ifInOctets["index","ifFoo","eth0"]', "parameter 2"),
    ('ifInOctets["index",ifDescr,"eth0]', "cannot parse the dynamic index"),
    ("walk[]", "needs at least one OID"),
    ("walk[1.3.6,,1.3.7]", "parameter 2 is empty"),
    ("walk[1.3.6,foo]", "parameter 2"),
    ("get[1.3.6.1,1.3.6.2]", "exactly one OID"),
    ("walk[1.3.6", "cannot parse walk[]"),
    ("walk[[1.3.6]]", "not arrays"),
    ("discovery[{#A},1.3.6,{#B}]", "pairs of a macro and an OID"),
    ("discovery[IFDESCR,1.3.6]", "must be an LLD macro"),
    ("discovery[{#A},1.3.6,{#A},1.3.7]", "same macro twice"),
    ("walk[" + ",".join(["1.3.6"] * 129) + "]", "at most 128 OIDs"),
])
def test_oid_for_item_errors(text: str, words: str) -> None:
    with pytest.raises(OidError) as e:
        oid_for_item(text)
    assert words in str(e.value)


def test_target_from_zabbix_api_codes() -> None:
    t = SnmpTarget.from_interface("10.0.0.1", "1161", json.dumps({
        "version": "3", "bulk": "0", "securityname": "mon", "securitylevel": "2", "authprotocol": "3",
        "authpassphrase": "authpass1", "privprotocol": "1", "privpassphrase": "privpass1", "contextname": "ctx",
        "max_repetitions": "25"}))
    assert (t.port, t.version, t.bulk, t.securitylevel, t.authprotocol, t.privprotocol, t.max_repetitions) == (
        1161, 3, False, SecurityLevel.AUTH_PRIV, AuthProtocol.SHA256, PrivProtocol.AES128, 25)
    assert t.contextname == "ctx" and "authpass1" not in repr(t)  # secrets stay out of logs


def test_target_from_words_and_defaults() -> None:
    t = SnmpTarget.from_interface("h", 161, {"version": "SNMPV3", "securityname": "mon", "securitylevel": "authPriv",
                                              "authprotocol": "SHA512", "authpassphrase": "12345678",
                                              "privprotocol": "AES256C", "privpassphrase": "abcdefgh"})
    assert (t.securitylevel, t.authprotocol, t.privprotocol) == (2, AuthProtocol.SHA512, PrivProtocol.AES256C)
    d = SnmpTarget.from_interface("h", 161, "")
    assert (d.version, d.community, d.bulk, d.max_repetitions) == (2, "public", True, 10)
    assert SnmpTarget.from_interface("h", 161, {"version": "SNMPv1"}).version == 1


@pytest.mark.parametrize("details, field", [
    ({"version": 4}, "'version'"),
    ({"version": "v5"}, "'version'"),
    ({"securitylevel": "authpriv", "version": 3, "securityname": "x", "authpassphrase": "12345678",
      "privpassphrase": "12345678", "authprotocol": "SHA3"}, "'authprotocol'"),
    ({"version": 3}, "'securityname'"),
    ({"version": 3, "securityname": "u", "securitylevel": 1, "authpassphrase": "short"}, "'authpassphrase'"),
    ({"version": 3, "securityname": "u", "securitylevel": 2, "authpassphrase": "12345678"}, "'privpassphrase'"),
    ({"max_repetitions": "many"}, "'max_repetitions'"),
    ({"max_repetitions": 0}, "'max_repetitions'"),
    ({"privprotocol": 9}, "'privprotocol'"),
    ({"community": ["a"]}, "'community'"),
])
def test_bad_details_name_the_field(details: dict, field: str) -> None:
    with pytest.raises(SnmpConfigError) as e:
        SnmpTarget.from_interface("h", 161, details)
    assert field in str(e.value)


def test_bad_port_and_json() -> None:
    with pytest.raises(SnmpConfigError, match="'port'"):
        SnmpTarget.from_interface("h", "snmp", {})
    with pytest.raises(SnmpConfigError, match="'port'"):
        SnmpTarget.from_interface("h", 70000, {})
    with pytest.raises(SnmpConfigError, match="not JSON"):
        SnmpTarget.from_interface("h", 161, "{version")


def test_convert_numeric_types_keep_their_snmp_type() -> None:
    assert convert("1.1", rfc1902.Integer32(-5)) == SnmpValue("1.1", "INTEGER", -5)
    assert convert("1.1", rfc1902.Gauge32(7)).type == "Gauge32"
    assert convert("1.1", rfc1902.Unsigned32(7)).type == "Gauge32"
    c32 = convert("1.1", rfc1902.Counter32(2**32 - 1))
    c64 = convert("1.1", rfc1902.Counter64(2**64 - 1))
    assert (c32.value, c32.counter_bits, c64.value, c64.counter_bits) == (2**32 - 1, 32, 2**64 - 1, 64)
    assert convert("1.1", rfc1902.TimeTicks(12345)).value == 12345
    assert convert("1.1", rfc1902.Integer32(1)).counter_bits is None


def test_convert_text_types() -> None:
    assert convert("1.1", rfc1902.OctetString(b"eth0")).value == "eth0"
    assert convert("1.1", rfc1902.OctetString(b"eth0\x00")).value == "eth0"  # a C string's terminator
    mac = convert("1.1", rfc1902.OctetString(b"\x00\x1a\x2b\x3c\x4d\x5e"))
    assert (mac.type, mac.value) == ("Hex-STRING", "00 1A 2B 3C 4D 5E")
    assert convert("1.1", rfc1902.IpAddress("192.168.1.20")).value == "192.168.1.20"
    assert convert("1.1", rfc1902.ObjectName("1.3.6.1.4.1.8072")).value == "1.3.6.1.4.1.8072"
    assert convert("1.1", rfc1902.OctetString(b"")).value == ""


@pytest.mark.parametrize("value, text", [
    (rfc1905.NoSuchObject(), NO_SUCH_OBJECT),
    (rfc1905.NoSuchInstance(), NO_SUCH_INSTANCE),
    (rfc1905.EndOfMibView(), END_OF_MIB_VIEW),
])
def test_exceptions_are_not_supported_with_zabbix_text(value: object, text: str) -> None:
    with pytest.raises(NotSupported) as e:
        convert("1.3.6.1.2.1.1.99.0", value)
    assert str(e.value) == text


def test_walk_lines_as_net_snmp_prints_them() -> None:
    vals = [
        SnmpValue("1.3.6.1.2.1.1.5.0", "STRING", 'a "q" \\b', b""),
        SnmpValue("1.3.6.1.2.1.1.3.0", "Timeticks", 8_640_000 + 360_000 + 6_000 + 100 + 5),
        SnmpValue("1.3.6.1.2.1.1.2.0", "OID", "1.3.6.1.4.1.8072.3.2.10"),
        SnmpValue("1.3.6.1.2.1.2.2.1.6.2", "Hex-STRING", "00 1A", b"\x00\x1a"),
        SnmpValue("1.3.6.1.2.1.2.2.1.10.1", "Counter32", 5),
    ]
    assert walk_text(vals).split("\n") == [
        '.1.3.6.1.2.1.1.5.0 = STRING: "a \\"q\\" \\\\b"',
        ".1.3.6.1.2.1.1.3.0 = Timeticks: (9006105) 1 day, 1:01:01.05",
        ".1.3.6.1.2.1.1.2.0 = OID: .1.3.6.1.4.1.8072.3.2.10",
        ".1.3.6.1.2.1.2.2.1.6.2 = Hex-STRING: 00 1A ",
        ".1.3.6.1.2.1.2.2.1.10.1 = Counter32: 5",
    ]
    assert uptime_text(0) == "0:00:00.00" and uptime_text(3 * 8_640_000) == "3 days, 0:00:00.00"


def test_discovery_rows_per_index() -> None:
    req = oid_for_item("discovery[{#IFDESCR},1.3.6.1.2.1.2.2.1.2,{#IFALIAS},1.3.6.1.2.1.31.1.1.1.18]")
    walks = {
        "1.3.6.1.2.1.2.2.1.2": [SnmpValue("1.3.6.1.2.1.2.2.1.2.1", "STRING", "lo"),
                                SnmpValue("1.3.6.1.2.1.2.2.1.2.2", "STRING", "eth0")],
        "1.3.6.1.2.1.31.1.1.1.18": [SnmpValue("1.3.6.1.2.1.31.1.1.1.18.2", "STRING", "uplink")],
    }
    assert json.loads(discovery_json(req, walks)) == [
        {"{#SNMPINDEX}": "1", "{#IFDESCR}": "lo"},
        {"{#SNMPINDEX}": "2", "{#IFDESCR}": "eth0", "{#IFALIAS}": "uplink"},
    ]
