"""Health, metrics and the dashboard."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, PlainTextResponse, Response

from salesformer.service import dashboard
from salesformer.service.accuracy import prometheus_lines
from salesformer.service.core import SalesService, ServiceConfig
from salesformer.service.metrics import Metrics
from salesformer.service.routes.common import ERRORS
from salesformer.service.schemas import HealthOut


def router(service: SalesService, config: ServiceConfig, metrics: Metrics, read: Any) -> APIRouter:
    """The routes, bound to the app's service (query limits follow the model's horizon)."""
    router = APIRouter()

    @router.get("/health", response_model=HealthOut)
    async def get_health() -> HealthOut:
        """Liveness and what is served; ``degraded`` (with the reason) while accuracy alerts."""
        reason = service.monitor.alert_reason() if service.monitor is not None else None
        return HealthOut(
            status="ok" if reason is None else "degraded",
            reason=reason,
            model=str(service.live.model.name),
            items=len(service.live.item_ids),
            events=service.history.events,
            store=service.store.kind,
            clock=service.clock_date(),
            horizon=service.live.horizon,
        )

    @router.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses={**ERRORS, 200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
        dependencies=[read],
    )
    async def get_metrics() -> PlainTextResponse:
        """Request counts, latencies, ingested events and live accuracy (Prometheus text)."""
        text = metrics.render()
        text += "".join(f"{line}\n" for line in service.customer_data.prometheus_lines())
        if service.monitor is not None:
            text += "\n".join(prometheus_lines(service.monitor.report())) + "\n"
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    @router.get("/", include_in_schema=False)
    def get_dashboard() -> HTMLResponse:
        return HTMLResponse(dashboard.page(protect_reads=config.protect_reads))

    @router.get("/static/{name}", include_in_schema=False)
    def get_static(name: str) -> Response:
        content, media_type = dashboard.asset(name)
        return Response(content, media_type=media_type, headers={"Cache-Control": "max-age=3600"})

    return router
