"""What every benchmark shares: dataset paths, the prepared panel, peak memory, machine
details, and one writer for results.

Benchmarks run as modules from the repository root (``python -m benchmarks.online_retail``), so
that they import this harness and each other as ``benchmarks.<name>`` and child processes run
the same way. Each results file records the command that made it, the commit (and whether the
work tree had uncommitted changes), the machine and the time, so that any number quoted in the
README can be traced to a run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DATASETS = ROOT.parent / "shared" / "datasets"
ONLINE_RETAIL = DATASETS / "online_retail_ii" / "online_retail_ii.parquet"
STALLION = DATASETS / "stallion" / "stallion.parquet"


def argument_parser(doc: str | None, script: str) -> argparse.ArgumentParser:
    """A benchmark's command-line parser: ``python -m benchmarks.<name>`` as the program name
    (``script`` is the module's ``__file__``) and the docstring's first line as description."""
    return argparse.ArgumentParser(
        prog=f"python -m benchmarks.{Path(script).stem}",
        description=(doc or "").strip().split("\n")[0],
    )


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB.

    ``VmHWM`` is reset by ``exec``, unlike ``ru_maxrss``, which on Linux keeps the parent's
    peak across ``fork`` + ``exec`` and would charge the parent's memory to the child.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> float:
    """Reset this process's peak resident memory (Linux ``clear_refs``); the current peak in MB.

    Where the reset is not possible the peak keeps counting from the start of the process.
    """
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
    return peak_rss_mb()


def git_commit() -> dict[str, Any]:
    """The commit the benchmark ran on and whether tracked files had uncommitted changes.

    Results files (``benchmarks/results``) do not count: a run rewrites them itself.
    """
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            [
                "git",
                "-C",
                str(ROOT),
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                ":(exclude)benchmarks/results",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "dirty": None}
    return {"commit": head, "dirty": bool(dirty)}


def machine() -> dict[str, Any]:
    """Machine details recorded with every result."""
    return {
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def machine_line() -> str:
    """One line of machine details for a Markdown table's footnote."""
    details = machine()
    return f"{details['machine']}, Python {details['python']}, {details['cores']} cores"


def provenance(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Command, commit, machine and time of a run: the header of every results file."""
    module = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else "?"
    args = list(sys.argv[1:] if argv is None else argv)
    return {
        "command": " ".join(["python", "-m", f"benchmarks.{module}", *args]),
        **git_commit(),
        "machine": machine(),
        "finished": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def require_file(path: Path, flag: str = "--source") -> Path:
    """Exit with one line when a dataset is missing (as on a machine without ../shared)."""
    if not path.is_file():
        sys.exit(f"dataset not found: {path}; pass {flag} PATH")
    return path


def write_results(
    name: str,
    report: dict[str, Any],
    markdown: str | Callable[[dict[str, Any]], str] | None = None,
    out: Path = RESULTS,
    argv: Sequence[str] | None = None,
) -> Path:
    """Write ``<out>/<name>.json`` (with provenance) and, when given, ``<out>/<name>.md``.

    ``markdown`` is the Markdown text, or a function that makes it from the written report
    (provenance included, so a table can name the commit and the command).

    Each file is written to a temporary name and renamed, so an interrupted run never leaves a
    half-written result behind.
    """
    out.mkdir(parents=True, exist_ok=True)
    body = {"provenance": provenance(argv), **report}
    target = out / f"{name}.json"
    _atomic_write(target, json.dumps(body, indent=2, default=_json_default) + "\n")
    if callable(markdown):
        markdown = markdown(json.loads(json.dumps(body, default=_json_default)))
    if markdown is not None:
        _atomic_write(out / f"{name}.md", markdown if markdown.endswith("\n") else markdown + "\n")
    return target


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):  # numpy arrays
        return value.tolist()
    return str(value)


def panel_cache_dir() -> Path:
    """Where prepared benchmark panels are cached (under the library's cache root)."""
    from salesformer.data.sources import cache_root

    return cache_root() / "panels"


def online_retail_panel(
    source: Path = ONLINE_RETAIL, cache: Path | None = None
) -> tuple[Any, dict[str, Any], float]:
    """The prepared Online Retail II panel, its quality counts and the preparation seconds.

    With ``cache``, the panel is stored there keyed by the file (path, size, mtime) and the
    library version, and loaded from there on later runs (then 0 seconds are reported).
    """
    from salesformer._version import __version__
    from salesformer.data.contract import Panel
    from salesformer.data.online_retail import prepare_online_retail

    require_file(source)
    folder = None
    if cache is not None:
        stat = source.stat()
        key = f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{__version__}|{_loader_hash()}"
        folder = cache / hashlib.sha256(key.encode()).hexdigest()[:16]
        if (folder / "quality.json").is_file():
            print(f"panel: cached in {folder}", flush=True)
            return Panel.load(folder), json.loads((folder / "quality.json").read_text()), 0.0
    start = time.perf_counter()
    panel, quality = prepare_online_retail(source)
    seconds = time.perf_counter() - start
    print(f"panel: prepared in {seconds:.1f} s", flush=True)
    if folder is not None:
        panel.save(folder)
        (folder / "quality.json").write_text(json.dumps(quality.to_dict(), indent=2) + "\n")
    return panel, quality.to_dict(), seconds


def _loader_hash() -> str:
    """A hash of the loader's source, so a changed loader never reads a stale cached panel."""
    from salesformer.data import online_retail

    return hashlib.sha256(Path(online_retail.__file__).read_bytes()).hexdigest()[:12]


def module_command(module: str, *args: str) -> list[str]:
    """The command line of ``python -m benchmarks.<module> ARGS`` with this interpreter; run it
    with ``cwd=ROOT`` (for callers that need their own environment or the output)."""
    return [sys.executable, "-m", f"benchmarks.{module}", *args]


def run_module(module: str, *args: str) -> None:
    """Run ``python -m benchmarks.<module> ARGS`` from the repository root (a child process,
    so that its peak memory and seconds are its own)."""
    subprocess.run(module_command(module, *args), check=True, cwd=ROOT)


# -- item subsets and spread over seeds (the privacy and federated benchmarks) --------------
# Both fit the LM several times per cutoff (one arm per epsilon or per number of sellers),
# which a small machine cannot do on every item of Online Retail II: they run on
# ``--sample-items N`` items drawn at random with ``--item-seed`` (the same items for every arm
# and seed) and report each arm's metrics as the mean and the [min, max] over ``--seeds``.

#: Metrics the two benchmarks show.
METRICS_SHOWN = ("wape", "wql", "mase", "coverage80")


def top_items(panel: Any, count: int) -> Any:
    """The ``count`` items with the most sales (all when ``count`` is 0)."""
    from salesformer.data.contract import ITEM_ID, SALES

    if not count:
        return panel
    totals = panel.sales.groupby(ITEM_ID)[SALES].sum().nlargest(count)
    return keep_items(panel, set(totals.index))


def sample_items(panel: Any, count: int, seed: int) -> Any:
    """``count`` items drawn at random (seeded) from the panel's items (all when 0)."""
    import numpy as np

    ids = np.sort(np.asarray(panel.item_ids, dtype=object))
    if not count or count >= len(ids):
        return panel
    chosen = np.random.default_rng(seed).choice(len(ids), size=count, replace=False)
    return keep_items(panel, set(ids[chosen]))


def keep_items(panel: Any, keep: set[Any]) -> Any:
    """The panel restricted to the items in ``keep``."""
    from dataclasses import replace

    from salesformer.data.contract import ITEM_ID

    items = None
    if panel.items is not None:
        items = panel.items.loc[panel.items[ITEM_ID].isin(keep)].reset_index(drop=True)
    sales = panel.sales.loc[panel.sales[ITEM_ID].isin(keep)].reset_index(drop=True)
    return replace(panel, sales=sales, items=items, report={})


def items_note(sample: int, item_seed: int, top: int = 0) -> str:
    """What items a run used, in words."""
    if sample:
        return f"{sample} items drawn at random (item seed {item_seed}; not every item)"
    if top:
        return f"the {top} items with the most sales (not every item)"
    return "every item"


def over_seeds(per_seed: dict[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Each arm's metrics as mean, min and max over seeds (``per_seed``: seed -> overall rows)."""
    import pandas as pd

    rows = [{**row, "seed": seed} for seed, overall in per_seed.items() for row in overall]
    frame = pd.DataFrame(rows)
    grouped = frame.groupby("model", sort=False)
    out = grouped[list(METRICS_SHOWN)].mean()
    for metric in METRICS_SHOWN:
        out[f"{metric}_min"] = grouped[metric].min()
        out[f"{metric}_max"] = grouped[metric].max()
    out["seeds"] = grouped["seed"].count()
    return list(out.reset_index().to_dict(orient="records"))


def cell(row: dict[str, Any], metric: str) -> str:
    """``0.712 [0.700, 0.731]`` over several seeds, ``0.712`` for one."""
    if row.get("seeds", 1) > 1:
        return f"{row[metric]:.3f} [{row[f'{metric}_min']:.3f}, {row[f'{metric}_max']:.3f}]"
    return f"{row[metric]:.3f}"


def metrics_table(summary: list[dict[str, Any]]) -> list[str]:
    """Markdown rows: one per arm, mean [min, max] over seeds."""
    lines = ["| arm | " + " | ".join(METRICS_SHOWN) + " |", "|---|" + "---|" * len(METRICS_SHOWN)]
    for row in summary:
        lines.append(
            f"| {row['model']} | " + " | ".join(cell(row, m) for m in METRICS_SHOWN) + " |"
        )
    return lines
