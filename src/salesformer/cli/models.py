"""``salesformer models``: the model registry (list, add, promote, rollback)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import typer

models_app = typer.Typer(
    help="Model versions: list them, add a fitted model, promote one, roll back.",
    no_args_is_help=True,
)

_REGISTRY = typer.Option(..., "--registry", help="The registry folder (versions/ + promoted.json).")


def command_line(context: typer.Context | None) -> str:
    """The command that runs now (its path and options as parsed), for the metadata."""
    if context is None:
        return "salesformer " + shlex.join(sys.argv[1:])
    words = context.command_path.split()
    flags = {p.name: p.opts[0] for p in context.command.params if p.opts}
    for name, value in context.params.items():
        if value is None or value == [] or value is False:
            continue
        flag = flags.get(name, "--" + name.replace("_", "-"))
        if not flag.startswith("-"):  # an argument: right after the command's name
            words.insert(len(context.command_path.split()), str(value))
            continue
        if value is True:
            words.append(flag)
        elif isinstance(value, list | tuple):
            for item in value:
                words += [flag, str(item)]
        else:
            words += [flag, str(value)]
    return shlex.join(words)


@models_app.command("list")
def list_command(registry: Path = _REGISTRY) -> None:
    """List the versions: training span, backtest WAPE/wQL, decision; * marks the promoted."""
    from salesformer.models.versions import ModelRegistry, summary_rows

    rows = summary_rows(ModelRegistry(registry))
    if not rows:
        typer.echo("no versions yet; add one with: salesformer models add --registry DIR --model M")
        return
    typer.echo("   version  model  trained                 wape    wql     decision  created")
    for row in rows:
        mark = "*" if row["promoted"] else " "
        wape = "-" if row["wape"] is None else f"{row['wape']:.4f}"
        wql = "-" if row["wql"] is None else f"{row['wql']:.4f}"
        typer.echo(
            f"{mark}  {row['version']:>7}  {row['model']!s:<5}  {row['trained']:<22}  "
            f"{wape:<6}  {wql:<6}  {row['decision'] or '-':<8}  {row['created']}"
        )


@models_app.command("add")
def add_command(
    ctx: typer.Context,
    registry: Path = _REGISTRY,
    model: Path = typer.Option(..., "--model", help="A saved model folder (salesformer fit)."),
    promote: bool = typer.Option(False, "--promote", help="Also promote the new version."),
) -> None:
    """Store a saved model as the next version (creates the registry if needed)."""
    from salesformer.models.versions import ModelRegistry

    store = ModelRegistry(registry)
    version = store.add(model, {"created_by": command_line(ctx), "source": str(model)})
    if promote:
        store.promote(version.number, command_line(ctx))
    state = "promoted" if promote else "not promoted"
    typer.echo(f"added version {version.number} ({state}) to {registry}")


@models_app.command("promote")
def promote_command(
    ctx: typer.Context,
    version: int = typer.Argument(..., help="The version number to serve."),
    registry: Path = _REGISTRY,
) -> None:
    """Serve VERSION: switch the registry's pointer (a running service reloads on its trigger)."""
    from salesformer.models.versions import ModelRegistry

    ModelRegistry(registry).promote(version, command_line(ctx), rule="manual")
    typer.echo(f"promoted version {version}")


@models_app.command("rollback")
def rollback_command(ctx: typer.Context, registry: Path = _REGISTRY) -> None:
    """Return to the version promoted before the current one."""
    from salesformer.models.versions import ModelRegistry

    back = ModelRegistry(registry).rollback(command_line(ctx))
    typer.echo(f"rolled back to version {back.number}")
