"""Headless Chromium (Debian's, driven by Selenium) on the app over real HTTP: save a filter as a tab and
come back to it, export the filtered list to CSV, create a proxy (field errors first) and put a host on
it from the host form. Screenshots go to test-artifacts/web/ next to the Zabbix anchor's."""

from __future__ import annotations

import csv
import io

from tests.web.conftest import PASSWORD, Env
from tests.web.test_e2e import ARTIFACTS, _driver
from tests.web.test_e2e_config import served  # noqa: F401  (the fixture)


def test_saved_filter_csv_export_and_proxy_in_the_browser(env: Env, served: str) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    d = _driver()
    try:
        wait = WebDriverWait(d, 20)

        def shot(name: str) -> None:
            if env.url.startswith("sqlite"):  # one set of screenshots
                d.save_screenshot(str(ARTIFACTS / f"{name}.png"))

        d.get(served + "/login")
        d.find_element(By.NAME, "username").send_keys("admin")
        d.find_element(By.NAME, "password").send_keys(PASSWORD)
        d.find_element(By.CSS_SELECTOR, "button.primary").click()
        wait.until(lambda drv: "Host availability" in drv.page_source)

        # filter the hosts, save the filter as a tab
        d.find_element(By.LINK_TEXT, "Hosts").click()
        box = d.find_element(By.NAME, "search")
        box.send_keys("web")
        d.find_element(By.CSS_SELECTOR, "form.filter button").click()
        wait.until(lambda drv: "search=web" in drv.current_url)
        d.find_element(By.CSS_SELECTOR, "details.save-as summary").click()
        d.find_element(By.CSS_SELECTOR, "details.save-as input[name=name]").send_keys("Web servers")
        d.find_element(By.CSS_SELECTOR, "details.save-as button.primary").click()
        wait.until(lambda drv: "Filter Web servers saved." in drv.page_source)
        active = d.find_element(By.CSS_SELECTOR, ".filter-tabs a.ftab.on")
        assert active.text == "Web servers"
        shot("30-saved-filter-tab")

        # the tab survives a visit elsewhere and brings the filter back
        d.get(served + "/hosts")
        assert "db-secret" in d.page_source
        d.find_element(By.LINK_TEXT, "Web servers").click()
        wait.until(lambda drv: "search=web" in drv.current_url)
        assert "db-secret" not in d.page_source and "Web 01" in d.page_source

        # "Export to CSV" downloads the filtered list, with the browser's own session
        href = d.find_element(By.LINK_TEXT, "Export to CSV").get_attribute("href")
        assert href is not None and "format=csv" in href and "search=web" in href
        text = d.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch(arguments[0], {credentials: 'same-origin'}).then(r => r.text()).then(done, e => done('ERR ' + e));",
            href)
        rows = list(csv.reader(io.StringIO(text, newline="")))
        assert rows[0][0] == "Host" and [r[0] for r in rows[1:]] == ["web-01"], text[:300]

        # Administration -> Proxies: garbage first, then a proxy
        d.find_element(By.LINK_TEXT, "Proxies").click()
        wait.until(lambda drv: "No proxies" in drv.page_source)
        d.find_element(By.LINK_TEXT, "Create proxy").click()
        d.find_element(By.CSS_SELECTOR, "input[name=mode][value=passive]").click()
        d.find_element(By.CSS_SELECTOR, "form.form button.primary").click()
        wait.until(lambda drv: drv.find_elements(By.ID, "err-name"))
        assert d.find_elements(By.ID, "err-name")
        d.find_element(By.NAME, "name").send_keys("branch-1")
        d.find_element(By.NAME, "address").send_keys("127.0.0.1:10071")
        shot("31-proxy-form")
        d.find_element(By.CSS_SELECTOR, "form.form button.primary").click()
        wait.until(lambda drv: "Proxy branch-1 added." in drv.page_source)

        # the host form's "Monitored by proxy"
        d.get(served + f"/config/hosts/{env.hostid('web-01')}")
        Select(d.find_element(By.NAME, "proxy")).select_by_visible_text("branch-1")
        d.find_element(By.CSS_SELECTOR, "form.form button.primary").click()
        wait.until(lambda drv: "Host web-01 updated." in drv.page_source)
        assert env.repo.host_proxy_names() == {env.hostid("web-01"): "branch-1"}
        d.find_element(By.LINK_TEXT, "Proxies").click()
        row = d.find_element(By.CSS_SELECTOR, "tr[data-proxy=branch-1]")
        cells = [c.text for c in row.find_elements(By.TAG_NAME, "td")]
        assert cells[2] == "Passive" and cells[3] == "127.0.0.1:10071" and cells[4] == "never" and cells[6] == "1"
        shot("32-proxies")
    finally:
        d.quit()
