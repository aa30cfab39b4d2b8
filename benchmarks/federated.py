"""Federated LM on Online Retail II: 2, 5 and 10 sellers against the same LM trained centrally.

The existing-item protocol of ``benchmarks.online_retail`` (its panel, horizon, cutoffs,
evaluated series and metrics). At every cutoff the panel known then is split into N sellers
by a hash of the item id (``salesformer.federated.partitions``); ``salesformer federated``'s
simulation (a Flower server and one client per seller over the loopback, FedAvg of the
frozen-encoder LM's head) trains one head, and each seller forecasts its own items with it.
The central arm is the frozen-encoder LM fitted on all items. Every arm is scored on the same
cells. Each round's bytes exchanged are recorded.

A client's epoch has ``epoch_samples / N`` windows (``--fed-set`` overrides), so a round over
N sellers trains on about the windows of one central epoch.

The default is the full protocol (the four test cutoffs); ``--cutoffs validation``, ``--only``
``--max-items`` (the items with the most sales) and ``--sample-items`` (items drawn at random,
seeded by ``--item-seed``) run less, and the results say so. Each arm runs once per seed of
``--seeds``; the table gives the mean and [min, max] over seeds. ``--finetune lora`` runs the
LoRA-fine-tuned LM instead (central ``LM-lora``; FedAvg of the head and the LoRA adapter),
``--finetune frozen,lora`` both in one run; results with LoRA go to
``federated_lora.{json,md}``.
Results: ``<out>/federated.{json,md}``.

Usage::

    python -m benchmarks.federated [--cutoffs test|validation] [--only DATE,...]
        [--sellers 2,5,10] [--rounds 10] [--seeds 0,1,2] [--threads 1] [--max-items N]
        [--sample-items N --item-seed 0] [--finetune frozen,lora]
        [--lm-set KEY=VALUE ...] [--fed-set KEY=VALUE ...]
"""

from __future__ import annotations

import time
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
    top_items,
    write_results,
)
from benchmarks.online_retail import (
    HORIZON,
    build_model,
    parse_settings,
    score_arms,
    select_cutoffs,
)
from salesformer.data.contract import CUTOFF, DATE, ITEM_ID, SALES, Panel
from salesformer.evaluation.backtest import series_facts
from salesformer.models.lm.settings import asdict_settings

CENTRAL = "LM-frozen"
#: The central arm per ``--finetune`` (the federated arms average the head, and the adapter).
CENTRAL_BY_MODE = {"frozen": "LM-frozen", "lora": "LM-lora"}


def arm_name(sellers: int | None, central: str = CENTRAL) -> str:
    """``LM-frozen`` (central) or ``LM-frozen-fed5`` (``LM-lora...`` with ``--finetune lora``)."""
    return central if sellers is None else f"{central}-fed{sellers}"


def fit_arm(
    panel: Panel, cutoff: pd.Timestamp, arm: tuple[str, int | None], args: Any
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One arm at one cutoff: its forecasts of every item and its facts."""
    from salesformer.federated.partitions import split_by_seller
    from salesformer.federated.run import simulate
    from salesformer.federated.server import FederationSettings

    mode, sellers = arm
    central = CENTRAL_BY_MODE[mode]
    model = build_model(central, args.seed, args.threads, args.lm_set)
    known = panel.until(cutoff)
    future = panel.future_covariates(cutoff, HORIZON)
    start = time.perf_counter()
    name = arm_name(sellers, central)
    facts: dict[str, Any] = {"arm": name, "cutoff": str(cutoff.date())}
    if sellers is None:
        model.fit(known)
        forecast = model.predict(HORIZON, future=future)
        facts["head_epochs"] = model.fit_report_["head"]["epochs"]
    else:
        lm = asdict_settings(model)  # type: ignore[arg-type]
        lm["epoch_samples"] = max(1, lm["epoch_samples"] // sellers)
        lm.update(args.fed_set)
        parts = split_by_seller(known, sellers)
        settings = FederationSettings(sellers, rounds=args.rounds)
        models, result = simulate(parts, lm, settings)
        forecast = pd.concat(
            [
                m.predict(HORIZON, future=future.loc[future[ITEM_ID].isin(m.item_ids_)])
                for m in models.values()
            ],
            ignore_index=True,
        )
        report = result.report()
        facts.update(
            rounds=len(report["rounds"]),
            bytes_per_round=report["bytes_per_round"],
            bytes_total=report["bytes_total"],
            valid_loss=[r.get("valid_loss") for r in report["rounds"]],
            items_per_seller=[len(p.item_ids) for p in parts.values()],
        )
    facts["fit_seconds"] = round(time.perf_counter() - start, 1)
    forecast.columns = [
        name + c[len(model.name) :] if c.startswith(model.name) else c for c in forecast.columns
    ]
    print(f"[{name} @ {cutoff.date()}] {facts['fit_seconds']:.0f} s", flush=True)
    return forecast, facts


def markdown(report: dict[str, Any]) -> str:
    """The results as Markdown: accuracy per arm (over seeds), then rounds and bytes per fit."""
    prov = report["provenance"]
    lines = [
        "# Federated LM on Online Retail II",
        "",
        f"Cutoffs run: {', '.join(report['cutoffs'])} ({report['cutoff_note']}); horizon "
        f"{HORIZON} weeks; {report['items_note']}; {report['cells']} evaluated cells; seeds "
        f"{report['seeds']} (mean [min, max] over seeds); {report['rounds']} rounds of FedAvg, "
        f"1 local epoch; encoder {', '.join(report.get('finetune', ['frozen']))}; LM settings "
        f"{report['lm_settings']}. Generated by "
        f"`{prov.get('command', '?')}` at commit {prov.get('commit', '?')}.",
        "",
        *metrics_table(report["summary"]),
        "",
        "## Fits",
        "",
        "| arm | seed | cutoff | rounds | bytes per round | bytes total | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for fit in report["fits"]:
        lines.append(
            f"| {fit['arm']} | {fit.get('seed', '-')} | {fit['cutoff']} | "
            f"{fit.get('rounds', '-')} | {fit.get('bytes_per_round', '-')} | "
            f"{fit.get('bytes_total', '-')} | {fit['fit_seconds']} |"
        )
    lines += ["", f"Machine: {report['machine']}."]
    return "\n".join(lines) + "\n"


def run_seed(
    panel: Panel, cutoffs: list[pd.Timestamp], arms: list[tuple[str, int | None]], args: Any
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """Every arm at every cutoff with ``args.seed``: the forecasts and each fit's facts."""
    frames, fits = [], []
    for cutoff in cutoffs:
        series = series_facts(panel, cutoff, 13, 13)
        actual = panel.window(cutoff, HORIZON)
        actual = actual.loc[actual[ITEM_ID].isin(series[ITEM_ID]), [ITEM_ID, DATE, SALES]]
        merged = actual.rename(columns={SALES: "y"})
        for arm in arms:
            forecast, facts = fit_arm(panel, cutoff, arm, args)
            merged = merged.merge(forecast, on=[ITEM_ID, DATE], validate="one_to_one")
            fits.append({**facts, "seed": args.seed})
        merged.insert(1, CUTOFF, cutoff)
        frames.append(merged)
    return pd.concat(frames, ignore_index=True), fits


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__, __file__)
    parser.add_argument("--source", type=Path, default=ONLINE_RETAIL)
    parser.add_argument("--cutoffs", choices=("test", "validation"), default="test")
    parser.add_argument("--only", default="", help="comma-separated cutoffs of the set to run")
    parser.add_argument("--sellers", default="2,5,10")
    parser.add_argument("--finetune", default="frozen", help="frozen, lora or frozen,lora")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per fit")
    parser.add_argument("--max-items", type=int, default=0, help="the N top-selling items")
    parser.add_argument("--sample-items", type=int, default=0, help="N items drawn at random")
    parser.add_argument("--item-seed", type=int, default=0, help="seed of --sample-items")
    parser.add_argument("--lm-set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--fed-set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    args.lm_set = parse_settings(args.lm_set)
    args.fed_set = parse_settings(args.fed_set)
    require_file(args.source)
    chosen = select_cutoffs(args.cutoffs, args.only)
    cutoffs = [pd.Timestamp(c) for c in chosen]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    panel, _, _ = online_retail_panel(args.source, cache=panel_cache_dir())
    panel = sample_items(top_items(panel, args.max_items), args.sample_items, args.item_seed)
    modes = [m.strip() for m in args.finetune.split(",") if m.strip()]
    if not modes or set(modes) - set(CENTRAL_BY_MODE):
        raise SystemExit(
            f"--finetune takes {sorted(CENTRAL_BY_MODE)}, comma-separated; got {modes}"
        )
    sellers = [int(s) for s in args.sellers.split(",") if s.strip()]
    arms: list[tuple[str, int | None]] = [(m, n) for m in modes for n in [None, *sellers]]
    names = [arm_name(n, CENTRAL_BY_MODE[m]) for m, n in arms]
    fits: list[dict[str, Any]] = []
    scored: dict[int, dict[str, Any]] = {}
    for seed in seeds:  # the results are rewritten after each seed: a cut-short run keeps its seeds
        args.seed = seed
        forecasts, seed_fits = run_seed(panel, cutoffs, arms, args)
        fits += seed_fits
        scored[seed] = score_arms(panel, forecasts, chosen, names)
        first = scored[seeds[0]]
        report = {
            "cutoffs": first["cutoffs"],
            "cutoff_note": first["cutoff_note"],
            "cells": first["cells"],
            "summary": over_seeds({s: r["overall"] for s, r in scored.items()}),
            "per_seed": scored,
            "items_note": items_note(args.sample_items, args.item_seed, args.max_items),
            "seeds": list(scored),
            "seeds_requested": seeds,
            "rounds": args.rounds,
            "sellers": sellers,
            "lm_settings": args.lm_set,
            "fed_settings": args.fed_set,
            "finetune": modes,
            "fits": fits,
            "machine": machine_line(),
        }
        name = "_".join(["federated", *(m for m in modes if m != "frozen")])
        path = write_results(name, report, markdown, args.out, argv)
    print(path.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
