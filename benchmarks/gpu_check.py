"""The LM on a CUDA GPU: device checks, then MiniLM and all-mpnet-base-v2 fits, frozen and
LoRA, with fit seconds and peak GPU memory per mode.

Without a CUDA GPU it prints one "no GPU" line and exits 0, writing nothing. A GPU machine lent
to a session receives only the repository (at most 64 MiB, no ``../shared``, no internet), so
the run has two steps:

1. ``--prepare DIR`` (here, where the datasets and encoder packages are): writes ``DIR/panel``,
   the ``--items`` best-selling Online Retail II items (all weeks), and ``DIR/minilm``, the
   bundled all-MiniLM-L6-v2 with its weights stored in float16 (about 45 MB; its config says
   float32, so it loads in float32 again, each weight rounded once to float16). ``.gpu_check/``
   is git-ignored: name it in the device run's ``carry``.
2. ``--data DIR`` (there, with ``PYTHONPATH=src``): the checks and fits below, written to
   ``--out`` as ``encoders_gpu.json`` and ``.md`` (copy them to ``benchmarks/results``).

Checks: ``--device auto`` picks the GPU; a frozen fit on the GPU keeps the fitted head on the
CPU, records the device, mixed precision and the probed batch size, and forecasts within 2% WAPE
of the same fit on the CPU; prediction on the GPU equals prediction on the CPU up to float
error; a LoRA fit with gradient checkpointing runs; and with torch capped to ``--cap-gb`` of
GPU memory, ``auto_batch`` halves a batch of 1024 items until it fits (or the fit stops with the
one-line out-of-memory error). Fits: every encoder of ``--encoders`` that loads (a name or a
folder; ``DIR/minilm`` for MiniLM; all-mpnet-base-v2 only where its five packages are
installed, since at about 400 MB it cannot travel), frozen and LoRA, trained until the
validation cutoff 2011-05-02 and scored on the 8 weeks after it (nothing here is chosen from
test windows).

Usage::

    python -m benchmarks.gpu_check --prepare .gpu_check [--items 400]
    PYTHONPATH=src HF_HUB_OFFLINE=1 python3 -m benchmarks.gpu_check --data .gpu_check --out "$OUT"
    python -m benchmarks.gpu_check --cpu-dry-run --encoders minilm --out /tmp/dry
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import (
    RESULTS,
    argument_parser,
    online_retail_panel,
    panel_cache_dir,
    write_results,
)
from benchmarks.harness import machine as machine_details

HORIZON = 8
#: The last validation cutoff of the Online Retail II protocol (its window ends before the
#: first test cutoff, 2011-07-04).
CUTOFF = "2011-05-02"
#: A shorter fit than the defaults, the same for every encoder and mode (as benchmarks.encoders).
FIT: dict[str, Any] = {"head_epochs": 10, "epoch_samples": 5000, "horizon": HORIZON}
MODES = ("frozen", "lora")
#: Where the fits run: "cuda"; ``--cpu-dry-run`` walks the same code on the CPU (no numbers).
DEVICE = {"name": "cuda"}


def _gpu_memory(what: str) -> float:
    """``torch.cuda`` memory calls, skipped in a CPU dry run (returns 0)."""
    import torch

    if not torch.cuda.is_available():
        return 0.0
    if what == "reset":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        return 0.0
    return round(torch.cuda.max_memory_allocated() / 2**20, 1)


def no_gpu_reason() -> str | None:
    """Why this machine cannot run the check (None: torch sees a CUDA GPU)."""
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA GPU"
    return None


def prepare(folder: Path, n_items: int) -> None:
    """Write the panel slice and the float16 MiniLM folder that travel to the GPU machine."""
    import numpy as np
    import torch
    import transformers

    from salesformer.text.encoder import bundled_minilm_path, load_encoder

    panel, _, _ = online_retail_panel(cache=panel_cache_dir())
    totals = panel.sales.groupby("item_id")["sales"].sum().sort_values(ascending=False)
    keep = set(totals.index[:n_items])
    items = None if panel.items is None else panel.items[panel.items["item_id"].isin(keep)]
    part = dataclasses.replace(
        panel,
        sales=panel.sales[panel.sales["item_id"].isin(keep)].reset_index(drop=True),
        items=items,
    )
    part.save(folder / "panel")
    source = bundled_minilm_path()
    model = transformers.AutoModel.from_pretrained(str(source), local_files_only=True)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(source), local_files_only=True)
    out = folder / "minilm"
    model.half().save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    config = json.loads((out / "config.json").read_text())
    config["dtype"] = config["torch_dtype"] = "float32"
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    texts = ["WHITE HANGING HEART T-LIGHT HOLDER", "JUMBO BAG RED RETROSPOT"]
    original = load_encoder("all-MiniLM-L6-v2").encode(texts, use_cache=False)
    copy = load_encoder(str(out)).encode(texts, use_cache=False)
    gap = float(np.abs(original - copy).max())
    loaded = next(load_encoder(str(out)).model.parameters()).dtype
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20
    print(
        f"wrote {folder}: {len(keep)} items, {size:.1f} MiB; the float16 MiniLM loads as "
        f"{loaded} and its vectors differ by at most {gap:.1e} from the original "
        f"(torch {torch.__version__})"
    )


def _score(model: Any, panel: Any) -> dict[str, float]:
    from salesformer.data.contract import ACTUAL, DATE, ITEM_ID, SALES
    from salesformer.evaluation.metrics import evaluate

    cutoff = panel.until(CUTOFF).last_date
    actual = panel.window(cutoff, HORIZON)[[ITEM_ID, DATE, SALES]].rename(columns={SALES: ACTUAL})
    frame = actual.merge(model.predict(HORIZON), on=[ITEM_ID, DATE], how="inner")
    row = evaluate(frame, [model.name], ["wape", "wql"]).iloc[0]
    return {"wape": round(float(row["wape"]), 4), "wql": round(float(row["wql"]), 4)}


def fit_on(encoder: str, mode: str, panel: Any, **settings: Any) -> dict[str, Any]:
    """One fit until the cutoff: seconds, peak GPU MB, the device report, the score."""
    from salesformer.models.lm import LMForecaster

    _gpu_memory("reset")
    model = LMForecaster(encoder=encoder, finetune=mode, progress=False, **FIT, **settings)
    started = time.perf_counter()
    model.fit(panel.until(CUTOFF))
    seconds = time.perf_counter() - started
    report = model.fit_report_
    return {
        "encoder": report["encoder"]["name"],
        "mode": mode,
        "fit_seconds": round(seconds, 1),
        "peak_gpu_mb": _gpu_memory("peak"),
        "device": report.get("device"),
        "auto_batch": {k: v["used"] for k, v in report.get("auto_batch", {}).items()},
        "finetune_improved": report.get("finetune_stage", {}).get("improved"),
        **_score(model, panel),
        "model": model,
    }


def checks(panel: Any, minilm: str) -> list[dict[str, Any]]:
    """The device checks (each: name, passed, detail)."""

    from salesformer.text.device import select_device

    found: list[dict[str, Any]] = []

    def check(name: str, passed: bool, detail: Any) -> None:
        found.append({"check": name, "passed": bool(passed), "detail": detail})
        print(f"{'PASS' if passed else 'FAIL'} {name}: {detail}", flush=True)

    choice = select_device("auto")
    check("auto picks the GPU", choice.is_cuda, choice.device)
    gpu = fit_on(minilm, "frozen", panel, device=DEVICE["name"])
    model = gpu.pop("model")
    head_on_cpu = all(p.device.type == "cpu" for p in model.head_.parameters())
    check("fitted head kept on the CPU", head_on_cpu, str(next(model.head_.parameters()).device))
    check("device recorded", bool(gpu["device"]), gpu["device"])
    check("batch size probed", bool(gpu["auto_batch"]), gpu["auto_batch"])
    cpu = fit_on(minilm, "frozen", panel, device="cpu", threads=8)
    cpu.pop("model")
    gap = abs(gpu["wape"] - cpu["wape"]) / cpu["wape"]
    check("GPU fit scores within 2% WAPE of the CPU fit", gap <= 0.02, {"gpu": gpu, "cpu": cpu})
    on_cpu = model.predict(HORIZON)
    model.use_device(DEVICE["name"])
    on_gpu = model.predict(HORIZON)
    model.use_device("cpu")
    values = [c for c in on_cpu.columns if c.startswith("LM")]
    diff = float((on_gpu[values] - on_cpu[values]).abs().max().max())
    scale = float(on_cpu[values].abs().max().max())
    check("predict on the GPU equals the CPU's", diff <= 1e-3 * max(scale, 1.0), diff)
    lora = fit_on(minilm, "lora", panel, device=DEVICE["name"], gradient_checkpointing=True)
    lora.pop("model")
    checkpointing = bool((lora["device"] or {}).get("gradient_checkpointing"))
    check("LoRA with gradient checkpointing", checkpointing, lora)
    return found


def capped(panel: Any, minilm: str, cap_gb: float) -> dict[str, Any]:
    """A LoRA fit asking for 1024 items per batch with torch capped to ``cap_gb`` of memory."""
    import torch

    from salesformer.errors import ConfigError

    if not torch.cuda.is_available():
        return {"cap_gb": cap_gb, "outcome": "not run (no GPU)"}
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(min(1.0, cap_gb * 2**30 / total))
    try:
        run = fit_on(minilm, "lora", panel, device=DEVICE["name"], batch_items=1024)
        run.pop("model")
        return {"cap_gb": cap_gb, "outcome": "fitted", **run}
    except ConfigError as exc:
        return {"cap_gb": cap_gb, "outcome": "refused", "error": str(exc)}
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
        torch.cuda.empty_cache()


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# The LM on a CUDA GPU: checks, and encoders frozen and LoRA",
        "",
        f"`{report['provenance']['command']}` on {report['gpu']}; {report['items']} Online "
        f"Retail II items, fitted until {CUTOFF} and scored on the {HORIZON} weeks after it; "
        f"settings {FIT}.",
        "",
        "| check | passed |",
        "|---|---|",
        *[f"| {c['check']} | {c['passed']} |" for c in report["checks"]],
        "",
        "| encoder | mode | fit s | peak GPU MB | batch items used | WAPE | wQL |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in report["fits"]:
        if "skipped" in r:
            lines.append(f"| {r['encoder']} | - | skipped: {r['skipped']} | | | | |")
            continue
        lines.append(
            f"| {r['encoder']} | {r['mode']} | {r['fit_seconds']} | {r['peak_gpu_mb']} | "
            f"{r['auto_batch']} | {r['wape']} | {r['wql']} |"
        )
    cap = report["capped"]
    lines += [
        "",
        f"auto_batch with torch capped to {cap['cap_gb']} GB: {cap['outcome']}, "
        f"{cap.get('auto_batch') or cap.get('error')}.",
        "",
    ]
    return "\n".join(lines)


def run(data: Path, encoders: list[str], cap_gb: float, out: Path, argv: list[str]) -> None:
    import torch

    from salesformer.data.contract import Panel

    panel = Panel.load(data / "panel")
    minilm = str(data / "minilm")
    started = time.perf_counter()
    found = checks(panel, minilm)
    fits: list[dict[str, Any]] = []
    for encoder in encoders:
        name = minilm if encoder in ("minilm", "all-MiniLM-L6-v2") else encoder
        for mode in MODES:
            try:
                result = fit_on(name, mode, panel, device=DEVICE["name"])
            except Exception as exc:  # a missing encoder is a row that says why
                fits.append({"encoder": encoder, "skipped": str(exc).splitlines()[0][:200]})
                print(f"skipped {encoder}: {fits[-1]['skipped']}", flush=True)
                break
            result.pop("model")
            fits.append(result)
            print(json.dumps(result), flush=True)
    report = {
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU (dry run)",
        "torch": torch.__version__,
        "items": len(panel.item_ids),
        "cutoff": CUTOFF,
        "settings": FIT,
        "checks": found,
        "fits": fits,
        "capped": capped(panel, minilm, cap_gb),
        "seconds": round(time.perf_counter() - started, 1),
        "machine": machine_details(),
    }
    write_results("encoders_gpu", report, markdown, out, argv)
    print((out / "encoders_gpu.md").read_text())
    if not all(c["passed"] for c in found):
        sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__, __file__)
    parser.add_argument("--prepare", type=Path, help="write the travelling data here and stop")
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--data", type=Path, default=Path(".gpu_check"))
    parser.add_argument("--encoders", default="minilm,all-mpnet-base-v2")
    parser.add_argument("--cap-gb", type=float, default=1.5)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--cpu-dry-run",
        action="store_true",
        help="walk the code on the CPU with 1 epoch (checks the script, measures nothing)",
    )
    args = parser.parse_args(argv)
    if args.prepare is not None:
        prepare(args.prepare, args.items)
        return
    reason = no_gpu_reason()
    if args.cpu_dry_run:
        DEVICE["name"] = "cpu"
        FIT.update(head_epochs=1, epoch_samples=256, finetune_epochs=1)
    elif reason is not None:
        print(
            f"no GPU: {reason}; nothing measured. Run this on a machine with a CUDA GPU "
            "(docs/lm.md, Running on a GPU)."
        )
        return
    encoders = [e.strip() for e in args.encoders.split(",") if e.strip()]
    run(args.data, encoders, args.cap_gb, args.out, list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
