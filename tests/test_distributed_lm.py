"""Backtests of the global text models on Ray equal the local engine's.

The LM forecaster (tiny random encoder) and ``auto`` with an LM candidate are fitted once per
cutoff as a Ray task, then every part is forecast through ``Forecaster.for_items`` on the
workers; the scored forecasts and metrics must equal a local backtest's exactly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pandas.testing import assert_frame_equal

from salesformer.data.contract import Panel
from salesformer.data.synthetic import generate_catalogue
from salesformer.distributed.backtest import backtest_on_ray
from salesformer.evaluation.backtest import backtest
from salesformer.models.registry import make_model

pytest.importorskip("torch")

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_cluster")]

H = 4
TINY_LM: dict[str, Any] = {
    "finetune": "frozen",
    "horizon": H,
    "head_epochs": 2,
    "epoch_samples": 200,
    "batch_items": 16,
    "hidden_size": 16,
    "text_size": 8,
    "threads": 1,
    "progress": False,
}


@pytest.fixture(scope="module")
def panel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    panel = generate_catalogue(n_items=30, n_weeks=60, seed=11).panel()
    return panel.save(tmp_path_factory.mktemp("panel") / "panel")


def test_lm_and_auto_backtests_equal_local(
    panel_dir: Path, tiny_encoder: str, tmp_path: Path
) -> None:
    lm_settings = {"encoder": tiny_encoder, **TINY_LM}
    models = [
        make_model("LM", **lm_settings),
        make_model(
            "auto",
            candidates=("LM", "ADIDA"),
            candidate_settings={"LM": lm_settings},
            horizon=H,
            min_segment_series=5,
        ),
    ]
    local = backtest(models, Panel.load(panel_dir), H, n_windows=1)
    result, report = backtest_on_ray(
        models,
        panel_dir,
        H,
        n_windows=1,
        items_per_part=8,
        out_forecasts=tmp_path / "scored.parquet",
    )
    assert_frame_equal(result.forecasts, local.forecasts)
    assert_frame_equal(result.metrics(), local.metrics())
    assert report.parts == 4 and report.rows == len(local.forecasts)
    assert {"LM", "auto"} <= set(result.metrics()["model"])
