"""``salesformer report``: one self-contained HTML report of a backtest."""

from __future__ import annotations

from pathlib import Path

import typer


def report_command(
    backtest: Path = typer.Option(
        ..., "--backtest", help="Folder written by 'salesformer backtest --out DIR'."
    ),
    out: Path = typer.Option(..., "--out", help="The report file, .html."),
    panel: Path | None = typer.Option(
        None, "--panel", help="Panel folder: adds the history before each cutoff to the charts."
    ),
    model: Path | None = typer.Option(
        None,
        "--model",
        help="Model folder ('salesformer fit'): adds LM training curves, fine-tuning and "
        "explanations.",
    ),
    plan: Path | None = typer.Option(
        None, "--plan", help="Inventory plan (CSV/Parquet from 'salesformer plan')."
    ),
    trends: Path | None = typer.Option(
        None, "--trends", help="Trends output ('salesformer trends')."
    ),
    title: str = typer.Option("salesformer forecast report", "--title", help="Report title."),
    explain_items: int = typer.Option(
        3, "--explain-items", help="Items whose explanation is shown (0: none)."
    ),
) -> None:
    """Write an HTML report (works offline): model comparison, errors by segment, forecast
    charts with quantile bands, calibration, fine-tuning, training curves and more."""
    from salesformer._io import check_output_file
    from salesformer.report import ReportSettings, write_report

    check_output_file(out)  # first: a bad --out fails before the inputs are read
    settings = ReportSettings(
        backtest=backtest,
        panel=panel,
        model=model,
        plan=plan,
        trends=trends,
        title=title,
        explain_items=explain_items,
    )
    path = write_report(settings, out)
    typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, open it in a browser)")
