"""Inventory replay on the Online Retail II backtest windows: does the planner hit its targets?

The planner (:mod:`salesformer.decisions.inventory`) turns each model's backtest quantile
forecasts into weekly order-up-to levels, and :mod:`salesformer.decisions.inventory_sim` replays
the actual demand of the 8-week window after each cutoff against them: weekly review, lead time
``--lead-time`` weeks (default 1), stock starting at the first order-up-to level, lost sales,
unit value = the item's last paid price at the cutoff (prepared panel).

Protocol (every setting is chosen on validation windows that end before the first test cutoff;
nothing is chosen on a test window):

- **Validation** cutoffs 2011-03-07, 2011-04-04 and 2011-05-02 (their 8-week windows end by
  2011-06-27, before the first test cutoff 2011-07-04): for each model and service type, the
  week-to-week correlation of forecast errors (``week_correlation``, grid 0, 0.5, 1) and the
  planner's spread scale (``spread_scale``, grid 1, 1.25, 1.5: the weekly distributions widened
  around their medians) are chosen together to bring the achieved service, pooled over the
  three cutoffs' windows (each replayed as its own 8-week window), closest to the targets 0.9,
  0.95, 0.99 (mean absolute gap; per-item fill rate for fill-rate targets, cycle service for
  cycle targets; ties go to the smaller setting).
- **Test** cutoffs 2011-07-04, 2011-08-01, 2011-08-29 and 2011-09-26 (all four; their windows
  start after every validation window ends): the chosen setting is replayed at the targets 0.9,
  0.95, 0.99 and, for fill-rate targets, over a grid of targets whose (achieved fill rate,
  average stock) curve is interpolated to compare the stock each model needs for the *same
  achieved* fill rate.

The backtest forecasts come from ``python -m benchmarks.online_retail --cutoffs validation``
and ``--cutoffs test``: ``--store`` (default ``benchmarks/results/forecasts``) is the root that
holds their ``validation/`` and ``test/`` folders. Seeded models (``LM-frozen``, ``LM-lora``,
``LM-full``, ``LM-notext``, ``auto``) are read from the run ``<model>_s<seed>`` of ``--seed``
(default 0), the same run in both sets; the others (``SeasonalNaive``) from ``<model>``.
Results: ``benchmarks/results/inventory.json`` and ``.md``.

Usage::

    python -m benchmarks.inventory [--models LM-lora,LM-frozen,SeasonalNaive] [--seed 0]
        [--lead-time 1] [--samples 500] [--backorders] [--source PATH] [--store DIR] [--out DIR]
"""

from __future__ import annotations

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
    write_results,
)
from benchmarks.online_retail import CUTOFF_SETS, SEEDED, run_name
from salesformer.data.contract import CUTOFF, DATE, ITEM_ID
from salesformer.decisions.inventory_sim import ReplaySettings, replay_policy, summarize_replay

#: Root of the forecast store of ``benchmarks.online_retail``: one folder per cutoff set.
STORE = RESULTS / "forecasts"
VALIDATION = CUTOFF_SETS["validation"]
TEST = CUTOFF_SETS["test"]
TARGETS = (0.9, 0.95, 0.99)
CORRELATIONS = (0.0, 0.5, 1.0)
SPREADS = (1.0, 1.25, 1.5)
CURVE = (0.5, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.99, 0.995)
#: (achieved-service metric, stock metric, levels): stock needed at equal achieved service.
MATCHES = (
    ("fill_rate", "avg_stock_value", (0.85, 0.88, 0.9)),
    ("item_fill_rate", "avg_stock_value", (0.88, 0.9, 0.92, 0.94)),
    ("item_fill_rate", "median_stock_units", (0.88, 0.9, 0.92, 0.94)),
)
SERVICE_TYPES = ("fill-rate", "cycle")
BASELINE = "SeasonalNaive"
DEFAULT_MODELS = ("LM-lora", "LM-frozen", BASELINE)


def stored_run(model: str, seed: int) -> str:
    """The run of ``model`` in the store: ``<model>_s<seed>`` for seeded models, else ``model``."""
    return run_name(model, seed if model in SEEDED else None)


def as_model_columns(frame: pd.DataFrame, run: str, model: str) -> pd.DataFrame:
    """A run's forecast columns (``LM-lora_s0``, ``LM-lora_s0-q10`` ...) named after the model."""
    renamed = {
        c: model + c[len(run) :] for c in frame.columns if c == run or c.startswith(run + "-q")
    }
    return frame.rename(columns=renamed)


def creating_command(store: Path, cutoff_set: str, model: str, seed: int) -> str:
    """The command that puts the forecasts of ``model`` (its run of ``seed``) into the store."""
    command = f"python -m benchmarks.online_retail --cutoffs {cutoff_set} --models {model}"
    if model in SEEDED:
        command += f" --seeds {seed}"
    if store.resolve() != STORE.resolve():
        command += f" --store {store / cutoff_set}"
    return command


def load_forecasts(store: Path, cutoff_set: str, model: str, seed: int) -> pd.DataFrame:
    """Backtest forecasts of one model on one cutoff set, with the model's own column names.

    Args:
        store: the store root, holding ``validation/`` and ``test/``.
        cutoff_set: ``"validation"`` or ``"test"``.
        model: a benchmark model name (``LM-lora``, ``SeasonalNaive``).
        seed: the run of a seeded model (ignored for the others).

    Exits with one line naming the command that creates the forecasts when they are missing,
    and when the file does not hold exactly the set's cutoffs.
    """
    run = stored_run(model, seed)
    path = store / cutoff_set / f"{run}.parquet"
    if not path.is_file():
        sys.exit(
            f"{cutoff_set} forecasts of {model} (run {run}) not found at {path}; create them "
            f"with: {creating_command(store, cutoff_set, model, seed)}"
        )
    frame = as_model_columns(pd.read_parquet(path), run, model)
    frame[CUTOFF] = pd.to_datetime(frame[CUTOFF])
    found = sorted(str(c.date()) for c in frame[CUTOFF].unique())
    if found != sorted(CUTOFF_SETS[cutoff_set]):
        sys.exit(
            f"{path} holds the cutoffs {found}, not the {cutoff_set} cutoffs "
            f"{list(CUTOFF_SETS[cutoff_set])}; recreate it with: "
            f"{creating_command(store, cutoff_set, model, seed)}"
        )
    return frame


def unit_values(source: Path) -> pd.DataFrame:
    """``item_id, cutoff, unit_value``: each item's last paid price at each cutoff."""
    panel, _, _ = online_retail_panel(source, panel_cache_dir())
    sales = panel.sales[[ITEM_ID, DATE, "price"]]
    rows = []
    for cutoff in (*VALIDATION, *TEST):
        stamp = pd.Timestamp(cutoff)
        last = sales[sales[DATE] <= stamp].groupby(ITEM_ID)["price"].last()
        rows.append(pd.DataFrame({ITEM_ID: last.index, CUTOFF: stamp, "unit_value": last.values}))
    return pd.concat(rows, ignore_index=True)


def run_replay(
    frame: pd.DataFrame,
    model: str,
    cutoffs: tuple[str, ...],
    targets: tuple[float, ...],
    settings: ReplaySettings,
    values: pd.DataFrame | None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Replay the windows of ``cutoffs`` only (other rows of ``frame`` are ignored).

    Returns:
        The summaries pooled over all ``cutoffs`` and per cutoff.
    """
    stamps = [pd.Timestamp(c) for c in cutoffs]
    missing = sorted(set(stamps) - set(frame[CUTOFF]))
    if missing:
        raise ValueError(
            f"forecasts of {model}: no rows at the cutoff(s) {[str(c.date()) for c in missing]}; "
            f"got {sorted(str(c.date()) for c in frame[CUTOFF].unique())}"
        )
    window = frame[frame[CUTOFF].isin(stamps)]
    replay = replay_policy(window, model, list(targets), settings)
    return summarize_replay(replay, values), summarize_replay(replay, values, by=(CUTOFF,))


def gap(summary: pd.DataFrame, service_type: str) -> float:
    """Mean absolute gap between achieved service and target."""
    column = "item_fill_rate" if service_type == "fill-rate" else "cycle_service"
    return float((summary[column] - summary["target"]).abs().mean())


def choose_setting(
    frame: pd.DataFrame,
    model: str,
    service_type: str,
    base: dict[str, Any],
    values: pd.DataFrame | None,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """The (week correlation, spread scale) of least gap to the targets on the validation windows.

    Only the rows at the validation cutoffs are replayed (pooled over them), whatever else
    ``frame`` holds.

    Returns:
        The chosen setting, and every trial with its pooled gap and its gap per cutoff.
    """
    trials: list[dict[str, Any]] = []
    for spread in SPREADS:
        for rho in CORRELATIONS:
            settings = ReplaySettings(
                service_type=service_type, week_correlation=rho, spread_scale=spread, **base
            )
            summary, per_cutoff = run_replay(frame, model, VALIDATION, TARGETS, settings, values)
            by_cutoff = {
                str(pd.Timestamp(c).date()): gap(group, service_type)
                for c, group in per_cutoff.groupby(CUTOFF)
            }
            trials.append(
                {
                    "week_correlation": rho,
                    "spread_scale": spread,
                    "gap": gap(summary, service_type),
                    "gap_by_cutoff": by_cutoff,
                }
            )
            print(
                f"  [{model} {service_type}] validation rho={rho} spread={spread}: "
                f"gap {trials[-1]['gap']:.4f}",
                flush=True,
            )
    best = min(trials, key=lambda t: t["gap"])  # the first of equal gaps: smaller spread
    chosen = {"week_correlation": best["week_correlation"], "spread_scale": best["spread_scale"]}
    return chosen, trials


def matched_stock(curves: pd.DataFrame, scope: str) -> list[dict[str, Any]]:
    """Stock each model needs at equal achieved service (linear interpolation on its curve)."""
    rows = []
    for metric, stock, levels in MATCHES:
        for level in levels:
            row: dict[str, Any] = {"scope": scope, "metric": metric, "stock": stock, "at": level}
            for model, curve in curves.groupby("model", sort=False):
                curve = curve.sort_values(metric)
                fill = curve[metric].to_numpy()
                inside = fill.min() <= level <= fill.max()
                row[str(model)] = float(np.interp(level, fill, curve[stock])) if inside else None
            rows.append(row)
    return rows


def markdown(report: dict[str, Any]) -> str:
    lead = report["settings"]["lead_time"]
    lines = [
        "# Inventory replay on Online Retail II",
        "",
        f"Lead time {lead} week(s) (the first {lead} week(s) of each window are warm-up, not "
        "scored), weekly review, "
        f"{'lost sales' if report['settings']['lost_sales'] else 'backorders'}; "
        f"{report['settings']['n_samples']} draws per level. Settings chosen on the validation "
        f"cutoffs {', '.join(report['validation_cutoffs'])} (pooled; their windows end before "
        f"the first test cutoff); every number below is from the test cutoffs "
        f"{', '.join(report['test_cutoffs'])} ({report['test_windows']} item windows, 8 weeks "
        f"each). Forecasts: runs {', '.join(report['runs'].values())}. "
        "Generated by `python -m benchmarks.inventory`.",
        "",
        "## Settings chosen on the validation windows",
        "",
        "| model | type | corr | spread | validation gap |",
        "|---|---|---|---|---|",
    ]
    for key, best in report["chosen_settings"].items():
        model, service_type = key.split("/")
        chosen_gap = next(
            t["gap"]
            for t in report["validation"]
            if t["model"] == model
            and t["service_type"] == service_type
            and t["week_correlation"] == best["week_correlation"]
            and t["spread_scale"] == best["spread_scale"]
        )
        lines.append(
            f"| {model} | {service_type} | {best['week_correlation']:g} "
            f"| {best['spread_scale']:g} | {chosen_gap:.4f} |"
        )
    lines += [
        "",
        "## Achieved service on the test windows",
        "",
        "| model | type | corr | spread | target | item fill rate | unit fill rate "
        "| cycle service | stock-out weeks | avg stock units | avg stock value |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["test"]:
        lines.append(
            f"| {row['model']} | {row['service_type']} | {row['week_correlation']:g} "
            f"| {row['spread_scale']:g} | {row['target']:g} | {row['item_fill_rate']:.3f} "
            f"| {row['fill_rate']:.3f} "
            f"| {row['cycle_service']:.3f} | {row['stockout_weeks']:.0f} "
            f"| {row['avg_stock_units']:.1f} | {row['avg_stock_value']:.1f} |"
        )
    lines += [
        "",
        "Item fill rate: mean over item windows with demand of units served / demanded (the "
        "planner's per-item target). Unit fill rate: all units together (large sellers weigh "
        "most). Cycle service: share of item-weeks without a stock-out. Stock: end-of-week "
        "units (value at last paid price) per item-week.",
        "",
        "## Stock at equal achieved fill rate (fill-rate targets)",
        "",
        "Each model's (achieved fill rate, stock) curve over the targets "
        f"{', '.join(f'{t:g}' for t in CURVE)}, interpolated at equal achieved fill rate; "
        "'-' where a curve does not reach it. Value: average stock value per item-week "
        "(large items weigh most); median units: the median item window's average stock. "
        "Scope 'test': the four test cutoffs together.",
        "",
        "| scope | fill rate | at | stock | " + " | ".join(report["models"]) + " |",
        "|---|---|---|---|" + "---|" * len(report["models"]),
    ]
    for row in report["matched"]:
        cells = ["-" if row.get(m) is None else f"{row[m]:.1f}" for m in report["models"]]
        lines.append(
            f"| {row['scope']} | {row['metric']} | {row['at']:g} | {row['stock']} | "
            + " | ".join(cells)
            + " |"
        )
    lines += [
        "",
        f"Machine: {report['machine']}; {report['seconds']:.0f} s.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__, __file__)
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    parser.add_argument(
        "--seed", type=int, default=0, help="run of the seeded models (LM-*, auto); default 0"
    )
    parser.add_argument("--lead-time", type=int, default=1)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument(
        "--backorders", action="store_true", help="replay with backorders, not lost sales"
    )
    parser.add_argument("--source", type=Path, default=ONLINE_RETAIL)
    parser.add_argument(
        "--store", type=Path, default=STORE, help="forecast store root (validation/, test/)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    chosen_on = {m: load_forecasts(args.store, "validation", m, args.seed) for m in models}
    scored_on = {m: load_forecasts(args.store, "test", m, args.seed) for m in models}
    values = unit_values(args.source)
    base: dict[str, Any] = {
        "lead_time": args.lead_time,
        "n_samples": args.samples,
        "seed": 0,
        "lost_sales": not args.backorders,
    }
    chosen, validation, test, curves, by_cutoff = {}, [], [], [], []
    for model in models:
        for service_type in SERVICE_TYPES:
            best, trials = choose_setting(chosen_on[model], model, service_type, base, values)
            chosen[f"{model}/{service_type}"] = best
            validation += [{"model": model, "service_type": service_type, **t} for t in trials]
            settings = ReplaySettings(
                service_type=service_type,
                week_correlation=best["week_correlation"],
                spread_scale=best["spread_scale"],
                **base,
            )
            targets = CURVE if service_type == "fill-rate" else TARGETS
            summary, per_cutoff = run_replay(
                scored_on[model], model, TEST, targets, settings, values
            )
            for frame in (summary, per_cutoff):
                frame.insert(0, "model", model)
                frame.insert(1, "service_type", service_type)
                frame.insert(2, "week_correlation", best["week_correlation"])
                frame.insert(3, "spread_scale", best["spread_scale"])
            if service_type == "fill-rate":
                curves.append(summary)
                by_cutoff.append(per_cutoff)
            test += summary[summary["target"].isin(TARGETS)].to_dict(orient="records")
            print(f"[{model} {service_type}] chosen on validation {best}")
            print(summary.round(3).to_string(index=False), flush=True)
    curve_frame = pd.concat(curves, ignore_index=True)
    cutoff_frame = pd.concat(by_cutoff, ignore_index=True)
    matched = matched_stock(curve_frame, "test")
    for cutoff, group in cutoff_frame.groupby(CUTOFF):
        matched += matched_stock(group, str(pd.Timestamp(cutoff).date()))
    windows = scored_on[models[0]]
    report = {
        "settings": {**base, "review_period": 1},
        "validation_cutoffs": list(VALIDATION),
        "test_cutoffs": list(TEST),
        "targets": list(TARGETS),
        "curve_targets": list(CURVE),
        "models": models,
        "forecast_seed": args.seed,
        "runs": {m: stored_run(m, args.seed) for m in models},
        "test_windows": int(windows.groupby([ITEM_ID, CUTOFF]).ngroups),
        "chosen_settings": chosen,
        "validation": validation,
        "test": test,
        "curves": curve_frame.to_dict(orient="records"),
        "curves_by_cutoff": cutoff_frame.to_dict(orient="records"),
        "matched": matched,
        "machine": machine_line(),
        "seconds": time.perf_counter() - started,
    }
    text = markdown(report)
    write_results("inventory", report, text, args.out, argv)
    print(text)


if __name__ == "__main__":
    main()
