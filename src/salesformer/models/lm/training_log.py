"""Training curves of the LM forecaster: TensorBoard event files and a reader for them.

Every epoch of both training stages records its mean training loss, its validation loss and,
on the sales scale, the validation window's WAPE and weighted quantile loss (wQL, as in
:mod:`salesformer.evaluation.metrics`). The records live in ``fit_report_`` (and so in the
saved ``config.json``), and are written as TensorBoard scalars

* while fitting, to ``LMForecaster.log_dir`` when it is set (``salesformer fit --log-dir``),
  so that ``tensorboard --logdir DIR`` shows the curves as they grow;
* on :meth:`LMForecaster.save`, to ``<model folder>/logs``.

Tags are ``<stage>/<metric>`` with the stage's epoch as the step: ``head/train_loss``,
``head/valid_loss``, ``head/valid_wape``, ``head/valid_wql``, and the same under ``lora`` or
``full`` for the fine-tuning stage. TensorBoard is optional (the ``report`` extra): without
it, saving skips the event files and the curves remain in ``config.json``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from salesformer.errors import MissingExtraError

LOG_DIR = "logs"
#: History keys written as scalars, and their tag names.
METRICS = {
    "train": "train_loss",
    "valid": "valid_loss",
    "valid_wape": "valid_wape",
    "valid_wql": "valid_wql",
}


def tensorboard_available() -> bool:
    """Whether the tensorboard package (needed to write event files) is installed."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


class TrainingLog:
    """Writes epoch records as TensorBoard scalars into one folder (see the module docstring)."""

    def __init__(self, folder: str | Path) -> None:
        if not tensorboard_available():
            raise MissingExtraError("tensorboard", "report")
        from torch.utils.tensorboard import SummaryWriter

        self.folder = Path(folder)
        self.writer = SummaryWriter(log_dir=str(self.folder))

    def epoch(self, stage: str, record: dict[str, Any]) -> None:
        """Write one epoch's record (``epoch``, ``train``, ``valid``, ...) of ``stage``."""
        step = int(record["epoch"])
        for key, tag in METRICS.items():
            value = record.get(key)
            if isinstance(value, int | float) and math.isfinite(value):
                self.writer.add_scalar(f"{stage}/{tag}", float(value), step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def stages(report: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """``(stage, history)`` pairs of a fit report: ``head`` then the fine-tuning stage."""
    out = []
    head = report.get("head")
    if isinstance(head, dict):
        out.append(("head", list(head.get("history") or [])))
    tuned = report.get("finetune_stage")
    if isinstance(tuned, dict):
        out.append((str(report.get("finetune", "finetune")), list(tuned.get("history") or [])))
    return out


def write_history(report: dict[str, Any], folder: str | Path) -> Path:
    """Write the epoch records of a fit report as event files in ``folder``."""
    log = TrainingLog(folder)
    try:
        for stage, history in stages(report):
            for record in history:
                log.epoch(stage, record)
    finally:
        log.close()
    return Path(folder)


def history_frame(report: dict[str, Any]) -> pd.DataFrame:
    """The curves of a fit report as ``stage, epoch, metric, value`` (no TensorBoard needed).

    ``report`` is ``model.fit_report_`` or the ``fit_report`` of a saved ``config.json``.
    """
    rows = []
    for stage, history in stages(report):
        for record in history:
            for key, tag in METRICS.items():
                value = record.get(key)
                if isinstance(value, int | float) and math.isfinite(value):
                    rows.append((stage, int(record["epoch"]), tag, float(value)))
    return pd.DataFrame(rows, columns=["stage", "epoch", "metric", "value"])


def read_scalars(folder: str | Path) -> pd.DataFrame:
    """Every scalar of the TensorBoard event files under ``folder``.

    Args:
        folder: a log folder (``<model folder>/logs`` or a ``--log-dir``), or a model folder
            (its ``logs/`` is read).

    Returns:
        ``tag, step, value, wall_time`` sorted by tag and step; empty when there are no
        event files.
    """
    if not tensorboard_available():
        raise MissingExtraError("tensorboard", "report")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    root = Path(folder)
    if (root / LOG_DIR).is_dir():
        root = root / LOG_DIR
    rows = []
    for events in sorted(root.rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags().get("scalars", []):
            for event in accumulator.Scalars(tag):
                rows.append((tag, int(event.step), float(event.value), float(event.wall_time)))
    frame = pd.DataFrame(rows, columns=["tag", "step", "value", "wall_time"])
    return frame.sort_values(["tag", "step", "wall_time"], kind="stable").reset_index(drop=True)


def validation_metrics(
    predicted: np.ndarray,
    target: np.ndarray,
    mask: np.ndarray,
    level: np.ndarray,
    levels: tuple[float, ...],
) -> dict[str, float]:
    """WAPE of the median and wQL of the quantiles on the sales scale, over unmasked cells.

    Both are NaN when the unmasked cells sold nothing (as in
    :func:`salesformer.evaluation.metrics.evaluate`).

    Args:
        predicted: scaled log quantiles, (samples, horizon, levels).
        target: scaled log targets, (samples, horizon).
        mask: 1 where a target exists.
        level: each sample's level (targets and forecasts are ``expm1(value + level)``).
        levels: the quantile levels of ``predicted``'s last axis.
    """
    from salesformer.evaluation.metrics import pinball

    ok = mask > 0
    shift = level[:, None]
    actual = np.expm1(np.clip(target + shift, -20, 20))[ok]
    total = float(np.abs(actual).sum())
    if total <= 0:  # no cells, or no sales: both metrics are undefined, as in evaluate
        return {"valid_wape": math.nan, "valid_wql": math.nan}
    quantiles = np.expm1(np.clip(predicted + shift[..., None], -20, 20))[ok]
    median = quantiles[:, list(levels).index(0.5)]
    losses = [2.0 * pinball(actual, quantiles[:, j], q).sum() for j, q in enumerate(levels)]
    return {
        "valid_wape": round(float(np.abs(actual - median).sum()) / total, 5),
        "valid_wql": round(float(np.mean(losses)) / total, 5),
    }


__all__ = [
    "LOG_DIR",
    "TrainingLog",
    "history_frame",
    "read_scalars",
    "validation_metrics",
    "write_history",
]
