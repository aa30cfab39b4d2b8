"""The backtest driver: cutoffs, evaluated items, and no look past the cutoff."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from salesformer.data.contract import Panel
from salesformer.errors import ConfigError
from salesformer.evaluation.backtest import backtest, resolve_cutoffs, series_facts
from salesformer.models.base import Forecaster, quantile_column


@dataclass
class LastValue(Forecaster):
    """Repeats the last observed value; records what it was shown."""

    seen: ClassVar[list[tuple[pd.Timestamp, pd.Timestamp]]] = []
    name: ClassVar[str] = "LastValue"

    def _fit(self, panel: Panel) -> None:
        self.last_ = panel.sales.groupby("item_id")["sales"].last()

    def _predict(
        self, horizon: int, future: pd.DataFrame, quantiles: tuple[float, ...]
    ) -> pd.DataFrame:
        LastValue.seen.append((self.panel_.last_date, future["date"].max()))
        out = future[["item_id", "date"]].copy()
        out[self.name] = out["item_id"].map(self.last_).to_numpy()
        for q in quantiles:
            out[quantile_column(self.name, q)] = out[self.name] * (0.5 + q)
        return out


def test_models_see_only_data_up_to_each_cutoff(small_panel: Panel) -> None:
    LastValue.seen.clear()
    result = backtest([LastValue()], small_panel, horizon=4, n_windows=3, step=5)
    assert len(LastValue.seen) == 3
    for (last_seen, future_end), cutoff in zip(LastValue.seen, result.cutoffs, strict=True):
        assert last_seen == cutoff
        assert future_end == cutoff + 4 * small_panel.offset
    assert result.cutoffs[-1] == small_panel.dates[-5]
    assert np.diff([c.value for c in result.cutoffs]).tolist() == [5 * 7 * 86400 * 10**9] * 2


def test_forecast_frame_layout_and_actuals(small_panel: Panel) -> None:
    result = backtest([LastValue()], small_panel, horizon=3, n_windows=1)
    f = result.forecasts
    assert list(f.columns[:4]) == ["item_id", "cutoff", "date", "y"]
    assert "LastValue-q50" in f.columns
    sample = f.iloc[0]
    truth = small_panel.sales.set_index(["item_id", "date"])["sales"]
    assert sample["y"] == truth[(sample["item_id"], sample["date"])]
    assert (f.groupby(["item_id", "cutoff"]).size() == 3).all()
    metrics = result.metrics()
    assert metrics.loc[0, "model"] == "LastValue" and metrics.loc[0, "wape"] > 0


def test_evaluated_items_follow_the_protocol() -> None:
    dates = pd.date_range("2024-01-01", periods=40, freq="W-MON")
    rows = []
    for item, start, zero_tail in (("old", 0, False), ("young", 30, False), ("dead", 0, True)):
        for i, d in enumerate(dates[start:]):
            sales = 0.0 if zero_tail and start + i > 15 else 3.0
            rows.append({"item_id": item, "date": d, "sales": sales})
    from salesformer.data.contract import validate_panel

    panel = validate_panel(pd.DataFrame(rows))
    cutoff = dates[35]
    facts = series_facts(panel, cutoff, min_history=13, active_within=13)
    assert facts["item_id"].tolist() == ["old"]
    loose = series_facts(panel, cutoff, min_history=2, active_within=None)
    assert set(loose["item_id"]) == {"old", "young", "dead"}
    assert loose.set_index("item_id").loc["old", "history_segment"] == "long (>26)"


def test_bad_cutoffs_are_refused(small_panel: Panel) -> None:
    with pytest.raises(ConfigError, match="not dates of the panel"):
        resolve_cutoffs(small_panel, 4, ["2020-01-01"])
    with pytest.raises(ConfigError, match="fewer than 4 periods"):
        resolve_cutoffs(small_panel, 4, [str(small_panel.dates[-2].date())])
    with pytest.raises(ConfigError, match="need more history"):
        resolve_cutoffs(small_panel, 4, n_windows=100)
    with pytest.raises(ConfigError, match="horizon"):
        resolve_cutoffs(small_panel, 0)


def test_save_writes_forecasts_and_metrics(small_panel: Panel, tmp_path: Path) -> None:
    result = backtest([LastValue()], small_panel, horizon=2, n_windows=2)
    result.save(tmp_path)
    assert (tmp_path / "forecasts.parquet").is_file()
    import json

    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert summary["horizon"] == 2 and len(summary["cutoffs"]) == 2
    assert summary["overall"][0]["model"] == "LastValue"
    assert "history_segment" in summary["by_segment"]
    assert "category" in summary["by_segment"]


@settings(max_examples=8, deadline=None)
@given(position=st.integers(min_value=20, max_value=70), noise=st.integers(0, 10**6))
def test_data_after_cutoff_cannot_change_forecasts(
    small_panel: Panel, position: int, noise: int
) -> None:
    """Replacing everything after the cutoff by garbage leaves the forecasts unchanged."""
    cutoff = small_panel.dates[position]
    rng = np.random.default_rng(noise)
    tampered_sales = small_panel.sales.copy()
    after = tampered_sales["date"] > cutoff
    tampered_sales.loc[after, "sales"] = rng.integers(0, 1000, after.sum()).astype(float)
    tampered = Panel(
        tampered_sales,
        small_panel.items,
        small_panel.freq,
        small_panel.known_future,
        small_panel.past_only,
    )
    a = backtest([LastValue()], small_panel, 3, [cutoff], min_history=1, active_within=None)
    b = backtest([LastValue()], tampered, 3, [cutoff], min_history=1, active_within=None)
    pd.testing.assert_series_equal(a.forecasts["LastValue"], b.forecasts["LastValue"])
