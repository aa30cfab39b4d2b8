"""Batch forecasting of a saved model's whole catalogue, part by part, on any executor.

:func:`predict_parts` is the one driver; :func:`predict_local` runs it in this process or a
local process pool, :func:`predict_on_ray` on Ray (:mod:`.executors`). What follows says
"Ray's object store" and "workers"; locally, the pool's processes get the shared objects
pickled once, and in-process jobs use them as they are.

The driver loads the model once (as ``salesformer predict`` does; an LM without its training
panel), makes its :meth:`~salesformer.forecasting.Forecaster.shareable` copy for the horizon
and puts it in Ray's object store: workers on any node get it from there, so no shared
filesystem is needed. A statistical model is not fitted on the driver at all: each item's
model depends on its own history only, so workers fit it on their parts; its conformal
quantiles pool calibration errors over every item, which a first pass over the parts
collects (:meth:`calibration_errors`) before the forecasting pass.

The panel is streamed from the model folder's ``panel/panel.parquet`` in parts of whole
items; each worker forecasts a part with
:meth:`~salesformer.forecasting.protocol.Forecaster.for_items`, and the driver appends the parts'
forecasts to the output file in item order as they arrive. The file is written under a
temporary name and renamed at the end, so a failed job leaves no partial output.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from salesformer._io import atomic_file
from salesformer.data.contract import Panel
from salesformer.distributed.engine import check_workers, cluster_workers, ray_session
from salesformer.distributed.executors import (
    Executor,
    RayExecutor,
    check_part_size,
    local_executor,
)
from salesformer.distributed.parts import Part, iter_parts, scan_panel
from salesformer.distributed.pool import PartProgress, RunReport, Stopwatch, peak_rss_mb
from salesformer.errors import ConfigError
from salesformer.forecasting.protocol import (
    DEFAULT_QUANTILES,
    Forecaster,
    check_horizon,
    check_quantiles,
    fitted_horizon,
)
from salesformer.models.conformal import error_quantiles
from salesformer.models.statistical import _StatsForecastModel

OUTPUT_SUFFIXES = (".csv", ".parquet")
PANEL_DIR = "panel"


def load_for_workers(model_dir: str | Path) -> Forecaster:
    """The saved model as the driver needs it for a Ray job.

    Each model says what that is (:meth:`Forecaster.load_for_parts`): a statistical model
    comes back *unfitted* (its settings), as each item's model depends on its own history only
    and workers fit it part by part; an LM is read without its training panel; every other
    model is loaded as :func:`~salesformer.models.persist.load_model` loads it.
    """
    from salesformer.models.persist import read_config
    from salesformer.models.registry import model_class

    path = Path(model_dir)
    config = read_config(path)
    return model_class(str(config["model"])).load_for_parts(path)


def splits_into_parts(model_dir: str | Path) -> bool:
    """Whether the saved model's kind forecasts parts of its items (:func:`predict_parts`).

    Statistical models are fitted part by part; the others need their own :meth:`for_items`.
    """
    from salesformer.models.persist import read_config
    from salesformer.models.registry import model_class

    kind = model_class(str(read_config(Path(model_dir))["model"]))
    return issubclass(kind, _StatsForecastModel) or kind.for_items is not Forecaster.for_items


def check_splittable(model: Forecaster) -> None:
    """A :class:`ConfigError` for a model that cannot forecast a part of its items."""
    if type(model).for_items is Forecaster.for_items:
        raise ConfigError(
            f"{type(model).__name__} ({model.name}) cannot forecast parts of its catalogue; "
            "use --engine local for it"
        )


def forecast_part(
    panel: Panel, shared: list[Any], *, horizon: int, quantiles: tuple[float, ...]
) -> pa.Table:
    """The job of one part: the shared model's forecast of the part's items, as Arrow."""
    model: Forecaster = shared[0]
    frame = model.for_items(panel).predict(horizon, quantiles=quantiles)
    return pa.Table.from_pandas(frame, preserve_index=False)


def calibrate_part(
    panel: Panel, shared: list[Any], *, horizon: int, dates: pd.DatetimeIndex
) -> np.ndarray:
    """The job of a part in the calibration pass: its items' scaled calibration errors."""
    model: _StatsForecastModel = shared[0].clone().fit(panel)
    return model.calibration_errors(horizon, dates)


def forecast_items_part(
    panel: Panel, shared: list[Any], *, horizon: int, quantiles: tuple[float, ...]
) -> pa.Table:
    """The job of a part for a statistical model: fit on the part, pooled errors, forecast."""
    model: _StatsForecastModel = shared[0].clone().fit(panel)
    if len(shared) > 1:
        model.use_error_table(horizon, quantiles, shared[1])
    frame = model.predict(horizon, quantiles=quantiles)
    return pa.Table.from_pandas(frame, preserve_index=False)


class _OrderedWriter:
    """Appends tables to a Parquet or CSV file, in the order they are given."""

    def __init__(self, path: Path, suffix: str) -> None:
        self.path = path
        self.suffix = suffix
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if self.suffix == ".parquet":
            if self.writer is None:
                self.writer = pq.ParquetWriter(self.path, table.schema)
            self.writer.write_table(table)
        else:
            frame = table.to_pandas()
            frame.to_csv(
                self.path,
                index=False,
                date_format="%Y-%m-%d",
                mode="w" if self.rows == 0 else "a",
                header=self.rows == 0,
            )
        self.rows += table.num_rows

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _check_settings(
    out: str | Path, workers: int | None, quantiles: Sequence[float], items_per_part: int
) -> None:
    """The checks of :func:`predict_on_ray` and :func:`predict_local`, before any worker starts
    (:func:`predict_parts` checks the quantiles again, for its other callers)."""
    _output_file(out)
    check_workers(workers)
    check_quantiles(quantiles)
    check_part_size(items_per_part)


def _output_file(out: str | Path) -> tuple[Path, str]:
    """The forecast file and its suffix, ``.csv`` or ``.parquet``."""
    target = Path(out)
    suffix = target.suffix.lower()
    if suffix not in OUTPUT_SUFFIXES:
        raise ConfigError(
            f"out must end in .csv or .parquet; got {str(target)!r}; e.g. forecasts.parquet"
        )
    return target, suffix


def _prepared_job(model_dir: str | Path, horizon: int | None) -> tuple[int, list[Any], Any, bool]:
    """The horizon, what workers share, the part job and whether a calibration pass runs.

    A statistical model is fitted part by part (with a pooled conformal calibration when its
    intervals are conformal); any other model ships its :meth:`shareable` copy. The full
    model is not kept on the driver.
    """
    model = load_for_workers(model_dir)
    steps = fitted_horizon(model) if horizon is None else horizon
    check_horizon(steps)
    if isinstance(model, _StatsForecastModel):
        calibrate = getattr(model, "intervals", None) == "conformal"
        return steps, [model], forecast_items_part, calibrate
    lean = model.shareable(steps)
    check_splittable(lean)
    return steps, [lean], forecast_part, False


def _error_table(
    executor: Executor,
    parts: Iterator[tuple[int, Part]],
    shared: list[Any],
    steps: int,
    dates: pd.DatetimeIndex,
    levels: tuple[float, ...],
    progress: PartProgress | None,
    total: int,
) -> np.ndarray:
    """The calibration pass: every part's scaled errors, pooled into a quantile table."""
    pooled: list[np.ndarray] = []
    executor.map_parts(
        parts,
        calibrate_part,
        shared,
        {"horizon": steps, "dates": dates},
        # a copy: a kept view of the object store would pin the result there
        lambda _index, rows: pooled.append(np.array(rows)),
        total=total,
        progress=progress,
    )
    # workers get the pool's quantile table, not the pool: bounded whatever the items
    table: np.ndarray = error_quantiles(np.vstack(pooled), levels)
    pooled.clear()
    return table


def predict_parts(
    executor: Executor,
    model_dir: str | Path,
    out: str | Path,
    *,
    horizon: int | None = None,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    items_per_part: int = 2000,
    progress: PartProgress | None = None,
) -> RunReport:
    """The one batch-forecasting driver: every item of a saved model, part by part.

    Args:
        executor: where the parts run (:mod:`salesformer.distributed.executors`); the output
            does not depend on it.
        model_dir, out, horizon, quantiles, items_per_part, progress: as for
            :func:`predict_on_ray`.

    Returns:
        A :class:`RunReport`.
    """
    watch = Stopwatch()
    target, suffix = _output_file(out)
    levels = check_quantiles(quantiles)
    layout = scan_panel(Path(model_dir) / PANEL_DIR)
    steps, objects, job, calibrate = _prepared_job(model_dir, horizon)
    n_parts = layout.n_parts(items_per_part)
    total = 2 * n_parts if calibrate else n_parts
    report = RunReport(model=objects[0].name, horizon=steps, items=layout.n_items)

    def parts() -> Iterator[tuple[int, Part]]:
        return ((p.index, p) for p in iter_parts(layout.folder, items_per_part, layout))

    shared = [executor.share(objects[0])]
    if calibrate:
        table = _error_table(
            executor, parts(), shared, steps, layout.dates, levels, progress, total
        )
        shared.append(executor.share(table))
    offset = n_parts if calibrate else 0
    with atomic_file(target) as staging:
        writer = _OrderedWriter(staging, suffix)
        try:
            report.parts = executor.map_parts(
                parts(),
                job,
                shared,
                {"horizon": steps, "quantiles": levels},
                lambda _index, table: writer.write(table),
                total=total,
                progress=(lambda done, _t: progress(offset + done, total)) if progress else None,
            )
        finally:
            writer.close()
    report.rows = writer.rows
    executor.fill(report)
    report.driver_peak_rss_mb = round(peak_rss_mb(), 1)
    report.seconds = watch.seconds()
    return report


def predict_on_ray(
    model_dir: str | Path,
    out: str | Path,
    *,
    horizon: int | None = None,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    address: str | None = None,
    workers: int | None = None,
    items_per_part: int = 2000,
    progress: PartProgress | None = None,
) -> RunReport:
    """Forecast every item of a saved model on Ray; the output equals ``model.predict``.

    Args:
        model_dir: a folder written by ``salesformer fit`` / :func:`save_model`.
        out: the forecast file, ``.parquet`` or ``.csv``; rows sorted by item and date,
            exactly as ``load_model(model_dir).predict(horizon)`` would write them.
        horizon: periods to forecast (default: the model's horizon).
        quantiles: quantile levels.
        address: an existing Ray cluster (see :func:`ray_session`); None starts a local one.
        workers: worker actors (default: the cluster's CPUs).
        items_per_part: items per part (>= 1); a part's rows and forecasts are what a worker
            holds at once.
        progress: called with ``(parts done, parts in all)`` after each part is written.

    Returns:
        A :class:`RunReport`.

    Raises:
        ConfigError: for a bad setting, a model that cannot forecast parts, or no Ray.
    """
    watch = Stopwatch()
    _check_settings(out, workers, quantiles, items_per_part)
    with ray_session(address, workers) as ray:
        executor = RayExecutor(ray, cluster_workers(ray, workers))
        try:
            report = predict_parts(
                executor,
                model_dir,
                out,
                horizon=horizon,
                quantiles=quantiles,
                items_per_part=items_per_part,
                progress=progress,
            )
        finally:
            executor.close()
    report.seconds = watch.seconds()  # the start of Ray included
    return report


def predict_local(
    model_dir: str | Path,
    out: str | Path,
    *,
    horizon: int | None = None,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    workers: int | None = None,
    items_per_part: int = 2000,
    progress: PartProgress | None = None,
) -> RunReport:
    """Forecast every item of a saved model on this machine, part by part.

    The same driver as :func:`predict_on_ray`, with the parts run in this process
    (``workers=1``) or in a local process pool of ``workers`` processes.

    Args:
        workers: processes (default :func:`default_local_workers`: one per usable core, at
            most one per part; 1 runs in this process).
        model_dir, out, horizon, quantiles, items_per_part, progress: as for
            :func:`predict_on_ray`.
    """
    _check_settings(out, workers, quantiles, items_per_part)
    n_parts = scan_panel(Path(model_dir) / PANEL_DIR).n_parts(items_per_part)
    with local_executor(workers, n_parts) as executor:
        return predict_parts(
            executor,
            model_dir,
            out,
            horizon=horizon,
            quantiles=quantiles,
            items_per_part=items_per_part,
            progress=progress,
        )
