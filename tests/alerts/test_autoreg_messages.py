"""An autoregistration action's "send message" operation, through the real path on both stores: the
server's Autoregistrar records the registration and runs the host operations, its committed event goes
to the escalator (the composition's `notify`), which matches the action by host metadata and proxy and
writes the alert with the host's macros; the host operations are not run a second time as messages."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import Engine
from vigil.alerts.escalator import Escalator
from vigil.server.config import tables as t
from vigil.server.config.autoreg import Registration
from vigil.server.config.migrate import engine_for
from vigil.server.config.model import doc_from_dict
from vigil.server.config.repo import ConfigRepo
from vigil.server.ingest.autoreg import Autoregistrar
from vigil.server.store.alertlog import AlertLog

CONFIG = """
proxies:
  - {name: branch, mode: active}
media_types:
  - {name: Hook, type: webhook, url: "http://127.0.0.1:9/hook"}
users:
  - username: ops
    medias: [{media_type: Hook, send_to: ops-room}]
actions:
  - name: Announce web
    event_source: autoregistration
    conditions: [{type: host_metadata, value: web}, {type: proxy, value: branch}]
    operations:
      - add_host: true
      - add_to_groups: [Web servers]
      - {send_to_users: [ops], subject: "Registered {HOST.HOST}", message: "{HOST.HOST} joined ({EVENT.ID})"}
"""


class Recorder:
    def __init__(self) -> None:
        self.alertids: list[int] = []

    def dispatch(self, alertid: int) -> None:
        self.alertids.append(alertid)


@pytest.fixture
def engine(migrated_url: str) -> Iterator[Engine]:
    e = engine_for(migrated_url)
    try:
        ConfigRepo(e).apply(doc_from_dict(yaml.safe_load(CONFIG)))
        yield e
    finally:
        e.dispose()


def test_a_registration_sends_the_actions_message_once(engine: Engine) -> None:
    repo = ConfigRepo(engine)
    sent = Recorder()
    escalator = Escalator(engine, repo, AlertLog(engine), sent)
    autoreg = Autoregistrar(repo, repo.version, escalator.notify)
    with engine.connect() as c:
        proxyid = c.execute(sa.select(t.proxies.c.proxyid)).scalar_one()
    r = Registration("web-07", ip="10.0.0.7", host_metadata="linux web", clock=1_800_000_000, proxyid=proxyid,
                     proxy="branch")
    db = Registration("db-07", ip="10.0.0.8", host_metadata="linux db", clock=1_800_000_000, proxyid=proxyid,
                      proxy="branch")
    assert asyncio.run(autoreg.register([r, db], "test")) is None
    escalator.process(1_800_000_001)
    try:
        assert len(sent.alertids) == 1
        alert = AlertLog(engine).get(sent.alertids[0])
        assert alert is not None
        with engine.connect() as c:
            eventid = c.execute(sa.select(t.events.c.eventid).where(t.events.c.name == "web-07")).scalar_one()
            hosts = c.execute(sa.select(t.hosts.c.host).where(t.hosts.c.status != 3)).scalars().all()
        assert (alert.subject, alert.message, alert.sendto) == ("Registered web-07", f"web-07 joined ({eventid})",
                                                               "ops-room")
        assert hosts == ["web-07"]
        # The same registration again says nothing new: no event, no message.
        assert asyncio.run(autoreg.register([r], "test")) is None
        escalator.process(1_800_000_100)
        assert len(sent.alertids) == 1 and autoreg.stats["unchanged"] == 1
    finally:
        escalator.close()
