"""Where the LM trains: device choice, mixed precision, gradient checkpointing, out of memory.

The machine running the suite has no GPU: CUDA is faked with monkeypatch where a rule depends
on it, and the CPU paths are checked against the plain fit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

import torch

from bad_input_support import refused
from salesformer.data.contract import Panel
from salesformer.data.synthetic import generate_catalogue
from salesformer.errors import ConfigError
from salesformer.models.lm import LMForecaster
from salesformer.models.lm.accelerate import CHECKPOINTING_PARAMETERS, Accelerator
from salesformer.models.lm.encoding import trainable_encoder
from salesformer.text.device import DeviceChoice, autocast_dtype, select_device
from salesformer.text.encoder import load_encoder

TINY: dict[str, Any] = {
    "head_epochs": 2,
    "finetune_epochs": 1,
    "epoch_samples": 128,
    "batch_items": 8,
    "origins_per_item": 4,
    "hidden_size": 16,
    "text_size": 4,
    "threads": 1,
}


@pytest.fixture(scope="module")
def panel() -> Panel:
    return generate_catalogue(n_items=12, n_weeks=45, seed=3).panel()


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def test_auto_falls_back_to_the_cpu_with_a_note(no_gpu: None) -> None:
    choice = select_device("auto")
    assert choice.device == "cpu"
    assert choice.note is not None and "no GPU" in choice.note and "\n" not in choice.note
    assert select_device("cpu") == DeviceChoice("cpu")


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "mps"])
def test_a_missing_gpu_asked_for_is_a_one_line_error(no_gpu: None, device: str) -> None:
    with pytest.raises(ConfigError, match="--device cpu") as info:
        select_device(device)
    assert "\n" not in str(info.value)


def test_unknown_device_and_gpu_index_out_of_range(fake_cuda: None) -> None:
    with pytest.raises(ConfigError, match="device must be one of"):
        select_device("tpu")
    with pytest.raises(ConfigError, match="sees 1 CUDA GPU"):
        select_device("cuda:3")
    assert select_device("auto").device == "cuda"


def test_mixed_precision_is_on_for_cuda_only(
    fake_cuda: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    cpu, cuda = DeviceChoice("cpu"), DeviceChoice("cuda")
    assert autocast_dtype(cpu, "auto") is None
    assert autocast_dtype(cuda, "no") is None
    with pytest.raises(ConfigError, match="CUDA GPU only"):
        autocast_dtype(cpu, "bf16")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert autocast_dtype(cuda, "auto") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert autocast_dtype(cuda, "auto") == torch.float16
    assert autocast_dtype(cuda, "bf16") == torch.bfloat16


def test_fp16_scales_the_loss_and_bf16_does_not(
    fake_cuda: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    fp16 = Accelerator.for_settings(LMForecaster(device="cuda"))
    assert fp16.dtype == torch.float16 and fp16.scaler is not None
    bf16 = Accelerator.for_settings(LMForecaster(device="cuda", mixed_precision="bf16"))
    assert bf16.dtype == torch.bfloat16 and bf16.scaler is None
    cpu = Accelerator.for_settings(LMForecaster(device="cpu"))
    assert cpu.dtype is None and cpu.scaler is None and cpu.on_cpu


def test_gradient_checkpointing_by_default_only_for_large_encoders_on_cuda() -> None:
    cuda, cpu = Accelerator(DeviceChoice("cuda")), Accelerator(DeviceChoice("cpu"))
    settings = LMForecaster()
    assert cuda.checkpointing(settings, CHECKPOINTING_PARAMETERS)
    assert not cuda.checkpointing(settings, 22_000_000)
    assert not cpu.checkpointing(settings, 10 * CHECKPOINTING_PARAMETERS)
    assert cpu.checkpointing(LMForecaster(gradient_checkpointing=True), 1)
    assert not cuda.checkpointing(LMForecaster(gradient_checkpointing=False), 10**10)


def test_checkpointed_lora_fit_equals_the_plain_one(
    panel: Panel, tiny_encoder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recomputing activations changes memory, not the numbers (and really is switched on)."""
    from transformers import modeling_utils

    base = load_encoder(tiny_encoder)
    wrapped = trainable_encoder(LMForecaster(encoder=tiny_encoder), base, checkpointing=True)
    assert any(getattr(m, "gradient_checkpointing", False) for m in wrapped.modules())
    plain = LMForecaster(encoder=tiny_encoder, finetune="lora", **TINY).fit(panel)
    calls: list[int] = []
    checkpoint = modeling_utils.checkpoint

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return checkpoint(*args, **kwargs)

    monkeypatch.setattr(modeling_utils, "checkpoint", counted)
    checkpointed = LMForecaster(
        encoder=tiny_encoder, finetune="lora", gradient_checkpointing=True, **TINY
    ).fit(panel)
    assert calls, "the encoder's layers never ran through torch's checkpoint"
    stages = [m.fit_report_["finetune_stage"]["history"] for m in (plain, checkpointed)]
    assert stages[0] == stages[1]
    pd.testing.assert_frame_equal(plain.predict(4), checkpointed.predict(4))


def test_cpu_fit_records_no_device_and_keeps_its_modules_on_the_cpu(
    panel: Panel, tiny_encoder: str, no_gpu: None
) -> None:
    model = LMForecaster(encoder=tiny_encoder, finetune="frozen", **TINY).fit(panel)
    assert "device" not in model.fit_report_  # the CPU report is what it was before devices
    assert all(p.device.type == "cpu" for p in model.head_.parameters())
    with pytest.raises(ConfigError, match="sees no CUDA GPU"):
        LMForecaster(encoder=tiny_encoder, device="cuda", **TINY).fit(panel)


def test_out_of_memory_names_the_settings_to_lower(
    panel: Panel, tiny_encoder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from salesformer.models.lm import training

    def run(self: Any, stage: Any) -> Any:
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(training.Trainer, "run", run)
    with pytest.raises(ConfigError, match="out of memory on cpu while training the head") as info:
        LMForecaster(encoder=tiny_encoder, **TINY).fit(panel)
    message = str(info.value)
    assert "LM.batch_items (now 8)" in message and "gradient_checkpointing" in message
    assert "\n" not in message


def test_cli_refuses_a_missing_gpu_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_gpu: None
) -> None:
    args = ["fit", "--panel", str(tmp_path / "absent"), "--model", "lm", "--out"]
    refused([*args, str(tmp_path / "m"), "--device", "cuda"], capsys, "--device cpu")
    assert not (tmp_path / "m").exists()
    refused([*args, str(tmp_path / "m"), "--device", "gpu"], capsys, "device must be one of")
    refused([*args, str(tmp_path / "m"), "--lora-targets", ","], capsys, "--lora-targets")
    refused(
        [
            "fit",
            "--panel",
            "x",
            "--model",
            "Naive",
            "--out",
            str(tmp_path / "n"),
            "--device",
            "cpu",
        ],
        capsys,
        "apply to the models lm and auto only",
    )


# -- inference: predict, new items, explain and the service on a chosen device -------------


@pytest.fixture(scope="module")
def lora_model(panel: Panel, tiny_encoder: str) -> LMForecaster:
    return LMForecaster(encoder=tiny_encoder, finetune="lora", horizon=4, **TINY).fit(panel)


def _new_items() -> pd.DataFrame:
    return pd.DataFrame(
        {"item_id": ["new-1", "new-2"], "text": ["red wool scarf", "tea mug"], "price": [9.5, 4.0]}
    )


def test_predict_on_the_cpu_equals_the_default(lora_model: LMForecaster, no_gpu: None) -> None:
    default, new_default = lora_model.predict(4), lora_model.predict_new(_new_items(), horizon=4)
    assert lora_model.use_device("cpu") == "cpu"
    pd.testing.assert_frame_equal(lora_model.predict(4), default)
    pd.testing.assert_frame_equal(lora_model.predict_new(_new_items(), horizon=4), new_default)
    assert lora_model.use_device("auto") == "cpu"  # no GPU: auto falls back
    pd.testing.assert_frame_equal(lora_model.predict(4), default)
    with pytest.raises(ConfigError, match="sees no CUDA GPU"):
        lora_model.use_device("cuda")
    assert lora_model.prediction_device_ == "cpu"  # a refused device changes nothing


def test_the_device_branch_moves_inputs_and_returns_cpu_arrays(
    lora_model: LMForecaster, tiny_encoder: str, panel: Panel
) -> None:
    """Without a GPU, 'cpu:0' walks the code of a non-CPU device: the same numbers come back.

    The head, the fine-tuned encoder and the frozen encoder all take the moving branch (the
    inputs ``.to(device)``, the outputs ``.cpu()``); a tensor left behind would raise on a GPU,
    which this machine cannot show: that is checked where a GPU runs the suite.
    """
    from salesformer.explain import explain

    frozen = LMForecaster(encoder=tiny_encoder, finetune="frozen", horizon=4, **TINY).fit(panel)
    item = str(panel.item_ids[0])
    for model in (lora_model, frozen):
        model.prediction_device_ = "cpu"
        expected = (model.predict(4), model.predict_new(_new_items(), horizon=4))
        words = explain(model, item, 4, n_steps=4).words
        model.prediction_device_ = "cpu:0"
        try:
            pd.testing.assert_frame_equal(model.predict(4), expected[0])
            pd.testing.assert_frame_equal(model.predict_new(_new_items(), horizon=4), expected[1])
            pd.testing.assert_frame_equal(explain(model, item, 4, n_steps=4).words, words)
        finally:
            model.prediction_device_ = "cpu"


def test_the_device_is_not_saved(lora_model: LMForecaster, tmp_path: Path, no_gpu: None) -> None:
    import json

    lora_model.use_device("cpu")
    folder = lora_model.save(tmp_path / "m")
    assert "prediction_device" not in (folder / "config.json").read_text()
    assert "prediction_device_" not in json.loads((folder / "config.json").read_text())["params"]
    loaded = LMForecaster.load(folder)
    assert loaded.prediction_device_ == "cpu"
    pd.testing.assert_frame_equal(loaded.predict(4), lora_model.predict(4))


def test_models_without_a_network_ignore_the_device(panel: Panel) -> None:
    from salesformer.models.registry import build_model

    naive = build_model("Naive", horizon=4).fit(panel)
    assert naive.use_device("cuda") is None  # no GPU check either: nothing runs there


def test_predict_explain_and_serve_take_a_device_on_the_command_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    panel: Panel,
    tiny_encoder: str,
    no_gpu: None,
) -> None:
    from bad_input_support import invoke

    panel_dir = panel.save(tmp_path / "panel")
    model_dir = tmp_path / "lm"
    fit = ["fit", "--panel", str(panel_dir), "--model", "lm", "--horizon", "4"]
    fit += ["--finetune", "frozen", "--encoder", tiny_encoder, "--out", str(model_dir)]
    for key, value in TINY.items():
        fit += ["--set", f"{key}={value}"]
    assert invoke(fit, capsys)[0] == 0
    predict = ["predict", "--model", str(model_dir), "--out"]
    assert invoke([*predict, str(tmp_path / "default.csv")], capsys)[0] == 0
    code, _, err = invoke([*predict, str(tmp_path / "auto.csv"), "--device", "auto"], capsys)
    assert code == 0 and "note: no GPU found" in err
    pd.testing.assert_frame_equal(
        pd.read_csv(tmp_path / "auto.csv"), pd.read_csv(tmp_path / "default.csv")
    )
    refused([*predict, str(tmp_path / "c.csv"), "--device", "cuda"], capsys, "--device cpu")
    assert not (tmp_path / "c.csv").exists()
    refused([*predict, str(tmp_path / "g.csv"), "--device", "gpu"], capsys, "device must be")
    new_items = tmp_path / "new.csv"
    _new_items().to_csv(new_items, index=False)
    refused(
        [*predict, str(tmp_path / "n.csv"), "--new-items", str(new_items), "--device", "mps"],
        capsys,
        "no Apple MPS device",
    )
    code, _, _ = invoke(
        [*predict, str(tmp_path / "n.csv"), "--new-items", str(new_items), "--device", "cpu"],
        capsys,
    )
    assert code == 0 and len(pd.read_csv(tmp_path / "n.csv")) == 2 * 4
    refused(
        [*predict, str(tmp_path / "r.csv"), "--engine", "ray", "--device", "cpu"],
        capsys,
        "--device runs on the local engine",
    )
    item = str(panel.item_ids[0])
    explain = ["explain", "--model", str(model_dir), "--item", item, "--steps", "4"]
    refused([*explain, "--device", "cuda"], capsys, "sees no CUDA GPU")
    assert invoke([*explain, "--device", "cpu"], capsys)[0] == 0
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    serve = ["serve", "--model", str(model_dir), "--db", str(tmp_path / "events.db")]
    refused([*serve, "--device", "cuda:0"], capsys, "sees no CUDA GPU")
    assert not (tmp_path / "events.db").exists()


def test_predict_with_a_model_without_a_network_notes_the_device_is_ignored(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], panel: Panel
) -> None:
    from bad_input_support import invoke

    panel_dir = panel.save(tmp_path / "panel")
    fit = ["fit", "--panel", str(panel_dir), "--model", "Naive", "--out", str(tmp_path / "m")]
    assert invoke(fit, capsys)[0] == 0
    code, _, err = invoke(
        [
            "predict",
            "--model",
            str(tmp_path / "m"),
            "--out",
            str(tmp_path / "f.csv"),
            "--device",
            "cpu",
        ],
        capsys,
    )
    assert code == 0 and "--device applies to the LM only; model Naive runs on the CPU" in err


def test_the_service_checks_its_device(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    from salesformer.service.core import ServiceConfig

    with pytest.raises(ConfigError, match="device must be one of"):
        ServiceConfig(model_dir=tmp_path, device="gpu").check()
    assert ServiceConfig(model_dir=tmp_path).device == "cpu"


def test_the_live_service_forecasts_on_its_device(lora_model: LMForecaster, no_gpu: None) -> None:
    pytest.importorskip("fastapi")
    from salesformer.service.live import LiveForecaster

    with pytest.raises(ConfigError, match="sees no CUDA GPU"):
        LiveForecaster(lora_model, "cuda")
    assert LiveForecaster(lora_model, "auto").model.prediction_device_ == "cpu"
