"""One seller's side of federated training: its panel, its embeddings, its local epochs.

The learner prepares what a central fit prepares (:func:`salesformer.models.lm.training.train`)
from the seller's panel alone: the training plan and the validation window (the last
``horizon`` periods), the frozen encoder's text vectors of its items and a head of the
common shape. It then trains the head from the weights the server sends, with the same loop
as a central fit (:class:`~salesformer.models.lm.training.Trainer`), and gives back only the
head's weights and the number of its training windows.

With ``finetune="lora"`` the learner also holds a LoRA-wrapped copy of the encoder: each round
trains head and adapter together (a central fit's stage 2: the encoder run on the batch's item
texts, its warm-up then cosine learning rate over the round's local epochs), and the weights
exchanged are the head's followed by the adapter's trainable arrays (``lora_A``/``lora_B``),
never the frozen pretrained encoder or an embedding.

Covariates are taken as they are (as in a private fit), not standardised with the seller's
mean and spread: every seller's head then reads inputs on one scale.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import numpy as np

from salesformer.data.contract import Panel
from salesformer.errors import ConfigError, DataValidationError
from salesformer.models.lm import LMForecaster
from salesformer.models.lm.calibration import QuantileCalibration
from salesformer.models.lm.encoding import copy_state, encode_tokens, texts_for, trainable_encoder
from salesformer.models.lm.plan import TrainingPlan
from salesformer.models.lm.prediction import tensors
from salesformer.models.lm.samples import Standardizer, Wide
from salesformer.models.lm.settings import default_context
from salesformer.models.lm.training import Trainer, finetune_stage, frozen_stage, new_head
from salesformer.text.encoder import import_torch, shared_encoder

#: The fine-tuning modes a federation can average (full fine-tuning would send the encoder).
FEDERATED_FINETUNE = ("frozen", "lora")


def _part(state: dict[str, Any], prefix: str) -> OrderedDict[str, Any]:
    return OrderedDict((k[len(prefix) :], v) for k, v in state.items() if k.startswith(prefix))


class LocalLearner:
    """Trains the global head on one seller's panel, which never leaves this object.

    Args:
        panel: the seller's panel (items with text).
        settings: the LM's settings (``LMForecaster`` keyword arguments); ``finetune`` must
            be ``"frozen"`` or ``"lora"`` and ``dp_epsilon`` unset.
    """

    def __init__(self, panel: Panel, settings: dict[str, Any]) -> None:
        model = LMForecaster(**settings)
        model.check_params()
        if model.finetune not in FEDERATED_FINETUNE:
            raise ConfigError(
                "federated training averages the forecasting head (and the LoRA adapter); got "
                f"finetune={model.finetune!r}; use --set finetune=frozen (default) or lora"
            )
        if model.private:
            raise ConfigError(
                "federated training does not take --dp-epsilon (per-item DP-SGD); for "
                "client-level privacy give --dp-noise to the federated run"
            )
        if panel.items is None:
            raise DataValidationError(
                "a seller's panel has no items table; the LM reads item texts: give each "
                "partition an items table with item_id and text"
            )
        torch = import_torch()
        torch.set_num_threads(model.threads or 1)
        torch.manual_seed(model.seed)
        self.model = model
        self.panel = panel
        self.rng = np.random.default_rng(model.seed)
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
        model.standardizer_ = Standardizer.unlearned(panel, model.calendar_harmonics)
        self.plan = TrainingPlan.make(model, wide, panel.freq, hold_out=True)
        self.item_ids = wide.item_ids
        texts = texts_for(panel.items, wide.item_ids)
        self.vectors = base.encode(texts, cache_dir=model.cache_dir)
        self.head = new_head(model, base.dim, self.plan.n_future)
        self.pooling = base.pooling
        self.encoder: Any = None  # the LoRA-wrapped encoder when fine-tuning
        self.tokens: dict[str, Any] | None = None
        if model.finetune == "lora":
            self.encoder = trainable_encoder(model, base)
            self.tokens = base.tokenize(texts)
        self.levels = torch.tensor(model.levels, dtype=torch.float32)
        self.rounds: list[dict[str, Any]] = []

    @property
    def windows(self) -> int:
        """Training windows this seller holds (its weight in the average)."""
        return int((self.plan.high - self.plan.low[self.plan.items] + 1).sum())

    def _state(self) -> OrderedDict[str, Any]:
        """What is exchanged: the head's state, then the adapter's trainable tensors."""
        state = OrderedDict(("head." + k, v) for k, v in self.head.state_dict().items())
        if self.encoder is not None:
            trainable = copy_state(self.encoder, trainable_only=True)
            state.update(("encoder." + k, v) for k, v in trainable.items())
        return state

    def weights(self) -> list[np.ndarray]:
        """The head's weights (then the LoRA adapter's), in ``state_dict`` order."""
        return [t.detach().cpu().numpy().copy() for t in self._state().values()]

    def weight_names(self) -> list[str]:
        """Names of the arrays of :meth:`weights` (``head.*``, ``encoder.*lora_*``)."""
        return list(self._state())

    def set_weights(self, arrays: list[np.ndarray]) -> None:
        """Load weights sent by the server (checked against the head's and adapter's shapes)."""
        torch = import_torch()
        state = self._state()
        shapes = [tuple(t.shape) for t in state.values()]
        got = [tuple(np.shape(a)) for a in arrays]
        if got != shapes:
            raise ConfigError(
                f"the server sent {len(got)} weight arrays of shapes {got[:3]}..., this seller's "
                f"head has {len(shapes)} of shapes {shapes[:3]}...; every seller must use the same "
                "encoder, horizon, frequency, known-future covariates and LM settings"
            )
        loaded = {
            name: torch.from_numpy(np.asarray(a, dtype=np.float32)).to(t.dtype)
            for (name, t), a in zip(state.items(), arrays, strict=True)
        }
        self.head.load_state_dict(_part(loaded, "head."))
        if self.encoder is not None:
            self.encoder.load_state_dict(_part(loaded, "encoder."), strict=False)

    def train(self, epochs: int) -> dict[str, float]:
        """``epochs`` local epochs from the current weights; the training loss of the last."""
        torch = import_torch()
        if self.encoder is None:
            self.model.head_epochs = int(epochs)
            stage = frozen_stage(self.model, self.head, torch.from_numpy(self.vectors))
        else:
            self.model.finetune_epochs = int(epochs)
            stage = finetune_stage(
                self.model, self.head, self.encoder, self.tokens or {}, math.inf, self.pooling
            )
        report = Trainer(self.model, self.plan, self.head, self.rng).run(stage)
        last = report["history"][-1] if report["history"] else {}
        return {"train_loss": float(last.get("train", math.nan))}

    def validation_loss(self) -> tuple[float, int]:
        """Weighted pinball loss on the seller's validation window, and its sample count."""
        from salesformer.models.lm.network import pinball_loss

        validation = self.plan.validation
        if validation is None or not len(validation):
            return math.nan, 0
        torch = import_torch()
        vectors = torch.from_numpy(self.current_vectors())
        self.head.eval()
        with torch.inference_mode():
            batch = tensors(validation)
            predicted = self.head(
                batch["hist"],
                batch["hist_mask"],
                batch["static"],
                batch["future"],
                vectors[torch.from_numpy(validation.item)],
            )
            loss = pinball_loss(
                predicted, batch["target"], batch["target_mask"], batch["weight"], self.levels
            )
        return float(loss), len(validation)

    def current_vectors(self) -> np.ndarray:
        """The items' text vectors: frozen, or from the current adapter when fine-tuning."""
        if self.encoder is None or self.tokens is None:
            return self.vectors
        return encode_tokens(self.encoder, self.tokens, 256, self.pooling)

    def fitted(self, federation: dict[str, Any]) -> LMForecaster:
        """A fitted LM of this seller's items with the current (global) head.

        ``federation`` (rounds, bytes, settings) goes into the fit report and config.json.
        """
        model = self.model
        model.head_ = self.head.eval()
        model.encoder_model_ = None if self.encoder is None else self.encoder.eval()
        if self.tokens is not None:
            model.tokens_ = self.tokens
        model.item_ids_ = self.item_ids
        model.item_vectors_ = self.current_vectors()
        model.calibration_ = QuantileCalibration.damped(model.levels, float(model.growth_damping))
        model.panel_ = self.panel
        model.fit_report_ = {
            "encoder": model.encoder_info_,
            "finetune": model.finetune,
            "train_items": len(self.plan.items),
            "validation_origin": self.plan.validation_date,
            "calibration": {"skipped": "federated: no quantile calibration"},
            "federated": federation,
        }
        if federation.get("client_privacy"):  # client-level DP: config.json's "privacy"
            model.fit_report_["privacy"] = federation["client_privacy"]
        return model
