"""The alert delivery settings: defaults, bounds, and errors naming the variable."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from vigil.alerts.delivery import CeleryDispatcher
from vigil.alerts.tasks import celery_config, hop
from vigil.server.settings import Settings, SettingsError


def test_defaults() -> None:
    s = Settings.from_env({"VIGIL_DATA_DIR": "/tmp/vd"})
    assert s.broker_url == "redis://127.0.0.1:6379/0" and s.alert_redelivery == 30
    assert s.alert_queue == "vigil-alerts" and s.alert_threads == 4
    assert s.alert_scripts_path == Path("/tmp/vd/alertscripts")
    s = Settings.from_env({"VIGIL_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672//",
                           "VIGIL_ALERT_SCRIPTS_PATH": "/opt/scripts", "VIGIL_ALERT_REDELIVERY": "5"})
    assert s.broker_url.startswith("amqp://") and s.alert_scripts_path == Path("/opt/scripts")
    assert s.alert_redelivery == 5


@pytest.mark.parametrize(("env", "words"), [
    ({"VIGIL_BROKER_URL": "http://127.0.0.1:6379"}, "VIGIL_BROKER_URL='http://127.0.0.1:6379': expected redis://"),
    ({"VIGIL_ALERT_REDELIVERY": "1"}, "VIGIL_ALERT_REDELIVERY='1': must be between 2 and 86400"),
    ({"VIGIL_ALERT_REDELIVERY": "soon"}, "VIGIL_ALERT_REDELIVERY='soon': expected a float"),
    ({"VIGIL_ALERT_THREADS": "0"}, "VIGIL_ALERT_THREADS='0': must be between 1 and 64"),
    ({"VIGIL_ALERT_QUEUE": "two words"}, "VIGIL_ALERT_QUEUE='two words': expected a queue name"),
])
def test_bad_values_name_the_variable(env: dict[str, str], words: str) -> None:
    with pytest.raises(SettingsError) as e:
        Settings.from_env(env)
    assert words in str(e.value)


def test_celery_configuration_follows_the_settings() -> None:
    c = celery_config("redis://127.0.0.1:6379/0", "q", 20)
    assert c["task_acks_late"] and c["task_reject_on_worker_lost"] and c["worker_prefetch_multiplier"] == 1
    assert c["broker_transport_options"]["visibility_timeout"] == 20
    assert c["broker_transport_options"]["unacked_restore_interval"] == 5
    assert c["task_ignore_result"] and c["result_backend"] is None and c["task_default_queue"] == "q"
    assert celery_config("amqp://h//", "q", 20)["broker_transport_options"] == {}
    assert hop(30) == 10 and hop(1) == 0.5 and hop(30, 25) == 2.5 and hop(5, 3) == 1


def test_a_broker_that_is_down_leaves_the_alert_queued_without_raising(caplog: pytest.LogCaptureFixture) -> None:
    d = CeleryDispatcher("redis://127.0.0.1:1/0", "q", 5)
    try:
        with caplog.at_level(logging.ERROR, "vigil.alerts"):
            d.dispatch(42)
    finally:
        d.close()
    assert "alert 42: cannot hand it to the broker" in caplog.text and "stays queued" in caplog.text
