"""The LM reads calendar covariates; the live service fills them for the horizon like predict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("fastapi")

from salesformer.data.calendars import add_calendar
from salesformer.data.contract import DATE, ITEM_ID
from salesformer.data.synthetic import generate_catalogue
from salesformer.service.core import SalesService, ServiceConfig

pytest_plugins = ["service_support"]
pytestmark = pytest.mark.slow  # fits a tiny LM: about 20 s of CPU
LEVELS = (0.1, 0.5, 0.9)
TINY_LM: dict[str, Any] = {
    "head_epochs": 3,
    "finetune": "frozen",
    "epoch_samples": 400,
    "batch_items": 16,
    "origins_per_item": 4,
    "hidden_size": 32,
    "text_size": 8,
    "horizon": 6,
    "threads": 1,
    "progress": False,
}


@pytest.fixture(scope="module")
def calendared_lm(tiny_encoder: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    import torch

    from salesformer.models.lm import LMForecaster
    from salesformer.models.persist import load_model

    torch.set_num_threads(1)
    panel = generate_catalogue(n_items=8, n_weeks=60, seed=5, events=True).panel()
    panel = add_calendar(panel, "GB")
    model = LMForecaster(encoder=tiny_encoder, **TINY_LM).fit(panel)
    folder = tmp_path_factory.mktemp("calendar-lm") / "model"
    model.save(folder)
    return load_model(folder)


def test_lm_reads_the_calendar_and_the_live_forecast_equals_predict(
    calendared_lm: Any, tmp_path: Path
) -> None:
    assert "holiday_gb_before" in calendared_lm.standardizer_.names
    assert calendared_lm.panel_.calendar["holidays"] == ["GB"]
    service = SalesService.start(
        ServiceConfig("unused", db=str(tmp_path / "events.db"), forecast_cache=0),
        calendared_lm,
    )
    expected = calendared_lm.predict(6, quantiles=LEVELS)
    item = service.live.item_ids[0]
    rows = expected[expected[ITEM_ID] == item]
    got = service.forecast(item, 6, LEVELS)
    assert list(got.dates) == list(rows[DATE])
    np.testing.assert_array_equal(
        np.column_stack([got.point, got.quantiles]), rows.iloc[:, 2:].to_numpy()
    )
    plan = service.live.future_plan(item, None, service.live.wide.n_history - 1)
    # the panel ends 2023-02-20; Good Friday 2023-04-07 is in the horizon's last week
    assert plan["holiday_gb"].tolist() == [0, 0, 0, 0, 0, 1]


def test_lm_explanation_puts_calendar_covariates_in_the_calendar_group(
    calendared_lm: Any,
) -> None:
    pytest.importorskip("captum")
    from salesformer.explain import explain

    attributions = explain(calendared_lm, "SKU00000", 2, n_steps=4).attributions
    groups = attributions.groupby("feature")["group"].first()
    assert groups["holiday_gb"] == "calendar" and groups["event_summer_sale_after"] == "calendar"
    assert groups["price"] == "known-future"
