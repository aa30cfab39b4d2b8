"""The known items: search and each item's history."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from salesformer.service.core import SalesService
from salesformer.service.routes.common import ERRORS, ItemPath
from salesformer.service.schemas import (
    EventOut,
    HistoryPointOut,
    ItemHistoryOut,
    ItemListOut,
    ItemOut,
)


def router(service: SalesService, read: Any) -> APIRouter:
    """The routes, bound to the app's service (query limits follow the model's horizon)."""
    router = APIRouter()

    @router.get("/items", response_model=ItemListOut, responses=ERRORS, dependencies=[read])
    async def get_items(
        search: str = Query("", max_length=200), limit: int = Query(50, ge=1, le=1000)
    ) -> ItemListOut:
        """Known items whose id or title contains ``search``."""
        found, total = service.search(search, limit)
        return ItemListOut(items=[ItemOut(item_id=i, title=t) for i, t in found], total=total)

    @router.get(
        "/items/{item_id}/history",
        response_model=ItemHistoryOut,
        responses=ERRORS,
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

    return router
