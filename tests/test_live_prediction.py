"""One prediction path: the live service's forecast is ``predict``'s, bit for bit.

The service builds one item's arrays from the panel and its events; ``predict`` builds every
item's from a panel. Both then call :func:`salesformer.models.lm.prediction.forecast_wide`, so
the numbers must be equal exactly (no tolerance), before any event and after events against
``predict`` on the panel extended by those events.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("torch")

from salesformer.data.contract import DATE, ITEM_ID, SALES, validate_panel
from salesformer.service.core import SalesService, ServiceConfig
from salesformer.service.store import Event

pytest_plugins = ["service_support"]
LEVELS = (0.05, 0.1, 0.5, 0.8, 0.9)


def start(model: Any, tmp_path: Path) -> SalesService:
    return SalesService.start(
        ServiceConfig("unused", db=str(tmp_path / "events.db"), forecast_cache=0), model
    )


def predicted(model: Any, horizon: int, item: str) -> pd.DataFrame:
    frame = model.predict(horizon, quantiles=LEVELS)
    return frame[frame[ITEM_ID] == item]


def live_values(forecast: Any) -> np.ndarray:
    return np.column_stack([forecast.point, forecast.quantiles])


@pytest.mark.parametrize("horizon", [1, 4, 6])
def test_every_item_equals_predict_exactly_before_any_event(
    loaded_model: Any, tmp_path: Path, horizon: int
) -> None:
    service = start(loaded_model, tmp_path)
    expected = loaded_model.predict(horizon, quantiles=LEVELS)
    assert len(service.live.item_ids) == expected[ITEM_ID].nunique()
    for item in service.live.item_ids:
        got = service.forecast(item, horizon, LEVELS)
        rows = expected[expected[ITEM_ID] == item]
        assert list(got.dates) == list(rows[DATE])
        np.testing.assert_array_equal(live_values(got), rows.iloc[:, 2:].to_numpy())


def extended_model(model: Any, panel: Any) -> Any:
    """The fitted model with another panel (no refit): what the service's events amount to."""
    twin = model.clone()
    vars(twin).update({k: v for k, v in vars(model).items() if k.endswith("_")})
    twin.panel_ = panel
    return twin


def test_after_events_equals_predict_on_the_extended_panel_exactly(
    loaded_model: Any, tmp_path: Path
) -> None:
    service = start(loaded_model, tmp_path)
    item = service.live.item_ids[3]
    last = pd.Timestamp(loaded_model.panel_.last_date).to_pydatetime()
    service.ingest(
        [
            Event("a", item, last + timedelta(days=2), 5.0, 99.0),
            Event("b", item, last + timedelta(days=8), 4.0, 6.0),
            Event("c", item, last + timedelta(days=9), 2.0, 6.0),
        ]
    )
    got = service.forecast(item, 5, LEVELS)

    sales = loaded_model.panel_.sales.copy()
    sales.loc[(sales[ITEM_ID] == item) & (sales[DATE] == last), SALES] += 5.0
    week = sales[sales[DATE] == last].copy()
    week[DATE] = last + timedelta(days=7)
    week[SALES] = 0.0
    week.loc[week[ITEM_ID] == item, [SALES, "price"]] = [6.0, 6.0]
    panel = validate_panel(
        pd.concat([sales, week], ignore_index=True),
        loaded_model.panel_.items,
        freq=loaded_model.panel_.freq,
        known_future=loaded_model.panel_.known_future,
    )
    rows = predicted(extended_model(loaded_model, panel), 5, item)
    assert list(got.dates) == list(rows[DATE])
    np.testing.assert_array_equal(live_values(got), rows.iloc[:, 2:].to_numpy())
    before = predicted(loaded_model, 5, item)
    assert not np.array_equal(got.point, before[loaded_model.name].to_numpy())


def test_a_known_item_forecast_calls_no_encoder(
    loaded_model: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = start(loaded_model, tmp_path)

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the encoder ran for a known item")

    monkeypatch.setattr(type(loaded_model), "encode_texts", forbidden)
    assert len(service.forecast(service.live.item_ids[0], 2).point) == 2
