"""Inventory planning from quantile forecasts: order-up-to levels, safety stock, order plans.

The policy is a periodic review order-up-to policy (R, S): every ``review_period`` R weeks the
planner raises the inventory position (on hand + on order) to the order-up-to level S. An order
placed now arrives after ``lead_time`` L weeks, and the next order arrives R weeks later, so S
must cover the demand of the *protection interval*: the first L + R weeks of the forecast.

**Lead-time demand.** That demand is a sum of weekly demands, and the quantile of a sum is not
the sum of quantiles. Each week's forecast quantiles define a quantile function
(:func:`weekly_quantile_function`): linear between the forecast levels, a linear lower tail
clipped at zero below the lowest level and an exponential upper tail above the highest one
(its scale matches the slope of the last segment). Weekly demands are drawn from these by
Monte Carlo and summed. The weeks are joined by a Gaussian copula with one correlation
``week_correlation`` between every pair of weeks: 0 treats the weeks' forecast errors as
independent, 1 as fully dependent (then the lead-time quantile *is* the sum of the weekly
quantiles). Positive values suit forecasts whose errors persist (a level that is off stays off).
``spread_scale`` widens (above 1) or narrows (below 1) every week's distribution around its
median before the draws, for forecasts whose quantiles are known to be too narrow or too wide
for planning (choose it, like the correlation, on a validation replay: ``benchmarks/inventory.py``).

**Service targets.** ``cycle`` (type 1): S is the smallest whole number with
P(D_{L+R} <= S) >= target, the chance of no stock-out in a review cycle. ``fill-rate``
(type 2): S is the smallest whole number whose expected share of demand served from stock is
at least the target, with the expected shortage per cycle E[(D_{L+R} - S)+] - E[(D_L - S)+]
(backorder accounting) over the expected demand per cycle E[D_R]. When an item gives both a
``holding_cost`` (per unit and week) and a ``stockout_cost`` (per unit short), S is instead
the newsvendor level: the quantile of D_{L+R} at the critical ratio
stockout_cost / (stockout_cost + holding_cost * R).

**Orders.** The order is S - position when the position is below S, rounded up to whole packs
(``pack_size``) and raised to the minimum order quantity (``moq``, itself rounded up to packs).
Every plan line carries its reason in words.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from salesformer.data.contract import CUTOFF, DATE, ITEM_ID, parse_dates
from salesformer.decisions.stock import ItemPolicy, read_policies
from salesformer.errors import ConfigError, DataValidationError
from salesformer.forecasting.protocol import check_quantiles, quantile_column

CYCLE = "cycle"
FILL_RATE = "fill-rate"
SERVICE_TYPES = (CYCLE, FILL_RATE)
#: Quantile levels asked of a model when the planner forecasts itself (finer tails than the
#: default 0.1 .. 0.9 help high service targets).
PLAN_QUANTILES = (0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98)
_U_EPS = 1e-9
_CHUNK_CELLS = 4_000_000


@dataclass(frozen=True)
class PlanSettings:
    """How the planner turns forecasts into order-up-to levels.

    Args:
        service_level: the target, strictly between 0 and 1 (e.g. 0.95).
        service_type: ``cycle`` (chance of no stock-out per review cycle) or ``fill-rate``
            (share of demand served from stock).
        week_correlation: correlation of forecast errors between weeks, in [0, 1]
            (0: independent weeks; 1: fully dependent). The default 0.5 comes from the
            Online Retail II validation window (``benchmarks/inventory.py``): 0 missed the
            targets by more than 0.5 for every model, and 0.5 was within 0.2 points of the
            best value for the LM and auto forecasts.
        n_samples: Monte Carlo draws of the lead-time demand per item, >= 100.
        seed: seed of the draws (whole number >= 0); the same seed gives the same plan.
        spread_scale: factor on every week's distance from its median forecast, in
            [0.25, 4] (1: the forecast as it is; 1.5: half as wide again).
    """

    service_level: float = 0.95
    service_type: str = CYCLE
    week_correlation: float = 0.5
    n_samples: int = 4000
    seed: int = 0
    spread_scale: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < float(self.service_level) < 1.0:
            raise ConfigError(
                f"service level must lie strictly between 0 and 1; got {self.service_level!r}; "
                "e.g. 0.95"
            )
        if self.service_type not in SERVICE_TYPES:
            raise ConfigError(
                f"service type must be one of {', '.join(SERVICE_TYPES)}; got {self.service_type!r}"
            )
        if not 0.0 <= float(self.week_correlation) <= 1.0:
            raise ConfigError(
                f"week correlation must lie in [0, 1]; got {self.week_correlation!r}; "
                "0 means independent weeks"
            )
        scale = self.spread_scale
        if isinstance(scale, bool) or not isinstance(scale, int | float) or not 0.25 <= scale <= 4:
            raise ConfigError(
                f"spread scale must be a number in [0.25, 4]; got {scale!r}; 1 keeps the "
                "forecast's spread"
            )
        if isinstance(self.n_samples, bool) or int(self.n_samples) < 100:
            raise ConfigError(f"n_samples must be a whole number >= 100; got {self.n_samples!r}")
        if isinstance(self.seed, bool) or int(self.seed) != self.seed or self.seed < 0:
            raise ConfigError(f"seed must be a whole number >= 0; got {self.seed!r}")


def weekly_quantile_function(levels: np.ndarray, values: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Evaluate per-week quantile functions, defined by forecast quantiles, at probabilities ``u``.

    Linear between the knots ``(levels[k], values[..., k])``; below the lowest level the first
    segment continues linearly and is clipped at 0; above the highest level an exponential tail
    ``v_K + b * log((1 - q_K) / (1 - u))`` with ``b = slope_K * (1 - q_K)`` continues the last
    segment smoothly.

    Args:
        levels: increasing quantile levels, shape ``(K,)``, K >= 2.
        values: non-decreasing quantile values, shape ``(..., K)``.
        u: probabilities in (0, 1), shape ``values.shape[:-1]`` plus any trailing sample axes
            broadcast as ``values[..., None, :]``; here ``(n, s, w)`` for values ``(n, w, K)``.

    Returns:
        Quantiles at ``u``, same shape as ``u``.
    """
    u = np.clip(u, _U_EPS, 1.0 - _U_EPS)
    knots = values[:, None, :, :]  # (n, 1, w, K): one set of knots per item and week
    slopes = np.diff(knots, axis=-1) / np.diff(levels)
    k = np.clip(np.searchsorted(levels, u, side="right") - 1, 0, len(levels) - 2)
    left = np.take_along_axis(knots, k[..., None], axis=-1)[..., 0]
    slope = np.take_along_axis(slopes, k[..., None], axis=-1)[..., 0]
    inner = left + slope * (u - levels[k])
    top_level = levels[-1]
    scale = slopes[..., -1] * (1.0 - top_level)
    upper = knots[..., -1] + scale * np.log((1.0 - top_level) / (1.0 - np.maximum(u, top_level)))
    out = np.where(u > top_level, upper, inner)
    return np.maximum(out, 0.0)


@dataclass(frozen=True)
class DemandDraws:
    """Monte Carlo draws of demand over the protection interval, for ``n`` items.

    Attributes:
        protection: demand over the first L + R weeks, shape ``(n, s)``.
        lead: demand over the first L weeks, shape ``(n, s)`` (zeros when L = 0).
        cycle_mean: expected demand over one review period (R weeks), shape ``(n,)``.
        lead_mean: expected demand over the first L weeks, shape ``(n,)``.
    """

    protection: np.ndarray
    lead: np.ndarray
    cycle_mean: np.ndarray
    lead_mean: np.ndarray

    @cached_property
    def shortage_tables(self) -> tuple[_ShortageTable, _ShortageTable]:
        """Expected-shortage tables of the protection and lead-time draws (built once)."""
        return _ShortageTable(self.protection), _ShortageTable(self.lead)


def draw_demand(
    levels: np.ndarray,
    values: np.ndarray,
    lead_time: np.ndarray,
    review_period: np.ndarray,
    settings: PlanSettings,
    rng: np.random.Generator,
) -> DemandDraws:
    """Draw protection-interval demand from weekly quantile forecasts.

    Args:
        levels: increasing quantile levels ``(K,)``.
        values: weekly quantile values ``(n, w, K)``; week 0 is the first week after now.
        lead_time: L per item ``(n,)``; ``L + R <= w`` is required.
        review_period: R per item ``(n,)``.
        settings: the correlation between weeks, the spread scale and the number of draws.
        rng: the random generator.
    """
    from scipy.special import ndtr

    n, weeks, _ = values.shape
    s = int(settings.n_samples)
    rho = float(settings.week_correlation)
    shocks = rng.standard_normal((n, s, weeks))
    if rho > 0.0:
        common = rng.standard_normal((n, s, 1))
        shocks = math.sqrt(rho) * common + math.sqrt(1.0 - rho) * shocks
    demand = weekly_quantile_function(levels, values, ndtr(shocks))
    scale = float(settings.spread_scale)
    if scale != 1.0:
        center = weekly_quantile_function(levels, values, np.full((n, 1, weeks), 0.5))
        demand = np.maximum(center + scale * (demand - center), 0.0)
    week = np.arange(weeks)
    in_lead = week[None, :] < lead_time[:, None]  # (n, w)
    in_protection = week[None, :] < (lead_time + review_period)[:, None]
    protection = np.einsum("nsw,nw->ns", demand, in_protection.astype(float))
    lead = np.einsum("nsw,nw->ns", demand, in_lead.astype(float))
    cycle_mean = protection.mean(axis=1) - lead.mean(axis=1)
    return DemandDraws(protection, lead, cycle_mean, lead.mean(axis=1))


def cycle_level(draws: DemandDraws, target: np.ndarray) -> np.ndarray:
    """Smallest whole S with P(protection demand <= S) >= target, per item."""
    ordered = np.sort(draws.protection, axis=1)
    s = ordered.shape[1]
    rank = np.clip(np.ceil(np.asarray(target) * s - 1e-9).astype(int) - 1, 0, s - 1)
    quantile = np.take_along_axis(ordered, rank[:, None], axis=1)[:, 0]
    return np.ceil(quantile - 1e-9).clip(min=0.0)


class _ShortageTable:
    """Expected shortages E[(X - S)+] for any levels S, from sorted draws and suffix sums.

    Rows are searched together: row ``i`` is shifted by ``i * gap`` so one sorted array holds
    every row, and one ``searchsorted`` finds each level's rank in its own row.
    """

    def __init__(self, draws: np.ndarray) -> None:
        self.sorted = np.sort(draws, axis=1)
        n, s = self.sorted.shape
        self.suffix = np.zeros((n, s + 1))
        self.suffix[:, :s] = np.cumsum(self.sorted[:, ::-1], axis=1)[:, ::-1]
        self.gap = float(self.sorted.max(initial=0.0)) + 1.0
        self.shift = np.arange(n) * self.gap
        self.flat = (self.sorted + self.shift[:, None]).ravel()

    def expected_shortage(self, level: np.ndarray) -> np.ndarray:
        """E[(X - level)+] per row, for levels >= 0."""
        n, s = self.sorted.shape
        clipped = np.clip(level, 0.0, self.gap - 0.5)  # above every draw: no shortage
        rank = np.searchsorted(self.flat, clipped + self.shift, side="right") - np.arange(n) * s
        rank = np.clip(rank, 0, s)
        above = self.suffix[np.arange(n), rank] - (s - rank) * clipped
        return np.where(level >= self.gap - 0.5, 0.0, np.maximum(above, 0.0) / s)


def _fill_rate(
    protection: _ShortageTable, lead: _ShortageTable, cycle_mean: np.ndarray, level: np.ndarray
) -> np.ndarray:
    short = protection.expected_shortage(level) - lead.expected_shortage(level)
    with np.errstate(divide="ignore", invalid="ignore"):
        rate = 1.0 - short / cycle_mean
    return np.where(cycle_mean > 0, np.clip(rate, 0.0, 1.0), 1.0)


def expected_fill_rate(draws: DemandDraws, level: np.ndarray) -> np.ndarray:
    """Expected fill rate of order-up-to ``level`` per item (1 where no demand is expected).

    The expected shortage per cycle is E[(D_{L+R} - S)+] - E[(D_L - S)+] (backorder accounting),
    over the expected demand per cycle.
    """
    return _fill_rate(*draws.shortage_tables, draws.cycle_mean, np.asarray(level, dtype=float))


def fill_rate_level(draws: DemandDraws, target: np.ndarray) -> np.ndarray:
    """Smallest whole S whose expected fill rate reaches ``target``, per item (bisection)."""
    tables = draws.shortage_tables
    low = np.zeros(len(target))
    high = np.ceil(draws.protection.max(axis=1)).clip(min=0.0)
    while True:
        open_ = high > low
        if not open_.any():
            return high
        middle = np.floor((low + high) / 2)
        reached = _fill_rate(*tables, draws.cycle_mean, middle) >= target
        high = np.where(open_ & reached, middle, high)
        low = np.where(open_ & ~reached, middle + 1, low)


def order_up_to_levels(
    draws: DemandDraws, target: np.ndarray, service_type: str, ratio: np.ndarray | None = None
) -> np.ndarray:
    """Order-up-to level per item: newsvendor where ``ratio`` is finite, else the service target."""
    level = cycle_level(draws, target) if service_type == CYCLE else fill_rate_level(draws, target)
    if ratio is not None and np.isfinite(ratio).any():
        costed = np.isfinite(ratio)
        level = level.copy()
        level[costed] = cycle_level(_subset(draws, costed), ratio[costed])
    return level


def _subset(draws: DemandDraws, mask: np.ndarray) -> DemandDraws:
    return DemandDraws(
        draws.protection[mask], draws.lead[mask], draws.cycle_mean[mask], draws.lead_mean[mask]
    )


def forecast_quantiles(
    forecasts: pd.DataFrame, model: str | None = None
) -> tuple[str, np.ndarray, pd.DataFrame]:
    """The model, its quantile levels and its ``item_id, date`` + quantile columns.

    A frame with a ``cutoff`` column (a backtest) is reduced to its last cutoff.

    Raises:
        DataValidationError: no quantile columns, several models and none named, or fewer
            than two quantile levels.
    """
    missing = [c for c in (ITEM_ID, DATE) if c not in forecasts.columns]
    if missing:
        raise DataValidationError(
            f"forecasts: column(s) {missing} missing; got {list(forecasts.columns)}; "
            "give a forecast frame from 'salesformer predict'"
        )
    frame = forecasts
    if CUTOFF in frame.columns:
        frame = frame[frame[CUTOFF] == frame[CUTOFF].max()]
    found: dict[str, list[float]] = {}
    for column in frame.columns:
        name, sep, level = str(column).rpartition("-q")
        if sep and name and level.replace(".", "", 1).isdigit():
            found.setdefault(name, []).append(float(level) / 100)
    if model is None:
        if len(found) != 1:
            raise DataValidationError(
                f"forecasts: expected the quantile columns of one model; found models "
                f"{sorted(found)}; name the model to plan with"
            )
        model = next(iter(found))
    if len(found.get(model, [])) < 2:
        raise DataValidationError(
            f"forecasts: model {model!r} has {len(found.get(model, []))} quantile column(s); "
            "the planner needs at least two (e.g. predict with the default 0.1 .. 0.9)"
        )
    levels = np.array(check_quantiles(found[model]))
    columns = [quantile_column(model, q) for q in levels]
    out = frame[[ITEM_ID, DATE, *columns]].copy()
    out[ITEM_ID] = out[ITEM_ID].astype(str)
    out[DATE] = parse_dates(out[DATE])
    return model, levels, out.sort_values([ITEM_ID, DATE]).reset_index(drop=True)


def plan_inventory(
    forecasts: pd.DataFrame,
    stock: pd.DataFrame | list[ItemPolicy],
    settings: PlanSettings | None = None,
    model: str | None = None,
) -> pd.DataFrame:
    """An order plan: one line per item of ``stock``, with its levels, order and reason.

    Args:
        forecasts: ``item_id, date`` and ``<model>-q<level>`` columns (``salesformer predict``).
        stock: the stock table (see :func:`read_policies`) or its policies.
        settings: service target, week correlation, draws; default :class:`PlanSettings`.
        model: the model whose quantiles to use; needed when ``forecasts`` holds several.

    Returns:
        Columns ``item_id, on_hand, on_order, position, lead_time, review_period,
        expected_demand, lead_time_demand, safety_stock, reorder_point, order_up_to,
        target_type, target, expected_fill_rate, cycle_service, order_qty, order_value,
        reason``.

    Raises:
        DataValidationError: no items, unknown items, or forecasts shorter than an item's
            L + R weeks.
    """
    settings = settings or PlanSettings()
    policies = read_policies(stock) if isinstance(stock, pd.DataFrame) else list(stock)
    if not policies:
        raise DataValidationError("stock table: no items; give one policy per item to plan")
    model, levels, table = forecast_quantiles(forecasts, model)
    cube, weeks = _quantile_cube(table, levels, policies)
    rng = np.random.default_rng(settings.seed)
    parts = []
    step = max(1, _CHUNK_CELLS // (settings.n_samples * weeks))
    for start in range(0, len(policies), step):
        chunk = policies[start : start + step]
        parts.append(_plan_chunk(levels, cube[start : start + step], chunk, settings, rng))
    return pd.concat(parts, ignore_index=True)


def _quantile_cube(
    table: pd.DataFrame, levels: np.ndarray, policies: list[ItemPolicy]
) -> tuple[np.ndarray, int]:
    """Quantile values ``(n_items, weeks, K)`` for the planned items, in stock-table order."""
    known = set(table[ITEM_ID].unique())
    unknown = [p.item_id for p in policies if p.item_id not in known]
    if unknown:
        raise DataValidationError(
            f"stock table: {len(unknown)} item(s) have no forecast, e.g. {unknown[:5]}; "
            "forecast them or remove them from the stock table"
        )
    ids = [p.item_id for p in policies]
    weeks = int(table.groupby(ITEM_ID).size().loc[ids].min())
    need = max(p.lead_time + p.review_period for p in policies)
    if need > weeks:
        raise DataValidationError(
            f"forecasts cover {weeks} week(s) but an item needs lead time + review period = "
            f"{need} weeks; forecast at least {need} weeks ahead"
        )
    values = table.groupby(ITEM_ID, sort=False).head(need).set_index(ITEM_ID).loc[ids]
    cube = values.drop(columns=DATE).to_numpy(dtype=float).reshape(len(ids), need, len(levels))
    if not np.isfinite(cube).all():
        bad = values.index[~np.isfinite(values.drop(columns=DATE).to_numpy(dtype=float)).all(1)]
        raise DataValidationError(
            f"forecasts: quantiles missing or not finite for item(s) {list(bad.unique()[:5])}; "
            "give a number for every quantile of the first lead time + review period weeks"
        )
    return np.sort(cube, axis=-1), need


def _plan_chunk(
    levels: np.ndarray,
    cube: np.ndarray,
    policies: list[ItemPolicy],
    settings: PlanSettings,
    rng: np.random.Generator,
) -> pd.DataFrame:
    lead = np.array([p.lead_time for p in policies])
    review = np.array([p.review_period for p in policies])
    draws = draw_demand(levels, cube, lead, review, settings, rng)
    ratio = np.array([p.newsvendor_ratio or np.nan for p in policies])
    target = np.full(len(policies), float(settings.service_level))
    level = order_up_to_levels(draws, target, settings.service_type, ratio)
    mean = draws.protection.mean(axis=1)
    lead_mean = draws.lead_mean
    fill = expected_fill_rate(draws, level)
    cycle = (draws.protection <= level[:, None]).mean(axis=1)
    rows = []
    for i, policy in enumerate(policies):
        costed = bool(np.isfinite(ratio[i]))
        rows.append(
            _plan_line(
                policy,
                order_up_to=float(level[i]),
                expected=float(mean[i]),
                lead_mean=float(lead_mean[i]),
                target_type="newsvendor" if costed else settings.service_type,
                target=float(ratio[i]) if costed else float(settings.service_level),
                fill=float(fill[i]),
                cycle=float(cycle[i]),
            )
        )
    return pd.DataFrame(rows)


def order_quantity(need: float, pack_size: int, moq: float) -> tuple[float, str]:
    """Units to order for a shortfall ``need``, rounded up to packs and raised to the MOQ.

    Returns:
        The quantity and how it was rounded, in words (empty when nothing changed).
    """
    if need <= 0:
        return 0.0, ""
    qty = math.ceil(need / pack_size - 1e-9) * pack_size
    notes = []
    if pack_size > 1 and qty != need:
        notes.append(f"rounded up to packs of {pack_size}")
    if qty < moq:
        qty = math.ceil(moq / pack_size - 1e-9) * pack_size
        notes.append(f"raised to the minimum order of {moq:g}")
    return float(qty), ", ".join(notes)


def _plan_line(policy: ItemPolicy, **numbers: Any) -> dict[str, Any]:
    position = policy.on_hand + policy.on_order
    level = numbers["order_up_to"]
    expected = numbers["expected"]
    safety = level - expected
    qty, rounding = order_quantity(level - position, policy.pack_size, policy.moq)
    target = numbers["target"]
    why = (
        f"newsvendor ratio {target:.3f} from costs"
        if numbers["target_type"] == "newsvendor"
        else f"{numbers['target_type']} target {target:g}"
    )
    horizon = f"{policy.lead_time}+{policy.review_period} weeks"
    if qty > 0:
        reason = f"order {qty:g} = order-up-to {level:g} - position {position:g}"
        reason += f", {rounding}" if rounding else ""
    else:
        reason = f"no order: position {position:g} >= order-up-to {level:g}"
    reason += f" (covers {horizon} of demand, mean {expected:.1f}, at {why})"
    value = qty * policy.unit_cost if not math.isnan(policy.unit_cost) else math.nan
    return {
        ITEM_ID: policy.item_id,
        "on_hand": policy.on_hand,
        "on_order": policy.on_order,
        "position": position,
        "lead_time": policy.lead_time,
        "review_period": policy.review_period,
        "expected_demand": expected,
        "lead_time_demand": numbers["lead_mean"],
        "safety_stock": safety,
        "reorder_point": numbers["lead_mean"] + safety,
        "order_up_to": level,
        "target_type": numbers["target_type"],
        "target": target,
        "expected_fill_rate": numbers["fill"],
        "cycle_service": numbers["cycle"],
        "order_qty": qty,
        "order_value": value,
        "reason": reason,
    }
