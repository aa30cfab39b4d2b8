"""Holiday and event calendars: LightGBM forecasts with and without the calendar covariates.

Three panels, each backtested twice with the same LightGBM settings, once on the plain panel
and once with the calendar columns of :func:`salesformer.data.calendars.add_calendar`
(known-future: the model reads them at the target dates):

- **daily Online Retail II** (``prepare online-retail --freq D``): the ``--top`` items by units
  sold up to the first cutoff (default 200), horizon 14 days; calendar: England's bank
  holidays (``GB-ENG``) and the shop's Christmas closure as a yearly event (24 Dec, 11 days:
  the shop sent no invoice from 24 Dec to 3 Jan in both winters of the data). Cutoffs put a
  holiday in each window (Christmas 2010, Easter and the royal wedding 2011, the late May and
  August bank holidays) plus one quiet window;
- **weekly Online Retail II** (the benchmark protocol's panel, the same ``--top`` rule),
  horizon 8 weeks, same calendar;
- **the synthetic catalogue with events** (``generate_catalogue(events=True)``: a yearly
  summer sale x2 for every item, 11.11 x8 for Kitchen items, a one-off clearance x1.5 that
  only the test window holds), horizon 8 weeks.

Scores are WAPE and bias (forecast / actual - 1) over all cells, over the *calendar cells*
(target periods that hold a holiday or an event day for the item) and over the others. The LM
is left out: its fits take far longer than the ~10 CPU minutes this script is sized for.
Results: ``<out>/calendars.{json,md}``.

Usage::

    python -m benchmarks.calendars [--source PATH] [--top 200] [--out DIR] [--threads 1]
"""

from __future__ import annotations

import dataclasses
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
    require_file,
    write_results,
)

UK_HOLIDAYS = "GB-ENG"
CLOSURE = pd.DataFrame(
    {"date": ["12-24"], "name": ["christmas_closure"], "days": [11], "scope": [""]}
)
SETUPS: dict[str, dict[str, Any]] = {
    "online_retail_daily": {
        "horizon": 14,
        "cutoffs": ["2010-12-12", "2011-04-17", "2011-05-22", "2011-08-21", "2011-10-09"],
        # a year of weekly training origins, so that last year's holidays are in training
        "lightgbm": {"max_horizon": 14, "n_origins": 52, "origin_step": 7},
    },
    "online_retail_weekly": {
        "horizon": 8,
        "cutoffs": ["2010-11-29", "2011-03-28", "2011-08-01", "2011-10-03"],
        "lightgbm": {"max_horizon": 8},
    },
    "synthetic_events": {
        "horizon": 8,
        "cutoffs": ["2023-02-20", "2023-06-05", "2023-10-16"],
        "lightgbm": {"max_horizon": 8},
    },
}
ARMS = ("without", "with")


def _top_items(panel: Any, cutoff: str, top: int) -> Any:
    """The panel restricted to the ``top`` items by units sold up to ``cutoff``."""
    from salesformer.data.contract import validate_panel

    sales = panel.sales
    volume = sales.loc[sales["date"] <= pd.Timestamp(cutoff)].groupby("item_id")["sales"].sum()
    keep = set(volume.nlargest(top).index)
    items = None if panel.items is None else panel.items[panel.items["item_id"].isin(keep)]
    return validate_panel(
        sales[sales["item_id"].isin(keep)],
        items,
        freq=panel.freq,
        known_future=panel.known_future,
        past_only=panel.past_only,
    )


def _without_calendar(panel: Any) -> Any:
    from salesformer.data.calendars import is_calendar_column

    kept = [c for c in panel.sales.columns if not is_calendar_column(c)]
    known = tuple(c for c in panel.known_future if not is_calendar_column(c))
    return dataclasses.replace(panel, sales=panel.sales[kept], known_future=known, calendar=None)


def panels(source: Path, top: int) -> dict[str, tuple[Any, Any]]:
    """Each setup's panel without and with its calendar."""
    from salesformer.data.calendars import add_calendar
    from salesformer.data.online_retail import prepare_online_retail
    from salesformer.data.synthetic import generate_catalogue

    out: dict[str, tuple[Any, Any]] = {}
    for name, freq in (("online_retail_daily", "D"), ("online_retail_weekly", "W-MON")):
        start = time.perf_counter()
        full, _ = prepare_online_retail(source, freq=freq)
        plain = _top_items(full, SETUPS[name]["cutoffs"][0], top)
        print(f"{name}: prepared in {time.perf_counter() - start:.0f} s", flush=True)
        out[name] = (plain, add_calendar(plain, UK_HOLIDAYS, CLOSURE))
    with_events = generate_catalogue(n_items=300, n_weeks=104, seed=0, events=True).panel()
    out["synthetic_events"] = (_without_calendar(with_events), with_events)
    return out


def _scores(frame: pd.DataFrame, model: str, all_actual: float) -> dict[str, float]:
    """Units sold and forecast, absolute error, its share of the window's WAPE, and bias."""
    actual = frame["y"].to_numpy(dtype=float)
    forecast = frame[model].to_numpy(dtype=float)
    total = actual.sum()
    error = float(np.abs(forecast - actual).sum())
    return {
        "cells": len(frame),
        "actual": float(total),
        "forecast": float(forecast.sum()),
        "abs_error": error,
        # the part of the window's WAPE these cells make (parts add up to the WAPE)
        "wape_share": error / all_actual if all_actual else float("nan"),
        "wape": error / total if total else float("nan"),
        "bias": float(forecast.sum() / total - 1.0) if total else float("nan"),
    }


def calendar_cells(panel: Any, forecasts: pd.DataFrame) -> np.ndarray:
    """Whether each forecast cell's target period holds a holiday or event day for its item."""
    from salesformer.data.calendars import LAG_SUFFIX, LEAD_SUFFIX, is_calendar_column

    own = [
        c
        for c in panel.known_future
        if is_calendar_column(c) and not c.endswith((LEAD_SUFFIX, LAG_SUFFIX))
    ]
    flags = panel.sales[["item_id", "date"]].assign(flag=panel.sales[own].sum(axis=1) > 0)
    merged = forecasts[["item_id", "date"]].merge(flags, on=["item_id", "date"], how="left")
    return merged["flag"].fillna(False).to_numpy(dtype=bool)


def run_setup(name: str, plain: Any, calendared: Any, threads: int) -> dict[str, Any]:
    """Backtest LightGBM on both panels; scores per cutoff and overall."""
    from salesformer.evaluation.backtest import backtest
    from salesformer.models.registry import make_model

    setup = SETUPS[name]
    settings = {**setup["lightgbm"], "n_jobs": threads, "quantile_method": "conformal"}
    flags = None
    rows: list[dict[str, Any]] = []
    seconds: dict[str, float] = {}
    for arm, panel in zip(ARMS, (plain, calendared), strict=True):
        model = make_model("LightGBM", **settings)
        start = time.perf_counter()
        result = backtest([model], panel, setup["horizon"], setup["cutoffs"], quantiles=())
        seconds[arm] = time.perf_counter() - start
        frame = result.forecasts
        if flags is None:
            flags = calendar_cells(calendared, frame)
        for cutoff, part in [("all", frame), *frame.groupby("cutoff")]:
            mask = flags[part.index.to_numpy()]
            all_actual = float(part["y"].sum())
            for cells, chosen in (("all", part), ("calendar", part[mask]), ("other", part[~mask])):
                label = cutoff if cutoff == "all" else str(pd.Timestamp(cutoff).date())
                rows.append(
                    {"arm": arm, "cutoff": label, "cells_kind": cells}
                    | _scores(chosen, model.name, all_actual)
                )
        print(f"{name} {arm}: {seconds[arm]:.0f} s", flush=True)
    columns = [c for c in calendared.known_future if c not in plain.known_future]
    return {
        "items": len(plain.item_ids),
        "freq": plain.freq,
        "horizon": setup["horizon"],
        "cutoffs": setup["cutoffs"],
        "lightgbm": settings,
        "calendar_columns": columns,
        "seconds": seconds,
        "scores": rows,
    }


def _cell(rows: list[dict[str, Any]], arm: str, cutoff: str, kind: str, key: str) -> float:
    for row in rows:
        if (row["arm"], row["cutoff"], row["cells_kind"]) == (arm, cutoff, kind):
            return float(row[key])
    return float("nan")


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Calendars: LightGBM with and without holiday and event covariates",
        "",
        f"Generated by `{report['provenance']['command']}` at commit "
        f"{report['provenance']['commit']}. LightGBM (default settings but those named) on "
        "each panel without and with its calendar columns. Cells: every forecast cell (item x "
        "target period), the *calendar* cells (the target period holds a holiday or event day "
        "for the item) and the others. *WAPE part*: the cells' absolute error over the "
        "window's units sold, so the calendar and other parts add up to the window's WAPE "
        "(lower is better); units: forecast / sold.",
        "",
    ]
    for name, setup in report["setups"].items():
        rows = setup["scores"]
        lines += [
            f"## {name}",
            "",
            f"{setup['items']} items, freq {setup['freq']}, horizon {setup['horizon']}, cutoffs "
            f"{', '.join(setup['cutoffs'])}; calendar columns: "
            f"{', '.join(setup['calendar_columns'])}.",
            "",
            "| cutoff | cells | n | WAPE part without | WAPE part with | change "
            "| units without | units with | units sold |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        cutoffs = ["all", *[str(pd.Timestamp(c).date()) for c in setup["cutoffs"]]]
        for cutoff in cutoffs:
            for kind in ("all", "calendar", "other"):
                n = _cell(rows, "with", cutoff, kind, "cells")
                if not n:
                    continue
                w0, w1 = (_cell(rows, arm, cutoff, kind, "wape_share") for arm in ARMS)
                f0, f1 = (_cell(rows, arm, cutoff, kind, "forecast") for arm in ARMS)
                sold = _cell(rows, "with", cutoff, kind, "actual")
                lines.append(
                    f"| {cutoff} | {kind} | {int(n)} | {w0:.3f} | {w1:.3f} | {w1 - w0:+.3f} | "
                    f"{f0:,.0f} | {f1:,.0f} | {sold:,.0f} |"
                )
        lines += [
            "",
            f"Backtest seconds: without {setup['seconds']['without']:.0f}, "
            f"with {setup['seconds']['with']:.0f}.",
            "",
        ]
    lines.append(f"Machine: {machine_line()}; {report['threads']} thread(s).")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(__doc__, __file__)
    parser.add_argument("--source", type=Path, default=ONLINE_RETAIL)
    parser.add_argument("--top", type=int, default=200, help="Online Retail items kept")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    require_file(args.source)
    setups = {
        name: run_setup(name, plain, calendared, args.threads)
        for name, (plain, calendared) in panels(args.source, args.top).items()
    }
    report = {"threads": args.threads, "top": args.top, "setups": setups}
    path = write_results("calendars", report, markdown, args.out, argv)
    print(path.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
