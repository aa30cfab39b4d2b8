"""Request and response bodies of the service (pydantic), separate for each direction."""

from __future__ import annotations

import unicodedata
from datetime import date, datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from salesformer.decisions.whatif import DISCOUNT, MAX_DISCOUNT, PRICE, PRICE_REGULAR

MAX_ID = 128
MAX_BATCH = 5000
#: Unicode categories no id may hold: control, format (zero-width, bidi overrides, BOM),
#: surrogates, private use, line and paragraph separators. They are invisible or unprintable,
#: so two ids that look alike would name different items.
_INVISIBLE = {"Cc", "Cf", "Cs", "Co", "Zl", "Zp"}
#: The same characters as a regex class (but the surrogates, which no regex engine takes),
#: for the OpenAPI schema; a test checks it against ``unicodedata`` over every code point.
INVISIBLE_CLASS = (
    r"\x00-\x1f\x7f-\x9f\xad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e"
    r"\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ue000-\uf8ff\ufeff\ufff9-\ufffb"
    r"\U000110bd\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    r"\U000e0001\U000e0020-\U000e007f\U000f0000-\U000ffffd\U00100000-\U0010fffd"
)
#: Ids: visible text, not blank (documented in the schema; :func:`check_id` enforces it).
ID_PATTERN = rf"^[^{INVISIBLE_CLASS}]*[^\s{INVISIBLE_CLASS}][^{INVISIBLE_CLASS}]*$"
ID_SCHEMA = {"pattern": ID_PATTERN}


def check_id(value: str) -> str:
    """Refuse blank ids, ``.`` and ``..``, and ids with invisible characters; return the id.

    Raises:
        ValueError: naming the first such character and where it is.
    """
    if not value.strip():
        raise ValueError(f"an id must not be blank; got {value!r}; send the item's visible id")
    if value in (".", ".."):
        raise ValueError(
            f"an id of {value!r} cannot be addressed in a URL path (clients resolve it away); "
            "rename the item"
        )
    for position, char in enumerate(value):
        category = unicodedata.category(char)
        if category in _INVISIBLE:
            kind = "a control character" if category == "Cc" else f"category {category}"
            raise ValueError(
                f"an id must hold visible characters only; got {ascii(value)[:80]} with "
                f"U+{ord(char):04X} ({unicodedata.name(char, kind)}) at position {position}; "
                "remove it"
            )
    return value


def _visible(text: str) -> str:
    """The text without invisible characters and surrounding white space."""
    return "".join(c for c in text if unicodedata.category(c) not in _INVISIBLE).strip()


Identifier = Annotated[
    str,
    Field(min_length=1, max_length=MAX_ID, json_schema_extra=ID_SCHEMA),
    AfterValidator(check_id),
]
OptionalId = Annotated[
    str | None,
    Field(default=None, min_length=1, max_length=MAX_ID, json_schema_extra=ID_SCHEMA),
    AfterValidator(lambda value: None if value is None else check_id(value)),
]
Quantity = Annotated[float, Field(ge=-1e6, le=1e6, allow_inf_nan=False)]
Price = Annotated[float | None, Field(default=None, ge=0, le=1e9, allow_inf_nan=False)]


class _Strict(BaseModel):
    """Request bodies: no unknown fields, no coercion ("5" is not a number); dates are ISO text."""

    model_config = ConfigDict(extra="forbid", strict=True)


def _iso_text(value: object, field: str) -> object:
    """Dates arrive as ISO 8601 text: a number is refused (pydantic would read it as epoch)."""
    if value is None or isinstance(value, str | date):
        return value
    raise ValueError(f"{field} must be an ISO 8601 text like 2024-03-25; got {value!r}")


class EventIn(_Strict):
    """A sale (negative ``quantity``: a return)."""

    event_id: Identifier = Field(description="Unique id; a repeated id is stored once.")
    item_id: Identifier
    timestamp: datetime = Field(
        strict=False, description="ISO 8601; without a zone it is read as UTC."
    )
    quantity: Quantity
    price: Price = None
    order_id: OptionalId = None
    customer_id: OptionalId = None
    in_stock: bool | None = Field(
        default=None,
        description="false: the item ran out of stock in this event's period (its sales are "
        "not demand); a quantity of 0 reports the stock-out alone.",
    )
    stock_on_hand: float | None = Field(
        default=None,
        ge=0,
        le=1e9,
        allow_inf_nan=False,
        description="Units left after the event; 0 marks the period out of stock. Give "
        "in_stock or stock_on_hand, not both.",
    )

    def availability(self) -> bool | None:
        """``in_stock`` as stored: from ``in_stock`` or ``stock_on_hand`` (0: out)."""
        if self.stock_on_hand is not None:
            return self.stock_on_hand > 0
        return self.in_stock

    @model_validator(mode="after")
    def _one_availability(self) -> EventIn:
        if self.in_stock is not None and self.stock_on_hand is not None:
            raise ValueError(
                f"give in_stock or stock_on_hand, not both; got in_stock={self.in_stock} and "
                f"stock_on_hand={self.stock_on_hand}; keep the one your system records"
            )
        return self

    @field_validator("timestamp", mode="before")
    @classmethod
    def _text(cls, value: object) -> object:
        return _iso_text(value, "timestamp")

    @field_validator("timestamp")
    @classmethod
    def _plausible(cls, value: datetime) -> datetime:
        if not 1900 <= value.year <= 2200:
            raise ValueError(f"timestamp year must be in 1900..2200; got {value.year}")
        return value


class EventBatchIn(_Strict):
    """A batch of events, stored whole or not at all."""

    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)


class EventBatchOut(BaseModel):
    received: int = Field(description="Events in the request.")
    stored: int = Field(description="Events stored now (new ids).")
    duplicates: int = Field(description="Events whose id was already stored (skipped).")


class ForecastPointOut(BaseModel):
    date: date
    forecast: float = Field(description="Point forecast (the median).")
    quantiles: list[float] = Field(description="One value per level of `quantiles`.")


class ForecastOut(BaseModel):
    item_id: str
    model: str
    origin: date = Field(description="Last period of the history the forecast starts after.")
    quantiles: list[float]
    points: list[ForecastPointOut]


class NewItemIn(_Strict):
    """A product not yet sold: its text, price and launch date."""

    item_id: Identifier = "new-item"
    text: str = Field(min_length=1, max_length=2000, description="Title, description, ...")
    price: Price = None
    launch_date: date | None = Field(
        default=None,
        strict=False,
        description="First period's date (default: the period after the clock).",
    )
    horizon: int | None = Field(default=None, ge=1, le=1000)
    quantiles: list[Annotated[float, Field(gt=0, lt=1)]] | None = Field(
        default=None, min_length=1, max_length=99
    )

    @field_validator("launch_date", mode="before")
    @classmethod
    def _text(cls, value: object) -> object:
        return _iso_text(value, "launch_date")

    @field_validator("text")
    @classmethod
    def _words(cls, value: str) -> str:
        """A new item is forecast from its text alone: a blank one would be a silent guess."""
        if not _visible(value):
            raise ValueError(
                f"text must describe the product (title, description, ...); got {ascii(value)[:80]}"
                "; the forecast of a new item comes from its text"
            )
        return value

    @field_validator("launch_date")
    @classmethod
    def _plausible(cls, value: date | None) -> date | None:
        if value is not None and not 1900 <= value.year <= 2200:
            raise ValueError(f"launch_date year must be in 1900..2200; got {value.year}")
        return value


class EventOut(BaseModel):
    event_id: str
    item_id: str
    timestamp: datetime
    quantity: float
    price: float | None
    order_id: str | None
    customer_id: str | None
    in_stock: bool | None = None


class HistoryPointOut(BaseModel):
    date: date
    sales: float
    in_stock: bool = Field(
        default=True, description="false: out of stock in the period (sales are not demand)."
    )


class ItemOut(BaseModel):
    item_id: str
    title: str


class ItemListOut(BaseModel):
    items: list[ItemOut]
    total: int = Field(description="Items that match, before the limit.")


class ItemHistoryOut(BaseModel):
    item_id: str
    history: list[HistoryPointOut]
    events: list[EventOut] = Field(
        description="Latest stored events, newest first; only for requests with the API key "
        "(they carry order and customer ids)."
    )
    events_withheld: bool = Field(
        description="True when events were asked for without the API key and left out."
    )


class HealthOut(BaseModel):
    status: str
    model: str
    items: int
    events: int
    store: str
    clock: date = Field(
        description="The service clock: the latest period with data (panel or events) of a "
        "known item. Each item's forecast starts after its own clock, not this one."
    )
    horizon: int
    reason: str | None = Field(
        None, description="Why the status is 'degraded' (the accuracy alert), else null."
    )


class ErrorOut(BaseModel):
    detail: str


class PlanOut(BaseModel):
    """One item's reorder plan (see :func:`salesformer.decisions.inventory.plan_inventory`)."""

    item_id: str
    on_hand: float
    on_order: float
    position: float
    lead_time: int
    review_period: int
    expected_demand: float
    lead_time_demand: float
    safety_stock: float
    reorder_point: float
    order_up_to: float
    target_type: str
    target: float
    expected_fill_rate: float
    cycle_service: float
    order_qty: float
    order_value: float | None = Field(description="null without a unit cost")
    reason: str


CovariateName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_]+$")]
CovariateValue = Annotated[float, Field(ge=-1e9, le=1e9, allow_inf_nan=False)]


class WhatIfIn(_Strict):
    """A price / promotion scenario for one known item, against its current plan."""

    item_id: Identifier
    price_change: float | None = Field(
        default=None,
        gt=-1,
        le=10,
        allow_inf_nan=False,
        description="Relative change of the price over the horizon: -0.1 is 10% cheaper.",
    )
    covariates: dict[CovariateName, CovariateValue] | None = Field(
        default=None,
        max_length=50,
        description='Known-future covariates set for every period, e.g. {"discount": 0.2}.',
    )
    promotion: str | None = Field(
        default=None, min_length=1, max_length=2000, description="Promotion copy (LM reads it)."
    )
    horizon: int | None = Field(default=None, ge=1, le=1000)
    quantiles: list[Annotated[float, Field(gt=0, lt=1)]] | None = Field(
        default=None, min_length=1, max_length=99
    )

    @field_validator("promotion")
    @classmethod
    def _copy(cls, value: str | None) -> str | None:
        """Blank copy would be dropped without a word: refuse it."""
        if value is not None and not _visible(value):
            raise ValueError(
                f"promotion must be the promotion's copy; got {ascii(value)[:80]}; leave it out "
                "for a scenario without copy"
            )
        return value

    @field_validator("covariates")
    @classmethod
    def _possible(cls, values: dict[str, float] | None) -> dict[str, float] | None:
        """Prices are >= 0 and a discount a fraction: others would give negative revenue."""
        for name, value in (values or {}).items():
            if name in (PRICE, PRICE_REGULAR) and value < 0:
                raise ValueError(
                    f"{name} must be >= 0; got {value!r}; give the unit price in the panel's "
                    "currency (or price_change, e.g. -0.1 for 10% cheaper)"
                )
            if name == DISCOUNT and not 0 <= value <= MAX_DISCOUNT:
                raise ValueError(
                    f"discount must lie in [0, {MAX_DISCOUNT}] (a fraction of the regular price: "
                    f"0.2 is 20% off); got {value!r}"
                )
        return values


class WhatIfPointOut(BaseModel):
    date: date
    price_baseline: float | None = Field(description="null without a price")
    price_scenario: float | None
    baseline: float = Field(description="Point forecast under the current plan.")
    scenario: float = Field(description="Point forecast under the scenario.")
    uplift_units: float
    revenue_baseline: float | None
    revenue_scenario: float | None
    uplift_revenue: float | None
    baseline_quantiles: list[float] = Field(description="One value per level of `quantiles`.")
    scenario_quantiles: list[float]


class WhatIfOut(BaseModel):
    item_id: str
    model: str
    quantiles: list[float]
    points: list[WhatIfPointOut]
    uplift_units: float = Field(description="Total over the horizon.")
    uplift_revenue: float | None = Field(description="Total over the horizon; null without prices.")
