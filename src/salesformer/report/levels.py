"""Report parts for stock-outs and levels: the masked cells, and errors per level.

A backtest of a panel with availability (``in_stock``) leaves out-of-stock cells out of every
error (:mod:`salesformer.data.stockouts`); the overview says how many. A backtest run with
``--levels category,total`` scores the reconciled forecasts and the levels' own (base)
forecasts per level (:func:`salesformer.evaluation.levels.level_metrics`, ``metrics.json``'s
``by_level``, or ``levels.parquet`` when the summary was recomputed): the "Category and total"
section shows them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from salesformer.data.availability import IN_STOCK
from salesformer.evaluation.levels import level_metrics
from salesformer.forecasting.levels import LEVEL, LEVELS
from salesformer.report.inputs import ReportData
from salesformer.report.page import Section, escape, table

LEVELS_FILE = "levels.parquet"


def out_of_stock_cells(data: ReportData) -> int | None:
    """Forecast cells left out as out of stock (None: the backtest had no availability)."""
    found = data.summary.get("out_of_stock_cells")
    if found is not None:
        return int(found)
    if IN_STOCK in data.forecasts.columns:
        return int((~data.forecasts[IN_STOCK].to_numpy(dtype=bool)).sum())
    return None


def stockout_fact(data: ReportData) -> tuple[str, str] | None:
    """The overview's line on stock-outs (None: the panel said nothing about availability)."""
    cells = out_of_stock_cells(data)
    if cells is None:
        return None
    total = len(data.forecasts)
    share = f" ({cells / total:.1%})" if total else ""
    return (
        "out of stock",
        f"{cells:,} of {total:,} forecast cells{share} left out of every error below: the item "
        "was out of stock, so its sales were not demand",
    )


def level_scores(data: ReportData) -> pd.DataFrame | None:
    """``by_level`` of the backtest (level, model, variant, series, cells, wape, bias)."""
    records = data.summary.get("by_level")
    if records:
        return pd.DataFrame(records)
    path = Path(data.settings.backtest) / LEVELS_FILE
    if not path.is_file():
        return None
    return level_metrics(pd.read_parquet(path), data.models)


def levels_section(data: ReportData) -> Section | None:
    """WAPE and bias per level and model, reconciled and base (None: no levels)."""
    scores = level_scores(data)
    if scores is None or scores.empty:
        return None
    wide = scores.pivot_table(
        index=[LEVEL, "model"], columns="variant", values=["wape", "bias"], aggfunc="first"
    )
    wide.columns = [f"{metric} ({variant})" for metric, variant in wide.columns]
    counts = scores.groupby(LEVEL)[["series", "cells"]].first()
    frame = wide.reset_index().merge(counts.reset_index(), on=LEVEL)
    order = {name: position for position, name in enumerate(LEVELS)}
    frame["_order"] = frame[LEVEL].map(order)
    frame = frame.sort_values(["_order", "model"])
    shown = ["wape (reconciled)", "wape (base)", "bias (reconciled)", "bias (base)"]
    columns = [LEVEL, "model", "series", "cells", *(c for c in shown if c in frame.columns)]
    renamed = {"wape (reconciled)": "WAPE", "bias (reconciled)": "bias"}
    frame = frame[columns].rename(columns=renamed)
    frame = frame.reset_index(drop=True)
    best: dict[str, set[int]] = {"WAPE": set()}
    for _, rows in frame.groupby(LEVEL, sort=False):
        values = rows["WAPE"].to_numpy(dtype=float)
        if np.isfinite(values).any():
            best["WAPE"].add(int(rows.index[int(np.nanargmin(values))]))
    body = table(frame, best)
    body += (
        "<p>Each level scored on its own: the items, the categories (sums of their items' "
        "sales) and the total. <b>WAPE</b> and <b>bias</b> are those of the reconciled "
        "forecasts, which add up (items to categories, categories to the total); "
        "<b>(base)</b> are the level's own forecasts before reconciliation. The lowest WAPE of "
        f"each level is highlighted. Levels: {escape(', '.join(sorted(set(frame[LEVEL]))))}.</p>"
    )
    return Section("levels", "Category and total", body)
