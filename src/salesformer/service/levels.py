"""Category and total forecasts in the service (``GET /levels/forecast``).

The answer is what ``salesformer predict --model M --levels ... --reconcile ...`` writes for
the served model: :func:`salesformer.forecasting.levels.level_forecast` on the model and its
training panel, one code path for both. Its base forecasts of the upper levels come from a
clone of the model fitted on the category and total series, which takes as long as a fit:
the first request for a set of levels, method, horizon and quantiles pays it, and the answer
is kept for the served model (a switched model starts afresh). The levels are forecast from
the panel's last date (``origin``); live events move the item forecasts of
``GET /items/{id}/forecast`` but not these until ``salesformer retrain`` folds them into a new
version.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence

import pandas as pd

from salesformer.forecasting.levels import check_reconciler, level_forecast, parse_levels
from salesformer.forecasting.protocol import check_quantiles
from salesformer.service.live import LiveForecaster

_Key = tuple[object, ...]


class LevelForecasts:
    """Reconciled level forecasts of each served model, computed once per request shape."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: weakref.WeakKeyDictionary[LiveForecaster, dict[_Key, pd.DataFrame]] = (
            weakref.WeakKeyDictionary()
        )

    def forecast(
        self,
        live: LiveForecaster,
        levels: str,
        method: str,
        horizon: int,
        quantiles: Sequence[float],
    ) -> pd.DataFrame:
        """``level_forecast``'s frame for the served model (see the module docstring).

        Raises:
            ConfigError: an unknown level or method, a horizon out of range.
            DataValidationError: ``category`` without a category column, clashing names.
        """
        wanted = parse_levels(levels)
        check_reconciler(method)
        levels_q = check_quantiles(quantiles)
        live._check_horizon(horizon)
        key = (wanted, method, horizon, levels_q)
        with self._lock:  # one fit at a time; a second request for it waits and reuses it
            kept = self._kept.setdefault(live, {})
            if key not in kept:
                kept[key] = level_forecast(
                    live.model, wanted, horizon, method=method, quantiles=levels_q
                )
            return kept[key]
