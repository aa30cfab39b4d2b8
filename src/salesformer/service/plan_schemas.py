"""Request and response bodies of a forecast under a plan (``POST /items/{id}/forecast``)."""

from __future__ import annotations

from datetime import date as Date
from typing import Annotated

from pydantic import Field, field_validator

from salesformer.service.schemas import (
    CovariateName,
    CovariateValue,
    ForecastOut,
    _iso_text,
    _Strict,
    _visible,
)

#: The most rows a plan may hold: one per period of the longest horizon.
MAX_PLAN_ROWS = 1000


class PlanRowIn(_Strict):
    """The known-future covariates planned for one period of the item."""

    date: Date = Field(strict=False, description="A period of the horizon, ISO 8601.")
    covariates: dict[CovariateName, CovariateValue] = Field(
        min_length=1,
        max_length=50,
        description='Planned known-future covariates, e.g. {"price": 8.99, "promo": 1}.',
    )

    @field_validator("date", mode="before")
    @classmethod
    def _text(cls, value: object) -> object:
        return _iso_text(value, "date")


class PlanForecastIn(_Strict):
    """A known item's plan for the horizon; periods and covariates left out stay unchanged."""

    plan: list[PlanRowIn] = Field(min_length=1, max_length=MAX_PLAN_ROWS)
    promotion_copy: str | None = Field(
        default=None,
        min_length=1,
        max_length=2000,
        description="Promotion copy the LM reads, for the whole horizon (one text per item).",
    )
    horizon: int | None = Field(default=None, ge=1, le=1000)
    quantiles: list[Annotated[float, Field(gt=0, lt=1)]] | None = Field(
        default=None, min_length=1, max_length=99
    )

    @field_validator("promotion_copy")
    @classmethod
    def _copy(cls, value: str | None) -> str | None:
        if value is not None and not _visible(value):
            raise ValueError(
                f"promotion_copy must be the promotion's text; got {ascii(value)[:80]}; leave "
                "it out for a plan without copy"
            )
        return value


class PlanForecastOut(ForecastOut):
    """A forecast under a plan, with what of the horizon fell back to "no change"."""

    plan_note: str | None = Field(
        description="Rows or covariates the plan left out (last values kept); null: none."
    )
