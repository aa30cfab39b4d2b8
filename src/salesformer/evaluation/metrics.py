"""Forecast accuracy metrics: pure functions over forecast frames.

A forecast frame has ``item_id, cutoff, date, y`` and, per model, a point column ``<model>``
and quantile columns ``<model>-q<level>`` (as written by the backtest).
Every metric takes the frame and a model name and returns one number; :func:`evaluate`
computes them all, overall or by segment. Definitions (``e = y - yhat``, sums over all cells of
the frame unless stated; a *series* is one (item, cutoff) pair):

- ``mse`` = mean(e^2); ``rmse`` = sqrt(mse); ``mae`` = mean(|e|).
- ``wape`` = sum|e| / sum|y|.
- ``bias`` = sum(yhat - y) / sum|y| (relative error of the total; > 0 means over-forecast).
- ``rel_mae`` = MAE of the model / MAE of a reference model on the same cells
  (``SeasonalNaive`` when the frame has it, else ``Naive``).
- ``mase`` = mean over series of [mean_t |e| / s1], with s1 the series' in-sample one-step
  naive MAE up to its cutoff; ``rmsse`` = mean over series of sqrt(mean_t e^2 / s2), with s2
  the in-sample one-step naive MSE (M5). Series whose scale is 0 (constant history) are left out.
- ``wql`` (weighted quantile loss) = mean over levels q of 2 * sum pinball_q / sum|y|, with
  pinball_q = max(q * (y - yq), (q - 1) * (y - yq)).
- ``coverage80`` = share of cells with q10 <= y <= q90 (needs those two quantile columns).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from salesformer.data.availability import IN_STOCK
from salesformer.data.contract import ACTUAL, CUTOFF, DATE, ITEM_ID
from salesformer.errors import DataValidationError

SCALE_MAE = "scale_mae"
SCALE_MSE = "scale_mse"
METRICS: tuple[str, ...] = (
    "mae",
    "rmse",
    "mse",
    "wape",
    "bias",
    "rel_mae",
    "mase",
    "rmsse",
    "wql",
    "coverage80",
)
_QUANTILE = re.compile(r"^(?P<model>.+)-q(?P<level>\d+(?:\.\d+)?)$")


def model_columns(frame: pd.DataFrame) -> list[str]:
    """Names of the models with a point column in ``frame``."""
    skip = {ITEM_ID, CUTOFF, DATE, ACTUAL, SCALE_MAE, SCALE_MSE, IN_STOCK}
    return [
        c
        for c in frame.columns
        if c not in skip and not _QUANTILE.match(c) and pd.api.types.is_numeric_dtype(frame[c])
    ]


def quantile_columns(frame: pd.DataFrame, model: str) -> dict[float, str]:
    """``{level: column}`` for the quantile columns of ``model`` in ``frame``."""
    found = {}
    for column in frame.columns:
        match = _QUANTILE.match(column)
        if match and match.group("model") == model:
            found[float(match.group("level")) / 100.0] = column
    return dict(sorted(found.items()))


def _require(frame: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataValidationError(
            f"forecast frame lacks column(s) {missing}; got {list(frame.columns)}; "
            "pass a frame written by salesformer backtest"
        )


def _errors(frame: pd.DataFrame, model: str) -> np.ndarray:
    _require(frame, [ACTUAL, model])
    return frame[ACTUAL].to_numpy(dtype=float) - frame[model].to_numpy(dtype=float)


def _total(frame: pd.DataFrame) -> float:
    return float(np.abs(frame[ACTUAL].to_numpy(dtype=float)).sum())


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator > 0 else float("nan")


def mse(frame: pd.DataFrame, model: str) -> float:
    """Mean squared error."""
    return float(np.mean(_errors(frame, model) ** 2))


def rmse(frame: pd.DataFrame, model: str) -> float:
    """Root mean squared error."""
    return float(np.sqrt(mse(frame, model)))


def mae(frame: pd.DataFrame, model: str) -> float:
    """Mean absolute error."""
    return float(np.mean(np.abs(_errors(frame, model))))


def wape(frame: pd.DataFrame, model: str) -> float:
    """Weighted absolute percentage error: sum|e| / sum|y|."""
    return _ratio(float(np.abs(_errors(frame, model)).sum()), _total(frame))


def bias(frame: pd.DataFrame, model: str) -> float:
    """Relative error of the total: sum(yhat - y) / sum|y|."""
    return _ratio(float(-_errors(frame, model).sum()), _total(frame))


def reference_model(frame: pd.DataFrame) -> str | None:
    """The model that ``rel_mae`` divides by: SeasonalNaive, else Naive, else None."""
    for name in ("SeasonalNaive", "Naive"):
        if name in frame.columns:
            return name
    return None


def rel_mae(frame: pd.DataFrame, model: str) -> float:
    """MAE relative to the reference model's MAE on the same cells."""
    reference = reference_model(frame)
    if reference is None:
        return float("nan")
    return _ratio(mae(frame, model), mae(frame, reference))


def _per_series(frame: pd.DataFrame, model: str, squared: bool) -> pd.Series:
    scale_column = SCALE_MSE if squared else SCALE_MAE
    _require(frame, [ITEM_ID, CUTOFF, scale_column])
    errors = _errors(frame, model)
    work = pd.DataFrame(
        {
            ITEM_ID: frame[ITEM_ID].to_numpy(),
            CUTOFF: frame[CUTOFF].to_numpy(),
            "loss": errors**2 if squared else np.abs(errors),
            "scale": frame[scale_column].to_numpy(dtype=float),
        }
    )
    grouped = work.groupby([ITEM_ID, CUTOFF], sort=False).agg(
        loss=("loss", "mean"), scale=("scale", "first")
    )
    grouped = grouped[grouped["scale"] > 0]
    ratio = grouped["loss"] / grouped["scale"]
    return np.sqrt(ratio) if squared else ratio


def scaled_errors(frame: pd.DataFrame, model: str) -> pd.Series:
    """Each series' mean|e| / s1, the terms that MASE averages, indexed by (item_id, cutoff)."""
    return _per_series(frame, model, squared=False)


def mase(frame: pd.DataFrame, model: str) -> float:
    """Mean absolute scaled error, averaged over series (see the module docstring)."""
    values = _per_series(frame, model, squared=False)
    return float(values.mean()) if len(values) else float("nan")


def rmsse(frame: pd.DataFrame, model: str) -> float:
    """Root mean squared scaled error, averaged over series (M5 definition)."""
    values = _per_series(frame, model, squared=True)
    return float(values.mean()) if len(values) else float("nan")


def pinball(y: np.ndarray, forecast: np.ndarray, level: float) -> np.ndarray:
    """Pinball (quantile) loss of each cell."""
    diff = y - forecast
    return np.maximum(level * diff, (level - 1.0) * diff)


def wql(frame: pd.DataFrame, model: str) -> float:
    """Weighted quantile loss over the model's quantile columns."""
    columns = quantile_columns(frame, model)
    if not columns:
        return float("nan")
    y = frame[ACTUAL].to_numpy(dtype=float)
    total = _total(frame)
    losses = [
        2.0 * pinball(y, frame[col].to_numpy(dtype=float), q).sum() for q, col in columns.items()
    ]
    return _ratio(float(np.mean(losses)), total)


def coverage80(frame: pd.DataFrame, model: str) -> float:
    """Share of actuals inside the 10%-90% quantile interval."""
    columns = quantile_columns(frame, model)
    if 0.1 not in columns or 0.9 not in columns:
        return float("nan")
    y = frame[ACTUAL].to_numpy(dtype=float)
    low = frame[columns[0.1]].to_numpy(dtype=float)
    high = frame[columns[0.9]].to_numpy(dtype=float)
    return float(np.mean((y >= low) & (y <= high)))


METRIC_FUNCTIONS: dict[str, Callable[[pd.DataFrame, str], float]] = {
    "mae": mae,
    "rmse": rmse,
    "mse": mse,
    "wape": wape,
    "bias": bias,
    "rel_mae": rel_mae,
    "mase": mase,
    "rmsse": rmsse,
    "wql": wql,
    "coverage80": coverage80,
}


def evaluate(
    frame: pd.DataFrame,
    models: Sequence[str] | None = None,
    metrics: Sequence[str] = METRICS,
    by: str | None = None,
) -> pd.DataFrame:
    """Every metric for every model, overall or per value of the ``by`` column.

    Args:
        frame: forecast frame (``item_id, cutoff, date, y``, model and quantile columns, and the
            ``scale_mae``/``scale_mse`` columns for MASE and RMSSE).
        models: models to score; all point columns when None.
        metrics: names from :data:`METRICS`.
        by: optional segment column (e.g. ``history_segment`` or ``category``).

    Returns:
        One row per model (and segment), columns ``model, [by], cells, <metrics>``.
    """
    unknown = [m for m in metrics if m not in METRIC_FUNCTIONS]
    if unknown:
        raise DataValidationError(f"unknown metric(s) {unknown}; choose from {list(METRICS)}")
    names = list(models) if models is not None else model_columns(frame)
    _require(frame, [ACTUAL, *names, *([by] if by else [])])
    groups = [(None, frame)] if by is None else list(frame.groupby(by, sort=True, observed=True))
    rows = []
    for key, part in groups:
        for name in names:
            row: dict[str, object] = {"model": name}
            if by is not None:
                row[by] = key
            row["cells"] = len(part)
            for metric in metrics:
                row[metric] = METRIC_FUNCTIONS[metric](part, name)
            rows.append(row)
    return pd.DataFrame(rows)
