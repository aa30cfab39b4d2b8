"""The ``--ray-address``, ``--workers`` and ``--items-per-part`` options and the part runs.

``predict`` and ``backtest`` share these options and the runs behind them (a progress bar and
a summary line around :mod:`salesformer.distributed`): one driver over parts of items, run on
Ray or on the local engine (in this process, or a local process pool with ``--workers N``).
The checks of the options live in :mod:`salesformer.distributed.engine`. Nothing here imports
Ray or pandas at import time.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from salesformer.distributed.pool import PartProgress, RunReport
    from salesformer.evaluation.backtest import BacktestResult
    from salesformer.forecasting.protocol import Forecaster
    from salesformer.models.registry import Overrides

DEFAULT_ITEMS_PER_PART = 2000

#: The Ray options ``predict`` and ``backtest`` share (``fit`` has its own ``--workers``).
RAY_ADDRESS_OPTION = typer.Option(
    None,
    "--ray-address",
    help="Existing Ray cluster (host:6379, ray://host:10001, auto); default $RAY_ADDRESS, "
    "else a local Ray.",
)
WORKERS_OPTION = typer.Option(
    None,
    "--workers",
    help="Ray: workers (default: the cluster's CPUs); local: processes (default: one per core, "
    "at most one per part; 1: in this process).",
)
ITEMS_PER_PART_OPTION = typer.Option(
    None, "--items-per-part", help="Items per part a worker forecasts at once (default 2000)."
)


@contextmanager
def part_progress(description: str) -> Iterator[PartProgress]:
    """A rich progress bar counting parts; yields the ``progress(done, total)`` callback."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} parts"),
        TimeElapsedColumn(),
        transient=False,
    ) as bar:
        task = bar.add_task(description, total=None)

        def advance(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield advance


def predict_in_parts(
    model_dir: Path,
    out: Path,
    horizon: int | None,
    workers: int | None,
    items_per_part: int | None,
    *,
    on_ray: bool = False,
    address: str | None = None,
) -> RunReport:
    """``salesformer predict`` over parts: on the local engine, or on Ray with ``on_ray``.

    One run with a progress bar and a summary line; the engine is only the executor.
    """
    import typer

    from salesformer.distributed.predict import predict_local, predict_on_ray

    size = items_per_part or DEFAULT_ITEMS_PER_PART
    with part_progress("predict on Ray" if on_ray else "predict") as progress:
        if on_ray:
            report = predict_on_ray(
                model_dir,
                out,
                horizon=horizon,
                address=address,
                workers=workers,
                items_per_part=size,
                progress=progress,
            )
        else:
            report = predict_local(
                model_dir,
                out,
                horizon=horizon,
                workers=workers,
                items_per_part=size,
                progress=progress,
            )
    where = f"on Ray ({report.workers} workers" if on_ray else f"({_where(report.workers)}"
    typer.echo(
        f"forecast {report.items} items x {report.horizon} periods with {report.model} "
        f"{where}, {report.parts} parts, {report.seconds:.1f}s); wrote {out}"
    )
    return report


def _where(workers: int) -> str:
    return "in this process" if workers == 1 else f"a local pool of {workers} processes"


def backtest_in_parts(
    panel: Path,
    models: list[Forecaster],
    horizon: int,
    windows: dict[str, Any],
    workers: int | None,
    items_per_part: int | None,
) -> BacktestResult:
    """``salesformer backtest`` on the local engine: the parts driver, with a progress bar.

    ``windows`` is as for :func:`backtest_with_ray`.
    """
    import typer

    from salesformer.distributed.backtest import backtest_local

    with part_progress("backtest") as progress:
        result, report = backtest_local(
            models,
            panel,
            horizon,
            workers=workers,
            items_per_part=items_per_part or DEFAULT_ITEMS_PER_PART,
            progress=progress,
            **windows,
        )
    typer.echo(
        f"backtest of {report.model}: {report.items} items, {report.parts} parts, "
        f"{_where(report.workers)}, {report.seconds:.1f}s"
    )
    return result


def backtest_models(
    names: list[str],
    horizon: int,
    finetune: str | None,
    encoder: str | None,
    overrides: Overrides | None,
) -> list[Forecaster]:
    """The models of ``salesformer backtest``, built as :func:`run_backtest` builds them."""
    from salesformer.models.registry import LM, build_model

    settings = dict(overrides or {})
    settings[LM] = {"progress": False, **settings.get(LM, {})}
    models = [build_model(name, horizon, finetune, encoder, settings) for name in names]
    for model in models:
        model.check_params()
    return models


def backtest_with_ray(
    panel: Path,
    models: list[Forecaster],
    horizon: int,
    windows: dict[str, Any],
    address: str | None,
    workers: int | None,
    items_per_part: int | None,
) -> BacktestResult:
    """``salesformer backtest --engine ray``: the run with a progress bar and a summary line.

    ``windows`` holds the keyword arguments ``cutoffs``, ``n_windows``, ``step``,
    ``min_history`` and ``active_within`` of :func:`backtest_on_ray`.
    """
    import typer

    from salesformer.distributed.backtest import backtest_on_ray

    with part_progress("backtest on Ray") as progress:
        result, report = backtest_on_ray(
            models,
            panel,
            horizon,
            address=address,
            workers=workers,
            items_per_part=items_per_part or DEFAULT_ITEMS_PER_PART,
            progress=progress,
            **windows,
        )
    typer.echo(
        f"backtest of {report.model} on Ray: {report.items} items, {report.parts} parts, "
        f"{report.workers} workers, {report.seconds:.1f}s"
    )
    return result
