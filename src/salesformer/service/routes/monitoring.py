"""Live accuracy (``GET /monitoring``) and the dashboard's overview (``GET /overview``)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from fastapi import APIRouter, Query

from salesformer.service.core import SalesService
from salesformer.service.overview import overview
from salesformer.service.routes.common import ERRORS


def router(service: SalesService, stock: pd.DataFrame | None, read: Any) -> APIRouter:
    """The routes, bound to the app's service and the stock table (None: stock unknown)."""
    router = APIRouter()

    @router.get("/monitoring", responses=ERRORS, dependencies=[read])
    def get_monitoring() -> dict[str, Any]:
        """Live accuracy of the served forecasts: windows (overall, per category, per item),
        accuracy by forecast date, the backtest's accuracy and the alert.

        ``enabled`` is false when the service runs with ``--no-monitor``.
        """
        if service.monitor is None:
            return {"enabled": False}
        return {"enabled": True, **service.monitor.report()}

    @router.get("/overview", responses=ERRORS, dependencies=[read])
    def get_overview(
        periods: int = Query(4, ge=1, le=service.live.horizon),
        top: int = Query(10, ge=1, le=100),
    ) -> dict[str, Any]:
        """Forecast totals by category, the biggest movers and the items short of stock."""
        return overview(service, stock, periods, top)

    return router
