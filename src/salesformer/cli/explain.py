"""``salesformer explain``: why a saved model forecasts what it does for one item.

Prints the forecast, the words of the item text with the largest attributions (LM), the
attributions grouped by input (history, known-future covariates, calendar, static, text...),
the fitted components of a statistical baseline, and the completeness gap of each
attribution method; ``--json`` writes the whole explanation.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from salesformer.cli.forecast import PREDICT_DEVICE_OPTION
from salesformer.errors import ConfigError

if TYPE_CHECKING:
    from rich.console import Console

    from salesformer.explain.result import Explanation


def explain_command(
    model_dir: Path = typer.Option(
        ..., "--model", help="Model folder written by 'salesformer fit'."
    ),
    item: str = typer.Option(..., "--item", help="Item id to explain (an item of the panel)."),
    horizon: int | None = typer.Option(
        None, "--horizon", "-h", help="Steps to explain (default: the model's horizon)."
    ),
    json_out: Path | None = typer.Option(
        None, "--json", help="Also write the whole explanation to this JSON file."
    ),
    top: int = typer.Option(12, "--top", help="Rows shown per table."),
    steps: int = typer.Option(
        32, "--steps", help="LM: integrated-gradients steps (more: smaller completeness gap)."
    ),
    word_steps: bool = typer.Option(
        False, "--word-steps", help="LM: also attribute each step's forecast to the words."
    ),
    device: str | None = PREDICT_DEVICE_OPTION,
) -> None:
    """Explain a saved model's forecast for one item."""
    from rich.console import Console

    from salesformer.cli.forecast import (
        check_prediction_device,
        model_horizon,
        use_prediction_device,
    )
    from salesformer.explain import explain
    from salesformer.models.persist import load_model

    if top < 1:
        raise ConfigError(f"--top must be >= 1; got {top}")
    if json_out is not None and json_out.suffix.lower() != ".json":
        raise ConfigError(f"--json must end in .json; got {str(json_out)!r}")
    if json_out is not None:
        from salesformer._io import check_output_file

        check_output_file(json_out)
    check_prediction_device(device)
    model = load_model(model_dir)
    use_prediction_device(model, device)
    if horizon is not None and horizon < 1:
        raise ConfigError(f"--horizon must be >= 1; got {horizon}")
    steps_to_explain = horizon if horizon is not None else model_horizon(model)
    options: dict[str, Any] = {}
    if _reads_text(model):
        options = {"n_steps": steps, "word_steps": word_steps}
    explanation = explain(model, item, steps_to_explain, **options)
    console = Console()
    _print(console, explanation, top)
    if json_out is not None:
        from salesformer._io import atomic_file, json_text

        with atomic_file(json_out) as staging:
            Path(staging).write_text(json_text(explanation.to_dict()))
        console.print(f"wrote {json_out}")


def _reads_text(model: Any) -> bool:
    """Whether the explanation goes to an LM (the model itself or auto's main candidate)."""
    if getattr(model, "name", "") == "LM":
        return True
    return "LM" in getattr(model, "models_", {})


def _print(console: Console, explanation: Explanation, top: int) -> None:
    from rich.table import Table

    e = explanation
    console.print(
        f"[bold]{e.model}[/bold] forecast of item [bold]{e.item_id}[/bold] "
        f"({e.method}; attributions in {e.scale})"
    )
    forecast = Table("step", "date", "forecast", title="forecast")
    for row in e.forecast.itertuples(index=False):
        forecast.add_row(str(row.step), str(row.date)[:10], f"{row.forecast:.2f}")
    console.print(forecast)
    if not e.words.empty:
        words = Table("word", "attribution", title=f"top words (of {len(e.words)} read)")
        for row in e.top_words(top).itertuples(index=False):
            words.add_row(str(row.word), _signed(row.attribution))
        console.print(words)
    if not e.attributions.empty:
        groups = Table("group", "attribution", title="by input group, summed over the horizon")
        for row in e.groups().itertuples(index=False):
            groups.add_row(str(row.group), _signed(row.attribution))
        console.print(groups)
        features = Table("group", "feature", "attribution", title="top inputs")
        for row in e.features().head(top).itertuples(index=False):
            features.add_row(str(row.group), str(row.feature), _signed(row.attribution))
        console.print(features)
    if not e.components.empty:
        parts = Table("component", "step", "value", "detail", title="fitted components")
        for row in e.components.itertuples(index=False):
            parts.add_row(
                str(row.component),
                "all" if row.step == 0 else str(row.step),
                f"{row.value:.4g}",
                str(row.detail),
            )
        console.print(parts)
    for method, record in e.completeness.items():
        console.print(
            f"completeness ({method}): attributions sum to {record['attributed']:.4g}, "
            f"the change explained is {record['explained']:.4g} (from the reference "
            f"{e.baseline.get(method, float('nan')):.4g}); gap {record['gap']:.3g} "
            f"({record['relative_gap']:.2%})"
        )
    for note in e.notes:
        console.print(f"note: {note}")


def _signed(value: float) -> str:
    return f"{value:+.4g}"
