"""Forecasters by name, for the CLI and the backtest driver.

Model modules are imported only when a model is made, so listing names stays cheap.
"""

from __future__ import annotations

import importlib
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


def make_model(name: str, **settings: Any) -> Forecaster:
    """A new, unfitted forecaster by name, with optional settings."""
    module_name, class_name = _REGISTRY[resolve_name(name)]
    cls = getattr(importlib.import_module(module_name), class_name)
    model: Forecaster = cls(**settings)
    return model
