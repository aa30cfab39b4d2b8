"""Do known-future prices help, and does a lower price raise the forecast? Stallion backtest.

Data: ``../shared/datasets/stallion/stallion.parquet`` through
:func:`salesformer.data.stallion.prepare_stallion` (350 agency x SKU monthly series,
2013-01 .. 2017-12; ``price``, ``price_regular``, ``discount`` and the event flags are
known-future, market volumes and temperature past-only).

Protocol (horizon 3 months, rolling origin, :func:`salesformer.evaluation.backtest.backtest`):

- **test cutoffs** in the last year: 2016-12, 2017-03, 2017-06, 2017-09 (the last window ends
  2017-12); evaluated series started >= 12 months before the cutoff and sold in the 12 months
  up to it;
- **validation cutoffs** 2016-03, 2016-06, 2016-09 (their windows end by 2016-12, the first
  test cutoff): every setting is chosen there, by mean WAPE of point forecasts, and the test
  windows are scored once with the chosen settings;
- **models**: LightGBM *with* the known-future covariates at the target months (the plan of
  prices, discounts and events) and the same model *without* them (``use_known_future=False``:
  the covariates' values at the origin only, as past-only features); each gets its own
  settings from the same small grid (``n_origins``, ``num_leaves``), and the *with* model also
  chooses ``price_monotone`` there. For scale, the same model on sales alone (every
  covariate dropped, its own settings from the grid) and SeasonalNaive, the reference of
  ``rel_mae``.
- **price response** (test cutoffs): each fitted *with* model (both ``price_monotone`` values)
  forecasts the test window under its actual plan and under the same plan with every price
  10% lower (discount linked, :func:`salesformer.decisions.whatif.price_response`). Reported:
  the share of series whose 3-month forecast rose, and the quartiles of the implied
  elasticity ``log(q1/q0) / log(0.9)``, pooled over series and cutoffs.

Usage::

    python -m benchmarks.stallion_whatif [--source PATH] [--out benchmarks/results]
"""

from __future__ import annotations

import time
from itertools import product
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.harness import (
    RESULTS,
    STALLION,
    argument_parser,
    machine,
    require_file,
    write_results,
)
from salesformer.data.contract import CUTOFF, DATE, ITEM_ID, SALES, Panel
from salesformer.decisions.whatif import price_response, summarize_response
from salesformer.evaluation.backtest import BacktestResult, backtest
from salesformer.models.base import DEFAULT_QUANTILES, Forecaster
from salesformer.models.lightgbm import LightGBMForecaster
from salesformer.models.statistical import SeasonalNaive

HORIZON = 3
TEST_CUTOFFS = ("2016-12-01", "2017-03-01", "2017-06-01", "2017-09-01")
VALIDATION_CUTOFFS = ("2016-03-01", "2016-06-01", "2016-09-01")
MIN_HISTORY = 12
ACTIVE_WITHIN = 12
PRICE_CHANGE = -0.10
METRICS = ["wape", "wql", "mae", "rel_mae", "mase", "bias", "coverage80"]
BASE: dict[str, Any] = {
    "max_horizon": HORIZON,
    "origin_step": 1,
    "learning_rate": 0.05,
    "n_estimators": 300,
    "min_data_in_leaf": 20,
    "n_jobs": 1,
}
GRID: dict[str, list[Any]] = {"n_origins": [24, 36], "num_leaves": [15, 31]}


class LightGBMWithout(LightGBMForecaster):
    """LightGBM without the known-future covariates at the target dates."""

    name = "LightGBM-without"


class LightGBMSalesOnly(LightGBMForecaster):
    """LightGBM on sales alone (the panel's covariates dropped)."""

    name = "LightGBM-sales-only"


class LightGBMMonotone(LightGBMForecaster):
    """The *with* model fitted with the other ``price_monotone`` value (response only)."""

    name = "LightGBM-other-monotone"


def grid(with_known_future: bool) -> list[dict[str, Any]]:
    """Every setting of the validation grid (``price_monotone`` for the *with* model)."""
    axes = dict(GRID)
    if with_known_future:
        axes["price_monotone"] = [False, True]
    return [dict(zip(axes, values, strict=True)) for values in product(*axes.values())]


def validate(
    panel: Panel, cls: type[LightGBMForecaster], with_known_future: bool
) -> tuple[dict[str, Any], list[dict]]:
    """Mean validation WAPE of each grid setting; the best setting and every row."""
    rows = []
    for change in grid(with_known_future):
        settings = {**BASE, **change, "use_known_future": with_known_future}
        model = cls(**settings, quantile_levels=(0.5,))
        result = backtest(
            [model],
            panel,
            HORIZON,
            list(VALIDATION_CUTOFFS),
            min_history=MIN_HISTORY,
            active_within=ACTIVE_WITHIN,
            quantiles=(),
        )
        per_cutoff = result.metrics(by=CUTOFF)["wape"]
        rows.append({**change, "wape": float(per_cutoff.mean())})
        print(f"  {model.name:18s} {change}  WAPE {rows[-1]['wape']:.4f}", flush=True)
    chosen = min(rows, key=lambda row: row["wape"])
    return {k: v for k, v in chosen.items() if k != "wape"}, rows


def sales_only(panel: Panel) -> Panel:
    """The panel without any covariate."""
    import dataclasses

    kept = panel.sales[[ITEM_ID, DATE, SALES]]
    return dataclasses.replace(panel, sales=kept, known_future=(), past_only=())


def run_backtest(models: list[Forecaster], panel: Panel) -> BacktestResult:
    return backtest(
        models,
        panel,
        HORIZON,
        list(TEST_CUTOFFS),
        min_history=MIN_HISTORY,
        active_within=ACTIVE_WITHIN,
        quantiles=DEFAULT_QUANTILES,
    )


def merged_metrics(results: list[BacktestResult]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Overall and per-cutoff metrics of every model of several backtests on one protocol."""
    from salesformer.evaluation.metrics import evaluate

    keys = ["item_id", CUTOFF, "date", "y"]
    frame = results[0].scored()
    for other in results[1:]:
        extra = other.forecasts.drop(columns=["y"])
        frame = frame.merge(extra, on=[k for k in keys if k != "y"], how="left")
    models = [str(m) for r in results for m in r.timings["model"].unique()]
    return evaluate(frame, models, METRICS), evaluate(frame, models, ["wape", "wql"], by=CUTOFF)


def response_at_test(
    panel: Panel, models: dict[str, Forecaster]
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Price response of each model at every test cutoff, pooled and per cutoff."""
    rows = []
    for cutoff in pd.to_datetime(TEST_CUTOFFS):
        train = panel.until(cutoff)
        plan = panel.future_covariates(cutoff, HORIZON)
        for label, model in models.items():
            fitted = model.clone().fit(train)
            response = price_response(fitted, HORIZON, price_change=PRICE_CHANGE, baseline=plan)
            response.insert(0, "model", label)
            response.insert(1, CUTOFF, cutoff)
            rows.append(response)
    table = pd.concat(rows, ignore_index=True)
    summary = {
        label: {
            "pooled": summarize_response(part),
            "per_cutoff": {
                str(pd.Timestamp(c).date()): summarize_response(group)
                for c, group in part.groupby(CUTOFF)
            },
        }
        for label, part in table.groupby("model", sort=False)
    }
    return summary, table


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Stallion: known-future prices and the price response",
        "",
        "`python -m benchmarks.stallion_whatif`; "
        f"horizon {HORIZON} months; test cutoffs {', '.join(TEST_CUTOFFS)}; settings chosen "
        f"on validation cutoffs {', '.join(VALIDATION_CUTOFFS)}.",
        "",
        "## Accuracy on the test windows",
        "",
        "| model | " + " | ".join(METRICS) + " |",
        "|---|" + "---:|" * len(METRICS),
    ]
    for row in report["test"]["overall"]:
        lines.append(f"| {row['model']} | " + " | ".join(_fmt(row[m]) for m in METRICS) + " |")
    lines += ["", "WAPE per test cutoff:", "", "| model | " + " | ".join(TEST_CUTOFFS) + " |"]
    lines.append("|---|" + "---:|" * len(TEST_CUTOFFS))
    for model, cutoffs in report["test"]["wape_per_cutoff"].items():
        lines.append(f"| {model} | " + " | ".join(_fmt(cutoffs[c]) for c in TEST_CUTOFFS) + " |")
    lines += [
        "",
        f"## Price response: every price {int(PRICE_CHANGE * 100)}% (test cutoffs, pooled)",
        "",
        "| model | series x cutoffs | share raised | unchanged | lowered | elasticity q25 "
        "| median | q75 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, part in report["price_response"].items():
        s = part["pooled"]
        lines.append(
            f"| {label} | {s['items_with_forecast']} | {_fmt(s['share_raised'], 3)} | "
            f"{_fmt(s['share_unchanged'], 3)} | {_fmt(s['share_lowered'], 3)} | "
            f"{_fmt(s['elasticity_q25'], 2)} | {_fmt(s['elasticity_median'], 2)} | "
            f"{_fmt(s['elasticity_q75'], 2)} |"
        )
    lines += [
        "",
        "## Settings chosen on validation (mean WAPE)",
        "",
        f"- LightGBM (with): `{report['chosen']['with']}`",
        f"- LightGBM-without: `{report['chosen']['without']}`",
        f"- LightGBM-sales-only: `{report['chosen']['sales_only']}`",
        "",
        f"Run time {report['seconds']:.0f} s on {report['machine']['cores']} CPUs.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__, __file__)
    parser.add_argument("--source", type=Path, default=STALLION)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    require_file(args.source)
    from salesformer.data.stallion import prepare_stallion

    start = time.perf_counter()
    panel, quality = prepare_stallion(args.source)
    print("validation: LightGBM with known-future covariates", flush=True)
    chosen_with, rows_with = validate(panel, LightGBMForecaster, True)
    print("validation: LightGBM without", flush=True)
    chosen_without, rows_without = validate(panel, LightGBMWithout, False)
    print("validation: LightGBM on sales alone", flush=True)
    chosen_sales, rows_sales = validate(sales_only(panel), LightGBMSalesOnly, False)

    with_model = LightGBMForecaster(**BASE, **chosen_with)
    without_model = LightGBMWithout(**BASE, **chosen_without, use_known_future=False)
    print("test: backtest", flush=True)
    results = [run_backtest([SeasonalNaive(), with_model, without_model], panel)]
    sales_model = LightGBMSalesOnly(**BASE, **chosen_sales)
    results.append(run_backtest([sales_model], sales_only(panel)))
    overall, per_cutoff = merged_metrics(results)
    print(overall[["model", *METRICS]].to_string(index=False), flush=True)

    other = {**BASE, **chosen_with, "price_monotone": not chosen_with["price_monotone"]}
    response_models: dict[str, Forecaster] = {
        f"LightGBM (price_monotone={chosen_with['price_monotone']}, chosen)": with_model,
        f"LightGBM (price_monotone={other['price_monotone']})": LightGBMMonotone(**other),
    }
    print("test: price response", flush=True)
    response, _ = response_at_test(panel, response_models)
    for label, part in response.items():
        print(f"  {label}: {part['pooled']}", flush=True)

    wape = per_cutoff.pivot(index="model", columns=CUTOFF, values="wape")
    report = {
        "protocol": {
            "dataset": "Stallion, salesformer.data.stallion.prepare_stallion",
            "horizon": HORIZON,
            "test_cutoffs": list(TEST_CUTOFFS),
            "validation_cutoffs": list(VALIDATION_CUTOFFS),
            "min_history": MIN_HISTORY,
            "active_within": ACTIVE_WITHIN,
            "price_change": PRICE_CHANGE,
            "known_future": list(panel.known_future),
            "past_only": list(panel.past_only),
        },
        "data": quality.to_dict(),
        "base_settings": BASE,
        "validation": {"with": rows_with, "without": rows_without, "sales_only": rows_sales},
        "chosen": {"with": chosen_with, "without": chosen_without, "sales_only": chosen_sales},
        "test": {
            "overall": [
                {k: (float(v) if isinstance(v, float | np.floating) else v) for k, v in r.items()}
                for r in overall.to_dict(orient="records")
            ],
            "wape_per_cutoff": {
                str(m): {str(pd.Timestamp(c).date()): float(v) for c, v in row.items()}
                for m, row in wape.iterrows()
            },
            "timings": [
                {"model": str(m), "fit_seconds": float(s)}
                for r in results
                for m, s in r.timings.groupby("model")["fit_seconds"].sum().items()
            ],
        },
        "price_response": response,
        "seconds": time.perf_counter() - start,
        "machine": machine(),
    }
    page = markdown(report)
    write_results("stallion_whatif", report, page, args.out, argv)
    print(page)


if __name__ == "__main__":
    main()
