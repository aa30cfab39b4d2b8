"""The Online Retail II part of the encoders benchmark (``python -m benchmarks.encoders``).

Each function below is one measurement that ``benchmarks.encoders`` runs in its own process
(so its seconds and peak memory are its own, embeddings included: every process starts with an
empty embedding cache):

* :func:`task_cold_baselines`: the cold-start baselines of ``benchmarks.cold_start`` (ridge,
  k-NN and LightGBM on the encoder's embeddings + list price + launch week, and the ridge on the
  LM's own launches) on one split;
* :func:`task_cold_lm`: one LM fit (one encoder, fine-tuning mode and seed) on the split's
  history, scored on its launches exactly as ``benchmarks.cold_start`` scores it;
* :func:`task_existing`: one LM backtest (one encoder, mode and seed) on cutoffs of the
  existing-item protocol of ``benchmarks.online_retail``, optionally on a seeded subset of the
  items that is the same for every arm.

:func:`summarise_arms` and :func:`retail_markdown` turn the measurements into the tables of
``benchmarks/results/encoders.md``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.cold_start import SPLITS, WEEKS, lm_launch_forecast, panel_launch_ridge
from benchmarks.harness import online_retail_panel
from salesformer.data.contract import ITEM_ID, Panel

THREADS = 1
#: The seed of the item subset of the existing-item protocol (``--existing-items``).
SUBSET_SEED = 0


def item_subset(panel: Panel, count: int, seed: int = SUBSET_SEED) -> Panel:
    """``count`` items of ``panel`` drawn at random with ``seed`` (every item when ``count`` is
    0 or at least the number of items); the same draw for the same panel, count and seed."""
    ids = np.sort(panel.item_ids.astype(str))
    if count <= 0 or count >= len(ids):
        return panel
    keep = set(np.random.default_rng(seed).choice(ids, size=count, replace=False).tolist())
    sales = panel.sales.loc[panel.sales[ITEM_ID].astype(str).isin(keep)]
    items = None
    if panel.items is not None:
        items = panel.items.loc[panel.items[ITEM_ID].astype(str).isin(keep)]
    return replace(panel, sales=sales.reset_index(drop=True), items=items, report={})


def task_cold_baselines(
    encoder_name: str, data: Path, panel_cache: Path, split: str
) -> dict[str, Any]:
    """The cold-start baselines on this encoder's embeddings (one split)."""
    from benchmarks.cold_start import run_baselines
    from salesformer.evaluation.cold_start import launch_table
    from salesformer.text import load_encoder

    windows = SPLITS[split]
    panel, _, _ = online_retail_panel(data, panel_cache)
    new = launch_table(panel, *windows.new_window, weeks=WEEKS)
    train = launch_table(panel, *windows.train_window, weeks=WEEKS)
    encoder = load_encoder(encoder_name)
    rows = run_baselines(train, new, encoder)
    rows.append(panel_launch_ridge(panel.until(windows.history_cutoff), new, encoder))
    keep = ("model", "wape", "mae", "fit_seconds", "predict_seconds")
    return {
        "split": split,
        "launches": len(new),
        "training_launches": len(train),
        "rows": [{k: row[k] for k in keep} for row in rows],
    }


def task_cold_lm(
    encoder_name: str, data: Path, panel_cache: Path, split: str, mode: str, seed: int
) -> dict[str, Any]:
    """One LM fit on the split's history and its forecast of the split's launches."""
    from salesformer.evaluation.cold_start import launch_table, score
    from salesformer.evaluation.metrics import coverage80, wql

    windows = SPLITS[split]
    panel, _, _ = online_retail_panel(data, panel_cache)
    new = launch_table(panel, *windows.new_window, weeks=WEEKS)
    history = panel.until(windows.history_cutoff)
    runs = lm_launch_forecast(
        mode,  # type: ignore[arg-type]
        seed,
        history,
        new,
        THREADS,
        network_too=True,
        encoder=encoder_name,
    )
    forecast, scored, report, fit_seconds, predict_seconds = runs[""]
    network = runs["-network"][0]
    return {
        "split": split,
        "mode": mode,
        "seed": seed,
        "launches": len(new),
        "wape": score(new.targets, forecast)["wape"],
        "wql": wql(scored, "LM"),
        "coverage80": coverage80(scored, "LM"),
        "network_wape": score(new.targets, network)["wape"],
        "fit_seconds": fit_seconds,
        "predict_seconds": predict_seconds,
        "kept": {k: report[k] for k in ("head", "finetune_stage") if k in report},
    }


def task_existing(
    encoder_name: str,
    data: Path,
    panel_cache: Path,
    mode: str,
    seed: int,
    cutoffs: list[str],
    items: int,
) -> dict[str, Any]:
    """One LM backtest on ``cutoffs`` of the existing-item protocol (``items``: a seeded
    subset of that many items, 0 for all)."""
    import time

    from benchmarks.online_retail import HORIZON, build_model
    from salesformer.evaluation.backtest import CUTOFF, backtest
    from salesformer.evaluation.metrics import evaluate

    panel, _, _ = online_retail_panel(data, panel_cache)
    panel = item_subset(panel, items)
    model = build_model(f"LM-{mode}", seed, THREADS, {"encoder": encoder_name})
    start = time.perf_counter()
    result = backtest([model], panel, HORIZON, cutoffs)
    wall = time.perf_counter() - start
    scored = result.scored()
    overall = evaluate(scored, models=[model.name]).iloc[0]
    per_cutoff = evaluate(scored, models=[model.name], by=CUTOFF)
    return {
        "mode": mode,
        "seed": seed,
        "cutoffs": cutoffs,
        "items": len(panel.item_ids),
        "series": len(result.series),
        "wape": float(overall["wape"]),
        "wql": float(overall["wql"]),
        "per_cutoff_wape": {
            str(row[CUTOFF])[:10]: float(row["wape"]) for _, row in per_cutoff.iterrows()
        },
        "fit_seconds": float(result.timings["fit_seconds"].sum()),
        "predict_seconds": float(result.timings["predict_seconds"].sum()),
        "wall_seconds": wall,
    }


def summarise_arms(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (encoder, mode) of per-seed runs: the mean, min and max of every score over
    the seeds, the mean seconds and the largest peak memory."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for run in runs:
        groups.setdefault((run["encoder"], run["mode"]), []).append(run)
    rows = []
    for (encoder, mode), group in groups.items():
        row: dict[str, Any] = {
            "encoder": encoder,
            "mode": mode,
            "seeds": sorted(r["seed"] for r in group),
        }
        for key in ("wape", "wql", "network_wape"):
            values = [r[key] for r in group if r.get(key) is not None]
            if values:
                row[key] = float(np.mean(values))
                row[f"{key}_min"] = float(np.min(values))
                row[f"{key}_max"] = float(np.max(values))
        for key in ("fit_seconds", "predict_seconds"):
            row[key] = float(np.mean([r[key] for r in group]))
        first = min(group, key=lambda r: r["seed"])
        row["fit_seconds_first_seed"] = float(first["fit_seconds"] + first["predict_seconds"])
        row["peak_rss_mb"] = float(max(r["peak_rss_mb"] for r in group))
        cutoffs = [r["per_cutoff_wape"] for r in group if "per_cutoff_wape" in r]
        if cutoffs:
            row["per_cutoff_wape"] = {
                c: float(np.mean([p[c] for p in cutoffs])) for c in cutoffs[0]
            }
        rows.append(row)
    return rows


def _f(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def spread(row: dict[str, Any], key: str) -> str:
    """``mean [min, max]`` over seeds (the mean alone for one seed; - when not measured)."""
    if row.get(key) is None:
        return "-"
    if len(row["seeds"]) == 1:
        return _f(row[key])
    return f"{row[key]:.3f} [{row[f'{key}_min']:.3f}, {row[f'{key}_max']:.3f}]"


def _seeds(row: dict[str, Any]) -> str:
    return ",".join(str(s) for s in row["seeds"])


def retail_markdown(retail: dict[str, Any]) -> list[str]:
    """The Online Retail II sections of the encoders page."""
    cold = retail.get("cold_start") or {}
    existing = retail.get("existing") or {}
    lines = [
        "## Online Retail II, cold start (lower is better)",
        "",
        f"The {cold.get('launches', '-')} test launches x {WEEKS} weeks of "
        "`python -m benchmarks.cold_start` (history up to "
        f"{SPLITS['test'].history_cutoff}); inputs: text, list price, launch week. LM: the "
        "product's forecast (`predict_new`, default settings but the encoder, the mode and "
        f"{THREADS} torch thread); mean [min, max] over seeds. Seconds: fit + forecast of the "
        "first seed's process, then the mean over seeds; the LM fits of the run share one "
        "embedding cache, so the first frozen fit of each encoder (seed 0) encodes every "
        "item text and the later frozen fits read them (LoRA trains the encoder and "
        "encodes again). Peak RSS: the largest of the arm's processes.",
        "",
        "| encoder | mode | seeds | LM WAPE | LM wQL | network alone WAPE | s (first / mean) "
        "| peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in cold.get("summary", []):
        lines.append(
            f"| {row['encoder']} | {row['mode']} | {_seeds(row)} | {spread(row, 'wape')} | "
            f"{spread(row, 'wql')} | {spread(row, 'network_wape')} | "
            f"{_f(row['fit_seconds_first_seed'], 0)} / "
            f"{_f(row['fit_seconds'] + row['predict_seconds'], 0)} | "
            f"{_f(row['peak_rss_mb'], 0)} |"
        )
    lines += [
        "",
        "Baselines on each encoder's embeddings (same launches; one fit, no seed): ridge, "
        "k-NN and LightGBM fitted on the training window's launches, and the ridge on the LM's "
        "own launches (the LM's launch regression on frozen embeddings).",
        "",
        "| encoder | ridge WAPE | ridge on the LM's launches | k-NN WAPE | LightGBM WAPE "
        "| peak RSS MB |",
        "|---|---|---|---|---|---|",
    ]
    for name, found in (cold.get("baselines") or {}).items():
        if not found:
            continue
        by = {row["model"]: row["wape"] for row in found["rows"]}
        cells = [
            _f(by.get("RidgeEmbedding")),
            _f(by.get("RidgeEmbedding-LM-launches")),
            _f(by.get("KNNEmbedding")),
            _f(by.get("LightGBMEmbedding")),
            _f(found.get("peak_rss_mb"), 0),
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    cutoffs = existing.get("cutoffs") or []
    items = existing.get("items") or 0
    subset = (
        f"a seeded random subset of {items} items (seed {SUBSET_SEED}, the same for every arm), "
        "not the whole panel"
        if items
        else "every item"
    )
    lines += [
        "",
        "## Online Retail II, existing items (lower is better)",
        "",
        f"The protocol of `python -m benchmarks.online_retail` (8-week horizon, its evaluated "
        f"series) on cutoff(s) {', '.join(cutoffs) or '-'}"
        + ("" if len(cutoffs) == 4 else " (not all four test cutoffs, for time)")
        + f", {subset}. One backtest per arm and seed, in its own process; seconds: fit + "
        "predict over the cutoffs; peak RSS of the process. The embedding cache is shared with "
        "the cold-start fits, so these fits encode only the texts those did not (items first "
        "sold after the cold-start history).",
        "",
        "| encoder | mode | seeds | WAPE | wQL | WAPE per cutoff | fit + predict s | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in existing.get("summary", []):
        per = row.get("per_cutoff_wape") or {}
        per_text = ", ".join(f"{c}: {v:.3f}" for c, v in per.items())
        lines.append(
            f"| {row['encoder']} | {row['mode']} | {_seeds(row)} | {spread(row, 'wape')} | "
            f"{spread(row, 'wql')} | {per_text or '-'} | "
            f"{_f(row['fit_seconds'] + row['predict_seconds'], 0)} | "
            f"{_f(row['peak_rss_mb'], 0)} |"
        )
    lines.append("")
    return lines
