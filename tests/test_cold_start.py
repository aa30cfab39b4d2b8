"""Cold-start launch tables, baselines and scores, on a synthetic catalogue."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from salesformer.data.contract import DATE, ITEM_ID, LIST_PRICE, SALES, Panel
from salesformer.data.synthetic import SyntheticCatalogue, generate_catalogue
from salesformer.errors import ConfigError, DataValidationError, NotFittedError
from salesformer.evaluation.cold_start import LaunchSet, launch_table, score
from salesformer.models.cold_start import (
    KNNEmbedding,
    KNNText,
    LightGBMEmbedding,
    MeanLaunchCurve,
    RidgeEmbedding,
)

WEEKS = 12


class HashingEncoder:
    """A tiny deterministic text encoder: hashed bag of words, L2-normalised."""

    def __init__(self, dim: int = 32) -> None:
        self.dim = dim
        self.calls = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self.dim))
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, sum(word.encode()) % self.dim] += 1.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)


@pytest.fixture(scope="module")
def shop() -> SyntheticCatalogue:
    return generate_catalogue(n_items=80, n_weeks=80, seed=3, new_item_share=0.4)


@pytest.fixture(scope="module")
def panel(shop: SyntheticCatalogue) -> Panel:
    return shop.panel()


@pytest.fixture(scope="module")
def dates(panel: Panel) -> pd.DatetimeIndex:
    return panel.dates


@pytest.fixture(scope="module")
def train(panel: Panel, dates: pd.DatetimeIndex) -> LaunchSet:
    return launch_table(panel, dates[5], dates[45], weeks=WEEKS)


@pytest.fixture(scope="module")
def new(panel: Panel, dates: pd.DatetimeIndex) -> LaunchSet:
    return launch_table(panel, dates[46], dates[-1], weeks=WEEKS)


def test_launch_table_picks_the_items_first_sold_in_the_window(
    shop: SyntheticCatalogue, panel: Panel, dates: pd.DatetimeIndex, new: LaunchSet
) -> None:
    launch = shop.items.set_index(ITEM_ID)["launch_date"]
    in_window = launch[(launch >= dates[46]) & (launch <= dates[-1])]
    fits = in_window[in_window + pd.Timedelta(weeks=WEEKS - 1) <= dates[-1]]
    assert len(fits) > 0 and len(fits) < len(in_window)  # the window reaches past the end
    assert list(new.item_ids) == sorted(fits.index)
    assert new.dropped == len(in_window) - len(fits)
    assert list(new.launch_dates) == list(fits.sort_index())
    assert new.targets.shape == (len(fits), WEEKS)


def test_launch_table_targets_and_prices_are_the_panels(panel: Panel, train: LaunchSet) -> None:
    assert len(train) >= 10
    sales = panel.sales.set_index([ITEM_ID, DATE])
    for row, item in enumerate(train.item_ids):
        weeks = pd.date_range(train.launch_dates[row], periods=WEEKS, freq=panel.freq)
        expected = sales.loc[[(item, d) for d in weeks]]
        np.testing.assert_array_equal(train.targets[row], expected[SALES].to_numpy())
        assert train.prices[row] == expected["price"].iloc[0]
    text = panel.items.set_index(ITEM_ID)["text"] if panel.items is not None else None
    assert text is not None and train.texts == list(text.loc[train.item_ids])


def test_actuals_frame_matches_the_targets(panel: Panel, new: LaunchSet) -> None:
    frame = new.actuals()
    assert len(frame) == len(new) * WEEKS
    merged = frame.merge(panel.sales, on=[ITEM_ID, DATE], how="left", validate="one_to_one")
    np.testing.assert_array_equal(merged["y"].to_numpy(), merged[SALES].to_numpy())
    inputs = new.inputs()
    assert list(inputs.columns) == [ITEM_ID, "text", "price", "launch_date"]
    assert (frame.groupby(ITEM_ID)[DATE].min().to_numpy() == inputs["launch_date"]).all()


def test_launch_table_rejects_bad_settings(panel: Panel, dates: pd.DatetimeIndex) -> None:
    with pytest.raises(ConfigError, match="ends before it starts"):
        launch_table(panel, dates[40], dates[10])
    with pytest.raises(ConfigError, match="weeks"):
        launch_table(panel, dates[0], dates[10], weeks=0)
    bare = dataclasses.replace(panel, items=None)
    with pytest.raises(DataValidationError, match="items table"):
        launch_table(bare, dates[0], dates[10])


def _baselines(encoder: HashingEncoder) -> list[object]:
    return [
        MeanLaunchCurve(),
        KNNText(k=3),
        KNNEmbedding(k=3, encoder=encoder),
        RidgeEmbedding(encoder=encoder, cv=3),
        LightGBMEmbedding(encoder=encoder, n_estimators=20, min_child_samples=5),
    ]


@pytest.mark.parametrize("index", range(5))
def test_baselines_forecast_one_non_negative_curve_per_new_item(
    train: LaunchSet, new: LaunchSet, index: int
) -> None:
    model = _baselines(HashingEncoder())[index]
    with pytest.raises(NotFittedError, match="fit"):
        model.predict(new)  # type: ignore[attr-defined]
    forecast = model.fit(train).predict(new)  # type: ignore[attr-defined]
    assert forecast.shape == (len(new), WEEKS)
    assert np.isfinite(forecast).all() and (forecast >= 0).all()


def test_mean_launch_curve_is_the_column_mean(train: LaunchSet, new: LaunchSet) -> None:
    forecast = MeanLaunchCurve().fit(train).predict(new)
    np.testing.assert_allclose(forecast, np.tile(train.targets.mean(axis=0), (len(new), 1)))


def test_knn_text_with_one_neighbour_returns_the_identical_items_curve(
    train: LaunchSet, new: LaunchSet
) -> None:
    counts = pd.Series(train.texts).value_counts()
    unique = [i for i, t in enumerate(train.texts) if counts[t] == 1][:3]
    assert unique
    probe = dataclasses.replace(
        new,
        item_ids=new.item_ids[: len(unique)],
        texts=[train.texts[i] for i in unique],
        prices=new.prices[: len(unique)],
        launch_dates=new.launch_dates[: len(unique)],
        targets=new.targets[: len(unique)],
    )
    forecast = KNNText(k=1).fit(train).predict(probe)
    np.testing.assert_array_equal(forecast, train.targets[unique])


def test_knn_averages_k_neighbours_and_caps_k_at_the_training_size(train: LaunchSet) -> None:
    everything = KNNText(k=10_000).fit(train).predict(train)
    np.testing.assert_allclose(everything, np.tile(train.targets.mean(axis=0), (len(train), 1)))
    with pytest.raises(ConfigError, match="k must"):
        KNNText(k=0).fit(train)


def test_embedding_models_share_the_given_encoder(train: LaunchSet, new: LaunchSet) -> None:
    encoder = HashingEncoder()
    model = RidgeEmbedding(encoder=encoder, alphas=(0.1, 10.0), cv=3).fit(train)
    model.predict(new)
    assert encoder.calls == 2
    assert model.alpha_ in (0.1, 10.0)


def test_ridge_rejects_bad_penalties(train: LaunchSet) -> None:
    with pytest.raises(ConfigError, match="alphas"):
        RidgeEmbedding(encoder=HashingEncoder(), alphas=(0.0, 1.0)).fit(train)


def test_score_on_a_hand_example() -> None:
    actual = np.array([[1.0, 2.0], [3.0, 0.0]])
    forecast = np.array([[2.0, 2.0], [1.0, 1.0]])
    result = score(actual, forecast)
    assert result["wape"] == pytest.approx(4.0 / 6.0)
    assert result["mae"] == pytest.approx(1.0)
    with pytest.raises(DataValidationError, match="shape"):
        score(actual, forecast[:1])


def test_launch_price_is_the_items_list_price_where_given(
    panel: Panel, dates: pd.DatetimeIndex, train: LaunchSet
) -> None:
    assert panel.items is not None
    items = panel.items.copy()
    listed = {item: 10.0 + row for row, item in enumerate(train.item_ids)}
    unlisted = train.item_ids[0]
    listed[unlisted] = float("nan")  # no list price: the launch week's price is read
    items[LIST_PRICE] = items[ITEM_ID].map(listed)
    with_list = launch_table(replace(panel, items=items), dates[5], dates[45], WEEKS)
    expected = [train.prices[0], *(listed[i] for i in train.item_ids[1:])]
    np.testing.assert_array_equal(with_list.prices, expected)
