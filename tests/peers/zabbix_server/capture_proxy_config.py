"""Capture the real zabbix_server 6.0's `proxy config` reply to an active proxy (issue 16, pairing 4).

Registers an active proxy and two hosts monitored by it in a fresh clone of the Zabbix template
database (agent, trapper, SNMP, simple, HTTP agent and dependent items, preprocessing, host and
global macros), starts the real server on loopback, sends the proxy's request as zabbix_proxy
6.0.14 does, and writes the exact request and reply bytes:

    .venv/bin/python -m tests.peers.zabbix_server.capture_proxy_config [OUTDIR ...]

OUTDIR defaults to tests/vectors/proxy; each named directory gets
zabbix-server-proxy-config.{request,response}.bin. Needs `bash tests/peers/zabbix_server/setup.sh`.
"""

from __future__ import annotations

import json
import socket
import sys
import tempfile
import time
from pathlib import Path

from vigil.agent.protocol import zbxd

from tests.peers.zabbix_server.peer import CHAR, FLOAT, TEXT, TRAPPER, UNSIGNED, ZabbixServer

PROXY = "vector-proxy"
NAME = "zabbix-server-proxy-config"
# items.type as Zabbix numbers them (peer.py has the trapper and active ones)
AGENT, SIMPLE, DEPENDENT, HTTP_AGENT, SNMP_AGENT = 0, 3, 18, 19, 20
HOST_STATUS_PROXY_ACTIVE = 5
# item_preproc.type
MULTIPLIER, JSONPATH = 1, 12


def register(zs: ZabbixServer) -> None:
    """The proxy, its hosts and their items, as the frontend would have written them."""
    proxyid = 800_001
    zs.sql("INSERT INTO hosts (hostid, host, name, status, proxy_address) VALUES (%s, %s, %s, %s, '127.0.0.1')",
           (proxyid, PROXY, PROXY, HOST_STATUS_PROXY_ACTIVE))
    zs.sql("INSERT INTO globalmacro (globalmacroid, macro, value, description, type) "
           "VALUES (800002, '{$VECTOR.GLOBAL}', 'global-value', 'a global macro', 0)")
    web = zs.add_host("vector-web")
    db = zs.add_host("vector-db")
    zs.sql("UPDATE hosts SET proxy_hostid = %s WHERE hostid IN (%s, %s)", (proxyid, web, db))
    zs.sql("INSERT INTO hostmacro (hostmacroid, hostid, macro, value, description, type) "
           "VALUES (800003, %s, '{$VECTOR.PORT}', '8080', 'a host macro', 0)", (web,))
    zs.sql("INSERT INTO interface (interfaceid, hostid, main, type, useip, ip, dns, port) "
           "VALUES (800011, %s, 1, 1, 1, '127.0.0.1', '', '10050')", (web,))
    zs.sql("INSERT INTO interface (interfaceid, hostid, main, type, useip, ip, dns, port) "
           "VALUES (800012, %s, 1, 2, 1, '127.0.0.1', '', '161')", (web,))
    zs.sql("INSERT INTO interface_snmp (interfaceid, version, bulk, community) VALUES (800012, 2, 1, "
           "'{$SNMP_COMMUNITY}')")
    zs.sql("INSERT INTO interface (interfaceid, hostid, main, type, useip, ip, dns, port) "
           "VALUES (800013, %s, 1, 1, 1, '127.0.0.1', '', '10050')", (db,))

    def item(hostid: int, key: str, item_type: int, value_type: int, **cols: object) -> int:
        itemid = zs.add_item(hostid, key, value_type, item_type)
        if cols:
            sets = ", ".join(f"{c} = %s" for c in cols)
            zs.sql(f"UPDATE items SET {sets} WHERE itemid = %s", (*cols.values(), itemid))
        return itemid

    item(web, "agent.ping", AGENT, UNSIGNED, delay="30s", interfaceid=800011)
    item(web, "trap.value", TRAPPER, FLOAT, trapper_hosts="127.0.0.1")
    item(web, "sysUpTime", SNMP_AGENT, UNSIGNED, delay="1m", interfaceid=800012,
         snmp_oid="1.3.6.1.2.1.1.3.0")
    item(web, "net.tcp.service[http,,{$VECTOR.PORT}]", SIMPLE, UNSIGNED, delay="1m", interfaceid=800011)
    http = item(web, "status.json", HTTP_AGENT, TEXT, delay="1m", url="http://127.0.0.1:{$VECTOR.PORT}/s",
                timeout="5s", headers="X-Vigil: {$VECTOR.GLOBAL}", status_codes="200,201")
    used = item(web, "status.used", DEPENDENT, FLOAT, master_itemid=http)
    zs.sql("INSERT INTO item_preproc (item_preprocid, itemid, step, type, params, error_handler, "
           "error_handler_params) VALUES (800021, %s, 1, %s, '$.used', 0, '')", (used, JSONPATH))
    zs.sql("INSERT INTO item_preproc (item_preprocid, itemid, step, type, params, error_handler, "
           "error_handler_params) VALUES (800022, %s, 2, %s, '0.001', 0, '')", (used, MULTIPLIER))
    item(db, "agent.version", AGENT, CHAR, delay="1h", interfaceid=800013)
    item(db, "trap.text", TRAPPER, CHAR)



def exchange(port: int, request: bytes, timeout: float = 10) -> bytes:
    """Send one frame and read the whole reply until the server closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(request)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
    return reply


def capture(outdirs: list[Path]) -> dict:
    with tempfile.TemporaryDirectory(prefix="zbx-capture-") as tmp:
        zs = ZabbixServer(Path(tmp))
        try:
            register(zs)
            zs.start()
            body = json.dumps({"request": "proxy config", "host": PROXY, "version": "6.0.14"},
                              separators=(",", ":")).encode()
            # zabbix_proxy compresses what it sends to the server
            request = zbxd.encode(body, compress=True)
            deadline = time.monotonic() + 30
            while True:  # until the configuration cache (CacheUpdateFrequency=1) knows the proxy
                reply = exchange(zs.port, request)
                decoded = json.loads(zbxd.decode(reply)[1])
                if "hosts" in decoded or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        finally:
            zs.drop()
    if "hosts" not in decoded:
        raise SystemExit(f"zabbix_server did not send a configuration: {decoded}")
    for d in outdirs:
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{NAME}.request.bin").write_bytes(request)
        (d / f"{NAME}.response.bin").write_bytes(reply)
    return decoded


def main(argv: list[str]) -> None:
    outdirs = [Path(a) for a in argv] or [Path(__file__).resolve().parents[2] / "vectors" / "proxy"]
    decoded = capture(outdirs)
    print("tables:", ", ".join(sorted(decoded)))
    print("written to:", ", ".join(map(str, outdirs)))


if __name__ == "__main__":
    main(sys.argv[1:])
