"""Where the language model runs: device choice, mixed precision, out-of-memory messages.

``--device auto`` (the default) takes a CUDA GPU when torch sees one, else Apple's MPS, else
the CPU, with a one-line note saying why. Asking for ``cuda`` or ``mps`` where there is none
is a one-line error. Mixed precision (bf16 where the GPU supports it, else fp16 with loss
scaling) and gradient checkpointing only ever switch on for CUDA, so on a CPU the default
settings compute exactly what they did before devices existed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from salesformer.errors import ConfigError

#: What ``--device`` accepts (``cuda:N`` picks one GPU too).
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda", "mps")
#: What ``mixed_precision`` accepts.
PRECISIONS: tuple[str, ...] = ("auto", "no", "bf16", "fp16")


def valid_device(value: object) -> bool:
    """Whether ``value`` names a device (``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``)."""
    if not isinstance(value, str):
        return False
    if value in DEVICES:
        return True
    prefix, _, index = value.partition(":")
    return prefix == "cuda" and index.isdigit()


@dataclass(frozen=True)
class DeviceChoice:
    """The device a run uses and, where ``auto`` fell back, the note saying why."""

    device: str
    note: str | None = None

    @property
    def is_cuda(self) -> bool:
        return self.device.startswith("cuda")


def _mps_available(torch: Any) -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def select_device(requested: str = "auto") -> DeviceChoice:
    """The device for ``requested``; ``auto`` falls back to the CPU with a note.

    Raises:
        ConfigError: an unknown device name, or ``cuda`` / ``mps`` where torch has none.
    """
    if not valid_device(requested):
        raise ConfigError(
            f"device must be one of {list(DEVICES)} or cuda:N; got {requested!r}; "
            "use --device auto to take a GPU when there is one"
        )
    import torch

    cuda = bool(torch.cuda.is_available())
    if requested == "auto":
        if cuda:
            return DeviceChoice("cuda")
        if _mps_available(torch):
            return DeviceChoice("mps")
        return DeviceChoice(
            "cpu", "no GPU found (torch sees no CUDA or MPS device); the LM runs on the CPU"
        )
    if requested.startswith("cuda"):
        if not cuda:
            raise ConfigError(
                f"device {requested!r} was asked for, but torch {torch.__version__} sees no "
                "CUDA GPU (a CPU build of torch, no driver, or no GPU); use --device cpu or "
                "auto, or install a CUDA build of torch on a GPU machine"
            )
        index = int(requested.partition(":")[2] or 0)
        count = int(torch.cuda.device_count())
        if index >= count:
            raise ConfigError(
                f"device {requested!r} was asked for, but torch sees {count} CUDA GPU(s) "
                f"(cuda:0 to cuda:{count - 1}); pick one of them or use --device cuda"
            )
    if requested == "mps" and not _mps_available(torch):
        raise ConfigError(
            "device 'mps' was asked for, but torch sees no Apple MPS device; "
            "use --device cpu or auto"
        )
    return DeviceChoice(requested)


def autocast_dtype(choice: DeviceChoice, precision: str) -> Any:
    """The torch dtype of mixed precision on ``choice``, or None for full float32.

    ``auto`` is bf16 on a CUDA GPU that supports it, fp16 on one that does not, and off
    elsewhere. ``bf16`` / ``fp16`` on a non-CUDA device is a :class:`ConfigError`.
    """
    if precision not in PRECISIONS:
        raise ConfigError(
            f"mixed_precision must be one of {list(PRECISIONS)}; got {precision!r}; "
            "use auto (bf16 or fp16 on a CUDA GPU, off elsewhere)"
        )
    if precision == "no" or (precision == "auto" and not choice.is_cuda):
        return None
    import torch

    if not choice.is_cuda:
        raise ConfigError(
            f"mixed_precision={precision!r} runs on a CUDA GPU only; the device is "
            f"{choice.device!r}; use mixed_precision=auto or no, or --device cuda"
        )
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if precision == "bf16" else torch.float16


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is torch running out of accelerator memory."""
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", ())
    if oom and isinstance(exc, oom):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def out_of_memory_error(device: str, what: str, settings: dict[str, Any]) -> ConfigError:
    """The one-line error for an out-of-memory stop: what ran out and which settings to lower.

    Args:
        device: the device that ran out.
        what: the work that was running (``"fine-tuning the encoder"``).
        settings: the settings worth lowering, with their current values.
    """
    lower = ", ".join(f"{name} (now {value})" for name, value in settings.items())
    return ConfigError(
        f"out of memory on {device} while {what}; lower {lower}, or set "
        "LM.gradient_checkpointing=true, or use --finetune lora / frozen"
    )


def empty_cache(choice: DeviceChoice) -> None:
    """Release cached GPU memory after an out-of-memory stop (nothing on a CPU)."""
    if choice.is_cuda:
        import torch

        torch.cuda.empty_cache()
