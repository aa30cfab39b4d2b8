"""``POST /items/{id}/forecast``: a known item's live forecast under a plan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("torch")

from fastapi.testclient import TestClient

from salesformer.data.text import item_text
from salesformer.forecasting.plans import PLAN_COPY, plan_future, predict_with_plan
from salesformer.service.app import create_app
from salesformer.service.core import ServiceConfig
from salesformer.service.live import LiveForecaster

pytest_plugins = ["service_support"]  # the service test fixtures
API_KEY = "test-key-0123456789"
KEY = {"X-API-Key": API_KEY}
LEVELS = [0.1, 0.5, 0.9]


@pytest.fixture
def client(loaded_model: Any, tmp_path: Path) -> TestClient:
    config = ServiceConfig(model_dir="unused", db=str(tmp_path / "e.db"), api_key=API_KEY)
    return TestClient(create_app(config, model=loaded_model))


def _dates(model: Any, steps: int) -> list[str]:
    panel = model.panel_
    return [d.date().isoformat() for d in panel.future_dates(panel.last_date, steps)]


def _post(client: TestClient, item: str, body: dict[str, Any]) -> Any:
    return client.post(f"/items/{item}/forecast", json=body, headers=KEY)


def test_plan_forecast_matches_the_library(client: TestClient, loaded_model: Any) -> None:
    item = str(loaded_model.panel_.item_ids[1])
    steps = loaded_model.horizon
    rows = [
        {"date": d, "covariates": {"discount": 0.3, "promo": 1.0}}
        for d in _dates(loaded_model, steps)
    ]
    answer = _post(client, item, {"plan": rows, "quantiles": LEVELS})
    assert answer.status_code == 200, answer.text
    got = answer.json()
    assert got["plan_note"] is not None and "['price']" in got["plan_note"]
    plan = pd.DataFrame(
        {"item_id": item, "date": _dates(loaded_model, steps), "discount": 0.3, "promo": 1.0}
    )
    with pytest.warns(UserWarning):
        expected, _ = predict_with_plan(loaded_model, steps, plan, quantiles=LEVELS)
    expected = expected[expected["item_id"] == item]
    assert [p["forecast"] for p in got["points"]] == pytest.approx(
        expected["LM"].to_list(), rel=1e-4, abs=1e-4
    )
    plain = client.get(f"/items/{item}/forecast", headers=KEY).json()
    assert [p["forecast"] for p in plain["points"]] != [p["forecast"] for p in got["points"]]


def test_partial_plan_says_what_fell_back(client: TestClient, loaded_model: Any) -> None:
    item = str(loaded_model.panel_.item_ids[0])
    first = _dates(loaded_model, 1)[0]
    body = {"plan": [{"date": first, "covariates": {"price": 3.0}}], "horizon": 3}
    got = _post(client, item, body).json()
    assert len(got["points"]) == 3
    assert got["plan_note"].startswith("plan covers 1 of 3 (item, date) rows")


def test_promotion_copy_is_read_as_the_item_text(client: TestClient, loaded_model: Any) -> None:
    item = str(loaded_model.panel_.item_ids[2])
    first = _dates(loaded_model, 1)[0]
    body = {
        "plan": [{"date": first, "covariates": {"promo": 1.0}}],
        "promotion_copy": "Half price this week",
        "quantiles": LEVELS,
    }
    got = _post(client, item, body).json()
    live = LiveForecaster(loaded_model)
    plan = live.future_plan(item, None, live.wide.n_history - 1)
    plan.loc[0, "promo"] = 1.0
    base = loaded_model.panel_.items.set_index("item_id")["text"][item]
    text = item_text(base, promotion="Half price this week")
    expected = live.forecast(
        item, None, live.wide.n_history - 1, live.horizon, (0.1, 0.5, 0.9), plan, text
    )
    assert [p["forecast"] for p in got["points"]] == pytest.approx(
        expected.point.tolist(), rel=1e-5, abs=1e-6
    )


@pytest.mark.parametrize(
    ("covariates", "offset", "expected"),
    [
        ({"discount": 1.0}, 0, "'discount' must be in [0, 1)"),
        ({"price": -1.0}, 0, "must be finite and >= 0"),
        ({"colour": 1.0}, 0, "unknown column(s) ['colour']"),
        ({"price": 2.0}, 40, "not a period of the forecast horizon"),
    ],
)
def test_bad_plans_are_422_with_one_line(
    client: TestClient, loaded_model: Any, covariates: dict[str, float], offset: int, expected: str
) -> None:
    item = str(loaded_model.panel_.item_ids[0])
    when = _dates(loaded_model, offset + 1)[offset]
    answer = _post(client, item, {"plan": [{"date": when, "covariates": covariates}]})
    assert answer.status_code == 422
    detail = answer.json()["detail"]
    assert expected in str(detail) and "\n" not in str(detail)


def test_plan_of_an_unknown_item_is_404(client: TestClient, loaded_model: Any) -> None:
    first = _dates(loaded_model, 1)[0]
    answer = _post(client, "NO-SUCH", {"plan": [{"date": first, "covariates": {"price": 1.0}}]})
    assert answer.status_code == 404


def test_plan_with_text_for_a_number_is_422(client: TestClient, loaded_model: Any) -> None:
    item = str(loaded_model.panel_.item_ids[0])
    first = _dates(loaded_model, 1)[0]
    answer = _post(client, item, {"plan": [{"date": first, "covariates": {"price": "cheap"}}]})
    assert answer.status_code == 422
    too_long = _post(
        client, item, {"plan": [{"date": first, "covariates": {"price": 1.0}}], "horizon": 99}
    )
    assert too_long.status_code == 422 and "horizon" in too_long.json()["detail"]


def test_library_plan_copy_goes_to_the_lm_text(loaded_model: Any) -> None:
    items = [str(i) for i in loaded_model.panel_.item_ids[:2]]
    steps = 3
    dates = _dates(loaded_model, steps)
    plan = pd.DataFrame(
        {
            "item_id": [items[0]] * steps + [items[1]] * steps,
            "date": dates * 2,
            "promo": 1.0,
            PLAN_COPY: ["Half price"] * steps + [None] * steps,
        }
    )
    with pytest.warns(UserWarning):
        got, report = predict_with_plan(loaded_model, steps, plan, quantiles=LEVELS)
    assert report.copy_items == 1
    base = loaded_model.panel_.items.set_index("item_id")["text"][items[0]]
    texts = {items[0]: item_text(base, promotion="Half price")}
    with pytest.warns(UserWarning):
        future = plan_future(loaded_model.panel_, steps, plan.drop(columns=PLAN_COPY)).future
    expected = loaded_model.predict_with_texts(steps, texts, future=future, quantiles=LEVELS)
    pd.testing.assert_frame_equal(got, expected)
