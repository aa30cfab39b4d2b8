"""A training stage's state on disk, to resume an interrupted LM fit (no pickle).

A checkpoint folder holds, beside the model files, ``training_state/``:

* ``state.safetensors``: the modules' current weights (``current/<module>/<name>``; only the
  trainable tensors of the encoder), their best weights so far (``best/...``), the optimizer's
  moment tensors (``optim/<param index>/<name>``), torch's generator state (``torch_rng``) and,
  in stage 2, stage 1's final head (``earlier/head/<name>``);
* ``state.json``: stage, epochs done, history, best loss, early-stopping counters, the
  optimizer's parameter groups and the numpy generator's state.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from salesformer.models.lm.context import StageState
from salesformer.text.encoder import import_torch

STATE_DIR = "training_state"
TENSORS_FILE = "state.safetensors"
META_FILE = "state.json"


def _trainable(module: Any, name: str) -> dict[str, Any]:
    state = module.state_dict()
    if name != "encoder":
        return state
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    return {k: v for k, v in state.items() if k in trainable}


def _plain(value: float) -> float | None:
    return None if math.isinf(value) else float(value)


def _summary(state: StageState) -> dict[str, Any]:
    return {
        "label": state.label,
        "epoch": state.epoch,
        "finished": state.finished,
        "history": state.history,
        "best": _plain(state.best),
        "stale": state.stale,
        "improved": state.improved,
    }


def write_stage(folder: str | Path, state: StageState, earlier: StageState | None) -> Path:
    """Write ``state`` (and stage 1's finished ``earlier``) to ``folder/training_state``."""
    from safetensors.torch import save_file

    torch = import_torch()
    target = Path(folder) / STATE_DIR
    target.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, Any] = {}
    for name, module in state.modules.items():
        for key, value in _trainable(module, name).items():
            tensors[f"current/{name}/{key}"] = value
    for name, best in state.best_states.items():
        for key, value in best.items():
            tensors[f"best/{name}/{key}"] = value
    if earlier is not None:
        for key, value in earlier.best_states["head"].items():
            tensors[f"earlier/head/{key}"] = value
    optimizer = state.optimizer.state_dict()
    for index, slots in optimizer["state"].items():
        for key, value in slots.items():
            tensors[f"optim/{index}/{key}"] = torch.as_tensor(value)
    tensors["torch_rng"] = torch.get_rng_state()
    save_file(
        {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()},
        str(target / TENSORS_FILE),
    )
    meta = {
        **_summary(state),
        "param_groups": optimizer["param_groups"],
        "rng": state.rng.bit_generator.state if state.rng is not None else None,
        "earlier": _summary(earlier) if earlier is not None else None,
    }
    (target / META_FILE).write_text(json.dumps(meta, indent=1) + "\n")
    return target


def read_summary(folder: str | Path) -> dict[str, Any] | None:
    """The stage, epoch and history a checkpoint folder holds, or None without one."""
    path = Path(folder) / STATE_DIR / META_FILE
    if not path.is_file():
        return None
    found: dict[str, Any] = json.loads(path.read_text())
    return found


def _section(tensors: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def _state_from(meta: dict[str, Any], fresh: StageState) -> StageState:
    best = meta["best"]
    return StageState(
        label=meta["label"],
        epoch=int(meta["epoch"]),
        finished=bool(meta["finished"]),
        history=list(meta["history"]),
        best=math.inf if best is None else float(best),
        stale=int(meta["stale"]),
        improved=bool(meta["improved"]),
        modules=fresh.modules,
        optimizer=fresh.optimizer,
        rng=fresh.rng,
    )


def read_stage(folder: str | Path, fresh: StageState) -> StageState | None:
    """Carry on from a checkpoint: the saved state of stage ``fresh.label``, or None.

    When the checkpoint is of this stage, the saved tensors are loaded into ``fresh``'s
    modules and optimizer, and the generators are set to their saved states. A stage-2
    checkpoint asked for stage 1 gives stage 1's finished state (its final head).
    """
    from safetensors.torch import load_file

    meta = read_summary(folder)
    if meta is None:
        return None
    tensors = load_file(str(Path(folder) / STATE_DIR / TENSORS_FILE))
    earlier = meta.get("earlier")
    if meta["label"] != fresh.label:
        if fresh.label == "head" and earlier is not None and earlier["label"] == "head":
            state = _state_from(earlier, fresh)
            state.best_states = {"head": _section(tensors, "earlier/head/")}
            return state
        return None
    state = _state_from(meta, fresh)
    for name, module in fresh.modules.items():
        module.load_state_dict(_section(tensors, f"current/{name}/"), strict=name != "encoder")
    state.best_states = {name: _section(tensors, f"best/{name}/") for name in fresh.modules}
    slots: dict[int, dict[str, Any]] = {}
    for key, value in _section(tensors, "optim/").items():
        index, name = key.split("/", 1)
        slots.setdefault(int(index), {})[name] = value
    fresh.optimizer.load_state_dict({"state": slots, "param_groups": meta["param_groups"]})
    if fresh.rng is not None and meta.get("rng") is not None:
        fresh.rng.bit_generator.state = meta["rng"]
    import_torch().set_rng_state(tensors["torch_rng"])
    return state


__all__ = ["STATE_DIR", "read_stage", "read_summary", "write_stage"]
