"""Triggers end to end: a real `vigil server` on both stores, values from vigil-sender and zabbix_sender,
problems seen and handled with `vigil problems` and `vigil ack`."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from vigil.server.config.migrate import engine_for
from vigil.server.store.events import EventStore

from tests.conftest import VigilServer, require, vigil_bin, wait_until

CONFIG = """
hosts:
  - host: acc-al
    name: acc-al
    macros: {"{$HOT}": "30"}
    items:
      - {key: temp, type: trapper, value_type: float, tags: [{tag: room, value: lab}]}
      - {key: beat, type: trapper, value_type: unsigned}
      - {key: err, type: trapper, value_type: float}
    triggers:
      - name: Hot on {HOST.NAME}
        expression: last(/acc-al/temp)>{$HOT}
        severity: warning
        manual_close: true
        tags: [{tag: scope, value: heat}]
      - name: Errors on {HOST.HOST}
        expression: last(/acc-al/err)>0
        recovery_expression: last(/acc-al/err)<0
        severity: high
        multiple: true
      - name: Heartbeat lost
        expression: nodata(/acc-al/beat,3s)=1
        severity: average
"""

ENV = {"VIGIL_TRIGGER_TIMER": "0.5", "VIGIL_ACK_POLL": "0.2", "VIGIL_AGENT_UNREACHABLE": "2"}


@pytest.fixture
def server(tmp_path: Path, database_url: str) -> Iterator[VigilServer]:
    s = VigilServer(tmp_path, database_url, **ENV)
    s.cli("db", "upgrade")
    s.import_yaml(CONFIG)
    s.start()
    try:
        s.wait_for_config("acc-al")
        yield s
    finally:
        s.stop()


def send(server: VigilServer, key: str, value: str, tool: str = "vigil-sender") -> None:
    program = require("zabbix_sender") if tool == "zabbix_sender" else vigil_bin("vigil-sender")
    r = subprocess.run([program, "-z", "127.0.0.1", "-p", str(server.port), "-s", "acc-al", "-k", key, "-o", value],
                       capture_output=True, text=True, timeout=60)
    assert "processed: 1" in r.stdout or "failed: 1" in r.stdout, r.stdout + r.stderr


def problems(server: VigilServer, *args: str) -> list[list[str]]:
    out = server.cli("problems", *args).stdout
    return [line.split("\t") for line in out.splitlines()]


def named(server: VigilServer, name: str, *args: str) -> list[list[str]]:
    return [p for p in problems(server, *args) if p[4] == name]


def wait_problem(server: VigilServer, name: str, present: bool = True, timeout: float = 15) -> list[str] | None:
    """Wait (reading the store, quicker than a command per look) until a problem of that name is
    open (or none is), then return what `vigil problems` prints for it."""
    es = event_store(server)
    try:
        wait_until(lambda: any(p.name == name for p in es.problems()) == present, timeout,
                   f"problem {name!r} to {'open' if present else 'close'}")
    finally:
        es.engine.dispose()
    found = named(server, name)
    return found[0] if found else None


def event_store(server: VigilServer) -> EventStore:
    return EventStore(engine_for(server.database_url))


@pytest.mark.parametrize("tool", ["vigil-sender", "zabbix_sender"])
def test_problem_opens_is_listed_acknowledged_and_recovers(server: VigilServer, tool: str) -> None:
    send(server, "beat", "1", tool)
    send(server, "temp", "20", tool)
    time.sleep(0.5)
    assert named(server, "Hot on acc-al") == []
    before = int(time.time())
    send(server, "temp", "35", tool)
    eventid, clock, severity, host, name = wait_problem(server, "Hot on acc-al")  # type: ignore[misc]
    assert (severity, host, name) == ("warning", "acc-al", "Hot on acc-al") and int(clock) >= before - 1
    assert named(server, "Hot on acc-al", "--host", "acc-al")
    assert named(server, "Hot on acc-al", "--host", "other") == []
    assert named(server, "Hot on acc-al", "--severity", "high") == []
    assert named(server, "Hot on acc-al", "--severity", "warning")
    es = event_store(server)
    assert set(es.event_tags(int(eventid))) == {("scope", "heat"), ("room", "lab")}
    r = server.cli("ack", eventid, "-m", "on it", "--severity", "disaster")
    assert f"problem {eventid}: acknowledged" in r.stdout
    wait_until(lambda: any(p.severity == 5 for p in es.problems()), 10, "the severity change")
    assert named(server, "Hot on acc-al", "--severity", "disaster")
    [ack] = es.acknowledges_after(0)
    assert (ack.message, ack.old_severity, ack.new_severity, ack.action) == ("on it", 2, 5, 2 | 4 | 8)
    send(server, "temp", "10", tool)
    wait_problem(server, "Hot on acc-al", present=False)
    [p] = [x for x in es.problems(resolved=True) if x.eventid == int(eventid)]
    assert p.r_eventid is not None and es.event(p.r_eventid).value == 0  # type: ignore[union-attr]
    es.engine.dispose()


def test_nodata_fires_on_the_timer_without_values(server: VigilServer) -> None:
    # no value for beat at all: once 3 s have passed since the server started, the timer fires it
    eventid = int(wait_problem(server, "Heartbeat lost", timeout=20)[0])  # type: ignore[index]
    send(server, "beat", "1")
    es = event_store(server)
    # the value resolves it (and 3 s later the timer may fire it again: it is not sent again)
    wait_until(lambda: any(e.value == 0 for e in es.events(source=0, after=eventid)), 15, "the OK event")
    [ok] = [e for e in es.events(source=0, after=eventid) if e.value == 0]
    [p] = [x for x in es.problems(resolved=True) if x.eventid == eventid]
    assert p.r_eventid == ok.eventid and ok.name == "Heartbeat lost"
    es.engine.dispose()


def test_multiple_mode_and_recovery_expression(server: VigilServer) -> None:
    es = event_store(server)

    def open_errors() -> int:
        return sum(p.name == "Errors on acc-al" for p in es.problems())

    send(server, "err", "1")
    wait_until(lambda: open_errors() == 1, 15, "the first problem")
    send(server, "err", "2")
    wait_until(lambda: open_errors() == 2, 15, "a second problem from a new value")
    assert len(named(server, "Errors on acc-al")) == 2
    send(server, "err", "0")  # not > 0 any more, but the recovery expression (< 0) is false: still open
    wait_until(lambda: es.rtdata(), 5, "trigger state")
    time.sleep(1.5)
    assert open_errors() == 2
    send(server, "err", "-1")
    wait_until(lambda: open_errors() == 0, 15, "the recovery expression to close both")
    es.engine.dispose()


def test_ack_close_and_refusals(server: VigilServer) -> None:
    send(server, "temp", "40")
    eventid = wait_problem(server, "Hot on acc-al")[0]  # type: ignore[index]
    send(server, "err", "1")
    err_id = wait_until_named(server, "Errors on acc-al")
    r = server.cli("ack", err_id, "-m", "close it", "--close", check=False)
    assert r.returncode == 1 and "does not allow manual close" in r.stderr
    r = server.cli("ack", "987654321", "-m", "x", check=False)
    assert r.returncode == 1 and "no event 987654321" in r.stderr
    r = server.cli("ack", "abc", "-m", "x", check=False)
    assert r.returncode == 2 and "is not a number" in r.stderr
    r = server.cli("ack", eventid, "-m", "x", "--severity", "huge", check=False)
    assert r.returncode == 1 and "severity 'huge'" in r.stderr
    r = server.cli("problems", "--severity", "loud", check=False)
    assert r.returncode == 1 and "severity 'loud'" in r.stderr
    server.cli("ack", eventid, "-m", "fixed by hand", "--close")
    wait_problem(server, "Hot on acc-al", present=False)
    es = event_store(server)
    [p] = [x for x in es.problems(resolved=True) if x.eventid == int(eventid)]
    ok = es.event(p.r_eventid)  # type: ignore[arg-type]
    assert ok is not None and ok.value == 0
    r = server.cli("ack", str(ok.eventid), "-m", "x", check=False)
    assert r.returncode == 1 and "not a problem" in r.stderr
    r = server.cli("ack", eventid, "-m", "x", check=False)
    assert r.returncode == 1 and "already resolved" in r.stderr
    # the trigger is OK again: a new hot value opens a new problem
    send(server, "temp", "41")
    wait_until(lambda: any(p.name == "Hot on acc-al" and p.eventid != int(eventid) for p in es.problems()), 15,
               "a new problem after the manual close")
    es.engine.dispose()


def wait_until_named(server: VigilServer, name: str) -> str:
    return wait_problem(server, name)[0]  # type: ignore[index]


def test_restart_keeps_state_without_duplicate_events(server: VigilServer) -> None:
    send(server, "temp", "40")
    eventid = wait_problem(server, "Hot on acc-al")[0]  # type: ignore[index]
    server.stop()
    server.start()
    server.wait_for_config("acc-al")
    send(server, "temp", "45")
    send(server, "beat", "1")
    es = event_store(server)
    time.sleep(1.5)  # time for the engine to have evaluated both values
    hot = [e for e in es.events(source=0) if e.name == "Hot on acc-al"]
    assert [e.eventid for e in hot] == [int(eventid)]
    send(server, "temp", "5")
    wait_problem(server, "Hot on acc-al", present=False)
    es.engine.dispose()


def test_unsupported_value_makes_internal_events(server: VigilServer) -> None:
    es = event_store(server)
    itemid = next(i for i, (_, key, _) in es.items().items() if key == "temp")
    send(server, "temp", "not a number")
    wait_until(lambda: es.item_states().get(itemid, (0,))[0] == 1, 15, "the item to become not supported")
    [ev] = [e for e in es.events(source=3) if e.objectid == itemid]
    assert (ev.object, ev.value) == (4, 1) and "not supported" in ev.name
    [p] = es.problems(source=3)
    assert p.eventid == ev.eventid and p.host == "acc-al"
    send(server, "temp", "12")
    wait_until(lambda: es.item_states()[itemid][0] == 0, 15, "the item to be supported again")
    back = [e for e in es.events(source=3) if e.objectid == itemid]
    assert [e.value for e in back] == [1, 0] and es.problems(source=3) == []
    es.engine.dispose()


def test_silent_active_agent_makes_a_host_internal_event(server: VigilServer) -> None:
    es = event_store(server)
    hostid = next(h for h, (host, _) in es.host_names().items() if host == "acc-al")
    assert server.active_checks("acc-al")["response"] == "success"  # what an active agent asks first
    wait_until(lambda: es.availability().get(hostid, (0,))[0] == 1, 10, "the agent to count as available")
    wait_until(lambda: es.availability()[hostid][0] == 2, 15, "the agent to count as unreachable")
    [ev] = [e for e in es.events(source=3) if e.object == 1]
    assert (ev.objectid, ev.value) == (hostid, 1) and "unreachable" in ev.name
    server.active_checks("acc-al")
    wait_until(lambda: es.availability()[hostid][0] == 1, 10, "the agent to be available again")
    assert [e.value for e in es.events(source=3) if e.object == 1] == [1, 0]
    es.engine.dispose()
