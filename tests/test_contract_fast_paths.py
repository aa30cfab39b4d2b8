"""The columnar validator's shortcuts keep the contract's checks, messages and outputs.

``validate_panel`` keeps a gap-free frame's columns as the grid (no scatter and gather), sorts
rows on one integer key, finds missing ids in the factorisation and times of day on the dates
as integers. Each shortcut is checked here against the plain formulation or the message it
must still give; ``tests/test_contract_columnar.py`` checks whole panels against the pandas
formulation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from salesformer.data.contract import Panel, validate_panel
from salesformer.data.frequency import refuse_weekly_as_daily
from salesformer.data.grid import order_rows
from salesformer.errors import DataValidationError


def _complete(n_items: int = 4, n_weeks: int = 6, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2024-01-01", periods=n_weeks, freq="W-MON")
    frame = pd.DataFrame(
        {
            "item_id": np.repeat([f"s{i}" for i in range(n_items)], n_weeks),
            "date": np.tile(dates, n_items),
            "sales": rng.integers(0, 9, n_items * n_weeks).astype(float),
            "price": rng.normal(10, 1, n_items * n_weeks),
            "in_stock": rng.random(n_items * n_weeks) > 0.2,
        }
    )
    return frame


def _no_shared_memory(panel: Panel, raw: pd.DataFrame) -> None:
    for out_name in panel.sales.columns:
        out = panel.sales[out_name].to_numpy()
        for name in raw.columns:
            assert not np.shares_memory(out, raw[name].to_numpy()), (out_name, name)


@pytest.mark.parametrize("shuffle", [False, True])
def test_a_gap_free_frame_is_its_own_grid_and_owns_its_arrays(shuffle: bool) -> None:
    raw = _complete()
    if shuffle:
        raw = raw.sample(frac=1.0, random_state=3).reset_index(drop=True)
    panel = validate_panel(raw, freq="W-MON")
    expected = raw.sort_values(["item_id", "date"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(panel.sales, expected, check_exact=True)
    assert panel.report["rows_filled"] == 0
    _no_shared_memory(panel, raw)
    panel.sales.loc[0, "sales"] = -1.0  # writing into the panel leaves the input alone
    assert (raw["sales"] >= 0).all()


def test_a_frame_with_gaps_owns_its_arrays() -> None:
    raw = _complete().drop(index=[2, 9, 10]).reset_index(drop=True)
    panel = validate_panel(raw, freq="W-MON")
    assert panel.report["rows_filled"] == 3
    _no_shared_memory(panel, raw)


def test_order_rows_sorts_on_one_key_or_two_alike() -> None:
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 50, 400)
    days = rng.choice(np.arange(-3000, 3000), 400, replace=True)
    order, _ = order_rows(codes, days)
    assert order is not None
    np.testing.assert_array_equal(codes[order], codes[np.lexsort((days, codes))])
    np.testing.assert_array_equal(days[order], days[np.lexsort((days, codes))])
    # a date range too wide for one 63-bit key takes the two-key sort
    wide = np.array([0, 2**61, -(2**61), 5], dtype=np.int64)
    order, repeated = order_rows(np.array([3, 0, 0, 3]), wide)
    assert order is not None and list(order) == [2, 1, 0, 3] and not repeated


@pytest.mark.parametrize(
    "ids",
    [
        pd.Series(["a", None, "b", np.nan, "c"], dtype=object),
        pd.Series(["a", None, "b", np.nan, "c"], dtype="category"),
        pd.Series([1.0, np.nan, 2.0, np.nan, 3.0]),
    ],
)
def test_missing_ids_are_counted(ids: pd.Series) -> None:
    raw = pd.DataFrame(
        {"item_id": ids, "date": pd.Timestamp("2024-01-01"), "sales": [1.0, 2.0, 3.0, 4.0, 5.0]}
    )
    with pytest.raises(DataValidationError, match=r"^column 'item_id': 2 rows have no id; drop"):
        validate_panel(raw, freq="W-MON")


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_a_time_of_day_is_found_in_every_date_unit(unit: str) -> None:
    dates = pd.Series([pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-08 00:00:01")]).astype(
        f"datetime64[{unit}]"
    )
    raw = pd.DataFrame({"item_id": ["a", "a"], "date": dates, "sales": [1.0, 2.0]})
    with pytest.raises(DataValidationError, match="1 values carry a time of day"):
        validate_panel(raw, freq="W-MON")
    whole_days = raw.assign(date=dates.dt.normalize())
    assert validate_panel(whole_days, freq="W-MON").sales["date"].dtype == "datetime64[ns]"


def test_dates_before_1970_and_zoned_dates_are_whole_days() -> None:
    dates = pd.Series(pd.to_datetime(["1960-01-04", "1960-01-11"]))
    raw = pd.DataFrame({"item_id": ["a", "a"], "date": dates, "sales": [1.0, 2.0]})
    assert len(validate_panel(raw, freq="W-MON").sales) == 2
    zoned = raw.assign(
        date=pd.Series(pd.to_datetime(["2024-01-01", "2024-01-08"])).dt.tz_localize("Europe/London")
    )
    assert validate_panel(zoned, freq="W-MON").sales["date"].dt.tz is None
    with pytest.raises(DataValidationError, match="rows have no date"):
        validate_panel(raw.assign(date=[pd.Timestamp("2024-01-01"), pd.NaT]), freq="W-MON")


def test_weekly_rows_on_several_weekdays_are_refused_in_any_row_order() -> None:
    mondays = pd.date_range("2024-01-01", periods=5, freq="W-MON")
    raw = pd.DataFrame(
        {
            "item_id": ["a"] * 5 + ["b"] * 5,
            "date": [*mondays, *(mondays + pd.Timedelta(days=1))],
            "sales": np.arange(10.0),
        }
    ).sample(frac=1.0, random_state=0)
    with pytest.raises(DataValidationError, match=r"several weekdays \(MON: 5, TUE: 5 rows\)"):
        validate_panel(raw)
    daily = raw.assign(date=pd.date_range("2024-01-01", periods=10, freq="D"))
    assert validate_panel(daily).freq == "D"


def test_refuse_weekly_as_daily_compares_dates_within_an_item_only() -> None:
    dates = pd.to_datetime(["2024-01-01", "2024-01-08", "2024-01-03", "2024-01-10"]).to_numpy()
    with pytest.raises(DataValidationError, match="whole weeks apart"):
        refuse_weekly_as_daily(np.array([0, 0, 1, 1]), dates)
    # the same dates as one item are 2, 5 and 2 days apart: daily data with gaps
    refuse_weekly_as_daily(np.array([0, 0, 0, 0]), np.sort(dates))


def test_repeated_pairs_are_named_with_text_ids_in_input_order() -> None:
    raw = pd.DataFrame(
        {
            "item_id": ["b", 7, "b", "7", "a"],
            "date": pd.to_datetime(
                ["2024-01-08", "2024-01-01", "2024-01-08", "2024-01-01", "2024-01-01"]
            ),
            "sales": [1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )
    message = r"2 \(item_id, date\) pairs .* e\.g\. \['b @ 2024-01-08', '7 @ 2024-01-01'\]"
    with pytest.raises(DataValidationError, match=message):
        validate_panel(raw, freq="W-MON")
