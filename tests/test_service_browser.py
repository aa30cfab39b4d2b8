"""The dashboard in a real headless Chromium, against the ``salesformer serve`` command.

Load the page, search an item, see the chart render, post events through the API and see the
forecast change on the page. Skips with the reason when Chromium or chromedriver is missing
(``.ci/system-packages.sh`` installs them).
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")
pytest.importorskip("selenium")

import httpx
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

pytest_plugins = ["service_support"]  # the service test fixtures
API_KEY = "test-key-0123456789"

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def server(
    served_model: Path, tmp_path_factory: pytest.TempPathFactory, free_port: Callable[[], int]
) -> Iterator[str]:
    """``salesformer serve`` as a user starts it, run in a thread of this process.

    The command runs unchanged but for ``uvicorn.run``, replaced by a server this fixture can
    stop; a thread spares the tests a second interpreter importing torch.
    """
    import uvicorn

    from salesformer.cli.main import run

    port = free_port()
    db = tmp_path_factory.mktemp("browser") / "events.db"
    servers: list[Any] = []

    def serve_in_thread(app: Any, host: str, port: int, **settings: Any) -> None:
        config = uvicorn.Config(app, host=host, port=port, timeout_graceful_shutdown=1, **settings)
        servers.append(uvicorn.Server(config))
        servers[0].run()

    def command() -> None:
        with pytest.raises(SystemExit):
            run(["serve", "--model", str(served_model), "--db", str(db), "--port", str(port)])

    patch = pytest.MonkeyPatch()
    patch.setattr(uvicorn, "run", serve_in_thread)
    patch.setenv("SALESFORMER_API_KEY", API_KEY)
    thread = threading.Thread(target=command, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    try:
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or not thread.is_alive():
                pytest.fail("salesformer serve did not answer within 120 s")
            time.sleep(0.1)
        yield url
    finally:
        if servers:
            servers[0].should_exit = True
        thread.join(20)
        patch.undo()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        pytest.skip("chromium / chromedriver missing (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    options.add_argument("--window-size=1280,900")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # to see CSP reports
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def test_dashboard_shows_an_item_and_follows_new_events(
    server: str, browser: Any, loaded_model: Any
) -> None:
    item = str(loaded_model.panel_.item_ids[4])
    wait = WebDriverWait(browser, 60)
    browser.get(server)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results li")) > 1)

    browser.find_element(By.ID, "search").send_keys(item)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results li")) == 1)
    browser.find_element(By.CSS_SELECTOR, "#results li").click()
    summary = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#forecast-summary[data-total]"))
    before = float(summary.get_attribute("data-total"))
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#chart .main-svg"))
    traces = browser.execute_script("return document.getElementById('chart').data.length")
    assert traces == 4  # sales, band (two edges), forecast
    points = browser.execute_script("return document.getElementById('chart').data[3].x.length")
    assert points == loaded_model.horizon

    last = pd.Timestamp(loaded_model.panel_.last_date).to_pydatetime()
    events = [
        {
            "event_id": f"web-{i}",
            "item_id": item,
            "timestamp": (last + timedelta(days=1)).isoformat(),
            "quantity": 200,
            "price": 4.0,
        }
        for i in range(3)
    ]
    answer = httpx.post(f"{server}/events", json={"events": events}, headers={"X-API-Key": API_KEY})
    assert answer.status_code == 200
    # reads are open, but events carry order and customer ids: the page asks for the key
    withheld = wait.until(lambda d: d.find_element(By.ID, "events-withheld"))
    assert "API key" in withheld.text
    browser.find_element(By.ID, "api-key").send_keys(API_KEY, Keys.TAB)  # "change": refresh
    wait.until(
        lambda d: (
            float(d.find_element(By.ID, "forecast-summary").get_attribute("data-total") or before)
            != before
        )
    )
    after = float(browser.find_element(By.ID, "forecast-summary").get_attribute("data-total"))
    assert after > before
    wait.until(
        lambda d: "web-2" in [c.text for c in d.find_elements(By.CSS_SELECTOR, "#events td")]
    )
    plan = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#plan[data-order-qty]"))
    assert float(plan.get_attribute("data-order-qty")) > 0  # nothing on hand, demand ahead
    assert "order-up-to" in plan.text
    # the page works under its Content-Security-Policy: the browser blocked nothing
    policy = httpx.get(server).headers["content-security-policy"]
    assert "script-src 'self'" in policy
    blocked = [
        e["message"] for e in browser.get_log("browser") if "Content Security" in e["message"]
    ]
    assert blocked == []
