"""Decisions from the live forecast: a reorder plan, a price / promotion what-if."""

from __future__ import annotations

import math
from typing import Any, Literal

import pandas as pd
from fastapi import APIRouter, Query

from salesformer.data.contract import ITEM_ID
from salesformer.forecasting.protocol import check_quantiles
from salesformer.service.core import SalesService
from salesformer.service.routes.common import (
    ERRORS,
    ItemId,
    finite_or_none,
    levels_of,
    whatif_out,
)
from salesformer.service.schemas import PlanOut, WhatIfIn, WhatIfOut


def router(service: SalesService, read: Any, write: Any) -> APIRouter:
    """The routes, bound to the app's service (query limits follow the model's horizon)."""
    router = APIRouter()

    @router.get(
        "/items/{item_id:path}/plan", response_model=PlanOut, responses=ERRORS, dependencies=[read]
    )
    def get_plan(
        item_id: ItemId,
        on_hand: float = Query(
            ge=0, le=1e9, allow_inf_nan=False, description="Units in stock now."
        ),
        lead_time: int = Query(ge=0, le=service.live.horizon - 1, description="Weeks."),
        review_period: int = Query(1, ge=1, le=service.live.horizon, description="Weeks."),
        on_order: float = Query(0.0, ge=0, le=1e9, allow_inf_nan=False),
        pack_size: int = Query(1, ge=1, le=1_000_000),
        moq: float = Query(
            0.0, ge=0, le=1e9, allow_inf_nan=False, description="Minimum order quantity."
        ),
        unit_cost: float | None = Query(None, ge=0, le=1e9, allow_inf_nan=False),
        service_level: float = Query(0.95, gt=0, lt=1, allow_inf_nan=False),
        service_type: Literal["cycle", "fill-rate"] = Query("cycle"),
    ) -> PlanOut:
        """Reorder plan of a known item from its live forecast (periodic review, order-up-to)."""
        from salesformer.decisions.inventory import ItemPolicy, PlanSettings

        policy = ItemPolicy(
            item_id=item_id,
            on_hand=on_hand,
            lead_time=lead_time,
            review_period=review_period,
            on_order=on_order,
            pack_size=pack_size,
            moq=moq,
            unit_cost=math.nan if unit_cost is None else unit_cost,
        )
        settings = PlanSettings(service_level=service_level, service_type=service_type)
        line = service.plan(policy, settings)
        return PlanOut(**{k: finite_or_none(v) for k, v in line.items()})

    @router.post("/whatif", response_model=WhatIfOut, responses=ERRORS, dependencies=[write])
    def post_whatif(body: WhatIfIn) -> WhatIfOut:
        """A known item's forecast under a price / promotion scenario, with the uplift.

        The baseline is the item's live forecast (its plan carried forward from the clock);
        the scenario changes the price, any known-future covariate and the promotion copy.
        """
        from salesformer.decisions.whatif import Scenario

        levels = check_quantiles(body.quantiles) if body.quantiles else levels_of(None)
        changes = None
        if body.covariates:
            changes = pd.DataFrame(
                {ITEM_ID: [body.item_id], **{k: [v] for k, v in body.covariates.items()}}
            )
        scenario = Scenario(
            changes=changes, price_change=body.price_change, promotion=body.promotion
        )
        table = service.what_if(scenario, body.item_id, body.horizon, levels)
        return whatif_out(body.item_id, service, table, levels)

    return router
