"""Per-item event totals on the model's period grid, updated one event at a time.

Every event falls into the period of the panel's grid that holds its timestamp (for weekly
panels, the week that starts on the panel's weekday). :class:`LiveHistory` keeps, per known
item and period, the sum of the quantities and the prices seen. Adding an event is O(1) and
needs no model: this is the incremental state the forecasts read.

**The clock is per item.** An item's history ends at its *clock*: the panel's last period or
the period of the item's own latest event, whichever is later. An event moves only its own
item's clock, so one item's event (a stray one dated today, say) never ages another item's
history, and events of items the model does not know move nothing. The *service clock*
(:attr:`LiveHistory.clock`, ``/health``) is the latest of the known items' clocks: it is
reported, and it dates a new item's default launch, but no forecast of a known item reads it.
"""

from __future__ import annotations

import threading
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from salesformer.errors import ConfigError, DataValidationError
from salesformer.service.store import Event

_WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")


@dataclass(frozen=True)
class PeriodGrid:
    """The panel's periods as integers: 0 is the panel's first date.

    Attributes:
        freq: ``W-MON`` ... ``W-SUN``, ``D`` or ``MS``.
        start: the first date of the panel.
    """

    freq: str
    start: date

    def __post_init__(self) -> None:
        if not (self.freq in ("D", "MS") or self.freq in {f"W-{d}" for d in _WEEKDAYS}):
            raise ConfigError(
                f"the service updates weekly (W-MON..W-SUN), daily (D) or monthly (MS) panels; "
                f"the model's panel has frequency {self.freq!r}; refit it on one of those"
            )

    def index(self, moment: datetime) -> int:
        """The period that holds ``moment`` (negative before the panel's first date)."""
        day = moment.date()
        if self.freq == "D":
            return (day - self.start).days
        if self.freq == "MS":
            return (day.year - self.start.year) * 12 + day.month - self.start.month
        anchor = _WEEKDAYS.index(self.freq[2:])
        week_start = day - timedelta(days=(day.weekday() - anchor) % 7)
        return (week_start - self.start).days // 7

    def date_of(self, index: int) -> date:
        """The first date of period ``index``."""
        if self.freq == "D":
            return self.start + timedelta(days=index)
        if self.freq == "MS":
            months = self.start.year * 12 + self.start.month - 1 + index
            return date(months // 12, months % 12 + 1, 1)
        return self.start + timedelta(days=7 * index)


@dataclass
class ItemEvents:
    """Event totals of one item by period."""

    quantity: dict[int, float] = field(default_factory=dict)
    price_sum: dict[int, float] = field(default_factory=dict)
    price_count: dict[int, int] = field(default_factory=dict)
    first: int | None = None
    last: int | None = None
    version: int = 0
    out_of_stock: set[int] = field(default_factory=set)

    def add(self, period: int, quantity: float, price: float | None, priced: int = 1) -> None:
        """Add sales; ``price`` is the mean of ``priced`` prices (a kept daily total).

        Periods marked out of stock (:attr:`out_of_stock`) are added by the caller.
        """
        self.quantity[period] = self.quantity.get(period, 0.0) + quantity
        if price is not None and priced > 0:
            self.price_sum[period] = self.price_sum.get(period, 0.0) + price * priced
            self.price_count[period] = self.price_count.get(period, 0) + priced
        self.first = period if self.first is None else min(self.first, period)
        self.last = period if self.last is None else max(self.last, period)
        self.version += 1

    def prices(self) -> dict[int, float]:
        """The mean event price of every period that has one."""
        return {p: self.price_sum[p] / self.price_count[p] for p in self.price_count}


class LiveHistory:
    """Event totals of every known item, and the clocks (see the module docstring).

    Args:
        grid: the model's period grid.
        panel_last: the panel's last period.
        known: the ids of the items the model knows; events of other items are counted in
            :attr:`events` but kept nowhere else.
        folded_until: the last period whose events are already in the panel (a model
            retrained on the store's events, ``salesformer retrain``): events up to it are
            counted but not added again. -1: none.
    """

    def __init__(
        self, grid: PeriodGrid, panel_last: int, known: Collection[str], folded_until: int = -1
    ) -> None:
        self.grid = grid
        self.panel_last = panel_last
        self.folded_until = folded_until
        self.known = frozenset(known)
        #: the service clock: the latest clock of the known items (see the module docstring)
        self.clock = panel_last
        self._items: dict[str, ItemEvents] = {}
        self._lock = threading.Lock()
        self.events = 0

    def check(self, events: Iterable[Event]) -> None:
        """Refuse events before the panel's first period (their week has no place on the grid).

        Raises:
            DataValidationError: naming the first such event.
        """
        for position, event in enumerate(events):
            if self.grid.index(event.timestamp) < 0:
                raise DataValidationError(
                    f"events[{position}] (event_id {event.event_id!r}) is dated "
                    f"{event.timestamp.isoformat()}, before the model's first date "
                    f"{self.grid.start.isoformat()}; send events on or after it"
                )

    def add(self, events: Iterable[Event]) -> None:
        """Fold stored events into the totals and move their items' clocks.

        Events before the grid's first period are skipped: :meth:`check` refuses them at
        ingestion, but a store written under another model (refitted on a later window) can
        still hold some, and a negative period would index the arrays from their end.
        """
        with self._lock:
            for event in events:
                period = self.grid.index(event.timestamp)
                if period < 0:
                    continue
                self.events += event.count
                if event.item_id not in self.known or period <= self.folded_until:
                    continue  # stored, but no forecast reads it (or in the panel already)
                state = self._items.setdefault(event.item_id, ItemEvents())
                state.add(period, event.quantity, event.price, event.price_weight)
                if event.in_stock is False:
                    state.out_of_stock.add(period)
                self.clock = max(self.clock, period)

    def item_clock(self, state: ItemEvents | None) -> int:
        """An item's clock: the panel's last period or its latest event's, whichever is later."""
        if state is None or state.last is None:
            return self.panel_last
        return max(self.panel_last, state.last)

    def snapshot(self, item_id: str) -> tuple[ItemEvents | None, int]:
        """A copy of the item's totals (None without events) and its clock, taken together."""
        with self._lock:
            state = self._items.get(item_id)
            if state is None:
                return None, self.panel_last
            copy = ItemEvents(
                dict(state.quantity),
                dict(state.price_sum),
                dict(state.price_count),
                state.first,
                state.last,
                state.version,
                set(state.out_of_stock),
            )
            return copy, self.item_clock(copy)

    def has_events(self, item_id: str) -> bool:
        with self._lock:
            return item_id in self._items
