"""Training and prediction samples of the LM forecaster, built with numpy from a panel.

A sample is one (item, origin) pair; the origin is the last period the sample may see. It
holds

* ``hist`` - the last ``context`` periods of ``log1p(sales)`` minus the item's level, 0 where
  the item had not started (or where history is masked), and ``hist_mask`` (1 = observed);
* ``level`` - ``log1p`` of the mean sales over the observed part of the window (0 without
  history). Targets are ``log1p(y) - level``: a shift in log space, so pinball-loss quantiles
  of the scaled target map back to quantiles of sales exactly;
* ``future`` - per step of the horizon: calendar (week-of-year or day-of-week harmonics),
  the step's position, and each known-future covariate (prices relative to the item's
  typical price, in logs; other covariates standardised);
* ``static`` - price level (log1p of the typical price), age, history length, level, share of
  zero periods, and whether history is missing (cold start);
* ``item`` - the row of the item in the text table, whose text the encoder reads.

Cold-start samples have no history: their origin is the period before the item's first sale,
and their price level is the launch price.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from salesformer.data.availability import IN_STOCK
from salesformer.data.contract import DATE, ITEM_ID, LIST_PRICE, SALES, Panel

#: Names of the static features, in order.
STATIC_FEATURES = (
    "log_price",
    "has_price",
    "log_age",
    "observed_share",
    "level",
    "zero_share",
    "cold",
    "recent_ratio",
)
#: Harmonics of the yearly cycle a model saved before ``calendar_harmonics`` existed was built
#: with (its inputs are rebuilt the same way).
LEGACY_HARMONICS = 2


def price_columns(panel: Panel) -> list[str]:
    """Covariates treated as prices (name contains "price"), known-future or past-only."""
    return [c for c in (*panel.known_future, *panel.past_only) if "price" in c.lower()]


def n_calendar(freq: str, harmonics: int) -> int:
    """Number of calendar inputs per step: sine and cosine of each harmonic."""
    return 2 * (LEGACY_HARMONICS if freq == "D" else harmonics)


def calendar(dates: pd.DatetimeIndex, freq: str, harmonics: int = LEGACY_HARMONICS) -> np.ndarray:
    """Sine and cosine of the first ``harmonics`` harmonics of the yearly cycle (weekly and
    monthly data; 26 resolve single weeks), or of the first two of the week (daily data)."""
    if freq == "D":
        phase = np.asarray(dates.dayofweek, dtype=float) / 7.0
        harmonics = LEGACY_HARMONICS
    else:
        phase = (np.asarray(dates.dayofyear, dtype=float) - 1.0) / 365.25
    angle = 2.0 * np.pi * phase
    waves = []
    for k in range(1, harmonics + 1):
        waves += [np.sin(k * angle), np.cos(k * angle)]
    return np.stack(waves, axis=-1).astype(np.float32)


@dataclass
class Wide:
    """A panel as dense item x period arrays, optionally extended by future periods."""

    item_ids: np.ndarray
    dates: pd.DatetimeIndex
    n_history: int
    sales: np.ndarray
    observed: np.ndarray
    first: np.ndarray
    known: dict[str, np.ndarray]
    price: np.ndarray | None
    #: Each item's launch price: the items table's ``list_price`` where given, else the price
    #: covariate in its first observed period (NaN when neither).
    launch_price: np.ndarray | None = None
    #: Out-of-stock periods (item x period, True = could not sell freely), or None: their
    #: sales are not demand, so they are masked from the training targets.
    unavailable: np.ndarray | None = None

    @classmethod
    def from_panel(cls, panel: Panel, future: pd.DataFrame | None = None, horizon: int = 0) -> Wide:
        """Arrays over the panel's dates plus ``horizon`` future periods.

        ``future`` (``item_id, date, <known-future>``) fills the known-future covariates of the
        future periods; without it they hold the last known values.
        """
        ids = np.asarray(panel.item_ids).astype(str)
        ids.sort()
        history_dates = panel.dates
        dates = history_dates
        if horizon > 0:
            dates = history_dates.append(panel.future_dates(panel.last_date, horizon))
        n, t = len(ids), len(dates)
        row = pd.Index(ids).get_indexer(panel.sales[ITEM_ID].astype(str))
        col = history_dates.get_indexer(pd.DatetimeIndex(panel.sales[DATE]))
        sales = np.zeros((n, t), dtype=np.float64)
        observed = np.zeros((n, t), dtype=bool)
        sales[row, col] = panel.sales[SALES].to_numpy(dtype=float)
        observed[row, col] = True
        first = np.where(observed.any(axis=1), observed.argmax(axis=1), t)

        def spread(column: str, frame: pd.DataFrame | None) -> np.ndarray:
            values = np.full((n, t), np.nan)
            values[row, col] = panel.sales[column].to_numpy(dtype=float)
            if frame is not None and column in frame.columns and len(frame):
                r = pd.Index(ids).get_indexer(frame[ITEM_ID].astype(str))
                c = dates.get_indexer(pd.DatetimeIndex(frame[DATE]))
                ok = (r >= 0) & (c >= 0)
                values[r[ok], c[ok]] = frame[column].to_numpy(dtype=float)[ok]
            return _ffill(values)

        known = {c: spread(c, future) for c in panel.known_future}
        prices = price_columns(panel)
        price = None
        if prices:
            name = prices[0]
            price = known[name] if name in known else spread(name, None)
        launch = _launch_prices(panel, ids, price, first)
        unavailable = None
        if IN_STOCK in panel.sales.columns:
            unavailable = np.zeros((n, t), dtype=bool)
            unavailable[row, col] = ~panel.sales[IN_STOCK].to_numpy(dtype=bool)
        n_history = len(history_dates)
        arrays = (sales, observed, first, known, price, launch, unavailable)
        return cls(ids, dates, n_history, *arrays)


def _launch_prices(
    panel: Panel, ids: np.ndarray, price: np.ndarray | None, first: np.ndarray
) -> np.ndarray | None:
    """See :attr:`Wide.launch_price`."""
    launch = None
    if price is not None:
        launch = price[np.arange(len(ids)), np.clip(first, 0, price.shape[1] - 1)]
    items = panel.items
    if items is None or LIST_PRICE not in items.columns:
        return launch
    listed = pd.Series(items[LIST_PRICE].to_numpy(dtype=float), index=items[ITEM_ID].astype(str))
    listed = listed[~listed.index.duplicated()].reindex(ids).to_numpy(dtype=float)
    if launch is None:
        return listed
    return np.where(np.isfinite(listed), listed, launch)


def _ffill(values: np.ndarray) -> np.ndarray:
    """Carry each row's last finite value forward along the columns."""
    mask = np.isfinite(values)
    index = np.where(mask, np.arange(values.shape[1]), 0)
    np.maximum.accumulate(index, axis=1, out=index)
    filled = values[np.arange(values.shape[0])[:, None], index]
    return np.where(np.isfinite(filled), filled, np.nan)


@dataclass
class Samples:
    """A batch of samples as arrays (see the module docstring)."""

    item: np.ndarray
    origin: np.ndarray
    hist: np.ndarray
    hist_mask: np.ndarray
    level: np.ndarray
    static: np.ndarray
    future: np.ndarray
    target: np.ndarray
    target_mask: np.ndarray
    weight: np.ndarray

    def __len__(self) -> int:
        return len(self.item)

    def take(self, index: np.ndarray) -> Samples:
        return Samples(**{k: getattr(self, k)[index] for k in self.__dataclass_fields__})

    @staticmethod
    def concat(parts: Sequence[Samples]) -> Samples:
        fields = Samples.__dataclass_fields__
        return Samples(**{k: np.concatenate([getattr(p, k) for p in parts]) for k in fields})


@dataclass
class Standardizer:
    """How the future inputs are built: the mean and spread of the non-price known-future
    covariates, learned at fit time, and the harmonics of the calendar."""

    names: tuple[str, ...]
    prices: tuple[str, ...]
    mean: dict[str, float]
    std: dict[str, float]
    harmonics: int = LEGACY_HARMONICS

    @classmethod
    def learn(cls, wide: Wide, panel: Panel, harmonics: int = LEGACY_HARMONICS) -> Standardizer:
        prices = tuple(c for c in panel.known_future if "price" in c.lower())
        mean: dict[str, float] = {}
        std: dict[str, float] = {}
        for name in panel.known_future:
            values = wide.known[name][:, : wide.n_history][wide.observed[:, : wide.n_history]]
            values = values[np.isfinite(values)]
            mean[name] = float(values.mean()) if len(values) else 0.0
            spread = float(values.std()) if len(values) else 1.0
            std[name] = spread if spread > 1e-9 else 1.0
        return cls(tuple(panel.known_future), prices, mean, std, harmonics)

    @classmethod
    def unlearned(cls, panel: Panel, harmonics: int = LEGACY_HARMONICS) -> Standardizer:
        """Covariates taken as they are (mean 0, spread 1): a private fit learns no statistic
        of the panel as a whole."""
        names = tuple(panel.known_future)
        prices = tuple(c for c in names if "price" in c.lower())
        return cls(names, prices, dict.fromkeys(names, 0.0), dict.fromkeys(names, 1.0), harmonics)

    def to_json(self) -> dict[str, object]:
        return {
            "names": list(self.names),
            "prices": list(self.prices),
            "mean": self.mean,
            "std": self.std,
            "harmonics": self.harmonics,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Standardizer:
        return cls(
            tuple(data["names"]),  # type: ignore[arg-type]
            tuple(data["prices"]),  # type: ignore[arg-type]
            dict(data["mean"]),  # type: ignore[call-overload]
            dict(data["std"]),  # type: ignore[call-overload]
            int(data.get("harmonics", LEGACY_HARMONICS)),  # type: ignore[call-overload]
        )


def _window_positions(origin: np.ndarray, context: int) -> np.ndarray:
    """Column positions of the ``context`` periods ending at each origin (may be negative)."""
    return origin[:, None] - context + 1 + np.arange(context)[None, :]


def _typical_price(wide: Wide, item: np.ndarray, cols: np.ndarray, seen: np.ndarray) -> np.ndarray:
    """Mean positive price over the observed window cells; NaN when none."""
    if wide.price is None:
        return np.full(len(item), np.nan)
    values = wide.price[item[:, None], np.clip(cols, 0, None)]
    ok = seen & np.isfinite(values) & (values > 0)
    total = np.where(ok, values, 0.0).sum(axis=1)
    count = ok.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def is_cold(samples: Samples) -> np.ndarray:
    """True for samples forecast without history (launches, new items)."""
    return np.asarray(samples.static[:, STATIC_FEATURES.index("cold")] > 0.5)


def growth_level(samples: Samples) -> np.ndarray:
    """Each sample's level for the growth damping: NaN (never damped) without history."""
    return np.where(is_cold(samples), np.nan, samples.level.astype(np.float64))


def build_samples(
    wide: Wide,
    item: np.ndarray,
    origin: np.ndarray,
    *,
    context: int,
    horizon: int,
    freq: str,
    standardizer: Standardizer,
    cold: np.ndarray | None = None,
    launch_price: np.ndarray | None = None,
    target_limit: int | None = None,
    volume_weight: float = 0.0,
) -> Samples:
    """Samples for (item, origin) pairs; ``cold`` marks samples whose history is hidden.

    ``target_limit`` is the last column whose sales may serve as a target (later cells are
    masked out), e.g. the validation origin while training.
    """
    item = np.asarray(item, dtype=np.int64)
    origin = np.asarray(origin, dtype=np.int64)
    n = len(item)
    cold_flag = np.zeros(n, dtype=bool) if cold is None else np.asarray(cold, dtype=bool)
    cols = _window_positions(origin, context)
    first = wide.first[item]
    in_range = (cols >= 0) & (cols < wide.n_history)
    known = in_range & (cols >= first[:, None])
    seen = known & ~cold_flag[:, None]
    window = _window_stats(wide, item, cols, seen)

    typical = _typical_price(wide, item, cols, known)
    if launch_price is not None:
        typical = np.where(cold_flag & np.isfinite(launch_price), launch_price, typical)
    has_price = np.isfinite(typical) & (typical > 0)
    log_price = np.where(has_price, np.log1p(np.where(has_price, typical, 0.0)), 0.0)
    age = np.where(cold_flag, np.maximum(origin + 1 - first, 0), origin + 1 - first)
    age = np.clip(age, 0, None)
    static = np.stack(
        [
            log_price,
            has_price.astype(float),
            np.log1p(age),
            window["count"] / context,
            window["level"],
            window["zero_share"],
            cold_flag.astype(float),
            window["recent_ratio"],
        ],
        axis=1,
    )

    steps = origin[:, None] + 1 + np.arange(horizon)[None, :]
    reference = np.where(has_price, typical, np.nan)[:, None]
    future = _future_inputs(wide, item, steps, freq, standardizer, reference)
    target, target_ok = _targets(wide, item, steps, first, window["level"], target_limit)
    return Samples(
        item=item,
        origin=origin,
        hist=window["hist"].astype(np.float32),
        hist_mask=seen.astype(np.float32),
        level=window["level"].astype(np.float32),
        static=static.astype(np.float32),
        future=future.astype(np.float32),
        target=target.astype(np.float32),
        target_mask=target_ok.astype(np.float32),
        weight=_volume_weights(wide, item, cols, known, volume_weight).astype(np.float32),
    )


def _window_stats(
    wide: Wide, item: np.ndarray, cols: np.ndarray, seen: np.ndarray
) -> dict[str, np.ndarray]:
    """The history window of each sample, scaled by its level, and the window's statistics."""
    safe_cols = np.clip(cols, 0, wide.n_history - 1)
    window = np.where(seen, wide.sales[item[:, None], safe_cols], 0.0)
    logs = np.log1p(window)
    count = seen.sum(axis=1)
    mean = np.where(count > 0, window.sum(axis=1) / np.maximum(count, 1), 0.0)
    level = np.log1p(mean)
    hist = np.where(seen, logs - level[:, None], 0.0)
    zero_share = np.where(count > 0, ((window == 0) & seen).sum(axis=1) / np.maximum(count, 1), 0)
    recent = seen[:, -4:]
    recent_mean = np.where(
        recent.sum(axis=1) > 0,
        (window[:, -4:] * recent).sum(axis=1) / np.maximum(recent.sum(axis=1), 1),
        0.0,
    )
    recent_ratio = np.where(count > 0, np.log1p(recent_mean) - level, 0.0)
    return {
        "hist": hist,
        "count": count,
        "level": level,
        "zero_share": zero_share,
        "recent_ratio": recent_ratio,
    }


def _future_inputs(
    wide: Wide,
    item: np.ndarray,
    steps: np.ndarray,
    freq: str,
    standardizer: Standardizer,
    reference: np.ndarray,
) -> np.ndarray:
    """Calendar, step position and known-future covariates of each step of the horizon.

    Prices are read relative to ``reference`` (the sample's typical price, NaN when none).
    """
    n, horizon = steps.shape
    step_dates = _dates_at(wide, steps, freq)
    width = n_calendar(freq, standardizer.harmonics)
    parts = [calendar(step_dates, freq, standardizer.harmonics).reshape(n, horizon, width)]
    parts.append(
        np.broadcast_to((np.arange(horizon) / max(horizon, 1))[None, :, None], (n, horizon, 1))
    )
    safe_steps = np.clip(steps, 0, len(wide.dates) - 1)
    for name in standardizer.names:
        values = wide.known[name][item[:, None], safe_steps]
        if name in standardizer.prices:
            with np.errstate(invalid="ignore", divide="ignore"):
                relative = np.log(values / reference)
            values = np.where(np.isfinite(relative), np.clip(relative, -3.0, 3.0), 0.0)
        else:
            values = (values - standardizer.mean[name]) / standardizer.std[name]
            values = np.where(np.isfinite(values), np.clip(values, -10.0, 10.0), 0.0)
        parts.append(values[:, :, None])
    return np.concatenate(parts, axis=2)


def _targets(
    wide: Wide,
    item: np.ndarray,
    steps: np.ndarray,
    first: np.ndarray,
    level: np.ndarray,
    target_limit: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Scaled log targets of the horizon and where they exist (up to ``target_limit``)."""
    limit = wide.n_history - 1 if target_limit is None else min(target_limit, wide.n_history - 1)
    target_ok = (steps <= limit) & (steps >= first[:, None]) & (steps >= 0)
    if wide.unavailable is not None:  # stock-outs are not demand: no loss on them
        target_ok &= ~wide.unavailable[item[:, None], np.clip(steps, 0, limit)]
    target_values = np.where(target_ok, wide.sales[item[:, None], np.clip(steps, 0, limit)], 0.0)
    target = np.where(target_ok, np.log1p(target_values) - level[:, None], 0.0)
    return target, target_ok


def _volume_weights(
    wide: Wide, item: np.ndarray, cols: np.ndarray, known: np.ndarray, volume_weight: float
) -> np.ndarray:
    """``(1 + mean sales in the window) ** volume_weight``.

    Weights follow the item's volume in the window even when its history is hidden (a weight
    is not an input); launch samples have none and get theirs from the caller.
    """
    safe_cols = np.clip(cols, 0, wide.n_history - 1)
    raw = np.where(known, wide.sales[item[:, None], safe_cols], 0.0)
    raw_mean = np.where(
        known.sum(axis=1) > 0, raw.sum(axis=1) / np.maximum(known.sum(axis=1), 1), 0
    )
    weights: np.ndarray = (
        np.power(1.0 + raw_mean, volume_weight) if volume_weight else np.ones(len(item))
    )
    return weights


def _dates_at(wide: Wide, steps: np.ndarray, freq: str) -> pd.DatetimeIndex:
    """Dates of column positions, extrapolated on the panel's grid beyond its ends."""
    flat = steps.ravel()
    inside = (flat >= 0) & (flat < len(wide.dates))
    out = np.empty(len(flat), dtype="datetime64[ns]")
    out[inside] = wide.dates.to_numpy()[flat[inside]]
    if (~inside).any():
        offset = pd.tseries.frequencies.to_offset(freq)
        anchor = wide.dates[0]
        for position in np.unique(flat[~inside]):
            out[flat == position] = np.datetime64(anchor + int(position) * offset)
    return pd.DatetimeIndex(out)


def cold_samples(
    log_price: np.ndarray,
    has_price: np.ndarray,
    launch_dates: pd.DatetimeIndex,
    *,
    context: int,
    horizon: int,
    freq: str,
    standardizer: Standardizer,
) -> Samples:
    """Samples of brand-new items: no history, a launch price, the first ``horizon`` periods.

    Known-future covariates take their "nothing special" values: prices at the launch price
    and every other covariate at 0 (no discount, no promotion).
    """
    n = len(log_price)
    offset = pd.tseries.frequencies.to_offset(freq)
    static = np.zeros((n, len(STATIC_FEATURES)), dtype=np.float32)
    static[:, STATIC_FEATURES.index("log_price")] = np.where(has_price, log_price, 0.0)
    static[:, STATIC_FEATURES.index("has_price")] = has_price.astype(float)
    static[:, STATIC_FEATURES.index("cold")] = 1.0
    dates = pd.DatetimeIndex(
        [launch + step * offset for launch in launch_dates for step in range(horizon)]
    )
    width = n_calendar(freq, standardizer.harmonics)
    parts = [calendar(dates, freq, standardizer.harmonics).reshape(n, horizon, width)]
    parts.append(
        np.broadcast_to((np.arange(horizon) / max(horizon, 1))[None, :, None], (n, horizon, 1))
    )
    for name in standardizer.names:
        if name in standardizer.prices:
            values = np.zeros((n, horizon))
        else:
            values = np.full((n, horizon), (0.0 - standardizer.mean[name]) / standardizer.std[name])
        parts.append(values[:, :, None])
    future = np.concatenate(parts, axis=2)
    return Samples(
        item=np.arange(n, dtype=np.int64),
        origin=np.full(n, -1, dtype=np.int64),
        hist=np.zeros((n, context), dtype=np.float32),
        hist_mask=np.zeros((n, context), dtype=np.float32),
        level=np.zeros(n, dtype=np.float32),
        static=static,
        future=future.astype(np.float32),
        target=np.zeros((n, horizon), dtype=np.float32),
        target_mask=np.zeros((n, horizon), dtype=np.float32),
        weight=np.ones(n, dtype=np.float32),
    )
