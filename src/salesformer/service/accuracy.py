"""Scores of served forecasts against the sales that arrived: pure functions over a frame.

The frame is a backtest-style forecast frame (``item_id, cutoff, date, y``, the point column
``forecast`` and the quantile columns ``forecast-q10`` and ``forecast-q90``) plus ``period``
(the grid index of ``date``) and, when the items have one, ``category``. Every number comes
from :mod:`salesformer.evaluation.metrics` (``wape``, ``bias``, ``coverage80``), the functions
the backtest reports, so live and backtest accuracy are the same measures.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from salesformer.data.contract import ACTUAL, DATE, ITEM_ID
from salesformer.evaluation.metrics import bias, coverage80, wape
from salesformer.forecasting.protocol import quantile_column
from salesformer.service.metrics import _labels

POINT = "forecast"
LOW = quantile_column(POINT, 0.1)
HIGH = quantile_column(POINT, 0.9)
PERIOD = "period"
CATEGORY = "category"


def _number(value: float) -> float | None:
    return None if not math.isfinite(value) else round(float(value), 6)


def score(frame: pd.DataFrame) -> dict[str, Any]:
    """Cells, actual units, WAPE, bias and 80% coverage of the frame's cells.

    Coverage counts only cells served with both the 10% and the 90% quantile (None when no
    cell was); WAPE and bias are None when the cells sold nothing.
    """
    banded = frame.dropna(subset=[LOW, HIGH])
    return {
        "cells": len(frame),
        "actual": round(float(frame[ACTUAL].sum()), 6),
        "forecast": round(float(frame[POINT].sum()), 6),
        "wape": _number(wape(frame, POINT)) if len(frame) else None,
        "bias": _number(bias(frame, POINT)) if len(frame) else None,
        "coverage80": _number(coverage80(banded, POINT)) if len(banded) else None,
    }


def scores_by(frame: pd.DataFrame, key: str) -> dict[str, dict[str, Any]]:
    """:func:`score` of each group of ``key``, from grouped sums (one pass, not one per group).

    The same definitions as :mod:`salesformer.evaluation.metrics` (``wape``, ``bias``,
    ``coverage80``), summed per group: a catalogue's items are scored in one pass rather than
    thousands of calls (the tests check both give the same numbers).
    """
    if frame.empty:
        return {}
    y = frame[ACTUAL].to_numpy(dtype=float)
    f = frame[POINT].to_numpy(dtype=float)
    low, high = frame[LOW].to_numpy(dtype=float), frame[HIGH].to_numpy(dtype=float)
    banded = ~(np.isnan(low) | np.isnan(high))
    parts = pd.DataFrame(
        {
            "key": frame[key].to_numpy(),
            "cells": 1,
            "actual": y,
            "forecast": f,
            "abs_error": np.abs(y - f),
            "over": f - y,
            "scale": np.abs(y),
            "banded": banded.astype(int),
            "inside": (banded & (y >= low) & (y <= high)).astype(int),
        }
    )
    sums = parts.groupby("key", sort=True).sum()
    out: dict[str, dict[str, Any]] = {}
    for name, row in zip(sums.index, sums.itertuples(index=False), strict=True):
        scale = float(row.scale)
        out[str(name)] = {
            "cells": int(row.cells),
            "actual": round(float(row.actual), 6),
            "forecast": round(float(row.forecast), 6),
            "wape": _number(row.abs_error / scale) if scale > 0 else None,
            "bias": _number(row.over / scale) if scale > 0 else None,
            "coverage80": _number(row.inside / row.banded) if row.banded else None,
        }
    return out


def window_scores(frame: pd.DataFrame, periods: int, last: int) -> dict[str, Any]:
    """Scores of the cells dated in the ``periods`` periods that end with period ``last``.

    Returns:
        ``periods``, ``overall``, ``by_category`` (when the frame has categories) and
        ``by_item``, each score as :func:`score` gives it.
    """
    part = frame[(frame[PERIOD] > last - periods) & (frame[PERIOD] <= last)]
    by_category: dict[str, Any] = {}
    if CATEGORY in part.columns:
        by_category = scores_by(part.dropna(subset=[CATEGORY]), CATEGORY)
    return {
        "periods": periods,
        "overall": score(part),
        "by_category": by_category,
        "by_item": scores_by(part, ITEM_ID),
    }


def over_time(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """One overall score per forecast date, oldest first (the dashboard's accuracy chart)."""
    if frame.empty:
        return []
    days = frame.assign(**{DATE: pd.to_datetime(frame[DATE]).dt.strftime("%Y-%m-%d")})
    return [{"date": day, **values} for day, values in scores_by(days, DATE).items()]


_GAUGES = (
    ("wape", "Live WAPE of served forecasts (sum|e| / sum|y|) over the last N closed periods."),
    ("bias", "Live bias of served forecasts (sum(yhat - y) / sum|y|) over the window."),
    ("coverage80", "Share of actuals inside the served 10%-90% interval over the window."),
    ("cells", "Scored forecast cells (item x period x origin) in the window."),
)


def prometheus_lines(report: dict[str, Any]) -> list[str]:
    """The monitor's report as Prometheus gauges (text exposition format 0.0.4).

    ``salesformer_accuracy_<measure>{scope, window, model_version[, category | item_id]}`` for
    overall, per category and per item scores, ``salesformer_backtest_wape`` and
    ``salesformer_accuracy_alert`` (1 while the alert fires).
    """
    version = str(report["model_version"])
    lines: list[str] = []
    for measure, text in _GAUGES:
        name = f"salesformer_accuracy_{measure}"
        lines += [f"# HELP {name} {text}", f"# TYPE {name} gauge"]
        for window in report["windows"]:
            common = {"window": str(window["periods"]), "model_version": version}
            scopes = [({"scope": "overall"}, window["overall"])]
            scopes += [
                ({"scope": "category", "category": key}, value)
                for key, value in window["by_category"].items()
            ]
            scopes += [
                ({"scope": "item", "item_id": key}, value)
                for key, value in window["by_item"].items()
            ]
            for labels, value in scopes:
                if value[measure] is not None:
                    lines.append(f"{name}{_labels(**labels, **common)} {value[measure]}")
    alert = report["alert"]
    lines += [
        "# HELP salesformer_accuracy_alert 1 while live WAPE exceeds the backtest's by the margin.",
        "# TYPE salesformer_accuracy_alert gauge",
        f"salesformer_accuracy_alert{_labels(window=str(alert['window']), model_version=version)}"
        f" {int(alert['firing'])}",
    ]
    if report["backtest"] is not None:
        lines += [
            "# HELP salesformer_backtest_wape The served model's backtest WAPE (metrics.json).",
            "# TYPE salesformer_backtest_wape gauge",
            f"salesformer_backtest_wape{_labels(model_version=version)} "
            f"{report['backtest']['wape']}",
        ]
    lines += [
        "# HELP salesformer_served_forecast_cells Forecast cells recorded for monitoring.",
        "# TYPE salesformer_served_forecast_cells gauge",
        f"salesformer_served_forecast_cells{_labels(model_version=version)} "
        f"{report['recorded_cells']}",
    ]
    return lines
