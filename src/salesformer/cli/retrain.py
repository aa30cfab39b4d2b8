"""``salesformer retrain``: champion against challenger on the latest weeks."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import typer

from salesformer.cli.models import command_line


def retrain_command(
    ctx: typer.Context,
    registry: Path = typer.Option(..., "--registry", help="The model registry folder."),
    events: str = typer.Option(
        "salesformer-events.db",
        "--events",
        help="The service's event store: an SQLite file or a postgresql:// URL.",
    ),
    weeks: int | None = typer.Option(
        None, "--weeks", min=1, help="Periods to evaluate on (default: the champion's horizon)."
    ),
    settings: list[str] | None = typer.Option(
        None, "--set", help="KEY=VALUE: a challenger setting that differs from the champion's."
    ),
    min_wape_gain: float = typer.Option(
        0.01, "--min-wape-gain", help="Relative WAPE reduction the challenger needs (0.01 = 1%)."
    ),
    max_wql_increase: float = typer.Option(
        0.0, "--max-wql-increase", help="Relative wQL increase allowed (0: not worse)."
    ),
    until: datetime | None = typer.Option(
        None, "--until", formats=["%Y-%m-%d"], help="Last date of the new panel."
    ),
    refit: bool = typer.Option(
        True, "--refit/--no-refit", help="Refit a winning challenger on all data before storing."
    ),
) -> None:
    """Fit a challenger on the champion's panel plus the stored events; promote it only when
    its backtest on the latest weeks beats the champion's (rule and outcome kept in the
    version's metadata). Exit code 0 either way; the outcome is printed."""
    from salesformer.models.registry import parse_settings
    from salesformer.models.versions import ModelRegistry
    from salesformer.service.retrain import PromotionRule, retrain

    parsed = parse_settings(settings)
    overrides = {k: v for group in parsed.values() for k, v in group.items()}
    rule = PromotionRule(min_wape_gain, max_wql_increase)
    result = retrain(
        ModelRegistry(registry),
        events,
        command=command_line(ctx),
        weeks=weeks,
        overrides=overrides,
        rule=rule,
        until=until.date() if until else None,
        refit=refit,
    )
    old, new = result.scores["champion"], result.scores["challenger"]
    typer.echo(
        f"champion v{result.champion}: WAPE {old['wape']:.4f} wQL {old['wql']:.4f}; "
        f"challenger v{result.version.number}: WAPE {new['wape']:.4f} wQL {new['wql']:.4f}"
    )
    if result.promoted:
        typer.echo(f"promoted version {result.version.number}")
    else:
        typer.echo(f"kept version {result.champion}: {result.reason}")
