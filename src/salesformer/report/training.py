"""Report sections on the language model: before vs after fine-tuning, training curves."""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

from salesformer.report import figures
from salesformer.report.accuracy import TABLE_METRICS, best_cells, model_table
from salesformer.report.inputs import FitReport, ReportData
from salesformer.report.page import Section, chart, code, escape, note, table

#: Backtest columns of the LM per fine-tuning mode, as written by benchmarks/online_retail.py.
MODE_COLUMN = re.compile(r"^LM[-_ ](frozen|lora|full)$", re.IGNORECASE)
MODE_ORDER = ("frozen", "lora", "full")
HOW_TO_GET = (
    "salesformer fit --panel PANEL --model lm --finetune lora --out MODEL  "
    "# then: salesformer report ... --model MODEL"
)


def mode_models(models: list[str]) -> dict[str, str]:
    """``{mode: column}`` of the backtest's LM columns per fine-tuning mode."""
    found = {}
    for name in models:
        match = MODE_COLUMN.match(name)
        if match:
            found[match.group(1).lower()] = name
    return {mode: found[mode] for mode in MODE_ORDER if mode in found}


def _backtest_modes(data: ReportData) -> str:
    modes = mode_models(data.models)
    if len(modes) < 2:
        return ""
    frame = model_table(data)
    frame = frame.set_index("model").loc[list(modes.values())].reset_index()
    metrics = [c for c in frame.columns if c in TABLE_METRICS.values()]
    shown = [TABLE_METRICS[m] for m in ("wape", "mase", "wql") if TABLE_METRICS[m] in frame]
    values = frame.set_index("model")[shown].reindex(list(modes.values()))
    return (
        "<h3>Backtest: the LM per fine-tuning mode</h3>"
        "<p>frozen = before fine-tuning (only the forecasting head is trained on fixed text "
        "embeddings); lora and full = after fine-tuning the encoder with it.</p>"
        + table(frame, best_cells(frame, metrics))
        + chart(
            figures.bars_by_model(values, "Test error per fine-tuning mode", "error"),
            "finetune-backtest",
            "each group is one mode; a lower bar is a smaller test error.",
        )
    )


def _stage_losses(fit: FitReport, number: int) -> str:
    report = fit.report
    head = report.get("head", {})
    stage = report.get("finetune_stage")
    mode = str(report.get("finetune", "?"))
    if not isinstance(stage, dict):
        reason = (
            "it was fitted with a frozen encoder"
            if mode == "frozen"
            else "it has no fine-tuning stage"
        )
        return note(f"{fit.label}: no before/after comparison, {reason} (finetune={mode}).")
    before, after = head.get("best_valid"), stage.get("best_valid")
    if not isinstance(before, int | float) or not isinstance(after, int | float):
        return note(f"{fit.label}: its fit report has no validation losses to compare.")
    verdict = (
        "fine-tuning lowered the validation loss, so the fine-tuned encoder was kept"
        if stage.get("improved")
        else "fine-tuning did not lower the validation loss, so the stage-1 model was kept"
    )
    values = pd.DataFrame(
        {"validation loss": [before, after]},
        index=["stage 1: head, frozen encoder", f"stage 2: {mode} fine-tuning"],
    )
    change = (after - before) / before if before else float("nan")
    return (
        f"<h3>{escape(fit.label)}: validation loss before vs after fine-tuning</h3>"
        f"<p>Stage 1 best {before:.4f}; stage 2 ({escape(mode)}) best {after:.4f} "
        f"({change:+.1%}): {escape(verdict)}.</p>"
        + chart(
            figures.bars_by_model(values, "Validation loss per training stage", "loss"),
            f"finetune-stages-{number}",
            "the lower bar is the better model on the validation window before the cutoff "
            "(the weeks held out from training).",
        )
    )


def finetune_section(data: ReportData) -> Section:
    """Before vs after fine-tuning, from the backtest columns or the model's fit report."""
    parts = [_backtest_modes(data)]
    parts += [_stage_losses(fit, n) for n, fit in enumerate(data.fit_reports)]
    body = "".join(p for p in parts if p)
    if not body:
        body = note(
            "Not available in this backtest: it has no LM columns per fine-tuning mode "
            "(LM-frozen, LM-lora, LM-full) and no LM model folder was given. To get it, fit "
            "an LM with fine-tuning and pass its folder:"
        ) + code(HOW_TO_GET)
    return Section("finetune", "Before vs after fine-tuning", body)


def loss_history(report: dict[str, Any]) -> tuple[pd.DataFrame, list[int]]:
    """Rows ``epoch, stage, train, valid`` across both stages, and where stage 2 starts."""
    from salesformer.models.lm.training_log import stages

    rows: list[dict[str, Any]] = []
    starts: list[int] = []
    for label, history in stages(report):
        if not history:
            continue
        if rows:
            starts.append(len(rows) + 1)
        for entry in history:
            rows.append(
                {
                    "epoch": len(rows) + 1,
                    "stage": label,
                    "train": entry.get("train"),
                    "valid": entry.get("valid"),
                }
            )
    return pd.DataFrame(rows, columns=["epoch", "stage", "train", "valid"]), starts


def training_section(data: ReportData) -> Section:
    """Training and validation loss per epoch of each LM found in the model folder."""
    parts = []
    for number, fit in enumerate(data.fit_reports):
        history, starts = loss_history(fit.report)
        if history.empty:
            parts.append(note(f"{fit.label}: its fit report has no loss history per epoch."))
            continue
        seconds = fit.report.get("fit_seconds")
        parts.append(
            f"<p>{escape(fit.label)}: {fit.report.get('train_items', '?')} training items, "
            f"validation from {escape(fit.report.get('validation_origin', '?'))}"
            + (f", fitted in {seconds} s" if seconds is not None else "")
            + ".</p>"
        )
        parts.append(
            chart(
                figures.loss_curves(history, f"{fit.label}: loss per epoch", starts),
                f"training-{number}",
                "both curves should fall; validation rising while training falls is "
                "over-fitting (the best validation epoch is kept); the dashed line is where "
                "encoder fine-tuning starts.",
            )
        )
    if data.settings.model is not None and (data.settings.model / "logs").is_dir():
        parts.append(
            "<p>TensorBoard logs of this fit are in the model folder:</p>"
            + code(f"tensorboard --logdir {data.settings.model / 'logs'}")
        )
    if not parts:
        why = (
            "the model folder holds no LM fit report"
            if data.settings.model is not None
            else "no model folder was given"
        )
        parts.append(
            note(f"Training curves not available: {why}. Pass an LM's folder with --model:")
            + code(HOW_TO_GET)
        )
    return Section("training", "Training curves", "".join(parts))
