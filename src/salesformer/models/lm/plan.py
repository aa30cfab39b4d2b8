"""The training plan: which (item, origin) samples train the LM and which validate it.

The last ``horizon`` periods of the panel are held out as the validation window for early
stopping (targets after the validation origin are masked out of training samples). A share of
samples has its history hidden, and every item launched inside the panel adds a launch sample
(origin just before its first sale), so that the cold-start regime is learned by the same
network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from salesformer.errors import DataValidationError
from salesformer.models.lm.samples import Samples, Wide, build_samples

if TYPE_CHECKING:
    from salesformer.models.lm.forecaster import LMForecaster
    from salesformer.models.lm.settings import LMSettings


@dataclass
class TrainingPlan:
    """Which (item, origin) samples train the model and which validate it."""

    wide: Wide
    freq: str
    items: np.ndarray
    low: np.ndarray
    high: int
    launch_items: np.ndarray
    target_limit: int
    validation: Samples | None
    validation_date: str | None
    n_future: int
    launch_weight: float

    @classmethod
    def make(
        cls, model: LMForecaster, wide: Wide, freq: str, hold_out: bool = True
    ) -> TrainingPlan:
        """The plan: the last ``horizon`` periods validate, the origins before them train.

        ``hold_out=False`` (a private fit) trains on every period and learns nothing from
        the panel as a whole: no validation window, and the launch weight is
        ``launch_weight`` itself rather than relative to the mean weight of the items.
        """
        last = wide.n_history - 1
        horizon = model.horizon
        validation_origin = last - horizon
        earliest = max(0, validation_origin - model.max_origins)
        use_validation = (
            hold_out
            and validation_origin - 1 >= earliest
            and ((wide.first <= validation_origin - 1).sum() >= 2)
        )
        high = validation_origin - 1 if use_validation else last - 1
        if high < 0:
            raise DataValidationError(
                f"the panel has {wide.n_history} periods; the LM forecaster needs at least "
                f"{horizon + 2} to learn a horizon of {horizon}; give a longer panel or a "
                "shorter --horizon"
            )
        low = np.maximum(wide.first, max(0, high - model.max_origins + 1))
        trainable = np.flatnonzero(low <= high)
        if not len(trainable):
            raise DataValidationError(
                "no item has history before the validation window; give a longer panel or "
                "a shorter --horizon"
            )
        launch = np.flatnonzero(
            (wide.first >= model.launch_after) & (wide.first - 1 <= high) & (wide.first >= 1)
        )
        common = _sample_settings(model, freq)
        latest = build_samples(wide, trainable, np.full(len(trainable), high), **common)
        mean_weight = float(latest.weight.mean()) if hold_out else 1.0
        launch_weight = float(model.launch_weight * mean_weight)
        validation = None
        validation_date = None
        if use_validation:
            validation = _validation_samples(model, wide, validation_origin, common, launch_weight)
            validation_date = str(wide.dates[validation_origin].date())
        return cls(
            wide=wide,
            freq=freq,
            items=trainable,
            low=low,
            high=high,
            launch_items=launch,
            target_limit=validation_origin if use_validation else last,
            validation=validation,
            validation_date=validation_date,
            n_future=int(latest.future.shape[2]),
            launch_weight=launch_weight,
        )

    def batches(
        self, model: LMSettings, rng: np.random.Generator, batch_items: int | None = None
    ) -> list[Samples]:
        """One epoch: items shuffled into groups of ``batch_items`` (default: the setting's),
        several origins drawn per item."""
        size = int(model.batch_items if batch_items is None else batch_items)
        passes = max(1, math.ceil(model.epoch_samples / (len(self.items) * model.origins_per_item)))
        order = np.concatenate([rng.permutation(self.items) for _ in range(passes)])
        out = []
        for start in range(0, len(order), size):
            out.append(self.group_samples(model, order[start : start + size], rng))
        return out

    def group_samples(
        self, model: LMSettings, group: np.ndarray, rng: np.random.Generator
    ) -> Samples:
        """The samples of a group of items: ``origins_per_item`` random origins of each, and
        the launch sample of each item launched inside the panel."""
        common = _sample_settings(model, self.freq)
        k = model.origins_per_item
        item = np.repeat(group, k)
        span = self.high - self.low[item] + 1
        origin = self.low[item] + np.floor(rng.random(len(item)) * span).astype(np.int64)
        cold = rng.random(len(item)) < model.history_dropout
        parts = [
            build_samples(
                self.wide, item, origin, cold=cold, target_limit=self.target_limit, **common
            )
        ]
        launches = group[np.isin(group, self.launch_items)].astype(np.int64)
        if len(launches):
            parts.append(
                _launch_samples(self.wide, launches, common, self.launch_weight, self.target_limit)
            )
        return Samples.concat(parts)


def _sample_settings(model: Any, freq: str) -> dict[str, Any]:
    """The keyword arguments of :func:`build_samples` that the model's settings fix."""
    return {
        "context": model.context_,
        "horizon": model.horizon,
        "freq": freq,
        "standardizer": model.standardizer_,
        "volume_weight": model.volume_weight,
    }


def _validation_samples(
    model: LMForecaster,
    wide: Wide,
    origin: int,
    common: dict[str, Any],
    launch_weight: float,
) -> Samples:
    """Samples at the validation origin, plus launches inside the validation window."""
    known = np.flatnonzero(wide.first <= origin)
    parts = [build_samples(wide, known, np.full(len(known), origin), **common)]
    new = np.flatnonzero(
        (wide.first > origin)
        & (wide.first <= wide.n_history - 1)
        & (wide.first >= model.launch_after)
    )
    if len(new):
        parts.append(_launch_samples(wide, new, common, launch_weight))
    return Samples.concat(parts)


def _launch_samples(
    wide: Wide,
    items: np.ndarray,
    common: dict[str, Any],
    weight: float,
    target_limit: int | None = None,
) -> Samples:
    """Cold-start samples: origin just before the first sale, launch price as the price."""
    first = wide.first[items]
    price = None if wide.launch_price is None else wide.launch_price[items]
    samples = build_samples(
        wide,
        items,
        first - 1,
        cold=np.ones(len(items), dtype=bool),
        launch_price=price,
        target_limit=target_limit,
        **common,
    )
    samples.weight[:] = weight
    return samples
