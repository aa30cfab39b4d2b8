"""Replay actual demand against the inventory planner's policy, over backtest windows.

For every (item, cutoff) of a backtest forecast frame (``item_id, cutoff, date, y`` and the
model's quantile columns), the replay runs the planner's periodic review order-up-to policy
through the horizon's weeks with the *actual* demand ``y``:

- week 1 starts with stock at the order-up-to level of the first review and nothing on order;
- at the start of every review week t (every R weeks, as long as the forecast covers the
  order's protection interval, weeks t .. t+L+R-1), the order-up-to level S_t is planned from
  the forecasts made at the cutoff, and an order of S_t - position (on hand + on order) is
  placed; it arrives at the start of week t+L, before that week's demand;
- demand that finds no stock is lost (an online shop's customer buys elsewhere), or, with
  ``lost_sales=False``, backordered: served when stock arrives, and counted as not served
  from stock (the accounting the planner's fill-rate formula assumes).

When the forecasts carry ``in_stock`` (the panel marked stock-outs), an out-of-stock week's
recorded sales are not its demand: the replay counts them as lost sales, not as low demand. Its
demand is estimated as the mean of the same window's in-stock weeks (else the item's in-stock
weeks of every window; else the recorded sales), never below what was sold, and the
difference is reported per pair as ``recorded_lost`` (units the shop lost in those weeks).

The first L weeks are a warm-up and are not scored: their stock comes from the starting stock,
not from an order the policy placed. From week L+1 on, every week's service depends on an
order the policy placed, as it would in a running shop. Scoring ends with the protection
interval of the last order: later weeks (up to R - 1 of them when the horizon is not a whole
number of reviews) would need an order the forecasts do not cover.

Per (item, cutoff) and target it records, over the scored weeks, demand, units served,
stock-out weeks (weeks with demand not served) and the end-of-week stock;
:func:`summarize_replay` turns these into the achieved fill rate, cycle service (share of
weeks without a stock-out) and average stock in units and value.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from salesformer.data.availability import IN_STOCK
from salesformer.data.contract import ACTUAL, CUTOFF, DATE, ITEM_ID
from salesformer.decisions.inventory import (
    PlanSettings,
    draw_demand,
    order_up_to_levels,
)
from salesformer.errors import ConfigError, DataValidationError
from salesformer.evaluation.metrics import quantile_columns
from salesformer.forecasting.protocol import check_quantiles

_CHUNK_CELLS = 6_000_000


@dataclass(frozen=True)
class ReplaySettings:
    """The replayed policy.

    Args:
        lead_time: weeks from order to arrival (whole number >= 0).
        review_period: weeks between orders (whole number >= 1).
        service_type: ``cycle`` or ``fill-rate`` (see :class:`PlanSettings`).
        week_correlation: correlation of forecast errors between weeks, in [0, 1].
        n_samples: Monte Carlo draws per planned level.
        seed: seed of the draws.
        lost_sales: demand that finds no stock is lost (True) or backordered (False).
        spread_scale: factor on every week's distance from its median (see
            :class:`PlanSettings`).
    """

    lead_time: int = 1
    review_period: int = 1
    service_type: str = "fill-rate"
    week_correlation: float = 0.5
    n_samples: int = 1000
    seed: int = 0
    lost_sales: bool = True
    spread_scale: float = 1.0

    def __post_init__(self) -> None:
        if (
            isinstance(self.lead_time, bool)
            or int(self.lead_time) != self.lead_time
            or (self.lead_time < 0)
        ):
            raise ConfigError(f"lead_time must be a whole number >= 0; got {self.lead_time!r}")
        if (
            isinstance(self.review_period, bool)
            or int(self.review_period) != self.review_period
            or (self.review_period < 1)
        ):
            raise ConfigError(
                f"review_period must be a whole number >= 1; got {self.review_period!r}"
            )
        self.plan_settings(0.9)  # checks the remaining settings

    def plan_settings(self, target: float) -> PlanSettings:
        """The planner's settings for one target."""
        return PlanSettings(
            service_level=target,
            service_type=self.service_type,
            week_correlation=self.week_correlation,
            n_samples=self.n_samples,
            seed=self.seed,
            spread_scale=self.spread_scale,
        )


def replay_policy(
    forecasts: pd.DataFrame,
    model: str,
    targets: list[float],
    settings: ReplaySettings | None = None,
) -> pd.DataFrame:
    """Replay the planner at each target over every (item, cutoff) of a backtest.

    Args:
        forecasts: ``item_id, cutoff, date, y`` and ``<model>-q<level>`` columns, the same
            number of weeks for every (item, cutoff).
        model: the model whose quantiles drive the policy.
        targets: service targets strictly between 0 and 1.
        settings: the replayed policy; default :class:`ReplaySettings`.

    Returns:
        One row per (item, cutoff, target): ``item_id, cutoff, target, demand, served,
        stockout_weeks, weeks, stock_week_sum`` (end-of-week stock summed over the weeks),
        and ``recorded_lost`` when the forecasts carry ``in_stock``.
    """
    settings = settings or ReplaySettings()
    forecasts, lost = replay_demand(forecasts)
    levels, ids, cube, actual = _backtest_arrays(forecasts, model)
    lead, review = int(settings.lead_time), int(settings.review_period)
    horizon = cube.shape[1]
    if lead + review > horizon:
        raise ConfigError(
            f"lead time {lead} + review period {review} exceeds the forecasts' {horizon} weeks; "
            "use a shorter lead time or longer forecasts"
        )
    checked = [float(t) for t in targets]
    if not checked:
        raise ConfigError("targets: no service target given; give at least one, e.g. [0.95]")
    for target in checked:
        settings.plan_settings(target)
    levels_by_week = _planned_levels(levels, cube, checked, settings)
    rows = []
    for j, target in enumerate(checked):
        outcome = _simulate(levels_by_week[:, j, :], actual, lead, review, settings.lost_sales)
        frame = ids.copy()
        frame["target"] = target
        for name, values in outcome.items():
            frame[name] = values
        if lost is not None:
            end = order_weeks(horizon, lead, review)[-1] + lead + review
            frame["recorded_lost"] = lost.reshape(len(ids), horizon)[:, lead:end].sum(axis=1)
        rows.append(frame)
    return pd.concat(rows, ignore_index=True)


def replay_demand(forecasts: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray | None]:
    """Forecasts whose ``y`` in out-of-stock weeks is the estimated demand (see the module),
    and the units lost in each row (sorted by cutoff, item and date); unchanged and None
    without ``in_stock``."""
    if IN_STOCK not in forecasts.columns:
        return forecasts, None
    frame = forecasts.sort_values([CUTOFF, ITEM_ID, DATE]).reset_index(drop=True)
    available = frame[IN_STOCK].to_numpy(dtype=bool)
    recorded = frame[ACTUAL].to_numpy(dtype=float)
    in_stock = frame[ACTUAL].where(available)
    window_mean = in_stock.groupby([frame[CUTOFF], frame[ITEM_ID]]).transform("mean")
    item_mean = in_stock.groupby(frame[ITEM_ID]).transform("mean")
    estimate = window_mean.fillna(item_mean).fillna(frame[ACTUAL]).to_numpy(dtype=float)
    demand = np.where(available, recorded, np.maximum(recorded, estimate))
    frame[ACTUAL] = demand
    return frame, demand - recorded


def _backtest_arrays(
    forecasts: pd.DataFrame, model: str
) -> tuple[np.ndarray, pd.DataFrame, np.ndarray, np.ndarray]:
    """Quantile levels, the (item, cutoff) keys, quantiles ``(P, H, K)`` and actuals ``(P, H)``."""
    missing = [c for c in (ITEM_ID, CUTOFF, DATE, ACTUAL) if c not in forecasts.columns]
    if missing:
        raise DataValidationError(
            f"backtest forecasts: column(s) {missing} missing; got {list(forecasts.columns)}; "
            "give the forecasts of a backtest (item_id, cutoff, date, y and quantile columns)"
        )
    found = quantile_columns(forecasts, model)
    if len(found) < 2:
        raise DataValidationError(
            f"backtest forecasts: model {model!r} has {len(found)} quantile column(s); "
            "the replay needs at least two"
        )
    levels = np.array(check_quantiles(list(found)))
    columns = list(found.values())
    frame = forecasts.sort_values([CUTOFF, ITEM_ID, DATE])
    sizes = frame.groupby([CUTOFF, ITEM_ID], sort=False).size()
    if sizes.nunique() != 1:
        raise DataValidationError(
            f"backtest forecasts: (item, cutoff) pairs hold {sorted(sizes.unique())[:5]} weeks; "
            "every pair needs the same horizon"
        )
    horizon = int(sizes.iloc[0])
    ids = sizes.index.to_frame(index=False)[[ITEM_ID, CUTOFF]]
    cube = np.sort(frame[columns].to_numpy(dtype=float).reshape(len(ids), horizon, -1), axis=-1)
    actual = frame[ACTUAL].to_numpy(dtype=float).reshape(len(ids), horizon)
    if not (np.isfinite(cube).all() and np.isfinite(actual).all()):
        raise DataValidationError(
            "backtest forecasts: quantiles or actuals 'y' missing or not finite; "
            "give a number for every quantile and actual of every week"
        )
    return levels, ids, cube, np.clip(actual, 0.0, None)


def order_weeks(horizon: int, lead_time: int, review_period: int) -> list[int]:
    """0-based weeks at which an order is planned: every R weeks while forecasts cover it."""
    return list(range(0, horizon - lead_time - review_period + 1, review_period))


def _planned_levels(
    levels: np.ndarray, cube: np.ndarray, targets: list[float], settings: ReplaySettings
) -> np.ndarray:
    """Order-up-to levels ``(P, n_targets, H)``; NaN in weeks without a review."""
    pairs, horizon, _ = cube.shape
    lead, review = int(settings.lead_time), int(settings.review_period)
    span = lead + review
    out = np.full((pairs, len(targets), horizon), np.nan)
    rng = np.random.default_rng(settings.seed)
    step = max(1, _CHUNK_CELLS // (settings.n_samples * span))
    plan = settings.plan_settings(targets[0])
    for week in order_weeks(horizon, lead, review):
        for start in range(0, pairs, step):
            stop = min(pairs, start + step)
            window = cube[start:stop, week : week + span]
            n = stop - start
            draws = draw_demand(levels, window, np.full(n, lead), np.full(n, review), plan, rng)
            for j, target in enumerate(targets):
                level = order_up_to_levels(draws, np.full(n, target), settings.service_type)
                out[start:stop, j, week] = level
    return out


def _simulate(
    order_up_to: np.ndarray, actual: np.ndarray, lead: int, review: int, lost_sales: bool = True
) -> dict[str, np.ndarray]:
    """Replay of ``(P, H)`` order-up-to levels against ``(P, H)`` demand.

    ``on_hand`` is the net stock: negative for backorders when ``lost_sales`` is False. Weeks
    ``lead .. end - 1`` are scored, ``end`` closing the last order's protection interval.
    """
    pairs, horizon = actual.shape
    on_hand = order_up_to[:, 0].copy()
    arrivals = np.zeros((pairs, horizon + lead + 1))
    served = np.zeros(pairs)
    stockouts = np.zeros(pairs)
    stock_sum = np.zeros(pairs)
    planned = order_weeks(horizon, lead, review)
    end = planned[-1] + lead + review
    for week in range(end):
        on_hand += arrivals[:, week]
        if week in planned and week > 0:
            position = on_hand + arrivals[:, week + 1 :].sum(axis=1)
            order = np.maximum(order_up_to[:, week] - position, 0.0)
            arrivals[:, week + lead] += order
            if lead == 0:
                on_hand += order
        demand = actual[:, week]
        sold = np.minimum(np.maximum(on_hand, 0.0), demand)
        on_hand -= sold if lost_sales else demand
        if week < lead:  # warm-up: served from the starting stock
            continue
        served += sold
        stockouts += demand > sold + 1e-9
        stock_sum += np.maximum(on_hand, 0.0)
    return {
        "demand": actual[:, lead:end].sum(axis=1),
        "served": served,
        "stockout_weeks": stockouts,
        "weeks": np.full(pairs, float(end - lead)),
        "stock_week_sum": stock_sum,
    }


def summarize_replay(
    replay: pd.DataFrame, unit_value: pd.DataFrame | None = None, by: tuple[str, ...] = ()
) -> pd.DataFrame:
    """Achieved service and average stock per target.

    Args:
        replay: the output of :func:`replay_policy` (any extra key columns are kept as groups
            when named ``model``, ``service_type`` or ``lead_time``).
        unit_value: ``item_id, cutoff, unit_value`` for the stock value; absent: no value.
        by: more columns to group by (e.g. ``("cutoff",)``).

    Returns:
        One row per group and target: ``fill_rate`` (units served / demanded, all items
        together), ``item_fill_rate`` (the mean over (item, cutoff) windows with demand of their
        own fill rate: each item counts once, as a per-item target means),
        ``cycle_service`` (share of item-weeks without a stock-out), ``stockout_weeks``
        (count), ``avg_stock_units`` and ``avg_stock_value`` (end-of-week stock per item-week)
        and ``median_stock_units`` (the median over (item, cutoff) windows of their average
        stock: the typical item, which a few large items cannot sway).
    """
    frame = replay.copy()
    if unit_value is not None:
        frame = frame.merge(unit_value, on=[ITEM_ID, CUTOFF], how="left")
        frame["stock_value_sum"] = frame["stock_week_sum"] * frame["unit_value"].fillna(0.0)
    else:
        frame["stock_value_sum"] = np.nan
    keys = [c for c in ("model", "service_type", "lead_time") if c in frame.columns]
    keys += list(by)
    sold = frame["demand"] > 0
    frame["item_fill"] = np.where(sold, frame["served"] / frame["demand"].where(sold, 1.0), np.nan)
    item_fill = frame.groupby([*keys, "target"], sort=True)["item_fill"].mean()
    frame["window_stock"] = frame["stock_week_sum"] / frame["weeks"]
    median_stock = frame.groupby([*keys, "target"], sort=True)["window_stock"].median()
    grouped = frame.groupby([*keys, "target"], sort=True)[
        ["demand", "served", "stockout_weeks", "weeks", "stock_week_sum", "stock_value_sum"]
    ].sum(min_count=1)
    out = pd.DataFrame(
        {
            "fill_rate": grouped["served"] / grouped["demand"],
            "item_fill_rate": item_fill,
            "cycle_service": 1.0 - grouped["stockout_weeks"] / grouped["weeks"],
            "stockout_weeks": grouped["stockout_weeks"],
            "avg_stock_units": grouped["stock_week_sum"] / grouped["weeks"],
            "avg_stock_value": grouped["stock_value_sum"] / grouped["weeks"],
            "median_stock_units": median_stock,
        }
    )
    return out.reset_index()
