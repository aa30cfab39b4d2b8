"""Plans: known-future covariates given for the horizon (library, backtest, CLI)."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from salesformer.cli.main import run
from salesformer.data.calendars import add_calendar, is_calendar_column
from salesformer.data.contract import Panel, validate_panel
from salesformer.errors import DataQualityWarning, DataValidationError, SalesformerError
from salesformer.evaluation.backtest import backtest
from salesformer.forecasting.plans import (
    PLAN_COPY,
    apply_plan,
    plan_future,
    predict_with_plan,
)
from salesformer.forecasting.protocol import resolve_future
from salesformer.models.lightgbm import LightGBMForecaster
from salesformer.models.persist import save_model

H = 4
FAST = {"n_estimators": 30, "n_jobs": 1, "max_horizon": H}


@pytest.fixture(scope="module")
def fitted(small_panel: Panel) -> LightGBMForecaster:
    return LightGBMForecaster(**FAST).fit(small_panel)


def full_plan(panel: Panel, discount: float = 0.4) -> pd.DataFrame:
    """Every item and date of the horizon: a deep discount with a promotion."""
    plan = resolve_future(panel, H, None)
    plan["discount"] = discount
    plan["promo"] = 1.0
    return plan


def test_full_plan_is_the_future_the_model_reads(fitted: LightGBMForecaster) -> None:
    plan = full_plan(fitted.panel_)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataQualityWarning)  # a complete plan warns of nothing
        forecast, report = predict_with_plan(fitted, H, plan)
    assert report.complete and report.note() is None
    pd.testing.assert_frame_equal(forecast, fitted.predict(H, future=plan))
    assert not forecast.equals(fitted.predict(H))  # the discount changed the forecast


def test_partial_plan_falls_back_to_last_values_and_says_so(
    fitted: LightGBMForecaster,
) -> None:
    panel = fitted.panel_
    planned = list(panel.item_ids[:3])
    plan = full_plan(panel)
    plan = plan[plan["item_id"].isin(planned)].drop(columns="price")
    plan = plan.iloc[1:]  # one date of the first item missing too
    with pytest.warns(DataQualityWarning) as caught:
        forecast, report = predict_with_plan(fitted, H, plan)
    note = str(caught[0].message)
    total = len(panel.item_ids) * H
    assert report.rows_without_plan == total - len(plan)
    assert report.items_without_plan == len(panel.item_ids) - 3
    assert report.columns_not_planned == ("price",)
    assert f"covers {len(plan)} of {total}" in note and "['price']" in note
    assert "no change" in note
    baseline = fitted.predict(H)
    other = ~forecast["item_id"].isin(planned)
    pd.testing.assert_frame_equal(forecast[other], baseline[other])
    assert not forecast[~other].equals(baseline[~other])


def test_calendar_columns_are_computed_not_reported_as_fallback(small_panel: Panel) -> None:
    """A plan without the calendar's columns: they come from the calendar, not "no change"."""
    panel = add_calendar(small_panel, holidays="GB")
    calendar = [c for c in panel.known_future if is_calendar_column(c)]
    assert calendar
    plan = full_plan(panel).drop(columns=calendar)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataQualityWarning)  # nothing fell back
        applied = plan_future(panel, H, plan)
    assert applied.report.complete and applied.report.columns_not_planned == ()
    expected = resolve_future(panel, H, None)
    pd.testing.assert_frame_equal(
        applied.future[calendar].reset_index(drop=True),
        expected[calendar].reset_index(drop=True),
    )
    partial = plan.drop(columns="price")
    with pytest.warns(DataQualityWarning) as caught:
        plan_future(panel, H, partial)
    note = str(caught[0].message)
    assert "['price']" in note and not any(c in note for c in calendar)


def test_blank_cells_fall_back(small_panel: Panel) -> None:
    plan = full_plan(small_panel)
    plan.loc[plan.index[:5], "discount"] = np.nan
    baseline = resolve_future(small_panel, H, None)
    applied = apply_plan(baseline, plan, small_panel.known_future)
    assert applied.report.blank_cells == 5
    np.testing.assert_array_equal(
        applied.future["discount"].to_numpy()[:5], baseline["discount"].to_numpy()[:5]
    )
    assert (applied.future["discount"].to_numpy()[5:] == 0.4).all()


def _error(panel: Panel, plan: pd.DataFrame) -> str:
    with pytest.raises(DataValidationError) as info:
        plan_future(panel, H, plan, where="--future")
    message = str(info.value)
    assert "\n" not in message and message.startswith("--future")
    return message


def test_date_outside_the_horizon_is_an_error(small_panel: Panel) -> None:
    plan = full_plan(small_panel)
    plan.loc[0, "date"] = small_panel.last_date + 10 * small_panel.offset
    assert "not a period of the forecast horizon" in _error(small_panel, plan)


def test_date_off_the_grid_is_an_error(small_panel: Panel) -> None:
    plan = full_plan(small_panel)
    plan.loc[0, "date"] = plan.loc[0, "date"] + pd.Timedelta(days=2)
    assert "not a period of the forecast horizon" in _error(small_panel, plan)


def test_date_that_is_no_date_is_an_error(small_panel: Panel) -> None:
    plan = full_plan(small_panel).astype({"date": object})
    plan.loc[0, "date"] = "next week"
    assert "values are not dates, e.g. ['next week']" in _error(small_panel, plan)


def test_unknown_item_is_an_error(small_panel: Panel) -> None:
    plan = full_plan(small_panel)
    plan.loc[0, "item_id"] = "NO-SUCH-ITEM"
    assert "not items of the model's panel" in _error(small_panel, plan)


def test_unknown_column_is_an_error(small_panel: Panel) -> None:
    plan = full_plan(small_panel).assign(colour=1.0)
    assert "unknown column(s) ['colour']" in _error(small_panel, plan)


def test_past_only_column_is_an_error(small_panel: Panel) -> None:
    sales = small_panel.sales.assign(views=1.0)
    panel = validate_panel(sales, small_panel.items, past_only=["views"])
    plan = full_plan(panel).assign(views=3.0)
    assert "past-only" in _error(panel, plan)


def test_missing_key_column_is_an_error(small_panel: Panel) -> None:
    plan = full_plan(small_panel).drop(columns="date")
    assert "column(s) ['date'] missing" in _error(small_panel, plan)


def test_non_numeric_price_is_an_error(small_panel: Panel) -> None:
    plan = full_plan(small_panel).astype({"price": object})
    plan.loc[2, "price"] = "cheap"
    assert "'price' must hold numbers; got 'cheap'" in _error(small_panel, plan)


def test_negative_price_is_an_error(small_panel: Panel) -> None:
    plan = full_plan(small_panel)
    plan.loc[1, "price"] = -2.0
    assert "'price' must be finite and >= 0; got -2.0" in _error(small_panel, plan)


@pytest.mark.parametrize("value", [1.0, -0.1, 20.0])
def test_discount_outside_zero_one_is_an_error(small_panel: Panel, value: float) -> None:
    plan = full_plan(small_panel, discount=value)
    assert "'discount' must be in [0, 1)" in _error(small_panel, plan)


def test_repeated_item_and_date_is_an_error(small_panel: Panel) -> None:
    plan = full_plan(small_panel)
    plan = pd.concat([plan, plan.iloc[:1]], ignore_index=True)
    assert "repeat an item and date" in _error(small_panel, plan)


def test_promotion_copy_needs_a_model_that_reads_text(fitted: LightGBMForecaster) -> None:
    plan = full_plan(fitted.panel_).assign(**{PLAN_COPY: "Half price this week only"})
    with pytest.raises(SalesformerError, match="reads no item text"):
        predict_with_plan(fitted, H, plan)


def test_promotion_copy_that_changes_by_date_is_an_error(small_panel: Panel) -> None:
    plan = full_plan(small_panel).assign(**{PLAN_COPY: "Half price"})
    plan.loc[1, PLAN_COPY] = "Two for one"
    assert "reads one text per item" in _error(small_panel, plan)


# -- backtests --------------------------------------------------------------------------------


def _windows(panel: Panel) -> list[pd.Timestamp]:
    return [panel.dates[-2 * H - 1], panel.dates[-H - 1]]


def _realised_plan(panel: Panel, cutoffs: list[pd.Timestamp]) -> pd.DataFrame:
    return pd.concat(
        [panel.future_covariates(c, H).assign(cutoff=c) for c in cutoffs], ignore_index=True
    )


def test_backtest_with_the_realised_plan_equals_the_default(small_panel: Panel) -> None:
    cutoffs = _windows(small_panel)
    model = [LightGBMForecaster(**FAST)]
    default = backtest(model, small_panel, H, cutoffs)
    keyed = backtest(model, small_panel, H, cutoffs, plan=_realised_plan(small_panel, cutoffs))
    schedule = small_panel.sales[["item_id", "date", *small_panel.known_future]]
    fixed = backtest(model, small_panel, H, cutoffs, plan=schedule)
    pd.testing.assert_frame_equal(keyed.forecasts, default.forecasts)
    pd.testing.assert_frame_equal(fixed.forecasts, default.forecasts)


def test_backtest_with_an_empty_plan_carries_values_forward(small_panel: Panel) -> None:
    cutoffs = _windows(small_panel)
    empty = _realised_plan(small_panel, cutoffs).iloc[:0]
    with pytest.warns(DataQualityWarning, match="covers 0 of"):
        result = backtest([LightGBMForecaster(**FAST)], small_panel, H, cutoffs, plan=empty)
    cutoff = cutoffs[0]
    train = small_panel.until(cutoff)
    expected = LightGBMForecaster(**FAST).fit(train).predict(H)  # last values carried forward
    got = result.forecasts[result.forecasts["cutoff"] == cutoff]
    merged = got.merge(expected, on=["item_id", "date"], suffixes=("", "_expected"))
    assert len(merged) == len(got)
    np.testing.assert_array_equal(merged["LightGBM"], merged["LightGBM_expected"])


def test_backtest_plan_for_another_cutoff_is_an_error(small_panel: Panel) -> None:
    cutoffs = _windows(small_panel)
    plan = _realised_plan(small_panel, [small_panel.dates[-3 * H - 1]])
    with pytest.raises(DataValidationError, match="not cutoffs of this backtest"):
        backtest([LightGBMForecaster(**FAST)], small_panel, H, cutoffs, plan=plan)


def test_backtest_plan_row_not_after_its_cutoff_is_an_error(small_panel: Panel) -> None:
    cutoffs = _windows(small_panel)
    plan = _realised_plan(small_panel, cutoffs)
    plan.loc[0, "date"] = cutoffs[0]
    with pytest.raises(DataValidationError, match="on or before its cutoff"):
        backtest([LightGBMForecaster(**FAST)], small_panel, H, cutoffs, plan=plan)


# -- the command line -------------------------------------------------------------------------


def _invoke(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        run(args)
    captured = capsys.readouterr()
    code = info.value.code if isinstance(info.value.code, int) else 1
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def model_dir(fitted: LightGBMForecaster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_model(fitted, tmp_path_factory.mktemp("model") / "lgbm")


def test_cli_predict_with_a_plan(
    model_dir: Path, fitted: LightGBMForecaster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = full_plan(fitted.panel_)
    plan = plan[plan["item_id"].isin(fitted.panel_.item_ids[:2])]
    path = tmp_path / "plan.csv"
    plan.to_csv(path, index=False)
    out = tmp_path / "forecast.csv"
    args = ["predict", "--model", str(model_dir), "--future", str(path), "--out", str(out)]
    code, _, stderr = _invoke(args, capsys)
    assert code == 0, stderr
    warning = [line for line in stderr.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "--future covers 8 of 160" in warning[0]
    written = pd.read_csv(out, dtype={"item_id": str}, parse_dates=["date"])
    with pytest.warns(DataQualityWarning):
        expected, _ = predict_with_plan(fitted, H, plan)
    np.testing.assert_allclose(written["LightGBM"], expected["LightGBM"], rtol=1e-12)


def test_cli_predict_bad_plan_exits_2_with_one_line(
    model_dir: Path, fitted: LightGBMForecaster, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = full_plan(fitted.panel_, discount=1.5)
    path = tmp_path / "plan.parquet"
    plan.to_parquet(path, index=False)
    out = tmp_path / "forecast.csv"
    args = ["predict", "--model", str(model_dir), "--future", str(path), "--out", str(out)]
    code, _, stderr = _invoke(args, capsys)
    assert code == 2
    assert stderr.strip().count("\n") == 0 and "'discount' must be in [0, 1)" in stderr
    assert not out.exists()


def test_cli_backtest_with_a_plan(
    small_panel: Panel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    panel_dir = small_panel.save(tmp_path / "panel")
    cutoffs = _windows(small_panel)
    path = tmp_path / "plan.csv"
    _realised_plan(small_panel, cutoffs).to_csv(path, index=False, date_format="%Y-%m-%d")
    out = tmp_path / "bt"
    args = [
        "backtest",
        "--panel",
        str(panel_dir),
        "--models",
        "SeasonalNaive",
        "--horizon",
        str(H),
        "--cutoffs",
        ",".join(str(c.date()) for c in cutoffs),
        "--future",
        str(path),
        "--out",
        str(out),
    ]
    code, _, stderr = _invoke(args, capsys)
    assert code == 0, stderr
    assert (out / "metrics.json").is_file() and "warning:" not in stderr
    bad = tmp_path / "bad.csv"
    _realised_plan(small_panel, cutoffs).assign(price=-1.0).to_csv(bad, index=False)
    code, _, stderr = _invoke(
        [*args[:-4], "--future", str(bad), "--out", str(tmp_path / "b2")], capsys
    )
    assert code == 2 and "'price' must be finite and >= 0" in stderr
    assert not (tmp_path / "b2").exists()


def test_cli_future_and_new_items_together_is_an_error(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "plan.csv"
    plan.write_text("item_id,date,price\n")
    args = ["predict", "--model", str(model_dir), "--future", str(plan), "--new-items", str(plan)]
    code, _, stderr = _invoke([*args, "--out", str(tmp_path / "f.csv")], capsys)
    assert code == 2 and "give one of them" in stderr
