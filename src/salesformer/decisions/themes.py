"""Themes of a catalogue: groups of items whose texts read alike, named by their own words.

Each item's text (:func:`salesformer.text.item_texts`) is embedded by a pretrained encoder
(all-MiniLM-L6-v2 by default, offline, through the on-disk embedding cache); the L2-normalised
embeddings are clustered with k-means. Optionally (``season_weight > 0``) each item's seasonal
sales shape is appended to its embedding, so that a theme also groups items that sell in the
same months; the default, 0, clusters on the text alone.

A theme is named by its most distinctive words (a class-based TF-IDF): a word scores
``share of the theme's items whose text holds it x log(1 + n_items / items holding it
anywhere)``; stop words, numbers, one-letter tokens and generic retail words ("set", "pack",
"assorted", ...) never name a theme, and a plural is dropped when its singular is already in the
name. For example ``"christmas / tree / decoration"``.

The number of themes is a setting; by default ``round(sqrt(n_items / 5))`` clipped to
``[2, 30]`` (4,706 Online Retail II products give 30; 200 products give 6), chosen by reading
the themes it gives (``benchmarks/trends.py``), not by a score.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from salesformer.data.contract import DATE, ITEM_ID, SALES, TEXT, Panel
from salesformer.errors import ConfigError, DataValidationError

THEME = "theme"
THEME_NAME = "theme_name"
MIN_THEMES = 2
MAX_DEFAULT_THEMES = 30
ITEMS_PER_THEME_ROOT = 5
#: Words of the item text template and of shop listings that say nothing about a theme.
GENERIC_WORDS = frozenset(
    {
        "category",
        "promotion",
        "set",
        "sets",
        "pack",
        "assorted",
        "asstd",
        "asst",
        "ass",
        "small",
        "large",
        "medium",
        "mini",
        "design",
        "designs",
        "of",
    }
)
_TOKEN = re.compile(r"[^\W\d_]{2,}")


@dataclass
class ThemeSettings:
    """How themes are found and named.

    Attributes:
        n_themes: number of themes; None picks ``round(sqrt(n_items / 5))`` in ``[2, 30]``.
        encoder: text encoder, a name or a local folder (see :func:`salesformer.text.load_encoder`).
        season_weight: weight of each item's seasonal sales shape next to its unit-length text
            embedding, in ``[0, 10]``; 0 clusters on text alone.
        name_words: words in a theme's name, 1 to 10.
        seed: k-means seed; the same seed and data give the same themes.
        threads: torch threads while encoding.
    """

    n_themes: int | None = None
    encoder: str = "all-MiniLM-L6-v2"
    season_weight: float = 0.0
    name_words: int = 3
    seed: int = 0
    threads: int = 1

    def __post_init__(self) -> None:
        n = self.n_themes
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < MIN_THEMES):
            raise ConfigError(
                f"n_themes must be a whole number >= {MIN_THEMES} or None (automatic); got {n!r}"
            )
        weight = self.season_weight
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 10:
            raise ConfigError(f"season_weight must be a number in [0, 10]; got {weight!r}")
        for setting, low, high in (("name_words", 1, 10), ("threads", 1, 256), ("seed", 0, 2**31)):
            value = getattr(self, setting)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(
                    f"{setting} must be a whole number in [{low}, {high}]; got {value!r}"
                )


@dataclass(frozen=True)
class Themes:
    """Found themes.

    Attributes:
        assignment: one row per item: ``item_id``, ``theme`` (0..k-1), ``theme_name``, ``text``.
        names: theme number -> name.
        words: theme number -> its naming words, most distinctive first.
    """

    assignment: pd.DataFrame
    names: dict[int, str]
    words: dict[int, list[str]]


def default_n_themes(n_items: int) -> int:
    """``round(sqrt(n_items / 5))`` clipped to ``[2, 30]`` (and to ``n_items``)."""
    rule = round(math.sqrt(n_items / ITEMS_PER_THEME_ROOT))
    return max(1, min(n_items, max(MIN_THEMES, min(MAX_DEFAULT_THEMES, rule))))


def text_tokens(text: str) -> set[str]:
    """Distinct lower-case words of ``text``: no stop words, numbers or generic words."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    words = _TOKEN.findall(str(text).lower())
    return {w for w in words if w not in ENGLISH_STOP_WORDS and w not in GENERIC_WORDS}


def theme_words(texts: list[str], labels: np.ndarray, n_words: int = 3) -> dict[int, list[str]]:
    """The ``n_words`` most distinctive words of each label (class-based TF-IDF, see above).

    A word must occur in at least two of the theme's items (or in its only item) to name it.
    """
    tokens = [text_tokens(t) for t in texts]
    everywhere: Counter[str] = Counter()
    for words in tokens:
        everywhere.update(words)
    n_items = len(tokens)
    out: dict[int, list[str]] = {}
    for label in sorted({int(v) for v in labels}):
        members = np.flatnonzero(labels == label)
        counts: Counter[str] = Counter()
        for i in members:
            counts.update(tokens[i])
        floor = 2 if len(members) > 1 else 1
        scores = {
            w: (n / len(members)) * math.log(1.0 + n_items / everywhere[w])
            for w, n in counts.items()
            if n >= floor
        }
        ranked = sorted(scores, key=lambda w: (-scores[w], w))
        chosen: list[str] = []
        for word in ranked:
            if any(_same_word(word, kept) for kept in chosen):
                continue
            chosen.append(word)
            if len(chosen) == n_words:
                break
        out[label] = chosen
    return out


def _same_word(a: str, b: str) -> bool:
    """Singular and plural of one word ("heart", "hearts"; "box", "boxes")."""
    short, long = sorted((a, b), key=len)
    return long in (short + "s", short + "es")


def season_shapes(panel: Panel, item_ids: np.ndarray) -> np.ndarray:
    """Each item's seasonal sales shape: mean log sales by month, centred, unit length.

    Items with no sales give a row of zeros (the text alone places them).
    """
    sales = panel.sales[[ITEM_ID, DATE, SALES]]
    month = sales[DATE].dt.month
    table = (
        np.log1p(sales[SALES].clip(lower=0.0))
        .groupby([sales[ITEM_ID], month])
        .mean()
        .unstack()
        .reindex(index=item_ids, columns=range(1, 13))
    )
    centred = table.sub(table.mean(axis=1), axis=0).fillna(0.0).to_numpy()
    norms = np.linalg.norm(centred, axis=1, keepdims=True)
    return np.divide(centred, norms, out=np.zeros_like(centred), where=norms > 0)


def embed_texts(
    texts: list[str], settings: ThemeSettings, cache_dir: str | Path | None
) -> np.ndarray:
    """Unit-length embeddings of ``texts`` from the settings' encoder (cached on disk)."""
    from salesformer.text import shared_encoder
    from salesformer.text.encoder import import_torch

    torch = import_torch()
    before = torch.get_num_threads()
    torch.set_num_threads(settings.threads)
    try:
        vectors = shared_encoder(settings.encoder).encode(texts, cache_dir=cache_dir)
    finally:
        torch.set_num_threads(before)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def find_themes(
    panel: Panel,
    settings: ThemeSettings | None = None,
    *,
    cache_dir: str | Path | None = None,
) -> Themes:
    """Cluster the panel's items into themes from their text (see the module docstring).

    Args:
        panel: a panel with an items table; every item of the panel is assigned a theme.
        settings: how to find and name themes (defaults: :class:`ThemeSettings`).
        cache_dir: embedding cache folder (default: ``$SALESFORMER_CACHE/embeddings``).

    Raises:
        DataValidationError: when the panel has no items table.
        ConfigError: when ``n_themes`` exceeds the number of items.
    """
    from sklearn.cluster import KMeans

    from salesformer.text import item_texts

    settings = settings or ThemeSettings()
    if panel.items is None:
        raise DataValidationError(
            "themes need item texts but the panel has no items table; prepare the panel with "
            "an items file (item_id, text) or pass items to validate_panel"
        )
    ids = np.asarray(panel.item_ids).astype(str)
    texts = item_texts(panel.items).reindex(ids).fillna("")
    n_themes = settings.n_themes or default_n_themes(len(ids))
    if n_themes > len(ids):
        raise ConfigError(
            f"asked for {n_themes} themes but the panel has {len(ids)} items; "
            f"ask for at most {len(ids)} themes"
        )
    features = embed_texts(texts.tolist(), settings, cache_dir)
    if settings.season_weight > 0:
        shapes = season_shapes(panel, ids)
        features = np.hstack([features, settings.season_weight * shapes])
    model = KMeans(n_clusters=n_themes, n_init=4, random_state=settings.seed)
    raw = model.fit_predict(features.astype(np.float64))
    labels = _number_by_size(raw)
    words = theme_words(texts.tolist(), labels, settings.name_words)
    names = {k: " / ".join(w) if w else f"theme {k}" for k, w in words.items()}
    assignment = pd.DataFrame(
        {
            ITEM_ID: ids,
            THEME: labels,
            THEME_NAME: [names[int(k)] for k in labels],
            TEXT: texts.to_numpy(),
        }
    )
    return Themes(assignment=assignment, names=names, words=words)


def _number_by_size(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters 0..k-1 from the largest to the smallest (ties: first seen)."""
    sizes = pd.Series(labels).value_counts(sort=False)
    order = sorted(sizes.index, key=lambda c: (-sizes[c], int(np.argmax(labels == c))))
    mapping = {old: new for new, old in enumerate(order)}
    return np.array([mapping[v] for v in labels], dtype=int)
