"""The served model version (read it, switch to the registry's promoted one) and new
products (``POST /items``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict

from salesformer.forecasting.protocol import check_quantiles
from salesformer.service.core import SalesService
from salesformer.service.routes.common import ERRORS, forecast_out, levels_of
from salesformer.service.schemas import ForecastOut, NewItemIn
from salesformer.service.versions import Reloader


class ModelVersionOut(BaseModel):
    """The model served now."""

    model_config = ConfigDict(extra="forbid")
    model: str
    version: int | None


class ReloadOut(BaseModel):
    """The version served before and after a reload."""

    model_config = ConfigDict(extra="forbid")
    previous: int | None
    version: int | None
    changed: bool


def router(service: SalesService, reloader: Reloader, read: Any, write: Any) -> APIRouter:
    router = APIRouter()

    @router.get("/models/current", response_model=ModelVersionOut, responses=ERRORS,
                dependencies=[read])  # fmt: skip
    async def get_current() -> ModelVersionOut:
        """The model and registry version served (null outside a registry)."""
        return ModelVersionOut(model=str(service.live.model.name), version=service.version)

    @router.post("/models/reload", response_model=ReloadOut, responses=ERRORS,
                 dependencies=[write])  # fmt: skip
    def post_reload() -> ReloadOut:
        """Serve the registry's promoted version; in-flight requests finish on the old one."""
        done = reloader.reload()
        return ReloadOut(previous=done.previous, version=done.version, changed=done.changed)

    @router.post("/items", response_model=ForecastOut, responses=ERRORS, dependencies=[write])
    def post_item(body: NewItemIn) -> ForecastOut:
        """Register a new product (text, price, launch date); answers its cold-start forecast.

        Its sales events are accepted from now on, and ``GET /items/{item_id}/forecast`` moves
        from the cold start to its own history as they arrive, without retraining.
        """
        levels = check_quantiles(body.quantiles) if body.quantiles else levels_of(None)
        result = service.register_product(
            body.item_id, body.text, body.price, body.launch_date, body.horizon, levels
        )
        return forecast_out(body.item_id, service, result, levels)

    return router
