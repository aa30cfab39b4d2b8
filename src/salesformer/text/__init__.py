"""Text side of salesformer: pretrained encoders and item texts.

Imports of torch and transformers happen when an encoder is loaded, not on import.
"""

from __future__ import annotations

from salesformer.text.encoder import (
    DEFAULT_ENCODER,
    EmbeddingCache,
    Encoder,
    item_texts,
    load_encoder,
    shared_encoder,
)

__all__ = [
    "DEFAULT_ENCODER",
    "EmbeddingCache",
    "Encoder",
    "item_texts",
    "load_encoder",
    "shared_encoder",
]
