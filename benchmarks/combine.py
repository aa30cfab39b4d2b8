"""Replay ``auto``'s choices and forecast combinations from stored Online Retail II backtests.

``auto`` fitted at a cutoff ``c`` backtests its candidates on the window of ``HORIZON`` weeks
that ends at ``c`` (forecasts made at ``c - HORIZON`` weeks), chooses weights per segment, and
forecasts from ``c`` with the candidates refitted on the whole panel: this script replays
``auto(refit=True)``. The default, ``refit=False``, forecasts with the candidates fitted at
``c - HORIZON`` and updated to ``c``, forecasts the stores do not hold:
``python -m benchmarks.auto_cost`` replays both. Every one of those
forecasts is a plain backtest forecast of a candidate, at cutoff ``c - HORIZON`` or ``c``, so a
forecast store that holds the candidates at both gives ``auto``'s forecast at ``c`` exactly,
for any selection rule, without fitting ``auto`` again: the stores ``validation``, ``test`` and
``auto-windows`` of ``python -m benchmarks.online_retail`` hold the candidates at every
validation and test cutoff and at the window before each.

Two analyses, each per LM seed (the LM run of ``--lm``; the other candidates have no seed):

- **auto replay**: ``auto`` with each selection rule (``segment``, the current default;
  ``global``; ``weighted``; ``ensemble``) and candidate set, at the validation cutoffs (where
  the default is chosen) and at the test cutoffs;
- **fixed combination**: greedy ensemble-selection weights (global, and per history segment)
  learned once on the three validation cutoffs, applied unchanged at the test cutoffs.

``AutoETS`` is not in the stores (too slow for the 4,000-item backtests), so the replayed
``auto`` chooses among the other default candidates. Results: ``<out>/combine.{json,md}``.

Usage::

    python -m benchmarks.combine [--stores DIR] [--lm LM-frozen] [--seeds 0,1,2] [--out DIR]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.harness import RESULTS, argument_parser, write_results
from benchmarks.online_retail import (
    AUTO_WINDOW_CUTOFFS,
    CUTOFFS,
    HORIZON,
    VALIDATION_CUTOFFS,
    run_name,
)
from salesformer.data.contract import ACTUAL, CUTOFF, DATE, ITEM_ID
from salesformer.evaluation.backtest import HISTORY_SEGMENT
from salesformer.evaluation.metrics import evaluate
from salesformer.forecasting.protocol import DEFAULT_QUANTILES, quantile_column
from salesformer.models.auto import GLOBAL, SEGMENT, AutoForecaster, segment_labels
from salesformer.models.combination import ensemble_weights

#: ``auto``'s default candidates that the stores hold (AutoETS is left out, see above).
CANDIDATES = ("LM", "LightGBM", "LightGBM-text", "ADIDA", "CrostonOptimized", "TSB")
CANDIDATE_SETS = {"all": CANDIDATES, "LM+LightGBM-text": ("LM", "LightGBM-text")}
SELECTIONS = ("segment", "global", "weighted", "ensemble")
STORES = ("validation", "test", "auto-windows")
METRICS = ("wape", "wql", "mase", "coverage80")
SHORT = "short (<=26)"


def _columns(name: str) -> list[str]:
    return [name, *(quantile_column(name, q) for q in DEFAULT_QUANTILES)]


def load(root: Path, lm: str, seed: int, names: tuple[str, ...]) -> pd.DataFrame:
    """Every cutoff's forecasts of ``names`` (the LM as ``LM``) with the series facts."""
    parts = []
    for store in STORES:
        folder = root / store
        frame: pd.DataFrame | None = None
        for name in names:
            run = run_name(lm, seed) if name == "LM" else name
            part = pd.read_parquet(folder / f"{run}.parquet")
            part = part.rename(columns=dict(zip(_columns(run), _columns(name), strict=True)))
            keep = [ITEM_ID, CUTOFF, DATE, ACTUAL, *_columns(name)]
            if frame is None:
                frame = part[keep]
            else:
                frame = frame.merge(
                    part[keep].drop(columns=ACTUAL), on=[ITEM_ID, CUTOFF, DATE], validate="1:1"
                )
        assert frame is not None
        series = pd.read_parquet(folder / "series.parquet")
        parts.append(frame.merge(series, on=[ITEM_ID, CUTOFF], how="left"))
    out = pd.concat(parts, ignore_index=True)
    out[CUTOFF] = pd.to_datetime(out[CUTOFF])
    out[SEGMENT] = segment_labels(out)
    return out


def combine(rows: pd.DataFrame, weights: dict[str, dict[str, float]], label: str) -> pd.DataFrame:
    """The forecast of each row from its segment's weights (``GLOBAL``'s where it has none)."""
    segment = rows[SEGMENT].where(rows[SEGMENT].isin(list(weights)), GLOBAL).to_numpy()
    out = rows[[ITEM_ID, CUTOFF, DATE, ACTUAL, HISTORY_SEGMENT, "scale_mae", "scale_mse"]].copy()
    names = sorted({n for w in weights.values() for n in w})
    share = {n: np.array([weights[s].get(n, 0.0) for s in segment]) for n in names}
    sources = zip(*(_columns(n) for n in names), strict=True)
    for target, columns in zip(_columns(label), sources, strict=True):
        out[target] = sum(
            share[n] * rows[c].to_numpy(dtype=float) for n, c in zip(names, columns, strict=True)
        )
    return out


def replay_auto(frame: pd.DataFrame, cutoff: str, names: tuple[str, ...], selection: str):
    """``auto``'s forecast at ``cutoff`` and its weights, from the window before it."""
    model = AutoForecaster(candidates=names, selection=selection, horizon=HORIZON)  # type: ignore[arg-type]
    at = pd.Timestamp(cutoff)
    window = frame[frame[CUTOFF] == at - pd.Timedelta(weeks=HORIZON)]
    weights = model.validation_weights(window, list(names))
    return combine(frame[frame[CUTOFF] == at], weights, "auto"), weights


def fixed_weights(frame: pd.DataFrame, names: tuple[str, ...], by_segment: bool):
    """Ensemble-selection weights learned on the validation cutoffs' forecasts."""
    rows = frame[frame[CUTOFF].isin(pd.to_datetime(VALIDATION_CUTOFFS))]

    def learn(part: pd.DataFrame) -> dict[str, float]:
        return ensemble_weights(
            part[ACTUAL].to_numpy(dtype=float),
            {n: part[n].to_numpy(dtype=float) for n in names},
        )

    weights = {GLOBAL: learn(rows)}
    if by_segment:
        for segment, part in rows.groupby(HISTORY_SEGMENT):
            weights[str(segment)] = learn(part)
    return weights


def _by_history(rows: pd.DataFrame, weights: dict[str, dict[str, float]], label: str):
    """``combine`` keyed on the history segment instead of auto's segment."""
    keyed = rows.assign(**{SEGMENT: rows[HISTORY_SEGMENT]})
    return combine(keyed, weights, label)


def _scores(forecast: pd.DataFrame, label: str) -> dict[str, Any]:
    overall = evaluate(forecast, models=[label], metrics=METRICS).iloc[0]
    by = evaluate(forecast, models=[label], metrics=("wape", "wql"), by=HISTORY_SEGMENT)
    short = by[by[HISTORY_SEGMENT] == SHORT]
    per_cutoff = evaluate(forecast, models=[label], metrics=("wape",), by=CUTOFF)
    return {
        **{m: float(overall[m]) for m in METRICS},
        "short_wape": float(short["wape"].iloc[0]) if len(short) else None,
        "per_cutoff_wape": {
            str(pd.Timestamp(c).date()): float(w)
            for c, w in zip(per_cutoff[CUTOFF], per_cutoff["wape"], strict=True)
        },
    }


def stored_runs(root: Path, lm: str, seeds: list[int]) -> list[dict[str, Any]]:
    """Where each stored backtest came from: store, run, commit and whether the tree was dirty
    (the stores are filled by separate ``benchmarks.online_retail`` runs)."""
    rows = []
    for store in STORES:
        for name in CANDIDATES:
            for run in [run_name(lm, s) for s in seeds] if name == "LM" else [name]:
                cost = json.loads((root / store / f"{run}.cost.json").read_text())
                rows.append(
                    {
                        "store": store,
                        "run": run,
                        "commit": cost.get("commit"),
                        "dirty": cost.get("dirty"),
                    }
                )
    return rows


def run_seed(root: Path, lm: str, seed: int) -> list[dict[str, Any]]:
    """Every analysis row of one LM seed."""
    frame = load(root, lm, seed, CANDIDATES)
    rows: list[dict[str, Any]] = []
    for split, cutoffs in (("validation", VALIDATION_CUTOFFS), ("test", CUTOFFS)):
        at = frame[frame[CUTOFF].isin(pd.to_datetime(cutoffs))]
        for name in CANDIDATES:
            rows.append({"split": split, "forecast": name, **_scores(at, name)})
        for set_name, names in CANDIDATE_SETS.items():
            for selection in SELECTIONS:
                parts, chosen = [], {}
                for cutoff in cutoffs:
                    part, weights = replay_auto(frame, cutoff, names, selection)
                    parts.append(part)
                    chosen[cutoff] = weights[GLOBAL]
                label = f"auto[{selection}, {set_name}]"
                scores = _scores(pd.concat(parts, ignore_index=True), "auto")
                rows.append({"split": split, "forecast": label, **scores, "weights": chosen})
    test = frame[frame[CUTOFF].isin(pd.to_datetime(CUTOFFS))]
    for set_name, names in CANDIDATE_SETS.items():
        for by_segment in (False, True):
            weights = fixed_weights(frame, names, by_segment)
            where = "per history segment" if by_segment else "global"
            label = f"fixed ensemble [{where}, {set_name}]"
            combined = _by_history(test, weights, label)
            rows.append(
                {"split": "test", "forecast": label, **_scores(combined, label), "weights": weights}
            )
    for row in rows:
        row["seed"] = seed
    return rows


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and min-max over seeds, per split and forecast."""
    frame = pd.DataFrame(rows)
    out = []
    for (split, forecast), part in frame.groupby(["split", "forecast"], sort=False):
        entry: dict[str, Any] = {"split": split, "forecast": forecast, "seeds": len(part)}
        for metric in (*METRICS, "short_wape"):
            values = part[metric].astype(float)
            entry[metric] = float(values.mean())
            entry[f"{metric}_min"] = float(values.min())
            entry[f"{metric}_max"] = float(values.max())
        out.append(entry)
    return out


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Online Retail II: auto replayed, and forecast combinations",
        "",
        f"LM run: `{report['lm']}`, seeds {report['seeds']} (mean [min, max] over seeds; the "
        "other candidates have no seed). Candidates: " + ", ".join(CANDIDATES) + " (auto's "
        "defaults less AutoETS). auto at a cutoff is replayed from the stored backtests of "
        "its candidates at that cutoff and at the window before it "
        f"({', '.join(AUTO_WINDOW_CUTOFFS)} and the validation/test cutoffs). Generated by "
        f"`{report['provenance']['command']}` at commit {report['provenance']['commit']}.",
    ]
    for split in ("validation", "test"):
        rows = [r for r in report["summary"] if r["split"] == split]
        rows.sort(key=lambda r: r["wape"])
        lines += ["", f"## {split} cutoffs", ""]
        lines += ["| forecast | wape | wql | mase | coverage80 | short-history wape |"]
        lines += ["|---|---|---|---|---|---|"]
        for row in rows:
            cells = [
                f"{row[m]:.3f} [{row[m + '_min']:.3f}, {row[m + '_max']:.3f}]"
                if row["seeds"] > 1 and row[m + "_max"] - row[m + "_min"] > 5e-4
                else f"{row[m]:.3f}"
                for m in (*METRICS, "short_wape")
            ]
            lines.append(f"| {row['forecast']} | " + " | ".join(cells) + " |")
    commits = sorted({str(r["commit"])[:10] for r in report["stored_runs"]})
    lines += [
        "",
        "## Where the stored backtests come from",
        "",
        f"{len(report['stored_runs'])} stored runs from separate backtest runs at commits "
        f"{', '.join(commits)} (per run in the JSON's `stored_runs`). Every model is "
        "deterministic for its seed: a rerun of LightGBM-text on the test cutoffs and of the "
        "frozen LM on the validation cutoffs at a later commit reproduced the metrics of the "
        "earlier runs exactly.",
    ]
    lines += [
        "",
        "## Decision",
        "",
        report["decision"],
        "",
        "Adopted: `selection=\"ensemble\"` as auto's default, with auto's default candidates "
        "(the two candidate sets were within each other's seed range on validation, and "
        "ensemble selection gives no weight to a candidate that does not help). The test "
        "table is printed by the same run as the validation table; nothing was chosen from it.",
    ]
    return "\n".join(lines) + "\n"


def decide(summary: list[dict[str, Any]]) -> str:
    """The selection rule with the lowest mean validation WAPE, and what it beats clearly."""
    auto = [r for r in summary if r["split"] == "validation" and r["forecast"].startswith("auto[")]
    best = min(auto, key=lambda r: r["wape"])
    beaten = [r["forecast"] for r in auto if best["wape_max"] < r["wape_min"]]
    lines = [
        f"Lowest mean validation WAPE among the replayed auto rules: {best['forecast']} "
        f"(WAPE {best['wape']:.4f}, wQL {best['wql']:.4f}); chosen on the validation cutoffs "
        "only.",
        "Beaten by it on every seed: " + (", ".join(beaten) if beaten else "none") + ".",
    ]
    return " ".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(__doc__, __file__)
    parser.add_argument("--stores", type=Path, default=RESULTS / "forecasts")
    parser.add_argument("--lm", default="LM-frozen", help="the LM run in the stores")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    rows = [row for seed in seeds for row in run_seed(args.stores, args.lm, seed)]
    summary = summarise(rows)
    report = {
        "lm": args.lm,
        "seeds": seeds,
        "stored_runs": stored_runs(args.stores, args.lm, seeds),
        "rows": rows,
        "summary": summary,
    }
    report["decision"] = decide(summary)
    path = write_results("combine", report, markdown, args.out, argv)
    print(markdown({**report, "provenance": {"command": "", "commit": ""}}))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
