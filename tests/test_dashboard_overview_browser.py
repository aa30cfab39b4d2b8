"""The dashboard's overview and live accuracy view in a real headless Chromium (issue 19).

A served model with a backtest summary (WAPE 0.01, so the alert fires), a stock file, every
item forecast and three weeks of sales posted: the page opens on the overview, shows the live
accuracy next to the backtest's, the alert, category totals, movers and the short item, and
each item opens at a link that can be shared (``#item=<URL-encoded id>``). Skips with the
reason when Chromium or chromedriver is missing (``.ci/system-packages.sh`` installs them).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("selenium")
pytest.importorskip("torch")

import httpx
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from salesformer.service.app import create_app
from salesformer.service.core import ServiceConfig
from salesformer.service.monitoring import MonitorSettings
from test_service_browser import browser  # noqa: F401  (the headless Chromium fixture)
from test_service_monitoring import direct, forecast_then_sell, week_start, with_backtest

pytest_plugins = ["service_support"]  # the service test fixtures
API_KEY = "test-key-0123456789"


@pytest.fixture(scope="module")
def scene(
    served_model: Path,
    loaded_model: Any,
    tmp_path_factory: pytest.TempPathFactory,
    free_port: Callable[[], int],
) -> Iterator[dict[str, Any]]:
    """A server with a backtest and a stock file, after forecasts and three weeks of sales."""
    import uvicorn

    folder = tmp_path_factory.mktemp("overview")
    model_dir = with_backtest(served_model, folder / "model", wape=0.01)
    short_item = str(loaded_model.panel_.item_ids[2])
    stock = folder / "stock.csv"
    pd.DataFrame({"item_id": [short_item], "on_hand": [0.0], "lead_time": [3]}).to_csv(
        stock, index=False
    )
    config = ServiceConfig(
        model_dir=model_dir,
        db=str(folder / "events.db"),
        api_key=API_KEY,
        monitoring=MonitorSettings(windows=(2, 4), alert_min_cells=5),
        stock_file=stock,
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(config), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail("the server did not start within 60 s")
        time.sleep(0.05)
    try:
        with httpx.Client(base_url=url, headers={"X-API-Key": API_KEY}, timeout=30) as client:
            served, _ = forecast_then_sell(client, loaded_model)  # type: ignore[arg-type]
            assert client.get("/health").json()["status"] == "degraded"
        yield {"url": url, "served": served, "short": short_item}
    finally:
        server.should_exit = True
        thread.join(20)


def test_the_page_opens_on_the_overview_with_live_accuracy(
    scene: dict[str, Any],
    browser: Any,  # noqa: F811
    loaded_model: Any,
) -> None:
    wait = WebDriverWait(browser, 60)
    browser.get(scene["url"])
    summary = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#accuracy-summary[data-wape]"))
    served = scene["served"]
    recent = served[served["date"] > week_start(loaded_model, 1).date().isoformat()]
    assert float(summary.get_attribute("data-wape")) == pytest.approx(
        direct(recent)["wape"], abs=1e-5
    )
    assert summary.get_attribute("data-backtest") == "0.01"
    assert "over the last 2 periods" in summary.text
    assert not browser.find_element(By.ID, "overview").get_attribute("hidden")
    assert browser.find_element(By.ID, "item-view").get_attribute("hidden")

    # accuracy over time (live WAPE, coverage) next to the backtest's WAPE
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#accuracy-chart .main-svg"))
    chart = browser.execute_script(
        "return document.getElementById('accuracy-chart').data.map(t => [t.name, t.x.length, t.y])"
    )
    assert [name for name, _, _ in chart] == [
        "live WAPE by forecast date",
        "80% interval coverage",
        "backtest WAPE",
    ]
    dates = sorted(served["date"].unique())
    assert chart[0][1] == len(dates) == 3
    for date, value in zip(dates, chart[0][2], strict=True):
        assert value == pytest.approx(direct(served[served["date"] == date])["wape"], abs=1e-5)
    assert chart[2][2] == [0.01, 0.01]

    # the alert, in the overview and as a badge
    alerts = browser.find_element(By.ID, "alerts")
    assert alerts.text.startswith("Alert: live WAPE") and "backtest's 0.010" in alerts.text
    assert browser.find_element(By.ID, "alert-badge").is_displayed()
    windows = [
        [td.text for td in row.find_elements(By.TAG_NAME, "td")]
        for row in browser.find_elements(By.CSS_SELECTOR, "#accuracy-windows tbody tr")
    ]
    assert ["last 2", "overall", str(len(recent))] == windows[0][:3]
    assert ["last 4", "overall", str(len(served))] in [row[:3] for row in windows]

    # category totals, movers, and the item whose stock does not cover its lead time
    categories = loaded_model.panel_.items["category"].nunique()
    traces = browser.execute_script("return document.getElementById('category-chart').data.length")
    assert traces == categories
    movers = browser.find_elements(By.CSS_SELECTOR, "#movers tbody tr")
    assert len(movers) == 10
    short = browser.find_elements(By.CSS_SELECTOR, "#stock tbody tr a")
    assert [a.text.split(" - ")[0] for a in short] == [scene["short"]]
    assert "1 of 1 stocked items" in browser.find_element(By.ID, "stock-note").text


def test_each_item_has_a_link_that_can_be_shared(
    scene: dict[str, Any],
    browser: Any,  # noqa: F811
) -> None:
    wait = WebDriverWait(browser, 60)
    browser.get(scene["url"])
    link = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#stock tbody a"))
    link.click()
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#forecast-summary[data-total]"))
    item = scene["short"]
    assert browser.execute_script("return location.hash") == f"#item={quote(item, safe='')}"
    assert browser.find_element(By.ID, "overview").get_attribute("hidden")
    total = float(browser.find_element(By.ID, "forecast-summary").get_attribute("data-total"))
    forecast = httpx.get(f"{scene['url']}/items/{quote(item, safe='')}/forecast").json()
    assert total == pytest.approx(sum(p["forecast"] for p in forecast["points"]), abs=1e-3)

    # the link opens the item in a fresh page; ids with "/" are encoded in it
    browser.get("about:blank")
    browser.get(f"{scene['url']}/#item={quote(item, safe='')}")
    title = wait.until(lambda d: d.find_element(By.ID, "item-title"))
    wait.until(lambda d: d.find_element(By.ID, "item-title").text.startswith(item))
    assert title.text.startswith(item)
    assert browser.execute_script("return itemHash('a/b c')") == "#item=a%2Fb%20c"
    assert float(
        wait.until(
            lambda d: d.find_element(By.CSS_SELECTOR, "#forecast-summary[data-total]")
        ).get_attribute("data-total")
    ) == pytest.approx(total, abs=1e-3)
    # back to the overview from the item
    browser.find_element(By.ID, "home").click()
    wait.until(lambda d: not d.find_element(By.ID, "overview").get_attribute("hidden"))
    assert np.isfinite(
        float(browser.find_element(By.ID, "accuracy-summary").get_attribute("data-wape"))
    )
