"""Why a Ray backtest worker's resident memory grew with the catalogue: memory part by part.

Runs ``backtest_on_ray`` (SeasonalNaive, CrostonSBA, ADIDA; 2 cutoffs, horizon 8) on the
synthetic catalogues of ``python -m benchmarks.scale_ray`` (built in ``--work`` if absent) with one
worker, each run in its own process and Ray, and records the worker's memory after every part
(:attr:`RunReport.part_memory`): resident set (RSS), private memory (USS), pages shared with
other processes, and ``RssShmem``, the pages of Ray's object store the worker has mapped.

Two variants of the driver:

* ``pinned``: the driver keeps each part's scored forecasts as ``ray.get`` returns them, i.e.
  as read-only views of the object store (how the backtest worked before the fix); the
  objects stay pinned in the store for the whole job.
* ``copied``: the driver copies what it keeps out of the store (the library's behaviour now,
  ``backtest._owned``), so the store frees and reuses each result's memory.

Results: ``benchmarks/results/ray_memory.json`` and ``.md``. Usage::

    python -m benchmarks.ray_memory [--items 25000,50000] [--items-per-part 5000]
        [--variants pinned,copied] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import RESULTS, argument_parser, machine_line, write_results
from benchmarks.scale_ray import build_catalogue, catalogue_options, run_child

MODELS = ("SeasonalNaive", "CrostonSBA", "ADIDA")
VARIANTS = ("pinned", "copied")
FIELDS = ("rss_mb", "private_mb", "shared_mb", "anon_mb", "shmem_mb")


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One backtest on Ray in this process; the worker's memory part by part."""
    from salesformer.distributed import backtest as ray_backtest
    from salesformer.models.registry import make_model

    if spec["variant"] == "pinned":  # the driver before the fix: keep the store's views
        ray_backtest._owned = lambda frame: frame
    started = time.perf_counter()
    _result, report = ray_backtest.backtest_on_ray(
        [make_model(name) for name in spec["models"]],
        spec["panel"],
        spec["horizon"],
        n_windows=spec["windows"],
        workers=spec["workers"],
        items_per_part=spec["items_per_part"],
    )
    parts = [
        {k: r.get(k) for k in ("job", "part", "worker", "peak_rss_mb", "peak_private_mb", *FIELDS)}
        for r in report.part_memory
    ]
    return {
        "items": spec["items"],
        "variant": spec["variant"],
        "workers": spec["workers"],
        "seconds": round(time.perf_counter() - started, 1),
        "parts": report.parts,
        "worker_peak_rss_mb": report.worker_peak_rss_mb,
        "worker_peak_private_mb": report.worker_peak_private_mb,
        "driver_peak_rss_mb": report.driver_peak_rss_mb,
        "part_memory": parts,
    }


def summary(run: dict[str, Any]) -> dict[str, Any]:
    """First and last reading of the run, and the growth between them."""
    parts = run["part_memory"]
    first, last = parts[0], parts[-1]
    return {
        "items": run["items"],
        "variant": run["variant"],
        "parts_run": len(parts),
        "seconds": run["seconds"],
        "worker_peak_rss_mb": max(run["worker_peak_rss_mb"]),
        "worker_peak_private_mb": max(run["worker_peak_private_mb"] or [0.0]),
        **{f"first_{k}": first[k] for k in FIELDS},
        **{f"last_{k}": last[k] for k in FIELDS},
        "max_shmem_mb": max(p["shmem_mb"] or 0.0 for p in parts),
        "max_private_mb": max(p["private_mb"] or 0.0 for p in parts),
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# Memory of a Ray backtest worker, part by part",
        "",
        f"`python -m benchmarks.ray_memory` on {result['machine']}: backtest of "
        f"{', '.join(result['models'])} over {result['windows']} cutoffs (horizon "
        f"{result['horizon']}), 1 worker, parts of {result['items_per_part']:,} items; each "
        "part is run twice (survey, forecasts). MB = MiB, read by the worker after each part.",
        "",
        "| items | driver keeps | parts run | wall s | worker peak RSS | worker peak private "
        "| after last part: RSS / private / object-store pages (RssShmem) |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in result["summary"]:
        lines.append(
            f"| {s['items']:,} | {s['variant']} | {s['parts_run']} | {s['seconds']} | "
            f"{s['worker_peak_rss_mb']:.0f} | {s['worker_peak_private_mb']:.0f} | "
            f"{s['last_rss_mb']:.0f} / {s['last_private_mb']:.0f} / {s['last_shmem_mb']:.0f} |"
        )
    for run in result["runs"]:
        lines += [
            "",
            f"{run['items']:,} items, driver keeps {run['variant']} results: after each part, "
            "RSS / private / RssShmem MB",
            "",
            "| job | part | RSS | private | shared | anon | RssShmem | peak private in part |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for p in run["part_memory"]:
            lines.append(
                f"| {p['job']} | {p['part']} | {p['rss_mb']} | {p['private_mb']} | "
                f"{p['shared_mb']} | {p['anon_mb']} | {p['shmem_mb']} | {p['peak_private_mb']} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__, __file__)
    parser.add_argument("--items", default="25000,50000")
    catalogue_options(parser)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--work", type=Path, default=None, help="folder for the catalogues")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(json.loads(args.child))))
        return
    variants = [v for v in args.variants.split(",") if v]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; use {', '.join(VARIANTS)}")
    work = args.work or Path(tempfile.gettempdir()) / "salesformer-ray-bench"
    work.mkdir(parents=True, exist_ok=True)
    runs = []
    for items in sorted(int(n) for n in args.items.split(",") if n):
        panel = build_catalogue(work / f"catalogue-{items}-{args.weeks}", items, args.weeks)
        for variant in variants:
            spec = {
                "items": items,
                "variant": variant,
                "workers": 1,
                "panel": str(panel),
                "horizon": args.horizon,
                "windows": args.windows,
                "models": list(MODELS),
                "items_per_part": args.items_per_part,
            }
            run = run_child(spec, 1, "ray_memory")
            runs.append(run)
            print(json.dumps(summary(run)), flush=True)
    result = {
        "machine": machine_line(),
        "models": list(MODELS),
        "weeks": args.weeks,
        "horizon": args.horizon,
        "windows": args.windows,
        "items_per_part": args.items_per_part,
        "summary": [summary(r) for r in runs],
        "runs": runs,
    }
    page = markdown(result)
    write_results("ray_memory", result, page, args.out, argv)
    print(page)


if __name__ == "__main__":
    main()
