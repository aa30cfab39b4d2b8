"""The stock table of an inventory plan: one :class:`ItemPolicy` per item, validated.

Columns: ``item_id``, ``on_hand``, ``lead_time`` and optionally ``review_period``,
``on_order``, ``pack_size``, ``moq``, ``unit_cost``, ``holding_cost``, ``stockout_cost``
(see :class:`ItemPolicy`). :func:`read_policies` checks them all and says which rows are wrong.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from salesformer.data.contract import ITEM_ID
from salesformer.errors import DataValidationError


@dataclass(frozen=True)
class ItemPolicy:
    """Per-item inputs of the plan: one row of the stock CSV.

    Args:
        item_id: the item, as in the forecasts.
        on_hand: units in stock now (>= 0).
        lead_time: weeks from placing an order to receiving it (whole number >= 0).
        review_period: weeks between two orders (whole number >= 1).
        on_order: units ordered and not yet received (>= 0).
        pack_size: orders are whole multiples of this (whole number >= 1).
        moq: minimum order quantity in units (>= 0).
        unit_cost: value of one unit (for the order value), optional.
        holding_cost: cost of holding one unit for one week, optional.
        stockout_cost: cost of one unit of demand not served, optional.
    """

    item_id: str
    on_hand: float
    lead_time: int
    review_period: int = 1
    on_order: float = 0.0
    pack_size: int = 1
    moq: float = 0.0
    unit_cost: float = math.nan
    holding_cost: float = math.nan
    stockout_cost: float = math.nan

    @property
    def newsvendor_ratio(self) -> float | None:
        """stockout / (stockout + holding * R) when both costs are given, else None."""
        if math.isnan(self.holding_cost) or math.isnan(self.stockout_cost):
            return None
        overage = self.holding_cost * self.review_period
        return self.stockout_cost / (self.stockout_cost + overage)


REQUIRED_COLUMNS = ("item_id", "on_hand", "lead_time")
#: The longest lead time or review period (weeks): together they set the forecast horizon
#: of the plan, which may not exceed the longest horizon of a forecast.
MAX_WEEKS = 500
_WHOLE = ("lead_time", "review_period", "pack_size")
_DEFAULTS = {f.name: f.default for f in fields(ItemPolicy) if f.name not in REQUIRED_COLUMNS}


def read_policies(frame: pd.DataFrame) -> list[ItemPolicy]:
    """Validate a stock table (see :class:`ItemPolicy` for the columns) into policies.

    Raises:
        DataValidationError: a column is missing, a value is not a number, out of range or
            not whole where it must be, or an item appears twice.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataValidationError(
            f"stock table: column(s) {missing} missing; got {list(frame.columns)}; "
            f"give at least {list(REQUIRED_COLUMNS)}"
        )
    if frame.empty:
        raise DataValidationError("stock table: no rows; give one row per item to plan")
    table = pd.DataFrame({ITEM_ID: frame[ITEM_ID].astype(str).str.strip()})
    duplicated = table[ITEM_ID][table[ITEM_ID].duplicated()].unique()
    if len(duplicated):
        raise DataValidationError(
            f"stock table: item(s) {list(duplicated[:5])} appear more than once; "
            "give one row per item"
        )
    for column in ("on_hand", "lead_time", *_DEFAULTS):
        table[column] = _numbers(frame, column)
    problems = _range_problems(table)
    if problems:
        raise DataValidationError("stock table: " + "; ".join(problems[:3]))
    return [
        ItemPolicy(
            item_id=row[ITEM_ID],
            on_hand=float(row["on_hand"]),
            lead_time=int(row["lead_time"]),
            review_period=int(row["review_period"]),
            on_order=float(row["on_order"]),
            pack_size=int(row["pack_size"]),
            moq=float(row["moq"]),
            unit_cost=float(row["unit_cost"]),
            holding_cost=float(row["holding_cost"]),
            stockout_cost=float(row["stockout_cost"]),
        )
        for row in table.to_dict(orient="records")
    ]


def _numbers(frame: pd.DataFrame, column: str) -> pd.Series:
    """A numeric column; optional columns fall back to their default where absent or empty."""
    default = _DEFAULTS.get(column)
    if column not in frame.columns:
        return pd.Series(default, index=frame.index, dtype=float)
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = values.isna() & frame[column].notna() & (frame[column].astype(str).str.strip() != "")
    if bad.any():
        example = frame.loc[bad, column].astype(str).head(3).tolist()
        raise DataValidationError(
            f"stock table: column '{column}' holds non-numbers, e.g. {example}; give numbers"
        )
    if column in REQUIRED_COLUMNS and values.isna().any():
        ids = frame.loc[values.isna(), ITEM_ID].astype(str).head(3).tolist()
        raise DataValidationError(
            f"stock table: '{column}' is empty for item(s) {ids}; every item needs a {column}"
        )
    if default is not None and not (isinstance(default, float) and math.isnan(default)):
        values = values.fillna(default)
    return values.astype(float)


def _range_problems(table: pd.DataFrame) -> list[str]:
    """One message per rule broken, naming a few items."""
    rules = [(c, np.isinf(table[c]), "a finite number") for c in table.columns if c != ITEM_ID]
    rules += [
        ("on_hand", table["on_hand"] < 0, ">= 0"),
        ("on_order", table["on_order"] < 0, ">= 0"),
        ("lead_time", table["lead_time"] < 0, "a whole number of weeks >= 0"),
        ("lead_time", table["lead_time"] > MAX_WEEKS, f"at most {MAX_WEEKS} weeks"),
        ("review_period", table["review_period"] < 1, "a whole number of weeks >= 1"),
        ("review_period", table["review_period"] > MAX_WEEKS, f"at most {MAX_WEEKS} weeks"),
        ("pack_size", table["pack_size"] < 1, "a whole number >= 1"),
        ("moq", table["moq"] < 0, ">= 0"),
    ]
    rules += [(c, table[c] != np.floor(table[c]), "a whole number") for c in _WHOLE]
    rules += [(c, table[c] < 0, ">= 0 or empty") for c in ("unit_cost", "holding_cost")]
    rules += [("stockout_cost", table["stockout_cost"] <= 0, "> 0 or empty")]
    problems = []
    for column, broken, wanted in rules:
        if broken.any():
            rows = table.loc[broken, [ITEM_ID, column]].head(3)
            shown = [f"{i}={v:g}" for i, v in rows.itertuples(index=False)]
            problems.append(f"'{column}' must be {wanted}; got {', '.join(shown)}")
    return problems
