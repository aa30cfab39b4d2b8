"""The global LightGBM forecaster: accuracy against naive forecasts, covariates, settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from salesformer.data.contract import DATE, ITEM_ID, SALES, Panel, validate_panel
from salesformer.data.synthetic import SyntheticCatalogue, generate_catalogue
from salesformer.errors import ConfigError
from salesformer.models.base import DEFAULT_QUANTILES, quantile_column
from salesformer.models.lightgbm import LightGBMForecaster
from salesformer.models.registry import make_model

H = 8
FAST = {"n_estimators": 60, "n_jobs": 1}


@pytest.fixture(scope="module")
def shop() -> SyntheticCatalogue:
    return generate_catalogue(n_items=80, n_weeks=110, seed=3)


@pytest.fixture(scope="module")
def shop_panel(shop: SyntheticCatalogue) -> Panel:
    return shop.panel()


@pytest.fixture(scope="module")
def cutoff(shop_panel: Panel) -> pd.Timestamp:
    return shop_panel.dates[-1 - H]


@pytest.fixture(scope="module")
def fitted(shop_panel: Panel, cutoff: pd.Timestamp) -> LightGBMForecaster:
    return LightGBMForecaster(n_jobs=1).fit(shop_panel.until(cutoff))


def wape(actual: np.ndarray, forecast: np.ndarray) -> float:
    return float(np.abs(actual - forecast).sum() / actual.sum())


def test_beats_naive_and_seasonal_naive(
    fitted: LightGBMForecaster, shop_panel: Panel, cutoff: pd.Timestamp
) -> None:
    future = shop_panel.future_covariates(cutoff, H)
    forecast = fitted.predict(H, future=future)
    actual = shop_panel.window(cutoff, H)[[ITEM_ID, DATE, SALES]]
    scored = forecast.merge(actual, on=[ITEM_ID, DATE], validate="one_to_one")
    history = shop_panel.until(cutoff).sales.pivot(index=ITEM_ID, columns=DATE, values=SALES)
    last = history.iloc[:, -1]
    year_ago = history.iloc[:, -52 : -52 + H]  # the same weeks one year earlier
    step = scored.groupby(ITEM_ID).cumcount().to_numpy()
    naive = scored[ITEM_ID].map(last).to_numpy()
    seasonal = year_ago.reindex(scored[ITEM_ID]).to_numpy()[np.arange(len(scored)), step]
    seasonal = np.where(np.isnan(seasonal), naive, seasonal)
    y = scored[SALES].to_numpy()
    model = wape(y, scored["LightGBM"].to_numpy())
    assert model < 0.9 * wape(y, naive)
    assert model < 0.9 * wape(y, seasonal)


def test_a_future_discount_raises_the_forecast(
    fitted: LightGBMForecaster, shop: SyntheticCatalogue, shop_panel: Panel
) -> None:
    base_price = shop.items.set_index(ITEM_ID)["base_price"]
    ids = fitted.panel_.item_ids
    dates = fitted.panel_.future_dates(fitted.panel_.last_date, H)
    plan = pd.DataFrame({ITEM_ID: np.repeat(ids, H), DATE: np.tile(dates, len(ids))})
    plan["price"] = plan[ITEM_ID].map(base_price)
    regular = fitted.predict(H, future=plan.assign(discount=0.0, promo=0.0), quantiles=())
    sale = plan.assign(price=plan["price"] * 0.7, discount=0.3, promo=1.0)
    discounted = fitted.predict(H, future=sale, quantiles=())
    ratio = discounted["LightGBM"].sum() / regular["LightGBM"].sum()
    assert ratio > 1.3
    ignoring = LightGBMForecaster(use_known_future=False, **FAST).fit(fitted.panel_)
    flat = ignoring.predict(H, future=plan.assign(discount=0.0, promo=0.0), quantiles=())
    flat_sale = ignoring.predict(H, future=sale, quantiles=())
    pd.testing.assert_frame_equal(flat, flat_sale)


def test_output_contract_quantiles_ordered_and_any_level_by_interpolation(
    fitted: LightGBMForecaster,
) -> None:
    out = fitted.predict(H)
    columns = ["LightGBM", *(quantile_column("LightGBM", q) for q in DEFAULT_QUANTILES)]
    assert list(out.columns) == [ITEM_ID, DATE, *columns]
    assert len(out) == len(fitted.panel_.item_ids) * H
    values = out[columns[1:]].to_numpy()
    assert np.isfinite(values).all() and (np.diff(values, axis=1) >= 0).all()
    assert (values[:, -1] > values[:, 0]).mean() > 0.5
    middle = fitted.predict(H, quantiles=(0.25,))["LightGBM-q25"]
    between = out["LightGBM-q20"] <= middle + 1e-9
    assert between.all() and (middle <= out["LightGBM-q30"] + 1e-9).all()
    with pytest.raises(ConfigError, match="outside the trained levels"):
        fitted.predict(H, quantiles=(0.05,))


def test_conformal_quantiles_and_bias_correction(shop_panel: Panel, cutoff: pd.Timestamp) -> None:
    model = LightGBMForecaster(quantile_method="conformal", bias_correction=True, **FAST)
    model.fit(shop_panel.until(cutoff))
    assert model.log_errors_.shape[1] == model.max_horizon
    assert model.smearing_ > 1.0
    out = model.predict(4, quantiles=(0.05, 0.5, 0.95))
    assert (out["LightGBM-q95"] >= out["LightGBM-q5"]).all()
    assert (out["LightGBM-q95"] > out["LightGBM-q5"]).any()


def test_same_seed_same_forecast_and_nothing_written(
    shop_panel: Panel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    panel = shop_panel.until(shop_panel.dates[60])
    first = LightGBMForecaster(seed=5, **FAST).fit(panel).predict(4)
    again = LightGBMForecaster(seed=5, **FAST).fit(panel).predict(4)
    pd.testing.assert_frame_equal(first, again, check_exact=True)
    assert list(tmp_path.iterdir()) == []


def test_longer_horizon_retrains_and_leaves_the_fitted_model_alone(
    shop_panel: Panel,
) -> None:
    model = LightGBMForecaster(max_horizon=3, **FAST).fit(shop_panel.until(shop_panel.dates[60]))
    before = model.predict(3)
    longer = model.predict(6)
    assert len(longer) == 6 * len(model.panel_.item_ids)
    assert model.longer_[6].max_horizon == 6
    pd.testing.assert_frame_equal(model.predict(3), before)


def test_short_items_and_a_tiny_panel() -> None:
    dates = pd.date_range("2024-01-01", periods=12, freq="W-MON")
    rows = [
        pd.DataFrame({ITEM_ID: "old", DATE: dates, SALES: np.arange(12.0)}),
        pd.DataFrame({ITEM_ID: "new", DATE: dates[-2:], SALES: [4.0, 6.0]}),
        pd.DataFrame({ITEM_ID: "newest", DATE: dates[-1:], SALES: [3.0]}),
    ]
    panel = validate_panel(pd.concat(rows))
    out = LightGBMForecaster(**FAST).fit(panel).predict(5)
    assert len(out) == 15 and np.isfinite(out.iloc[:, 2:].to_numpy()).all()
    one_date = validate_panel(rows[2])
    single = LightGBMForecaster(**FAST).fit(one_date).predict(2)
    assert single["LightGBM"].tolist() == [3.0, 3.0]  # no training row: the recent level


def test_daily_panel() -> None:
    days = pd.date_range("2024-01-01", periods=70, freq="D")
    rng = np.random.default_rng(0)
    weekly = np.array([1.0, 1.0, 1.0, 1.0, 2.0, 4.0, 0.5])
    frames = [
        pd.DataFrame(
            {ITEM_ID: f"d{i}", DATE: days, SALES: rng.poisson((i + 3) * weekly[days.dayofweek])}
        )
        for i in range(6)
    ]
    panel = validate_panel(pd.concat(frames))
    out = LightGBMForecaster(**FAST).fit(panel).predict(7, quantiles=())
    by_day = out.groupby(out[DATE].dt.dayofweek)["LightGBM"].mean()
    assert by_day[5] > by_day[3]  # Saturdays sell more than Thursdays


class WithStatic(LightGBMForecaster):
    """Adds one static feature: the item's base price."""

    def static_features(self, panel: Panel) -> pd.DataFrame | None:
        assert panel.items is not None
        return panel.items.set_index(ITEM_ID)[["base_price"]]


def test_static_feature_hook(shop_panel: Panel) -> None:
    model = WithStatic(**FAST).fit(shop_panel.until(shop_panel.dates[60]))
    assert "static_base_price" in model.feature_names_
    assert len(model.predict(2)) == 2 * len(model.panel_.item_ids)


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"num_leaves": 1}, "num_leaves must lie in [2, 4096]; got 1"),
        ({"learning_rate": 0}, "learning_rate must lie in"),
        ({"n_origins": 2.5}, "n_origins must be a int"),
        ({"target": "sqrt"}, "target must be one of"),
        ({"quantile_method": "bootstrap"}, "quantile_method must be one of"),
        ({"quantile_levels": (0.1, 1.0)}, "quantile_levels must be levels strictly"),
        ({"use_known_future": "yes"}, "use_known_future must be True or False"),
        ({"n_jobs": 0}, "n_jobs must be None"),
    ],
)
def test_bad_settings_raise_config_error(
    settings: dict[str, object], fragment: str, small_panel: Panel
) -> None:
    with pytest.raises(ConfigError) as info:
        LightGBMForecaster(**settings).fit(small_panel)  # type: ignore[arg-type]
    assert fragment in str(info.value)


def test_registered_and_lightgbm_not_imported_with_salesformer() -> None:
    assert isinstance(make_model("lightgbm"), LightGBMForecaster)
    code = (
        "import sys, salesformer, salesformer.models.lightgbm; sys.exit('lightgbm' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.parametrize(
    "settings",
    [{}, {"quantile_method": "conformal", "bias_correction": True}],
    ids=["quantile-boosters", "conformal"],
)
def test_a_saved_model_predicts_identically_without_refitting(
    shop_panel: Panel, settings: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = LightGBMForecaster(**FAST, quantile_n_estimators=30, **settings).fit(shop_panel)
    folder = model.save(tmp_path / "model")
    assert (folder / "boosters" / "point.txt").is_file()

    def no_refit(self: LightGBMForecaster, panel: Panel) -> None:
        raise AssertionError("loading refitted the model")

    monkeypatch.setattr(LightGBMForecaster, "_fit", no_refit)
    loaded = LightGBMForecaster.load(folder)
    pd.testing.assert_frame_equal(loaded.predict(H), model.predict(H), check_exact=True)


def test_a_folder_saved_without_boosters_is_refitted(shop_panel: Panel, tmp_path: Path) -> None:
    import json

    model = LightGBMForecaster(**FAST).fit(shop_panel)
    folder = model.save(tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    del config["state"]  # as written before boosters were kept
    (folder / "config.json").write_text(json.dumps(config))
    loaded = LightGBMForecaster.load(folder)
    pd.testing.assert_frame_equal(loaded.predict(H), model.predict(H), check_exact=True)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: (f / "boosters" / "point.txt").write_text("tree\ngarbage"), "cannot be read"),
        (lambda f: (f / "boosters" / "point.txt").unlink(), "cannot be read"),
        (lambda f: _edit_state(f, boosters={"point": "../../escape.txt"}), "map of levels"),
        (lambda f: _edit_state(f, smearing=-1), "smearing"),
        (lambda f: _edit_state(f, monotone=[0]), "monotone"),
        (lambda f: _edit_state(f, log_errors=[[1, 2, 3]]), "log_errors"),
    ],
    ids=["garbled", "missing", "escaping-path", "smearing", "monotone", "log-errors"],
)
def test_a_damaged_saved_state_is_a_one_line_config_error(
    shop_panel: Panel, tmp_path: Path, damage: object, message: str
) -> None:
    model = LightGBMForecaster(**FAST, quantile_method="conformal").fit(shop_panel)
    folder = model.save(tmp_path / "model")
    damage(folder)  # type: ignore[operator]
    with pytest.raises(ConfigError, match=message) as caught:
        LightGBMForecaster.load(folder)
    assert "\n" not in str(caught.value)


def _edit_state(folder: Path, **changes: object) -> None:
    import json

    config = json.loads((folder / "config.json").read_text())
    config["state"].update(changes)
    (folder / "config.json").write_text(json.dumps(config))
