"""Forecast combination weights learned on validation windows: greedy ensemble selection.

Caruana et al.'s ensemble selection (ICML 2004), as AutoGluon uses it to combine models: start
from an empty ensemble and, ``rounds`` times, add (with replacement) the candidate whose
addition gives the lowest validation loss of the combined forecast. A candidate's weight is
the share of rounds that picked it, so weights are non-negative, sum to one and come in steps
of ``1 / rounds``; a candidate that never helps gets no weight. Compared with solving for free
weights, the coarse steps and the greedy path keep it from fitting the validation window's
noise, and it costs ``rounds x candidates`` evaluations of the loss.

The combined forecast is the weighted mean of the candidates' point forecasts and, level by
level, of their quantiles (quantile averaging keeps the levels ordered when every candidate's
are). The loss follows the metric the choice is made on:

- ``"wape"``, ``"mae"``: absolute error of the point forecast (WAPE's denominator is a constant);
- ``"mase"``: absolute error divided by each row's series scale;
- ``"mse"``, ``"rmse"``: squared error of the point forecast;
- ``"rmsse"``: squared error divided by each row's squared series scale;
- ``"wql"``: pinball loss summed over the quantile levels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from salesformer.data.contract import ACTUAL
from salesformer.errors import ConfigError
from salesformer.evaluation.metrics import SCALE_MAE, SCALE_MSE
from salesformer.forecasting.protocol import DEFAULT_QUANTILES, quantile_column

#: Metrics :func:`ensemble_weights` can learn weights for, and the loss each one uses.
LOSSES: dict[str, str] = {
    "wape": "absolute",
    "mae": "absolute",
    "mase": "scaled absolute",
    "mse": "squared",
    "rmse": "squared",
    "rmsse": "scaled squared",
    "wql": "pinball",
}
#: Rounds of greedy selection: weights in steps of 1/20 = 0.05.
DEFAULT_ROUNDS = 20


def _loss(
    metric: str,
    actual: np.ndarray,
    combined: np.ndarray,
    levels: np.ndarray | None,
    scale: np.ndarray | None,
) -> float:
    """The validation loss of one combined forecast (lower is better)."""
    kind = LOSSES[metric]
    if kind == "pinball":
        assert levels is not None
        error = actual[:, None] - combined
        return float(np.maximum(levels * error, (levels - 1.0) * error).sum())
    error = actual - combined
    if kind == "absolute":
        return float(np.abs(error).sum())
    if kind == "scaled absolute":
        assert scale is not None
        return float((np.abs(error) / scale).sum())
    if kind == "squared":
        return float((error**2).sum())
    assert scale is not None
    return float((error**2 / scale**2).sum())


def ensemble_weights(
    actual: np.ndarray,
    forecasts: Mapping[str, np.ndarray],
    *,
    metric: str = "wape",
    levels: Sequence[float] | None = None,
    scale: np.ndarray | None = None,
    rounds: int = DEFAULT_ROUNDS,
) -> dict[str, float]:
    """Combination weights of ``forecasts`` learned greedily on validation (module docstring).

    Args:
        actual: the validation actuals, shape ``(n,)``.
        forecasts: per candidate (in order of preference: ties go to the earlier one), its
            point forecasts ``(n,)`` or, for ``metric="wql"``, its quantiles ``(n, len(levels))``.
        metric: one of :data:`LOSSES`.
        levels: the quantile levels of the columns (``metric="wql"`` only).
        scale: per-row series scale (``"mase"``: the MAE scale; ``"rmsse"``: the RMSE scale).
        rounds: selection rounds; weights come in steps of ``1 / rounds``.

    Returns:
        ``{candidate: weight}`` for the candidates with a weight above 0, summing to 1; empty
        when no row is finite for every candidate (nothing to learn from).
    """
    if metric not in LOSSES:
        raise ConfigError(
            f"ensemble weights cannot be learned on metric {metric!r}; use one of {list(LOSSES)}"
        )
    if rounds < 1:
        raise ConfigError(f"ensemble selection needs at least 1 round; got {rounds}")
    names = list(forecasts)
    if not names:
        return {}
    actual = np.asarray(actual, dtype=float)
    stack = np.stack([np.asarray(forecasts[n], dtype=float) for n in names])
    level_array = None
    if LOSSES[metric] == "pinball":
        if levels is None or stack.ndim != 3 or stack.shape[2] != len(levels):
            raise ConfigError(
                "metric 'wql' needs each candidate's quantiles, shape (rows, levels), and "
                f"the levels; got shape {stack.shape[1:]} and levels {levels!r}"
            )
        level_array = np.asarray(levels, dtype=float)
    finite = np.isfinite(actual) & np.isfinite(stack.reshape(len(names), len(actual), -1)).all(
        axis=(0, 2)
    )
    scale_array = None
    if LOSSES[metric].startswith("scaled"):
        if scale is None:
            raise ConfigError(f"metric {metric!r} needs each row's series scale; got none")
        scale_array = np.asarray(scale, dtype=float)
        finite &= np.isfinite(scale_array) & (scale_array > 0)
        scale_array = scale_array[finite]
    if not finite.any():
        return {}
    actual = actual[finite]
    stack = stack[:, finite]
    counts = np.zeros(len(names), dtype=int)
    total = np.zeros_like(stack[0])
    for step in range(rounds):
        losses = [
            _loss(metric, actual, (total + stack[i]) / (step + 1), level_array, scale_array)
            for i in range(len(names))
        ]
        best = int(np.argmin(losses))  # the first of equal losses: the earlier candidate
        counts[best] += 1
        total = total + stack[best]
    return {name: float(count) / rounds for name, count in zip(names, counts, strict=True) if count}


def frame_weights(rows: pd.DataFrame, names: Sequence[str], metric: str) -> dict[str, float]:
    """:func:`ensemble_weights` of the candidates ``names`` from a validation forecast frame:
    ``y``, each candidate's point column and its quantile columns at
    :data:`~salesformer.forecasting.protocol.DEFAULT_QUANTILES`, and the series scales."""
    if metric == "wql":
        forecasts = {
            n: rows[[quantile_column(n, q) for q in DEFAULT_QUANTILES]].to_numpy(dtype=float)
            for n in names
        }
    else:
        forecasts = {n: rows[n].to_numpy(dtype=float) for n in names}
    scale = None
    if metric == "mase":
        scale = rows[SCALE_MAE].to_numpy(dtype=float)
    elif metric == "rmsse":
        scale = np.sqrt(rows[SCALE_MSE].to_numpy(dtype=float))
    return ensemble_weights(
        rows[ACTUAL].to_numpy(dtype=float),
        forecasts,
        metric=metric,
        levels=DEFAULT_QUANTILES,
        scale=scale,
    )
