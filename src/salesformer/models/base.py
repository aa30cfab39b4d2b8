"""The forecaster protocol, re-exported: it lives in :mod:`salesformer.forecasting.protocol`.

The protocol sits below both ``models`` and ``evaluation`` (the backtest drives any model
through it); this module keeps the old import path working.
"""

from __future__ import annotations

from salesformer.forecasting.protocol import (
    DEFAULT_QUANTILES,
    Forecaster,
    as_panel,
    check_quantiles,
    fitted_horizon,
    quantile_column,
    resolve_future,
    tidy_forecast_values,
)

__all__ = [
    "DEFAULT_QUANTILES",
    "Forecaster",
    "as_panel",
    "check_quantiles",
    "fitted_horizon",
    "quantile_column",
    "resolve_future",
    "tidy_forecast_values",
]
