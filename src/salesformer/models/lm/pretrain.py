"""Domain pretraining of the text encoder on sales curves (``pretrain="curves"``).

Before the head and the forecasting fine-tune, the encoder (its LoRA adapter, or every weight
with ``finetune="full"``) learns to place the texts of products whose sales curves look alike
close together. Only the training part of the panel is read: the periods up to the
validation origin (the plan's ``target_limit``), so the stage sees nothing the keep rule is
judged on.

The curve of an item: ``log1p`` of its sales over the periods up to that origin, on the
calendar, with a trailing mean over ``max(1, round(context / 13))`` periods (4 weeks of weekly
data, 4 days of daily data) against intermittency; periods before its first sale or out of
stock are missing. Two items' similarity is the Pearson correlation of their curves over the
periods both have (at least ``max(4, min(horizon, context // 2))`` of them): a shape, free of
the level. Short-lived products launched at different times compare on the periods they
share, so a catalogue of products sold for a few weeks each still finds neighbours. Each
item's positives are its ``pretrain_neighbours`` most correlated items (correlation above 0).

The objective is the in-batch contrastive loss the sentence encoders were themselves trained
with (multiple-negatives ranking, InfoNCE): a batch holds anchors and one random positive of
each; the cosine similarities, divided by a temperature of 0.05, score each anchor against
every positive of the batch, and cross-entropy (both directions) asks for its own. It reads
only the neighbour ranking, so the noise in the correlations of lumpy weekly sales sets no
target scale, and it keeps the encoder's geometry (cosine) rather than learning a new one.

A tenth of the eligible items are held out of the pairs; the report gives the
*neighbour rank* (:func:`neighbour_rank`: how high an item's curve neighbours rank among all
items by text cosine, 0.5 for chance) on trained and held-out items, before and after.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from salesformer.models.lm.encoding import checkpointed_layers_train, pooled
from salesformer.models.lm.samples import Wide
from salesformer.text.encoder import import_torch

#: Fewest items with a curve neighbour for the stage to run (fewer: skipped with a note).
MIN_ITEMS = 32
#: Most items whose curves are compared (a seeded sample of larger catalogues).
MAX_POOL = 8192
#: Pairs per epoch: every anchor once, but at most ``MAX_PAIRS`` (the stage's cost does not
#: grow with the catalogue past it) and at least ``MIN_PAIRS`` (small catalogues pass over
#: their anchors several times).
MAX_PAIRS = 1024
MIN_PAIRS = 512
TEMPERATURE = 0.05
HELD_OUT_SHARE = 0.1


@dataclass
class CurveNeighbours:
    """Items with a sales curve and their most similar items by curve.

    Attributes:
        items: the eligible items (rows of the wide arrays).
        neighbours: ``(len(items), k)`` positions in ``items`` of each item's neighbours.
        valid: which of those neighbours count (correlation above 0, enough common periods).
        train: which positions of ``items`` the pairs may use (the rest is held out).
    """

    items: np.ndarray
    neighbours: np.ndarray
    valid: np.ndarray
    train: np.ndarray

    @property
    def anchors(self) -> np.ndarray:
        """Positions of trained items with at least one trained neighbour."""
        ok = self.valid & self.train[self.neighbours]
        return np.flatnonzero(self.train & ok.any(axis=1))


def curves(wide: Wide, end: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Every item's ``log1p`` sales over periods ``0 .. end - 1`` with a trailing mean over
    ``width`` periods, and the mask of the periods that count (on sale, in stock)."""
    sales = np.log1p(np.clip(wide.sales[:, :end], 0, None))
    mask = np.arange(end)[None, :] >= wide.first[:, None]
    if wide.unavailable is not None:
        mask &= ~wide.unavailable[:, :end]
    values = np.where(mask, sales, 0.0)
    total = np.cumsum(values, axis=1)
    count = np.cumsum(mask.astype(np.int64), axis=1)
    total[:, width:] -= total[:, :-width].copy()
    count[:, width:] -= count[:, :-width].copy()
    smoothed = np.where(count > 0, total / np.maximum(count, 1), 0.0)
    return smoothed.astype(np.float32), mask


def curve_neighbours(
    wide: Wide,
    end: int,
    width: int,
    min_overlap: int,
    k: int,
    rng: np.random.Generator,
) -> CurveNeighbours | str:
    """Each eligible item's ``k`` most correlated items over periods ``0 .. end - 1`` (curves
    smoothed over ``width`` periods), or the reason the stage is skipped."""
    values, mask = curves(wide, end, width)
    counts = mask.sum(axis=1)
    centred = values - (values * mask).sum(axis=1, keepdims=True) / np.maximum(counts, 1)[:, None]
    spread = np.sqrt(((centred * mask) ** 2).sum(axis=1))
    eligible = np.flatnonzero((counts >= min_overlap) & (spread > 1e-6))
    if len(eligible) > MAX_POOL:
        eligible = np.sort(rng.choice(eligible, MAX_POOL, replace=False))
    need = f"needs {MIN_ITEMS} items with at least {min_overlap} periods of sales that vary"
    if len(eligible) < MIN_ITEMS:
        return (
            f"skipped: {len(eligible)} items have a sales curve in the periods up to "
            f"{wide.dates[end - 1].date()} (before the validation window); the stage {need}"
        )
    top, valid = _top_neighbours(values[eligible], mask[eligible], min_overlap, k)
    train = np.ones(len(eligible), dtype=bool)
    held = rng.choice(len(eligible), max(1, int(HELD_OUT_SHARE * len(eligible))), replace=False)
    train[held] = False
    found = CurveNeighbours(eligible, top, valid, train)
    if len(found.anchors) < MIN_ITEMS:
        return (
            f"skipped: {len(found.anchors)} items have a positively correlated curve "
            f"neighbour among {len(eligible)} items with a sales curve; the stage {need}"
        )
    return found


def _top_neighbours(
    values: np.ndarray, mask: np.ndarray, min_overlap: int, k: int, block: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's ``k`` most correlated other rows (Pearson over the periods both have, at
    least ``min_overlap`` of them), most similar first, and which of them correlate above 0."""
    m = mask.astype(np.float32)
    x = values * m
    k = min(k, len(values) - 1)
    tops, valids = [], []
    for start in range(0, len(values), block):
        rows = slice(start, min(start + block, len(values)))
        corr, overlap = _masked_correlation(x[rows], m[rows], x, m)
        corr[overlap < min_overlap] = -np.inf
        corr[np.arange(corr.shape[0]), np.arange(start, start + corr.shape[0])] = -np.inf
        top = np.argpartition(-corr, k - 1, axis=1)[:, :k]
        found = np.take_along_axis(corr, top, axis=1)
        order = np.argsort(-found, axis=1)
        tops.append(np.take_along_axis(top, order, axis=1))
        valids.append(np.take_along_axis(found, order, axis=1) > 0)
    return np.concatenate(tops), np.concatenate(valids)


def _masked_correlation(
    x: np.ndarray, m: np.ndarray, y: np.ndarray, n_mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pearson correlation of rows of ``x`` with rows of ``y`` (values already zero where
    their masks ``m`` / ``n_mask`` are off) over the periods both have, and their count."""
    n = m @ n_mask.T
    sx = x @ n_mask.T  # row i's values over the periods row j has too
    sy = m @ y.T
    sxx = (x * x) @ n_mask.T
    syy = m @ (y * y).T
    safe = np.maximum(n, 1)
    cov = x @ y.T - sx * sy / safe
    var = np.maximum(sxx - sx * sx / safe, 0) * np.maximum(syy - sy * sy / safe, 0)
    corr = np.where(var > 1e-12, cov / np.sqrt(np.maximum(var, 1e-12)), 0.0)
    return corr.astype(np.float32), n


def neighbour_rank(vectors: np.ndarray, found: CurveNeighbours, rows: np.ndarray) -> float:
    """How high an item's curve neighbours rank among every item with a curve by the cosine of
    their text vectors: the mean over ``rows`` (positions in ``found.items``) and their valid
    neighbours of the share of the other items less similar than the neighbour (0.5: no
    better than chance, 1: the neighbours are the nearest texts). Rank-based, so a change of
    the space's overall spread does not move it."""
    v = vectors[found.items].astype(np.float64)
    v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    shares = []
    for start in range(0, len(rows), 512):
        part = rows[start : start + 512]
        sims = v[part] @ v.T
        sims[np.arange(len(part)), part] = -np.inf  # not itself
        ordered = np.sort(sims, axis=1)
        for k, row in enumerate(part):
            near = found.neighbours[row][found.valid[row]]
            if len(near):
                below = np.searchsorted(ordered[k], sims[k, near], side="left") - 1
                shares.append(float(np.mean(below / max(len(found.items) - 2, 1))))
    return float(np.mean(shares)) if shares else float("nan")


def pretrain_on_curves(
    settings: Any,
    encoder: Any,
    tokens: dict[str, Any],
    found: CurveNeighbours,
    seed: int,
    pooling: str = "mean",
    device: str = "cpu",
) -> list[float]:
    """Train ``encoder``'s trainable weights on the curve pairs; the loss of each epoch."""
    torch = import_torch()
    functional = torch.nn.functional
    rng = np.random.default_rng([seed, 15])
    parameters = [p for p in encoder.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        parameters, lr=settings.encoder_learning_rate(), weight_decay=settings.weight_decay
    )
    usable = found.valid & found.train[found.neighbours]
    anchors = found.anchors
    history = []
    for _ in range(settings.pretrain_epochs):
        encoder.eval()  # no dropout, as in the fine-tune
        checkpointed_layers_train(encoder)
        size = min(max(len(anchors), MIN_PAIRS), MAX_PAIRS)
        passes = -(-size // len(anchors))
        order = np.concatenate([rng.permutation(anchors) for _ in range(passes)])[:size]
        losses = []
        for start in range(0, len(order), settings.batch_items):
            batch = order[start : start + settings.batch_items]
            if len(batch) < 2:
                continue
            choices = [found.neighbours[a][usable[a]] for a in batch]
            positive = np.array([c[rng.integers(len(c))] for c in choices])
            left, right = found.items[batch], found.items[positive]
            unique, inverse = np.unique(np.concatenate([left, right]), return_inverse=True)
            vectors = functional.normalize(pooled(encoder, tokens, unique, pooling, device), dim=1)
            index = torch.from_numpy(inverse).to(vectors.device)
            a, b = vectors[index[: len(batch)]], vectors[index[len(batch) :]]
            logits = a @ b.T / TEMPERATURE
            same = (
                (left[:, None] == right[None, :])
                | (left[:, None] == left[None, :])
                | (right[:, None] == right[None, :])
            )
            np.fill_diagonal(same, False)  # a repeated item or its positive is no negative
            same = torch.from_numpy(same).to(vectors.device)
            logits = logits.masked_fill(same, -1e4)
            target = torch.arange(len(batch), device=vectors.device)
            loss = (
                functional.cross_entropy(logits, target)
                + functional.cross_entropy(logits.T, target)
            ) / 2
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, settings.grad_clip)
            optimizer.step()
            losses.append(float(loss.detach()))
        history.append(round(float(np.mean(losses)), 5) if losses else float("nan"))
    encoder.eval()
    return history


def curve_report(found: CurveNeighbours, before: np.ndarray, after: np.ndarray) -> dict[str, Any]:
    """The neighbour rank on trained and held-out items, before and after the stage."""
    held = np.flatnonzero(~found.train)
    trained = found.anchors
    return {
        "items_with_curve": len(found.items),
        "anchors": len(trained),
        "held_out": len(held),
        "neighbour_rank": {
            "trained_before": round(neighbour_rank(before, found, trained), 5),
            "trained_after": round(neighbour_rank(after, found, trained), 5),
            "held_out_before": round(neighbour_rank(before, found, held), 5),
            "held_out_after": round(neighbour_rank(after, found, held), 5),
        },
    }


def timed_seconds(started: float) -> float:
    """Seconds since ``started`` (``time.perf_counter``), rounded for the report."""
    return round(time.perf_counter() - started, 2)
