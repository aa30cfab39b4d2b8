"""The LM's curve-pretraining stage (``LM.pretrain=curves``) against the stages without it.

Validation only (issue 15): nothing here runs a test cutoff or a test launch. Two parts, each
arm run once per seed of ``--seeds`` in its own child process:

- ``cold-start``: the validation split of ``benchmarks.cold_start`` (new launches first sold
  2010-07-12 .. 2010-10-04, the LM fitted on the history up to 2010-07-05); the product's
  ``predict_new`` scored on weeks 0..11 from each launch (WAPE, wQL).
- ``existing``: the validation cutoffs of ``benchmarks.online_retail`` (horizon 8, the same
  evaluated series: first sold 13 weeks before the cutoff and sold in the 13 weeks up to it).
  ``--items N`` backtests a seeded sample of N items (the same for every arm and seed) and
  ``--cutoffs`` some of the validation cutoffs, when the whole protocol is too slow for the
  machine; the results file says so.

Arms: ``LM-frozen``, ``LM-lora``, ``LM-lora-curves`` (LoRA after the pretraining stage) and
``LM-frozen-curves`` (the pretrained adapter, no forecasting fine-tune). Everything else is
the LM's defaults. A model beats another only where its worst seed beats the other's best.
Each run is kept in ``--store`` (``--reuse`` skips finished runs). Results:
``<out>/lm_pretrain_validation.{json,md}``.

Usage::

    python -m benchmarks.lm_pretrain [--parts cold-start,existing] [--arms A,B]
        [--seeds 0,1,2] [--items N] [--cutoffs C1,C2] [--threads 1] [--reuse] [--store DIR]
        [--collect]  (summarise the finished runs in --store, start none)
"""

from __future__ import annotations

import json
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
    peak_rss_mb,
    require_file,
    run_module,
    write_results,
)
from benchmarks.online_retail import select_cutoffs

ARMS: dict[str, dict[str, Any]] = {
    "LM-frozen": {"finetune": "frozen"},
    "LM-lora": {"finetune": "lora"},
    "LM-lora-curves": {"finetune": "lora", "pretrain": "curves"},
    "LM-frozen-curves": {"finetune": "frozen", "pretrain": "curves"},
}
PARTS = ("cold-start", "existing")
SEEDS = (0, 1, 2)
ITEM_SAMPLE_SEED = 0
METRICS = ("wape", "wql")


def item_sample(panel: Any, n: int) -> Any:
    """The panel restricted to a seeded sample of ``n`` items (all of them when ``n`` is 0)."""
    ids = np.sort(np.asarray(panel.item_ids).astype(str))
    if n <= 0 or n >= len(ids):
        return panel
    keep = set(np.random.default_rng(ITEM_SAMPLE_SEED).choice(ids, n, replace=False))
    return _restrict(panel, keep)


def _restrict(panel: Any, keep: set[str]) -> Any:
    from dataclasses import replace

    from salesformer.data.contract import ITEM_ID

    sales = panel.sales[panel.sales[ITEM_ID].astype(str).isin(keep)].reset_index(drop=True)
    items = panel.items[panel.items[ITEM_ID].astype(str).isin(keep)].reset_index(drop=True)
    return replace(panel, sales=sales, items=items)


def lm_settings(arm: str, seed: int, threads: int, horizon: int) -> dict[str, Any]:
    return {**ARMS[arm], "seed": seed, "threads": threads, "horizon": horizon, "progress": False}


def run_cold_start(arm: str, seed: int, threads: int) -> dict[str, Any]:
    """Fit one arm on the validation split's history and score its launch forecasts."""
    from benchmarks.cold_start import SPLITS, WEEKS, _scored_launches
    from salesformer.evaluation.cold_start import launch_table, score
    from salesformer.evaluation.metrics import coverage80, wql
    from salesformer.models.lm import LMForecaster

    split = SPLITS["validation"]
    panel, _, _ = online_retail_panel(ONLINE_RETAIL, panel_cache_dir())
    new = launch_table(panel, *split.new_window, weeks=WEEKS)
    history = panel.until(split.history_cutoff)
    model = LMForecaster(**lm_settings(arm, seed, threads, WEEKS))
    started = time.perf_counter()
    model.fit(history)
    fit_seconds = time.perf_counter() - started
    forecast, scored, report, _, predict_seconds = _scored_launches(
        model, new.inputs(), new, fit_seconds
    )
    return {
        **score(new.targets, forecast),
        "wql": wql(scored, "LM"),
        "coverage80": coverage80(scored, "LM"),
        "launches": len(new),
        "fit_seconds": fit_seconds,
        "predict_seconds": predict_seconds,
        "report": _report(report),
    }


def run_existing(arm: str, seed: int, threads: int, items: int, only: str) -> dict[str, Any]:
    """Backtest one arm on the validation cutoffs of the main protocol (``only``: some)."""
    from benchmarks.online_retail import HORIZON, score_arms, select_cutoffs
    from salesformer.evaluation.backtest import backtest
    from salesformer.models.lm import LMForecaster

    panel, _, _ = online_retail_panel(ONLINE_RETAIL, panel_cache_dir())
    panel = item_sample(panel, items)
    model = LMForecaster(**lm_settings(arm, seed, threads, HORIZON))
    started = time.perf_counter()
    cutoffs = select_cutoffs("validation", only)
    result = backtest([model], panel, HORIZON, cutoffs)
    seconds = time.perf_counter() - started
    scores = score_arms(panel, result.forecasts, cutoffs, [model.name])
    overall = scores["overall"][0]
    per_cutoff = {str(r["cutoff"])[:10]: r["wape"] for r in scores["per_cutoff"]}
    return {
        "wape": overall["wape"],
        "wql": overall["wql"],
        "coverage80": overall.get("coverage80"),
        "wape_per_cutoff": per_cutoff,
        "items": len(panel.item_ids),
        "cells": scores["cells"],
        "fit_seconds": float(result.timings["fit_seconds"].sum()),
        "wall_seconds": seconds,
        "report": _report(getattr(model, "fit_report_", {})),
    }


def _report(report: dict[str, Any]) -> dict[str, Any]:
    """What a results row keeps of a fit report: the stages, without the epoch histories."""
    kept: dict[str, Any] = {}
    for key in ("pretrain", "head", "finetune_stage"):
        if key in report:
            kept[key] = {k: v for k, v in report[key].items() if k != "history"}
    return kept


def run_child(part: str, arm: str, seed: int, args: Any) -> None:
    row = (
        run_cold_start(arm, seed, args.threads)
        if part == "cold-start"
        else run_existing(arm, seed, args.threads, args.items, args.cutoffs)
    )
    row.update({"part": part, "arm": arm, "seed": seed, "peak_rss_mb": peak_rss_mb()})
    (args.store / f"{part}_{arm}_s{seed}.json").write_text(json.dumps(row, default=str))


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean, min and max over seeds of every arm's metrics, per part."""
    out = []
    frame = pd.DataFrame(rows)
    for (part, arm), group in frame.groupby(["part", "arm"], sort=False):
        row: dict[str, Any] = {"part": part, "arm": arm, "seeds": sorted(group["seed"])}
        for column in (*METRICS, "coverage80", "fit_seconds"):
            values = group[column].dropna().astype(float)
            if len(values):
                row[column] = float(values.mean())
                row[f"{column}_min"] = float(values.min())
                row[f"{column}_max"] = float(values.max())
        kept = [r.get("finetune_stage", {}).get("improved") for r in group["report"]]
        row["finetune_kept"] = sum(bool(k) for k in kept)
        ranks = [r["pretrain"].get("neighbour_rank") for r in group["report"] if "pretrain" in r]
        if ranks and all(ranks):
            row["neighbour_rank"] = {k: float(np.mean([g[k] for g in ranks])) for k in ranks[0]}
        out.append(row)
    return out


def clear_wins(summary: list[dict[str, Any]], metric: str) -> list[str]:
    """``A < B`` (per part) where A's worst seed beats B's best."""
    wins = []
    for a in summary:
        for b in summary:
            comparable = a["part"] == b["part"] and a is not b and metric in a and metric in b
            if comparable and a[f"{metric}_max"] < b[f"{metric}_min"]:
                wins.append(f"{a['part']}: {a['arm']} < {b['arm']}")
    return wins


def _cell(row: dict[str, Any], metric: str) -> str:
    if metric not in row:
        return "-"
    return f"{row[metric]:.3f} [{row[metric + '_min']:.3f}, {row[metric + '_max']:.3f}]"


def _kept(row: dict[str, Any]) -> str:
    if ARMS[row["arm"]]["finetune"] == "frozen":
        return "-"
    return f"{row['finetune_kept']}/{len(row['seeds'])}"


def markdown(report: dict[str, Any]) -> str:
    prov = report["provenance"]
    lines = [
        "# LM curve pretraining on validation (issue 15)",
        "",
        f"Generated by `{prov['command']}` at commit {prov['commit']}. Seeds "
        f"{report['seeds']}: mean [min, max]; a win only where the worst seed beats the "
        "other's best. Validation only: no test cutoff or test launch was run.",
        "",
        *[f"- {part}: {text}" for part, text in report["protocol"].items()],
        "",
        "| part | arm | WAPE | wQL | coverage 10-90 | fine-tune kept | fit s |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["summary"]:
        lines.append(
            f"| {row['part']} | {row['arm']} | {_cell(row, 'wape')} | {_cell(row, 'wql')} | "
            f"{row.get('coverage80', float('nan')):.3f} | "
            f"{_kept(row)} | {row.get('fit_seconds', 0):.0f} |"
        )
    lines += ["", "## Curve-neighbour rank of the text vectors (mean over seeds)", ""]
    lines += [
        "How high an item's curve neighbours rank among every item with a curve by text "
        "cosine (share of items less similar; 0.5 is chance); held-out items took no part "
        "in the pairs.",
        "",
        "| part | arm | trained before | trained after | held-out before | held-out after |",
        "|---|---|---|---|---|---|",
    ]
    for row in report["summary"]:
        gap = row.get("neighbour_rank")
        if gap:
            lines.append(
                f"| {row['part']} | {row['arm']} | {gap['trained_before']:.4f} | "
                f"{gap['trained_after']:.4f} | {gap['held_out_before']:.4f} | "
                f"{gap['held_out_after']:.4f} |"
            )
    lines += ["", "## Existing items: WAPE per validation cutoff", ""]
    per = [r for r in report["runs"] if r["part"] == "existing"]
    if per:
        cutoffs = sorted(per[0]["wape_per_cutoff"])
        lines += [
            "| arm | seed | " + " | ".join(cutoffs) + " |",
            "|---|---|" + "---|" * len(cutoffs),
        ]
        for r in per:
            values = " | ".join(f"{r['wape_per_cutoff'][c]:.3f}" for c in cutoffs)
            lines.append(f"| {r['arm']} | {r['seed']} | {values} |")
    lines += ["", "## Clear wins", ""]
    for metric in METRICS:
        lines.append(f"- {metric}: " + ("; ".join(clear_wins(report["summary"], metric)) or "none"))
    if report.get("not_run"):
        lines += ["", "Runs not finished in time (left out): " + "; ".join(report["not_run"])]
    lines += ["", f"Decision: {report['decision']}", "", machine_line()]
    return "\n".join(lines)


def decide(summary: list[dict[str, Any]]) -> str:
    """Whether pretraining + LoRA beat the frozen encoder beyond the seed spread on both parts."""
    verdicts = []
    for part in sorted({r["part"] for r in summary}):
        rows = {r["arm"]: r for r in summary if r["part"] == part}
        if "LM-lora-curves" not in rows or "LM-frozen" not in rows:
            verdicts.append(f"{part}: not run")
            continue
        a, b = rows["LM-lora-curves"], rows["LM-frozen"]
        win = all(a[f"{m}_max"] < b[f"{m}_min"] for m in METRICS)
        verdicts.append(f"{part}: LM-lora-curves {'beats' if win else 'does not beat'} LM-frozen")
    return "; ".join(verdicts)


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(__doc__, __file__)
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--arms", default="LM-frozen,LM-lora,LM-lora-curves")
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)))
    parser.add_argument("--items", type=int, default=0, help="existing: a seeded item sample")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cutoffs", default="", help="existing: some validation cutoffs")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--store", type=Path, default=RESULTS / "forecasts" / "lm_pretrain")
    parser.add_argument("--reuse", action="store_true", help="skip runs already in --store")
    parser.add_argument("--no-write", action="store_true", help="run, write no results file")
    parser.add_argument(
        "--collect", action="store_true", help="start no run: summarise the finished ones"
    )
    parser.add_argument("--child", nargs=3, metavar=("PART", "ARM", "SEED"), help="internal")
    args = parser.parse_args(argv)
    args.store.mkdir(parents=True, exist_ok=True)
    if args.child:
        run_child(args.child[0], args.child[1], int(args.child[2]), args)
        return 0
    require_file(ONLINE_RETAIL)
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    bad = [p for p in parts if p not in PARTS] + [a for a in arms if a not in ARMS]
    if bad:
        sys.exit(f"unknown parts or arms {bad}; parts: {list(PARTS)}, arms: {list(ARMS)}")
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    rows, missing = [], []
    for part in parts:
        for arm in arms:
            for seed in seeds:
                path = args.store / f"{part}_{arm}_s{seed}.json"
                if args.collect and not path.is_file():
                    missing.append(f"{part} {arm} seed {seed}")
                    continue
                if not ((args.reuse or args.collect) and path.is_file()):
                    print(f"[{part} {arm} seed {seed}] ...", flush=True)
                    extra = ["--threads", str(args.threads), "--items", str(args.items)]
                    extra += ["--cutoffs", args.cutoffs] if args.cutoffs else []
                    run_module(
                        "lm_pretrain",
                        "--child",
                        part,
                        arm,
                        str(seed),
                        "--store",
                        str(args.store),
                        *extra,
                    )
                row = json.loads(path.read_text())
                print(f"[{part} {arm} seed {seed}] WAPE {row['wape']:.4f}", flush=True)
                rows.append(row)
    if args.no_write:
        return 0
    summary = summarise(rows)
    items = "every item" if args.items <= 0 else f"a seeded sample of {args.items} items"
    cutoffs = ", ".join(select_cutoffs("validation", args.cutoffs))
    protocol = {
        "cold-start": "benchmarks.cold_start validation split (new launches 2010-07-12 .. "
        "2010-10-04, LM history up to 2010-07-05), weeks 0..11, predict_new",
        "existing": f"benchmarks.online_retail validation cutoffs {cutoffs}, horizon 8, "
        f"{items} (sample seed {ITEM_SAMPLE_SEED}, the same for every arm)",
    }
    report = {
        "protocol": {p: protocol[p] for p in parts},
        "arms": {a: ARMS[a] for a in arms},
        "seeds": seeds,
        "threads": args.threads,
        "items": args.items,
        "summary": summary,
        "not_run": missing,
        "decision": decide(summary),
        "runs": rows,
    }
    path = write_results("lm_pretrain_validation", report, markdown, args.out, argv)
    print(path.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
