"""Accuracy monitoring (issue 19): served forecasts kept, scored against the events that
arrive, checked against a direct computation; the alert; ``/metrics``; the overview.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("torch")

from fastapi.testclient import TestClient

from salesformer.errors import ConfigError
from salesformer.service.app import create_app
from salesformer.service.core import ServiceConfig
from salesformer.service.monitoring import MonitorSettings, model_version

pytest_plugins = ["service_support"]  # the service test fixtures
API_KEY = "test-key-0123456789"
KEY = {"X-API-Key": API_KEY}
WEEKS = 3  # closed weeks of events after the panel


def week_start(model: Any, week: int) -> datetime:
    """Monday of the ``week``-th week after the panel's last one (10:00)."""
    last = pd.Timestamp(model.panel_.last_date).to_pydatetime()
    return last + timedelta(days=7 * week, hours=10)


def serve(model_dir: Path, db: Path, **settings: Any) -> TestClient:
    monitoring = MonitorSettings(windows=(2, 4), alert_min_cells=5)
    config = ServiceConfig(
        model_dir=model_dir, db=str(db), api_key=API_KEY, monitoring=monitoring, **settings
    )
    return TestClient(create_app(config))


def with_backtest(served_model: Path, folder: Path, wape: float) -> Path:
    """A copy of the model folder with a backtest summary of the given WAPE."""
    shutil.copytree(served_model, folder)
    summary = {"overall": [{"model": "LM", "wape": wape, "bias": 0.01, "coverage80": 0.8}]}
    (folder / "metrics.json").write_text(json.dumps(summary))
    return folder


def forecast_then_sell(client: TestClient, model: Any) -> tuple[pd.DataFrame, dict[str, str]]:
    """Forecast every item, then post WEEKS weeks of sales and one event that closes them.

    Returns:
        The served cells with their actuals (``item_id, date, y, f, q10, q90``) and the
        items' categories.
    """
    rng = np.random.default_rng(3)
    items = [str(i) for i in model.panel_.item_ids]
    rows = []
    for item in items:
        body = client.get(f"/items/{item}/forecast").json()
        for point in body["points"]:
            q10, _, q90 = point["quantiles"]
            rows.append((item, point["date"], point["forecast"], q10, q90))
    served = pd.DataFrame(rows, columns=["item_id", "date", "f", "q10", "q90"])
    events, sold = [], {}
    for week in range(1, WEEKS + 1):
        for item in items:
            total = 0.0
            for n in range(int(rng.integers(0, 3))):
                quantity = float(rng.integers(1, 9))
                when = week_start(model, week) + timedelta(days=n)
                events.append(
                    {
                        "event_id": f"{item}-{week}-{n}",
                        "item_id": item,
                        "timestamp": when.isoformat(),
                        "quantity": quantity,
                    }
                )
                total += quantity
            sold[(item, week_start(model, week).date().isoformat())] = total
    # one sale in the week after: the service clock moves past the WEEKS weeks, closing them
    events.append(
        {
            "event_id": "closer",
            "item_id": items[0],
            "timestamp": week_start(model, WEEKS + 1).isoformat(),
            "quantity": 1.0,
        }
    )
    assert client.post("/events", json={"events": events}, headers=KEY).status_code == 200
    closed = {week_start(model, w).date().isoformat() for w in range(1, WEEKS + 1)}
    served = served[served["date"].isin(closed)].copy()
    served["y"] = [sold[(i, d)] for i, d in zip(served["item_id"], served["date"], strict=True)]
    items_table = model.panel_.items.drop_duplicates("item_id")
    categories = dict(zip(items_table["item_id"].astype(str), items_table["category"], strict=True))
    return served, categories


def direct(cells: pd.DataFrame) -> dict[str, float]:
    """WAPE, bias and 80% coverage of the cells, computed here without the library."""
    y, f = cells["y"].to_numpy(), cells["f"].to_numpy()
    return {
        "cells": len(cells),
        "wape": np.abs(y - f).sum() / np.abs(y).sum(),
        "bias": (f - y).sum() / np.abs(y).sum(),
        "coverage80": np.mean((y >= cells["q10"]) & (y <= cells["q90"])),
    }


def assert_scores(found: dict[str, Any], expected: dict[str, float]) -> None:
    assert found["cells"] == expected["cells"]
    for measure in ("wape", "bias", "coverage80"):
        assert found[measure] == pytest.approx(expected[measure], abs=2e-6), measure


def test_live_accuracy_equals_a_direct_computation(
    served_model: Path, loaded_model: Any, tmp_path: Path
) -> None:
    db = tmp_path / "events.db"
    with serve(served_model, db) as client:
        served, categories = forecast_then_sell(client, loaded_model)
        report = client.get("/monitoring").json()
    assert report["enabled"] and report["model_version"] == model_version(served_model)
    assert report["backtest"] is None and "no backtest" in report["backtest_note"]
    assert report["scored_through"] == week_start(loaded_model, WEEKS).date().isoformat()
    short, long = report["windows"]
    assert (short["periods"], long["periods"]) == (2, 4)
    assert_scores(long["overall"], direct(served))  # all WEEKS closed weeks
    last_two = served[served["date"] > week_start(loaded_model, 1).date().isoformat()]
    assert_scores(short["overall"], direct(last_two))
    served["category"] = served["item_id"].map(categories)
    for category, cells in served.groupby("category"):
        assert_scores(long["by_category"][category], direct(cells))
    for item, cells in served.groupby("item_id"):
        if cells["y"].sum() > 0:
            assert_scores(long["by_item"][item], direct(cells))
    for row in report["over_time"]:
        assert_scores(row, direct(served[served["date"] == row["date"]]))
    assert len(report["over_time"]) == WEEKS

    # the served forecasts are in the store: a restarted service reports the same
    with serve(served_model, db) as client:
        again = client.get("/monitoring").json()
    assert again["windows"] == report["windows"]


def test_forecasts_are_recorded_once_per_origin(served_model: Path, tmp_path: Path) -> None:
    with serve(served_model, tmp_path / "e.db", forecast_cache=0) as client:
        item = client.get("/items?limit=1").json()["items"][0]["item_id"]
        for _ in range(3):
            client.get(f"/items/{item}/forecast")
        client.app.state.service.monitor.flush()
        report = client.get("/monitoring").json()
    assert report["recorded_cells"] == 6  # one forecast of the tiny model's horizon


def test_alert_fires_when_live_wape_exceeds_the_backtest(
    served_model: Path, loaded_model: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model_dir = with_backtest(served_model, tmp_path / "model", wape=0.01)
    caplog.set_level(logging.INFO, logger="salesformer.service.monitoring")
    with serve(model_dir, tmp_path / "e.db") as client:
        assert client.get("/health").json()["status"] == "ok"
        served, _ = forecast_then_sell(client, loaded_model)
        client.app.state.service.monitor.flush()
        health = client.get("/health").json()
        metrics = client.get("/metrics").text
        report = client.get("/monitoring").json()
    live = direct(served[served["date"] > week_start(loaded_model, 1).date().isoformat()])
    assert health["status"] == "degraded"
    assert f"live WAPE {live['wape']:.3f} over the last 2 periods" in health["reason"]
    assert "backtest's 0.010" in health["reason"]
    assert report["alert"]["firing"] and report["alert"]["threshold"] == pytest.approx(0.012)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"accuracy alert: {health['reason']}"]  # logged once
    version = model_version(model_dir)
    assert f'salesformer_accuracy_alert{{window="2",model_version="{version}"}} 1' in metrics
    assert f'salesformer_backtest_wape{{model_version="{version}"}} 0.01' in metrics


def test_no_alert_within_the_margin(served_model: Path, loaded_model: Any, tmp_path: Path) -> None:
    model_dir = with_backtest(served_model, tmp_path / "model", wape=50.0)
    with serve(model_dir, tmp_path / "e.db") as client:
        forecast_then_sell(client, loaded_model)
        health = client.get("/health").json()
        metrics = client.get("/metrics").text
    assert health["status"] == "ok" and health["reason"] is None
    assert re.search(r'salesformer_accuracy_alert\{window="2",model_version="\w+"\} 0', metrics)


def test_metrics_export_the_scores(served_model: Path, loaded_model: Any, tmp_path: Path) -> None:
    with serve(served_model, tmp_path / "e.db") as client:
        served, categories = forecast_then_sell(client, loaded_model)
        text = client.get("/metrics").text
    version = model_version(served_model)
    expected = direct(served)

    def gauge(measure: str, **labels: str) -> float:
        inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
        pattern = rf"^salesformer_accuracy_{measure}\{{{re.escape(inner)}\}} (\S+)$"
        found = re.findall(pattern, text, flags=re.MULTILINE)
        assert len(found) == 1, (measure, labels)
        return float(found[0])

    common = {"window": "4", "model_version": version}
    assert gauge("wape", scope="overall", **common) == pytest.approx(expected["wape"], abs=2e-6)
    assert gauge("bias", scope="overall", **common) == pytest.approx(expected["bias"], abs=2e-6)
    assert gauge("cells", scope="overall", **common) == expected["cells"]
    category = sorted(set(categories.values()))[0]
    cells = served[served["item_id"].map(categories) == category]
    found = gauge("coverage80", scope="category", category=category, **common)
    assert found == pytest.approx(direct(cells)["coverage80"], abs=2e-6)
    assert "# TYPE salesformer_accuracy_wape gauge" in text
    assert "salesformer_requests_total" in text  # the request metrics are still there


def test_monitoring_can_be_turned_off(served_model: Path, tmp_path: Path) -> None:
    settings = MonitorSettings(enabled=False)
    config = ServiceConfig(model_dir=served_model, db=str(tmp_path / "e.db"), monitoring=settings)
    with TestClient(create_app(config)) as client:
        assert client.get("/monitoring").json() == {"enabled": False}
        assert "salesformer_accuracy" not in client.get("/metrics").text
        assert client.app.state.service.monitor is None


def test_model_version_follows_the_config(served_model: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(served_model, tmp_path / "model")
    assert model_version(copy) == model_version(served_model)
    config = copy / "config.json"
    config.write_text(config.read_text() + " ")
    assert model_version(copy) != model_version(served_model)
    assert model_version(tmp_path / "nowhere") == model_version(None) == "unsaved"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (MonitorSettings(windows=()), "accuracy windows must be 1 to 8"),
        (MonitorSettings(windows=(0, 4)), "got [0, 4]"),
        (MonitorSettings(alert_margin=-0.1), "alert_margin must be in [0, 10]"),
        (MonitorSettings(alert_min_cells=0), "alert_min_cells must be in"),
    ],
)
def test_bad_settings_say_what_is_wrong(settings: MonitorSettings, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        settings.check()


def test_a_malformed_backtest_file_stops_the_start(served_model: Path, tmp_path: Path) -> None:
    folder = shutil.copytree(served_model, tmp_path / "model")
    (folder / "metrics.json").write_text('{"overall": "no rows"}')
    with pytest.raises(ConfigError, match="is not a backtest summary"):
        serve(folder, tmp_path / "e.db")


# -- the overview -----------------------------------------------------------------------------


def test_overview_totals_movers_and_stock(
    served_model: Path, loaded_model: Any, tmp_path: Path
) -> None:
    items = [str(i) for i in loaded_model.panel_.item_ids]
    with serve(served_model, tmp_path / "a.db") as client:
        forecasts = {i: client.get(f"/items/{i}/forecast").json()["points"] for i in items}
    busiest = max(items, key=lambda i: sum(p["forecast"] for p in forecasts[i][:2]))
    stock = tmp_path / "stock.csv"
    pd.DataFrame(
        {
            "item_id": [busiest, items[1] if busiest != items[1] else items[2], "NOT-SERVED"],
            "on_hand": [0.0, 1e6, 5.0],
            "lead_time": [2, 2, 1],
        }
    ).to_csv(stock, index=False)
    with serve(served_model, tmp_path / "b.db", stock_file=stock) as client:
        body = client.get("/overview?periods=4&top=3").json()
    assert body["dates"] == [p["date"] for p in forecasts[items[0]]]
    table = loaded_model.panel_.items.drop_duplicates("item_id").set_index("item_id")
    for row in body["by_category"]:
        members = [i for i in items if table.at[i, "category"] == row["category"]]
        expected = np.sum([[p["forecast"] for p in forecasts[i]] for i in members], axis=0)
        np.testing.assert_allclose(row["totals"], expected, atol=1e-3)
    changes = [abs(row["change"]) for row in body["movers"]]
    assert len(changes) == 3 and changes == sorted(changes, reverse=True)
    mover = body["movers"][0]
    assert mover["next"] == pytest.approx(
        sum(p["forecast"] for p in forecasts[mover["item_id"]][:4]), abs=1e-3
    )
    assert body["stock"]["known"] and body["stock"]["items"] == 2
    assert [row["item_id"] for row in body["stock"]["short"]] == [busiest]
    short = body["stock"]["short"][0]
    demand = sum(p["forecast"] for p in forecasts[busiest][:2])
    assert short["shortfall"] == pytest.approx(demand, abs=1e-3)
    assert "1 rows of the stock file are not served items" in body["stock"]["note"]


def test_overview_without_stock_says_how_to_give_it(served_model: Path, tmp_path: Path) -> None:
    with serve(served_model, tmp_path / "e.db") as client:
        stock = client.get("/overview").json()["stock"]
    assert not stock["known"] and stock["short"] == [] and "--stock FILE" in stock["note"]


def test_serve_refuses_bad_monitoring_options_in_one_line(
    served_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from salesformer.cli.main import run

    stock = tmp_path / "stock.csv"
    stock.write_text("item_id,on_hand,lead_time\nA,-1,2\n")
    for options, message in (
        (["--accuracy-windows", "4,x"], "--accuracy-windows must be comma-separated"),
        (["--alert-margin", "-1"], "alert_margin must be in [0, 10]"),
        (["--stock", str(tmp_path / "none.csv")], "--stock: no such file"),
        (["--stock", str(stock)], "on_hand of item 'A' must be a number in [0, 1e+12]"),
    ):
        with pytest.raises(SystemExit) as info:
            run(["serve", "--model", str(served_model), "--db", str(tmp_path / "e.db"), *options])
        assert info.value.code == 2
        error = capsys.readouterr().err.strip()  # "loading ..." first, for a loaded model
        assert "Traceback" not in error
        last = error.splitlines()[-1]
        assert last.startswith("error: ") and message in last


# -- the served-forecasts table ---------------------------------------------------------------


def test_served_log_keeps_the_first_forecast_of_a_key(
    store_location: Callable[[], str],
) -> None:
    from salesformer.service.served_log import ServedRow, open_served_log
    from salesformer.service.store import open_store

    location = store_location()
    store = open_store(location)  # the events table and the served forecasts, side by side
    log = open_served_log(location)
    try:

        def row(version: str, date: str, point: float, q10: float | None) -> ServedRow:
            return ServedRow(version, "a/b", "2024-01-01", date, point, q10, None, "{}", "t")

        log.add([row("v1", "2024-01-08", 3.0, 1.0), row("v2", "2024-01-08", 9.0, None)])
        log.add([row("v1", "2024-01-08", 5.0, 2.0), row("v1", "2024-01-15", 4.0, None)])
        kept = sorted(log.rows("v1"), key=lambda r: r.date)
        assert [(r.date, r.point, r.q10, r.q90) for r in kept] == [
            ("2024-01-08", 3.0, 1.0, None),
            ("2024-01-15", 4.0, None, None),
        ]
        assert [r.point for r in log.rows("v2")] == [9.0]
        assert log.rows("v3") == []
        assert store.count_events() == 0
    finally:
        log.close()
        store.close()


def test_grouped_scores_equal_the_metrics_functions_per_group() -> None:
    from salesformer.service.accuracy import HIGH, LOW, POINT, score, scores_by

    rng = np.random.default_rng(0)
    n = 400
    frame = pd.DataFrame(
        {
            "item_id": rng.choice(["a", "b/c", "d", "e"], n),
            "y": rng.poisson(3, n).astype(float),
            POINT: rng.random(n) * 6,
            LOW: rng.random(n) * 2,
            HIGH: 2 + rng.random(n) * 5,
        }
    )
    frame.loc[frame.index[::7], LOW] = np.nan  # cells served without the 10% quantile
    frame.loc[frame["item_id"] == "e", "y"] = 0.0  # nothing sold: no WAPE, no bias
    grouped = scores_by(frame, "item_id")
    assert sorted(grouped) == ["a", "b/c", "d", "e"]
    for item, part in frame.groupby("item_id"):
        assert grouped[item] == score(part)
    assert grouped["e"]["wape"] is None and grouped["e"]["coverage80"] is not None
