"""Columnar helpers of the data contract: item codes, order, duplicates and the regular grid.

A panel of 100,000 items x 104 weeks has 10 million rows. Hashing, sorting and merging on the
``item_id`` strings of every row is what made validating one slow (tens of seconds), so the
contract works on integer codes instead: the ids are factorised once (:func:`item_codes`), their
distinct values (one per item) are turned into text and ranked, and ordering, duplicate
detection and grid completion are array operations on those codes and on the dates as
integers (:func:`order_rows`, :func:`complete_grid`). No step loops over items in Python.

The results equal those of the plain pandas formulation (``astype(str)``, ``sort_values``,
``duplicated`` and a left merge on a full grid followed by a per-item forward fill) row for row;
``tests/test_contract_columnar.py`` checks it against that formulation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from salesformer.data.availability import IN_STOCK

ITEM_ID = "item_id"
DATE = "date"
SALES = "sales"


@dataclass(frozen=True)
class ItemCodes:
    """The ``item_id`` column as codes into its distinct ids.

    Attributes:
        codes: per row, the rank of its id among the distinct ids (sorted as text), int64.
        ids: the distinct ids as text, sorted (``ids[codes]`` is the column as text).
        all_text: whether every input id was already text (the column needs no conversion).
    """

    codes: np.ndarray
    ids: np.ndarray
    all_text: bool

    def column(self) -> np.ndarray:
        """The ``item_id`` column as an object array of text."""
        return self.ids.take(self.codes)


def item_codes(values: pd.Series) -> ItemCodes:
    """Factorise an ``item_id`` column without missing values into sorted text codes.

    Ids that differ before conversion to text but read the same after (``1`` and ``"1"``) get
    one code, as ``values.astype(str)`` would make them equal.
    """
    raw_codes, uniques = pd.factorize(values, sort=False)
    as_text = pd.Index(uniques).astype(str)
    all_text = pd.api.types.infer_dtype(uniques, skipna=False) == "string"
    text_codes, text_ids = pd.factorize(np.asarray(as_text, dtype=object), sort=True)
    return ItemCodes(
        codes=np.asarray(text_codes, dtype=np.int64).take(raw_codes),
        ids=np.asarray(text_ids, dtype=object),
        all_text=bool(all_text) and len(text_ids) == len(uniques),
    )


def order_rows(codes: np.ndarray, stamps: np.ndarray) -> tuple[np.ndarray | None, bool]:
    """Row order by item code, then date (None when the rows are in that order already, as in
    a saved panel), and whether an (item, date) pair repeats."""
    if bool(np.all(codes[1:] >= codes[:-1])):
        same = codes[1:] == codes[:-1]
        if not bool(np.any(same & (stamps[1:] <= stamps[:-1]))):
            return None, False
    order = np.lexsort((stamps, codes))
    codes, stamps = codes[order], stamps[order]
    repeated = np.any((codes[1:] == codes[:-1]) & (stamps[1:] == stamps[:-1]))
    return order, bool(repeated)


def complete_grid(
    frame: pd.DataFrame, codes: ItemCodes, freq: str, columns: Sequence[str]
) -> pd.DataFrame:
    """Give every item one row per period from its first date to the panel's last date.

    ``frame`` must be sorted by item and date, one row per item and date, with dates on the
    ``freq`` grid, and ``codes`` its item codes. Periods without a row get ``sales`` 0, the
    covariates (every other column) of the item's previous row (an item's first period always
    has a row) and, when the frame has ``in_stock``, True.

    Returns:
        The completed frame with ``columns`` (``item_id``, ``date`` and columns of ``frame``),
        in that order.
    """
    stamps = frame[DATE].to_numpy(dtype="datetime64[ns]")
    grid = pd.date_range(stamps.min(), stamps.max(), freq=freq)
    grid_ns = grid.asi8
    position = np.searchsorted(grid_ns, stamps.view(np.int64))
    item = codes.codes
    n_items = len(codes.ids)
    is_first = np.ones(len(item), dtype=bool)
    is_first[1:] = item[1:] != item[:-1]
    first_rows = np.flatnonzero(is_first)
    present = item[first_rows]
    starts = np.zeros(n_items, dtype=np.int64)
    starts[present] = position[first_rows]
    lengths = np.zeros(n_items, dtype=np.int64)
    lengths[present] = len(grid_ns) - starts[present]
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    total = int(lengths.sum())
    target = offsets[item] + position - starts[item]
    row_item = np.repeat(np.arange(n_items), lengths)
    date_pos = np.arange(total) - np.repeat(offsets - starts, lengths)
    observed = np.zeros(total, dtype=bool)
    observed[target] = True
    source = np.zeros(total, dtype=np.int64)
    source[target] = np.arange(len(item))
    last_seen = np.maximum.accumulate(np.where(observed, np.arange(total), 0))
    carried = source[last_seen]
    out: dict[str, object] = {
        ITEM_ID: codes.ids.take(row_item),
        DATE: grid_ns[date_pos].view("datetime64[ns]"),
    }
    for name in columns:
        if name in (ITEM_ID, DATE):
            continue
        values = frame[name].to_numpy()
        if name == SALES:
            filled = np.zeros(total, dtype=float)
            filled[target] = values
        elif name == IN_STOCK:  # a period without a row was on sale (the contract's gap rule)
            filled = np.ones(total, dtype=bool)
            filled[target] = values
        else:  # a covariate: the item's last value carries forward
            filled = values[carried]
        out[name] = filled
    return pd.DataFrame(out, columns=list(columns), copy=False)
