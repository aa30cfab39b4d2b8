"""Features for direct multi-horizon models: alignment, hand-checked values, no leakage."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from salesformer.data.contract import DATE, ITEM_ID, SALES, Panel, validate_panel
from salesformer.data.features import FeatureSpec, build_features
from salesformer.errors import DataValidationError

H = 4


def hand_panel() -> Panel:
    """Item ``a``: sales 1..30 except zeros at weeks 10 and 11; item ``b`` starts at week 20."""
    dates = pd.date_range("2024-01-01", periods=30, freq="W-MON")
    sales_a = np.arange(1.0, 31.0)
    sales_a[[10, 11]] = 0.0
    a = pd.DataFrame(
        {
            ITEM_ID: "a",
            DATE: dates,
            SALES: sales_a,
            "price": np.where(np.arange(30) == 25, 5.0, 10.0),
            "orders": np.arange(30.0) + 100,
        }
    )
    b = pd.DataFrame(
        {
            ITEM_ID: "b",
            DATE: dates[20:],
            SALES: 3.0,
            "price": 2.0,
            "orders": 7.0,
        }
    )
    return validate_panel(pd.concat([a, b]), known_future=["price"], past_only=["orders"])


def rows_of(frame: pd.DataFrame, item: str, origin: pd.Timestamp) -> pd.DataFrame:
    mask = (frame["item"] == item) & (frame["origin"] == origin)
    return frame.loc[mask].reset_index(drop=True)


def keyed(panel: Panel, origins: list[pd.Timestamp], horizon: int = H) -> pd.DataFrame:
    built = build_features(panel, origins, horizon)
    frame = built.features.copy()
    frame["item"] = built.item_id
    frame["origin"] = built.origin
    frame["target_date"] = built.date
    frame["target"] = built.target
    frame["scale"] = built.scale
    return frame


def test_rows_exist_for_alive_items_and_observed_targets() -> None:
    panel = hand_panel()
    dates = panel.dates
    origins = [dates[5], dates[21], dates[27]]
    built = build_features(panel, origins, H)
    # a: 4 + 4 + 2 (only two periods after dates[27]); b is alive from dates[20]: 4 + 2
    assert len(built) == 16
    assert built.features.dtypes.eq(np.float32).all()
    assert len(built.item_id) == len(built.origin) == len(built.date) == len(built.target)
    assert not np.isnan(built.target).any()


def test_step_and_target_date_alignment() -> None:
    panel = hand_panel()
    frame = keyed(panel, list(panel.dates[5:26]))
    weeks_ahead = pd.to_timedelta(frame["step"].astype(int) * 7, unit="D")
    expected = pd.to_datetime(frame["origin"]) + weeks_ahead
    assert (pd.to_datetime(frame["target_date"]) == expected).all()
    weeks = pd.DatetimeIndex(frame["target_date"]).isocalendar().week.to_numpy()
    assert (frame["week_of_year"].to_numpy() == weeks).all()
    sales = panel.sales.set_index([ITEM_ID, DATE])[SALES]
    actual = sales.loc[list(zip(frame["item"], pd.to_datetime(frame["target_date"]), strict=True))]
    np.testing.assert_array_equal(frame["target"].to_numpy(), actual.to_numpy())


def test_lags_rolling_and_counters_on_a_hand_made_series() -> None:
    panel = hand_panel()
    origin = panel.dates[14]  # sales of a up to here: 1..10, 0, 0, 13, 14, 15
    row = rows_of(keyed(panel, [origin]), "a", origin).iloc[0]
    history = np.array([*range(1, 11), 0, 0, 13, 14, 15], dtype=float)
    scale = history[-13:].mean()
    assert row["scale"] == pytest.approx(scale)
    for lag in (1, 2, 5, 8):
        assert row[f"lag_{lag}"] == pytest.approx(np.log1p(history[-lag] / scale), rel=1e-6)
    assert np.isnan(row["lag_52"])
    assert row["mean_4"] == pytest.approx(history[-4:].mean() / scale, rel=1e-6)
    assert row["std_4"] == pytest.approx(history[-4:].std() / scale, rel=1e-5)
    assert row["mean_26"] == pytest.approx(history.mean() / scale, rel=1e-6)
    assert row["zero_share_13"] == pytest.approx(2 / 13)
    assert row["since_sale"] == 0 and row["age"] == 14 and row["history"] == 15
    assert row["orders_lag_1"] == 114
    assert row["orders_rel_1"] == pytest.approx(114 / np.mean(np.arange(102, 115)), rel=1e-6)
    later = rows_of(keyed(panel, [panel.dates[11]]), "a", panel.dates[11]).iloc[0]
    assert later["since_sale"] == 2  # last sale at week 9, two zero weeks since


def test_known_future_at_target_date_and_relative_to_usual_price() -> None:
    panel = hand_panel()
    origin = panel.dates[23]
    rows = rows_of(keyed(panel, [origin]), "a", origin)
    # the price drops to 5 at week 25 = step 2; the usual price is 10
    assert rows["price"].tolist() == [10.0, 5.0, 10.0, 10.0]
    assert rows["price_rel"].tolist() == [1.0, 0.5, 1.0, 1.0]


def test_seasonal_lag_reads_one_season_before_the_target() -> None:
    sales = np.arange(20.0) + 1.0
    days = pd.date_range("2024-01-01", periods=20, freq="D")
    daily = validate_panel(pd.DataFrame({ITEM_ID: "x", DATE: days, SALES: sales}))
    spec = FeatureSpec(lags=(1,), windows=(4,), scale_window=4, zero_windows=(4,))
    frame = build_features(daily, [daily.dates[10]], 9, spec=spec).features
    scale = sales[7:11].mean()
    # the daily season is 7: step k reads day 10 + k - 7, or 10 + k - 14 when k > 7
    expected = [np.log1p(sales[10 + k - 7 * int(np.ceil(k / 7))] / scale) for k in range(1, 10)]
    np.testing.assert_allclose(frame["seasonal_lag"], expected, rtol=1e-6)
    assert {"day_of_week", "day_of_month", "month"} <= set(frame.columns)
    weekly = hand_panel()
    built = build_features(weekly, [weekly.dates[10]], 2)
    assert built.features["seasonal_lag"].isna().all()  # no history a year back


def test_future_rows_take_known_future_covariates_from_the_future_frame() -> None:
    panel = hand_panel()
    dates = panel.future_dates(panel.last_date, H)
    future = pd.DataFrame(
        {ITEM_ID: np.repeat(["a", "b"], H), DATE: np.tile(dates, 2), "price": 1.0}
    )
    built = build_features(panel, [panel.last_date], H, future=future)
    assert len(built) == 2 * H
    assert np.isnan(built.target).all()
    assert (built.features["price"] == 1.0).all()
    assert list(pd.DatetimeIndex(built.date[:H])) == list(dates)


def test_static_features_are_joined_by_item_and_must_be_numeric() -> None:
    panel = hand_panel()
    static = pd.DataFrame({"pc1": [0.5, -1.0]}, index=pd.Index(["b", "a"], name=ITEM_ID))
    built = build_features(panel, [panel.dates[25]], 2, static=static)
    by_item = dict(zip(built.item_id, built.features["static_pc1"], strict=True))
    assert by_item == {"a": -1.0, "b": 0.5}
    with pytest.raises(DataValidationError, match="numeric"):
        build_features(panel, [panel.dates[25]], 2, static=static.assign(tag="x"))


def scrambled_after(panel: Panel, cutoff: pd.Timestamp, seed: int) -> Panel:
    """The panel with sales and past-only covariates after ``cutoff`` replaced by noise."""
    rng = np.random.default_rng(seed)
    sales = panel.sales.copy()
    after = sales[DATE] > cutoff
    for column in (SALES, *panel.past_only):
        sales.loc[after, column] = rng.integers(0, 1000, size=int(after.sum())).astype(float)
    return validate_panel(
        sales, freq=panel.freq, known_future=panel.known_future, past_only=panel.past_only
    )


@settings(max_examples=15, deadline=None, derandomize=True)
@given(origin_index=st.integers(min_value=0, max_value=28), seed=st.integers(0, 2**16))
def test_features_never_use_data_after_the_origin(origin_index: int, seed: int) -> None:
    panel = hand_panel()
    origin = panel.dates[origin_index]
    honest = build_features(panel, [origin], H)
    noisy = build_features(scrambled_after(panel, origin, seed), [origin], H)
    pd.testing.assert_frame_equal(honest.features, noisy.features)
    np.testing.assert_array_equal(honest.scale, noisy.scale)


def test_known_future_covariates_enter_only_at_their_target_date(small_panel: Panel) -> None:
    origin = small_panel.dates[40]
    honest = build_features(small_panel, [origin], H)
    sales = small_panel.sales.copy()
    changed = sales[DATE] == small_panel.dates[42]  # the target date of step 2
    sales.loc[changed, "price"] *= 0.5
    moved = validate_panel(
        sales,
        freq=small_panel.freq,
        known_future=small_panel.known_future,
        past_only=small_panel.past_only,
    )
    other = build_features(moved, [origin], H)
    differs = (honest.features != other.features) & ~(
        honest.features.isna() & other.features.isna()
    )
    assert set(honest.step[differs.any(axis=1).to_numpy()]) == {2}
    assert set(differs.columns[differs.any(axis=0)]) == {"price", "price_rel"}


def test_origins_must_be_panel_dates() -> None:
    panel = hand_panel()
    with pytest.raises(Exception, match="origins must be dates of the panel"):
        build_features(panel, [pd.Timestamp("2030-01-07")], 2)
