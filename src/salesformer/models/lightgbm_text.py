"""LightGBM with the item text as static features: PCA-reduced frozen text embeddings.

Each item's text (:func:`salesformer.text.item_texts`) is embedded once by a frozen pretrained
encoder (:func:`salesformer.text.load_encoder`; the embeddings are cached on disk, so a second
fit re-encodes nothing), reduced by a principal component analysis fitted on the items of the
training panel, and given to :class:`~salesformer.models.lightgbm.LightGBMForecaster` as the
static features ``text_pc1 .. text_pc<k>`` (columns ``static_text_pc1 ..`` of the model).

The PCA is deterministic: components come from numpy's SVD of the centred embeddings, and
each component's sign is chosen so that its largest-magnitude loading is positive. An item of
the panel without text in the items table gets the mean embedding (all components 0).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from salesformer.data.contract import ITEM_ID, Panel
from salesformer.errors import ConfigError
from salesformer.forecasting.params import Constraint, Folder, Interval, Rule
from salesformer.models.lightgbm import LIGHTGBM_CONSTRAINTS, LightGBMForecaster
from salesformer.text import DEFAULT_ENCODER, item_texts, shared_encoder

TEXT_PC = "text_pc"
_MAX_COMPONENTS = 1024


def principal_components(vectors: np.ndarray, n_components: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and the first ``n_components`` principal axes (rows) of ``vectors``.

    The sign of each axis is fixed so that its largest-magnitude loading is positive, which
    makes the result independent of the SVD routine's sign choice.
    """
    data = np.asarray(vectors, dtype=np.float64)
    mean = data.mean(axis=0)
    _, _, vt = np.linalg.svd(data - mean, full_matrices=False)
    axes = vt[:n_components].copy()
    if len(axes):
        pivots = axes[np.arange(len(axes)), np.argmax(np.abs(axes), axis=1)]
        axes *= np.where(pivots < 0, -1.0, 1.0)[:, None]
    return mean, axes


@dataclass
class LightGBMTextForecaster(LightGBMForecaster):
    """:class:`LightGBMForecaster` plus PCA components of the item text embeddings.

    Attributes:
        encoder: encoder name (``"all-MiniLM-L6-v2"``, a Hugging Face name) or a local folder
            written by ``save_pretrained``.
        text_components: principal components kept, at most ``n_items - 1`` and the
            embedding width.
        cache_dir: folder of the embedding cache; None uses ``$SALESFORMER_CACHE/embeddings``
            or ``~/.cache/salesformer/embeddings``.

    Every setting of :class:`LightGBMForecaster` applies as well.
    """

    name = "LightGBM-text"

    encoder: str = DEFAULT_ENCODER
    text_components: int = 16
    cache_dir: str | None = None

    constraints: ClassVar[Mapping[str, Constraint]] = {
        **LIGHTGBM_CONSTRAINTS,
        "encoder": Rule(
            f"be an encoder name or a local model folder, e.g. {DEFAULT_ENCODER!r}",
            lambda name: isinstance(name, str | os.PathLike) and bool(str(name).strip()),
        ),
        "text_components": Interval(int, 1, _MAX_COMPONENTS),
        "cache_dir": Folder(),
    }

    def static_features(self, panel: Panel) -> pd.DataFrame | None:
        """``text_pc1 ..`` per item of the panel, indexed by ``item_id`` (see the module docs)."""
        if panel.items is None:
            raise ConfigError(
                f"{self.name} needs an items table with item text, and the panel has none; "
                "fit with items=<table with item_id and text> (CLI: prepare the panel with "
                "--items), or use the model LightGBM"
            )
        ids = pd.Index(panel.item_ids, dtype=str)
        texts = item_texts(panel.items)
        texts = texts[~texts.index.duplicated(keep="last")].str.strip()
        texts = texts[(texts != "") & texts.index.isin(ids)]
        n_components = min(self.text_components, len(texts) - 1)
        if n_components < 1:  # fewer than two texts: no direction to learn
            return None
        encoder = shared_encoder(str(self.encoder))
        vectors = encoder.encode(
            texts.tolist(), cache_dir=None if self.cache_dir is None else str(self.cache_dir)
        )
        n_components = min(n_components, vectors.shape[1])
        mean, axes = principal_components(vectors, n_components)
        scores = (vectors.astype(np.float64) - mean) @ axes.T
        columns = [f"{TEXT_PC}{j + 1}" for j in range(n_components)]
        frame = pd.DataFrame(scores, index=pd.Index(texts.index, name=ITEM_ID), columns=columns)
        return frame.reindex(ids, fill_value=0.0).rename_axis(ITEM_ID)
