"""Saving a fitted LM forecaster to a folder and reading it back, weights and all.

The folder holds ``config.json`` (settings, fitted state, fit report, library versions),
``head.safetensors``, ``item_vectors.safetensors``, the fine-tuned encoder
(``adapter/`` for LoRA, ``encoder.safetensors`` for full fine-tuning), ``panel/`` and the
training curves in ``logs/``. A loaded model predicts exactly as the saved one.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from salesformer._io import atomic_dir
from salesformer.data.contract import Panel
from salesformer.errors import ConfigError, NotFittedError
from salesformer.forecasting.saved import CONFIG_FILE, PANEL_DIR, jsonable, library_versions
from salesformer.models.lm.calibration import QuantileCalibration
from salesformer.models.lm.encoding import cpu_state, import_peft
from salesformer.models.lm.samples import Standardizer
from salesformer.models.lm.training import new_head
from salesformer.models.lm.training_log import LOG_DIR, tensorboard_available, write_history
from salesformer.text.encoder import shared_encoder

if TYPE_CHECKING:
    from salesformer.models.lm.forecaster import LMForecaster

HEAD_FILE = "head.safetensors"
ENCODER_FILE = "encoder.safetensors"
ADAPTER_DIR = "adapter"
VECTORS_FILE = "item_vectors.safetensors"


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
            if model.finetune == "lora":
                model.encoder_model_.save_pretrained(str(staging / ADAPTER_DIR))
            else:
                save_torch(
                    cpu_state(model.encoder_model_.state_dict()), str(staging / ENCODER_FILE)
                )
        model.panel_.save(staging / PANEL_DIR)
        config = {
            "model": "LM",
            "params": jsonable(model.get_params(), model.name),
            "state": {
                "context": model.context_,
                "n_future": int(model.head_.future_proj.in_features),
                "standardizer": model.standardizer_.to_json(),
                "encoder": model.encoder_info_,
                "fine_tuned_encoder": model.encoder_model_ is not None,
                "item_ids": [str(i) for i in model.item_ids_],
                "calibration": model.calibration_.to_json(),
            },
            "fit_report": jsonable(model.fit_report_, model.name),
            "versions": library_versions(),
        }
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2, allow_nan=False) + "\n")
        if tensorboard_available():
            write_history(model.fit_report_, staging / LOG_DIR)
    return target


def load_lm(cls: type[LMForecaster], folder: str | Path, panel: bool = True) -> LMForecaster:
    """Read a model written by :meth:`save`; it predicts exactly as the saved one.

    Args:
        folder: the model folder.
        panel: read the training panel too. With False the model holds no panel (less
            memory) and can only forecast through :meth:`for_items`.
    """
    from safetensors.numpy import load_file
    from safetensors.torch import load_file as load_torch

    path = Path(folder)
    config_path = path / CONFIG_FILE
    if not config_path.is_file():
        raise ConfigError(
            f"no {CONFIG_FILE} in {str(path)!r}; give a folder written by "
            "'salesformer fit' or LMForecaster.save"
        )
    config = json.loads(config_path.read_text())
    if config.get("model") != "LM":
        raise ConfigError(
            f"{str(path)!r} holds a {config.get('model')!r} model, not an LM forecaster"
        )
    params = dict(config["params"])
    for key in ("quantile_levels", "lora_target_modules"):
        params[key] = tuple(params[key])
    model = cls(**params)
    state = config["state"]
    base = shared_encoder(model.encoder, model.max_length)
    saved = state["encoder"]
    if saved["revision"] != base.revision:
        raise ConfigError(
            f"the model was trained with encoder {saved['name']!r} revision "
            f"{saved['revision']}, but revision {base.revision} is installed; install the "
            "same encoder version or refit the model"
        )
    model.encoder_info_ = saved
    model.context_ = int(state["context"])
    model.standardizer_ = Standardizer.from_json(state["standardizer"])
    model.head_ = new_head(model, int(saved["dim"]), int(state["n_future"]))
    model.head_.load_state_dict(load_torch(str(path / HEAD_FILE)))
    model.head_.eval()
    model.encoder_model_ = None
    if state["fine_tuned_encoder"]:
        if model.finetune == "lora":
            peft = import_peft()
            model.encoder_model_ = peft.PeftModel.from_pretrained(
                copy.deepcopy(base.model), str(path / ADAPTER_DIR)
            )
        else:
            encoder_model = copy.deepcopy(base.model)
            encoder_model.load_state_dict(load_torch(str(path / ENCODER_FILE)))
            model.encoder_model_ = encoder_model
        model.encoder_model_.eval()
    model.item_ids_ = np.asarray(state["item_ids"], dtype=str)
    model.calibration_ = QuantileCalibration.from_json(state.get("calibration"), model.levels)
    model.item_vectors_ = load_file(str(path / VECTORS_FILE))["vectors"]
    model.fit_report_ = config.get("fit_report", {})
    if panel:
        model.panel_ = Panel.load(path / PANEL_DIR)
    return model
