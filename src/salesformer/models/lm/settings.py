"""The LM forecaster's settings: fields, declared ranges and the one check of them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Literal

from salesformer.errors import ConfigError
from salesformer.forecasting.params import (
    Boolean,
    Constraint,
    Folder,
    Interval,
    OneOf,
    Rule,
    check_constraints,
)
from salesformer.forecasting.protocol import DEFAULT_QUANTILES, MAX_HORIZON, check_quantiles
from salesformer.models.lm.calibration import GROWTH_DAMPING
from salesformer.text.device import PRECISIONS, valid_device
from salesformer.text.families import POOLINGS

FineTune = Literal["frozen", "lora", "full"]
FINETUNE_MODES: tuple[str, ...] = ("frozen", "lora", "full")
#: Domain pretraining stages of the encoder before the head (see :mod:`.pretrain`).
PRETRAIN_MODES: tuple[str, ...] = ("none", "curves")
#: Opacus accountants a private fit may use (see :mod:`.private`).
DP_ACCOUNTANTS: tuple[str, ...] = ("rdp", "prv")
#: Encoders whose word embeddings full fine-tuning freezes unless told otherwise (a 250k-piece
#: vocabulary is 82% of multilingual-e5-small's weights, and most pieces never occur).
WORD_EMBEDDINGS_FROZEN_BY_DEFAULT = frozenset({"multilingual-e5-small"})


def default_context(freq: str) -> int:
    """History window: a year of weeks, eight weeks of days, two years of months."""
    if freq.startswith("W"):
        return 52
    if freq == "D":
        return 56
    return 24


def _lm_levels(levels: object) -> bool:
    try:
        checked = check_quantiles(levels)  # type: ignore[arg-type]
    except ConfigError:
        return False
    return 0.5 in checked and len(checked) >= 2


#: The settings' allowed values (see :mod:`salesformer.forecasting.params`).
LM_CONSTRAINTS: dict[str, Constraint] = {
    "horizon": Interval(int, 1, MAX_HORIZON),
    "hidden_size": Interval(int, 4, 8192),
    "text_size": Interval(int, 2, 4096),
    "n_blocks": Interval(int, 1, 16),
    "dropout": Interval(float, 0.0, 0.9),
    "max_length": Interval(int, 8, 512),
    "lora_rank": Interval(int, 1, 512),
    "lora_alpha": Interval(float, 1e-6, 1e6),
    "head_lr": Interval(float, 1e-7, 1.0),
    "weight_decay": Interval(float, 0.0, 10.0),
    "head_epochs": Interval(int, 1, 10_000),
    "finetune_epochs": Interval(int, 0, 1000),
    "pretrain": OneOf(*PRETRAIN_MODES),
    "pretrain_epochs": Interval(int, 1, 1000),
    "pretrain_neighbours": Interval(int, 1, 100),
    "patience": Interval(int, 1, 1000),
    "batch_items": Interval(int, 1, 100_000),
    "auto_batch": Boolean(),
    "origins_per_item": Interval(int, 1, 10_000),
    "epoch_samples": Interval(int, 1, 10**9),
    "max_origins": Interval(int, 1, 100_000),
    "history_dropout": Interval(float, 0.0, 1.0),
    "launch_after": Interval(int, 0, 100_000),
    "launch_weight": Interval(float, 0.0, 1000.0),
    "launch_regression": Boolean(),
    "launch_network_weight": Interval(float, 0.0, 1.0, none=True),
    "volume_weight": Interval(float, 0.0, 2.0),
    "grad_clip": Interval(float, 1e-6, 1e6),
    "seed": Interval(int, 0, 2**31 - 1),
    "finetune": OneOf(*FINETUNE_MODES),
    "context_length": Interval(int, 2, None, none=True),
    "quantile_levels": Rule("include 0.5 and one more level, all in (0, 1)", _lm_levels),
    "encoder_lr": Interval(float, 0, 1, closed="neither", none=True),
    "threads": Interval(int, 1, None, none=True),
    "lora_target_modules": Rule(
        "name at least one module, or be None (chosen by architecture)",
        lambda v: v is None or bool(v),
    ),
    "pooling": OneOf(*POOLINGS),
    "device": Rule("be auto, cpu, cuda, cuda:N or mps", valid_device),
    "mixed_precision": OneOf(*PRECISIONS),
    "gradient_checkpointing": Boolean(none=True),
    "freeze_word_embeddings": Boolean(none=True),
    "log_dir": Folder(),
    "calibrate_quantiles": Boolean(),
    "growth_damping": Interval(float, 0, 1, closed="right"),
    "calendar_harmonics": Interval(int, 1, 26),
    "dp_epsilon": Interval(float, 0, None, closed="neither", none=True),
    "dp_delta": Interval(float, 0, 1, closed="neither"),
    "dp_max_grad_norm": Interval(float, 0, None, closed="neither"),
    "dp_accountant": OneOf(*DP_ACCOUNTANTS),
}


@dataclass
class LMSettings:
    """The settings of :class:`~salesformer.models.lm.LMForecaster` and their checks.

    Attributes:
        encoder: encoder name or local folder (see :func:`salesformer.text.load_encoder`).
        finetune: ``"frozen"`` (head only), ``"lora"`` (low-rank adapters) or ``"full"``.
        horizon: steps the model forecasts; ``predict`` serves any horizon up to it.
        context_length: history window in periods; None picks it from the frequency.
        quantile_levels: levels learned with pinball loss (0.5 must be one: the point forecast
            is the median); other levels are interpolated between them.
        hidden_size, text_size, n_blocks, dropout: sizes of the fusion head.
        max_length: tokens read per item text.
        lora_rank, lora_alpha, lora_target_modules: the LoRA adapters (``finetune="lora"``);
            ``lora_target_modules`` None takes the architecture's attention query and value
            projections (``query``/``value`` for BERT, ``c_attn`` for GPT-2, ``q_proj``/
            ``v_proj`` for Llama and Qwen; see :mod:`salesformer.text.families`).
        pooling: the item vector from the token states: ``auto`` (mean for encoders, the
            last real token for decoders), ``mean`` or ``last``.
        device: where training runs: ``auto`` (a CUDA GPU, else MPS, else the CPU),
            ``cpu``, ``cuda``, ``cuda:N`` or ``mps``. The fitted model is kept on the CPU.
        mixed_precision: ``auto`` (bf16 on a CUDA GPU that has it, else fp16 with loss
            scaling; off on other devices), ``no``, ``bf16`` or ``fp16`` (CUDA only).
        gradient_checkpointing: recompute the encoder's activations in the backward pass
            (less memory, slower) when fine-tuning; None turns it on for encoders of
            300M parameters or more on a CUDA GPU.
        freeze_word_embeddings: keep the word-embedding matrix fixed in full fine-tuning
            (faster, less memory); None freezes it for multilingual-e5-small only.
        head_lr: learning rate of the head.
        encoder_lr: learning rate of the encoder (None: 5e-4 for LoRA, 3e-5 for full).
        weight_decay: AdamW weight decay.
        head_epochs: most epochs of stage 1 (early stopping usually ends it sooner).
        finetune_epochs: epochs of stage 2 (``lora`` / ``full``).
        pretrain: ``"curves"`` runs a domain pretraining stage before the head: the encoder
            (the LoRA adapter, or every weight with ``finetune="full"``) learns to pull
            together the texts of items whose sales curves correlate, on the history before
            the validation window (see :mod:`.pretrain`); the head then reads the pretrained
            vectors and the fine-tune continues from them (with ``finetune="frozen"`` the
            pretrained adapter is kept as it is). ``"none"`` (default) skips it.
        pretrain_epochs: epochs of the pretraining stage; an epoch is one pair per item with
            a curve neighbour, at least 512 and at most 1024 pairs.
        pretrain_neighbours: an item's positives: its most correlated items by sales curve.
        patience: epochs without validation improvement before stage 1 stops.
        batch_items: items per batch; the encoder runs once per item of a batch.
        auto_batch: on a CUDA GPU, probe each training stage's memory before it starts and
            halve ``batch_items`` until a batch fits with headroom (the size used is in the
            fit report's ``auto_batch``; :mod:`.batch_size`); on a CPU or MPS, and for a
            private fit, ``batch_items`` as given.
        origins_per_item: origins drawn per item and batch.
        epoch_samples: least samples per epoch; small panels pass over their items several
            times per epoch, so that validation is not run after every few steps.
        max_origins: training origins, the latest ones before the validation window.
        history_dropout: share of samples whose history is hidden (cold-start training).
        launch_after: items first seen at least this many periods after the panel's start
            count as launches (earlier ones may merely predate the data).
        launch_weight: weight of a launch sample relative to the mean weight of the history
            samples (a launch has no history to take a volume weight from).
        launch_regression: also learn a ridge regression of launch curves on the LM's text
            vectors, launch price and launch date from the panel's launches, and blend it into
            ``predict_new`` with a weight chosen on launches held out by time (see
            :mod:`.launch`); off: new products from the network alone.
        launch_network_weight: the network's weight in that blend (the regression has the
            rest); None (default) chooses it on the fit's own validation launches (the
            launches of the held-out window, first sold in its last ``horizon`` periods), so
            that the user's own data decides, when there are enough of them and the
            regression fitted before them saw every step; otherwise equal weights (0.5); a
            number fixes it (``docs/lm.md``, section "New products").
        volume_weight: samples are weighted by ``(1 + mean sales) ** volume_weight``, moving
            the loss towards high sellers (which dominate WAPE); 0 weights items equally.
        grad_clip: gradient-norm clipping.
        seed: seeds numpy and torch; the same seed, data and threads give the same model.
        threads: torch threads; None uses every core.
        cache_dir: folder of the frozen-embedding cache (None: the default cache).
        progress: show a progress bar with the loss; None shows it on a terminal.
        log_dir: folder for TensorBoard event files written during the fit (per-epoch
            losses and validation WAPE/wQL; see :mod:`.training_log`); saving always writes
            them to ``<model folder>/logs`` too.
        calibrate_quantiles: after training, rescale each level's log-space distance from
            the median, per volume bucket, to minimise the sales-scale pinball loss on the
            validation window (see :mod:`.calibration`); False keeps the raw quantiles.
        growth_damping: factor ``d`` in ``(0, 1]`` of the median's log growth above the
            item's level: ``m' = level + d * (m - level)`` where ``m > level``, every quantile
            moving with the median (see :mod:`.calibration`); 1 keeps the network's median.
            The default was chosen on the Online Retail II validation cutoffs
            (``python -m benchmarks.lm_calibration``).
        calendar_harmonics: harmonics of the yearly cycle the head reads for each forecast
            step of weekly and monthly data (sine and cosine each); 26 resolve single weeks.
            Daily data reads two harmonics of the week.
        dp_epsilon: train with differential privacy (DP-SGD through Opacus, one item's whole
            history as the privacy unit) to this epsilon; None trains without it. See
            :mod:`.private` and ``docs/privacy.md``.
        dp_delta: the delta of the private fit (far below 1 / number of items).
        dp_max_grad_norm: the bound each item's summed gradient is clipped to per step.
        dp_accountant: the Opacus accountant that sets the noise and reports the epsilon
            spent: ``"rdp"`` (Renyi DP) or ``"prv"`` (privacy random variables, tighter).
    """

    encoder: str = "all-MiniLM-L6-v2"
    finetune: FineTune = "lora"
    horizon: int = 8
    context_length: int | None = None
    quantile_levels: tuple[float, ...] = DEFAULT_QUANTILES
    hidden_size: int = 256
    text_size: int = 64
    n_blocks: int = 2
    dropout: float = 0.1
    max_length: int = 32
    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_target_modules: tuple[str, ...] | None = None
    freeze_word_embeddings: bool | None = None
    head_lr: float = 2e-3
    encoder_lr: float | None = None
    weight_decay: float = 0.01
    head_epochs: int = 30
    finetune_epochs: int = 2
    pretrain: str = "none"
    pretrain_epochs: int = 3
    pretrain_neighbours: int = 5
    patience: int = 3
    batch_items: int = 64
    auto_batch: bool = True
    origins_per_item: int = 8
    epoch_samples: int = 20_000
    max_origins: int = 104
    history_dropout: float = 0.1
    launch_after: int = 13
    launch_weight: float = 4.0
    launch_regression: bool = True
    launch_network_weight: float | None = None
    volume_weight: float = 0.5
    grad_clip: float = 1.0
    seed: int = 0
    threads: int | None = None
    cache_dir: str | None = None
    progress: bool | None = None
    log_dir: str | None = None
    calibrate_quantiles: bool = True
    growth_damping: float = GROWTH_DAMPING
    calendar_harmonics: int = 2
    dp_epsilon: float | None = None
    dp_delta: float = 1e-5
    dp_max_grad_norm: float = 1.0
    dp_accountant: str = "rdp"
    pooling: str = "auto"
    device: str = "auto"
    mixed_precision: str = "auto"
    gradient_checkpointing: bool | None = None

    constraints: ClassVar[Mapping[str, Constraint]] = LM_CONSTRAINTS

    def check_params(self) -> None:
        """Raise :class:`ConfigError` for settings out of range (``fit`` calls it)."""
        check_constraints(type(self).__name__, asdict_settings(self), self.constraints)
        check_private_settings(self)

    @property
    def private(self) -> bool:
        """Whether the fit is differentially private (``dp_epsilon`` is set)."""
        return self.dp_epsilon is not None

    @property
    def levels(self) -> tuple[float, ...]:
        """The learned quantile levels, sorted."""
        return check_quantiles(self.quantile_levels)

    @property
    def adapter_kind(self) -> str:
        """How a trained encoder is kept: ``"full"`` weights, else a ``"lora"`` adapter
        (fine-tuned with LoRA, or frozen after a pretraining stage)."""
        return "full" if self.finetune == "full" else "lora"

    def encoder_learning_rate(self) -> float:
        """The encoder's learning rate: ``encoder_lr``, else 5e-4 for LoRA, 3e-5 for full."""
        if self.encoder_lr is not None:
            return float(self.encoder_lr)
        return 3e-5 if self.adapter_kind == "full" else 5e-4


def check_private_settings(settings: LMSettings) -> None:
    """Refuse the settings a private fit cannot honour (``check_params`` calls it)."""
    if not settings.private:
        return
    if settings.pretrain != "none":
        raise ConfigError(
            f"LMForecaster.pretrain={settings.pretrain!r} cannot run with differential "
            "privacy: the curve-pretraining stage reads every item's sales outside DP-SGD; "
            f"got pretrain={settings.pretrain!r} with dp_epsilon={settings.dp_epsilon:g}; "
            "set LM.pretrain=none"
        )
    if settings.finetune == "full":
        raise ConfigError(
            "LMForecaster.finetune='full' cannot train with differential privacy: per-item "
            "gradients of every encoder weight (22M for MiniLM, 118M for e5-small) would have "
            "to be held per item at each step, and Opacus has no per-sample gradients for the "
            "encoder's attention; got finetune='full' with dp_epsilon="
            f"{settings.dp_epsilon:g}; use --finetune frozen or lora"
        )


def asdict_settings(settings: LMSettings) -> dict[str, Any]:
    """The settings by name (a shallow :func:`dataclasses.asdict`)."""
    return {f.name: getattr(settings, f.name) for f in fields(settings) if f.init}
