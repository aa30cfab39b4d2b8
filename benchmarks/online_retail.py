"""The Online Retail II benchmark protocol, for every baseline.

Protocol (shared by every issue, so numbers stay comparable): the panel prepared by
``salesformer prepare online-retail``; horizon 8 weeks; cutoffs (last training week)
2011-07-04, 2011-08-01, 2011-08-29, 2011-09-26; evaluated at a cutoff: items first sold at
least 13 weeks before it that sold at least once in the 13 weeks up to it.

Each model runs in its own process, so its fit+predict seconds and peak memory (peak resident
set size of that process: the loaded panel plus the model's work) are its own. Results:
``benchmarks/results/online_retail_ii.json`` and ``.md``.

Besides the registered names, ``--models`` takes ``LM-frozen``, ``LM-lora`` and ``LM-full``
(the LM forecaster per fine-tuning mode: "before vs after fine-tuning") and ``auto`` (whose LM
candidate fine-tunes with LoRA). Each model's forecasts are kept in ``--store`` (default
``benchmarks/results/forecasts``, not versioned): ``--reuse`` skips models already there, so
models can be run in separate invocations and the table is built from every model asked for.
The LM modes also keep each backtest fit's quantile-calibration report (factors, validation
wQL before/after) in ``<store>/<model>.calibration.json``; the JSON results collect them under
``lm_quantile_calibration``.

Usage::

    python benchmarks/online_retail.py [--source PATH] [--models a,b] [--out benchmarks/results]
        [--reuse] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from salesformer.data.contract import CUTOFF, DATE, ITEM_ID, Panel
from salesformer.evaluation.backtest import BacktestResult, backtest
from salesformer.evaluation.metrics import METRICS, evaluate
from salesformer.models.base import Forecaster
from salesformer.models.lm import LMForecaster
from salesformer.models.registry import BASELINES, make_model, resolve_name

HORIZON = 8
CUTOFFS = ("2011-07-04", "2011-08-01", "2011-08-29", "2011-09-26")
DEFAULT_SOURCE = (
    Path(__file__).resolve().parents[1].parent
    / "shared"
    / "datasets"
    / "online_retail_ii"
    / "online_retail_ii.parquet"
)
RESULTS = Path(__file__).resolve().parent / "results"


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB.

    ``VmHWM`` is reset by ``exec``, unlike ``ru_maxrss``, which on Linux keeps the parent's
    peak across ``fork`` + ``exec`` and would charge the parent's memory to the child.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


LM_MODES = {"LM-frozen": "frozen", "LM-lora": "lora", "LM-full": "full"}
#: Each LM fit's quantile-calibration report (factors, validation wQL before/after).
CALIBRATION_REPORTS: list[dict[str, Any]] = []


class RecordedLM(LMForecaster):
    """The LM forecaster, recording each fit's calibration report (backtests clone models)."""

    def _fit(self, panel: Panel) -> None:
        super()._fit(panel)
        report = self.fit_report_.get("calibration", {})
        CALIBRATION_REPORTS.append({"last_date": str(panel.last_date.date()), **report})


DEFAULT_MODELS = (*BASELINES, "LightGBM-text", *LM_MODES, "auto")


def build_model(spec: str, threads: int | None) -> Forecaster:
    """The forecaster behind a benchmark name (see the module docstring)."""
    lm: dict[str, Any] = {"horizon": HORIZON, "progress": False, "threads": threads}
    if spec in LM_MODES:
        return RecordedLM(finetune=LM_MODES[spec], **lm)
    name = resolve_name(spec)
    lightgbm = {"n_jobs": threads}
    if name == "auto":
        return make_model(
            "auto",
            horizon=HORIZON,
            candidate_settings={
                "LM": {**lm, "finetune": "lora"},
                "LightGBM": lightgbm,
                "LightGBM-text": lightgbm,
            },
        )
    if name in ("LightGBM", "LightGBM-text"):
        return make_model(name, **lightgbm)
    return make_model(name)


def spec_name(spec: str) -> str:
    return spec if spec in LM_MODES else resolve_name(spec)


def run_one(panel_dir: Path, spec: str, out_dir: Path, threads: int | None) -> None:
    """Child process: backtest one model, write its forecasts and its own cost."""
    panel = Panel.load(panel_dir)
    model = build_model(spec, threads)
    start = time.perf_counter()
    result = backtest([model], panel, HORIZON, list(CUTOFFS))
    wall = time.perf_counter() - start
    if model.name != spec:  # one column name per benchmark entry (LM-lora, not LM)
        result.forecasts.columns = [
            spec + c[len(model.name) :] if c == model.name or c.startswith(model.name + "-q") else c
            for c in result.forecasts.columns
        ]
    model_name = spec
    result.forecasts.to_parquet(out_dir / f"{model_name}.parquet", index=False)
    result.series.to_parquet(out_dir / "series.parquet", index=False)
    peak_mb = peak_rss_mb()
    cost = {
        "model": model_name,
        "fit_seconds": float(result.timings["fit_seconds"].sum()),
        "predict_seconds": float(result.timings["predict_seconds"].sum()),
        "wall_seconds": wall,
        "peak_rss_mb": peak_mb,
    }
    (out_dir / f"{model_name}.cost.json").write_text(json.dumps(cost))
    if CALIBRATION_REPORTS:
        text = json.dumps(CALIBRATION_REPORTS, indent=2, default=str)
        (out_dir / f"{model_name}.calibration.json").write_text(text + "\n")


def _markdown(overall: pd.DataFrame, costs: pd.DataFrame, meta: dict[str, object]) -> str:
    table = overall.merge(costs, on="model").sort_values("wape")
    columns = ["model", *METRICS, "fit_seconds", "predict_seconds", "peak_rss_mb"]
    lines = [
        "# Online Retail II benchmark: every model",
        "",
        f"Horizon {HORIZON} weeks; cutoffs {', '.join(CUTOFFS)}; "
        f"{meta['series']} evaluated series, {meta['cells']} cells. "
        "Generated by `python benchmarks/online_retail.py`.",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for _, row in table.iterrows():
        cells = [str(row["model"])]
        for column in columns[1:]:
            value = row[column]
            cells.append(
                "-" if pd.isna(value) else f"{value:.3f}" if column in METRICS else f"{value:.1f}"
            )
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Seconds are summed over the four cutoffs (conformal calibration refits included); "
        "peak RSS is the whole process (panel + model).",
        f"Machine: {meta['machine']}.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--store", type=Path, default=RESULTS / "forecasts")
    parser.add_argument("--reuse", action="store_true", help="skip models already in --store")
    parser.add_argument("--threads", type=int, default=None, help="threads per model")
    parser.add_argument(
        "--child", nargs=3, metavar=("PANEL", "MODEL", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.child:
        run_one(Path(args.child[0]), args.child[1], Path(args.child[2]), args.threads)
        return

    from salesformer.data.online_retail import prepare_online_retail

    if not args.source.is_file():
        sys.exit(f"dataset not found: {args.source}; pass --source PATH")
    names = [spec_name(n.strip()) for n in args.models.split(",") if n.strip()]
    work = args.store
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        panel, quality = prepare_online_retail(args.source)
        prepare_seconds = time.perf_counter() - start
        panel.save(Path(tmp) / "panel")
        costs, frames = [], []
        for name in names:
            done = (work / f"{name}.cost.json").is_file() and (work / f"{name}.parquet").is_file()
            if not (args.reuse and done):
                print(f"[{name}] backtesting ...", flush=True)
                command = [sys.executable, __file__, "--child", str(Path(tmp) / "panel"), name]
                command += [str(work)]
                if args.threads:
                    command += ["--threads", str(args.threads)]
                subprocess.run(command, check=True)
            cost = json.loads((work / f"{name}.cost.json").read_text())
            print(f"[{name}] {cost['wall_seconds']:.1f} s, peak {cost['peak_rss_mb']:.0f} MB")
            costs.append(cost)
            frames.append(pd.read_parquet(work / f"{name}.parquet"))
        series = pd.read_parquet(work / "series.parquet")
    keys = [ITEM_ID, CUTOFF, DATE, "y"]
    forecasts = frames[0]
    for frame in frames[1:]:
        forecasts = forecasts.merge(frame, on=keys, how="inner", validate="one_to_one")
    result = BacktestResult(
        forecasts,
        series,
        pd.DataFrame({"model": names}),
        HORIZON,
        [pd.Timestamp(c) for c in CUTOFFS],
    )
    scored = result.scored()
    overall = evaluate(scored, models=names)
    segments = {
        column: evaluate(scored, models=names, by=column).to_dict(orient="records")
        for column in ("history_segment", "intermittency")
    }
    cost_frame = pd.DataFrame(costs)
    meta = {
        "series": len(series),
        "cells": len(forecasts),
        "machine": f"{platform.machine()}, {platform.python_version()}, "
        f"{__import__('os').cpu_count()} cores",
    }
    report = {
        "protocol": {
            "horizon": HORIZON,
            "cutoffs": list(CUTOFFS),
            "min_history": 13,
            "active_within": 13,
        },
        "data": {**quality.to_dict(), "prepare_seconds": prepare_seconds},
        **meta,
        "overall": overall.merge(cost_frame, on="model").to_dict(orient="records"),
        "by_segment": segments,
        "lm_quantile_calibration": {
            name: json.loads((work / f"{name}.calibration.json").read_text())
            for name in names
            if (work / f"{name}.calibration.json").is_file()
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "online_retail_ii.json").write_text(
        json.dumps(report, indent=2, default=str) + "\n"
    )
    (args.out / "online_retail_ii.md").write_text(_markdown(overall, cost_frame, meta))
    print(_markdown(overall, cost_frame, meta))


if __name__ == "__main__":
    main()
