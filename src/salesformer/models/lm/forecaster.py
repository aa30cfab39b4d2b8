"""The language-model forecaster: a pretrained text encoder fine-tuned with a forecasting head.

The model reads each product's text with a pretrained Transformer encoder (all-MiniLM-L6-v2 by
default) and fuses its representation with the item's sales history, the known-future
covariates of the horizon and static features (see :mod:`.network` for the fusion and
:mod:`.samples` for the inputs). It forecasts quantiles of every step of the horizon for items
with history and, with the same weights, for brand-new items from text, price and launch date
(:meth:`LMForecaster.predict_new`).

Training, in two stages:

1. *head*: the encoder is frozen and its pooled embeddings (cached on disk) feed the head,
   trained with AdamW on pinball loss until the validation loss stops improving;
2. *fine-tuning* (``finetune="lora"`` or ``"full"``): encoder and head train together with
   their own learning rates, starting from stage 1 (linear-probe-then-fine-tune, which keeps
   the pretrained features from being distorted by a random head). Each batch runs the encoder
   once per unique item in it.

Samples come from many origins before the forecast origin; the last ``horizon`` periods of the
panel are held out as the validation window for early stopping (targets after the validation
origin are masked out of training samples). A share of samples has its history hidden, and
every item launched inside the panel adds a launch sample (origin just before its first sale),
so that the cold-start regime is learned by the same network. The best state on validation is
kept; when fine-tuning does not improve on stage 1 the stage-1 state is kept and the fit
report says so.
"""

from __future__ import annotations

import copy
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from salesformer._io import atomic_dir
from salesformer.data.contract import DATE, ITEM_ID, TEXT, Panel
from salesformer.errors import ConfigError, DataValidationError, NotFittedError
from salesformer.models.base import (
    DEFAULT_QUANTILES,
    Forecaster,
    check_quantiles,
    quantile_column,
    resolve_future,
    tidy_forecast_values,
)
from salesformer.models.lm.calibration import (
    GROWTH_DAMPING,
    QuantileCalibration,
    fit_on_samples,
)
from salesformer.models.lm.context import StageState, TrainingContext
from salesformer.models.lm.samples import (
    STATIC_FEATURES,
    Samples,
    Standardizer,
    Wide,
    build_samples,
    cold_samples,
    growth_level,
    is_cold,
)
from salesformer.models.lm.training_log import (
    LOG_DIR,
    TrainingLog,
    tensorboard_available,
    validation_metrics,
    write_history,
)
from salesformer.text.encoder import (
    Encoder,
    import_torch,
    item_texts,
    mean_pool,
    shared_encoder,
)

FineTune = Literal["frozen", "lora", "full"]
FINETUNE_MODES: tuple[str, ...] = ("frozen", "lora", "full")
#: Encoders whose word embeddings full fine-tuning freezes unless told otherwise (a 250k-piece
#: vocabulary is 82% of multilingual-e5-small's weights, and most pieces never occur).
WORD_EMBEDDINGS_FROZEN_BY_DEFAULT = frozenset({"multilingual-e5-small"})
CONFIG_FILE = "config.json"
HEAD_FILE = "head.safetensors"
ENCODER_FILE = "encoder.safetensors"
ADAPTER_DIR = "adapter"
VECTORS_FILE = "item_vectors.safetensors"
#: Prediction batches are padded to a multiple of this many rows (see ``_forward``).
ROW_BLOCK = 64
PANEL_DIR = "panel"


def default_context(freq: str) -> int:
    """History window: a year of weeks, eight weeks of days, two years of months."""
    if freq.startswith("W"):
        return 52
    if freq == "D":
        return 56
    return 24


_NUMERIC: dict[str, tuple[type, float, float]] = {
    "horizon": (int, 1, 10_000),
    "hidden_size": (int, 4, 8192),
    "text_size": (int, 2, 4096),
    "n_blocks": (int, 1, 16),
    "dropout": (float, 0.0, 0.9),
    "max_length": (int, 8, 512),
    "lora_rank": (int, 1, 512),
    "lora_alpha": (float, 1e-6, 1e6),
    "head_lr": (float, 1e-7, 1.0),
    "weight_decay": (float, 0.0, 10.0),
    "head_epochs": (int, 1, 10_000),
    "finetune_epochs": (int, 0, 1000),
    "patience": (int, 1, 1000),
    "batch_items": (int, 1, 100_000),
    "origins_per_item": (int, 1, 10_000),
    "epoch_samples": (int, 1, 10**9),
    "max_origins": (int, 1, 100_000),
    "history_dropout": (float, 0.0, 1.0),
    "launch_after": (int, 0, 100_000),
    "launch_weight": (float, 0.0, 1000.0),
    "volume_weight": (float, 0.0, 2.0),
    "grad_clip": (float, 1e-6, 1e6),
    "seed": (int, 0, 2**31 - 1),
}


@dataclass
class LMForecaster(Forecaster):
    """Pretrained text encoder + forecasting head (see the module docstring).

    Attributes:
        encoder: encoder name or local folder (see :func:`salesformer.text.load_encoder`).
        finetune: ``"frozen"`` (head only), ``"lora"`` (low-rank adapters) or ``"full"``.
        horizon: steps the model forecasts; ``predict`` serves any horizon up to it.
        context_length: history window in periods; None picks it from the frequency.
        quantile_levels: levels learned with pinball loss (0.5 must be one: the point forecast
            is the median); other levels are interpolated between them.
        hidden_size, text_size, n_blocks, dropout: sizes of the fusion head.
        max_length: tokens read per item text.
        lora_rank, lora_alpha, lora_target_modules: the LoRA adapters (``finetune="lora"``).
        freeze_word_embeddings: keep the word-embedding matrix fixed in full fine-tuning
            (faster, less memory); None freezes it for multilingual-e5-small only.
        head_lr: learning rate of the head.
        encoder_lr: learning rate of the encoder (None: 5e-4 for LoRA, 3e-5 for full).
        weight_decay: AdamW weight decay.
        head_epochs: most epochs of stage 1 (early stopping usually ends it sooner).
        finetune_epochs: epochs of stage 2 (``lora`` / ``full``).
        patience: epochs without validation improvement before stage 1 stops.
        batch_items: items per batch; the encoder runs once per item of a batch.
        origins_per_item: origins drawn per item and batch.
        epoch_samples: least samples per epoch; small panels pass over their items several
            times per epoch, so that validation is not run after every few steps.
        max_origins: training origins, the latest ones before the validation window.
        history_dropout: share of samples whose history is hidden (cold-start training).
        launch_after: items first seen at least this many periods after the panel's start
            count as launches (earlier ones may merely predate the data).
        launch_weight: weight of a launch sample relative to the mean weight of the history
            samples (a launch has no history to take a volume weight from).
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
    """

    name = "LM"

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
    lora_target_modules: tuple[str, ...] = ("query", "value")
    freeze_word_embeddings: bool | None = None
    head_lr: float = 2e-3
    encoder_lr: float | None = None
    weight_decay: float = 0.01
    head_epochs: int = 30
    finetune_epochs: int = 2
    patience: int = 3
    batch_items: int = 64
    origins_per_item: int = 8
    epoch_samples: int = 20_000
    max_origins: int = 104
    history_dropout: float = 0.1
    launch_after: int = 13
    launch_weight: float = 4.0
    volume_weight: float = 0.5
    grad_clip: float = 1.0
    seed: int = 0
    threads: int | None = None
    cache_dir: str | None = None
    progress: bool | None = None
    log_dir: str | None = None
    calibrate_quantiles: bool = True
    growth_damping: float = GROWTH_DAMPING

    # -- settings ------------------------------------------------------------------------

    def _check_params(self) -> None:
        label = "LM"
        for setting, (kind, low, high) in _NUMERIC.items():
            value = getattr(self, setting)
            ok_type = isinstance(value, int | float) and not isinstance(value, bool)
            if kind is int:
                ok_type = ok_type and float(value).is_integer()
            if not ok_type or not low <= value <= high:
                raise ConfigError(
                    f"{label}.{setting} must be a {kind.__name__} in [{low:g}, {high:g}]; "
                    f"got {value!r}"
                )
        if self.finetune not in FINETUNE_MODES:
            raise ConfigError(
                f"{label}.finetune must be one of {', '.join(FINETUNE_MODES)}; "
                f"got {self.finetune!r}"
            )
        if self.context_length is not None and (
            not isinstance(self.context_length, int) or self.context_length < 2
        ):
            raise ConfigError(
                f"{label}.context_length must be None or a whole number >= 2; "
                f"got {self.context_length!r}"
            )
        levels = check_quantiles(self.quantile_levels)
        if 0.5 not in levels or len(levels) < 2:
            raise ConfigError(
                f"{label}.quantile_levels must include 0.5 and one more level; got {levels!r}"
            )
        if self.encoder_lr is not None and not 0 < self.encoder_lr < 1:
            raise ConfigError(
                f"{label}.encoder_lr must be None or in (0, 1); got {self.encoder_lr!r}"
            )
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ConfigError(f"{label}.threads must be None or >= 1; got {self.threads!r}")
        if not self.lora_target_modules:
            raise ConfigError(f"{label}.lora_target_modules must name at least one module")
        if not (
            self.freeze_word_embeddings is None or isinstance(self.freeze_word_embeddings, bool)
        ):
            raise ConfigError(
                f"{label}.freeze_word_embeddings must be None, True or False; "
                f"got {self.freeze_word_embeddings!r}"
            )
        if self.log_dir is not None and not isinstance(self.log_dir, str | os.PathLike):
            raise ConfigError(f"{label}.log_dir must be None or a folder; got {self.log_dir!r}")
        if not isinstance(self.calibrate_quantiles, bool):
            raise ConfigError(
                f"{label}.calibrate_quantiles must be True or False; "
                f"got {self.calibrate_quantiles!r}"
            )
        damping = self.growth_damping
        if (
            isinstance(damping, bool)
            or not isinstance(damping, int | float)
            or not 0.0 < float(damping) <= 1.0
        ):
            raise ConfigError(
                f"{label}.growth_damping must be a number in (0, 1] (1: no damping); "
                f"got {damping!r}"
            )

    @property
    def levels(self) -> tuple[float, ...]:
        return check_quantiles(self.quantile_levels)

    def _encoder_lr(self) -> float:
        if self.encoder_lr is not None:
            return float(self.encoder_lr)
        return 5e-4 if self.finetune == "lora" else 3e-5

    # -- fitting -------------------------------------------------------------------------

    def _fit(self, panel: Panel, context: TrainingContext | None = None) -> None:
        """Train on ``panel``; ``context`` runs the loop as one rank of a group (default: local)."""
        context = context or TrainingContext()
        torch = import_torch()
        torch.set_num_threads(self.threads or max(1, os.cpu_count() or 1))
        torch.manual_seed(self.seed)
        rng = np.random.default_rng(self.seed)
        started = time.perf_counter()
        if panel.items is None:
            raise DataValidationError(
                "the LM forecaster reads item texts, but the panel has no items table; "
                "give an items table with item_id and text (or title/description columns)"
            )
        base = shared_encoder(self.encoder, self.max_length)
        self.encoder_info_ = {
            "name": base.name,
            "source": base.source,
            "revision": base.revision,
            "dim": base.dim,
            "max_length": base.max_length,
        }
        wide = Wide.from_panel(panel)
        self.context_ = int(self.context_length or default_context(panel.freq))
        self.standardizer_ = Standardizer.learn(wide, panel)
        texts = _texts_for(panel.items, wide.item_ids)
        frozen = context.embeddings
        if frozen is None or len(frozen) != len(texts):
            frozen = base.encode(texts, cache_dir=self.cache_dir)
        self.tokens_ = base.tokenize(texts)
        plan = _TrainingPlan.make(self, wide, panel.freq, rng)

        head = self._new_head(base.dim, plan.n_future)
        vectors = torch.from_numpy(frozen)
        report: dict[str, Any] = {
            "encoder": self.encoder_info_,
            "finetune": self.finetune,
            "train_items": len(plan.items),
            "launch_samples": len(plan.launch_items),
            "validation_origin": plan.validation_date,
            "validation_samples": len(plan.validation) if plan.validation is not None else 0,
        }
        log = TrainingLog(self.log_dir) if self.log_dir is not None else None
        stage1 = _Trainer(self, plan, head, rng, label="head", log=log, context=context)
        report["head"] = stage1.run_frozen(vectors)
        model_encoder = None
        if self.finetune != "frozen" and self.finetune_epochs > 0:
            model_encoder = self._trainable_encoder(base)
            stage2 = _Trainer(self, plan, head, rng, label=self.finetune, log=log, context=context)
            outcome = stage2.run_finetune(model_encoder, self.tokens_, stage1.best_loss)
            report["finetune_stage"] = outcome
            if not outcome["improved"]:
                model_encoder = None  # stage 1 was better on validation: keep it whole
        if log is not None:
            log.close()
        self.head_ = head
        self.encoder_model_ = model_encoder
        self.item_ids_ = wide.item_ids
        self.item_vectors_ = (
            frozen
            if model_encoder is None
            else _encode_tokens(model_encoder, self.tokens_, batch=256)
        )
        self.calibration_, report["calibration"] = self._calibrate(plan.validation)
        report["fit_seconds"] = round(time.perf_counter() - started, 2)
        self.fit_report_: dict[str, Any] = report

    def _calibrate(self, validation: Samples | None) -> tuple[QuantileCalibration, dict[str, Any]]:
        """Quantile calibration learned on the validation window (identity when off or none)."""
        if not self.calibrate_quantiles or validation is None:
            reason = "calibrate_quantiles is off" if validation is not None else "no validation"
            damped = QuantileCalibration.damped(self.levels, float(self.growth_damping))
            return damped, {"skipped": reason}
        predicted = self._forward(validation, self.item_vectors_[validation.item])
        return fit_on_samples(
            predicted,
            validation.target,
            validation.target_mask,
            validation.level,
            self.levels,
            growth_damping=float(self.growth_damping),
            cold=is_cold(validation),
        )

    def _new_head(self, text_dim: int, n_future: int) -> Any:
        from salesformer.models.lm.network import FusionHead

        import_torch().manual_seed(self.seed)
        levels = self.levels
        return FusionHead(
            context=self.context_,
            horizon=self.horizon,
            n_future=n_future,
            n_static=len(STATIC_FEATURES),
            text_dim=text_dim,
            n_quantiles=len(levels),
            median_index=levels.index(0.5),
            hidden_size=self.hidden_size,
            text_size=self.text_size,
            n_blocks=self.n_blocks,
            dropout=self.dropout,
        )

    def _trainable_encoder(self, base: Encoder) -> Any:
        """A copy of the pretrained encoder, wrapped for the fine-tuning mode."""
        model = copy.deepcopy(base.model)
        if self.finetune == "full":
            for parameter in model.parameters():
                parameter.requires_grad_(True)
            freeze = self.freeze_word_embeddings
            if freeze is None:  # auto: on where the vocabulary dominates the weights
                freeze = base.name in WORD_EMBEDDINGS_FROZEN_BY_DEFAULT
            if freeze:
                model.get_input_embeddings().weight.requires_grad_(False)
            return model
        peft = _import_peft()
        config = peft.LoraConfig(
            r=int(self.lora_rank),
            lora_alpha=float(self.lora_alpha),
            target_modules=list(self.lora_target_modules),
            lora_dropout=0.0,
            bias="none",
        )
        try:
            return peft.get_peft_model(model, config)
        except ValueError as exc:
            raise ConfigError(
                f"LM.lora_target_modules {list(self.lora_target_modules)} do not match modules "
                f"of encoder {self.encoder!r} ({exc}); for BERT-family encoders use "
                "query,key,value,dense"
            ) from exc

    # -- prediction ----------------------------------------------------------------------

    def _predict(
        self,
        horizon: int,
        future: pd.DataFrame,
        quantiles: tuple[float, ...],
        texts: dict[str, str] | None = None,
    ) -> pd.DataFrame:
        self._check_horizon(horizon)
        panel = self.panel_
        wide = Wide.from_panel(panel, future, horizon=self.horizon)
        items = np.arange(len(wide.item_ids))
        origin = np.full(len(items), wide.n_history - 1)
        samples = build_samples(
            wide,
            items,
            origin,
            context=self.context_,
            horizon=self.horizon,
            freq=panel.freq,
            standardizer=self.standardizer_,
        )
        vectors = self.item_vectors_[_positions(self.item_ids_, wide.item_ids)]
        if texts:
            rows = _positions(wide.item_ids, np.asarray(list(texts), dtype=str))
            vectors = vectors.copy()
            vectors[rows] = self._encode_texts(list(texts.values()))
        logq = self._forward(samples, vectors)[:, :horizon, :]
        dates = panel.future_dates(panel.last_date, horizon).to_numpy()
        return self._frame(wide.item_ids, dates, logq, samples, quantiles)

    def predict_with_texts(
        self,
        horizon: int,
        texts: dict[str, str],
        future: pd.DataFrame | None = None,
        quantiles: tuple[float, ...] | list[float] = DEFAULT_QUANTILES,
    ) -> pd.DataFrame:
        """Forecast as :meth:`predict` does, reading other texts for some items.

        A what-if of promotion copy: the encoder reads ``texts[item_id]`` instead of the
        item's text (the fitted weights are unchanged).

        Args:
            horizon: periods to forecast, up to the fitted ``horizon``.
            texts: new text by item id; every id must be an item of the fitted panel.
            future: known-future covariates of the horizon (see ``predict``).
            quantiles: levels of the quantile columns.
        """
        if not hasattr(self, "head_"):
            raise NotFittedError("LMForecaster is not fitted yet; call .fit(panel) first")
        self._check_horizon(horizon)
        unknown = sorted(set(texts) - {str(i) for i in self.item_ids_})
        if unknown:
            raise DataValidationError(
                f"texts given for {len(unknown)} items the model was not fitted on, e.g. "
                f"{unknown[:3]}; use item ids of the fitted panel (predict_new forecasts new items)"
            )
        levels = check_quantiles(quantiles)
        covariates = resolve_future(self.panel_, int(horizon), future)
        raw = self._predict(
            int(horizon), covariates, levels, texts={str(k): str(v) for k, v in texts.items()}
        )
        return self._finalize(raw, int(horizon), levels)

    def predict_new(
        self,
        new_items: pd.DataFrame,
        horizon: int | None = None,
        quantiles: tuple[float, ...] | list[float] = DEFAULT_QUANTILES,
    ) -> pd.DataFrame:
        """Forecast brand-new items from text, price and launch date (cold start).

        Args:
            new_items: ``item_id``, ``text`` (or title/description/category/promotion),
                ``price`` (optional, NaN allowed) and ``launch_date`` (optional; default: the
                period after the fitted panel's last date).
            horizon: periods from launch (default: the fitted ``horizon``).
            quantiles: levels of the quantile columns.

        Returns:
            ``item_id, date, LM, LM-q..`` for the first ``horizon`` periods from each launch.
        """
        if not hasattr(self, "head_"):
            raise NotFittedError("LMForecaster is not fitted yet; call .fit(panel) first")
        horizon = self.horizon if horizon is None else horizon
        self._check_horizon(horizon)
        levels = check_quantiles(quantiles)
        frame = _check_new_items(new_items)
        panel = self.panel_
        offset = panel.offset
        default_launch = panel.last_date + offset
        launches = pd.DatetimeIndex(
            [
                default_launch if pd.isna(d) else offset.rollback(pd.Timestamp(d).normalize())
                for d in frame["launch_date"]
            ]
        )
        price = frame["price"].to_numpy(dtype=float)
        has_price = np.isfinite(price) & (price > 0)
        log_price = np.log1p(np.where(has_price, price, 0.0))
        samples = cold_samples(
            log_price,
            has_price,
            launches,
            context=self.context_,
            horizon=self.horizon,
            freq=panel.freq,
            standardizer=self.standardizer_,
        )
        texts = _texts_for(frame, frame[ITEM_ID].to_numpy())
        vectors = self._encode_texts(texts)
        logq = self._forward(samples, vectors)[:, :horizon, :]
        dates = np.concatenate(
            [
                pd.date_range(start, periods=horizon, freq=panel.freq).to_numpy()
                for start in launches
            ]
        )
        out = self._frame(frame[ITEM_ID].to_numpy(), dates, logq, samples, levels)
        columns = [self.name, *(quantile_column(self.name, q) for q in levels)]
        out[columns] = tidy_forecast_values(out[columns].to_numpy(dtype=float), len(levels))
        return out

    def _check_horizon(self, horizon: int) -> None:
        if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or horizon < 1:
            raise ConfigError(f"horizon must be a whole number >= 1; got {horizon!r}")
        if horizon > self.horizon:
            raise ConfigError(
                f"the LM forecaster was fitted for horizon {self.horizon} and cannot forecast "
                f"{horizon} periods; fit it with horizon >= {horizon} (--horizon {horizon})"
            )

    def _encode_texts(self, texts: list[str]) -> np.ndarray:
        base = shared_encoder(self.encoder, self.max_length)
        if self.encoder_model_ is None:
            return base.encode(texts, cache_dir=self.cache_dir)
        tokens = base.tokenize(texts)
        return _encode_tokens(self.encoder_model_, tokens, batch=256)

    def _forward(self, samples: Samples, vectors: np.ndarray) -> np.ndarray:
        """Quantiles of the scaled target, (n, horizon, levels), in batches, no gradients.

        Each batch is padded with zero rows to a multiple of :data:`ROW_BLOCK` rows: the CPU
        matrix kernels round a row's result differently in very small batches, so without the
        padding an item's forecast would depend (in the last float bits) on how many items were
        forecast with it. Padded, forecasting a part of the items (the Ray engine, the service)
        gives exactly the numbers of forecasting them all.
        """
        torch = import_torch()
        self.head_.eval()
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(samples), 4096):
                part = samples.take(np.arange(start, min(start + 4096, len(samples))))
                batch = _tensors(part)
                text = torch.from_numpy(np.ascontiguousarray(vectors[start : start + len(part)]))
                inputs = [batch["hist"], batch["hist_mask"], batch["static"], batch["future"], text]
                rows = len(part)
                padded = max(ROW_BLOCK, -(-rows // ROW_BLOCK) * ROW_BLOCK)
                inputs = [
                    torch.cat([x, x.new_zeros((padded - rows, *x.shape[1:]))]) for x in inputs
                ]
                outputs.append(self.head_(*inputs)[:rows].float().numpy())
        if not outputs:
            return np.zeros((0, self.horizon, len(self.levels)), dtype=np.float32)
        return np.concatenate(outputs)

    def _frame(
        self,
        item_ids: np.ndarray,
        dates: np.ndarray,
        logq: np.ndarray,
        samples: Samples,
        quantiles: tuple[float, ...],
    ) -> pd.DataFrame:
        """Sales quantiles from scaled log quantiles: expm1(q + level), interpolated levels.

        ``dates`` holds the horizon's dates: shared by every item, or one run per item.
        """
        n, horizon, _ = logq.shape
        learned = np.asarray(self.levels)
        level = samples.level
        shifted = logq + level[:, None, None]
        flat = self.calibration_.apply(
            shifted.reshape(n * horizon, -1), level=np.repeat(growth_level(samples), horizon)
        )
        frame = pd.DataFrame(
            {
                ITEM_ID: np.repeat(item_ids.astype(str), horizon),
                DATE: dates if len(dates) == n * horizon else np.tile(dates, n),
            }
        )
        median = flat[:, list(learned).index(0.5)]
        frame[self.name] = np.expm1(np.clip(median, -20, 20))
        for q in quantiles:
            values = _interp_rows(flat, learned, q)
            frame[quantile_column(self.name, q)] = np.expm1(np.clip(values, -20, 20))
        return frame

    # -- persistence ---------------------------------------------------------------------

    def save(self, folder: str | Path) -> Path:
        """Write the fitted model to ``folder`` (config.json, safetensors, adapter, panel)."""
        if not hasattr(self, "head_"):
            raise NotFittedError("LMForecaster is not fitted yet; call .fit(panel) before .save()")
        from safetensors.numpy import save_file
        from safetensors.torch import save_file as save_torch

        from salesformer.models.persist import jsonable, library_versions

        target = Path(folder)
        with atomic_dir(target) as staging:
            save_torch(_cpu_state(self.head_.state_dict()), str(staging / HEAD_FILE))
            save_file(
                {"vectors": np.ascontiguousarray(self.item_vectors_, dtype=np.float32)},
                str(staging / VECTORS_FILE),
            )
            if self.encoder_model_ is not None:
                if self.finetune == "lora":
                    self.encoder_model_.save_pretrained(str(staging / ADAPTER_DIR))
                else:
                    save_torch(
                        _cpu_state(self.encoder_model_.state_dict()), str(staging / ENCODER_FILE)
                    )
            self.panel_.save(staging / PANEL_DIR)
            config = {
                "model": "LM",
                "params": jsonable(self.get_params(), self.name),
                "state": {
                    "context": self.context_,
                    "n_future": int(self.head_.future_proj.in_features),
                    "standardizer": self.standardizer_.to_json(),
                    "encoder": self.encoder_info_,
                    "fine_tuned_encoder": self.encoder_model_ is not None,
                    "item_ids": [str(i) for i in self.item_ids_],
                    "calibration": self.calibration_.to_json(),
                },
                "fit_report": jsonable(self.fit_report_, self.name),
                "versions": library_versions(),
            }
            (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
            if tensorboard_available():
                write_history(self.fit_report_, staging / LOG_DIR)
        return target

    def for_items(self, part: Panel) -> LMForecaster:
        """A view forecasting the items of ``part`` (see :meth:`Forecaster.for_items`).

        The head and encoder are shared; the view holds only the part's item vectors. Works
        on a model loaded with ``panel=False``.
        """
        if not hasattr(self, "head_"):
            raise NotFittedError(
                "LMForecaster is not fitted yet; call .fit(panel) before .for_items(part)"
            )
        ids = np.asarray(part.item_ids, dtype=str)
        unknown = np.setdiff1d(ids, self.item_ids_)
        if len(unknown):
            raise ConfigError(
                f"the LM forecaster has no item vector for {len(unknown)} items of the part, "
                f"e.g. {list(unknown[:3])}; give items of the panel the model was fitted on"
            )
        view = copy.copy(self)
        view.panel_ = part
        view.item_ids_ = ids
        view.item_vectors_ = self.item_vectors_[_positions(self.item_ids_, ids)]
        return view

    def shareable(self, horizon: int) -> LMForecaster:
        """A copy without the training panel and tokenised texts, for :meth:`for_items`."""
        self._check_horizon(horizon)
        lean = copy.copy(self)
        for attribute in ("panel_", "tokens_"):
            if hasattr(lean, attribute):
                delattr(lean, attribute)
        return lean

    @classmethod
    def load(cls, folder: str | Path, panel: bool = True) -> LMForecaster:
        """Read a model written by :meth:`save`; it predicts exactly as the saved one.

        Args:
            folder: the model folder.
            panel: read the training panel too. With False the model holds no panel (less
                memory) and can only forecast through :meth:`for_items`.
        """
        from safetensors.numpy import load_file
        from safetensors.torch import load_file as load_torch

        path = Path(folder)
        config_path = path / CONFIG_FILE
        if not config_path.is_file():
            raise ConfigError(
                f"no {CONFIG_FILE} in {str(path)!r}; give a folder written by "
                "'salesformer fit' or LMForecaster.save"
            )
        config = json.loads(config_path.read_text())
        if config.get("model") != "LM":
            raise ConfigError(
                f"{str(path)!r} holds a {config.get('model')!r} model, not an LM forecaster"
            )
        params = dict(config["params"])
        for key in ("quantile_levels", "lora_target_modules"):
            params[key] = tuple(params[key])
        model = cls(**params)
        state = config["state"]
        base = shared_encoder(model.encoder, model.max_length)
        saved = state["encoder"]
        if saved["revision"] != base.revision:
            raise ConfigError(
                f"the model was trained with encoder {saved['name']!r} revision "
                f"{saved['revision']}, but revision {base.revision} is installed; install the "
                "same encoder version or refit the model"
            )
        model.encoder_info_ = saved
        model.context_ = int(state["context"])
        model.standardizer_ = Standardizer.from_json(state["standardizer"])
        model.head_ = model._new_head(int(saved["dim"]), int(state["n_future"]))
        model.head_.load_state_dict(load_torch(str(path / HEAD_FILE)))
        model.head_.eval()
        model.encoder_model_ = None
        if state["fine_tuned_encoder"]:
            if model.finetune == "lora":
                peft = _import_peft()
                model.encoder_model_ = peft.PeftModel.from_pretrained(
                    copy.deepcopy(base.model), str(path / ADAPTER_DIR)
                )
            else:
                encoder_model = copy.deepcopy(base.model)
                encoder_model.load_state_dict(load_torch(str(path / ENCODER_FILE)))
                model.encoder_model_ = encoder_model
            model.encoder_model_.eval()
        model.item_ids_ = np.asarray(state["item_ids"], dtype=str)
        model.calibration_ = QuantileCalibration.from_json(state.get("calibration"), model.levels)
        model.item_vectors_ = load_file(str(path / VECTORS_FILE))["vectors"]
        model.fit_report_ = config.get("fit_report", {})
        if panel:
            model.panel_ = Panel.load(path / PANEL_DIR)
        return model


# -- training ------------------------------------------------------------------------------


@dataclass
class _TrainingPlan:
    """Which (item, origin) samples train the model and which validate it."""

    wide: Wide
    freq: str
    items: np.ndarray
    low: np.ndarray
    high: int
    launch_items: np.ndarray
    target_limit: int
    validation: Samples | None
    validation_date: str | None
    n_future: int
    launch_weight: float

    @classmethod
    def make(
        cls, model: LMForecaster, wide: Wide, freq: str, rng: np.random.Generator
    ) -> _TrainingPlan:
        last = wide.n_history - 1
        horizon = model.horizon
        validation_origin = last - horizon
        earliest = max(0, validation_origin - model.max_origins)
        use_validation = validation_origin - 1 >= earliest and (
            (wide.first <= validation_origin - 1).sum() >= 2
        )
        high = validation_origin - 1 if use_validation else last - 1
        limit = validation_origin if use_validation else last
        if high < 0:
            raise DataValidationError(
                f"the panel has {wide.n_history} periods; the LM forecaster needs at least "
                f"{horizon + 2} to learn a horizon of {horizon}; give a longer panel or a "
                "shorter --horizon"
            )
        low = np.maximum(wide.first, max(0, high - model.max_origins + 1))
        trainable = np.flatnonzero(low <= high)
        if not len(trainable):
            raise DataValidationError(
                "no item has history before the validation window; give a longer panel or "
                "a shorter --horizon"
            )
        launch = np.flatnonzero(
            (wide.first >= model.launch_after) & (wide.first - 1 <= high) & (wide.first >= 1)
        )
        common = dict(
            context=model.context_,
            horizon=horizon,
            freq=freq,
            standardizer=model.standardizer_,
            volume_weight=model.volume_weight,
        )
        latest = build_samples(wide, trainable, np.full(len(trainable), high), **common)  # type: ignore[arg-type]
        launch_weight = float(model.launch_weight * latest.weight.mean())
        validation = None
        validation_date = None
        if use_validation:
            known = np.flatnonzero(wide.first <= validation_origin)
            parts = [
                build_samples(
                    wide,
                    known,
                    np.full(len(known), validation_origin),
                    **common,  # type: ignore[arg-type]
                )
            ]
            new = np.flatnonzero(
                (wide.first > validation_origin)
                & (wide.first <= last)
                & (wide.first >= model.launch_after)
            )
            if len(new):
                parts.append(_launch_samples(wide, new, common, launch_weight))
            validation = Samples.concat(parts)
            validation_date = str(wide.dates[validation_origin].date())
        probe = latest
        return cls(
            wide=wide,
            freq=freq,
            items=trainable,
            low=low,
            high=high,
            launch_items=launch,
            target_limit=limit,
            validation=validation,
            validation_date=validation_date,
            n_future=int(probe.future.shape[2]),
            launch_weight=launch_weight,
        )

    def batches(self, model: LMForecaster, rng: np.random.Generator) -> list[Samples]:
        """One epoch: items shuffled into groups, several origins drawn per item."""
        passes = max(1, math.ceil(model.epoch_samples / (len(self.items) * model.origins_per_item)))
        order = np.concatenate([rng.permutation(self.items) for _ in range(passes)])
        launch_set = set(self.launch_items.tolist())
        common = dict(
            context=model.context_,
            horizon=model.horizon,
            freq=self.freq,
            standardizer=model.standardizer_,
            target_limit=self.target_limit,
            volume_weight=model.volume_weight,
        )
        out = []
        k = model.origins_per_item
        for start in range(0, len(order), model.batch_items):
            group = order[start : start + model.batch_items]
            item = np.repeat(group, k)
            span = self.high - self.low[item] + 1
            origin = self.low[item] + np.floor(rng.random(len(item)) * span).astype(np.int64)
            cold = rng.random(len(item)) < model.history_dropout
            parts = [build_samples(self.wide, item, origin, cold=cold, **common)]  # type: ignore[arg-type]
            launches = np.array([i for i in group if i in launch_set], dtype=np.int64)
            if len(launches):
                parts.append(_launch_samples(self.wide, launches, common, self.launch_weight))
            out.append(Samples.concat(parts))
        return out


def _launch_samples(
    wide: Wide, items: np.ndarray, common: dict[str, Any], weight: float
) -> Samples:
    """Cold-start samples: origin just before the first sale, launch price as the price."""
    first = wide.first[items]
    price = None if wide.launch_price is None else wide.launch_price[items]
    samples = build_samples(
        wide,
        items,
        first - 1,
        cold=np.ones(len(items), dtype=bool),
        launch_price=price,
        **common,
    )
    samples.weight[:] = weight
    return samples


class _Trainer:
    """Runs the epochs of one training stage, keeping the best state on validation."""

    def __init__(
        self,
        model: LMForecaster,
        plan: _TrainingPlan,
        head: Any,
        rng: np.random.Generator,
        label: str,
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
        self.label = label
        self.best_loss = math.inf
        self.torch = import_torch()
        self.levels = self.torch.tensor(model.levels, dtype=self.torch.float32)

    def _progress(self, total: int, desc: str) -> Any:
        from tqdm.auto import tqdm

        show = self.model.progress
        if show is None:
            show = sys.stderr.isatty()
        return tqdm(total=total, desc=desc, disable=not show, leave=False, unit="batch")

    def _loss(self, samples: Samples, text: Any, with_output: bool = False) -> Any:
        from salesformer.models.lm.network import pinball_loss

        batch = _tensors(samples)
        predicted = self.head(
            batch["hist"], batch["hist_mask"], batch["static"], batch["future"], text
        )
        loss = pinball_loss(
            predicted, batch["target"], batch["target_mask"], batch["weight"], self.levels
        )
        return (loss, predicted) if with_output else loss

    def _validate(self, vectors_for: Any) -> float:
        validation = self.plan.validation
        if validation is None:
            return math.nan
        torch = self.torch
        self.head.eval()
        total = 0.0
        weight = 0.0
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(validation), 4096):
                part = validation.take(np.arange(start, min(start + 4096, len(validation))))
                loss, predicted = self._loss(part, vectors_for(part.item), with_output=True)
                outputs.append(predicted.float().numpy())
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

    def _record(self, history: list[dict[str, float]], record: dict[str, float]) -> None:
        """Keep an epoch's record (with the validation metrics) and log it."""
        record.update(self.metrics)
        history.append(record)
        if self.log is not None:
            self.log.epoch(self.label, record)

    def run_frozen(self, vectors: Any) -> dict[str, Any]:
        """Stage 1: the head on frozen embeddings, with early stopping."""
        torch = self.torch
        context = self.context
        optimizer = torch.optim.AdamW(
            self.head.parameters(), lr=self.model.head_lr, weight_decay=self.model.weight_decay
        )
        context.sync(self.head)
        epochs = self.model.head_epochs
        state = StageState(
            "head", 0, False, [], math.inf, modules={"head": self.head}, optimizer=optimizer
        )
        state.best_states["head"] = _copy_state(self.head)
        state.rng = self.rng
        state = context.resume(state) or state
        history = state.history
        best_state = state.best_states["head"]
        stale = state.stale
        self.best_loss = state.best
        for epoch in range(epochs if state.finished else state.epoch, epochs):
            batches = self.plan.batches(self.model, self.rng)
            self.head.train()
            running = 0.0
            with self._progress(len(batches), f"LM head epoch {epoch + 1}/{epochs}") as bar:
                for batch in batches:
                    optimizer.zero_grad()
                    part, scale = context.shard(batch)
                    loss = self._loss(part, vectors[torch.from_numpy(part.item)])
                    if context.world > 1:
                        loss = loss * scale
                    loss.backward()
                    batch_loss = context.reduce_gradients(list(self.head.parameters()), loss)
                    torch.nn.utils.clip_grad_norm_(self.head.parameters(), self.model.grad_clip)
                    optimizer.step()
                    running += batch_loss
                    bar.update(1)
                    bar.set_postfix(loss=f"{batch_loss:.4f}")
            train_loss = running / max(len(batches), 1)
            valid = context.agree(self._validate(lambda items: vectors[torch.from_numpy(items)]))
            self._record(
                history,
                {"epoch": epoch + 1, "train": round(train_loss, 5), "valid": round(valid, 5)},
            )
            stop = False
            if math.isnan(valid):
                best_state = _copy_state(self.head)
            elif valid < self.best_loss - 1e-5:
                self.best_loss = valid
                best_state = _copy_state(self.head)
                stale = 0
            else:
                stale += 1
                stop = stale >= self.model.patience
            context.epoch_end(
                StageState(
                    "head",
                    epoch + 1,
                    stop or epoch + 1 == epochs,
                    history,
                    self.best_loss,
                    stale=stale,
                    modules={"head": self.head},
                    best_states={"head": best_state},
                    optimizer=optimizer,
                    rng=self.rng,
                )
            )
            if stop:
                break
        self.head.load_state_dict(best_state)
        return {
            "epochs": len(history),
            "best_valid": None if math.isinf(self.best_loss) else round(self.best_loss, 5),
            "history": history,
        }

    def run_finetune(self, encoder: Any, tokens: dict[str, Any], baseline: float) -> dict[str, Any]:
        """Stage 2: encoder and head together; returns whether validation improved."""
        torch = self.torch
        model = self.model
        encoder_params = [p for p in encoder.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            [
                {"params": list(self.head.parameters()), "lr": model.head_lr * 0.5},
                {"params": encoder_params, "lr": model._encoder_lr()},
            ],
            weight_decay=model.weight_decay,
        )
        context = self.context
        context.sync(self.head, encoder)
        state = StageState(
            self.label,
            0,
            False,
            [],
            baseline,
            modules={"head": self.head, "encoder": encoder},
            best_states={
                "head": _copy_state(self.head),
                "encoder": _copy_state(encoder, trainable_only=True),
            },
            optimizer=optimizer,
            rng=self.rng,
        )
        state = context.resume(state) or state
        head_state = state.best_states["head"]
        encoder_state = state.best_states["encoder"]
        best = state.best
        improved = state.improved
        history = state.history
        epochs = model.finetune_epochs
        for epoch in range(epochs if state.finished else state.epoch, epochs):
            batches = self.plan.batches(model, self.rng)
            total_steps = len(batches)
            self.head.train()
            encoder.eval()  # no dropout inside the encoder: the head was fitted without it
            running = 0.0
            desc = f"LM {self.label} epoch {epoch + 1}/{model.finetune_epochs}"
            with self._progress(total_steps, desc) as bar:
                for step, batch in enumerate(batches):
                    _set_lr(optimizer, step, total_steps, model, epoch)
                    optimizer.zero_grad()
                    part, scale = context.shard(batch)
                    unique, inverse = np.unique(part.item, return_inverse=True)
                    pooled = _pooled(encoder, tokens, unique)
                    loss = self._loss(part, pooled[torch.from_numpy(inverse)])
                    if context.world > 1:
                        loss = loss * scale
                    loss.backward()
                    trained = [*self.head.parameters(), *encoder_params]
                    batch_loss = context.reduce_gradients(trained, loss)
                    torch.nn.utils.clip_grad_norm_(trained, model.grad_clip)
                    optimizer.step()
                    running += batch_loss
                    bar.update(1)
                    bar.set_postfix(loss=f"{batch_loss:.4f}")
            vectors = torch.from_numpy(_encode_tokens(encoder, tokens, batch=256))
            valid = context.agree(
                self._validate(lambda items, v=vectors: v[torch.from_numpy(items)])
            )
            self._record(
                history,
                {
                    "epoch": epoch + 1,
                    "train": round(running / max(total_steps, 1), 5),
                    "valid": round(valid, 5),
                },
            )
            if math.isnan(valid) or valid < best - 1e-5:
                best = valid if not math.isnan(valid) else best
                improved = True
                head_state = _copy_state(self.head)
                encoder_state = _copy_state(encoder, trainable_only=True)
            context.epoch_end(
                StageState(
                    self.label,
                    epoch + 1,
                    epoch + 1 == epochs,
                    history,
                    best,
                    improved=improved,
                    modules={"head": self.head, "encoder": encoder},
                    best_states={"head": head_state, "encoder": encoder_state},
                    optimizer=optimizer,
                    rng=self.rng,
                )
            )
        self.head.load_state_dict(head_state)
        encoder.load_state_dict(encoder_state, strict=False)
        return {
            "epochs": len(history),
            "improved": improved,
            "best_valid": None if math.isinf(best) else round(best, 5),
            "history": history,
        }


def _set_lr(optimizer: Any, step: int, total: int, model: LMForecaster, epoch: int) -> None:
    """Linear warm-up over the first 10% of the first epoch, cosine decay after it."""
    epochs = max(model.finetune_epochs, 1)
    progress = (epoch * total + step) / max(epochs * total, 1)
    warm = 0.1 / epochs
    factor = progress / warm if progress < warm else 0.5 * (1 + math.cos(math.pi * progress))
    bases = (model.head_lr * 0.5, model._encoder_lr())
    for group, base in zip(optimizer.param_groups, bases, strict=True):
        group["lr"] = base * max(factor, 0.02)


# -- small helpers -------------------------------------------------------------------------


def _import_peft() -> Any:
    try:
        import peft
    except ImportError as exc:  # pragma: no cover - depends on the installation
        from salesformer.errors import MissingExtraError

        raise MissingExtraError("peft", "lm") from exc
    return peft


def _texts_for(items: pd.DataFrame, ids: np.ndarray) -> list[str]:
    """Texts of ``ids`` in order; an item without a row or text reads as its id."""
    texts = item_texts(items)
    texts = texts[~texts.index.duplicated(keep="last")]
    found = texts.reindex([str(i) for i in ids])
    return [
        t if isinstance(t, str) and t.strip() else str(i) for i, t in zip(ids, found, strict=True)
    ]


def _check_new_items(new_items: pd.DataFrame) -> pd.DataFrame:
    """Validate the new-items frame of :meth:`LMForecaster.predict_new`."""
    if not isinstance(new_items, pd.DataFrame):
        raise DataValidationError(f"new items must be a table; got {type(new_items).__name__}")
    if ITEM_ID not in new_items.columns:
        raise DataValidationError(
            f"new items need an '{ITEM_ID}' column; got {list(new_items.columns)}; "
            "give item_id, text, price and optionally launch_date"
        )
    text_columns = [c for c in (TEXT, "title", "description") if c in new_items.columns]
    if not text_columns:
        raise DataValidationError(
            f"new items need a '{TEXT}' column (or title/description); got "
            f"{list(new_items.columns)}"
        )
    frame = new_items.copy()
    frame[ITEM_ID] = frame[ITEM_ID].astype(str)
    duplicated = frame[ITEM_ID][frame[ITEM_ID].duplicated()].unique()
    if len(duplicated):
        raise DataValidationError(
            f"new items: item_id must be unique; {len(duplicated)} repeated, e.g. "
            f"{list(duplicated[:3])}"
        )
    if "price" in frame.columns:
        price = pd.to_numeric(frame["price"], errors="coerce")
        bad = frame.loc[price.isna() & frame["price"].notna(), "price"]
        if len(bad):
            raise DataValidationError(
                f"new items: price must be a number; got {list(bad.head(3))}; "
                "leave it empty when unknown"
            )
        if (price < 0).any():
            raise DataValidationError(
                f"new items: price must be >= 0; got {list(price[price < 0].head(3))}"
            )
        frame["price"] = price.astype(float)
    else:
        frame["price"] = np.nan
    if "launch_date" in frame.columns:
        parsed = pd.to_datetime(frame["launch_date"], errors="coerce")
        bad = frame.loc[parsed.isna() & frame["launch_date"].notna(), "launch_date"]
        if len(bad):
            raise DataValidationError(
                f"new items: launch_date must be a date like 2024-03-04; got {list(bad.head(3))}"
            )
        frame["launch_date"] = parsed
    else:
        frame["launch_date"] = pd.NaT
    return frame.reset_index(drop=True)


def _positions(known: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    index = pd.Index(known.astype(str)).get_indexer(wanted.astype(str))
    if (index < 0).any():  # pragma: no cover - the panel and the vectors come from one fit
        raise RuntimeError("item vectors do not cover the panel's items")
    return index


def _tensors(samples: Samples) -> dict[str, Any]:
    torch = import_torch()
    return {
        name: torch.from_numpy(np.ascontiguousarray(getattr(samples, name)))
        for name in ("hist", "hist_mask", "static", "future", "target", "target_mask", "weight")
    }


def _token_slice(tokens: dict[str, Any], rows: np.ndarray) -> dict[str, Any]:
    """Token tensors of ``rows``, trimmed to the longest text among them."""
    torch = import_torch()
    index = torch.from_numpy(np.asarray(rows, dtype=np.int64))
    mask = tokens["attention_mask"][index]
    width = int(mask.sum(dim=1).max()) if len(rows) else 1
    return {name: value[index][:, :width] for name, value in tokens.items()}


def _pooled(encoder: Any, tokens: dict[str, Any], rows: np.ndarray) -> Any:
    part = _token_slice(tokens, rows)
    output = encoder(**part)
    return mean_pool(output.last_hidden_state, part["attention_mask"])


def _encode_tokens(encoder: Any, tokens: dict[str, Any], batch: int) -> np.ndarray:
    """Pooled vectors of every tokenized text with a (possibly fine-tuned) encoder."""
    torch = import_torch()
    n = int(tokens["input_ids"].shape[0])
    lengths = tokens["attention_mask"].sum(dim=1).numpy()
    order = np.argsort(lengths, kind="stable")  # similar lengths together: less padding
    out = np.zeros((n, 0), dtype=np.float32)
    parts: list[tuple[np.ndarray, np.ndarray]] = []
    encoder.eval()
    with torch.inference_mode():
        for start in range(0, n, batch):
            rows = order[start : start + batch]
            parts.append((rows, _pooled(encoder, tokens, rows).float().numpy()))
    if parts:
        out = np.zeros((n, parts[0][1].shape[1]), dtype=np.float32)
        for rows, values in parts:
            out[rows] = values
    return out


def _copy_state(module: Any, trainable_only: bool = False) -> dict[str, Any]:
    if trainable_only:
        names = {name for name, p in module.named_parameters() if p.requires_grad}
        return {k: v.detach().clone() for k, v in module.state_dict().items() if k in names}
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _cpu_state(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def _interp_rows(values: np.ndarray, levels: np.ndarray, q: float) -> np.ndarray:
    """Linear interpolation between learned quantile columns (clamped at the ends)."""
    if q <= levels[0]:
        return values[:, 0]
    if q >= levels[-1]:
        return values[:, -1]
    upper = int(np.searchsorted(levels, q))
    if math.isclose(levels[upper], q):
        return values[:, upper]
    lower = upper - 1
    share = (q - levels[lower]) / (levels[upper] - levels[lower])
    return values[:, lower] * (1 - share) + values[:, upper] * share


__all__ = ["FINETUNE_MODES", "LMForecaster"]
