"""Stock-outs in the live service: which periods of an item were out of stock.

Events may say that the item ran out (``in_stock: false``, or ``stock_on_hand: 0``; a quantity
of 0 reports the stock-out alone). The live history marks that period out of stock
(:attr:`~salesformer.service.history.ItemEvents.out_of_stock`), and, as in a backtest
(:mod:`salesformer.data.stockouts`), its sales are not read as demand: the accuracy monitoring
does not score it, ``salesformer retrain`` gives the new panel an ``in_stock`` column (the
LM masks those periods from its loss), and ``GET /items/{id}/history`` flags it. The LM's
history inputs read the recorded sales, as its ``predict`` does on a panel with stock-outs.
"""

from __future__ import annotations

from datetime import date

import pandas as pd

from salesformer.data.availability import IN_STOCK
from salesformer.data.contract import DATE, ITEM_ID
from salesformer.service.core import SalesService


def out_of_stock_dates(service: SalesService, item_id: str) -> set[date]:
    """The first dates of the item's out-of-stock periods: the panel's and the events'."""
    live = service.live
    sales = live.panel.sales
    found: set[date] = set()
    if IN_STOCK in sales.columns:
        rows = sales.loc[(sales[ITEM_ID].astype(str) == item_id) & ~sales[IN_STOCK].astype(bool)]
        found.update(d.date() for d in pd.DatetimeIndex(rows[DATE]))
    state, _ = service.history.snapshot(item_id)
    if state is not None:
        found.update(live.grid.date_of(p) for p in state.out_of_stock)
    return found
