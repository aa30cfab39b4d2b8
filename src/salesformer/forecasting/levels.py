"""Category and total forecasts that add up: base forecasts per level, reconciled.

A planner who works per category or for the whole shop needs forecasts that agree with the
items': the items of a category must add up to the category, the categories to the total.
:func:`level_forecast` does it in three steps:

1. **base forecasts at every level**: the item forecasts of the fitted model, and a clone of the
   same model fitted on the category and total series (sums of the items' sales; no
   covariates), so each level has its own forecast, not only the sum of the items';
2. **reconciliation** with Nixtla's ``hierarchicalforecast`` (its ``BottomUp`` or ``MinTrace``):
   ``bottom_up`` (the sums of the item forecasts), ``ols`` and ``wls_struct`` (MinTrace
   weights from the hierarchy alone) or ``mint_shrink`` (MinTrace with the shrunk covariance of
   forecast errors, learned here on the ``horizon`` periods before the last date from models
   fitted before them: two more fits). After it, items add up to categories and categories to
   the total at every date, exactly. The default, ``ols``, was chosen on a validation cutoff of
   Online Retail II (``benchmarks/levels.py``; docs/evaluation.md has the numbers);
3. **quantiles**: only the points are reconciled. Each series' quantiles are its base
   quantiles shifted by the change reconciliation made to its point: they keep the base
   forecast's spread, bracket the reconciled point, and do not add up across levels (sums of
   quantiles are not quantiles of sums).

The category of an item is the items table's ``category`` column (missing values become
``"uncategorised"``); a panel without it cannot give ``category`` forecasts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from salesformer.data.contract import DATE, ITEM_ID, SALES, TEXT, Panel, validate_panel
from salesformer.errors import ConfigError, DataValidationError
from salesformer.forecasting.protocol import Forecaster, quantile_column

ITEM, CATEGORY, TOTAL = "item", "category", "total"
LEVEL = "level"
#: Levels, from the bottom up.
LEVELS = (ITEM, CATEGORY, TOTAL)
RECONCILERS = ("bottom_up", "ols", "wls_struct", "mint_shrink")
DEFAULT_RECONCILER = "ols"
UNCATEGORISED = "uncategorised"
BASE_SUFFIX = "-base"


def parse_levels(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"category,total"`` as levels, bottom up, ``item`` always first.

    Raises:
        ConfigError: an unknown or empty level list.
    """
    parts = text.split(",") if isinstance(text, str) else list(text)
    names = [p.strip().lower() for p in parts if p.strip()]
    unknown = [n for n in names if n not in LEVELS]
    if unknown or not names:
        raise ConfigError(
            f"unknown level(s) {unknown or names}; got {text!r}; use a comma-separated list of "
            f"{', '.join(LEVELS)}, e.g. --levels category,total"
        )
    return tuple(level for level in LEVELS if level == ITEM or level in names)


def check_reconciler(method: str) -> str:
    """The reconciliation method, checked."""
    if method not in RECONCILERS:
        raise ConfigError(
            f"unknown reconciliation method {method!r}; use one of {', '.join(RECONCILERS)}"
        )
    return method


def item_categories(panel: Panel) -> pd.Series:
    """Each item's category (from the items table), indexed by item id.

    Raises:
        DataValidationError: the panel has no items table or no ``category`` column.
    """
    columns = [] if panel.items is None else list(panel.items.columns)
    if CATEGORY not in columns:
        raise DataValidationError(
            f"--levels category needs a 'category' column in the items table; got items columns "
            f"{columns or 'none (no items table)'}; add one to the items file (prepare csv "
            "--items), or ask for --levels total only"
        )
    assert panel.items is not None
    table = panel.items.set_index(ITEM_ID)[CATEGORY]
    named = table.reindex(panel.item_ids)
    return named.where(named.notna() & (named.astype(str).str.strip() != ""), UNCATEGORISED).astype(
        str
    )


def level_series(panel: Panel, levels: Sequence[str]) -> pd.DataFrame:
    """``item_id, level, category`` of every series of the hierarchy (items included)."""
    items = pd.DataFrame({ITEM_ID: panel.item_ids.astype(str), LEVEL: ITEM})
    items[CATEGORY] = item_categories(panel).to_numpy() if CATEGORY in levels else TOTAL
    rows = [items]
    if CATEGORY in levels:
        names = np.sort(items[CATEGORY].unique())
        rows.append(pd.DataFrame({ITEM_ID: names, LEVEL: CATEGORY, CATEGORY: names}))
    if TOTAL in levels:
        rows.append(pd.DataFrame({ITEM_ID: [TOTAL], LEVEL: [TOTAL], CATEGORY: [TOTAL]}))
    return pd.concat(rows, ignore_index=True)


def aggregate_panel(panel: Panel, series: pd.DataFrame) -> Panel:
    """The category and total series of ``panel`` (sums of item sales) as a panel of their own."""
    categories = series.loc[series[LEVEL] == ITEM].set_index(ITEM_ID)[CATEGORY]
    sales = panel.sales[[ITEM_ID, DATE, SALES]]
    frames = []
    if (series[LEVEL] == CATEGORY).any():
        keyed = sales.assign(**{ITEM_ID: sales[ITEM_ID].map(categories)})
        frames.append(keyed.groupby([ITEM_ID, DATE], as_index=False)[SALES].sum())
    if (series[LEVEL] == TOTAL).any():
        total = sales.groupby(DATE, as_index=False)[SALES].sum()
        frames.append(total.assign(**{ITEM_ID: TOTAL}))
    frame = pd.concat(frames, ignore_index=True)
    names = frame[ITEM_ID].unique()
    items = pd.DataFrame({ITEM_ID: names, TEXT: [f"All products of {n}" for n in names]})
    return validate_panel(frame, items, freq=panel.freq, known_future=(), past_only=())


def summing_matrix(series: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """hierarchicalforecast's ``S_df`` and ``tags`` for the hierarchy of ``series``."""
    bottom = series.loc[series[LEVEL] == ITEM]
    columns = bottom[ITEM_ID].to_numpy()
    rows, tags = [], {}
    for level in (TOTAL, CATEGORY, ITEM):
        part = series.loc[series[LEVEL] == level]
        if part.empty:
            continue
        tags[level] = part[ITEM_ID].to_numpy()
        for name in tags[level]:
            if level == TOTAL:
                member = np.ones(len(columns))
            elif level == CATEGORY:
                member = (bottom[CATEGORY].to_numpy() == name).astype(float)
            else:
                member = (columns == name).astype(float)
            rows.append(member)
    ids = np.concatenate(list(tags.values()))
    matrix = pd.DataFrame(np.vstack(rows), columns=columns)
    matrix.insert(0, "unique_id", ids)
    return matrix, tags


def _reconciler(method: str) -> Any:
    from hierarchicalforecast.methods import BottomUp, MinTrace  # type: ignore[import-untyped]

    return BottomUp() if method == "bottom_up" else MinTrace(method=method)


def reconcile(
    base: pd.DataFrame,
    series: pd.DataFrame,
    model: str,
    method: str,
    residuals: pd.DataFrame | None = None,
) -> pd.Series:
    """Reconciled points of ``base`` (``item_id, date, <model>`` over every series).

    Args:
        base: base forecasts of every series of ``series`` and date.
        series: the hierarchy (:func:`level_series`); item ids must be unique across levels.
        model: the point column.
        method: one of :data:`RECONCILERS`.
        residuals: ``item_id, date, y, <model>`` of past forecasts (``mint_shrink`` only).

    Returns:
        The reconciled point of each row of ``base``, in its order.
    """
    from hierarchicalforecast.core import (  # type: ignore[import-untyped]
        HierarchicalReconciliation,
    )

    matrix, tags = summing_matrix(series)
    renamed = {ITEM_ID: "unique_id", DATE: "ds"}
    hat = base[[ITEM_ID, DATE, model]].rename(columns=renamed)
    fitted = None
    if method == "mint_shrink":
        if residuals is None:
            raise ConfigError("mint_shrink needs past forecast errors (residuals)")
        fitted = residuals[[ITEM_ID, DATE, "y", model]].rename(columns=renamed)
    engine = HierarchicalReconciliation(reconcilers=[_reconciler(method)])
    try:
        out = engine.reconcile(Y_hat_df=hat, S_df=matrix, tags=tags, Y_df=fitted)
    except Exception as exc:  # numpy's LinAlgError, or hierarchicalforecast's bare Exception
        if not isinstance(exc, np.linalg.LinAlgError) and "ill-conditioned" not in str(exc):
            raise
        raise ConfigError(
            f"{method} reconciliation failed: the covariance of past errors is singular (series "
            "whose errors over the held-out periods do not vary); use --reconcile wls_struct"
        ) from exc
    column = next(c for c in out.columns if c.startswith(f"{model}/"))
    values = out.rename(columns={"unique_id": ITEM_ID, "ds": DATE})[[ITEM_ID, DATE, column]]
    merged = base[[ITEM_ID, DATE]].merge(values, on=[ITEM_ID, DATE], how="left")
    return merged[column].astype(float)


def base_forecasts(
    model: Forecaster,
    panel: Panel,
    series: pd.DataFrame,
    horizon: int,
    quantiles: Sequence[float],
    items: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Item forecasts of ``model`` (fitted on ``panel``) and a clone's on the upper levels.

    ``items``: the item forecasts when the caller has them already (a backtest, whose items
    read that window's known-future values), with the point and the ``quantiles`` columns.
    """
    if items is None:
        items = model.predict(horizon, quantiles=quantiles)
    else:
        wanted = [model.name, *(quantile_column(model.name, q) for q in quantiles)]
        items = items[[ITEM_ID, DATE, *wanted]]
    upper = model.clone().fit(aggregate_panel(panel, series))
    above = upper.predict(horizon, quantiles=quantiles)
    return pd.concat([items, above[items.columns]], ignore_index=True)


def holdout_errors(
    model: Forecaster, panel: Panel, series: pd.DataFrame, horizon: int
) -> pd.DataFrame:
    """Forecasts of the last ``horizon`` periods from clones fitted before them, with actuals.

    Every series of ``series`` gets a row per period; a series the earlier models could not
    forecast (an item first sold in those periods) counts as forecast 0 there: the earlier
    models did not know it.
    """
    cutoff = panel.dates[-1 - horizon]
    earlier = panel.until(cutoff)
    fitted = model.clone().fit(earlier)
    base = base_forecasts(fitted, earlier, series, horizon, ())
    actual_items = panel.window(cutoff, horizon)[[ITEM_ID, DATE, SALES]]
    upper = aggregate_panel(panel, series).window(cutoff, horizon)[[ITEM_ID, DATE, SALES]]
    actual = pd.concat([actual_items, upper], ignore_index=True).rename(columns={SALES: "y"})
    grid = pd.MultiIndex.from_product(
        [series[ITEM_ID], panel.future_dates(cutoff, horizon)], names=[ITEM_ID, DATE]
    ).to_frame(index=False)
    merged = grid.merge(actual, on=[ITEM_ID, DATE], how="left")
    merged["y"] = merged["y"].fillna(0.0)
    merged = merged.merge(base[[ITEM_ID, DATE, model.name]], on=[ITEM_ID, DATE], how="left")
    merged[model.name] = merged[model.name].fillna(0.0)
    return merged


def level_forecast(
    model: Forecaster,
    levels: Sequence[str],
    horizon: int,
    *,
    method: str = DEFAULT_RECONCILER,
    quantiles: Sequence[float] = (),
    panel: Panel | None = None,
    items: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Reconciled forecasts of every level for a model fitted on items.

    Args:
        model: a fitted forecaster (its ``panel_`` is the item panel unless ``panel`` is given).
        levels: from :func:`parse_levels` (``item`` plus ``category`` and/or ``total``).
        horizon: periods to forecast.
        method: one of :data:`RECONCILERS`.
        quantiles: quantile levels (shifted with the points; see the module).
        panel: the panel the model was fitted on (default ``model.panel_``).
        items: the model's item forecasts if already made (see :func:`base_forecasts`).

    Returns:
        ``level, item_id, date, <model>, <model>-q<level>..., <model>-base``: one row per series
        (item id, category name or ``total``) and date.
    """
    check_reconciler(method)
    data = panel if panel is not None else model.panel_
    series = level_series(data, parse_levels(levels))
    clash = series.loc[series[ITEM_ID].duplicated(), ITEM_ID]
    if len(clash):
        raise DataValidationError(
            f"series names {sorted(clash)[:5]} name both an item or category and another level; "
            "rename those categories (a category may not be named like an item or 'total')"
        )
    base = base_forecasts(model, data, series, horizon, quantiles, items)
    residuals = holdout_errors(model, data, series, horizon) if method == "mint_shrink" else None
    name = model.name
    reconciled = reconcile(base, series, name, method, residuals)
    shift = reconciled.to_numpy() - base[name].to_numpy()
    out = base.copy()
    out[f"{name}{BASE_SUFFIX}"] = base[name]
    for column in [c for c in base.columns if c.startswith(f"{name}-q")]:
        out[column] = np.maximum(base[column].to_numpy() + shift, 0.0)
    out[name] = reconciled.to_numpy()
    out.insert(0, LEVEL, out[ITEM_ID].map(series.set_index(ITEM_ID)[LEVEL]))
    return out
