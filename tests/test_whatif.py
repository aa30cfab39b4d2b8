"""Price and promotion what-if on a synthetic panel with a known price effect, and the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from salesformer.cli.main import run
from salesformer.data.contract import Panel, validate_panel
from salesformer.decisions.whatif import (
    Scenario,
    apply_scenario,
    price_response,
    summarize_response,
    summarize_uplift,
    what_if,
)
from salesformer.errors import ConfigError, DataValidationError, NotFittedError
from salesformer.models.base import resolve_future
from salesformer.models.lightgbm import LightGBMForecaster
from salesformer.models.persist import save_model

H = 4
ELASTICITY = -2.0


def priced_panel(n_items: int = 16, n_weeks: int = 60, seed: int = 3) -> Panel:
    """Weekly sales ``level x (price / regular) ** -2``; prices vary with random discounts."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2023-01-02", periods=n_weeks, freq="W-MON")
    frames, items = [], []
    for i in range(n_items):
        regular = float(rng.uniform(5, 50))
        level = float(rng.uniform(20, 200))
        discount = rng.choice([0.0, 0.0, 0.1, 0.2, 0.3], size=n_weeks)
        price = regular * (1 - discount)
        sales = rng.poisson(level * (price / regular) ** ELASTICITY).astype(float)
        item = f"item{i:02d}"
        frames.append(
            pd.DataFrame(
                {
                    "item_id": item,
                    "date": dates,
                    "sales": sales,
                    "price": price,
                    "discount": discount,
                }
            )
        )
        items.append({"item_id": item, "text": f"Product number {i}. Category: Things."})
    return validate_panel(pd.concat(frames), pd.DataFrame(items))


def lightgbm(price_monotone: bool) -> LightGBMForecaster:
    return LightGBMForecaster(
        max_horizon=H,
        n_origins=20,
        origin_step=1,
        num_leaves=15,
        min_data_in_leaf=10,
        n_estimators=100,
        quantile_n_estimators=30,
        price_monotone=price_monotone,
        n_jobs=1,
    )


@pytest.fixture(scope="module")
def panel() -> Panel:
    return priced_panel()


@pytest.fixture(scope="module")
def model(panel: Panel) -> LightGBMForecaster:
    return lightgbm(price_monotone=True).fit(panel)


@pytest.fixture(scope="module")
def free_model(panel: Panel) -> LightGBMForecaster:
    return lightgbm(price_monotone=False).fit(panel)


def test_lower_price_raises_the_forecast(model: LightGBMForecaster) -> None:
    response = price_response(model, H, price_change=-0.2)
    summary = summarize_response(response)
    assert summary["items"] == 16
    assert summary["share_raised"] == 1.0
    assert -4.0 < summary["elasticity_median"] < -0.5


def test_unconstrained_model_learns_the_price_effect(free_model: LightGBMForecaster) -> None:
    summary = summarize_response(price_response(free_model, H, price_change=-0.2))
    assert summary["share_raised"] >= 0.8
    assert summary["elasticity_median"] < -0.5


def test_monotone_forecast_never_rises_with_price(model: LightGBMForecaster) -> None:
    plan = resolve_future(model.panel_, H, None)
    totals = []
    for factor in (0.6, 0.8, 1.0, 1.2):
        future = plan.assign(price=plan["price"] * factor)
        totals.append(model.predict(H, future=future, quantiles=())["LightGBM"].to_numpy())
    steps = np.diff(np.stack(totals), axis=0)
    assert (steps <= 1e-9).all()


def test_uplift_arithmetic(model: LightGBMForecaster) -> None:
    table = what_if(model, Scenario(price_change=-0.2), H)
    assert len(table) == 16 * H
    assert np.allclose(table["price_scenario"], 0.8 * table["price_baseline"])
    assert np.allclose(table["uplift_units"], table["scenario"] - table["baseline"])
    assert np.allclose(table["revenue_baseline"], table["price_baseline"] * table["baseline"])
    assert np.allclose(table["revenue_scenario"], table["price_scenario"] * table["scenario"])
    assert np.allclose(
        table["uplift_revenue"], table["revenue_scenario"] - table["revenue_baseline"]
    )
    baseline = model.predict(H, quantiles=(0.1, 0.9))
    assert np.allclose(table["baseline"], baseline["LightGBM"])
    assert np.allclose(table["baseline-q10"], baseline["LightGBM-q10"])
    assert (table["scenario-q10"] <= table["scenario-q90"]).all()
    totals = summarize_uplift(table)
    assert totals["uplift_units"] == pytest.approx(table["uplift_units"].sum())
    assert totals["uplift_units_pct"] > 0


def test_price_and_discount_stay_linked(model: LightGBMForecaster) -> None:
    plan = resolve_future(model.panel_, H, None)
    regular = plan["price"] / (1 - plan["discount"])
    future, _ = apply_scenario(model, plan, Scenario(price_change=-0.1))
    assert np.allclose(future["discount"], np.clip(1 - future["price"] / regular, 0, 0.999))
    changes = pd.DataFrame({"item_id": ["item03"], "discount": [0.3]})
    future, _ = apply_scenario(model, plan, Scenario(changes=changes))
    mine = future["item_id"] == "item03"
    assert np.allclose(future.loc[mine, "price"], regular[mine] * 0.7)
    assert np.allclose(future.loc[~mine, "price"], plan.loc[~mine, "price"])


def test_dated_rows_win_and_empty_cells_keep(model: LightGBMForecaster) -> None:
    plan = resolve_future(model.panel_, H, None)
    dates = sorted(plan["date"].unique())
    changes = pd.DataFrame(
        {
            "item_id": ["item01", "item01", "item02"],
            "date": [None, str(pd.Timestamp(dates[1]).date()), None],
            "price": [10.0, 8.0, np.nan],
            "discount": [np.nan, np.nan, 0.5],
        }
    )
    future, _ = apply_scenario(model, plan, Scenario(changes=changes))
    one = future[future["item_id"] == "item01"].set_index("date")["price"]
    assert list(one) == [10.0, 8.0, 10.0, 10.0]
    two = future[future["item_id"] == "item02"]
    assert np.allclose(two["discount"], 0.5)
    untouched = future["item_id"] == "item05"
    assert future[untouched].equals(plan[untouched])


def test_empty_promotion_cells_set_no_copy(model: LightGBMForecaster) -> None:
    plan = resolve_future(model.panel_, H, None)
    changes = pd.DataFrame(
        {"item_id": ["item01", "item01", "item02"], "promotion": ["", "Deal", " "]}
    )
    _, promotions = apply_scenario(model, plan, Scenario(changes=changes))
    assert promotions == {"item01": "Deal"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (pd.DataFrame({"item_id": ["nope"], "price": [1.0]}), "not items of the model"),
        (pd.DataFrame({"item_id": ["item01"], "views": [1.0]}), "not known-future covariates"),
        (pd.DataFrame({"price": [1.0]}), "'item_id' is missing"),
        (
            pd.DataFrame({"item_id": ["item01"], "date": ["2030-01-07"], "price": [1.0]}),
            "not in the horizon",
        ),
        (pd.DataFrame({"item_id": ["item01"], "price": ["cheap"]}), "not numbers"),
    ],
)
def test_bad_scenarios_say_what_is_wrong(
    model: LightGBMForecaster, changes: pd.DataFrame, message: str
) -> None:
    with pytest.raises(DataValidationError, match=message):
        what_if(model, Scenario(changes=changes), H)


def test_scenario_settings_are_checked(model: LightGBMForecaster) -> None:
    with pytest.raises(ConfigError, match="changes nothing"):
        what_if(model, Scenario(), H)
    with pytest.raises(NotFittedError, match=r"call \.fit"):
        what_if(lightgbm(price_monotone=False), Scenario(price_change=-0.1), H)
    with pytest.raises(ConfigError, match="price_change must lie"):
        what_if(model, Scenario(price_change=-1.5), H)
    with pytest.raises(ConfigError, match="does not read item text"):
        what_if(model, Scenario(promotion="Half price!"), H)
    with pytest.raises(ConfigError, match="changes nothing"):
        what_if(model, Scenario(promotion="   "), H)
    with pytest.raises(ConfigError, match="must not be 0"):
        price_response(model, H, price_change=0.0)


def test_price_change_needs_a_known_future_price(panel: Panel) -> None:
    past = validate_panel(panel.sales, panel.items, past_only=["price", "discount"])
    fitted = lightgbm(price_monotone=False).fit(past)
    with pytest.raises(ConfigError, match="known-future"):
        what_if(fitted, Scenario(price_change=-0.1), H)


def test_promotion_copy_changes_the_lm_forecast(panel: Panel, tiny_encoder: str) -> None:
    from salesformer.models.lm import LMForecaster

    lm = LMForecaster(
        encoder=tiny_encoder,
        finetune="frozen",
        horizon=H,
        head_epochs=2,
        epoch_samples=300,
        hidden_size=16,
        threads=1,
        progress=False,
    ).fit(panel)
    changes = pd.DataFrame({"item_id": ["item04"], "promotion": ["Huge sale: 50% off today only"]})
    table = what_if(lm, Scenario(changes=changes), H, quantiles=(0.1, 0.5, 0.9))
    mine = table["item_id"] == "item04"
    assert not np.allclose(table.loc[mine, "scenario"], table.loc[mine, "baseline"])
    assert np.allclose(table.loc[~mine, "scenario"], table.loc[~mine, "baseline"])
    assert np.allclose(table["price_scenario"], table["price_baseline"])
    assert np.allclose(table["baseline"], lm.predict(H, quantiles=())["LM"])
    with pytest.raises(DataValidationError, match="not fitted on"):
        lm.predict_with_texts(H, {"unknown": "text"})


# -- CLI -----------------------------------------------------------------------------------


def invoke(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        run(args)
    code = info.value.code if isinstance(info.value.code, int) else 0
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def model_dir(model: LightGBMForecaster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_model(model, tmp_path_factory.mktemp("whatif") / "model")


def test_cli_price_change(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "whatif.csv"
    code, stdout, _ = invoke(
        ["whatif", "--model", str(model_dir), "--price-change", "-10%", "--out", str(out)], capsys
    )
    assert code == 0
    table = pd.read_csv(out)
    assert len(table) == 16 * H
    assert np.allclose(table["price_scenario"], 0.9 * table["price_baseline"])
    assert (table["uplift_units"] > 0).all()
    assert "units" in stdout and str(out) in stdout


def test_cli_scenario_file(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "scenario.csv"
    pd.DataFrame({"item_id": ["item07"], "discount": [0.4]}).to_csv(scenario, index=False)
    out = tmp_path / "whatif.parquet"
    code, _, _ = invoke(
        ["whatif", "--model", str(model_dir), "--scenario", str(scenario), "--out", str(out)],
        capsys,
    )
    assert code == 0
    table = pd.read_parquet(out)
    changed = table.loc[table["uplift_units"].abs() > 1e-9, "item_id"].unique()
    assert list(changed) == ["item07"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--price-change", "-10"], "did you mean -10%"),
        (["--price-change", "cheaper"], "must be a change like"),
        (["--promotion", "Half price"], "does not read item text"),
        ([], "give a scenario"),
        (["--scenario", "missing.csv"], "no such file"),
    ],
)
def test_cli_bad_input(
    model_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    out = tmp_path / "whatif.csv"
    args = [a if a != "missing.csv" else str(tmp_path / a) for a in extra]
    code, _, err = invoke(["whatif", "--model", str(model_dir), *args, "--out", str(out)], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert not out.exists()


def test_cli_bad_scenario_column_leaves_no_file(
    model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "scenario.csv"
    pd.DataFrame({"item_id": ["item01"], "views": [3]}).to_csv(scenario, index=False)
    out = tmp_path / "whatif.csv"
    code, _, err = invoke(
        ["whatif", "--model", str(model_dir), "--scenario", str(scenario), "--out", str(out)],
        capsys,
    )
    assert code == 2 and "not known-future covariates" in err
    assert not out.exists()
    assert list(tmp_path.iterdir()) == [scenario]
