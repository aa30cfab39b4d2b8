"""Where does a model's policy hold more stock than SeasonalNaive's? Items behind the gap.

For each test cutoff of ``python -m benchmarks.inventory`` (2011-07-04, 2011-08-01, 2011-08-29,
2011-09-26), each model's fill-rate policy is replayed with the week correlation and spread
scale that the inventory benchmark chose on the validation cutoffs (read from
``benchmarks/results/inventory.json``, with its lead time, draws and lost-sales setting; a
file from an earlier protocol is refused), at the curve target whose achieved unit fill rate is
closest to ``--fill`` (default 0.88), so both policies serve about the same share of demand.
That target only lines the policies up for the comparison (as the inventory benchmark's
stock-at-equal-fill table does); no setting is chosen here. The stock value per item-week is
split by item: the items where the model holds the most value above SeasonalNaive, with the
model's median and 0.9-quantile forecasts (means over the window's weeks) against the actual
sales.

The forecasts are the test forecasts of the store root ``--store`` (default
``benchmarks/results/forecasts``, folder ``test/``), of the same runs as the inventory
benchmark (its ``forecast_seed`` picks ``<model>_s<seed>`` for seeded models).
Results: ``benchmarks/results/inventory_gap.json`` (the rows under ``rows``) and ``.md``.

Usage::

    python -m benchmarks.inventory_gap [--models LM-lora,LM-frozen] [--fill 0.88] [--top 10]
        [--source PATH] [--store DIR] [--out DIR]
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks import inventory as inv
from benchmarks.harness import ONLINE_RETAIL, RESULTS, argument_parser, write_results
from salesformer.data.contract import CUTOFF, ITEM_ID
from salesformer.decisions.inventory_sim import ReplaySettings, replay_policy


def read_inventory(path: Path, models: list[str]) -> dict[str, Any]:
    """The inventory benchmark's results, checked to be of this protocol and to cover ``models``.

    Exits with one line naming the command to run when they are not.
    """
    rerun = f"python -m benchmarks.inventory --models {','.join(models)}"
    if not path.is_file():
        sys.exit(f"{path} not found; create it with: {rerun}")
    report = json.loads(path.read_text())
    protocol = (report.get("validation_cutoffs"), report.get("test_cutoffs"))
    if protocol != (list(inv.VALIDATION), list(inv.TEST)) or "forecast_seed" not in report:
        sys.exit(
            f"{path} chose its settings under an earlier protocol (validation cutoffs "
            f"{protocol[0]}, test cutoffs {protocol[1]}); rerun it with: {rerun}"
        )
    absent = [m for m in models if f"{m}/fill-rate" not in report["chosen_settings"]]
    if absent:
        sys.exit(f"{path} has no settings chosen for {absent}; rerun it with: {rerun}")
    return report


def replay_near(
    frame: pd.DataFrame,
    model: str,
    settings: ReplaySettings,
    fill: float,
    values: pd.DataFrame,
) -> tuple[pd.DataFrame, float, float]:
    """Per-item replay at the curve target whose unit fill rate is closest to ``fill``.

    ``settings``: the fill-rate policy with the week correlation and spread scale chosen on
    the validation cutoffs for the model.
    """
    replay = replay_policy(frame, model, list(inv.CURVE), settings)
    achieved = replay.groupby("target")[["served", "demand"]].sum()
    achieved = achieved["served"] / achieved["demand"]
    target = float((achieved - fill).abs().idxmin())
    chosen = replay[replay["target"] == target].merge(values, on=[ITEM_ID, CUTOFF], how="left")
    chosen["value"] = chosen["stock_week_sum"] * chosen["unit_value"].fillna(0.0)
    return chosen.set_index(ITEM_ID), target, float(achieved[target])


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__, __file__)
    parser.add_argument("--models", default="LM-lora,LM-frozen")
    parser.add_argument("--fill", type=float, default=0.88)
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--source", type=Path, default=ONLINE_RETAIL)
    parser.add_argument(
        "--store", type=Path, default=inv.STORE, help="forecast store root (reads test/)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where inventory.json is")
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    inventory = read_inventory(args.out / "inventory.json", [*models, inv.BASELINE])
    seed = int(inventory["forecast_seed"])
    frames = {m: inv.load_forecasts(args.store, "test", m, seed) for m in [*models, inv.BASELINE]}
    values = inv.unit_values(args.source)

    def policy(model: str) -> ReplaySettings:
        chosen = inventory["chosen_settings"][f"{model}/fill-rate"]
        return ReplaySettings(service_type="fill-rate", **chosen, **inventory["settings"])

    rows: list[dict[str, Any]] = []
    lines = [
        "# Which items hold the stock gap to SeasonalNaive?",
        "",
        f"Test cutoffs {', '.join(inv.TEST)}, fill-rate policy with the settings chosen on the "
        f"validation cutoffs {', '.join(inv.VALIDATION)} (`inventory.json`), at the curve "
        f"target nearest to unit fill {args.fill:g}; value per item-week (all items' weeks); "
        f"runs {', '.join(inv.stored_run(m, seed) for m in [*models, inv.BASELINE])}. "
        "Generated by `python -m benchmarks.inventory_gap`.",
        "",
    ]
    for cutoff in inv.TEST:
        stamp = pd.Timestamp(cutoff)
        window = {m: f[f[CUTOFF] == stamp] for m, f in frames.items()}
        base, base_target, base_fill = replay_near(
            window[inv.BASELINE], inv.BASELINE, policy(inv.BASELINE), args.fill, values
        )
        weeks = float(base["weeks"].sum())
        for model in models:
            mine, target, fill = replay_near(window[model], model, policy(model), args.fill, values)
            excess = (mine["value"] - base["value"].reindex(mine.index).fillna(0.0)) / weeks
            top = excess.sort_values(ascending=False).head(args.top)
            frame = window[model]
            forecast = frame.groupby(ITEM_ID)[model].mean()
            sold = frame.groupby(ITEM_ID)["y"].mean()
            upper = frame.groupby(ITEM_ID)[f"{model}-q90"].mean()
            row = {
                "cutoff": cutoff,
                "model": model,
                "target": target,
                "unit_fill": round(fill, 3),
                "baseline_target": base_target,
                "baseline_unit_fill": round(base_fill, 3),
                "value_per_item_week": round(float(mine["value"].sum()) / weeks, 1),
                "baseline_value_per_item_week": round(float(base["value"].sum()) / weeks, 1),
                "top_items_excess": round(float(top.sum()), 1),
                "top_items": [
                    {
                        "item_id": str(item),
                        "excess_value_per_item_week": round(float(top[item]), 1),
                        "mean_median_forecast": round(float(forecast[item]), 1),
                        "mean_q90_forecast": round(float(upper[item]), 1),
                        "mean_sales": round(float(sold[item]), 1),
                    }
                    for item in top.index
                ],
            }
            rows.append(row)
            lines += [
                f"## {cutoff}: {model} (target {target:g}, unit fill {fill:.3f}) vs "
                f"SeasonalNaive (target {base_target:g}, unit fill {base_fill:.3f})",
                "",
                f"Value per item-week: {row['value_per_item_week']} vs "
                f"{row['baseline_value_per_item_week']}; the top {args.top} items by excess "
                f"hold {row['top_items_excess']} of it.",
                "",
                "| item | excess value / item-week | mean median forecast | mean 0.9 quantile "
                "| mean weekly sales |",
                "|---|---|---|---|---|",
                *(
                    f"| {t['item_id']} | {t['excess_value_per_item_week']:.1f} "
                    f"| {t['mean_median_forecast']:.0f} | {t['mean_q90_forecast']:.0f} "
                    f"| {t['mean_sales']:.0f} |"
                    for t in row["top_items"]
                ),
                "",
            ]
            print("\n".join(lines[-(args.top + 6) :]), flush=True)
    result = {
        "test_cutoffs": list(inv.TEST),
        "forecast_seed": seed,
        "policies": {m: asdict(policy(m)) for m in [*models, inv.BASELINE]},
        "rows": rows,
    }
    write_results("inventory_gap", result, "\n".join(lines), args.out, argv)


if __name__ == "__main__":
    main()
