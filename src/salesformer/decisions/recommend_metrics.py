"""Ranking metrics of recommendations: precision@k, recall@k, MAP@k and the PR curve.

A **recommendation frame** has ``customer_id``, ``rank`` (1 = first) and ``item_id``; the
**truth** is the set of distinct items each customer bought in the evaluation period. Only
customers with at least one purchase in that period are scored (a customer who buys nothing
has no relevant item). For one customer with relevant set ``R`` and top-k list ``L``:

* ``precision@k = |L ∩ R| / k`` (a list shorter than k counts its missing places as misses);
* ``recall@k = |L ∩ R| / |R|``;
* ``AP@k = (1 / min(|R|, k)) * sum_{i <= k, L_i in R} precision@i``, and ``MAP@k`` is its mean
  over the scored customers.

Every metric is the unweighted mean over the scored customers; a scored customer without
recommendations scores 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from salesformer.data.contract import ITEM_ID
from salesformer.decisions.recommend_data import CUSTOMER_ID, TIMESTAMP
from salesformer.errors import ConfigError, DataValidationError

RANK = "rank"


def purchases_between(
    purchases: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp
) -> pd.DataFrame:
    """Distinct ``customer_id, item_id`` bought in ``[start, end)``: the truth of a period."""
    window = purchases.loc[(purchases[TIMESTAMP] >= start) & (purchases[TIMESTAMP] < end)]
    return window[[CUSTOMER_ID, ITEM_ID]].drop_duplicates().reset_index(drop=True)


def _hits(
    recommendations: pd.DataFrame, truth: pd.DataFrame, max_k: int
) -> tuple[np.ndarray, np.ndarray]:
    """A customers x max_k 0/1 hit matrix and each scored customer's number of relevant items."""
    for name, frame, needed in (
        ("recommendations", recommendations, (CUSTOMER_ID, RANK, ITEM_ID)),
        ("truth", truth, (CUSTOMER_ID, ITEM_ID)),
    ):
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise DataValidationError(
                f"{name} need the columns {list(needed)}; {missing} missing; "
                f"got {list(frame.columns)}"
            )
    if isinstance(max_k, bool) or not isinstance(max_k, int) or max_k < 1:
        raise ConfigError(f"k must be a whole number >= 1; got {max_k!r}")
    relevant = truth[[CUSTOMER_ID, ITEM_ID]].astype(str).drop_duplicates()
    customers = pd.Index(relevant[CUSTOMER_ID].unique())
    n_relevant = relevant.groupby(CUSTOMER_ID).size().reindex(customers).to_numpy(float)
    recs = recommendations[[CUSTOMER_ID, RANK, ITEM_ID]].copy()
    recs[[CUSTOMER_ID, ITEM_ID]] = recs[[CUSTOMER_ID, ITEM_ID]].astype(str)
    recs = recs.loc[(recs[RANK] >= 1) & (recs[RANK] <= max_k)]
    recs = recs.loc[recs[CUSTOMER_ID].isin(customers)]
    # An item listed twice for a customer is one item: only its best rank can hit.
    recs = recs.sort_values(RANK, kind="stable").drop_duplicates([CUSTOMER_ID, ITEM_ID])
    hit = recs.merge(relevant.assign(hit=1.0), on=[CUSTOMER_ID, ITEM_ID], how="left")
    hit = hit.loc[hit["hit"].notna()]
    matrix = np.zeros((len(customers), max_k))
    rows = customers.get_indexer(hit[CUSTOMER_ID])
    matrix[rows, hit[RANK].to_numpy(int) - 1] = 1.0
    return matrix, n_relevant


def ranking_metrics(
    recommendations: pd.DataFrame, truth: pd.DataFrame, k: int = 10
) -> dict[str, float]:
    """``precision@k``, ``recall@k``, ``map@k`` and ``customers`` (the number scored).

    Args:
        recommendations: ``customer_id, rank, item_id`` (ranks from 1).
        truth: ``customer_id, item_id`` bought in the evaluation period.
        k: list length scored.
    """
    hits, n_relevant = _hits(recommendations, truth, k)
    if len(n_relevant) == 0:
        raise DataValidationError("the truth holds no purchase; nothing can be scored")
    found = hits.sum(axis=1)
    precision_at = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    average_precision = (precision_at * hits).sum(axis=1) / np.minimum(n_relevant, k)
    return {
        f"precision@{k}": float(np.mean(found / k)),
        f"recall@{k}": float(np.mean(found / n_relevant)),
        f"map@{k}": float(np.mean(average_precision)),
        "customers": len(n_relevant),
    }


def precision_recall_curve(
    recommendations: pd.DataFrame, truth: pd.DataFrame, max_k: int = 50
) -> pd.DataFrame:
    """Mean precision@k and recall@k for k = 1 .. ``max_k``: columns ``k, precision, recall``."""
    hits, n_relevant = _hits(recommendations, truth, max_k)
    if len(n_relevant) == 0:
        raise DataValidationError("the truth holds no purchase; nothing can be scored")
    cumulative = np.cumsum(hits, axis=1)
    ks = np.arange(1, max_k + 1)
    return pd.DataFrame(
        {
            "k": ks,
            "precision": (cumulative / ks).mean(axis=0),
            "recall": (cumulative / n_relevant[:, None]).mean(axis=0),
        }
    )
