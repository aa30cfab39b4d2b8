"""The columnar validation (salesformer.data.grid) equals the plain pandas formulation.

``validate_panel`` orders rows, finds repeated (item, date) pairs and completes the grid on
integer codes instead of the id strings; the reference below is the pandas code it replaced
(``astype(str)``, ``sort_values``, a left merge on the full grid, per-item forward fill). The
two must agree exactly, whatever the row order, the id types, the gaps and the columns.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from salesformer.data.availability import filled_availability
from salesformer.data.contract import validate_panel
from salesformer.data.grid import item_codes, order_rows
from salesformer.errors import DataValidationError


def reference_grid(sales: pd.DataFrame, freq: str, covariates: Sequence[str]) -> pd.DataFrame:
    """The contract's grid completion before it became columnar (the merge formulation)."""
    sales = sales.assign(item_id=sales["item_id"].astype(str))
    sales = sales.sort_values(["item_id", "date"]).reset_index(drop=True)
    last = sales["date"].max()
    firsts = sales.groupby("item_id", sort=True)["date"].min()
    grid_index = pd.date_range(firsts.min(), last, freq=freq)
    position = pd.Series(np.arange(len(grid_index)), index=grid_index)
    starts = position.loc[firsts.values].to_numpy()
    ids = np.repeat(firsts.index.to_numpy(), len(grid_index) - starts)
    date_pos = np.concatenate([np.arange(s, len(grid_index)) for s in starts])
    grid = pd.DataFrame({"item_id": ids, "date": grid_index[date_pos]})
    full = grid.merge(sales, on=["item_id", "date"], how="left", validate="one_to_one")
    full["sales"] = full["sales"].fillna(0.0)
    if covariates:
        full[list(covariates)] = full.groupby("item_id", sort=False)[list(covariates)].ffill()
    return filled_availability(full)


@st.composite
def raw_panels(draw: st.DrawFn) -> tuple[pd.DataFrame, str]:
    freq = draw(st.sampled_from(["W-MON", "D", "MS"]))
    n_periods = draw(st.integers(1, 12))
    grid = pd.date_range("2024-01-01", periods=n_periods, freq=freq)
    numeric_ids = draw(st.booleans())
    rows = []
    for item in range(draw(st.integers(1, 6))):
        kept = draw(st.lists(st.booleans(), min_size=n_periods, max_size=n_periods))
        if not any(kept):
            kept[-1] = True
        for date, keep in zip(grid, kept, strict=True):
            if keep:
                rows.append({"item_id": item * 7 if numeric_ids else f"s{item * 7}", "date": date})
    frame = pd.DataFrame(rows)
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    frame["sales"] = rng.integers(0, 9, len(frame)).astype(float)
    frame["price"] = rng.normal(10, 1, len(frame))
    frame["traffic"] = rng.integers(0, 50, len(frame))
    if draw(st.booleans()):
        frame["in_stock"] = rng.random(len(frame)) > 0.2
    if draw(st.booleans()):
        frame = frame.sample(frac=1.0, random_state=int(rng.integers(0, 1000)))
    return frame.reset_index(drop=True), freq


@settings(max_examples=60, deadline=None)
@given(raw_panels())
def test_columnar_validation_equals_the_merge_formulation(case: tuple[pd.DataFrame, str]) -> None:
    raw, freq = case
    before = raw.copy()
    panel = validate_panel(raw, freq=freq)
    pd.testing.assert_frame_equal(raw, before)  # the input is not written into
    covariates = ["price", "traffic"]
    expected = reference_grid(raw.assign(traffic=raw["traffic"].astype(float)), freq, covariates)
    expected = expected[list(panel.sales.columns)]
    pd.testing.assert_frame_equal(panel.sales, expected, check_exact=True)
    assert panel.report["items"] == raw["item_id"].nunique()
    assert panel.report["rows_filled"] == len(expected) - len(raw)


def test_ids_equal_as_text_are_one_item() -> None:
    codes = item_codes(pd.Series([1, "1", "b", 1, "a"], dtype=object))
    assert list(codes.ids) == ["1", "a", "b"]
    assert list(codes.codes) == [0, 0, 2, 0, 1]
    assert not codes.all_text
    assert item_codes(pd.Series(["x", "y"], dtype=object)).all_text


def test_order_rows_finds_repeats_and_keeps_a_sorted_frame() -> None:
    codes = np.array([0, 0, 1, 1])
    assert order_rows(codes, np.array([1, 2, 1, 2])) == (None, False)
    order, repeated = order_rows(codes, np.array([2, 1, 1, 1]))
    assert repeated
    order, repeated = order_rows(np.array([1, 0, 0]), np.array([5, 9, 3]))
    assert order is not None and list(order) == [2, 1, 0] and not repeated


def test_repeated_pair_after_id_conversion_is_refused() -> None:
    raw = pd.DataFrame(
        {"item_id": [1, "1"], "date": pd.to_datetime(["2024-01-01"] * 2), "sales": [1.0, 2.0]}
    )
    with pytest.raises(DataValidationError, match="appear more than once"):
        validate_panel(raw, freq="W-MON")
