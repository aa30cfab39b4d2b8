"""Differentially private training of the LM forecaster: DP-SGD through Opacus, per item.

The unit protected is **one item's whole history** (every training window of the item, its
launch sample, its text), not one training window. Opacus's default data loader treats one
sample as the unit, and a window-level guarantee would say little: an item contributes many
overlapping windows. So each step here

1. samples items, not windows: every item joins the step's batch with probability
   ``q = batch_items / n_items`` (Poisson sampling, as Opacus's ``DPDataLoader`` does for
   samples), and brings ``origins_per_item`` windows plus its launch sample;
2. computes per-window gradients with Opacus's ``GradSampleModule``, then sums the windows of
   each item into **one gradient per item** (:func:`sum_per_unit`);
3. hands these per-item gradients to Opacus's ``DPOptimizer``, which clips each to
   ``dp_max_grad_norm``, adds Gaussian noise and averages over the expected number of items;
4. accounts each step with an Opacus accountant (``rdp`` or ``prv``) at sampling rate ``q``.

The noise multiplier comes from Opacus's ``get_noise_multiplier`` for the requested
``(dp_epsilon, dp_delta)``, the sampling rate and the number of steps, before training
starts (:func:`plan_privacy`); a budget it cannot meet, or one that needs more noise than
the expected number of items per step (the noise would then drown every gradient), is a
:class:`~salesformer.errors.ConfigError`.

The rest of a fit that reads the panel as a whole is switched off in a private fit (see
:func:`~salesformer.models.lm.training.train`): no validation window (so no early stopping,
no choice of the best epoch, no quantile calibration), covariates taken as they are rather
than standardised with the panel's mean and spread, and the launch weight not scaled by the
items' mean weight. What the guarantee does not cover is listed in ``NOT_COVERED`` and in
``docs/privacy.md``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from salesformer.errors import ConfigError, MissingExtraError

if TYPE_CHECKING:
    from salesformer.models.lm.forecaster import LMForecaster
    from salesformer.models.lm.plan import TrainingPlan
    from salesformer.models.lm.settings import LMSettings

#: The extra that installs Opacus.
PRIVACY_EXTRA = "privacy"
#: What the differential-privacy guarantee of a private fit does not cover (also in the
#: fit report and in docs/privacy.md).
NOT_COVERED = (
    "the saved model folder keeps the training panel and each item's text vector for "
    "forecasting: only the learned weights (head, LoRA adapter) are private",
    "forecasts read each item's own history",
    "the number of items and the panel's dates and frequency are taken as public",
)


def import_opacus() -> Any:
    """``opacus``, or a :class:`MissingExtraError` naming the ``privacy`` extra."""
    try:
        import opacus
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise MissingExtraError("opacus", PRIVACY_EXTRA) from exc
    return opacus


@dataclass(frozen=True)
class PrivacyPlan:
    """How a private fit samples, clips and noises, fixed before training starts.

    Attributes:
        units: privacy units (items that train).
        sample_rate: probability that an item joins a step.
        steps_per_epoch: steps of one epoch (one pass over the items in expectation).
        epochs: epochs of the fit (the head's, plus fine-tuning's with LoRA).
        noise_multiplier: standard deviation of the noise over ``max_grad_norm``.
    """

    units: int
    sample_rate: float
    steps_per_epoch: int
    epochs: int
    noise_multiplier: float

    @property
    def steps(self) -> int:
        """Steps of the whole fit."""
        return self.steps_per_epoch * self.epochs

    @property
    def expected_units(self) -> float:
        """Items per step in expectation (the denominator of the averaged gradient)."""
        return self.sample_rate * self.units


def plan_privacy(settings: LMSettings, units: int) -> PrivacyPlan:
    """The sampling rate, steps and noise multiplier that spend at most ``dp_epsilon``.

    Raises:
        ConfigError: the budget cannot be met with these settings (checked before training).
    """
    if settings.dp_epsilon is None:
        raise ConfigError("plan_privacy needs dp_epsilon; got None")
    from opacus.accountants.utils import get_noise_multiplier

    import_opacus()
    sample_rate = min(1.0, settings.batch_items / max(units, 1))
    steps_per_epoch = max(1, math.ceil(1.0 / sample_rate - 1e-9))
    epochs = settings.head_epochs
    if settings.finetune == "lora":
        epochs += settings.finetune_epochs
    steps = steps_per_epoch * epochs
    budget = (
        f"epsilon {settings.dp_epsilon:g} (delta {settings.dp_delta:g}) cannot be met with "
        f"{units} items, {epochs} epochs of {steps_per_epoch} steps "
        f"(sampling rate {sample_rate:.3g})"
    )
    hint = "give a larger --dp-epsilon, fewer epochs (--set lm.head_epochs=N) or more items"
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Optimal order", category=UserWarning)
            sigma = get_noise_multiplier(
                target_epsilon=float(settings.dp_epsilon),
                target_delta=float(settings.dp_delta),
                sample_rate=sample_rate,
                steps=steps,
                accountant=settings.dp_accountant,
            )
    except ValueError as exc:
        reason = str(exc).rstrip(".")
        raise ConfigError(f"the privacy budget {budget} (Opacus: {reason}); {hint}") from exc
    expected = sample_rate * units
    if sigma > expected:
        raise ConfigError(
            f"the privacy budget {budget}: it needs noise multiplier {sigma:.3g}, above the "
            f"{expected:.3g} items expected per step, so the noise would drown every "
            f"gradient; {hint}, or more items per step (--set lm.batch_items=N)"
        )
    return PrivacyPlan(units, sample_rate, steps_per_epoch, epochs, float(sigma))


def sum_per_unit(parameters: list[Any], unit: Any, n_units: int) -> None:
    """Replace each parameter's per-window ``grad_sample`` by per-unit sums.

    ``unit[i]`` is the unit (item) of window ``i``; afterwards ``p.grad_sample[u]`` is the
    gradient of unit ``u``'s whole loss, which Opacus's optimizer clips as one sample.
    """
    torch = _torch()
    for p in parameters:
        grads = p.grad_sample
        if isinstance(grads, list):
            grads = torch.cat(grads, dim=0)
        summed = grads.new_zeros((n_units, *grads.shape[1:]))
        summed.index_add_(0, unit, grads)
        p.grad_sample = summed


def check_units(parameters: list[Any], n_units: int) -> None:
    """Every per-sample gradient the optimizer clips must be one item's (a guard)."""
    for p in parameters:
        rows = p.grad_sample.shape[0]
        if rows != n_units:
            raise RuntimeError(
                f"a private step holds {rows} per-sample gradients of a parameter of shape "
                f"{tuple(p.shape)} for {n_units} items; each item must give exactly one"
            )


def window_losses(predicted: Any, target: Any, mask: Any, weight: Any, levels: Any) -> Any:
    """Pinball loss of each window alone (no normalisation across windows or items).

    The mean over levels and steps of the weighted pinball loss; a window's loss depends on
    that window only, so the sum of an item's window losses is a function of the item alone.
    """
    torch = _torch()
    error = target.unsqueeze(-1) - predicted
    loss = torch.maximum(levels * error, (levels - 1.0) * error).mean(dim=-1)
    return (loss * mask).sum(dim=1) * weight / max(target.shape[1], 1)


class PrivateTrainer:
    """Trains the head (and the LoRA adapter) with per-item DP-SGD (see the module doc)."""

    def __init__(
        self,
        model: LMForecaster,
        plan: TrainingPlan,
        head: Any,
        rng: np.random.Generator,
        privacy: PrivacyPlan,
    ) -> None:
        from opacus.accountants import create_accountant

        self.model = model
        self.plan = plan
        self.head = head
        self.rng = rng
        self.privacy = privacy
        self.torch = _torch()
        self.levels = self.torch.tensor(model.levels, dtype=self.torch.float32)
        self.accountant = create_accountant(mechanism=model.dp_accountant)
        self.units_per_step: list[int] = []
        self.windows_per_step: list[int] = []

    def run(
        self, label: str, epochs: int, modules: dict[str, Any], optimizer: Any, text: Any
    ) -> dict[str, Any]:
        """Train ``modules`` for ``epochs`` private epochs.

        ``text(wrapped, samples, unique, inverse)`` gives each window's text vector
        (``unique``: the step's items, ``inverse``: each window's row among them; ``wrapped``:
        the modules wrapped by Opacus, through which the forward pass must run).

        Returns the stage's report (epochs, per-epoch mean training loss).
        """
        from opacus import GradSampleModule
        from opacus.optimizers import DPOptimizer

        wrapped = {name: GradSampleModule(m, loss_reduction="sum") for name, m in modules.items()}
        parameters = [p for m in modules.values() for p in m.parameters() if p.requires_grad]
        dp_optimizer = DPOptimizer(
            optimizer,
            noise_multiplier=self.privacy.noise_multiplier,
            max_grad_norm=float(self.model.dp_max_grad_norm),
            expected_batch_size=self.privacy.expected_units,
            loss_reduction="mean",
        )
        dp_optimizer.attach_step_hook(
            self.accountant.get_optimizer_hook_fn(sample_rate=self.privacy.sample_rate)
        )
        history = []
        try:
            for epoch in range(epochs):
                for module in modules.values():
                    module.train()  # Opacus records activations of modules in training only
                if "encoder" in modules:
                    for part in modules["encoder"].modules():
                        if isinstance(part, self.torch.nn.Dropout):
                            part.eval()  # no dropout inside the encoder
                losses = [
                    self._step(wrapped, parameters, dp_optimizer, text)
                    for _ in range(self.privacy.steps_per_epoch)
                ]
                history.append({"epoch": epoch + 1, "train": round(float(np.mean(losses)), 5)})
        finally:
            for gsm in wrapped.values():
                gsm._close()  # the hooks go, the modules stay as they were
        return {"label": label, "epochs": epochs, "best_valid": None, "history": history}

    def _step(
        self, wrapped: dict[str, Any], parameters: list[Any], optimizer: Any, text: Any
    ) -> float:
        torch = self.torch
        from salesformer.models.lm.prediction import tensors

        items = self.plan.items
        chosen = items[self.rng.random(len(items)) < self.privacy.sample_rate]
        optimizer.zero_grad()
        self.units_per_step.append(len(chosen))
        if not len(chosen):  # an empty Poisson batch: the step adds noise only
            for p in parameters:
                p.grad_sample = p.new_zeros((0, *p.shape))
            self.windows_per_step.append(0)
            optimizer.step()
            return 0.0
        samples = self.plan.group_samples(self.model, chosen, self.rng)
        unique, inverse = np.unique(samples.item, return_inverse=True)
        batch = tensors(samples)
        predicted = wrapped["head"](
            batch["hist"],
            batch["hist_mask"],
            batch["static"],
            batch["future"],
            text(wrapped, samples, unique, inverse),
        )
        losses = window_losses(
            predicted, batch["target"], batch["target_mask"], batch["weight"], self.levels
        )
        with warnings.catch_warnings():
            # torch says its full backward hooks fire without input gradients: as intended
            warnings.filterwarnings("ignore", message="Full backward hook", category=UserWarning)
            losses.sum().backward()
        unit = torch.from_numpy(inverse.astype(np.int64))
        head_params = [p for p in wrapped["head"].parameters() if p.requires_grad]
        sum_per_unit(head_params, unit, len(unique))  # the encoder's are per item already
        check_units(parameters, len(unique))
        self.windows_per_step.append(len(samples.item))
        optimizer.step()
        return float(losses.detach().sum()) / len(unique)

    def report(self) -> dict[str, Any]:
        """The privacy spent and how (written to the fit report and config.json)."""
        model = self.model
        delta = float(model.dp_delta)
        with warnings.catch_warnings():
            # RDP's bound is valid at the largest order too, only less tight
            warnings.filterwarnings("ignore", message="Optimal order", category=UserWarning)
            spent = float(self.accountant.get_epsilon(delta=delta))
        steps = len(self.units_per_step)
        return {
            "unit": "item",
            "units": self.privacy.units,
            "epsilon": round(spent, 4),
            "delta": delta,
            "accountant": model.dp_accountant,
            "target_epsilon": float(model.dp_epsilon or math.nan),
            "noise_multiplier": round(self.privacy.noise_multiplier, 5),
            "max_grad_norm": float(model.dp_max_grad_norm),
            "sample_rate": round(self.privacy.sample_rate, 6),
            "steps": steps,
            "mean_units_per_step": round(float(np.mean(self.units_per_step)), 3) if steps else 0,
            "mean_windows_per_step": (
                round(float(np.mean(self.windows_per_step)), 3) if steps else 0
            ),
            "not_covered": list(NOT_COVERED),
        }


def check_private_context(context: Any) -> None:
    """A private fit runs in one process (the accountant sees every step)."""
    if context.world > 1:
        raise ConfigError(
            "a private fit (dp_epsilon set) runs in one process; got a group of "
            f"{context.world} training workers; fit with --engine local"
        )


def train_private(
    model: LMForecaster,
    plan: TrainingPlan,
    head: Any,
    frozen: np.ndarray,
    base: Any,
    rng: np.random.Generator,
    privacy: PrivacyPlan,
    report: dict[str, Any],
) -> Any:
    """Train the head, then the LoRA adapter with it, with per-item DP-SGD.

    Fills ``report`` (``head``, ``finetune_stage``, ``privacy``); returns the fine-tuned
    encoder (None when frozen). With no validation window, the last state is kept.
    """
    torch = _torch()
    trainer = PrivateTrainer(model, plan, head, rng, privacy)
    vectors = torch.from_numpy(frozen)

    def frozen_text(wrapped: Any, samples: Any, unique: Any, inverse: Any) -> Any:
        return vectors[torch.from_numpy(samples.item)]

    optimizer = torch.optim.AdamW(
        head.parameters(), lr=model.head_lr, weight_decay=model.weight_decay
    )
    report["head"] = trainer.run("head", model.head_epochs, {"head": head}, optimizer, frozen_text)
    encoder = None
    if model.finetune == "lora" and model.finetune_epochs > 0:
        from salesformer.models.lm.encoding import pooled, trainable_encoder

        encoder = trainable_encoder(model, base)
        tokens = model.tokens_

        def tuned_text(wrapped: Any, samples: Any, unique: Any, inverse: Any) -> Any:
            # one encoder pass per item of the step: the encoder's per-sample gradients
            # are per item already, in the order of ``unique``
            vectors = pooled(wrapped["encoder"], tokens, unique, base.pooling)
            return vectors[torch.from_numpy(inverse)]

        encoder_params = [p for p in encoder.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            [
                {"params": list(head.parameters()), "lr": model.head_lr * 0.5},
                {"params": encoder_params, "lr": model.encoder_learning_rate()},
            ],
            weight_decay=model.weight_decay,
        )
        modules = {"head": head, "encoder": encoder}
        stage = trainer.run(model.finetune, model.finetune_epochs, modules, optimizer, tuned_text)
        report["finetune_stage"] = {**stage, "improved": None}
    report["privacy"] = trainer.report()
    return encoder


def _torch() -> Any:
    from salesformer.text.encoder import import_torch

    return import_torch()
