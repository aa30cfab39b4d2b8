"""The Online Retail II cold-start benchmark: forecast new products' first 12 weeks.

Protocol (see ``docs/evaluation.md``, section "Cold start"): the panel prepared by
``salesformer prepare online-retail``. Target: each new launch's weekly sales in weeks 0..11
from its first sale week. Inputs: item text, list price (the most common unit price on the
item's first-week invoice lines, the same for every model: it does not depend on the volume
sold, unlike the paid average), launch week. Scores: WAPE and MAE over every (item, week) cell;
for the language model also the weighted quantile loss and the coverage of its 10%-90%
interval. Two splits:

- ``test`` (the headline): new launches first sold 2011-01-03 .. 2011-09-05; training launches
  2010-01-04 .. 2010-10-04 (their 12 weeks end by 2010-12-20); the LM sees every item's history
  up to 2010-12-27.
- ``validation`` (where choices are made): new launches 2010-07-12 .. 2010-10-04 (their 12 weeks
  end by 2010-12-20, before the test split's history cutoff); training launches 2010-01-04 ..
  2010-04-12; the LM sees the history up to 2010-07-05.

The language model (``salesformer.models.lm.LMForecaster``) is fitted on the panel up to the
split's history cutoff in each fine-tuning mode of ``--lm-modes``, once per seed of ``--seeds``;
the table gives the mean and the min-max over seeds. ``--skip-lm`` runs the baselines only.
``--encoder`` names the text encoder of every model that reads text (the embedding baselines
and the LM); with an encoder other than the default, the results file's name ends in
``_<encoder>``. Results: ``<out>/cold_start.{json,md}`` (test) or
``cold_start_validation.{json,md}``.

Usage::

    python -m benchmarks.cold_start [--split test|validation] [--data PATH] [--out DIR]
        [--lm-modes frozen,lora,full,notext | --skip-lm] [--seeds 0,1,2] [--threads 1]
        [--encoder all-MiniLM-L6-v2]
"""

from __future__ import annotations

import copy
import json
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Literal, Protocol, Self, cast

import numpy as np
import pandas as pd

from benchmarks.harness import (
    ONLINE_RETAIL,
    RESULTS,
    argument_parser,
    machine_line,
    online_retail_panel,
    panel_cache_dir,
    require_file,
    write_results,
)
from salesformer.data.contract import DATE, ITEM_ID, Panel
from salesformer.evaluation.cold_start import LaunchSet, launch_table, score
from salesformer.evaluation.metrics import coverage80, wql
from salesformer.models.cold_start import (
    KNNEmbedding,
    KNNText,
    LightGBMEmbedding,
    MeanLaunchCurve,
    RidgeEmbedding,
)

WEEKS = 12


@dataclass(frozen=True)
class Split:
    """Launch windows of one split and the last week the LM may see."""

    new_window: tuple[str, str]
    train_window: tuple[str, str]
    history_cutoff: str


SPLITS = {
    "test": Split(("2011-01-03", "2011-09-05"), ("2010-01-04", "2010-10-04"), "2010-12-27"),
    "validation": Split(("2010-07-12", "2010-10-04"), ("2010-01-04", "2010-04-12"), "2010-07-05"),
}
NEW_WINDOW = SPLITS["test"].new_window
TRAIN_WINDOW = SPLITS["test"].train_window
#: The language model sees every item's history up to this week (the last training-launch
#: curve ends on 2010-12-20).
HISTORY_CUTOFF = SPLITS["test"].history_cutoff
NEIGHBOURS = 10
ENCODER = "all-MiniLM-L6-v2"
LM_NAME = "LM"

#: An independent harness on the test split (434 new launches x 12 weeks, 910 training), with
#: the list price: ridge regression on MiniLM embeddings + list price scored 0.896 WAPE there.
REFERENCE: dict[str, dict[str, Any]] = {
    "counts": {"new_launches": 434, "training_launches": 910},
    "wape": {"RidgeEmbedding": 0.896},
}
#: The fine-tuned LM should beat the ridge on embeddings + list price by at least 5%.
TARGET_MARGIN = 0.05
FINE_TUNED_MODES = ("lora", "full")
LMMode = Literal["frozen", "lora", "full", "notext"]
#: ``notext``: the frozen LM with every item (training and new) given the same text, to show
#: what reading the text adds (with one text, tuning the encoder has nothing to learn).
LM_MODES: tuple[LMMode, ...] = ("frozen", "lora", "full", "notext")
SEEDS = (0, 1, 2)


class LaunchModel(Protocol):
    """What every cold-start baseline offers."""

    def fit(self, train: LaunchSet) -> Self: ...

    def predict(self, new: LaunchSet) -> np.ndarray: ...


def _timed(call: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = call()
    return value, time.perf_counter() - start


def run_baselines(train: LaunchSet, new: LaunchSet, encoder: Any) -> list[dict[str, Any]]:
    """Fit every baseline on ``train``, forecast ``new``; scores and seconds per baseline."""
    models: dict[str, LaunchModel] = {
        "MeanLaunchCurve": MeanLaunchCurve(),
        "KNNText": KNNText(k=NEIGHBOURS),
        "KNNEmbedding": KNNEmbedding(k=NEIGHBOURS, encoder=encoder),
        "RidgeEmbedding": RidgeEmbedding(encoder=encoder),
        "LightGBMEmbedding": LightGBMEmbedding(encoder=encoder),
    }
    rows = []
    for name, model in models.items():
        _, fit_seconds = _timed(partial(model.fit, train))
        forecast, predict_seconds = _timed(partial(model.predict, new))
        row = {
            "model": name,
            **score(new.targets, forecast),
            "wape_by_week": _wape_by_week(new.targets, forecast),
            "fit_seconds": fit_seconds,
            "predict_seconds": predict_seconds,
        }
        if isinstance(model, RidgeEmbedding):
            row["alpha"] = model.alpha_
        print(f"[{name}] WAPE {row['wape']:.3f}  MAE {row['mae']:.2f}", flush=True)
        rows.append(row)
    return rows


def panel_launch_ridge(history: Panel, new: LaunchSet, encoder: Any) -> dict[str, Any]:
    """The fair baseline of the LM's launch regression: the same ridge
    (:mod:`salesformer.models.lm.launch`) on the same launches of the LM's history (partial
    curves of the latest ones included), on frozen encoder embeddings instead of the LM's
    vectors. With a frozen LM and the regression alone it is the LM's cold-start forecast."""
    from salesformer.models.lm import LMForecaster
    from salesformer.models.lm.encoding import texts_for
    from salesformer.models.lm.launch import PanelLaunches, fit_launch_ridge, launch_features
    from salesformer.models.lm.samples import Wide

    started = time.perf_counter()
    wide = Wide.from_panel(history)
    launch_after = LMForecaster().launch_after
    launches = PanelLaunches.find(wide, launch_after, WEEKS, wide.n_history - 1)
    assert history.items is not None
    vectors = encoder.encode(texts_for(history.items, wide.item_ids[launches.items]))
    fill = launches.price_fill()
    features = launch_features(vectors, launches.price, launches.dates, history.freq, fill)
    ridge = fit_launch_ridge(features, launches.curves, launches.observed)
    if ridge is None:
        raise ValueError(f"only {len(launches)} launches in the LM's history: no regression")
    fit_seconds = time.perf_counter() - started
    started = time.perf_counter()
    new_features = launch_features(
        encoder.encode(list(new.texts)), new.prices, new.launch_dates, history.freq, fill
    )
    forecast = ridge.predict(new_features)
    row = {
        "model": "RidgeEmbedding-LM-launches",
        **score(new.targets, forecast),
        "wape_by_week": _wape_by_week(new.targets, forecast),
        "fit_seconds": fit_seconds,
        "predict_seconds": time.perf_counter() - started,
        "alpha": ridge.alpha,
        "training_launches": len(launches),
    }
    print(f"[{row['model']}] WAPE {row['wape']:.3f}  MAE {row['mae']:.2f}", flush=True)
    return row


def _wape_by_week(actual: np.ndarray, forecast: np.ndarray) -> list[float]:
    total = np.abs(actual).sum(axis=0)
    errors = np.abs(actual - forecast).sum(axis=0)
    return [float(e / t) if t > 0 else float("nan") for e, t in zip(errors, total, strict=True)]


def run_lm(
    mode: LMMode,
    seed: int,
    history: Panel,
    new: LaunchSet,
    threads: int | None = None,
    encoder: str = ENCODER,
) -> list[dict[str, Any]]:
    """Fit the language-model forecaster in one fine-tuning mode and score its launch curves:
    the product's forecast (``LM-<mode>``) and the network's alone from the same fit
    (``LM-<mode>-network``, the launch regression left out).

    Raises:
        ImportError: when ``salesformer.models.lm`` cannot be imported.
        ValueError: when its forecast frame does not hold one row per new item and week.
    """
    runs = lm_launch_forecast(mode, seed, history, new, threads, network_too=True, encoder=encoder)
    rows = []
    for suffix, (forecast, scored, report, fit_seconds, predict_seconds) in runs.items():
        rows.append(
            {
                "model": f"{LM_NAME}-{mode}{suffix}",
                "seed": seed,
                **score(new.targets, forecast),
                "wql": wql(scored, LM_NAME),
                "coverage80": coverage80(scored, LM_NAME),
                "wape_by_week": _wape_by_week(new.targets, forecast),
                "fit_seconds": fit_seconds,
                "predict_seconds": predict_seconds,
                "kept": {k: report[k] for k in ("head", "finetune_stage") if k in report},
                "launch_regression": report.get("launch_regression"),
            }
        )
    return rows


def lm_launch_forecast(
    mode: LMMode,
    seed: int,
    history: Panel,
    new: LaunchSet,
    threads: int | None = None,
    network_too: bool = False,
    encoder: str = ENCODER,
) -> Any:
    """The LM's launch curves ``(launches, weeks)``, the scored frame, its fit report and the
    fit and predict seconds (see :func:`run_lm`). With ``network_too``, a dict of these by
    row-name suffix: ``""`` for the product's forecast, ``"-network"`` for the network's alone
    from the same fit. ``encoder``: the LM's text encoder."""
    from benchmarks.online_retail import without_text
    from salesformer.models.lm import LMForecaster

    settings: dict[str, Any] = {
        "horizon": WEEKS,
        "threads": threads,
        "progress": False,
        "encoder": encoder,
    }
    inputs = new.inputs()
    settings["finetune"] = "frozen" if mode == "notext" else mode
    if mode == "notext":
        history = without_text(history)
        inputs = inputs.assign(text="product")
    model = LMForecaster(seed=seed, **settings)
    _, fit_seconds = _timed(lambda: model.fit(history))
    if network_too:
        network = copy.copy(model)
        network.launch_blend_ = None
        return {
            "": _scored_launches(model, inputs, new, fit_seconds),
            "-network": _scored_launches(network, inputs, new, fit_seconds),
        }
    return _scored_launches(model, inputs, new, fit_seconds)


def _scored_launches(
    model: Any, inputs: pd.DataFrame, new: LaunchSet, fit_seconds: float
) -> tuple[np.ndarray, pd.DataFrame, dict[str, Any], float, float]:
    frame, predict_seconds = _timed(lambda: model.predict_new(inputs, horizon=WEEKS))
    actuals = new.actuals()
    keys = [ITEM_ID, DATE]
    frame = frame.assign(**{ITEM_ID: frame[ITEM_ID].astype(str)})
    frame[DATE] = pd.to_datetime(frame[DATE])
    scored = actuals.merge(frame, on=keys, how="left", validate="one_to_one")
    missing = int(scored[LM_NAME].isna().sum())
    if missing or len(frame) != len(actuals):
        raise ValueError(
            f"LM forecast frame has {len(frame)} rows, {missing} of the {len(actuals)} "
            "(item, week) cells missing; predict_new must give one row per item and week "
            "from its launch_date"
        )
    forecast = scored[LM_NAME].to_numpy(dtype=float).reshape(len(new), WEEKS)
    return forecast, scored, model.fit_report_, fit_seconds, predict_seconds


def run_lm_modes(
    modes: list[LMMode],
    seeds: list[int],
    history: Panel,
    new: LaunchSet,
    threads: int | None = None,
    encoder: str = ENCODER,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Scores of every LM mode and seed that completed, and one line per run that failed.

    When the LM cannot be imported no mode runs and the one line says why.
    """
    try:
        import salesformer.models.lm  # noqa: F401
    except Exception as exc:  # an unfinished or broken module must not cost the baselines
        message = f"LM skipped: cannot import salesformer.models.lm ({type(exc).__name__}: {exc})"
        print(message, file=sys.stderr, flush=True)
        return [], [message]
    rows, errors = [], []
    for mode in modes:
        for seed in seeds:
            label = f"{LM_NAME}-{mode} seed {seed}"
            print(
                f"[{label}] fitting on the panel up to {history.last_date.date()} ...", flush=True
            )
            try:
                found = run_lm(mode, seed, history, new, threads, encoder)
            except Exception as exc:
                traceback.print_exc()
                errors.append(f"{label} failed: {type(exc).__name__}: {exc}")
                continue
            for row in found:
                print(f"[{row['model']} seed {seed}] WAPE {row['wape']:.3f}", flush=True)
            rows += found
    return rows, errors


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per model: the mean of every score over its seeds, with the min and max."""
    frame = pd.DataFrame(rows)
    out = []
    for model, group in frame.groupby("model", sort=False):
        row: dict[str, Any] = {"model": model, "seeds": len(group)}
        for column in ("wape", "mae", "wql", "coverage80", "fit_seconds", "predict_seconds"):
            if column in group and group[column].notna().any():
                row[column] = float(group[column].mean())
                row[f"{column}_min"] = float(group[column].min())
                row[f"{column}_max"] = float(group[column].max())
            else:
                row[column] = None
        out.append(row)
    return out


def _fmt(value: object, digits: int) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, int | float) else str(value)


def _spread(row: dict[str, Any], column: str, digits: int) -> str:
    text = _fmt(row.get(column), digits)
    if row.get("seeds", 1) > 1 and row.get(column) is not None:
        low, high = row[f"{column}_min"], row[f"{column}_max"]
        text += f" [{low:.{digits}f}, {high:.{digits}f}]"
    return text


def markdown(report: dict[str, Any]) -> str:
    """The results as a markdown page."""
    counts = report["counts"]
    protocol = report["protocol"]
    # the reference ridge read MiniLM embeddings on the test split
    same = protocol["split"] == "test" and protocol["encoder"] == ENCODER
    reference = REFERENCE["wape"] if same else {}
    lines = [
        f"# Online Retail II cold-start benchmark ({protocol['split']} split)",
        "",
        f"New launches: items first sold {protocol['new_window'][0]} .. "
        f"{protocol['new_window'][1]}; training launches: {protocol['train_window'][0]} .. "
        f"{protocol['train_window'][1]}; the LM sees the history up to "
        f"{protocol['lm_history_cutoff']}. Target: weekly sales in weeks 0..{WEEKS - 1} from the "
        "first sale week. Inputs: text, list price (most common unit price on the first week's "
        f"invoice lines), launch week. LM seeds {report['seeds']}: mean [min, max]. Generated by "
        f"`{report['provenance']['command']}` at commit {report['provenance']['commit']}.",
        "",
        f"{counts['new_launches']} new launches x {WEEKS} weeks "
        f"({counts['new_dropped']} dropped for a curve past the panel end); "
        f"{counts['training_launches']} training launches ({counts['training_dropped']} dropped).",
        "",
        "| model | WAPE | reference WAPE | MAE | wQL | coverage 10-90 | fit s | predict s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in sorted(report["summary"], key=lambda r: r["wape"]):
        cells = [
            row["model"],
            _spread(row, "wape", 3),
            _fmt(reference.get(row["model"]), 3),
            _fmt(row["mae"], 2),
            _spread(row, "wql", 3),
            _fmt(row.get("coverage80"), 3),
            _fmt(row["fit_seconds"], 1),
            _fmt(row["predict_seconds"], 1),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "`LM-<mode>`: the product's forecast (`predict_new`: the network blended with the LM's "
        "launch regression, `salesformer.models.lm.launch`); `LM-<mode>-network`: the network "
        "alone from the same fit. `RidgeEmbedding-LM-launches`: the same regression on the same "
        f"launches of the LM's history, on frozen {protocol['encoder']} embeddings (the fair "
        "baseline of the "
        "LM's launch regression); `RidgeEmbedding`: ridge on the training window's launches.",
    ]
    for row in report["results"]:
        if row.get("launch_regression") and row["model"].endswith(("frozen", "lora", "notext")):
            lines.append(
                f"- {row['model']} seed {row['seed']}: launch regression "
                f"{json.dumps(row['launch_regression'], default=str)}"
            )
    target = report["target"]
    lines += ["", f"Target ({target['rule']}): {target['status']}."]
    if report["lm_errors"]:
        lines += ["", "LM runs that did not complete:", ""]
        lines += [f"- {error}" for error in report["lm_errors"]]
    lines += ["", f"Machine: {machine_line()}.", ""]
    return "\n".join(lines)


def _target(summary: list[dict[str, Any]], skipped: bool, split: str) -> dict[str, Any]:
    """Does the best fine-tuned LM (mean over seeds) beat the ridge by TARGET_MARGIN?"""
    ridge = next((r["wape"] for r in summary if r["model"] == "RidgeEmbedding"), None)
    rule = (
        f"fine-tuned LM mean WAPE at least {TARGET_MARGIN:.0%} below the better of "
        "RidgeEmbedding here and the reference ridge"
    )
    if ridge is None:
        return {"rule": rule, "wape": None, "status": "not measured (no ridge run)"}
    if split == "test":
        ridge = min(ridge, REFERENCE["wape"]["RidgeEmbedding"])
    bound = round((1 - TARGET_MARGIN) * ridge, 4)
    tuned = [r for r in summary if r["model"].removeprefix(f"{LM_NAME}-") in FINE_TUNED_MODES]
    if not tuned:
        status = "not run (--skip-lm)" if skipped else "not measured (no fine-tuned LM run)"
    else:
        best = min(tuned, key=lambda r: r["wape"])
        verdict = "met" if best["wape"] <= bound else "not met"
        status = f"{verdict}: best {best['model']} {best['wape']:.3f} against <= {bound:.3f}"
    return {"rule": rule, "wape": bound, "status": status}


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(__doc__, __file__)
    parser.add_argument("--split", choices=sorted(SPLITS), default="test")
    parser.add_argument("--data", type=Path, default=ONLINE_RETAIL)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--lm-modes", default="frozen,lora,full,notext")
    parser.add_argument("--seeds", default=",".join(map(str, SEEDS)), help="LM seeds")
    parser.add_argument("--skip-lm", action="store_true", help="run the baselines only")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the LM")
    parser.add_argument("--no-panel-cache", action="store_true")
    parser.add_argument(
        "--encoder", default=ENCODER, help="text encoder of the LM and the embedding baselines"
    )
    args = parser.parse_args(argv)
    require_file(args.data, "--data")
    given = [m.strip() for m in args.lm_modes.split(",") if m.strip()]
    unknown = [m for m in given if m not in LM_MODES]
    if unknown:
        sys.exit(f"unknown --lm-modes {unknown}; choose from {','.join(LM_MODES)}")
    modes = [cast(LMMode, m) for m in given]
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    split = SPLITS[args.split]

    cache = None if args.no_panel_cache else panel_cache_dir()
    panel, quality, prepare_seconds = online_retail_panel(args.data, cache)
    new = launch_table(panel, *split.new_window, weeks=WEEKS)
    train = launch_table(panel, *split.train_window, weeks=WEEKS)
    counts = {
        "new_launches": len(new),
        "new_dropped": new.dropped,
        "training_launches": len(train),
        "training_dropped": train.dropped,
        "cells": int(new.targets.size),
        "new_sales_total": float(new.targets.sum()),
    }
    print(f"launches: {counts}", flush=True)

    from salesformer.text import load_encoder

    encoder, load_seconds = _timed(lambda: load_encoder(args.encoder))
    results = run_baselines(train, new, encoder)
    results.append(panel_launch_ridge(panel.until(split.history_cutoff), new, encoder))
    lm_rows: list[dict[str, Any]] = []
    lm_errors: list[str] = []
    if not args.skip_lm:
        history = panel.until(split.history_cutoff)
        lm_rows, lm_errors = run_lm_modes(modes, seeds, history, new, args.threads, args.encoder)
    results += lm_rows
    summary = summarise(results)
    report = {
        "protocol": {
            "split": args.split,
            "weeks": WEEKS,
            "new_window": list(split.new_window),
            "train_window": list(split.train_window),
            "lm_history_cutoff": split.history_cutoff,
            "neighbours": NEIGHBOURS,
            "encoder": args.encoder,
            "inputs": ["text", "list price", "launch week"],
        },
        "seeds": seeds,
        "threads": args.threads,
        "counts": counts,
        "data": {**quality, "prepare_seconds": prepare_seconds},
        "encoder_load_seconds": load_seconds,
        "summary": summary,
        "results": results,
        "reference": REFERENCE,
        "target": _target(summary, args.skip_lm, args.split),
        "lm_modes": [] if args.skip_lm else modes,
        "lm_errors": lm_errors,
    }
    name = "cold_start" if args.split == "test" else f"cold_start_{args.split}"
    if args.encoder != ENCODER:
        name += f"_{args.encoder.replace('/', '_')}"
    path = write_results(name, report, markdown, args.out, argv)
    print(path.with_suffix(".md").read_text())
    return 1 if lm_errors else 0


if __name__ == "__main__":
    sys.exit(main())
