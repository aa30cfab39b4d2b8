"""Saving a fitted forecaster to a folder and reading it back, for every registered model.

A saved model is a folder with ``config.json``::

    {"model": "<registered name>", "params": {<settings>}, "versions": {...}, "format": 1}

and ``panel/``, the training panel (:meth:`Panel.save`). Each model saves and loads itself
(:meth:`Forecaster.save <salesformer.forecasting.protocol.Forecaster.save>`,
:meth:`~salesformer.forecasting.protocol.Forecaster.load`); this module checks the model is
registered and finds the class of a saved folder in the registry, branching on nothing else:

- ``LM`` (:class:`~salesformer.models.lm.LMForecaster`) writes its own folder (safetensors
  head, LoRA adapter, item vectors, the encoder revision): its trained weights are kept.
- ``auto`` (:class:`~salesformer.models.auto.AutoForecaster`) keeps its choices, weights,
  segments and report in ``config.json`` and each candidate in use in ``candidates/<name>/``,
  saved by the candidate itself (so an LM candidate keeps its weights). Loading rebuilds the
  fitted ``auto`` from these parts without fitting anything but the candidates below.
- Every other model (the statistical baselines, LightGBM, LightGBM-text) is saved as its
  settings and training panel only, and **refitted when loaded**. These models are
  deterministic (the contract suite checks that two fits give identical forecasts), so the
  loaded model forecasts exactly as the saved one, at the cost of one fit.

Nothing is pickled; folders are written atomically (:func:`salesformer._io.atomic_dir`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from salesformer._version import __version__
from salesformer.errors import ConfigError, NotFittedError
from salesformer.forecasting.protocol import Forecaster
from salesformer.forecasting.saved import (
    CONFIG_FILE,
    FORMAT,
    PANEL_DIR,
    read_json_config,
)
from salesformer.models.registry import (
    available_models,
    make_model,
    model_class,
    resolve_name,
)

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
    registered_name(model)
    if not hasattr(model, "panel_"):
        raise NotFittedError(
            f"{type(model).__name__} is not fitted yet; call .fit(panel) before saving it"
        )
    return model.save(folder)


def load_model(folder: str | Path) -> Forecaster:
    """Read a model written by :func:`save_model`; it forecasts as the saved one did.

    Raises:
        ConfigError: when ``folder`` is missing or is not a saved model.
    """
    path = Path(folder)
    config = read_config(path)
    return model_class(str(config["model"])).load(path)


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
    config = read_json_config(config_path, hint)
    if "model" not in config:
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
