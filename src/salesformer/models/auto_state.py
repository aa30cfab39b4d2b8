"""Reading the saved state of an ``auto`` model, checked before any candidate is loaded.

The state names the candidates to load from ``candidates/<name>/``: each name must be a
registered model (never a path), and the weights and choices may only use those candidates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from salesformer.errors import ConfigError
from salesformer.models.registry import available_models


@dataclass(frozen=True)
class AutoState:
    """The fitted attributes of an ``auto`` model, as saved."""

    candidates: list[str]
    weights: dict[str, dict[str, float]]
    choice: dict[str, str]
    segments: pd.Series
    skipped: list[Any]
    report: dict[str, Any]


def read_auto_state(state: Any, folder: Path, own_name: str) -> AutoState:
    """The checked state of a saved ``auto`` model; :class:`ConfigError` says what is wrong."""
    if not isinstance(state, dict):
        raise ConfigError(f"{str(folder)!r} holds an auto model without its state; refit it")
    names = state.get("candidates")
    if not isinstance(names, list) or not all(
        isinstance(n, str) and n in available_models() and n != own_name for n in names
    ):
        raise ConfigError(
            f"{str(folder)!r}: state.candidates must list registered model names; got "
            f"{names!r:.80}; refit the model"
        )
    try:
        read = AutoState(
            candidates=list(names),
            weights={
                str(s): {str(n): float(w) for n, w in ws.items()}
                for s, ws in state["weights"].items()
            },
            choice={str(k): str(v) for k, v in state["choice"].items()},
            segments=pd.Series(state["segments"], name="segment", dtype=str),
            skipped=list(state.get("skipped", [])),
            report=dict(state.get("report", {})),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(
            f"{str(folder)!r}: the auto model's state is malformed ({type(exc).__name__}: "
            f"{exc}); refit the model"
        ) from exc
    used = {n for ws in read.weights.values() for n in ws} | set(read.choice.values())
    if not used <= set(names):
        raise ConfigError(
            f"{str(folder)!r}: the auto model uses {sorted(used - set(names))}, which are not "
            "among its saved candidates; refit the model"
        )
    return read
