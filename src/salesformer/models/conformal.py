"""Quantiles from a point forecaster by conformal calibration on past windows.

A point forecaster is refitted at ``n_windows`` earlier origins (each ``horizon`` periods
apart, all before the last date of the panel it was given); its errors there, divided by each
item's scale (mean sales over its recent history), give per-step empirical quantiles of the
*scaled* error. A quantile forecast is then ``point + scale * error_quantile[step, level]``,
clipped at zero. Scaling makes one pooled error distribution fit items of every size.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from salesformer.data.contract import DATE, ITEM_ID, SALES, Panel
from salesformer.forecasting.protocol import quantile_column

#: ``fit_predict(train_panel, horizon) -> frame(item_id, date, point)``
FitPredict = Callable[[Panel, int], pd.DataFrame]

SCALE_WINDOW = 26


def item_scale(panel: Panel, window: int = SCALE_WINDOW) -> pd.Series:
    """Each item's scale: mean sales over its last ``window`` periods.

    Falls back to the whole history's mean where that is 0, and to 1 for items never sold.
    """
    sales = panel.sales
    recent = sales.groupby(ITEM_ID, sort=True).tail(window).groupby(ITEM_ID, sort=True)[SALES]
    scale = recent.mean()
    overall = sales.groupby(ITEM_ID, sort=True)[SALES].mean()
    scale = scale.where(scale > 0, overall)
    return scale.where(scale > 0, 1.0).astype(float)


def calibration_cutoffs(panel: Panel, horizon: int, n_windows: int) -> list[pd.Timestamp]:
    """Origins for calibration, the latest ``horizon`` periods before the panel's end.

    Only origins that leave at least ``horizon`` periods of history are returned.
    """
    dates = panel.dates
    cutoffs = []
    for w in range(1, n_windows + 1):
        position = len(dates) - 1 - w * horizon
        if position >= horizon:
            cutoffs.append(dates[position])
    return sorted(cutoffs)


def scaled_errors(
    fit_predict: FitPredict, panel: Panel, horizon: int, n_windows: int
) -> np.ndarray:
    """Scaled errors ``(y - point) / scale`` at calibration origins, shape ``(n, horizon)``."""
    rows: list[np.ndarray] = []
    for cutoff in calibration_cutoffs(panel, horizon, n_windows):
        train = panel.until(cutoff)
        point = fit_predict(train, horizon)
        actual = panel.window(cutoff, horizon)[[ITEM_ID, DATE, SALES]]
        merged = point.merge(actual, on=[ITEM_ID, DATE], how="inner")
        value_column = next(c for c in point.columns if c not in (ITEM_ID, DATE))
        scale = item_scale(train)
        merged["scale"] = merged[ITEM_ID].map(scale).astype(float)
        merged["error"] = (merged[SALES] - merged[value_column]) / merged["scale"]
        merged["step"] = merged.groupby(ITEM_ID, sort=False).cumcount()
        wide = merged.pivot(index=ITEM_ID, columns="step", values="error")
        wide = wide.reindex(columns=range(horizon)).dropna()
        rows.append(wide.to_numpy())
    if not rows:
        return np.zeros((0, horizon))
    return np.vstack(rows)


def error_quantiles(errors: np.ndarray, quantiles: tuple[float, ...]) -> np.ndarray:
    """Per-step quantiles of scaled errors, shape ``(horizon, len(quantiles))``.

    With no calibration errors (too little history) the interval collapses onto the point.
    """
    horizon = errors.shape[1]
    if errors.shape[0] == 0:
        return np.zeros((horizon, len(quantiles)))
    return np.quantile(errors, quantiles, axis=0).T


def apply_quantiles(
    point: pd.DataFrame,
    name: str,
    scale: pd.Series,
    table: np.ndarray,
    quantiles: tuple[float, ...],
) -> pd.DataFrame:
    """Add ``<name>-q<level>`` columns to a point forecast sorted by item and date."""
    out = point.sort_values([ITEM_ID, DATE]).reset_index(drop=True)
    step = out.groupby(ITEM_ID, sort=False).cumcount().to_numpy()
    step = np.minimum(step, table.shape[0] - 1)
    item_scales = out[ITEM_ID].map(scale).fillna(1.0).to_numpy(dtype=float)
    base = out[name].to_numpy(dtype=float)
    for j, q in enumerate(quantiles):
        out[quantile_column(name, q)] = np.clip(base + item_scales * table[step, j], 0.0, None)
    return out
