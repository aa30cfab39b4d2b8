"""The result of an explanation: one tidy object for every kind of model.

Every explanation holds the forecast it explains and, depending on the model, some of

* ``words``: one row per word of the item text the model read, with its attribution to the
  forecast summed over the horizon (LM only), and ``word_steps``, the same per step;
* ``attributions``: one row per (group, feature, step) of the other inputs: history lags,
  known-future covariates, static features, calendar... (LM: integrated gradients on the
  sales scale; LightGBM: TreeSHAP on the model's log scale);
* ``components``: the fitted components of a statistical baseline (level, trend, demand
  size, source week...), one row per (component, step);
* ``completeness``: for each attribution method, how far the attributions' sum is from the
  change they explain (see ``docs/explain.md``).

Absent parts are empty frames with their columns, so code reading an explanation never has
to test for ``None``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from salesformer.errors import DataValidationError

FORECAST_COLUMNS = ("step", "date", "forecast")
WORD_COLUMNS = ("position", "word", "start", "end", "attribution")
WORD_STEP_COLUMNS = ("position", "word", "step", "attribution")
ATTRIBUTION_COLUMNS = ("group", "feature", "step", "value", "attribution")
COMPONENT_COLUMNS = ("component", "step", "value", "detail")


def empty(columns: tuple[str, ...]) -> pd.DataFrame:
    """An empty frame with ``columns``."""
    return pd.DataFrame({c: [] for c in columns})


@dataclass
class Explanation:
    """Why a model forecasts what it forecasts for one item (see the module docstring).

    Attributes:
        model: the model's name (``LM``, ``LightGBM``, ``AutoETS``...).
        item_id: the item explained.
        method: how: ``"integrated gradients"``, ``"TreeSHAP"`` or ``"fitted components"``.
        scale: the unit of the attributions: ``"sales"`` (LM), ``"log1p sales"`` (LightGBM).
        forecast: ``step, date, forecast``, the point forecast explained.
        text: the item text the model read (LM only; "" otherwise).
        words: ``position, word, start, end, attribution`` (LM only): ``start:end`` is the
            word's span in ``text``.
        word_steps: ``position, word, step, attribution`` (LM with per-step attributions).
        attributions: ``group, feature, step, value, attribution``; ``value`` is the input's
            value where one number describes it (else NaN).
        components: ``component, step, value, detail`` (statistical baselines).
        completeness: per method (``"words"``, ``"signals"``, ``"trees"``): ``attributed``
            (sum of the attributions), ``explained`` (the change they should sum to), ``gap``
            (their difference) and ``relative_gap`` (gap / |explained|).
        baseline: per method, the forecast of the reference input (IG) or the expected value
            (TreeSHAP), on the method's scale.
        notes: plain-language remarks (truncated text, fallbacks, models without components).
    """

    model: str
    item_id: str
    method: str
    scale: str
    forecast: pd.DataFrame
    text: str = ""
    words: pd.DataFrame = field(default_factory=lambda: empty(WORD_COLUMNS))
    word_steps: pd.DataFrame = field(default_factory=lambda: empty(WORD_STEP_COLUMNS))
    attributions: pd.DataFrame = field(default_factory=lambda: empty(ATTRIBUTION_COLUMNS))
    components: pd.DataFrame = field(default_factory=lambda: empty(COMPONENT_COLUMNS))
    completeness: dict[str, dict[str, float]] = field(default_factory=dict)
    baseline: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def horizon(self) -> int:
        """Steps explained."""
        return len(self.forecast)

    def top_words(self, n: int = 10) -> pd.DataFrame:
        """The ``n`` words with the largest absolute attribution, largest first."""
        if self.words.empty:
            return self.words.copy()
        order = self.words["attribution"].abs().sort_values(ascending=False, kind="stable")
        return self.words.loc[order.index[:n]].reset_index(drop=True)

    def groups(self) -> pd.DataFrame:
        """Attributions summed over steps and features: ``group, attribution``, largest first."""
        if self.attributions.empty:
            return pd.DataFrame({"group": [], "attribution": []})
        totals = self.attributions.groupby("group", sort=False)["attribution"].sum()
        order = totals.abs().sort_values(ascending=False, kind="stable").index
        return totals.loc[order].rename("attribution").reset_index()

    def features(self) -> pd.DataFrame:
        """Attributions summed over steps: ``group, feature, attribution``, largest first."""
        if self.attributions.empty:
            return pd.DataFrame({"group": [], "feature": [], "attribution": []})
        totals = (
            self.attributions.groupby(["group", "feature"], sort=False)["attribution"]
            .sum()
            .reset_index()
        )
        order = totals["attribution"].abs().sort_values(ascending=False, kind="stable").index
        return totals.loc[order].reset_index(drop=True)

    def to_dict(self) -> dict[str, Any]:
        """Everything as JSON types (dates as ISO strings, NaN as None)."""
        return {
            "model": self.model,
            "item_id": self.item_id,
            "method": self.method,
            "scale": self.scale,
            "forecast": _records(self.forecast),
            "text": self.text,
            "words": _records(self.words),
            "word_steps": _records(self.word_steps),
            "attributions": _records(self.attributions),
            "components": _records(self.components),
            "completeness": {k: _clean_dict(v) for k, v in self.completeness.items()},
            "baseline": _clean_dict(self.baseline),
            "notes": list(self.notes),
        }


def unknown_item(item_id: str, item_ids: Any) -> DataValidationError:
    """The one-line error for an item that is not in the model's panel of ``item_ids``."""
    ids = sorted(str(i) for i in item_ids)
    return DataValidationError(
        f"item {item_id!r} is not in the model's panel ({len(ids)} items, e.g. {ids[:3]}); "
        "give one of its item ids"
    )


def completeness(attributed: float, explained: float) -> dict[str, float]:
    """The completeness record of an attribution method (see :class:`Explanation`)."""
    gap = float(attributed) - float(explained)
    return {
        "attributed": float(attributed),
        "explained": float(explained),
        "gap": gap,
        "relative_gap": abs(gap) / max(abs(float(explained)), 1e-12),
    }


def _clean(value: Any) -> Any:
    if isinstance(value, pd.Timestamp | np.datetime64):
        return str(pd.Timestamp(value).date())
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    return value


def _clean_dict(values: dict[str, Any]) -> dict[str, Any]:
    return {k: _clean(v) for k, v in values.items()}


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [{str(k): _clean(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]
