"""The known items: search and each item's history."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from salesformer.service.core import SalesService
from salesformer.service.routes.common import ERRORS, ItemId
from salesformer.service.schemas import (
    EventOut,
    HistoryPointOut,
    ItemHistoryOut,
    ItemListOut,
    ItemOut,
)


def router(service: SalesService, read: Any, personal: Any) -> APIRouter:
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
        "/items/{item_id:path}/history",
        response_model=ItemHistoryOut,
        responses=ERRORS,
        dependencies=[read],
    )
    def get_history(
        item_id: ItemId,
        periods: int = Query(52, ge=1, le=10_000),
        events: int = Query(20, ge=0, le=1000),
        keyed: bool = personal,
    ) -> ItemHistoryOut:
        """The item's recent sales by period and, for key holders, its latest events.

        Events carry order and customer ids: without the API key they are withheld
        (``events_withheld``), even when reads are open.
        """
        from salesformer.service.availability import out_of_stock_dates

        series = service.item_history(item_id, periods)
        out = out_of_stock_dates(service, item_id)
        withheld = bool(events) and not keyed
        latest = service.store.latest_events(item_id, events) if events and keyed else []
        return ItemHistoryOut(
            item_id=item_id,
            history=[
                HistoryPointOut(date=d.date(), sales=float(v), in_stock=d.date() not in out)
                for d, v in series.items()
            ],
            events=[EventOut(**vars(e)) for e in latest],
            events_withheld=withheld,
        )

    return router
