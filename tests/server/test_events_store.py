"""EventStore on both backends: a cycle's writes in one transaction, the read API, acknowledgements."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
import yaml
from vigil.server.config import tables as t
from vigil.server.config.migrate import engine_for
from vigil.server.config.model import doc_from_dict
from vigil.server.config.repo import ConfigRepo
from vigil.server.store.events import (
    ACTION_ACK,
    ACTION_CLOSE,
    ACTION_MESSAGE,
    ACTION_UNACK,
    Cycle,
    EventError,
    EventStore,
    NewEvent,
)

CONFIG = """
hosts:
  - host: db1
    name: Database one
    items:
      - {key: conn, value_type: unsigned, tags: [{tag: app, value: pg}]}
    triggers:
      - {name: Too many connections, expression: last(/db1/conn)>100, severity: high, manual_close: true}
      - {name: No connections, expression: last(/db1/conn)=0, severity: warning}
  - host: web1
    items:
      - {key: req, value_type: float}
    triggers:
      - {name: Slow, expression: "avg(/web1/req,5m)>2", severity: average}
"""


@pytest.fixture
def es(migrated_url: str) -> Iterator[EventStore]:
    engine = engine_for(migrated_url)
    ConfigRepo(engine).apply(doc_from_dict(yaml.safe_load(CONFIG)))
    try:
        yield EventStore(engine)
    finally:
        engine.dispose()


def trig(es: EventStore, name: str) -> int:
    with es.engine.connect() as c:
        return c.execute(sa.select(t.triggers.c.triggerid).where(t.triggers.c.description == name)).scalar_one()


def problem(es: EventStore, name: str, clock: int = 1000, severity: int = 4) -> NewEvent:
    ev = NewEvent(0, 0, trig(es, name), clock, 5, 1, name, severity, (("a", "1"), ("b", "2")), problem=True)
    es.commit(Cycle(events=[ev], rtdata={trig(es, name): (1, 0, "", clock)}))
    return ev


def test_a_cycle_writes_events_problems_tags_and_state_together(es: EventStore) -> None:
    p1 = problem(es, "Too many connections")
    p2 = problem(es, "Slow", 1001, 3)
    assert p1.eventid and p2.eventid > p1.eventid
    assert es.event_tags(p1.eventid) == (("a", "1"), ("b", "2"))
    assert es.rtdata()[trig(es, "Slow")] == (1, 0, "", 1001)
    assert es.open_problems() == {(0, 0, trig(es, "Too many connections")): [p1.eventid],
                                  (0, 0, trig(es, "Slow")): [p2.eventid]}
    rows = es.problems()
    assert [(r.eventid, r.host, r.severity) for r in rows] == [(p1.eventid, "db1", 4), (p2.eventid, "web1", 3)]
    assert [r.eventid for r in es.problems(host="web1")] == [p2.eventid]
    assert [r.eventid for r in es.problems(severity=4)] == [p1.eventid]
    assert es.problems(host="nope") == []
    ok = NewEvent(0, 0, trig(es, "Slow"), 1010, 0, 0, "Slow", 3, resolves=(p2.eventid,))
    es.commit(Cycle(events=[ok], rtdata={trig(es, "Slow"): (0, 0, "", 1010)}))
    assert [r.eventid for r in es.problems()] == [p1.eventid]
    [done] = [r for r in es.problems(resolved=True) if r.eventid == p2.eventid]
    assert (done.r_eventid, done.r_clock) == (ok.eventid, 1010)
    assert es.rtdata()[trig(es, "Slow")] == (0, 0, "", 1010)  # updated in place, not a second row


def test_a_failed_cycle_writes_nothing(es: EventStore) -> None:
    good = NewEvent(0, 0, trig(es, "Slow"), 1000, 0, 1, "Slow", 3, problem=True)
    bad_rt = {987654: (1, 0, "", 1000)}  # no such trigger: the foreign key refuses it
    with pytest.raises(sa.exc.IntegrityError):
        es.commit(Cycle(events=[good], rtdata=bad_rt))
    assert es.events() == [] and es.problems() == []


def test_item_state_and_availability_upserts(es: EventStore) -> None:
    itemid = next(iter(es.items()))
    hostid = es.items()[itemid][0]
    es.commit(Cycle(item_states={itemid: (1, "bad value", 5)}, hosts={hostid: (1, "", 7)}))
    es.commit(Cycle(item_states={itemid: (0, "", 6)}, hosts={hostid: (2, "silent", 9)}))
    assert es.item_states() == {itemid: (0, "", 6)}
    assert es.availability() == {hostid: (2, "silent", 9)}


def test_acknowledge_rules(es: EventStore) -> None:
    closable = problem(es, "Too many connections")
    fixed = problem(es, "No connections")
    ackid = es.acknowledge(fixed.eventid, None, "seen", ACTION_ACK | ACTION_MESSAGE)
    assert es.event(fixed.eventid).acknowledged == 1  # type: ignore[union-attr]
    es.acknowledge(fixed.eventid, None, "", ACTION_UNACK)
    assert es.problems(eventids=[fixed.eventid])[0].acknowledged == 0
    assert [a.acknowledgeid for a in es.acknowledges_after(0)][0] == ackid
    assert es.last_acknowledgeid() > ackid  # the unacknowledge came after
    for args, words in [
        ((fixed.eventid, None, "x", ACTION_CLOSE), "does not allow manual close"),
        ((123456, None, "x", ACTION_ACK), "no event 123456"),
        ((fixed.eventid, None, "x", 0), "action 0"),
        ((fixed.eventid, None, "x", 64), "action 64"),
        ((fixed.eventid, None, "x", ACTION_ACK | ACTION_UNACK), "acknowledge and unacknowledge"),
        ((fixed.eventid, None, "", ACTION_MESSAGE), "message is empty"),
    ]:
        with pytest.raises(EventError, match=words):
            es.acknowledge(*args)  # type: ignore[arg-type]
    es.acknowledge(closable.eventid, 7, "closing", ACTION_CLOSE)
    [pending] = es.pending_closes()
    assert (pending.eventid, pending.userid) == (closable.eventid, 7)
    ok = NewEvent(0, 0, trig(es, "Too many connections"), 1100, 0, 0, "x", 4, resolves=(closable.eventid,), userid=7)
    es.commit(Cycle(events=[ok]))
    assert es.pending_closes() == []
    with pytest.raises(EventError, match="already resolved"):
        es.acknowledge(closable.eventid, None, "x", ACTION_ACK)
    with pytest.raises(EventError, match="not a problem"):
        es.acknowledge(ok.eventid, None, "x", ACTION_ACK)
    internal = NewEvent(3, 4, next(iter(es.items())), 1200, 0, 1, "unsupported", 0, problem=True)
    es.commit(Cycle(events=[internal]))
    with pytest.raises(EventError, match="internal event"):
        es.acknowledge(internal.eventid, None, "x", ACTION_CLOSE)
    assert [p.eventid for p in es.problems(source=3)] == [internal.eventid]
    assert es.problems(source=3)[0].host == "db1"
