"""The HTTP layer: :func:`create_app` builds a FastAPI app around a :class:`SalesService`.

Nothing is loaded at import time; the model is loaded once, when the app is created. Writes
(``POST``) need the API key in the ``X-API-Key`` header (compared in constant time); reads are
open unless ``protect_reads`` is set. Bad input is answered with a 4xx and a one-line
``{"detail": ...}``, never a 500; a batch of events is stored whole or not at all.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, Literal

import pandas as pd
from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException

from salesformer._version import __version__
from salesformer.data.contract import ITEM_ID
from salesformer.errors import ConfigError, SalesformerError
from salesformer.forecasting.protocol import check_quantiles, quantile_column
from salesformer.service import dashboard
from salesformer.service.core import SalesService, ServiceConfig
from salesformer.service.guards import BodyLimit, RequestMetrics
from salesformer.service.live import LiveForecast, UnknownItemError
from salesformer.service.metrics import Metrics
from salesformer.service.schemas import (
    ID_PATTERN,
    MAX_ID,
    ErrorOut,
    EventBatchIn,
    EventBatchOut,
    EventIn,
    EventOut,
    ForecastOut,
    ForecastPointOut,
    HealthOut,
    HistoryPointOut,
    ItemHistoryOut,
    ItemListOut,
    ItemOut,
    NewItemIn,
    PlanOut,
    WhatIfIn,
    WhatIfOut,
    WhatIfPointOut,
)
from salesformer.service.store import Event

_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key.")
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in (
        (400, "Body cannot be read (not UTF-8 JSON)"),
        (401, "No API key sent"),
        (403, "Wrong API key, or writes disabled"),
        (404, "Unknown item"),
        (413, "Request body too large"),
        (422, "Invalid request"),
    )
}
#: 1 to 99 levels such as ``0.1,0.5,0.9``: decimals strictly between 0 and 1.
QUANTILES_PATTERN = r"^0?\.[0-9]*[1-9][0-9]*(,0?\.[0-9]*[1-9][0-9]*){0,98}$"
ItemPath = Path(min_length=1, max_length=MAX_ID, pattern=ID_PATTERN)


def create_app(config: ServiceConfig, model: Any = None) -> FastAPI:
    """A FastAPI app serving forecasts from ``config.model_dir`` (or the given fitted model).

    Args:
        config: the service settings.
        model: an already fitted LM to serve instead of loading ``config.model_dir``.
    """
    service = SalesService.start(config, model)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()

    app = FastAPI(
        title="salesformer",
        version=__version__,
        description="Live sales events in, quantile forecasts out.",
        lifespan=lifespan,
        # The interactive docs pages load their scripts from a CDN; the schema itself is served
        # at /openapi.json and works offline.
        docs_url=None,
        redoc_url=None,
    )
    app.state.service = service
    app.state.metrics = metrics
    _errors(app)
    write = Depends(_key_check(config, required=True))
    read = Depends(_key_check(config, required=config.protect_reads))

    @app.post("/events", response_model=EventBatchOut, responses=_ERRORS, dependencies=[write])
    def post_events(batch: EventBatchIn) -> EventBatchOut:
        """Store a batch of sales events; acknowledged only once durably stored."""
        events = [_event(e) for e in batch.events]
        stored, duplicates = service.ingest(events)
        metrics.events(stored, duplicates)
        return EventBatchOut(received=len(events), stored=stored, duplicates=duplicates)

    @app.get(
        "/items/{item_id}/forecast",
        response_model=ForecastOut,
        responses=_ERRORS,
        dependencies=[read],
    )
    async def get_forecast(
        item_id: str = ItemPath,
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
        levels = _levels(quantiles)
        result = service.forecast(item_id, horizon, levels)
        return _forecast_out(item_id, service, result, levels)

    @app.post(
        "/forecast/new-item", response_model=ForecastOut, responses=_ERRORS, dependencies=[write]
    )
    def post_new_item(body: NewItemIn) -> ForecastOut:
        """Cold-start forecast of a product from its text, price and launch date."""
        levels = check_quantiles(body.quantiles) if body.quantiles else _levels(None)
        result = service.forecast_new(
            body.item_id, body.text, body.price, body.launch_date, body.horizon, levels
        )
        return _forecast_out(body.item_id, service, result, levels)

    @app.get(
        "/items/{item_id}/plan", response_model=PlanOut, responses=_ERRORS, dependencies=[read]
    )
    def get_plan(
        item_id: str = ItemPath,
        on_hand: float = Query(ge=0, le=1e9, description="Units in stock now."),
        lead_time: int = Query(ge=0, le=service.live.horizon - 1, description="Weeks."),
        review_period: int = Query(1, ge=1, le=service.live.horizon, description="Weeks."),
        on_order: float = Query(0.0, ge=0, le=1e9),
        pack_size: int = Query(1, ge=1, le=1_000_000),
        moq: float = Query(0.0, ge=0, le=1e9, description="Minimum order quantity."),
        unit_cost: float | None = Query(None, ge=0, le=1e9),
        service_level: float = Query(0.95, gt=0, lt=1),
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
        return PlanOut(**{k: _finite_or_none(v) for k, v in line.items()})

    @app.post("/whatif", response_model=WhatIfOut, responses=_ERRORS, dependencies=[write])
    def post_whatif(body: WhatIfIn) -> WhatIfOut:
        """A known item's forecast under a price / promotion scenario, with the uplift.

        The baseline is the item's live forecast (its plan carried forward from the clock);
        the scenario changes the price, any known-future covariate and the promotion copy.
        """
        from salesformer.decisions.whatif import Scenario

        levels = check_quantiles(body.quantiles) if body.quantiles else _levels(None)
        changes = None
        if body.covariates:
            changes = pd.DataFrame(
                {ITEM_ID: [body.item_id], **{k: [v] for k, v in body.covariates.items()}}
            )
        scenario = Scenario(
            changes=changes, price_change=body.price_change, promotion=body.promotion
        )
        table = service.what_if(scenario, body.item_id, body.horizon, levels)
        return _whatif_out(body.item_id, service, table, levels)

    @app.get("/items", response_model=ItemListOut, responses=_ERRORS, dependencies=[read])
    async def get_items(
        search: str = Query("", max_length=200), limit: int = Query(50, ge=1, le=1000)
    ) -> ItemListOut:
        """Known items whose id or title contains ``search``."""
        found, total = service.search(search, limit)
        return ItemListOut(items=[ItemOut(item_id=i, title=t) for i, t in found], total=total)

    @app.get(
        "/items/{item_id}/history",
        response_model=ItemHistoryOut,
        responses=_ERRORS,
        dependencies=[read],
    )
    def get_history(
        item_id: str = ItemPath,
        periods: int = Query(52, ge=1, le=10_000),
        events: int = Query(20, ge=0, le=1000),
    ) -> ItemHistoryOut:
        """The item's recent sales by period and its latest events."""
        series = service.item_history(item_id, periods)
        latest = service.store.latest_events(item_id, events) if events else []
        return ItemHistoryOut(
            item_id=item_id,
            history=[HistoryPointOut(date=d.date(), sales=float(v)) for d, v in series.items()],
            events=[EventOut(**vars(e)) for e in latest],
        )

    @app.get("/health", response_model=HealthOut)
    async def get_health() -> HealthOut:
        """Liveness and what is served."""
        return HealthOut(
            status="ok",
            model=str(service.live.model.name),
            items=len(service.live.item_ids),
            events=service.history.events,
            store=service.store.kind,
            clock=service.clock_date(),
            horizon=service.live.horizon,
        )

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses={**_ERRORS, 200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
        dependencies=[read],
    )
    async def get_metrics() -> PlainTextResponse:
        """Request counts, latencies and ingested events (Prometheus text format)."""
        return PlainTextResponse(metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/", include_in_schema=False)
    def get_dashboard() -> HTMLResponse:
        return HTMLResponse(dashboard.page(protect_reads=config.protect_reads))

    @app.get("/static/{name}", include_in_schema=False)
    def get_static(name: str) -> Response:
        content, media_type = dashboard.asset(name)
        return Response(content, media_type=media_type, headers={"Cache-Control": "max-age=3600"})

    # the last added runs first: metrics wrap the body limit, so refused bodies are counted too
    app.add_middleware(BodyLimit, limit=config.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics)
    return app


def _key_check(config: ServiceConfig, required: bool) -> Any:
    """A dependency that refuses requests without (401) or with a wrong (403) key."""
    expected = (config.api_key or "").encode()

    def open_access() -> None:
        """Open route: no key, and none declared in the OpenAPI schema."""

    def check(key: str | None = Depends(_KEY_HEADER)) -> None:
        if not expected:
            raise HTTPException(
                403,
                "writes are disabled: the server has no API key; start it with "
                "SALESFORMER_API_KEY set or --api-key-file",
            )
        if not key:
            raise HTTPException(401, "missing API key; send it in the X-API-Key header")
        if not hmac.compare_digest(key.encode(), expected):
            raise HTTPException(403, "wrong API key; send the server's key in X-API-Key")

    return check if required else open_access


def _errors(app: FastAPI) -> None:
    """One-line ``{"detail": ...}`` bodies for every refused request."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = exc.errors()
        first = problems[0] if problems else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        detail = (
            f"invalid request: {where}: {first.get('msg')}{more}; see /openapi.json for the schema"
        )
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(SalesformerError)
    async def user_error(request: Request, exc: SalesformerError) -> JSONResponse:
        return JSONResponse({"detail": str(exc).splitlines()[0]}, status_code=422)

    @app.exception_handler(UnknownItemError)
    async def unknown(request: Request, exc: UnknownItemError) -> JSONResponse:
        return JSONResponse(
            {
                "detail": "unknown item: the model was not fitted on it; use GET /items to "
                "list known items, or POST /forecast/new-item for a new product"
            },
            status_code=404,
        )


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _levels(text: str | None) -> tuple[float, ...]:
    """Quantile levels from ``0.1,0.5,0.9`` (also the default)."""
    if text is None or not text.strip():
        return (0.1, 0.5, 0.9)
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise ConfigError(
            f"quantiles must be comma-separated numbers in (0, 1) like 0.1,0.5,0.9; got {text!r}"
        ) from exc
    if not values or len(values) > 99:
        raise ConfigError(f"quantiles: give 1 to 99 levels; got {len(values)}")
    return check_quantiles(values)


def _event(item: EventIn) -> Event:
    stamp = item.timestamp
    if stamp.tzinfo is not None:
        stamp = stamp.astimezone(UTC).replace(tzinfo=None)
    return Event(
        item.event_id,
        item.item_id,
        datetime.fromisoformat(stamp.isoformat()),
        float(item.quantity),
        item.price,
        item.order_id,
        item.customer_id,
    )


def _whatif_out(
    item_id: str, service: SalesService, table: pd.DataFrame, levels: tuple[float, ...]
) -> WhatIfOut:
    bands = {
        label: table[[quantile_column(label, q) for q in levels]].to_numpy(dtype=float)
        for label in ("baseline", "scenario")
    }
    money = ("price_baseline", "price_scenario", "revenue_baseline", "revenue_scenario")
    points = [
        WhatIfPointOut(
            date=pd.Timestamp(row["date"]).date(),
            baseline=float(row["baseline"]),
            scenario=float(row["scenario"]),
            uplift_units=float(row["uplift_units"]),
            uplift_revenue=_finite_or_none(float(row["uplift_revenue"])),
            **{name: _finite_or_none(float(row[name])) for name in money},
            baseline_quantiles=bands["baseline"][i].tolist(),
            scenario_quantiles=bands["scenario"][i].tolist(),
        )
        for i, row in enumerate(table.to_dict("records"))
    ]
    return WhatIfOut(
        item_id=item_id,
        model=str(service.live.model.name),
        quantiles=list(levels),
        points=points,
        uplift_units=float(table["uplift_units"].sum()),
        uplift_revenue=_finite_or_none(float(table["uplift_revenue"].sum(min_count=len(table)))),
    )


def _forecast_out(
    item_id: str, service: SalesService, result: LiveForecast, levels: tuple[float, ...]
) -> ForecastOut:
    origin = (result.dates[0] - service.live.panel.offset).date()
    points = [
        ForecastPointOut(date=d.date(), forecast=float(p), quantiles=[float(v) for v in row])
        for d, p, row in zip(result.dates, result.point, result.quantiles, strict=True)
    ]
    return ForecastOut(
        item_id=item_id,
        model=str(service.live.model.name),
        origin=origin,
        quantiles=list(levels),
        points=points,
    )
