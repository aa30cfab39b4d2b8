"""The LM forecaster: samples, cold start, save/load, and the real encoder on text-driven data.

The contract suite (test_forecaster_contract.py) checks the LM like every model with a tiny
random BERT. Here: how its inputs are built, its errors, the round trip through a folder, and
one integration test with the bundled all-MiniLM-L6-v2 on a catalogue whose text carries the
signal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

from salesformer.data.contract import DATE, ITEM_ID, SALES, Panel, validate_panel
from salesformer.data.synthetic import generate_catalogue
from salesformer.errors import ConfigError, DataValidationError, NotFittedError
from salesformer.models.lm import LMForecaster
from salesformer.models.lm.samples import (
    LEGACY_HARMONICS,
    STATIC_FEATURES,
    Standardizer,
    Wide,
    build_samples,
    calendar,
)

TINY: dict[str, Any] = {
    "head_epochs": 3,
    "finetune_epochs": 1,
    "epoch_samples": 400,
    "batch_items": 16,
    "origins_per_item": 4,
    "hidden_size": 32,
    "text_size": 8,
    "threads": 1,
}


@pytest.fixture(scope="module")
def panel() -> Panel:
    return generate_catalogue(n_items=30, n_weeks=70, seed=11).panel()


@pytest.fixture(scope="module")
def lora(panel: Panel, tiny_encoder: str) -> LMForecaster:
    return LMForecaster(encoder=tiny_encoder, finetune="lora", **TINY).fit(panel)


def test_samples_scale_history_and_target_by_the_item_level(panel: Panel) -> None:
    wide = Wide.from_panel(panel)
    row_of_item = int(np.argmin(wide.first))
    start = int(wide.first[row_of_item])
    item = np.array([row_of_item, row_of_item])
    origin = np.array([start + 30, wide.n_history - 9])
    samples = build_samples(
        wide,
        item,
        origin,
        context=52,
        horizon=8,
        freq=panel.freq,
        standardizer=Standardizer.learn(wide, panel),
    )
    sales = wide.sales[row_of_item]
    for row, o in enumerate(origin):
        window = sales[max(start, o - 51) : o + 1]
        level = np.log1p(window.mean())
        assert samples.level[row] == pytest.approx(level, rel=1e-5)
        np.testing.assert_allclose(
            samples.target[row], np.log1p(sales[o + 1 : o + 9]) - level, rtol=1e-5, atol=1e-5
        )
        observed = samples.hist_mask[row].astype(bool)
        assert observed.sum() == len(window)
        np.testing.assert_allclose(
            samples.hist[row][observed], np.log1p(window) - level, rtol=1e-5, atol=1e-5
        )
    assert samples.static.shape == (2, len(STATIC_FEATURES))


def test_cold_samples_hide_history_and_use_the_launch_price(panel: Panel) -> None:
    wide = Wide.from_panel(panel)
    launched = int(np.argmax(wide.first))
    first = int(wide.first[launched])
    samples = build_samples(
        wide,
        np.array([launched]),
        np.array([first - 1]),
        context=52,
        horizon=8,
        freq=panel.freq,
        standardizer=Standardizer.learn(wide, panel),
        cold=np.array([True]),
        launch_price=np.array([12.5]),
    )
    assert samples.hist_mask.sum() == 0 and samples.hist.sum() == 0
    assert samples.level[0] == 0
    static = dict(zip(STATIC_FEATURES, samples.static[0], strict=True))
    assert static["cold"] == 1 and static["log_age"] == 0
    assert static["log_price"] == pytest.approx(np.log1p(12.5))
    np.testing.assert_allclose(samples.target[0], np.log1p(wide.sales[launched, first : first + 8]))


def test_fit_report_holds_out_the_last_window(lora: LMForecaster, panel: Panel) -> None:
    report = lora.fit_report_
    assert report["validation_origin"] == str(panel.dates[-1 - lora.horizon].date())
    assert report["head"]["epochs"] >= 1
    assert "finetune_stage" in report


def test_longer_horizon_than_fitted_is_refused(lora: LMForecaster) -> None:
    with pytest.raises(ConfigError, match="--horizon 9"):
        lora.predict(9)


def test_predict_new_gives_the_weeks_after_launch(lora: LMForecaster) -> None:
    new = pd.DataFrame(
        {
            ITEM_ID: ["N1", "N2"],
            "text": ["Luxury wooden Christmas star", "Budget cotton notebook"],
            "price": [40.0, None],
            "launch_date": ["2023-03-08", None],  # a Wednesday: snapped to its week
        }
    )
    out = lora.predict_new(new, horizon=4)
    assert list(out.columns[:3]) == [ITEM_ID, DATE, "LM"]
    assert len(out) == 8
    first = out.groupby(ITEM_ID)[DATE].min()
    assert first["N1"] == pd.Timestamp("2023-03-06")
    assert first["N2"] == lora.panel_.last_date + lora.panel_.offset
    values = out.iloc[:, 2:].to_numpy()
    assert np.isfinite(values).all() and (values >= 0).all()
    assert (np.diff(out.iloc[:, 3:].to_numpy(), axis=1) >= 0).all()


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"text": ["a"]}), "item_id"),
        (pd.DataFrame({ITEM_ID: ["a"], "price": [1.0]}), "text"),
        (pd.DataFrame({ITEM_ID: ["a"], "text": ["x"], "price": ["cheap"]}), "price"),
        (pd.DataFrame({ITEM_ID: ["a"], "text": ["x"], "price": [-1.0]}), "price"),
        (pd.DataFrame({ITEM_ID: ["a"], "text": ["x"], "launch_date": ["soon"]}), "launch_date"),
        (pd.DataFrame({ITEM_ID: ["a", "a"], "text": ["x", "y"]}), "unique"),
    ],
)
def test_bad_new_items_are_one_line_errors(
    lora: LMForecaster, frame: pd.DataFrame, message: str
) -> None:
    with pytest.raises(DataValidationError, match=message) as info:
        lora.predict_new(frame)
    assert "\n" not in str(info.value)


def test_predict_new_before_fit_is_not_fitted(tiny_encoder: str) -> None:
    with pytest.raises(NotFittedError):
        LMForecaster(encoder=tiny_encoder).predict_new(
            pd.DataFrame({ITEM_ID: ["a"], "text": ["x"]})
        )


def test_panel_without_items_is_refused(tiny_encoder: str, panel: Panel) -> None:
    bare = validate_panel(panel.sales[[ITEM_ID, DATE, SALES]])
    with pytest.raises(DataValidationError, match="items table"):
        LMForecaster(encoder=tiny_encoder, **TINY).fit(bare)


@pytest.mark.parametrize(
    ("setting", "value"),
    [("finetune", "partial"), ("horizon", 0), ("dropout", 1.5), ("quantile_levels", (0.1, 0.9))],
)
def test_bad_settings_are_config_errors(
    tiny_encoder: str, panel: Panel, setting: str, value: object
) -> None:
    with pytest.raises(ConfigError, match=setting):
        LMForecaster(encoder=tiny_encoder, **{**TINY, setting: value}).fit(panel)


@pytest.mark.parametrize("mode", ["lora", "full", "frozen"])
def test_saved_model_predicts_identically(
    mode: str, panel: Panel, tiny_encoder: str, tmp_path: Path
) -> None:
    model = LMForecaster(encoder=tiny_encoder, finetune=mode, **TINY).fit(panel)
    folder = model.save(tmp_path / "model")
    files = {p.name for p in folder.iterdir()}
    assert {"config.json", "head.safetensors", "panel"} <= files
    assert ("adapter" in files) == (model.encoder_model_ is not None and mode == "lora")
    loaded = LMForecaster.load(folder)
    pd.testing.assert_frame_equal(loaded.predict(5), model.predict(5), check_exact=True)
    new = pd.DataFrame({ITEM_ID: ["n"], "text": ["Garden gnome"], "price": [9.0]})
    pd.testing.assert_frame_equal(loaded.predict_new(new), model.predict_new(new))


def test_calendar_harmonics_resolve_the_week_and_survive_saving(
    panel: Panel, tiny_encoder: str, tmp_path: Path
) -> None:
    dates = pd.date_range("2024-01-01", periods=104, freq="W-MON")
    weekly = calendar(dates, "W-MON", 26)
    assert weekly.shape == (104, 52)
    # 26 harmonics tell every week of the year apart; 2 blur neighbouring weeks together
    assert np.abs(weekly[14] - weekly[15]).max() > 0.5
    np.testing.assert_allclose(weekly[:, :4], calendar(dates, "W-MON"), atol=1e-6)
    assert calendar(pd.date_range("2024-01-01", periods=9, freq="D"), "D", 26).shape == (9, 4)
    model = LMForecaster(encoder=tiny_encoder, finetune="frozen", calendar_harmonics=6, **TINY)
    model.fit(panel)
    assert model.head_.future_proj.in_features == 2 * 6 + 1 + len(panel.known_future)
    loaded = LMForecaster.load(model.save(tmp_path / "model"))
    assert loaded.standardizer_.harmonics == 6
    pd.testing.assert_frame_equal(loaded.predict(4), model.predict(4), check_exact=True)
    # a model saved before the setting existed was built with two harmonics
    legacy = model.standardizer_.to_json()
    del legacy["harmonics"]
    assert Standardizer.from_json(legacy).harmonics == LEGACY_HARMONICS


def test_load_refuses_a_folder_without_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config\.json"):
        LMForecaster.load(tmp_path)


# -- the real encoder: text carries the signal ---------------------------------------------


def _launch_split(seed: int) -> tuple[Panel, pd.DataFrame, pd.DataFrame]:
    """Train panel without the held-out launches; their texts and first 8 weeks of sales."""
    catalogue = generate_catalogue(n_items=160, n_weeks=104, seed=seed, new_item_share=0.45)
    full = catalogue.panel()
    first = full.sales.groupby(ITEM_ID)[DATE].min()
    late = first[(first > full.first_date + 20 * full.offset) & (first <= full.dates[-9])]
    held = sorted(late.index)[::2]
    sales = full.sales[~full.sales[ITEM_ID].isin(held)]
    items = catalogue.items[~catalogue.items[ITEM_ID].isin(held)]
    train = validate_panel(
        sales, items, freq=full.freq, known_future=full.known_future, past_only=full.past_only
    )
    held_items = catalogue.items.set_index(ITEM_ID).loc[held]
    new = pd.DataFrame(
        {
            ITEM_ID: held,
            "text": held_items["text"].to_numpy(),
            "price": held_items["base_price"].to_numpy(),
            "launch_date": first[held].to_numpy(),
        }
    )
    actual = full.sales[full.sales[ITEM_ID].isin(held)].sort_values([ITEM_ID, DATE])
    actual = actual.groupby(ITEM_ID).head(8)[[ITEM_ID, DATE, SALES]]
    return train, new, actual


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="known failure (issue 15): the frozen LM reading the text does not beat the same LM "
    "given one constant text on these launches (WAPE 0.907 vs 0.942 here, short of the 5% "
    "margin; at catalogue seeds 6 and 7 the text-blind LM is better). Remove this marker "
    "when the LM learns to read launch texts: strict, so a pass fails the run.",
)
def test_real_encoder_text_beats_a_text_blind_model_on_launches() -> None:
    train, new, actual = _launch_split(seed=5)
    settings: dict[str, Any] = {
        "finetune": "frozen",
        "head_epochs": 30,
        "epoch_samples": 4000,
        "history_dropout": 0.3,
        "hidden_size": 64,
        "threads": 1,
        "seed": 0,
    }
    reading = LMForecaster(**settings).fit(train)
    blind_items = train.items.assign(text="product")  # type: ignore[union-attr]
    blind_panel = validate_panel(
        train.sales, blind_items, freq=train.freq, known_future=train.known_future
    )
    blind = LMForecaster(**settings).fit(blind_panel)

    def score(model: LMForecaster, texts: pd.DataFrame) -> float:
        forecast = model.predict_new(texts, horizon=8)
        joined = actual.merge(forecast, on=[ITEM_ID, DATE], how="left")
        assert len(joined) == len(actual) and joined["LM"].notna().all()
        return float((joined[SALES] - joined["LM"]).abs().sum() / joined[SALES].abs().sum())

    with_text = score(reading, new)
    without = score(blind, new.assign(text="product"))
    assert with_text < 0.95 * without, (with_text, without)

    # the cold-start forecast depends on the text: same price and launch, other words
    twin = new.head(1).copy()
    luxury = reading.predict_new(twin.assign(text="Luxury Wooden Christmas Star Ornament"))
    budget = reading.predict_new(twin.assign(text="Budget Cotton Notebook for everyday use"))
    assert not np.allclose(luxury["LM"], budget["LM"])
