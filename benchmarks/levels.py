"""Category and total forecasts on Online Retail II: per-level WAPE, reconciled and not.

Online Retail II has no product category; each item's category here is the first two
characters of its stock code (``22``, ``21``, ``84``, ...; prefixes with fewer than
``--min-items`` items are pooled as ``other``): :func:`prefix_categories`. At each cutoff,
LightGBM is fitted on the items and a clone on the category and total series (the base forecasts
of each level); the base forecasts are then reconciled with each hierarchicalforecast method
(``bottom_up``, ``ols``, ``wls_struct``, ``mint_shrink``; mint_shrink learns its error covariance
from forecasts of the ``horizon`` weeks before the cutoff, made by models fitted before them).
Per level, WAPE and bias of the base forecasts (``base``: for items the item model, for a
category its own model) and of each reconciled set are computed over every item seen up to the
cutoff (actuals of a category: the sums of those items' sales).

The method is chosen on the validation cutoffs (lowest mean WAPE over the category and total
levels) and reported on the test cutoffs. Results: ``<out>/levels.{json,md}``.

Usage::

    python -m benchmarks.levels [--source PATH] [--threads 2] [--min-items 40]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.harness import (
    ONLINE_RETAIL,
    RESULTS,
    argument_parser,
    machine_line,
    online_retail_panel,
    panel_cache_dir,
    write_results,
)

HORIZON = 8
VALIDATION = ("2011-04-04",)
TEST = ("2011-07-04", "2011-09-26")
METHODS = ("bottom_up", "ols", "wls_struct", "mint_shrink")
#: LightGBM kept cheap enough for a 2-core machine: 8 training origins (default 26), one
#: quantile model (the points are what is reconciled here).
LIGHTGBM = {"max_horizon": HORIZON, "n_origins": 8, "quantile_levels": (0.5,)}


def prefix_categories(item_ids: np.ndarray, width: int = 2, min_items: int = 40) -> pd.Series:
    """Each stock code's first ``width`` characters; rare prefixes pooled as ``other``."""
    codes = pd.Series(np.asarray(item_ids).astype(str))
    prefix = codes.str[:width]
    counts = prefix.value_counts()
    return prefix.where(prefix.map(counts) >= min_items, "other").set_axis(codes)


def with_categories(panel: Any, min_items: int) -> Any:
    import dataclasses

    from salesformer.data.contract import ITEM_ID

    items = panel.items.copy()
    items["category"] = items[ITEM_ID].map(prefix_categories(panel.item_ids, min_items=min_items))
    return dataclasses.replace(panel, items=items)


def one_cutoff(panel: Any, cutoff: str, threads: int) -> tuple[pd.DataFrame, dict[str, float]]:
    """Per-level scores of every method (and the base forecasts) at one cutoff."""
    from salesformer.data.contract import ACTUAL, DATE, ITEM_ID
    from salesformer.errors import ConfigError
    from salesformer.evaluation.levels import level_actuals, level_metrics
    from salesformer.forecasting.levels import (
        BASE_SUFFIX,
        LEVEL,
        base_forecasts,
        holdout_errors,
        level_series,
        reconcile,
    )
    from salesformer.models.registry import make_model

    stamp = pd.Timestamp(cutoff)
    train = panel.until(stamp)
    levels = ("item", "category", "total")
    series = level_series(train, levels)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    model = make_model("LightGBM", n_jobs=threads, **LIGHTGBM).fit(train)
    base = base_forecasts(model, train, series, HORIZON, ())
    seconds["base"] = time.perf_counter() - start
    start = time.perf_counter()
    residuals = holdout_errors(model, train, series, HORIZON)
    seconds["mint_shrink_holdout"] = time.perf_counter() - start
    name = model.name
    actual = level_actuals(panel, stamp, HORIZON, series)
    frame = base.merge(actual, on=[ITEM_ID, DATE], how="left")
    frame[ACTUAL] = frame[ACTUAL].fillna(0.0)
    frame[LEVEL] = frame[ITEM_ID].map(series.set_index(ITEM_ID)[LEVEL])
    frame[f"{name}{BASE_SUFFIX}"] = frame[name]
    rows = []
    for method in METHODS:
        start = time.perf_counter()
        try:
            frame[name] = reconcile(base, series, name, method, residuals).to_numpy()
        except ConfigError as exc:  # mint_shrink's covariance can be singular: say so
            print(f"{cutoff} {method}: {exc}", flush=True)
            continue
        seconds[method] = time.perf_counter() - start
        scores = level_metrics(frame, [name])
        scores["method"] = np.where(scores["variant"] == "base", "base", method)
        rows.append(scores)
    scores = pd.concat(rows).drop_duplicates(["level", "method"])
    scores["cutoff"] = cutoff
    return scores.drop(columns=["variant"]), seconds


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Category and total forecasts on Online Retail II",
        "",
        f"LightGBM ({report['lightgbm']}), horizon {HORIZON}; categories: stock-code prefix "
        "(2 characters, prefixes "
        f"with < {report['min_items']} items pooled as `other`: {report['n_categories']} "
        f"categories). Method chosen on the validation cutoffs {', '.join(VALIDATION)}: "
        f"**{report['chosen']}**. Generated by `{report['provenance']['command']}` at commit "
        f"{report['provenance']['commit']}.",
        "",
    ]
    for split in ("validation", "test"):
        table = pd.DataFrame(report[f"{split}_mean"])
        cutoffs = ", ".join(VALIDATION if split == "validation" else TEST)
        lines += [
            f"## {split.title()} cutoffs ({cutoffs}): WAPE (bias), mean over cutoffs",
            "",
            "| method | item | category | total |",
            "|---|---|---|---|",
        ]
        for method in ("base", *METHODS):
            cells = []
            for level in ("item", "category", "total"):
                row = table[(table["method"] == method) & (table["level"] == level)]
                found = len(row) > 0
                cells.append(
                    f"{row['wape'].iloc[0]:.3f} ({row['bias'].iloc[0]:+.3f})" if found else "failed"
                )
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += [
        "`base`: each level's own forecast (items: the item model; categories and total: "
        "LightGBM fitted on those series); they do not add up. Every other row adds up exactly. "
        "Items with bottom_up equal their base forecasts.",
        "",
        f"Machine: {machine_line()}; {report['threads']} thread(s).",
    ]
    return "\n".join(lines)


def _means(scores: pd.DataFrame) -> list[dict[str, Any]]:
    means = scores.groupby(["method", "level"], sort=False)[["wape", "bias"]].mean()
    return [
        {k: (float(v) if isinstance(v, np.floating) else v) for k, v in row.items()}
        for row in means.reset_index().to_dict(orient="records")
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(__doc__, __file__)
    parser.add_argument("--source", type=Path, default=ONLINE_RETAIL)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-items", type=int, default=40)
    args = parser.parse_args(argv)
    panel, _, _ = online_retail_panel(args.source, panel_cache_dir())
    panel = with_categories(panel, args.min_items)
    found: dict[str, list[pd.DataFrame]] = {"validation": [], "test": []}
    timings = []
    for split, cutoffs in (("validation", VALIDATION), ("test", TEST)):
        for cutoff in cutoffs:
            scores, seconds = one_cutoff(panel, cutoff, args.threads)
            found[split].append(scores)
            timings.append({"cutoff": cutoff, **seconds})
            print(f"{split} {cutoff}: done", flush=True)
    validation = pd.concat(found["validation"])
    upper = validation[validation["level"].isin(["category", "total"])]
    ranking = upper[upper["method"] != "base"].groupby("method")["wape"].mean().sort_values()
    test = pd.concat(found["test"])
    report = {
        "min_items": args.min_items,
        "n_categories": int(panel.items["category"].nunique()),
        "threads": args.threads,
        "lightgbm": LIGHTGBM,
        "chosen": str(ranking.index[0]),
        "validation_ranking": {str(k): float(v) for k, v in ranking.items()},
        "validation_mean": _means(validation),
        "test_mean": _means(test),
        "per_cutoff": _means_per_cutoff(pd.concat([validation, test])),
        "timings": timings,
    }
    path = write_results("levels", report, markdown, args.out, argv)
    print(path.with_suffix(".md").read_text())
    return 0


def _means_per_cutoff(scores: pd.DataFrame) -> list[dict[str, Any]]:
    columns = ["cutoff", "method", "level", "series", "cells", "wape", "bias"]
    records = scores[columns].to_dict(orient="records")
    return [
        {k: (v.item() if isinstance(v, np.generic) else v) for k, v in r.items()} for r in records
    ]


if __name__ == "__main__":
    sys.exit(main())
