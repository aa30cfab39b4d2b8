"""Retraining, champion against challenger: ``salesformer retrain``.

1. **Panel.** The champion's (the promoted version's) training panel plus the stored sales
   events (:func:`panel_with_events`): each event falls into its period of the panel's grid
   (:class:`~salesformer.service.history.PeriodGrid`, as in the live service); event totals
   add to the panel's sales, periods after the panel without an event of the item are periods
   without sales (the data contract), the price of a new period is the mean price of its
   events (else the last price carried forward) and every other covariate is carried forward.
   The panel ends at ``until`` (default: the period before the latest event's, the last
   complete one; the period in progress stays live history). Events the champion's panel
   already holds (a retrained champion, ``events_folded_through`` in its metadata) are not
   added twice.
2. **Challenger.** A model of the champion's class with the champion's settings (plus any
   overrides), fitted on the panel up to the cutoff, ``weeks`` periods before the end.
3. **Backtest.** Both forecast the last ``weeks`` periods from the cutoff: the challenger from
   its fit, the champion from its weights as they are, reading the history up to the cutoff
   (:meth:`~salesformer.forecasting.protocol.Forecaster.for_items`: no refit, exactly what
   the live service would have answered). Both are scored on the same cells (WAPE, wQL,
   bias, 80% coverage).
4. **Decision.** :class:`PromotionRule`: by default the challenger must lower WAPE by at
   least 1% (relative) and must not make wQL worse. The challenger is stored as a new version
   either way, with the rule, the scores and the outcome in its metadata; when it wins it is
   refitted on the whole panel (unless ``refit=False``) and promoted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from salesformer.data.availability import IN_STOCK
from salesformer.data.contract import ACTUAL, DATE, ITEM_ID, SALES, Panel, validate_panel
from salesformer.errors import ConfigError
from salesformer.evaluation.metrics import bias, coverage80, quantile_columns, wape, wql
from salesformer.forecasting.protocol import DEFAULT_QUANTILES, Forecaster, quantile_column
from salesformer.models.registry import coerce_params
from salesformer.models.versions import ModelRegistry, Version
from salesformer.service.history import PeriodGrid
from salesformer.service.store import Event, open_store

_PERIOD = "_period"


@dataclass(frozen=True)
class PromotionRule:
    """When a challenger replaces the champion.

    Attributes:
        min_wape_gain: the challenger's WAPE must be at most ``(1 - min_wape_gain)`` times
            the champion's (0.01: lower by at least 1%).
        max_wql_increase: the challenger's wQL must be at most ``(1 + max_wql_increase)``
            times the champion's (0: not worse).
    """

    min_wape_gain: float = 0.01
    max_wql_increase: float = 0.0

    def __post_init__(self) -> None:
        if not -1.0 < self.min_wape_gain < 1.0:
            raise ConfigError(
                f"min_wape_gain must lie in (-1, 1) (0.01: WAPE lower by 1%); "
                f"got {self.min_wape_gain}"
            )
        if not 0.0 <= self.max_wql_increase < 10.0:
            raise ConfigError(
                f"max_wql_increase must lie in [0, 10) (0: wQL not worse); "
                f"got {self.max_wql_increase}"
            )

    def decide(self, champion: Mapping[str, float], challenger: Mapping[str, float]) -> str:
        """``""`` when the challenger wins, else why not (one sentence)."""
        wape_limit = champion["wape"] * (1.0 - self.min_wape_gain)
        wql_limit = champion["wql"] * (1.0 + self.max_wql_increase)
        reasons = []
        if not challenger["wape"] <= wape_limit:
            reasons.append(
                f"WAPE {challenger['wape']:.4f} is not at most {wape_limit:.4f} "
                f"(champion {champion['wape']:.4f} lowered by {self.min_wape_gain:.1%})"
            )
        if not challenger["wql"] <= wql_limit:
            reasons.append(
                f"wQL {challenger['wql']:.4f} is above {wql_limit:.4f} "
                f"(champion {champion['wql']:.4f} + {self.max_wql_increase:.1%})"
            )
        return "; ".join(reasons)


@dataclass(frozen=True)
class RetrainResult:
    """What :func:`retrain` did: the new version, the scores and the decision."""

    version: Version
    champion: int
    promoted: bool
    reason: str
    scores: dict[str, dict[str, float]]


def panel_with_events(
    panel: Panel,
    events: Iterable[Event],
    until: date | None = None,
    folded_through: date | None = None,
) -> tuple[Panel, dict[str, int]]:
    """The panel extended with the event totals of its items (see the module docstring).

    Args:
        panel: the champion's training panel.
        events: the stored events.
        until: the new panel's last date (default: the period before the latest event's).
        folded_through: the last date whose events ``panel`` holds already (skipped).

    Returns:
        The new panel and counts: events used, events of unknown items, events outside
        the span (before the first date or after ``until``), events already in the panel.
    """
    grid = PeriodGrid(panel.freq, panel.first_date.date())
    known = {str(i) for i in panel.item_ids}
    counts = {"events_used": 0, "events_unknown_item": 0, "events_outside": 0}
    counts["events_in_panel"] = 0
    folded = -1 if folded_through is None else grid.index(_moment(folded_through))
    stop = None if until is None else grid.index(_moment(until))
    rows = []
    marked: set[tuple[str, int]] = set()  # (item, period) an event marked out of stock
    for event in events:
        if event.item_id not in known:
            counts["events_unknown_item"] += 1
            continue
        period = grid.index(event.timestamp)
        if period <= folded:
            counts["events_in_panel"] += 1
            continue
        rows.append((event.item_id, period, float(event.quantity), event))
        if event.in_stock is False:
            marked.add((event.item_id, period))
    if stop is None:
        stop = max((r[1] for r in rows), default=folded + 1) - 1
    kept = [r for r in rows if 0 <= r[1] <= stop]
    counts["events_outside"] = len(rows) - len(kept)
    counts["events_used"] = len(kept)
    # a kept daily total (retention) carries the mean of several prices: weight by them
    weighted = [(i, p, q, (e.price or 0.0) * e.price_weight, e.price_weight) for i, p, q, e in kept]
    totals = pd.DataFrame(weighted, columns=[ITEM_ID, _PERIOD, "_quantity", "_psum", "_priced"])
    totals = totals.groupby([ITEM_ID, _PERIOD], as_index=False).agg(
        _quantity=("_quantity", "sum"), _psum=("_psum", "sum"), _priced=("_priced", "sum")
    )
    totals["_price"] = totals["_psum"] / totals["_priced"].where(totals["_priced"] > 0)
    totals = totals.drop(columns=["_psum", "_priced"])
    last = grid.index(panel.last_date.to_pydatetime())
    end = stop
    if end <= last:
        raise ConfigError(
            f"no complete period of events after the champion's last training date "
            f"({panel.last_date.date()}); the new panel would end at "
            f"{grid.date_of(end)}; ingest more events, or give a later --until"
        )
    sales = panel.sales.copy()
    sales[_PERIOD] = [grid.index(d) for d in pd.DatetimeIndex(sales[DATE]).to_pydatetime()]
    new_periods = range(last + 1, end + 1)
    extra = pd.DataFrame(
        [(item, p) for item in sales[ITEM_ID].unique() for p in new_periods],
        columns=[ITEM_ID, _PERIOD],
    )
    extra[DATE] = pd.to_datetime([grid.date_of(p) for p in extra[_PERIOD]])
    extra[SALES] = 0.0
    frame = pd.concat([sales, extra], ignore_index=True)
    frame = frame.merge(totals, on=[ITEM_ID, _PERIOD], how="left")
    added = frame["_quantity"].fillna(0.0).to_numpy()
    frame[SALES] = np.clip(frame[SALES].to_numpy(dtype=float) + added, 0.0, None)
    covariates = [c for c in panel.sales.columns if c not in (ITEM_ID, DATE, SALES, IN_STOCK)]
    new = frame[_PERIOD] > last
    if IN_STOCK in frame.columns or marked:
        keys = zip(frame[ITEM_ID].astype(str), frame[_PERIOD], strict=True)
        out = np.array([(i, int(p)) in marked for i, p in keys], dtype=bool)
        held = frame.get(IN_STOCK, pd.Series(True, index=frame.index))
        frame[IN_STOCK] = held.fillna(True).astype(bool).to_numpy() & ~(out & new.to_numpy())
    for name in covariates:
        if "price" in name.lower():
            frame.loc[new, name] = frame.loc[new, "_price"]
    frame = frame.drop(columns=["_quantity", "_price"])
    frame = frame.sort_values([ITEM_ID, _PERIOD]).reset_index(drop=True)
    if covariates:
        frame[covariates] = frame.groupby(ITEM_ID)[covariates].ffill()
    frame = frame.drop(columns=_PERIOD)
    extended = validate_panel(
        frame,
        panel.items,
        freq=panel.freq,
        known_future=panel.known_future,
        past_only=panel.past_only,
    )
    return extended, counts


def _moment(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time())


def challenger_of(champion: Forecaster, overrides: Mapping[str, Any] | None = None) -> Forecaster:
    """An unfitted model of the champion's class and settings, with ``overrides`` applied."""
    settings = {**champion.get_params(), **coerce_params(champion.name, dict(overrides or {}))}
    try:
        return type(champion)(**settings)
    except TypeError as exc:
        raise ConfigError(
            f"model {champion.name} does not take the settings {sorted(overrides or {})} "
            f"({exc}); check the names given to --set"
        ) from exc


def _scored(forecast: pd.DataFrame, actual: pd.DataFrame, name: str) -> dict[str, float]:
    frame = actual.merge(forecast, on=[ITEM_ID, DATE], how="inner")
    if len(frame) != len(actual):
        raise ConfigError(
            f"the {name} forecast covers {len(frame)} of {len(actual)} evaluation cells; "
            "retrain needs both models to forecast every item of the panel"
        )
    return {
        "wape": wape(frame, name),
        "wql": wql(frame, name),
        "bias": bias(frame, name),
        "coverage80": coverage80(frame, name),
        "cells": float(len(frame)),
    }


def _renamed(forecast: pd.DataFrame, model: str, name: str) -> pd.DataFrame:
    columns = {model: name}
    for level, column in quantile_columns(forecast, model).items():
        columns[column] = quantile_column(name, level)
    return forecast.rename(columns=columns)


def head_to_head(
    champion: Forecaster, challenger: Forecaster, panel: Panel, weeks: int
) -> tuple[dict[str, dict[str, float]], Forecaster, pd.Timestamp]:
    """Score both on the last ``weeks`` periods; (scores, fitted challenger, cutoff)."""
    dates = panel.dates
    if weeks < 1 or len(dates) <= weeks + 1:
        raise ConfigError(
            f"the panel has {len(dates)} periods; evaluating on the last {weeks} needs more; "
            "ingest more events or lower --weeks"
        )
    cutoff = pd.Timestamp(dates[-weeks - 1])
    train = panel.until(cutoff)
    future = panel.future_covariates(cutoff, weeks)
    actual = panel.window(cutoff, weeks)[[ITEM_ID, DATE, SALES]].rename(columns={SALES: ACTUAL})
    actual = actual.loc[actual[ITEM_ID].isin(train.item_ids)]
    levels = DEFAULT_QUANTILES
    seen = champion.for_items(train)
    old = seen.predict(weeks, future=future, quantiles=levels)
    fitted = challenger.fit(train)
    new = fitted.predict(weeks, future=future, quantiles=levels)
    scores = {
        "champion": _scored(_renamed(old, champion.name, "champion"), actual, "champion"),
        "challenger": _scored(_renamed(new, challenger.name, "challenger"), actual, "challenger"),
    }
    return scores, fitted, cutoff


def retrain(
    registry: ModelRegistry,
    db: str | Path,
    *,
    command: str,
    weeks: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    rule: PromotionRule | None = None,
    until: date | None = None,
    refit: bool = True,
) -> RetrainResult:
    """Fit a challenger on the champion's panel plus the stored events; promote it if better.

    Args:
        registry: the model registry; its promoted version is the champion.
        db: the service's event store (SQLite path or PostgreSQL URL).
        command: the command line, recorded in the metadata.
        weeks: periods to evaluate on (default: the champion's horizon).
        overrides: settings of the challenger that differ from the champion's.
        rule: the promotion rule (default :class:`PromotionRule()`).
        until: last date of the new panel (default: the latest event's period).
        refit: refit a winning challenger on the whole panel before storing it.
    """
    from salesformer.forecasting.protocol import fitted_horizon
    from salesformer.models.persist import load_model

    rule = rule or PromotionRule()
    current = registry.promoted()
    champion = load_model(current.model_dir)
    store = open_store(db)
    try:
        events = store.iter_sales()
        panel, counts = panel_with_events(champion.panel_, events, until, current.folded_through)
    finally:
        store.close()
    steps = int(weeks) if weeks is not None else fitted_horizon(champion)
    challenger = challenger_of(champion, overrides)
    scores, fitted, cutoff = head_to_head(champion, challenger, panel, steps)
    reason = rule.decide(scores["champion"], scores["challenger"])
    promoted = not reason
    if promoted and refit:
        fitted = challenger_of(champion, overrides).fit(panel)
    folded = fitted.panel_.last_date.date()
    outcome = "promoted" if promoted else "rejected"
    metadata = {
        "created_by": command,
        "parent": current.number,
        "settings_overrides": dict(overrides or {}),
        "data": {
            **counts,
            "panel_last_date": str(panel.last_date.date()),
            "events_folded_through": str(folded),
        },
        "backtest": {"cutoff": str(cutoff.date()), "periods": steps, **scores},
        "rule": asdict(rule),
        "decision": {
            "outcome": outcome,
            "reason": reason or "the challenger meets the rule",
            "refitted_on_all_data": bool(promoted and refit),
        },
    }
    version = registry.add(fitted, metadata)
    details = {"rule": asdict(rule), "outcome": outcome, "against": current.number}
    if promoted:
        registry.promote(version.number, command, **details)
    else:
        registry.record(version.number, {"event": "rejected", "command": command, **details})
    return RetrainResult(registry.version(version.number), current.number, promoted, reason, scores)
