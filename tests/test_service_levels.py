"""Category and total forecasts in the service: ``GET /levels/forecast`` (issue 18)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("torch")
pytest.importorskip("hierarchicalforecast")

from fastapi.testclient import TestClient

from salesformer.forecasting.levels import level_forecast
from salesformer.forecasting.protocol import DEFAULT_QUANTILES, quantile_column
from salesformer.service.app import create_app
from salesformer.service.core import ServiceConfig
from salesformer.service.monitoring import MonitorSettings

pytest_plugins = ["service_support"]
API_KEY = "test-key-0123456789"
KEY = {"X-API-Key": API_KEY}


def _sums(body: dict[str, Any], level: str) -> np.ndarray:
    rows = [[p["forecast"] for p in s["points"]] for s in body["series"] if s["level"] == level]
    return np.asarray(rows).sum(axis=0)


def test_levels_forecast_is_predict_levels_and_adds_up(loaded_model: Any, tmp_path: Any) -> None:
    config = ServiceConfig(
        model_dir="unused",
        db=str(tmp_path / "e.db"),
        api_key=API_KEY,
        monitoring=MonitorSettings(enabled=False),
    )
    with TestClient(create_app(config, model=loaded_model), headers=KEY) as client:
        params = {"levels": "total,category", "reconcile": "bottom_up", "horizon": 3}
        answer = client.get("/levels/forecast", params={**params, "items": "true"})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        upper = client.get("/levels/forecast", params=params).json()
        ols = client.get("/levels/forecast", params={"horizon": 3}).json()
        keyless = client.get("/levels/forecast", headers={"X-API-Key": ""})
        bad = {  # what is sent: what the one-line answer must name
            ("levels", "brand"): "got 'brand'",
            ("reconcile", "magic"): "'magic'",
            ("horizon", "0"): "got '0'",
            ("horizon", "99"): "got '99'",
        }
        refused = {sent: client.get("/levels/forecast", params=dict([sent])) for sent in bad}
    assert body["levels"] == ["item", "category", "total"] and body["reconcile"] == "bottom_up"
    assert body["origin"] == str(loaded_model.panel_.last_date.date())
    assert {s["level"] for s in upper["series"]} == {"category", "total"}
    # predict --levels at the model's horizon, its first 3 periods
    expected = level_forecast(
        loaded_model,
        ["category", "total"],
        loaded_model.horizon,
        method="bottom_up",
        quantiles=DEFAULT_QUANTILES,
    )
    first = sorted(expected["date"].unique())[:3]
    expected = expected.loc[expected["date"].isin(first)]
    for series in body["series"]:
        assert len(series["points"]) == 3
        rows = expected.loc[expected["item_id"] == series["series_id"]]
        assert [p["forecast"] for p in series["points"]] == rows["LM"].tolist()
        assert [p["quantiles"] for p in series["points"]] == rows[
            [quantile_column("LM", q) for q in DEFAULT_QUANTILES]
        ].to_numpy().tolist()
    for answer_body in (body, ols):
        np.testing.assert_allclose(_sums(answer_body, "category"), _sums(answer_body, "total"))
    np.testing.assert_allclose(_sums(body, "item"), _sums(body, "total"))
    assert ols["reconcile"] == "ols"
    assert keyless.status_code == 401  # it may run a fit: key holders only
    for sent, named in bad.items():
        assert refused[sent].status_code == 422, sent
        detail = refused[sent].json()["detail"]
        assert "\n" not in detail and named in detail, (sent, detail)
