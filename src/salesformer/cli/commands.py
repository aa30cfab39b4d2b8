"""``salesformer backtest`` and ``salesformer demo``.

Command bodies import the library lazily so that ``salesformer --help`` stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from salesformer.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from salesformer.data.contract import Panel
    from salesformer.evaluation.backtest import BacktestResult

TABLE_METRICS = ("wape", "mae", "rmse", "mase", "rmsse", "wql", "coverage80", "bias")


def _split(values: str | None) -> list[str]:
    return [v.strip() for v in values.split(",") if v.strip()] if values else []


def _metrics_table(frame: pd.DataFrame, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    table.add_column("model")
    for metric in TABLE_METRICS:
        table.add_column(metric, justify="right")
    ordered = frame.sort_values("wape")
    best = {m: ordered[m].min() for m in TABLE_METRICS if m not in ("coverage80", "bias")}
    for _, row in ordered.iterrows():
        cells = []
        for metric in TABLE_METRICS:
            value = row[metric]
            text = "-" if value != value else f"{value:.3f}"
            if metric in best and value == best[metric]:
                text = f"[bold green]{text}[/]"
            cells.append(text)
        table.add_row(str(row["model"]), *cells)
    console = Console()
    if not console.is_terminal:  # logs and pipes: do not squeeze the table to 80 columns
        console = Console(width=160)
    console.print(table)


def run_backtest(
    panel: Panel,
    model_names: list[str],
    horizon: int,
    cutoffs: list[str] | None = None,
    n_windows: int | None = None,
    step: int | None = None,
    min_history: int = 13,
    active_within: int | None = 13,
) -> BacktestResult:
    """Backtest registered models by name, with a rich progress bar."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from salesformer.evaluation.backtest import backtest, resolve_cutoffs
    from salesformer.models.registry import make_model

    stamps = resolve_cutoffs(panel, horizon, cutoffs, n_windows, step)
    models = [make_model(name) for name in model_names]
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} fits"),
        TimeElapsedColumn(),
        transient=False,
    ) as bar:
        task = bar.add_task("backtest", total=len(models) * len(stamps))

        def advance(description: str) -> None:
            bar.update(task, advance=1, description=f"backtest: {description}")

        return backtest(
            models,
            panel,
            horizon,
            stamps,
            min_history=min_history,
            active_within=active_within,
            progress=advance,
        )


def backtest_command(
    panel: Path = typer.Option(
        ..., "--panel", help="Panel folder written by 'salesformer prepare'."
    ),
    out: Path = typer.Option(..., "--out", help="Folder for forecasts.parquet and metrics.json."),
    models: str = typer.Option(
        "", "--models", help="Comma-separated model names (default: every baseline)."
    ),
    horizon: int = typer.Option(8, "--horizon", "-h", help="Periods to forecast per cutoff."),
    cutoffs: str = typer.Option(
        "", "--cutoffs", help="Comma-separated cutoff dates (last period a model may see)."
    ),
    n_windows: int | None = typer.Option(
        None, "--n-windows", help="Number of cutoffs when --cutoffs is not given (default 1)."
    ),
    step: int | None = typer.Option(None, "--step", help="Periods between cutoffs (default H)."),
    min_history: int = typer.Option(
        13, "--min-history", help="Evaluate items first seen at least this many periods earlier."
    ),
    active_within: int = typer.Option(
        13, "--active-within", help="Evaluate items sold in the last N periods (0: no rule)."
    ),
) -> None:
    """Rolling-origin backtest of forecasters on a prepared panel."""
    from salesformer._io import atomic_dir
    from salesformer.data.contract import Panel
    from salesformer.models.registry import BASELINES, resolve_name

    names = [resolve_name(n) for n in _split(models)] or list(BASELINES)
    if min_history < 0 or active_within < 0:
        raise ConfigError(
            f"--min-history and --active-within must be >= 0; got {min_history}, {active_within}"
        )
    data = Panel.load(panel)
    result = run_backtest(
        data,
        names,
        horizon,
        cutoffs=_split(cutoffs) or None,
        n_windows=n_windows,
        step=step,
        min_history=min_history,
        active_within=active_within or None,
    )
    with atomic_dir(out) as staging:
        result.save(staging)
    _metrics_table(
        result.metrics(),
        f"{len(result.series)} series, {len(result.forecasts)} cells, "
        f"cutoffs {', '.join(str(c.date()) for c in result.cutoffs)}, horizon {horizon}",
    )
    typer.echo(f"wrote {out}/forecasts.parquet, series.parquet and metrics.json")


def demo_command(
    out: Path = typer.Option(
        Path("salesformer-demo"), "--out", help="Folder for the demo's outputs."
    ),
    n_items: int = typer.Option(300, "--items", help="Products in the synthetic catalogue."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the catalogue."),
) -> None:
    """Run the main job on the embedded synthetic catalogue.

    Generates a catalogue, saves it as a panel, backtests every baseline over three
    8-week windows, prints the comparison and writes forecasts and metrics.
    """
    from salesformer._io import atomic_dir
    from salesformer.data.synthetic import generate_catalogue
    from salesformer.models.registry import BASELINES

    if n_items < 10:
        raise ConfigError(f"--items must be at least 10; got {n_items}")
    catalogue = generate_catalogue(n_items=n_items, n_weeks=130, seed=seed)
    panel = catalogue.panel()
    typer.echo(
        f"synthetic catalogue: {len(panel.item_ids)} products, {len(panel.dates)} weeks "
        f"({panel.first_date.date()} .. {panel.last_date.date()})"
    )
    result = run_backtest(panel, list(BASELINES), horizon=8, n_windows=3, step=8)
    with atomic_dir(out) as staging:
        panel.save(staging / "panel")
        catalogue.truth.to_csv(staging / "panel" / "truth.csv", index=False)
        result.save(staging / "backtest")
    _metrics_table(
        result.metrics(),
        f"Backtest of every baseline: {len(result.series)} series, 3 windows of 8 weeks",
    )
    typer.echo(
        f"wrote {out}/panel (the prepared catalogue) and {out}/backtest (forecasts, metrics)"
    )
