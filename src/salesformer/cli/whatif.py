"""``salesformer whatif``: forecast a price / promotion scenario against the baseline plan.

A thin layer over :func:`salesformer.decisions.whatif.what_if`: the command reads the model
folder, the scenario (a table and/or ``--price-change`` / ``--promotion``) and an optional
baseline plan, and writes one row per item and date with both forecasts and the uplift.
Options and files are checked before the model is loaded (the scenario's columns, items and
dates after it, since they depend on the model); the output file is written atomically.
"""

from __future__ import annotations

import math
from pathlib import Path

import typer

from salesformer.errors import ConfigError


def parse_change(text: str) -> float:
    """``"-10%"`` -> ``-0.1``; ``"-0.1"`` -> ``-0.1`` (a fraction without the percent sign)."""
    raw = text.strip()
    percent = raw.endswith("%")
    try:
        value = float(raw[:-1] if percent else raw)
    except ValueError as exc:
        raise ConfigError(
            f"--price-change must be a change like -10% or -0.1; got {text!r}"
        ) from exc
    value = value / 100.0 if percent else value
    if not math.isfinite(value) or not -1.0 < value <= 10.0:
        hint = f"; did you mean {raw}%?" if not percent and abs(value) >= 1 else ""
        raise ConfigError(
            f"--price-change must lie between -100% and +1000% (exclusive of -100%); "
            f"got {text!r}{hint}"
        )
    return value


def whatif_command(
    model_dir: Path = typer.Option(
        ..., "--model", help="Model folder written by 'salesformer fit'."
    ),
    out: Path = typer.Option(..., "--out", help="Result file, .csv or .parquet."),
    scenario: Path | None = typer.Option(
        None,
        "--scenario",
        help="CSV/Parquet: item_id, optional date, known-future covariates (price, discount, "
        "...) and/or promotion (text).",
    ),
    price_change: str | None = typer.Option(
        None, "--price-change", help="Change every item's price, e.g. -10% (or -0.1)."
    ),
    promotion: str | None = typer.Option(
        None, "--promotion", help="Promotion copy for every item (models that read text)."
    ),
    baseline: Path | None = typer.Option(
        None,
        "--baseline",
        help="CSV/Parquet baseline plan: item_id, date and every known-future covariate "
        "(default: last values carried forward).",
    ),
    horizon: int | None = typer.Option(
        None, "--horizon", "-h", help="Periods to forecast (default: the model's horizon)."
    ),
) -> None:
    """Forecast a price/promotion scenario next to the baseline: uplift in units and revenue."""
    from salesformer.cli.forecast import (
        check_table_out,
        model_horizon,
        read_table,
        write_table,
    )

    check_table_out(out)
    change = parse_change(price_change) if price_change is not None else None
    if scenario is None and change is None and not (promotion and promotion.strip()):
        raise ConfigError(
            "give a scenario: --scenario FILE, --price-change -10% and/or --promotion TEXT"
        )
    if horizon is not None and horizon < 1:
        raise ConfigError(f"--horizon must be >= 1; got {horizon}")
    changes = read_table(scenario, "--scenario") if scenario is not None else None
    plan = read_table(baseline, "--baseline") if baseline is not None else None

    from salesformer.decisions.whatif import Scenario, summarize_uplift, what_if
    from salesformer.models.persist import load_model

    plan_scenario = Scenario(changes=changes, price_change=change, promotion=promotion)
    plan_scenario.check()
    model = load_model(model_dir)
    steps = horizon if horizon is not None else model_horizon(model)
    table = what_if(model, plan_scenario, steps, baseline=plan)
    write_table(table, out)
    totals = summarize_uplift(table)
    typer.echo(
        f"{model.name}: {totals['items']} items x {totals['periods']} periods; units "
        f"{totals['units_baseline']:,.1f} -> {totals['units_scenario']:,.1f} "
        f"({_pct(totals['uplift_units_pct'])}); revenue {totals['revenue_baseline']:,.2f} -> "
        f"{totals['revenue_scenario']:,.2f} ({_pct(totals['uplift_revenue_pct'])}); wrote {out}"
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:+.1%}"
