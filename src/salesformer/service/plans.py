"""A known item's live forecast under the shop's plan (the service side of ``--future``).

The plan is laid over the item's "no change" plan (:meth:`LiveForecaster.future_plan`: each
known-future covariate carried forward from the item's clock) by the library's
:func:`~salesformer.forecasting.plans.apply_plan`, so the service accepts and refuses exactly
what ``salesformer predict --future`` does; the LM's head then reads it on the live path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from salesformer.data.contract import DATE, ITEM_ID
from salesformer.data.text import item_text
from salesformer.forecasting.plans import apply_plan
from salesformer.forecasting.protocol import DEFAULT_QUANTILES, check_quantiles
from salesformer.service.core import SalesService
from salesformer.service.live import LiveForecast


@dataclass(frozen=True)
class PlannedForecast:
    """The live forecast under a plan and the plan's note (None: nothing fell back)."""

    result: LiveForecast
    note: str | None


def plan_frame(item_id: str, rows: Sequence[tuple[object, dict[str, float]]]) -> pd.DataFrame:
    """``(date, covariates)`` pairs as a plan table of one item (absent covariates blank)."""
    return pd.DataFrame([{ITEM_ID: item_id, DATE: when, **values} for when, values in rows])


def forecast_with_plan(
    service: SalesService,
    item_id: str,
    plan: pd.DataFrame,
    promotion_copy: str | None = None,
    horizon: int | None = None,
    quantiles: Sequence[float] | None = None,
) -> PlannedForecast:
    """``item_id``'s forecast after its clock with ``plan`` for the first ``horizon`` periods.

    Raises:
        UnknownItemError: not an item of the model (404).
        DataValidationError, ConfigError: a plan ``predict --future`` would refuse (422).
    """
    live = service.live
    levels = check_quantiles(DEFAULT_QUANTILES if quantiles is None else quantiles)
    steps = live.horizon if horizon is None else int(horizon)
    state, clock = service.history.snapshot(item_id)
    baseline = live.future_plan(item_id, state, clock)  # raises UnknownItemError
    panel = live.panel
    applied = apply_plan(
        baseline.head(steps), plan, panel.known_future, panel.past_only, where="plan"
    )
    future = pd.concat([applied.future, baseline.iloc[steps:]], ignore_index=True)
    text = None
    if promotion_copy is not None:
        text = item_text(service._item_text(item_id), promotion=promotion_copy)
    result = live.forecast(item_id, state, clock, steps, levels, future, text)
    return PlannedForecast(result, applied.report.note())
