"""The batch size that fits the GPU's memory: probed before a training stage on CUDA.

With ``auto_batch`` on (the default) and a CUDA device, each stage first runs one forward
and backward pass on a batch of ``batch_items`` items (the items with the longest texts, so
that later batches need no more), measures the peak memory it took, adds the optimizer's
state, and keeps the size when that stays under :data:`HEADROOM` of the memory torch may use;
else it halves the size (also when torch runs out of memory) and tries again. The stage then
trains with the largest size that fitted. One item that does not fit is the one-line
out-of-memory error naming the settings to lower.

The probe takes no optimizer step and leaves every random generator as it found it, so a fit
with a probed size equals a fit with that ``batch_items`` set by hand. On a CPU or MPS nothing
is probed: the batch size is ``batch_items``, and the fit is the one it always was.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from salesformer.text.device import is_out_of_memory, out_of_memory_error

if TYPE_CHECKING:
    from salesformer.models.lm.accelerate import Accelerator
    from salesformer.models.lm.training import Stage, Trainer
    from salesformer.text.device import DeviceChoice

#: Share of the device memory a probed batch may take at its peak, optimizer state included;
#: the rest is headroom for fragmentation and for batches with more launch samples.
HEADROOM = 0.8
#: Bytes of AdamW state per trainable parameter byte (two moments) before its first step.
OPTIMIZER_STATE = 2


class CudaMemory:
    """Peak and available memory of one CUDA device, through ``torch.cuda``."""

    def __init__(self, device: str) -> None:
        import torch

        self.torch = torch
        self.device = torch.device(device)

    def available(self) -> int:
        """Bytes this process may use: free now plus what torch already holds."""
        free, _ = self.torch.cuda.mem_get_info(self.device)
        return int(free) + int(self.torch.cuda.memory_reserved(self.device))

    def reset_peak(self) -> None:
        self.torch.cuda.reset_peak_memory_stats(self.device)

    def peak(self) -> int:
        return int(self.torch.cuda.max_memory_allocated(self.device))

    def release(self) -> None:
        self.torch.cuda.empty_cache()


def device_memory(choice: DeviceChoice) -> CudaMemory | None:
    """The memory probe of ``choice``: CUDA only (None: the batch size is not probed)."""
    return CudaMemory(choice.device) if choice.is_cuda else None


@dataclass
class BatchChoice:
    """Sizes tried for one stage and the one kept (the fit report's ``auto_batch``)."""

    stage: str
    requested: int
    used: int = 0
    tries: list[dict[str, Any]] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {"requested": self.requested, "used": self.used, "tries": self.tries}


def fitting_batch_items(trainer: Trainer, stage: Stage, report: dict[str, Any]) -> int:
    """Items per batch for ``stage``: ``batch_items``, halved until a probe fits the GPU.

    Adds ``report["auto_batch"][stage.label]`` (sizes tried, peak bytes, the size kept)
    when it probed; returns ``batch_items`` untouched when ``auto_batch`` is off or the
    device is not a CUDA GPU.

    Raises:
        ConfigError: one item per batch does not fit (the out-of-memory error).
    """
    model = trainer.model
    accelerator = trainer.accelerator
    if accelerator is None or not model.auto_batch or model.private:
        return int(model.batch_items)
    memory = device_memory(accelerator.choice)
    if memory is None:
        return int(model.batch_items)
    choice = BatchChoice(stage.label, int(model.batch_items))
    budget = HEADROOM * memory.available()
    state = OPTIMIZER_STATE * sum(p.numel() * p.element_size() for p in stage.parameters)
    size = choice.requested
    while size >= 1:
        peak = _probe(trainer, stage, accelerator, memory, size)
        fits = peak is not None and peak + state <= budget
        choice.tries.append({"batch_items": size, "peak_bytes": peak, "fits": fits})
        if fits:
            break
        size //= 2
    # every rank of a data-parallel group must draw the same batches: the smallest size wins
    # (and no rank raises before the others have agreed)
    choice.used = trainer.context.smallest(size)
    if choice.used < 1:
        lower = {
            "LM.batch_items": model.batch_items,
            "LM.origins_per_item": model.origins_per_item,
            "LM.max_length": model.max_length,
        }
        what = f"probing the batch size ({stage.label})"
        raise out_of_memory_error(accelerator.device, what, lower)
    report.setdefault("auto_batch", {})[stage.label] = choice.record()
    return choice.used


def _probe(
    trainer: Trainer, stage: Stage, accelerator: Accelerator, memory: CudaMemory, size: int
) -> int | None:
    """Peak bytes of one forward and backward pass on ``size`` items; None when out of memory.

    Draws the batch with its own generator and restores torch's random state afterwards;
    the gradients are dropped, no step is taken.
    """
    torch = trainer.torch
    cpu_rng = torch.random.get_rng_state()
    cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    rng = np.random.default_rng(0)
    group = _longest_texts(trainer, size)
    part, _ = trainer.context.shard(trainer.plan.group_samples(trainer.model, group, rng))
    memory.release()
    memory.reset_peak()
    try:
        run_probe_step(trainer, stage, accelerator, part)
        return memory.peak()
    except (RuntimeError, MemoryError) as exc:
        if not (isinstance(exc, MemoryError) or is_out_of_memory(exc)):
            raise
        return None
    finally:
        stage.optimizer.zero_grad(set_to_none=True)
        memory.release()
        torch.random.set_rng_state(cpu_rng)
        if cuda_rng is not None:
            torch.cuda.set_rng_state_all(cuda_rng)


def run_probe_step(trainer: Trainer, stage: Stage, accelerator: Accelerator, part: Any) -> None:
    """The forward and backward pass of a training step, without the optimizer step."""
    from salesformer.models.lm.encoding import checkpointed_layers_train

    trainer.head.train()  # the modes of a training epoch (which sets them again itself)
    if "encoder" in stage.modules:
        stage.modules["encoder"].eval()
        checkpointed_layers_train(stage.modules["encoder"])
    with accelerator.autocast():
        loss = trainer._loss(part, stage.batch_text(part))
    loss.backward()


def _longest_texts(trainer: Trainer, size: int) -> np.ndarray:
    """``size`` training items with the most tokens (ties: the plan's order)."""
    items = np.asarray(trainer.plan.items)
    tokens = getattr(trainer.model, "tokens_", None)
    if tokens is None or not len(items):
        return items[:size]
    lengths = tokens["attention_mask"].sum(dim=1).numpy()[items]
    order = np.argsort(-lengths, kind="stable")
    return items[order[:size]]
