"""The trigger engine's notices into the escalator: values in, problem / update / recovery messages
out, with the real configuration (YAML through ConfigRepo), the real engine and AlertLog, and a
recording dispatcher. Time is the test's."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from vigil.alerts.escalator import Escalator
from vigil.server.config import tables as t
from vigil.server.config.migrate import engine_for
from vigil.server.config.model import doc_from_dict
from vigil.server.config.repo import ConfigRepo
from vigil.server.store import open_store
from vigil.server.store.alertlog import AlertLog
from vigil.server.store.base import Store, WriteBatch
from vigil.server.store.events import ACTION_ACK, ACTION_MESSAGE, ACTION_SEVERITY, EventStore
from vigil.server.triggers.evaluator import EngineSettings, TriggerEngine

T0 = 1_790_000_000

CONFIG = """
hosts:
  - host: h1
    name: Host One
    groups: [Lab]
    items:
      - {key: temp, type: trapper, value_type: float}
    triggers:
      - {name: "Hot on {HOST.NAME}", expression: "last(/h1/temp)>30", severity: average}
media_types:
  - {name: Mail, type: email, smtp_server: 127.0.0.1, smtp_email: vigil@example.com}
users:
  - username: ann
    name: Ann
    medias: [{media_type: Mail, send_to: ann@example.com}]
  - username: bob
    medias: [{media_type: Mail, send_to: bob@example.com, severity: [high, disaster]}]
actions:
  - name: Lab
    conditions: [{type: host_group, value: Lab}]
    step_duration: 10m
    operations:
      - {step_from: 1, step_to: 0, send_to_users: [ann, bob], message: "{ITEM.LASTVALUE} on {HOST.HOST}"}
    recovery_operations: [{send_to_users: [ann]}]
    update_operations: [{send_to_users: [ann]}]
"""


class Recorder:
    def __init__(self) -> None:
        self.alertids: list[int] = []

    def dispatch(self, alertid: int) -> None:
        self.alertids.append(alertid)


class Config:  # what the engine reads of the ConfigCache
    def __init__(self, repo: ConfigRepo) -> None:
        self.snapshot = repo.snapshot()


@dataclass
class Chain:
    engine: sa.Engine
    store: Store
    events: EventStore
    te: TriggerEngine
    esc: Escalator
    sent: Recorder
    now: list[float]
    itemid: int

    def send(self, value: float) -> None:
        self.now[0] += 1  # a value a second
        b = WriteBatch(floats=[(self.itemid, int(self.now[0]), 0, value)])
        self.store.write(b)
        self.te.cycle([("values", b)])
        self.esc.process(int(self.now[0]))

    def tick(self, seconds: int) -> None:
        self.now[0] += seconds
        self.te.cycle([])
        self.esc.process(int(self.now[0]))

    def alerts(self) -> list[Any]:
        with self.engine.connect() as c:
            return list(c.execute(sa.select(t.alerts).order_by(t.alerts.c.alertid)))


@pytest.fixture
def chain(migrated_url: str) -> Iterator[Chain]:
    engine = engine_for(migrated_url)
    repo = ConfigRepo(engine)
    repo.apply(doc_from_dict(yaml.safe_load(CONFIG)))
    store = open_store(migrated_url)
    now = [float(T0)]
    sent = Recorder()
    esc = Escalator(engine, repo, AlertLog(engine), sent)
    events = EventStore(engine)
    te = TriggerEngine(events, repo, Config(repo), lambda: open_store(migrated_url), esc.notify,
                       EngineSettings(timer=5, ack_poll=0.0, unreachable=60, cache_values=10_000),
                       now=lambda: now[0])
    te.load()
    te.cycle([])
    with engine.connect() as c:
        itemid = c.execute(sa.select(t.items.c.itemid).where(t.items.c.key_ == "temp")).scalar_one()
    try:
        yield Chain(engine, store, events, te, esc, sent, now, itemid)
    finally:
        esc.close()
        te.cache.close()
        store.close()
        engine.dispose()


def test_values_to_messages(chain: Chain) -> None:
    chain.send(20)
    assert chain.alerts() == []
    chain.send(35.5)
    [a1] = chain.alerts()  # bob's media takes high and disaster only
    assert (a1.sendto, a1.subject, a1.message, a1.esc_step) == ("ann@example.com", "Problem: Hot on Host One",
                                                                "35.5 on h1", 1)
    assert chain.sent.alertids == [a1.alertid]
    [problem] = chain.events.problems()
    chain.tick(600)
    assert [a.esc_step for a in chain.alerts()] == [1, 2]
    # an acknowledgement with a severity change: the update message, and from now bob's media takes it
    chain.events.acknowledge(problem.eventid, None, "on it", ACTION_ACK | ACTION_MESSAGE | ACTION_SEVERITY,
                             new_severity=4, clock=int(chain.now[0]) + 5)
    chain.tick(5)
    upd = chain.alerts()[-1]
    assert upd.subject == "Updated problem in 10m: Hot on Host One"
    assert "acknowledged, commented, changed severity of problem" in upd.message and "on it" in upd.message
    chain.tick(600)
    assert [a.sendto for a in chain.alerts()[-2:]] == ["ann@example.com", "bob@example.com"]
    chain.now[0] += 60
    chain.send(10)
    rec = chain.alerts()[-1]
    assert rec.subject == "Resolved in 21m: Hot on Host One" and rec.p_eventid == problem.eventid
    n = len(chain.alerts())
    chain.tick(3600)
    assert len(chain.alerts()) == n
    assert len(chain.sent.alertids) == n
