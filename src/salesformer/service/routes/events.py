"""``POST /events``: live sales events in."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from salesformer.service.core import SalesService
from salesformer.service.metrics import Metrics
from salesformer.service.routes.common import ERRORS, event_of
from salesformer.service.schemas import EventBatchIn, EventBatchOut


def router(service: SalesService, metrics: Metrics, write: Any) -> APIRouter:
    """The routes, bound to the app's service (query limits follow the model's horizon)."""
    router = APIRouter()

    @router.post("/events", response_model=EventBatchOut, responses=ERRORS, dependencies=[write])
    def post_events(batch: EventBatchIn) -> EventBatchOut:
        """Store a batch of sales events; acknowledged only once durably stored."""
        events = [event_of(e) for e in batch.events]
        stored, duplicates = service.ingest(events)
        metrics.events(stored, duplicates)
        return EventBatchOut(received=len(events), stored=stored, duplicates=duplicates)

    return router
