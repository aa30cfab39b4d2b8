"""The HTML report on the Online Retail II backtest: how long it takes, how big it is, and
whether every chart draws data in a real browser.

Reads the per-model backtest forecasts on the test cutoffs that
``python -m benchmarks.online_retail --cutoffs test`` keeps in its store (``--store``, the root
``benchmarks/results/forecasts``; this reads its ``test/`` folder: every model of the protocol,
LM-frozen / LM-lora / LM-full included, so the report's before-vs-after fine-tuning section has
real numbers). Seeded models (LM-*, ``auto``) are read from their run ``<model>_s<seed>`` of
``--seed`` (default 0), named after the model in the report. Models missing from the store are
backtested here (fast baselines only, by default SeasonalNaive, ADIDA and CrostonSBA when the
store is empty). The panel is prepared from the
dataset. It then builds the report (timed), renders it in headless Chromium (timed) and counts
the charts drawn with data, and writes ``benchmarks/results/report.json`` and ``.md``. The
report and a screenshot go to ``--html`` and its ``.png`` (not versioned).

Usage::

    python -m benchmarks.report [--source PATH] [--store DIR] [--seed 0] [--models a,b]
        [--html FILE]
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from benchmarks.harness import (
    ONLINE_RETAIL,
    RESULTS,
    ROOT,
    argument_parser,
    machine_line,
    online_retail_panel,
    panel_cache_dir,
    write_results,
)
from benchmarks.inventory import STORE, as_model_columns, stored_run
from benchmarks.online_retail import CUTOFFS, HORIZON, SEEDED
from salesformer.data.contract import ACTUAL, CUTOFF, DATE, ITEM_ID, Panel
from salesformer.evaluation.backtest import BacktestResult, backtest
from salesformer.models.registry import make_model
from salesformer.report import ReportSettings, write_report
from salesformer.report.browser import chart_points, chromium_path, rendered_dom, screenshot

FALLBACK_MODELS = ("SeasonalNaive", "ADIDA", "CrostonSBA")


def stored_models(folder: Path, seed: int) -> list[str]:
    """Models with a run in a store folder (``<run>.parquet`` next to ``<run>.cost.json``):
    every unseeded model, and the seeded ones that have the run of ``seed``."""
    runs = {p.name[: -len(".cost.json")] for p in folder.glob("*.cost.json")}
    seeded_run = re.compile("(" + "|".join(map(re.escape, SEEDED)) + r")_s\d+")
    models = {m for m in runs if not seeded_run.fullmatch(m)}
    models |= {m for m in SEEDED if stored_run(m, seed) in runs}
    return sorted(models)


def assemble(
    folder: Path, models: list[str], seed: int, panel: Panel, out: Path
) -> dict[str, float]:
    """A backtest folder ``out`` from the forecasts stored in ``folder``, with the models' own
    column names (the run of ``seed`` for seeded models), backtesting the models not stored yet.

    Returns:
        Seconds spent backtesting missing models, by model.
    """
    frames, series, costs, spent = [], None, [], {}
    for name in models:
        run = stored_run(name, seed)
        path = folder / f"{run}.parquet"
        if path.is_file():
            frames.append(as_model_columns(pd.read_parquet(path), run, name))
            cost = json.loads((folder / f"{run}.cost.json").read_text())
            costs.append(
                {"model": name, **{k: cost[k] for k in ("fit_seconds", "predict_seconds")}}
            )
            continue
        print(f"[{name}] not in the store: backtesting it ...", flush=True)
        start = time.perf_counter()
        result = backtest([make_model(name)], panel, HORIZON, list(CUTOFFS))
        spent[name] = time.perf_counter() - start
        frames.append(result.forecasts)
        series = result.series
        costs.extend(result.timings.drop(columns=CUTOFF).to_dict(orient="records"))
    if (folder / "series.parquet").is_file() and series is None:
        series = pd.read_parquet(folder / "series.parquet")
    keys = [ITEM_ID, CUTOFF, DATE, ACTUAL]
    forecasts = frames[0]
    for frame in frames[1:]:
        forecasts = forecasts.merge(frame, on=keys, how="inner", validate="one_to_one")
    if series is None:
        sys.exit(
            f"no series.parquet in {folder}; run python -m benchmarks.online_retail --cutoffs "
            "test first"
        )
    result = BacktestResult(
        forecasts, series, pd.DataFrame(costs), HORIZON, [pd.Timestamp(c) for c in CUTOFFS]
    )
    result.save(out)
    return spent


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__, __file__)
    parser.add_argument("--source", type=Path, default=ONLINE_RETAIL)
    parser.add_argument(
        "--store", type=Path, default=STORE, help="forecast store root (reads test/)"
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="run of the seeded models (LM-*, auto); default 0"
    )
    parser.add_argument("--models", default="", help="default: every stored model")
    parser.add_argument("--html", type=Path, default=RESULTS / "forecasts" / "report.html")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    folder = args.store / "test"
    models = models or stored_models(folder, args.seed) or list(FALLBACK_MODELS)
    with tempfile.TemporaryDirectory() as tmp:
        panel, _, _ = online_retail_panel(args.source, panel_cache_dir())
        panel.save(Path(tmp) / "panel")
        spent = assemble(folder, models, args.seed, panel, Path(tmp) / "backtest")
        settings = ReportSettings(
            Path(tmp) / "backtest",
            panel=Path(tmp) / "panel",
            title="salesformer report: Online Retail II backtest",
        )
        start = time.perf_counter()
        write_report(settings, args.html)
        build_seconds = time.perf_counter() - start
    html = args.html.read_text()
    charts = re.findall(r'<figure class="chart" data-chart="([^"]+)"', html)
    sections = re.findall(r'<section id="([^"]+)">', html)
    row: dict[str, object] = {
        "models": len(models),
        "series": int(pd.read_parquet(folder / "series.parquet").shape[0])
        if (folder / "series.parquet").is_file()
        else None,
        "build_seconds": round(build_seconds, 2),
        "html_mb": round(args.html.stat().st_size / 1e6, 2),
        "sections": len(sections),
        "charts": len(charts),
    }
    if chromium_path() is not None:
        start = time.perf_counter()
        points = chart_points(rendered_dom(args.html))
        row["render_seconds"] = round(time.perf_counter() - start, 2)
        row["charts_with_data"] = sum(1 for v in points.values() if v >= 2)
        screenshot(args.html, args.html.with_suffix(".png"), size=(1280, 6000))
    result = {
        "protocol": {"horizon": HORIZON, "cutoffs": list(CUTOFFS)},
        "models": models,
        "runs": {m: stored_run(m, args.seed) for m in models},
        "backtested_here_seconds": spent,
        "sections": sections,
        "report": row,
        "html": str(args.html.resolve().relative_to(ROOT))
        if args.html.resolve().is_relative_to(ROOT)
        else str(args.html),
        "machine": machine_line(),
    }
    lines = [
        "# HTML report on the Online Retail II backtest",
        "",
        f"Models: {', '.join(models)}. Sections: {', '.join(sections)}.",
        "",
        "| " + " | ".join(row) + " |",
        "|" + "---|" * len(row),
        "| " + " | ".join(str(v) for v in row.values()) + " |",
        "",
        "build_seconds: reading the backtest and panel, building every section, writing the "
        "file (1 process); render_seconds: headless Chromium loading it and drawing every chart.",
        "",
    ]
    write_results("report", result, "\n".join(lines), args.out, argv)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
