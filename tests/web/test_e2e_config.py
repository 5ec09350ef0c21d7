"""A headless Chromium (Debian's, driven by Selenium) on the web app served over real HTTP: create an e-mail
media type, press "Send test" against the test's own SMTP server (aiosmtpd), create an action sending through
it, and save screenshots of those pages to test-artifacts/web/ next to the Zabbix anchor's."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from tests.alerts.conftest import Mailbox, smtp_server
from tests.conftest import free_port, wait_until
from tests.web.conftest import PASSWORD, Env
from tests.web.test_e2e import ARTIFACTS, _driver


@pytest.fixture
def served(env: Env) -> Iterator[str]:
    from werkzeug.serving import make_server

    port = free_port()
    server = make_server("127.0.0.1", port, env.app, threaded=True)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def box() -> Iterator[Mailbox]:
    b = Mailbox()
    stop = smtp_server(b)
    try:
        yield b
    finally:
        stop()


def test_media_type_send_test_and_action_in_the_browser(env: Env, served: str, box: Mailbox) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    d = _driver()
    try:
        wait = WebDriverWait(d, 20)

        def shot(name: str) -> None:
            if env.url.startswith("sqlite"):  # one set of screenshots
                d.save_screenshot(str(ARTIFACTS / f"{name}.png"))

        def submit(form_css: str = "form.form") -> None:
            d.find_element(By.CSS_SELECTOR, f"{form_css} button.primary").click()

        d.get(served + "/login")
        d.find_element(By.NAME, "username").send_keys("admin")
        d.find_element(By.NAME, "password").send_keys(PASSWORD)
        d.find_element(By.CSS_SELECTOR, "button.primary").click()
        wait.until(lambda drv: "Host availability" in drv.page_source)
        d.find_element(By.LINK_TEXT, "Media types").click()
        wait.until(lambda drv: "No media types match" in drv.page_source)
        d.find_element(By.LINK_TEXT, "Create media type").click()
        submit()  # empty: field errors, nothing saved
        wait.until(lambda drv: drv.find_elements(By.ID, "err-name"))
        d.find_element(By.NAME, "name").send_keys("Office mail")
        d.find_element(By.NAME, "smtp_server").send_keys("127.0.0.1")
        d.find_element(By.NAME, "smtp_port").send_keys(str(box.port))  # type: ignore[attr-defined]
        d.find_element(By.NAME, "smtp_email").send_keys("vigil@example.com")
        shot("20-media-type-form")
        submit()
        wait.until(lambda drv: "Media type Office mail added" in drv.page_source)
        d.find_element(By.NAME, "sendto").send_keys("oncall@example.com")
        d.find_element(By.ID, "send-test").click()
        wait.until(lambda drv: drv.find_elements(By.ID, "test-result"))
        assert "Sent:" in d.find_element(By.ID, "test-result").text
        wait_until(lambda: box.messages, 10, "the test message at the SMTP server")
        assert box.messages[0][1] == ["oncall@example.com"] and b"Test message from Vigil" in box.messages[0][2]
        shot("21-media-type-send-test")
        d.find_element(By.LINK_TEXT, "Media types").click()
        wait.until(lambda drv: "Office mail" in drv.page_source)
        shot("22-media-types")

        d.find_element(By.LINK_TEXT, "Actions").click()
        d.find_element(By.LINK_TEXT, "Create action").click()
        d.find_element(By.NAME, "name").send_keys("Page on-call")
        Select(d.find_element(By.NAME, "conditions-0-type")).select_by_value("severity")
        Select(d.find_element(By.NAME, "conditions-0-operator")).select_by_visible_text(">=")
        d.find_element(By.NAME, "conditions-0-value").send_keys("high")
        Select(d.find_element(By.NAME, "conditions-1-type")).select_by_value("host_group")
        d.find_element(By.NAME, "conditions-1-value").send_keys("Linux servers")
        Select(d.find_element(By.NAME, "operations-0-users")).select_by_visible_text("ops")
        Select(d.find_element(By.NAME, "operations-0-media_type")).select_by_visible_text("Office mail")
        Select(d.find_element(By.NAME, "recovery_operations-0-users")).select_by_visible_text("ops")
        shot("23-action-form")
        submit()
        wait.until(lambda drv: "Action Page on-call added" in drv.page_source)
        d.find_element(By.LINK_TEXT, "Actions").click()
        wait.until(lambda drv: "Send message to ops via Office mail" in drv.page_source)
        assert "severity &gt;= high" in d.page_source or "severity >= high" in d.page_source
        shot("24-actions")
    finally:
        d.quit()
    [a] = env.repo.export()["actions"]
    assert a["operations"][0]["media_type"] == "Office mail"
    assert a["recovery_operations"] == [{"send_to_users": ["ops"]}]
