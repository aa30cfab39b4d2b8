"""The LM's curve-pretraining stage (``pretrain="curves"``): neighbours by sales curve, the
contrastive stage on the encoder, the stages after it, saving, and its errors and skips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

from salesformer.data.contract import Panel
from salesformer.data.synthetic import generate_catalogue
from salesformer.errors import ConfigError
from salesformer.models.lm import LMForecaster
from salesformer.models.lm.pretrain import curve_neighbours
from salesformer.models.lm.samples import Wide
from salesformer.models.persist import load_model
from salesformer.models.registry import build_model, parse_settings
from salesformer.text.encoder import shared_encoder

TINY: dict[str, Any] = {
    "head_epochs": 2,
    "finetune_epochs": 1,
    "epoch_samples": 200,
    "batch_items": 16,
    "origins_per_item": 2,
    "hidden_size": 16,
    "text_size": 4,
    "threads": 1,
}
#: A learning rate and epochs that move the tiny random encoder visibly in a few steps.
STRONG: dict[str, Any] = {"pretrain": "curves", "pretrain_epochs": 4, "encoder_lr": 1e-2}


@pytest.fixture(scope="module")
def panel() -> Panel:
    return generate_catalogue(n_items=60, n_weeks=60, seed=3).panel()


@pytest.fixture(scope="module")
def pretrained(panel: Panel, tiny_encoder: str) -> LMForecaster:
    return LMForecaster(encoder=tiny_encoder, finetune="frozen", **STRONG, **TINY).fit(panel)


def _wide(curves: np.ndarray, freq: str = "W-MON") -> Wide:
    n, t = curves.shape
    dates = pd.date_range("2024-01-01", periods=t, freq=freq)
    first = np.argmax(curves > 0, axis=1)
    return Wide(
        item_ids=np.array([f"i{k}" for k in range(n)]),
        dates=dates,
        n_history=t,
        sales=curves,
        observed=np.ones((n, t), dtype=bool),
        first=first,
        known={},
        price=None,
    )


def test_neighbours_are_items_with_the_same_curve_shape() -> None:
    rng = np.random.default_rng(0)
    t = np.arange(52)
    summer = 1 + np.sin(2 * np.pi * t / 52)
    winter = 1 - np.sin(2 * np.pi * t / 52)
    scale = rng.uniform(1, 50, size=(80, 1))  # levels differ: only the shape may count
    shapes = np.vstack([np.tile(summer, (40, 1)), np.tile(winter, (40, 1))])
    sales = rng.poisson(scale * shapes).astype(float)
    found = curve_neighbours(_wide(sales), 52, 4, 8, 3, np.random.default_rng(1))
    assert not isinstance(found, str)
    group = found.items // 40
    same = group[found.neighbours] == group[:, None]
    assert same[found.valid].mean() > 0.95
    assert found.valid.mean() > 0.9


def test_short_lived_daily_launches_find_neighbours_by_overlapping_days() -> None:
    # 60 products sold for 30 days each, launched on any day: only overlapping days compare
    rng = np.random.default_rng(2)
    sales = np.zeros((60, 120))
    for k in range(60):
        start = rng.integers(0, 90)
        days = np.arange(30)
        shape = np.exp(-days / 8) if k % 2 else np.minimum(days / 10, 1)  # decay or ramp
        sales[k, start : start + 30] = rng.poisson(20 * shape + 0.5)
    found = curve_neighbours(_wide(sales, "D"), 120, 4, 8, 3, np.random.default_rng(0))
    assert not isinstance(found, str)
    kind = found.items % 2
    same = kind[found.neighbours] == kind[:, None]
    assert same[found.valid].mean() > 0.7


def test_too_few_items_with_history_skip_the_stage_with_a_note(tiny_encoder: str) -> None:
    panel = generate_catalogue(n_items=12, n_weeks=40, seed=5).panel()
    model = LMForecaster(encoder=tiny_encoder, finetune="frozen", pretrain="curves", **TINY)
    model.fit(panel)
    note = model.fit_report_["pretrain"]["skipped"]
    assert note.startswith("skipped: ") and "needs 32 items" in note
    assert model.encoder_model_ is None  # nothing trained: the plain frozen model


def test_stage_changes_the_adapter_and_pulls_curve_neighbours_together(
    pretrained: LMForecaster,
) -> None:
    report = pretrained.fit_report_["pretrain"]
    assert report["anchors"] >= 32 and report["held_out"] >= 1
    assert report["loss"][-1] < report["loss"][0]
    rank = report["neighbour_rank"]
    assert rank["trained_after"] > rank["trained_before"] + 0.05
    lora_b = [p for name, p in pretrained.encoder_model_.named_parameters() if "lora_B" in name]
    assert lora_b and any(
        float(p.detach().abs().sum()) > 0 for p in lora_b
    )  # LoRA B starts at zero
    # the model reads texts with the pretrained encoder, not the frozen one
    base = shared_encoder(pretrained.encoder, pretrained.max_length, pretrained.pooling)
    texts = ["linen summer shirt", "wool winter scarf"]
    assert not np.allclose(pretrained.encode_texts(texts), base.encode(texts), atol=1e-4)
    assert not np.allclose(pretrained.item_vectors_, base.encode(_texts(pretrained)), atol=1e-4)


def _texts(model: LMForecaster) -> list[str]:
    from salesformer.models.lm.encoding import texts_for

    assert model.panel_.items is not None
    return texts_for(model.panel_.items, model.item_ids_)


def test_lora_fine_tune_continues_from_the_pretrained_adapter(
    panel: Panel, tiny_encoder: str
) -> None:
    model = LMForecaster(encoder=tiny_encoder, finetune="lora", **STRONG, **TINY).fit(panel)
    report = model.fit_report_
    assert "neighbour_rank" in report["pretrain"] and "improved" in report["finetune_stage"]
    # kept or not by the fine-tune, the model holds an encoder: at least the pretrained one
    assert model.encoder_model_ is not None


def test_saved_pretrained_model_predicts_identically(
    pretrained: LMForecaster, tmp_path: Path
) -> None:
    pretrained.save(tmp_path / "model")
    loaded = load_model(tmp_path / "model")
    assert isinstance(loaded, LMForecaster)
    assert loaded.pretrain == "curves" and loaded.encoder_model_ is not None
    pd.testing.assert_frame_equal(pretrained.predict(4), loaded.predict(4))
    new = pd.DataFrame({"item_id": ["N1"], "text": ["linen summer shirt"], "price": [20.0]})
    pd.testing.assert_frame_equal(pretrained.predict_new(new), loaded.predict_new(new))


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"pretrain": "text"}, "pretrain"),
        ({"pretrain": "curves", "pretrain_epochs": 0}, "pretrain_epochs"),
        ({"pretrain": "curves", "dp_epsilon": 3.0}, "LM.pretrain=none"),
    ],
)
def test_bad_pretrain_settings_are_one_line_errors(
    settings: dict[str, Any], fragment: str, tiny_encoder: str, panel: Panel
) -> None:
    with pytest.raises(ConfigError) as info:
        LMForecaster(encoder=tiny_encoder, **{**TINY, **settings}).fit(panel)
    message = str(info.value)
    assert fragment in message and "\n" not in message


def test_cli_set_reaches_the_setting() -> None:
    overrides = parse_settings(["LM.pretrain=curves", "LM.pretrain_epochs=2"])
    model = build_model("lm", horizon=4, overrides=overrides)
    assert isinstance(model, LMForecaster)
    assert (model.pretrain, model.pretrain_epochs) == ("curves", 2)


def test_benchmark_calls_a_win_only_beyond_the_seed_spread() -> None:
    from benchmarks.lm_pretrain import decide, summarise

    def rows(arm: str, wapes: list[float]) -> list[dict[str, Any]]:
        return [
            {
                "part": "cold-start",
                "arm": arm,
                "seed": s,
                "wape": w,
                "wql": w - 0.1,
                "coverage80": 0.8,
                "fit_seconds": 1.0,
                "report": {},
            }
            for s, w in enumerate(wapes)
        ]

    clear = summarise(rows("LM-frozen", [0.90, 0.92, 0.91]) + rows("LM-lora-curves", [0.85, 0.89]))
    assert decide(clear) == "cold-start: LM-lora-curves beats LM-frozen"
    overlap = summarise(rows("LM-frozen", [0.90, 0.92]) + rows("LM-lora-curves", [0.85, 0.905]))
    assert decide(overlap) == "cold-start: LM-lora-curves does not beat LM-frozen"
