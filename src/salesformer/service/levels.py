"""Category and total forecasts in the service (``GET /levels/forecast``).

The answer is what ``salesformer predict --model M --levels ... --reconcile ...`` writes for
the served model at its horizon with the default quantiles:
:func:`salesformer.forecasting.levels.level_forecast` on the model and its training panel, one
code path for both; a shorter ``horizon`` shows its first periods. Its base forecasts of the
upper levels come from a clone of the model fitted on the category and total series, which
takes as long as a fit: the first request for a set of levels and a method pays it, and the
answer is kept for the served model (a switched model starts afresh), so at most
3 x 4 fits happen per served model. The route needs the API key, as every route that runs
the encoder does. The levels are forecast from
the panel's last date (``origin``); live events move the item forecasts of
``GET /items/{id}/forecast`` but not these until ``salesformer retrain`` folds them into a new
version.
"""

from __future__ import annotations

import threading
import weakref

import pandas as pd

from salesformer.data.contract import DATE
from salesformer.errors import ConfigError
from salesformer.forecasting.levels import check_reconciler, level_forecast, parse_levels
from salesformer.forecasting.protocol import DEFAULT_QUANTILES
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
    ) -> pd.DataFrame:
        """``level_forecast``'s frame for the served model, its first ``horizon`` periods.

        Raises:
            ConfigError: an unknown level or method, a horizon out of range.
            DataValidationError: ``category`` without a category column, clashing names.
        """
        wanted = parse_levels(levels)
        if len(wanted) < 2:
            raise ConfigError(
                f"levels must name category and/or total (the items are always forecast); got "
                f"{levels!r}; e.g. levels=category,total"
            )
        check_reconciler(method)
        live._check_horizon(horizon)
        key = (wanted, method)
        with self._lock:  # one fit at a time; a second request for it waits and reuses it
            kept = self._kept.setdefault(live, {})
            if key not in kept:
                kept[key] = level_forecast(
                    live.model, wanted, live.horizon, method=method, quantiles=DEFAULT_QUANTILES
                )
            frame = kept[key]
        dates = sorted(frame[DATE].unique())[:horizon]
        return frame.loc[frame[DATE].isin(dates)]
