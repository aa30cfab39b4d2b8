"""``GET /levels/forecast``: category and total forecasts that add up to the items'."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query

from salesformer.data.contract import DATE, ITEM_ID
from salesformer.forecasting.levels import BASE_SUFFIX, DEFAULT_RECONCILER, ITEM, LEVEL
from salesformer.forecasting.protocol import DEFAULT_QUANTILES, quantile_column
from salesformer.service.core import SalesService
from salesformer.service.level_schemas import LevelForecastOut, LevelPointOut, LevelSeriesOut
from salesformer.service.levels import LevelForecasts
from salesformer.service.routes.common import ERRORS

#: category and/or total, comma-separated (the items are always the bottom level).
LEVELS_PATTERN = r"^\s*(category|total)\s*(,\s*(category|total)\s*)?$"
Reconciler = Literal["ols", "wls_struct", "mint_shrink", "bottom_up"]


def router(service: SalesService, write: Any) -> APIRouter:
    """The route, bound to the app's service (the horizon limit follows the model's)."""
    router = APIRouter()
    kept = LevelForecasts()

    @router.get(
        "/levels/forecast",
        response_model=LevelForecastOut,
        responses=ERRORS,
        dependencies=[write],
    )
    def get_level_forecast(
        levels: str = Query(
            "category,total",
            max_length=100,
            pattern=LEVELS_PATTERN,
            description="Comma-separated levels above the items: category, total.",
        ),
        reconcile: Reconciler = Query(
            DEFAULT_RECONCILER,
            description="ols, wls_struct, mint_shrink or bottom_up (hierarchicalforecast).",
        ),
        horizon: int | None = Query(None, ge=1, le=service.live.horizon),
        items: bool = Query(False, description="Also list the items' reconciled forecasts."),
    ) -> LevelForecastOut:
        """Reconciled forecasts of the categories and the total, as ``predict --levels``.

        Forecast from the served model's panel (``origin``) with the quantiles 0.1 ... 0.9;
        the first request for a set of levels and a method fits the model on the category
        and total series (see docs/service.md). Needs the API key: it may run a fit.
        """
        live = service.live
        steps = live.horizon if horizon is None else horizon
        qs = DEFAULT_QUANTILES
        frame = kept.forecast(live, levels, reconcile, steps)
        if not items:
            frame = frame.loc[frame[LEVEL] != ITEM]
        name = str(live.model.name)
        columns = [quantile_column(name, q) for q in qs]
        series = []
        for (level, series_id), rows in frame.groupby([LEVEL, ITEM_ID], sort=False):
            points = [
                LevelPointOut(
                    date=when.date(),
                    forecast=float(point),
                    base=float(base),
                    quantiles=[float(v) for v in values],
                )
                for when, point, base, values in zip(
                    rows[DATE],
                    rows[name],
                    rows[f"{name}{BASE_SUFFIX}"],
                    rows[columns].to_numpy(),
                    strict=True,
                )
            ]
            series.append(LevelSeriesOut(level=str(level), series_id=str(series_id), points=points))
        wanted = sorted({str(s) for s in frame[LEVEL]}, key=("item", "category", "total").index)
        return LevelForecastOut(
            model=name,
            origin=live.panel.last_date.date(),
            levels=wanted,
            reconcile=reconcile,
            quantiles=list(qs),
            series=series,
        )

    return router
