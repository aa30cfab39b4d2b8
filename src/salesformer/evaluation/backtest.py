"""Rolling-origin backtests: one driver for every forecaster.

At each cutoff (the last period a model may see), every model is fitted on
``panel.until(cutoff)`` and asked for ``horizon`` periods, with the known-future covariates of
those periods (planned prices and promotions are known in advance; past-only covariates and
sales are not). Forecasts are kept for the *evaluated* items of that cutoff: items whose first
period is at least ``min_history`` periods before the cutoff and that sold at least once in the
``active_within`` periods up to it. When the panel marks stock-outs (``in_stock``), the
forecasts keep that column and the metrics leave the out-of-stock cells out.

This is the backtest of a panel in memory, in one piece (with ``plan``, ``levels`` and
``keep_fitted``). A saved panel folder is backtested part by part by the driver of
:mod:`salesformer.distributed.backtest` (``salesformer backtest``, on this machine or on Ray),
which shares :func:`series_facts` and :func:`window_actuals` with it and equals it exactly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from salesformer._io import atomic_dir, json_text
from salesformer.data.availability import IN_STOCK, availability_columns
from salesformer.data.contract import ACTUAL, CUTOFF, DATE, ITEM_ID, SALES, Panel
from salesformer.errors import ConfigError
from salesformer.evaluation.levels import level_metrics, level_window
from salesformer.evaluation.metrics import SCALE_MAE, SCALE_MSE, evaluate
from salesformer.forecasting.levels import (
    DEFAULT_RECONCILER,
    LEVEL,
    check_reconciler,
    level_series,
    parse_levels,
)
from salesformer.forecasting.plans import backtest_plan, check_backtest_plan
from salesformer.forecasting.protocol import DEFAULT_QUANTILES, Forecaster, check_horizon

#: ``progress(description, advance)`` callback; the CLI passes a rich progress bar.
ProgressHook = Callable[[str], None]

HISTORY_SEGMENT = "history_segment"
INTERMITTENCY = "intermittency"


@dataclass
class BacktestResult:
    """Forecasts with actuals, per-series facts, and timings of one backtest."""

    forecasts: pd.DataFrame
    series: pd.DataFrame
    timings: pd.DataFrame
    horizon: int
    cutoffs: list[pd.Timestamp] = field(default_factory=list)
    #: Forecasts per level (``level, item_id, cutoff, date, y``, reconciled ``<model>`` and
    #: ``<model>-base``) when the backtest was asked for levels; see :mod:`.levels`.
    levels: pd.DataFrame | None = None
    #: The models fitted at the last cutoff, by name, when the backtest was asked to keep them.
    fitted: dict[str, Forecaster] = field(default_factory=dict)

    def scored(self) -> pd.DataFrame:
        """Forecasts joined with per-series facts (scales, segments), ready for metrics.

        Out-of-stock cells (``in_stock`` False) are left out: their sales are not demand.
        """
        frame = self.forecasts
        if IN_STOCK in frame.columns:
            frame = frame.loc[frame[IN_STOCK].to_numpy(dtype=bool)]
        return frame.merge(self.series, on=[ITEM_ID, CUTOFF], how="left")

    def metrics(self, by: str | None = None) -> pd.DataFrame:
        """All metrics per model, overall or per segment column (see :func:`evaluate`)."""
        models = [str(m) for m in self.timings["model"].unique()]
        return evaluate(self.scored(), models=models, by=by)

    def save(self, folder: str | Path) -> None:
        """Write ``forecasts.parquet``, ``series.parquet`` and ``metrics.json`` to ``folder``."""
        summary = json_text(self.summary())
        with atomic_dir(folder, kind="backtest") as staging:
            self.forecasts.to_parquet(staging / "forecasts.parquet", index=False)
            self.series.to_parquet(staging / "series.parquet", index=False)
            (staging / "metrics.json").write_text(summary)
            if self.levels is not None:
                self.levels.to_parquet(staging / "levels.parquet", index=False)

    def summary(self) -> dict[str, object]:
        """JSON-ready summary: settings, overall and segment metrics, timings."""
        segments = {}
        for column in (HISTORY_SEGMENT, INTERMITTENCY, "category"):
            if column in self.series.columns:
                segments[column] = _records(self.metrics(by=column))
        timing = (
            self.timings.groupby("model", sort=False)[["fit_seconds", "predict_seconds"]]
            .sum()
            .reset_index()
        )
        by_level = {}
        if self.levels is not None:
            by_level = {"by_level": _records(level_metrics(self.levels, models_of(self)))}
        return {
            "horizon": self.horizon,
            "cutoffs": [str(c.date()) for c in self.cutoffs],
            "series": len(self.series),
            "cells": len(self.forecasts),
            "out_of_stock_cells": _out_of_stock(self.forecasts),
            "overall": _records(self.metrics()),
            "by_segment": segments,
            "timings": _records(timing),
            **by_level,
        }


def models_of(result: BacktestResult) -> list[str]:
    """The names of the backtested models, in order."""
    return [str(m) for m in result.timings["model"].unique()]


def _out_of_stock(forecasts: pd.DataFrame) -> int:
    """Cells left out of scoring because the item was out of stock."""
    if IN_STOCK not in forecasts.columns:
        return 0
    return int((~forecasts[IN_STOCK].to_numpy(dtype=bool)).sum())


def _records(frame: pd.DataFrame) -> list[dict[str, object]]:
    clean = frame.astype(object).where(pd.notna(frame), None)
    return [
        {str(k): (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
        for row in clean.to_dict(orient="records")
    ]


def resolve_cutoffs(
    panel: Panel,
    horizon: int,
    cutoffs: Sequence[str | pd.Timestamp] | None = None,
    n_windows: int | None = None,
    step: int | None = None,
) -> list[pd.Timestamp]:
    """Explicit cutoffs, checked; or ``n_windows`` cutoffs ``step`` periods apart ending so
    that the last window ends on the panel's last date."""
    check_horizon(horizon)
    dates = panel.dates
    if horizon >= len(dates):
        raise ConfigError(
            f"horizon {horizon} leaves no history: the panel has {len(dates)} periods "
            f"({dates[0].date()} .. {dates[-1].date()}); use a horizon below {len(dates)}"
        )
    last_allowed = dates[-1] - horizon * panel.offset
    if cutoffs:
        if n_windows is not None:
            raise ConfigError("give either cutoffs or n_windows, not both")
        stamps = sorted({_cutoff_date(c) for c in cutoffs})
        not_dates = [str(c.date()) for c in stamps if c not in dates]
        if not_dates:
            raise ConfigError(
                f"cutoffs {not_dates} are not dates of the panel ({panel.freq}, "
                f"{dates[0].date()} .. {dates[-1].date()}); use dates on that grid"
            )
        late = [str(c.date()) for c in stamps if c > last_allowed]
        if late:
            raise ConfigError(
                f"cutoffs {late} leave fewer than {horizon} periods of actuals before the "
                f"panel ends on {dates[-1].date()}; "
                f"the last possible cutoff is {last_allowed.date()}"
            )
        return stamps
    windows = 1 if n_windows is None else n_windows
    gap = horizon if step is None else step
    if windows < 1 or gap < 1:
        raise ConfigError(f"n_windows and step must be >= 1; got {windows} and {gap}")
    last = dates.get_loc(last_allowed)
    positions = [last - k * gap for k in range(windows)]
    if min(positions) < 1:
        raise ConfigError(
            f"{windows} windows {gap} periods apart with horizon {horizon} need more history "
            f"than the panel's {len(dates)} periods; use fewer windows or a smaller step"
        )
    return sorted(dates[p] for p in positions)


def _cutoff_date(value: str | pd.Timestamp) -> pd.Timestamp:
    """A cutoff as a date; :class:`ConfigError` for text that is not one."""
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ConfigError(
            f"cutoff {str(value)!r} is not a date; give ISO dates such as 2023-06-26, "
            "comma-separated (--cutoffs 2023-05-29,2023-06-26)"
        ) from exc
    if pd.isna(stamp):
        raise ConfigError(f"cutoff {str(value)!r} is not a date; give ISO dates such as 2023-06-26")
    return stamp


def _intermittency(history: pd.DataFrame) -> pd.Series:
    """Syntetos-Boylan class per item: smooth, erratic, intermittent or lumpy."""
    grouped = history.groupby(ITEM_ID, sort=True)[SALES]
    nonzero = history[history[SALES] > 0].groupby(ITEM_ID, sort=True)[SALES]
    adi = grouped.size() / nonzero.size().reindex(grouped.size().index).replace(0, np.nan)
    cv2 = (nonzero.std(ddof=0) / nonzero.mean()) ** 2
    cv2 = cv2.reindex(adi.index)
    label = np.where(
        adi.isna(),
        "no sales",
        np.where(
            adi < 1.32,
            np.where(cv2 < 0.49, "smooth", "erratic"),
            np.where(cv2 < 0.49, "intermittent", "lumpy"),
        ),
    )
    return pd.Series(label, index=adi.index)


def series_facts(
    panel: Panel, cutoff: pd.Timestamp, min_history: int, active_within: int | None
) -> pd.DataFrame:
    """Evaluated items at ``cutoff`` with history length, naive scales and segments."""
    history = panel.until(cutoff).sales
    grouped = history.groupby(ITEM_ID, sort=True)
    first = grouped[DATE].min()
    length = grouped.size()
    earliest = cutoff - min_history * panel.offset
    keep = first <= earliest
    if active_within is not None:
        recent = history[history[DATE] > cutoff - active_within * panel.offset]
        sold = recent.groupby(ITEM_ID, sort=True)[SALES].sum().reindex(first.index, fill_value=0)
        keep &= sold > 0
    ids = first.index[keep]
    kept = history[history[ITEM_ID].isin(ids)]
    diff = kept.groupby(ITEM_ID, sort=True)[SALES].diff()
    scales = (
        pd.DataFrame({ITEM_ID: kept[ITEM_ID], "abs": diff.abs(), "sq": diff**2})
        .groupby(ITEM_ID, sort=True)
        .agg(**{SCALE_MAE: ("abs", "mean"), SCALE_MSE: ("sq", "mean")})
    )
    facts = pd.DataFrame({ITEM_ID: ids, CUTOFF: cutoff})
    facts["history_length"] = length.reindex(ids).to_numpy()
    facts[HISTORY_SEGMENT] = np.where(facts["history_length"] <= 26, "short (<=26)", "long (>26)")
    facts[INTERMITTENCY] = _intermittency(kept).reindex(ids).to_numpy()
    facts = facts.merge(scales.fillna(0.0), left_on=ITEM_ID, right_index=True, how="left")
    if panel.items is not None and "category" in panel.items.columns:
        categories = panel.items.set_index(ITEM_ID)["category"]
        facts["category"] = facts[ITEM_ID].map(categories).fillna("unknown").astype(str)
    return facts


def window_actuals(
    panel: Panel, cutoff: pd.Timestamp, horizon: int, series: pd.DataFrame
) -> pd.DataFrame:
    """The actuals of the evaluated items (``series``) in the window after ``cutoff``.

    Columns ``item_id, date, y`` and the stock-out column when the panel has one (those cells
    are not scored); every backtest driver joins the models' forecasts to this frame.
    """
    actual = panel.window(cutoff, horizon)
    kept = [ITEM_ID, DATE, SALES, *availability_columns(actual)]
    actual = actual.loc[actual[ITEM_ID].isin(series[ITEM_ID]), kept]
    return actual.rename(columns={SALES: ACTUAL})


def _fit_predict(
    model: Forecaster,
    train: Panel,
    horizon: int,
    future: pd.DataFrame,
    quantiles: Sequence[float],
) -> tuple[pd.DataFrame, dict[str, float], Forecaster]:
    """A fresh clone of ``model`` fitted on ``train``, its forecast, the seconds each took and
    the fitted clone."""
    fitted = model.clone()
    start = time.perf_counter()
    fitted.fit(train)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    forecast = fitted.predict(horizon, future=future, quantiles=quantiles)
    predict_seconds = time.perf_counter() - start
    return forecast, {"fit_seconds": fit_seconds, "predict_seconds": predict_seconds}, fitted


def backtest(
    models: Sequence[Forecaster],
    panel: Panel,
    horizon: int,
    cutoffs: Sequence[str | pd.Timestamp] | None = None,
    *,
    n_windows: int | None = None,
    step: int | None = None,
    min_history: int = 13,
    active_within: int | None = 13,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    progress: ProgressHook | None = None,
    plan: pd.DataFrame | None = None,
    levels: Sequence[str] | None = None,
    reconcile: str = DEFAULT_RECONCILER,
    keep_fitted: bool = False,
) -> BacktestResult:
    """Rolling-origin backtest of ``models`` on ``panel``.

    Args:
        models: forecasters (each is cloned at every cutoff, so the given ones stay unfitted).
        panel: the full panel; models only see ``panel.until(cutoff)``.
        horizon: periods to forecast after each cutoff.
        cutoffs: explicit cutoffs (dates of the panel); or use ``n_windows`` and ``step``.
        n_windows: number of cutoffs, the last one ``horizon`` periods before the panel ends.
        step: periods between cutoffs (default: ``horizon``).
        min_history: evaluated items started at least this many periods before the cutoff.
        active_within: evaluated items sold in the last this-many periods (None: no rule).
        quantiles: quantile levels to forecast.
        progress: called with a description after each model fit at each cutoff.
        plan: known-future covariates as planned at each origin (see
            :func:`salesformer.forecasting.plans.backtest_plan`): what the plan leaves out keeps
            each item's last values at the cutoff. None: the panel's own values of each window.
        levels: also forecast and score these levels (``category``, ``total``; see
            :mod:`salesformer.forecasting.levels`), reconciled with ``reconcile``.
        reconcile: the reconciliation method (:data:`~salesformer.forecasting.levels.RECONCILERS`).
        keep_fitted: keep the models fitted at the last cutoff in :attr:`BacktestResult.fitted`.

    Returns:
        A :class:`BacktestResult`.
    """
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise ConfigError(f"model names must be distinct; got {names}")
    if not names:
        raise ConfigError("give at least one model to backtest")
    stamps = resolve_cutoffs(panel, horizon, cutoffs, n_windows, step)
    if plan is not None:
        plan = check_backtest_plan(panel, plan, stamps)
    wanted = None if levels is None else parse_levels(levels)
    if wanted is not None:
        check_reconciler(reconcile)
        level_series(panel, wanted)  # a missing category column fails now, not after fits
    frames, facts, timings, level_frames = [], [], [], []
    kept_models: dict[str, Forecaster] = {}
    for cutoff in stamps:
        series = series_facts(panel, cutoff, min_history, active_within)
        if series.empty:
            continue
        train = panel.until(cutoff)
        if plan is None:
            future = panel.future_covariates(cutoff, horizon)
        else:
            future = backtest_plan(train, cutoff, horizon, plan).future
        merged = window_actuals(panel, cutoff, horizon, series)
        per_level = None
        for model in models:
            forecast, seconds, fitted = _fit_predict(model, train, horizon, future, quantiles)
            merged = merged.merge(forecast, on=[ITEM_ID, DATE], how="left")
            if wanted is not None:
                window = level_window(
                    fitted, panel, cutoff, horizon, wanted, reconcile, items=forecast
                )
                keys = [LEVEL, ITEM_ID, CUTOFF, DATE, ACTUAL]
                per_level = window if per_level is None else per_level.merge(window, on=keys)
            timings.append({"model": model.name, "cutoff": cutoff, **seconds})
            if keep_fitted:
                kept_models[model.name] = fitted
            if progress is not None:
                progress(f"{model.name} @ {cutoff.date()}")
        merged.insert(1, CUTOFF, cutoff)
        frames.append(merged)
        if per_level is not None:
            level_frames.append(per_level)
        facts.append(series)
    if not frames:
        raise ConfigError(
            f"no item qualifies for evaluation at cutoffs {[str(c.date()) for c in stamps]} "
            f"(min_history={min_history}, active_within={active_within}); lower them or "
            "choose later cutoffs"
        )
    forecasts = pd.concat(frames, ignore_index=True)
    forecasts = forecasts.sort_values([CUTOFF, ITEM_ID, DATE]).reset_index(drop=True)
    return BacktestResult(
        forecasts=forecasts,
        series=pd.concat(facts, ignore_index=True),
        timings=pd.DataFrame(timings),
        horizon=horizon,
        cutoffs=stamps,
        levels=pd.concat(level_frames, ignore_index=True) if level_frames else None,
        fitted=kept_models,
    )
