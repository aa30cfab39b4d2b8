"""The data contract: every validation rule, the completion policy, save and load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from salesformer.data.contract import Panel, infer_freq, season_length, validate_panel
from salesformer.errors import DataValidationError


def _frame(**overrides: object) -> pd.DataFrame:
    base = {
        "item_id": ["a", "a", "a", "b", "b"],
        "date": ["2024-01-01", "2024-01-08", "2024-01-15", "2024-01-08", "2024-01-15"],
        "sales": [1.0, 2.0, 3.0, 0.0, 5.0],
        "price": [2.0, 2.0, 1.5, 3.0, 3.0],
    }
    base.update(overrides)  # type: ignore[arg-type]
    return pd.DataFrame(base)


def _items() -> pd.DataFrame:
    return pd.DataFrame({"item_id": ["a", "b"], "text": ["Red mug.", "Blue bag."]})


def test_valid_panel_is_sorted_and_typed() -> None:
    panel = validate_panel(_frame(), _items())
    assert panel.freq == "W-MON"
    assert list(panel.sales.columns) == ["item_id", "date", "sales", "price"]
    assert panel.known_future == ("price",)
    assert panel.past_only == ()
    assert panel.sales["date"].dtype == "datetime64[ns]"
    assert panel.sales["item_id"].tolist() == ["a", "a", "a", "b", "b"]


def test_gaps_become_zero_sales_and_covariates_carry_forward() -> None:
    frame = _frame(
        item_id=["a", "a", "b"],
        date=["2024-01-01", "2024-01-22", "2024-01-08"],
        sales=[1.0, 4.0, 2.0],
        price=[2.0, 3.0, 1.0],
    )
    panel = validate_panel(frame)
    a = panel.sales[panel.sales["item_id"] == "a"]
    assert a["sales"].tolist() == [1.0, 0.0, 0.0, 4.0]
    assert a["price"].tolist() == [2.0, 2.0, 2.0, 3.0]
    b = panel.sales[panel.sales["item_id"] == "b"]
    # b starts at its first date and runs to the panel's last date
    assert b["date"].dt.strftime("%Y-%m-%d").tolist() == ["2024-01-08", "2024-01-15", "2024-01-22"]
    assert b["sales"].tolist() == [2.0, 0.0, 0.0]
    assert panel.report["rows_filled"] == 4


@pytest.mark.parametrize(
    ("frame", "fragment"),
    [
        (_frame().drop(columns=["sales"]), "column(s) ['sales'] missing"),
        (_frame().rename(columns={"date": "week"}), "column(s) ['date'] missing"),
        (_frame().iloc[0:0], "empty"),
        (
            _frame(date=["2024-01-01", "2024-01-08", "not a date", "2024-01-08", "2024-01-15"]),
            "not dates",
        ),
        (_frame(sales=[1, "two", 3, 0, 5]), "not numbers"),
        (_frame(sales=[1.0, -2.0, 3.0, 0.0, 5.0]), "negative"),
        (_frame(sales=[1.0, np.nan, 3.0, 0.0, 5.0]), "missing (NaN)"),
        (_frame(price=[1.0, np.nan, 3.0, 0.0, 5.0]), "column 'price'"),
        (_frame(item_id=["a", "a", "a", "a", "b"]), "more than once"),
        (
            _frame(date=["2024-01-01", "2024-01-09", "2024-01-15", "2024-01-08", "2024-01-16"]),
            "mix frequencies",
        ),
        (
            _frame(
                date=["2024-01-01 10:00", "2024-01-08", "2024-01-15", "2024-01-08", "2024-01-15"]
            ),
            "time of day",
        ),
    ],
)
def test_bad_input_raises_clear_error(frame: pd.DataFrame, fragment: str) -> None:
    with pytest.raises(DataValidationError, match=None) as info:
        validate_panel(frame)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_items_missing_from_table_are_named() -> None:
    items = pd.DataFrame({"item_id": ["a"], "text": ["Red mug."]})
    with pytest.raises(DataValidationError, match=r"not in the items table, e.g. \['b'\]"):
        validate_panel(_frame(), items)


@pytest.mark.parametrize(
    ("items", "fragment"),
    [
        (pd.DataFrame({"item_id": ["a", "b"]}), "['text'] missing"),
        (pd.DataFrame({"item_id": ["a", "a"], "text": ["x", "y"]}), "duplicated"),
        (pd.DataFrame({"item_id": ["a", "b"], "text": ["x", None]}), "'text' is missing"),
    ],
)
def test_bad_items_table(items: pd.DataFrame, fragment: str) -> None:
    with pytest.raises(DataValidationError) as info:
        validate_panel(_frame(), items)
    assert fragment in str(info.value)


def test_negative_sales_clip_policy_counts() -> None:
    panel = validate_panel(_frame(sales=[1.0, -2.0, 3.0, 0.0, -5.0]), negative_sales="clip")
    assert panel.sales["sales"].min() == 0.0
    assert panel.report["negative_sales_clipped"] == 2


def test_declared_roles_and_unknown_declaration() -> None:
    frame = _frame().assign(views=[10, 20, 30, 5, 6])
    panel = validate_panel(frame, known_future=["price"], past_only=["views"])
    assert panel.known_future == ("price",)
    assert panel.past_only == ("views",)
    with pytest.raises(DataValidationError, match="declared but is not a column"):
        validate_panel(frame, known_future=["discount"])


def test_daily_and_monthly_frequencies_are_inferred() -> None:
    days = pd.date_range("2024-01-01", periods=10, freq="D")
    assert infer_freq(pd.Series(days)) == "D"
    months = pd.date_range("2024-01-01", periods=6, freq="MS")
    assert infer_freq(pd.Series(months)) == "MS"
    sundays = pd.date_range("2024-01-07", periods=6, freq="W-SUN")
    assert infer_freq(pd.Series(sundays)) == "W-SUN"
    assert season_length("W-SUN") == 52 and season_length("D") == 7 and season_length("MS") == 12


def test_daily_panel_with_gaps() -> None:
    frame = pd.DataFrame(
        {
            "item_id": ["x", "x", "x"],
            "date": ["2024-03-01", "2024-03-02", "2024-03-05"],
            "sales": [1, 2, 3],
        }
    )
    panel = validate_panel(frame)
    assert panel.freq == "D"
    assert panel.sales["sales"].tolist() == [1.0, 2.0, 0.0, 0.0, 3.0]


def test_until_and_window_split_at_cutoff(small_panel: Panel) -> None:
    cutoff = small_panel.dates[50]
    before = small_panel.until(cutoff)
    assert before.last_date == cutoff
    window = small_panel.window(cutoff, 4)
    assert window["date"].min() == small_panel.dates[51]
    assert window["date"].max() == small_panel.dates[54]
    future = small_panel.future_covariates(cutoff, 4)
    assert list(future.columns) == ["item_id", "date", "price", "discount", "promo"]


def test_save_and_load_round_trip(small_panel: Panel, tmp_path: Path) -> None:
    small_panel.save(tmp_path / "p")
    loaded = Panel.load(tmp_path / "p")
    pd.testing.assert_frame_equal(loaded.sales, small_panel.sales)
    assert loaded.items is not None and small_panel.items is not None
    pd.testing.assert_frame_equal(loaded.items, small_panel.items)
    assert (loaded.freq, loaded.known_future, loaded.past_only) == (
        small_panel.freq,
        small_panel.known_future,
        small_panel.past_only,
    )


def test_load_missing_folder_is_clear(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match=r"no panel\.parquet"):
        Panel.load(tmp_path / "nowhere")
