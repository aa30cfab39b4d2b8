"""Forecasts from the fitted LM and the live event totals, one item at a time, no retraining.

At start, :class:`LiveForecaster` turns the model's training panel into dense arrays once and
keeps the item vectors the model computed at fit time (the encoder's work). A forecast for a
known item then builds that item's history window from the panel row plus the event totals of
:class:`~salesformer.service.history.LiveHistory` and runs only the fitted forecasting head on
it: no encoder pass, no refit. The forecast comes from
:func:`~salesformer.models.lm.prediction.forecast_wide`, the function ``model.predict`` calls:
with no events the result equals ``model.predict`` bit for bit; with events it equals
``model.predict`` on the panel with the events added (the tests check both, without tolerance).

Only the LM forecaster is served live: its head reads the history window at predict time.
The statistical baselines and LightGBM learn from the panel when fitted (LightGBM's saved form
is even refitted on load), so a live update would mean a refit per request; they are not
served.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd

from salesformer.data.contract import DATE, ITEM_ID
from salesformer.errors import ConfigError
from salesformer.forecasting.protocol import Forecaster, check_quantiles
from salesformer.models.lm.prediction import forecast_wide
from salesformer.models.lm.samples import Wide, price_columns
from salesformer.service.history import ItemEvents, LiveHistory, PeriodGrid


@dataclass(frozen=True)
class LiveForecast:
    """One item's forecast: dates, point forecast (median) and quantiles by level."""

    dates: pd.DatetimeIndex
    point: np.ndarray
    quantiles: np.ndarray


class UnknownItemError(LookupError):
    """The item is not one the model was fitted on."""


class LiveForecaster:
    """Per-item LM forecasts from the fitted head, the cached item vectors and live totals.

    Args:
        model: a fitted (loaded) :class:`~salesformer.models.lm.LMForecaster`.
        device: where its encoder and head run (:meth:`LMForecaster.use_device`).
    """

    def __init__(self, model: Forecaster, device: str = "cpu") -> None:
        if type(model).__name__ != "LMForecaster":  # checked by name: no torch import here
            raise ConfigError(
                f"the service forecasts live with the LM forecaster only; the model folder holds "
                f"a {model.name} model; fit one with 'salesformer fit --model lm' or "
                "'salesformer demo'"
            )
        self.model: Any = cast(Any, model)
        panel = self.model.panel_
        self.panel = panel
        wide = Wide.from_panel(panel)
        self.wide = wide
        self.item_ids = [str(i) for i in wide.item_ids]
        self.row = {item: i for i, item in enumerate(self.item_ids)}
        order = pd.Index(np.asarray(self.model.item_ids_).astype(str)).get_indexer(self.item_ids)
        self.vectors = np.ascontiguousarray(self.model.item_vectors_[order], dtype=np.float32)
        prices = price_columns(panel)
        self.price_name: str | None = prices[0] if prices else None
        self.columns = list(panel.known_future)
        if self.price_name is not None and self.price_name not in self.columns:
            self.columns.append(self.price_name)
        self.values = {name: self._history_values(name) for name in self.columns}
        self.grid = PeriodGrid(panel.freq, panel.first_date.date())
        self.horizon = int(self.model.horizon)
        self.levels = tuple(float(q) for q in self.model.levels)
        self._dates: dict[int, pd.DatetimeIndex] = {}
        self.model.use_device(device)
        self.model.head_.eval()  # inference only, from here on
        self._encode_lock = threading.Lock()

    def _history_values(self, name: str) -> np.ndarray:
        """The covariate over the panel's dates (carried forward within each item)."""
        if name in self.wide.known:
            return self.wide.known[name]
        frame = pd.DataFrame(self.panel.sales)
        pivot = frame.pivot(index=ITEM_ID, columns="date", values=name)
        pivot = pivot.reindex(index=self.item_ids, columns=self.wide.dates)
        return pivot.ffill(axis=1).to_numpy(dtype=float)

    def new_history(self, folded_until: int = -1) -> LiveHistory:
        """An empty event state on this model's grid (see :class:`LiveHistory` for
        ``folded_until``: events up to that period are in the panel already)."""
        return LiveHistory(self.grid, self.wide.n_history - 1, self.item_ids, folded_until)

    def knows(self, item_id: str) -> bool:
        return item_id in self.row

    def dates(self, length: int) -> pd.DatetimeIndex:
        """The first ``length`` dates of the grid (cached: the clock rarely moves)."""
        found = self._dates.get(length)
        if found is None:
            found = pd.date_range(self.panel.first_date, periods=length, freq=self.panel.freq)
            self._dates[length] = found
        return found

    def history(self, item_id: str, events: ItemEvents | None, clock: int) -> pd.Series:
        """The item's sales by period up to the clock: the panel plus the event totals."""
        wide = self._item_wide(item_id, events, clock, extra=0)
        first = int(wide.first[0])
        sales = wide.sales[0, first : wide.n_history]
        return pd.Series(sales, index=wide.dates[first : wide.n_history], name="sales")

    def future_plan(self, item_id: str, events: ItemEvents | None, clock: int) -> pd.DataFrame:
        """The item's known-future covariates over the model's horizon after the clock.

        This is the plan a forecast assumes: each covariate's last value carried forward.
        """
        wide = self._item_wide(item_id, events, clock, extra=self.horizon)
        steps = slice(wide.n_history, wide.n_history + self.horizon)
        plan = pd.DataFrame({ITEM_ID: item_id, DATE: wide.dates[steps]})
        for name in self.panel.known_future:
            plan[name] = wide.known[name][0, steps]
        return plan

    def forecast(
        self,
        item_id: str,
        events: ItemEvents | None,
        clock: int,
        horizon: int,
        quantiles: tuple[float, ...],
        plan: pd.DataFrame | None = None,
        text: str | None = None,
    ) -> LiveForecast:
        """The forecast of the ``horizon`` periods after the clock.

        Args:
            item_id, events, clock: the item and its live state.
            horizon: periods to forecast, up to the model's horizon.
            quantiles: levels of the quantiles.
            plan: other known-future covariates for the model's horizon (rows in date order,
                as :meth:`future_plan` returns them); None keeps the item's own.
            text: another item text for the encoder to read (one encoder pass); None uses
                the vector cached at fit time.
        """
        self._check_horizon(horizon)
        levels = check_quantiles(quantiles)
        wide = self._item_wide(item_id, events, clock, extra=self.horizon)
        if plan is not None:
            steps = slice(wide.n_history, wide.n_history + self.horizon)
            for name in self.panel.known_future:
                wide.known[name][0, steps] = plan[name].to_numpy(dtype=float)
        vector = self.vectors[self.row[item_id]][None, :]
        if text is not None:
            with self._encode_lock:
                vector = self.model.encode_texts([text])
        values = forecast_wide(self.model, wide, vector, horizon, levels)
        dates = wide.dates[wide.n_history : wide.n_history + horizon]
        return LiveForecast(dates, values[:, 0], values[:, 1:])

    def forecast_new(
        self,
        new_items: pd.DataFrame,
        horizon: int,
        quantiles: tuple[float, ...],
    ) -> pd.DataFrame:
        """Cold-start forecasts (text, price, launch date): one encoder pass per item."""
        self._check_horizon(horizon)
        with self._encode_lock:
            frame: pd.DataFrame = self.model.predict_new(new_items, horizon, quantiles)
        return frame

    def _check_horizon(self, horizon: int) -> None:
        if not 1 <= horizon <= self.horizon:
            raise ConfigError(
                f"horizon must be between 1 and {self.horizon} (the model was fitted for "
                f"{self.horizon} periods); got {horizon}"
            )

    def _calendar_ahead(
        self, item_id: str, known: dict[str, np.ndarray], n_panel: int, total: int
    ) -> None:
        """Calendar covariates after the panel's end: computed for their dates (as ``predict``
        does), not carried forward."""
        from salesformer.data.calendars import calendar_covariates

        rows = pd.DataFrame({ITEM_ID: item_id, DATE: self.dates(total)[n_panel:]})
        values = calendar_covariates(self.panel.calendar or {}, self.panel.freq, rows, self.panel)
        for name in values.columns:
            if name in known:
                known[name][0, n_panel:] = values[name].to_numpy()

    def _item_wide(self, item_id: str, events: ItemEvents | None, clock: int, extra: int) -> Wide:
        """One item's arrays over the grid up to the clock, plus ``extra`` future periods."""
        i = self.row.get(item_id)
        if i is None:
            raise UnknownItemError(item_id)
        base = self.wide
        n_panel = base.n_history
        n_history = clock + 1
        total = n_history + extra
        sales = np.zeros(total)
        sales[:n_panel] = base.sales[i]
        first = int(base.first[i])
        prices: dict[int, float] = {}
        if events is not None:
            for period, quantity in events.quantity.items():
                sales[period] += quantity
            np.clip(sales, 0.0, None, out=sales)
            if events.first is not None:
                first = min(first, events.first)
            prices = events.prices()
        observed = np.zeros(total, dtype=bool)
        observed[first:n_history] = True
        known: dict[str, np.ndarray] = {}
        for name in self.columns:
            values = np.full(total, np.nan)
            values[:n_panel] = self.values[name][i]
            if name == self.price_name:
                for period, value in prices.items():
                    if period >= n_panel:  # the panel's own prices stand for its periods
                        values[period] = value
            known[name] = _ffill(values)[None, :]
        if self.panel.calendar and total > n_panel:
            self._calendar_ahead(item_id, known, n_panel, total)
        wide_known = {name: known[name] for name in self.panel.known_future}
        price = known[self.price_name] if self.price_name is not None else None
        return Wide(
            np.array([item_id]),
            self.dates(total),
            n_history,
            sales[None, :],
            observed[None, :],
            np.array([first]),
            wide_known,
            price,
        )


def _ffill(values: np.ndarray) -> np.ndarray:
    """Carry the last finite value forward."""
    mask = np.isfinite(values)
    index = np.where(mask, np.arange(len(values)), 0)
    np.maximum.accumulate(index, out=index)
    filled = values[index]
    return np.where(np.isfinite(filled), filled, np.nan)
