"""``salesformer trends``: themes from the item text, and how each theme and category trends.

The command body imports the library lazily so that ``salesformer --help`` stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from salesformer.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from salesformer.data.contract import Panel
    from salesformer.decisions.trends import TrendReport

SHOWN_ROWS = 15
DEFAULT_HORIZON = 13


def _forecast(
    panel: Panel, model_dir: Path | None, forecasts: Path | None, horizon: int
) -> tuple[pd.DataFrame, str]:
    """The item forecasts the trends are read from, and where they came from."""
    from salesformer.cli.forecast import read_table

    if forecasts is not None:
        return read_table(forecasts, "--forecasts"), f"forecasts {forecasts}"
    if model_dir is not None:
        from salesformer.models.persist import load_model

        model = load_model(model_dir)
        return model.predict(horizon, quantiles=()), f"model {model.name} from {model_dir}"
    from rich.console import Console

    from salesformer.decisions.trends import default_forecast

    with Console(stderr=True).status("fitting LightGBM for the forecast ..."):
        return default_forecast(panel, horizon), "LightGBM fitted on the panel"


def _print_table(report: TrendReport) -> None:
    import numpy as np
    from rich.console import Console
    from rich.table import Table

    def percent(value: float) -> str:
        return "n/a" if not np.isfinite(value) else f"{value:+.0%}"

    table = Table(title="Trends (growth: recent periods vs one season earlier)")
    for column in ("kind", "name", "items", "recent y/y", "forecast y/y", "peak", "drivers"):
        table.add_column(column, justify="right" if column in ("items",) else "left")
    for row in report.table.head(SHOWN_ROWS).itertuples(index=False):
        table.add_row(
            str(row.kind),
            str(row.name),
            str(row.n_items),
            percent(row.growth_yoy),
            percent(row.forecast_growth_yoy),
            str(row.peak_label or "n/a"),
            str(row.drivers)[:50],
        )
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(table)
    if len(report.table) > SHOWN_ROWS:
        console.print(f"... {len(report.table) - SHOWN_ROWS} more rows in trends.csv")


def trends_command(
    panel: Path = typer.Option(
        ..., "--panel", help="Panel folder written by 'salesformer prepare'."
    ),
    out: Path = typer.Option(..., "--out", help="Folder for themes.csv, trends.csv/json, PNGs."),
    model_dir: Path | None = typer.Option(
        None, "--model", help="Model folder ('salesformer fit') that forecasts the panel."
    ),
    forecasts: Path | None = typer.Option(
        None, "--forecasts", help="Forecast file (.csv/.parquet) from 'salesformer predict'."
    ),
    themes: int | None = typer.Option(
        None, "--themes", help="Number of themes (default: sqrt(items / 5), 2 to 30)."
    ),
    horizon: int | None = typer.Option(
        None,
        "--horizon",
        "-h",
        help="Forecast periods whose growth is reported (default: 13, at most one season: "
        "12 for monthly, 7 for daily panels).",
    ),
    season_weight: float = typer.Option(
        0.0, "--season-weight", help="Weight of sales seasonality next to text (0: text only)."
    ),
    encoder: str = typer.Option(
        "all-MiniLM-L6-v2", "--encoder", help="Text encoder: a name or a local folder."
    ),
) -> None:
    """Find themes in the item text and report growth, forecast growth and seasonal peaks.

    Without --model or --forecasts, a LightGBM model is fitted on the panel for the forecast.
    """
    from salesformer._io import atomic_dir, check_output_dir
    from salesformer.cli.forecast import table_suffix
    from salesformer.data.contract import Panel
    from salesformer.decisions.themes import ThemeSettings, find_themes
    from salesformer.decisions.trends import TrendSettings, analyze_trends, group_table
    from salesformer.decisions.trends_plot import plot_history, plot_seasonality

    check_output_dir(out, "trends")
    if model_dir is not None and forecasts is not None:
        raise ConfigError(
            f"give --model or --forecasts, not both; got --model {model_dir} and "
            f"--forecasts {forecasts}"
        )
    if forecasts is not None:
        table_suffix(forecasts, "--forecasts")
    if themes is not None and themes < 2:
        raise ConfigError(f"--themes must be 2 or more; got {themes}; or leave it out (automatic)")
    if horizon is not None and horizon < 1:
        raise ConfigError(f"--horizon must be 1 or more; got {horizon}")
    theme_settings = ThemeSettings(n_themes=themes, season_weight=season_weight, encoder=encoder)
    data = Panel.load(panel)
    if horizon is None:  # growth against a year earlier needs the horizon within one season
        horizon = min(DEFAULT_HORIZON, data.season_length)
    trend_settings = TrendSettings(horizon=horizon)
    found = find_themes(data, theme_settings)  # first: it checks that items have texts
    forecast, source = _forecast(data, model_dir, forecasts, horizon)
    report = analyze_trends(data, group_table(data, found.assignment), forecast, trend_settings)
    with atomic_dir(out, kind="trends") as staging:
        found.assignment.to_csv(staging / "themes.csv", index=False)
        report.table.to_csv(staging / "trends.csv", index=False)
        report.write_json(staging / "trends.json")
        plot_history(report, staging / "trends.png")
        plot_seasonality(report, staging / "seasonality.png")
    _print_table(report)
    typer.echo(
        f"{len(found.names)} themes over {len(data.item_ids)} items; forecast from {source}; "
        f"wrote themes.csv, trends.csv, trends.json, trends.png, seasonality.png to {out}"
    )
