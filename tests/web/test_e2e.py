"""The web UI as a real process: `vigil up` serving it, `vigil user create` / `vigil token create`, and a
headless Chromium (Debian's, driven by Selenium) signing in, creating a host and a trapper item, seeing
values pushed with vigil-sender in latest data and on the graph, then signing out. Screenshots of the
main pages go to test-artifacts/web/ for holding next to the Zabbix anchor's."""

from __future__ import annotations

import http.cookiejar
import json
import re
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import VigilServer, require, vigil_bin, wait_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "web"


@pytest.fixture
def up(tmp_path: Path) -> Iterator[VigilServer]:
    server = VigilServer(tmp_path, f"sqlite:///{tmp_path / 'data' / 'vigil.db'}", command="up")
    server.start()
    web_port = int(server.env["VIGIL_WEB_LISTEN"].rsplit(":", 1)[1])
    try:
        wait_port(web_port, 30, server.proc)
        server.web = f"http://127.0.0.1:{web_port}"  # type: ignore[attr-defined]
        yield server
    finally:
        server.stop()


def opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))


def sign_in(base: str, username: str, password: str) -> tuple[urllib.request.OpenerDirector, str]:
    op = opener()
    page = op.open(base + "/login").read().decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    r = op.open(base + "/login", urllib.parse.urlencode(
        {"csrf_token": token, "username": username, "password": password}).encode())
    return op, r.geturl()


def api(base: str, path: str, token: str | None) -> tuple[int, dict]:
    req = urllib.request.Request(base + path, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_vigil_up_serves_the_ui_with_a_one_time_admin_password(up: VigilServer) -> None:
    base = up.web  # type: ignore[attr-defined]
    pw_file = up.tmp / "data" / "initial-admin-password"
    wait_until(pw_file.exists, 10, "the initial admin password file")
    assert pw_file.stat().st_mode & 0o777 == 0o600
    password = pw_file.read_text().strip()
    assert password in up.log_text()  # printed once at start
    op, landed = sign_in(base, "Admin", password)
    assert not landed.endswith("/login") and "Host availability" in op.open(base + "/").read().decode()
    with pytest.raises(urllib.error.HTTPError) as e:
        sign_in(base, "Admin", "wrong")
    assert e.value.code == 401 and b'name="password"' in e.value.read()  # a refused sign-in stays on the form
    with pytest.raises(urllib.error.HTTPError) as e:
        opener().open(base + "/login", b"username=Admin&password=x")
    assert e.value.code == 400  # no csrf token
    # the secret key is generated once, mode 0600
    assert (up.tmp / "data" / "secret-key").stat().st_mode & 0o777 == 0o600

    # CLI: a user from standard input, a token on the last line
    up.cli("user", "create", "--role", "guest", "carol", input="a long password\n")
    r = up.cli("user", "create", "carol", input="a long password\n", check=False)
    assert r.returncode == 1 and "exists already" in r.stderr
    r = up.cli("user", "create", "dave", input="short\n", check=False)
    assert r.returncode == 1 and "at least 8 characters" in r.stderr
    token = up.cli("token", "create", "carol", "--expires", "1").stdout.strip().splitlines()[-1]
    assert re.fullmatch(r"[0-9a-f]{64}", token)
    assert up.cli("token", "create", "nobody", check=False).returncode == 1
    assert up.cli("token", "create", "carol", "--expires", "0", check=False).returncode == 1
    status, body = api(base, "/api/v1/me", token)
    assert status == 200 and body["data"]["role"] == "guest"
    status, body = api(base, "/api/v1/hosts", None)
    assert status == 401 and body["error"]["code"] == "unauthorized"
    # a second start keeps the users and prints no new password
    up.stop()
    up.start()
    assert pw_file.read_text().strip() == password


def test_vigil_web_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    env = {"VIGIL_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    r = subprocess.run([vigil_bin("vigil"), "web"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "vigil db upgrade" in r.stderr


def _driver():  # type: ignore[no-untyped-def]
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = require("chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1440,900",
                "--disable-gpu"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=require("chromedriver")), options=opts)


def test_browser_walk(up: VigilServer) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    base = up.web  # type: ignore[attr-defined]
    pw_file = up.tmp / "data" / "initial-admin-password"
    wait_until(pw_file.exists, 10, "the initial admin password file")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    d = _driver()
    try:
        wait = WebDriverWait(d, 20)

        def shot(name: str) -> None:
            d.save_screenshot(str(ARTIFACTS / f"{name}.png"))

        d.get(base + "/login")
        shot("01-login")
        d.find_element(By.NAME, "username").send_keys("Admin")
        d.find_element(By.NAME, "password").send_keys(pw_file.read_text().strip())
        d.find_element(By.CSS_SELECTOR, "button.primary").click()
        wait.until(lambda drv: "Host availability" in drv.page_source)
        shot("02-dashboard")

        # create a host through the form, with a field error first
        d.get(base + "/config/hosts/new")
        d.find_element(By.CSS_SELECTOR, "form.form button.primary").click()
        wait.until(lambda drv: drv.find_elements(By.ID, "err-host"))
        shot("09-host-form-errors")
        d.find_element(By.NAME, "host").send_keys("app-01")
        d.find_element(By.NAME, "new_group").send_keys("Vigil demo")
        d.find_element(By.CSS_SELECTOR, "form.form button.primary").click()
        wait.until(lambda drv: "Host app-01 created" in drv.page_source)
        app_id = d.current_url.rstrip("/").rsplit("/", 1)[1]
        d.find_element(By.LINK_TEXT, "Create item").click()
        d.find_element(By.NAME, "key").send_keys("demo.queue")
        d.find_element(By.NAME, "name").send_keys("Demo queue")
        shot("10-item-form")
        d.find_element(By.CSS_SELECTOR, "form.form button.primary").click()
        wait.until(lambda drv: "Item demo.queue created" in drv.page_source)
        d.get(base + "/config/hosts")
        shot("08-configuration-hosts")

        # push values with vigil-sender until the server has loaded the new item
        now = int(time.time())

        def send() -> bool:
            lines = "".join(f"app-01 demo.queue {now - 50 + 10 * i} {v}\n" for i, v in enumerate([3, 7, 4, 9, 6]))
            r = subprocess.run([vigil_bin("vigil-sender"), "-z", "127.0.0.1", "-p", str(up.port), "-T", "-i", "-"],
                               input=lines, capture_output=True, text=True, timeout=30)
            return "processed: 5" in r.stdout

        wait_until(send, 20, "vigil up to accept values for app-01 demo.queue", interval=0.3)
        d.get(base + "/latest?search=demo.queue")
        wait.until(lambda drv: "Demo queue" in drv.page_source)
        assert "6" in d.find_element(By.CSS_SELECTOR, "td.value").text
        shot("05-latest-data")
        d.get(base + "/hosts")
        shot("04-hosts")

        d.get(base + "/latest?search=demo.queue")
        d.find_element(By.LINK_TEXT, "Graph").click()
        wait.until(lambda drv: drv.execute_script(
            "var p = document.querySelector('.plot'); return p && p.data && p.data.length > 0;"))
        ys = d.execute_script("return document.querySelector('.plot').data[0].y;")
        assert ys == [3, 7, 4, 9, 6]
        assert d.find_elements(By.CSS_SELECTOR, ".plot .scatterlayer .trace")
        shot("06-graph")
        d.get(base + "/latest")
        shot("05b-latest-data-all")

        # a trigger on the trapper item, through the form: a bad expression first, then one that fires now
        d.get(base + f"/config/hosts/{app_id}/triggers/new")
        d.find_element(By.NAME, "name").send_keys("Demo queue is long")
        d.find_element(By.NAME, "expression").send_keys("last(/app-01/demo.queue)>>5")
        d.find_element(By.CSS_SELECTOR, "button[value=check]").click()
        wait.until(lambda drv: "at position 25" in drv.page_source)
        expr = d.find_element(By.NAME, "expression")
        expr.clear()
        expr.send_keys("last(/app-01/demo.queue)>5")
        d.find_element(By.CSS_SELECTOR, "label.sev-3-opt").click()
        d.find_element(By.NAME, "manual_close").click()
        d.find_element(By.CSS_SELECTOR, "button[value=check]").click()
        wait.until(lambda drv: "<b>PROBLEM</b>" in drv.page_source)  # the last value, 6, is over 5
        shot("11-trigger-form")
        d.find_element(By.CSS_SELECTOR, "button[value=save]").click()
        wait.until(lambda drv: "Trigger Demo queue is long created" in drv.page_source)

        # a new value over 5 raises the problem once the server has loaded the trigger
        def raised() -> bool:
            line = f"app-01 demo.queue {int(time.time())} 8\n"
            subprocess.run([vigil_bin("vigil-sender"), "-z", "127.0.0.1", "-p", str(up.port), "-T", "-i", "-"],
                           input=line, capture_output=True, text=True, timeout=30)
            d.get(base + "/problems")
            return "Demo queue is long" in d.page_source

        wait_until(raised, 40, "the problem of 'Demo queue is long' on the Problems page", interval=1)
        assert d.find_element(By.CSS_SELECTOR, "td.sev.sev-3").text == "Average"
        shot("03-problems")
        d.find_element(By.CSS_SELECTOR, "input[name=eventid][type=checkbox]").click()
        d.find_element(By.NAME, "message").send_keys("Looking at the queue consumer")
        shot("16-problem-update")
        d.find_element(By.CSS_SELECTOR, "fieldset.triage button.primary").click()
        wait.until(lambda drv: "1 problem(s) acknowledged, commented." in drv.page_source)
        d.find_element(By.CSS_SELECTOR, "table.problems td a.ok-text").click()  # Ack "Yes" opens the event
        wait.until(lambda drv: "Looking at the queue consumer" in drv.page_source)
        wait.until(lambda drv: drv.execute_script(
            "var p = document.querySelector('.plot'); return p && p.data && p.data.length > 0;"))
        d.execute_script("window.scrollTo(0, 0)")
        shot("15-event")
        d.get(base + f"/config/triggers?hostid={app_id}")
        shot("11b-triggers")

        d.find_element(By.CSS_SELECTOR, ".nav-foot button.link").click()
        wait.until(lambda drv: "/login" in drv.current_url)
        d.get(base + "/")
        assert "/login" in d.current_url
    finally:
        d.quit()


def test_dashboard_shows_this_machine_within_a_minute_of_vigil_up(tmp_path: Path) -> None:
    import socket

    server = VigilServer(tmp_path, f"sqlite:///{tmp_path / 'data' / 'vigil.db'}", command="up", VIGIL_LOCAL_AGENT="1")
    server.start()
    try:
        base = "http://" + server.env["VIGIL_WEB_LISTEN"]
        wait_port(int(base.rsplit(":", 1)[1]), 30, server.proc)
        pw_file = tmp_path / "data" / "initial-admin-password"
        wait_until(pw_file.exists, 10, "the initial admin password file")
        op, _ = sign_in(base, "Admin", pw_file.read_text().strip())
        pages: list[str] = []

        def charts_drawn() -> bool:
            pages.append(op.open(base + "/").read().decode())
            return pages[-1].count('type="application/json"') >= 3

        wait_until(charts_drawn, 75, "the dashboard to draw this machine's CPU, load, memory or disk", interval=2)
        page = pages[-1]
        assert socket.gethostname() in page
        assert '<b>1</b>Available' in page  # the local agent's heartbeat counts
        hosts = op.open(base + "/hosts").read().decode()
        assert 'class="badge ok"' in hosts
    finally:
        server.stop()


def test_vigil_web_serves_and_stops_and_a_busy_port_is_a_clear_error(tmp_path: Path) -> None:
    import os
    import signal
    import socket

    from tests.conftest import free_port

    port = free_port()
    env = dict(os.environ, VIGIL_DATA_DIR=str(tmp_path), VIGIL_WEB_LISTEN=f"127.0.0.1:{port}")
    env.pop("VIGIL_DATABASE_URL", None)
    subprocess.run([vigil_bin("vigil"), "db", "upgrade"], env=env, check=True, capture_output=True, timeout=60)
    proc = subprocess.Popen([vigil_bin("vigil"), "web"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        wait_port(port, 30, proc)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=10) as r:
            assert r.status == 200 and b'name="csrf_token"' in r.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/openapi.json", timeout=10) as r:
            assert json.loads(r.read())["info"]["title"] == "Vigil API"
        busy = dict(env)
        r2 = subprocess.run([vigil_bin("vigil"), "web"], env=busy, capture_output=True, text=True, timeout=60)
        assert r2.returncode == 1 and "VIGIL_WEB_LISTEN" in r2.stderr and "Traceback" not in r2.stderr
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        assert f"serving http://127.0.0.1:{port}/" in (proc.stdout.read() if proc.stdout else "")
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), 1).close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
