"""Saving a fitted forecaster to a folder and reading it back, for every registered model.

A saved model is a folder with ``config.json``::

    {"model": "<registered name>", "params": {<settings>}, "versions": {...}, "format": 1}

and ``panel/``, the training panel (:meth:`Panel.save`). What else it holds depends on the model:

- ``LM`` (:class:`~salesformer.models.lm.LMForecaster`) writes its own folder with
  :meth:`LMForecaster.save` (safetensors head, LoRA adapter, item vectors, the encoder
  revision) and is read with :meth:`LMForecaster.load`: its trained weights are kept.
- ``auto`` (:class:`~salesformer.models.auto.AutoForecaster`) keeps its choices, weights,
  segments and report in ``config.json`` and each candidate in use in ``candidates/<name>/``,
  saved by :func:`save_model` (so an LM candidate keeps its weights). Loading rebuilds the
  fitted ``auto`` from these parts without fitting anything but the candidates below.
- Every other model (the statistical baselines, LightGBM, LightGBM-text) is saved as its
  settings and training panel only, and **refitted when loaded**. These models are
  deterministic (the contract suite checks that two fits give identical forecasts), so the
  loaded model forecasts exactly as the saved one, at the cost of one fit.

Nothing is pickled; folders are written atomically (:func:`salesformer._io.atomic_dir`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pandas as pd

from salesformer._io import atomic_dir
from salesformer._version import __version__
from salesformer.data.contract import Panel
from salesformer.errors import ConfigError, NotFittedError
from salesformer.forecasting.protocol import Forecaster
from salesformer.forecasting.saved import (
    CONFIG_FILE,
    FORMAT,
    PANEL_DIR,
    jsonable,
    library_versions,
)
from salesformer.models.registry import available_models, make_model, resolve_name

CANDIDATES_DIR = "candidates"
LM = "LM"
AUTO = "auto"


def save_model(model: Forecaster, folder: str | Path) -> Path:
    """Write a fitted forecaster to ``folder`` (see the module docstring for the layout).

    Args:
        model: a fitted forecaster of a registered model.
        folder: the folder to write; created or replaced, atomically.

    Returns:
        The folder.

    Raises:
        NotFittedError: when the model was not fitted.
        ConfigError: when the model is not registered or a setting cannot be written as JSON.
    """
    name = registered_name(model)
    if not hasattr(model, "panel_"):
        raise NotFittedError(
            f"{type(model).__name__} is not fitted yet; call .fit(panel) before saving it"
        )
    if name == LM:
        saved: Path = model.save(folder)  # type: ignore[attr-defined]
        return saved
    config: dict[str, Any] = {
        "model": name,
        "params": jsonable(model.get_params(), name),
        "versions": library_versions(),
        "format": FORMAT,
    }
    target = Path(folder)
    with atomic_dir(target) as staging:
        model.panel_.save(staging / PANEL_DIR)
        if name == AUTO:
            config["state"] = _auto_state(model)
            for candidate, fitted in model.models_.items():  # type: ignore[attr-defined]
                save_model(fitted, staging / CANDIDATES_DIR / candidate)
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    return target


def load_model(folder: str | Path) -> Forecaster:
    """Read a model written by :func:`save_model`; it forecasts as the saved one did.

    Raises:
        ConfigError: when ``folder`` is missing or is not a saved model.
    """
    path = Path(folder)
    config = read_config(path)
    name = config["model"]
    if name == LM:
        from salesformer.models.lm import LMForecaster

        return LMForecaster.load(path)
    params = coerce_params(name, config.get("params") or {})
    model = make_model(name, **params)
    panel = Panel.load(path / PANEL_DIR)
    if name == AUTO:
        _restore_auto(model, panel, path, config)
        return model
    return model.fit(panel)


def read_config(folder: Path) -> dict[str, Any]:
    """The ``config.json`` of a saved model, checked; a :class:`ConfigError` says what is wrong."""
    hint = "give a folder written by 'salesformer fit' (or save_model)"
    if not folder.is_dir():
        raise ConfigError(f"model folder {str(folder)!r} does not exist; {hint}")
    config_path = folder / CONFIG_FILE
    if not config_path.is_file():
        found = sorted(p.name for p in folder.iterdir())[:8]
        raise ConfigError(
            f"{str(folder)!r} is not a saved model: no {CONFIG_FILE} (found {found}); {hint}"
        )
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{str(config_path)!r} is not valid JSON ({exc}); {hint}") from exc
    if not isinstance(config, dict) or "model" not in config:
        raise ConfigError(f"{str(config_path)!r} names no model; {hint}")
    if str(config["model"]) not in available_models():
        raise ConfigError(
            f"{str(folder)!r} holds an unknown model {config['model']!r}; this salesformer "
            f"reads {', '.join(available_models())}; {hint}"
        )
    version = config.get("format", FORMAT)
    if not isinstance(version, int) or version > FORMAT:
        raise ConfigError(
            f"{str(folder)!r} was written in model format {version!r}, newer than this "
            f"salesformer ({__version__}) reads (format {FORMAT}); upgrade salesformer or refit"
        )
    if not (folder / PANEL_DIR).is_dir():
        raise ConfigError(f"{str(folder)!r} has no {PANEL_DIR}/ folder (training panel); {hint}")
    return config


def registered_name(model: Forecaster) -> str:
    """The registry name of ``model``'s class; :class:`ConfigError` for unregistered models."""
    try:
        name = resolve_name(model.name)
        registered = type(make_model(name))
    except (ConfigError, ImportError) as exc:
        raise ConfigError(
            f"cannot save a {type(model).__name__}: only registered models can be saved "
            f"({', '.join(available_models())})"
        ) from exc
    if type(model) is not registered:
        raise ConfigError(
            f"cannot save a {type(model).__name__} named {model.name!r}: that name belongs to "
            f"{registered.__name__}; only registered models can be saved"
        )
    return name


def coerce_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Settings read from JSON, with lists turned back into tuples where a setting is a tuple.

    A setting is a tuple when its dataclass default is one or its annotation says ``tuple``.
    ``auto``'s ``candidate_settings`` are coerced for each candidate in turn.
    """
    cls = type(make_model(name))
    tuples: set[str] = set()
    if dataclasses.is_dataclass(cls):
        for field in dataclasses.fields(cls):
            annotation = field.type if isinstance(field.type, str) else repr(field.type)
            if isinstance(field.default, tuple) or annotation.startswith("tuple"):
                tuples.add(field.name)
    out = {
        key: tuple(value) if key in tuples and isinstance(value, list) else value
        for key, value in params.items()
    }
    settings = out.get("candidate_settings")
    if name == AUTO and isinstance(settings, dict):
        out["candidate_settings"] = {
            key: coerce_params(resolve_name(key), value) if isinstance(value, dict) else value
            for key, value in settings.items()
        }
    return out


def _auto_state(model: Any) -> dict[str, Any]:
    """What a fitted ``auto`` learned besides its candidates, as JSON."""
    segments = model.segments_
    return {
        "choice": dict(model.choice_),
        "weights": {s: {n: float(w) for n, w in ws.items()} for s, ws in model.weights_.items()},
        "segments": {str(i): str(s) for i, s in segments.items()},
        "skipped": list(model.skipped_),
        "report": jsonable(model.report_, AUTO),
        "candidates": list(model.models_),
    }


def _restore_auto(model: Any, panel: Panel, folder: Path, config: dict[str, Any]) -> None:
    """Set the fitted attributes of an ``auto`` from its saved state and candidates."""
    state = config.get("state")
    if not isinstance(state, dict):
        raise ConfigError(f"{str(folder)!r} holds an auto model without its state; refit it")
    model.panel_ = panel
    model.models_ = {
        name: load_model(folder / CANDIDATES_DIR / name) for name in state["candidates"]
    }
    model.weights_ = {s: dict(ws) for s, ws in state["weights"].items()}
    model.choice_ = dict(state["choice"])
    model.segments_ = pd.Series(state["segments"], name="segment", dtype=str)
    model.skipped_ = list(state.get("skipped", []))
    model.report_ = state.get("report", {})
