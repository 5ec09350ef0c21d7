"""The proxy's durable buffer: a Store whose write() appends to an outbox in the proxy's SQLite file,
read oldest first with increasing ids, acknowledged (deleted, or kept for ProxyLocalBuffer), and
expired after ProxyOfflineBuffer with the dropped values counted."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from vigil.proxy.buffer import ProxyBuffer
from vigil.proxy.localconfig import LocalConfig, open_local
from vigil.server.config import tables as t
from vigil.server.config.tables import ValueType
from vigil.server.store.base import StoreError, WriteBatch

NOW = 1_800_000_000


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "proxy.db"
    engine = open_local(path)
    LocalConfig(engine).apply_json({
        "hosts": {"fields": ["hostid", "host", "status"], "data": [[10, "h", 0]]},
        "items": {"fields": ["itemid", "hostid", "key_", "type", "value_type"],
                  "data": [[1, 10, "f", 2, 0], [2, 10, "u", 2, 3], [3, 10, "s", 2, 1], [4, 10, "t", 2, 4],
                           [5, 10, "log[/x]", 7, 2]]},
        "item_rtdata": {"fields": ["itemid", "lastlogsize", "mtime"], "data": [[5, 0, 0]]},
    })
    engine.dispose()
    return path


def batch_of_every_kind(clock: int = NOW) -> WriteBatch:
    b = WriteBatch()
    b.floats.append((1, clock, 1, 0.5))
    b.uints.append((2, clock, 2, 2**64 - 1))
    b.strs.append((3, clock, 3, "str"))
    b.texts.append((4, clock, 4, "text\nlines"))
    b.logs.append((5, clock, 5, 111, "src", 2, "first line", 7))
    b.logs.append((5, clock, 6, 0, "", 0, "second line", 0))
    b.logpos[5] = (300, 0)
    b.sessions["agent-session"] = 42
    return b


def test_write_then_batch_oldest_first_with_every_field(db: Path) -> None:
    buf = ProxyBuffer(db)
    buf.write(batch_of_every_kind())
    got = buf.batch()
    assert [r.id for r in got] == sorted(r.id for r in got) and len({r.id for r in got}) == 6
    assert [(r.itemid, r.ns, r.value) for r in got] == [
        (1, 1, "0.5"), (2, 2, str(2**64 - 1)), (3, 3, "str"), (4, 4, "text\nlines"), (5, 5, "first line"),
        (5, 6, "second line")]
    first_log, last_log = got[4], got[5]
    assert (first_log.timestamp, first_log.source, first_log.severity, first_log.logeventid) == (111, "src", 2, 7)
    assert first_log.lastlogsize is None and (last_log.lastlogsize, last_log.mtime) == (300, 0)
    assert buf.sessions() == {"agent-session": 42}
    assert buf.log_positions()[5] == (300, 0)  # what the proxy tells its active agents
    assert buf.unsent() == 6
    buf.close()


def test_durable_across_reopen_and_ids_keep_increasing(db: Path) -> None:
    buf = ProxyBuffer(db)
    buf.write(batch_of_every_kind())
    ids = [r.id for r in buf.batch()]
    buf.ack(buf.batch())
    buf.close()
    buf = ProxyBuffer(db)
    assert buf.unsent() == 0 and buf.sessions() == {"agent-session": 42}
    buf.write(batch_of_every_kind())
    assert min(r.id for r in buf.batch()) > max(ids)  # never reused, even after the rows went
    buf.close()


def test_a_position_without_a_line_is_a_record_of_its_own(db: Path) -> None:
    buf = ProxyBuffer(db)
    b = WriteBatch()
    b.logpos[5] = (10, 0)
    buf.write(b)
    (r,) = buf.batch()
    assert (r.itemid, r.value, r.lastlogsize) == (5, None, 10)
    buf.close()


def test_batch_limit_and_ack_of_a_part(db: Path) -> None:
    buf = ProxyBuffer(db)
    b = WriteBatch()
    b.uints += [(2, NOW + i, 0, i) for i in range(25)]
    buf.write(b)
    first = buf.batch(10)
    assert [r.value for r in first] == [str(i) for i in range(10)]
    assert buf.batch(10) == first  # not acknowledged: the same records, the same ids
    buf.ack(first)
    assert [r.value for r in buf.batch(10)] == [str(i) for i in range(10, 20)]
    assert buf.unsent() == 15
    buf.close()


def test_local_buffer_keeps_sent_values_for_its_hours(db: Path) -> None:
    buf = ProxyBuffer(db, local_hours=2)
    b = WriteBatch()
    b.uints += [(2, NOW, 0, i) for i in range(5)]
    buf.write(b)
    buf.ack(buf.batch(), now=NOW)
    assert (buf.unsent(), buf.sent_kept(), buf.batch()) == (0, 5, [])
    assert buf.expire(NOW + 2 * 3600 - 1) == 0 and buf.sent_kept() == 5
    assert buf.expire(NOW + 2 * 3600 + 1) == 0 and buf.sent_kept() == 0
    assert buf.dropped() == 0  # sent values going is no loss
    buf.close()


def test_expiry_drops_only_unsent_values_past_the_offline_buffer_and_counts_them(db: Path) -> None:
    buf = ProxyBuffer(db, offline_hours=1)
    b = WriteBatch()
    b.uints += [(2, NOW - 3600 - 10 + i, 0, i) for i in range(20)]  # 10 older than an hour at NOW, 10 not
    buf.write(b)
    assert buf.expire(NOW) == 10
    assert [r.value for r in buf.batch()] == [str(i) for i in range(10, 20)]
    assert buf.expire(NOW) == 0
    buf.close()
    buf = ProxyBuffer(db, offline_hours=1)
    assert buf.dropped() == 10  # the total is kept in the file
    buf.close()


def test_not_supported_states_are_records_with_state_1(db: Path) -> None:
    buf = ProxyBuffer(db)
    buf.write_unsupported([(2, NOW, "Cannot evaluate")])
    (r,) = buf.batch()
    assert (r.itemid, r.clock, r.state, r.value) == (2, NOW, 1, "Cannot evaluate")
    buf.close()


def test_history_reads_are_refused_clearly(db: Path) -> None:
    buf = ProxyBuffer(db)
    for call in (lambda: buf.history(1, ValueType.FLOAT, 0, NOW), lambda: buf.trends(1, ValueType.FLOAT, 0, NOW),
                 lambda: buf.latest({1: ValueType.FLOAT}), lambda: buf.rollup_trends(NOW),
                 lambda: buf.housekeep(NOW, []), lambda: buf.log_history(5, 0, NOW)):
        with pytest.raises(StoreError, match="the proxy's buffer keeps no history"):
            call()
    buf.close()


def test_a_failed_write_buffers_nothing(db: Path) -> None:
    buf = ProxyBuffer(db)
    b = batch_of_every_kind()
    b.uints.append((2, 2**70, 0, 1))  # a clock no SQLite integer holds
    with pytest.raises(StoreError, match="nothing was buffered"):
        buf.write(b)
    assert buf.unsent() == 0 and buf.sessions() == {}
    buf.close()


def test_not_a_proxy_database(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no proxy database"):
        ProxyBuffer(tmp_path / "missing.db")


def test_prune_sessions(db: Path) -> None:
    buf = ProxyBuffer(db)
    buf.write(batch_of_every_kind())
    assert buf.prune_sessions(int(time.time()) + 10) == 1 and buf.sessions() == {}
    buf.close()
    engine = sa.create_engine(f"sqlite:///{db}")
    with engine.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(t.agent_sessions)).scalar() == 0
    engine.dispose()
