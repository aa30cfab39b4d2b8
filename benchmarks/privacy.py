"""Differentially private LM on Online Retail II: accuracy at epsilon 1, 4, 8 against no DP.

The existing-item protocol of ``benchmarks.online_retail`` (its panel, horizon, cutoffs,
evaluated series and metrics): the frozen-encoder LM without privacy, and the same LM trained
with DP-SGD (one item's whole history as the privacy unit, see ``docs/privacy.md``) at each
epsilon of ``--epsilons`` with ``--delta`` (default 1e-5), in one run, each fitted afresh at
every cutoff. The private arms take the ``--dp-set`` settings on top (default: 256 items per
step, 2 windows per item, 10 epochs: DP-SGD wants few, large steps); the non-private arm keeps
the LM's defaults. Each private fit's spent epsilon, noise multiplier and steps are recorded
per cutoff.

The default is the full protocol (the four test cutoffs); ``--cutoffs validation`` or
``--only 2011-05-02`` run fewer, ``--sample-items N`` runs on N items drawn at random (seeded by
``--item-seed``), and the results say which ran; each arm runs once per seed of ``--seeds``
(mean [min, max] over seeds); ``--jobs 4`` runs the arms in
parallel processes (their fit seconds then share the cores). Results:
``<out>/<name>.{json,md}`` (``--name``, default ``privacy``).

Usage::

    python -m benchmarks.privacy [--cutoffs test|validation] [--only DATE,...]
        [--epsilons 1,4,8] [--delta 1e-5] [--seeds 0,1,2] [--threads 1] [--jobs 1]
        [--sample-items N --item-seed 0]
        [--dp-set KEY=VALUE ...] [--out DIR] [--name privacy]
"""

from __future__ import annotations

import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.harness import (
    ONLINE_RETAIL,
    RESULTS,
    argument_parser,
    items_note,
    machine_line,
    metrics_table,
    online_retail_panel,
    over_seeds,
    panel_cache_dir,
    require_file,
    sample_items,
    write_results,
)
from benchmarks.online_retail import (
    HORIZON,
    build_model,
    parse_settings,
    score_arms,
    select_cutoffs,
)
from salesformer.data.contract import CUTOFF, DATE, ITEM_ID, SALES
from salesformer.evaluation.backtest import series_facts

#: Settings of the private arms (on top of the LM's defaults); ``--dp-set`` overrides them.
DP_SETTINGS: dict[str, Any] = {"batch_items": 256, "origins_per_item": 2, "head_epochs": 10}
NON_PRIVATE = "LM-frozen"


def arm_name(epsilon: float | None) -> str:
    """``LM-frozen`` or ``LM-frozen-dp4``."""
    return NON_PRIVATE if epsilon is None else f"{NON_PRIVATE}-dp{epsilon:g}"


def run_arm(
    panel: Any, cutoffs: list[pd.Timestamp], epsilon: float | None, seed: int, args: Any
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Fit and forecast one arm with ``seed`` at every cutoff: forecasts and per-cutoff facts."""
    settings: dict[str, Any] = {}
    if epsilon is not None:
        settings = {**DP_SETTINGS, **args.dp_set, "dp_epsilon": epsilon, "dp_delta": args.delta}
    name = arm_name(epsilon)
    frames, facts = [], []
    for cutoff in cutoffs:
        model = build_model(NON_PRIVATE, seed, args.threads, settings)
        series = series_facts(panel, cutoff, 13, 13)
        start = time.perf_counter()
        model.fit(panel.until(cutoff))
        fit_seconds = time.perf_counter() - start
        forecast = model.predict(HORIZON, future=panel.future_covariates(cutoff, HORIZON))
        actual = panel.window(cutoff, HORIZON)
        actual = actual.loc[actual[ITEM_ID].isin(series[ITEM_ID]), [ITEM_ID, DATE, SALES]]
        forecast.columns = [
            name + c[len(model.name) :] if c.startswith(model.name) else c for c in forecast.columns
        ]
        merged = actual.rename(columns={SALES: "y"}).merge(forecast, on=[ITEM_ID, DATE])
        merged.insert(1, CUTOFF, cutoff)
        frames.append(merged)
        report = model.fit_report_
        facts.append(
            {
                "arm": name,
                "seed": seed,
                "cutoff": str(cutoff.date()),
                "fit_seconds": round(fit_seconds, 1),
                "train_items": report.get("train_items"),
                "head_epochs": report["head"]["epochs"],
                "privacy": report.get("privacy"),
            }
        )
        print(f"[{name} seed {seed} @ {cutoff.date()}] fit {fit_seconds:.0f} s", flush=True)
    return pd.concat(frames, ignore_index=True), facts


def load_panel(args: Any) -> Any:
    """The benchmark's panel: Online Retail II (cached), on ``--sample-items`` items."""
    panel, _, _ = online_retail_panel(args.source, cache=panel_cache_dir())
    return sample_items(panel, args.sample_items, args.item_seed)


_WORKER_PANEL: dict[tuple[Any, ...], Any] = {}


def _run_arm_alone(job: tuple[list[pd.Timestamp], float | None, int, Any]) -> Any:
    """:func:`run_arm` in a worker process, which loads the (cached) panel itself, once."""
    cutoffs, epsilon, seed, args = job
    key = (str(args.source), args.sample_items, args.item_seed)
    if key not in _WORKER_PANEL:
        _WORKER_PANEL[key] = load_panel(args)
    return run_arm(_WORKER_PANEL[key], cutoffs, epsilon, seed, args)


def markdown(report: dict[str, Any]) -> str:
    """The results as Markdown: accuracy per arm (over seeds), then the privacy spent per fit."""
    prov = report["provenance"]
    lines = [
        "# Differentially private LM on Online Retail II",
        "",
        f"Cutoffs run: {', '.join(report['cutoffs'])} ({report['cutoff_note']}); horizon "
        f"{HORIZON} weeks; {report.get('items_note', 'every item')}; {report['cells']} "
        f"evaluated cells; seeds {report['seeds']} (mean [min, max] over seeds); delta "
        f"{report['delta']:g}; private arms' settings {report['dp_settings']}. Generated by "
        f"`{prov.get('command', '?')}` at commit {prov.get('commit', '?')}.",
        "",
        *metrics_table(report["summary"]),
        "",
        *per_cutoff_table(report),
        "## Privacy spent per fit",
        "",
        "| arm | seed | cutoff | items | epsilon spent | noise multiplier | steps | fit s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for fit in report["fits"]:
        p = fit["privacy"] or {}
        lines.append(
            f"| {fit['arm']} | {fit.get('seed', '-')} | {fit['cutoff']} | {fit['train_items']} | "
            f"{p.get('epsilon', '-')} | {p.get('noise_multiplier', '-')} | "
            f"{p.get('steps', '-')} | {fit['fit_seconds']} |"
        )
    lines += ["", f"Machine: {report['machine']}."]
    return "\n".join(lines) + "\n"


def per_cutoff_table(report: dict[str, Any]) -> list[str]:
    """WAPE / wQL of each arm at each cutoff, mean over the seeds (Markdown lines)."""
    cells: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for scored in report["per_seed"].values():
        for row in scored["per_cutoff"]:
            by_cutoff = cells.setdefault(row["model"], {})
            by_cutoff.setdefault(str(row["cutoff"])[:10], []).append((row["wape"], row["wql"]))
    cutoffs = list(report["cutoffs"])
    lines = [
        "## WAPE / wQL per cutoff (mean over seeds)",
        "",
        "| arm | " + " | ".join(cutoffs) + " |",
        "|---|" + "---|" * len(cutoffs),
    ]
    for arm, by_cutoff in cells.items():
        values = []
        for cutoff in cutoffs:
            pairs = by_cutoff.get(cutoff, [])
            wape = sum(w for w, _ in pairs) / max(len(pairs), 1)
            wql = sum(q for _, q in pairs) / max(len(pairs), 1)
            values.append(f"{wape:.3f} / {wql:.3f}" if pairs else "-")
        lines.append(f"| {arm} | " + " | ".join(values) + " |")
    return [*lines, ""]


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__, __file__)
    parser.add_argument("--source", type=Path, default=ONLINE_RETAIL)
    parser.add_argument("--cutoffs", choices=("test", "validation"), default="test")
    parser.add_argument("--only", default="", help="comma-separated cutoffs of the set to run")
    parser.add_argument("--epsilons", default="1,4,8")
    parser.add_argument("--delta", type=float, default=1e-5)
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per fit")
    parser.add_argument("--jobs", type=int, default=1, help="arms run in parallel processes")
    parser.add_argument("--sample-items", type=int, default=0, help="N items drawn at random")
    parser.add_argument("--item-seed", type=int, default=0, help="seed of --sample-items")
    parser.add_argument("--dp-set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="privacy", help="results file name (no suffix)")
    args = parser.parse_args(argv)
    args.dp_set = parse_settings(args.dp_set)
    require_file(args.source)
    chosen = select_cutoffs(args.cutoffs, args.only)
    cutoffs = [pd.Timestamp(c) for c in chosen]
    epsilons = [float(e) for e in args.epsilons.split(",") if e.strip()]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    panel = load_panel(args)
    arms: list[float | None] = [None, *epsilons]
    # one process per arm, cutoff and seed (their fit seconds share the cores), in seed then
    # cutoff order; the results are rewritten after each cutoff's arms: a cut-short run keeps
    # its finished seeds, or, before the first seed ends, that seed's finished cutoffs
    jobs = [([cutoff], e, seed, args) for seed in seeds for cutoff in cutoffs for e in arms]
    names = [arm_name(e) for e in arms]
    done: list[Any] = []
    finished: dict[int, list[tuple[str, Any]]] = {}
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for job, result in zip(jobs, pool.map(_run_arm_alone, jobs), strict=True):
            done.append(result)
            if len(done) % len(arms):
                continue
            cutoff, seed = str(job[0][0].date()), job[2]
            finished.setdefault(seed, []).append((cutoff, merge_arms(done[-len(arms) :])))
            scored = score_finished(panel, finished, chosen, names)
            path = write_results(
                args.name, report(scored, done, seeds, epsilons, args), markdown, args.out, argv
            )
    print(path.with_suffix(".md").read_text())


def score_finished(
    panel: Any, finished: dict[int, list[tuple[str, Any]]], chosen: list[str], names: list[str]
) -> dict[int, dict[str, Any]]:
    """Scores of the seeds that ran every cutoff of ``chosen``; while none has, the first
    seed's scores on its finished cutoffs (the results then say which cutoffs ran)."""
    complete = [s for s, parts in finished.items() if len(parts) == len(chosen)]
    seeds = complete or list(finished)[:1]
    scored = {}
    for seed in seeds:
        parts = finished[seed]
        frames = pd.concat([frame for _, frame in parts], ignore_index=True)
        scored[seed] = score_arms(panel, frames, [c for c, _ in parts], names)
    return scored


def merge_arms(done: list[tuple[pd.DataFrame, list[dict[str, Any]]]]) -> pd.DataFrame:
    """One frame of every arm's forecasts (of one seed) on the cells they share."""
    keys = [ITEM_ID, CUTOFF, DATE, "y"]
    forecasts = done[0][0]
    for frame, _ in done[1:]:
        forecasts = forecasts.merge(frame, on=keys, how="inner", validate="one_to_one")
    return forecasts


def report(
    scored: dict[int, dict[str, Any]],
    done: list[Any],
    seeds: list[int],
    epsilons: list[float],
    args: Any,
) -> dict[str, Any]:
    """The results of the seeds finished so far."""
    first = next(iter(scored.values()))
    return {
        "cutoffs": first["cutoffs"],
        "cutoff_note": first["cutoff_note"],
        "cells": first["cells"],
        "summary": over_seeds({s: r["overall"] for s, r in scored.items()}),
        "per_seed": scored,
        "items_note": items_note(args.sample_items, args.item_seed),
        "seeds": list(scored),
        "seeds_requested": seeds,
        "jobs": args.jobs,
        "delta": args.delta,
        "epsilons": epsilons,
        "dp_settings": {**DP_SETTINGS, **args.dp_set},
        "fits": [fact for _, facts in done for fact in facts],
        "machine": machine_line(),
    }


if __name__ == "__main__":
    main()
