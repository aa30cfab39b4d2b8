"""The frozen-embedding cache filled in parallel by Ray actors.

:func:`encode_on_ray` looks the texts up in the embedding cache
(:class:`~salesformer.text.encoder.EmbeddingCache`), cuts the texts it lacks into chunks, and
encodes the chunks on Ray actors that load the encoder once each. The driver alone writes the
new vectors, as one cache shard, so the cache has one writer; a training fit then reads every
vector from the cache (or is handed them through Ray's object store) and encodes nothing.

The result equals :meth:`Encoder.encode` row for row: the missing texts are ordered and batched
as ``encode`` orders and batches them (chunks are whole multiples of its batch of 64), so every
text is encoded in the same batch, with the same padding, as in a local run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from salesformer.errors import ConfigError

#: Texts per encoding batch, as in :meth:`Encoder.encode`.
ENCODE_BATCH = 64
DEFAULT_CHUNK = 512


class _EncoderWorker:
    """A Ray actor holding one encoder; encodes chunks of texts without touching the cache."""

    def __init__(self, encoder_name: str, max_length: int, threads: int) -> None:
        from salesformer.text.encoder import import_torch, shared_encoder

        import_torch().set_num_threads(threads)
        self.encoder = shared_encoder(encoder_name, max_length)

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.encoder.encode(texts, batch_size=ENCODE_BATCH, use_cache=False)


def _check_chunk(chunk: int) -> int:
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ConfigError(f"chunk must be a whole number >= 1; got {chunk!r}")
    return ENCODE_BATCH * math.ceil(chunk / ENCODE_BATCH)  # whole encode batches per chunk


def encode_on_ray(
    encoder_name: str,
    texts: Sequence[str],
    *,
    max_length: int,
    cache_dir: str | Path | None = None,
    address: str | None = None,
    workers: int | None = None,
    chunk: int = DEFAULT_CHUNK,
    progress: Callable[[str], None] | None = None,
) -> np.ndarray:
    """Frozen embeddings of ``texts`` (float32, one row per text), missing ones encoded on Ray.

    Args:
        encoder_name: encoder name or local folder (as ``LMForecaster.encoder``).
        texts: the texts, in the order of the rows returned.
        max_length: tokens read per text (as ``LMForecaster.max_length``).
        cache_dir: folder of the embedding cache (None: the default cache).
        address: an existing Ray cluster; None starts a local Ray (or reuses this process's).
        workers: encoding actors (default: the cluster's CPUs, at most one per chunk).
        chunk: texts per actor call, rounded up to whole batches of 64.
        progress: called with a line on what is being encoded.

    Returns:
        The embeddings; equal to ``shared_encoder(encoder_name, max_length).encode(texts)``.
    """
    from salesformer.distributed.engine import check_workers, cluster_workers, ray_session
    from salesformer.text.encoder import EmbeddingCache, shared_encoder

    size = _check_chunk(chunk)
    check_workers(workers)
    base = shared_encoder(encoder_name, max_length)
    texts = [str(t) for t in texts]
    keys = [base.text_key(t) for t in texts]
    store = EmbeddingCache(cache_dir, base.key)
    known = base._cache
    if any(k not in known for k in keys):
        known.update(store.load())
    missing = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in known}.items())
    if missing:
        parts = [missing[start : start + size] for start in range(0, len(missing), size)]
        with ray_session(address, workers) as ray:
            n_actors = min(cluster_workers(ray, workers), len(parts))
            if progress is not None:
                progress(f"encoding {len(missing)} texts on {n_actors} Ray actors")
            actor = ray.remote(num_cpus=1)(_EncoderWorker)
            actors: list[Any] = [actor.remote(encoder_name, max_length, 1) for _ in range(n_actors)]
            pending = [
                actors[i % n_actors].encode.remote([text for _, text in part])
                for i, part in enumerate(parts)
            ]
            vectors = ray.get(pending)
            for handle in actors:
                ray.kill(handle)
        fresh = {
            key: row
            for part, block in zip(parts, vectors, strict=True)
            for (key, _), row in zip(part, block, strict=True)
        }
        known.update(fresh)
        store.add(fresh)
    if not texts:
        return np.zeros((0, base.dim), dtype=np.float32)
    return np.stack([known[k] for k in keys]).astype(np.float32)


__all__ = ["encode_on_ray"]
