"""Log positions that never move backwards through out-of-order commits, and agent sessions pruned, on
both stores."""

from __future__ import annotations

import time

import sqlalchemy as sa
from vigil.server.config.migrate import engine_for
from vigil.server.store.base import Store, WriteBatch


def _log_items(url: str, *itemids: int, key: str = "logrt") -> None:
    engine = engine_for(url)
    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO hosts (hostid, host) VALUES (1, 'h')"))
        for i in itemids:
            c.execute(sa.text("INSERT INTO items (itemid, hostid, key_, type, value_type) "
                              f"VALUES ({i}, 1, '{key}[/var/log/x{i}]', 7, 2)"))
    engine.dispose()


def test_a_log_position_never_moves_back_in_the_same_file(store: Store, migrated_url: str) -> None:
    """Two writers may commit a later batch first: the earlier one must not rewind the position."""
    _log_items(migrated_url, 10)
    store.write(WriteBatch(logpos={10: (1000, 500)}))
    store.write(WriteBatch(logpos={10: (400, 500)}))  # committed late, from before
    assert store.log_positions() == {10: (1000, 500)}
    store.write(WriteBatch(logpos={10: (1200, 500)}))
    assert store.log_positions() == {10: (1200, 500)}


def test_a_rotated_file_may_start_smaller(store: Store, migrated_url: str) -> None:
    """logrt[]: a newer file (later mtime) is read from its start, as zabbix_agentd reports it."""
    _log_items(migrated_url, 10)
    store.write(WriteBatch(logpos={10: (1000, 500)}))
    store.write(WriteBatch(logpos={10: (20, 600)}))
    assert store.log_positions() == {10: (20, 600)}
    store.write(WriteBatch(logpos={10: (5000, 500)}))  # the old file's position, committed late
    assert store.log_positions() == {10: (20, 600)}


def test_a_truncated_log_file_restarts_its_position(store: Store, migrated_url: str) -> None:
    """log[]: zabbix_agentd sends no mtime; after a truncation it sends the smaller size, which Zabbix takes."""
    _log_items(migrated_url, 10, key="log")
    store.write(WriteBatch(logpos={10: (1000, 0)}))
    store.write(WriteBatch(logpos={10: (30, 0)}))
    assert store.log_positions() == {10: (30, 0)}


def test_a_log_items_mtime_is_no_time(store: Store, migrated_url: str) -> None:
    """log[]: vigil-agent keeps its fingerprint of the file in mtime; positions are taken as they come."""
    _log_items(migrated_url, 10, key="log")
    store.write(WriteBatch(logpos={10: (1000, 987654)}))
    store.write(WriteBatch(logpos={10: (1200, 123)}))  # grew: another fingerprint, a smaller number
    assert store.log_positions() == {10: (1200, 123)}


def test_sessions_silent_for_a_day_are_pruned(store: Store, migrated_url: str) -> None:
    store.write(WriteBatch(sessions={"old": 5, "new": 7}))
    engine = engine_for(migrated_url)
    with engine.begin() as c:
        c.execute(sa.text("UPDATE agent_sessions SET updated = :t WHERE session = 'old'"),
                  {"t": int(time.time()) - store.SESSION_EXPIRY - 60})
    engine.dispose()
    assert store.prune_sessions(int(time.time()) - store.SESSION_EXPIRY) == 1
    assert store.sessions() == {"new": 7}
