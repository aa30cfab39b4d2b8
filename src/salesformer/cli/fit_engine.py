"""``salesformer fit --engine ray``: the LM forecaster trained by Ray Train workers.

The options are checked before the panel is read; only the LM forecaster trains on Ray (other
models fit in one process, and ``--engine ray`` with them is an error that says so).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from salesformer.errors import ConfigError

if TYPE_CHECKING:
    from salesformer.data.contract import Panel
    from salesformer.forecasting.protocol import Forecaster

DEFAULT_WORKERS = 2
#: Suffix of the default checkpoint folder, beside the ``--out`` model folder.
CHECKPOINT_SUFFIX = ".checkpoints"


@dataclass(frozen=True)
class RayFitOptions:
    """The engine options of ``salesformer fit``, checked together.

    Attributes:
        engine: ``"local"`` or ``"ray"``.
        address: an existing Ray cluster, or None for a local Ray.
        workers: training workers.
        checkpoint_dir: folder for Ray Train runs; None puts it beside ``--out``.
    """

    engine: str = "local"
    address: str | None = None
    workers: int = DEFAULT_WORKERS
    checkpoint_dir: Path | None = None

    @classmethod
    def check(
        cls,
        model: str,
        engine: str,
        address: str | None,
        workers: int | None,
        checkpoint_dir: Path | None,
    ) -> RayFitOptions:
        """Validate the options for ``model``; ConfigError with the fix otherwise."""
        from salesformer.distributed.engine import ray_chosen

        flags = {"--ray-address": address, "--workers": workers, "--checkpoint-dir": checkpoint_dir}
        if not ray_chosen(engine, flags):
            return cls()
        if model != "LM":
            raise ConfigError(
                f"--engine ray trains the lm model only; got --model {model}, which fits in one "
                "process with --engine local; use --model lm or drop --engine ray"
            )
        if workers is not None and workers < 1:
            raise ConfigError(f"--workers must be >= 1; got {workers}")
        return cls("ray", address, workers or DEFAULT_WORKERS, checkpoint_dir)

    def storage(self, out: Path) -> Path:
        """The Ray Train storage folder: ``--checkpoint-dir`` or ``<out>.checkpoints``."""
        if self.checkpoint_dir is not None:
            return self.checkpoint_dir
        return out.parent / f"{out.name}{CHECKPOINT_SUFFIX}"

    def fit(self, forecaster: Forecaster, panel: Panel, out: Path) -> None:
        """Fit the LM forecaster on Ray (resuming a run of the same fit in the storage)."""
        from salesformer.distributed.train import fit_lm_on_ray

        fit_lm_on_ray(
            forecaster,  # type: ignore[arg-type]
            panel,
            address=self.address,
            workers=self.workers,
            storage=self.storage(out).resolve(),
            progress=lambda line: typer.echo(line, err=True),
        )
