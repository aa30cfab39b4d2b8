"""Quantile calibration of the LM forecaster (models/lm/calibration.py) and its use in the model.

Synthetic cells with log-normal sales: quantiles that are too wide (or too narrow) in log
space are rescaled towards the truth and lower the sales-scale pinball loss, on the cells they
were fitted on and on fresh ones; right ones stay about unchanged. Medians whose growth over
the level is overstated are damped towards the level in the bucket where they are, and not
elsewhere. With the tiny encoder: the fit learns factors on its validation window, applies
them in predictions, saves and loads them, and a model saved without them loads with factors
of 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from salesformer.errors import ConfigError
from salesformer.models.lm.calibration import (
    GROWTH_DAMPING,
    QuantileCalibration,
    fit_calibration,
    sales_wql,
)

LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
TRUE_SIGMA = 0.6


def cells(n: int, seed: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """``log1p`` quantiles of spread ``sigma`` and ``log1p`` actuals of spread TRUE_SIGMA.

    Medians range from about 1 to 3,000 units, so that the volume buckets are all used.
    """
    rng = np.random.default_rng(seed)
    median = rng.uniform(0.5, 8.0, n)
    z = norm.ppf(np.asarray(LEVELS))
    quantiles = median[:, None] + sigma * z[None, :]
    actual = median + TRUE_SIGMA * rng.standard_normal(n)
    return quantiles, actual


def test_too_wide_quantiles_are_shrunk_and_lose_less() -> None:
    quantiles, actual = cells(4000, seed=0, sigma=3 * TRUE_SIGMA)
    calibration, report = fit_calibration(quantiles, actual, LEVELS)
    factors = np.asarray(calibration.factors)
    outer = [LEVELS.index(0.1), LEVELS.index(0.9)]
    assert (factors[:, outer] <= 0.5).all()  # the truth is a third of the spread
    assert (factors[:, outer] >= 0.2).all()
    assert report["wql_after"] < 0.9 * report["wql_before"]
    fresh_q, fresh_y = cells(4000, seed=1, sigma=3 * TRUE_SIGMA)
    before = sales_wql(fresh_q, fresh_y, LEVELS)
    after = sales_wql(calibration.apply(fresh_q), fresh_y, LEVELS)
    assert after < 0.9 * before


def test_too_narrow_quantiles_are_stretched() -> None:
    quantiles, actual = cells(4000, seed=2, sigma=TRUE_SIGMA / 1.5)
    calibration, report = fit_calibration(quantiles, actual, LEVELS)
    outer = np.asarray(calibration.factors)[:, [0, -1]]
    assert (outer >= 1.2).all()
    assert report["wql_after"] < report["wql_before"]


def test_calibrated_quantiles_stay_about_unchanged() -> None:
    quantiles, actual = cells(6000, seed=3, sigma=TRUE_SIGMA)
    calibration, report = fit_calibration(quantiles, actual, LEVELS)
    factors = np.asarray(calibration.factors)
    outer = [LEVELS.index(q) for q in (0.1, 0.2, 0.8, 0.9)]  # inner ones barely move anything
    assert np.abs(factors[:, outer] - 1.0).max() <= 0.15 + 1e-9
    assert report["wql_after"] >= 0.98 * report["wql_before"]
    fresh_q, fresh_y = cells(6000, seed=4, sigma=TRUE_SIGMA)
    before = sales_wql(fresh_q, fresh_y, LEVELS)
    assert sales_wql(calibration.apply(fresh_q), fresh_y, LEVELS) == pytest.approx(before, rel=0.02)


def test_apply_keeps_the_median_and_never_crosses() -> None:
    calibration = QuantileCalibration(
        LEVELS, (3.0,), ((1.5, 0.2, 1.0, 0.5, 1.0, 1.5, 0.2, 1.0, 0.3),) * 2
    )
    quantiles, _ = cells(500, seed=5, sigma=1.0)
    calibrated = calibration.apply(quantiles)
    np.testing.assert_array_equal(calibrated[:, 4], quantiles[:, 4])
    assert (np.diff(calibrated, axis=1) >= 0).all()
    identity = QuantileCalibration.identity(LEVELS)
    assert identity.apply(quantiles) is quantiles


def test_json_round_trip_and_models_saved_without_calibration() -> None:
    quantiles, actual = cells(2000, seed=6, sigma=1.5)
    calibration, _ = fit_calibration(quantiles, actual, LEVELS)
    data = json.loads(json.dumps(calibration.to_json()))
    assert QuantileCalibration.from_json(data, LEVELS) == calibration
    assert QuantileCalibration.from_json(None, LEVELS).is_identity
    with pytest.raises(ConfigError, match="refit"):
        QuantileCalibration.from_json(data, (0.1, 0.5, 0.9))


def growth_cells(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cells whose forecast growth above the level is three times the true one."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(1.0, 6.0, n)
    true_growth = rng.uniform(-1.0, 0.5, n)
    growth = np.where(true_growth > 0, 3.0 * true_growth, true_growth)
    z = norm.ppf(np.asarray(LEVELS))
    quantiles = (level + growth)[:, None] + 0.3 * z[None, :]
    actual = level + true_growth + 0.3 * rng.standard_normal(n)
    return quantiles, actual, level


def test_growth_above_the_level_is_damped_and_nothing_else() -> None:
    quantiles, actual, level = growth_cells(4000, seed=8)
    calibration, report = fit_calibration(
        quantiles, actual, LEVELS, level=level, growth_damping=0.4
    )
    assert report["damping"] == 0.4
    assert report["wape_after"] < 0.95 * report["wape_before"]
    damped = QuantileCalibration.damped(LEVELS, 0.4).apply(quantiles, level=level)
    growth = quantiles[:, 4] - level
    above = growth > 0
    shift = np.broadcast_to((-0.6 * growth[above])[:, None], damped[above].shape)
    np.testing.assert_allclose(damped[above] - quantiles[above], shift)
    np.testing.assert_array_equal(damped[~above], quantiles[~above])
    with pytest.raises(ValueError, match="level"):
        calibration.apply(quantiles)
    assert QuantileCalibration.from_json(calibration.to_json(), LEVELS) == calibration
    assert QuantileCalibration.damped(LEVELS, 1.0).is_identity
    with pytest.raises(ConfigError, match="growth_damping"):
        fit_calibration(quantiles, actual, LEVELS, level=level, growth_damping=1.5)
    few_q, few_y, few_level = growth_cells(20, seed=9)
    kept, _ = fit_calibration(few_q, few_y, LEVELS, level=few_level, growth_damping=0.4)
    assert kept == QuantileCalibration.damped(LEVELS, 0.4)  # too few cells: damping only


def test_too_few_cells_with_sales_keep_factors_of_one() -> None:
    quantiles, actual = cells(20, seed=7, sigma=3.0)
    calibration, report = fit_calibration(quantiles, actual, LEVELS)
    assert calibration.is_identity
    assert "skipped" in report


# -- in the LM forecaster ------------------------------------------------------------------

pytest.importorskip("torch")

from salesformer.data.contract import Panel  # noqa: E402
from salesformer.data.synthetic import generate_catalogue  # noqa: E402
from salesformer.models.lm import LMForecaster  # noqa: E402

TINY: dict[str, Any] = {
    "finetune": "frozen",
    "head_epochs": 2,
    "epoch_samples": 300,
    "batch_items": 16,
    "origins_per_item": 4,
    "hidden_size": 32,
    "text_size": 8,
    "threads": 1,
}


@pytest.fixture(scope="module")
def panel() -> Panel:
    return generate_catalogue(n_items=40, n_weeks=60, seed=3).panel()


@pytest.fixture(scope="module")
def fitted(panel: Panel, tiny_encoder: str) -> LMForecaster:
    return LMForecaster(encoder=tiny_encoder, **TINY).fit(panel)


def test_fit_learns_factors_on_validation_and_applies_them(fitted: LMForecaster) -> None:
    report = fitted.fit_report_["calibration"]
    assert report["cells"] > 0
    assert report["damping"] == fitted.growth_damping == GROWTH_DAMPING < 1
    assert not fitted.calibration_.is_identity
    calibrated = fitted.predict(4)
    learned = fitted.calibration_
    spread_only = QuantileCalibration(learned.levels, learned.edges, learned.factors)
    try:
        fitted.calibration_ = QuantileCalibration.identity(fitted.levels)
        raw = fitted.predict(4)
        fitted.calibration_ = spread_only
        spread = fitted.predict(4)
        fitted.calibration_ = QuantileCalibration.damped(fitted.levels, GROWTH_DAMPING)
        damped = fitted.predict(4)
    finally:
        fitted.calibration_ = learned
    pd.testing.assert_series_equal(spread["LM"], raw["LM"])  # the spread keeps the median
    assert not np.allclose(spread["LM-q90"], raw["LM-q90"])
    # damping only lowers growth (the raw quantiles sorted, as any calibration sorts them)
    raw_median = np.sort(raw[[f"LM-q{k}0" for k in range(1, 10)]].to_numpy(), axis=1)[:, 4]
    assert (damped["LM"].to_numpy() <= raw_median * (1 + 1e-6) + 1e-6).all()  # float32 raw
    assert (damped["LM"].to_numpy() < raw_median - 1e-6).any()
    assert not np.allclose(calibrated["LM"], spread["LM"])


def test_damping_can_be_turned_off(panel: Panel, tiny_encoder: str) -> None:
    model = LMForecaster(encoder=tiny_encoder, growth_damping=1.0, **TINY).fit(panel)
    assert model.calibration_.keeps_median
    assert "damping" not in model.fit_report_["calibration"]
    for wrong in (0, 1.2, True, "0.5"):
        with pytest.raises(ConfigError, match="growth_damping"):
            LMForecaster(encoder=tiny_encoder, growth_damping=wrong, **TINY).fit(panel)  # type: ignore[arg-type]


def test_calibration_can_be_turned_off(panel: Panel, tiny_encoder: str) -> None:
    model = LMForecaster(encoder=tiny_encoder, calibrate_quantiles=False, **TINY).fit(panel)
    # the spread is left alone; the growth damping is a setting of its own
    assert model.calibration_ == QuantileCalibration.damped(model.levels, GROWTH_DAMPING)
    assert model.fit_report_["calibration"] == {"skipped": "calibrate_quantiles is off"}
    raw = LMForecaster(
        encoder=tiny_encoder, calibrate_quantiles=False, growth_damping=1.0, **TINY
    ).fit(panel)
    assert raw.calibration_.is_identity
    with pytest.raises(ConfigError, match="calibrate_quantiles"):
        LMForecaster(encoder=tiny_encoder, calibrate_quantiles="yes", **TINY).fit(panel)  # type: ignore[arg-type]


def test_save_load_keeps_forecasts_and_old_folders_load(
    fitted: LMForecaster, tmp_path: Path
) -> None:
    folder = fitted.save(tmp_path / "model")
    loaded = LMForecaster.load(folder)
    assert loaded.calibration_ == fitted.calibration_
    pd.testing.assert_frame_equal(loaded.predict(6), fitted.predict(6), check_exact=True)

    config_path = folder / "config.json"
    config = json.loads(config_path.read_text())
    del config["state"]["calibration"]  # as saved before calibration existed
    del config["params"]["calibrate_quantiles"]
    config_path.write_text(json.dumps(config))
    old = LMForecaster.load(folder)
    assert old.calibration_.is_identity
    learned = fitted.calibration_
    fitted.calibration_ = QuantileCalibration.identity(fitted.levels)
    try:
        raw = fitted.predict(6)
    finally:
        fitted.calibration_ = learned
    pd.testing.assert_frame_equal(old.predict(6), raw, check_exact=True)


def test_auto_builds_its_lm_candidate_with_calibration() -> None:
    from salesformer.models.registry import make_model

    auto = make_model("auto", candidate_settings={"LM": {"threads": 1}})
    lm = auto._make_candidates()["LM"]  # type: ignore[attr-defined]
    assert isinstance(lm, LMForecaster)
    assert lm.calibrate_quantiles is True


def test_new_items_are_never_damped(fitted: LMForecaster) -> None:
    new = pd.DataFrame(
        {"item_id": ["NEW1", "NEW2"], "text": ["red heart mug", "paper chain kit"], "price": 3.5}
    )
    learned = fitted.calibration_
    try:
        fitted.calibration_ = QuantileCalibration.damped(fitted.levels, GROWTH_DAMPING)
        damped = fitted.predict_new(new, horizon=4)
        fitted.calibration_ = QuantileCalibration.damped(fitted.levels, 1.0)
        raw = fitted.predict_new(new, horizon=4)
    finally:
        fitted.calibration_ = learned
    np.testing.assert_allclose(damped["LM"], raw["LM"], rtol=1e-6)
