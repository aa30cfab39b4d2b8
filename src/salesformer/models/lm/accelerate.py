"""The LM's training on a device: where tensors go, mixed precision, checkpointing, OOM.

On a CPU with the default settings nothing here changes a number: tensors stay where they
are, no autocast, no loss scaling, no checkpointing (``tests/test_lm_device.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from salesformer.text.device import (
    DeviceChoice,
    autocast_dtype,
    empty_cache,
    is_out_of_memory,
    out_of_memory_error,
    select_device,
)

if TYPE_CHECKING:
    from salesformer.models.lm.settings import LMSettings

#: Encoders at least this large fine-tune with gradient checkpointing on a CUDA GPU by default.
CHECKPOINTING_PARAMETERS = 300_000_000


@dataclass
class Accelerator:
    """Where one fit trains and how: the device, the autocast dtype and the loss scaler."""

    choice: DeviceChoice
    dtype: Any = None
    scaler: Any = None

    @classmethod
    def for_settings(cls, settings: LMSettings) -> Accelerator:
        """The accelerator of ``settings.device`` and ``settings.mixed_precision``."""
        choice = select_device(settings.device)
        dtype = autocast_dtype(choice, settings.mixed_precision)
        scaler = None
        if dtype is not None:
            import torch

            if dtype == torch.float16:  # fp16 underflows without loss scaling; bf16 does not
                scaler = torch.amp.GradScaler("cuda")
        return cls(choice, dtype, scaler)

    @property
    def device(self) -> str:
        return self.choice.device

    @property
    def on_cpu(self) -> bool:
        return self.choice.device == "cpu"

    def put(self, value: Any) -> Any:
        """A tensor or module on the device (the same object on the CPU)."""
        return value if self.on_cpu else value.to(self.device)

    def autocast(self) -> Any:
        """Mixed precision for the forward pass where it is on; else nothing."""
        if self.dtype is None:
            return contextlib.nullcontext()
        import torch

        return torch.autocast(device_type="cuda", dtype=self.dtype)

    def backward(self, loss: Any) -> None:
        """``loss.backward()``, scaled when fp16 needs it."""
        (loss if self.scaler is None else self.scaler.scale(loss)).backward()

    def step(self, optimizer: Any, parameters: list[Any], grad_clip: float) -> None:
        """Clip the gradients to ``grad_clip`` and take the optimizer step (unscaled first)."""
        import torch

        if self.scaler is not None:
            self.scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
        if self.scaler is None:
            optimizer.step()
        else:
            self.scaler.step(optimizer)
            self.scaler.update()

    def checkpointing(self, settings: LMSettings, encoder_parameters: int) -> bool:
        """Whether fine-tuning recomputes the encoder's activations (saves memory).

        ``gradient_checkpointing`` True or False decides; None turns it on for encoders of
        :data:`CHECKPOINTING_PARAMETERS` or more on a CUDA GPU only.
        """
        if settings.gradient_checkpointing is not None:
            return bool(settings.gradient_checkpointing)
        return self.choice.is_cuda and encoder_parameters >= CHECKPOINTING_PARAMETERS

    @contextlib.contextmanager
    def memory_guard(self, settings: LMSettings, what: str) -> Iterator[None]:
        """Turn an out-of-memory stop into a one-line error naming the settings to lower."""
        try:
            yield
        except (RuntimeError, MemoryError) as exc:
            if not (isinstance(exc, MemoryError) or is_out_of_memory(exc)):
                raise
            empty_cache(self.choice)
            lower = {
                "LM.batch_items": settings.batch_items,
                "LM.origins_per_item": settings.origins_per_item,
                "LM.max_length": settings.max_length,
            }
            raise out_of_memory_error(self.device, what, lower) from exc

    def report(self, checkpointing: bool) -> dict[str, Any]:
        """What the fit report records about the device."""
        precision = "no" if self.dtype is None else str(self.dtype).removeprefix("torch.")
        return {
            "device": self.device,
            "mixed_precision": precision,
            "loss_scaling": self.scaler is not None,
            "gradient_checkpointing": checkpointing,
        }
