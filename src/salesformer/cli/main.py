"""The ``salesformer`` command: a thin layer over the library.

Subcommands import their heavy dependencies inside the command body, so ``salesformer --help``
stays fast and imports neither torch, transformers nor lightgbm.
"""

from __future__ import annotations

import sys
import warnings

import typer

from salesformer._version import __version__
from salesformer.cli.commands import backtest_command, demo_command
from salesformer.cli.explain import explain_command
from salesformer.cli.federated import federated_app
from salesformer.cli.forecast import fit_command, predict_command
from salesformer.cli.models import models_app
from salesformer.cli.plan import plan_app
from salesformer.cli.prepare import prepare_app
from salesformer.cli.recommend import recommend_command
from salesformer.cli.report import report_command
from salesformer.cli.retrain import retrain_command
from salesformer.cli.serve import serve_command
from salesformer.cli.trends import trends_command
from salesformer.cli.whatif import whatif_command
from salesformer.errors import DataQualityWarning, MissingExtraError, SalesformerError

app = typer.Typer(
    name="salesformer",
    help="Forecast product sales for online shops, evaluate honestly, decide.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(prepare_app, name="prepare")
app.add_typer(plan_app, name="plan")
app.add_typer(models_app, name="models")
app.add_typer(federated_app, name="federated")
app.command("fit")(fit_command)
app.command("predict")(predict_command)
app.command("backtest")(backtest_command)
app.command("demo")(demo_command)
app.command("explain")(explain_command)
app.command("report")(report_command)
app.command("recommend")(recommend_command)
app.command("retrain")(retrain_command)
app.command("serve")(serve_command)
app.command("trends")(trends_command)
app.command("whatif")(whatif_command)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"salesformer {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    """Forecast product sales for online shops, evaluate honestly, decide."""


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: str | None = None,
) -> None:
    """Data-quality warnings as one line on stderr; any other warning as Python shows it."""
    if issubclass(category, DataQualityWarning):
        typer.echo(f"warning: {str(message).splitlines()[0]}", err=True)
        return
    _python_showwarning(message, category, filename, lineno, file, line)  # type: ignore[arg-type]


_python_showwarning = warnings.showwarning


def run(argv: list[str] | None = None) -> None:
    """Console entry point: user errors become one line on stderr and exit code 2."""
    # Deprecation notices between torch, transformers and peft are not the user's to act on.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers(\.|$)")
    warnings.simplefilter("always", DataQualityWarning)
    warnings.showwarning = _show_warning
    try:
        app(args=argv, prog_name="salesformer", standalone_mode=True)
    except (SalesformerError, MissingExtraError, FileNotFoundError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        typer.echo(f"error: {message}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    run()
