"""The language-model forecaster: a pretrained text encoder fine-tuned with a forecasting head.

The model reads each product's text with a pretrained Transformer encoder (all-MiniLM-L6-v2 by
default) and fuses its representation with the item's sales history, the known-future
covariates of the horizon and static features (see :mod:`.network` for the fusion and
:mod:`.samples` for the inputs). It forecasts quantiles of every step of the horizon for items
with history and, with the same weights, for brand-new items from text, price and launch date
(:meth:`LMForecaster.predict_new`).

Training runs in two stages, the frozen head then fine-tuning (:mod:`.training`, one loop
for both); linear-probe-then-fine-tune keeps the pretrained features from being distorted by
a random head.

Samples come from many origins before the forecast origin; the last ``horizon`` periods of the
panel are held out as the validation window for early stopping (targets after the validation
origin are masked out of training samples). A share of samples has its history hidden, and
every item launched inside the panel adds a launch sample (origin just before its first sale),
so that the cold-start regime is learned by the same network. The best state on validation is
kept; when fine-tuning does not improve on stage 1 the stage-1 state is kept and the fit
report says so.

The class is thin; each job lives in its own module: settings and their checks
(:mod:`.settings`), training (:mod:`.training`), prediction (:mod:`.prediction`, the one path
every forecast takes), persistence (:mod:`.persistence`) and item texts to vectors
(:mod:`.encoding`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from salesformer.data.contract import DATE, ITEM_ID, Panel
from salesformer.errors import ConfigError, DataValidationError, NotFittedError
from salesformer.forecasting.protocol import (
    DEFAULT_QUANTILES,
    Forecaster,
    check_horizon,
    check_quantiles,
    quantile_column,
    resolve_future,
)
from salesformer.models.lm.calibration import QuantileCalibration
from salesformer.models.lm.context import TrainingContext

# ``_encode_tokens``, ``_tensors``, ``_texts_for`` and ``shared_encoder``: names other modules
# and tests import from here, kept as aliases of their new homes.
from salesformer.models.lm.encoding import encode_tokens as _encode_tokens
from salesformer.models.lm.encoding import texts_for as _texts_for
from salesformer.models.lm.encoding import trainable_encoder
from salesformer.models.lm.launch import LaunchBlend, network_means
from salesformer.models.lm.persistence import load_lm, save_lm
from salesformer.models.lm.prediction import (
    check_new_items,
    forecast_samples,
    forecast_wide,
    positions,
)
from salesformer.models.lm.prediction import tensors as _tensors
from salesformer.models.lm.samples import Standardizer, Wide, cold_samples
from salesformer.models.lm.settings import FINETUNE_MODES, LMSettings
from salesformer.models.lm.training import new_head, train
from salesformer.text.device import select_device
from salesformer.text.encoder import Encoder, shared_encoder


class FittedLM:
    """What a fit learns (set by :func:`~.training.train` or :func:`~.persistence.load_lm`)."""

    encoder_info_: dict[str, Any]
    context_: int
    standardizer_: Standardizer
    tokens_: dict[str, Any]
    head_: Any
    encoder_model_: Any
    item_ids_: np.ndarray
    item_vectors_: np.ndarray
    calibration_: QuantileCalibration
    fit_report_: dict[str, Any]
    #: The launch regression blended into ``predict_new`` (None: the network alone).
    launch_blend_: LaunchBlend | None = None
    #: Where forecasts run (:meth:`LMForecaster.use_device`); never saved, a load is on the CPU.
    prediction_device_: str = "cpu"


@dataclass
class LMForecaster(LMSettings, FittedLM, Forecaster):
    """Pretrained text encoder + forecasting head (see the module docstring).

    The settings and their meaning are those of :class:`~.settings.LMSettings`.
    """

    name = "LM"
    explainer = "salesformer.explain.lm:explain_lm"
    explanation_options = ("n_steps", "word_steps", "baseline_token")

    def _fit(self, panel: Panel, context: TrainingContext | None = None) -> None:
        """Train on ``panel``; ``context`` runs the loop as one rank of a group (default: local)."""
        train(self, panel, context)

    def _trainable_encoder(self, base: Encoder) -> Any:
        return trainable_encoder(self, base)

    def _new_head(self, text_dim: int, n_future: int) -> Any:
        return new_head(self, text_dim, n_future)

    def _predict(
        self,
        horizon: int,
        future: pd.DataFrame,
        quantiles: tuple[float, ...],
        texts: dict[str, str] | None = None,
    ) -> pd.DataFrame:
        self.check_horizon(horizon)
        panel = self.panel_
        wide = Wide.from_panel(panel, future, horizon=self.horizon)
        vectors = self.item_vectors_[positions(self.item_ids_, wide.item_ids)]
        if texts:
            rows = positions(wide.item_ids, np.asarray(list(texts), dtype=str))
            vectors = vectors.copy()
            vectors[rows] = self.encode_texts(list(texts.values()))
        values = forecast_wide(self, wide, vectors, horizon, quantiles)
        dates = panel.future_dates(panel.last_date, horizon).to_numpy()
        return self._frame(wide.item_ids, dates, values, quantiles)

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
        self.check_horizon(horizon)
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
        self.check_horizon(horizon)
        levels = check_quantiles(quantiles)
        frame = check_new_items(new_items)
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
        vectors = self.encode_texts(_texts_for(frame, frame[ITEM_ID].to_numpy()))
        values = forecast_samples(self, samples, vectors, horizon, levels)
        if self.launch_blend_ is not None:
            mean = network_means(self, samples, vectors, horizon)
            values = self.launch_blend_.apply(values, vectors, price, launches, panel.freq, mean)
        dates = np.concatenate(
            [
                pd.date_range(start, periods=horizon, freq=panel.freq).to_numpy()
                for start in launches
            ]
        )
        return self._frame(frame[ITEM_ID].to_numpy(), dates, values, levels)

    def check_horizon(self, horizon: int) -> None:
        check_horizon(horizon)
        if horizon > self.horizon:
            raise ConfigError(
                f"the LM forecaster was fitted for horizon {self.horizon} and cannot forecast "
                f"{horizon} periods; fit it with horizon >= {horizon} (--horizon {horizon})"
            )

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Text vectors of ``texts`` with the model's (possibly fine-tuned) encoder.

        The encoder runs on :attr:`prediction_device_`; the vectors are CPU arrays.
        """
        base = shared_encoder(self.encoder, self.max_length, self.pooling)
        device = self.prediction_device_
        if self.encoder_model_ is None:
            return base.encode(texts, cache_dir=self.cache_dir, device=device)
        tokens = base.tokenize(texts)
        return _encode_tokens(self.encoder_model_, tokens, 256, base.pooling, device)

    def use_device(self, device: str = "cpu") -> str:
        """Forecast on ``device`` from now on: the head and fine-tuned encoder move there.

        ``auto`` takes a GPU when torch sees one, else the CPU (:func:`select_device`);
        ``cuda`` or ``mps`` where there is none is a :class:`ConfigError`. Forecasts come
        back as CPU arrays. The device is not saved (``save`` writes CPU tensors) and a
        loaded model forecasts on the CPU until this is called.

        Returns:
            The device chosen (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``).
        """
        if not hasattr(self, "head_"):
            raise NotFittedError(
                "LMForecaster is not fitted yet; call .fit(panel) before .use_device(device)"
            )
        chosen = select_device(device).device
        self.head_.to(chosen)
        if self.encoder_model_ is not None:
            self.encoder_model_.to(chosen)
        self.prediction_device_ = chosen
        return chosen

    _encode_texts = encode_texts  # the name before it was public

    def _frame(
        self,
        item_ids: np.ndarray,
        dates: np.ndarray,
        values: np.ndarray,
        quantiles: tuple[float, ...],
    ) -> pd.DataFrame:
        """A forecast frame from :func:`forecast_wide`'s values (item-major rows).

        ``dates`` holds the horizon's dates: shared by every item, or one run per item.
        """
        horizon = len(values) // max(len(item_ids), 1)
        frame = pd.DataFrame(
            {
                ITEM_ID: np.repeat(item_ids.astype(str), horizon),
                DATE: dates if len(dates) == len(values) else np.tile(dates, len(item_ids)),
            }
        )
        frame[self.name] = values[:, 0]
        for j, q in enumerate(quantiles):
            frame[quantile_column(self.name, q)] = values[:, j + 1]
        return frame

    def save(self, folder: str | Path) -> Path:
        """Write the fitted model to ``folder`` (see :mod:`.persistence`)."""
        return save_lm(self, folder)

    @classmethod
    def load(cls, folder: str | Path, panel: bool = True) -> LMForecaster:
        """Read a model written by :meth:`save`; it predicts exactly as the saved one.

        Args:
            folder: the model folder.
            panel: read the training panel too. With False the model holds no panel (less
                memory) and can only forecast through :meth:`for_items`.
        """
        return load_lm(cls, folder, panel)

    @classmethod
    def load_for_parts(cls, folder: str | Path) -> LMForecaster:
        """The model without its training panel: parts bring their own (see ``for_items``)."""
        return cls.load(folder, panel=False)

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
        view.item_vectors_ = self.item_vectors_[positions(self.item_ids_, ids)]
        return view

    def _update(self, panel: Panel) -> LMForecaster:
        """The same weights, reading ``panel``'s history (see :meth:`Forecaster.update`).

        Items the fitted panel did not hold get their text vectors from the fitted encoder.
        """
        if not hasattr(self, "head_"):
            raise NotFittedError("LMForecaster is not fitted yet; call .fit(panel) first")
        ids = np.asarray(panel.item_ids, dtype=str)
        known = np.isin(ids, self.item_ids_)
        vectors = np.zeros((len(ids), self.item_vectors_.shape[1]), dtype=self.item_vectors_.dtype)
        vectors[known] = self.item_vectors_[positions(self.item_ids_, ids[known])]
        if not known.all():
            if panel.items is None:
                raise DataValidationError(
                    f"update: {int((~known).sum())} items are new to the LM and the panel has "
                    "no items table to read their text from; give the items table"
                )
            vectors[~known] = self.encode_texts(_texts_for(panel.items, ids[~known]))
        view = copy.copy(self)
        if hasattr(view, "tokens_"):  # the training items' tokens, not the view's items
            del view.tokens_
        view.panel_ = panel
        view.item_ids_ = ids
        view.item_vectors_ = vectors
        return view

    def shareable(self, horizon: int) -> LMForecaster:
        """A copy without the training panel and tokenised texts, for :meth:`for_items`."""
        self.check_horizon(horizon)
        lean = copy.copy(self)
        for attribute in ("panel_", "tokens_"):
            if hasattr(lean, attribute):
                delattr(lean, attribute)
        return lean


__all__ = [
    "FINETUNE_MODES",
    "LMForecaster",
    "_encode_tokens",
    "_tensors",
    "_texts_for",
    "shared_encoder",
]
