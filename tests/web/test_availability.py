"""Host availability from an active agent's heartbeat: a monitored host no poller has judged counts as
available on the dashboard and the hosts list while its agent.ping is under 3 minutes old, and only
the hosts the user may read are counted."""

from __future__ import annotations

import re

from vigil.server.config.model import item_from_doc
from vigil.server.store import open_store
from vigil.server.store.base import WriteBatch

from tests.web.conftest import Env


def tiles(page: str) -> dict[str, int]:
    return {cls: int(n) for cls, n in re.findall(r'class="tile (ok|bad|unknown|total)"[^>]*><b>(\d+)</b>', page)}


def ping(env: Env, host: str, age: int) -> None:
    env.repo.upsert_item(host, item_from_doc({"key": "agent.ping", "type": "agent_active", "value_type": "unsigned"},
                                             "item"))
    itemid = env.itemid(host, "agent.ping")
    store = open_store(env.url)
    try:
        store.write(WriteBatch(uints=[(itemid, env.now - age, 0, 1)]))
    finally:
        store.close()


def test_a_recent_ping_makes_an_unknown_host_available(env: Env) -> None:
    admin = env.client("admin")
    assert tiles(admin.get("/").get_data(as_text=True)) == {"ok": 0, "bad": 0, "unknown": 2, "total": 2}
    ping(env, "web-01", 30)
    ping(env, "db-secret", 600)  # too old to count
    assert tiles(admin.get("/").get_data(as_text=True)) == {"ok": 1, "bad": 0, "unknown": 1, "total": 2}
    hosts = admin.get("/hosts").get_data(as_text=True)
    assert re.search(r'Web 01</a>.*?<span class="badge ok"', hosts, re.S)
    assert re.search(r'db-secret</a>.*?<span class="badge unknown"', hosts, re.S)


def test_only_readable_hosts_are_counted(env: Env) -> None:
    ping(env, "web-01", 30)
    ping(env, "db-secret", 30)
    assert tiles(env.client("admin").get("/").get_data(as_text=True))["ok"] == 2
    assert tiles(env.client("viewer").get("/").get_data(as_text=True)) == {"ok": 1, "bad": 0, "unknown": 0, "total": 1}
    assert tiles(env.client("nobody").get("/").get_data(as_text=True)) == {"ok": 0, "bad": 0, "unknown": 0, "total": 0}
