"""Checks that word attributions are faithful: do they point at the words that matter?

Two checks, used by the test suite and ``benchmarks/explain_faithfulness.py``:

* **top words vs truth**: on a catalogue where we know which attributes drive demand (the
  synthetic one: theme, tier, material), a word is *informative* when whether an item's text
  holds it is fixed by those attributes and differs between them (``Christmas``,
  ``festive``, ``Luxury``, ``bestselling``, ``ceramic``); product nouns, categories,
  promotion copy and filler are not. The share of top-attributed words that are informative
  is compared with the share of informative words among all words the model read (chance);
* **deletion**: deleting the ``k`` top-attributed words from the text must change the forecast
  more than deleting ``k`` words drawn at random.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from salesformer.data.contract import ITEM_ID
from salesformer.explain.result import Explanation
from salesformer.text.encoder import item_texts

_WORD = re.compile(r"[^\W\d_]+")


def words_of(text: str) -> list[str]:
    """The alphabetic words of a text, lowercased (digits and punctuation dropped)."""
    return [w.lower() for w in _WORD.findall(text)]


def informative_vocabulary(
    items: pd.DataFrame, truth: pd.DataFrame, attributes: Sequence[str]
) -> set[str]:
    """Words whose presence in an item's text is a function of ``attributes``, and not constant.

    Args:
        items: the items table (``item_id`` and the text or its columns).
        truth: ``item_id`` and the latent ``attributes`` of each item.
        attributes: columns of ``truth`` that drive demand.
    """
    texts = item_texts(items)
    latent = truth.set_index(truth[ITEM_ID].astype(str))[list(attributes)]
    presence: dict[str, set[str]] = {}
    for item_id, text in texts.items():
        for word in set(words_of(str(text))):
            presence.setdefault(word, set()).add(str(item_id))
    keys = latent.astype(str).agg("|".join, axis=1)
    ids = list(keys.index)
    vocabulary = set()
    for word, holders in presence.items():
        has = pd.Series([i in holders for i in ids], index=ids)
        per_group = has.groupby(keys).agg(["min", "max"])
        determined = bool((per_group["min"] == per_group["max"]).all())
        varies = bool(has.any() and not has.all())
        if determined and varies:
            vocabulary.add(word)
    return vocabulary


def candidate_words(explanation: Explanation) -> pd.DataFrame:
    """The explanation's words that are alphabetic (what the checks rank and delete)."""
    words = explanation.words
    keep = words["word"].astype(str).map(lambda w: bool(_WORD.fullmatch(w)))
    return words[keep].reset_index(drop=True)


def top_word_hits(explanation: Explanation, vocabulary: set[str], k: int) -> tuple[float, float]:
    """Share of the ``k`` top-attributed words in ``vocabulary``, and the chance share.

    Words are ranked by absolute attribution; chance is the share of the read alphabetic
    words that are in ``vocabulary``.
    """
    words = candidate_words(explanation)
    if words.empty:
        return float("nan"), float("nan")
    lowered = words["word"].str.lower()
    order = words["attribution"].abs().sort_values(ascending=False, kind="stable").index[:k]
    hits = float(lowered.loc[order].isin(vocabulary).mean())
    chance = float(lowered.isin(vocabulary).mean())
    return hits, chance


def without_words(text: str, spans: Sequence[tuple[int, int]]) -> str:
    """``text`` with the characters of ``spans`` removed (and doubled spaces closed)."""
    out, cursor = [], 0
    for start, end in sorted(spans):
        out.append(text[cursor:start])
        cursor = max(cursor, end)
    out.append(text[cursor:])
    return re.sub(r"\s{2,}", " ", "".join(out)).strip()


def deletion_effects(
    model: Any,
    explanation: Explanation,
    k: int,
    n_random: int,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """Mean |change| of the total forecast when deleting the top-``k`` vs ``k`` random words.

    Returns ``(top, random)``: the absolute change of the forecast summed over the horizon,
    for the ``k`` words of largest absolute attribution, and averaged over ``n_random`` draws
    of ``k`` distinct words.
    """
    from salesformer.explain.lm import forecast_with_texts

    words = candidate_words(explanation)
    k = min(k, len(words))
    if k == 0:
        return 0.0, 0.0
    spans = list(zip(words["start"].astype(int), words["end"].astype(int), strict=True))
    order = words["attribution"].abs().sort_values(ascending=False, kind="stable").index
    texts = [without_words(explanation.text, [spans[i] for i in order[:k]])]
    for _ in range(n_random):
        chosen = rng.choice(len(words), size=k, replace=False)
        texts.append(without_words(explanation.text, [spans[i] for i in chosen]))
    horizon = explanation.horizon
    forecasts = forecast_with_texts(model, explanation.item_id, texts, horizon).sum(axis=1)
    original = float(explanation.forecast["forecast"].sum())
    change = np.abs(forecasts - original)
    return float(change[0]), float(change[1:].mean())


def item_vocabulary(truth: pd.DataFrame, item_id: str) -> set[str]:
    """The words the synthetic generator made informative for one item (lowercased).

    ``truth`` is :attr:`SyntheticCatalogue.truth`: its ``informative_words`` hold the item's
    tier, material and theme words.
    """
    row = truth.loc[truth[ITEM_ID].astype(str) == str(item_id), "informative_words"]
    return set(str(row.iloc[0]).lower().split()) if len(row) else set()


def evaluate_faithfulness(
    model: Any,
    truth: pd.DataFrame,
    item_ids: Sequence[str],
    *,
    k: int = 3,
    n_random: int = 5,
    n_steps: int = 8,
    seed: int = 0,
) -> pd.DataFrame:
    """Both checks on each item: one row per item (see the module docstring).

    Columns: ``item_id``, ``top1`` and ``topk`` (share of the 1 and ``k`` top-attributed
    words that are the item's informative words), ``chance`` (their share among the read
    words), ``mass`` (share of the absolute attribution on them), ``delete_top`` and
    ``delete_random`` (relative change of the total forecast when deleting the top-``k`` or
    ``k`` random words), ``relative_gap`` (completeness gap of the word attributions) and
    ``seconds`` (time to explain the item).
    """
    import time

    from salesformer.explain.lm import explain_lm

    rng = np.random.default_rng(seed)
    rows = []
    for item_id in item_ids:
        started = time.perf_counter()
        explanation = explain_lm(model, str(item_id), n_steps=n_steps, word_steps=False)
        seconds = time.perf_counter() - started
        vocabulary = item_vocabulary(truth, str(item_id))
        top1, chance = top_word_hits(explanation, vocabulary, 1)
        topk, _ = top_word_hits(explanation, vocabulary, k)
        words = candidate_words(explanation)
        weight = words["attribution"].abs()
        mass = float(weight[words["word"].str.lower().isin(vocabulary)].sum() / weight.sum())
        top, random = deletion_effects(model, explanation, k, n_random, rng)
        total = max(abs(float(explanation.forecast["forecast"].sum())), 1e-9)
        rows.append(
            {
                "item_id": str(item_id),
                "top1": top1,
                "topk": topk,
                "chance": chance,
                "mass": mass,
                "delete_top": top / total,
                "delete_random": random / total,
                "relative_gap": explanation.completeness["words"]["relative_gap"],
                "seconds": seconds,
            }
        )
    return pd.DataFrame(rows)


__all__ = [
    "candidate_words",
    "deletion_effects",
    "evaluate_faithfulness",
    "informative_vocabulary",
    "item_vocabulary",
    "top_word_hits",
    "without_words",
    "words_of",
]
