"""The Ray engine's option checks, under their old import path.

They live in :mod:`salesformer.distributed.engine`; the Typer options and the Ray runs with a
progress bar are CLI code, in :mod:`salesformer.cli.ray_engine`.
"""

from __future__ import annotations

from salesformer.distributed.engine import check_engine_options, ray_chosen

__all__ = ["check_engine_options", "ray_chosen"]
