"""Real `vigil worker` processes on the real Redis (db 13) and RabbitMQ: delivery, retries, and
workers SIGKILLed before they send and while the receiver holds the request open."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from vigil.alerts.delivery import CeleryDispatcher
from vigil.server.config.migrate import engine_for, upgrade
from vigil.server.config.tables import AlertStatus, MediaKind
from vigil.server.store.alertlog import AlertLog

from tests.alerts.conftest import Mailbox, Receiver, add_media_type, new_alert, smtp_server
from tests.conftest import vigil_bin, wait_until

pytestmark = pytest.mark.slow

BROKERS = {"redis": "redis://127.0.0.1:6379/13", "amqp": "amqp://guest:guest@127.0.0.1:5672//"}
REDELIVERY = 5


@dataclass
class Broker:
    kind: str
    url: str
    queue: str

    def ready_count(self) -> int:
        """Messages in the queue that no worker has taken."""
        from amqp.exceptions import ChannelError
        from kombu import Connection

        with Connection(self.url, connect_timeout=5) as conn:
            try:
                return int(conn.default_channel.queue_declare(self.queue, passive=True).message_count)
            except ChannelError:  # Redis: an emptied queue is no key at all
                return 0


@pytest.fixture(params=sorted(BROKERS))
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    b = Broker(request.param, BROKERS[request.param], f"vigil-test-{uuid.uuid4().hex[:10]}")
    yield b
    from kombu import Connection

    with Connection(b.url, connect_timeout=5) as conn:
        try:
            conn.default_channel.queue_delete(b.queue)
        except Exception:  # noqa: BLE001 - nothing to delete
            pass


@dataclass
class Workers:
    tmp: Path
    database_url: str
    broker: Broker
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ, VIGIL_DATA_DIR=str(self.tmp / "data"), VIGIL_DATABASE_URL=self.database_url,
                   VIGIL_BROKER_URL=self.broker.url, VIGIL_ALERT_QUEUE=self.broker.queue,
                   VIGIL_ALERT_REDELIVERY=str(REDELIVERY), VIGIL_LOG_LEVEL="info")
        env.update(extra)
        return env

    def log(self, name: str) -> str:
        p = self.tmp / f"worker-{name}.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def start(self, name: str, concurrency: int = 1) -> subprocess.Popen:
        proc = subprocess.Popen(
            [vigil_bin("vigil"), "worker", "--concurrency", str(concurrency), "--hostname", f"{name}@test"],
            env=self.env(), stdout=(self.tmp / f"worker-{name}.log").open("ab"), stderr=subprocess.STDOUT,
            start_new_session=True)
        self.procs[name] = proc

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"vigil worker {name} exited {proc.returncode}: {self.log(name)[-3000:]}")
            return f"{name}@test ready." in self.log(name)

        wait_until(ready, 60, f"worker {name} to be ready")
        return proc

    def kill(self, name: str) -> None:
        proc = self.procs.pop(name)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def stop_all(self) -> None:
        for name, proc in list(self.procs.items()):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
            self.procs.pop(name)


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[Engine]:
    e = engine_for(f"sqlite:///{tmp_path / 'vigil.db'}")
    upgrade(e)
    yield e
    e.dispose()


@pytest.fixture
def workers(tmp_path: Path, sqlite_engine: Engine, broker: Broker) -> Iterator[Workers]:
    w = Workers(tmp_path, str(sqlite_engine.url), broker)
    yield w
    w.stop_all()


@pytest.fixture
def dispatcher(broker: Broker) -> Iterator[CeleryDispatcher]:
    d = CeleryDispatcher(broker.url, broker.queue, REDELIVERY)
    yield d
    d.close()


def status(log: AlertLog, alertid: int) -> AlertStatus:
    got = log.get(alertid)
    assert got is not None
    return got.status


def hook(engine: Engine, receiver: Receiver, **kw: object) -> int:
    return add_media_type(engine, f"Hook {uuid.uuid4().hex[:6]}", MediaKind.WEBHOOK,
                          {"url": receiver.url, "timeout": 3}, **kw)  # type: ignore[arg-type]


def held_by_a(workers: Workers, dispatcher: CeleryDispatcher, log: AlertLog, mediatypeid: int,
              broker: Broker) -> int:
    """A new alert whose try is not due yet (as a retry waiting out its backoff), taken by a new
    worker a, which holds it unacknowledged."""
    workers.start("a")
    a = new_alert(log, mediatypeid)
    dispatcher.app.send_task("vigil.alerts.deliver", args=[a, 0, 0.0], queue=broker.queue, countdown=3)
    wait_until(lambda: broker.ready_count() == 0, 20, "worker a to take the message")
    return a


def test_a_worker_delivers_a_webhook(workers: Workers, dispatcher: CeleryDispatcher, sqlite_engine: Engine,
                                     receiver: Receiver) -> None:
    log = AlertLog(sqlite_engine)
    mt = hook(sqlite_engine, receiver)
    workers.start("a", concurrency=2)
    dispatcher.app.send_task("vigil.alerts.deliver", args=["not an id", 0, 0.0], queue=dispatcher.queue)
    ids = [new_alert(log, mt) for _ in range(3)]
    for a in ids:
        dispatcher.dispatch(a)
    wait_until(lambda: all(status(log, a) == AlertStatus.SENT for a in ids), 40, "three alerts sent")
    assert sorted(receiver.ids()) == sorted(str(a) for a in ids)
    wait_until(lambda: "bad arguments ('not an id', 0, 0.0)" in workers.log("a"), 10, "the bad message logged")


def test_webhook_500_is_retried_logged_as_retrying_then_failed(workers: Workers, dispatcher: CeleryDispatcher,
                                                               sqlite_engine: Engine, receiver: Receiver) -> None:
    log = AlertLog(sqlite_engine)
    mt = hook(sqlite_engine, receiver, maxattempts=2, attempt_interval="3s")
    receiver.statuses = [500, 500]
    receiver.answer_body = b"boom"
    workers.start("a")
    a = new_alert(log, mt)
    dispatcher.dispatch(a)
    wait_until(lambda: status(log, a) == AlertStatus.RETRYING, 30, "the alert to be retrying")
    wait_until(lambda: status(log, a) == AlertStatus.FAILED, 30, "the alert to have failed")
    got = log.get(a)
    assert got is not None and got.retries == 2 and "answered 500 Internal Server Error: boom" in got.error
    assert receiver.ids() == [str(a), str(a)]
    # The worker is still there and delivers the next one.
    b = new_alert(log, mt)
    dispatcher.dispatch(b)
    wait_until(lambda: status(log, b) == AlertStatus.SENT, 30, "the next alert to be sent")


def test_smtp_refusal_is_retried_and_then_sent(workers: Workers, dispatcher: CeleryDispatcher,
                                               sqlite_engine: Engine) -> None:
    box = Mailbox(refuse_rcpt="550 5.1.1 mailbox unavailable")
    stop = smtp_server(box)
    try:
        log = AlertLog(sqlite_engine)
        mt = add_media_type(sqlite_engine, "Mail", MediaKind.EMAIL,
                            {"smtp_server": "127.0.0.1", "smtp_port": box.port,  # type: ignore[attr-defined]
                             "smtp_email": "vigil@example.org", "timeout": 3}, maxattempts=3, attempt_interval="2s")
        workers.start("a")
        a = new_alert(log, mt)
        dispatcher.dispatch(a)
        wait_until(lambda: status(log, a) == AlertStatus.RETRYING, 30, "the alert to be retrying")
        got = log.get(a)
        assert got is not None and "refused the recipient: ops@example.com: 550 5.1.1 mailbox unavailable" in got.error
        box.refuse_rcpt = None
        wait_until(lambda: status(log, a) == AlertStatus.SENT, 30, "the alert to be sent on a later try")
        assert len(box.messages) == 1
        assert f"Message-ID: <vigil-alert-{a}@example.org>".encode() in box.messages[0][2]
    finally:
        stop()


def test_a_worker_killed_before_it_sends_causes_no_repeat(workers: Workers, dispatcher: CeleryDispatcher,
                                                          sqlite_engine: Engine, receiver: Receiver,
                                                          broker: Broker) -> None:
    log = AlertLog(sqlite_engine)
    a = held_by_a(workers, dispatcher, log, hook(sqlite_engine, receiver), broker)
    workers.kill("a")
    assert receiver.ids() == [] and status(log, a) == AlertStatus.QUEUED
    workers.start("b")
    wait_until(lambda: status(log, a) == AlertStatus.SENT, 60, "worker b to send the alert")
    time.sleep(REDELIVERY + 3)  # a repeat, if there were one, would arrive by now
    assert receiver.ids() == [str(a)]
    assert f"alert {a} sent" in workers.log("b")


@pytest.mark.parametrize("broker", ["redis"], indirect=True)
def test_a_worker_killed_inside_its_sweep_does_not_stop_redelivery(workers: Workers, dispatcher: CeleryDispatcher,
                                                                    sqlite_engine: Engine, receiver: Receiver,
                                                                    broker: Broker) -> None:
    """Redis: every worker looks for the messages of dead workers under one lock; a worker SIGKILLed
    while it holds that lock (here: the lock taken as its sweep takes it, never released) must not
    keep the others from giving a dead worker's message back for longer than a sweep's interval."""
    import redis
    from kombu.transport.redis import Channel
    from vigil.alerts.tasks import celery_config

    options = celery_config(broker.url, broker.queue, REDELIVERY)["broker_transport_options"]
    client = redis.Redis.from_url(broker.url)
    lock = client.lock(Channel.unacked_mutex_key, timeout=options.get("unacked_mutex_expire",
                                                                       Channel.unacked_mutex_expire))
    log = AlertLog(sqlite_engine)
    a = held_by_a(workers, dispatcher, log, hook(sqlite_engine, receiver), broker)
    try:
        wait_until(lambda: lock.acquire(blocking=False), 10, "the sweep's lock (other workers hold it a moment)")
        workers.kill("a")
        workers.start("b")
        wait_until(lambda: status(log, a) == AlertStatus.SENT, 30, "worker b to send the alert")
    finally:
        with contextlib.suppress(redis.exceptions.LockError):  # expired, as it should have
            lock.release()
        client.close()
    assert receiver.ids() == [str(a)]


def test_a_worker_killed_while_the_receiver_holds_the_request(workers: Workers, dispatcher: CeleryDispatcher,
                                                              sqlite_engine: Engine, receiver: Receiver) -> None:
    log = AlertLog(sqlite_engine)
    mt = hook(sqlite_engine, receiver)
    workers.start("a")
    receiver.hold.set()
    a = new_alert(log, mt)
    dispatcher.dispatch(a)
    wait_until(lambda: len(receiver.ids()) == 1, 30, "the first request to arrive")
    receiver.hold.clear()  # the next request is answered
    workers.kill("a")
    receiver.release.set()
    workers.start("b")
    wait_until(lambda: status(log, a) == AlertStatus.SENT, 60, "worker b to send the alert again")
    assert receiver.ids() == [str(a), str(a)]  # the same alert id: the receiver can drop the repeat
    got = log.get(a)
    assert got is not None and got.retries == 0  # the killed try was never recorded as a failure
    assert f"alert {a} sent" in workers.log("b")


def test_a_pool_process_killed_mid_task_is_replaced_and_the_message_requeued(
        workers: Workers, dispatcher: CeleryDispatcher, sqlite_engine: Engine, receiver: Receiver) -> None:
    """The OOM killer takes the pool process, not the worker: the worker requeues the message at once."""
    import psutil

    log = AlertLog(sqlite_engine)
    mt = hook(sqlite_engine, receiver)
    main = workers.start("a")
    receiver.hold.set()
    a = new_alert(log, mt)
    dispatcher.dispatch(a)
    wait_until(lambda: len(receiver.ids()) == 1, 30, "the first request to arrive")
    receiver.hold.clear()
    [child] = psutil.Process(main.pid).children()
    child.kill()
    receiver.release.set()
    wait_until(lambda: status(log, a) == AlertStatus.SENT, 60, "the alert to be sent again")
    assert receiver.ids() == [str(a), str(a)] and main.poll() is None


def test_a_wait_longer_than_the_redelivery_is_sent_once(workers: Workers, dispatcher: CeleryDispatcher,
                                                         sqlite_engine: Engine, receiver: Receiver,
                                                         broker: Broker) -> None:
    """A try due in twice the visibility time-out travels in hops: Redis never hands it out twice."""
    log = AlertLog(sqlite_engine)
    mt = hook(sqlite_engine, receiver)
    workers.start("a", concurrency=2)
    workers.start("b", concurrency=2)
    a = new_alert(log, mt)
    dispatcher.app.send_task("vigil.alerts.deliver", args=[a, 0, time.time() + 2 * REDELIVERY], queue=broker.queue)
    wait_until(lambda: status(log, a) == AlertStatus.SENT, 60, "the alert to be sent when due")
    time.sleep(REDELIVERY + 3)
    assert receiver.ids() == [str(a)]


@pytest.mark.parametrize("broker", ["redis"], indirect=True)
def test_a_media_timeout_above_the_redelivery_is_cut_short(workers: Workers, dispatcher: CeleryDispatcher,
                                                           sqlite_engine: Engine, receiver: Receiver) -> None:
    """Zabbix's webhook time-out is 30 s, as is the redelivery default: the worker warns and cuts tries
    short rather than let Redis hand a message still being sent to a second worker."""
    log = AlertLog(sqlite_engine)
    mt = add_media_type(sqlite_engine, "Slow hook", MediaKind.WEBHOOK, {"url": receiver.url, "timeout": 20},
                        maxattempts=1)
    workers.start("a")
    assert "media type 'Slow hook' may take 20 s (its timeout) but VIGIL_ALERT_REDELIVERY is 5 s" in workers.log("a")
    receiver.hold.set()
    a = new_alert(log, mt)
    dispatcher.dispatch(a)
    wait_until(lambda: status(log, a) == AlertStatus.FAILED, 30, "the held try to be cut off")
    got = log.get(a)
    assert got is not None and got.error.endswith("no answer within 4 s")
    receiver.release.set()
    time.sleep(REDELIVERY + 3)
    assert receiver.ids() == [str(a)]  # never handed to a second try by the broker


@pytest.mark.parametrize("broker", ["redis"], indirect=True)
def test_worker_refuses_an_unmigrated_database(tmp_path: Path, broker: Broker) -> None:
    env = dict(os.environ, VIGIL_DATABASE_URL=f"sqlite:///{tmp_path / 'empty.db'}", VIGIL_BROKER_URL=broker.url)
    r = subprocess.run([vigil_bin("vigil"), "worker"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "vigil db upgrade" in r.stderr, r.stderr


def test_worker_on_postgresql(tmp_path: Path, broker: Broker, receiver: Receiver) -> None:
    from tests.conftest import drop_pg_database, new_pg_database

    name, url = new_pg_database()
    engine = engine_for(url)
    try:
        upgrade(engine)
        log = AlertLog(engine)
        mt = hook(engine, receiver)
        w = Workers(tmp_path, url, broker)
        d = CeleryDispatcher(broker.url, broker.queue, REDELIVERY)
        try:
            w.start("pg", concurrency=2)
            a = new_alert(log, mt)
            d.dispatch(a)
            wait_until(lambda: status(log, a) == AlertStatus.SENT, 40, "the alert sent from PostgreSQL")
        finally:
            d.close()
            w.stop_all()
        assert receiver.ids() == [str(a)]
    finally:
        engine.dispose()
        drop_pg_database(name)
