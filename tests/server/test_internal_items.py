"""Internal items vigil[proxy,NAME,...] (server/pollers/internal.py), on both backends."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import yaml
from vigil.server.config.migrate import engine_for
from vigil.server.config.model import doc_from_dict
from vigil.server.config.repo import ConfigRepo
from vigil.server.config.tables import ItemType
from vigil.server.pollers import NotSupported
from vigil.server.pollers.internal import InternalPoller

DOC = """
proxies: [{name: px1}]
hosts:
  - host: vigil-server
    items:
      - {key: "vigil[proxy,px1,lastseen]", type: internal, value_type: unsigned}
      - {key: "vigil[proxy,px1,delay]", type: internal, value_type: unsigned}
      - {key: "vigil[proxy,px1,buffer]", type: internal, value_type: unsigned}
      - {key: "vigil[proxy,nobody,delay]", type: internal, value_type: unsigned}
      - {key: "vigil[proxy,px1,colour]", type: internal, value_type: unsigned}
"""


@pytest.fixture
def repo(migrated_url: str) -> Iterator[ConfigRepo]:
    engine = engine_for(migrated_url)
    try:
        r = ConfigRepo(engine)
        r.apply(doc_from_dict(yaml.safe_load(DOC)))
        yield r
    finally:
        engine.dispose()


def test_proxy_lastseen_and_delay(repo: ConfigRepo) -> None:
    items = {i.key: i for i in repo.poll_config().items.values()}
    assert {i.type for i in items.values()} == {ItemType.INTERNAL}  # the server polls them itself
    now = [1_800_000_000.0]
    poller = InternalPoller(repo, clock=lambda: now[0])

    def value(key: str) -> str:
        return asyncio.run(poller(items[key], 3))

    assert value("vigil[proxy,px1,lastseen]") == "0"
    with pytest.raises(NotSupported, match="not been in contact"):
        value("vigil[proxy,px1,delay]")
    repo.touch_proxy(repo.proxies()["px1"].proxyid, 1_800_000_000, "6.0.14", delay=42)
    assert value("vigil[proxy,px1,lastseen]") == "1800000000"
    assert value("vigil[proxy,px1,delay]") == "42"
    now[0] += 600  # silent for 10 minutes: its values are that much older by now
    assert value("vigil[proxy,px1,delay]") == "642"
    for key, message in (("vigil[proxy,px1,buffer]", "has not reported the size of its buffer"),
                         ("vigil[proxy,nobody,delay]", "no proxy"),
                         ("vigil[proxy,px1,colour]", "not one of lastseen")):
        with pytest.raises(NotSupported, match=message):
            value(key)


def test_proxy_buffer_is_what_the_proxy_last_reported(repo: ConfigRepo) -> None:
    items = {i.key: i for i in repo.poll_config().items.values()}
    poller = InternalPoller(repo)
    pid = repo.proxies()["px1"].proxyid

    def value() -> str:
        return asyncio.run(poller(items["vigil[proxy,px1,buffer]"], 3))

    repo.touch_proxy(pid, 1_800_000_000, "6.0.14")  # a Zabbix proxy: contact, but no buffer
    with pytest.raises(NotSupported, match="has not reported the size of its buffer"):
        value()
    repo.touch_proxy(pid, 1_800_000_001, "vigil", buffer=2**40 + 3)  # beyond 32 bits
    assert value() == str(2**40 + 3)
    repo.touch_proxy(pid, 1_800_000_002, "vigil", buffer=0)
    assert value() == "0"
    repo.touch_proxy(pid, 1_800_000_003, "vigil", delay=5)  # a contact without a report keeps the last one
    assert value() == "0"
