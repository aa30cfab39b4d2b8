"""Scale-out on Ray: batch forecasting and backtests of a large synthetic catalogue.

Builds a synthetic catalogue (``--items`` products x ``--weeks`` weeks, generated in chunks of
the embedded generator with distinct seeds) and measures, each run in its own process:

* **batch forecasting**: a frozen-encoder LM (fitted once, locally, on the catalogue)
  forecasts every item ``--horizon`` weeks ahead: ``load_model(...).predict`` (local engine) vs
  ``predict_on_ray`` with 1 and 2 workers;
* **backtest**: per-series baselines (``--backtest-models``) over ``--windows`` rolling cutoffs:
  ``evaluation.backtest.backtest`` (local) vs ``backtest_on_ray`` with 1 and 2 workers;

with wall time, the peak memory of the driver process and, for Ray, of every worker: its peak
resident set (which counts the pages of Ray's object store it mapped) and its peak private
memory (USS, what the worker alone holds; see ``python -m benchmarks.ray_memory``). The Ray
outputs are checked against the local ones (identical forecasts). With ``--scaling`` the Ray
runs are repeated on smaller catalogues, to show how memory per worker grows (or does not)
with the number of items. The cost at 1M and 10M items is projected from the measured per-item cost.

Results: ``benchmarks/results/ray.json`` and ``.md``. Usage::

    python -m benchmarks.scale_ray [--items 100000] [--weeks 104] [--workers 1,2] [--scaling 25000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.harness import (
    RESULTS,
    ROOT,
    argument_parser,
    machine_line,
    module_command,
    peak_rss_mb,
    write_results,
)
from salesformer.data.contract import ITEM_ID, Panel, validate_panel
from salesformer.data.synthetic import generate_catalogue

CHUNK = 5000
#: The LM of the batch-forecasting runs: frozen encoder, a short fit (the benchmark measures
#: forecasting, not training).
LM_SETTINGS: dict[str, Any] = {
    "finetune": "frozen",
    "head_epochs": 3,
    "epoch_samples": 20_000,
    "max_origins": 26,
    "progress": False,
}


def build_catalogue(folder: Path, n_items: int, n_weeks: int) -> Path:
    """Write a catalogue of ``n_items`` x ``n_weeks`` to ``folder`` (a panel folder); cached."""
    marker = folder / "panel.json"
    if marker.is_file():
        return folder
    sales, items = [], []
    for k, start in enumerate(range(0, n_items, CHUNK)):
        size = min(CHUNK, n_items - start)
        part = generate_catalogue(n_items=size, n_weeks=n_weeks, seed=1000 + k, new_item_share=0.1)
        rename = {f"SKU{i:05d}": f"SKU{start + i:08d}" for i in range(size)}
        part_sales = part.sales.assign(**{ITEM_ID: part.sales[ITEM_ID].map(rename)})
        part_items = part.items.assign(**{ITEM_ID: part.items[ITEM_ID].map(rename)})
        sales.append(part_sales)
        items.append(part_items)
    panel = validate_panel(
        pd.concat(sales, ignore_index=True), pd.concat(items, ignore_index=True), freq="W-MON"
    )
    panel.save(folder)
    return folder


def fit_lm(panel_dir: Path, model_dir: Path, horizon: int, threads: int) -> dict[str, Any]:
    """Fit the frozen LM on the whole catalogue once and save it; cached."""
    from salesformer.models.lm import LMForecaster
    from salesformer.models.persist import save_model

    info = model_dir.parent / f"{model_dir.name}.json"
    if (model_dir / "config.json").is_file() and info.is_file():
        return dict(json.loads(info.read_text()))
    panel = Panel.load(panel_dir)
    model = LMForecaster(horizon=horizon, threads=threads, **LM_SETTINGS)
    start = time.perf_counter()
    model.fit(panel)
    seconds = time.perf_counter() - start
    save_model(model, model_dir)
    facts = {"fit_seconds": round(seconds, 1), "peak_rss_mb": round(peak_rss_mb())}
    info.write_text(json.dumps(facts))
    return facts


# -- one measured run per process ---------------------------------------------------------------


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one measured job (``spec`` from :func:`plan_runs`) and return its facts."""
    kind, engine, workers = spec["kind"], spec["engine"], spec.get("workers")
    out = Path(spec["out"])
    started = time.perf_counter()
    report: dict[str, Any] = {}
    if kind == "predict" and engine == "local":
        from salesformer.models.persist import load_model

        model = load_model(spec["model"])
        model.predict(spec["horizon"]).to_parquet(out, index=False)
    elif kind == "predict":
        from salesformer.distributed.predict import predict_on_ray

        run = predict_on_ray(
            spec["model"],
            out,
            horizon=spec["horizon"],
            workers=workers,
            items_per_part=spec["items_per_part"],
        )
        report = run.to_dict()
    else:
        from salesformer.models.registry import make_model

        models = [make_model(name) for name in spec["models"]]
        if engine == "local":
            from salesformer.evaluation.backtest import backtest

            result = backtest(
                models, Panel.load(spec["panel"]), spec["horizon"], n_windows=spec["windows"]
            )
        else:
            from salesformer.distributed.backtest import backtest_on_ray

            result, run = backtest_on_ray(
                models,
                spec["panel"],
                spec["horizon"],
                n_windows=spec["windows"],
                workers=workers,
                items_per_part=spec["items_per_part"],
            )
            report = run.to_dict()
        result.forecasts.to_parquet(out, index=False)
    seconds = time.perf_counter() - started
    return {
        **{k: spec[k] for k in ("kind", "engine", "items")},
        "workers": workers,
        "seconds": round(seconds, 1),
        "driver_peak_rss_mb": round(peak_rss_mb()),
        "worker_peak_rss_mb": report.get("worker_peak_rss_mb"),
        "worker_peak_private_mb": report.get("worker_peak_private_mb"),
        "parts": report.get("parts"),
    }


def run_child(spec: dict[str, Any], threads: int, module: str = "scale_ray") -> dict[str, Any]:
    """``python -m benchmarks.<module> --child SPEC`` in a fresh process (its own peak memory,
    its own Ray cluster); its last line of output, as JSON."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "SALESFORMER_BENCH_THREADS": str(threads)}
    done = subprocess.run(
        module_command(module, "--child", json.dumps(spec)),
        env=env,
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def same_forecasts(local: Path, other: Path) -> bool:
    """Whether two forecast files hold identical rows (after sorting)."""
    a = pd.read_parquet(local)
    b = pd.read_parquet(other)
    keys = [c for c in ("cutoff", ITEM_ID, "date") if c in a.columns]
    a = a.sort_values(keys).reset_index(drop=True)
    b = b.sort_values(keys).reset_index(drop=True)[list(a.columns)]
    try:
        pd.testing.assert_frame_equal(a, b, check_dtype=False, check_exact=False, rtol=1e-9)
    except AssertionError:
        return False
    return True


# -- the table and the projection -----------------------------------------------------------------


def projection(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Cost at 1M and 10M items, linear in items, from the Ray runs with the most workers.

    The per-item cost is the slope between the largest and the smallest catalogue (so Ray's
    fixed start-up is not charged per item; it is added once), in core-seconds per item
    (wall seconds x workers); a cluster of W workers is assumed to divide it by W.
    """
    out = []
    for kind in ("predict", "backtest"):
        runs = [r for r in rows if r["kind"] == kind and r["engine"] == "ray"]
        if not runs:
            continue
        most = max(int(r["workers"] or 1) for r in runs)
        sized = sorted((r for r in runs if r["workers"] == most), key=lambda r: r["items"])
        big = sized[-1]
        small = sized[0] if sized[0]["items"] < big["items"] else None
        if small is not None:
            slope = (big["seconds"] - small["seconds"]) / (big["items"] - small["items"])
            fixed = max(big["seconds"] - slope * big["items"], 0.0)
        else:
            slope, fixed = big["seconds"] / big["items"], 0.0
        core_seconds = max(slope, 0.0) * most
        peaks = {r["items"]: max(r["worker_peak_rss_mb"] or [0]) for r in sized}
        private = {r["items"]: _peak(r.get("worker_peak_private_mb")) for r in sized}
        for target in (1_000_000, 10_000_000):
            for cluster in (2, 32, 256):
                out.append(
                    {
                        "kind": kind,
                        "items": target,
                        "workers": cluster,
                        "core_seconds_per_item": round(core_seconds, 6),
                        "startup_seconds": round(fixed, 1),
                        "hours": round((core_seconds * target / cluster + fixed) / 3600, 2),
                        "worker_peak_rss_mb_measured": peaks,
                        "worker_peak_private_mb_measured": private,
                    }
                )
    return out


def memory_by_items(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Peak memory per worker and of the driver, by catalogue size, for each Ray job."""
    out = []
    for r in rows:
        if r["engine"] == "ray":
            out.append(
                {
                    "kind": r["kind"],
                    "workers": r["workers"],
                    "items": r["items"],
                    "worker_peak_rss_mb": max(r["worker_peak_rss_mb"] or [0]),
                    "worker_peak_private_mb": _peak(r.get("worker_peak_private_mb")),
                    "driver_peak_rss_mb": r["driver_peak_rss_mb"],
                }
            )
    return sorted(out, key=lambda m: (m["kind"], m["workers"], m["items"]))


def _peak(values: list[float] | None) -> float | None:
    """The largest of the workers' figures; None when not measured (older rows, no Linux)."""
    return max(values) if values else None


def _mb(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Scale-out on Ray: synthetic catalogue",
        "",
        f"`python -m benchmarks.scale_ray` on {result['machine']}; "
        f"catalogue {result['items']:,} items x "
        f"{result['weeks']} weeks; batch forecasting with a frozen LM ({result['horizon']} weeks), "
        f"backtest of {', '.join(result['backtest_models'])} over {result['windows']} cutoffs.",
        "",
        "| job | engine | workers | items | wall s | driver peak MB | worker peak RSS MB "
        "| worker peak private MB | same as local |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["runs"]:
        rss = _mb(_peak(r["worker_peak_rss_mb"]))
        private = _mb(_peak(r.get("worker_peak_private_mb")))
        same = {True: "yes", False: "NO", None: "-"}[r.get("same_as_local")]
        lines.append(
            f"| {r['kind']} | {r['engine']} | {r['workers'] or '-'} | {r['items']:,} | "
            f"{r['seconds']} | {r['driver_peak_rss_mb']} | {rss} | {private} | {same} |"
        )
    lines += [
        "",
        "Worker peak RSS counts the pages of Ray's object store the worker mapped (shared with "
        "the store); worker peak private is its unique set size (USS), sampled while parts run.",
    ]
    lines += ["", "Projection from the measured per-item cost (core-seconds per item, linear):", ""]
    lines += [
        "| job | items | workers | core-s per item | start-up s | hours |",
        "|---|---|---|---|---|---|",
    ]
    for p in result["projection"]:
        lines.append(
            f"| {p['kind']} | {p['items']:,} | {p['workers']} | {p['core_seconds_per_item']} | "
            f"{p['startup_seconds']} | {p['hours']} |"
        )
    return "\n".join(lines) + "\n"


def catalogue_options(parser: argparse.ArgumentParser) -> None:
    """The catalogue and backtest options shared with ``benchmarks.ray_memory``."""
    parser.add_argument("--weeks", type=int, default=104)
    parser.add_argument("--horizon", type=int, default=8)
    parser.add_argument("--windows", type=int, default=2)
    parser.add_argument("--items-per-part", type=int, default=5000)


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__, __file__)
    parser.add_argument("--items", type=int, default=100_000)
    catalogue_options(parser)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--scaling", default="25000", help="smaller catalogues for the Ray runs")
    parser.add_argument("--backtest-models", default="SeasonalNaive,CrostonSBA,ADIDA")
    parser.add_argument("--work", type=Path, default=None, help="folder for catalogues and models")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--rerun-ray",
        choices=("predict", "backtest"),
        default=None,
        help="rerun only the Ray runs of this job; keep the other rows of <out>/ray.json and "
        "compare with the local output a full run left in --work",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(json.loads(args.child))))
        return
    work = args.work or Path(tempfile.gettempdir()) / "salesformer-ray-bench"
    work.mkdir(parents=True, exist_ok=True)
    workers = [int(w) for w in args.workers.split(",") if w]
    sizes = sorted({args.items, *(int(s) for s in args.scaling.split(",") if s)})
    models = [m for m in args.backtest_models.split(",") if m]
    runs: list[dict[str, Any]] = []
    kept: list[dict[str, Any]] = []
    if args.rerun_ray is not None:
        previous = json.loads((args.out / "ray.json").read_text())["runs"]
        kept = [r for r in previous if r["kind"] != args.rerun_ray or r["engine"] == "local"]
    fits = {}
    for items in sizes:
        panel_dir = build_catalogue(work / f"catalogue-{items}-{args.weeks}", items, args.weeks)
        model_dir = work / f"lm-{items}-{args.weeks}"
        fits[items] = fit_lm(panel_dir, model_dir, args.horizon, args.threads)
        engines: list[tuple[str, int | None]] = [("local", None)] if items == args.items else []
        engines += [("ray", w) for w in workers if items == args.items or w == max(workers)]
        for kind in ("predict", "backtest"):
            reference = None
            for engine, count in engines:
                out = work / f"{kind}-{items}-{engine}-{count or 0}.parquet"
                if args.rerun_ray is not None and (kind != args.rerun_ray or engine == "local"):
                    reference = out if engine == "local" and out.is_file() else reference
                    continue
                spec = {
                    "kind": kind,
                    "engine": engine,
                    "workers": count,
                    "items": items,
                    "model": str(model_dir),
                    "panel": str(panel_dir),
                    "horizon": args.horizon,
                    "windows": args.windows,
                    "models": models,
                    "items_per_part": args.items_per_part,
                    "out": str(out),
                }
                row = run_child(spec, args.threads)
                if engine == "local":
                    reference = out
                    row["same_as_local"] = None
                else:
                    row["same_as_local"] = same_forecasts(reference, out) if reference else None
                runs.append(row)
                print(json.dumps(row), flush=True)
    result = {
        "machine": machine_line(),
        "items": args.items,
        "weeks": args.weeks,
        "horizon": args.horizon,
        "windows": args.windows,
        "backtest_models": models,
        "items_per_part": args.items_per_part,
        "lm_fit": {str(k): v for k, v in fits.items()},
        "runs": kept + runs,
        "projection": projection(kept + runs),
        "memory_by_items": memory_by_items(kept + runs),
    }
    page = markdown(result)
    write_results("ray", result, page, args.out, argv)
    print(page)


if __name__ == "__main__":
    main()
