"""The frozen LM on the Stallion what-if protocol: with and without the plan, price response.

The same test windows, evaluated series and metrics as ``python -m benchmarks.stallion_whatif``
(horizon 3 months, cutoffs 2016-12, 2017-03, 2017-06, 2017-09). The LM is the library's
``LMForecaster`` with ``finetune="frozen"`` and its defaults for monthly data (threads 1;
nothing is tuned, so no validation windows are used). *LM* reads the known-future covariates
of the target months; *LM-without* is fitted on the panel with them demoted to past-only.
Each *LM* fitted at a cutoff also gives the price response of
:func:`salesformer.decisions.whatif.price_response` (every price 10% lower, discount linked),
summarised as in the LightGBM benchmark. SeasonalNaive is the reference of ``rel_mae``.

Usage::

    python -m benchmarks.stallion_whatif_lm [--source PATH] [--out benchmarks/results]
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.harness import (
    RESULTS,
    STALLION,
    argument_parser,
    machine,
    require_file,
    write_results,
)
from benchmarks.stallion_whatif import (
    ACTIVE_WITHIN,
    HORIZON,
    METRICS,
    MIN_HISTORY,
    PRICE_CHANGE,
    TEST_CUTOFFS,
)
from salesformer.data.contract import ACTUAL, CUTOFF, DATE, ITEM_ID, SALES, Panel
from salesformer.decisions.whatif import price_response, summarize_response
from salesformer.evaluation.backtest import series_facts
from salesformer.evaluation.metrics import evaluate
from salesformer.models.base import DEFAULT_QUANTILES, Forecaster
from salesformer.models.statistical import SeasonalNaive

LM_SETTINGS: dict[str, Any] = {
    "finetune": "frozen",
    "horizon": HORIZON,
    "threads": 1,
    "progress": False,
}


def demoted(panel: Panel) -> Panel:
    """The panel with every known-future covariate demoted to past-only."""
    return dataclasses.replace(
        panel, known_future=(), past_only=(*panel.past_only, *panel.known_future)
    )


def lm(name: str) -> Forecaster:
    from salesformer.models.lm import LMForecaster

    model = LMForecaster(**LM_SETTINGS)
    model.name = name  # the forecast column; clone() is not used here
    return model


def one_cutoff(panel: Panel, cutoff: pd.Timestamp) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Forecasts of the evaluated series, the price response and fit seconds at one cutoff."""
    series = series_facts(panel, cutoff, MIN_HISTORY, ACTIVE_WITHIN)
    actual = panel.window(cutoff, HORIZON)
    frame = actual.loc[actual[ITEM_ID].isin(series[ITEM_ID]), [ITEM_ID, DATE, SALES]]
    frame = frame.rename(columns={SALES: ACTUAL})
    plan = panel.future_covariates(cutoff, HORIZON)
    seconds: dict[str, float] = {}
    response = pd.DataFrame()
    runs = [
        (SeasonalNaive(), panel),
        (lm("LM"), panel),
        (lm("LM-without"), demoted(panel)),
    ]
    for model, data in runs:
        start = time.perf_counter()
        model.fit(data.until(cutoff))
        seconds[model.name] = time.perf_counter() - start
        future = plan[[ITEM_ID, DATE, *data.known_future]]
        forecast = model.predict(HORIZON, future=future, quantiles=DEFAULT_QUANTILES)
        frame = frame.merge(forecast, on=[ITEM_ID, DATE], how="left")
        if model.name == "LM":
            response = price_response(model, HORIZON, price_change=PRICE_CHANGE, baseline=future)
        print(f"  {cutoff.date()} {model.name}: fit {seconds[model.name]:.0f} s", flush=True)
    frame.insert(1, CUTOFF, cutoff)
    scored = frame.merge(series, on=[ITEM_ID, CUTOFF], how="left")
    return scored, response.assign(**{CUTOFF: cutoff}), seconds


def _fmt(value: Any, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Stallion: the frozen LM with and without the plan",
        "",
        f"`python -m benchmarks.stallion_whatif_lm`; horizon {HORIZON} months; test cutoffs "
        f"{', '.join(TEST_CUTOFFS)}; LM defaults, nothing tuned.",
        "",
        "| model | " + " | ".join(METRICS) + " |",
        "|---|" + "---:|" * len(METRICS),
    ]
    for row in report["test"]["overall"]:
        lines.append(f"| {row['model']} | " + " | ".join(_fmt(row[m]) for m in METRICS) + " |")
    s = report["price_response"]["pooled"]
    lines += [
        "",
        f"Price response of LM, every price {int(PRICE_CHANGE * 100)}% (pooled over cutoffs): "
        f"{s['items_with_forecast']} series x cutoffs, share raised {_fmt(s['share_raised'], 3)}, "
        f"unchanged {_fmt(s['share_unchanged'], 3)}, lowered {_fmt(s['share_lowered'], 3)}; "
        f"elasticity q25 {_fmt(s['elasticity_q25'], 2)}, median "
        f"{_fmt(s['elasticity_median'], 2)}, q75 {_fmt(s['elasticity_q75'], 2)}.",
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
    panel, _ = prepare_stallion(args.source)
    frames, responses, timings = [], [], []
    for cutoff in pd.to_datetime(TEST_CUTOFFS):
        scored, response, seconds = one_cutoff(panel, cutoff)
        frames.append(scored)
        responses.append(response)
        timings.append({"cutoff": str(cutoff.date()), **seconds})
    scored = pd.concat(frames, ignore_index=True)
    models = ["SeasonalNaive", "LM", "LM-without"]
    overall = evaluate(scored, models, METRICS)
    per_cutoff = evaluate(scored, models, ["wape", "wql"], by=CUTOFF)
    response = pd.concat(responses, ignore_index=True)
    report = {
        "protocol": {
            "horizon": HORIZON,
            "test_cutoffs": list(TEST_CUTOFFS),
            "min_history": MIN_HISTORY,
            "active_within": ACTIVE_WITHIN,
            "price_change": PRICE_CHANGE,
        },
        "lm_settings": LM_SETTINGS,
        "test": {
            "overall": overall.to_dict(orient="records"),
            "per_cutoff": [
                {**r, CUTOFF: str(pd.Timestamp(r[CUTOFF]).date())}
                for r in per_cutoff.to_dict(orient="records")
            ],
            "fit_seconds": timings,
        },
        "price_response": {
            "pooled": summarize_response(response),
            "per_cutoff": {
                str(pd.Timestamp(c).date()): summarize_response(group)
                for c, group in response.groupby(CUTOFF)
            },
        },
        "seconds": time.perf_counter() - start,
        "machine": machine(),
    }
    page = markdown(report)
    write_results("stallion_whatif_lm", report, page, args.out, argv)
    print(page)


if __name__ == "__main__":
    main()
