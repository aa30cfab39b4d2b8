"""Explanations of the statistical baselines: the fitted components behind each forecast.

These models are transparent, so their explanation is their own arithmetic, read back for the
item: Naive's last value; SeasonalNaive's source week; the averages and their windows;
AutoETS's form, smoothing parameters, final level and the rest (trend and season) per step;
Croston's smoothed demand size and interval between sales (with the SBA factor, or the
optimised smoothing weights); TSB's demand size and probability of a sale; ADIDA's
aggregation level and aggregated forecast. Components marked ``step 0`` hold for every step.

The intermittent-demand components are recomputed with statsforecast's own smoothing routines
(the pinned version's), and the explanation notes it when they do not reproduce the forecast.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from salesformer.data.contract import DATE, ITEM_ID, SALES
from salesformer.errors import DataValidationError, NotFittedError
from salesformer.explain.result import COMPONENT_COLUMNS, Explanation, unknown_item
from salesformer.forecasting.protocol import check_horizon

Row = tuple[str, int, float, str]


def explain_statistical(
    model: Any,
    item_id: str,
    horizon: int | None = 8,
    *,
    future: pd.DataFrame | None = None,
) -> Explanation:
    """The fitted components of a statistical baseline's forecast for one item.

    Args:
        model: a fitted baseline of :mod:`salesformer.models.statistical`.
        item_id: an item of the model's panel.
        horizon: steps to explain (None: 8).
        future: unused: the statistical baselines read no covariates.

    Returns:
        An :class:`Explanation` with ``components`` (``component, step, value, detail``).
    """
    horizon = 8 if horizon is None else horizon
    if not hasattr(model, "fitted_"):
        raise NotFittedError(f"{model.name} is not fitted yet; call .fit(panel) before explaining")
    check_horizon(horizon)
    item_id = str(item_id)
    panel = model.panel_
    sales = panel.sales[panel.sales[ITEM_ID].astype(str) == item_id].sort_values(DATE)
    if sales.empty:
        raise unknown_item(item_id, panel.item_ids)
    y = sales[SALES].to_numpy(dtype=float)
    dates = pd.DatetimeIndex(sales[DATE])
    raw = model.point_forecast(horizon)
    raw = raw[raw[ITEM_ID].astype(str) == item_id].sort_values(DATE)
    point = raw[model.name].to_numpy(dtype=float)
    shown = model.predict(horizon, quantiles=())
    shown = shown[shown[ITEM_ID] == item_id]
    forecast = pd.DataFrame(
        {
            "step": np.arange(1, horizon + 1),
            "date": shown[DATE].to_numpy(),
            "forecast": shown[model.name].to_numpy(dtype=float),
        }
    )
    season = panel.season_length
    notes: list[str] = []
    name = model.name
    if len(y) < model.min_history(season):
        fallback = type(model.make_fallback()).__name__
        notes.append(
            f"the item has {len(y)} periods of history, fewer than the "
            f"{model.min_history(season)} {name} needs; its forecast comes from {fallback}"
        )
        name = fallback
    reader = _READERS.get(name)
    rows: list[Row] = []
    if reader is None:
        notes.append(f"{name} has no fitted components to show")
    else:
        try:
            rows = reader(model, item_id, y, dates, point, season)
        except ImportError:  # pragma: no cover - a statsforecast without these routines
            notes.append(f"this statsforecast version does not expose {name}'s components")
    if rows and not _reproduces(rows, point):
        notes.append("the recomputed components do not reproduce the forecast exactly")
    components = pd.DataFrame(rows, columns=list(COMPONENT_COLUMNS))
    components["step"] = components["step"].astype(int)
    return Explanation(
        model=model.name,
        item_id=item_id,
        method="fitted components",
        scale="sales",
        forecast=forecast,
        components=components,
        notes=notes,
    )


def _reproduces(rows: list[Row], point: np.ndarray) -> bool:
    """Whether the ``forecast`` rows of the components equal the model's point forecast."""
    values = {step: value for component, step, value, _ in rows if component == "forecast"}
    if not values:
        return True
    got = np.array([values.get(h + 1, np.nan) for h in range(len(point))])
    return bool(np.allclose(got, point, rtol=1e-6, atol=1e-6, equal_nan=False))


def _day(stamp: Any) -> str:
    return str(pd.Timestamp(stamp).date())


def _per_step(component: str, values: np.ndarray, detail: str) -> list[Row]:
    return [(component, h + 1, float(v), detail) for h, v in enumerate(values)]


def _naive(
    model: Any, item: str, y: np.ndarray, dates: pd.DatetimeIndex, point: np.ndarray, season: int
) -> list[Row]:
    value = np.full(len(point), y[-1])
    return _per_step("forecast", value, f"last value, sales of {_day(dates[-1])}")


def _seasonal_naive(
    model: Any, item: str, y: np.ndarray, dates: pd.DatetimeIndex, point: np.ndarray, season: int
) -> list[Row]:
    rows: list[Row] = []
    for h in range(len(point)):
        source = len(y) - season + (h % season)
        rows.append(
            (
                "forecast",
                h + 1,
                float(y[source]),
                f"sales of {_day(dates[source])}, one season earlier",
            )
        )
    return rows


def _historic_average(
    model: Any, item: str, y: np.ndarray, dates: pd.DatetimeIndex, point: np.ndarray, season: int
) -> list[Row]:
    detail = f"mean of all {len(y)} periods, {_day(dates[0])} .. {_day(dates[-1])}"
    return _per_step("forecast", np.full(len(point), y.mean()), detail)


def _window_average(
    model: Any, item: str, y: np.ndarray, dates: pd.DatetimeIndex, point: np.ndarray, season: int
) -> list[Row]:
    w = int(model.window_size)
    detail = f"mean of the last {w} periods, {_day(dates[-w])} .. {_day(dates[-1])}"
    return _per_step("forecast", np.full(len(point), y[-w:].mean()), detail)


def _fitted_object(model: Any, item: str) -> Any:
    for forecaster in model.fitted_:
        uids = [str(u) for u in forecaster.uids]
        if item in uids:
            return forecaster.fitted_[uids.index(item), 0]
    raise DataValidationError(f"item {item!r} was not fitted by {model.name}")  # pragma: no cover


def _auto_ets(
    model: Any, item: str, y: np.ndarray, dates: pd.DatetimeIndex, point: np.ndarray, season: int
) -> list[Row]:
    fitted = _fitted_object(model, item).model_
    spec = str(fitted["components"])  # error, trend, season, damped: e.g. "AAdN" -> "AAN" + "Y"
    trend, seasonal = spec[1], spec[2]
    names = ("alpha", "beta", "gamma", "phi")
    rows: list[Row] = [("form", 0, np.nan, str(fitted["method"]))]
    for name, value in zip(names, np.asarray(fitted["par"], dtype=float)[:4], strict=False):
        if np.isfinite(value):
            rows.append((name, 0, float(value), "smoothing parameter"))
    states = np.asarray(fitted["states"], dtype=float)
    level = float(states[-1, 0])
    rows += _per_step("level", np.full(len(point), level), "final smoothed level")
    if trend != "N" or seasonal != "N":
        label = "trend" if seasonal == "N" else "season" if trend == "N" else "trend + season"
        rows += _per_step(label, point - level, "forecast minus the level")
    rows += _per_step("forecast", point, "level" if trend == seasonal == "N" else "level + rest")
    return rows


def _intermittent_routines() -> dict[str, Callable[..., Any]]:
    from statsforecast import models as sf

    return {
        "ses": sf._ses_forecast,
        "optimized": sf._optimized_ses_forecast,
        "demand": sf._demand,
        "intervals": sf._intervals,
        "probability": sf._probability,
        "chunk": sf._chunk_forecast,
    }


def _croston(
    model: Any, item: str, y: np.ndarray, dates: pd.DatetimeIndex, point: np.ndarray, season: int
) -> list[Row]:
    sf = _intermittent_routines()
    sizes = sf["demand"](y)
    if not sizes.size:
        return _naive(model, item, y, dates, point, season)
    intervals = sf["intervals"](y)
    rows: list[Row] = []
    if model.name == "CrostonOptimized":
        size, _, alpha_size = sf["optimized"](sizes)
        interval, _, alpha_interval = sf["optimized"](intervals)
        factor = 1.0
        rows += [
            ("alpha (size)", 0, float(alpha_size), "optimised smoothing of the demand size"),
            ("alpha (interval)", 0, float(alpha_interval), "optimised smoothing of the interval"),
        ]
    else:
        size, _ = sf["ses"](sizes, 0.1)
        interval, _ = sf["ses"](intervals, 0.1)
        factor = 0.95
        rows.append(("SBA factor", 0, factor, "Syntetos-Boylan bias correction, 1 - alpha / 2"))
    rows += [
        ("demand size", 0, float(size), f"smoothed size of the {sizes.size} non-zero sales"),
        ("interval", 0, float(interval), "smoothed periods between two sales"),
    ]
    value = factor * size / interval if interval != 0 else factor * size
    rows += _per_step("forecast", np.full(len(point), value), "size / interval")
    return rows


def _tsb(
    model: Any, item: str, y: np.ndarray, dates: pd.DatetimeIndex, point: np.ndarray, season: int
) -> list[Row]:
    sf = _intermittent_routines()
    if (y == 0).all():
        return _per_step("forecast", np.zeros(len(point)), "no sale in the history")
    probability, _ = sf["ses"](sf["probability"](y), float(model.alpha_p))
    size, _ = sf["ses"](sf["demand"](y), float(model.alpha_d))
    rows: list[Row] = [
        ("probability of a sale", 0, float(probability), f"smoothed with alpha_p={model.alpha_p}"),
        ("demand size", 0, float(size), f"smoothed with alpha_d={model.alpha_d}"),
    ]
    return rows + _per_step(
        "forecast", np.full(len(point), probability * size), "probability x size"
    )


def _adida(
    model: Any, item: str, y: np.ndarray, dates: pd.DatetimeIndex, point: np.ndarray, season: int
) -> list[Row]:
    sf = _intermittent_routines()
    if (y == 0).all():
        return _per_step("forecast", np.zeros(len(point)), "no sale in the history")
    level = round(float(sf["intervals"](y).mean()))
    aggregated = float(sf["chunk"](y, level))
    rows: list[Row] = [
        (
            "aggregation level",
            0,
            float(level),
            "periods per bucket: the mean interval between sales",
        ),
        ("aggregated forecast", 0, aggregated, "exponential smoothing of the bucket sums"),
    ]
    return rows + _per_step(
        "forecast", np.full(len(point), aggregated / level), "bucket forecast / level"
    )


_READERS: dict[str, Callable[..., list[Row]]] = {
    "Naive": _naive,
    "SeasonalNaive": _seasonal_naive,
    "HistoricAverage": _historic_average,
    "WindowAverage": _window_average,
    "AutoETS": _auto_ets,
    "CrostonSBA": _croston,
    "CrostonOptimized": _croston,
    "TSB": _tsb,
    "ADIDA": _adida,
}

__all__ = ["explain_statistical"]
