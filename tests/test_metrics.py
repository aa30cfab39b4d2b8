"""Metrics against hand-computed values, and laws they must obey."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from salesformer.evaluation import metrics as m


def _frame() -> pd.DataFrame:
    # two series (a and b at one cutoff), two steps each
    return pd.DataFrame(
        {
            "item_id": ["a", "a", "b", "b"],
            "cutoff": pd.Timestamp("2024-01-01"),
            "date": pd.to_datetime(["2024-01-08", "2024-01-15"] * 2),
            "y": [10.0, 0.0, 4.0, 6.0],
            "M": [8.0, 1.0, 4.0, 9.0],
            "M-q10": [5.0, 0.0, 2.0, 7.0],
            "M-q50": [8.0, 1.0, 4.0, 9.0],
            "M-q90": [12.0, 2.0, 6.0, 11.0],
            "Naive": [10.0, 10.0, 5.0, 5.0],
            "scale_mae": [2.0, 2.0, 1.0, 1.0],
            "scale_mse": [4.0, 4.0, 1.0, 1.0],
        }
    )


def test_point_metrics_by_hand() -> None:
    f = _frame()
    errors = np.array([2.0, -1.0, 0.0, -3.0])
    assert m.mae(f, "M") == pytest.approx(np.abs(errors).mean())
    assert m.mse(f, "M") == pytest.approx((errors**2).mean())
    assert m.rmse(f, "M") == pytest.approx(math.sqrt((errors**2).mean()))
    assert m.wape(f, "M") == pytest.approx(6.0 / 20.0)
    assert m.bias(f, "M") == pytest.approx(2.0 / 20.0)
    # Naive errors: 0, -10, -1, 1 -> MAE 3
    assert m.rel_mae(f, "M") == pytest.approx(1.5 / 3.0)


def test_scaled_metrics_by_hand() -> None:
    f = _frame()
    # series a: mean|e| = 1.5, scale 2 -> 0.75; series b: mean|e| = 1.5, scale 1 -> 1.5
    assert m.mase(f, "M") == pytest.approx((0.75 + 1.5) / 2)
    # series a: mean e^2 = 2.5 / 4; series b: 4.5 / 1
    assert m.rmsse(f, "M") == pytest.approx((math.sqrt(2.5 / 4) + math.sqrt(4.5)) / 2)


def test_constant_history_series_is_left_out_of_mase() -> None:
    f = _frame()
    f.loc[f["item_id"] == "b", "scale_mae"] = 0.0
    assert m.mase(f, "M") == pytest.approx(0.75)


def test_quantile_metrics_by_hand() -> None:
    f = _frame()
    y = f["y"].to_numpy()
    expected = []
    for q, col in ((0.1, "M-q10"), (0.5, "M-q50"), (0.9, "M-q90")):
        d = y - f[col].to_numpy()
        expected.append(2 * np.maximum(q * d, (q - 1) * d).sum())
    assert m.wql(f, "M") == pytest.approx(np.mean(expected) / 20.0)
    # inside [q10, q90]: 10 in [5,12] yes; 0 in [0,2] yes; 4 in [2,6] yes; 6 in [7,11] no
    assert m.coverage80(f, "M") == pytest.approx(0.75)
    assert math.isnan(m.wql(f, "Naive"))


def test_perfect_forecast_scores_zero() -> None:
    f = _frame().assign(
        M=lambda d: d["y"], **{"M-q10": lambda d: d["y"], "M-q90": lambda d: d["y"]}
    )
    assert m.wape(f, "M") == 0.0
    assert m.mase(f, "M") == 0.0
    assert m.coverage80(f, "M") == 1.0


def test_evaluate_overall_and_by_segment() -> None:
    f = _frame().assign(segment=["x", "x", "y", "y"])
    overall = m.evaluate(f)
    assert set(overall["model"]) == {"M", "Naive"}
    assert list(overall.columns[:2]) == ["model", "cells"]
    by = m.evaluate(f, models=["M"], by="segment")
    assert by["segment"].tolist() == ["x", "y"]
    assert by.loc[by["segment"] == "x", "wape"].item() == pytest.approx(3.0 / 10.0)
    with pytest.raises(ValueError, match="unknown metric"):
        m.evaluate(f, metrics=["mape"])


def test_missing_columns_are_named() -> None:
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['Other'\]"):
        m.mae(_frame(), "Other")


@settings(max_examples=25, deadline=None)
@given(st.randoms(use_true_random=False))
def test_metrics_are_invariant_to_row_order(rnd: object) -> None:
    f = _frame()
    order = list(range(len(f)))
    rnd.shuffle(order)  # type: ignore[attr-defined]
    shuffled = f.iloc[order].reset_index(drop=True)
    a = m.evaluate(f).set_index("model")
    b = m.evaluate(shuffled).set_index("model")
    pd.testing.assert_frame_equal(a, b.loc[a.index])
