"""The escalator with the real configuration (YAML through ConfigRepo.alerting()) and real delivery
(LocalDispatcher) to a real HTTP receiver on loopback: the alert id of {ALERT.ID} is the one in
X-Vigil-Alert-Id, the JSON body stays valid with a quote in a name, nothing goes out during
maintenance, and the recovery arrives."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from vigil.alerts.delivery import LocalDispatcher
from vigil.alerts.escalator import Escalator
from vigil.server.config import tables as t
from vigil.server.config.migrate import engine_for
from vigil.server.config.model import ConfigError, doc_from_dict
from vigil.server.config.repo import ConfigRepo
from vigil.server.store.alertlog import AlertLog
from vigil.server.triggers.events import Event

from tests.conftest import wait_until


class Receiver:
    def __init__(self) -> None:
        self.got: list[tuple[dict[str, str], Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.got.append((dict(self.headers), json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def config(port: int, maintenance: str = "") -> str:
    return f"""
hosts:
  - host: web1
    name: 'Web "one"'
    groups: [Web]
    macros: {{"{{$TEAM}}": ops}}
    items:
      - {{key: cpu.load, value_type: float}}
    triggers:
      - name: CPU load is high
        expression: last(/web1/cpu.load)>5
        severity: high
media_types:
  - name: Hook
    type: webhook
    url: http://127.0.0.1:{port}/hook
    body: '{{"id": "{{ALERT.ID}}", "host": "{{HOST.NAME}}", "subject": "{{ALERT.SUBJECT}}", "team": "{{$TEAM}}"}}'
users:
  - username: ann
    medias: [{{media_type: Hook, send_to: ann}}]
actions:
  - name: Web problems
    conditions:
      - {{type: host_group, value: Web}}
      - {{type: severity, operator: ">=", value: high}}
    operations:
      - {{step_from: 1, step_to: 2, step_duration: 5m, send_to_users: [ann]}}
    recovery_operations:
      - {{send_to_users: [ann]}}
{maintenance}
"""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.close()


def problem(engine: sa.Engine, repo: ConfigRepo, eventid: int, clock: int) -> Event:
    [trig] = repo.triggers()
    name = trig.name
    with engine.begin() as c:
        c.execute(t.events.insert().values(eventid=eventid, source=0, object=0, objectid=trig.triggerid,
                                           clock=clock, value=1, name=name, severity=4))
        c.execute(t.problems.insert().values(eventid=eventid, source=0, object=0, objectid=trig.triggerid,
                                             clock=clock, name=name, severity=4))
    return Event(eventid=eventid, source=0, object=0, objectid=trig.triggerid, clock=clock, ns=0, value=1,
                 severity=4, name=name, hostids=(trig.hostid,))


def resolve(engine: sa.Engine, p: Event, eventid: int, clock: int) -> Event:
    with engine.begin() as c:
        c.execute(t.events.insert().values(eventid=eventid, source=0, object=0, objectid=p.objectid, clock=clock,
                                           value=0, name=p.name, severity=4))
        c.execute(t.problems.update().where(t.problems.c.eventid == p.eventid).values(r_eventid=eventid,
                                                                                     r_clock=clock))
    return Event(eventid=eventid, source=0, object=0, objectid=p.objectid, clock=clock, ns=0, value=0, severity=4,
                 name=p.name, hostids=p.hostids, resolves=(p.eventid,))


@pytest.fixture
def parts(migrated_url: str) -> Iterator[tuple[sa.Engine, ConfigRepo, LocalDispatcher]]:
    engine = engine_for(migrated_url)
    repo = ConfigRepo(engine)
    dispatcher = LocalDispatcher(engine, threads=2)
    dispatcher.start()
    try:
        yield engine, repo, dispatcher
    finally:
        dispatcher.stop()
        engine.dispose()


def test_problem_steps_and_recovery_reach_the_webhook(parts: tuple[Any, ConfigRepo, LocalDispatcher],
                                                      receiver: Receiver) -> None:
    engine, repo, dispatcher = parts
    repo.apply(doc_from_dict(yaml.safe_load(config(receiver.port))))
    esc = Escalator(engine, repo, AlertLog(engine), dispatcher)
    try:
        now = int(time.time())
        p = problem(engine, repo, 1, now)
        esc.notify(p)
        esc.process(now)
        wait_until(lambda: len(receiver.got) == 1, 15, "step 1 at the webhook")
        headers, body = receiver.got[0]
        assert body == {"id": headers["X-Vigil-Alert-Id"], "host": 'Web "one"',
                        "subject": "Problem: CPU load is high", "team": "ops"}
        esc.process(now + 299)
        esc.process(now + 300)
        wait_until(lambda: len(receiver.got) == 2, 15, "step 2 at the webhook")
        assert receiver.got[1][0]["X-Vigil-Alert-Id"] != headers["X-Vigil-Alert-Id"]
        esc.process(now + 10_000)  # no step 3
        esc.notify(resolve(engine, p, 2, now + 10_000 + 120))
        esc.process(now + 10_000 + 120)
        wait_until(lambda: len(receiver.got) == 3, 15, "the recovery at the webhook")
        assert receiver.got[2][1]["subject"].startswith("Resolved in 2h 48m: CPU load is high")
        time.sleep(0.3)
        assert len(receiver.got) == 3
        wait_until(lambda: AlertLog(engine).pending() == [], 10, "every alert marked sent")
        with engine.connect() as c:
            rows = list(c.execute(sa.select(t.alerts).order_by(t.alerts.c.alertid)))
        assert [(r.status, r.esc_step) for r in rows] == [(t.AlertStatus.SENT, 1), (t.AlertStatus.SENT, 2),
                                                          (t.AlertStatus.SENT, 2)]
        assert [str(r.alertid) for r in rows] == [h["X-Vigil-Alert-Id"] for h, _ in receiver.got]
    finally:
        esc.close()


def test_nothing_is_sent_during_maintenance(parts: tuple[Any, ConfigRepo, LocalDispatcher],
                                            receiver: Receiver) -> None:
    engine, repo, dispatcher = parts
    now = int(time.time())
    maint = f"""
maintenances:
  - name: patching
    active_since: {now - 3600}
    active_till: {now + 86400}
    groups: [Web]
    periods:
      - {{type: one_time, start_date: {now - 60}, period: 1h}}
"""
    try:
        repo.apply(doc_from_dict(yaml.safe_load(config(receiver.port, maint))))
    except ConfigError as e:  # the maintenance fields as trigcfg's document names them
        pytest.fail(f"maintenance YAML refused: {e}")
    esc = Escalator(engine, repo, AlertLog(engine), dispatcher, maintenance_recheck=60)
    try:
        esc.notify(problem(engine, repo, 1, now))
        for k in range(0, 3540, 300):
            esc.process(now + k)
        time.sleep(0.5)
        assert receiver.got == []
        esc.process(now + 3600)
        wait_until(lambda: len(receiver.got) == 1, 15, "step 1 once the maintenance is over")
    finally:
        esc.close()
