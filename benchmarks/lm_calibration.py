"""Which LM quantile calibration and growth damping? Chosen on the validation cutoffs.

The LM forecaster, with neither calibration nor damping (``calibrate_quantiles=False``,
``growth_damping=1``: raw network output), is backtested at the Online Retail II validation
cutoffs (2011-03-07, 2011-04-04, 2011-05-02; their 8-week windows end before the first test
cutoff, 2011-07-04). Its forecast cells are split by item into two folds (crc32 of the item
id); each form of :mod:`salesformer.models.lm.calibration` is fitted on one fold and applied to
the other, and the out-of-fold forecasts of both folds are scored together (wQL on the sales
scale; the median, so WAPE, moves only with the damping). Forms:

- ``none``: raw quantiles;
- ``per level``: one factor per quantile level;
- ``per level x 3 volume buckets``: split at the 50th and 90th percentiles of the median
  forecast (the default of ``LMForecaster``);
- ``per level x 3 even buckets``: split at the 33rd and 67th percentiles.
- ``damping d + per level x 3 volume buckets``: first damp the median's log growth above the
  item's level (``log1p`` of its mean sales over the LM's 52-week history window) by the
  factor ``d`` (``LMForecaster.growth_damping``), then the default spread form. The ``d`` of
  the least out-of-fold WAPE is the default (wQL as a tie-break); ``d = 1`` is no damping.

Results: ``benchmarks/results/lm_calibration.json`` and ``.md``, per cutoff and pooled; the raw
forecasts are kept in ``benchmarks/results/forecasts/validation-raw/`` (not versioned).

Usage::

    python -m benchmarks.lm_calibration [--finetune lora] [--seed 0] [--threads 1]
        [--source PATH]
"""

from __future__ import annotations

import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.harness import (
    ONLINE_RETAIL,
    RESULTS,
    argument_parser,
    online_retail_panel,
    require_file,
    write_results,
)
from benchmarks.online_retail import HORIZON, VALIDATION_CUTOFFS
from salesformer.data.contract import CUTOFF, ITEM_ID
from salesformer.evaluation.backtest import backtest
from salesformer.models.base import quantile_column
from salesformer.models.lm import LMForecaster
from salesformer.models.lm.calibration import fit_calibration, sales_wql

#: form -> (volume-bucket percentiles, growth damping), or None: raw quantiles.
FORMS: dict[str, tuple[tuple[float, ...], float] | None] = {
    "none": None,
    "per level": ((), 1.0),
    "per level x 3 volume buckets (50/90)": ((50.0, 90.0), 1.0),
    "per level x 3 even buckets (33/67)": ((100 / 3, 200 / 3), 1.0),
    **{
        f"damping {d:g} + per level x 3 volume buckets": ((50.0, 90.0), d)
        for d in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
    },
}
CONTEXT = 52


def item_levels(panel: Any, cutoff: str, item_ids: np.ndarray) -> np.ndarray:
    """Each item's level at ``cutoff`` as the LM computes it: log1p of its mean sales over the
    observed part of the last ``CONTEXT`` weeks."""
    from salesformer.models.lm.samples import Wide

    wide = Wide.from_panel(panel.until(cutoff))
    t = wide.n_history
    cols = np.arange(t - CONTEXT, t)
    seen = (cols[None, :] >= 0) & (cols[None, :] >= wide.first[:, None])
    window = np.where(seen, wide.sales[:, np.clip(cols, 0, t - 1)], 0.0)
    count = seen.sum(axis=1)
    mean = np.where(count > 0, window.sum(axis=1) / np.maximum(count, 1), 0.0)
    row = pd.Index(wide.item_ids).get_indexer(item_ids.astype(str))
    return np.log1p(mean[row])


def out_of_fold(
    log_q: np.ndarray,
    log_y: np.ndarray,
    level: np.ndarray,
    fold: np.ndarray,
    levels: tuple[float, ...],
    form: Any,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Quantiles of each fold calibrated with factors fitted on the other fold."""
    if form is None:
        return log_q, []
    out = log_q.copy()
    reports = []
    for k in (0, 1):
        train, test = fold != k, fold == k
        percentiles, damping = form
        calibration, report = fit_calibration(
            log_q[train],
            log_y[train],
            levels,
            percentiles=percentiles,
            level=level[train],
            growth_damping=damping,
        )
        out[test] = calibration.apply(log_q[test], level=level[test])
        reports.append(report)
    return out, reports


def cutoff_levels(panel: Any, frame: pd.DataFrame) -> np.ndarray:
    """Each forecast row's item level at its own cutoff."""
    level = np.zeros(len(frame))
    for cutoff, rows in frame.groupby(CUTOFF, sort=True).groups.items():
        index = frame.index.get_indexer(rows)
        ids = frame.loc[rows, ITEM_ID].to_numpy()
        level[index] = item_levels(panel, str(pd.Timestamp(cutoff).date()), ids)
    return level


def score_forms(frame: pd.DataFrame, levels: tuple[float, ...], level: np.ndarray) -> list[dict]:
    """Out-of-fold wQL and WAPE of every form over the rows of ``frame``."""
    columns = [quantile_column("LM", q) for q in levels]
    log_q = np.log1p(frame[columns].to_numpy(dtype=float))
    log_y = np.log1p(frame["y"].to_numpy(dtype=float))
    fold = np.array([zlib.crc32(str(i).encode()) % 2 for i in frame[ITEM_ID]])
    actual = frame["y"].to_numpy(dtype=float)
    middle = levels.index(0.5)
    rows = []
    for name, form in FORMS.items():
        calibrated, reports = out_of_fold(log_q, log_y, level, fold, levels, form)
        median = np.expm1(calibrated[:, middle])
        rows.append(
            {
                "form": name,
                "growth_damping": None if form is None else form[1],
                "out_of_fold_wql": round(sales_wql(calibrated, log_y, levels), 4),
                "out_of_fold_wape": round(float(np.abs(actual - median).sum() / actual.sum()), 4),
                "fold_reports": reports,
            }
        )
    return rows


def markdown(report: dict[str, Any]) -> str:
    """The pooled table, WAPE per cutoff and the choice."""
    cutoffs = list(report["per_cutoff"])
    lines = [
        "# LM quantile calibration and growth damping, chosen on the validation cutoffs",
        "",
        f"{report['model']} (seed {report['seed']}) backtested at {', '.join(cutoffs)} without "
        f"calibration or damping ({report['cells']} cells); each form fitted on one item fold "
        "and applied to the other (2 folds by crc32 of the item id); out-of-fold wQL and WAPE "
        "over both folds (only the damping forms move the median, so WAPE). Generated by "
        f"`{report['provenance']['command']}` at commit {report['provenance']['commit']}.",
        "",
        "| form | out-of-fold wQL | out-of-fold WAPE | "
        + " | ".join(f"WAPE {c}" for c in cutoffs)
        + " |",
        "|---|---|---|" + "---|" * len(cutoffs),
    ]
    per_cutoff = {c: {r["form"]: r for r in rows} for c, rows in report["per_cutoff"].items()}
    for row in report["forms"]:
        cells = [f"{per_cutoff[c][row['form']]['out_of_fold_wape']:.4f}" for c in cutoffs]
        lines.append(
            f"| {row['form']} | {row['out_of_fold_wql']:.4f} | {row['out_of_fold_wape']:.4f} | "
            + " | ".join(cells)
            + " |"
        )
    lines += [
        "",
        "Chosen growth damping (least pooled out-of-fold WAPE to 4 digits, then wQL; 1 is no "
        f"damping): {report['chosen_growth_damping']:g} (`GROWTH_DAMPING` in "
        "`salesformer.models.lm.calibration`).",
        "",
        f"{report['seconds']:.0f} s.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__, __file__)
    parser.add_argument("--finetune", default="lora", choices=("frozen", "lora", "full"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--source", type=Path, default=ONLINE_RETAIL)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    require_file(args.source)
    started = time.perf_counter()
    panel, _, _ = online_retail_panel(args.source)
    model = LMForecaster(
        finetune=args.finetune,
        horizon=HORIZON,
        threads=args.threads,
        progress=False,
        seed=args.seed,
        calibrate_quantiles=False,
        growth_damping=1.0,
    )
    result = backtest([model], panel, HORIZON, list(VALIDATION_CUTOFFS))
    frame = result.forecasts.reset_index(drop=True)
    store = RESULTS / "forecasts" / "validation-raw"
    store.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(store / f"LM-{args.finetune}_s{args.seed}.parquet", index=False)
    levels = model.levels
    level = cutoff_levels(panel, frame)
    rows = score_forms(frame, levels, level)
    per_cutoff = {}
    for cutoff, part in frame.groupby(CUTOFF, sort=True):
        index = part.index.to_numpy()
        scored = score_forms(part.reset_index(drop=True), levels, level[index])
        per_cutoff[str(pd.Timestamp(cutoff).date())] = [
            {k: v for k, v in r.items() if k != "fold_reports"} for r in scored
        ]
    for row in rows:
        print(
            f"{row['form']}: wQL {row['out_of_fold_wql']:.4f} WAPE {row['out_of_fold_wape']:.4f}",
            flush=True,
        )
    damped = [r for r in rows if r["growth_damping"] is not None]
    chosen = min(damped, key=lambda r: (r["out_of_fold_wape"], r["out_of_fold_wql"]))
    report = {
        "model": f"LM-{args.finetune}",
        "seed": args.seed,
        "chosen_growth_damping": chosen["growth_damping"],
        "cutoffs": list(VALIDATION_CUTOFFS),
        "horizon": HORIZON,
        "cells": len(frame),
        "items": int(frame[ITEM_ID].nunique()),
        "forms": rows,
        "per_cutoff": per_cutoff,
        "seconds": round(time.perf_counter() - started, 1),
    }
    path = write_results("lm_calibration", report, markdown, args.out, argv)
    print(path.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
