"""Forecasts: a known item from its live history, a new product from its text."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from salesformer.errors import ConfigError
from salesformer.forecasting.protocol import check_quantiles
from salesformer.service.core import SalesService
from salesformer.service.plan_schemas import PlanForecastIn, PlanForecastOut
from salesformer.service.routes.common import (
    ERRORS,
    QUANTILES_PATTERN,
    ItemId,
    forecast_out,
    levels_of,
)
from salesformer.service.schemas import ForecastOut, NewItemIn


def router(service: SalesService, read: Any, write: Any) -> APIRouter:
    """The routes, bound to the app's service (query limits follow the model's horizon)."""
    router = APIRouter()

    @router.get(
        "/items/{item_id:path}/forecast",
        response_model=ForecastOut,
        responses=ERRORS,
        dependencies=[read],
    )
    async def get_forecast(
        item_id: ItemId,
        horizon: int | None = Query(None, ge=1, le=service.live.horizon),
        quantiles: str | None = Query(
            None,
            max_length=600,
            pattern=QUANTILES_PATTERN,
            description="Comma-separated levels in (0, 1), e.g. 0.1,0.5,0.9 (the default).",
        ),
    ) -> ForecastOut:
        """Quantile forecast of a known item from its current history (panel + events).

        Runs on the event loop: a few milliseconds of numpy and one small forward pass (or a
        cache hit), cheaper than a hop to a worker thread.
        """
        levels = levels_of(quantiles)
        result = service.forecast(item_id, horizon, levels)
        return forecast_out(item_id, service, result, levels)

    @router.post(
        "/items/{item_id:path}/forecast",
        response_model=PlanForecastOut,
        responses=ERRORS,
        dependencies=[read],
    )
    def post_forecast_with_plan(item_id: ItemId, body: PlanForecastIn) -> PlanForecastOut:
        """A known item's forecast under the shop's plan (price, discount, promotion, copy).

        Periods and covariates the plan leaves out keep the item's last values (no change) and
        ``plan_note`` says how many; a plan date outside the horizon, a covariate that is not
        known-future, a negative price or a discount outside [0, 1) is a 422.
        """
        from salesformer.service.plans import forecast_with_plan, plan_frame

        levels = check_quantiles(body.quantiles) if body.quantiles else levels_of(None)
        if body.horizon is not None and body.horizon > service.live.horizon:
            raise ConfigError(
                f"horizon must be between 1 and {service.live.horizon} (the model was fitted "
                f"for {service.live.horizon} periods); got {body.horizon}"
            )
        plan = plan_frame(item_id, [(row.date, row.covariates) for row in body.plan])
        planned = forecast_with_plan(
            service, item_id, plan, body.promotion_copy, body.horizon, levels
        )
        out = forecast_out(item_id, service, planned.result, levels)
        return PlanForecastOut(**out.model_dump(), plan_note=planned.note)

    @router.post(
        "/forecast/new-item", response_model=ForecastOut, responses=ERRORS, dependencies=[write]
    )
    def post_new_item(body: NewItemIn) -> ForecastOut:
        """Cold-start forecast of a product from its text, price and launch date."""
        levels = check_quantiles(body.quantiles) if body.quantiles else levels_of(None)
        result = service.forecast_new(
            body.item_id, body.text, body.price, body.launch_date, body.horizon, levels
        )
        return forecast_out(body.item_id, service, result, levels)

    return router
