"""The console in a real headless browser (Debian's chromium + chromium-driver, driven by selenium).

A deployment under traffic: the topology page shows every endpoint and
refreshes itself; a failure made on purpose appears in the failure list;
pressing Replay (and confirming) delivers it, checked at the destination
actor; a wrong token gets the 401 page.

Skipped when chromium or chromedriver is missing, except under CI (``CI`` set),
where that fails. With ``RAY_DISPATCH_SCREENSHOTS=DIR`` the main pages are
saved as ``DIR/console-*.png`` (how ``docs/console-*.png`` were made).
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

import ray_dispatch
from ray_dispatch.api import Deployment
from ray_dispatch.console import start_console
from tests.console.deployment import CONFIG, ENDPOINTS, SECRET, contents_at, fail_on_purpose, spawn_late_app

pytestmark = pytest.mark.ray

NAME, NAMESPACE = "console-browser", "console_tests"
WAIT = 60.0
"""Seconds a page may take to show what the test waits for (the machine is shared and slow)."""


def _browser_or_skip() -> tuple[str, str]:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if chromium and driver:
        return chromium, driver
    missing = "chromium" if not chromium else "chromedriver"
    why = f"{missing} is not installed (Debian: apt-get install chromium chromium-driver)"
    if os.environ.get("CI"):
        pytest.fail(f"the browser test must run in CI: {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium, driver_path = _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1360,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def dep(ray_session: None) -> Iterator[Deployment]:
    deployment = ray_dispatch.deploy(CONFIG, name=NAME, namespace=NAMESPACE, health_interval=0.5)
    stop = threading.Event()
    transport = deployment.endpoint("sms_in")

    def traffic() -> None:  # a steady trickle, so links carry counts and rates while the pages are open
        sent = 0
        while not stop.wait(0.05):
            ray.get(
                transport.inject_many.remote(
                    [
                        {"content": f"load {sent + i}", "from_addr": "+27820000009", "to_addr": "12345"}
                        for i in range(5)
                    ],
                    wait=False,
                )
            )
            sent += 5

    thread = threading.Thread(target=traffic, daemon=True)
    thread.start()
    yield deployment
    stop.set()
    thread.join(timeout=30)
    deployment.shutdown()


@pytest.fixture(scope="module")
def url(dep: Deployment) -> str:
    return start_console(dep)


def wait_until(browser: Any, condition: Callable[[Any], Any], what: str) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT, poll_frequency=0.2).until(condition, message=what)


def screenshot(browser: Any, page: str) -> None:
    where = os.environ.get("RAY_DISPATCH_SCREENSHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(Path(where) / f"console-{page}.png"))


def test_the_printed_link_opens_the_topology_with_every_endpoint_and_it_refreshes(browser: Any, url: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(url)
    assert browser.current_url.endswith("/") and "token=" not in browser.current_url
    for name in ENDPOINTS:
        wait_until(
            browser,
            lambda b, n=name: b.find_elements(By.CSS_SELECTOR, f'#topology g.node[data-endpoint="{n}"]'),
            f"endpoint {name} in the picture",
        )
    first = browser.find_element(By.ID, "topology").get_attribute("data-updated")
    assert first is None  # drawn by the server; the script has not swapped it yet
    wait_until(
        browser, lambda b: b.find_element(By.ID, "topology").get_attribute("data-updated"), "a refresh of the picture"
    )
    wait_until(browser, lambda b: "/s" in b.find_element(By.ID, "topology").text, "a rate on a link")
    screenshot(browser, "topology")


def test_endpoints_page_lists_each_endpoint_and_its_replicas(browser: Any, url: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(url.replace("/?", "/endpoints?"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#endpoints tbody tr")
    assert [r.get_attribute("data-endpoint") for r in rows] == ["sms_in", "late_in", "app", "app", "late_app"]
    assert browser.find_element(By.CSS_SELECTOR, '#endpoints tr[data-endpoint="app"] .health').text == "alive"
    screenshot(browser, "endpoints")


def test_a_failure_appears_in_the_list_and_replay_delivers_it(browser: Any, url: str, dep: Deployment) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions

    first = fail_on_purpose(dep, "made to fail")
    browser.get(url.replace("/?", "/failures?"))
    browser.find_element(By.CSS_SELECTOR, f'tr[data-failure="{first}"]')
    second = fail_on_purpose(dep, "made to fail too")  # appears without reloading the page
    wait_until(
        browser, lambda b: b.find_elements(By.CSS_SELECTOR, f'tr[data-failure="{second}"]'), "the new failure listed"
    )
    screenshot(browser, "failures")

    late_app = spawn_late_app(dep)
    browser.find_element(By.CSS_SELECTOR, f'tr[data-failure="{first}"] button.replay-one').click()
    wait_until(browser, expected_conditions.alert_is_present(), "the confirmation")
    browser.switch_to.alert.accept()
    result = wait_until(browser, lambda b: b.find_element(By.ID, "result").text, "the replay's report")
    assert "delivered 1" in result and "delivered to inbound:late_app" in result, result
    assert "made to fail" in contents_at(late_app)
    wait_until(
        browser, lambda b: not b.find_elements(By.CSS_SELECTOR, f'tr[data-failure="{first}"]'), "the record gone"
    )
    assert [r["failure_id"] for r in dep.failures()] == [second]


def test_config_page_masks_the_secret(browser: Any, url: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(url.replace("/?", "/config?"))
    text = browser.find_element(By.ID, "config").text
    assert "legacy_api_token: '***'" in text and "route_mappings:" in text
    assert SECRET not in browser.page_source
    screenshot(browser, "config")


def test_a_wrong_token_gets_the_401_page(browser: Any, url: str) -> None:
    from selenium.webdriver.common.by import By

    browser.get(url[: -len("x")] + ("x" if not url.endswith("x") else "y"))
    assert "401" in browser.find_element(By.ID, "unauthorized").text
    assert not browser.find_elements(By.ID, "topology")
