"""The batch size chosen to fit the GPU's memory (``LM.auto_batch``, models/lm/batch_size.py).

The suite has no GPU: the CUDA memory probe is replaced by a fake whose peak grows with the
batch, and out-of-memory stops are raised by a fake step, so the search, the headroom, the
report and the fit that follows run on the CPU. What this cannot show (real peaks, a real
``torch.OutOfMemoryError`` on a GPU) is left to ``python -m benchmarks.gpu_check``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")
pytest.importorskip("peft")

import torch

from salesformer.data.contract import Panel
from salesformer.data.synthetic import generate_catalogue
from salesformer.errors import ConfigError
from salesformer.models.lm import LMForecaster
from salesformer.models.lm import batch_size as batch_size_module
from salesformer.models.lm.batch_size import CudaMemory, device_memory
from salesformer.text.device import DeviceChoice

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
#: Fake bytes one probed item takes at the peak.
PER_ITEM = 1_000_000


@pytest.fixture(scope="module")
def panel() -> Panel:
    return generate_catalogue(n_items=12, n_weeks=45, seed=3).panel()


class FakeMemory:
    """A GPU of ``available`` bytes whose peak is ``PER_ITEM`` per probed item."""

    def __init__(self, available: int) -> None:
        self.bytes = available
        self.items = 0

    def available(self) -> int:
        return self.bytes

    def reset_peak(self) -> None:
        self.items = 0

    def peak(self) -> int:
        return self.items * PER_ITEM

    def release(self) -> None:
        pass


def fake_gpu(
    monkeypatch: pytest.MonkeyPatch, available: int, oom_above: int | None = None
) -> list[int]:
    """Probe on the CPU as if it were a GPU; a step on more than ``oom_above`` items runs out
    of memory. Returns the sizes probed, in order."""
    memory = FakeMemory(available)
    probed: list[int] = []
    real_step = batch_size_module.run_probe_step

    def step(trainer: Any, stage: Any, accelerator: Any, part: Any) -> None:
        items = len(np.unique(part.item))
        probed.append(items)
        if oom_above is not None and items > oom_above:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
        real_step(trainer, stage, accelerator, part)
        memory.items = items

    monkeypatch.setattr(batch_size_module, "device_memory", lambda choice: memory)
    monkeypatch.setattr(batch_size_module, "run_probe_step", step)
    return probed


def histories(model: LMForecaster) -> list[Any]:
    report = model.fit_report_
    return [report["head"]["history"], report["finetune_stage"]["history"]]


def test_out_of_memory_halves_the_batch_and_the_fit_uses_the_size_that_fitted(
    panel: Panel, tiny_encoder: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    by_hand = LMForecaster(
        encoder=tiny_encoder, finetune="lora", auto_batch=False, **{**TINY, "batch_items": 2}
    ).fit(panel)
    probed = fake_gpu(monkeypatch, available=10**12, oom_above=2)
    auto = LMForecaster(encoder=tiny_encoder, finetune="lora", **TINY).fit(panel)
    assert probed == [8, 4, 2, 8, 4, 2]  # head stage, then the LoRA stage
    chosen = auto.fit_report_["auto_batch"]
    assert set(chosen) == {"head", "lora"}
    for stage in chosen.values():
        assert stage["requested"] == 8 and stage["used"] == 2
        assert [t["fits"] for t in stage["tries"]] == [False, False, True]
        assert stage["tries"][0]["peak_bytes"] is None  # out of memory: no peak
    # the probe took no step and drew nothing from the fit's generators: the fit is the one
    # with batch_items=2 set by hand
    assert histories(auto) == histories(by_hand)
    pd.testing.assert_frame_equal(auto.predict(4), by_hand.predict(4))
    folder = auto.save(tmp_path / "m")
    saved = json.loads((folder / "config.json").read_text())
    assert saved["fit_report"]["auto_batch"]["lora"]["used"] == 2
    assert saved["params"]["auto_batch"] is True and saved["params"]["batch_items"] == 8
    loaded = LMForecaster.load(folder)
    assert loaded.fit_report_["auto_batch"] == chosen
    pd.testing.assert_frame_equal(loaded.predict(4), auto.predict(4))


def test_a_batch_over_the_headroom_is_halved_without_running_out(
    panel: Panel, tiny_encoder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 8 items peak at 8 MB, over 80% of 7.5 MB; 4 items (4 MB + the optimizer state) fit
    probed = fake_gpu(monkeypatch, available=7_500_000)
    model = LMForecaster(encoder=tiny_encoder, finetune="frozen", **TINY).fit(panel)
    assert probed == [8, 4]
    head = model.fit_report_["auto_batch"]["head"]
    assert head["used"] == 4
    assert head["tries"][0] == {"batch_items": 8, "peak_bytes": 8 * PER_ITEM, "fits": False}


def test_one_item_that_does_not_fit_is_the_out_of_memory_error(
    panel: Panel, tiny_encoder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    probed = fake_gpu(monkeypatch, available=10**12, oom_above=0)
    with pytest.raises(ConfigError, match="out of memory on cpu while probing") as info:
        LMForecaster(encoder=tiny_encoder, finetune="frozen", **TINY).fit(panel)
    assert probed == [8, 4, 2, 1]
    message = str(info.value)
    assert "LM.batch_items (now 8)" in message and "LM.max_length" in message
    assert "\n" not in message


def test_on_the_cpu_nothing_is_probed_and_the_fit_is_unchanged(
    panel: Panel, tiny_encoder: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_probe(*args: Any) -> None:
        raise AssertionError("the batch size was probed on the CPU")

    monkeypatch.setattr(batch_size_module, "run_probe_step", no_probe)
    auto = LMForecaster(encoder=tiny_encoder, finetune="frozen", device="cpu", **TINY)
    auto.fit(panel)
    off = LMForecaster(
        encoder=tiny_encoder, finetune="frozen", device="cpu", auto_batch=False, **TINY
    ).fit(panel)
    assert "auto_batch" not in auto.fit_report_
    assert auto.fit_report_["head"]["history"] == off.fit_report_["head"]["history"]
    pd.testing.assert_frame_equal(auto.predict(4), off.predict(4))


def test_only_cuda_devices_are_probed() -> None:
    assert device_memory(DeviceChoice("cpu")) is None
    assert device_memory(DeviceChoice("mps")) is None
    memory = device_memory(DeviceChoice("cuda:1"))
    assert isinstance(memory, CudaMemory) and memory.device == torch.device("cuda:1")


def test_auto_batch_is_checked_as_a_boolean() -> None:
    with pytest.raises(ConfigError, match="auto_batch"):
        LMForecaster(auto_batch="yes").check_params()  # type: ignore[arg-type]
