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
