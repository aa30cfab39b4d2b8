"""Saving a fitted LM forecaster to a folder and reading it back, weights and all.

The folder holds ``config.json`` (settings, fitted state, fit report, library versions),
``head.safetensors``, ``item_vectors.safetensors``, the fine-tuned encoder
(``adapter/`` for LoRA, ``encoder.safetensors`` for full fine-tuning), ``panel/`` and the
training curves in ``logs/``. A loaded model predicts exactly as the saved one.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from salesformer._io import atomic_dir
from salesformer.data.contract import PANEL_META_FILE, Panel
from salesformer.errors import ConfigError, NotFittedError
from salesformer.forecasting.saved import CONFIG_FILE, PANEL_DIR, jsonable, library_versions
from salesformer.models.lm.calibration import QuantileCalibration
from salesformer.models.lm.encoding import cpu_state, import_peft
from salesformer.models.lm.folder import (
    ADAPTER_DIR,
    BASE_ENCODER_DIR,
    ENCODER_FILE,
    HEAD_FILE,
    HINT,
    VECTORS_FILE,
    check_lm_folder,
    future_width,
)
from salesformer.models.lm.launch import read_launch_blend
from salesformer.models.lm.samples import Standardizer
from salesformer.models.lm.training import new_head
from salesformer.models.lm.training_log import LOG_DIR, tensorboard_available, write_history
from salesformer.text.encoder import is_packaged_encoder, shared_encoder

if TYPE_CHECKING:
    from salesformer.models.lm.forecaster import LMForecaster


def save_lm(model: LMForecaster, folder: str | Path) -> Path:
    """Write the fitted model to ``folder`` (config.json, safetensors, adapter, panel)."""
    if not hasattr(model, "head_"):
        raise NotFittedError("LMForecaster is not fitted yet; call .fit(panel) before .save()")
    from safetensors.numpy import save_file
    from safetensors.torch import save_file as save_torch

    target = Path(folder)
    with atomic_dir(target, kind="model") as staging:
        save_torch(cpu_state(model.head_.state_dict()), str(staging / HEAD_FILE))
        save_file(
            {"vectors": np.ascontiguousarray(model.item_vectors_, dtype=np.float32)},
            str(staging / VECTORS_FILE),
        )
        if model.encoder_model_ is not None:
            if model.adapter_kind == "lora":
                model.encoder_model_.save_pretrained(str(staging / ADAPTER_DIR))
            else:
                save_torch(
                    cpu_state(model.encoder_model_.state_dict()), str(staging / ENCODER_FILE)
                )
        model.panel_.save(staging / PANEL_DIR)
        params = jsonable(model.get_params(), model.name)
        params["encoder"] = _keep_encoder(model.encoder, staging)
        config = {
            "model": "LM",
            "params": params,
            "state": {
                "context": model.context_,
                "n_future": int(model.head_.future_proj.in_features),
                "standardizer": model.standardizer_.to_json(),
                "encoder": model.encoder_info_,
                "fine_tuned_encoder": model.encoder_model_ is not None,
                "item_ids": [str(i) for i in model.item_ids_],
                "calibration": model.calibration_.to_json(),
                "launch_blend": (
                    None if model.launch_blend_ is None else model.launch_blend_.to_json()
                ),
            },
            "fit_report": jsonable(model.fit_report_, model.name),
            "versions": library_versions(),
        }
        if "privacy" in model.fit_report_:  # a private fit: the epsilon, delta and accountant
            config["privacy"] = jsonable(model.fit_report_["privacy"], model.name)
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2, allow_nan=False) + "\n")
        if tensorboard_available():
            write_history(model.fit_report_, staging / LOG_DIR)
    return target


def _keep_encoder(encoder: str, staging: Path) -> str:
    """The encoder as the saved folder names it; a local encoder folder is copied inside.

    A saved model reads its encoder only from a packaged name, a Hugging Face id or a folder
    inside itself (:func:`~salesformer.models.lm.folder.resolve_encoder`), so a model fitted
    with a local encoder folder carries a copy of it in ``base_encoder/``.
    """
    local = Path(encoder).expanduser()
    if is_packaged_encoder(encoder) or not local.is_dir():
        return encoder
    shutil.copytree(local, staging / BASE_ENCODER_DIR, symlinks=False)
    return BASE_ENCODER_DIR


def load_lm(cls: type[LMForecaster], folder: str | Path, panel: bool = True) -> LMForecaster:
    """Read a model written by :meth:`save`; it predicts exactly as the saved one.

    The folder is checked first (:func:`~salesformer.models.lm.folder.check_lm_folder`:
    config schema, encoder inside the folder, whole safetensors of the right shapes); only
    then is the encoder loaded and the weights read.

    Args:
        folder: the model folder.
        panel: read the training panel too. With False the model holds no panel (less
            memory) and can only forecast through :meth:`for_items`.

    Raises:
        ConfigError: a folder that is not a whole LM folder, with what is wrong in it.
    """
    path = Path(folder)
    checked = check_lm_folder(cls, path)
    state = checked.state
    model = cls(**{**checked.params, "encoder": checked.encoder})
    try:
        model.standardizer_ = Standardizer.from_json(state["standardizer"])
        model.calibration_ = QuantileCalibration.from_json(state.get("calibration"), model.levels)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(
            f"{str(path / CONFIG_FILE)!r}: state.standardizer or state.calibration is "
            f"malformed ({type(exc).__name__}: {exc}); {HINT}"
        ) from exc
    loaded_panel = Panel.load(path / PANEL_DIR) if panel else None
    if loaded_panel is not None:
        _check_items(path, state["item_ids"], loaded_panel)
        shape: tuple[str, tuple[str, ...]] | None = (
            loaded_panel.freq,
            tuple(loaded_panel.known_future),
        )
    else:  # parts bring their own panel: check against the saved panel's metadata
        shape = _saved_panel_shape(path / PANEL_DIR)
    if shape is not None:
        _check_future_inputs(path, state, model.standardizer_, *shape)
    base = shared_encoder(model.encoder, model.max_length, model.pooling)
    saved = state["encoder"]
    if saved["revision"] != base.revision:
        raise ConfigError(
            f"the model was trained with encoder {saved['name']!r} revision "
            f"{saved['revision']}, but revision {base.revision} is installed; install the "
            "same encoder version or refit the model"
        )
    model.encoder_info_ = saved
    model.context_ = int(state["context"])
    model.head_ = new_head(model, int(saved["dim"]), int(state["n_future"]))
    model.head_.load_state_dict(_read_weights(path / HEAD_FILE, torch=True))
    model.head_.eval()
    model.encoder_model_ = None
    if state["fine_tuned_encoder"]:
        model.encoder_model_ = _fine_tuned_encoder(model, base, path)
        model.encoder_model_.eval()
    model.item_ids_ = np.asarray(state["item_ids"], dtype=str)
    model.item_vectors_ = _read_weights(path / VECTORS_FILE, torch=False)["vectors"]
    model.fit_report_ = checked.config.get("fit_report") or {}
    model.launch_blend_ = read_launch_blend(state.get("launch_blend"), path / CONFIG_FILE)
    if loaded_panel is not None:
        model.panel_ = loaded_panel
    return model


def _saved_panel_shape(folder: Path) -> tuple[str, tuple[str, ...]] | None:
    """The saved panel's frequency and known-future names from its metadata, if readable.

    An unreadable file is left to the panel's own loading, which reports it.
    """
    try:
        meta = json.loads((folder / PANEL_META_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(meta, dict) or not isinstance(meta.get("freq"), str):
        return None
    known = meta.get("known_future") or []
    if not isinstance(known, list):
        return None
    return str(meta["freq"]), tuple(str(name) for name in known)


def _check_future_inputs(
    path: Path, state: dict[str, Any], standardizer: Standardizer, freq: str, known: tuple[str, ...]
) -> None:
    """The head's future inputs match the saved panel's covariates and calendar."""
    if tuple(standardizer.names) != known:
        raise ConfigError(
            f"{str(path / CONFIG_FILE)!r}: state.standardizer.names "
            f"{list(standardizer.names)} are not the saved panel's known-future "
            f"covariates {list(known)}; {HINT}"
        )
    width = future_width(freq, standardizer.harmonics, len(standardizer.names))
    if int(state["n_future"]) != width:
        raise ConfigError(
            f"{str(path / CONFIG_FILE)!r}: state.n_future is {state['n_future']}, but the "
            f"saved panel ({freq}) gives {width} future inputs; {HINT}"
        )


def _check_items(path: Path, item_ids: list[str], panel: Panel) -> None:
    """The saved item list and the saved panel name the same items."""
    saved = set(item_ids)
    in_panel = {str(i) for i in panel.item_ids}
    if saved != in_panel:
        only_config = sorted(saved - in_panel)[:3]
        only_panel = sorted(in_panel - saved)[:3]
        raise ConfigError(
            f"{str(path / CONFIG_FILE)!r}: state.item_ids ({len(saved)} items) does not match "
            f"the saved panel ({len(in_panel)} items; only in config {only_config}, only in "
            f"panel {only_panel}); {HINT}"
        )


def _read_weights(path: Path, torch: bool) -> dict[str, Any]:
    """A checked safetensors file's tensors; a read error becomes a :class:`ConfigError`."""
    from safetensors.numpy import load_file
    from safetensors.torch import load_file as load_torch

    try:
        return dict(load_torch(str(path)) if torch else load_file(str(path)))
    except (OSError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"cannot read {str(path)!r} ({type(exc).__name__}); {HINT}") from exc


def _fine_tuned_encoder(model: LMForecaster, base: Any, path: Path) -> Any:
    """The fine-tuned encoder: the base with the saved LoRA adapter, or the saved weights."""
    try:
        if model.adapter_kind == "lora":
            peft = import_peft()
            return peft.PeftModel.from_pretrained(
                copy.deepcopy(base.model), str(path / ADAPTER_DIR)
            )
        encoder_model = copy.deepcopy(base.model)
        encoder_model.load_state_dict(_read_weights(path / ENCODER_FILE, torch=True))
        return encoder_model
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(
            f"the fine-tuned encoder in {str(path)!r} does not fit the base encoder "
            f"({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}); "
            f"{HINT}"
        ) from exc
