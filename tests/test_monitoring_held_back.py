"""End to end (issue 19): serve a model fitted on the first 60 weeks of a synthetic catalogue,
forecast every item each week and post the 8 held-back weeks' sales as events: the monitor's
accuracy of those forecasts equals a direct computation from the held-back sales.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("torch")

from fastapi.testclient import TestClient

from salesformer.service.app import create_app
from salesformer.service.core import ServiceConfig
from salesformer.service.monitoring import MonitorSettings, model_version

pytest_plugins = ["service_support"]  # the service test fixtures
KEY = {"X-API-Key": "test-key-0123456789"}
HELD_BACK = 8


def test_monitor_scores_eight_held_back_weeks(tiny_encoder: str, tmp_path: Path) -> None:
    from salesformer.data.synthetic import generate_catalogue
    from salesformer.models.lm import LMForecaster
    from service_support import TINY_LM  # loaded as a plugin by then

    panel = generate_catalogue(n_items=12, n_weeks=60 + HELD_BACK, seed=5).panel()
    weeks = panel.dates[-HELD_BACK:]
    model = LMForecaster(encoder=tiny_encoder, **TINY_LM).fit(panel.until(panel.dates[-9]))
    model.save(tmp_path / "model")
    sold = panel.sales.set_index(["item_id", "date"])["sales"]
    config = ServiceConfig(
        model_dir=tmp_path / "model",
        db=str(tmp_path / "events.db"),
        api_key=KEY["X-API-Key"],
        monitoring=MonitorSettings(windows=(4, HELD_BACK)),
    )
    items = [str(i) for i in model.panel_.item_ids]  # items launched later are not served
    served: dict[tuple[str, str, str], tuple[float, float, float]] = {}
    with TestClient(create_app(config)) as client:
        for week in [*weeks, weeks[-1] + timedelta(days=7)]:
            for item in items:  # each morning: every item's forecast, as the dashboard asks
                body = client.get(f"/items/{item}/forecast").json()
                for point in body["points"]:
                    q10, _, q90 = point["quantiles"]
                    key = (item, body["origin"], point["date"])
                    served.setdefault(key, (point["forecast"], q10, q90))
            events = [
                {
                    "event_id": f"{item}-{week.date()}",
                    "item_id": item,
                    "timestamp": (week + timedelta(days=1, hours=10)).isoformat(),
                    "quantity": float(sold.get((item, week), 0.0)) if week in weeks else 1.0,
                }
                for item in items
            ]
            assert client.post("/events", json={"events": events}, headers=KEY).status_code == 200
        report = client.get("/monitoring").json()
    assert report["model_version"] == model_version(tmp_path / "model")
    assert report["scored_through"] == weeks[-1].date().isoformat()

    cells = pd.DataFrame(
        [(*key, *values) for key, values in served.items()],
        columns=["item_id", "origin", "date", "f", "q10", "q90"],
    )
    cells = cells[pd.to_datetime(cells["date"]) <= weeks[-1]].copy()
    cells["y"] = [
        sold[(i, pd.Timestamp(d))] for i, d in zip(cells["item_id"], cells["date"], strict=True)
    ]
    # 8 origins x the items, each forecast over 6 weeks, cut at the last held-back week
    assert len(cells) == len(items) * sum(min(6, HELD_BACK - k) for k in range(HELD_BACK))
    for window, part in (
        (report["windows"][1], cells),
        (report["windows"][0], cells[pd.to_datetime(cells["date"]) > weeks[-5]]),
    ):
        y, f = part["y"].to_numpy(), part["f"].to_numpy()
        found = window["overall"]
        assert found["cells"] == len(part)
        assert found["wape"] == pytest.approx(np.abs(y - f).sum() / np.abs(y).sum(), abs=2e-6)
        assert found["bias"] == pytest.approx((f - y).sum() / np.abs(y).sum(), abs=2e-6)
        inside = np.mean((y >= part["q10"]) & (y <= part["q90"]))
        assert found["coverage80"] == pytest.approx(inside, abs=2e-6)
    assert [row["date"] for row in report["over_time"]] == [str(w.date()) for w in weeks]
