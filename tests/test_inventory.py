"""Inventory planner: lead-time demand against analytic cases, rounding, targets, plans, CLI."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import brentq
from scipy.stats import norm

from salesformer.cli.main import run
from salesformer.data.contract import Panel
from salesformer.decisions.inventory import (
    DemandDraws,
    ItemPolicy,
    PlanSettings,
    cycle_level,
    draw_demand,
    expected_fill_rate,
    fill_rate_level,
    forecast_quantiles,
    order_quantity,
    plan_inventory,
    read_policies,
    weekly_quantile_function,
)
from salesformer.errors import ConfigError, DataValidationError
from salesformer.models.base import quantile_column

FINE = np.round(np.linspace(0.005, 0.995, 199), 6)
MU, SD = 50.0, 10.0


def normal_cube(n: int, weeks: int, levels: np.ndarray = FINE) -> np.ndarray:
    """Weekly N(MU, SD) quantiles, shape (n, weeks, K)."""
    return np.broadcast_to(norm.ppf(levels, MU, SD), (n, weeks, len(levels))).copy()


def normal_draws(
    lead: list[int], review: list[int], correlation: float = 0.0, spread: float = 1.0
) -> DemandDraws:
    settings = PlanSettings(n_samples=40_000, week_correlation=correlation, spread_scale=spread)
    cube = normal_cube(len(lead), max(a + b for a, b in zip(lead, review, strict=True)))
    return draw_demand(
        FINE, cube, np.array(lead), np.array(review), settings, np.random.default_rng(1)
    )


def forecast_frame(means: dict[str, float], weeks: int = 4, model: str = "m") -> pd.DataFrame:
    """A forecast frame with normal quantiles 0.1 .. 0.9 (sd = 30% of the mean)."""
    levels = np.round(np.arange(1, 10) / 10, 2)
    rows = []
    for item, mean in means.items():
        for week in range(weeks):
            row: dict[str, object] = {
                "item_id": item,
                "date": pd.Timestamp("2024-01-01") + pd.Timedelta(weeks=week),
                model: mean,
            }
            for q in levels:
                row[quantile_column(model, q)] = max(0.0, norm.ppf(q, mean, 0.3 * mean))
            rows.append(row)
    return pd.DataFrame(rows)


def test_quantile_function_passes_through_knots_and_has_sensible_tails() -> None:
    levels = np.array([0.1, 0.5, 0.9])
    values = np.array([[[1.0, 10.0, 30.0]]])  # (n=1, w=1, K=3)
    at = weekly_quantile_function(levels, values, np.array([[[0.1], [0.5], [0.9], [0.3]]]))
    assert at[0, :, 0].tolist() == pytest.approx([1.0, 10.0, 30.0, 5.5])
    low = weekly_quantile_function(levels, values, np.array([[[0.01]]]))
    assert low[0, 0, 0] == 0.0  # 1 - 22.5 * 0.09 < 0: clipped at zero demand
    high = weekly_quantile_function(levels, values, np.array([[[0.99], [0.999]]]))
    slope = (30.0 - 10.0) / 0.4
    expected = [30.0 + slope * 0.1 * math.log(0.1 / (1 - u)) for u in (0.99, 0.999)]
    assert high[0, :, 0].tolist() == pytest.approx(expected)


@pytest.mark.parametrize("target", [0.9, 0.95, 0.99])
def test_cycle_level_matches_normal_sum_of_independent_weeks(target: float) -> None:
    lead, review = [0, 1, 3], [1, 1, 1]
    draws = normal_draws(lead, review)
    level = cycle_level(draws, np.full(3, target))
    for got, weeks in zip(level, (1, 2, 4), strict=True):
        exact = norm.ppf(target, MU * weeks, SD * math.sqrt(weeks))
        assert abs(got - math.ceil(exact)) <= 1.0
    # The sum of weekly quantiles (full dependence) would be far higher at 4 weeks.
    assert level[2] < 4 * norm.ppf(target, MU, SD) - 5


def test_full_week_correlation_gives_sum_of_weekly_quantiles() -> None:
    draws = normal_draws([3], [1], correlation=1.0)
    level = cycle_level(draws, np.array([0.95]))
    assert abs(level[0] - math.ceil(4 * norm.ppf(0.95, MU, SD))) <= 1.0


def test_spread_scale_widens_each_week_around_its_median() -> None:
    # N(50, 10) widened by 1.5 is N(50, 15): the 0.95 level of one week moves accordingly
    draws = normal_draws([0], [1], spread=1.5)
    level = cycle_level(draws, np.array([0.95]))[0]
    assert abs(level - math.ceil(norm.ppf(0.95, MU, 1.5 * SD))) <= 1.0
    assert abs(float(np.median(draws.protection)) - MU) < 0.5
    narrow = cycle_level(normal_draws([0], [1], spread=0.5), np.array([0.95]))[0]
    assert abs(narrow - math.ceil(norm.ppf(0.95, MU, 0.5 * SD))) <= 1.0
    for wrong in (0.1, 5, True):
        with pytest.raises(ConfigError, match="spread scale must be a number in"):
            PlanSettings(spread_scale=wrong)


def test_week_correlation_widens_lead_time_demand() -> None:
    levels = [cycle_level(normal_draws([3], [1], rho), np.array([0.95]))[0] for rho in (0, 0.5, 1)]
    assert levels[0] < levels[1] < levels[2]


def test_fill_rate_level_matches_normal_loss_function() -> None:
    def loss(z: float) -> float:
        return float(norm.pdf(z) - z * norm.sf(z))

    target = 0.98
    draws = normal_draws([1, 2], [1, 1])
    level = fill_rate_level(draws, np.full(2, target))
    for got, lead in zip(level, (1, 2), strict=True):
        sp, sl = SD * math.sqrt(lead + 1), SD * math.sqrt(lead)

        def gap(s: float, lead: int = lead, sp: float = sp, sl: float = sl) -> float:
            short = sp * loss((s - MU * (lead + 1)) / sp) - sl * loss((s - MU * lead) / sl)
            return 1.0 - short / MU - target

        assert abs(got - brentq(gap, 0.0, 1000.0)) <= 2.0
    assert (expected_fill_rate(draws, level) >= target).all()
    assert (expected_fill_rate(draws, level - 1) < target).all()


def test_fill_rate_and_cycle_targets_differ_as_theory_says() -> None:
    """A 90% fill rate needs less stock than a 90% cycle service (demand > 0 every week)."""
    draws = normal_draws([1], [1])
    fill = fill_rate_level(draws, np.array([0.9]))
    cycle = cycle_level(draws, np.array([0.9]))
    assert fill[0] < cycle[0]
    # ... because a stock-out cycle still serves most of its demand:
    assert expected_fill_rate(draws, cycle)[0] > 0.98


@pytest.mark.parametrize(
    ("need", "pack", "moq", "qty"),
    [
        (0, 12, 0, 0),
        (-5, 12, 0, 0),
        (24, 12, 0, 24),
        (25, 12, 0, 36),
        (3, 1, 10, 10),
        (3, 4, 10, 12),
    ],
)
def test_order_quantity_rounds_to_packs_and_respects_moq(
    need: float, pack: int, moq: float, qty: float
) -> None:
    assert order_quantity(need, pack, moq)[0] == qty


def test_newsvendor_ratio_from_costs() -> None:
    policy = ItemPolicy("A", 0.0, 1, review_period=2, holding_cost=0.5, stockout_cost=4.0)
    assert policy.newsvendor_ratio == pytest.approx(4.0 / (4.0 + 1.0))
    assert ItemPolicy("B", 0.0, 1, holding_cost=0.5).newsvendor_ratio is None


def test_plan_lines_levels_orders_and_reasons() -> None:
    forecasts = forecast_frame({"A": 20.0, "B": 20.0, "C": 5.0, "D": 20.0})
    stock = pd.DataFrame(
        {
            "item_id": ["A", "B", "C", "D"],
            "on_hand": [10, 10, 500, 10],
            "on_order": [5, 5, 0, 5],
            "lead_time": [1, 1, 2, 1],
            "pack_size": [1, 12, 1, 1],
            "moq": [0, 0, 0, 0],
            "unit_cost": [2.0, 2.0, 1.0, 2.0],
            "holding_cost": [None, None, None, 1.0],
            "stockout_cost": [None, None, None, 1.0],
        }
    )
    plan = plan_inventory(forecasts, stock, PlanSettings(service_level=0.95)).set_index("item_id")
    a, b, c, d = (plan.loc[i] for i in "ABCD")
    assert a["order_up_to"] > a["expected_demand"] > 0
    assert a["safety_stock"] == pytest.approx(a["order_up_to"] - a["expected_demand"])
    assert a["order_qty"] == a["order_up_to"] - 15
    assert a["order_value"] == pytest.approx(2.0 * a["order_qty"])
    assert a["cycle_service"] >= 0.95
    assert a["reason"].startswith(f"order {a['order_qty']:g} = order-up-to {a['order_up_to']:g}")
    assert b["order_qty"] % 12 == 0 and b["order_qty"] >= b["order_up_to"] - 15
    assert "rounded up to packs of 12" in b["reason"]
    assert c["order_qty"] == 0 and c["reason"].startswith("no order: position 500")
    assert d["target_type"] == "newsvendor" and d["target"] == pytest.approx(0.5)
    assert d["order_up_to"] < a["order_up_to"]  # critical ratio 0.5 < 0.95 target
    again = plan_inventory(forecasts, stock, PlanSettings(service_level=0.95))
    assert again.set_index("item_id")["order_up_to"].equals(plan["order_up_to"])


def test_higher_service_target_never_lowers_the_level() -> None:
    forecasts = forecast_frame({"A": 20.0, "B": 3.0})
    stock = pd.DataFrame({"item_id": ["A", "B"], "on_hand": [0, 0], "lead_time": [2, 2]})
    levels = [
        plan_inventory(forecasts, stock, PlanSettings(service_level=t))["order_up_to"].to_numpy()
        for t in (0.8, 0.9, 0.99)
    ]
    assert (np.diff(np.stack(levels), axis=0) >= 0).all()
    assert (levels[2] > levels[0]).all()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"lead_time": [-1, 1]}, "'lead_time' must be a whole number of weeks >= 0"),
        ({"lead_time": [1.5, 1]}, "'lead_time' must be a whole number"),
        ({"on_hand": ["ten", 3]}, "column 'on_hand' holds non-numbers"),
        ({"pack_size": [0, 1]}, "'pack_size' must be a whole number >= 1"),
        ({"item_id": ["A", "A"]}, "appear more than once"),
        ({"lead_time": ["inf", 1]}, "'lead_time' must be a finite number; got A=inf"),
        ({"holding_cost": [np.inf, 1]}, "'holding_cost' must be a finite number"),
    ],
)
def test_stock_table_errors(change: dict[str, list[object]], message: str) -> None:
    frame = pd.DataFrame({"item_id": ["A", "B"], "on_hand": [1, 3], "lead_time": [1, 1]})
    for column, values in change.items():
        frame[column] = values
    with pytest.raises(DataValidationError, match=message):
        read_policies(frame)


def test_missing_columns_unknown_items_and_short_forecasts() -> None:
    with pytest.raises(DataValidationError, match=r"column\(s\) \['lead_time'\] missing"):
        read_policies(pd.DataFrame({"item_id": ["A"], "on_hand": [1]}))
    forecasts = forecast_frame({"A": 5.0}, weeks=2)
    unknown = pd.DataFrame({"item_id": ["A", "Z"], "on_hand": [1, 1], "lead_time": [1, 1]})
    with pytest.raises(DataValidationError, match=r"1 item\(s\) have no forecast, e.g. \['Z'\]"):
        plan_inventory(forecasts, unknown)
    long = pd.DataFrame({"item_id": ["A"], "on_hand": [1], "lead_time": [2]})
    with pytest.raises(DataValidationError, match="forecast at least 3 weeks ahead"):
        plan_inventory(forecasts, long)
    holes = forecast_frame({"A": 5.0}, weeks=2)
    holes.loc[0, "m-q90"] = np.nan
    one = pd.DataFrame({"item_id": ["A"], "on_hand": [1], "lead_time": [1]})
    with pytest.raises(DataValidationError, match=r"not finite for item\(s\) \['A'\]"):
        plan_inventory(holes, one)
    with pytest.raises(DataValidationError, match="no items"):
        plan_inventory(forecasts, [])
    with pytest.raises(ConfigError, match="service type must be one of"):
        PlanSettings(service_type="type1")


def test_forecast_quantiles_picks_the_model() -> None:
    both = forecast_frame({"A": 5.0}).merge(
        forecast_frame({"A": 9.0}, model="n"), on=["item_id", "date"]
    )
    with pytest.raises(DataValidationError, match=r"found models \['m', 'n'\]"):
        forecast_quantiles(both)
    name, levels, table = forecast_quantiles(both, "n")
    assert name == "n" and len(levels) == 9
    assert table["n-q50"].iloc[0] == pytest.approx(9.0)


def invoke(args: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        run(args)
    return info.value.code if isinstance(info.value.code, int) else 1


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    forecasts = tmp_path / "forecast.csv"
    forecast_frame({"A": 20.0, "B": 4.0}).to_csv(forecasts, index=False)
    stock = tmp_path / "stock.csv"
    pd.DataFrame(
        {"item_id": ["A", "B"], "on_hand": [3, 40], "lead_time": [1, 2], "pack_size": [6, 1]}
    ).to_csv(stock, index=False)
    return forecasts, stock


def test_cli_plan_inventory_writes_a_plan(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    forecasts, stock = files
    out = tmp_path / "plan.csv"
    args = ["plan", "inventory", "--forecasts", str(forecasts), "--stock", str(stock)]
    code = invoke(
        [*args, "--service-level", "0.9", "--service-type", "fill-rate", "--out", str(out)]
    )
    assert code == 0, capsys.readouterr().err
    plan = pd.read_csv(out).set_index("item_id")
    assert plan.loc["A", "order_qty"] > 0 and plan.loc["A", "order_qty"] % 6 == 0
    assert (plan["target_type"] == "fill-rate").all() and (plan["expected_fill_rate"] >= 0.9).all()
    assert "planned 2 items at fill-rate 0.9" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "stock_change", "message"),
    [
        (["--service-level", "1.5"], None, "service level must lie strictly between 0 and 1"),
        (["--service-type", "type2"], None, "service type must be one of cycle, fill-rate"),
        ([], {"lead_time": [-2, 1]}, "'lead_time' must be a whole number of weeks >= 0"),
        ([], {"item_id": ["A", "ZZ"]}, "have no forecast, e.g. ['ZZ']"),
        (["--model", "somewhere"], None, "give exactly one of --model MODEL_DIR or --forecasts"),
        (["--seed", "-1"], None, "seed must be a whole number >= 0; got -1"),
        (["--spread-scale", "9"], None, "spread scale must be a number in [0.25, 4]; got 9.0"),
    ],
)
def test_cli_plan_inventory_bad_input(
    files: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    stock_change: dict[str, list[object]] | None,
    message: str,
) -> None:
    forecasts, stock = files
    if stock_change:
        frame = pd.read_csv(stock)
        for column, values in stock_change.items():
            frame[column] = values
        frame.to_csv(stock, index=False)
    out = tmp_path / "plan.csv"
    args = ["plan", "inventory", "--forecasts", str(forecasts), "--stock", str(stock)]
    assert invoke([*args, *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_cli_plan_inventory_from_a_model_folder(
    small_panel: Panel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from salesformer.models.persist import save_model
    from salesformer.models.registry import make_model

    folder = save_model(make_model("SeasonalNaive").fit(small_panel), tmp_path / "model")
    items = small_panel.item_ids[:3]
    stock = tmp_path / "stock.csv"
    pd.DataFrame({"item_id": items, "on_hand": 0, "lead_time": 2}).to_csv(stock, index=False)
    out = tmp_path / "plan.parquet"
    args = ["plan", "inventory", "--model", str(folder), "--stock", str(stock), "--out", str(out)]
    assert invoke(args) == 0, capsys.readouterr().err
    plan = pd.read_parquet(out)
    assert plan["item_id"].tolist() == list(items)
    assert (plan["order_qty"] == plan["order_up_to"]).all()  # nothing on hand: order it all
    mixed = tmp_path / "mixed.csv"
    assert invoke([*args[:-2], "--forecast-model", "LM", "--out", str(mixed)]) == 2
    assert "drop --forecast-model" in capsys.readouterr().err and not mixed.exists()


def test_forecast_dates_that_are_not_dates_are_one_line(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    forecasts, stock = files
    frame = pd.read_csv(forecasts)
    frame["date"] = frame["date"].astype(str)
    frame.loc[0, "date"] = "next tuesday"
    frame.to_csv(forecasts, index=False)
    out = tmp_path / "plan.csv"
    args = ["plan", "inventory", "--forecasts", str(forecasts), "--stock", str(stock)]
    assert invoke([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "values are not dates, e.g. ['next tuesday']" in err and not out.exists()
