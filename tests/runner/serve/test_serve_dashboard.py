"""The dashboard in real headless Chromium: rendering, live values, the stop button, escaping, the token."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from kits import browserkit
from kits.lifecyclekit import run_d, status
from kits.servekit import Server, free_port, remove_all, wait_for

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(not browserkit.available(), reason="chromium and chromium-driver are not installed"),
]
HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture
def tcp_server(store_root: Path, busybox_image: str, tmp_path: Path, no_leaks, reaper):
    port = free_port()
    srv = Server(store_root, tmp_path / "api.sock", "--listen", f"127.0.0.1:{port}")
    srv.http = f"http://127.0.0.1:{port}"
    srv.token = (store_root / "serve" / "token").read_text().strip()
    try:
        yield srv
    finally:
        remove_all(store_root)
        srv.stop()


@pytest.fixture
def browser(tmp_path: Path):
    driver = browserkit.chromium(tmp_path / "chromium-profile")
    try:
        yield driver
    finally:
        browserkit.quit_browser(driver, tmp_path / "chromium-profile")


def sign_in(driver, srv: Server) -> None:
    from selenium.webdriver.common.by import By

    driver.get(srv.http + "/")
    assert driver.current_url.endswith("/login")  # no token yet: the login page
    driver.find_element(By.ID, "token").send_keys(srv.token)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#containers tbody tr"), what="the container table")


def cell(driver, name: str, column: str) -> str:
    """The text of one cell, read in one script (the page replaces its rows every second)."""
    return driver.execute_script(
        "for (const row of document.querySelectorAll('#containers tbody tr')) {"
        "  if (row.querySelector('a.name').textContent === arguments[0])"
        "    return row.querySelector('td.' + arguments[1]).textContent;"
        "} return '';",
        name,
        column,
    )


def test_renders_cli_containers_and_updates_live(tcp_server: Server, browser, busybox_image: str) -> None:
    from selenium.webdriver.common.by import By

    root = tcp_server.store_root
    run_d(root, "--name", "alpha", "--memory", "48m", busybox_image, "sleep", "120")
    run_d(root, "--name", "beta", busybox_image, "sh", "-c", "while :; do :; done")
    sign_in(browser, tcp_server)
    wait_for(lambda: cell(browser, "beta", "state") == "running", what="beta in the table")
    assert cell(browser, "alpha", "image") == busybox_image
    wait_for(lambda: cell(browser, "alpha", "memory").endswith("/ 48.0MiB"), what="alpha's memory against its limit")
    wait_for(lambda: cell(browser, "alpha", "pids") == "1", what="alpha's pids")
    first = cell(browser, "alpha", "uptime")
    wait_for(lambda: cell(browser, "alpha", "uptime") != first, what="the uptime to change live")
    wait_for(lambda: cell(browser, "beta", "cpu") not in ("", "--", "0.00%"), what="beta's CPU %")
    tags = browser.find_element(By.CSS_SELECTOR, "#images tbody td.tags").text
    assert tags == busybox_image
    wait_for(lambda: "start" in browser.find_element(By.ID, "events").text, what="the events feed")


def test_stop_button_stops_the_container(tcp_server: Server, browser, busybox_image: str) -> None:
    from selenium.webdriver.common.by import By

    cid = run_d(tcp_server.store_root, "--name", "victim", busybox_image, "sleep", "120")
    sign_in(browser, tcp_server)
    browser.get(f"{tcp_server.http}/#/container/{cid}")
    wait_for(lambda: browser.find_element(By.ID, "c-name").text == "victim", what="the container page")
    wait_for(lambda: "Cmd" in browser.find_element(By.ID, "c-config").text, what="the config")
    browser.find_element(By.CSS_SELECTOR, "button[data-action=stop]").click()
    alert = browser.switch_to.alert
    assert alert.text == "Stop container victim?"
    alert.dismiss()  # cancelled: nothing happens
    time.sleep(0.5)
    assert status(tcp_server.store_root, cid) == "running"
    browser.find_element(By.CSS_SELECTOR, "button[data-action=stop]").click()
    browser.switch_to.alert.accept()
    wait_for(lambda: status(tcp_server.store_root, cid) == "exited", timeout=30, what="the stop")
    wait_for(lambda: browser.find_element(By.ID, "c-state").text == "exited", what="the page to show it")


def test_hostile_name_label_and_log_line_show_as_text(tcp_server: Server, browser, busybox_image: str) -> None:
    from selenium.webdriver.common.by import By

    root = tcp_server.store_root
    cid = run_d(root, "--name", "plain", "--label", f"note={HOSTILE}", busybox_image,
                "sh", "-c", f"echo '{HOSTILE}'; sleep 120")  # fmt: skip
    # A name minirun itself would refuse, as a record written by another tool or an older version holds it.
    record_path = root / "containers" / cid / "container.json"
    record = json.loads(record_path.read_text())
    record["Name"] = HOSTILE
    record_path.write_text(json.dumps(record))
    sign_in(browser, tcp_server)
    wait_for(lambda: cell(browser, HOSTILE, "state") == "running", what="the hostile name shown as text")
    labels = browser.execute_script("return document.querySelector('#containers .labels').textContent")
    assert labels == f"note={HOSTILE}"
    browser.get(f"{tcp_server.http}/#/container/{cid}")
    wait_for(lambda: HOSTILE in browser.find_element(By.ID, "c-log").text, what="the log line shown as text")
    assert browser.find_element(By.ID, "c-name").text == HOSTILE
    assert browser.find_elements(By.CSS_SELECTOR, "img") == []  # no element was made from the text
    with pytest.raises(Exception, match="no such alert"):
        browser.switch_to.alert.text  # noqa: B018  (nothing ran)


def test_requests_without_the_token_are_refused(tcp_server: Server, browser, busybox_image: str) -> None:
    def get(path: str, headers: dict | None = None) -> int:
        request = urllib.request.Request(tcp_server.http + path, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as e:
            return e.code

    assert get("/containers/json") == 401
    assert get("/api/overview") == 401
    assert get("/containers/json", {"Authorization": "Bearer wrong"}) == 401
    assert get("/containers/json", {"Authorization": f"Bearer {tcp_server.token}"}) == 200
    cid = run_d(tcp_server.store_root, "--name", "guarded", busybox_image, "sleep", "120")
    # the browser: without the login, the page is the login form and API calls are refused
    browser.get(tcp_server.http + "/")
    assert browser.current_url.endswith("/login")
    # signed in, a state-changing request without the CSRF token is refused too
    sign_in(browser, tcp_server)
    code = browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/containers/' + arguments[0] + '/stop', {method: 'POST'}).then((r) => done(r.status));",
        cid,
    )
    assert code == 403
    assert status(tcp_server.store_root, cid) == "running"
    # the Content-Security-Policy forbids inline script
    with urllib.request.urlopen(
        urllib.request.Request(tcp_server.http + "/", headers={"Authorization": f"Bearer {tcp_server.token}"})
    ) as response:
        csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
