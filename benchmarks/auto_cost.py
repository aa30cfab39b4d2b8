"""What ``auto``'s second fit buys: ``refit=True`` against ``refit=False``, and shrinkage rules.

On the Online Retail II validation cutoffs (2011-03-07, 2011-04-04, 2011-05-02; nothing here
reads a test window), ``auto`` at a cutoff ``c`` fits each candidate at ``c - 8`` weeks, scores
its forecast of the 8 weeks up to ``c`` and learns its weights there; then

- ``refit=True`` fits each candidate in use again, on the panel up to ``c``;
- ``refit=False`` keeps the model fitted at ``c - 8`` and forecasts from ``c`` through
  ``Forecaster.update`` (it reads the history up to ``c``, nothing is trained on it).

Every forecast either makes is a forecast of one candidate: fitted at ``c - 8`` (the
validation window), fitted at ``c``, or fitted at ``c - 8`` and updated to ``c``. This script
computes those once per candidate (each candidate in its own process, so its seconds are its
own; a store keeps them, ``--reuse`` skips what is there) and replays ``auto``'s weights from
them exactly as ``AutoForecaster.fit`` chooses them (``validation_weights``), so both settings
and every selection rule are scored on the same forecasts. Costs: ``auto`` with ``refit=True``
at a cutoff is the candidates' fits at ``c - 8`` plus the fits at ``c`` of those in use;
``refit=False`` the fits at ``c - 8`` plus the updates; "candidates together" is every
candidate fitted once at ``c``. Each includes predicting. ``--check`` also fits the real
``AutoForecaster`` (both settings) at the last validation cutoff and records its seconds and
how far its forecast is from the replay.

Rules on top of the ensemble weights (``selection="ensemble"``), all chosen on the validation
window only: ``shrink λ`` mixes each segment's ensemble weights with the best single candidate
of the window (global WAPE), ``(1 - λ) w + λ best``; ``switch`` uses the best single candidate
unless the ensemble beats it on held-out items of the window (weights learned on one half of
the items, scored on the other, both ways round).

Usage::

    python -m benchmarks.auto_cost [--candidates LightGBM-text,LightGBM,ADIDA,TSB,CrostonOptimized]
        [--lm-seeds 0] [--lm-finetune frozen] [--check] [--store DIR] [--reuse] [--out DIR]
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.harness import (
    ONLINE_RETAIL,
    RESULTS,
    argument_parser,
    git_commit,
    online_retail_panel,
    peak_rss_mb,
    run_module,
    write_results,
)
from benchmarks.online_retail import HORIZON, VALIDATION_CUTOFFS
from salesformer.data.contract import ACTUAL, CUTOFF, DATE, ITEM_ID, SALES, Panel
from salesformer.evaluation.backtest import series_facts
from salesformer.evaluation.metrics import evaluate
from salesformer.forecasting.protocol import DEFAULT_QUANTILES, Forecaster, quantile_column
from salesformer.models.auto import GLOBAL, SEGMENT, AutoForecaster, segment_labels
from salesformer.models.registry import make_model

CHEAP = ("LightGBM-text", "LightGBM", "ADIDA", "TSB", "CrostonOptimized")
WEEK = pd.Timedelta(weeks=HORIZON)
SHRINK = (0.25, 0.5)
METRICS = ("wape", "wql")


def columns(name: str) -> list[str]:
    return [name, *(quantile_column(name, q) for q in DEFAULT_QUANTILES)]


def fit_order() -> list[pd.Timestamp]:
    """Every cutoff a candidate is fitted at (each validation cutoff and the one 8 weeks
    before it), in the order that completes a validation cutoff soonest (latest first on ties),
    so that a run cut short still leaves whole validation cutoffs."""
    pending = sorted((pd.Timestamp(c) for c in VALIDATION_CUTOFFS), reverse=True)
    order: list[pd.Timestamp] = []
    while pending:
        nxt = min(pending, key=lambda c: sum(f not in order for f in (c - WEEK, c)))
        order += [f for f in (nxt - WEEK, nxt) if f not in order]
        pending.remove(nxt)
    return order


def build(name: str, seed: int, finetune: str) -> Forecaster:
    """A candidate as auto would make it in ``benchmarks.online_retail`` (one thread)."""
    if name == "LM":
        settings = {"horizon": HORIZON, "progress": False, "threads": 1, "seed": seed}
        return make_model("LM", **settings, finetune=finetune)
    if name.startswith("LightGBM"):
        return make_model(name, n_jobs=1)
    return make_model(name)


def scored_window(panel: Panel, cutoff: pd.Timestamp, forecast: pd.DataFrame) -> pd.DataFrame:
    """``forecast`` of the window after ``cutoff`` with actuals, for the evaluated items."""
    facts = series_facts(panel, cutoff, 13, 13)
    actual = panel.window(cutoff, HORIZON)
    actual = actual.loc[actual[ITEM_ID].isin(facts[ITEM_ID]), [ITEM_ID, DATE, SALES]]
    merged = actual.rename(columns={SALES: ACTUAL}).merge(forecast, on=[ITEM_ID, DATE], how="left")
    merged.insert(1, CUTOFF, cutoff)
    return merged


def timed_predict(model: Forecaster, panel: Panel, cutoff: pd.Timestamp) -> tuple[Any, float]:
    start = time.perf_counter()
    forecast = model.predict(HORIZON, future=panel.future_covariates(cutoff, HORIZON))
    return forecast, time.perf_counter() - start


def piece(store: Path, run: str, kind: str, cutoff: pd.Timestamp) -> Path:
    """One stored piece of a run: ``fit`` or ``update`` forecasts, or ``seconds``."""
    suffix = "json" if kind == "seconds" else "parquet"
    return store / run / f"{kind}-{cutoff.date()}.{suffix}"


def run_candidate(panel: Panel, name: str, run: str, seed: int, finetune: str, store: Path) -> None:
    """Child process: ``name`` fitted at every cutoff, and updated from ``c - 8`` to ``c``;
    each cutoff's pieces are written as soon as they are done (cutoffs already stored are
    skipped)."""
    validation = [pd.Timestamp(c) for c in VALIDATION_CUTOFFS]
    rename = dict(zip(columns(name), columns(run), strict=True))
    (store / run).mkdir(exist_ok=True)
    for cutoff in fit_order():
        if piece(store, run, "seconds", cutoff).is_file():
            continue
        model = build(name, seed, finetune)
        start = time.perf_counter()
        model.fit(panel.until(cutoff))
        fit = time.perf_counter() - start
        forecast, predict = timed_predict(model, panel, cutoff)
        frame = scored_window(panel, cutoff, forecast).rename(columns=rename)
        frame.to_parquet(piece(store, run, "fit", cutoff), index=False)
        entry: dict[str, Any] = {"cutoff": str(cutoff.date()), "fit": fit, "predict": predict}
        later = cutoff + WEEK
        if later in validation:
            start = time.perf_counter()
            updated = model.update(panel.until(later))
            entry["update"] = time.perf_counter() - start
            forecast, entry["update_predict"] = timed_predict(updated, panel, later)
            frame = scored_window(panel, later, forecast).rename(columns=rename)
            frame.to_parquet(piece(store, run, "update", later), index=False)
        entry.update(peak_rss_mb=peak_rss_mb(), **git_commit())
        piece(store, run, "seconds", cutoff).write_text(json.dumps(entry, indent=2))
        print(f"[{run}] {cutoff.date()}: {json.dumps(entry)}", flush=True)


def complete_cutoffs(store: Path, runs: list[str]) -> list[pd.Timestamp]:
    """The validation cutoffs every run has whole: fit at ``c - 8``, updated, and fit at ``c``."""
    return [
        c
        for c in (pd.Timestamp(v) for v in VALIDATION_CUTOFFS)
        if all(
            piece(store, run, "seconds", c).is_file()
            and piece(store, run, "seconds", c - WEEK).is_file()
            and piece(store, run, "update", c).is_file()
            for run in runs
        )
    ]


def load(store: Path, panel: Panel, runs: dict[str, str], cutoffs: list[pd.Timestamp]):
    """``{"fit": frame, "update": frame}``: every candidate's forecasts (as its name) at
    ``cutoffs`` and the windows before them, with the series facts and ``segment``."""
    stamps = sorted(set(cutoffs) | {c - WEEK for c in cutoffs})
    facts = pd.concat([series_facts(panel, c, 13, 13) for c in stamps], ignore_index=True)
    out = {}
    for label, wanted in (("fit", stamps), ("update", cutoffs)):
        frame: pd.DataFrame | None = None
        for name, run in runs.items():
            part = pd.concat(
                [pd.read_parquet(piece(store, run, label, c)) for c in wanted], ignore_index=True
            )
            part = part.rename(columns=dict(zip(columns(run), columns(name), strict=True)))
            part[CUTOFF] = pd.to_datetime(part[CUTOFF])
            if frame is None:
                frame = part
            else:
                keys = [ITEM_ID, CUTOFF, DATE]
                frame = frame.merge(part.drop(columns=ACTUAL), on=keys, validate="1:1")
        assert frame is not None
        frame = frame.merge(facts, on=[ITEM_ID, CUTOFF], how="left")
        frame[SEGMENT] = segment_labels(frame)
        out[label] = frame
    return out


def item_subset(panel: Panel, n_items: int) -> Panel:
    """``n_items`` items of ``panel`` drawn at random (seed 0), with their whole history."""
    ids = np.random.default_rng(0).choice(np.sort(panel.item_ids), n_items, replace=False)
    sales = panel.sales[panel.sales[ITEM_ID].isin(ids)].reset_index(drop=True)
    items = None if panel.items is None else panel.items[panel.items[ITEM_ID].isin(ids)]
    return replace(panel, sales=sales, items=items, report={})


def combine(rows: pd.DataFrame, weights: dict[str, dict[str, float]]) -> pd.DataFrame:
    """``auto``'s forecast of each row from its segment's weights (GLOBAL's where it has none)."""
    segment = rows[SEGMENT].where(rows[SEGMENT].isin(list(weights)), GLOBAL).to_numpy()
    out = rows[[ITEM_ID, CUTOFF, DATE, ACTUAL, "scale_mae", "scale_mse"]].copy()
    names = sorted({n for w in weights.values() for n in w})
    share = {n: np.array([weights[s].get(n, 0.0) for s in segment]) for n in names}
    for k, target in enumerate(columns("auto")):
        out[target] = sum(share[n] * rows[columns(n)[k]].to_numpy(dtype=float) for n in names)
    return out


def wape(rows: pd.DataFrame, name: str) -> float:
    actual = rows[ACTUAL].to_numpy(dtype=float)
    return float(np.abs(actual - rows[name].to_numpy(dtype=float)).sum() / max(actual.sum(), 1e-9))


def best_single(window: pd.DataFrame, names: list[str]) -> str:
    return min(names, key=lambda n: (wape(window, n), names.index(n)))


def shrunk(weights: dict[str, dict[str, float]], best: str, share: float):
    """Each segment's weights moved ``share`` of the way to the best single candidate."""
    out = {}
    for segment, w in weights.items():
        mixed = {n: (1.0 - share) * v for n, v in w.items()}
        mixed[best] = mixed.get(best, 0.0) + share
        out[segment] = mixed
    return out


def ensemble_wins_held_out(model: AutoForecaster, window: pd.DataFrame, names: list[str]) -> bool:
    """Does the ensemble beat the best single candidate on items it did not learn from?"""
    ids = np.sort(window[ITEM_ID].unique())
    half = set(ids[::2])
    first = window[window[ITEM_ID].isin(half)]
    second = window[~window[ITEM_ID].isin(half)]
    errors = {"ensemble": 0.0, "single": 0.0}
    for learn, score in ((first, second), (second, first)):
        mix = combine(score, model.validation_weights(learn, names))
        actual = score[ACTUAL].to_numpy(dtype=float)
        errors["ensemble"] += float(np.abs(actual - mix["auto"].to_numpy(dtype=float)).sum())
        best = best_single(learn, names)
        errors["single"] += float(np.abs(actual - score[best].to_numpy(dtype=float)).sum())
    return errors["ensemble"] < errors["single"]


def rule_weights(window: pd.DataFrame, names: list[str]) -> dict[str, dict[str, dict]]:
    """Each rule's weights from one validation window."""
    model = AutoForecaster(candidates=tuple(names), horizon=HORIZON)
    ensemble = model.validation_weights(window, names)
    best = best_single(window, names)
    rules = {"ensemble": ensemble, "best single": {GLOBAL: {best: 1.0}}}
    for share in SHRINK:
        rules[f"shrink {share:g}"] = shrunk(ensemble, best, share)
    wins = ensemble_wins_held_out(model, window, names)
    rules["switch"] = ensemble if wins else {GLOBAL: {best: 1.0}}
    return rules


def scores(rows: pd.DataFrame, name: str) -> dict[str, Any]:
    overall = evaluate(rows, models=[name], metrics=METRICS).iloc[0]
    per_cutoff = evaluate(rows, models=[name], metrics=METRICS, by=CUTOFF)
    return {
        **{m: float(overall[m]) for m in METRICS},
        "per_cutoff": {
            str(pd.Timestamp(r[CUTOFF]).date()): {m: float(r[m]) for m in METRICS}
            for r in per_cutoff.to_dict(orient="records")
        },
    }


def replay(
    frames: dict[str, pd.DataFrame],
    names: list[str],
    costs: dict[str, dict],
    validation: list[pd.Timestamp],
):
    """Scores and seconds of every candidate and of auto (each rule, refit True / False) at
    the ``validation`` cutoffs."""
    fit, updated = frames["fit"], frames["update"]
    rows: list[dict[str, Any]] = []
    at = fit[fit[CUTOFF].isin(validation)]
    for name in names:
        seconds = sum(costs[name][c]["fit"] + costs[name][c]["predict"] for c in validation)
        rows.append({"forecast": name, "seconds": seconds, **scores(at, name)})
    together = sum(r["seconds"] for r in rows)
    parts: dict[tuple[str, bool], list[pd.DataFrame]] = {}
    seconds: dict[tuple[str, bool], float] = {}
    weights_at: dict[str, dict[str, Any]] = {}
    for cutoff in validation:
        before = cutoff - WEEK
        window = fit[fit[CUTOFF] == before]
        rules = rule_weights(window, names)
        weights_at[str(cutoff.date())] = rules
        validate = sum(costs[n][before]["fit"] + costs[n][before]["predict"] for n in names)
        for rule, weights in rules.items():
            used = sorted({n for w in weights.values() for n, v in w.items() if v > 0})
            for refit, source in ((True, fit), (False, updated)):
                key = (rule, refit)
                parts.setdefault(key, []).append(combine(source[source[CUTOFF] == cutoff], weights))
                final = sum(
                    costs[n][cutoff]["fit"] + costs[n][cutoff]["predict"]
                    if refit
                    else costs[n][before]["update"] + costs[n][before]["update_predict"]
                    for n in used
                )
                seconds[key] = seconds.get(key, 0.0) + validate + final
    for (rule, refit), pieces in parts.items():
        label = f"auto[{rule}, refit={refit}]"
        rows.append(
            {
                "forecast": label,
                "rule": rule,
                "refit": refit,
                "seconds": seconds[(rule, refit)],
                "cost_vs_candidates": seconds[(rule, refit)] / together,
                **scores(pd.concat(pieces, ignore_index=True), "auto"),
            }
        )
    last = validation[-1]
    combined = {
        refit: parts[("ensemble", refit)][-1].loc[
            lambda f: f[CUTOFF] == last, [ITEM_ID, DATE, "auto"]
        ]
        for refit in (True, False)
    }
    return rows, together, weights_at, combined


def check_real(
    panel: Panel,
    names: list[str],
    settings: dict[str, dict],
    replayed: dict,
    cutoff: pd.Timestamp,
):
    """The real ``AutoForecaster`` at ``cutoff``, both settings."""
    out = {}
    for refit in (False, True):
        model = AutoForecaster(
            candidates=tuple(names), candidate_settings=settings, horizon=HORIZON, refit=refit
        )
        start = time.perf_counter()
        model.fit(panel.until(cutoff))
        fit = time.perf_counter() - start
        forecast, predict = timed_predict(model, panel, cutoff)
        mine = scored_window(panel, cutoff, forecast)
        theirs = replayed[refit]
        merged = mine.merge(theirs, on=[ITEM_ID, DATE], suffixes=("", "_replay"))
        gap = float(np.abs(merged["auto"] - merged["auto_replay"]).max())
        out[f"refit={refit}"] = {
            "fit_seconds": fit,
            "predict_seconds": predict,
            "candidate_seconds": model.report_["seconds"],
            "max_abs_difference_from_replay": gap,
            "wape": wape(mine, "auto"),
        }
        print(f"[check refit={refit}] {json.dumps(out[f'refit={refit}'])}", flush=True)
    return out


def reading(rows: list[dict[str, Any]]) -> list[str]:
    """What the table says about ``refit`` and the rules, computed from its rows."""
    by = {r["forecast"]: r for r in rows}
    new, old = by["auto[ensemble, refit=False]"], by["auto[ensemble, refit=True]"]
    better = sum(
        new["per_cutoff"][c]["wape"] < old["per_cutoff"][c]["wape"] for c in new["per_cutoff"]
    )
    candidates = [r for r in rows if "rule" not in r]
    best = min(candidates, key=lambda r: r["wape"])
    out = [
        f"- Without the second fit (ensemble rule): WAPE {new['wape']:.4f} against "
        f"{old['wape']:.4f} with it ({new['wape'] - old['wape']:+.4f}; lower at {better} of "
        f"{len(new['per_cutoff'])} cutoffs), wQL {new['wql']:.4f} against {old['wql']:.4f} "
        f"({new['wql'] - old['wql']:+.4f}); cost {new['cost_vs_candidates']:.2f}x the "
        f"candidates together against {old['cost_vs_candidates']:.2f}x.",
        f"- Best single candidate: {best['forecast']} (WAPE {best['wape']:.4f}, wQL "
        f"{best['wql']:.4f}).",
    ]
    for refit in (True, False):
        ranked = sorted((r for r in rows if r.get("refit") is refit), key=lambda r: r["wape"])
        out.append(
            f"- refit={refit}, rules by WAPE: "
            + ", ".join(f"{r['rule']} {r['wape']:.4f}" for r in ranked)
            + "."
        )
    return out


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# auto: the second fit (refit) and shrinkage rules, Online Retail II validation",
        "",
        f"Validation cutoffs {', '.join(report['validation_cutoffs'])}, horizon {HORIZON} weeks, "
        f"pooled over the cutoffs. Candidate set `{report['set']}`: "
        f"{', '.join(report['candidates'])}. Generated by `{report['provenance']['command']}` "
        f"at commit {report['provenance']['commit']}. Seconds: fit + predict on this shared "
        "2-core machine, one thread per model, every candidate in its own process (compare as "
        "ratios). auto's rows are replayed from the candidates' forecasts (see the script).",
        "",
        "| forecast | WAPE | wQL | seconds | x candidates together |",
        "|---|---|---|---|---|",
    ]
    for row in sorted(report["rows"], key=lambda r: r["wape"]):
        ratio = row.get("cost_vs_candidates")
        shown = "" if ratio is None else f"{ratio:.2f}"
        lines.append(
            f"| {row['forecast']} | {row['wape']:.4f} | {row['wql']:.4f} | "
            f"{row['seconds']:.0f} | {shown} |"
        )
    lines += ["", f"Candidates together: {report['candidates_seconds']:.0f} s.", ""]
    if report.get("item_subset"):
        lines += [
            f"A seeded random subset of {report['items']} items of the panel (the full panel's "
            "LightGBM fits did not finish on the shared machine in time); rerun without "
            "`--items` for the full protocol.",
            "",
        ]
    lines += ["## Reading", "", *reading(report["rows"]), ""]
    if report.get("check"):
        lines += ["## The real AutoForecaster at the last validation cutoff", ""]
        for key, entry in report["check"].items():
            lines.append(
                f"- {key}: fit {entry['fit_seconds']:.0f} s, predict "
                f"{entry['predict_seconds']:.0f} s, WAPE {entry['wape']:.4f}, largest "
                f"difference from the replay {entry['max_abs_difference_from_replay']:.2g}"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(__doc__, __file__)
    parser.add_argument("--source", type=Path, default=ONLINE_RETAIL)
    parser.add_argument("--candidates", default=",".join(CHEAP))
    parser.add_argument("--lm-seeds", default="", help="add the LM, one run per seed")
    parser.add_argument("--lm-finetune", default="frozen")
    parser.add_argument("--store", type=Path, default=RESULTS / "forecasts" / "auto_cost")
    parser.add_argument("--reuse", action="store_true", help="skip runs already in --store")
    parser.add_argument("--fill-only", action="store_true", help="only fill the store")
    parser.add_argument("--check", action="store_true", help="also fit the real auto")
    parser.add_argument(
        "--items", type=int, default=None, help="a seeded random subset of this many items"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", nargs=3, metavar=("PANEL", "NAME", "SEED"), help="internal")
    args = parser.parse_args(argv)
    args.store.mkdir(parents=True, exist_ok=True)
    if args.child:
        panel = Panel.load(Path(args.child[0]))
        name, seed = args.child[1], int(args.child[2])
        run = f"LM_s{seed}" if name == "LM" else name
        run_candidate(panel, name, run, seed, args.lm_finetune, args.store)
        return 0
    panel, _, _ = online_retail_panel(args.source, cache=args.store / "panel")
    panel_dir = next((args.store / "panel").iterdir())
    if args.items is not None:
        panel = item_subset(panel, args.items)
        args.store = args.store / f"items{args.items}"
        panel_dir = args.store / "panel"
        if not panel_dir.is_dir():
            panel.save(panel_dir)
    names = [n.strip() for n in args.candidates.split(",") if n.strip()]
    seeds = [int(s) for s in args.lm_seeds.split(",") if s.strip()]
    jobs = [(n, 0, n) for n in names] + [("LM", s, f"LM_s{s}") for s in seeds]
    for name, seed, run in jobs:
        done = all(piece(args.store, run, "seconds", c).is_file() for c in fit_order())
        if not (args.reuse and done):
            print(f"[{run}] fitting at {[str(c.date()) for c in fit_order()]}", flush=True)
            child = ["--child", str(panel_dir), name, str(seed), "--store", str(args.store)]
            run_module("auto_cost", *child, "--lm-finetune", args.lm_finetune)
    if args.fill_only:
        return 0
    sets = {"cheap": {n: n for n in names}}
    for seed in seeds:
        sets[f"cheap+LM_s{seed}"] = {**sets["cheap"], "LM": f"LM_s{seed}"}
    for set_name, runs in sets.items():
        cutoffs = complete_cutoffs(args.store, list(runs.values()))
        if not cutoffs:
            print(f"{set_name}: no validation cutoff is complete in {args.store}; skipped")
            continue
        costs = {}
        for name, run in runs.items():
            costs[name] = {
                c: json.loads(piece(args.store, run, "seconds", c).read_text())
                for c in sorted(set(cutoffs) | {c - WEEK for c in cutoffs})
            }
        frames = load(args.store, panel, runs, cutoffs)
        rows, together, weights, combined = replay(frames, list(runs), costs, cutoffs)
        report: dict[str, Any] = {
            "set": set_name,
            "items": args.items or len(panel.item_ids),
            "item_subset": args.items is not None,
            "candidates": list(runs),
            "lm_finetune": args.lm_finetune if "LM" in runs else None,
            "validation_cutoffs": [str(c.date()) for c in cutoffs],
            "horizon": HORIZON,
            "candidates_seconds": together,
            "rows": rows,
            "weights": {c: {rule: w for rule, w in rules.items()} for c, rules in weights.items()},
            "costs": {n: list(c.values()) for n, c in costs.items()},
        }
        if args.check and set_name == "cheap":
            settings = {n: {"n_jobs": 1} for n in runs if n.startswith("LightGBM")}
            report["check"] = check_real(panel, list(runs), settings, combined, cutoffs[-1])
        name = "auto_cost" if set_name == "cheap" else f"auto_cost_with_{runs['LM']}"
        path = write_results(name, report, markdown, args.out, argv)
        print(path.with_suffix(".md").read_text(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
