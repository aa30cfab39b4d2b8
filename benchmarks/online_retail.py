"""The Online Retail II benchmark: every model, per cutoff and overall, over seeds.

Protocol (shared by every issue, so numbers stay comparable): the panel prepared by
``salesformer prepare online-retail``; horizon 8 weeks; evaluated at a cutoff: items first sold
at least 13 weeks before it that sold at least once in the 13 weeks up to it.

Two sets of cutoffs (last training week):

- ``validation``: 2011-03-07, 2011-04-04, 2011-05-02. Their 8-week windows end on 2011-06-27,
  before the first test cutoff. Every default, post-processing and design choice is made here.
- ``test``: 2011-07-04, 2011-08-01, 2011-08-29, 2011-09-26: the headline. Nothing is chosen
  from these numbers.

Each model runs in its own process, so its fit+predict seconds and peak memory (peak resident
set size of that process: the loaded panel plus the model's work) are its own. Models with
random training (the LM in each fine-tuning mode, ``auto``, which contains the LM) run once per
seed of ``--seeds``; the tables give the mean and the min-max over seeds, and a model is said to
beat another only where its worst seed beats the other's best.

Besides the registered names, ``--models`` takes ``LM-frozen``, ``LM-lora`` and ``LM-full``
(the LM forecaster per fine-tuning mode: "before vs after fine-tuning"), ``LM-notext`` (the
frozen LM with every item given the same text: what the text adds) and
``auto`` (whose LM
candidate uses the LM's default fine-tuning). ``--lm-set KEY=VALUE`` overrides LM settings (for
studies on the validation cutoffs; the headline uses the defaults). Forecasts are kept in
``--store`` (default ``benchmarks/results/forecasts/<cutoffs>``, not versioned): ``--reuse``
skips runs already there. Results: ``<out>/online_retail_ii.{json,md}`` for the test cutoffs,
``online_retail_ii_validation.{json,md}`` for the validation cutoffs.

Usage::

    python -m benchmarks.online_retail [--cutoffs test|validation] [--models a,b]
        [--seeds 0,1,2] [--threads 1] [--reuse] [--lm-set KEY=VALUE ...] [--source PATH]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.harness import (
    ONLINE_RETAIL,
    RESULTS,
    git_commit,
    machine_line,
    online_retail_panel,
    peak_rss_mb,
    require_file,
    run_module,
    write_results,
)
from salesformer.data.contract import CUTOFF, DATE, ITEM_ID, TEXT, Panel
from salesformer.evaluation.backtest import HISTORY_SEGMENT, BacktestResult, backtest, series_facts
from salesformer.evaluation.metrics import METRICS, evaluate
from salesformer.models.base import Forecaster
from salesformer.models.registry import BASELINES

HORIZON = 8
CUTOFFS = ("2011-07-04", "2011-08-01", "2011-08-29", "2011-09-26")
VALIDATION_CUTOFFS = ("2011-03-07", "2011-04-04", "2011-05-02")
#: The windows just before each validation and test cutoff that neither set holds (the cutoff
#: minus one horizon): where ``auto`` at that cutoff scores its candidates. With them, a store
#: holds every forecast ``auto`` makes, so ``benchmarks.combine`` can replay its choices.
AUTO_WINDOW_CUTOFFS = ("2011-01-10", "2011-02-07", "2011-05-09", "2011-06-06")
CUTOFF_SETS = {
    "test": CUTOFFS,
    "validation": VALIDATION_CUTOFFS,
    "auto-windows": AUTO_WINDOW_CUTOFFS,
}
LM_MODES = {"LM-frozen": "frozen", "LM-lora": "lora", "LM-full": "full"}
#: The LM reading one constant text for every item: what the LM does without the text, so that
#: a win can be shown to come from reading it. Frozen: with one text for every item, tuning the
#: encoder could only learn one constant vector, which the head's biases already are.
NO_TEXT = "LM-notext"
#: Models whose training is random: run once per seed.
SEEDED = (*LM_MODES, NO_TEXT, "auto")
SEEDS = (0, 1, 2)
DEFAULT_MODELS = (*BASELINES, "LightGBM-text", *LM_MODES, NO_TEXT, "auto")
HEADLINE_METRICS = ("wape", "wql", "mase", "coverage80")


def select_cutoffs(kind: str, only: str) -> list[str]:
    """The cutoffs of the set ``kind`` (``test``/``validation``), or the comma-separated ``only``
    among them; exits with the reason when ``only`` names a cutoff outside the set."""
    chosen = list(CUTOFF_SETS[kind])
    if only:
        picked = [c.strip() for c in only.split(",") if c.strip()]
        unknown = sorted(set(picked) - set(chosen))
        if unknown:
            raise SystemExit(f"--only {unknown} not among the {kind} cutoffs {chosen}")
        chosen = picked
    return chosen


def score_arms(
    panel: Panel, forecasts: pd.DataFrame, cutoffs: list[str], names: list[str]
) -> dict[str, Any]:
    """Overall and per-cutoff metrics of the ``names`` columns of ``forecasts`` (``item_id,
    cutoff, date, y`` + one column set per arm) on the protocol's series, with how much of the
    test protocol the cutoffs cover."""
    stamps = [pd.Timestamp(c) for c in cutoffs]
    series = pd.concat([series_facts(panel, c, 13, 13) for c in stamps], ignore_index=True)
    scored = BacktestResult(forecasts, series, pd.DataFrame(), HORIZON, stamps).scored()
    full = list(CUTOFF_SETS["test"])
    note = "the full protocol" if list(cutoffs) == full else f"not the full protocol ({full})"
    return {
        "cutoffs": list(cutoffs),
        "cutoff_note": note,
        "cells": len(forecasts),
        "overall": evaluate(scored, models=names).to_dict(orient="records"),
        "per_cutoff": evaluate(scored, models=names, by=CUTOFF).to_dict(orient="records"),
    }


def parse_settings(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings to a dict, values read as JSON where they parse (1, 0.3, true)."""
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--lm-set takes KEY=VALUE; got {pair!r}")
        try:
            settings[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            settings[key.strip()] = value
    return settings


def build_model(spec: str, seed: int, threads: int | None, lm_set: dict[str, Any]) -> Forecaster:
    """The forecaster behind a benchmark name (see the module docstring)."""
    from salesformer.models.registry import make_model, resolve_name

    lm: dict[str, Any] = {"horizon": HORIZON, "progress": False, "threads": threads, "seed": seed}
    lm.update(lm_set)
    if spec in LM_MODES:
        return make_model("LM", **{**lm, "finetune": LM_MODES[spec]})
    if spec == NO_TEXT:
        return make_model("LM", **{**lm, "finetune": "frozen"})
    name = resolve_name(spec)
    lightgbm = {"n_jobs": threads}
    if name == "auto":
        return make_model(
            "auto",
            horizon=HORIZON,
            candidate_settings={"LM": lm, "LightGBM": lightgbm, "LightGBM-text": lightgbm},
        )
    if name in ("LightGBM", "LightGBM-text"):
        return make_model(name, **lightgbm)
    return make_model(name)


def without_text(panel: Panel) -> Panel:
    """The panel with one constant text for every item (and no title to build one from)."""
    assert panel.items is not None
    items = panel.items[[ITEM_ID]].assign(**{TEXT: "product"})
    return replace(panel, items=items)


def run_name(spec: str, seed: int | None) -> str:
    """Column name of one run: the model, and its seed for seeded models (``LM-lora_s1``)."""
    return spec if seed is None else f"{spec}_s{seed}"


def run_one(panel_dir: Path, spec: str, seed: int | None, args: argparse.Namespace) -> None:
    """Child process: backtest one model (one seed), write its forecasts and its own cost."""
    panel = Panel.load(panel_dir)
    if spec == NO_TEXT:
        panel = without_text(panel)
    model = build_model(spec, 0 if seed is None else seed, args.threads, args.lm_set)
    start = time.perf_counter()
    result = backtest([model], panel, HORIZON, list(CUTOFF_SETS[args.cutoffs]))
    wall = time.perf_counter() - start
    name = run_name(spec, seed)
    result.forecasts.columns = [
        name + c[len(model.name) :] if c == model.name or c.startswith(model.name + "-q") else c
        for c in result.forecasts.columns
    ]
    result.forecasts.to_parquet(args.store / f"{name}.parquet", index=False)
    result.series.to_parquet(args.store / "series.parquet", index=False)
    cost = {
        "run": name,
        "model": spec,
        "seed": seed,
        "fit_seconds": float(result.timings["fit_seconds"].sum()),
        "predict_seconds": float(result.timings["predict_seconds"].sum()),
        "wall_seconds": wall,
        "peak_rss_mb": peak_rss_mb(),
        **git_commit(),
    }
    (args.store / f"{name}.cost.json").write_text(json.dumps(cost, default=str))


def summarise(per_run: pd.DataFrame, columns: tuple[str, ...]) -> pd.DataFrame:
    """Mean, min and max over seeds of each model's metrics (one row per model)."""
    grouped = per_run.groupby("model", sort=False)
    out = grouped[list(columns)].mean()
    for column in columns:
        out[f"{column}_min"] = grouped[column].min()
        out[f"{column}_max"] = grouped[column].max()
    out["seeds"] = grouped["run"].count()
    return out.reset_index()


def clear_wins(summary: pd.DataFrame, metric: str) -> list[str]:
    """ "A beats B" for every pair where A's worst run is better than B's best (lower wins)."""
    rows = summary.set_index("model")
    wins = []
    for a in rows.index:
        for b in rows.index:
            if a != b and rows.at[a, f"{metric}_max"] < rows.at[b, f"{metric}_min"]:
                wins.append(f"{a} < {b}")
    return wins


def _cell(row: pd.Series, metric: str) -> str:
    if pd.isna(row[metric]):
        return "-"
    if row["seeds"] > 1:
        return f"{row[metric]:.3f} [{row[f'{metric}_min']:.3f}, {row[f'{metric}_max']:.3f}]"
    return f"{row[metric]:.3f}"


def markdown(report: dict[str, Any]) -> str:
    """The results as Markdown: headline, per cutoff, short histories, cost."""
    overall = pd.DataFrame(report["summary"]).sort_values("wape")
    cutoffs = report["protocol"]["cutoffs"]
    lines = [
        f"# Online Retail II benchmark: {report['protocol']['set']} cutoffs",
        "",
        f"Horizon {HORIZON} weeks; cutoffs {', '.join(cutoffs)}; {report['series']} evaluated "
        f"series, {report['cells']} cells; seeds {report['seeds']} for "
        f"{', '.join(SEEDED)} (mean [min, max] over seeds). Generated by "
        f"`{report['provenance']['command']}` at commit {report['provenance']['commit']}.",
        "",
        "| model | " + " | ".join(HEADLINE_METRICS) + " | fit+predict s | peak MB |",
        "|---|" + "---|" * (len(HEADLINE_METRICS) + 2),
    ]
    for _, row in overall.iterrows():
        cells = [_cell(row, m) for m in HEADLINE_METRICS]
        seconds = row["fit_seconds"] + row["predict_seconds"]
        lines.append(
            f"| {row['model']} | " + " | ".join(cells) + f" | {seconds:.0f} | "
            f"{row['peak_rss_mb']:.0f} |"
        )
    per_cutoff = pd.DataFrame(report["per_cutoff"])
    table = per_cutoff.pivot_table(index="model", columns=CUTOFF, values="wape", aggfunc="mean")
    table = table.reindex(overall["model"])
    lines += ["", "## WAPE per cutoff (mean over seeds)", ""]
    lines += ["| model | " + " | ".join(str(c)[:10] for c in table.columns) + " |"]
    lines += ["|---|" + "---|" * len(table.columns)]
    for model, row in table.iterrows():
        lines.append(f"| {model} | " + " | ".join(f"{v:.3f}" for v in row) + " |")
    segments = pd.DataFrame(report["by_history"])
    short = segments[segments[HISTORY_SEGMENT].str.startswith("short")]
    if len(short):
        lines += ["", "## Items with 26 weeks of history or less (mean over seeds)", ""]
        lines += ["| model | cells | wape | wql |", "|---|---|---|---|"]
        short = short.groupby("model", sort=False)[["cells", "wape", "wql"]].mean()
        for model, row in short.sort_values("wape").iterrows():
            lines.append(f"| {model} | {row['cells']:.0f} | {row['wape']:.3f} | {row['wql']:.3f} |")
    if report.get("seed_averages"):
        lines += ["", "## Mean of the seeds' forecasts (analysis, not a shipped model)", ""]
        lines += ["| forecast | wape | wql | coverage80 |", "|---|---|---|---|"]
        for row in report["seed_averages"]:
            lines.append(
                f"| {row['model']} | {row['wape']:.3f} | {row['wql']:.3f} | "
                f"{row['coverage80']:.3f} |"
            )
    lines += ["", "## Clear wins (worst seed better than the other's best)", ""]
    for metric in ("wape", "wql"):
        wins = [w for w in report["clear_wins"][metric] if not _is_trivial(w, overall)]
        lines.append(f"- {metric}: " + ("; ".join(wins) if wins else "none"))
    lines += [
        "",
        "Seconds are summed over the cutoffs (mean over seeds; conformal calibration refits "
        "included); peak RSS is the whole process (panel + model), max over seeds.",
        f"Machine: {machine_line()}; {report['threads']} thread(s) per model.",
    ]
    return "\n".join(lines)


def _is_trivial(win: str, overall: pd.DataFrame) -> bool:
    """Hide wins over models that are not among the six best by WAPE (keeps the list short)."""
    best = set(overall.nsmallest(6, "wape")["model"])
    return win.split(" < ")[1] not in best


SEED_AVERAGE = "-seed-average"


def seed_averages(forecasts: pd.DataFrame, runs: list[tuple[str, int | None]]) -> pd.DataFrame:
    """For each model run over several seeds, the mean of its seeds' forecasts, column by
    column (point and every quantile): ``<model>-seed-average``. An analysis of what
    averaging seeds would give, not a model the product ships."""
    keys = [ITEM_ID, CUTOFF, DATE, "y"]
    out = forecasts[keys].copy()
    for spec in dict.fromkeys(spec for spec, seed in runs if seed is not None):
        names = [run_name(spec, seed) for s, seed in runs if s == spec]
        if len(names) < 2:
            continue
        for column in forecasts.columns:
            if column == names[0] or column.startswith(names[0] + "-q"):
                suffix = column[len(names[0]) :]
                stack = np.stack([forecasts[n + suffix].to_numpy(dtype=float) for n in names])
                out[spec + SEED_AVERAGE + suffix] = stack.mean(axis=0)
    return out


def score_runs(store: Path, runs: list[tuple[str, int | None]], cutoffs: tuple[str, ...]) -> dict:
    """Metrics of every run: overall, per cutoff and per history segment, plus summaries."""
    names = [run_name(spec, seed) for spec, seed in runs]
    keys = [ITEM_ID, CUTOFF, DATE, "y"]
    forecasts = pd.read_parquet(store / f"{names[0]}.parquet")
    for name in names[1:]:
        frame = pd.read_parquet(store / f"{name}.parquet")
        forecasts = forecasts.merge(frame, on=keys, how="inner", validate="one_to_one")
    series = pd.read_parquet(store / "series.parquet")
    averages = seed_averages(forecasts, runs)
    result = BacktestResult(
        forecasts,
        series,
        pd.DataFrame({"model": names}),
        HORIZON,
        [pd.Timestamp(c) for c in cutoffs],
    )
    scored = result.scored()
    spec_of = {run_name(spec, seed): spec for spec, seed in runs}

    def labelled(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.rename(columns={"model": "run"})
        frame.insert(0, "model", frame["run"].map(spec_of))
        return frame

    per_run = labelled(evaluate(scored, models=names))
    records = [json.loads((store / f"{name}.cost.json").read_text()) for name in names]
    costs = pd.DataFrame(records).drop(columns=["model", "seed", "fit_report"], errors="ignore")
    per_run = per_run.merge(costs, on="run")
    summary = summarise(per_run, tuple(METRICS))
    cost_summary = per_run.groupby("model", sort=False).agg(
        fit_seconds=("fit_seconds", "mean"),
        predict_seconds=("predict_seconds", "mean"),
        peak_rss_mb=("peak_rss_mb", "max"),
    )
    summary = summary.merge(cost_summary.reset_index(), on="model")
    return {
        "series": len(series),
        "cells": len(forecasts),
        "summary": summary.to_dict(orient="records"),
        "runs": per_run.to_dict(orient="records"),
        "per_cutoff": labelled(evaluate(scored, models=names, by=CUTOFF)).to_dict(orient="records"),
        "by_history": labelled(evaluate(scored, models=names, by=HISTORY_SEGMENT)).to_dict(
            orient="records"
        ),
        "by_intermittency": labelled(evaluate(scored, models=names, by="intermittency")).to_dict(
            orient="records"
        ),
        "clear_wins": {m: clear_wins(summary, m) for m in ("wape", "wql")},
        "seed_averages": evaluate(
            averages.merge(series, on=[ITEM_ID, CUTOFF], how="left"),
            models=[c for c in averages.columns if c.endswith(SEED_AVERAGE)],
        ).to_dict(orient="records")
        if len(averages.columns) > len(keys)
        else [],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.online_retail", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--source", type=Path, default=ONLINE_RETAIL)
    parser.add_argument("--cutoffs", choices=sorted(CUTOFF_SETS), default="test")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)), help="for seeded models")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--store", type=Path, default=None, help="forecast store folder")
    parser.add_argument("--reuse", action="store_true", help="skip runs already in --store")
    parser.add_argument("--threads", type=int, default=1, help="threads per model (default 1)")
    parser.add_argument("--lm-set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument(
        "--child", nargs=3, metavar=("PANEL", "MODEL", "SEED"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    args.lm_set = parse_settings(args.lm_set)
    tag = args.cutoffs + "".join(f"-{k}={v}" for k, v in sorted(args.lm_set.items()))
    args.store = args.store or RESULTS / "forecasts" / tag
    if args.child:
        seed = None if args.child[2] == "-" else int(args.child[2])
        run_one(Path(args.child[0]), args.child[1], seed, args)
        return

    require_file(args.source)
    specs = [n.strip() for n in args.models.split(",") if n.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    runs = [(spec, seed) for spec in specs for seed in (seeds if spec in SEEDED else [None])]
    args.store.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        panel, quality, prepare_seconds = online_retail_panel(args.source)
        panel.save(Path(tmp) / "panel")
        for spec, seed in runs:
            name = run_name(spec, seed)
            done = all((args.store / f"{name}{s}").is_file() for s in (".cost.json", ".parquet"))
            if not (args.reuse and done):
                print(f"[{name}] backtesting ...", flush=True)
                child = [
                    "--child",
                    str(Path(tmp) / "panel"),
                    spec,
                    "-" if seed is None else str(seed),
                ]
                passthrough = ["--cutoffs", args.cutoffs, "--store", str(args.store)]
                passthrough += ["--threads", str(args.threads)]
                for key, value in args.lm_set.items():
                    passthrough += ["--lm-set", f"{key}={json.dumps(value)}"]
                run_module("online_retail", *child, *passthrough)
            cost = json.loads((args.store / f"{name}.cost.json").read_text())
            print(f"[{name}] {cost['wall_seconds']:.1f} s, peak {cost['peak_rss_mb']:.0f} MB")
    cutoffs = CUTOFF_SETS[args.cutoffs]
    report = {
        "protocol": {
            "set": args.cutoffs,
            "horizon": HORIZON,
            "cutoffs": list(cutoffs),
            "validation_cutoffs": list(VALIDATION_CUTOFFS),
            "test_cutoffs": list(CUTOFFS),
            "min_history": 13,
            "active_within": 13,
        },
        "seeds": seeds,
        "seeded_models": list(SEEDED),
        "threads": args.threads,
        "lm_settings": args.lm_set,
        "data": {**quality, "prepare_seconds": prepare_seconds},
        **score_runs(args.store, runs, cutoffs),
    }
    name = "online_retail_ii" if args.cutoffs == "test" else f"online_retail_ii_{args.cutoffs}"
    if args.lm_set:
        name += "_" + "_".join(f"{k}-{v}" for k, v in sorted(args.lm_set.items()))
    path = write_results(name, report, markdown, args.out, argv)
    print(path.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
