"""Forecasts with the shop's plan vs "no change": Stallion backtest through ``plan=``.

Data: ``../shared/datasets/stallion/stallion.parquet`` through
:func:`salesformer.data.stallion.prepare_stallion` (350 agency x SKU monthly series,
2013-01 .. 2017-12; ``price``, ``price_regular``, ``discount`` and 12 event flags are
known-future).

What a "plan" is here. The dataset README documents regular and actual prices, discounts and
event flags; it does not say which were planned in advance. The plan variants below therefore
take the *realised* values of the test months as the plan, which is what a shop that executes
its price list and promotions exactly would have known: the full plan is an upper bound on
what a real plan gives, not an estimate of it. The variants, each a plan file handed to
:func:`salesformer.evaluation.backtest.backtest` (``plan=``, keyed by cutoff):

- ``no plan``: an empty plan, so every covariate keeps its value at the cutoff (what
  ``salesformer predict`` without ``--future`` does);
- ``calendar``: the event flags of the horizon (calendar facts), prices carried forward;
- ``list price + calendar``: also ``price_regular`` (a list price is the kind of plan that is
  knowable at the origin); ``price`` and ``discount`` carried forward;
- ``full plan``: ``price``, ``price_regular``, ``discount`` and the events of the horizon
  (equal to the backtest's default, which reads the panel's own values).

Protocol: horizon 3 months; test cutoffs 2016-12, 2017-03, 2017-06, 2017-09 (the last window
ends 2017-12); evaluated series started >= 12 months before the cutoff and sold in the 12 months
up to it (the protocol of ``benchmarks/stallion_whatif.py``). Model: LightGBM with the settings
that ``stallion_whatif`` chose on its validation cutoffs (``n_origins`` 24, ``num_leaves`` 15,
``price_monotone`` off), refitted at each cutoff; SeasonalNaive (which reads no covariate) for
scale. The frozen LM is left out: its Stallion run (``stallion_whatif_lm``) took 677 s on this
machine, over the CPU budget of this benchmark.

Usage::

    python -m benchmarks.plans [--source PATH] [--out benchmarks/results]
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.harness import (
    RESULTS,
    STALLION,
    argument_parser,
    machine,
    machine_line,
    require_file,
    write_results,
)
from salesformer.data.contract import CUTOFF, DATE, ITEM_ID, Panel
from salesformer.errors import DataQualityWarning
from salesformer.evaluation.backtest import backtest
from salesformer.models.lightgbm import LightGBMForecaster
from salesformer.models.statistical import SeasonalNaive

HORIZON = 3
TEST_CUTOFFS = ("2016-12-01", "2017-03-01", "2017-06-01", "2017-09-01")
MIN_HISTORY = 12
ACTIVE_WITHIN = 12
METRICS = ["wape", "wql", "mae", "bias", "coverage80"]
#: ``stallion_whatif``'s base settings and its validation choice for LightGBM (with plan).
SETTINGS: dict[str, Any] = {
    "max_horizon": HORIZON,
    "origin_step": 1,
    "learning_rate": 0.05,
    "n_estimators": 300,
    "min_data_in_leaf": 20,
    "n_jobs": 1,
    "n_origins": 24,
    "num_leaves": 15,
    "price_monotone": False,
}
PRICES = ("price", "price_regular", "discount")


def variant_columns(panel: Panel) -> dict[str, list[str]]:
    """The covariates each plan variant gives (the rest keep their value at the cutoff)."""
    events = [c for c in panel.known_future if c not in PRICES]
    return {
        "no plan": [],
        "calendar": events,
        "list price + calendar": ["price_regular", *events],
        "full plan": [*PRICES, *events],
    }


def realised_plan(panel: Panel, columns: list[str]) -> pd.DataFrame:
    """A plan keyed by cutoff: ``columns`` as realised in each test window."""
    frames = [
        panel.future_covariates(pd.Timestamp(c), HORIZON)[[ITEM_ID, DATE, *columns]].assign(
            **{CUTOFF: pd.Timestamp(c)}
        )
        for c in TEST_CUTOFFS
    ]
    return pd.concat(frames, ignore_index=True)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: (float(v) if isinstance(v, float) else v) for k, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]


def run_variants(panel: Panel) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, float], int]:
    """Overall and per-cutoff metrics of every variant, each variant's seconds, the series."""
    overall, per_cutoff, seconds, series = [], [], {}, 0
    for label, columns in variant_columns(panel).items():
        models = [LightGBMForecaster(**SETTINGS)]
        if label == "no plan":
            models.insert(0, SeasonalNaive())
        started = time.perf_counter()
        with warnings.catch_warnings():  # partial plans say so once per window: expected here
            warnings.simplefilter("ignore", DataQualityWarning)
            result = backtest(
                models,
                panel,
                HORIZON,
                list(TEST_CUTOFFS),
                min_history=MIN_HISTORY,
                active_within=ACTIVE_WITHIN,
                plan=realised_plan(panel, columns),
            )
        seconds[label] = time.perf_counter() - started
        series = len(result.series)
        metrics = result.metrics().assign(plan=label)
        overall.append(metrics)
        per_cutoff.append(result.metrics(by=CUTOFF).assign(plan=label))
        print(f"{label}: {seconds[label]:.0f} s", flush=True)
        print(metrics[["model", *METRICS]].to_string(index=False), flush=True)
    return pd.concat(overall), pd.concat(per_cutoff), seconds, series


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Plans: forecasts with the shop's plan vs no change (Stallion)",
        "",
        f"`{report['provenance']['command']}` at commit `{report['provenance']['commit'][:10]}`; "
        f"horizon {HORIZON} months; test cutoffs {', '.join(TEST_CUTOFFS)}; "
        f"{report['series']} evaluated series x cutoffs.",
        "",
        "The plans are the realised values of the test months (the dataset does not say which "
        "were planned): the full plan is an upper bound on what a real plan gives.",
        "",
        "| plan | model | wape | wql | mae | bias | coverage80 |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in report["overall"]:
        lines.append(
            f"| {row['plan']} | {row['model']} | "
            + " | ".join(f"{row[m]:.4f}" for m in METRICS)
            + " |"
        )
    lines += ["", "WAPE of LightGBM per test cutoff:", ""]
    lines.append("| plan | " + " | ".join(TEST_CUTOFFS) + " |")
    lines.append("|---|" + "---:|" * len(TEST_CUTOFFS))
    for label, row in report["wape_per_cutoff"].items():
        lines.append(f"| {label} | " + " | ".join(f"{row[c]:.4f}" for c in TEST_CUTOFFS) + " |")
    lines += ["", f"Run time {report['seconds']:.0f} s; {report['machine_line']}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__, __file__)
    parser.add_argument("--source", type=Path, default=STALLION)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    require_file(args.source)
    from salesformer.data.stallion import prepare_stallion

    start = time.perf_counter()
    panel, _ = prepare_stallion(args.source)
    overall, per_cutoff, seconds, series = run_variants(panel)
    lightgbm = per_cutoff[per_cutoff["model"] == "LightGBM"]
    wape = {
        str(label): {
            str(pd.Timestamp(c).date()): float(v)
            for c, v in zip(part[CUTOFF], part["wape"], strict=True)
        }
        for label, part in lightgbm.groupby("plan", sort=False)
    }
    report = {
        "protocol": {
            "dataset": "Stallion, salesformer.data.stallion.prepare_stallion",
            "horizon": HORIZON,
            "test_cutoffs": list(TEST_CUTOFFS),
            "min_history": MIN_HISTORY,
            "active_within": ACTIVE_WITHIN,
            "plan_columns": variant_columns(panel),
            "plan_source": "realised values of each test window, keyed by cutoff",
        },
        "settings": SETTINGS,
        "series": series,
        "overall": _records(overall[["plan", "model", *METRICS]]),
        "wape_per_cutoff": wape,
        "variant_seconds": seconds,
        "seconds": time.perf_counter() - start,
        "machine": machine(),
        "machine_line": machine_line(),
    }
    write_results("plans", report, markdown, args.out, argv)


if __name__ == "__main__":
    main()
