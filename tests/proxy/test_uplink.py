"""The active uplink against a recording server that answers as the test says: the same records go
again with the same ids after `failed`, no reply or a broken connection; a full batch sets "more" and
the next follows at once; every message carries "buffer"; a cluster's next node is tried when one is
down. The passive side's checks on who asks and what."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from vigil.agent.protocol import zbxd
from vigil.proxy.buffer import ProxyBuffer
from vigil.proxy.conf import ProxyConf
from vigil.proxy.localconfig import LocalConfig, open_local
from vigil.proxy.uplink import ActiveUplink, Outbox, PassiveUplink, allowed
from vigil.server.config import tables as t
from vigil.server.store.base import WriteBatch

from tests.conftest import free_port


class Recorder:
    """A server on loopback: records each request; answers with the next of `answers`
    ("success", "failed", "close": no reply), then "success"."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = list(answers)
        self.requests: list[dict[str, Any]] = []
        self.port = free_port()
        self.server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        header, payload = await zbxd.read_raw_frame(reader, 1 << 30, 1 << 30)
        self.requests.append(json.loads(zbxd.decode_body(header, payload)))
        answer = self.answers.pop(0) if self.answers else "success"
        if answer != "close":
            body = {"response": answer} if answer == "success" else {"response": "failed", "info": "test"}
            writer.write(zbxd.encode(json.dumps(body).encode()))
            await writer.drain()
        writer.close()

    async def __aenter__(self) -> Recorder:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "proxy.db"
    engine = open_local(path)
    LocalConfig(engine).apply_json({
        "hosts": {"fields": ["hostid", "host", "status"], "data": [[10, "h", 0]]},
        "interface": {"fields": ["interfaceid", "hostid", "type", "ip", "port"],
                      "data": [[20, 10, 1, "127.0.0.1", "10050"]]},
        "items": {"fields": ["itemid", "hostid", "key_", "type", "value_type"], "data": [[1, 10, "u", 2, 3]]},
    })
    with engine.begin() as c:  # as the pollers' scheduler records it
        c.execute(sa.update(t.interfaces).values(available=1))
    engine.dispose()
    return path


def fill(db: Path, n: int, start: int = 0) -> None:
    buf = ProxyBuffer(db)
    b = WriteBatch()
    b.uints += [(1, 1_800_000_000 + i, i, i) for i in range(start, start + n)]
    buf.write(b)
    buf.close()


def uplink(db: Path, server: str) -> tuple[ActiveUplink, Outbox, ProxyBuffer]:
    conf = ProxyConf(Server=server, Hostname="px", DBName=str(db), Timeout=2)
    local = LocalConfig(open_local(db))
    up = ActiveUplink(conf, local, lambda: ProxyBuffer(db))
    buf = ProxyBuffer(db)
    return up, Outbox(buf, local.engine, up.session, "px"), buf


def history(req: dict[str, Any]) -> list[tuple[int, str]]:
    return [(r["id"], r["value"]) for r in req.get("history data", [])]


@pytest.mark.parametrize("fault", ["failed", "close"])
def test_records_go_again_with_the_same_ids_until_acknowledged(db: Path, fault: str) -> None:
    fill(db, 5)

    async def go() -> Recorder:
        async with Recorder([fault, fault]) as rec:
            up, outbox, buf = uplink(db, f"127.0.0.1:{rec.port}")
            assert await up.send_data(outbox) is False
            fill(db, 2, start=5)  # new values meanwhile: they follow the old ones, with higher ids
            assert await up.send_data(outbox) is False
            assert await up.send_data(outbox) is False
            assert buf.unsent() == 0
            assert await up.send_data(outbox) is False  # nothing left: an empty proxy data
            buf.close()
            return rec

    rec = asyncio.run(go())
    first, second, third, empty = rec.requests
    assert history(second)[:5] == history(first) and history(third) == history(second)
    ids = [i for i, _ in history(third)]
    assert ids == sorted(ids) and len(ids) == 7
    assert {r["session"] for r in rec.requests} == {first["session"]} and len(first["session"]) == 32
    assert [r["buffer"] for r in rec.requests] == [5, 7, 7, 0]
    assert "history data" not in empty and empty["request"] == "proxy data" and empty["host"] == "px"
    assert first["interface availability"] == [{"interfaceid": 20, "available": 1, "error": ""}]
    assert "interface availability" in second and "interface availability" not in empty  # sent once acknowledged


def test_after_a_restart_an_unacknowledged_batch_goes_under_its_old_session_first(db: Path) -> None:
    fill(db, 5)

    async def go() -> tuple[Recorder, str, str]:
        async with Recorder(["close"]) as rec:
            old, outbox, buf = uplink(db, f"127.0.0.1:{rec.port}")
            assert await old.send_data(outbox) is False  # the server may have stored it: no reply seen
            buf.close()
            fill(db, 3, start=5)  # collected after the restart
            new, outbox, buf = uplink(db, f"127.0.0.1:{rec.port}")
            assert new.session != old.session
            assert await new.send_data(outbox) is True  # the old batch; the rest follows at once
            assert await new.send_data(outbox) is False
            assert buf.unsent() == 0 and buf.inflight() is None
            buf.close()
            return rec, old.session, new.session

    rec, old, new = asyncio.run(go())
    first, resent, rest = rec.requests
    assert (first["session"], resent["session"], rest["session"]) == (old, old, new)
    assert history(resent) == history(first) and len(history(first)) == 5
    assert [v for _, v in history(rest)] == ["5", "6", "7"] and history(rest)[0][0] > history(first)[-1][0]


def test_an_old_in_flight_batch_that_expired_meanwhile_is_forgotten(db: Path) -> None:
    fill(db, 2)
    buf = ProxyBuffer(db)
    buf.sending("a" * 32, buf.batch())
    assert buf.inflight() is not None
    assert buf.expire(now=2_000_000_000) == 2  # past ProxyOfflineBuffer before the restart: nothing left of it
    fill(db, 1, start=2)
    local = LocalConfig(open_local(db))
    outbox = Outbox(buf, local.engine, "b" * 32, "px")
    data, _ = outbox.take()
    assert data.session == "b" * 32 and [r.value for r in data.history] == ["2"]
    buf.close()


def test_a_full_batch_says_more_and_the_next_follows(db: Path) -> None:
    fill(db, 12_000)

    async def go() -> Recorder:
        async with Recorder([]) as rec:
            up, outbox, buf = uplink(db, f"127.0.0.1:{rec.port}")
            assert await up.send_data(outbox) is True
            assert await up.send_data(outbox) is False
            buf.close()
            return rec

    rec = asyncio.run(go())
    a, b = rec.requests
    assert (len(a["history data"]), a.get("more"), len(b["history data"]), b.get("more")) == (10_000, 1, 2_000, None)
    assert a["history data"][-1]["id"] < b["history data"][0]["id"]


def test_pipelined_batches_keep_their_ids_and_order_through_a_lost_reply(db: Path) -> None:
    """The data loop reads the next full batch while the server stores one; it is marked in flight
    with the acknowledgement, and after a lost reply the same records go again with the same ids."""
    fill(db, 25_000)

    async def go() -> tuple[Recorder, list[Any]]:
        async with Recorder(["success", "close"]) as rec:
            up, outbox, buf = uplink(db, f"127.0.0.1:{rec.port}")
            inflight = []
            assert await up.send_data(outbox, pipeline=True) is True
            inflight.append(buf.inflight())  # the second batch: read meanwhile, in flight before it leaves
            assert await up.send_data(outbox, pipeline=True) is False  # no reply: nothing read ahead is kept
            assert up._next is None and buf.unsent() == 15_000
            assert await up.send_data(outbox, pipeline=True) is True
            assert await up.send_data(outbox, pipeline=True) is False
            inflight.append(buf.inflight())
            assert buf.unsent() == 0
            buf.close()
            return rec, inflight

    rec, inflight = asyncio.run(go())
    first, lost, resent, last = (history(r) for r in rec.requests)
    assert len(first) == len(lost) == 10_000 and resent == lost and len(last) == 5_000
    ids = [i for i, _ in first + resent + last]
    assert ids == sorted(set(ids)) and len(ids) == 25_000
    assert inflight[0] == (rec.requests[0]["session"], lost[0][0], lost[-1][0]) and inflight[1] is None


def test_a_batch_marked_in_flight_with_the_acknowledgement_survives_a_restart(db: Path) -> None:
    fill(db, 12_000)

    async def go() -> tuple[Recorder, str]:
        async with Recorder([]) as rec:
            old, outbox, buf = uplink(db, f"127.0.0.1:{rec.port}")
            assert await old.send_data(outbox, pipeline=True) is True
            buf.close()  # killed before the batch read ahead went: it may be half-sent, for all a new run knows
            new, outbox, buf = uplink(db, f"127.0.0.1:{rec.port}")
            assert await new.send_data(outbox, pipeline=True) is True  # under the old session and ids
            assert await new.send_data(outbox, pipeline=True) is False
            assert buf.unsent() == 0 and buf.inflight() is None
            buf.close()
            return rec, old.session

    rec, old = asyncio.run(go())
    first, second, empty = rec.requests
    assert second["session"] == old and len(second["history data"]) == 2_000
    assert second["history data"][0]["id"] == first["history data"][-1]["id"] + 1
    assert "history data" not in empty


def test_a_batch_read_ahead_is_not_sent_when_expiry_dropped_part_of_it(db: Path) -> None:
    fill(db, 12_000)
    buf = ProxyBuffer(db)
    local = LocalConfig(open_local(db))
    outbox = Outbox(buf, local.engine, "b" * 32, "px")
    data, _ = outbox.take()
    nxt, _ = outbox.take_after(data)
    assert len(nxt.history) == 2_000 and nxt.history[0].id == data.history[-1].id + 1
    assert buf.expire(now=1_800_000_000 + 10_500 + 3600) == 10_500  # the oldest values outlived the buffer
    assert outbox.acknowledged(data, nxt) is False  # read again instead: only what is left goes
    assert buf.inflight() is None
    data, _ = outbox.take()
    assert [r.value for r in data.history] == [str(i) for i in range(10_500, 12_000)]
    buf.close()


def test_the_next_server_of_a_cluster_is_tried(db: Path) -> None:
    fill(db, 3)
    down = free_port()

    async def go() -> Recorder:
        async with Recorder([]) as rec:
            up, outbox, buf = uplink(db, f"127.0.0.1:{down};127.0.0.1:{rec.port}")
            await up.send_data(outbox)
            assert buf.unsent() == 0
            buf.close()
            return rec

    assert len(asyncio.run(go()).requests[0]["history data"]) == 3


def test_heartbeat_and_config_requests(db: Path) -> None:
    async def go() -> Recorder:
        async with Recorder([]) as rec:
            up, _, buf = uplink(db, f"127.0.0.1:{rec.port}")
            up.conf = ProxyConf(Server=up.conf.Server, Hostname="px", DBName=str(db), HeartbeatFrequency=1)
            stop = asyncio.Event()
            task = asyncio.create_task(up._heartbeat_loop(stop))
            await asyncio.sleep(1.5)
            stop.set()
            await task
            await up.fetch_config()  # the recorder's {"response":"success"} is no table: refused, kept
            buf.close()
            return rec

    rec = asyncio.run(go())
    assert rec.requests[0] == {"request": "proxy heartbeat", "host": "px", "version": "6.0.14", "buffer": 0}
    assert rec.requests[1] == {"request": "proxy config", "host": "px", "version": "6.0.14"}


def test_passive_checks_who_asks_and_what(db: Path) -> None:
    conf = ProxyConf(ProxyMode=1, Server="10.0.0.0/8,127.0.0.1", Hostname="px", DBName=str(db))
    passive = PassiveUplink(conf, LocalConfig(open_local(db)), lambda: ProxyBuffer(db))

    async def go() -> list[Any]:
        return [await passive.handle("proxy config", {"request": "proxy config", "data": {}}, "192.0.2.1:5000"),
                await passive.handle("proxy config", {"request": "proxy config", "hosts": {}}, "127.0.0.1:5000"),
                await passive.handle("proxy tasks", {"request": "proxy tasks"}, "10.1.2.3:5000"),
                await passive.handle("proxy heartbeat", {"request": "proxy heartbeat"}, "127.0.0.1:5000")]

    refused, no_data, tasks, heartbeat = asyncio.run(go())
    assert json.loads(refused) == {"response": "failed", "info": "connection from 192.0.2.1 is not allowed"}
    assert json.loads(no_data) == {"response": "failed", "info": "cannot find pair with name \"data\""}
    assert set(json.loads(tasks)) == {"version", "clock", "ns"}
    assert json.loads(heartbeat)["response"] == "failed"
    passive.close()


@pytest.mark.parametrize("peer, ok", [("127.0.0.1:1", True), ("10.9.9.9:1", True), ("[::ffff:10.0.0.1]:1", True),
                                      ("192.0.2.1:1", False), ("[::1]:1", False)])
def test_allowed(peer: str, ok: bool) -> None:
    assert allowed(peer, ["10.0.0.0/8", "127.0.0.1"]) is ok
