"""Cold start: forecast the first weeks of products that have never sold, from launch inputs.

A **launch** is an item whose first sale week (its first date in ``panel.sales``: each item's
grid starts at its first sale) falls in a window. Its inputs are what is known before it
sells: the item text, the launch price (the items table's ``list_price`` when it has one, else
the ``price`` covariate of its first sale week: see :func:`launch_prices`) and the launch
week. Its target is the curve of weekly sales in weeks ``0 .. weeks-1`` counted from the first
sale week.

:func:`launch_table` builds a :class:`LaunchSet` for a window; the cold-start forecasters of
:mod:`salesformer.models.cold_start` learn from the launches of an earlier window and return
one curve per new launch; :func:`score` gives WAPE and MAE over every cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from salesformer.data.contract import ACTUAL, DATE, ITEM_ID, LIST_PRICE, SALES, Panel
from salesformer.errors import ConfigError, DataValidationError
from salesformer.evaluation.metrics import mae, wape
from salesformer.text import item_texts

PRICE = "price"
LAUNCH_DATE = "launch_date"
DEFAULT_WEEKS = 12


@dataclass(frozen=True)
class LaunchSet:
    """The launches of one window: inputs and target curves, one row per item.

    Attributes:
        item_ids: item ids, sorted.
        texts: each item's text (:func:`salesformer.text.item_texts`).
        prices: launch price (``price`` in the first sale week; missing ones set to the
            median of the others, NaN when the panel has no price at all).
        launch_dates: first sale week of each item.
        targets: weekly sales in weeks ``0 .. weeks-1`` from the first sale week (n x weeks).
        freq: the panel's frequency alias.
        dropped: items first sold in the window whose ``weeks`` weeks do not fit in the panel.
    """

    item_ids: np.ndarray
    texts: list[str]
    prices: np.ndarray
    launch_dates: pd.DatetimeIndex
    targets: np.ndarray
    freq: str
    dropped: int = 0

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def weeks(self) -> int:
        """Length of each target curve."""
        return int(self.targets.shape[1])

    def inputs(self) -> pd.DataFrame:
        """What a model may see before launch: ``item_id, text, price, launch_date``."""
        return pd.DataFrame(
            {
                ITEM_ID: self.item_ids,
                "text": self.texts,
                PRICE: self.prices,
                LAUNCH_DATE: self.launch_dates,
            }
        )

    def actuals(self) -> pd.DataFrame:
        """The targets as a long frame ``item_id, date, y`` (``weeks`` rows per item)."""
        dates = [
            pd.date_range(start, periods=self.weeks, freq=self.freq) for start in self.launch_dates
        ]
        return pd.DataFrame(
            {
                ITEM_ID: np.repeat(self.item_ids, self.weeks),
                DATE: dates[0].append(dates[1:]) if dates else pd.DatetimeIndex([]),
                ACTUAL: self.targets.reshape(-1),
            }
        )


def launch_prices(panel: Panel, launches: pd.DataFrame) -> np.ndarray:
    """The price a launch forecast may read, per row of ``launches`` (first sale weeks).

    The items table's ``list_price`` where it has one (a price that does not depend on the
    volume sold); otherwise the ``price`` covariate of the launch week; NaN when neither.
    """
    ids = launches[ITEM_ID].astype(str)
    prices = (
        launches[PRICE].to_numpy(dtype=float)
        if PRICE in launches.columns
        else np.full(len(launches), np.nan)
    )
    if panel.items is not None and LIST_PRICE in panel.items.columns:
        listed = panel.items.assign(**{ITEM_ID: panel.items[ITEM_ID].astype(str)})
        listed = listed.set_index(ITEM_ID)[LIST_PRICE].astype(float)
        from_items = listed.reindex(ids).to_numpy(dtype=float)
        prices = np.where(np.isfinite(from_items), from_items, prices)
    return prices


def launch_table(
    panel: Panel,
    first_from: str | pd.Timestamp,
    first_to: str | pd.Timestamp,
    weeks: int = DEFAULT_WEEKS,
) -> LaunchSet:
    """The items whose first sale week is in ``[first_from, first_to]``, with their curves.

    Args:
        panel: a panel with an items table (the text comes from it).
        first_from: first launch week of the window (included).
        first_to: last launch week of the window (included).
        weeks: length of each target curve; items whose curve does not fit in the panel are
            dropped and counted in :attr:`LaunchSet.dropped`.

    Raises:
        ConfigError: when ``weeks`` < 1 or the window is empty (``first_to`` before
            ``first_from``).
        DataValidationError: when the panel has no items table.
    """
    if isinstance(weeks, bool) or not isinstance(weeks, int) or weeks < 1:
        raise ConfigError(f"weeks must be a whole number >= 1; got {weeks!r}")
    start, end = pd.Timestamp(first_from), pd.Timestamp(first_to)
    if end < start:
        raise ConfigError(
            f"the launch window ends before it starts: {start.date()} .. {end.date()}; "
            "give first_from <= first_to"
        )
    if panel.items is None:
        raise DataValidationError(
            "cold start needs the item texts, but the panel has no items table; "
            "build the panel with an items table (item_id, text)"
        )
    sales = panel.sales.sort_values([ITEM_ID, DATE], kind="stable")
    first = sales.groupby(ITEM_ID, sort=True)[DATE].transform("min")
    in_window = sales.loc[(first >= start) & (first <= end)]
    position = in_window.groupby(ITEM_ID, sort=False).cumcount()
    length = in_window.groupby(ITEM_ID, sort=True).size()
    complete = length.index[length.to_numpy() >= weeks]
    head = in_window.loc[(position < weeks).to_numpy() & in_window[ITEM_ID].isin(complete)]

    ids = np.asarray(complete, dtype=object).astype(str)
    targets = head[SALES].to_numpy(dtype=float).reshape(len(ids), weeks)
    launches = head.loc[(position.loc[head.index] == 0).to_numpy()]
    prices = launch_prices(panel, launches)
    if np.isnan(prices).any() and not np.isnan(prices).all():
        prices = np.where(np.isnan(prices), np.nanmedian(prices), prices)
    texts = item_texts(panel.items).reindex(ids)
    return LaunchSet(
        item_ids=ids,
        texts=texts.fillna("").astype(str).tolist(),
        prices=prices,
        launch_dates=pd.DatetimeIndex(launches[DATE].to_numpy()),
        targets=targets,
        freq=panel.freq,
        dropped=int(len(length) - len(complete)),
    )


def score(actual: np.ndarray, forecast: np.ndarray) -> dict[str, float]:
    """WAPE (sum|e| / sum|y|) and MAE over every cell of two equally shaped arrays."""
    y = np.asarray(actual, dtype=float)
    yhat = np.asarray(forecast, dtype=float)
    if y.shape != yhat.shape:
        raise DataValidationError(
            f"actual and forecast differ in shape: {y.shape} vs {yhat.shape}; "
            "give one forecast per item and week"
        )
    frame = pd.DataFrame({ACTUAL: y.reshape(-1), "forecast": yhat.reshape(-1)})
    return {"wape": wape(frame, "forecast"), "mae": mae(frame, "forecast")}
