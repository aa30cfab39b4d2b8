"""Inventory replay: a hand-checked lost-sales run and targets that order achieved service."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from salesformer.decisions.inventory_sim import (
    ReplaySettings,
    _simulate,
    order_weeks,
    replay_policy,
    summarize_replay,
)
from salesformer.errors import ConfigError, DataValidationError
from salesformer.models.base import quantile_column

LEVELS = np.round(np.arange(1, 20) / 20, 2)  # 0.05 .. 0.95


def normal_backtest(n_items: int = 150, horizon: int = 8, seed: int = 3) -> pd.DataFrame:
    """Backtest-shaped frame: actual normal demand and its true quantiles as the forecast."""
    rng = np.random.default_rng(seed)
    means = rng.uniform(20.0, 100.0, n_items)
    frames = []
    for cutoff in (pd.Timestamp("2024-01-01"), pd.Timestamp("2024-03-04")):
        mean = np.repeat(means, horizon)
        frame = pd.DataFrame(
            {
                "item_id": np.repeat([f"I{i}" for i in range(n_items)], horizon),
                "cutoff": cutoff,
                "date": np.tile(cutoff + pd.to_timedelta(np.arange(1, horizon + 1), "W"), n_items),
                "y": np.clip(rng.normal(mean, 0.25 * mean), 0.0, None),
                "m": mean,
            }
        )
        for q in LEVELS:
            frame[quantile_column("m", q)] = norm.ppf(q, mean, 0.25 * mean)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def test_order_weeks() -> None:
    assert order_weeks(8, 1, 1) == [0, 1, 2, 3, 4, 5, 6]
    assert order_weeks(8, 2, 2) == [0, 2, 4]
    assert order_weeks(8, 0, 1) == list(range(8))


def test_simulate_by_hand() -> None:
    """Lead time 1: stock 10; week 1 sells 4 (orders 10 - 6 = 4 at week 2, arriving week 3)."""
    levels = np.array([[10.0, 10.0, 10.0, np.nan]])
    demand = np.array([[4.0, 8.0, 3.0, 1.0]])
    out = _simulate(levels, demand, lead=1, review=1)
    # week 1: 10 -> sell 4 -> 6. week 2: order 10 - 6 = 4 (arrives week 3); sell 6 of 8, short.
    # week 3: +4 -> 4; position 4 -> order 6 (arrives week 4); sell 3 -> 1.
    # week 4: +6 -> 7; sell 1 -> 6.
    # Week 1 is the warm-up (lead time 1) and is not scored.
    assert out["served"][0] == 10.0 and out["demand"][0] == 12.0
    assert out["stockout_weeks"][0] == 1.0 and out["weeks"][0] == 3.0
    assert out["stock_week_sum"][0] == 0.0 + 1.0 + 6.0
    backorders = _simulate(levels, demand, lead=1, review=1, lost_sales=False)
    # week 2: net -2 (2 backordered); week 3: +4 -> 2, position 2 -> order 8, sell 2 of 3,
    # net -1; week 4: +8 -> 7, sell 1 -> 6.
    assert backorders["served"][0] == 6.0 + 2.0 + 1.0
    assert backorders["stockout_weeks"][0] == 2.0


def test_simulate_stops_scoring_after_the_last_orders_cover() -> None:
    """L=1, R=2 over 6 weeks: orders at weeks 0 and 2 cover weeks up to 4; week 5 is unscored."""
    levels = np.array([[10.0, np.nan, 10.0, np.nan, np.nan, np.nan]])
    demand = np.full((1, 6), 4.0)
    out = _simulate(levels, demand, lead=1, review=2)
    # week 1 (0-based): 6 -> sell 4 -> 2. week 2: order 8 (arrives week 3), sell 2 of 4.
    # week 3: +8 -> sell 4 -> 4. week 4: sell 4 -> 0. Week 5 has no order covering it.
    assert out["weeks"][0] == 4.0 and out["demand"][0] == 16.0
    assert out["served"][0] == 14.0 and out["stockout_weeks"][0] == 1.0


def test_replay_ignores_columns_that_only_look_like_quantiles() -> None:
    frame = normal_backtest(n_items=3).assign(**{"m-qnotes": "x", "m2-q50": 1.0})
    replay = replay_policy(frame, "m", [0.9], ReplaySettings(n_samples=200))
    assert len(replay) == 6 and replay["served"].gt(0).all()


@pytest.mark.parametrize("service_type", ["fill-rate", "cycle"])
def test_higher_targets_give_higher_achieved_service(service_type: str) -> None:
    frame = normal_backtest()
    targets = np.array([0.7, 0.9, 0.97])
    column = "item_fill_rate" if service_type == "fill-rate" else "cycle_service"
    achieved = {}
    for lost_sales in (False, True):
        settings = ReplaySettings(
            service_type=service_type,
            n_samples=400,
            lead_time=1,
            lost_sales=lost_sales,
            week_correlation=0.0,  # the simulated weeks are independent
        )
        summary = summarize_replay(replay_policy(frame, "m", list(targets), settings))
        achieved[lost_sales] = summary[column].to_numpy()
        assert (np.diff(achieved[lost_sales]) > 0).all()
        assert (np.diff(summary["avg_stock_units"].to_numpy()) > 0).all()
    # Calibrated forecasts, backorders (the planner's accounting): on target.
    assert np.abs(achieved[False] - targets).max() < 0.02
    # Lost sales leave more stock after a stock-out: at least as good.
    assert (achieved[True] >= targets - 0.01).all()


def test_summary_uses_unit_values() -> None:
    frame = normal_backtest(n_items=10)
    replay = replay_policy(frame, "m", [0.9], ReplaySettings(n_samples=200))
    values = frame[["item_id", "cutoff"]].drop_duplicates().assign(unit_value=2.0)
    summary = summarize_replay(replay, values)
    assert summary["avg_stock_value"].iloc[0] == pytest.approx(
        2.0 * summary["avg_stock_units"].iloc[0]
    )
    assert summary["stockout_weeks"].iloc[0] == replay["stockout_weeks"].sum()
    per_window = replay["stock_week_sum"] / replay["weeks"]
    assert summary["median_stock_units"].iloc[0] == pytest.approx(per_window.median())
    by_cutoff = summarize_replay(replay, values, by=("cutoff",))
    assert (
        len(by_cutoff) == 2 and by_cutoff["stockout_weeks"].sum() == replay["stockout_weeks"].sum()
    )


def test_replay_errors() -> None:
    frame = normal_backtest(n_items=3)
    with pytest.raises(ConfigError, match="exceeds the forecasts' 8 weeks"):
        replay_policy(frame, "m", [0.9], ReplaySettings(lead_time=6, review_period=3))
    with pytest.raises(DataValidationError, match="model 'x' has 0 quantile column"):
        replay_policy(frame, "x", [0.9])
    with pytest.raises(DataValidationError, match=r"column\(s\) \['y'\] missing"):
        replay_policy(frame.drop(columns="y"), "m", [0.9])
    with pytest.raises(ConfigError, match="no service target given"):
        replay_policy(frame, "m", [])
    holes = frame.copy()
    holes.loc[2, "y"] = np.nan
    with pytest.raises(DataValidationError, match="missing or not finite"):
        replay_policy(holes, "m", [0.9])
    with pytest.raises(ConfigError, match="lead_time must be a whole number >= 0"):
        ReplaySettings(lead_time=-1)


def test_replay_passes_the_spread_scale_to_the_planner() -> None:
    assert ReplaySettings(spread_scale=1.5).plan_settings(0.9).spread_scale == 1.5
    with pytest.raises(ConfigError, match="spread scale"):
        ReplaySettings(spread_scale=0.0)
