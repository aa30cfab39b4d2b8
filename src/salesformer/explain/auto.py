"""The explanation of an ``auto`` forecast: that of the candidate weighing most for the item."""

from __future__ import annotations

from typing import Any

import pandas as pd

from salesformer.explain import explain
from salesformer.explain.result import Explanation, unknown_item


def explain_auto(
    model: Any,
    item_id: str,
    horizon: int | None = None,
    *,
    future: pd.DataFrame | None = None,
    **options: Any,
) -> Explanation:
    """The explanation of the candidate that weighs most in the item's forecast."""
    weights = model.item_weights()
    item_id = str(item_id)
    if item_id not in weights.index:
        raise unknown_item(item_id, weights.index)
    row = weights.loc[item_id]
    row = row[row > 0].sort_values(ascending=False)
    chosen = str(row.index[0])
    steps = horizon if horizon is not None else int(getattr(model, "horizon", 8))
    candidate = model.models_[chosen]
    accepted = getattr(type(candidate), "explanation_options", ())
    passed = {k: v for k, v in options.items() if k in accepted}
    inner = explain(candidate, item_id, steps, future=future, **passed)
    shares = ", ".join(f"{name} {weight:.0%}" for name, weight in row.items())
    inner.notes.insert(
        0,
        f"auto forecasts this item as {shares}; explained here: {chosen}"
        + (" (the others' parts are not shown)" if len(row) > 1 else ""),
    )
    return inner
