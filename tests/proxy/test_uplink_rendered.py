"""Batches rendered by SQLite (ProxyBuffer.batch_after_json, Outbox.prepare_after): the same records in
the same JSON as HistoryRecord.to_json(), the general path for any batch with other records, and a drain
that goes on to small messages afterwards."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from vigil.agent.protocol import zbxd
from vigil.proxy.buffer import ProxyBuffer
from vigil.proxy.uplink import prepare

from tests.proxy.test_uplink import Recorder, db, fill, uplink  # noqa: F401  (db: the fixture)


def sent(frame: bytes) -> dict:
    return json.loads(zbxd.decode(frame)[1])


def test_a_rendered_batch_carries_what_the_records_would(db: Path) -> None:  # noqa: F811
    fill(db, 25)
    buf = ProxyBuffer(db)
    buf.write_unsupported([(1, 1_800_000_100, "gone")])  # id 26: not a plain record
    buf.close()
    fill(db, 5, start=100)
    up, outbox, buf = uplink(db, "127.0.0.1:1")
    first = prepare(outbox.take(limit=10))
    second = outbox.prepare_after(first, 10)
    assert second.span == (11, 20, 10) and second.data.history == [] and second.data.more
    assert sent(second.frame)["history data"] == [r.to_json() for r in buf.batch_after(10, 10)]
    assert sent(second.frame)["buffer"] == 21
    assert outbox.acknowledged(first.data, second.data, then_span=second.span)
    third = outbox.prepare_after(second, 10)  # ids 21..30 hold the not-supported record: read as records
    assert third.span is None and [r.id for r in third.data.history] == list(range(21, 31))
    assert third.data.history[5].state == 1
    assert sent(third.frame)["history data"] == [r.to_json() for r in buf.batch_after(20, 10)]
    assert outbox.acknowledged(second.data, third.data, span=second.span)
    assert buf.inflight() == (up.session, 21, 30)
    assert buf.unsent() == 11  # 31 buffered, 20 acknowledged
    buf.close()


def test_a_drain_delivers_every_record_once_in_order_then_small_messages_follow(db: Path) -> None:  # noqa: F811
    fill(db, 25_003)

    async def go() -> Recorder:
        async with Recorder(["success", "success", "close"]) as rec:  # the third batch's reply is lost
            up, outbox, buf = uplink(db, f"127.0.0.1:{rec.port}")
            for _ in range(10):
                if not await up.send_data(outbox, pipeline=True):
                    break
            fill(db, 3, start=30_000)
            for _ in range(3):
                await up.send_data(outbox, pipeline=True)
            assert buf.unsent() == 0
            buf.close()
        return rec

    rec = asyncio.run(go())
    ids = [r["id"] for req in rec.requests for r in req.get("history data", [])]
    got = sorted(set(ids))
    assert got == list(range(1, 25_007))  # every record went
    for req in rec.requests:  # each message's ids increase
        mine = [r["id"] for r in req.get("history data", [])]
        assert mine == sorted(set(mine))
    assert len(ids) - len(got) == 5_003  # the batch whose reply was lost went again, nothing else
    values = {r["value"] for req in rec.requests for r in req.get("history data", [])}
    assert {"30000", "30001", "30002"} <= values  # what came after the drain went too
