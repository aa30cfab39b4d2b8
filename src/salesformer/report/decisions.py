"""Report sections on decisions: the inventory plan and the market trends, when given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from salesformer.data.contract import ITEM_ID
from salesformer.errors import DataValidationError
from salesformer.report import figures
from salesformer.report.inputs import ReportData, read_json
from salesformer.report.page import Section, chart, escape, note, number, table

PLAN_REQUIRED = (ITEM_ID, "position", "reorder_point", "order_up_to", "order_qty")
PLAN_SHOWN = {
    ITEM_ID: "item",
    "on_hand": "on hand",
    "position": "position",
    "expected_demand": "expected demand",
    "safety_stock": "safety stock",
    "reorder_point": "reorder point",
    "order_up_to": "order-up-to",
    "order_qty": "order",
    "order_value": "value",
    "reason": "reason",
}
TRENDS_SHOWN = {
    "name": "group",
    "kind": "kind",
    "n_items": "items",
    "recent_sales": "recent sales",
    "growth_yoy": "growth vs last year",
    "growth_prev": "growth vs previous",
    "forecast_growth_yoy": "forecast growth vs last year",
    "forecast_growth_prev": "forecast growth vs recent",
    "peak_label": "seasonal peak",
    "peak_lift": "peak lift",
    "drivers": "driving items",
}
TOP = 15
TREND_LINES = 6


def read_plan(path: Path) -> pd.DataFrame:
    """An order plan written by ``salesformer plan inventory`` (CSV or Parquet)."""
    try:
        plan = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise DataValidationError(
            f"cannot read the plan {str(path)!r} ({type(exc).__name__}); give the .csv or "
            ".parquet written by 'salesformer plan inventory'"
        ) from exc
    missing = [c for c in PLAN_REQUIRED if c not in plan.columns]
    if missing:
        raise DataValidationError(
            f"the plan {str(path)!r} lacks column(s) {missing}; got {list(plan.columns)}; "
            "give the file written by 'salesformer plan inventory'"
        )
    plan[ITEM_ID] = plan[ITEM_ID].astype(str)
    return plan


def inventory_section(data: ReportData) -> Section | None:
    """Items to order now, with their reorder points and order-up-to levels (None: no plan)."""
    if data.settings.plan is None:
        return None
    plan = read_plan(data.settings.plan)
    ordering = plan[plan["order_qty"] > 0].copy()
    sort_by = "order_value" if "order_value" in ordering.columns else "order_qty"
    ordering = ordering.sort_values([sort_by, ITEM_ID], ascending=[False, True])
    target = ""
    if {"target_type", "target"} <= set(plan.columns) and len(plan):
        target = f" at a {plan['target_type'].iloc[0]} service target of {plan['target'].iloc[0]:g}"
    value = (
        f", worth {ordering['order_value'].sum():,.0f}" if "order_value" in ordering.columns else ""
    )
    parts = [
        f"<p>{len(plan):,} items planned{escape(target)}: <b>{len(ordering):,} to order now</b>, "
        f"{ordering['order_qty'].sum():,.0f} units{escape(value)}. An item is ordered when its "
        "inventory position (on hand + on order) is below its order-up-to level; the order "
        "fills the gap (in whole packs, at least the minimum order).</p>"
    ]
    if ordering.empty:
        parts.append(note("No item needs an order now."))
        return Section("inventory", "Inventory plan", "".join(parts))
    top = ordering.head(TOP)
    levels = top.set_index(ITEM_ID)[["position", "reorder_point", "order_up_to", "order_qty"]]
    levels.columns = ["inventory position", "reorder point", "order-up-to level", "order"]
    parts.append(
        chart(
            figures.bars_by_model(levels, f"The {len(top)} largest orders", "units"),
            "inventory-orders",
            "for each item the order (last bar) lifts the inventory position (first bar) to "
            "the order-up-to level; the reorder point is the stock that covers lead-time demand "
            "at the service target.",
        )
    )
    shown = [c for c in PLAN_SHOWN if c in top.columns]
    rows = top[shown].rename(columns=PLAN_SHOWN).reset_index(drop=True)
    parts.append(table(rows, fmt=_units, caption=f"largest orders by {sort_by}"))
    return Section("inventory", "Inventory plan", "".join(parts))


def trends_file(path: Path) -> Path:
    """``trends.json`` in a folder written by ``salesformer trends``, or the file itself."""
    found = path / "trends.json" if path.is_dir() else path
    if not found.is_file():
        raise DataValidationError(
            f"no trends.json in {str(path)!r}; give the folder written by "
            "'salesformer trends --out DIR'"
        )
    return found


def _units(value: Any, column: str) -> str:
    """Plan cells: units and money as whole numbers, the rest as usual."""
    if isinstance(value, float) and value == value and column != "target":
        return f"{value:,.0f}"
    return number(value, column)


def _trend_cell(value: Any, column: str) -> str:
    """Trend cells: growth as a signed percent, the peak lift as a factor, sales whole."""
    if not isinstance(value, int | float) or isinstance(value, bool) or value != value:
        return number(value, column)
    if "growth" in column:
        return f"{value:+.0%}"
    if column == "peak lift":
        return f"x{1 + value:.2f}"
    return f"{value:,.0f}"


def _drivers(value: Any) -> str:
    """The driving items of a group as ``title (share)``; trends.json holds them as a list."""
    if not isinstance(value, list):
        return "" if value is None else str(value)
    named = []
    for driver in value[:3]:
        if isinstance(driver, dict):
            title = driver.get("title") or driver.get(ITEM_ID, "?")
            share = driver.get("share")
            named.append(f"{title} ({share:.0%})" if isinstance(share, float) else str(title))
    return "; ".join(named)


def trends_section(data: ReportData) -> Section | None:
    """Growth, forecast growth and seasonal peaks per theme or category (None: not given)."""
    if data.settings.trends is None:
        return None
    report = read_json(trends_file(data.settings.trends))
    groups = report.get("groups") or []
    if not groups:
        return Section("trends", "Trends", note("The trends output has no groups."))
    frame = pd.DataFrame(groups)
    if "drivers" in frame.columns:
        frame["drivers"] = frame["drivers"].map(_drivers)
    shown = [c for c in TRENDS_SHOWN if c in frame.columns]
    parts = [
        "<p>Themes found in the item texts (and categories): how their sales grew over the "
        "recent weeks, how the forecast says they will grow, and when in the season they "
        "peak.</p>",
        table(frame[shown].rename(columns=TRENDS_SHOWN), fmt=_trend_cell),
    ]
    history = pd.to_datetime(pd.Series(report.get("history_dates", [])))
    forecast = pd.to_datetime(pd.Series(report.get("forecast_dates", [])))
    if len(history):
        lines = []
        for entry in groups[:TREND_LINES]:
            label = str(entry.get("name") or entry.get("group"))
            lines.append((label, entry.get("history") or [], entry.get("forecast") or []))
        parts.append(
            chart(
                figures.trend_lines(lines, history, forecast),
                "trends-sales",
                "solid: weekly sales of each group; dotted: its forecast; compare the slope "
                "of the last weeks with the same weeks a year earlier.",
            )
        )
    return Section("trends", "Trends", "".join(parts))
