"""Choose LightGBMForecaster's defaults on Online Retail II validation windows.

Only windows that end before the first test cutoff are used: cutoffs 2011-02-14, 03-14,
04-11 and 05-09 with horizon 8, so the last target week is 2011-07-04, the first test cutoff
(2011-07-04, 08-01, 08-29, 09-26 are never looked at). Evaluated items and metrics are those
of the benchmark protocol (:func:`salesformer.evaluation.backtest.backtest`): items first sold
at least 13 weeks before the cutoff that sold in the 13 weeks up to it; WAPE and weighted
quantile loss (WQL), averaged over the four cutoffs.

The loader declares every covariate past-only (the paid price is carried forward through
weeks without sales, so as a known-future covariate it would reveal which weeks sold).

Stages (each configuration is a full backtest through the public model):

1. point settings, compared by WAPE (their quantiles are not scored: one cheap median model);
2. quantiles for the best point settings: LightGBM quantile models vs log-scale conformal
   (the conformal run also applies the smearing bias correction, compared by WAPE).

Each run records its fit and predict seconds per cutoff and the peak resident memory of the
process during its backtest (the peak is reset before each run).

Usage::

    python -m benchmarks.tune_lightgbm [--source PATH] [--out benchmarks/results]
"""

from __future__ import annotations

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
    peak_rss_mb,
    reset_peak_rss,
    write_results,
)
from salesformer.data.contract import CUTOFF, ITEM_ID, SALES, Panel
from salesformer.evaluation.backtest import backtest, series_facts
from salesformer.models.base import DEFAULT_QUANTILES
from salesformer.models.lightgbm import LightGBMForecaster

HORIZON = 8
CUTOFFS = ("2011-02-14", "2011-03-14", "2011-04-11", "2011-05-09")
#: Stage 1 runs score point forecasts only: one small median model stands in for quantiles.
POINT_ONLY = {"quantile_levels": (0.5,), "quantile_thinning": 4}
BASE: dict[str, Any] = {
    "target": "log1p_offset",
    "n_origins": 26,
    "origin_step": 2,
    "num_leaves": 63,
    "learning_rate": 0.05,
    "n_estimators": 150,
    "min_data_in_leaf": 50,
    "feature_fraction": 0.8,
}
POINT_GRID: dict[str, dict[str, Any]] = {
    "base": {},
    "target=log1p": {"target": "log1p"},
    "target=log1p_scaled": {"target": "log1p_scaled"},
    "smaller trees": {
        "num_leaves": 31,
        "min_data_in_leaf": 100,
        "feature_fraction": 0.5,
        "n_estimators": 200,
    },
}
QUANTILE_GRID: dict[str, dict[str, Any]] = {
    "quantiles=lightgbm": {"quantile_method": "lightgbm"},
    "quantiles=conformal, bias_correction": {
        "quantile_method": "conformal",
        "bias_correction": True,
    },
}


def score(panel: Panel, settings: dict[str, Any], with_quantiles: bool) -> dict[str, Any]:
    """Backtest one configuration on the validation cutoffs; metrics per cutoff and mean."""
    rss_before = reset_peak_rss()
    start = time.perf_counter()
    model = LightGBMForecaster(**settings)
    levels = DEFAULT_QUANTILES if with_quantiles else ()
    result = backtest([model], panel, HORIZON, list(CUTOFFS), quantiles=levels)
    wall = time.perf_counter() - start
    metrics = ["wape", "wql", "bias", "coverage80"] if with_quantiles else ["wape", "bias"]
    per_cutoff = result.metrics(by=CUTOFF).set_index(CUTOFF)[metrics]
    seconds = result.timings.set_index(CUTOFF)[["fit_seconds", "predict_seconds"]]
    table = per_cutoff.join(seconds)
    return {
        "settings": settings,
        **{m: float(per_cutoff[m].mean()) for m in metrics},
        "per_cutoff": {
            str(pd.Timestamp(c).date()): {k: float(v) for k, v in row.items()}
            for c, row in table.iterrows()
        },
        "fit_seconds": float(seconds["fit_seconds"].sum()),
        "predict_seconds": float(seconds["predict_seconds"].sum()),
        "wall_seconds": wall,
        "rss_before_mb": rss_before,
        "peak_rss_mb": peak_rss_mb(),
    }


def simple_references(panel: Panel) -> dict[str, float]:
    """Mean WAPE over the cutoffs of the last value and of the 13-week mean, for scale."""
    scores: dict[str, list[float]] = {"Naive": [], "Mean13": []}
    for cutoff in pd.to_datetime(CUTOFFS):
        history = panel.until(cutoff).sales
        levels = {
            "Naive": history.groupby(ITEM_ID)[SALES].last(),
            "Mean13": history.groupby(ITEM_ID).tail(13).groupby(ITEM_ID)[SALES].mean(),
        }
        evaluated = series_facts(panel, cutoff, 13, 13)[ITEM_ID]
        actual = panel.window(cutoff, HORIZON)
        actual = actual.loc[actual[ITEM_ID].isin(evaluated)]
        y = actual[SALES].to_numpy()
        for name, level in levels.items():
            forecast = actual[ITEM_ID].map(level).to_numpy()
            scores[name].append(float(np.abs(y - forecast).sum() / y.sum()))
    return {name: float(np.mean(values)) for name, values in scores.items()}


def run_stage(
    panel: Panel,
    grid: dict[str, dict[str, Any]],
    base: dict[str, Any],
    with_quantiles: bool = True,
) -> list[dict]:
    """Score every configuration of ``grid`` (each a change to ``base``)."""
    rows = []
    for name, change in grid.items():
        row = {"name": name, **score(panel, {**base, **change}, with_quantiles)}
        rows.append(row)
        wql = f"  WQL {row['wql']:.4f}" if with_quantiles else ""
        print(
            f"  {name:40s} WAPE {row['wape']:.4f}{wql}  fit {row['fit_seconds']:.0f}s",
            flush=True,
        )
    return rows


def best(rows: list[dict], metric: str) -> dict:
    return min(rows, key=lambda row: row[metric])


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__, __file__)
    parser.add_argument("--source", type=Path, default=ONLINE_RETAIL)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    panel, _, _ = online_retail_panel(args.source, panel_cache_dir())
    print("stage 1: point settings (WAPE)", flush=True)
    point = run_stage(panel, POINT_GRID, {**BASE, **POINT_ONLY}, with_quantiles=False)
    chosen_point = {**BASE, **POINT_GRID[best(point, "wape")["name"]]}
    print("stage 2: quantile method (WQL) and bias correction (WAPE)", flush=True)
    quantile = run_stage(panel, QUANTILE_GRID, chosen_point)
    by_name = {row["name"]: row for row in quantile}
    lightgbm_row = by_name["quantiles=lightgbm"]
    conformal_row = by_name["quantiles=conformal, bias_correction"]
    method = "lightgbm" if lightgbm_row["wql"] <= conformal_row["wql"] else "conformal"
    chosen = {
        **chosen_point,
        "quantile_method": method,
        "bias_correction": conformal_row["wape"] < lightgbm_row["wape"],
    }
    chosen_row = lightgbm_row if method == "lightgbm" else conformal_row
    last = CUTOFFS[-1]
    cost = {
        "cutoff": last,
        **chosen_row["per_cutoff"][last],
        "peak_rss_mb": chosen_row["peak_rss_mb"],
        "rss_before_mb": chosen_row["rss_before_mb"],
    }
    report = {
        "protocol": {
            "dataset": "Online Retail II, salesformer.data.online_retail.prepare_online_retail",
            "horizon": HORIZON,
            "validation_cutoffs": list(CUTOFFS),
            "evaluated_items": "first sold >= 13 weeks before the cutoff and sold in the "
            "13 weeks up to it",
            "metrics": "wape = sum|e| / sum y; wql = mean over q10..q90 of 2 sum pinball / sum y; "
            "means over the cutoffs",
            "covariates": f"known-future {list(panel.known_future)}, "
            f"past-only {list(panel.past_only)}",
        },
        "simple_references_wape": simple_references(panel),
        "stage_1_point": point,
        "stage_2_quantiles": quantile,
        "chosen": chosen,
        "defaults_match_chosen": all(
            getattr(LightGBMForecaster(), key) == value for key, value in chosen.items()
        ),
        "cost_at_one_cutoff": cost,
        "machine": machine_line(),
        "wall_seconds": time.perf_counter() - start,
    }
    path = write_results("lightgbm_tuning", report, None, args.out, argv)
    print(f"chosen: {chosen}\ncost at {last}: {cost}\nwrote {path}")


if __name__ == "__main__":
    main()
