"""Shared by the privacy and federated benchmarks: a seeded item subset, spread over seeds.

Both benchmarks fit the LM several times per cutoff (one arm per epsilon or per number of
sellers), which a small machine cannot do on every item of Online Retail II; they run on
``--sample-items N`` items drawn at random with ``--item-seed`` (the same items for every arm
and seed), and report each arm's metrics as the mean and the [min, max] over ``--seeds``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from salesformer.data.contract import ITEM_ID, SALES, Panel

#: Metrics the two benchmarks show.
METRICS_SHOWN = ("wape", "wql", "mase", "coverage80")


def top_items(panel: Panel, count: int) -> Panel:
    """The ``count`` items with the most sales (all when ``count`` is 0)."""
    if not count:
        return panel
    totals = panel.sales.groupby(ITEM_ID)[SALES].sum().nlargest(count)
    return keep_items(panel, set(totals.index))


def sample_items(panel: Panel, count: int, seed: int) -> Panel:
    """``count`` items drawn at random (seeded) from the panel's items (all when 0)."""
    ids = np.sort(np.asarray(panel.item_ids, dtype=object))
    if not count or count >= len(ids):
        return panel
    chosen = np.random.default_rng(seed).choice(len(ids), size=count, replace=False)
    return keep_items(panel, set(ids[chosen]))


def keep_items(panel: Panel, keep: set[Any]) -> Panel:
    """The panel restricted to the items in ``keep``."""
    items = None
    if panel.items is not None:
        items = panel.items.loc[panel.items[ITEM_ID].isin(keep)].reset_index(drop=True)
    sales = panel.sales.loc[panel.sales[ITEM_ID].isin(keep)].reset_index(drop=True)
    return replace(panel, sales=sales, items=items, report={})


def items_note(sample: int, item_seed: int, top: int = 0) -> str:
    """What items a run used, in words."""
    if sample:
        return f"{sample} items drawn at random (item seed {item_seed}; not every item)"
    if top:
        return f"the {top} items with the most sales (not every item)"
    return "every item"


def over_seeds(per_seed: dict[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Each arm's metrics as mean, min and max over seeds (``per_seed``: seed -> overall rows)."""
    rows = [{**row, "seed": seed} for seed, overall in per_seed.items() for row in overall]
    frame = pd.DataFrame(rows)
    grouped = frame.groupby("model", sort=False)
    out = grouped[list(METRICS_SHOWN)].mean()
    for metric in METRICS_SHOWN:
        out[f"{metric}_min"] = grouped[metric].min()
        out[f"{metric}_max"] = grouped[metric].max()
    out["seeds"] = grouped["seed"].count()
    return list(out.reset_index().to_dict(orient="records"))


def cell(row: dict[str, Any], metric: str) -> str:
    """``0.712 [0.700, 0.731]`` over several seeds, ``0.712`` for one."""
    if row.get("seeds", 1) > 1:
        return f"{row[metric]:.3f} [{row[f'{metric}_min']:.3f}, {row[f'{metric}_max']:.3f}]"
    return f"{row[metric]:.3f}"


def metrics_table(summary: list[dict[str, Any]]) -> list[str]:
    """Markdown rows: one per arm, mean [min, max] over seeds."""
    lines = ["| arm | " + " | ".join(METRICS_SHOWN) + " |", "|---|" + "---|" * len(METRICS_SHOWN)]
    for row in summary:
        lines.append(
            f"| {row['model']} | " + " | ".join(cell(row, m) for m in METRICS_SHOWN) + " |"
        )
    return lines
