"""Differentially private LM fits: the budget spent, refused budgets and settings, per-item units.

A tiny random BERT (``tiny_encoder``) and the small synthetic catalogue keep every fit to a few
seconds; what is checked is the privacy machinery, not accuracy.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("opacus")

from salesformer.cli.main import run
from salesformer.data.contract import Panel
from salesformer.errors import ConfigError
from salesformer.models.lm import LMForecaster
from salesformer.models.lm.private import check_units, sum_per_unit

TINY: dict[str, Any] = {
    "head_epochs": 2,
    "finetune_epochs": 1,
    "batch_items": 16,
    "origins_per_item": 4,
    "hidden_size": 32,
    "text_size": 8,
    "threads": 1,
    "progress": False,
}


@pytest.fixture(scope="module")
def private(small_panel: Panel, tiny_encoder: str) -> LMForecaster:
    model = LMForecaster(encoder=tiny_encoder, finetune="frozen", dp_epsilon=4.0, **TINY)
    return model.fit(small_panel)


def test_private_fit_spends_at_most_the_requested_epsilon(private: LMForecaster) -> None:
    spent = private.fit_report_["privacy"]
    assert spent["accountant"] == "rdp" and spent["delta"] == 1e-5
    # within the budget, and close to it: the noise is not wastefully large
    assert 3.0 < spent["epsilon"] <= 4.0
    assert spent["noise_multiplier"] > 0 and spent["steps"] == 2 * 3  # 40 items / 16 per step


def test_the_privacy_unit_is_the_item(private: LMForecaster) -> None:
    spent = private.fit_report_["privacy"]
    assert spent["unit"] == "item"
    assert spent["units"] == private.fit_report_["train_items"] == 40
    # each item brings 4 windows (and launches one more), but is one unit of the step
    assert spent["mean_windows_per_step"] >= 4 * spent["mean_units_per_step"] > 0


def test_private_fit_learns_nothing_from_the_panel_as_a_whole(private: LMForecaster) -> None:
    report = private.fit_report_
    assert report["validation_samples"] == 0 and report["validation_origin"] is None
    assert report["calibration"] == {"skipped": "no validation"}
    assert len(report["head"]["history"]) == 2  # every epoch runs: no early stopping
    assert all(v == 0.0 for v in private.standardizer_.mean.values())


def test_saved_config_records_the_privacy_spent(private: LMForecaster, tmp_path: Path) -> None:
    folder = private.save(tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    assert config["privacy"] == private.fit_report_["privacy"]
    assert config["params"]["dp_epsilon"] == 4.0
    loaded = LMForecaster.load(folder)
    np.testing.assert_array_equal(loaded.predict(4)["LM"], private.predict(4)["LM"])


def test_private_lora_fit_stays_within_budget(small_panel: Panel, tiny_encoder: str) -> None:
    model = LMForecaster(
        encoder=tiny_encoder, finetune="lora", dp_epsilon=2.0, dp_accountant="prv", **TINY
    ).fit(small_panel)
    spent = model.fit_report_["privacy"]
    assert spent["accountant"] == "prv" and spent["epsilon"] <= 2.0
    assert spent["steps"] == 3 * 3  # two head epochs and one LoRA epoch, three steps each
    assert model.encoder_model_ is not None  # the adapter trained under DP is kept
    # PEFT starts each lora_B at zero: non-zero ones are the DP optimizer's steps on the adapter
    adapters = [p for n, p in model.encoder_model_.named_parameters() if "lora_B" in n]
    assert adapters and all(float(p.detach().abs().sum()) > 0 for p in adapters)


def test_impossible_budget_is_refused_before_training(
    small_panel: Panel, tiny_encoder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import salesformer.models.lm.training as training

    def no_training(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("training started")

    monkeypatch.setattr(training, "texts_for", no_training)  # the first step after the check
    monkeypatch.setattr(training, "train_private", no_training)
    settings = {**TINY, "head_epochs": 200, "batch_items": 4}
    model = LMForecaster(encoder=tiny_encoder, finetune="frozen", dp_epsilon=0.05, **settings)
    with pytest.raises(ConfigError, match=r"epsilon 0.05 .* cannot be met with 40 items"):
        model.fit(small_panel)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"dp_epsilon": 0.0}, "dp_epsilon must be None or a number > 0; got 0"),
        ({"dp_epsilon": -1.0}, "dp_epsilon must be None or a number > 0"),
        ({"dp_epsilon": 1.0, "dp_delta": 0.0}, r"dp_delta must lie in \(0, 1\); got 0"),
        ({"dp_epsilon": 1.0, "dp_delta": 1.0}, r"dp_delta must lie in \(0, 1\); got 1"),
        ({"dp_epsilon": 1.0, "dp_max_grad_norm": 0.0}, "dp_max_grad_norm must be a number > 0"),
        ({"dp_epsilon": 1.0, "dp_accountant": "gdp"}, "dp_accountant must be one of"),
        ({"dp_epsilon": 1.0, "finetune": "full"}, "finetune='full' cannot train with"),
    ],
)
def test_bad_privacy_settings_are_refused(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LMForecaster(**settings).check_params()


def test_windows_of_one_item_give_one_gradient() -> None:
    """The per-window gradients of an item sum to the gradient of the item's whole loss."""
    import torch
    from opacus import GradSampleModule

    torch.manual_seed(0)
    layer = torch.nn.Linear(3, 2)
    wrapped = GradSampleModule(layer, loss_reduction="sum")
    x = torch.randn(5, 3)
    unit = torch.tensor([0, 1, 0, 2, 1])  # five windows of three items
    with pytest.warns(UserWarning, match="Full backward hook"):  # x needs no gradient
        wrapped(x).pow(2).sum().backward()
    params = [layer.weight, layer.bias]
    sum_per_unit(params, unit, 3)
    check_units(params, 3)
    per_item = [p.grad_sample.clone() for p in params]
    wrapped._close()  # plain autograd from here on
    for item in range(3):
        layer.zero_grad()
        layer(x[unit == item]).pow(2).sum().backward()
        for summed, p in zip(per_item, params, strict=True):
            torch.testing.assert_close(summed[item], p.grad)


def test_check_units_refuses_per_window_gradients() -> None:
    import torch

    weight = torch.nn.Parameter(torch.zeros(2, 3))
    weight.grad_sample = torch.zeros(5, 2, 3)  # type: ignore[attr-defined]
    with pytest.raises(RuntimeError, match=r"5 per-sample gradients .* for 3 items"):
        check_units([weight], 3)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--dp-epsilon", "0"], "--dp-epsilon must be > 0"),
        (["--dp-epsilon", "1", "--dp-delta", "1.5"], r"--dp-delta must lie in \(0, 1\)"),
        (["--dp-delta", "1e-5"], "--dp-delta needs --dp-epsilon"),
        (["--dp-epsilon", "1", "--model", "auto"], "applies to --model lm only"),
    ],
)
def test_fit_refuses_bad_privacy_options(
    extra: list[str],
    message: str,
    small_panel: Panel,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    small_panel.save(tmp_path / "panel")
    args = ["fit", "--panel", str(tmp_path / "panel"), "--out", str(tmp_path / "m")]
    if "--model" not in extra:
        args += ["--model", "lm"]
    with pytest.raises(SystemExit) as info:
        run([*args, *extra])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and "Traceback" not in err
    assert len(err.splitlines()) == 1 and message.replace("\\", "") in err.replace("\\", "")
    assert not (tmp_path / "m").exists()


def test_fit_shows_the_privacy_spent(
    small_panel: Panel, tiny_encoder: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small_panel.save(tmp_path / "panel")
    args = ["fit", "--panel", str(tmp_path / "panel"), "--out", str(tmp_path / "m")]
    args += ["--model", "lm", "--finetune", "frozen", "--encoder", tiny_encoder, "--horizon", "4"]
    args += ["--dp-epsilon", "8", "--dp-delta", "1e-6"]
    for key, value in TINY.items():
        args += ["--set", f"lm.{key}={value}"]
    with pytest.raises(SystemExit) as info:
        run(args)
    out = capsys.readouterr().out
    assert info.value.code in (0, None), out
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    spent = config["privacy"]
    assert spent["delta"] == 1e-6 and spent["epsilon"] <= 8.0
    assert f"differential privacy: epsilon {spent['epsilon']:g} spent of 8" in out
