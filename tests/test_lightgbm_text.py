"""LightGBM with PCA text components: features, the embedding cache, settings.

The encoder is a tiny randomly initialised BERT saved to a temporary folder (with the bundled
MiniLM tokenizer), so these tests are offline and fast; the text signal is irrelevant here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from salesformer.data.contract import ITEM_ID, TEXT, Panel, validate_panel
from salesformer.errors import ConfigError
from salesformer.models.lightgbm_text import LightGBMTextForecaster, principal_components
from salesformer.text import encoder as encoder_module

H = 8
COMPONENTS = 4
FAST: dict[str, Any] = {
    "n_estimators": 30,
    "quantile_n_estimators": 20,
    "n_origins": 8,
    "n_jobs": 1,
    "text_components": COMPONENTS,
}


@pytest.fixture(autouse=True)
def fresh_encoders(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no encoder loaded in the process."""
    monkeypatch.setattr(encoder_module, "_LOADED", {})


@pytest.fixture(scope="module")
def text_panel(small_panel: Panel) -> Panel:
    return small_panel


def test_text_components_are_features_and_forecasts_are_finite(
    tiny_encoder: str, text_panel: Panel, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    model = LightGBMTextForecaster(encoder=tiny_encoder, cache_dir=str(cache), **FAST)
    model.fit(text_panel)
    expected = [f"static_text_pc{j}" for j in range(1, COMPONENTS + 1)]
    assert [c for c in model.feature_names_ if c.startswith("static_")] == expected
    assert model.static_ is not None
    assert list(model.static_.index) == list(text_panel.item_ids)
    assert model.static_.to_numpy().std(axis=0).min() > 0  # items really differ
    forecast = model.predict(H)
    values = forecast.drop(columns=[ITEM_ID, "date"]).to_numpy(dtype=float)
    assert len(forecast) == len(text_panel.item_ids) * H
    assert np.isfinite(values).all()
    assert list(cache.rglob("*.safetensors")), "the embedding cache stayed empty"


def test_second_fit_reads_the_cache_and_encodes_nothing(
    tiny_encoder: str, text_panel: Panel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = LightGBMTextForecaster(encoder=tiny_encoder, cache_dir=str(tmp_path), **FAST)
    first = model.static_features(text_panel)
    monkeypatch.setattr(encoder_module, "_LOADED", {})  # a new process: nothing in memory
    encoder = encoder_module.shared_encoder(tiny_encoder)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the encoder ran although every text is cached")

    monkeypatch.setattr(encoder.model, "forward", refuse)
    second = model.static_features(text_panel)
    assert first is not None and second is not None
    pd.testing.assert_frame_equal(first, second)


def test_longer_horizon_model_keeps_the_text_features(
    tiny_encoder: str, text_panel: Panel, tmp_path: Path
) -> None:
    settings = {**FAST, "max_horizon": 2}
    model = LightGBMTextForecaster(encoder=tiny_encoder, cache_dir=str(tmp_path), **settings)
    forecast = model.fit(text_panel).predict(4)
    longer = model.longer_[4]
    assert "static_text_pc1" in longer.feature_names_
    assert longer.static_ is not None and model.static_ is not None
    pd.testing.assert_frame_equal(longer.static_, model.static_)
    assert np.isfinite(forecast[model.name].to_numpy()).all()


def test_item_without_text_gets_the_mean_embedding(tiny_encoder: str, tmp_path: Path) -> None:
    dates = pd.date_range("2024-01-01", periods=6, freq="W-MON")
    ids = ["a", "b", "c", "d"]
    sales = pd.DataFrame(
        {ITEM_ID: np.repeat(ids, 6), "date": np.tile(dates, 4), "sales": 1.0 + np.arange(24)}
    )
    items = pd.DataFrame(
        {ITEM_ID: ids, TEXT: ["red ceramic mug", "garden plant pot", "wall clock", ""]}
    )
    panel = validate_panel(sales, items)
    model = LightGBMTextForecaster(encoder=tiny_encoder, cache_dir=str(tmp_path), **FAST)
    static = model.static_features(panel)
    assert static is not None
    assert list(static.columns) == ["text_pc1", "text_pc2"]  # 3 texts: at most 2 components
    np.testing.assert_allclose(static.loc["d"].to_numpy(), 0.0)
    np.testing.assert_allclose(static.loc[["a", "b", "c"]].sum().to_numpy(), 0.0, atol=1e-9)


def test_principal_components_are_orthonormal_with_fixed_signs() -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(20, 6)) @ rng.normal(size=(6, 6))
    mean, axes = principal_components(data, 3)
    np.testing.assert_allclose(mean, data.mean(axis=0))
    np.testing.assert_allclose(axes @ axes.T, np.eye(3), atol=1e-10)
    pivots = axes[np.arange(3), np.argmax(np.abs(axes), axis=1)]
    assert (pivots > 0).all()
    variances = ((data - mean) @ axes.T).var(axis=0)
    assert (np.diff(variances) <= 1e-12).all()
    _, shuffled = principal_components(data[::-1], 3)  # row order changes nothing
    np.testing.assert_allclose(shuffled, axes, atol=1e-10)


def test_panel_without_items_is_refused(text_panel: Panel) -> None:
    bare = validate_panel(text_panel.sales)
    with pytest.raises(ConfigError, match="items table with item text"):
        LightGBMTextForecaster(**FAST).fit(bare)


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("text_components", 0, "text_components"),
        ("text_components", 2.5, "text_components"),
        ("encoder", "", "encoder"),
        ("cache_dir", 3, "cache_dir"),
        ("n_estimators", 0, "n_estimators"),
    ],
)
def test_bad_settings_raise_config_error(
    text_panel: Panel, setting: str, value: object, message: str
) -> None:
    settings = {**FAST, setting: value}
    with pytest.raises(ConfigError, match=message):
        LightGBMTextForecaster(**settings).fit(text_panel)
