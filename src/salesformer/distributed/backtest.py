"""The backtest driver over parts of items, on any executor; equal to the whole-panel backtest.

:func:`backtest_parts` is the one driver; :func:`backtest_local` runs it in this process or a
local process pool, :func:`backtest_on_ray` on Ray (:mod:`.executors`). Its result equals
:func:`salesformer.evaluation.backtest.backtest`'s on the same panel.

The panel is streamed in parts of whole items (:func:`~salesformer.distributed.parts.iter_parts`);
on Ray each part is put once in the object store. Then, on the executor's workers:

1. **survey** (one job per part): how many items each cutoff evaluates, and, for the
   statistical models with conformal quantiles, each item's calibration errors at each
   cutoff. Those errors are pooled over all parts on the driver, as one fit on all items
   would pool them.
2. **global fits** (one job per global model and cutoff): LightGBM, LightGBM-text, LM and
   auto learn across items, so each is fitted on every item up to the cutoff, once; the
   fitted model stays in the object store (its :meth:`shareable` copy).
3. **forecasts** (one job per part): at each cutoff, the statistical models are fitted on the
   part's items (each item's model depends on its history only) with the pooled errors, and
   the global models forecast the part through :meth:`for_items`; actuals and series facts
   are joined as the local backtest joins them.

The driver holds the parts' handles (on Ray, object references), the pooled calibration
errors and the scored forecasts it returns (what :class:`BacktestResult` holds), never the
panel itself. What it keeps of a part's result it copies (:func:`~.collect.owned`): Ray hands
numeric columns over as read-only views of its object store, and a view that stays referenced
keeps its object pinned there, so the store could never reuse that memory.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from salesformer._io import atomic_file
from salesformer.data.contract import CUTOFF, DATE, ITEM_ID, Panel, validate_panel
from salesformer.distributed.collect import Collector
from salesformer.distributed.engine import check_workers, cluster_workers, ray_session
from salesformer.distributed.executors import (
    Executor,
    RayExecutor,
    check_part_size,
    local_executor,
)
from salesformer.distributed.parts import PanelLayout, Part, iter_parts, read_items, scan_panel
from salesformer.distributed.pool import PartProgress, RunReport, Stopwatch, peak_rss_mb
from salesformer.distributed.predict import check_splittable
from salesformer.errors import ConfigError
from salesformer.evaluation.backtest import (
    BacktestResult,
    resolve_cutoffs,
    series_facts,
    window_actuals,
)
from salesformer.forecasting.protocol import DEFAULT_QUANTILES, Forecaster, check_quantiles
from salesformer.models.conformal import error_quantiles
from salesformer.models.statistical import _StatsForecastModel

Key = tuple[int, int]  # (model index, cutoff index)


def _is_local(model: Forecaster) -> bool:
    """Whether each item's forecast depends on its own history only (statistical models)."""
    return isinstance(model, _StatsForecastModel)


def _pools(model: Forecaster) -> bool:
    return _is_local(model) and getattr(model, "intervals", None) == "conformal"


def survey_part(
    panel: Panel,
    shared: list[Any],
    *,
    stamps: list[pd.Timestamp],
    dates: pd.DatetimeIndex,
    horizon: int,
    min_history: int,
    active_within: int | None,
) -> dict[str, Any]:
    """Phase 1 of a part: evaluated items per cutoff and calibration errors per (model, cutoff)."""
    models: list[Forecaster] = shared[0]
    counts = []
    errors: dict[Key, np.ndarray] = {}
    for c, cutoff in enumerate(stamps):
        train = panel.until(cutoff)
        if train.sales.empty:
            counts.append(0)
            continue
        counts.append(len(series_facts(panel, cutoff, min_history, active_within)))
        for m, model in enumerate(models):
            if _pools(model):
                fitted = model.clone().fit(train)
                known = dates[dates <= cutoff]
                errors[(m, c)] = fitted.calibration_errors(horizon, known)  # type: ignore[attr-defined]
    return {"counts": counts, "errors": errors}


def fit_global(
    shared: list[Any],
    *,
    model_index: int,
    cutoff: pd.Timestamp,
    horizon: int,
    parts: list[Part],
    freq: str,
    known_future: tuple[str, ...],
    past_only: tuple[str, ...],
) -> tuple[Forecaster, float]:
    """Phase 2: fit one global model on every item up to ``cutoff``; its shareable copy."""
    models: list[Forecaster] = shared[0]
    items: pa.Table | None = shared[1]
    sales = pa.concat_tables([p.sales for p in parts]).to_pandas()
    full = validate_panel(
        sales,
        None if items is None else items.to_pandas(),
        freq=freq,
        known_future=known_future,
        past_only=past_only,
    )
    train = full.until(cutoff)
    del full, sales
    start = time.perf_counter()
    fitted = models[model_index].clone().fit(train)
    seconds = time.perf_counter() - start
    return fitted.shareable(horizon), seconds


def forecast_part(
    panel: Panel,
    shared: list[Any],
    *,
    stamps: list[pd.Timestamp],
    active: list[int],
    fitted_keys: list[Key],
    horizon: int,
    min_history: int,
    active_within: int | None,
    quantiles: tuple[float, ...],
) -> dict[str, Any]:
    """Phase 3 of a part: its scored forecasts and series facts at every active cutoff."""
    models: list[Forecaster] = shared[0]
    pooled: dict[Key, np.ndarray] = shared[1]
    fitted = dict(zip(fitted_keys, shared[2:], strict=True))
    frames, facts, timings = [], [], []
    for c in active:
        cutoff = stamps[c]
        train = panel.until(cutoff)
        if train.sales.empty:
            continue
        series = series_facts(panel, cutoff, min_history, active_within)
        if series.empty:
            continue
        future = panel.future_covariates(cutoff, horizon)
        merged = window_actuals(panel, cutoff, horizon, series)
        for m, model in enumerate(models):
            start = time.perf_counter()
            if (m, c) in fitted:
                view = fitted[(m, c)].for_items(train)
            else:
                view = model.clone().fit(train)
                if (m, c) in pooled:
                    view.use_error_table(horizon, quantiles, pooled[(m, c)])  # type: ignore[attr-defined]
            fit_seconds = time.perf_counter() - start
            start = time.perf_counter()
            forecast = view.predict(horizon, future=future, quantiles=quantiles)
            predict_seconds = time.perf_counter() - start
            merged = merged.merge(forecast, on=[ITEM_ID, DATE], how="left")
            timings.append((m, c, fit_seconds, predict_seconds))
        merged.insert(1, CUTOFF, cutoff)
        frames.append((c, merged))
        facts.append((c, series))
    return {"frames": frames, "facts": facts, "timings": timings}


def split_into_parts(models: Sequence[Forecaster]) -> bool:
    """Whether every model runs in the parts driver (statistical, or with :meth:`for_items`)."""
    return all(
        _is_local(model) or type(model).for_items is not Forecaster.for_items for model in models
    )


def _check_models(models: Sequence[Forecaster]) -> list[Forecaster]:
    names = [m.name for m in models]
    if not names:
        raise ConfigError("give at least one model to backtest")
    if len(set(names)) != len(names):
        raise ConfigError(f"model names must be distinct; got {names}")
    for model in models:
        model.check_params()
        if not _is_local(model):
            check_splittable(model)
    return list(models)


@dataclass
class _Run:
    """The executor of a backtest and the parts it reads.

    The global fits read every part: only then are the parts kept between the passes
    (``keep_parts``; on Ray, in the object store); otherwise the second pass streams them
    from the file again, so only the parts in flight are held.
    """

    executor: Executor
    layout: PanelLayout
    items_per_part: int
    keep_parts: bool
    part_refs: list[Any] = field(default_factory=list)

    def stored_parts(self) -> Iterator[tuple[int, Any]]:
        """``(index, handle)`` of every part, kept (when asked) as it is read."""
        for part in iter_parts(self.layout.folder, self.items_per_part, self.layout):
            handle = self.executor.keep(part)
            if self.keep_parts:
                self.part_refs.append(handle)
            yield part.index, handle


def _survey(
    run: _Run,
    models_ref: Any,
    options: dict[str, Any],
    levels: tuple[float, ...],
    total: int,
    progress: PartProgress | None,
) -> tuple[list[int], dict[Key, np.ndarray]]:
    """The first pass: the cutoffs with items to score and the pooled error quantiles."""
    counts = np.zeros(len(options["stamps"]), dtype=int)
    errors: dict[Key, list[np.ndarray]] = {}

    def take_survey(_index: int, result: dict[str, Any]) -> None:
        counts[:] += np.asarray(result["counts"], dtype=int)
        for key, rows in result["errors"].items():
            errors.setdefault(key, []).append(np.array(rows))  # a copy: see collect.owned

    run.executor.map_parts(
        run.stored_parts(),
        survey_part,
        [models_ref],
        options,
        take_survey,
        total=total,
        progress=progress,
    )
    active = [c for c in range(len(counts)) if counts[c] > 0]
    # workers get each pool's quantile table, not the pool: bounded whatever the items
    pooled = {key: error_quantiles(np.vstack(rows), levels) for key, rows in errors.items()}
    errors.clear()
    return active, pooled


def _start_global_fits(
    run: _Run,
    chosen: list[Forecaster],
    models_ref: Any,
    active: list[int],
    stamps: list[pd.Timestamp],
    horizon: int,
) -> tuple[list[Key], list[Any], dict[Key, Any]]:
    """Start the fit of each global model at each active cutoff (on Ray, one per worker in turn).

    Returns the ``(model, cutoff)`` keys, the handles of the fitted models and of their fit
    seconds.
    """
    layout = run.layout
    items_ref = run.executor.share(read_items(layout.folder))
    fitted_keys: list[Key] = []
    fitted_refs: list[Any] = []
    fit_seconds: dict[Key, Any] = {}
    for m, model in enumerate(chosen):
        if _is_local(model):
            continue
        for c in active:
            model_ref, seconds_ref = run.executor.call(
                fit_global,
                [models_ref, items_ref],
                {
                    "model_index": m,
                    "cutoff": stamps[c],
                    "horizon": horizon,
                    "freq": layout.freq,
                    "known_future": layout.known_future,
                    "past_only": layout.past_only,
                },
                list(run.part_refs),
            )
            fitted_keys.append((m, c))
            fitted_refs.append(model_ref)
            fit_seconds[(m, c)] = seconds_ref
    return fitted_keys, fitted_refs, fit_seconds


def _forecast_pass(
    run: _Run,
    shared: list[Any],
    options: dict[str, Any],
    out_forecasts: str | Path | None,
    total: int,
    progress: PartProgress | None,
) -> Collector:
    """The second pass: every part's scored forecasts, collected (and written when asked)."""
    with ExitStack() as stack:
        staging = None if out_forecasts is None else stack.enter_context(atomic_file(out_forecasts))
        collected = Collector(len(options["stamps"]), staging)
        try:
            run.executor.map_parts(
                enumerate(run.part_refs) if run.keep_parts else run.stored_parts(),
                forecast_part,
                shared,
                options,
                collected.add,
                total=total,
                progress=progress,
            )
        finally:
            collected.close()
    return collected


@dataclass(frozen=True)
class Windows:
    """The cutoffs and evaluation rules of a backtest (see :func:`backtest_on_ray`)."""

    cutoffs: Sequence[str | pd.Timestamp] | None = None
    n_windows: int | None = None
    step: int | None = None
    min_history: int = 13
    active_within: int | None = 13


def backtest_parts(
    executor: Executor,
    models: Sequence[Forecaster],
    layout: PanelLayout,
    horizon: int,
    windows: Windows,
    *,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    items_per_part: int = 2000,
    out_forecasts: str | Path | None = None,
    progress: PartProgress | None = None,
) -> tuple[BacktestResult, RunReport]:
    """The one backtest driver over parts of items; ``executor`` decides where parts run.

    Args:
        executor: :mod:`salesformer.distributed.executors`; the result does not depend on it.
        models: checked forecasters (:func:`check_part_models`).
        layout: the panel folder's :func:`scan_panel`.
        horizon, windows, quantiles, items_per_part, out_forecasts, progress: as for
            :func:`backtest_on_ray`.
    """
    watch = Stopwatch()
    chosen = list(models)
    levels = check_quantiles(quantiles)
    stamps = resolve_cutoffs(
        layout.dates_panel(), horizon, windows.cutoffs, windows.n_windows, windows.step
    )
    n_parts = layout.n_parts(items_per_part)
    total = 2 * n_parts
    report = RunReport(
        model=",".join(m.name for m in chosen), horizon=horizon, items=layout.n_items
    )
    rules = {"stamps": stamps, "horizon": horizon, "min_history": windows.min_history}
    rules["active_within"] = windows.active_within
    keep = any(not _is_local(model) for model in chosen)
    run = _Run(executor, layout, items_per_part, keep)
    models_ref = executor.share(chosen)
    survey = {**rules, "dates": layout.dates}
    active, pooled = _survey(run, models_ref, survey, levels, total, progress)
    fitted_keys, fitted_refs, fit_seconds = _start_global_fits(
        run, chosen, models_ref, active, stamps, horizon
    )
    pooled_ref = executor.share(pooled)
    del pooled
    options = {**rules, "active": active, "fitted_keys": fitted_keys, "quantiles": levels}
    shared = [models_ref, pooled_ref, *(executor.shared_result(ref) for ref in fitted_refs)]
    second = (lambda done, _t: progress(n_parts + done, total)) if progress else None
    collected = _forecast_pass(run, shared, options, out_forecasts, total, second)
    global_seconds = {key: float(executor.value(ref)) for key, ref in fit_seconds.items()}
    run.part_refs.clear()
    result = collected.result(
        chosen, stamps, horizon, global_seconds, windows.min_history, windows.active_within
    )
    report.parts = n_parts
    report.rows = len(result.forecasts)
    executor.fill(report)
    report.driver_peak_rss_mb = round(peak_rss_mb(), 1)
    report.seconds = watch.seconds()
    return result, report


def _checked(
    models: Sequence[Forecaster],
    workers: int | None,
    quantiles: Sequence[float],
    items_per_part: int,
    out_forecasts: str | Path | None,
) -> list[Forecaster]:
    chosen = _check_models(models)
    check_workers(workers)
    check_quantiles(quantiles)
    check_part_size(items_per_part)
    if out_forecasts is not None and Path(out_forecasts).suffix.lower() != ".parquet":
        raise ConfigError(f"out_forecasts must end in .parquet; got {str(out_forecasts)!r}")
    return chosen


def backtest_on_ray(
    models: Sequence[Forecaster],
    panel_folder: str | Path,
    horizon: int,
    cutoffs: Sequence[str | pd.Timestamp] | None = None,
    *,
    n_windows: int | None = None,
    step: int | None = None,
    min_history: int = 13,
    active_within: int | None = 13,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    address: str | None = None,
    workers: int | None = None,
    items_per_part: int = 2000,
    out_forecasts: str | Path | None = None,
    progress: PartProgress | None = None,
) -> tuple[BacktestResult, RunReport]:
    """Rolling-origin backtest on Ray; the result equals the local :func:`backtest`'s.

    Args:
        models: unfitted forecasters (cloned at every cutoff), as for :func:`backtest`.
        panel_folder: a panel folder written by ``salesformer prepare`` / :meth:`Panel.save`.
        horizon, cutoffs, n_windows, step, min_history, active_within, quantiles: as for
            :func:`salesformer.evaluation.backtest.backtest`.
        address: an existing Ray cluster (see :func:`ray_session`); None starts a local one.
        workers: worker actors (default: the cluster's CPUs).
        items_per_part: items per part (>= 1).
        out_forecasts: optional Parquet file that receives each part's scored forecasts as
            they arrive (in part order; written atomically).
        progress: called with ``(jobs done, jobs in all)``: two per part.

    Returns:
        ``(BacktestResult, RunReport)``; the result's forecasts, series and metrics equal the
        local backtest's (its timings add up the work of all workers).
    """
    watch = Stopwatch()
    chosen = _checked(models, workers, quantiles, items_per_part, out_forecasts)
    layout = scan_panel(panel_folder)
    windows = Windows(cutoffs, n_windows, step, min_history, active_within)
    with ray_session(address, workers) as ray:
        executor = RayExecutor(ray, cluster_workers(ray, workers))
        try:
            result, report = backtest_parts(
                executor,
                chosen,
                layout,
                horizon,
                windows,
                quantiles=quantiles,
                items_per_part=items_per_part,
                out_forecasts=out_forecasts,
                progress=progress,
            )
        finally:
            executor.close()
    report.seconds = watch.seconds()  # the start of Ray included
    return result, report


def backtest_local(
    models: Sequence[Forecaster],
    panel_folder: str | Path,
    horizon: int,
    cutoffs: Sequence[str | pd.Timestamp] | None = None,
    *,
    n_windows: int | None = None,
    step: int | None = None,
    min_history: int = 13,
    active_within: int | None = 13,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    workers: int | None = None,
    items_per_part: int = 2000,
    out_forecasts: str | Path | None = None,
    progress: PartProgress | None = None,
) -> tuple[BacktestResult, RunReport]:
    """Rolling-origin backtest of a saved panel on this machine, part by part.

    The driver of :func:`backtest_on_ray`, with the parts run in this process (``workers=1``)
    or a local process pool; the result equals :func:`salesformer.evaluation.backtest.backtest`'s.

    Args:
        workers: processes (default: one per usable core, at most one per part; 1 runs in
            this process).
        models, panel_folder, horizon, cutoffs, n_windows, step, min_history, active_within,
        quantiles, items_per_part, out_forecasts, progress: as for :func:`backtest_on_ray`.
    """
    chosen = _checked(models, workers, quantiles, items_per_part, out_forecasts)
    layout = scan_panel(panel_folder)
    windows = Windows(cutoffs, n_windows, step, min_history, active_within)
    with local_executor(workers, layout.n_parts(items_per_part)) as executor:
        return backtest_parts(
            executor,
            chosen,
            layout,
            horizon,
            windows,
            quantiles=quantiles,
            items_per_part=items_per_part,
            out_forecasts=out_forecasts,
            progress=progress,
        )
