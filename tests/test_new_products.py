"""New products live: POST /items registers a product, its cold-start forecast comes at once,
its events are accepted and its forecast moves to its own history as they arrive; events of
an item nobody registered are refused with a hint to register it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("torch")

from fastapi.testclient import TestClient

from salesformer.service.app import create_app
from salesformer.service.core import ServiceConfig

pytest_plugins = ["service_support"]
API_KEY = "test-key-0123456789"
KEY = {"X-API-Key": API_KEY}


def client_for(model: Any, db: Path) -> TestClient:
    config = ServiceConfig(model_dir="unused", db=str(db), api_key=API_KEY)
    return TestClient(create_app(config, model=model))


def product(model: Any) -> dict[str, Any]:
    launch = (pd.Timestamp(model.panel_.last_date) + pd.Timedelta(days=7)).date().isoformat()
    return {"item_id": "NEW/mug-1", "text": "Ceramic mug, blue glaze, 350 ml", "price": 6.5,
            "launch_date": launch}  # fmt: skip


def weekly_events(model: Any, weeks: int, quantity: float) -> list[dict[str, Any]]:
    start = pd.Timestamp(model.panel_.last_date) + pd.Timedelta(days=7)
    return [
        {
            "event_id": f"n{w}",
            "item_id": "NEW/mug-1",
            "quantity": quantity,
            "price": 6.5,
            "timestamp": (start + pd.Timedelta(days=7 * w + 2)).isoformat(),
        }
        for w in range(weeks)
    ]


def points(answer: Any) -> np.ndarray:
    assert answer.status_code == 200, answer.text
    return np.array([p["forecast"] for p in answer.json()["points"]])


def test_events_of_an_unregistered_item_are_refused(loaded_model: Any, tmp_path: Path) -> None:
    client = client_for(loaded_model, tmp_path / "e.db")
    answer = client.post("/events", json={"events": weekly_events(loaded_model, 1, 3)}, headers=KEY)
    assert answer.status_code == 404
    detail = answer.json()["detail"]
    assert "'NEW/mug-1' is neither an item of the model nor a registered product" in detail
    assert "register it first with POST /items" in detail and "\n" not in detail
    assert client.app.state.service.store.count_events() == 0  # type: ignore[attr-defined]


def test_register_forecast_and_move_to_history(loaded_model: Any, tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    client = client_for(loaded_model, db)
    body = product(loaded_model)
    assert client.post("/items", json=body).status_code == 401
    registered = client.post("/items", json=body, headers=KEY)
    cold = points(registered)
    # the cold start is exactly the new-item forecast of the same product
    assert np.array_equal(cold, points(client.post("/forecast/new-item", json=body, headers=KEY)))
    assert np.array_equal(cold, points(client.get("/items/NEW%2Fmug-1/forecast")))
    # registering again is a no-op; other details under the same id are a conflict
    assert client.post("/items", json=body, headers=KEY).status_code == 200
    clash = client.post("/items", json={**body, "price": 9.0}, headers=KEY)
    assert clash.status_code == 409 and "already registered with another price" in clash.text
    known = str(loaded_model.panel_.item_ids[0])
    refused = client.post("/items", json={**body, "item_id": known}, headers=KEY)
    assert refused.status_code == 422 and "is an item the model knows" in refused.text

    # sales arrive: the forecast leaves the cold start for the product's own level
    service = client.app.state.service  # type: ignore[attr-defined]
    book, live = service.products, service.live
    gaps = []
    for weeks in (1, 3, 6):
        sent = client.post("/events", json={"events": weekly_events(loaded_model, weeks, 40.0)},
                           headers=KEY)  # fmt: skip
        assert sent.status_code == 200, sent.text
        now = points(client.get("/items/NEW%2Fmug-1/forecast"))
        history = book._history(
            live, book._products["NEW/mug-1"], *_inputs(book, live), len(now), (0.1, 0.5, 0.9)
        )
        weight = weeks / (weeks + book.prior_weeks)
        ages = np.minimum(np.arange(weeks, weeks + len(now)), live.horizon - 1)
        launch_cold = book._cold(
            live, book._products["NEW/mug-1"], live.grid.date_of(live.wide.n_history),
            live.horizon, (0.1, 0.5, 0.9),
        )  # fmt: skip
        blended = weight * history.point + (1 - weight) * launch_cold.point[ages]
        assert np.allclose(now, blended, rtol=0, atol=1e-9)
        gaps.append(abs(float(now.mean()) - 40.0))
    # 40 units a week for 6 weeks: the forecast is now nearer that level than the cold start
    assert gaps[-1] < abs(float(cold.mean()) - 40.0)

    # a restart keeps the product and its events: the same forecast
    client.close()
    again = client_for(loaded_model, db)
    assert np.array_equal(points(again.get("/items/NEW%2Fmug-1/forecast")), now)


def _inputs(book: Any, live: Any) -> tuple[Any, ...]:
    """The events, their periods, the first period and the clock of the product."""
    events = list(book._sales["NEW/mug-1"].events)
    periods = [live.grid.index(e.timestamp) for e in events]
    launch = live.wide.n_history
    return events, periods, min([launch, *periods]), max([launch - 1, *periods])
