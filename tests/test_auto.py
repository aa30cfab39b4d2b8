"""``auto``: validation choice per segment, forecasts of the chosen models, fallbacks, settings."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest

from salesformer.data.contract import ACTUAL, DATE, ITEM_ID, Panel
from salesformer.errors import ConfigError
from salesformer.evaluation.backtest import backtest, series_facts
from salesformer.models import registry
from salesformer.models.auto import GLOBAL, AutoForecaster
from salesformer.models.base import Forecaster
from salesformer.models.registry import make_model

CHEAP = ("Naive", "SeasonalNaive", "ADIDA", "WindowAverage")
H = 8
MIN_SERIES = 3


@dataclass
class ExplodingForecaster(Forecaster):
    """A candidate whose fit always fails."""

    name = "Exploding"

    def _fit(self, panel: Panel) -> None:
        raise RuntimeError("boom: this candidate cannot fit")

    def _predict(
        self, horizon: int, future: pd.DataFrame, quantiles: tuple[float, ...]
    ) -> pd.DataFrame:  # pragma: no cover - never fitted
        raise AssertionError("never called")


@pytest.fixture
def exploding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register ``Exploding`` (fails in fit) and ``NeedsExtra`` (its module is missing)."""
    monkeypatch.setitem(registry._REGISTRY, "Exploding", (__name__, "ExplodingForecaster"))
    monkeypatch.setitem(registry._REGISTRY, "NeedsExtra", ("salesformer_no_such_extra", "X"))


@pytest.fixture(scope="module")
def auto(small_panel: Panel) -> AutoForecaster:
    return AutoForecaster(candidates=CHEAP, selection="segment", min_segment_series=MIN_SERIES).fit(
        small_panel
    )


@pytest.fixture(scope="module")
def validation(small_panel: Panel) -> pd.DataFrame:
    """Validation forecasts of every candidate, computed independently of ``auto``."""
    result = backtest([make_model(n) for n in CHEAP], small_panel, horizon=H, n_windows=1)
    scored = result.scored()
    scored["segment"] = scored["history_segment"] + "/" + scored["intermittency"]
    return scored


@pytest.fixture(scope="module")
def alone(small_panel: Panel) -> dict[str, pd.DataFrame]:
    """Each candidate fitted alone on the whole panel, its forecast."""
    return {n: make_model(n).fit(small_panel).predict(H) for n in CHEAP}


def lowest_wape(frame: pd.DataFrame) -> str:
    actual = frame[ACTUAL].to_numpy()
    wapes = [np.abs(actual - frame[n].to_numpy()).sum() / actual.sum() for n in CHEAP]
    return CHEAP[int(np.argmin(wapes))]


def final_segments(panel: Panel) -> pd.Series:
    facts = series_facts(panel, panel.last_date, min_history=0, active_within=None)
    labels = facts["history_segment"] + "/" + facts["intermittency"]
    return pd.Series(labels.to_numpy(), index=facts[ITEM_ID].to_numpy())


def test_choice_is_the_lowest_validation_wape_of_each_segment(
    auto: AutoForecaster, validation: pd.DataFrame
) -> None:
    expected = {GLOBAL: lowest_wape(validation)}
    for segment, part in validation.groupby("segment"):
        if part[ITEM_ID].nunique() >= MIN_SERIES:
            expected[str(segment)] = lowest_wape(part)
    assert auto.choice_ == expected
    assert len(expected) > 2, "the test panel should give several segments of their own"


def test_report_names_the_chosen_models_and_is_json(auto: AutoForecaster) -> None:
    report = json.loads(json.dumps(auto.report_))
    chosen = {row["segment"]: row["choice"] for row in report["segments"]}
    assert {s: chosen[s] for s in auto.choice_} == auto.choice_
    assert set(report["candidates"]) == set(CHEAP)
    assert report["skipped"] == []
    text = auto.describe()
    for segment, model in auto.choice_.items():
        if segment != GLOBAL:
            assert f"segment {segment}" in text and model in text


def test_forecast_is_the_chosen_models_forecast_for_each_segment(
    auto: AutoForecaster, small_panel: Panel, alone: dict[str, pd.DataFrame]
) -> None:
    forecast = auto.predict(H)
    segments = final_segments(small_panel)
    columns = [c for c in forecast.columns if c.startswith("auto")]
    checked = set()
    for item, rows in forecast.groupby(ITEM_ID):
        chosen = auto.choice_.get(segments[item], auto.choice_[GLOBAL])
        theirs = alone[chosen].loc[alone[chosen][ITEM_ID] == item]
        own = [c.replace("auto", chosen, 1) for c in columns]
        np.testing.assert_allclose(rows[columns].to_numpy(), theirs[own].to_numpy(), rtol=1e-12)
        checked.add(chosen)
    assert len(checked) >= 2, "items of different segments should use different models"


def test_validation_windows_lie_inside_the_training_panel(small_panel: Panel) -> None:
    train = small_panel.until(small_panel.dates[-10])
    model = AutoForecaster(candidates=("Naive", "ADIDA"), n_windows=2).fit(train)
    cutoffs = [pd.Timestamp(c) for c in model.report_["cutoffs"]]
    assert len(cutoffs) == 2
    ends = [c + H * train.offset for c in cutoffs]
    assert max(ends) == train.last_date  # the last window ends on the last date seen
    assert all(end <= train.last_date for end in ends)
    assert model.report_["panel_last_date"] == str(train.last_date.date())


def test_weighted_forecast_lies_between_the_candidates(
    small_panel: Panel, alone: dict[str, pd.DataFrame]
) -> None:
    model = AutoForecaster(candidates=CHEAP, selection="weighted", min_segment_series=MIN_SERIES)
    forecast = model.fit(small_panel).predict(H)
    stacked = np.column_stack([alone[n][n].to_numpy() for n in CHEAP])
    point = forecast["auto"].to_numpy()
    assert (point >= stacked.min(axis=1) - 1e-9).all()
    assert (point <= stacked.max(axis=1) + 1e-9).all()
    for weights in model.weights_.values():
        assert 1 < len(weights) <= 3
        assert sum(weights.values()) == pytest.approx(1.0)
    mixed = (point < stacked.max(axis=1) - 1e-9) & (point > stacked.min(axis=1) + 1e-9)
    assert mixed.any(), "weighted forecasts should blend, not pick"


def test_global_selection_uses_one_model_everywhere(
    small_panel: Panel, alone: dict[str, pd.DataFrame], validation: pd.DataFrame
) -> None:
    model = AutoForecaster(candidates=CHEAP, selection="global").fit(small_panel)
    best = lowest_wape(validation)
    assert model.choice_ == {GLOBAL: best}
    forecast = model.predict(H)
    np.testing.assert_allclose(forecast["auto"].to_numpy(), alone[best][best].to_numpy())


@pytest.mark.usefixtures("exploding")
def test_failing_and_missing_candidates_are_skipped_and_reported(small_panel: Panel) -> None:
    model = AutoForecaster(candidates=("Exploding", "NeedsExtra", "Naive", "ADIDA"))
    model.fit(small_panel)
    skipped = {s["model"]: s for s in model.report_["skipped"]}
    assert skipped["Exploding"]["stage"] == "validation"
    assert "boom" in skipped["Exploding"]["error"]
    assert skipped["NeedsExtra"]["stage"] == "not installed"
    assert set(model.models_) <= {"Naive", "ADIDA"}
    assert "skipped Exploding" in model.describe()
    assert np.isfinite(model.predict(H)["auto"].to_numpy()).all()


@pytest.mark.usefixtures("exploding")
def test_no_usable_candidate_raises_config_error(small_panel: Panel) -> None:
    with pytest.raises(ConfigError, match=r"no candidate could be used.*boom"):
        AutoForecaster(candidates=("Exploding", "NeedsExtra")).fit(small_panel)


@pytest.mark.usefixtures("exploding")
def test_short_panel_falls_back_to_the_first_candidate_that_fits(small_panel: Panel) -> None:
    short = small_panel.until(small_panel.dates[15])
    model = AutoForecaster(candidates=("Exploding", "ADIDA", "Naive")).fit(short)
    assert model.report_["validated"] is False
    assert "too short" in model.report_["note"] and "ADIDA" in model.report_["note"]
    assert model.choice_ == {GLOBAL: "ADIDA"}
    expected = make_model("ADIDA").fit(short).predict(4)
    np.testing.assert_allclose(model.predict(4)["auto"].to_numpy(), expected["ADIDA"].to_numpy())
    assert "too short" in model.describe()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"candidates": ("Naive", "Prophet")}, "unknown model 'Prophet'; choose from"),
        ({"candidates": ()}, "non-empty"),
        ({"candidates": ("Naive", "naive")}, "more than once"),
        ({"candidates": ("auto", "Naive")}, "cannot include"),
        ({"selection": "best"}, "selection must be one of"),
        ({"metric": "bias"}, "metric must be one of"),
        ({"horizon": 0}, "horizon must be a whole number"),
        ({"n_windows": 1.5}, "n_windows"),
        ({"min_segment_series": 0}, "min_segment_series"),
        ({"candidate_settings": {"LightGBM": {}}}, "not candidates"),
        ({"candidate_settings": {"Naive": {"bogus": 1}}}, "not accepted by Naive"),
        ({"candidate_settings": {"TSB": {"alpha_p": 1.5}}}, "candidate TSB.*alpha_p"),
        ({"candidate_settings": {"Naive": 3}}, "dicts of settings"),
    ],
)
def test_bad_settings_raise_config_error(
    small_panel: Panel, settings: dict[str, Any], message: str
) -> None:
    base: dict[str, Any] = {"candidates": ("Naive", "TSB")}
    with pytest.raises(ConfigError, match=message):
        AutoForecaster(**{**base, **settings}).fit(small_panel)


def test_forecast_columns_and_dates(auto: AutoForecaster, small_panel: Panel) -> None:
    forecast = auto.predict(3, quantiles=(0.1, 0.9))
    assert list(forecast.columns) == [ITEM_ID, DATE, "auto", "auto-q10", "auto-q90"]
    assert len(forecast) == 3 * len(small_panel.item_ids)


def test_ensemble_selection_learns_weights_that_lower_the_validation_wape(
    small_panel: Panel, validation: pd.DataFrame
) -> None:
    model = AutoForecaster(candidates=CHEAP, selection="ensemble", min_segment_series=MIN_SERIES)
    model.fit(small_panel)
    actual = validation[ACTUAL].to_numpy()
    weights = model.weights_[GLOBAL]
    assert sum(weights.values()) == pytest.approx(1.0)
    assert all(abs(w * 20 - round(w * 20)) < 1e-9 for w in weights.values())
    combined = sum(w * validation[n].to_numpy() for n, w in weights.items())
    best_single = min(np.abs(actual - validation[n].to_numpy()).sum() for n in CHEAP)
    assert np.abs(actual - combined).sum() <= best_single + 1e-9
    replayed = model.validation_weights(validation, list(CHEAP))
    assert replayed == model.weights_
