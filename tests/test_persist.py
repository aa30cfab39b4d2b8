"""Saved model folders: identical forecasts after a round trip, clear errors for bad folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from salesformer.data.contract import Panel
from salesformer.errors import ConfigError, NotFittedError
from salesformer.models.persist import load_model, save_model
from salesformer.models.registry import make_model

H = 8


def tiny_lm_settings(encoder: str, cache: Path) -> dict[str, Any]:
    """An LM that fits in seconds: a tiny encoder and a few short epochs."""
    return {
        "encoder": encoder,
        "head_epochs": 3,
        "finetune_epochs": 1,
        "epoch_samples": 500,
        "hidden_size": 32,
        "threads": 1,
        "cache_dir": str(cache),
        "progress": False,
    }


def round_trip(model: Any, panel: Panel, folder: Path) -> tuple[pd.DataFrame, Any]:
    """Fit, save, load; the forecast of the fitted model and the loaded model."""
    before = model.fit(panel).predict(H)
    save_model(model, folder)
    return before, load_model(folder)


def test_statistical_model_round_trip_keeps_settings_and_forecasts(
    small_panel: Panel, tmp_path: Path
) -> None:
    model = make_model("WindowAverage", window_size=6, n_windows=1)
    before, loaded = round_trip(model, small_panel, tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["model"] == "WindowAverage" and config["format"] == 1
    assert config["params"]["window_size"] == 6 and "salesformer" in config["versions"]
    assert type(loaded) is type(model) and loaded.get_params() == model.get_params()
    pd.testing.assert_frame_equal(loaded.predict(H), before)
    assert Panel.load(tmp_path / "m" / "panel").sales.equals(small_panel.sales)


def test_lightgbm_round_trip_restores_tuple_settings(small_panel: Panel, tmp_path: Path) -> None:
    model = make_model(
        "LightGBM",
        n_estimators=30,
        quantile_n_estimators=20,
        n_origins=8,
        n_jobs=1,
        quantile_levels=(0.1, 0.5, 0.9),
    )
    before, loaded = round_trip(model, small_panel, tmp_path / "m")
    assert loaded.quantile_levels == (0.1, 0.5, 0.9)
    assert loaded.get_params() == model.get_params()
    pd.testing.assert_frame_equal(loaded.predict(H), before)


def test_lm_round_trip_keeps_weights(small_panel: Panel, tiny_encoder: str, tmp_path: Path) -> None:
    model = make_model("LM", **tiny_lm_settings(tiny_encoder, tmp_path / "cache"))
    before, loaded = round_trip(model, small_panel, tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    assert config["model"] == "LM" and (tmp_path / "m" / "panel" / "panel.parquet").is_file()
    pd.testing.assert_frame_equal(loaded.predict(H), before)
    new = pd.DataFrame({"item_id": ["N1"], "text": ["Luxury Glass Christmas Candle"], "price": [9]})
    pd.testing.assert_frame_equal(loaded.predict_new(new), model.predict_new(new))


def test_auto_round_trip_restores_choices_and_candidates(
    small_panel: Panel, tmp_path: Path
) -> None:
    model = make_model(
        "auto", candidates=("Naive", "SeasonalNaive", "WindowAverage"), min_segment_series=3
    )
    before, loaded = round_trip(model, small_panel, tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m" / "candidates").iterdir()) == sorted(
        model.models_
    )
    assert loaded.candidates == model.candidates
    assert loaded.choice_ == model.choice_ and loaded.weights_ == model.weights_
    assert loaded.describe() == model.describe()
    pd.testing.assert_frame_equal(loaded.predict(H), before)


def test_save_refuses_unfitted_model(tmp_path: Path) -> None:
    with pytest.raises(NotFittedError, match="fit"):
        save_model(make_model("Naive"), tmp_path / "m")
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        (None, "does not exist"),
        ("", "no config.json"),
        ("{not json", "not valid JSON"),
        ('{"params": {}}', "names no model"),
        ('{"model": "Prophet", "params": {}}', "unknown model 'Prophet'"),
        ('{"model": "Naive", "params": {}, "format": 2}', "newer than"),
        ('{"model": "Naive", "params": {}, "format": 1}', "no panel/"),
    ],
)
def test_bad_folders_raise_config_error(tmp_path: Path, config: str | None, fragment: str) -> None:
    folder = tmp_path / "model"
    if config is not None:
        folder.mkdir()
        if config:
            (folder / "config.json").write_text(config)
    with pytest.raises(ConfigError, match=fragment):
        load_model(folder)
