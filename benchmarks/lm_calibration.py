"""Which form of LM quantile calibration? Chosen on the 2011-07-04 cutoff of Online Retail II.

The LM forecaster (``calibrate_quantiles=False``: raw quantiles) is backtested at the
benchmark's choice cutoff 2011-07-04 only (its 8-week window ends 2011-08-29, before the test
windows of the inventory benchmark start). Its forecast cells are split by item into two
folds (crc32 of the item id); each form of :mod:`salesformer.models.lm.calibration` is fitted
on one fold and applied to the other, and the out-of-fold forecasts of both folds are scored
together (wQL on the sales scale; the median, so WAPE, is never changed). Forms:

- ``none``: raw quantiles;
- ``per level``: one factor per quantile level;
- ``per level x 3 volume buckets``: split at the 50th and 90th percentiles of the median
  forecast (the default of ``LMForecaster``);
- ``per level x 3 even buckets``: split at the 33rd and 67th percentiles.
- ``damping d + per level x 3 volume buckets``: first damp the median's log growth above the
  item's level (``log1p`` of its mean sales over the LM's 52-week history window) by the
  factor ``d`` (``LMForecaster.growth_damping``), then the default spread form. This moves
  the median, so WAPE is reported per form; the ``d`` of the least out-of-fold WAPE is the
  default (wQL as a tie-break).

Results: ``benchmarks/results/lm_calibration.json`` and ``.md``.

Usage::

    python benchmarks/lm_calibration.py [--finetune frozen] [--threads 1] [--source PATH]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from salesformer.data.contract import ITEM_ID
from salesformer.evaluation.backtest import backtest
from salesformer.models.base import quantile_column
from salesformer.models.lm import LMForecaster
from salesformer.models.lm.calibration import fit_calibration, sales_wql

HORIZON = 8
CUTOFF = "2011-07-04"
RESULTS = Path(__file__).resolve().parent / "results"
DEFAULT_SOURCE = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "datasets"
    / "online_retail_ii"
    / "online_retail_ii.parquet"
)
#: form -> (volume-bucket percentiles, growth damping), or None: raw quantiles.
FORMS: dict[str, tuple[tuple[float, ...], float] | None] = {
    "none": None,
    "per level": ((), 1.0),
    "per level x 3 volume buckets (50/90)": ((50.0, 90.0), 1.0),
    "per level x 3 even buckets (33/67)": ((100 / 3, 200 / 3), 1.0),
    **{
        f"damping {d:g} + per level x 3 volume buckets": ((50.0, 90.0), d)
        for d in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--finetune", default="frozen", choices=("frozen", "lora", "full"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    from salesformer.data.online_retail import prepare_online_retail

    if not args.source.is_file():
        sys.exit(f"dataset not found: {args.source}; pass --source PATH")
    started = time.perf_counter()
    panel, _ = prepare_online_retail(args.source)
    model = LMForecaster(
        finetune=args.finetune,
        horizon=HORIZON,
        threads=args.threads,
        progress=False,
        calibrate_quantiles=False,
    )
    result = backtest([model], panel, HORIZON, [CUTOFF])
    frame = result.forecasts
    levels = model.levels
    columns = [quantile_column(model.name, q) for q in levels]
    log_q = np.log1p(frame[columns].to_numpy(dtype=float))
    log_y = np.log1p(frame["y"].to_numpy(dtype=float))
    fold = np.array([zlib.crc32(str(i).encode()) % 2 for i in frame[ITEM_ID]])
    level = item_levels(panel, CUTOFF, frame[ITEM_ID].to_numpy())
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
        print(
            f"{name}: wQL {rows[-1]['out_of_fold_wql']:.4f} "
            f"WAPE {rows[-1]['out_of_fold_wape']:.4f}",
            flush=True,
        )
    damped = [r for r in rows if r["growth_damping"] is not None]
    chosen = min(damped, key=lambda r: (r["out_of_fold_wape"], r["out_of_fold_wql"]))
    report = {
        "model": f"LM-{args.finetune}",
        "chosen_growth_damping": chosen["growth_damping"],
        "cutoff": CUTOFF,
        "horizon": HORIZON,
        "cells": len(frame),
        "items": int(frame[ITEM_ID].nunique()),
        "forms": rows,
        "seconds": round(time.perf_counter() - started, 1),
    }
    lines = [
        "# LM quantile calibration: which form (choice cutoff 2011-07-04)",
        "",
        f"LM-{args.finetune} backtested at {CUTOFF} without calibration ({report['items']} "
        f"items, {report['cells']} cells); each form fitted on one item fold and applied to "
        "the other (2 folds by crc32 of the item id); out-of-fold wQL and WAPE over both "
        "folds (only the damping forms move the median, so WAPE). "
        "Generated by `python benchmarks/lm_calibration.py`.",
        "",
        "| form | out-of-fold wQL | out-of-fold WAPE |",
        "|---|---|---|",
        *(
            f"| {r['form']} | {r['out_of_fold_wql']:.4f} | {r['out_of_fold_wape']:.4f} |"
            for r in rows
        ),
        "",
        f"Chosen growth damping (least out-of-fold WAPE to 4 digits, then wQL; 1 is no "
        f"damping): {chosen['growth_damping']:g} (`GROWTH_DAMPING` in "
        "`salesformer.models.lm.calibration`).",
        "",
        f"{report['seconds']:.0f} s.",
        "",
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "lm_calibration.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (args.out / "lm_calibration.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
