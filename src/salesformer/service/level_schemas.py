"""Response body of ``GET /levels/forecast`` (category and total forecasts, reconciled)."""

from __future__ import annotations

from datetime import date as Date

from pydantic import BaseModel, Field


class LevelPointOut(BaseModel):
    date: Date
    forecast: float = Field(description="Reconciled point forecast: items add up to levels.")
    base: float = Field(description="The level's own forecast before reconciliation.")
    quantiles: list[float] = Field(
        description="One value per level of `quantiles`: the base quantiles shifted with the "
        "point (they do not add up across levels)."
    )


class LevelSeriesOut(BaseModel):
    level: str = Field(description="item, category or total.")
    series_id: str = Field(description="The item id, the category name or 'total'.")
    points: list[LevelPointOut]


class LevelForecastOut(BaseModel):
    model: str
    origin: Date = Field(description="The panel's last date: the forecasts start after it.")
    levels: list[str]
    reconcile: str
    quantiles: list[float]
    series: list[LevelSeriesOut]
