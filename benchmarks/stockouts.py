"""Stock-outs: bias and WAPE against true demand, with and without masking the empty shelves.

The synthetic catalogue with stock-outs (``generate_catalogue(stockout_rate=...)``) keeps each
week's true demand aside; its recorded sales fall short of it in out-of-stock weeks. Every model
is backtested (rolling origin) on three versions of the same panel:

- ``unmasked``: the recorded sales without the ``in_stock`` column (empty shelves read as low
  demand: what happens when availability is not given);
- ``masked``: the recorded sales with ``in_stock`` (LightGBM drops those target rows and reads
  imputed lags; the statistical baselines fit the imputed series);
- ``true demand``: the demand itself (a bound no shop has: what the model would do with
  uncensored data).

Every forecast is scored against the true demand of its week, out-of-stock weeks included, on
the cells all three versions forecast: ``bias`` = sum(forecast - demand) / sum(demand), ``wape``
= sum|forecast - demand| / sum(demand). Results: ``<out>/stockouts.{json,md}``.

Usage::

    python -m benchmarks.stockouts [--items 200] [--weeks 104] [--rate 0.1] [--seeds 0,1]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.harness import RESULTS, argument_parser, machine_line, write_results

MODELS = ("LightGBM", "WindowAverage", "AutoETS")
VARIANTS = ("unmasked", "masked", "true demand")
HORIZON = 8
WINDOWS = 3


def panels(items: int, weeks: int, rate: float, seed: int) -> tuple[dict[str, Any], pd.DataFrame]:
    """The three panels of one catalogue, and its true demand."""
    from salesformer.data.contract import SALES, validate_panel
    from salesformer.data.synthetic import generate_catalogue

    catalogue = generate_catalogue(n_items=items, n_weeks=weeks, seed=seed, stockout_rate=rate)
    assert catalogue.demand is not None
    recorded = catalogue.sales
    demand = recorded.drop(columns="in_stock").assign(**{SALES: catalogue.demand["demand"]})
    versions = {
        "unmasked": recorded.drop(columns="in_stock"),
        "masked": recorded,
        "true demand": demand,
    }
    built = {
        name: validate_panel(frame, catalogue.items, freq="W-MON")
        for name, frame in versions.items()
    }
    return built, catalogue.demand


def score(forecasts: pd.DataFrame, model: str) -> dict[str, float]:
    """Bias and WAPE of ``model`` against the ``demand`` column."""
    error = forecasts[model] - forecasts["demand"]
    total = float(forecasts["demand"].sum())
    return {"bias": float(error.sum()) / total, "wape": float(error.abs().sum()) / total}


def run_seed(items: int, weeks: int, rate: float, seed: int, threads: int) -> list[dict[str, Any]]:
    from salesformer.data.contract import CUTOFF, DATE, ITEM_ID
    from salesformer.evaluation.backtest import backtest
    from salesformer.models.registry import make_model

    built, demand = panels(items, weeks, rate, seed)
    out_share = float((~built["masked"].sales["in_stock"]).mean())
    keys = [ITEM_ID, CUTOFF, DATE]
    frames: dict[str, pd.DataFrame] = {}
    seconds: dict[str, float] = {}
    for variant, panel in built.items():
        models = [make_model(m, n_jobs=threads) for m in MODELS]
        start = time.perf_counter()
        result = backtest(models, panel, HORIZON, n_windows=WINDOWS, quantiles=())
        seconds[variant] = time.perf_counter() - start
        frames[variant] = result.forecasts.merge(demand, on=[ITEM_ID, DATE], how="left")
    common = frames["masked"][[*keys, "in_stock"]]
    for variant in VARIANTS:
        common = common.merge(frames[variant][keys], on=keys)
    rows = []
    for variant in VARIANTS:
        cells = common.merge(frames[variant].drop(columns="in_stock", errors="ignore"), on=keys)
        out_cells = cells.loc[~cells["in_stock"].to_numpy(dtype=bool)]
        for model in MODELS:
            rows.append(
                {
                    "seed": seed,
                    "variant": variant,
                    "model": model,
                    "cells": len(cells),
                    "out_of_stock_cells": len(out_cells),
                    "out_of_stock_share_of_panel": out_share,
                    **score(cells, model),
                    "wape_out_of_stock_cells": score(out_cells, model)["wape"],
                    "backtest_seconds": seconds[variant],
                }
            )
    return rows


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per model and variant: the mean over seeds of each metric."""
    frame = pd.DataFrame(rows)
    metrics = ["bias", "wape", "wape_out_of_stock_cells"]
    means = frame.groupby(["model", "variant"], sort=False)[metrics].mean().reset_index()
    return [
        {k: (float(v) if isinstance(v, np.floating) else v) for k, v in row.items()}
        for row in means.to_dict(orient="records")
    ]


def markdown(report: dict[str, Any]) -> str:
    settings = report["settings"]
    lines = [
        "# Stock-outs: forecasts scored against true demand",
        "",
        f"Synthetic catalogue, {settings['items']} items x {settings['weeks']} weeks, stock-out "
        f"rate {settings['rate']} (seeds {settings['seeds']}); backtest horizon {HORIZON}, "
        f"{WINDOWS} windows; every cell scored against the true demand of its week. Generated "
        f"by `{report['provenance']['command']}` at commit {report['provenance']['commit']}.",
        "",
        "| model | panel | bias | WAPE | WAPE on out-of-stock weeks |",
        "|---|---|---|---|---|",
    ]
    for row in report["summary"]:
        lines.append(
            f"| {row['model']} | {row['variant']} | {row['bias']:+.3f} | {row['wape']:.3f} | "
            f"{row['wape_out_of_stock_cells']:.3f} |"
        )
    lines += [
        "",
        "`unmasked`: recorded sales, no availability column; `masked`: recorded sales with "
        "`in_stock`; `true demand`: the uncensored demand (a bound). Means over seeds; the "
        "JSON has each seed.",
        "",
        f"Machine: {machine_line()}; {report['threads']} thread(s).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(__doc__, __file__)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--weeks", type=int, default=104)
    parser.add_argument("--rate", type=float, default=0.1)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    rows = []
    for seed in seeds:
        rows += run_seed(args.items, args.weeks, args.rate, seed, args.threads)
    report = {
        "settings": {
            "items": args.items,
            "weeks": args.weeks,
            "rate": args.rate,
            "seeds": seeds,
            "horizon": HORIZON,
            "windows": WINDOWS,
            "models": list(MODELS),
        },
        "threads": args.threads,
        "summary": summary(rows),
        "rows": rows,
    }
    path = write_results("stockouts", report, markdown, args.out, argv)
    print(path.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
