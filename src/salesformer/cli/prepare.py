"""``salesformer prepare ...``: turn raw shop data into a sales panel folder.

Each command computes everything first and only then writes its folder, atomically
(:func:`salesformer._io.atomic_dir`): on any error nothing is written. User errors are
``SalesformerError`` subclasses, left to :func:`salesformer.cli.main.run` to report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from salesformer.data.contract import Panel

prepare_app = typer.Typer(
    help="Turn raw shop data into a sales panel folder.", no_args_is_help=True
)

QUALITY_FILE = "quality.json"
OUTLIERS_FILE = "outliers.csv"

OutOption = Annotated[
    Path,
    typer.Option(
        "--out", help="Panel folder: new, empty, or a panel folder salesformer wrote (replaced)."
    ),
]
Sha256Option = Annotated[
    str | None, typer.Option("--sha256", help="Expected sha256 of the source file.")
]
CacheDirOption = Annotated[
    Path | None, typer.Option("--cache-dir", help="Download folder for a URL source.")
]
HolidaysOption = Annotated[
    str | None,
    typer.Option(
        "--holidays",
        help="Holiday calendars as known-future covariates: country codes, e.g. GB,US,CN "
        "(a subdivision after a dash: GB-ENG).",
    ),
]
EventsOption = Annotated[
    str | None,
    typer.Option(
        "--events",
        help="Events file (CSV: date, name, optional days and scope) or a built-in name "
        "(cn-shopping) as known-future covariates; see docs/calendars.md.",
    ),
]


def _split(value: str | None) -> list[str] | None:
    """``"a, b"`` -> ``["a", "b"]``; None stays None."""
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    from salesformer._io import json_text

    path.write_text(json_text(json.loads(json.dumps(payload, default=str))))


def _print_summary(table: Any, out: Path, files: list[str]) -> None:
    from rich.console import Console

    console = Console()
    console.print(table)
    # one line, however long the path: rich would wrap it at 80 columns in a pipe or a log
    console.print(f"wrote {out} ({', '.join(files)})", soft_wrap=True)


def _with_calendar(panel: Panel, holidays: str | None, events: str | None) -> Panel:
    """The panel with the calendar covariates of ``--holidays`` and ``--events`` added."""
    if holidays is None and events is None:
        return panel
    from salesformer.data.calendars import add_calendar

    return add_calendar(panel, holidays, events)


def _calendar_quality(panel: Panel) -> dict[str, Any]:
    """What ``quality.json`` records about the calendar (nothing without one)."""
    if not panel.calendar:
        return {}
    from salesformer.data.calendars import is_calendar_column

    columns = [c for c in panel.known_future if is_calendar_column(c)]
    return {"holidays": panel.calendar["holidays"], "calendar_columns": columns}


def _panel_files(panel: Panel) -> list[str]:
    names = ["panel.parquet", "panel.json"]
    return [*names, "items.parquet"] if panel.items is not None else names


@prepare_app.command("online-retail")
def online_retail_command(
    source: Annotated[
        str,
        typer.Option(
            "--source", help="Path or http(s) URL of online_retail_II.xlsx (or CSV/Parquet)."
        ),
    ],
    out: OutOption,
    sha256: Sha256Option = None,
    cache_dir: CacheDirOption = None,
    freq: Annotated[
        str, typer.Option("--freq", help="W-MON (weeks, the benchmark protocol) or D (days).")
    ] = "W-MON",
    holidays: HolidaysOption = None,
    events: EventsOption = None,
) -> None:
    """Prepare UCI Online Retail II invoice lines as a weekly (or daily) panel."""
    from salesformer._io import atomic_dir, check_output_dir
    from salesformer.data.online_retail import prepare_online_retail

    check_output_dir(out, "panel")
    panel, report = prepare_online_retail(source, cache_dir=cache_dir, sha256=sha256, freq=freq)
    panel = _with_calendar(panel, holidays, events)
    quality = {"source": source, **report.to_dict(), **_calendar_quality(panel)}
    with atomic_dir(out, kind="panel") as staging:
        panel.save(staging)
        _write_json(staging / QUALITY_FILE, quality)
        report.outliers.to_csv(staging / OUTLIERS_FILE, index=False)
    _print_summary(report.as_table(), out, [*_panel_files(panel), QUALITY_FILE, OUTLIERS_FILE])


@prepare_app.command("stallion")
def stallion_command(
    source: Annotated[
        str, typer.Option("--source", help="Path or http(s) URL of stallion.parquet (or CSV).")
    ],
    out: OutOption,
    sha256: Sha256Option = None,
    cache_dir: CacheDirOption = None,
    holidays: HolidaysOption = None,
    events: EventsOption = None,
) -> None:
    """Prepare the Stallion beverage data as a monthly agency x SKU panel with prices."""
    from salesformer._io import atomic_dir, check_output_dir
    from salesformer.data.stallion import prepare_stallion

    check_output_dir(out, "panel")
    panel, report = prepare_stallion(source, cache_dir=cache_dir, sha256=sha256)
    panel = _with_calendar(panel, holidays, events)
    quality = {"source": source, **report.to_dict(), **_calendar_quality(panel)}
    with atomic_dir(out, kind="panel") as staging:
        panel.save(staging)
        _write_json(staging / QUALITY_FILE, quality)
    _print_summary(report.as_table(), out, [*_panel_files(panel), QUALITY_FILE])


@prepare_app.command("csv")
def csv_command(
    sales: Annotated[
        str, typer.Option("--sales", help="Sales file: CSV or Parquet (path or http(s) URL).")
    ],
    out: OutOption,
    items: Annotated[
        str | None, typer.Option("--items", help="Items file with one row per item.")
    ] = None,
    item_col: Annotated[str, typer.Option("--item-col", help="Item id column.")] = "item_id",
    date_col: Annotated[str, typer.Option("--date-col", help="Date/timestamp column.")] = "date",
    sales_col: Annotated[str, typer.Option("--sales-col", help="Units sold column.")] = "sales",
    text_cols: Annotated[
        str | None,
        typer.Option(
            "--text-cols",
            help="Items columns for the text, in order title,description,category,promotion.",
        ),
    ] = None,
    freq: Annotated[
        str | None, typer.Option("--freq", help="Panel frequency: W-MON..W-SUN, D or MS.")
    ] = None,
    aggregate: Annotated[
        bool,
        typer.Option("--aggregate", help="Sum transaction rows per item and period (W-MON)."),
    ] = False,
    known_future: Annotated[
        str | None,
        typer.Option("--known-future", help="Covariates known ahead, comma-separated."),
    ] = None,
    past_only: Annotated[
        str | None,
        typer.Option("--past-only", help="Covariates known only up to the cutoff."),
    ] = None,
    negative_sales: Annotated[
        str, typer.Option("--negative-sales", help="Negative sales: error or clip (to 0).")
    ] = "error",
    holidays: HolidaysOption = None,
    events: EventsOption = None,
    in_stock_col: Annotated[
        str | None,
        typer.Option(
            "--in-stock-col",
            help="Availability column, true/false per row: false = out of stock (not demand).",
        ),
    ] = None,
    stock_col: Annotated[
        str | None,
        typer.Option(
            "--stock-col", help="Units on hand at the end of each period: 0 = out of stock."
        ),
    ] = None,
) -> None:
    """Prepare your own sales file (and items file) as a validated panel."""
    from salesformer._io import atomic_dir, check_output_dir
    from salesformer.data.csv_loader import prepare_csv

    check_output_dir(out, "panel")
    panel = prepare_csv(
        sales,
        items_path=items,
        item_col=item_col,
        date_col=date_col,
        sales_col=sales_col,
        text_cols=_split(text_cols),
        freq=freq,
        aggregate=aggregate,
        known_future=_split(known_future),
        past_only=_split(past_only),
        negative_sales=negative_sales,  # type: ignore[arg-type]  # checked by prepare_csv
        in_stock_col=in_stock_col,
        stock_col=stock_col,
    )
    panel = _with_calendar(panel, holidays, events)
    quality = {
        "source": sales,
        "items_source": items,
        "freq": panel.freq,
        "known_future": list(panel.known_future),
        "past_only": list(panel.past_only),
        "periods": len(panel.dates),
        "first_date": str(panel.first_date.date()),
        "last_date": str(panel.last_date.date()),
        **panel.report,
        **_calendar_quality(panel),
    }
    if "in_stock" in panel.sales.columns:
        quality["out_of_stock_rows"] = int((~panel.sales["in_stock"]).sum())
    with atomic_dir(out, kind="panel") as staging:
        panel.save(staging)
        _write_json(staging / QUALITY_FILE, quality)
    _print_summary(_quality_table(quality), out, [*_panel_files(panel), QUALITY_FILE])


def _quality_table(quality: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title="Sales file: data quality")
    table.add_column("check")
    table.add_column("value", justify="right")
    for name, value in quality.items():
        shown = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else value
        table.add_row(name.replace("_", " "), str(shown))
    return table
