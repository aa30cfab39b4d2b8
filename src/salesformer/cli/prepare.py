"""``salesformer prepare ...``: turn raw shop data into the data contract."""

from __future__ import annotations

import typer

prepare_app = typer.Typer(help="Turn raw shop data into a sales panel folder.", no_args_is_help=True)
