"""The LM's launch samples read the items table's list price, not a price that moves with volume."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from salesformer.data.contract import ITEM_ID, LIST_PRICE, Panel
from salesformer.data.synthetic import generate_catalogue
from salesformer.models.lm.samples import Wide


def _panel() -> Panel:
    return generate_catalogue(n_items=20, n_weeks=60, seed=5, new_item_share=0.5).panel()


def test_launch_price_is_the_price_of_the_first_period_without_a_list_price() -> None:
    wide = Wide.from_panel(_panel())
    assert wide.price is not None and wide.launch_price is not None
    rows = np.arange(len(wide.item_ids))
    np.testing.assert_array_equal(wide.launch_price, wide.price[rows, wide.first])


def test_launch_price_is_the_list_price_where_the_items_table_has_one() -> None:
    panel = _panel()
    assert panel.items is not None
    items = panel.items.copy()
    ids = sorted(items[ITEM_ID].astype(str))
    listed = {item: 100.0 + k for k, item in enumerate(ids)}
    listed[ids[0]] = float("nan")  # not listed: falls back to the first period's price
    items[LIST_PRICE] = items[ITEM_ID].astype(str).map(listed)
    plain = Wide.from_panel(panel)
    wide = Wide.from_panel(replace(panel, items=items))
    assert wide.launch_price is not None and plain.launch_price is not None
    assert list(wide.item_ids) == ids
    assert wide.launch_price[0] == plain.launch_price[0]
    np.testing.assert_array_equal(wide.launch_price[1:], [listed[i] for i in ids[1:]])
