"""Local engine at scale: loading, batch forecasting and a backtest, next to Ray, in one run.

Builds the synthetic catalogue of ``benchmarks.scale_ray`` (``--items`` products x ``--weeks``
weeks, cached under ``--work``) and measures, each job in its own process:

* **validate**: ``validate_panel`` of the catalogue's rows and items as a user passes them
  (pandas frames with text ids, read before the clock starts);
* **validate_raw**: the same, on raw rows (:func:`raw_rows`: 30% of the weeks after each
  item's first dropped, the rest shuffled), so that validation sorts and fills the grid;
* **load**: ``Panel.load`` of the catalogue's folder (read ``panel.parquet`` and validate it);
* **predict**: a saved model (``--predict-models``: LightGBM and/or the frozen-encoder LM of
  ``benchmarks.scale_ray``; fitted once on the catalogue, cached) forecasts every item
  ``--horizon`` weeks ahead through the one batch-forecasting driver over parts of items:
  ``predict_local`` in this process (``--local-workers 1``) or a local process pool of N,
  next to ``predict_on_ray`` with 1 and 2 workers (``--workers``);
* **backtest**: ``--backtest-models`` over ``--windows`` cutoffs, the same way:
  ``backtest_local`` (in this process, a pool of N) vs ``backtest_on_ray`` with 1 and 2 workers;
* **startup**: the fixed cost before the first part: start a local pool of N (N > 1) or Ray
  with N actors, and run one task on each worker that imports what a part needs;

with wall seconds and the peak memory of the job's whole process tree (the child and every
process it started, Ray's included), sampled every 0.2 s as the sum of their proportional set
sizes (PSS: a page shared by n processes counts 1/n in each, so Ray's object store is counted
once), and the CPU seconds of the job's own process (user + system; for Ray the driver only).
On a machine shared with other work, wall seconds stretch and CPU seconds do not much: both are
recorded, with the load average. Each job runs ``--repeats`` times; the table gives the median
and the range. Ray outputs are compared with the local ones.

Results: ``benchmarks/results/local_scale.json`` and ``.md`` (``--name`` for another name). Usage::

    python -m benchmarks.local_scale [--items 25000,100000] [--repeats 3] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil

from benchmarks.harness import (
    RESULTS,
    ROOT,
    argument_parser,
    machine_line,
    module_command,
    write_results,
)
from benchmarks.scale_ray import build_catalogue, fit_lm, same_forecasts
from salesformer.data.contract import ITEM_ID

JOBS = ("validate", "validate_raw", "load", "predict", "backtest", "startup")
PREDICT_MODELS = ("LightGBM", "LM")


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one measured job (``spec`` from :func:`main`) and return its wall and driver CPU
    seconds. Ray's batch forecasts and backtests run as ``benchmarks.scale_ray`` runs them;
    the local engine's run through the same driver (:func:`predict_local`,
    :func:`backtest_local`) in this process (``workers`` 1) or a process pool."""
    kind = spec["kind"]
    if kind == "startup":
        return _startup_child(spec)
    if kind in ("predict", "backtest") and spec["engine"] == "ray":
        from benchmarks.scale_ray import child as scale_ray_child

        cpu = time.process_time()
        facts = scale_ray_child(spec)
        return {"seconds": facts["seconds"], "cpu": time.process_time() - cpu}
    if kind in ("predict", "backtest"):
        return _local_child(spec)
    from salesformer.data.contract import Panel, validate_panel

    if kind in ("validate", "validate_raw"):  # frames as a user passes them, read untimed
        import pandas as pd

        sales = pd.read_parquet(Path(spec["panel"]) / "panel.parquet")
        items = pd.read_parquet(Path(spec["panel"]) / "items.parquet")
        if kind == "validate_raw":
            sales = raw_rows(sales)
    started, cpu = time.perf_counter(), time.process_time()
    if kind in ("validate", "validate_raw"):
        validate_panel(sales, items, freq="W-MON")
    else:
        Panel.load(spec["panel"])
    return {"seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu}


def raw_rows(sales: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """The panel's rows as raw input: 30% of the rows after each item's first dropped (weeks
    without a sale), the rest shuffled, the ids as text; validation has to sort and fill."""
    rng = np.random.default_rng(seed)
    first = ~sales[ITEM_ID].duplicated().to_numpy()
    kept = sales.loc[first | (rng.random(len(sales)) > 0.3)]
    return kept.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def _local_child(spec: dict[str, Any]) -> dict[str, Any]:
    """A batch forecast or a backtest on the local engine with ``spec['workers']`` processes."""
    started, cpu = time.perf_counter(), time.process_time()
    if spec["kind"] == "predict":
        from salesformer.distributed.predict import predict_local

        predict_local(
            spec["model"],
            spec["out"],
            horizon=spec["horizon"],
            workers=spec["workers"],
            items_per_part=spec["items_per_part"],
        )
    else:
        from salesformer.distributed.backtest import backtest_local
        from salesformer.models.registry import make_model

        result, _ = backtest_local(
            [make_model(name) for name in spec["models"]],
            spec["panel"],
            spec["horizon"],
            n_windows=spec["windows"],
            workers=spec["workers"],
            items_per_part=spec["items_per_part"],
        )
        result.forecasts.to_parquet(spec["out"], index=False)
    return {"seconds": time.perf_counter() - started, "cpu": time.process_time() - cpu}


def warm_up(objects: list[Any], parts: Any = None) -> tuple[int, float]:
    """A worker's first task: import what a batch-forecasting part needs (the library's part
    driver, pandas, pyarrow, LightGBM); its process id and the seconds the imports took."""
    started = time.perf_counter()
    import lightgbm  # noqa: F401

    import salesformer.distributed.predict
    import salesformer.models.registry  # noqa: F401

    return os.getpid(), time.perf_counter() - started


def _startup_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Start ``spec['workers']`` workers (a local process pool or Ray actors) and run
    :func:`warm_up` once on each: the fixed cost a job pays before its first part."""
    started, cpu = time.perf_counter(), time.process_time()
    workers = spec["workers"]
    if spec["engine"] == "ray":
        from salesformer.distributed.engine import ray_session
        from salesformer.distributed.pool import start_workers

        with ray_session(workers=workers) as ray:
            actors = start_workers(ray, workers)
            facts = ray.get([actor.call.remote(warm_up, [], {}) for actor in actors])
            seconds = time.perf_counter() - started
    else:
        from salesformer.distributed.executors import LocalPool

        with LocalPool(workers) as pool:
            halves = [pool.call(warm_up, [], {}, []) for _ in range(workers)]  # (pid, seconds)
            facts = [(pool.value(pid), pool.value(took)) for pid, took in halves]
            seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "cpu": time.process_time() - cpu,
        "processes": len({pid for pid, _ in facts}),
        "import_seconds": max(took for _, took in facts),
    }


def _tree_pss_mb(root: psutil.Process) -> float:
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied, AttributeError):
            continue
    return total / 2**20


def run_child(spec: dict[str, Any], threads: int) -> dict[str, Any]:
    """Run ``spec`` in a fresh process; its wall seconds and its process tree's peak PSS."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "SALESFORMER_BENCH_THREADS": str(threads)}
    # pool processes and Ray workers import this module (the startup job's task) from the root
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    command = module_command("local_scale", "--child", json.dumps(spec))
    proc = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    peak = 0.0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        root = psutil.Process(proc.pid)
        while not done.is_set():
            try:
                peak = max(peak, _tree_pss_mb(root))
            except psutil.NoSuchProcess:
                return
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = proc.communicate()
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"job {spec['kind']}/{spec['engine']} failed ({proc.returncode})")
    facts = json.loads(output.strip().splitlines()[-1])
    out = {
        "seconds": round(facts["seconds"], 1),
        "driver_cpu_seconds": round(facts["cpu"], 1),
        "tree_peak_mb": round(peak),
    }
    if "import_seconds" in facts:  # the startup job: processes started and their imports
        out.update(processes=facts["processes"], import_seconds=round(facts["import_seconds"], 1))
    return out


def fit_lightgbm(panel_dir: Path, model_dir: Path, horizon: int, threads: int) -> None:
    """Fit LightGBM on the whole catalogue once and save it (cached)."""
    if (model_dir / "config.json").is_file():
        return
    from salesformer.data.contract import Panel
    from salesformer.models.persist import save_model
    from salesformer.models.registry import make_model

    model = make_model("LightGBM", max_horizon=horizon, n_jobs=threads)
    save_model(model.fit(Panel.load(panel_dir)), model_dir)


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    seconds = [r["seconds"] for r in runs]
    cpu = [r["driver_cpu_seconds"] for r in runs]
    peaks = [r["tree_peak_mb"] for r in runs]
    return {
        "runs": len(runs),
        "seconds_median": round(statistics.median(seconds), 1),
        "seconds_min": min(seconds),
        "seconds_max": max(seconds),
        "driver_cpu_seconds_median": round(statistics.median(cpu), 1),
        "tree_peak_mb_median": round(statistics.median(peaks)),
        "tree_peak_mb_max": max(peaks),
        "each": runs,
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Local engine at scale: synthetic catalogue",
        "",
        f"`python -m benchmarks.local_scale` on {result['machine']}; {result['weeks']} weeks; "
        f"batch forecasting ({result['horizon']} weeks) with saved models (LightGBM; LM: the "
        "frozen-encoder LM of `benchmarks.scale_ray`); backtest of "
        f"{', '.join(result['backtest_models'])} over {result['windows']} cutoffs; "
        f"{result['items_per_part']:,} items per part (local and Ray). Local workers 1 = in "
        "the driver process, 2 = a process pool of 2. Load average before the run: "
        f"{result['load_before']}, after: {result['load_after']} (a shared machine: "
        "the times are noisy; the last column is the 1-minute load average when each job "
        "ended)."
        + ("" if result.get("complete", True) else " **Run cut short: only the jobs listed ran.**"),
        "",
        "| job | engine | workers | items | runs | wall s median [min, max] "
        "| driver CPU s median | process-tree peak MB (PSS) | same as local, 1 worker | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        same = {True: "yes", False: "NO", None: "-"}[r.get("same_as_local")]
        job = f"{r['kind']} ({r['model']})" if r.get("model") else r["kind"]
        lines.append(
            f"| {job} | {r['engine']} | {r['workers'] or '-'} | {r['items']:,} | "
            f"{r['runs']} | {r['seconds_median']} [{r['seconds_min']}, {r['seconds_max']}] | "
            f"{r['driver_cpu_seconds_median']} | "
            f"{r['tree_peak_mb_median']} (max {r['tree_peak_mb_max']}) | {same} | "
            f"{r.get('load_after', '-')} |"
        )
    startups = [r for r in result["rows"] if r["kind"] == "startup"]
    if startups:
        shown = "; ".join(
            f"{r['engine']} {r['workers']}: "
            + ", ".join(
                f"{e.get('processes')} started, {e.get('import_seconds')} s" for e in r["each"]
            )
            for r in startups
        )
        lines.append(
            "\nstartup = start the workers (a spawned process pool, or Ray and its actors) and "
            "run one task on each that imports the library's part driver and LightGBM; per run, "
            f"the distinct worker processes that ran it and the slowest import: {shown}."
        )
    for items, facts in sorted(result.get("lm_fits", {}).items()):
        lines.append(
            f"\nThe LM at {int(items):,} items was fitted once before the runs (not timed in "
            f"the table): {facts.get('fit_seconds')} s, peak RSS {facts.get('peak_rss_mb')} MB."
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__, __file__)
    parser.add_argument("--items", default="25000,100000")
    parser.add_argument("--weeks", type=int, default=104)
    parser.add_argument("--horizon", type=int, default=8)
    parser.add_argument("--windows", type=int, default=2)
    parser.add_argument("--items-per-part", type=int, default=5000)
    parser.add_argument("--workers", default="1,2", help="Ray workers, one run each")
    parser.add_argument(
        "--local-workers", default="1,2", help="local engine: 1 = in this process, N = a pool"
    )
    parser.add_argument("--jobs", default=",".join(JOBS))
    parser.add_argument(
        "--predict-models",
        default="LightGBM",
        help="saved models of the predict job: LightGBM and/or LM (the frozen-encoder LM of "
        "benchmarks.scale_ray, fitted once per catalogue and cached; slow to fit)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backtest-models", default="SeasonalNaive,CrostonSBA,ADIDA")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--work", type=Path, default=None, help="folder for catalogues and models")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="local_scale", help="results file name (no suffix)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(json.loads(args.child))))
        return
    work = args.work or Path(tempfile.gettempdir()) / "salesformer-ray-bench"
    work.mkdir(parents=True, exist_ok=True)
    load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
    rows: list[dict[str, Any]] = []
    fits: dict[int, dict[str, Any]] = {}
    models = [m for m in args.backtest_models.split(",") if m]
    for items in [int(s) for s in args.items.split(",") if s]:
        panel_dir = build_catalogue(work / f"catalogue-{items}-{args.weeks}", items, args.weeks)
        jobs: list[tuple[str, str | None]] = []
        for kind in [j for j in args.jobs.split(",") if j]:
            if kind not in JOBS:
                parser.error(f"unknown job {kind!r}; use some of {', '.join(JOBS)}")
            names = [m for m in args.predict_models.split(",") if m] if kind == "predict" else []
            jobs += [(kind, name) for name in names] if names else [(kind, None)]
        for kind, predictor in jobs:
            if predictor is not None and predictor not in PREDICT_MODELS:
                parser.error(f"unknown --predict-models {predictor!r}; use LightGBM and/or LM")
            model_dir = work / f"lightgbm-{items}-{args.weeks}"
            if predictor == "LightGBM":
                fit_lightgbm(panel_dir, model_dir, args.horizon, args.threads)
            elif predictor == "LM":
                model_dir = work / f"lm-{items}-{args.weeks}"
                fits[items] = fit_lm(panel_dir, model_dir, args.horizon, args.threads)
            engines: list[tuple[str, int | None]] = [("local", None)]
            if kind in ("predict", "backtest", "startup"):
                engines = [("local", int(w)) for w in args.local_workers.split(",") if w]
                engines += [("ray", int(w)) for w in args.workers.split(",") if w]
            if kind == "startup":  # one local worker is this process: nothing to start
                engines = [
                    (engine, count)
                    for engine, count in engines
                    if engine == "ray" or (count or 0) > 1
                ]
            reference = None
            for engine, count in engines:
                tag = f"{kind}-{predictor}" if predictor else kind
                out = work / f"local-scale-{tag}-{items}-{engine}-{count or 0}.parquet"
                spec = {
                    "kind": kind,
                    "engine": engine,
                    "workers": count,
                    "items": items,
                    "panel": str(panel_dir),
                    "model": str(model_dir),
                    "horizon": args.horizon,
                    "windows": args.windows,
                    "models": models,
                    "items_per_part": args.items_per_part,
                    "out": str(out),
                }
                runs = [run_child(spec, args.threads) for _ in range(args.repeats)]
                row = {"kind": kind, "engine": engine, "workers": count, "items": items}
                if predictor:
                    row["model"] = predictor
                row.update(_summary(runs))
                if kind in ("validate", "validate_raw", "load", "startup"):
                    row["same_as_local"] = None
                elif reference is None:
                    reference, row["same_as_local"] = out, None
                else:
                    row["same_as_local"] = same_forecasts(reference, out) if reference else None
                row["load_after"] = round(os.getloadavg()[0], 1)
                rows.append(row)
                print(json.dumps(row), flush=True)
                _write(args, argv, load_before, models, rows, fits, complete=False)
    print(_write(args, argv, load_before, models, rows, fits, complete=True))


def _write(
    args: argparse.Namespace,
    argv: list[str] | None,
    load_before: str,
    models: list[str],
    rows: list[dict[str, Any]],
    lm_fits: dict[int, dict[str, Any]],
    complete: bool,
) -> str:
    """Write the results so far (after every job, so that a run cut short keeps its rows)."""
    result = {
        "machine": machine_line(),
        "complete": complete,
        "load_before": load_before,
        "load_after": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        "weeks": args.weeks,
        "horizon": args.horizon,
        "windows": args.windows,
        "backtest_models": models,
        "items_per_part": args.items_per_part,
        "threads": args.threads,
        "rows": rows,
        "lm_fits": {str(k): v for k, v in lm_fits.items()},
    }
    page = markdown(result)
    write_results(args.name, result, page, args.out, argv)
    return page


if __name__ == "__main__":
    main()
