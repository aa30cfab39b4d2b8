"""ASGI middleware of the service: security headers, the body size limit and request metrics.

Both are plain ASGI callables (no per-request task switching), so they cost microseconds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException

from salesformer.service.metrics import Metrics

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyTooLarge(HTTPException):
    """Raised inside ``receive`` when a streamed body passes the limit (answered with 413)."""


async def _reply(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, declared or streamed."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    def _message(self, size: int | None) -> str:
        got = "more" if size is None else str(size)
        return (
            f"request body too large: {got} bytes, the limit is {self.limit}; "
            "send smaller batches (or start the server with a larger --max-body-bytes)"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _reply(send, 400, "Content-Length is not a number")
                    return
                if declared > self.limit:
                    await _reply(send, 413, self._message(declared))
                    return
        seen = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge(413, self._message(None))
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _reply(send, 413, self._message(None))


class RequestMetrics:
    """Count every request and its latency by method, route template and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = scope.get("route")
            # the template without converters: /items/{item_id}/forecast for {item_id:path}
            template = getattr(route, "path_format", None) or "unmatched"
            self.metrics.observe(
                scope.get("method", "GET"), template, status, time.perf_counter() - started
            )


#: The dashboard's policy: its own scripts only (app.js and the bundled plotly.min.js; the
#: page has no inline script), styles of its own plus the ones plotly.js writes into the page
#: (it injects <style> rules: 'unsafe-inline' for styles, never for scripts), requests to
#: this server only, and no framing.
DASHBOARD_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; font-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
#: Every other answer (JSON, metrics, static files) loads nothing.
API_CSP = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
_COMMON_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
)


def security_headers(html: bool) -> dict[str, str]:
    """The headers :class:`SecurityHeaders` adds, for answers built outside it (a 500)."""
    policy = DASHBOARD_CSP if html else API_CSP
    pairs = [*_COMMON_HEADERS, (b"content-security-policy", policy.encode())]
    return {name.decode(): value.decode() for name, value in pairs}


class SecurityHeaders:
    """Add the security headers to every answer, refusals and errors included.

    ``Content-Security-Policy`` is the dashboard's for HTML pages and ``default-src 'none'``
    for the rest; ``X-Frame-Options: DENY``, ``X-Content-Type-Options: nosniff``,
    ``Referrer-Policy: no-referrer`` and ``Cross-Origin-Opener-Policy: same-origin`` go on all.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def secured_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {name.lower() for name, _ in headers}
                html = any(
                    name.lower() == b"content-type" and value.startswith(b"text/html")
                    for name, value in headers
                )
                policy = DASHBOARD_CSP if html else API_CSP
                extra = [*_COMMON_HEADERS, (b"content-security-policy", policy.encode())]
                headers += [(name, value) for name, value in extra if name not in names]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, secured_send)
