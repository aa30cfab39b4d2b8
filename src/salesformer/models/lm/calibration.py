"""Post-hoc calibration of the LM forecaster's quantiles, learned on its validation window.

The network learns quantiles of ``log1p(sales)`` (minus the item's level) with pinball loss
in log space. Mapped back with ``expm1``, a spread that is reasonable in logs can explode on
the sales scale for large items: a log distance of 2.5 above a median of 2,700 units is a
90% quantile of 33,000. Metrics (wQL) and decisions (order-up-to levels) are on the sales
scale, where large items weigh most.

The calibration rescales the log-space distance from the median::

    q' = m + s * (q - m)        (q, m: log1p of the quantile and of the median forecast)

with one factor ``s`` per quantile level and volume bucket (``s = 1`` at the median), picked
from a small grid in ``[0.2, 1.5]`` to minimise the pinball loss on the sales scale summed
over the validation cells (so volume-weighted, as wQL is). Buckets split cells by their
median forecast at the 50th and 90th percentiles of the validation medians, so that the
largest sellers, whose spread costs most on the sales scale, get factors of their own; a
bucket with too few cells with sales uses the factors of all cells. Shrinking narrows a
spread that is too wide; stretching widens one that is too narrow. Quantiles that cross
after the rescaling are sorted (a rearrangement, which never increases the summed pinball
loss). The median, and so the point forecast and WAPE, is unchanged.

Factors are fitted once, at fit time, on the window the model held out for early stopping:
never on the windows it is evaluated on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from salesformer.errors import ConfigError

#: Candidate factors; 1.0 (no change) wins ties.
FACTOR_GRID: tuple[float, ...] = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.35, 1.5)
#: Percentiles of the validation median forecasts that separate the volume buckets.
BUCKET_PERCENTILES: tuple[float, ...] = (50.0, 90.0)
#: Least validation cells with sales for factors to be learned (else they stay 1).
MIN_CELLS = 30
_CLIP = 20.0


@dataclass(frozen=True)
class QuantileCalibration:
    """Factors of the log-space distance from the median, per volume bucket and level.

    Attributes:
        levels: the learned quantile levels, increasing (0.5 among them).
        edges: increasing ``log1p`` median forecasts that separate the buckets (empty: one).
        factors: one row per bucket, one factor per level (1.0 at the median).
    """

    levels: tuple[float, ...]
    edges: tuple[float, ...]
    factors: tuple[tuple[float, ...], ...]

    @classmethod
    def identity(cls, levels: tuple[float, ...]) -> QuantileCalibration:
        """Factors of 1: quantiles unchanged (models saved before calibration existed)."""
        return cls(tuple(float(q) for q in levels), (), (tuple(1.0 for _ in levels),))

    @property
    def is_identity(self) -> bool:
        return all(math.isclose(s, 1.0) for row in self.factors for s in row)

    def apply(self, log_quantiles: np.ndarray) -> np.ndarray:
        """Calibrated quantiles from ``log1p(sales)`` quantiles; the last axis is ``levels``."""
        if self.is_identity:
            return log_quantiles
        values = np.asarray(log_quantiles, dtype=np.float64)
        median = values[..., [self.levels.index(0.5)]]
        bucket = np.searchsorted(np.asarray(self.edges, dtype=np.float64), median[..., 0])
        factors = np.asarray(self.factors, dtype=np.float64)[bucket]
        return np.sort(median + factors * (values - median), axis=-1)

    def to_json(self) -> dict[str, Any]:
        return {
            "levels": list(self.levels),
            "edges": list(self.edges),
            "factors": [list(row) for row in self.factors],
        }

    @classmethod
    def from_json(
        cls, data: dict[str, Any] | None, levels: tuple[float, ...]
    ) -> QuantileCalibration:
        """Read :meth:`to_json`'s output; None (a model saved without one) gives the identity."""
        if not data:
            return cls.identity(levels)
        saved = tuple(float(q) for q in data["levels"])
        edges = tuple(float(e) for e in data["edges"])
        factors = tuple(tuple(float(s) for s in row) for row in data["factors"])
        shape_ok = len(factors) == len(edges) + 1 and all(len(r) == len(saved) for r in factors)
        if saved != tuple(float(q) for q in levels) or not shape_ok:
            raise ConfigError(
                f"saved quantile calibration (levels {saved}, {len(factors)} buckets) does not "
                f"fit the model's levels {tuple(levels)}; refit the model"
            )
        return cls(saved, edges, factors)


def sales_wql(
    log_quantiles: np.ndarray, log_actual: np.ndarray, levels: tuple[float, ...]
) -> float:
    """wQL on the sales scale of ``log1p`` quantiles ``(cells, levels)`` vs ``(cells,)``."""
    actual = np.expm1(np.clip(log_actual, -_CLIP, _CLIP))
    total = float(np.abs(actual).sum())
    if total <= 0:
        return math.nan
    quantiles = np.expm1(np.clip(log_quantiles, -_CLIP, _CLIP))
    losses = [2.0 * _pinball(actual, quantiles[:, j], q).sum() for j, q in enumerate(levels)]
    return float(np.mean(losses)) / total


def fit_calibration(
    log_quantiles: np.ndarray,
    log_actual: np.ndarray,
    levels: tuple[float, ...],
    grid: tuple[float, ...] = FACTOR_GRID,
    percentiles: tuple[float, ...] = BUCKET_PERCENTILES,
) -> tuple[QuantileCalibration, dict[str, Any]]:
    """Learn the factors from validation cells.

    Args:
        log_quantiles: ``log1p`` of the forecast quantiles, ``(cells, levels)``; only cells
            with a known actual.
        log_actual: ``log1p`` of the actual sales, ``(cells,)``.
        levels: the levels of the last axis, increasing, 0.5 among them.
        grid: candidate factors.
        percentiles: percentiles of the cells' median forecasts that split the buckets.

    Returns:
        The calibration and a report: ``edges`` (in sales units), ``factors`` per bucket and
        level, validation ``wql_before`` and ``wql_after`` (sales scale) and ``cells``;
        ``skipped`` says why the factors stayed 1.
    """
    levels = tuple(float(q) for q in levels)
    values = np.asarray(log_quantiles, dtype=np.float64)
    actual_log = np.asarray(log_actual, dtype=np.float64)
    actual = np.expm1(np.clip(actual_log, -_CLIP, _CLIP))
    report: dict[str, Any] = {"cells": len(actual)}
    if int((actual > 0).sum()) < MIN_CELLS:
        report["skipped"] = f"fewer than {MIN_CELLS} validation cells with sales"
        return QuantileCalibration.identity(levels), report
    median = values[:, levels.index(0.5)]
    pooled = _level_factors(values, actual, levels, grid)
    edges = tuple(float(e) for e in np.unique(np.percentile(median, percentiles)))
    bucket = np.searchsorted(np.asarray(edges), median)
    rows = []
    for b in range(len(edges) + 1):
        inside = bucket == b
        enough = int((actual[inside] > 0).sum()) >= MIN_CELLS
        rows.append(
            _level_factors(values[inside], actual[inside], levels, grid) if enough else pooled
        )
    calibration = QuantileCalibration(levels, edges, tuple(rows))
    report["edges"] = [round(float(np.expm1(e)), 3) for e in edges]
    report["factors"] = [dict(zip(map(str, levels), row, strict=True)) for row in rows]
    report["wql_before"] = round(sales_wql(values, actual_log, levels), 5)
    report["wql_after"] = round(sales_wql(calibration.apply(values), actual_log, levels), 5)
    return calibration, report


def fit_on_samples(
    predicted: np.ndarray,
    target: np.ndarray,
    mask: np.ndarray,
    level: np.ndarray,
    levels: tuple[float, ...],
) -> tuple[QuantileCalibration, dict[str, Any]]:
    """:func:`fit_calibration` from the LM's scaled validation outputs.

    Args:
        predicted: scaled log quantiles, ``(samples, horizon, levels)``.
        target: scaled log targets, ``(samples, horizon)``.
        mask: 1 where a target exists.
        level: each sample's level (``log1p`` values are scaled values + level).
        levels: the quantile levels of ``predicted``'s last axis.
    """
    ok = np.asarray(mask) > 0
    shift = np.asarray(level, dtype=np.float64)[:, None]
    log_quantiles = (np.asarray(predicted, dtype=np.float64) + shift[..., None])[ok]
    log_actual = (np.asarray(target, dtype=np.float64) + shift)[ok]
    return fit_calibration(log_quantiles, log_actual, levels)


def _level_factors(
    values: np.ndarray, actual: np.ndarray, levels: tuple[float, ...], grid: tuple[float, ...]
) -> tuple[float, ...]:
    """The grid factor of least summed sales-scale pinball loss, level by level."""
    middle = levels.index(0.5)
    median = values[:, middle]
    candidates = sorted(grid, key=lambda g: (abs(g - 1.0), g))  # 1.0 first: it wins ties
    factors = []
    for j, q in enumerate(levels):
        if j == middle:
            factors.append(1.0)
            continue
        distance = values[:, j] - median
        best, best_loss = 1.0, math.inf
        for s in candidates:
            forecast = np.expm1(np.clip(median + s * distance, -_CLIP, _CLIP))
            loss = float(_pinball(actual, forecast, q).sum())
            if loss < best_loss * (1 - 1e-9):
                best, best_loss = float(s), loss
        factors.append(best)
    return tuple(factors)


def _pinball(y: np.ndarray, forecast: np.ndarray, level: float) -> np.ndarray:
    diff = y - forecast
    return np.maximum(level * diff, (level - 1.0) * diff)


__all__ = [
    "BUCKET_PERCENTILES",
    "FACTOR_GRID",
    "QuantileCalibration",
    "fit_calibration",
    "fit_on_samples",
    "sales_wql",
]
