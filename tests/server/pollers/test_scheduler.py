"""The poller scheduler with the real configuration repo on both stores, real agents and listeners."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from vigil.server.config import tables as t
from vigil.server.config.migrate import engine_for
from vigil.server.config.model import PollSpec, doc_from_dict
from vigil.server.config.repo import ConfigRepo, PollConfig, PollItem
from vigil.server.config.tables import ItemType, ValueType
from vigil.server.ingest.batcher import Batcher
from vigil.server.pollers.scheduler import PollerSettings, Scheduler, nextcheck
from vigil.server.store import open_store
from vigil.server.store.base import WriteBatch

from tests.conftest import free_port
from tests.server.pollers import httpserver
from tests.server.pollers.conftest import Listener, run_vigil_agent

FAST = PollerSettings(pollers=20, timeout=2, unreachable_period=2, unreachable_delay=1, unavailable_delay=1,
                      config_refresh=0.2, flush_interval=0.05)


# --- the schedule's spread (computed offsets, no timings) -----------------------------------------

def test_ten_thousand_items_spread_evenly_over_their_interval() -> None:
    now = 1_700_000_000.25
    due = [nextcheck(i, 60, now) for i in range(1, 10_001)]
    assert all(now < d <= now + 60 for d in due)
    per_second = Counter(int(d) % 60 for d in due)
    assert len(per_second) == 60  # every second of the minute has its share
    assert max(per_second.values()) - min(per_second.values()) <= 1  # 166 or 167 each, none at a pile-up
    assert all(d % 60 == i % 60 for i, d in zip(range(1, 10_001), due, strict=True))


def test_an_item_keeps_its_slot_whenever_it_is_scheduled() -> None:
    slots = {nextcheck(4242, 300, now) % 300 for now in (1_000_000, 1_000_123.9, 1_000_299, 2_000_001)}
    assert slots == {4242 % 300}
    assert nextcheck(5, 10, 100) == 105 and nextcheck(5, 10, 105) == 115  # strictly after now
    assert nextcheck(7, 0, 100) == 101  # a zero interval is taken as 1 s, never a busy loop


def test_the_scheduler_puts_each_item_at_its_computed_slot() -> None:
    now = 1_700_000_000.0
    items = {i: PollItem(i, 1, "h", ItemType.SIMPLE, ValueType.FLOAT, f"k{i}", 60, None, PollSpec())
             for i in range(1, 1001)}
    sched = Scheduler(None, _collect([]), FAST, clock=lambda: now)  # type: ignore[arg-type]
    sched.load(PollConfig(1, items, {}, {}))
    assert sched.schedule_of() == {i: nextcheck(i, 60, now) for i in items}


# --- against real peers ---------------------------------------------------------------------------

def _collect(batches: list[WriteBatch]) -> Callable[[WriteBatch], Any]:
    async def submit(b: WriteBatch) -> None:
        batches.append(b)
    return submit


def _values(batches: list[WriteBatch], itemid: int) -> list[Any]:
    out = []
    for b in batches:
        for rows in (b.floats, b.uints, b.strs, b.texts):
            out += [r[3] for r in rows if r[0] == itemid]
    return out


@pytest.fixture
def repo(migrated_url: str) -> Iterator[ConfigRepo]:
    engine = engine_for(migrated_url)
    try:
        yield ConfigRepo(engine)
    finally:
        engine.dispose()


def _import(repo: ConfigRepo, text: str) -> dict[str, int]:
    repo.apply(doc_from_dict(yaml.safe_load(text)))
    with repo.engine.connect() as c:
        return dict(c.execute(sa.select(t.items.c.key_, t.items.c.itemid)).all())


def _interface(repo: ConfigRepo) -> dict[str, Any]:
    with repo.engine.connect() as c:
        r = c.execute(sa.select(t.interfaces)).one()
        return dict(r._mapping)


def _state(repo: ConfigRepo, itemid: int) -> tuple[int, str] | None:
    with repo.engine.connect() as c:
        r = c.execute(sa.select(t.item_state.c.state, t.item_state.c.error)
                      .where(t.item_state.c.itemid == itemid)).first()
        return (r.state, r.error) if r else None


async def _run_until(sched: Scheduler, done: Callable[[], bool], timeout: float, what: str) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(sched.run(stop))
    try:
        deadline = time.monotonic() + timeout
        while not done():
            if task.done():
                task.result()
                raise AssertionError(f"the scheduler stopped before {what}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await task


def _host(port: int, items: str, extra: str = "") -> str:
    return f"""
hosts:
  - host: h1
    interfaces:
      - {{type: agent, address: 127.0.0.1, port: {port}}}
    items:
{items}
{extra}"""


def test_agent_values_are_stored_and_unsupported_keys_recorded(repo: ConfigRepo, migrated_url: str,
                                                               zabbix_agentd: int) -> None:
    ids = _import(repo, _host(zabbix_agentd, """
      - {key: agent.ping, type: agent, value_type: unsigned, delay: 1s}
      - {key: no.such.key, type: agent, value_type: text, delay: 1s}
      - {key: agent.hostname, type: agent, value_type: float, delay: 1s}
"""))
    batcher = Batcher(lambda: open_store(migrated_url), 1000)

    async def main() -> None:
        batcher.start()
        sched = Scheduler(repo, batcher.submit, FAST)
        await _run_until(sched, lambda: sched.stats.values >= 2 and _state(repo, ids["agent.hostname"]) is not None
                         and _state(repo, ids["no.such.key"]) is not None, 15, "values and states")

    try:
        asyncio.run(main())
    finally:
        batcher.stop()
    store = open_store(migrated_url)
    try:
        rows = store.history(ids["agent.ping"], ValueType.UNSIGNED, 0, 2**31 - 1)
    finally:
        store.close()
    assert len(rows) >= 2 and {r[-1] for r in rows} == {1}
    state, error = _state(repo, ids["no.such.key"])  # type: ignore[misc]
    assert state == 1 and "Unsupported item key" in error
    state, error = _state(repo, ids["agent.hostname"])  # type: ignore[misc]
    assert state == 1 and 'value "zbx-peer" is not suitable for value type "Numeric (float)"' in error
    itf = _interface(repo)
    assert (itf["available"], itf["error"], itf["errors_from"]) == (1, "", 0)


def test_an_unreachable_interface_backs_off_becomes_unavailable_and_comes_back(repo: ConfigRepo,
                                                                               tmp_path: Path) -> None:
    port = free_port()
    keys = "\n".join(f"      - {{key: 'agent.ping[{i}]', type: agent, value_type: unsigned, delay: 1s}}"
                     for i in range(5))
    _import(repo, _host(port, "      - {key: agent.ping, type: agent, value_type: unsigned, delay: 1s}\n" + keys))
    batches: list[WriteBatch] = []
    sched = Scheduler(repo, _collect(batches), FAST)

    def unavailable() -> bool:
        itf = _interface(repo)
        return itf["available"] == 2

    asyncio.run(_run_until(sched, unavailable, 20, "the interface to become unavailable"))
    itf = _interface(repo)
    assert f"cannot connect to [[127.0.0.1]:{port}]" in itf["error"]
    assert itf["errors_from"] > 0 and itf["disable_until"] > itf["errors_from"]
    assert batches == [] or all(len(b) == 0 for b in batches)
    # Six items, each due every second, for the 2 s until unavailable and after: one probe at a time, not six.
    assert sched.stats.network_errors < sched.stats.polls + 1 and sched.stats.polls <= 6 + 6
    agent = run_vigil_agent(tmp_path, port)
    next(agent)
    try:
        asyncio.run(_run_until(sched, lambda: _interface(repo)["available"] == 1 and len(
            [v for b in batches for v in b.uints]) >= 6, 20, "the interface to be available with values"))
    finally:
        agent.close()
    itf = _interface(repo)
    assert (itf["error"], itf["errors_from"], itf["disable_until"]) == ("", 0, 0)


def test_a_device_that_never_answers_does_not_delay_the_others(repo: ConfigRepo, zabbix_agentd: int,
                                                               silent: Listener) -> None:
    ids = _import(repo, f"""
hosts:
  - host: slow
    interfaces: [{{type: agent, address: 127.0.0.1, port: {silent.port}}}]
    items:
      - {{key: agent.ping, type: agent, value_type: unsigned, delay: 1s}}
  - host: quick
    interfaces: [{{type: agent, address: 127.0.0.1, port: {zabbix_agentd}}}]
    items:
      - {{key: agent.ping, type: agent, value_type: unsigned, delay: 1s}}
""")
    with repo.engine.connect() as c:
        quick = c.execute(sa.select(t.items.c.itemid).join(t.hosts, t.hosts.c.hostid == t.items.c.hostid)
                          .where(t.hosts.c.host == "quick")).scalar()
    assert quick in ids.values()
    batches: list[WriteBatch] = []
    sched = Scheduler(repo, _collect(batches), PollerSettings(pollers=4, timeout=30, config_refresh=0.2,
                                                              flush_interval=0.05))
    asyncio.run(_run_until(sched, lambda: len(_values(batches, quick)) >= 3, 15, "three values of the quick host"))
    # The slow device's first poll is still waiting for its answer (30 s time-out) while the quick one gave 3.
    assert silent.accepted == 1 and sched.stats.network_errors == 0


def test_no_more_polls_at_once_than_the_setting(repo: ConfigRepo, silent: Listener) -> None:
    hosts = "\n".join(f"""  - host: s{i}
    interfaces: [{{type: agent, address: 127.0.0.1, port: {silent.port}}}]
    items: [{{key: agent.ping, type: agent, value_type: unsigned, delay: 1s}}]""" for i in range(6))
    _import(repo, "hosts:\n" + hosts)
    sched = Scheduler(repo, _collect([]), PollerSettings(pollers=2, timeout=30, config_refresh=0.2))

    async def main() -> None:
        await _run_until(sched, lambda: silent.accepted >= 2, 10, "two connections")
    asyncio.run(main())
    time.sleep(0.5)
    assert silent.max_open == 2 and sched.stats.polls == 2


def test_dependent_items_and_preprocessing_with_custom_on_fail(repo: ConfigRepo) -> None:
    srv = httpserver.start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}"
        ids = _import(repo, f"""
hosts:
  - host: web
    items:
      - {{key: page, type: http_agent, value_type: text, delay: 1s, url: '{url}/ok'}}
      - {{key: page.copy, type: dependent, value_type: char, master_item: page}}
      - {{key: page.copy.copy, type: dependent, value_type: char, master_item: page.copy}}
      - key: page.letter
        type: dependent
        value_type: char
        master_item: page
        preprocessing: [{{type: regex, params: ['h(e)llo', '\\1']}}, {{type: str_replace, params: [e, E]}}]
      - key: page.number
        type: dependent
        value_type: float
        master_item: page
        preprocessing: [{{type: regex, params: ['(\\d+)', '\\1']}}]
      - key: page.number.or.zero
        type: dependent
        value_type: unsigned
        master_item: page
        preprocessing:
          - {{type: regex, params: ['(\\d+)', '\\1'], error_handler: custom_value, error_handler_params: '7'}}
          - {{type: multiplier, params: '6'}}
      - key: page.number.or.error
        type: dependent
        value_type: float
        master_item: page
        preprocessing:
          - {{type: regex, params: ['(\\d+)', '\\1'], error_handler: custom_error, error_handler_params: no digits}}
      - key: page.discarded
        type: dependent
        value_type: float
        master_item: page
        preprocessing: [{{type: regex, params: ['(\\d+)', '\\1'], error_handler: discard_value}}]
      - {{key: missing, type: http_agent, value_type: text, delay: 1s, url: '{url}/status/404'}}
      - {{key: missing.copy, type: dependent, value_type: text, master_item: missing}}
      - key: missing.rescued
        type: http_agent
        value_type: char
        delay: 1s
        url: '{url}/status/404'
        preprocessing: [{{type: check_not_supported, error_handler: custom_value, error_handler_params: gone}}]
""")
        batches: list[WriteBatch] = []
        sched = Scheduler(repo, _collect(batches), FAST)
        asyncio.run(_run_until(sched, lambda: _values(batches, ids["page.copy.copy"]) and
                               _values(batches, ids["missing.rescued"]) and _state(repo, ids["page.number"]) and
                               _state(repo, ids["page.number.or.error"]) and _state(repo, ids["missing"]), 10,
                               "the dependent items' values and states"))
    finally:
        httpserver.stop(srv)
    assert set(_values(batches, ids["page"])) == set(_values(batches, ids["page.copy"])) == {"hello"}
    assert set(_values(batches, ids["page.copy.copy"])) == {"hello"}
    assert set(_values(batches, ids["page.letter"])) == {"E"}
    assert set(_values(batches, ids["page.number.or.zero"])) == {42}
    state, error = _state(repo, ids["page.number"])  # type: ignore[misc]
    assert state == 1 and error.startswith("step 1 (Regular expression)")
    assert _state(repo, ids["page.number.or.error"]) == (1, "no digits")
    assert _values(batches, ids["page.discarded"]) == [] and _state(repo, ids["page.discarded"]) is None
    assert _state(repo, ids["missing"]) == (1, 'Response code "404" did not match any of the required status '
                                               'codes "200"')
    assert _values(batches, ids["missing.copy"]) == []
    assert set(_values(batches, ids["missing.rescued"])) == {"gone"}


def test_items_that_cannot_be_polled_say_why(repo: ConfigRepo) -> None:
    ids = _import(repo, """
hosts:
  - host: bare
    items:
      - {key: agent.ping, type: agent, value_type: unsigned, delay: 1s}
      - {key: 'ipmi.sensor', type: ipmi, ipmi_sensor: CPU Temp, value_type: float, delay: 1s}
      - {key: 'late', type: simple, value_type: float, delay: '{$NO.SUCH.MACRO}'}
""")
    sched = Scheduler(repo, _collect([]), FAST)
    asyncio.run(_run_until(sched, lambda: all(_state(repo, i) for i in ids.values()), 10, "three states"))
    assert "no agent interface" in _state(repo, ids["agent.ping"])[1]  # type: ignore[index]
    assert "no ipmi interface" in _state(repo, ids["ipmi.sensor"])[1]  # type: ignore[index]
    assert "'{$NO.SUCH.MACRO}' does not resolve" in _state(repo, ids["late"])[1]  # type: ignore[index]


def test_items_added_and_removed_while_running(repo: ConfigRepo, zabbix_agentd: int) -> None:
    ids = _import(repo, _host(zabbix_agentd, "      - {key: agent.ping, type: agent, value_type: unsigned, "
                                             "delay: 1s}"))
    batches: list[WriteBatch] = []
    sched = Scheduler(repo, _collect(batches), FAST)

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(sched.run(stop))
        try:
            for _ in range(200):
                if _values(batches, ids["agent.ping"]):
                    break
                await asyncio.sleep(0.05)
            await asyncio.to_thread(_import, repo, _host(zabbix_agentd, """
      - {key: agent.ping, type: agent, value_type: unsigned, delay: 1s}
      - {key: system.cpu.num, type: agent, value_type: unsigned, delay: 1s}"""))
            for _ in range(200):
                if any(r[0] != ids["agent.ping"] for b in batches for r in b.uints):
                    break
                await asyncio.sleep(0.05)
        finally:
            stop.set()
            await task

    asyncio.run(main())
    new = {r[0] for b in batches for r in b.uints} - {ids["agent.ping"]}
    assert len(new) == 1 and sched.items[new.pop()].key == "system.cpu.num"


def test_with_the_trigger_engine_not_supported_items_go_to_it(repo: ConfigRepo) -> None:
    ids = _import(repo, """
hosts:
  - host: bare
    items: [{key: agent.ping, type: agent, value_type: unsigned, delay: 1s}]
""")
    told: list[tuple[int, int, str]] = []
    sched = Scheduler(repo, _collect([]), FAST, unsupported=told.extend)
    asyncio.run(_run_until(sched, lambda: bool(told), 10, "the engine to be told"))
    assert [(i, e) for i, _, e in told] == [(ids["agent.ping"], told[0][2])] and "no agent interface" in told[0][2]
    assert _state(repo, ids["agent.ping"]) is None  # the engine writes item_state, not the scheduler


APP = """
hosts:
  - host: app1
    items:
      - {key: app.stats, type: trapper, value_type: text}
"""
APP_DEPENDENT = APP + """      - key: app.requests
        type: dependent
        master_item: app.stats
        value_type: unsigned
        preprocessing: [{type: jsonpath, params: ['$.requests']}]
"""


def test_the_pollers_take_a_new_configuration_in_the_same_step_as_ingest(repo: ConfigRepo) -> None:
    """A trapper value ingest accepts under a configuration reaches the dependent items that
    configuration has: the pollers load theirs before they start and then with ingest's snapshot,
    not on a timer of their own (an hour here) that may lag behind it."""
    from vigil.server.ingest.cache import ConfigCache
    from vigil.server.pollers.scheduler import start
    from vigil.server.settings import Settings

    _import(repo, APP)
    batches: list[WriteBatch] = []

    async def go() -> None:
        cache = ConfigCache(repo)
        pollers = start(Settings.from_env({"VIGIL_CONFIG_REFRESH": "3600"}), repo, _collect(batches),
                        follow=cache.follow)
        assert pollers is not None
        sched = pollers.scheduler
        try:
            assert sched.version == cache.snapshot.version and sched.dependents == {}
            ids = _import(repo, APP_DEPENDENT)
            assert sched.dependents == {}  # ingest has not seen it either
            assert await cache.reload()
            assert sched.version == cache.snapshot.version
            assert sched.dependents == {ids["app.stats"]: [ids["app.requests"]]}
            b = WriteBatch()
            b.texts.append((ids["app.stats"], 1_700_000_000, 5, '{"requests": 42}'))
            sched.received(b)
            assert not await cache.reload()  # nothing changed: nothing reloaded
        finally:
            await pollers.stop()  # hands the dependent value to submit
        assert _values(batches, ids["app.requests"]) == [42]

    asyncio.run(go())


def test_a_follower_that_cannot_read_its_part_leaves_both_on_the_old_configuration(repo: ConfigRepo) -> None:
    from vigil.server.ingest.cache import ConfigCache

    _import(repo, APP)
    cache = ConfigCache(repo)
    before = cache.snapshot
    applied: list[str] = []
    away = [True]

    def fetch() -> str:
        if away[0]:
            raise OSError("database away")
        return "part"

    cache.follow(fetch, applied.append)
    _import(repo, APP_DEPENDENT)
    with pytest.raises(OSError, match="database away"):
        asyncio.run(cache.reload())
    assert cache.snapshot is before and applied == []  # ingest does not move ahead of its follower
    away[0] = False
    assert asyncio.run(cache.reload())
    assert cache.snapshot.version > before.version and applied == ["part"]
