"""``salesformer backtest`` and ``salesformer demo``.

Command bodies import the library lazily so that ``salesformer --help`` stays light.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from salesformer.cli.forecast import (
    DEVICE_OPTION,
    LEVELS_OPTION,
    LORA_TARGETS_OPTION,
    RECONCILE_OPTION,
    check_level_options,
)
from salesformer.cli.ray_engine import (
    ITEMS_PER_PART_OPTION,
    RAY_ADDRESS_OPTION,
    WORKERS_OPTION,
)
from salesformer.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from salesformer.data.contract import Panel
    from salesformer.evaluation.backtest import BacktestResult
    from salesformer.models.registry import Overrides

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
    finetune: str | None = None,
    encoder: str | None = None,
    overrides: Overrides | None = None,
    plan: pd.DataFrame | None = None,
    levels: Sequence[str] | None = None,
    reconcile: str = "ols",
) -> BacktestResult:
    """Backtest registered models by name, with a rich progress bar.

    Models are built by :func:`salesformer.models.registry.build_model`: ``LM`` and ``auto`` get
    ``horizon``, and ``finetune`` / ``encoder`` go to the LM (and to auto's LM candidate). The
    LM's own progress bar is off here; the backtest bar counts its fits.
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from salesformer.evaluation.backtest import backtest, resolve_cutoffs
    from salesformer.models.registry import LM, build_model

    stamps = resolve_cutoffs(panel, horizon, cutoffs, n_windows, step)
    settings = dict(overrides or {})
    settings[LM] = {"progress": False, **settings.get(LM, {})}
    models = [build_model(name, horizon, finetune, encoder, settings) for name in model_names]
    for model in models:
        model.check_params()
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
            plan=plan,
            levels=levels,
            reconcile=reconcile,
        )


def backtest_command(
    panel: Path = typer.Option(
        ..., "--panel", help="Panel folder written by 'salesformer prepare'."
    ),
    out: Path = typer.Option(
        ..., "--out", help="Folder for forecasts.parquet and metrics.json (new, empty or ours)."
    ),
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
    finetune: str | None = typer.Option(
        None, "--finetune", help="LM fine-tuning (models lm and auto): frozen, lora or full."
    ),
    encoder: str | None = typer.Option(
        None, "--encoder", help="LM text encoder (models lm and auto): a name or a folder."
    ),
    device: str | None = DEVICE_OPTION,
    lora_targets: str | None = LORA_TARGETS_OPTION,
    settings: list[str] | None = typer.Option(
        None, "--set", help="Extra setting, MODEL.KEY=VALUE, e.g. LM.head_epochs=10."
    ),
    engine: str = typer.Option(
        "local", "--engine", help="local, or ray: backtest parts of the catalogue on Ray."
    ),
    future: Path | None = typer.Option(
        None,
        "--future",
        help="Plan CSV/Parquet known at each origin: cutoff, item_id, date, known-future "
        "covariates (or no cutoff column: a schedule fixed in advance, e.g. list prices).",
    ),
    ray_address: str | None = RAY_ADDRESS_OPTION,
    workers: int | None = WORKERS_OPTION,
    items_per_part: int | None = ITEMS_PER_PART_OPTION,
    levels: str | None = LEVELS_OPTION,
    reconcile: str = RECONCILE_OPTION,
) -> None:
    """Rolling-origin backtest of forecasters on a prepared panel (lm and auto included)."""
    from salesformer._io import check_output_dir
    from salesformer.cli.forecast import check_lm_options
    from salesformer.data.contract import Panel
    from salesformer.distributed.engine import check_engine_options
    from salesformer.models.registry import BASELINES, parse_settings, resolve_name

    names = [resolve_name(n) for n in _split(models)] or list(BASELINES)
    check_output_dir(out, "backtest")
    if min_history < 0 or active_within < 0:
        raise ConfigError(
            f"--min-history and --active-within must be >= 0; got {min_history}, {active_within}"
        )
    check_lm_options(names, finetune, encoder)
    wanted = check_level_options(levels, reconcile, engine, new_items=False)
    overrides = parse_settings(settings)
    if None in overrides:
        raise ConfigError(
            f"backtest --set needs the model: MODEL.KEY=VALUE; got {sorted(overrides[None])}; "
            "e.g. --set LM.head_epochs=10"
        )
    from salesformer.cli.forecast import lm_device_overrides, read_table

    lm_device_overrides(names, device, lora_targets, overrides)

    plan = read_table(future, "--future") if future is not None else None
    on_ray = check_engine_options(engine, ray_address, workers, items_per_part)
    if on_ray and plan is not None:
        raise ConfigError("--future runs on the local engine; drop --engine ray")
    chosen = None
    if plan is None and wanted is None:  # the parts driver: Ray, or local where models split
        from salesformer.cli.ray_engine import backtest_models
        from salesformer.distributed.backtest import split_into_parts

        chosen = backtest_models(names, horizon, finetune, encoder, overrides)
        if not (on_ray or split_into_parts(chosen)):
            chosen = None
    if chosen is not None:
        from salesformer.cli.ray_engine import backtest_in_parts, backtest_with_ray

        windows = {
            "cutoffs": _split(cutoffs) or None,
            "n_windows": n_windows,
            "step": step,
            "min_history": min_history,
            "active_within": active_within or None,
        }
        if on_ray:
            result = backtest_with_ray(
                panel, chosen, horizon, windows, ray_address, workers, items_per_part
            )
        else:
            result = backtest_in_parts(panel, chosen, horizon, windows, workers, items_per_part)
    elif workers is not None or items_per_part is not None:
        raise ConfigError(
            "--workers and --items-per-part split the backtest into parts of items; --future "
            "and --levels (or a model that cannot forecast parts) run it in one piece: drop them"
        )
    else:
        result = run_backtest(
            Panel.load(panel),
            names,
            horizon,
            cutoffs=_split(cutoffs) or None,
            n_windows=n_windows,
            step=step,
            min_history=min_history,
            active_within=active_within or None,
            finetune=finetune,
            encoder=encoder,
            overrides=overrides,
            plan=plan,
            levels=wanted,
            reconcile=reconcile,
        )
    result.save(out)
    _metrics_table(
        result.metrics(),
        f"{len(result.series)} series, {len(result.forecasts)} cells, "
        f"cutoffs {', '.join(str(c.date()) for c in result.cutoffs)}, horizon {horizon}",
    )
    if result.levels is not None:
        from salesformer.evaluation.levels import level_metrics

        shown = level_metrics(result.levels, names)[["level", "model", "variant", "wape", "bias"]]
        typer.echo(f"per level: reconciled ({reconcile}) and base forecasts")
        typer.echo(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        typer.echo(f"wrote {out}/levels.parquet")
    typer.echo(f"wrote {out}/forecasts.parquet, series.parquet and metrics.json")


#: LM settings of the demo: short training, so that the demo runs in minutes on 2 cores.
DEMO_LM: dict[str, Any] = {"head_epochs": 25, "epoch_samples": 8000, "finetune_epochs": 1}
#: ``--quick``: a small catalogue and a few epochs, for tests and a first look.
QUICK_LM: dict[str, Any] = {
    "head_epochs": 3,
    "epoch_samples": 1000,
    "finetune_epochs": 1,
    "hidden_size": 64,
}
DEMO_HORIZON = 8


def demo_command(
    out: Path = typer.Option(
        Path("salesformer-demo"), "--out", help="Folder for the demo's outputs."
    ),
    n_items: int = typer.Option(300, "--items", help="Products in the synthetic catalogue."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the catalogue."),
    finetune: str = typer.Option(
        "lora", "--finetune", help="LM fine-tuning: frozen, lora or full."
    ),
    encoder: str | None = typer.Option(
        None, "--encoder", help="LM text encoder: a name or a local folder (default MiniLM)."
    ),
    quick: bool = typer.Option(
        False, "--quick", help="80 weeks, one backtest window, a few LM epochs (a first look)."
    ),
    lang: str = typer.Option(
        "en",
        "--lang",
        help="Language of the product texts: en or zh (Chinese; uses multilingual-e5-small).",
    ),
) -> None:
    """Run the main job on the embedded synthetic catalogue, with the language model.

    Generates a catalogue and holds a few of its latest launches out as "new products";
    backtests every baseline and the LM forecaster over three 8-week windows and prints the
    comparison; fits the LM on the whole panel, saves it, and forecasts the held-out products
    from their text, price and launch date, next to what they really sold.
    """
    from rich.console import Console

    from salesformer._io import atomic_dir, check_output_dir
    from salesformer.cli.forecast import check_lm_options, lm_report_line
    from salesformer.data.synthetic import generate_catalogue
    from salesformer.models.persist import save_model
    from salesformer.models.registry import BASELINES, LM, build_model

    if n_items < 10:
        raise ConfigError(f"--items must be at least 10; got {n_items}")
    check_output_dir(out, "demo")
    if lang == "zh" and encoder is None:
        encoder = "multilingual-e5-small"  # the default MiniLM reads Chinese as unknown tokens
    check_lm_options([LM], finetune, encoder)
    n_weeks, n_windows, n_new = (80, 1, 3) if quick else (130, 3, 5)
    lm_settings = {**(QUICK_LM if quick else DEMO_LM)}
    catalogue = generate_catalogue(n_items=n_items, n_weeks=n_weeks, seed=seed, lang=lang)
    held_out = _latest_launches(catalogue.items, catalogue.sales, n_new, DEMO_HORIZON)
    panel = _panel_without(catalogue.sales, catalogue.items, held_out)
    typer.echo(
        f"synthetic catalogue: {len(panel.item_ids)} products, {len(panel.dates)} weeks "
        f"({panel.first_date.date()} .. {panel.last_date.date()}); {len(held_out)} more held "
        "out as new products"
    )
    overrides: Overrides = {LM: {**lm_settings, "progress": False}}
    result = run_backtest(
        panel,
        [*BASELINES, LM],
        horizon=DEMO_HORIZON,
        n_windows=n_windows,
        step=DEMO_HORIZON,
        finetune=finetune,
        encoder=encoder,
        overrides=overrides,
    )
    _metrics_table(
        result.metrics(),
        f"Backtest of every baseline and the LM ({finetune}): {len(result.series)} series, "
        f"{n_windows} window(s) of {DEMO_HORIZON} weeks",
    )
    lm = build_model(LM, DEMO_HORIZON, finetune, encoder, overrides)
    console = Console(stderr=True)
    with console.status(f"fitting the LM forecaster ({finetune}) on the whole catalogue ..."):
        lm.fit(panel)
    typer.echo(lm_report_line(lm.fit_report_))  # type: ignore[attr-defined]
    new_items = _new_items_frame(catalogue.items, held_out)
    forecasts = lm.predict_new(new_items)  # type: ignore[attr-defined]
    forecasts = forecasts.merge(
        catalogue.sales[["item_id", "date", "sales"]].rename(columns={"sales": "y"}),
        on=["item_id", "date"],
        how="left",
    )
    from salesformer.report import ReportSettings, write_report

    with atomic_dir(out, kind="demo") as staging:
        panel.save(staging / "panel")
        catalogue.truth.to_csv(staging / "truth.csv", index=False)
        result.save(staging / "backtest")
        save_model(lm, staging / "model")
        new_items.to_csv(staging / "new_items.csv", index=False, date_format="%Y-%m-%d")
        forecasts.to_csv(staging / "new_item_forecasts.csv", index=False, date_format="%Y-%m-%d")
        # written inside the staging folder, so the demo folder's owner file lists it too
        write_report(
            ReportSettings(
                staging / "backtest", staging / "panel", staging / "model", title="salesformer demo"
            ),
            staging / "report.html",
        )
    report = out / "report.html"
    _new_items_table(new_items, forecasts)
    typer.echo(
        f"wrote {out}/panel (the prepared catalogue), {out}/backtest (forecasts, metrics), "
        f"{out}/model (the fitted LM), {out}/new_items.csv and {out}/new_item_forecasts.csv"
    )
    typer.echo(f"report: {report} (open it in a browser)")


def _latest_launches(
    items: pd.DataFrame, sales: pd.DataFrame, count: int, horizon: int
) -> list[str]:
    """The ``count`` items launched last among those with ``horizon`` weeks sold after launch."""
    import pandas as pd

    last = pd.Timestamp(sales["date"].max())
    room = items["launch_date"] + pd.Timedelta(weeks=horizon - 1) <= last
    latest = items.loc[room].sort_values(["launch_date", "item_id"], ascending=False)
    return [str(i) for i in latest["item_id"].head(count)]


def _panel_without(sales: pd.DataFrame, items: pd.DataFrame, held_out: list[str]) -> Panel:
    from salesformer.data.contract import validate_panel

    return validate_panel(
        sales.loc[~sales["item_id"].isin(held_out)],
        items.loc[~items["item_id"].isin(held_out)],
        freq="W-MON",
    )


def _new_items_frame(items: pd.DataFrame, held_out: list[str]) -> pd.DataFrame:
    """The held-out items as new products: ``item_id, text, price, launch_date``."""
    chosen = items.set_index("item_id").loc[held_out].reset_index()
    return chosen[["item_id", "text", "base_price", "launch_date"]].rename(
        columns={"base_price": "price"}
    )


def _new_items_table(new_items: pd.DataFrame, forecasts: pd.DataFrame) -> None:
    """Forecast vs actual sales over the first weeks of each new product."""
    from rich.console import Console
    from rich.table import Table

    weeks = forecasts.groupby("item_id").size()
    table = Table(title=f"New products: LM forecast of the first {int(weeks.max())} weeks")
    for column in ("item", "text", "launch", "price", "forecast", "80% band/wk", "actual"):
        table.add_column(column, justify="left" if column in ("item", "text") else "right")
    totals = forecasts.groupby("item_id")[["LM", "LM-q10", "LM-q90", "y"]].sum()
    for row in new_items.itertuples(index=False):
        total = totals.loc[row.item_id]
        n = int(weeks[row.item_id])
        table.add_row(
            str(row.item_id),
            str(row.text).split(".")[0][:48],
            str(row.launch_date.date()),
            f"{row.price:.2f}",
            f"{total['LM']:.0f}",
            f"{total['LM-q10'] / n:.1f}-{total['LM-q90'] / n:.1f}",
            f"{total['y']:.0f}",
        )
    console = Console()
    if not console.is_terminal:
        console = Console(width=160)
    console.print(table)
