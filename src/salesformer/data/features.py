"""Leak-free features for direct multi-horizon global models.

A *direct* model forecasts step ``k`` of the horizon from an *origin* ``t`` (the last period it
may see) in one shot, so one training row is one ``(item, origin, step)``. Every feature of
that row is computed from data dated on or before ``t``, except the *target-date* features
(step, calendar and known-future covariates of the period ``t + k``), which are known in
advance by definition.

**Scaling.** One model fits items of every size because sales enter the features divided by
the item's *scale* at the origin: its mean sales over the last ``scale_window`` periods up to
``t`` (its whole history up to ``t`` when that mean is 0; 1 when it never sold). Lags are
``log1p(sales / scale)`` and rolling statistics are in units of the scale, so a row reads the
same for an item selling 2 or 2,000 a week; ``log_scale`` (``log1p(scale)``) tells the model the
item's size. Models put their target on the same scale (see ``FeatureMatrix.scale``).

Per origin (and item):

- ``lag_<l>``: ``log1p(sales / scale)`` of the period ``t - l + 1`` (``lag_1`` is ``t``);
- ``mean_<w>``, ``std_<w>``: mean and standard deviation of ``sales / scale`` over the last
  ``w`` periods (over what exists for younger items);
- ``zero_share_<w>``: share of zero-sales periods among the last ``w``;
- ``since_sale``: periods since the last sale; ``age``: periods since the first sale;
  ``history``: periods the item has been in the panel; ``log_scale``;
- for each past-only covariate ``c``: ``c_lag_1`` (its value at ``t``) and ``c_rel_1``,
  ``c_rel_2`` (values at ``t`` and ``t - 1`` divided by its mean over ``scale_window``).

Per target date ``t + k``:

- ``step`` (``k``) and calendar columns (``week_of_year`` and ``month`` for weekly data,
  ``day_of_week``, ``day_of_month`` and ``month`` for daily, ``month`` for monthly);
- ``seasonal_lag`` and ``seasonal_mean_3``: ``log1p(sales / scale)`` one season before the
  target date (the latest such period on or before ``t``) and the mean of ``sales / scale`` of
  that period and its two neighbours (those on or before ``t``);
- for each known-future covariate ``c``: ``c`` at the target date and ``c_rel``, its ratio to
  the item's typical value (median over the last ``scale_window`` periods up to ``t``), e.g.
  price relative to the usual price.

Optional static numeric item features (a frame indexed by ``item_id``) are added as
``static_<column>``. Everything is vectorised over items, origins and steps and stored as
float32.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from salesformer.data.contract import DATE, ITEM_ID, SALES, Panel
from salesformer.errors import ConfigError, DataValidationError

LOG_SCALE = "log_scale"
STEP = "step"


@dataclass(frozen=True)
class FeatureSpec:
    """Which lags and windows to compute, in periods of the panel's frequency.

    Attributes:
        lags: lags of scaled log sales; 1 is the origin period itself.
        windows: windows of the rolling statistics.
        scale_window: periods of the trailing mean that scales each item.
        zero_windows: windows of the share of zero-sales periods.
    """

    lags: tuple[int, ...]
    windows: tuple[int, ...]
    scale_window: int
    zero_windows: tuple[int, ...]

    @classmethod
    def for_freq(cls, freq: str, season: int) -> FeatureSpec:
        """Default spec: a short run of lags plus one season, windows up to one season."""
        if freq == "D":
            return cls((*range(1, 15), 21, 28), (7, 28, 91, 364), 28, (28, 91))
        if freq.startswith("W"):
            return cls((*range(1, 9), season), (4, 13, 26, 52), 13, (13, 52))
        return cls((1, 2, 3, 4, 5, 6, season), (3, 6, 12), 6, (6, 12))


@dataclass(frozen=True)
class FeatureMatrix:
    """Features and keys of ``(item, origin, step)`` rows.

    Attributes:
        features: float32 feature frame, one row per ``(item, origin, step)``.
        item_id: item of each row.
        origin: origin date of each row.
        step: step ``k`` of each row (1-based).
        date: target date of each row.
        scale: the item's scale at the origin (see the module docstring).
        target: sales at the target date, NaN where the panel does not hold it.
    """

    features: pd.DataFrame
    item_id: np.ndarray
    origin: np.ndarray
    step: np.ndarray
    date: np.ndarray
    scale: np.ndarray
    target: np.ndarray

    def __len__(self) -> int:
        return len(self.features)


@dataclass(frozen=True)
class _Wide:
    """The panel as item x period arrays on one date grid (NaN outside an item's rows)."""

    item_ids: np.ndarray
    dates: pd.DatetimeIndex
    sales: np.ndarray
    known: dict[str, np.ndarray]
    past: dict[str, np.ndarray]
    first: np.ndarray
    n_observed: int


def _to_wide(panel: Panel, future: pd.DataFrame | None) -> _Wide:
    """Pivot the panel (and the future covariates, appended as later periods) to arrays."""
    item_ids = panel.item_ids
    dates = panel.dates
    if future is not None and len(future):
        later = pd.DatetimeIndex(np.sort(pd.unique(pd.to_datetime(future[DATE]))))
        later = later[later > dates[-1]]
        expected = panel.future_dates(dates[-1], len(later))
        if not later.equals(expected):
            raise DataValidationError(
                f"future dates must continue the panel's {panel.freq} grid right after "
                f"{dates[-1].date()}; got {[str(d.date()) for d in later[:5]]}"
            )
        dates = dates.append(later)
    n_observed = len(panel.dates)
    codes = pd.Index(item_ids).get_indexer(panel.sales[ITEM_ID])
    positions = dates.get_indexer(panel.sales[DATE])
    shape = (len(item_ids), len(dates))

    def pivot(frame: pd.DataFrame, rows: np.ndarray, cols: np.ndarray, column: str) -> np.ndarray:
        out = np.full(shape, np.nan)
        out[rows, cols] = frame[column].to_numpy(dtype=float)
        return out

    sales = pivot(panel.sales, codes, positions, SALES)[:, :n_observed]
    known = {c: pivot(panel.sales, codes, positions, c) for c in panel.known_future}
    past = {c: pivot(panel.sales, codes, positions, c)[:, :n_observed] for c in panel.past_only}
    if future is not None and len(future) and known:
        ahead = future.loc[pd.to_datetime(future[DATE]) > panel.dates[-1]]
        rows = pd.Index(item_ids).get_indexer(ahead[ITEM_ID].astype(str))
        cols = dates.get_indexer(pd.to_datetime(ahead[DATE]))
        keep = rows >= 0
        for column, values in known.items():
            values[rows[keep], cols[keep]] = ahead[column].to_numpy(dtype=float)[keep]
    first = np.argmax(~np.isnan(sales), axis=1)
    return _Wide(item_ids, dates, sales, known, past, first, n_observed)


def _window_sum(cumulative: np.ndarray, origins: np.ndarray, window: int) -> np.ndarray:
    """Sums over the ``window`` periods ending at each origin, from a 0-led cumulative sum."""
    start = np.maximum(origins + 1 - window, 0)
    return cumulative[:, origins + 1] - cumulative[:, start]


def _cumulative(values: np.ndarray) -> np.ndarray:
    """Cumulative sum along time with a leading zero column (NaN counts as 0)."""
    summed = np.cumsum(np.nan_to_num(values), axis=1)
    return np.concatenate([np.zeros((len(values), 1)), summed], axis=1)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator``, NaN where the denominator is 0 or NaN."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out = numerator / denominator
    out[~np.isfinite(out)] = np.nan
    return out


def _gather(values: np.ndarray, positions: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """``values[item, position]`` for positions ``(n_items, ...)``; NaN where out of range.

    A position is out of range when it is negative or after ``limit`` (broadcast like
    ``positions``), which is how features are kept on or before their origin.
    """
    valid = (positions >= 0) & (positions <= limit) & (positions < values.shape[1])
    rows = np.arange(len(values)).reshape((-1,) + (1,) * (positions.ndim - 1))
    out = values[rows, np.where(valid, positions, 0)]
    return np.where(valid, out, np.nan)


def _scales(
    sales_sum: np.ndarray, counts: np.ndarray, origins: np.ndarray, window: int
) -> np.ndarray:
    """Each item's scale at each origin, shape ``(n_items, n_origins)``."""
    recent = _ratio(_window_sum(sales_sum, origins, window), _window_sum(counts, origins, window))
    overall = _ratio(sales_sum[:, origins + 1], counts[:, origins + 1])
    scale = np.where(recent > 0, recent, overall)
    return np.where(scale > 0, scale, 1.0)


def _origin_features(
    wide: _Wide, origins: np.ndarray, spec: FeatureSpec
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Features of each item at each origin, each ``(n_items, n_origins)``, and the scales."""
    sales = wide.sales
    observed = (~np.isnan(sales)).astype(float)
    sales_sum = _cumulative(sales)
    squares_sum = _cumulative(sales**2)
    counts = _cumulative(observed)
    zeros = _cumulative(observed * (sales == 0))
    scale = _scales(sales_sum, counts, origins, spec.scale_window)
    out: dict[str, np.ndarray] = {}
    origin_grid = np.broadcast_to(origins, (len(sales), len(origins)))
    for lag in spec.lags:
        value = _gather(sales, origin_grid - lag + 1, origin_grid)
        out[f"lag_{lag}"] = np.log1p(value / scale)
    for window in spec.windows:
        n = _window_sum(counts, origins, window)
        mean = _ratio(_window_sum(sales_sum, origins, window), n)
        second = _ratio(_window_sum(squares_sum, origins, window), n)
        out[f"mean_{window}"] = mean / scale
        out[f"std_{window}"] = np.sqrt(np.clip(second - mean**2, 0.0, None)) / scale
    for window in spec.zero_windows:
        out[f"zero_share_{window}"] = _ratio(
            _window_sum(zeros, origins, window), _window_sum(counts, origins, window)
        )
    out["since_sale"] = _periods_since(sales > 0, origins, latest=True)
    out["age"] = _periods_since(sales > 0, origins, latest=False)
    out["history"] = (origins[None, :] - wide.first[:, None] + 1).astype(float)
    out[LOG_SCALE] = np.log1p(scale)
    for name, values in wide.past.items():
        typical = _ratio(
            _window_sum(_cumulative(values), origins, spec.scale_window),
            _window_sum(_cumulative(~np.isnan(values)), origins, spec.scale_window),
        )
        now = _gather(values, origin_grid, origin_grid)
        before = _gather(values, origin_grid - 1, origin_grid)
        out[f"{name}_lag_1"] = now
        out[f"{name}_rel_1"] = _ratio(now, typical)
        out[f"{name}_rel_2"] = _ratio(before, typical)
    return out, scale


def _periods_since(event: np.ndarray, origins: np.ndarray, latest: bool) -> np.ndarray:
    """Periods from the latest (or first) ``event`` on or before each origin; NaN if none."""
    index = np.arange(event.shape[1])
    if latest:
        last = np.maximum.accumulate(np.where(event, index, -1), axis=1)[:, origins]
        return np.where(last >= 0, origins[None, :] - last, np.nan).astype(float)
    first = np.where(event.any(axis=1), np.argmax(event, axis=1), event.shape[1])
    since = origins[None, :] - first[:, None]
    return np.where(since >= 0, since, np.nan).astype(float)


def calendar_features(dates: pd.DatetimeIndex, freq: str) -> dict[str, np.ndarray]:
    """Calendar columns of target dates: week of year / day of week / month by frequency."""
    month = np.asarray(dates.month, dtype=float)
    if freq.startswith("W"):
        week = np.asarray(dates.isocalendar().week, dtype=float)
        return {"week_of_year": week, "month": month}
    if freq == "D":
        return {
            "day_of_week": np.asarray(dates.dayofweek, dtype=float),
            "day_of_month": np.asarray(dates.day, dtype=float),
            "month": month,
        }
    return {"month": month}


def _typical(values: np.ndarray, origins: np.ndarray, window: int) -> np.ndarray:
    """Median of each item's values over the ``window`` periods up to each origin."""
    padded = np.concatenate([np.full((len(values), window - 1), np.nan), values], axis=1)
    windows = np.lib.stride_tricks.sliding_window_view(padded, window, axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows give NaN
        return np.nanmedian(windows[:, origins, :], axis=2)


def _target_features(
    wide: _Wide,
    origins: np.ndarray,
    horizon: int,
    scale: np.ndarray,
    spec: FeatureSpec,
    season: int,
    freq: str,
) -> dict[str, np.ndarray]:
    """Features of each target date, each ``(n_items, n_origins, horizon)``."""
    n_items = len(wide.item_ids)
    steps = np.arange(1, horizon + 1)
    shape = (n_items, len(origins), horizon)
    target = origins[:, None] + steps[None, :]
    out: dict[str, np.ndarray] = {STEP: np.broadcast_to(steps.astype(float), shape)}
    grid_position = np.minimum(target, len(wide.dates) - 1)
    for name, values in calendar_features(wide.dates, freq).items():
        out[name] = np.broadcast_to(values[grid_position], shape)
    limit = np.broadcast_to(origins[None, :, None], shape)
    same_season = np.broadcast_to(target - season * np.ceil(steps / season).astype(int), shape)
    scale3 = scale[:, :, None]
    out["seasonal_lag"] = np.log1p(_gather(wide.sales, same_season, limit) / scale3)
    around = np.stack([_gather(wide.sales, same_season + d, limit) for d in (-1, 0, 1)])
    present = (~np.isnan(around)).sum(axis=0)
    out["seasonal_mean_3"] = _ratio(np.nansum(around, axis=0), present) / scale3
    target_grid = np.broadcast_to(target, shape)
    unbounded = np.full(shape, len(wide.dates))
    for name, values in wide.known.items():
        at_target = _gather(values, target_grid, unbounded)
        usual = _typical(values[:, : wide.n_observed], origins, spec.scale_window)
        out[name] = at_target
        out[f"{name}_rel"] = _ratio(at_target, usual[:, :, None])
    return out


def _static_block(static: pd.DataFrame, item_ids: np.ndarray) -> dict[str, np.ndarray]:
    """Static numeric item features, one array ``(n_items,)`` per column."""
    numeric = static.select_dtypes(include=["number", "bool"])
    dropped = [c for c in static.columns if c not in numeric.columns]
    if dropped:
        raise DataValidationError(
            f"static item features must be numeric; columns {dropped} are not; "
            "encode them as numbers (e.g. one-hot or embedding components) or drop them"
        )
    aligned = numeric.copy()
    aligned.index = aligned.index.astype(str)
    if aligned.index.has_duplicates:
        raise DataValidationError("static item features: the index (item_id) has duplicates")
    aligned = aligned.reindex(pd.Index(item_ids, dtype=str))
    return {f"static_{c}": aligned[c].to_numpy(dtype=float) for c in aligned.columns}


def _origin_positions(
    wide: _Wide, origins: Sequence[pd.Timestamp] | pd.DatetimeIndex
) -> np.ndarray:
    """Positions of the origins on the panel's date grid; each must be a panel date."""
    stamps = pd.DatetimeIndex(pd.to_datetime(list(origins)))
    positions = wide.dates[: wide.n_observed].get_indexer(stamps)
    if (positions < 0).any():
        bad = [str(d.date()) for d in stamps[positions < 0][:5]]
        raise ConfigError(f"origins must be dates of the panel; {bad} are not")
    return np.unique(positions)


def build_features(
    panel: Panel,
    origins: Sequence[pd.Timestamp] | pd.DatetimeIndex,
    horizon: int,
    *,
    future: pd.DataFrame | None = None,
    static: pd.DataFrame | None = None,
    spec: FeatureSpec | None = None,
) -> FeatureMatrix:
    """Feature rows for every item alive at each origin and each step up to ``horizon``.

    A row is made for step ``k`` when its target date lies in the panel (training rows, with
    ``target`` filled) or in ``future`` (forecast rows, ``target`` NaN). Items enter at the
    origins on or after their first period.

    Args:
        panel: the validated sales panel.
        origins: dates of the panel to forecast from.
        horizon: the largest step, >= 1.
        future: known-future covariates for dates after the panel (``item_id``, ``date`` and
            every ``panel.known_future`` column), e.g. from
            :func:`salesformer.forecasting.protocol.resolve_future`.
        static: optional numeric item features indexed by ``item_id``.
        spec: lags and windows; :meth:`FeatureSpec.for_freq` when None.

    Returns:
        The rows ordered by item, origin and step.
    """
    if horizon < 1:
        raise ConfigError(f"horizon must be >= 1; got {horizon}")
    spec = spec or FeatureSpec.for_freq(panel.freq, panel.season_length)
    wide = _to_wide(panel, future)
    positions = _origin_positions(wide, origins)
    per_origin, scale = _origin_features(wide, positions, spec)
    per_target = _target_features(
        wide, positions, horizon, scale, spec, panel.season_length, panel.freq
    )
    per_item = _static_block(static, wide.item_ids) if static is not None else {}

    target_position = positions[:, None] + np.arange(1, horizon + 1)[None, :]
    alive = positions[None, :] >= wide.first[:, None]
    keep = alive[:, :, None] & (target_position < len(wide.dates))[None, :, :]
    n_rows = int(keep.sum())
    columns = [*per_origin, *per_target, *per_item]
    matrix = np.empty((n_rows, len(columns)), dtype=np.float32)
    shape = keep.shape
    for j, name in enumerate(columns):
        if name in per_origin:
            block = per_origin[name][:, :, None]
        elif name in per_target:
            block = per_target[name]
        else:
            block = per_item[name][:, None, None]
        matrix[:, j] = np.broadcast_to(block, shape)[keep]

    def keyed(values: np.ndarray) -> np.ndarray:
        return np.broadcast_to(values, shape)[keep]

    item_index = keyed(np.arange(len(wide.item_ids))[:, None, None])
    origin_index = keyed(positions[None, :, None])
    step = keyed(np.arange(1, horizon + 1)[None, None, :])
    target_index = origin_index + step
    sales = np.pad(
        wide.sales, ((0, 0), (0, len(wide.dates) - wide.n_observed)), constant_values=np.nan
    )
    return FeatureMatrix(
        features=pd.DataFrame(matrix, columns=columns),
        item_id=wide.item_ids[item_index],
        origin=wide.dates.to_numpy()[origin_index],
        step=step,
        date=wide.dates.to_numpy()[target_index],
        scale=keyed(scale[:, :, None]),
        target=sales[item_index, target_index],
    )
