"""The contract every registered forecaster follows, baseline or not.

One suite, parametrized over :func:`salesformer.models.registry.available_models`: a new model
is checked as soon as it is registered. A model whose module does not import yet (work in
progress elsewhere) is skipped with the import error as the reason; the statistical baselines
never are.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from salesformer.data.contract import DATE, ITEM_ID, SALES, Panel, validate_panel
from salesformer.data.synthetic import generate_catalogue
from salesformer.errors import ConfigError, DataValidationError, NotFittedError
from salesformer.models.base import DEFAULT_QUANTILES, Forecaster, quantile_column
from salesformer.models.registry import STATISTICAL_MODELS, available_models, make_model

N_ITEMS, N_WEEKS, HORIZON = 30, 70, 6
#: The longest horizon every registered model must serve with its default settings (direct
#: multi-horizon models such as LightGBM are trained for a fixed ``max_horizon``, 8 by default).
MAX_HORIZON = 8

LAWS = settings(
    max_examples=5,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)


#: Settings that keep this suite fast for models whose defaults are sized for real catalogues
#: (scikit-learn's estimator checks cut ``n_estimators`` the same way). Speed only: no setting
#: here may change which code paths the contract exercises.
FAST_SETTINGS: dict[str, dict[str, Any]] = {
    "LightGBM": {"n_estimators": 50, "n_jobs": 1},
    "auto": {
        "candidates": ("Naive", "ADIDA", "LightGBM"),
        "min_segment_series": 3,
        "candidate_settings": {"LightGBM": {"n_estimators": 50, "n_jobs": 1}},
    },
}
#: Text models read a tiny randomly initialised BERT (the ``tiny_encoder`` fixture), with
#: a head small enough for seconds-long fits; LoRA stays on, so its code path is checked.
TEXT_MODELS = {
    "LM": {
        "finetune": "lora",
        "head_epochs": 2,
        "finetune_epochs": 1,
        "epoch_samples": 256,
        "batch_items": 16,
        "origins_per_item": 4,
        "hidden_size": 32,
        "text_size": 8,
        "threads": 1,
    },
    "LightGBM-text": {"n_estimators": 30, "n_jobs": 1, "text_components": 4},
}


@pytest.fixture(scope="module", autouse=True)
def _text_models_read_the_tiny_encoder(request: pytest.FixtureRequest) -> None:
    try:
        folder = request.getfixturevalue("tiny_encoder")
    except pytest.skip.Exception:  # no torch here: the text models skip themselves
        return
    for name, fast in TEXT_MODELS.items():
        FAST_SETTINGS[name] = {**fast, "encoder": folder}


def build(name: str) -> Forecaster:
    """A new model by name; skips (with the reason) a model whose module does not import yet."""
    try:
        return make_model(name, **FAST_SETTINGS.get(name, {}))
    except ImportError as exc:
        if name in STATISTICAL_MODELS:
            raise
        pytest.skip(f"model {name!r} is registered but its module does not import yet: {exc}")


def expected_columns(name: str) -> list[str]:
    return [ITEM_ID, DATE, name, *(quantile_column(name, q) for q in DEFAULT_QUANTILES)]


@pytest.fixture(scope="module")
def panel() -> Panel:
    return generate_catalogue(n_items=N_ITEMS, n_weeks=N_WEEKS, seed=11).panel()


@pytest.fixture(scope="module", params=available_models())
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def fitted(name: str, panel: Panel) -> Forecaster:
    return build(name).fit(panel)


@pytest.fixture(scope="module")
def forecast(fitted: Forecaster) -> pd.DataFrame:
    return fitted.predict(HORIZON)


def test_columns_are_item_date_point_and_quantiles(
    fitted: Forecaster, forecast: pd.DataFrame
) -> None:
    assert list(forecast.columns) == expected_columns(fitted.name)


def test_one_row_per_item_and_future_period(panel: Panel, forecast: pd.DataFrame) -> None:
    assert len(forecast) == N_ITEMS * HORIZON
    assert sorted(forecast[ITEM_ID].unique()) == sorted(panel.item_ids)
    expected = panel.future_dates(panel.last_date, HORIZON)
    for item, rows in forecast.groupby(ITEM_ID):
        assert list(rows[DATE]) == list(expected), f"wrong dates for {item}"


def test_values_are_finite_and_non_negative(fitted: Forecaster, forecast: pd.DataFrame) -> None:
    values = forecast[expected_columns(fitted.name)[2:]].to_numpy(dtype=float)
    assert np.isfinite(values).all()
    assert (values >= 0).all()


def test_quantiles_do_not_cross(fitted: Forecaster, forecast: pd.DataFrame) -> None:
    levels = forecast[expected_columns(fitted.name)[3:]].to_numpy(dtype=float)
    assert (np.diff(levels, axis=1) >= 0).all()
    assert (levels[:, -1] > levels[:, 0]).any(), "every interval has zero width"


def test_point_forecast_does_not_depend_on_quantiles_asked(
    fitted: Forecaster, forecast: pd.DataFrame
) -> None:
    point = fitted.predict(HORIZON, quantiles=())
    assert list(point.columns) == [ITEM_ID, DATE, fitted.name]
    pd.testing.assert_frame_equal(point, forecast[[ITEM_ID, DATE, fitted.name]])


def test_two_fits_give_identical_forecasts(name: str, panel: Panel, forecast: pd.DataFrame) -> None:
    again = build(name).fit(panel).predict(HORIZON)
    pd.testing.assert_frame_equal(again, forecast, check_exact=True)


def test_predict_before_fit_raises_not_fitted(name: str) -> None:
    with pytest.raises(NotFittedError, match="fit"):
        build(name).predict(HORIZON)


def test_clone_is_unfitted_with_equal_params(fitted: Forecaster) -> None:
    copy = fitted.clone()
    assert type(copy) is type(fitted)
    assert copy is not fitted
    assert copy.get_params() == fitted.get_params()
    with pytest.raises(NotFittedError):
        copy.predict(HORIZON)


@pytest.mark.parametrize("horizon", [0, -1, 2.5])
def test_bad_horizon_raises_config_error(fitted: Forecaster, horizon: float) -> None:
    with pytest.raises(ConfigError, match="horizon"):
        fitted.predict(horizon)  # type: ignore[arg-type]


@LAWS
@given(horizon=st.integers(min_value=1, max_value=MAX_HORIZON))
def test_law_h_times_n_items_rows(fitted: Forecaster, horizon: int) -> None:
    out = fitted.predict(horizon)
    assert len(out) == N_ITEMS * horizon
    assert (out.groupby(ITEM_ID).size() == horizon).all()


def _with_garbage_after(panel: Panel, cutoff: pd.Timestamp, seed: int) -> Panel:
    """The panel with every sales value and past-only covariate after ``cutoff`` scrambled."""
    rng = np.random.default_rng(seed)
    sales = panel.sales.copy()
    after = sales[DATE] > cutoff
    for column in (SALES, *panel.past_only):
        sales.loc[after, column] = rng.integers(0, 10**6, size=int(after.sum())).astype(float)
    return validate_panel(
        sales,
        panel.items,
        freq=panel.freq,
        known_future=panel.known_future,
        past_only=panel.past_only,
    )


@LAWS
@given(
    weeks_before_end=st.integers(min_value=HORIZON, max_value=N_WEEKS - 30),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_no_leakage_forecast_ignores_data_after_cutoff(
    name: str, panel: Panel, weeks_before_end: int, seed: int
) -> None:
    cutoff = panel.dates[-1 - weeks_before_end]
    scrambled = _with_garbage_after(panel, cutoff, seed)
    assert not scrambled.sales[SALES].equals(panel.sales[SALES])
    future = panel.future_covariates(cutoff, HORIZON)
    honest = build(name).fit(panel.until(cutoff)).predict(HORIZON, future=future)
    other = build(name).fit(scrambled.until(cutoff)).predict(HORIZON, future=future)
    pd.testing.assert_frame_equal(honest, other, check_exact=True)
    assert honest[DATE].min() == cutoff + panel.offset


def daily_panel(n_items: int = 4, n_days: int = 63) -> Panel:
    """A small daily panel with a weekly pattern, built by hand."""
    rng = np.random.default_rng(3)
    dates = pd.date_range("2024-01-01", periods=n_days, freq="D")
    weekly = np.array([1.0, 1.0, 1.2, 1.2, 1.5, 2.5, 0.6])
    frames = [
        pd.DataFrame(
            {
                ITEM_ID: f"D{i}",
                DATE: dates,
                SALES: rng.poisson((i + 2) * weekly[dates.dayofweek]).astype(float),
            }
        )
        for i in range(n_items)
    ]
    items = pd.DataFrame(
        {
            ITEM_ID: [f"D{i}" for i in range(n_items)],
            "text": ["Daily bread", "Milk", "Eggs", "Tea"][:n_items],
        }
    )
    return validate_panel(pd.concat(frames, ignore_index=True), items)


def test_daily_panel_forecasts_the_next_days(name: str) -> None:
    panel = daily_panel()
    assert panel.freq == "D"
    model = build(name)
    out = model.fit(panel).predict(7)
    assert list(out.columns) == expected_columns(model.name)
    assert len(out) == 4 * 7
    expected = pd.date_range(panel.last_date + pd.Timedelta(days=1), periods=7, freq="D")
    for item, rows in out.groupby(ITEM_ID):
        assert list(rows[DATE]) == list(expected), f"wrong dates for {item}"
    assert np.isfinite(out.iloc[:, 2:].to_numpy(dtype=float)).all()


def test_update_to_the_fitted_panel_changes_no_forecast(
    fitted: Forecaster, panel: Panel, forecast: pd.DataFrame
) -> None:
    pd.testing.assert_frame_equal(fitted.update(panel).predict(HORIZON), forecast, check_exact=True)


def test_update_forecasts_after_the_later_panel_and_leaves_the_model_as_it_was(
    name: str, panel: Panel
) -> None:
    cutoff = panel.dates[-1 - HORIZON]
    early = build(name).fit(panel.until(cutoff))
    before = early.predict(HORIZON)
    out = early.update(panel).predict(HORIZON)
    assert len(out) == N_ITEMS * HORIZON
    assert sorted(out[ITEM_ID].unique()) == sorted(panel.item_ids)
    assert out[DATE].min() == panel.last_date + panel.offset
    assert out[DATE].max() == panel.future_dates(panel.last_date, HORIZON)[-1]
    pd.testing.assert_frame_equal(early.predict(HORIZON), before, check_exact=True)


def test_update_refuses_a_panel_that_ends_before_the_fitted_one(
    fitted: Forecaster, panel: Panel
) -> None:
    with pytest.raises(DataValidationError, match=r"ends on .* before the fitted panel"):
        fitted.update(panel.until(panel.dates[-5]))
