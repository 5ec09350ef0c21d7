"""The alert log on both stores, the delivery function's record of each try, and the in-process pool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from vigil.alerts.delivery import LocalDispatcher, attempt, backoff
from vigil.alerts.media import Context
from vigil.server.config.tables import AlertStatus, MediaKind, media_types
from vigil.server.store.alertlog import AlertLog, AlertLogError, NewAlert

from tests.alerts.conftest import Receiver, add_media_type, new_alert, script
from tests.conftest import wait_until


def test_create_and_get_round_trip(alertlog: AlertLog) -> None:
    mt = add_media_type(alertlog.engine, "Hook", MediaKind.WEBHOOK, {"url": "http://x/"})
    a = new_alert(alertlog, mt, sendto="#ops ✓", subject="Ünïcode subject", message="body\nwith lines")
    b = new_alert(alertlog, mt)
    assert b > a
    got = alertlog.get(a)
    assert got is not None and got.alertid == a and got.mediatypeid == mt and got.sendto == "#ops ✓"
    assert got.subject == "Ünïcode subject" and got.message == "body\nwith lines"
    assert (got.status, got.retries, got.error, got.sent_clock, got.esc_step) == (AlertStatus.QUEUED, 0, "", 0, 1)
    assert alertlog.get(10**9) is None


def test_status_changes_and_a_sent_row_stays_sent(alertlog: AlertLog) -> None:
    a = new_alert(alertlog, None)
    assert alertlog.mark_retrying(a, 1, "first: 500")
    got = alertlog.get(a)
    assert got is not None and (got.status, got.retries, got.error) == (AlertStatus.RETRYING, 1, "first: 500")
    assert alertlog.mark_sent(a, 1234)
    assert not alertlog.mark_failed(a, 2, "a late report of a duplicate try")
    assert not alertlog.mark_sent(a, 9999)
    got = alertlog.get(a)
    assert got is not None and (got.status, got.sent_clock, got.retries) == (AlertStatus.SENT, 1234, 1)
    b = new_alert(alertlog, None)
    assert alertlog.mark_failed(b, 3, "x" * 5000)
    got = alertlog.get(b)
    assert got is not None and got.status == AlertStatus.FAILED and len(got.error) == 2048
    assert not alertlog.mark_sent(10**9, 1)


def test_pending_lists_queued_and_retrying_oldest_first(alertlog: AlertLog) -> None:
    a, b, c, d = (new_alert(alertlog, None) for _ in range(4))
    alertlog.mark_retrying(b, 1, "e")
    alertlog.mark_sent(c, 1)
    alertlog.mark_failed(d, 1, "e")
    assert [x.alertid for x in alertlog.pending()] == [a, b]


def test_bad_alerts_are_refused_naming_the_field(alertlog: AlertLog) -> None:
    base = dict(actionid=None, eventid=None, p_eventid=None, userid=None, mediatypeid=None, subject="s",
                message="m", esc_step=1, clock=1)
    with pytest.raises(AlertLogError, match="alerttype: expected 0"):
        alertlog.create(NewAlert(sendto="x", alerttype=5, **base))  # type: ignore[arg-type]
    with pytest.raises(AlertLogError, match="sendto: at most 1024"):
        alertlog.create(NewAlert(sendto="x" * 2000, **base))  # type: ignore[arg-type]
    long = alertlog.create(NewAlert(sendto="x", **{**base, "subject": "s" * 400}))  # type: ignore[arg-type]
    got = alertlog.get(long)
    assert got is not None and len(got.subject) == 255


def test_media_types_are_read_with_their_params(alertlog: AlertLog) -> None:
    mt = add_media_type(alertlog.engine, "Mail", MediaKind.EMAIL, {"smtp_server": "mx", "headers": {"a": "b"}},
                        maxattempts=5, attempt_interval="30s", status=1)
    m = alertlog.media_type(mt)
    assert m is not None and (m.name, m.kind, m.enabled, m.maxattempts, m.attempt_interval) == (
        "Mail", MediaKind.EMAIL, False, 5, "30s")
    assert m.params == {"smtp_server": "mx", "headers": {"a": "b"}}
    with alertlog.engine.begin() as c:
        c.execute(media_types.insert().values(name="Broken", type=4, params="{not json"))
        c.execute(media_types.insert().values(name="Odd", type=7, params=json.dumps([1])))
    by = {m.name: m for m in alertlog.media_types()}
    assert "params is not JSON" in by["Broken"].params["__invalid__"]
    assert by["Odd"].kind == 7 and "not a JSON object" in by["Odd"].params["__invalid__"]
    assert alertlog.media_type(10**6) is None


# --- the delivery function ------------------------------------------------------------------------


def test_attempt_sends_records_sent_and_never_sends_a_sent_row_again(alertlog: AlertLog, receiver: Receiver) -> None:
    mt = add_media_type(alertlog.engine, "Hook", MediaKind.WEBHOOK, {"url": receiver.url, "timeout": 3})
    a = new_alert(alertlog, mt)
    assert attempt(alertlog, a, 0).status == "sent"
    got = alertlog.get(a)
    assert got is not None and got.status == AlertStatus.SENT and got.sent_clock > 0
    assert attempt(alertlog, a, 0).status == "skipped"
    assert receiver.ids() == [str(a)]


def test_failures_retry_with_backoff_then_fail(alertlog: AlertLog, receiver: Receiver) -> None:
    mt = add_media_type(alertlog.engine, "Hook", MediaKind.WEBHOOK, {"url": receiver.url, "timeout": 3},
                        maxattempts=3, attempt_interval="2s")
    receiver.statuses = [500, 503, 500]
    receiver.answer_body = b"upstream down"
    a = new_alert(alertlog, mt)
    first = attempt(alertlog, a, 0)
    assert (first.status, first.attempt, first.delay) == ("retry", 1, 2.0)
    got = alertlog.get(a)
    assert got is not None and (got.status, got.retries) == (AlertStatus.RETRYING, 1)
    assert got.error == f"media type 'Hook': POST {receiver.url} answered 500 Internal Server Error: upstream down"
    assert attempt(alertlog, a, 0).status == "skipped"  # a duplicate of try 1: dropped, nothing sent
    second = attempt(alertlog, a, 1)
    assert (second.status, second.delay) == ("retry", 4.0)
    third = attempt(alertlog, a, 2)
    assert third.status == "failed"
    got = alertlog.get(a)
    assert got is not None and (got.status, got.retries) == (AlertStatus.FAILED, 3) and "503" not in got.error
    assert receiver.ids() == [str(a)] * 3


def test_a_timeout_above_the_cap_is_lowered_for_the_try(alertlog: AlertLog, receiver: Receiver,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    mt = add_media_type(alertlog.engine, "Slow", MediaKind.WEBHOOK, {"url": receiver.url, "timeout": 60},
                        maxattempts=1)
    receiver.hold.set()
    a = new_alert(alertlog, mt)
    assert attempt(alertlog, a, 0, Context(timeout_cap=1.0)).status == "failed"
    got = alertlog.get(a)
    assert got is not None and got.error.endswith("no answer within 1 s")
    assert "its timeout 60 s is not below the broker's redelivery time; this try uses 1 s" in caplog.text


def test_permanent_errors_fail_at_once(alertlog: AlertLog) -> None:
    bad = add_media_type(alertlog.engine, "Bad", MediaKind.WEBHOOK, {"url": "gopher://x"})
    off = add_media_type(alertlog.engine, "Off", MediaKind.WEBHOOK, {"url": "http://127.0.0.1:1/"}, status=1)
    a, b, c = new_alert(alertlog, bad), new_alert(alertlog, off), new_alert(alertlog, None)
    assert attempt(alertlog, a, 0).status == "failed"
    assert attempt(alertlog, b, 0).status == "failed"
    assert attempt(alertlog, c, 0).status == "failed"
    errors = [alertlog.get(x).error for x in (a, b, c)]  # type: ignore[union-attr]
    assert errors[0].startswith("media type 'Bad': parameter 'url'")
    assert errors[1] == "media type 'Off' is disabled"
    assert "does not exist" in errors[2]
    assert attempt(alertlog, 10**9, 0).status == "skipped"


def test_backoff_doubles_up_to_an_hour() -> None:
    from vigil.server.store.alertlog import MediaType

    m = MediaType(1, "m", MediaKind.EMAIL, True, {}, 10, "10s")
    assert [backoff(m, n) for n in (1, 2, 3, 4)] == [10, 20, 40, 80]
    assert backoff(m, 30) == 3600
    assert backoff(MediaType(1, "m", MediaKind.EMAIL, True, {}, 10, "junk"), 1) == 10


# --- the in-process pool ----------------------------------------------------------------------------


def _status(log: AlertLog, alertid: int) -> AlertStatus:
    got = log.get(alertid)
    assert got is not None
    return got.status


def test_local_dispatcher_delivers_and_retries(engine: Engine, alertlog: AlertLog, receiver: Receiver) -> None:
    mt = add_media_type(engine, "Hook", MediaKind.WEBHOOK, {"url": receiver.url, "timeout": 3},
                        maxattempts=3, attempt_interval="1s")
    receiver.statuses = [500]
    d = LocalDispatcher(engine, threads=2)
    d.start()
    try:
        ids = [new_alert(alertlog, mt) for _ in range(3)]
        for a in ids:
            d.dispatch(a)
        wait_until(lambda: all(_status(alertlog, a) == AlertStatus.SENT for a in ids), 20, "three alerts sent")
    finally:
        d.stop()
    assert sorted(receiver.ids()) == sorted([str(a) for a in ids] + [receiver.requests[0].alert_id])
    assert sum(alertlog.get(a).retries for a in ids) == 1  # type: ignore[union-attr]
    assert d.counts["sent"] == 3 and d.counts["retry"] == 1


def test_local_dispatcher_picks_up_pending_alerts_at_start(engine: Engine, alertlog: AlertLog, receiver: Receiver,
                                                           tmp_path: Path) -> None:
    mt = add_media_type(engine, "Hook", MediaKind.WEBHOOK, {"url": receiver.url, "timeout": 3})
    queued, retrying, sent = (new_alert(alertlog, mt) for _ in range(3))
    alertlog.mark_retrying(retrying, 1, "the last run stopped")
    alertlog.mark_sent(sent, 1)
    d = LocalDispatcher(engine, threads=2)
    assert d.start() == 2
    d.dispatch(queued)  # also dispatched by the escalator: still tried once
    try:
        wait_until(lambda: _status(alertlog, queued) == _status(alertlog, retrying) == AlertStatus.SENT, 20,
                   "the pending alerts to be sent")
    finally:
        d.stop()
    assert sorted(receiver.ids()) == sorted([str(queued), str(retrying)])


def test_local_dispatcher_survives_failing_media(engine: Engine, alertlog: AlertLog, tmp_path: Path) -> None:
    bad = script(tmp_path / "bad.sh", "echo nope >&2\nexit 1\n")
    mt = add_media_type(engine, "Script", MediaKind.SCRIPT, {"script": str(bad)}, maxattempts=2, attempt_interval="0")
    d = LocalDispatcher(engine, threads=2)
    d.start()
    try:
        ids = [new_alert(alertlog, mt) for _ in range(4)]
        for a in ids:
            d.dispatch(a)
        wait_until(lambda: all(_status(alertlog, a) == AlertStatus.FAILED for a in ids), 20, "four alerts failed")
    finally:
        d.stop()
    got = alertlog.get(ids[0])
    assert got is not None and got.retries == 2
    assert got.error == "media type 'Script': script 'bad.sh' exited with 1: nope"


def test_local_dispatcher_stop_leaves_waiting_retries_pending(engine: Engine, alertlog: AlertLog,
                                                              receiver: Receiver) -> None:
    mt = add_media_type(engine, "Hook", MediaKind.WEBHOOK, {"url": receiver.url, "timeout": 3},
                        maxattempts=5, attempt_interval="1h")
    receiver.statuses = [500]
    d = LocalDispatcher(engine, threads=1)
    d.start()
    a = new_alert(alertlog, mt)
    d.dispatch(a)
    wait_until(lambda: _status(alertlog, a) == AlertStatus.RETRYING, 10, "the first try to fail")
    d.stop()
    assert [x.alertid for x in alertlog.pending()] == [a]
    with alertlog.engine.connect() as c:
        assert c.execute(sa.text("select count(*) from alerts")).scalar_one() == 1
