"""Promotion and price what-if: forecast a plan against the baseline and report the uplift.

A *scenario* changes the known-future covariates of the horizon (price, discount, promotion
flags, events) and, for models that read text, the promotion copy of some items. The fitted
model forecasts twice, once with the baseline plan and once with the scenario, and
:func:`what_if` returns both forecasts with the uplift in units and in revenue.

**The baseline plan** is the known-future covariates the caller gives for the horizon, or else
each item's last values carried forward (:func:`salesformer.forecasting.protocol.resolve_future`).

**A scenario** (:class:`Scenario`) holds, applied in this order:

1. ``price_change``: every item's ``price`` times ``1 + price_change`` (``-0.1``: 10% cheaper);
2. ``promotion``: one promotion copy for every item (text models only);
3. ``changes``: a table with ``item_id``, an optional ``date`` and any known-future covariate
   columns and/or ``promotion``. A row without a date sets every date of the horizon; a dated
   row sets that date (dated rows win). An empty cell keeps the value set before.

**Linked prices.** When the panel has ``price`` and ``discount``, a scenario that changes one of
them and not the other in a cell keeps them consistent with the regular price, which is
``price_regular`` when the panel has it and else ``price / (1 - discount)`` of the baseline:
a new price sets ``discount = 1 - price / regular`` (clipped to ``[0, 0.999]``); a new discount
sets ``price = regular * (1 - discount)``. Promotion flags are never changed implicitly.

**Impossible plans** are refused: every value must be finite, ``price`` and
``price_regular`` >= 0, ``discount`` in ``[0, 1)`` (checked on the values given, then on
the linked ones).

**Promotion copy** is appended to the item's text with the template of
:func:`salesformer.data.text.item_text` (``"... Promotion: <copy>"``); the LM re-encodes it.

**Revenue** is ``price x units`` with each plan's ``price`` (the baseline's for both when the
price is not a known-future covariate, so only the units change; NaN without a price).
Uplift is computed on the point forecasts; quantiles of each forecast are reported, not of
the uplift (the difference of two quantiles is not a quantile of the difference).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from salesformer.data.contract import DATE, ITEM_ID, TEXT, parse_numbers
from salesformer.data.text import item_text
from salesformer.errors import ConfigError, DataValidationError, NotFittedError
from salesformer.forecasting.protocol import (
    DEFAULT_QUANTILES,
    Forecaster,
    check_horizon,
    check_quantiles,
    quantile_column,
    resolve_future,
)

PRICE = "price"
PRICE_REGULAR = "price_regular"
DISCOUNT = "discount"
PROMOTION = "promotion"
BASELINE = "baseline"
SCENARIO = "scenario"
MAX_DISCOUNT = 0.999


@dataclass(frozen=True)
class Scenario:
    """Changes to the baseline plan of the horizon (see the module docstring).

    Attributes:
        changes: ``item_id``, optional ``date``, known-future covariate columns and/or
            ``promotion``; None for no table.
        price_change: relative change of every item's price (``-0.1`` is 10% cheaper).
        promotion: promotion copy for every item (models that read text only).
    """

    changes: pd.DataFrame | None = None
    price_change: float | None = None
    promotion: str | None = None

    def check(self) -> None:
        """Raise :class:`ConfigError` for settings out of range."""
        change = self.price_change
        if change is not None:
            if isinstance(change, bool) or not isinstance(change, int | float):
                raise ConfigError(f"price_change must be a number like -0.1; got {change!r}")
            if not -1.0 < float(change) <= 10.0 or not np.isfinite(change):
                raise ConfigError(
                    f"price_change must lie in (-1, 10] (-0.1 is 10% cheaper); got {change!r}"
                )
        if self.promotion is not None and not isinstance(self.promotion, str):
            raise ConfigError(f"promotion must be a text; got {type(self.promotion).__name__}")
        if self.changes is not None and not isinstance(self.changes, pd.DataFrame):
            raise ConfigError(f"changes must be a table; got {type(self.changes).__name__}")
        if self.changes is None and change is None and not (self.promotion or "").strip():
            raise ConfigError(
                "the scenario changes nothing; give a changes table, a price_change or a promotion"
            )


@dataclass(frozen=True)
class _Plan:
    """A scenario applied to the baseline: its future frame and the items' new texts."""

    future: pd.DataFrame
    texts: dict[str, str]


def _model_columns(model: Forecaster) -> tuple[str, ...]:
    if not hasattr(model, "panel_"):
        raise NotFittedError(f"{type(model).__name__} is not fitted; call .fit(panel) first")
    return tuple(model.panel_.known_future)


def _check_changes(table: pd.DataFrame, known: tuple[str, ...], future: pd.DataFrame) -> None:
    if ITEM_ID not in table.columns:
        raise DataValidationError(
            f"scenario: column 'item_id' is missing; got columns {list(table.columns)}; "
            "give one row per item (and optionally per date)"
        )
    allowed = {ITEM_ID, DATE, PROMOTION, *known}
    unknown = [c for c in table.columns if c not in allowed]
    if unknown:
        raise DataValidationError(
            f"scenario: columns {unknown} are not known-future covariates of the model; "
            f"use item_id, date, promotion and {list(known)}"
        )
    ids = set(future[ITEM_ID])
    missing = sorted(set(table[ITEM_ID].astype(str)) - ids)
    if missing:
        raise DataValidationError(
            f"scenario: {len(missing)} item ids are not items of the model, e.g. "
            f"{missing[:3]}; use ids of the fitted panel"
        )


def _scenario_dates(table: pd.DataFrame, future: pd.DataFrame) -> pd.Series:
    """The ``date`` column parsed (NaT: every date); each date must be in the horizon."""
    if DATE not in table.columns:
        return pd.Series(pd.NaT, index=table.index, dtype="datetime64[ns]")
    raw = table[DATE]
    dates = pd.to_datetime(raw, errors="coerce")
    bad = raw[dates.isna() & raw.notna() & (raw.astype(str).str.strip() != "")]
    if len(bad):
        raise DataValidationError(
            f"scenario: column 'date' has values that are not dates, e.g. {list(bad[:3])}; "
            "use ISO dates such as 2017-10-01, or leave the cell empty for every date"
        )
    horizon = pd.DatetimeIndex(future[DATE].unique())
    outside = dates[dates.notna() & ~dates.isin(horizon)]
    if len(outside):
        raise DataValidationError(
            f"scenario: dates {[str(d.date()) for d in outside.unique()[:3]]} are not in the "
            f"horizon ({horizon.min().date()} .. {horizon.max().date()}); use those dates"
        )
    return dates.astype("datetime64[ns]")


def _apply_table(
    future: pd.DataFrame, table: pd.DataFrame, known: tuple[str, ...], changed: pd.DataFrame
) -> None:
    """Write the table's values into ``future`` (in place), marking ``changed`` cells."""
    _check_changes(table, known, future)
    frame = table.copy()
    frame[ITEM_ID] = frame[ITEM_ID].astype(str)
    frame[DATE] = _scenario_dates(frame, future)
    columns = [c for c in known if c in frame.columns]
    for column in columns:
        frame[column] = parse_numbers(frame[column], column)
    key = pd.MultiIndex.from_frame(future[[ITEM_ID, DATE]])
    undated = frame[frame[DATE].isna()]
    dated = frame[frame[DATE].notna()]
    for part, keys in ((undated, [ITEM_ID]), (dated, [ITEM_ID, DATE])):
        for column in columns:
            given = part.dropna(subset=[column]).drop_duplicates(keys, keep="last")
            if given.empty:
                continue
            if keys == [ITEM_ID]:
                values = future[ITEM_ID].map(given.set_index(ITEM_ID)[column])
            else:
                index = pd.MultiIndex.from_frame(given[[ITEM_ID, DATE]])
                values = pd.Series(given[column].to_numpy(), index=index).reindex(key)
                values.index = future.index
            hit = values.notna().to_numpy()
            future.loc[hit, column] = values[hit].to_numpy(dtype=float)
            changed.loc[hit, column] = True


def _promotions(table: pd.DataFrame | None) -> dict[str, str]:
    """Promotion copy per item from the scenario table (one text per item)."""
    out: dict[str, str] = {}
    if table is None or PROMOTION not in table.columns:
        return out
    given = table.loc[table[PROMOTION].notna(), [ITEM_ID, PROMOTION]].copy()
    given[ITEM_ID] = given[ITEM_ID].astype(str)
    given[PROMOTION] = given[PROMOTION].astype(str).str.strip()
    given = given[given[PROMOTION] != ""]  # an empty cell sets no copy
    counts = given.groupby(ITEM_ID)[PROMOTION].nunique()
    several = counts[counts > 1].index.tolist()
    if several:
        raise DataValidationError(
            f"scenario: items {several[:3]} have several promotion texts; an item's text is "
            "read once for the whole horizon: give one promotion per item"
        )
    out.update(given.drop_duplicates(ITEM_ID).set_index(ITEM_ID)[PROMOTION].to_dict())
    return out


def _link_prices(
    future: pd.DataFrame, baseline: pd.DataFrame, changed: pd.DataFrame, known: tuple[str, ...]
) -> None:
    """Keep ``price`` and ``discount`` consistent where only one of them changed (in place)."""
    if PRICE not in known or DISCOUNT not in known:
        return
    if PRICE_REGULAR in known:
        regular = future[PRICE_REGULAR].to_numpy(dtype=float)
    else:
        kept = 1.0 - baseline[DISCOUNT].clip(0.0, MAX_DISCOUNT).to_numpy(dtype=float)
        regular = baseline[PRICE].to_numpy(dtype=float) / kept
    price_only = (changed[PRICE] & ~changed[DISCOUNT]).to_numpy()
    discount_only = (changed[DISCOUNT] & ~changed[PRICE]).to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = np.clip(1.0 - future[PRICE].to_numpy(dtype=float) / regular, 0.0, MAX_DISCOUNT)
    depth = np.where(np.isfinite(depth), depth, 0.0)
    future.loc[price_only, DISCOUNT] = depth[price_only]
    new_price = regular * (1.0 - future[DISCOUNT].to_numpy(dtype=float))
    future.loc[discount_only, PRICE] = new_price[discount_only]


def _check_plan_values(future: pd.DataFrame, known: tuple[str, ...]) -> None:
    """Refuse plans no shop can run: non-finite values, negative prices or discounts."""
    for column in known:
        values = future[column].to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        rule = "finite"
        if column in (PRICE, PRICE_REGULAR, DISCOUNT):
            bad |= values < 0
            rule = "finite and >= 0"
        if column == DISCOUNT:
            bad |= values >= 1
            rule = "in [0, 1) (0.2 is 20% off)"
        if bad.any():
            first = future.loc[bad, [ITEM_ID, DATE]].iloc[0]
            raise DataValidationError(
                f"scenario: {column!r} must be {rule}; got {float(values[bad][0])!r} for item "
                f"{first[ITEM_ID]!r} on {pd.Timestamp(first[DATE]).date()} "
                f"({int(bad.sum())} cells in all); fix the scenario's {column} values"
            )


def apply_scenario(
    model: Forecaster, baseline: pd.DataFrame, scenario: Scenario
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The scenario's future covariates and promotion copy per item.

    Args:
        model: the fitted forecaster (its panel says which covariates are known-future).
        baseline: the baseline plan, as :func:`resolve_future` returns it.
        scenario: the changes.

    Returns:
        ``(future, promotions)``: the scenario's covariates for every item and date of the
        horizon, and the promotion copy by item id.

    Raises:
        ConfigError, DataValidationError: a scenario the model cannot read.
    """
    scenario.check()
    known = _model_columns(model)
    future = baseline.copy()
    changed = pd.DataFrame(False, index=future.index, columns=list(known))
    if scenario.price_change is not None:
        if PRICE not in known:
            raise ConfigError(
                f"price_change needs 'price' among the model's known-future covariates; it has "
                f"{list(known)}; declare price known-future when preparing the panel"
            )
        future[PRICE] = future[PRICE] * (1.0 + float(scenario.price_change))
        changed[PRICE] = True
    if scenario.changes is not None:
        _apply_table(future, scenario.changes, known, changed)
    _check_plan_values(future, known)  # the values given, before derived ones
    _link_prices(future, baseline, changed, known)
    _check_plan_values(future, known)
    promotions: dict[str, str] = {}
    if scenario.promotion and scenario.promotion.strip():
        promotions = dict.fromkeys(future[ITEM_ID].unique(), scenario.promotion.strip())
    promotions.update(_promotions(scenario.changes))
    return future, {k: v for k, v in promotions.items() if v}


def _forecast(
    model: Forecaster,
    horizon: int,
    future: pd.DataFrame,
    promotions: dict[str, str],
    quantiles: tuple[float, ...],
) -> pd.DataFrame:
    """The model's forecast for one plan (with new texts where promotion copy is given)."""
    if not promotions:
        return model.predict(horizon, future=future, quantiles=quantiles)
    reader = getattr(model, "predict_with_texts", None)
    if reader is None:
        raise ConfigError(
            f"model {model.name} does not read item text, so promotion copy cannot change its "
            "forecast; drop the promotion column, or fit an LM (--model lm)"
        )
    items = model.panel_.items
    if items is None:  # pragma: no cover - text models refuse to fit without items
        raise ConfigError("the model's panel has no items table to add promotion copy to")
    base = items.set_index(ITEM_ID)[TEXT]
    texts = {i: item_text(base.get(i, i), promotion=copy) for i, copy in promotions.items()}
    frame: pd.DataFrame = reader(horizon, texts, future=future, quantiles=quantiles)
    return frame


def _revenue_price(model: Forecaster, future: pd.DataFrame) -> np.ndarray:
    """Each row's price: the plan's known-future price, else the last known price, else NaN."""
    if PRICE in future.columns:
        return future[PRICE].to_numpy(dtype=float)
    sales = model.panel_.sales
    if PRICE not in sales.columns:
        return np.full(len(future), np.nan)
    last = sales.groupby(ITEM_ID, sort=True)[PRICE].last()
    return future[ITEM_ID].map(last).to_numpy(dtype=float)


def what_if(
    model: Forecaster,
    scenario: Scenario,
    horizon: int,
    *,
    baseline: pd.DataFrame | None = None,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
) -> pd.DataFrame:
    """Forecast the baseline plan and the scenario; uplift in units and revenue.

    Args:
        model: a fitted forecaster.
        scenario: the changes to the baseline plan.
        horizon: periods to forecast.
        baseline: the baseline plan (``item_id``, ``date`` and every known-future covariate
            for the horizon); None carries each item's last values forward.
        quantiles: levels of the quantile columns of both forecasts.

    Returns:
        One row per item and date: ``item_id, date, price_baseline, price_scenario,
        baseline, scenario, uplift_units, revenue_baseline, revenue_scenario,
        uplift_revenue`` and ``baseline-q<level>``, ``scenario-q<level>`` columns.
    """
    known = _model_columns(model)
    levels = check_quantiles(quantiles)
    check_horizon(horizon)
    plan = resolve_future(model.panel_, int(horizon), baseline)
    plan = plan[[ITEM_ID, DATE, *known]].reset_index(drop=True)
    future, promotions = apply_scenario(model, plan, scenario)
    after = _forecast(model, int(horizon), future, promotions, levels)  # may refuse: first
    before = _forecast(model, int(horizon), plan, {}, levels)
    return uplift_table(model, plan, future, before, after, levels)


def uplift_table(
    model: Forecaster,
    plan: pd.DataFrame,
    future: pd.DataFrame,
    before: pd.DataFrame,
    after: pd.DataFrame,
    levels: tuple[float, ...],
) -> pd.DataFrame:
    """Baseline and scenario forecasts side by side, with the uplift in units and revenue.

    Args:
        model: the forecaster (its name labels the forecast columns).
        plan: the baseline plan (``item_id, date`` and the known-future covariates).
        future: the scenario plan, same rows.
        before: the forecast under ``plan``; after: the forecast under ``future``.
        levels: the quantile levels of both forecasts.
    """
    name = model.name
    keys = plan[[ITEM_ID, DATE]].copy()
    keys["price_baseline"] = _revenue_price(model, plan)
    keys["price_scenario"] = _revenue_price(model, future)
    out = keys.sort_values([ITEM_ID, DATE]).reset_index(drop=True)
    for label, frame in ((BASELINE, before), (SCENARIO, after)):
        renames = {
            name: label,
            **{quantile_column(name, q): quantile_column(label, q) for q in levels},
        }
        out = out.merge(frame.rename(columns=renames), on=[ITEM_ID, DATE], how="left")
    out["uplift_units"] = out[SCENARIO] - out[BASELINE]
    out["revenue_baseline"] = out["price_baseline"] * out[BASELINE]
    out["revenue_scenario"] = out["price_scenario"] * out[SCENARIO]
    out["uplift_revenue"] = out["revenue_scenario"] - out["revenue_baseline"]
    head = [ITEM_ID, DATE, "price_baseline", "price_scenario", BASELINE, SCENARIO]
    money = ["uplift_units", "revenue_baseline", "revenue_scenario", "uplift_revenue"]
    bands = [quantile_column(label, q) for label in (BASELINE, SCENARIO) for q in levels]
    return out[[*head, *money, *bands]]


def summarize_uplift(table: pd.DataFrame) -> dict[str, Any]:
    """Totals of a :func:`what_if` table: units and revenue of both plans and the uplift."""
    units_before = float(table[BASELINE].sum())
    units_after = float(table[SCENARIO].sum())
    revenue_before = float(table["revenue_baseline"].sum(min_count=1))
    revenue_after = float(table["revenue_scenario"].sum(min_count=1))

    def share(after: float, before: float) -> float | None:
        return (after / before - 1.0) if before > 0 and np.isfinite(after) else None

    return {
        "items": int(table[ITEM_ID].nunique()),
        "periods": int(table[DATE].nunique()),
        "units_baseline": units_before,
        "units_scenario": units_after,
        "uplift_units": units_after - units_before,
        "uplift_units_pct": share(units_after, units_before),
        "revenue_baseline": revenue_before,
        "revenue_scenario": revenue_after,
        "uplift_revenue": revenue_after - revenue_before,
        "uplift_revenue_pct": share(revenue_after, revenue_before),
    }


def price_response(
    model: Forecaster,
    horizon: int,
    *,
    price_change: float = -0.1,
    baseline: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Each item's forecast response to one price change over the horizon.

    Args:
        model: a fitted forecaster with a known-future ``price``.
        horizon: periods summed per item.
        price_change: the relative price change of every item (``-0.1``: 10% cheaper),
            with the discount linked (see the module docstring).
        baseline: the baseline plan; None carries the last values forward.

    Returns:
        ``item_id, units_baseline, units_scenario, change`` (relative change of units) and
        ``elasticity`` = ``log(units_scenario / units_baseline) / log(1 + price_change)``
        (NaN where either total is 0).

    Raises:
        ConfigError: ``price_change`` is 0 (no elasticity) or out of range.
    """
    if price_change == 0:
        raise ConfigError("price_change must not be 0 for an elasticity; got 0; e.g. -0.1")
    table = what_if(
        model, Scenario(price_change=price_change), horizon, baseline=baseline, quantiles=()
    )
    totals = table.groupby(ITEM_ID, sort=True)[[BASELINE, SCENARIO]].sum()
    out = pd.DataFrame(
        {
            ITEM_ID: totals.index,
            "units_baseline": totals[BASELINE].to_numpy(),
            "units_scenario": totals[SCENARIO].to_numpy(),
        }
    )
    before = out["units_baseline"].to_numpy()
    after = out["units_scenario"].to_numpy()
    positive = (before > 0) & (after > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out["change"] = np.where(before > 0, after / before - 1.0, np.nan)
        ratio = np.log(np.where(positive, after / np.where(positive, before, 1.0), 1.0))
        out["elasticity"] = np.where(positive, ratio / np.log1p(price_change), np.nan)
    return out


def summarize_response(response: pd.DataFrame, tolerance: float = 1e-6) -> dict[str, Any]:
    """Shares of items whose forecast rose, stayed or fell, and the elasticity quartiles.

    Args:
        response: the frame of :func:`price_response`.
        tolerance: relative change below which a forecast counts as unchanged.
    """
    change = response["change"].dropna()
    elasticity = response["elasticity"].dropna()
    n = len(change)

    def share(mask: pd.Series) -> float | None:
        return float(mask.mean()) if n else None

    def quantile(q: float) -> float | None:
        return float(elasticity.quantile(q)) if len(elasticity) else None

    return {
        "items": len(response),
        "items_with_forecast": int(n),
        "share_raised": share(change > tolerance),
        "share_unchanged": share(change.abs() <= tolerance),
        "share_lowered": share(change < -tolerance),
        "elasticity_q25": quantile(0.25),
        "elasticity_median": quantile(0.5),
        "elasticity_q75": quantile(0.75),
    }
