"""Explanations of the LightGBM forecasters by TreeSHAP (LightGBM's ``pred_contrib``).

The point model of :class:`~salesformer.models.lightgbm.LightGBMForecaster` predicts on the log
scale: ``log1p(forecast) = expected value + sum of contributions + offset``, where the offset is
``log1p(scale)`` (the item's recent level) for the default target ``"log1p_offset"``. TreeSHAP
splits each row's prediction exactly among the features (Lundberg et al., 2020), so the
attributions here are in ``log1p`` units: +0.1 raises the forecast by about 10%.

Features are grouped as ``history`` (lags, rolling statistics, age, zero shares), ``level``
(the item's scale and the offset), ``season`` (same week last year), ``calendar`` (week,
month, day and the holiday and event covariates of :mod:`salesformer.data.calendars`), ``step``,
``known-future`` and ``past-only`` covariates, ``text`` (PCA components of the text
embeddings, LightGBM-text) and other ``static`` features.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from salesformer.data.calendars import is_calendar_column
from salesformer.data.contract import ITEM_ID
from salesformer.data.features import LOG_SCALE, STEP, build_features
from salesformer.errors import NotFittedError
from salesformer.explain.result import (
    ATTRIBUTION_COLUMNS,
    Explanation,
    completeness,
    unknown_item,
)
from salesformer.forecasting.protocol import check_horizon, resolve_future

_HISTORY_PREFIXES = ("lag_", "mean_", "std_", "zero_share_")
_HISTORY_NAMES = ("since_sale", "age", "history")
_CALENDAR = ("week_of_year", "month", "day_of_week", "day_of_month")
_SEASON = ("seasonal_lag", "seasonal_mean_3")
OFFSET = "offset (recent level)"


def feature_group(name: str, known_future: tuple[str, ...], past_only: tuple[str, ...]) -> str:
    """The group of a LightGBM feature (see the module docstring)."""
    if name.startswith(_HISTORY_PREFIXES) or name in _HISTORY_NAMES:
        return "history"
    if name in (LOG_SCALE, OFFSET):
        return "level"
    if name in _SEASON:
        return "season"
    if name in _CALENDAR:
        return "calendar"
    if name == STEP:
        return "step"
    if name.startswith("static_text_pc"):
        return "text"
    if name.startswith("static_"):
        return "static"
    if any(name in (c, f"{c}_rel") for c in known_future):
        return "calendar" if is_calendar_column(name) else "known-future"
    if any(name.startswith(f"{c}_") for c in past_only):
        return "past-only"
    return "other"


def explain_lightgbm(
    model: Any,
    item_id: str,
    horizon: int | None = None,
    *,
    future: pd.DataFrame | None = None,
) -> Explanation:
    """TreeSHAP contributions of a LightGBM forecast, per feature and step, for one item.

    Args:
        model: a fitted :class:`~salesformer.models.lightgbm.LightGBMForecaster` (or
            LightGBM-text).
        item_id: an item of the model's panel.
        horizon: steps to explain (default: the model's ``max_horizon``).
        future: known-future covariates of the horizon, as for ``predict``.

    Returns:
        An :class:`Explanation` with ``attributions`` in ``log1p`` units and the completeness
        record ``"trees"`` (contributions + offset vs the log prediction minus the expected
        value; equal up to rounding).
    """
    if not hasattr(model, "boosters_"):
        raise NotFittedError(f"{model.name} is not fitted yet; call .fit(panel) before explaining")
    horizon = model.max_horizon if horizon is None else horizon
    check_horizon(horizon)
    item_id = str(item_id)
    ids = np.asarray(model.panel_.item_ids).astype(str)
    if item_id not in set(ids):
        raise unknown_item(item_id, ids)
    fitted = model.model_for(horizon)
    point = fitted.boosters_.get(None)
    forecast = model.predict(horizon, future=future, quantiles=())
    forecast = forecast[forecast[ITEM_ID] == item_id].reset_index(drop=True)
    steps_of = np.arange(1, horizon + 1)
    frame = pd.DataFrame({"step": steps_of, "date": forecast["date"]})
    frame["forecast"] = forecast[model.name]
    if point is None:
        return Explanation(
            model=model.name,
            item_id=item_id,
            method="TreeSHAP",
            scale="log1p sales",
            forecast=frame,
            notes=["no training rows: the forecast is the item's recent level, nothing to split"],
        )
    view = fitted.view_
    covariates = resolve_future(model.panel_, horizon, future)
    rows = build_features(view, [view.last_date], horizon, future=covariates, static=fitted.static_)
    mask = rows.item_id.astype(str) == item_id
    features = rows.features[fitted.feature_names_].loc[mask]
    contributions = np.asarray(point.predict(features, pred_contrib=True), dtype=float)
    expected = contributions[:, -1]
    parts = contributions[:, :-1]
    offset_all = fitted.log_offset(rows)
    offset = np.zeros(len(features)) if offset_all is None else offset_all[mask]
    steps = rows.step[mask]
    attributions = _attribution_frame(model, fitted.feature_names_, features, parts, offset, steps)
    log_point = fitted.predict_log(point, rows, mask)
    record = completeness(float(parts.sum() + offset.sum()), float((log_point - expected).sum()))
    notes = [
        "TreeSHAP of the point model, in log1p units (+0.1 is about +10% on the forecast); "
        "the quantile models are not explained",
    ]
    if fitted.smearing_ != 1.0:
        notes.append(f"the forecast is multiplied by the smearing factor {fitted.smearing_:.3f}")
    return Explanation(
        model=model.name,
        item_id=item_id,
        method="TreeSHAP",
        scale="log1p sales",
        forecast=frame,
        attributions=attributions,
        completeness={"trees": record},
        baseline={"trees": float(expected.mean())},
        notes=notes,
    )


def _attribution_frame(
    model: Any,
    names: list[str],
    features: pd.DataFrame,
    parts: np.ndarray,
    offset: np.ndarray,
    steps: np.ndarray,
) -> pd.DataFrame:
    known = tuple(model.panel_.known_future) if model.use_known_future else ()
    past = tuple(model.panel_.past_only)
    if not model.use_known_future:
        past = (*past, *model.panel_.known_future)
    n, k = parts.shape
    values = features.to_numpy(dtype=float)
    frame = pd.DataFrame(
        {
            "group": np.tile([feature_group(c, known, past) for c in names], n),
            "feature": np.tile(np.asarray(names, dtype=object), n),
            "step": np.repeat(steps.astype(int), k),
            "value": values.ravel(),
            "attribution": parts.ravel(),
        }
    )
    if np.any(offset != 0):
        extra = pd.DataFrame(
            {
                "group": "level",
                "feature": OFFSET,
                "step": steps.astype(int),
                "value": offset,
                "attribution": offset,
            }
        )
        frame = pd.concat([frame, extra], ignore_index=True)
    frame = frame.sort_values(["step"], kind="stable").reset_index(drop=True)
    return frame[list(ATTRIBUTION_COLUMNS)]


__all__ = ["OFFSET", "explain_lightgbm", "feature_group"]
