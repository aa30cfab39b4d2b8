"""What the route modules share: error responses, path and query patterns, converters."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any

import pandas as pd
from fastapi import Path
from pydantic import AfterValidator

from salesformer.errors import ConfigError
from salesformer.forecasting.protocol import check_quantiles, quantile_column
from salesformer.service.core import SalesService
from salesformer.service.live import LiveForecast
from salesformer.service.schemas import (
    ID_SCHEMA,
    MAX_ID,
    ErrorOut,
    EventIn,
    ForecastOut,
    ForecastPointOut,
    WhatIfOut,
    WhatIfPointOut,
    check_id,
)
from salesformer.service.store import Event

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in (
        (400, "Body cannot be read (not UTF-8 JSON)"),
        (401, "No API key sent"),
        (403, "Wrong API key, or writes disabled"),
        (404, "Unknown item"),
        (409, "An event_id already stored for another sale"),
        (413, "Request body too large"),
        (422, "Invalid request"),
    )
}
#: 1 to 99 levels such as ``0.1,0.5,0.9``: decimals strictly between 0 and 1.
QUANTILES_PATTERN = r"^0?\.[0-9]*[1-9][0-9]*(,0?\.[0-9]*[1-9][0-9]*){0,98}$"
#: A known item's id in a path, URL-encoded: ``/`` as ``%2F`` (routes use ``{item_id:path}``).
ItemId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=MAX_ID,
        json_schema_extra=ID_SCHEMA,
        description="The item's id, URL-encoded (a / as %2F).",
    ),
    AfterValidator(check_id),
]


def finite_or_none(value: Any) -> Any:
    """None for NaN and infinities (JSON has neither)."""
    return None if isinstance(value, float) and not math.isfinite(value) else value


def levels_of(text: str | None) -> tuple[float, ...]:
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


def event_of(item: EventIn) -> Event:
    """The stored event of a posted one (timestamps in UTC, without a time zone)."""
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
        item.availability(),
    )


def whatif_out(
    item_id: str, service: SalesService, table: pd.DataFrame, levels: tuple[float, ...]
) -> WhatIfOut:
    """The response of a what-if table."""
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
            uplift_revenue=finite_or_none(float(row["uplift_revenue"])),
            **{name: finite_or_none(float(row[name])) for name in money},
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
        uplift_revenue=finite_or_none(float(table["uplift_revenue"].sum(min_count=len(table)))),
    )


def forecast_out(
    item_id: str, service: SalesService, result: LiveForecast, levels: tuple[float, ...]
) -> ForecastOut:
    """The response of a live forecast."""
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
