"""The LM's launch regression: which launches it learns from, the ridge, the blend, saving."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from salesformer.data.contract import ITEM_ID, Panel, validate_panel
from salesformer.data.synthetic import generate_catalogue
from salesformer.errors import ConfigError
from salesformer.models.lm.launch import (
    ALPHAS,
    MEAN_LEVELS,
    MIN_LAUNCHES,
    UNDECIDED_WEIGHT,
    LaunchBlend,
    LaunchRidge,
    PanelLaunches,
    choose_weight,
    fit_launch_ridge,
    launch_features,
    read_launch_blend,
)
from salesformer.models.lm.samples import Wide


@pytest.fixture(scope="module")
def panel() -> Panel:
    return generate_catalogue(n_items=60, n_weeks=80, seed=3, new_item_share=0.5).panel()


def test_panel_launches_are_the_items_first_sold_after_launch_after(panel: Panel) -> None:
    wide = Wide.from_panel(panel)
    limit = wide.n_history - 1 - 8
    launches = PanelLaunches.find(wide, launch_after=13, steps=8, limit=limit)
    expected = np.flatnonzero((wide.first >= 13) & (wide.first <= limit))
    assert sorted(launches.items) == sorted(expected) and len(expected) > 5
    assert np.all(np.diff(wide.first[launches.items]) >= 0)  # in launch order
    for row, item in enumerate(launches.items):
        cols = wide.first[item] + np.arange(8)
        seen = cols <= limit
        np.testing.assert_array_equal(launches.observed[row], seen)
        np.testing.assert_array_equal(launches.curves[row][seen], wide.sales[item, cols[seen]])
        assert launches.curves[row][~seen].sum() == 0  # nothing after the cut
        assert launches.whole[row] == seen.all()


def _linear_launches(n: int, noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, 6))
    shape = np.linspace(2.0, 0.5, 8)
    scale = 20.0 + 8.0 * features[:, 0] - 5.0 * features[:, 1]
    curves = np.clip(scale[:, None] * shape[None, :], 0, None)
    curves = curves + noise * rng.normal(size=curves.shape)
    return features, np.clip(curves, 0, None)


def test_ridge_learns_the_launch_scale_from_the_features() -> None:
    features, curves = _linear_launches(200, noise=1.0)
    observed = np.ones_like(curves, dtype=bool)
    observed[-30:, 4:] = False  # the latest launches are only partly observed
    ridge = fit_launch_ridge(features[:150], curves[:150], observed[:150])
    assert ridge is not None and ridge.alpha < max(ALPHAS)
    forecast = ridge.predict(features[150:])
    mean_curve = curves[:150].mean(axis=0)
    actual = curves[150:]
    assert np.abs(forecast - actual).sum() < 0.3 * np.abs(mean_curve - actual).sum()


def test_ridge_on_features_without_signal_takes_the_largest_penalty() -> None:
    rng = np.random.default_rng(1)
    features = rng.normal(size=(120, 30))
    curves = rng.gamma(1.0, 10.0, size=(120, 8))  # unrelated to the features
    ridge = fit_launch_ridge(features, curves, np.ones_like(curves, dtype=bool))
    assert ridge is not None and ridge.alpha == max(ALPHAS)


def test_ridge_needs_enough_launches() -> None:
    features, curves = _linear_launches(MIN_LAUNCHES - 1, noise=0.0)
    assert fit_launch_ridge(features, curves, np.ones_like(curves, dtype=bool)) is None


def test_features_fill_a_missing_price_and_read_the_launch_calendar() -> None:
    vectors = np.eye(3)
    price = np.array([9.0, np.nan, 0.0])
    weekly = pd.DatetimeIndex(["2024-01-01", "2024-07-01", "2024-07-01"])
    x = launch_features(vectors, price, weekly, "W-MON", price_fill=1.5)
    assert x.shape == (3, 3 + 2 + 2)
    np.testing.assert_allclose(x[:, 3], [np.log1p(9.0), 1.5, 1.5])
    np.testing.assert_array_equal(x[:, 4], [1.0, 0.0, 0.0])
    assert not np.allclose(x[0, 5:], x[1, 5:])
    daily = pd.DatetimeIndex(["2024-01-01", "2024-01-03", "2024-01-08"])  # Mon, Wed, Mon
    d = launch_features(vectors, price, daily, "D", price_fill=1.5)
    np.testing.assert_allclose(d[0, 5:], d[2, 5:])  # same weekday, same inputs
    assert not np.allclose(d[0, 5:], d[1, 5:])


def test_blend_moves_the_point_and_keeps_quantiles_ordered() -> None:
    ridge = LaunchRidge(np.zeros((5, 2)), np.array([10.0, 4.0]), alpha=1.0, price_fill=0.0)
    blend = LaunchBlend(ridge, weight=0.25)
    # one item, two steps: point, q10, q90
    values = np.array([[2.0, 1.0, 5.0], [8.0, 6.0, 12.0]])
    out = blend.apply(
        values, np.zeros((1, 1)), np.array([3.0]), pd.DatetimeIndex(["2024-01-01"]), "W-MON"
    )
    np.testing.assert_allclose(out[:, 0], [0.25 * 2 + 0.75 * 10, 0.25 * 8 + 0.75 * 4])
    np.testing.assert_allclose(out[0, 1:], [1.0 + 6.0, 5.0 + 6.0])
    np.testing.assert_allclose(out[1, 1:], [max(6.0 - 3.0, 0), 12.0 - 3.0])
    assert (out >= 0).all() and (np.diff(out[:, 1:], axis=1) >= 0).all()


def test_weight_is_chosen_on_the_observed_cells() -> None:
    actual = np.array([[10.0, 10.0], [0.0, 100.0]])
    ok = np.array([[True, True], [True, False]])
    network = np.full((2, 2), 10.0)
    ridge = np.full((2, 2), 50.0)
    weight, scores = choose_weight(network, ridge, actual, ok)
    assert weight == 1.0 and scores[1.0] == pytest.approx(10.0 / 20.0)


def test_saved_blend_round_trips_and_a_malformed_one_is_refused(tmp_path: Path) -> None:
    ridge = LaunchRidge(np.arange(6.0).reshape(3, 2), np.array([1.0, 2.0]), 3.0, 0.7)
    blend = LaunchBlend(ridge, 0.4)
    data = json.loads(json.dumps(blend.to_json()))
    again = read_launch_blend(data, tmp_path / "config.json")
    assert again is not None and again.weight == 0.4 and again.ridge.price_fill == 0.7
    np.testing.assert_array_equal(again.ridge.coef, ridge.coef)
    assert read_launch_blend(None, "x") is None
    with pytest.raises(ConfigError, match="launch_blend"):
        read_launch_blend({**data, "weight": 1.5}, "x")
    with pytest.raises(ConfigError, match="launch_blend"):
        read_launch_blend({"ridge": {"coef": [[1.0]]}}, "x")


def test_lm_forecasts_new_items_through_the_blend_and_saves_it(
    panel: Panel, tiny_encoder: str, tmp_path: Path
) -> None:
    pytest.importorskip("torch")
    from salesformer.models.lm import LMForecaster

    tiny = {"head_epochs": 2, "epoch_samples": 300, "hidden_size": 16, "text_size": 4}
    model = LMForecaster(encoder=tiny_encoder, finetune="frozen", threads=1, **tiny)
    model.fit(panel)
    assert "launch_regression" in model.fit_report_
    new = pd.DataFrame(
        {ITEM_ID: ["a", "b"], "text": ["Garden gnome", "Tea towel"], "price": [9.0, np.nan]}
    )
    network = model.predict_new(new) if model.launch_blend_ is None else None
    dim = model.item_vectors_.shape[1]
    ridge_coef, ridge_intercept = np.zeros((dim + 4, model.horizon)), np.full(model.horizon, 50.0)
    model.launch_blend_ = LaunchBlend(LaunchRidge(ridge_coef, ridge_intercept, 1.0, 0.0), 0.0)
    blended = model.predict_new(new)
    np.testing.assert_allclose(blended["LM"], 50.0)  # weight 0: the regression alone
    if network is not None:
        assert not np.allclose(network["LM"], blended["LM"])
    loaded = LMForecaster.load(model.save(tmp_path / "model"))
    assert loaded.launch_blend_ is not None
    pd.testing.assert_frame_equal(loaded.predict_new(new), blended)
    # weight 1: the network's mean-type forecast (the average of its MEAN_LEVELS quantiles),
    # not its median; the quantiles move with the point
    model.launch_blend_ = None
    alone = model.predict_new(new, quantiles=MEAN_LEVELS)
    model.launch_blend_ = LaunchBlend(LaunchRidge(ridge_coef, ridge_intercept, 1.0, 0.0), 1.0)
    mean_type = model.predict_new(new, quantiles=MEAN_LEVELS)
    quantiles = alone[[c for c in alone.columns if c.startswith("LM-q")]].to_numpy()
    np.testing.assert_allclose(mean_type["LM"], quantiles.mean(axis=1), rtol=1e-5, atol=1e-6)
    assert not np.allclose(mean_type["LM"], alone["LM"])  # the median differs from the mean


def _daily_short_lived(seed: int = 0) -> tuple[Panel, pd.DataFrame, np.ndarray]:
    """Products sold for 28 days from a launch on any weekday, daily data; cheap products
    sell eight times as much as dear ones. The last 20 launches are held out as new items."""
    rng = np.random.default_rng(seed)
    n, days, life = 140, 260, 28
    dates = pd.date_range("2024-01-03", periods=days, freq="D")  # a Wednesday
    launch = np.sort(rng.integers(20, days - life, size=n))
    dear = rng.random(n) < 0.5
    price = np.where(dear, 50.0, 5.0)
    decay = np.exp(-np.arange(life) / 10.0)
    rows = []
    for i in range(n):
        scale = 4.0 if dear[i] else 32.0
        sales = rng.poisson(scale * decay)
        for t in range(life):
            rows.append((f"p{i:03d}", dates[launch[i] + t], float(sales[t]), price[i]))
    frame = pd.DataFrame(rows, columns=[ITEM_ID, "date", "sales", "price"])
    words = np.array(["shirt", "scarf", "skirt", "coat"])
    items = pd.DataFrame(
        {ITEM_ID: [f"p{i:03d}" for i in range(n)], "text": words[np.arange(n) % 4]}
    )
    held = [f"p{i:03d}" for i in range(n - 20, n)]
    train = frame[~frame[ITEM_ID].isin(held)]
    cut = train["date"].max()
    panel = validate_panel(train[train["date"] <= cut], items[~items[ITEM_ID].isin(held)], freq="D")
    new = pd.DataFrame(
        {
            ITEM_ID: held,
            "text": items.set_index(ITEM_ID).loc[held, "text"].to_numpy(),
            "price": price[n - 20 :],
            "launch_date": dates[launch[n - 20 :]],
        }
    )
    actual = np.stack([frame[frame[ITEM_ID] == h]["sales"].to_numpy()[:14] for h in held])
    return panel, new, actual


def test_daily_short_lived_launches_on_any_weekday_are_forecast_from_their_price(
    tiny_encoder: str,
) -> None:
    pytest.importorskip("torch")
    from salesformer.models.lm import LMForecaster

    panel, new, actual = _daily_short_lived()
    assert len(set(pd.DatetimeIndex(new["launch_date"]).dayofweek)) > 3  # any weekday
    model = LMForecaster(
        encoder=tiny_encoder,
        finetune="frozen",
        horizon=14,
        threads=1,
        head_epochs=2,
        epoch_samples=300,
        hidden_size=16,
        text_size=4,
        launch_network_weight=0.0,  # this panel's validation window holds no launch to choose on
    ).fit(panel)
    report = model.fit_report_["launch_regression"]
    assert model.launch_blend_ is not None, report
    forecast = model.predict_new(new, horizon=14)
    assert (
        forecast.groupby(ITEM_ID)["date"].min().to_numpy() == new["launch_date"].to_numpy()
    ).all()
    curves = forecast["LM"].to_numpy().reshape(len(new), 14)
    mean_curve = np.tile(actual.mean(axis=0), (len(new), 1))
    wape = np.abs(curves - actual).sum() / actual.sum()
    assert wape < 0.8 * np.abs(mean_curve - actual).sum() / actual.sum()


def test_a_panel_without_launches_has_no_launch_regression(panel: Panel) -> None:
    wide = Wide.from_panel(panel)
    none = PanelLaunches.find(wide, launch_after=wide.n_history + 1, steps=8, limit=0)
    assert len(none) == 0
    features = launch_features(
        np.zeros((0, 5)), none.price, none.dates, panel.freq, none.price_fill()
    )
    assert features.shape == (0, 5 + 4)
    assert fit_launch_ridge(features, none.curves, none.observed) is None


def test_by_default_too_few_held_out_launches_give_equal_weights(tiny_encoder: str) -> None:
    """The default weight (None) is chosen on launches in the fit's own validation window:
    this panel's window has too few, so the network and the regression get equal weights and
    the report says why."""
    pytest.importorskip("torch")
    from salesformer.models.lm import LMForecaster

    panel, new, _ = _daily_short_lived()
    model = LMForecaster(
        encoder=tiny_encoder,
        finetune="frozen",
        horizon=14,
        threads=1,
        head_epochs=1,
        epoch_samples=200,
        hidden_size=16,
        text_size=4,
    )
    assert model.launch_network_weight is None
    model.fit(panel)
    report = model.fit_report_["launch_regression"]
    assert model.launch_blend_ is not None and model.launch_blend_.weight == UNDECIDED_WEIGHT
    assert report["held_out"] < 20 and "held-out launches" in report["undecided"]
    assert "weight_chosen_on_held_out" not in report
    assert len(model.predict_new(new, horizon=14)) == len(new) * 14


def _launch_panel(first_weeks: np.ndarray, weeks: int = 80) -> Panel:
    """Weekly panel: one item per entry of ``first_weeks``, selling a decaying curve from
    there whose scale follows the item's price; one long-lived item sold from the start."""
    rng = np.random.default_rng(0)
    dates = pd.date_range("2022-01-03", periods=weeks, freq="W-MON")
    rows = [("old", d, 5.0, 1.0) for d in dates]
    for i, first in enumerate(first_weeks):
        price = float(rng.choice([2.0, 20.0]))
        for t in range(int(first), weeks):
            rows.append((f"n{i}", dates[t], float(rng.poisson(60 / price + 1)), price))
    frame = pd.DataFrame(rows, columns=[ITEM_ID, "date", "sales", "price"])
    ids = ["old"] + [f"n{i}" for i in range(len(first_weeks))]
    items = pd.DataFrame({ITEM_ID: ids, "text": [f"product {i}" for i in ids]})
    return validate_panel(frame, items, freq="W-MON")


@pytest.mark.parametrize("fair", [True, False])
def test_held_out_launches_decide_the_weight_only_when_the_regression_before_them_is_whole(
    fair: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The weight comes from the held-out launches only when the regression fitted on the
    launches before them saw every step of the curve (at least MIN_LAUNCHES launches each);
    otherwise equal weights, and the report says why."""
    from types import SimpleNamespace

    import salesformer.models.lm.launch as launch

    rng = np.random.default_rng(1)
    low = 14 if fair else 66  # launches from week 66 on: none seen for 8 weeks by week 71
    panel = _launch_panel(np.sort(rng.integers(low, 80, size=300)))
    wide = Wide.from_panel(panel)
    vectors = rng.normal(size=(len(wide.item_ids), 5))
    model = SimpleNamespace(
        horizon=8, item_vectors_=vectors, launch_network_weight=None, launch_after=13
    )
    monkeypatch.setattr(launch, "network_launch_points", lambda m, v, *a: np.zeros((len(v), 8)))
    blend, report = launch.fit_launch_blend(model, wide, panel.freq, wide.n_history - 1 - 8)
    assert blend is not None and report["held_out"] >= launch.MIN_HELD_OUT
    per_step = report["launches_before_held_out_per_step"]
    if fair:
        assert min(per_step) >= MIN_LAUNCHES
        # a network forecasting zero loses to a regression that knows the price
        assert report["weight_chosen_on_held_out"] == blend.weight < 0.5
        assert "undecided" not in report
    else:
        assert min(per_step) < MIN_LAUNCHES
        assert blend.weight == UNDECIDED_WEIGHT and "weight_chosen_on_held_out" not in report
        assert "steps" in report["undecided"]
