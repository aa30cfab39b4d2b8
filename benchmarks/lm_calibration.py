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
FORMS: dict[str, tuple[float, ...] | None] = {
    "none": None,
    "per level": (),
    "per level x 3 volume buckets (50/90, default)": (50.0, 90.0),
    "per level x 3 even buckets (33/67)": (100 / 3, 200 / 3),
}


def out_of_fold(
    log_q: np.ndarray, log_y: np.ndarray, fold: np.ndarray, levels: tuple[float, ...], form: Any
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Quantiles of each fold calibrated with factors fitted on the other fold."""
    if form is None:
        return log_q, []
    out = log_q.copy()
    reports = []
    for k in (0, 1):
        train, test = fold != k, fold == k
        calibration, report = fit_calibration(log_q[train], log_y[train], levels, percentiles=form)
        out[test] = calibration.apply(log_q[test])
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
    median = frame[model.name].to_numpy(dtype=float)
    wape = float(np.abs(frame["y"] - median).sum() / frame["y"].abs().sum())
    rows = []
    for name, form in FORMS.items():
        calibrated, reports = out_of_fold(log_q, log_y, fold, levels, form)
        rows.append(
            {
                "form": name,
                "out_of_fold_wql": round(sales_wql(calibrated, log_y, levels), 4),
                "wape": round(wape, 4),
                "fold_reports": reports,
            }
        )
        print(f"{name}: wQL {rows[-1]['out_of_fold_wql']:.4f}", flush=True)
    report = {
        "model": f"LM-{args.finetune}",
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
        "the other (2 folds by crc32 of the item id); out-of-fold wQL over both folds. WAPE "
        f"is the same for every form ({wape:.3f}): the median is never changed. "
        "Generated by `python benchmarks/lm_calibration.py`.",
        "",
        "| form | out-of-fold wQL |",
        "|---|---|",
        *(f"| {r['form']} | {r['out_of_fold_wql']:.4f} |" for r in rows),
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
