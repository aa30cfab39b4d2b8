"""Backtest scores per level: items, categories and the total, reconciled and not.

At each cutoff, :func:`level_window` takes the model the backtest fitted on the items and
asks :func:`salesformer.forecasting.levels.level_forecast` for every level; the actuals of a
category (or of the total) are the sums of the sales of the items the model saw up to the
cutoff (items launched later are not forecast, so they are not counted against it).
:func:`level_metrics` scores the reconciled point (``<model>``) and the base forecast
(``<model>-base``: each level's own model; for items the item model) per level:
``wape`` = sum|e| / sum|y| and ``bias`` = sum(yhat - y) / sum|y| over the level's cells.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from salesformer.data.contract import ACTUAL, CUTOFF, DATE, ITEM_ID, SALES, Panel
from salesformer.forecasting.levels import (
    BASE_SUFFIX,
    CATEGORY,
    ITEM,
    LEVEL,
    TOTAL,
    level_forecast,
    level_series,
)
from salesformer.forecasting.protocol import Forecaster

VARIANTS = {"reconciled": "", "base": BASE_SUFFIX}


def level_window(
    fitted: Forecaster,
    panel: Panel,
    cutoff: pd.Timestamp,
    horizon: int,
    levels: Sequence[str],
    method: str,
    items: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Level forecasts of one cutoff with their actuals (``level, item_id, cutoff, date, y``).

    ``items``: the backtest's item forecasts of this cutoff (made with the window's
    known-future values or plan), reused so the item level is the forecast scored elsewhere.
    """
    train = panel.until(cutoff)
    forecast = level_forecast(
        fitted, levels, horizon, method=method, quantiles=(), panel=train, items=items
    )
    actual = level_actuals(panel, cutoff, horizon, level_series(train, levels))
    merged = forecast.merge(actual, on=[ITEM_ID, DATE], how="left")
    merged[ACTUAL] = merged[ACTUAL].fillna(0.0)
    merged.insert(2, CUTOFF, cutoff)
    return merged


def level_actuals(
    panel: Panel, cutoff: pd.Timestamp, horizon: int, series: pd.DataFrame
) -> pd.DataFrame:
    """``item_id, date, y`` of every series of ``series`` in the window after ``cutoff``: the
    sales of its items (those of the hierarchy only) and their sums per category and date."""
    items = series.loc[series[LEVEL] == ITEM].set_index(ITEM_ID)[CATEGORY]
    window = panel.window(cutoff, horizon)
    window = window.loc[window[ITEM_ID].isin(items.index), [ITEM_ID, DATE, SALES]]
    parts = [window]
    if (series[LEVEL] == CATEGORY).any():
        keyed = window.assign(**{ITEM_ID: window[ITEM_ID].map(items)})
        parts.append(keyed.groupby([ITEM_ID, DATE], as_index=False)[SALES].sum())
    if (series[LEVEL] == TOTAL).any():
        total = window.groupby(DATE, as_index=False)[SALES].sum()
        parts.append(total.assign(**{ITEM_ID: TOTAL}))
    return pd.concat(parts, ignore_index=True).rename(columns={SALES: ACTUAL})


def level_metrics(frame: pd.DataFrame, models: Sequence[str]) -> pd.DataFrame:
    """WAPE and bias per level, model and variant (reconciled, base)."""
    rows = []
    for (level,), part in frame.groupby([LEVEL], sort=False):
        total = float(part[ACTUAL].abs().sum())
        for model in models:
            for variant, suffix in VARIANTS.items():
                column = f"{model}{suffix}"
                if column not in part.columns:
                    continue
                error = part[column] - part[ACTUAL]
                rows.append(
                    {
                        LEVEL: level,
                        "model": model,
                        "variant": variant,
                        "series": int(part[ITEM_ID].nunique()),
                        "cells": len(part),
                        "wape": float(error.abs().sum()) / total if total else np.nan,
                        "bias": float(error.sum()) / total if total else np.nan,
                    }
                )
    return pd.DataFrame(rows)
