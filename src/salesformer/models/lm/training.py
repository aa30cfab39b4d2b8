"""Training the LM forecaster: the plan of samples and one loop for both stages.

1. *head*: the encoder is frozen and its pooled embeddings (cached on disk) feed the head,
   trained with AdamW on pinball loss until the validation loss stops improving;
2. *fine-tuning* (``finetune="lora"`` or ``"full"``): encoder and head train together with
   their own learning rates, starting from stage 1 (linear-probe-then-fine-tune). Each batch
   runs the encoder once per unique item in it.

Both stages run :meth:`Trainer.run`, parameterised by a :class:`Stage`: what is trainable,
how a batch gets its text vectors, the learning-rate schedule and whether validation stops
the stage early. The loop calls the hooks of a
:class:`~salesformer.models.lm.context.TrainingContext`, so one process and one rank of a
data-parallel group run the same code.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from salesformer.data.contract import Panel
from salesformer.errors import DataValidationError
from salesformer.models.lm.accelerate import Accelerator
from salesformer.models.lm.batch_size import fitting_batch_items
from salesformer.models.lm.calibration import QuantileCalibration, fit_on_samples
from salesformer.models.lm.context import StageState, TrainingContext
from salesformer.models.lm.encoding import (
    checkpointed_layers_train,
    copy_state,
    encode_tokens,
    pooled,
    stop_checkpointing,
    texts_for,
    trainable_encoder,
)
from salesformer.models.lm.launch import fit_launch_blend
from salesformer.models.lm.plan import TrainingPlan
from salesformer.models.lm.prediction import head_quantiles, tensors
from salesformer.models.lm.private import (
    check_private_context,
    plan_privacy,
    train_private,
)
from salesformer.models.lm.samples import (
    STATIC_FEATURES,
    Samples,
    Standardizer,
    Wide,
    is_cold,
)
from salesformer.models.lm.settings import default_context
from salesformer.models.lm.training_log import TrainingLog, validation_metrics
from salesformer.text.encoder import import_torch, shared_encoder

if TYPE_CHECKING:
    from salesformer.models.lm.forecaster import LMForecaster
    from salesformer.models.lm.settings import LMSettings


def train(model: LMForecaster, panel: Panel, context: TrainingContext | None = None) -> None:
    """Fit ``model`` on ``panel``, setting its learned ``*_`` attributes.

    ``context`` runs the loop as one rank of a group (default: this process alone).
    """
    context = context or TrainingContext()
    torch = import_torch()
    accelerator = Accelerator.for_settings(model)  # a bad device fails before any work
    torch.set_num_threads(model.threads or max(1, os.cpu_count() or 1))
    torch.manual_seed(model.seed)
    rng = np.random.default_rng(model.seed)
    started = time.perf_counter()
    if panel.items is None:
        raise DataValidationError(
            "the LM forecaster reads item texts, but the panel has no items table; "
            "give an items table with item_id and text (or title/description columns)"
        )
    base = shared_encoder(model.encoder, model.max_length, model.pooling)
    model.encoder_info_ = {
        "name": base.name,
        "source": base.source,
        "revision": base.revision,
        "dim": base.dim,
        "max_length": base.max_length,
        "pooling": base.pooling,
    }
    wide = Wide.from_panel(panel)
    model.context_ = int(model.context_length or default_context(panel.freq))
    if model.private:
        check_private_context(context)
        model.standardizer_ = Standardizer.unlearned(panel, model.calendar_harmonics)
    else:
        model.standardizer_ = Standardizer.learn(wide, panel, model.calendar_harmonics)
    plan = TrainingPlan.make(model, wide, panel.freq, hold_out=not model.private)
    privacy = plan_privacy(model, len(plan.items)) if model.private else None  # before work
    texts = texts_for(panel.items, wide.item_ids)
    frozen = context.embeddings
    if frozen is None or len(frozen) != len(texts):
        with accelerator.memory_guard(model, "encoding the item texts"):
            frozen = base.encode(texts, cache_dir=model.cache_dir, device=accelerator.device)
    model.tokens_ = base.tokenize(texts)
    head = accelerator.put(new_head(model, base.dim, plan.n_future))
    report: dict[str, Any] = {
        "encoder": model.encoder_info_,
        "finetune": model.finetune,
        "train_items": len(plan.items),
        "launch_samples": len(plan.launch_items),
        "validation_origin": plan.validation_date,
        "validation_samples": len(plan.validation) if plan.validation is not None else 0,
    }
    log = TrainingLog(model.log_dir) if model.log_dir is not None else None
    encoder = None
    pretrained = None  # the encoder after the pretraining stage, if it ran
    size = sum(p.numel() for p in base.model.parameters())
    trains_encoder = model.finetune != "frozen" or model.pretrain != "none"
    checkpointing = accelerator.checkpointing(model, size) and trains_encoder
    finetuned = False  # whether the encoder changed after the vectors in ``frozen``
    if privacy is None and model.pretrain != "none":
        with accelerator.memory_guard(model, "pretraining the encoder on sales curves"):
            pretrained, frozen, report["pretrain"] = pretrain_stage(
                model, base, plan, frozen, context, accelerator, checkpointing
            )
        encoder = pretrained
    if privacy is not None:
        encoder = train_private(model, plan, head, frozen, base, rng, privacy, report)
    else:
        trainer = Trainer(model, plan, head, rng, log=log, context=context)
        trainer.accelerator = accelerator
        vectors = accelerator.put(torch.from_numpy(frozen))
        with accelerator.memory_guard(model, "training the head"):
            head_stage = frozen_stage(model, head, vectors)
            trainer.batch_items = fitting_batch_items(trainer, head_stage, report)
            report["head"] = trainer.run(head_stage)
    if privacy is None and model.finetune != "frozen" and model.finetune_epochs > 0:
        if encoder is None:
            encoder = accelerator.put(trainable_encoder(model, base, checkpointing))
        stage = finetune_stage(
            model, head, encoder, model.tokens_, trainer.best_loss, base.pooling, accelerator
        )
        with accelerator.memory_guard(model, f"fine-tuning the encoder ({model.finetune})"):
            trainer.batch_items = fitting_batch_items(trainer, stage, report)
            report["finetune_stage"] = outcome = trainer.run(stage)
        finetuned = bool(outcome["improved"])
        if not finetuned:
            # stage 1 was better on validation: keep it whole (the run restored the encoder's
            # best state, which is the pretrained one when the pretraining stage ran)
            encoder = pretrained
    if not accelerator.on_cpu:
        report["device"] = accelerator.report(checkpointing)
    if log is not None:
        log.close()
    if privacy is not None:
        finetuned = encoder is not None
    if encoder is not None:
        if finetuned:
            with accelerator.memory_guard(model, "encoding the item texts"):
                frozen = encode_tokens(
                    encoder, model.tokens_, 256, base.pooling, device=accelerator.device
                )
        encoder = encoder.cpu()
        if checkpointing:
            stop_checkpointing(encoder)
    model.head_ = head.cpu()  # the fitted model predicts, saves and serves from the CPU
    model.encoder_model_ = encoder
    model.item_ids_ = wide.item_ids
    model.item_vectors_ = frozen
    model.calibration_, report["calibration"] = calibrate(model, plan.validation)
    model.launch_blend_ = None
    if model.launch_regression and privacy is None:
        origin = plan.target_limit if plan.validation is not None else None
        model.launch_blend_, report["launch_regression"] = fit_launch_blend(
            model, wide, panel.freq, origin
        )
    report["fit_seconds"] = round(time.perf_counter() - started, 2)
    model.fit_report_ = report


def calibrate(
    model: LMForecaster, validation: Samples | None
) -> tuple[QuantileCalibration, dict[str, Any]]:
    """Quantile calibration learned on the validation window (identity when off or none)."""
    if not model.calibrate_quantiles or validation is None:
        reason = "calibrate_quantiles is off" if validation is not None else "no validation"
        damped = QuantileCalibration.damped(model.levels, float(model.growth_damping))
        return damped, {"skipped": reason}
    predicted = head_quantiles(model, validation, model.item_vectors_[validation.item])
    return fit_on_samples(
        predicted,
        validation.target,
        validation.target_mask,
        validation.level,
        model.levels,
        growth_damping=float(model.growth_damping),
        cold=is_cold(validation),
    )


def pretrain_stage(
    model: LMForecaster,
    base: Any,
    plan: TrainingPlan,
    frozen: np.ndarray,
    context: TrainingContext,
    accelerator: Accelerator,
    checkpointing: bool,
) -> tuple[Any, np.ndarray, dict[str, Any]]:
    """The curve-pretraining stage (:mod:`.pretrain`): the pretrained encoder (None when the
    stage is skipped), the item vectors the head then reads, and the stage's report.

    Every rank of a group runs it alike (same panel, same seed); rank 0's weights are then
    broadcast, so the ranks agree exactly.
    """
    from salesformer.models.lm.pretrain import (
        curve_neighbours,
        curve_report,
        pretrain_on_curves,
        timed_seconds,
    )

    started = time.perf_counter()
    found = curve_neighbours(
        plan.wide,
        plan.target_limit + 1,
        width=max(1, round(model.context_ / 13)),
        min_overlap=max(4, min(model.horizon, model.context_ // 2)),
        k=model.pretrain_neighbours,
        rng=np.random.default_rng([model.seed, 16]),
    )
    if isinstance(found, str):
        return None, frozen, {"skipped": found}
    encoder = accelerator.put(trainable_encoder(model, base, checkpointing))
    losses = pretrain_on_curves(
        model, encoder, model.tokens_, found, model.seed, base.pooling, accelerator.device
    )
    context.sync(encoder)
    vectors = encode_tokens(encoder, model.tokens_, 256, base.pooling, device=accelerator.device)
    report = {"epochs": model.pretrain_epochs, "loss": losses}
    report.update(curve_report(found, frozen, vectors))
    report["seconds"] = timed_seconds(started)
    return encoder, vectors, report


def new_head(model: LMForecaster, text_dim: int, n_future: int) -> Any:
    """A freshly initialised fusion head for the model's settings (seeded)."""
    from salesformer.models.lm.network import FusionHead

    import_torch().manual_seed(model.seed)
    levels = model.levels
    return FusionHead(
        context=model.context_,
        horizon=model.horizon,
        n_future=n_future,
        n_static=len(STATIC_FEATURES),
        text_dim=text_dim,
        n_quantiles=len(levels),
        median_index=levels.index(0.5),
        hidden_size=model.hidden_size,
        text_size=model.text_size,
        n_blocks=model.n_blocks,
        dropout=model.dropout,
    )


# -- the stages and their one loop ---------------------------------------------------------


@dataclass
class Stage:
    """What one training stage trains and how (see :meth:`Trainer.run`).

    Attributes:
        label: ``"head"`` for stage 1, the fine-tuning mode for stage 2.
        epochs: most epochs.
        modules: the trained modules by name (``head``, and ``encoder`` in stage 2).
        parameters: the trainable parameters (gradients reduced and clipped together).
        optimizer: the stage's optimizer.
        batch_text: the text vectors of a training batch (with gradients in stage 2).
        validation_text: after an epoch, a function from item rows to their text vectors.
        baseline: the validation loss to beat (stage 2 starts from stage 1's best).
        patience: epochs without improvement before the stage stops; None: never early.
        schedule: sets the learning rates before a step: ``(optimizer, step, steps, epoch)``.
        reports_improvement: the report says whether the stage beat its baseline.
    """

    label: str
    epochs: int
    modules: dict[str, Any]
    parameters: list[Any]
    optimizer: Any
    batch_text: Callable[[Samples], Any]
    validation_text: Callable[[], Callable[[np.ndarray], Any]]
    baseline: float = math.inf
    patience: int | None = None
    schedule: Callable[[Any, int, int, int], None] | None = None
    reports_improvement: bool = False

    def best_states(self) -> dict[str, dict[str, Any]]:
        """Copies of the modules' states (the encoder's trainable tensors only)."""
        return {
            name: copy_state(module, trainable_only=name == "encoder")
            for name, module in self.modules.items()
        }


def frozen_stage(model: LMSettings, head: Any, vectors: Any) -> Stage:
    """Stage 1: the head on frozen embeddings, with early stopping."""
    torch = import_torch()
    optimizer = torch.optim.AdamW(
        head.parameters(), lr=model.head_lr, weight_decay=model.weight_decay
    )

    def text(items: np.ndarray) -> Any:
        return vectors[torch.from_numpy(items)]

    return Stage(
        label="head",
        epochs=model.head_epochs,
        modules={"head": head},
        parameters=list(head.parameters()),
        optimizer=optimizer,
        batch_text=lambda part: text(part.item),
        validation_text=lambda: text,
        patience=model.patience,
    )


def finetune_stage(
    model: LMSettings,
    head: Any,
    encoder: Any,
    tokens: dict[str, Any],
    baseline: float,
    pooling: str = "mean",
    accelerator: Accelerator | None = None,
) -> Stage:
    """Stage 2: encoder and head together, warm-up then cosine decay, no early stop.

    ``pooling`` makes the item vector from the token states; ``accelerator`` says where the
    encoder and head are (default: the CPU).
    """
    torch = import_torch()
    device = "cpu" if accelerator is None else accelerator.device
    encoder_params = [p for p in encoder.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        [
            {"params": list(head.parameters()), "lr": model.head_lr * 0.5},
            {"params": encoder_params, "lr": model.encoder_learning_rate()},
        ],
        weight_decay=model.weight_decay,
    )

    def batch_text(part: Samples) -> Any:
        unique, inverse = np.unique(part.item, return_inverse=True)
        vectors = pooled(encoder, tokens, unique, pooling, device)
        return vectors[torch.from_numpy(inverse).to(vectors.device)]

    def validation_text() -> Callable[[np.ndarray], Any]:
        found = encode_tokens(encoder, tokens, 256, pooling, device)
        vectors = torch.from_numpy(found).to(device)
        return lambda items: vectors[torch.from_numpy(items).to(device)]

    def schedule(optimizer: Any, step: int, steps: int, epoch: int) -> None:
        set_learning_rates(optimizer, step, steps, model, epoch)

    return Stage(
        label=model.finetune,
        epochs=model.finetune_epochs,
        modules={"head": head, "encoder": encoder},
        parameters=[*head.parameters(), *encoder_params],
        optimizer=optimizer,
        batch_text=batch_text,
        validation_text=validation_text,
        baseline=baseline,
        schedule=schedule,
        reports_improvement=True,
    )


def set_learning_rates(
    optimizer: Any, step: int, total: int, model: LMSettings, epoch: int
) -> None:
    """Linear warm-up over the first 10% of the first epoch, cosine decay after it."""
    epochs = max(model.finetune_epochs, 1)
    progress = (epoch * total + step) / max(epochs * total, 1)
    warm = 0.1 / epochs
    factor = progress / warm if progress < warm else 0.5 * (1 + math.cos(math.pi * progress))
    bases = (model.head_lr * 0.5, model.encoder_learning_rate())
    for group, base in zip(optimizer.param_groups, bases, strict=True):
        group["lr"] = base * max(factor, 0.02)


class Trainer:
    """Runs the epochs of the training stages, keeping each stage's best state on validation."""

    def __init__(
        self,
        model: LMForecaster,
        plan: TrainingPlan,
        head: Any,
        rng: np.random.Generator,
        log: TrainingLog | None = None,
        context: TrainingContext | None = None,
    ) -> None:
        self.model = model
        self.log = log
        self.context = context or TrainingContext()
        self.metrics: dict[str, float] = {}
        self.plan = plan
        self.head = head
        self.rng = rng
        self.best_loss = math.inf
        self.torch = import_torch()
        self.levels = self.torch.tensor(model.levels, dtype=self.torch.float32)
        self.accelerator: Accelerator | None = None  # None: the CPU, float32
        self.batch_items = int(model.batch_items)  # a stage's probed size (.batch_size)

    def run(self, stage: Stage) -> dict[str, Any]:
        """Train ``stage`` for its epochs; the modules end in their best state on validation.

        Returns the stage's report: epochs run, best validation loss, the per-epoch history
        and, for a stage with a baseline to beat, whether it improved on it.
        """
        context = self.context
        context.sync(*stage.modules.values())
        fresh = StageState(
            stage.label,
            0,
            False,
            [],
            stage.baseline,
            modules=stage.modules,
            best_states=stage.best_states(),
            optimizer=stage.optimizer,
            rng=self.rng,
        )
        state = context.resume(fresh) or fresh
        for epoch in range(stage.epochs if state.finished else state.epoch, stage.epochs):
            train_loss = self._epoch(stage, epoch)
            valid = context.agree(self._validate(stage.validation_text()))
            state = self._after_epoch(stage, state, epoch, train_loss, valid)
            context.epoch_end(state)
            if state.finished:
                break
        for name, module in stage.modules.items():
            module.load_state_dict(state.best_states[name], strict=name != "encoder")
        self.best_loss = state.best
        report: dict[str, Any] = {"epochs": len(state.history)}
        if stage.reports_improvement:
            report["improved"] = state.improved
        report["best_valid"] = None if math.isinf(state.best) else round(state.best, 5)
        report["history"] = state.history
        return report

    def _epoch(self, stage: Stage, epoch: int) -> float:
        """One pass over the epoch's batches; returns the mean training loss."""
        torch = self.torch
        context = self.context
        batches = self.plan.batches(self.model, self.rng, self.batch_items)
        self.head.train()
        if "encoder" in stage.modules:
            stage.modules["encoder"].eval()  # no dropout inside the encoder: as for the head
            checkpointed_layers_train(stage.modules["encoder"])
        accelerator = self.accelerator
        running = 0.0
        desc = f"LM {stage.label} epoch {epoch + 1}/{stage.epochs}"
        with self._progress(len(batches), desc) as bar:
            for step, batch in enumerate(batches):
                if stage.schedule is not None:
                    stage.schedule(stage.optimizer, step, len(batches), epoch)
                stage.optimizer.zero_grad()
                part, scale = context.shard(batch)
                if accelerator is None:
                    loss = self._loss(part, stage.batch_text(part))
                else:
                    with accelerator.autocast():
                        loss = self._loss(part, stage.batch_text(part))
                if context.world > 1:
                    loss = loss * scale
                if accelerator is None:
                    loss.backward()
                else:
                    accelerator.backward(loss)
                batch_loss = context.reduce_gradients(stage.parameters, loss)
                if accelerator is None:
                    torch.nn.utils.clip_grad_norm_(stage.parameters, self.model.grad_clip)
                    stage.optimizer.step()
                else:
                    accelerator.step(stage.optimizer, stage.parameters, self.model.grad_clip)
                running += batch_loss
                bar.update(1)
                bar.set_postfix(loss=f"{batch_loss:.4f}")
        return running / max(len(batches), 1)

    def _after_epoch(
        self, stage: Stage, state: StageState, epoch: int, train_loss: float, valid: float
    ) -> StageState:
        """Record the epoch, keep the best state, decide on early stopping."""
        history = state.history
        record = {"epoch": epoch + 1, "train": round(train_loss, 5), "valid": round(valid, 5)}
        record.update(self.metrics)
        history.append(record)
        if self.log is not None:
            self.log.epoch(stage.label, record)
        best, stale, improved = state.best, state.stale, state.improved
        best_states = state.best_states
        stop = False
        if math.isnan(valid):  # no validation window: the latest state is the best known
            best_states = stage.best_states()
            improved = improved or stage.reports_improvement
        elif valid < best - 1e-5:
            best, stale = valid, 0
            improved = improved or stage.reports_improvement
            best_states = stage.best_states()
        else:
            stale += 1
            stop = stage.patience is not None and stale >= stage.patience
        return StageState(
            stage.label,
            epoch + 1,
            stop or epoch + 1 == stage.epochs,
            history,
            best,
            stale=stale,
            improved=improved,
            modules=stage.modules,
            best_states=best_states,
            optimizer=stage.optimizer,
            rng=self.rng,
        )

    def _progress(self, total: int, desc: str) -> Any:
        from tqdm.auto import tqdm

        show = self.model.progress
        if show is None:
            show = sys.stderr.isatty()
        return tqdm(total=total, desc=desc, disable=not show, leave=False, unit="batch")

    def _loss(self, samples: Samples, text: Any, with_output: bool = False) -> Any:
        from salesformer.models.lm.network import pinball_loss

        batch = tensors(samples)
        if self.accelerator is not None and not self.accelerator.on_cpu:
            batch = {name: self.accelerator.put(value) for name, value in batch.items()}
        predicted = self.head(
            batch["hist"], batch["hist_mask"], batch["static"], batch["future"], text
        )
        levels = self.levels if self.accelerator is None else self.accelerator.put(self.levels)
        loss = pinball_loss(
            predicted.float(), batch["target"], batch["target_mask"], batch["weight"], levels
        )
        return (loss, predicted) if with_output else loss

    def _validate(self, vectors_for: Callable[[np.ndarray], Any]) -> float:
        """Weighted validation loss (NaN without a validation window); sets ``metrics``."""
        validation = self.plan.validation
        if validation is None:
            return math.nan
        self.head.eval()
        total = 0.0
        weight = 0.0
        outputs = []
        with self.torch.inference_mode():
            for start in range(0, len(validation), 4096):
                part = validation.take(np.arange(start, min(start + 4096, len(validation))))
                loss, predicted = self._loss(part, vectors_for(part.item), with_output=True)
                outputs.append(predicted.float().cpu().numpy())
                w = float((part.target_mask * part.weight[:, None]).sum())
                total += float(loss) * w
                weight += w
        self.metrics = validation_metrics(
            np.concatenate(outputs),
            validation.target,
            validation.target_mask,
            validation.level,
            self.model.levels,
        )
        return total / max(weight, 1e-9)
