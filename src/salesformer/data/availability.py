"""The optional availability column of a sales panel: was the item on sale in the period?

A period when the shelf was empty is not a period of zero demand: its sales are only a lower
bound of what customers wanted. A panel may say so with one of two input columns:

- ``in_stock``: true/false (also 1/0, yes/no) per item and period: false means the item was
  out of stock for at least part of the period;
- ``stock_on_hand``: units on hand at the **end** of the period (>= 0); 0 means the item ran
  out during the period, so it is read as ``in_stock = False``.

:func:`validate_panel <salesformer.data.contract.validate_panel>` turns either into the one
contract column ``in_stock`` (bool); it is not a covariate. Periods filled in for missing rows
count as in stock (a missing row is a period with no sales, the contract's gap rule). What the
models, the backtest and the inventory replay do with it is in :mod:`salesformer.data.stockouts`.

This module holds only the column rules (no import of the contract), so the contract can call it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from salesformer.errors import DataValidationError

IN_STOCK = "in_stock"
STOCK_ON_HAND = "stock_on_hand"
#: The two availability columns an input may carry (at most one of them).
AVAILABILITY_COLUMNS = (IN_STOCK, STOCK_ON_HAND)

_TRUE = {"true", "1", "1.0", "yes", "y", "t"}
_FALSE = {"false", "0", "0.0", "no", "n", "f"}


def _shown(values: pd.Series, limit: int = 5) -> str:
    unique = list(pd.unique(values))
    more = f", ... ({len(unique)} in all)" if len(unique) > limit else ""
    return "[" + ", ".join(repr(v) for v in unique[:limit]) + more + "]"


def parse_in_stock(raw: pd.Series) -> pd.Series:
    """An ``in_stock`` column as bool: true/false, 1/0, yes/no (any case).

    Raises:
        DataValidationError: a missing value or a value that is not one of those.
    """
    if pd.api.types.is_bool_dtype(raw) and not raw.isna().any():
        return raw.astype(bool)
    missing = raw.isna()
    if missing.any():
        raise DataValidationError(
            f"column 'in_stock': {int(missing.sum())} of {len(raw)} values are missing; give "
            "true or false for every row (or drop the column if availability is unknown)"
        )
    text = raw.astype(str).str.strip().str.lower()
    bad = raw[~text.isin(_TRUE | _FALSE)]
    if len(bad):
        raise DataValidationError(
            f"column 'in_stock' must be true/false (or 1/0, yes/no); got {len(bad)} other values, "
            f"e.g. {_shown(bad)}; for units on hand map the column with --stock-col instead"
        )
    return text.isin(_TRUE)


def parse_stock_on_hand(raw: pd.Series) -> pd.Series:
    """A ``stock_on_hand`` column as ``in_stock`` (bool): end-of-period stock above 0.

    Raises:
        DataValidationError: values that are missing, not numbers, infinite or negative.
    """
    values = pd.to_numeric(raw, errors="coerce")
    bad = raw[values.isna() | ~np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))]
    if len(bad):
        raise DataValidationError(
            f"column 'stock_on_hand': {len(bad)} of {len(raw)} values are missing or not finite "
            f"numbers, e.g. {_shown(bad)}; give the units on hand at the end of every period"
        )
    negative = values < 0
    if negative.any():
        raise DataValidationError(
            f"column 'stock_on_hand': {int(negative.sum())} negative values, e.g. "
            f"{_shown(values[negative])}; units on hand cannot be negative: use 0 for an empty "
            "shelf (backorders are not stock)"
        )
    return values > 0


def availability_of(frame: pd.DataFrame) -> pd.Series | None:
    """The ``in_stock`` flags of an input frame's rows, or None when it has no such column.

    Raises:
        DataValidationError: both columns given, or a column that breaks its rule.
    """
    present = [c for c in AVAILABILITY_COLUMNS if c in frame.columns]
    if len(present) > 1:
        raise DataValidationError(
            "the sales frame has both 'in_stock' and 'stock_on_hand'; give one availability "
            "column (drop the other, or map only one with --in-stock-col or --stock-col)"
        )
    if not present:
        return None
    if present[0] == IN_STOCK:
        return parse_in_stock(frame[IN_STOCK])
    return parse_stock_on_hand(frame[STOCK_ON_HAND])


def checked_availability(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` with its availability column (if any) replaced by a bool ``in_stock``.

    Raises:
        DataValidationError: see :func:`availability_of`.
    """
    flags = availability_of(frame)
    if flags is None:
        return frame
    out = frame.drop(columns=[c for c in AVAILABILITY_COLUMNS if c in frame.columns])
    out[IN_STOCK] = flags.to_numpy(dtype=bool)
    return out


def filled_availability(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows added for gaps (``in_stock`` NaN) count as in stock; the column becomes bool."""
    if IN_STOCK not in frame.columns:
        return frame
    return frame.assign(**{IN_STOCK: frame[IN_STOCK].astype("boolean").fillna(True).astype(bool)})


def availability_columns(frame: pd.DataFrame) -> list[str]:
    """``["in_stock"]`` when ``frame`` carries availability, else ``[]``."""
    return [IN_STOCK] if IN_STOCK in frame.columns else []
