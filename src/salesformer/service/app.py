"""The HTTP layer: :func:`create_app` builds a FastAPI app around a :class:`SalesService`.

Nothing is loaded at import time; the model is loaded once, when the app is created. Writes
(``POST``) need the API key in the ``X-API-Key`` header (compared in constant time); reads are
open unless ``protect_reads`` is set, but stored events (order and customer ids) are answered
only to requests with the key. Bad input is answered with a 4xx and a one-line
``{"detail": ...}``, never a 500; a batch of events is stored whole or not at all.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException

from salesformer._version import __version__
from salesformer.errors import SalesformerError
from salesformer.service.core import SalesService, ServiceConfig
from salesformer.service.customer_data import RetentionTimer
from salesformer.service.guards import (
    BodyLimit,
    RequestMetrics,
    SecurityHeaders,
    security_headers,
)
from salesformer.service.live import UnknownItemError
from salesformer.service.metrics import Metrics
from salesformer.service.overview import read_stock
from salesformer.service.products import ProductConflictError, UnregisteredItemError
from salesformer.service.routes import (
    decisions,
    events,
    forecasts,
    items,
    levels,
    models,
    monitoring,
    system,
)
from salesformer.service.store import EventIdConflictError
from salesformer.service.versions import PointerWatcher, Reloader

_KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="The API key.")


def create_app(config: ServiceConfig, model: Any = None) -> FastAPI:
    """A FastAPI app serving forecasts from ``config.model_dir`` (or the given fitted model).

    Args:
        config: the service settings.
        model: an already fitted LM to serve instead of loading ``config.model_dir``.
    """
    service = SalesService.start(config, model)
    try:
        stock = None
        if config.stock_file is not None:
            known = set(service.live.item_ids)
            stock = read_stock(config.stock_file, known, service.live.horizon)
    except BaseException:
        service.close()
        raise
    metrics = Metrics()
    reloader = Reloader(service, config.registry)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        watcher = None
        if config.registry_poll:
            watcher = PointerWatcher(reloader, config.registry_poll).start()
        retention = None
        if config.customer_data.retain_days is not None:
            seconds = config.customer_data.retention_check
            retention = RetentionTimer(service.customer_data, seconds).start()
        yield
        if watcher is not None:
            watcher.stop()
        if retention is not None:
            retention.stop()
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
    app.state.reloader = reloader
    _errors(app)
    write = Depends(_key_check(config, required=True))
    read = Depends(_key_check(config, required=config.protect_reads))
    personal = Depends(_key_holder(config))

    app.include_router(events.router(service, metrics, write))
    app.include_router(forecasts.router(service, read, write))
    app.include_router(decisions.router(service, read, write))
    app.include_router(items.router(service, read, personal))
    app.include_router(system.router(service, config, metrics, read))
    app.include_router(models.router(service, reloader, read, write))
    app.include_router(monitoring.router(service, stock, read))
    app.include_router(levels.router(service, write))

    # the last added runs first: metrics wrap the body limit, so refused bodies are counted
    # too, and the security headers wrap both, so every answer carries them
    app.add_middleware(BodyLimit, limit=config.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics)
    app.add_middleware(SecurityHeaders)
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


def _key_holder(config: ServiceConfig) -> Any:
    """A dependency: True with the right key, False without one, 403 with a wrong one.

    For reads whose answer holds personal data (order and customer ids) only for key holders.
    """
    expected = (config.api_key or "").encode()

    def holds_key(key: str | None = Depends(_KEY_HEADER)) -> bool:
        if not key:
            return False
        if not expected or not hmac.compare_digest(key.encode(), expected):
            raise HTTPException(403, "wrong API key; send the server's key in X-API-Key")
        return True

    return holds_key


def _received(problem: Any) -> str:
    """``; got <value>`` for a short scalar input (messages of our own already say it)."""
    value = problem.get("input")
    message = str(problem.get("msg", ""))
    if "; got " in message or isinstance(value, dict | list):
        return ""
    text = ascii(value)  # escapes control and invisible characters: one readable line
    return f"; got {text if len(text) <= 80 else text[:77] + '...'}"


def _errors(app: FastAPI) -> None:
    """One-line ``{"detail": ...}`` bodies for every refused request."""

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = exc.errors()
        first = problems[0] if problems else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first.get("loc", ()))
        more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
        message = str(first.get("msg", "")).removeprefix("Value error, ")
        detail = f"invalid request: {where}: {message}{_received(first)}{more}; " + (
            "see /openapi.json for the schema"
        )
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(HTTPException)
    async def refused(request: Request, exc: HTTPException) -> JSONResponse:
        detail = str(exc.detail).splitlines()[0] if str(exc.detail).strip() else "refused"
        path = ascii(request.url.path)[:120]  # a decoded path may hold any character
        if exc.status_code == 400 and detail == "There was an error parsing the body":
            detail = (
                "the body cannot be parsed as JSON (nested too deeply, or not UTF-8 text); "
                'send a JSON object such as {"events": [...]}'
            )
        elif exc.status_code == 404 and detail == "Not Found":
            detail = f"not found: {request.method} {path}; see /openapi.json for the routes"
        elif exc.status_code == 405 and detail == "Method Not Allowed":
            allowed = (exc.headers or {}).get("Allow", "")
            detail = f"method {request.method} is not allowed on {path}; use {allowed or 'GET'}"
        return JSONResponse({"detail": detail}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(SalesformerError)
    async def user_error(request: Request, exc: SalesformerError) -> JSONResponse:
        return JSONResponse({"detail": str(exc).splitlines()[0]}, status_code=422)

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        # answered by Starlette's outermost middleware, outside SecurityHeaders: add them here
        return JSONResponse(
            {"detail": "internal error: the request was not completed; the server log has why"},
            status_code=500,
            headers=security_headers(html=False),
        )

    @app.exception_handler(EventIdConflictError)
    async def conflict(request: Request, exc: EventIdConflictError) -> JSONResponse:
        return JSONResponse({"detail": str(exc).splitlines()[0]}, status_code=409)

    @app.exception_handler(ProductConflictError)
    async def product_conflict(request: Request, exc: ProductConflictError) -> JSONResponse:
        return JSONResponse({"detail": str(exc).splitlines()[0]}, status_code=409)

    @app.exception_handler(UnregisteredItemError)
    async def unregistered(request: Request, exc: UnregisteredItemError) -> JSONResponse:
        return JSONResponse({"detail": str(exc).splitlines()[0]}, status_code=404)

    @app.exception_handler(UnknownItemError)
    async def unknown(request: Request, exc: UnknownItemError) -> JSONResponse:
        return JSONResponse(
            {
                "detail": "unknown item: the model was not fitted on it; use GET /items to "
                "list known items, or POST /forecast/new-item for a new product"
            },
            status_code=404,
        )
