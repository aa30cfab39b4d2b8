"""``salesformer plan inventory``: an order plan from quantile forecasts and a stock table."""

from __future__ import annotations

from pathlib import Path

import typer

from salesformer.errors import ConfigError

plan_app = typer.Typer(
    help="Turn forecasts into decisions: order plans.",
    no_args_is_help=True,
)


@plan_app.command("inventory")
def inventory_command(
    stock: Path = typer.Option(
        ...,
        "--stock",
        help="CSV/Parquet, one row per item: item_id, on_hand, lead_time [, review_period, "
        "on_order, pack_size, moq, unit_cost, holding_cost, stockout_cost].",
    ),
    out: Path = typer.Option(..., "--out", help="Order plan file, .csv or .parquet."),
    model_dir: Path | None = typer.Option(
        None, "--model", help="Model folder written by 'salesformer fit' (forecasts now)."
    ),
    forecasts: Path | None = typer.Option(
        None, "--forecasts", help="Forecast file from 'salesformer predict' (CSV/Parquet)."
    ),
    service_level: float = typer.Option(
        0.95, "--service-level", help="Target service level, strictly between 0 and 1."
    ),
    service_type: str = typer.Option(
        "cycle",
        "--service-type",
        help="cycle (chance of no stock-out per review cycle) or fill-rate (share of demand "
        "served from stock).",
    ),
    week_correlation: float = typer.Option(
        0.5,
        "--week-correlation",
        help="Correlation of forecast errors between weeks, 0 (independent) .. 1 "
        "(fully dependent).",
    ),
    spread_scale: float = typer.Option(
        1.0,
        "--spread-scale",
        help="Widen (>1) or narrow (<1) each week's forecast distribution around its median "
        "before planning, 0.25 .. 4.",
    ),
    forecast_model: str | None = typer.Option(
        None, "--forecast-model", help="Model column to use when --forecasts holds several."
    ),
    samples: int = typer.Option(4000, "--samples", help="Monte Carlo draws per item."),
    seed: int = typer.Option(0, "--seed", help="Seed of the draws."),
) -> None:
    """Plan orders: safety stock, reorder point, order-up-to level and order per item."""
    from salesformer.cli.forecast import check_table_out, read_table, write_table
    from salesformer.decisions.inventory import (
        PLAN_QUANTILES,
        PlanSettings,
        plan_inventory,
        read_policies,
    )

    if (model_dir is None) == (forecasts is None):
        raise ConfigError(
            "give exactly one of --model MODEL_DIR or --forecasts FILE; got "
            f"{'both' if model_dir is not None else 'neither'}"
        )
    if model_dir is not None and forecast_model is not None:
        raise ConfigError(
            "--forecast-model picks a model column of a --forecasts file; with --model the "
            "plan uses that model's own forecast: drop --forecast-model"
        )
    check_table_out(out)
    settings = PlanSettings(
        service_level=service_level,
        service_type=service_type,
        week_correlation=week_correlation,
        n_samples=samples,
        seed=seed,
        spread_scale=spread_scale,
    )
    policies = read_policies(read_table(stock, "--stock"))
    if forecasts is not None:
        frame = read_table(forecasts, "--forecasts")
    elif model_dir is not None:
        from salesformer.models.persist import load_model

        model = load_model(model_dir)
        weeks = max(p.lead_time + p.review_period for p in policies)
        frame = model.predict(weeks, quantiles=PLAN_QUANTILES)
        forecast_model = model.name
    plan = plan_inventory(frame, policies, settings, model=forecast_model)
    write_table(plan, out)
    ordering = plan[plan["order_qty"] > 0]
    typer.echo(
        f"planned {len(plan)} items at {settings.service_type} {settings.service_level:g}: "
        f"{len(ordering)} to order, {ordering['order_qty'].sum():g} units; wrote {out}"
    )
