"""LM training on Ray Train against the local fit: wall time and agreement of the metrics.

On a seeded synthetic catalogue (``generate_catalogue``) with the bundled all-MiniLM-L6-v2,
fits the LM forecaster

* locally (one process, ``threads`` torch threads),
* on Ray Train with 1 and with 2 workers (``threads`` each), on a local Ray started here,

with the model's default dropout (plus a local fit with the next seed: the spread of fits that
differ only in their random draws) and, for ``frozen``, with ``dropout=0`` (plus a local fit
with one more torch thread: the spread of fits that differ only in the order of float sums;
without dropout the 2-worker run takes the local run's optimizer steps, up to the order of
float sums). For each run: wall seconds
(including Ray Train's start-up), the validation loss and validation WAPE of the kept epoch,
and the forecast gap: sum |median forecast - local fit's| / sum local fit's, over the 8 weeks
after the panel. The frozen embeddings are computed once, on Ray actors, before the timed
fits (the cold-cache encoding time is reported apart).

Results: ``benchmarks/results/ray_train.json`` and ``.md``. Usage::

    python -m benchmarks.ray_train [--items 200] [--weeks 104] [--threads 1] [--modes frozen,lora]
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.harness import RESULTS, argument_parser, machine, write_results

#: The model's defaults, but for a shorter stage 1 and one fine-tuning epoch.
SETTINGS: dict[str, Any] = {
    "head_epochs": 8,
    "patience": 3,
    "finetune_epochs": 1,
    "progress": False,
}


def _best(report: dict[str, Any]) -> tuple[float, float]:
    """Validation loss and WAPE of the kept epoch (stage 2's when it was kept)."""
    stage = report.get("finetune_stage")
    if isinstance(stage, dict) and stage.get("improved"):
        history = stage["history"]
    else:
        history = report["head"]["history"]
    best = min(history, key=lambda r: r["valid"])
    return float(best["valid"]), float(best["valid_wape"])


def run_benchmark(
    items: int = 200,
    weeks: int = 104,
    threads: int = 1,
    modes: tuple[str, ...] = ("frozen",),
    seed: int = 0,
) -> dict[str, Any]:
    """Fit each configuration and return the measured rows (see the module docstring)."""
    import ray

    from salesformer.data.synthetic import generate_catalogue
    from salesformer.distributed.embeddings import encode_on_ray
    from salesformer.distributed.train import fit_lm_on_ray
    from salesformer.models.lm import LMForecaster
    from salesformer.models.lm.forecaster import _texts_for
    from salesformer.models.lm.samples import Wide
    from salesformer.text.encoder import load_encoder

    panel = generate_catalogue(n_items=items, n_weeks=weeks, seed=seed).panel()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="ray-train-bench-") as tmp:
        cache = str(Path(tmp) / "cache")
        texts = _texts_for(panel.items, Wide.from_panel(panel).item_ids)  # type: ignore[arg-type]
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            start = time.perf_counter()
            encode_on_ray("all-MiniLM-L6-v2", texts, max_length=32, cache_dir=cache, workers=2)
            ray_encode = time.perf_counter() - start
            start = time.perf_counter()
            load_encoder("all-MiniLM-L6-v2", max_length=32).encode(texts, use_cache=False)
            local_encode = time.perf_counter() - start
            for mode in modes:
                for dropout in (0.1, 0.0) if mode == "frozen" else (0.1,):
                    settings = {
                        **SETTINGS,
                        "finetune": mode,
                        "dropout": dropout,
                        "threads": threads,
                        "cache_dir": cache,
                        "seed": seed,
                    }
                    reference = None
                    runs = [
                        ("local", 1, seed, threads),
                        ("ray", 1, seed, threads),
                        ("ray", 2, seed, threads),
                        # the spread of fits that differ only in their random draws (another
                        # seed) or only in the order of float sums (more torch threads)
                        ("local", 1, seed + 1, threads)
                        if dropout > 0
                        else ("local", 1, seed, threads + 1),
                    ]
                    for engine, workers, run_seed, run_threads in runs:
                        model = LMForecaster(
                            **{**settings, "seed": run_seed, "threads": run_threads}
                        )
                        start = time.perf_counter()
                        if engine == "local":
                            model.fit(panel)
                        else:
                            fit_lm_on_ray(
                                model,
                                panel,
                                workers=workers,
                                storage=Path(tmp) / "runs",
                                resume=False,
                            )
                        seconds = time.perf_counter() - start
                        forecast = model.predict(8)["LM"].to_numpy()
                        if reference is None:
                            reference = forecast
                        valid, wape = _best(model.fit_report_)
                        gap = float(np.abs(forecast - reference).sum() / reference.sum())
                        rows.append(
                            {
                                "mode": mode,
                                "dropout": dropout,
                                "engine": engine,
                                "workers": workers,
                                "seed": run_seed,
                                "threads": run_threads,
                                "seconds": round(seconds, 1),
                                "valid_loss": round(valid, 5),
                                "valid_wape": round(wape, 4),
                                "forecast_gap": round(gap, 6),
                                "head_epochs": model.fit_report_["head"]["epochs"],
                                "valid_epoch1": model.fit_report_["head"]["history"][0]["valid"],
                            }
                        )
                        print(rows[-1], flush=True)
        finally:
            ray.shutdown()
    return {
        "panel": {"items": items, "weeks": weeks, "seed": seed},
        "settings": SETTINGS,
        "threads_per_process": threads,
        "encode_seconds": {
            "texts": len(texts),
            "ray_2_actors": round(ray_encode, 1),
            "local": round(local_encode, 1),
        },
        "rows": rows,
        "machine": machine(),
    }


def _markdown(result: dict[str, Any]) -> str:
    lines = [
        "# LM training on Ray Train vs local",
        "",
        f"Synthetic catalogue: {result['panel']['items']} items x {result['panel']['weeks']} "
        f"weeks; all-MiniLM-L6-v2; {result['threads_per_process']} torch thread per process; "
        f"{result['machine']['cores']} CPUs (shared). Seconds include Ray Train start-up. "
        "Forecast gap: sum |forecast - local forecast| / sum local forecast.",
        "",
        "| mode | dropout | engine | workers | seed | threads | seconds | valid loss epoch 1 "
        "| valid loss | valid WAPE | forecast gap |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['mode']} | {r['dropout']} | {r['engine']} | {r['workers']} | {r['seed']} | "
            f"{r['threads']} | {r['seconds']} | {r['valid_epoch1']} | "
            f"{r['valid_loss']} | {r['valid_wape']} | {r['forecast_gap']} |"
        )
    enc = result["encode_seconds"]
    lines += [
        "",
        f"Frozen embeddings of {enc['texts']} texts, cold cache: {enc['ray_2_actors']} s on 2 "
        f"Ray actors (incl. actor start-up), {enc['local']} s locally.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__, __file__)
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--weeks", type=int, default=104)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--modes", default="frozen")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = run_benchmark(
        args.items, args.weeks, args.threads, tuple(m for m in args.modes.split(",") if m)
    )
    page = _markdown(result)
    write_results("ray_train", result, page, args.out, argv)
    print(page)


if __name__ == "__main__":
    main()
