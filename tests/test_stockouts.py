"""Stock-outs: the availability column, masked training targets, scoring and the replay."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from salesformer.data.contract import ACTUAL, CUTOFF, DATE, ITEM_ID, SALES, Panel, validate_panel
from salesformer.data.features import build_features
from salesformer.data.stockouts import drop_unavailable_targets, impute_stockouts
from salesformer.data.synthetic import generate_catalogue
from salesformer.decisions.inventory_sim import replay_demand, replay_policy
from salesformer.errors import ConfigError, DataValidationError
from salesformer.evaluation.backtest import backtest
from salesformer.models.lightgbm import LightGBMForecaster
from salesformer.models.lm.samples import Wide, _targets
from salesformer.models.statistical import HistoricAverage, Naive
from test_prepare_cli import assert_one_line_error, call


def shelf_panel(n_weeks: int = 40, empty_every: int = 3) -> Panel:
    """Two items selling 10 a week, except every ``empty_every``-th week: empty shelf, 0 sold."""
    dates = pd.date_range("2024-01-01", periods=n_weeks, freq="W-MON")
    rows = []
    for item in ("A", "B"):
        for t, date in enumerate(dates):
            empty = t % empty_every == 1
            rows.append(
                {ITEM_ID: item, DATE: date, SALES: 0.0 if empty else 10.0, "in_stock": not empty}
            )
    return validate_panel(pd.DataFrame(rows), freq="W-MON")


# -- the column -------------------------------------------------------------------------------


def test_in_stock_is_parsed_and_gaps_count_as_in_stock() -> None:
    sales = pd.DataFrame(
        {
            ITEM_ID: ["A", "A", "A"],
            DATE: ["2024-01-01", "2024-01-08", "2024-01-22"],
            SALES: [3, 0, 4],
            "in_stock": ["yes", "No", "TRUE"],
        }
    )
    panel = validate_panel(sales, freq="W-MON")
    assert panel.sales["in_stock"].dtype == bool
    assert panel.sales["in_stock"].tolist() == [True, False, True, True]  # 01-15 was a gap
    assert "in_stock" not in (*panel.known_future, *panel.past_only)


def test_stock_on_hand_zero_means_out_of_stock() -> None:
    sales = pd.DataFrame(
        {
            ITEM_ID: ["A", "A"],
            DATE: ["2024-01-01", "2024-01-08"],
            SALES: [3, 5],
            "stock_on_hand": [4, 0],
        }
    )
    panel = validate_panel(sales, freq="W-MON")
    assert panel.sales["in_stock"].tolist() == [True, False]
    assert "stock_on_hand" not in panel.sales.columns


@pytest.mark.parametrize(
    ("column", "values", "fragment"),
    [
        ("in_stock", ["yes", "maybe"], "must be true/false"),
        ("in_stock", [True, None], "values are missing"),
        ("stock_on_hand", [3, -1], "cannot be negative"),
        ("stock_on_hand", [3, "lots"], "not finite numbers"),
    ],
)
def test_bad_availability_is_refused(column: str, values: list[object], fragment: str) -> None:
    sales = pd.DataFrame(
        {ITEM_ID: ["A", "A"], DATE: ["2024-01-01", "2024-01-08"], SALES: [1, 2], column: values}
    )
    with pytest.raises(DataValidationError, match=fragment):
        validate_panel(sales, freq="W-MON")


def test_both_availability_columns_are_refused() -> None:
    sales = pd.DataFrame(
        {ITEM_ID: ["A"], DATE: ["2024-01-01"], SALES: [1], "in_stock": [1], "stock_on_hand": [3]}
    )
    with pytest.raises(DataValidationError, match="both 'in_stock' and 'stock_on_hand'"):
        validate_panel(sales, freq="W-MON")


def test_panel_round_trip_keeps_availability(tmp_path: Path) -> None:
    panel = shelf_panel(n_weeks=6)
    again = Panel.load(panel.save(tmp_path / "p"))
    assert again.sales["in_stock"].tolist() == panel.sales["in_stock"].tolist()


# -- the CLI ----------------------------------------------------------------------------------


@pytest.fixture
def stock_file(tmp_path: Path) -> Path:
    path = tmp_path / "stock.csv"
    pd.DataFrame(
        {
            "sku": ["A", "A", "A", "A"],
            "day": ["2024-01-01", "2024-01-03", "2024-01-08", "2024-01-15"],
            "qty": [1, 2, 0, 4],
            "avail": ["yes", "no", "yes", "yes"],
            "onhand": [5, 0, 7, -2],
        }
    ).to_csv(path, index=False)
    return path


def _prepare(stock_file: Path, out: Path, *extra: str) -> int:
    base = ["prepare", "csv", "--sales", str(stock_file), "--out", str(out)]
    return call([*base, "--item-col", "sku", "--date-col", "day", "--sales-col", "qty", *extra])


def test_cli_in_stock_column_is_mapped_and_aggregated(stock_file: Path, tmp_path: Path) -> None:
    code = _prepare(stock_file, tmp_path / "p", "--in-stock-col", "avail", "--aggregate")
    assert code == 0
    panel = Panel.load(tmp_path / "p")
    # week of 01-01: one of its days was out of stock, so the week is
    assert panel.sales["in_stock"].tolist() == [False, True, True]
    assert panel.sales[SALES].tolist() == [3.0, 0.0, 4.0]


def test_cli_negative_stock_is_one_line_error(
    stock_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = _prepare(stock_file, tmp_path / "p", "--stock-col", "onhand", "--aggregate")
    assert code == 2
    assert_one_line_error(capsys, "stock_on_hand", "negative")
    assert not (tmp_path / "p").exists()


def test_cli_non_boolean_in_stock_is_one_line_error(
    stock_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _prepare(stock_file, tmp_path / "p", "--in-stock-col", "onhand", "--aggregate") == 2
    assert_one_line_error(capsys, "in_stock", "true/false", "--stock-col")


def test_cli_missing_or_double_availability_column_is_one_line_error(
    stock_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _prepare(stock_file, tmp_path / "p", "--in-stock-col", "nope") == 2
    assert_one_line_error(capsys, "'nope'", "--in-stock-col", "got columns")
    both = ("--in-stock-col", "avail", "--stock-col", "onhand")
    assert _prepare(stock_file, tmp_path / "p", *both) == 2
    assert_one_line_error(capsys, "not both")


# -- the synthetic catalogue ------------------------------------------------------------------


def test_synthetic_stockouts_are_off_by_default_and_keep_the_demand() -> None:
    plain = generate_catalogue(n_items=20, n_weeks=30, seed=4)
    assert plain.demand is None and "in_stock" not in plain.sales.columns
    assert generate_catalogue(n_items=20, n_weeks=30, seed=4, stockout_rate=0.0).sales.equals(
        plain.sales
    )
    short = generate_catalogue(n_items=20, n_weeks=30, seed=4, stockout_rate=0.2)
    assert short.demand is not None
    assert np.array_equal(short.demand["demand"].to_numpy(), plain.sales[SALES].to_numpy())
    out = ~short.sales["in_stock"]
    assert 0.1 < out.mean() < 0.3
    assert (short.sales[SALES] <= short.demand["demand"]).all()
    assert (short.sales.loc[~out, SALES] == plain.sales.loc[~out, SALES]).all()
    with pytest.raises(ConfigError, match="stockout_rate"):
        generate_catalogue(n_items=2, n_weeks=8, stockout_rate=0.9)


# -- training ---------------------------------------------------------------------------------


def test_imputation_replaces_empty_shelves_by_nearby_demand() -> None:
    panel = shelf_panel()
    imputed = impute_stockouts(panel)
    assert (imputed.sales[SALES] == 10.0).all()
    assert panel.sales[SALES].min() == 0.0  # the panel itself is unchanged


def test_lightgbm_drops_out_of_stock_targets() -> None:
    panel = shelf_panel()
    rows = build_features(panel, panel.dates[10:30], 4)
    kept = drop_unavailable_targets(rows, panel)
    assert 0 < len(kept) < len(rows)
    assert (kept.target == 10.0).all()


@pytest.mark.parametrize(
    "model",
    [LightGBMForecaster(n_estimators=40, min_data_in_leaf=5, n_jobs=1), HistoricAverage()],
    ids=["LightGBM", "HistoricAverage"],
)
def test_models_forecast_demand_not_empty_shelves(model: object) -> None:
    panel = shelf_panel()
    blind = validate_panel(panel.sales.drop(columns="in_stock"), freq="W-MON")
    masked = model.clone().fit(panel).predict(3, quantiles=())  # type: ignore[attr-defined]
    naive = model.clone().fit(blind).predict(3, quantiles=())  # type: ignore[attr-defined]
    name = model.name  # type: ignore[attr-defined]
    assert masked[name].mean() == pytest.approx(10.0, abs=0.5)
    assert naive[name].mean() < masked[name].mean() - 0.5  # the zeros pulled it down


def test_lm_masks_out_of_stock_targets_from_its_loss() -> None:
    panel = shelf_panel(n_weeks=12)
    wide = Wide.from_panel(panel)
    steps = np.arange(0, 6)[None, :].repeat(2, axis=0)
    item = np.array([0, 1])
    _, ok = _targets(wide, item, steps, wide.first[item], np.zeros(2), None)
    assert ok.tolist() == [[t % 3 != 1 for t in range(6)]] * 2
    blind = Wide.from_panel(validate_panel(panel.sales.drop(columns="in_stock"), freq="W-MON"))
    _, all_ok = _targets(blind, item, steps, blind.first[item], np.zeros(2), None)
    assert all_ok.all()


# -- scoring and the replay -------------------------------------------------------------------


def test_backtest_leaves_out_of_stock_cells_out_of_the_metrics() -> None:
    panel = shelf_panel()
    result = backtest([HistoricAverage()], panel, horizon=3, n_windows=2, quantiles=())
    assert "in_stock" in result.forecasts.columns
    scored = result.scored()
    assert scored["in_stock"].all() and len(scored) < len(result.forecasts)
    assert result.summary()["out_of_stock_cells"] == int((~result.forecasts["in_stock"]).sum())
    overall = result.metrics().set_index("model")
    assert overall.loc["HistoricAverage", "wape"] == pytest.approx(0.0, abs=0.02)


def test_replay_counts_empty_shelves_as_lost_sales() -> None:
    cutoff = pd.Timestamp("2024-01-01")
    frame = pd.DataFrame(
        {
            ITEM_ID: "A",
            CUTOFF: cutoff,
            DATE: pd.date_range("2024-01-08", periods=4, freq="W-MON"),
            ACTUAL: [10.0, 2.0, 10.0, 10.0],
            "in_stock": [True, False, True, True],
            "m-q10": 8.0,
            "m-q50": 10.0,
            "m-q90": 12.0,
        }
    )
    estimated, lost = replay_demand(frame)
    assert estimated[ACTUAL].tolist() == [10.0, 10.0, 10.0, 10.0]
    assert lost is not None and lost.tolist() == [0.0, 8.0, 0.0, 0.0]
    replay = replay_policy(frame, "m", [0.9])
    assert replay["demand"].iloc[0] == 30.0  # weeks 2-4 scored (lead time 1), demand 10 each
    assert replay["recorded_lost"].iloc[0] == 8.0
    plain = replay_policy(frame.drop(columns="in_stock"), "m", [0.9])
    assert plain["demand"].iloc[0] == 22.0 and "recorded_lost" not in plain.columns


def test_report_metrics_leave_out_of_stock_cells_out(tmp_path: Path) -> None:
    from salesformer.report.inputs import ReportData
    from salesformer.report.settings import ReportSettings

    result = backtest([HistoricAverage()], shelf_panel(), horizon=3, n_windows=2, quantiles=())
    result.save(tmp_path / "bt")
    data = ReportData(
        settings=ReportSettings(backtest=tmp_path / "bt"),
        forecasts=result.forecasts,
        series=result.series,
        summary={},
        models=["HistoricAverage"],
    )
    assert data.scored()["in_stock"].all()
    assert len(data.scored()) == len(result.scored())


def test_auto_scores_its_candidates_on_in_stock_cells_only() -> None:
    from salesformer.models.auto import AutoForecaster

    model = AutoForecaster(candidates=("Naive", "HistoricAverage"), horizon=3, n_windows=2)
    panel = shelf_panel()
    cutoffs = model._validation_cutoffs(panel)
    scored = model._validate({"Naive": Naive(), "HistoricAverage": HistoricAverage()}, panel)
    assert scored is not None and "in_stock" not in scored.columns
    assert not any(c.startswith("in_stock") for c in scored.columns)
    assert (scored[ACTUAL] == 10.0).all()  # only in-stock cells are scored
    assert len(cutoffs) == 2
    forecast = model.fit(panel).predict(3, quantiles=())
    # the empty shelves do not count, so the average of in-stock weeks (10) wins over Naive
    assert forecast["auto"].to_numpy() == pytest.approx(10.0, abs=0.5)
