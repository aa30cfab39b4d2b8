"""New products live: registered with ``POST /items``, forecast from launch, without retraining.

A product the model was not fitted on is registered with its text, price and launch date
(kept in the store, so it survives restarts). From then on its sales events are accepted,
and its forecast moves from the cold start to its own history as sales arrive:

- **cold start** ``C``: the LM's :meth:`predict_new` from the text, price and launch date
  (the forecast ``POST /forecast/new-item`` gives), a curve by age since launch;
- **history** ``H``: the same fitted head run on the product's own short history (its events
  by period since launch, zero in periods without a sale, its prices; other known-future
  covariates at 0, that is no promotion), with its text vector: the LM's own prediction for
  an item outside its panel, the path :func:`~salesformer.models.lm.prediction.forecast_wide`
  that serves known items;
- **blend**: ``w = n / (n + prior_weeks)``, where ``n`` is the number of periods observed
  since launch (the clock's period included), and the forecast is ``w * H + (1 - w) * C``,
  quantile by quantile (quantile averaging). With no period observed it is the cold start
  exactly; the cold start counts as ``prior_weeks`` (default 2) periods of evidence. For ages
  past the cold-start curve's horizon its last value is carried.

Why a blend and not ``H`` alone: with no or one observed period the head has no sales level
to scale from (its forecast at zero observed periods is near zero), while the cold start
knows what products of this kind sell at launch; after a few periods the product's own
sales say more. Each forecast of a product runs the encoder once (its vector is cached per
served model) plus one cold-start pass.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from salesformer.data.contract import ITEM_ID, TEXT
from salesformer.errors import DataValidationError
from salesformer.service.live import LiveForecast, LiveForecaster
from salesformer.service.store import Event, Store

#: Periods of evidence the cold start counts for in the blend.
PRIOR_WEEKS = 2.0


class ProductConflictError(DataValidationError):
    """A product id already registered with other details (answered with 409)."""


class UnregisteredItemError(DataValidationError):
    """Events of an item neither the model nor the product register knows (answered 404)."""


@dataclass(frozen=True)
class Product:
    """A registered product."""

    item_id: str
    text: str
    price: float | None
    launch_date: date

    def record(self) -> str:
        return json.dumps({**asdict(self), "launch_date": self.launch_date.isoformat()})

    @classmethod
    def from_record(cls, text: str) -> Product:
        raw = json.loads(text)
        return cls(
            raw["item_id"], raw["text"], raw["price"], date.fromisoformat(raw["launch_date"])
        )


@dataclass
class _Sales:
    events: list[Event] = field(default_factory=list)
    version: int = 0


class ProductBook:
    """The registered products, their events and their live forecasts."""

    def __init__(self, store: Store, prior_weeks: float = PRIOR_WEEKS) -> None:
        self.store = store
        self.prior_weeks = prior_weeks
        self._products: dict[str, Product] = {}
        self._sales: dict[str, _Sales] = {}
        # text vectors per served model (a switched-out model's entries go with it)
        self._vectors: weakref.WeakKeyDictionary[LiveForecaster, dict[str, np.ndarray]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        for record in store.iter_products():
            product = Product.from_record(record)
            self._products[product.item_id] = product
            self._sales[product.item_id] = _Sales()
        self.add(store.iter_sales())

    def knows(self, item_id: str) -> bool:
        return item_id in self._products

    def register(self, product: Product) -> bool:
        """Store the product; False when the same product was registered already.

        Raises:
            ProductConflictError: the id is registered with another text, price or launch.
        """
        with self._lock:
            found = self.store.add_product(product.item_id, product.record())
            if found is not None:
                stored = Product.from_record(found)
                if stored != product:
                    differs = [k for k, v in asdict(product).items() if asdict(stored)[k] != v]
                    raise ProductConflictError(
                        f"item_id {product.item_id!r} is already registered with another "
                        f"{', '.join(differs)}; resend it unchanged, or register the new product "
                        "under an id of its own"
                    )
                return False
            self._products[product.item_id] = product
            self._sales[product.item_id] = _Sales()
            return True

    def add(self, events: Iterable[Event]) -> None:
        """Keep the events of registered products (others are not theirs)."""
        with self._lock:
            for event in events:
                sales = self._sales.get(event.item_id)
                if sales is not None:
                    sales.events.append(event)
                    sales.version += 1

    def version(self, item_id: str) -> int:
        with self._lock:
            return self._sales[item_id].version

    def forecast(
        self, live: LiveForecaster, item_id: str, horizon: int, levels: tuple[float, ...]
    ) -> LiveForecast:
        """The blended forecast of a registered product (see the module docstring)."""
        with self._lock:
            product = self._products[item_id]
            events = list(self._sales[item_id].events)
        grid = live.grid
        launch = max(0, grid.index(pd.Timestamp(product.launch_date).to_pydatetime()))
        periods = [grid.index(e.timestamp) for e in events]
        first = min([launch, *periods])
        clock = max([launch - 1, *periods])
        observed = clock - first + 1
        size = live.horizon
        cold = self._cold(live, product, grid.date_of(first), size, levels)
        if observed <= 0:
            return LiveForecast(
                cold.dates[:horizon], cold.point[:horizon], cold.quantiles[:horizon]
            )
        history = self._history(live, product, events, periods, first, clock, horizon, levels)
        ages = np.minimum(np.arange(observed, observed + horizon), size - 1)
        weight = observed / (observed + self.prior_weeks)
        return LiveForecast(
            history.dates,
            weight * history.point + (1 - weight) * cold.point[ages],
            weight * history.quantiles + (1 - weight) * cold.quantiles[ages],
        )

    def _cold(
        self,
        live: LiveForecaster,
        product: Product,
        launch: date,
        size: int,
        levels: tuple[float, ...],
    ) -> LiveForecast:
        frame = pd.DataFrame(
            {
                ITEM_ID: [product.item_id],
                TEXT: [product.text],
                "price": [np.nan if product.price is None else float(product.price)],
                "launch_date": [pd.Timestamp(launch)],
            }
        )
        out = live.forecast_new(frame, size, levels)
        name = live.model.name
        columns = [c for c in out.columns if c.startswith(f"{name}-q")]
        return LiveForecast(
            pd.DatetimeIndex(out["date"]),
            out[name].to_numpy(dtype=float),
            out[columns].to_numpy(dtype=float),
        )

    def _vector(self, live: LiveForecaster, product: Product) -> np.ndarray:
        with self._lock:
            vectors = self._vectors.setdefault(live, {})
        found = vectors.get(product.item_id)
        if found is None:
            with live._encode_lock:
                found = np.asarray(live.model.encode_texts([product.text]), dtype=np.float32)
            vectors[product.item_id] = found
        return found

    def _history(
        self,
        live: LiveForecaster,
        product: Product,
        events: list[Event],
        periods: list[int],
        first: int,
        clock: int,
        horizon: int,
        levels: tuple[float, ...],
    ) -> LiveForecast:
        from salesformer.models.lm.prediction import forecast_wide
        from salesformer.models.lm.samples import Wide

        total = clock + 1 + live.horizon
        sales = np.zeros(total)
        price = np.full(total, np.nan)
        price[first] = np.nan if product.price is None else float(product.price)
        sums: dict[int, list[float]] = {}  # period: [price sum, prices]
        for event, period in zip(events, periods, strict=True):
            sales[period] += event.quantity
            if event.price is not None and event.price_weight:
                found = sums.setdefault(period, [0.0, 0.0])
                found[0] += float(event.price) * event.price_weight
                found[1] += float(event.price_weight)
        for period, (price_sum, priced) in sums.items():
            price[period] = price_sum / priced
        np.clip(sales, 0.0, None, out=sales)
        seen = np.zeros(total, dtype=bool)
        seen[first : clock + 1] = True
        filled = pd.Series(price).ffill().bfill().to_numpy()
        known: dict[str, np.ndarray] = {}
        for name in live.panel.known_future:
            values = filled if name == live.price_name else np.zeros(total)
            known[name] = values[None, :]
        wide = Wide(
            np.array([product.item_id]),
            live.dates(total),
            clock + 1,
            sales[None, :],
            seen[None, :],
            np.array([first]),
            known,
            filled[None, :] if live.price_name is not None else None,
        )
        result = forecast_wide(live.model, wide, self._vector(live, product), horizon, levels)
        dates = wide.dates[clock + 1 : clock + 1 + horizon]
        return LiveForecast(dates, result[:, 0], result[:, 1:])


def check_registered(events: Iterable[Event], live: Any, products: ProductBook) -> None:
    """Refuse a batch holding an event of an item nobody registered (nothing is stored)."""
    for position, event in enumerate(events):
        if not live.knows(event.item_id) and not products.knows(event.item_id):
            raise UnregisteredItemError(
                f"events[{position}]: item_id {event.item_id!r} is neither an item of the model "
                "nor a registered product; register it first with POST /items (item_id, text, "
                "price, launch_date), then resend the batch; nothing was stored"
            )
