"""Category and total forecasts: levels, reconciliation, the backtest and the CLI."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from salesformer.data.contract import ACTUAL, DATE, ITEM_ID, SALES, Panel, validate_panel
from salesformer.data.synthetic import generate_catalogue
from salesformer.errors import ConfigError, DataValidationError
from salesformer.evaluation.backtest import backtest
from salesformer.forecasting.levels import (
    RECONCILERS,
    holdout_errors,
    level_forecast,
    level_series,
    parse_levels,
)
from salesformer.models.statistical import WindowAverage
from test_prepare_cli import assert_one_line_error, call


@pytest.fixture(scope="module")
def panel() -> Panel:
    return generate_catalogue(n_items=24, n_weeks=60, seed=3).panel()


@pytest.fixture(scope="module")
def fitted(panel: Panel) -> WindowAverage:
    return WindowAverage().fit(panel)


def test_parse_levels() -> None:
    assert parse_levels("total, category") == ("item", "category", "total")
    assert parse_levels(["total"]) == ("item", "total")
    for bad in ("category,region", "", " , "):
        with pytest.raises(ConfigError, match="level"):
            parse_levels(bad)


def _sums(frame: pd.DataFrame, panel: Panel, column: str) -> tuple[pd.Series, ...]:
    categories = panel.items.set_index(ITEM_ID)["category"]  # type: ignore[union-attr]
    items = frame[frame["level"] == "item"]
    by_category = items.groupby([items[ITEM_ID].map(categories), DATE])[column].sum()
    cats = frame[frame["level"] == "category"].set_index([ITEM_ID, DATE])[column]
    total = frame[frame["level"] == "total"].set_index(DATE)[column]
    return by_category.sort_index(), cats.sort_index(), total.sort_index()


@pytest.mark.parametrize("method", RECONCILERS)
def test_reconciled_levels_add_up(panel: Panel, fitted: WindowAverage, method: str) -> None:
    frame = level_forecast(fitted, ("category", "total"), 4, method=method, quantiles=(0.1, 0.9))
    assert set(frame["level"]) == {"item", "category", "total"}
    assert len(frame) == 4 * (len(panel.item_ids) + panel.items["category"].nunique() + 1)  # type: ignore[index]
    summed, categories, total = _sums(frame, panel, "WindowAverage")
    np.testing.assert_allclose(summed.to_numpy(), categories.to_numpy(), rtol=1e-6, atol=1e-6)
    per_date = categories.groupby(level=DATE).sum()
    np.testing.assert_allclose(per_date.to_numpy(), total.to_numpy(), rtol=1e-6, atol=1e-6)
    # the base forecasts do not add up: reconciliation changed something above the items
    base_sum, base_cats, _ = _sums(frame, panel, "WindowAverage-base")
    assert not np.allclose(base_sum.to_numpy(), base_cats.to_numpy())
    assert (frame["WindowAverage-q10"] <= frame["WindowAverage-q90"]).all()
    if method == "bottom_up":
        items = frame[frame["level"] == "item"]
        assert np.allclose(items["WindowAverage"], items["WindowAverage-base"])


def test_total_alone_needs_no_category(panel: Panel) -> None:
    bare = dataclasses.replace(panel, items=panel.items.drop(columns="category"))  # type: ignore[union-attr]
    model = WindowAverage().fit(bare)
    frame = level_forecast(model, ("total",), 3)
    assert set(frame["level"]) == {"item", "total"}
    with pytest.raises(DataValidationError, match="'category' column"):
        level_forecast(model, ("category",), 3)


def test_backtest_scores_each_level(panel: Panel) -> None:
    result = backtest(
        [WindowAverage()], panel, 4, n_windows=2, quantiles=(), levels=["category", "total"]
    )
    assert result.levels is not None
    total = result.levels[result.levels["level"] == "total"]
    cutoff = result.cutoffs[0]
    window = panel.window(cutoff, 4)
    known = panel.until(cutoff).item_ids
    expected = window[window[ITEM_ID].isin(known)].groupby(DATE)[SALES].sum()
    got = total[total["cutoff"] == cutoff].set_index(DATE)[ACTUAL]
    np.testing.assert_allclose(got.sort_index().to_numpy(), expected.sort_index().to_numpy())
    by_level = result.summary()["by_level"]
    assert {(r["level"], r["variant"]) for r in by_level} >= {
        ("total", "reconciled"),
        ("total", "base"),
    }


# -- the CLI ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def folders(panel: Panel, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("levels")
    panel.save(root / "panel")
    bare = dataclasses.replace(panel, items=panel.items.drop(columns="category"))  # type: ignore[union-attr]
    bare.save(root / "bare")
    for name in ("panel", "bare"):
        assert (
            call(
                [
                    "fit",
                    "--panel",
                    str(root / name),
                    "--out",
                    str(root / f"m-{name}"),
                    "--model",
                    "WindowAverage",
                ]
            )
            == 0
        )
    return {
        "root": root,
        "model": root / "m-panel",
        "bare": root / "m-bare",
        "panel": root / "panel",
    }


def test_cli_predict_levels(folders: dict[str, Path]) -> None:
    out = folders["root"] / "levels.csv"
    argv = ["predict", "--model", str(folders["model"]), "--out", str(out), "-h", "3"]
    assert call([*argv, "--levels", "category,total", "--reconcile", "ols"]) == 0
    frame = pd.read_csv(out)
    assert set(frame["level"]) == {"item", "category", "total"}
    assert "WindowAverage-base" in frame.columns


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--levels", "category,region"], ("unknown level", "region", "category, total")),
        (["--levels", "total", "--reconcile", "magic"], ("reconciliation method", "'magic'")),
        (["--levels", "total", "--engine", "ray"], ("--levels", "local engine")),
        (["--levels", "total", "--future", "plan.csv"], ("--levels", "--future")),
    ],
)
def test_cli_predict_bad_levels_are_one_line_errors(
    folders: dict[str, Path],
    extra: list[str],
    fragments: tuple[str, ...],
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = folders["root"] / "bad.csv"
    argv = ["predict", "--model", str(folders["model"]), "--out", str(out), *extra]
    assert call(argv) == 2
    assert_one_line_error(capsys, *fragments)
    assert not out.exists()


def test_cli_levels_category_without_category_column(
    folders: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    out = folders["root"] / "nocat.csv"
    argv = ["predict", "--model", str(folders["bare"]), "--out", str(out), "--levels", "category"]
    assert call(argv) == 2
    assert_one_line_error(capsys, "'category' column", "items")
    backtest_out = folders["root"] / "bt-nocat"
    argv = [
        "backtest",
        "--panel",
        str(folders["root"] / "bare"),
        "--out",
        str(backtest_out),
        "--models",
        "WindowAverage",
        "--levels",
        "category",
    ]
    assert call(argv) == 2
    assert_one_line_error(capsys, "'category' column")
    assert not backtest_out.exists()


def test_cli_backtest_levels(folders: dict[str, Path]) -> None:
    out = folders["root"] / "bt"
    argv = [
        "backtest",
        "--panel",
        str(folders["panel"]),
        "--out",
        str(out),
        "--models",
        "WindowAverage",
        "-h",
        "4",
        "--levels",
        "category,total",
    ]
    assert call(argv) == 0
    assert (out / "levels.parquet").is_file()
    summary = json.loads((out / "metrics.json").read_text())
    assert {r["level"] for r in summary["by_level"]} == {"item", "category", "total"}


def test_mint_shrink_with_an_item_launched_in_the_holdout_weeks(panel: Panel) -> None:
    late = pd.DataFrame(
        {
            ITEM_ID: "LATE",
            DATE: panel.dates[-2:],
            SALES: [5.0, 6.0],
            "price": 1.0,
            "discount": 0.0,
            "promo": 0.0,
        }
    )
    sales = pd.concat([panel.sales, late], ignore_index=True)
    items = pd.concat(
        [panel.items, pd.DataFrame({ITEM_ID: ["LATE"], "text": ["new"], "category": ["Gifts"]})],
        ignore_index=True,
    )
    grown = validate_panel(sales, items, freq=panel.freq)
    model = WindowAverage().fit(grown)
    series = level_series(grown, ("item", "category", "total"))
    errors = holdout_errors(model, grown, series, 2)
    assert len(errors) == 2 * len(series) and not errors.isna().any().any()
    late_rows = errors[errors[ITEM_ID] == "LATE"]
    assert late_rows["WindowAverage"].tolist() == [0.0, 0.0]  # unknown to the earlier model
    assert late_rows["y"].tolist() == [5.0, 6.0]
    try:
        frame = level_forecast(model, ("category", "total"), 2, method="mint_shrink")
    except ConfigError as exc:  # two held-out periods can leave the covariance singular
        assert "wls_struct" in str(exc)
    else:
        summed, categories, _ = _sums(frame, grown, "WindowAverage")
        np.testing.assert_allclose(summed.to_numpy(), categories.to_numpy(), atol=1e-6)


def test_backtest_item_level_is_the_scored_item_forecast(panel: Panel) -> None:
    """The levels' item rows reuse the backtest's item forecasts, which read each window's
    known-future prices and promotions (a second, carried-forward forecast would differ)."""
    from salesformer.models.lightgbm import LightGBMForecaster

    model = LightGBMForecaster(n_estimators=20, n_jobs=1, max_horizon=4)
    result = backtest([model], panel, 4, n_windows=1, quantiles=(), levels=["total"])
    assert result.levels is not None
    items = result.levels[result.levels["level"] == "item"]
    keys = [ITEM_ID, "cutoff", DATE]
    both = items.merge(result.forecasts[[*keys, model.name]], on=keys, suffixes=("", "_scored"))
    assert len(both) == len(result.forecasts)
    np.testing.assert_allclose(both[f"{model.name}-base"], both[f"{model.name}_scored"])
