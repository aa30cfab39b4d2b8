"""Forecasters by name: the one place that knows every model.

:func:`make_model` makes a registered model; :func:`build_model` makes one from the
command-line style options (horizon, fine-tuning, encoder, ``--set`` overrides parsed by
:func:`parse_settings`), for the CLI, the Ray engine and the demo. Adding a model means one
entry in ``_REGISTRY``: saving, loading and explaining are the model's own methods.

Model modules are imported only when a model is made, so listing names stays cheap.
"""

from __future__ import annotations

import importlib
import json
from typing import Any

from salesformer.errors import ConfigError
from salesformer.forecasting.protocol import Forecaster

_REGISTRY: dict[str, tuple[str, str]] = {
    "Naive": ("salesformer.models.statistical", "Naive"),
    "SeasonalNaive": ("salesformer.models.statistical", "SeasonalNaive"),
    "HistoricAverage": ("salesformer.models.statistical", "HistoricAverage"),
    "WindowAverage": ("salesformer.models.statistical", "WindowAverage"),
    "AutoETS": ("salesformer.models.statistical", "AutoETS"),
    "CrostonSBA": ("salesformer.models.statistical", "CrostonSBA"),
    "CrostonOptimized": ("salesformer.models.statistical", "CrostonOptimized"),
    "TSB": ("salesformer.models.statistical", "TSB"),
    "ADIDA": ("salesformer.models.statistical", "ADIDA"),
    "LightGBM": ("salesformer.models.lightgbm", "LightGBMForecaster"),
    "LightGBM-text": ("salesformer.models.lightgbm_text", "LightGBMTextForecaster"),
    "LM": ("salesformer.models.lm", "LMForecaster"),
    "auto": ("salesformer.models.auto", "AutoForecaster"),
}

LM = "LM"
AUTO = "auto"
DEFAULT_HORIZON = 8
#: Settings by model name (None: the model being built), as ``--set`` gives them.
Overrides = dict[str | None, dict[str, Any]]

#: The statsforecast wrappers of :mod:`salesformer.models.statistical`.
STATISTICAL_MODELS: tuple[str, ...] = (
    "Naive",
    "SeasonalNaive",
    "HistoricAverage",
    "WindowAverage",
    "AutoETS",
    "CrostonSBA",
    "CrostonOptimized",
    "TSB",
    "ADIDA",
)

#: Every baseline, the default of ``salesformer backtest --models``.
BASELINES: tuple[str, ...] = (*STATISTICAL_MODELS, "LightGBM")


def available_models() -> list[str]:
    """Names accepted by :func:`make_model`."""
    return list(_REGISTRY)


def resolve_name(name: str) -> str:
    """The registered spelling of ``name`` (case-insensitive)."""
    lookup = {key.lower(): key for key in _REGISTRY}
    key = lookup.get(name.strip().lower())
    if key is None:
        raise ConfigError(f"unknown model {name!r}; choose from {', '.join(_REGISTRY)}")
    return key


def model_class(name: str) -> type[Forecaster]:
    """The class of the registered model ``name`` (its module is imported now)."""
    module_name, class_name = _REGISTRY[resolve_name(name)]
    cls: type[Forecaster] = getattr(importlib.import_module(module_name), class_name)
    return cls


def make_model(name: str, **settings: Any) -> Forecaster:
    """A new, unfitted forecaster by name, with optional settings."""
    return model_class(name)(**settings)


def parse_settings(values: list[str] | None) -> Overrides:
    """``--set`` values: ``KEY=VALUE`` or ``MODEL.KEY=VALUE``, by model (None: unprefixed).

    Values are read as JSON when they parse (``3``, ``0.5``, ``true``, ``[0.1, 0.5, 0.9]``)
    and as strings otherwise.
    """
    out: Overrides = {}
    for raw in values or []:
        key, sep, text = raw.partition("=")
        if not sep or not key.strip():
            raise ConfigError(
                f"--set takes KEY=VALUE or MODEL.KEY=VALUE; got {raw!r}; "
                "e.g. --set LM.head_epochs=10"
            )
        model, dot, setting = key.strip().rpartition(".")
        target = resolve_name(model) if dot else None
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        out.setdefault(target, {})[setting.strip()] = value
    return out


def build_model(
    name: str,
    horizon: int = DEFAULT_HORIZON,
    finetune: str | None = None,
    encoder: str | None = None,
    overrides: Overrides | None = None,
) -> Forecaster:
    """A new forecaster from command-line options.

    Args:
        name: a registered model name, any case (``lm`` is ``LM``).
        horizon: the ``horizon`` of ``LM`` and ``auto`` (and of auto's LM candidate).
        finetune: ``LM.finetune`` (LM and auto's LM candidate), None for the default.
        encoder: ``LM.encoder`` (LM and auto's LM candidate), None for the default.
        overrides: extra settings by model name (see :func:`parse_settings`); the ``None``
            entry applies to the model built here.
    """
    name = resolve_name(name)
    extra = overrides or {}
    lm_settings: dict[str, Any] = {"horizon": horizon}
    if finetune is not None:
        lm_settings["finetune"] = finetune
    if encoder is not None:
        lm_settings["encoder"] = encoder
    lm_settings.update(extra.get(LM, {}))
    if name == LM:
        settings = {**lm_settings, **extra.get(None, {})}
    elif name == AUTO:
        settings = {"horizon": horizon, **extra.get(AUTO, {}), **extra.get(None, {})}
        candidates = settings.get("candidates") or make_model(AUTO).candidates  # type: ignore[attr-defined]
        given = {resolve_name(str(c)) for c in candidates}
        per_candidate = {
            n: dict(s) for n, s in extra.items() if n is not None and n != AUTO and n in given
        }
        if LM in given:
            per_candidate[LM] = lm_settings
        settings["candidate_settings"] = {
            **per_candidate,
            **(settings.get("candidate_settings") or {}),
        }
    else:
        settings = {**extra.get(name, {}), **extra.get(None, {})}
    settings = coerce_params(name, settings)
    try:
        return make_model(name, **settings)
    except TypeError as exc:
        raise ConfigError(
            f"model {name} does not take the settings {sorted(settings)} ({exc}); "
            "check the names given to --set"
        ) from exc


def coerce_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Settings of model ``name`` read from JSON (see :meth:`Forecaster.coerce_settings`)."""
    return model_class(name).coerce_settings(params)
