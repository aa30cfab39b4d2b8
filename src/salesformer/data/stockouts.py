"""Stock-outs: periods whose sales are not demand, and what training does about them.

A panel with the ``in_stock`` column (see :mod:`salesformer.data.availability`) marks the
periods when an item could not sell freely. Their sales are a lower bound of demand, so:

- **training targets** leave them out: LightGBM drops those target rows, the LM masks them
  from its loss (``target_mask``);
- **history inputs** (lags, rolling means, the statistical baselines' whole series) read
  :func:`impute_stockouts`'s series instead: each out-of-stock period's sales are replaced by
  the mean of the item's in-stock periods nearby (``window`` periods either side, within the
  panel given: no look past a cutoff), never lowered below what was actually sold; an item
  with no in-stock period nearby keeps its recorded sales (nothing better is known);
- **scoring** leaves them out (:class:`salesformer.evaluation.backtest.BacktestResult`), and the
  inventory replay estimates the demand of those periods (see
  :mod:`salesformer.decisions.inventory_sim`).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from salesformer.data.availability import IN_STOCK
from salesformer.data.contract import DATE, ITEM_ID, SALES, Panel
from salesformer.data.features import FeatureMatrix

#: Periods either side whose in-stock sales stand in for an out-of-stock period.
IMPUTE_WINDOW = 4


def has_stockouts(panel: Panel) -> bool:
    """True when the panel carries availability and at least one period is out of stock."""
    return IN_STOCK in panel.sales.columns and not bool(panel.sales[IN_STOCK].all())


def imputed_sales(sales: pd.DataFrame, window: int = IMPUTE_WINDOW) -> pd.Series:
    """Each row's sales, out-of-stock rows replaced by nearby in-stock sales (see the module).

    Args:
        sales: a panel's long frame, sorted by item and date, with ``in_stock``.
        window: periods either side that are averaged.
    """
    available = sales[IN_STOCK].to_numpy(dtype=bool)
    kept = sales[SALES].where(available)
    by_item = kept.groupby(sales[ITEM_ID], sort=False)
    span = 2 * window + 1
    total = by_item.transform(lambda s: s.rolling(span, center=True, min_periods=1).sum())
    count = by_item.transform(lambda s: s.rolling(span, center=True, min_periods=1).count())
    nearby = (total / count.replace(0, np.nan)).to_numpy(dtype=float)
    recorded = sales[SALES].to_numpy(dtype=float)
    filled = np.where(np.isfinite(nearby), np.maximum(nearby, recorded), recorded)
    return pd.Series(np.where(available, recorded, filled), index=sales.index)


def impute_stockouts(panel: Panel, window: int = IMPUTE_WINDOW) -> Panel:
    """The panel with out-of-stock sales imputed (unchanged without stock-outs)."""
    if not has_stockouts(panel):
        return panel
    sales = panel.sales.copy()
    sales[SALES] = imputed_sales(sales, window)
    return dataclasses.replace(panel, sales=sales)


def out_of_stock_keys(panel: Panel) -> pd.MultiIndex:
    """``(item_id, date)`` of the panel's out-of-stock periods (empty without any)."""
    if IN_STOCK not in panel.sales.columns:
        return pd.MultiIndex.from_arrays([[], []], names=[ITEM_ID, DATE])
    rows = panel.sales.loc[~panel.sales[IN_STOCK].to_numpy(dtype=bool), [ITEM_ID, DATE]]
    return pd.MultiIndex.from_frame(rows)


def drop_unavailable_targets(rows: FeatureMatrix, panel: Panel) -> FeatureMatrix:
    """Training rows whose target period was in stock (all rows without stock-outs)."""
    keys = out_of_stock_keys(panel)
    if not len(keys):
        return rows
    target = pd.MultiIndex.from_arrays(
        [pd.Index(rows.item_id).astype(str), pd.DatetimeIndex(rows.date)], names=[ITEM_ID, DATE]
    )
    keep = ~target.isin(keys)
    return FeatureMatrix(
        features=rows.features.loc[keep].reset_index(drop=True),
        item_id=rows.item_id[keep],
        origin=rows.origin[keep],
        step=rows.step[keep],
        date=rows.date[keep],
        scale=rows.scale[keep],
        target=rows.target[keep],
    )
