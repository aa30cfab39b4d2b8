"""The dashboard's overview: what a planner reads first in the morning.

:func:`overview` forecasts every known item from its live history (through the service's
forecast cache, so the monitor records these forecasts too) and returns forecast totals by
category for the coming periods, the biggest movers (next periods' forecast against the same
number of past periods' sales), and, when a stock file was given at start
(:func:`read_stock`), the items whose stock will not cover the demand forecast over their
lead time.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from salesformer.data.contract import ITEM_ID
from salesformer.errors import ConfigError

if TYPE_CHECKING:
    from salesformer.service.core import SalesService

STOCK_COLUMNS = (ITEM_ID, "on_hand", "lead_time")
LEVELS = (0.1, 0.5, 0.9)
NO_STOCK = (
    "stock unknown: start the service with --stock FILE (CSV or parquet with columns "
    "item_id, on_hand, lead_time in periods) to see items whose stock will not cover the "
    "lead time"
)


def read_stock(path: str | Path, known: set[str], horizon: int) -> pd.DataFrame:
    """The stock table (``item_id, on_hand, lead_time``) of the served items.

    Rows of items the model does not serve are dropped (counted in ``attrs["unknown"]``).

    Raises:
        ConfigError: the file is missing or unreadable, lacks a column, repeats an item, or
            holds a negative stock or a lead time outside [1, horizon].
    """
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"--stock: no such file {str(file)!r}; give a CSV or parquet file")
    try:
        table = pd.read_parquet(file) if file.suffix == ".parquet" else pd.read_csv(file)
    except Exception as exc:  # any reader error is a bad file; say which
        raise ConfigError(
            f"--stock {str(file)!r} cannot be read as {file.suffix or 'CSV'} ({exc}); give a "
            "CSV or parquet file with columns item_id, on_hand, lead_time"
        ) from exc
    missing = [c for c in STOCK_COLUMNS if c not in table.columns]
    if missing:
        raise ConfigError(
            f"--stock {str(file)!r} lacks column(s) {missing}; got {list(table.columns)}; "
            "it needs item_id, on_hand, lead_time (periods)"
        )
    table = table[list(STOCK_COLUMNS)].copy()
    table[ITEM_ID] = table[ITEM_ID].astype(str)
    repeated = table[ITEM_ID][table[ITEM_ID].duplicated()]
    if len(repeated):
        raise ConfigError(
            f"--stock {str(file)!r} lists item {repeated.iloc[0]!r} more than once; "
            "give one row per item"
        )
    for column, low, high in (("on_hand", 0.0, 1e12), ("lead_time", 1, horizon)):
        values = pd.to_numeric(table[column], errors="coerce")
        bad = table[ITEM_ID][~values.between(low, high)]
        if len(bad):
            raise ConfigError(
                f"--stock {str(file)!r}: {column} of item {bad.iloc[0]!r} must be a number in "
                f"[{low:g}, {high:g}] (lead times in periods, at most the model's horizon); "
                f"got {table[column][bad.index[0]]!r}"
            )
        table[column] = values
    table["lead_time"] = table["lead_time"].astype(int)
    served = table[table[ITEM_ID].isin(known)].reset_index(drop=True)
    served.attrs["unknown"] = len(table) - len(served)
    return served


def overview(
    service: SalesService, stock: pd.DataFrame | None, periods: int = 4, top: int = 10
) -> dict[str, Any]:
    """Category totals, movers and stock cover of every known item (see the module docstring).

    Args:
        service: the running service.
        stock: :func:`read_stock`'s table, or None when stock is unknown.
        periods: how many periods the movers compare (at most the model's horizon).
        top: how many movers and short items to list.
    """
    horizon = service.live.horizon
    periods = max(1, min(periods, horizon))
    categories = _categories(service)
    forecasts: dict[str, np.ndarray] = {}
    dates: list[str] = []
    movers: list[dict[str, Any]] = []
    for item in service.live.item_ids:
        result = service.forecast(item, horizon, LEVELS)
        forecasts[item] = result.point
        dates = [d.date().isoformat() for d in result.dates]
        past = float(service.item_history(item, periods).sum())
        ahead = float(result.point[:periods].sum())
        movers.append(
            {
                "item_id": item,
                "title": service.titles.get(item, item),
                "last": round(past, 4),
                "next": round(ahead, 4),
                "change": round(ahead - past, 4),
                "change_pct": None if past <= 0 else round((ahead - past) / past, 4),
            }
        )
    by_category: dict[str, np.ndarray] = {}
    for item, point in forecasts.items():
        key = categories.get(item, "all items")
        by_category[key] = by_category.get(key, np.zeros(len(point))) + point
    movers.sort(key=lambda row: (-abs(float(row["change"])), str(row["item_id"])))
    return {
        "periods": periods,
        "dates": dates,
        "by_category": [
            {"category": key, "totals": [round(float(v), 4) for v in values]}
            for key, values in sorted(by_category.items())
        ],
        "movers": movers[:top],
        "stock": _stock_cover(stock, forecasts, service.titles, top),
    }


def _categories(service: SalesService) -> dict[str, str]:
    items = service.live.panel.items
    if items is None or "category" not in items.columns:
        return {}
    table = items.drop_duplicates(ITEM_ID).dropna(subset=["category"])
    return {str(i): str(c) for i, c in zip(table[ITEM_ID], table["category"], strict=True)}


def _stock_cover(
    stock: pd.DataFrame | None,
    forecasts: dict[str, np.ndarray],
    titles: dict[str, str],
    top: int,
) -> dict[str, Any]:
    """Items whose stock is below the median forecast demand over their lead time."""
    if stock is None:
        return {"known": False, "note": NO_STOCK, "short": [], "items": 0}
    short = []
    for item, on_hand, lead in stock[list(STOCK_COLUMNS)].itertuples(index=False):
        demand = float(forecasts[item][:lead].sum())
        if on_hand < demand:
            covered = np.cumsum(forecasts[item]) <= on_hand
            short.append(
                {
                    "item_id": item,
                    "title": titles.get(item, item),
                    "on_hand": float(on_hand),
                    "lead_time": int(lead),
                    "demand_over_lead_time": round(demand, 4),
                    "shortfall": round(demand - float(on_hand), 4),
                    "periods_covered": int(covered.sum()),
                }
            )
    short.sort(key=lambda row: (-float(row["shortfall"]), str(row["item_id"])))
    unknown = int(stock.attrs.get("unknown", 0))
    note = f"{len(short)} of {len(stock)} stocked items will not cover their lead time" + (
        f" ({unknown} rows of the stock file are not served items)" if unknown else ""
    )
    return {"known": True, "note": note, "short": short[:top], "items": len(stock)}
