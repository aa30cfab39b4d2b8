"""What each statistical baseline forecasts, its fallbacks, its quantiles and its settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import pytest
from numpy.typing import ArrayLike
from statsforecast import StatsForecast
from statsforecast.models import Naive as StatsForecastNaive

from salesformer.data.contract import DATE, ITEM_ID, SALES, Panel, validate_panel
from salesformer.errors import ConfigError
from salesformer.models.base import Forecaster
from salesformer.models.registry import STATISTICAL_MODELS, make_model
from salesformer.models.statistical import (
    ETS_MIN_HISTORY,
    TSB,
    AutoETS,
    HistoricAverage,
    Naive,
    SeasonalNaive,
    WindowAverage,
)

LAST_WEEK = "2024-06-03"  # a Monday
H = 8


def panel_of(series: Mapping[str, ArrayLike], freq: str = "W-MON") -> Panel:
    """A panel whose series all end on the same date."""
    end = LAST_WEEK if freq.startswith("W") else "2024-06-30"
    frames = []
    for item, values in series.items():
        sales = np.asarray(values, dtype=float)
        dates = pd.date_range(end=end, periods=len(sales), freq=freq)
        frames.append(pd.DataFrame({ITEM_ID: item, DATE: dates, SALES: sales}))
    return validate_panel(pd.concat(frames, ignore_index=True), freq=freq)


def point_forecasts(model: Forecaster, panel: Panel, horizon: int = H) -> dict[str, np.ndarray]:
    out = model.fit(panel).predict(horizon, quantiles=())
    return {str(item): rows[model.name].to_numpy() for item, rows in out.groupby(ITEM_ID)}


def poisson_series(rng: np.random.Generator, mean: float, n: int) -> np.ndarray:
    return rng.poisson(mean, n).astype(float)


@pytest.mark.parametrize("name", STATISTICAL_MODELS)
def test_registered_under_its_class_name(name: str) -> None:
    model = make_model(name)
    assert type(model).__name__ == name
    assert model.name == name


def test_naive_repeats_the_last_value() -> None:
    panel = panel_of({"a": [3, 8, 1, 6], "b": [0, 0, 9]})
    forecasts = point_forecasts(Naive(), panel)
    np.testing.assert_array_equal(forecasts["a"], np.full(H, 6.0))
    np.testing.assert_array_equal(forecasts["b"], np.full(H, 9.0))


def test_seasonal_naive_repeats_last_season_and_falls_back_on_short_items() -> None:
    rng = np.random.default_rng(1)
    long = poisson_series(rng, 20.0, 60)
    short = poisson_series(rng, 20.0, 51)
    forecasts = point_forecasts(SeasonalNaive(), panel_of({"long": long, "short": short}))
    np.testing.assert_array_equal(forecasts["long"], long[-52 : -52 + H])
    np.testing.assert_array_equal(forecasts["short"], np.full(H, short[-1]))


def test_seasonal_naive_uses_a_weekly_cycle_on_daily_data() -> None:
    values = np.arange(1.0, 22.0)  # three weeks, every day different
    forecasts = point_forecasts(SeasonalNaive(), panel_of({"a": values}, freq="D"), horizon=7)
    np.testing.assert_array_equal(forecasts["a"], values[-7:])


def test_historic_average_is_the_mean_of_the_whole_history() -> None:
    values = [4, 0, 10, 2, 9, 5]
    forecasts = point_forecasts(HistoricAverage(), panel_of({"a": values}))
    np.testing.assert_allclose(forecasts["a"], np.full(H, np.mean(values)))


def test_window_average_uses_the_last_window_and_the_mean_of_short_items() -> None:
    rng = np.random.default_rng(2)
    long = poisson_series(rng, 10.0, 40)
    short = [1.0, 7.0, 4.0, 0.0]
    forecasts = point_forecasts(WindowAverage(window_size=13), panel_of({"l": long, "s": short}))
    np.testing.assert_allclose(forecasts["l"], np.full(H, long[-13:].mean()))
    np.testing.assert_allclose(forecasts["s"], np.full(H, np.mean(short)))


@pytest.mark.parametrize("name", ["CrostonSBA", "CrostonOptimized", "TSB", "ADIDA"])
def test_intermittent_models_give_a_flat_rate_below_the_non_zero_mean(name: str) -> None:
    rng = np.random.default_rng(3)
    sizes = rng.poisson(6.0, 104) + 1.0
    values = np.where(rng.random(104) < 0.25, sizes, 0.0)
    forecast = point_forecasts(make_model(name), panel_of({"a": values}))["a"]
    non_zero_mean = values[values > 0].mean()
    np.testing.assert_allclose(forecast, forecast[0])
    assert 0.3 * values.mean() < forecast[0] < non_zero_mean


def test_auto_ets_tracks_a_level_shift() -> None:
    rng = np.random.default_rng(4)
    values = np.concatenate([poisson_series(rng, 10.0, 40), poisson_series(rng, 60.0, 30)])
    forecast = point_forecasts(AutoETS(), panel_of({"a": values}))["a"]
    assert np.all((forecast > 50.0) & (forecast < 70.0)), forecast
    assert np.ptp(forecast) < 5.0  # no runaway trend from a level shift


def test_auto_ets_falls_back_to_naive_below_its_minimum_history() -> None:
    short = [5.0, 9.0, 2.0, 4.0, 8.0, 3.0, 7.0][: ETS_MIN_HISTORY - 1]
    forecasts = point_forecasts(AutoETS(), panel_of({"a": short, "b": np.full(30, 5.0)}))
    np.testing.assert_array_equal(forecasts["a"], np.full(H, short[-1]))
    np.testing.assert_allclose(forecasts["b"], np.full(H, 5.0))


@pytest.mark.parametrize("name", STATISTICAL_MODELS)
def test_one_and_two_point_histories_fall_back_without_crashing(name: str) -> None:
    rng = np.random.default_rng(5)
    panel = panel_of({"one": [5.0], "two": [3.0, 7.0], "long": poisson_series(rng, 8.0, 60)})
    out = make_model(name).fit(panel).predict(H)
    assert np.isfinite(out.iloc[:, 2:].to_numpy(dtype=float)).all()
    forecasts = {str(item): rows[name].to_numpy() for item, rows in out.groupby(ITEM_ID)}
    np.testing.assert_allclose(forecasts["one"], 5.0)
    averages = name in ("HistoricAverage", "WindowAverage")
    np.testing.assert_allclose(forecasts["two"], 5.0 if averages else 7.0)


def stationary_poisson_panel(n_items: int = 150, n_weeks: int = 90) -> Panel:
    rng = np.random.default_rng(6)
    means = rng.lognormal(1.5, 0.8, n_items)
    return panel_of({f"p{i}": poisson_series(rng, mean, n_weeks) for i, mean in enumerate(means)})


@pytest.mark.parametrize("name", ["Naive", "HistoricAverage", "AutoETS", "CrostonSBA"])
def test_conformal_80_interval_covers_about_80_percent(name: str) -> None:
    panel = stationary_poisson_panel()
    cutoff = panel.dates[-1 - H]
    model = make_model(name).fit(panel.until(cutoff))
    out = model.predict(H).merge(panel.window(cutoff, H), on=[ITEM_ID, DATE])
    assert len(out) == 150 * H
    inside = (out[f"{name}-q10"] <= out[SALES]) & (out[SALES] <= out[f"{name}-q90"])
    assert 0.65 <= inside.mean() <= 0.95, inside.mean()
    below_median = (out[SALES] < out[f"{name}-q50"]).mean()
    assert 0.25 <= below_median <= 0.75, below_median


def test_conformal_quantiles_are_cached_per_horizon_and_consistent() -> None:
    panel = stationary_poisson_panel(n_items=20, n_weeks=60)
    model = HistoricAverage().fit(panel)
    short = model.predict(4)
    long = model.predict(H)
    assert set(model.errors_) == {4, H}
    pd.testing.assert_frame_equal(model.predict(H), long)
    pd.testing.assert_frame_equal(HistoricAverage().fit(panel).predict(H), long)
    first_steps = long.groupby(ITEM_ID).head(4).reset_index(drop=True)
    pd.testing.assert_series_equal(first_steps["HistoricAverage"], short["HistoricAverage"])


def test_native_intervals_map_levels_to_quantiles() -> None:
    rng = np.random.default_rng(7)
    panel = panel_of({"a": poisson_series(rng, 30.0, 40), "b": poisson_series(rng, 5.0, 40)})
    out = Naive(intervals="native").fit(panel).predict(H, quantiles=(0.1, 0.25, 0.5, 0.9))
    frame = panel.sales.rename(columns={ITEM_ID: "unique_id", DATE: "ds", SALES: "y"})
    reference = (
        StatsForecast(models=[StatsForecastNaive()], freq=panel.freq)
        .fit(frame[["unique_id", "ds", "y"]])
        .predict(h=H, level=[50, 80])
    )
    np.testing.assert_allclose(out["Naive-q50"], out["Naive"])
    np.testing.assert_allclose(out["Naive-q10"], reference["Naive-lo-80"].clip(lower=0))
    np.testing.assert_allclose(out["Naive-q25"], reference["Naive-lo-50"].clip(lower=0))
    np.testing.assert_allclose(out["Naive-q90"], reference["Naive-hi-80"])
    width = (out["Naive-q90"] - out["Naive"]).to_numpy().reshape(2, H)
    assert (np.diff(width, axis=1) > 0).all(), "naive intervals should widen with the horizon"


@pytest.mark.parametrize("name", ["SeasonalNaive", "HistoricAverage", "AutoETS"])
def test_native_intervals_bracket_the_point(name: str) -> None:
    rng = np.random.default_rng(8)
    panel = panel_of({"a": poisson_series(rng, 30.0, 70), "b": [4.0, 6.0]})
    out = make_model(name, intervals="native").fit(panel).predict(H)
    item = out[out[ITEM_ID] == "a"]
    assert (item[f"{name}-q10"] < item[name]).all()
    assert (item[name] < item[f"{name}-q90"]).all()
    np.testing.assert_allclose(item[f"{name}-q50"], item[name])


def test_parallel_fit_gives_identical_forecasts() -> None:
    panel = stationary_poisson_panel(n_items=24, n_weeks=40)
    serial = AutoETS(n_jobs=1).fit(panel).predict(4)
    parallel = AutoETS(n_jobs=2).fit(panel).predict(4)
    pd.testing.assert_frame_equal(serial, parallel, check_exact=True)


def test_native_intervals_are_refused_where_statsforecast_has_none() -> None:
    panel = panel_of({"a": [1.0, 2.0, 3.0]})
    with pytest.raises(ConfigError, match="intervals='conformal'"):
        TSB(intervals="native").fit(panel)


@pytest.mark.parametrize(
    ("name", "settings", "mentions"),
    [
        ("Naive", {"intervals": "bootstrap"}, "intervals"),
        ("Naive", {"n_windows": 0}, "n_windows"),
        ("HistoricAverage", {"n_windows": 1.5}, "n_windows"),
        ("CrostonSBA", {"n_jobs": 0}, "n_jobs"),
        ("WindowAverage", {"window_size": 0}, "window_size"),
        ("WindowAverage", {"window_size": 4.0}, "window_size"),
        ("TSB", {"alpha_d": 0.0}, "alpha_d"),
        ("TSB", {"alpha_p": 1.5}, "alpha_p"),
        ("AutoETS", {"model": "NZZ"}, "model"),
        ("AutoETS", {"model": "ZZ"}, "model"),
        ("AutoETS", {"damped": "yes"}, "damped"),
        ("AutoETS", {"model": "ANN", "damped": True}, "damped"),
    ],
)
def test_bad_settings_raise_config_error(
    name: str, settings: dict[str, Any], mentions: str
) -> None:
    panel = panel_of({"a": [1.0, 2.0, 3.0]})
    with pytest.raises(ConfigError, match=mentions):
        make_model(name, **settings).fit(panel)
