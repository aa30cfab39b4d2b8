"""What the recommender knows at a cutoff: candidates and their features.

Everything here is computed from the purchases strictly before the cutoff. For each customer,
the **candidates** are the union of

* the items they bought before (the ``max_history_candidates`` with the most recency-weighted
  orders),
* the ``neighbours`` most text-similar items of each of their ``recent_items`` most recently
  bought items (cosine of the encoder embeddings),
* the ``neighbours`` most co-purchased items of those recent items (cosine of the customer x item
  purchase matrix),
* the ``popular_candidates`` items with the highest demand forecast and the most buyers in
  the last 4 weeks.

Each (customer, candidate) row gets the features in :data:`FEATURES`: the customer's own
history with the item, the customer's habits, the item's recent and forecast demand, and its
text and co-purchase similarity to the customer's recent items.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from salesformer.data.contract import ITEM_ID
from salesformer.decisions.recommend_data import CUSTOMER_ID, INVOICE, TIMESTAMP

DAY = pd.Timedelta(days=1)
WEEK = pd.Timedelta(weeks=1)
YEAR_WEEKS = 52
#: Pseudo-count of the seasonal ratio, so that an item with few buyers last year keeps its level.
SEASONAL_PRIOR = 3.0

PAIR_FEATURES = ("orders", "recency_orders", "days_since_item", "bought_before")
CUSTOMER_FEATURES = ("customer_orders", "customer_items", "days_since_customer", "repeat_share")
ITEM_FEATURES = (
    "buyers_4w",
    "buyers_period",
    "buyers_52w",
    "buyers_last_year_next",
    "demand_forecast",
    "trend",
    "item_age_days",
    "days_since_item_sale",
    "item_repeat_rate",
)
SIMILARITY_FEATURES = ("text_max", "text_mean", "copurchase_max", "copurchase_sum")
FEATURES = (*PAIR_FEATURES, *CUSTOMER_FEATURES, *ITEM_FEATURES, *SIMILARITY_FEATURES)


@dataclass(frozen=True)
class CandidateSettings:
    """How candidates and history features are built (checked by ``RecommendSettings``).

    Attributes:
        period_weeks: length of the period recommended for (and of the demand windows).
        half_life_days: half-life of the recency weight of a past order.
        recent_items: a customer's most recently bought items that similarity looks at.
        neighbours: text and co-purchase neighbours taken per recent item.
        popular_candidates: items added for everyone from each popularity list.
        max_history_candidates: past items kept as candidates per customer.
    """

    period_weeks: int = 13
    half_life_days: float = 90.0
    recent_items: int = 20
    neighbours: int = 10
    popular_candidates: int = 50
    max_history_candidates: int = 200


@dataclass
class CutoffState:
    """History statistics at one cutoff (see :func:`cutoff_state`).

    Attributes:
        cutoff: first moment not seen; every statistic uses purchases before it.
        item_ids: the catalogue, in the order of the similarity matrices.
        pairs: per (customer, item index) history: ``orders``, ``recency_orders``,
            ``days_since_item``, ``last_bought``.
        customers: per customer: ``customer_orders``, ``customer_items``,
            ``days_since_customer``, ``repeat_share``.
        items: per item index: the :data:`ITEM_FEATURES`.
        recent: each customer's recent items (indices), most recent first.
        text_similarity: item x item cosine of the embeddings (diagonal 0), or None.
        copurchase: item x item cosine of the purchase matrix (diagonal 0).
        popular: item indices added as candidates for everyone.
    """

    cutoff: pd.Timestamp
    item_ids: np.ndarray
    pairs: pd.DataFrame
    customers: pd.DataFrame
    items: pd.DataFrame
    recent: dict[str, np.ndarray]
    text_similarity: np.ndarray | None
    copurchase: np.ndarray
    popular: np.ndarray
    text_neighbours: np.ndarray | None = field(default=None, repr=False)
    copurchase_neighbours: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), int))


def cutoff_state(
    purchases: pd.DataFrame,
    item_ids: np.ndarray,
    cutoff: pd.Timestamp,
    settings: CandidateSettings,
    text_similarity: np.ndarray | None,
) -> CutoffState:
    """Every history statistic of the purchases before ``cutoff``.

    Args:
        purchases: a validated purchase frame (any period; only lines before ``cutoff`` are read).
        item_ids: the catalogue; items of ``purchases`` outside it are ignored.
        cutoff: the first moment not seen.
        settings: candidate settings.
        text_similarity: item x item cosine of the encoder embeddings in catalogue order.
    """
    index = pd.Index(item_ids)
    past = purchases.loc[purchases[TIMESTAMP] < cutoff]
    codes = index.get_indexer(past[ITEM_ID])
    past = past.loc[codes >= 0].assign(item=codes[codes >= 0])
    orders = past.drop_duplicates([CUSTOMER_ID, INVOICE, "item"])
    pairs = _pair_stats(orders, cutoff, settings.half_life_days)
    customers = _customer_stats(orders, pairs, cutoff)
    items = item_demand(orders, len(item_ids), cutoff, settings.period_weeks)
    copurchase = copurchase_similarity(pairs, customers.index, len(item_ids))
    recent = _recent_items(pairs, settings.recent_items)
    by_forecast = np.argsort(-items["demand_forecast"].to_numpy(), kind="stable")
    by_recent = np.argsort(-items["buyers_4w"].to_numpy(), kind="stable")
    n_popular = settings.popular_candidates
    popular = np.unique(np.concatenate([by_forecast[:n_popular], by_recent[:n_popular]]))
    sold = items["buyers_52w"].to_numpy() > 0
    return CutoffState(
        cutoff=cutoff,
        item_ids=np.asarray(item_ids),
        pairs=pairs,
        customers=customers,
        items=items,
        recent=recent,
        text_similarity=text_similarity,
        copurchase=copurchase,
        popular=popular,
        text_neighbours=(
            None
            if text_similarity is None
            else top_neighbours(text_similarity, settings.neighbours, sold)
        ),
        copurchase_neighbours=top_neighbours(copurchase, settings.neighbours, sold),
    )


def _pair_stats(orders: pd.DataFrame, cutoff: pd.Timestamp, half_life_days: float) -> pd.DataFrame:
    age = (cutoff - orders[TIMESTAMP]) / DAY
    weighted = orders.assign(weight=np.power(0.5, age / half_life_days))
    pairs = weighted.groupby([CUSTOMER_ID, "item"], sort=True).agg(
        orders=(INVOICE, "size"),
        recency_orders=("weight", "sum"),
        last_bought=(TIMESTAMP, "max"),
    )
    pairs["days_since_item"] = (cutoff - pairs["last_bought"]) / DAY
    return pairs


def _customer_stats(
    orders: pd.DataFrame, pairs: pd.DataFrame, cutoff: pd.Timestamp
) -> pd.DataFrame:
    grouped = orders.groupby(CUSTOMER_ID, sort=True)
    stats = pd.DataFrame(
        {
            "customer_orders": grouped[INVOICE].nunique(),
            "customer_items": pairs.groupby(level=CUSTOMER_ID).size(),
            "days_since_customer": (cutoff - grouped[TIMESTAMP].max()) / DAY,
        }
    )
    # The share of a customer's item-orders that repeat an item they had ordered before.
    by_customer = pairs["orders"].groupby(level=CUSTOMER_ID)
    stats["repeat_share"] = (by_customer.sum() - by_customer.size()) / by_customer.sum()
    return stats


def _buyers(
    orders: pd.DataFrame, n_items: int, start: pd.Timestamp, end: pd.Timestamp
) -> np.ndarray:
    window = orders.loc[(orders[TIMESTAMP] >= start) & (orders[TIMESTAMP] < end)]
    distinct = window.drop_duplicates([CUSTOMER_ID, "item"])
    return np.bincount(distinct["item"].to_numpy(), minlength=n_items).astype(float)


def item_demand(
    orders: pd.DataFrame, n_items: int, cutoff: pd.Timestamp, period_weeks: int
) -> pd.DataFrame:
    """Each item's recent demand (distinct buyers) and its forecast for the next period.

    The forecast is a seasonal recent-demand forecaster: the buyers of the last period, scaled
    by how the same two periods changed a year earlier,
    ``buyers_period x (last_year_next + 3) / (last_year_previous + 3)``; the ratio is 1 where
    the history does not reach back a year and a period.

    Args:
        orders: one row per (customer, invoice, item index) before the cutoff.
        n_items: catalogue size.
        cutoff: first moment not seen.
        period_weeks: length of the period forecast.
    """
    period = period_weeks * WEEK
    year = YEAR_WEEKS * WEEK
    buyers_period = _buyers(orders, n_items, cutoff - period, cutoff)
    last_year_next = _buyers(orders, n_items, cutoff - year, cutoff - year + period)
    last_year_previous = _buyers(orders, n_items, cutoff - year - period, cutoff - year)
    reaches_back = bool(len(orders)) and orders[TIMESTAMP].min() <= cutoff - year - period
    ratio = (
        (last_year_next + SEASONAL_PRIOR) / (last_year_previous + SEASONAL_PRIOR)
        if reaches_back
        else np.ones(n_items)
    )
    buyers_4w = _buyers(orders, n_items, cutoff - 4 * WEEK, cutoff)
    per_item = orders.groupby("item")[TIMESTAMP].agg(["min", "max"])
    first = pd.Series(pd.NaT, index=range(n_items), dtype="datetime64[ns]")
    last = first.copy()
    first[per_item.index] = per_item["min"].to_numpy()
    last[per_item.index] = per_item["max"].to_numpy()
    buyers_all = orders.drop_duplicates([CUSTOMER_ID, "item"])
    n_buyers = np.bincount(buyers_all["item"].to_numpy(), minlength=n_items).astype(float)
    n_orders = np.bincount(orders["item"].to_numpy(), minlength=n_items).astype(float)
    repeat_rate = np.divide(
        n_orders - n_buyers, n_orders, out=np.zeros(n_items), where=n_orders > 0
    )
    return pd.DataFrame(
        {
            "buyers_4w": buyers_4w,
            "buyers_period": buyers_period,
            "buyers_52w": _buyers(orders, n_items, cutoff - year, cutoff),
            "buyers_last_year_next": last_year_next if reaches_back else np.nan,
            "demand_forecast": buyers_period * ratio,
            "trend": (buyers_4w * period_weeks / 4 + 1) / (buyers_period + 1),
            "item_age_days": ((cutoff - first) / DAY).to_numpy(),
            "days_since_item_sale": ((cutoff - last) / DAY).to_numpy(),
            "item_repeat_rate": repeat_rate,
        }
    )


def copurchase_similarity(pairs: pd.DataFrame, customers: pd.Index, n_items: int) -> np.ndarray:
    """Item x item cosine of the binary customer x item matrix, diagonal 0 (float32)."""
    from scipy import sparse

    rows = customers.get_indexer(pairs.index.get_level_values(CUSTOMER_ID))
    cols = pairs.index.get_level_values("item").to_numpy()
    matrix = sparse.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)),
        shape=(len(customers), n_items),
    )
    counts = (matrix.T @ matrix).toarray().astype(np.float32)
    norms = np.sqrt(np.diag(counts)).copy()
    norms[norms == 0] = 1.0
    counts /= norms[:, None]
    counts /= norms[None, :]
    np.fill_diagonal(counts, 0.0)
    return counts


def text_similarity(embeddings: np.ndarray) -> np.ndarray:
    """Item x item cosine of L2-normalised embeddings, diagonal 0 (float32)."""
    raw = np.asarray(embeddings, dtype=np.float32)
    norms = np.linalg.norm(raw, axis=1, keepdims=True)
    vectors = (raw / np.where(norms == 0, 1.0, norms)).astype(np.float32)
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, 0.0)
    return similarity


def top_neighbours(similarity: np.ndarray, k: int, allowed: np.ndarray) -> np.ndarray:
    """The ``k`` most similar allowed items of every item (indices; -1 where fewer exist)."""
    n = similarity.shape[0]
    masked = np.where(allowed[None, :], similarity, -np.inf)
    k = min(k, n)
    if k == 0:
        return np.zeros((n, 0), dtype=int)
    part = np.argpartition(-masked, k - 1, axis=1)[:, :k]
    values = np.take_along_axis(masked, part, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    best = np.take_along_axis(part, order, axis=1)
    return np.where(np.take_along_axis(values, order, axis=1) > 0, best, -1)


def _recent_items(pairs: pd.DataFrame, limit: int) -> dict[str, np.ndarray]:
    ordered = pairs.reset_index().sort_values(
        [CUSTOMER_ID, "last_bought", "recency_orders"], ascending=[True, False, False]
    )
    ordered = ordered.groupby(CUSTOMER_ID, sort=False).head(limit)
    return {str(c): g.to_numpy() for c, g in ordered.groupby(CUSTOMER_ID, sort=False)["item"]}


def candidate_features(
    state: CutoffState, customers: list[str], settings: CandidateSettings
) -> pd.DataFrame:
    """One row per (customer, candidate item) with every feature of :data:`FEATURES`.

    Also returns ``item`` (catalogue index), ``similar_item`` and ``copurchased_item`` (the
    recent item each similarity came from, -1 when none), used for the reasons.
    """
    history = state.pairs.reset_index()
    history["rank"] = history.groupby(CUSTOMER_ID)["recency_orders"].rank(
        ascending=False, method="first"
    )
    kept_history = history.loc[history["rank"] <= settings.max_history_candidates]
    own = {str(c): g.to_numpy() for c, g in kept_history.groupby(CUSTOMER_ID)["item"]}
    empty = np.zeros(0, dtype=int)
    blocks: list[dict[str, np.ndarray]] = []
    for customer in customers:
        recent = state.recent.get(customer, empty)
        sources = [own.get(customer, empty), state.popular]
        for neighbours in (state.text_neighbours, state.copurchase_neighbours):
            if neighbours is not None and len(recent):
                found = neighbours[recent].ravel()
                sources.append(found[found >= 0])
        candidates = np.unique(np.concatenate(sources)).astype(int)
        blocks.append(_similarity_block(state, candidates, recent))
    sizes = [len(b["item"]) for b in blocks]
    columns = {
        name: np.concatenate([b[name] for b in blocks]) if blocks else np.zeros(0)
        for name in ("item", *SIMILARITY_FEATURES, "similar_item", "copurchased_item")
    }
    rows = pd.DataFrame({CUSTOMER_ID: np.repeat(np.array(customers, dtype=object), sizes)})
    for name, values in columns.items():
        rows[name] = values.astype(int) if name.endswith("item") else values
    rows = rows.merge(
        state.pairs[["orders", "recency_orders", "days_since_item"]],
        left_on=[CUSTOMER_ID, "item"],
        right_index=True,
        how="left",
    )
    rows["bought_before"] = rows["orders"].notna().astype(float)
    rows[["orders", "recency_orders"]] = rows[["orders", "recency_orders"]].fillna(0.0)
    rows = rows.merge(state.customers, left_on=CUSTOMER_ID, right_index=True, how="left")
    rows[["customer_orders", "customer_items"]] = rows[
        ["customer_orders", "customer_items"]
    ].fillna(0.0)
    item_rows = state.items.iloc[rows["item"].to_numpy()].reset_index(drop=True)
    rows = pd.concat([rows.reset_index(drop=True), item_rows], axis=1)
    rows[ITEM_ID] = state.item_ids[rows["item"].to_numpy()]
    return rows


def _similarity_block(
    state: CutoffState, candidates: np.ndarray, recent: np.ndarray
) -> dict[str, np.ndarray]:
    n = len(candidates)
    block: dict[str, np.ndarray] = {"item": candidates}
    for prefix, matrix, source, summary in (
        ("text", state.text_similarity, "similar_item", "text_mean"),
        ("copurchase", state.copurchase, "copurchased_item", "copurchase_sum"),
    ):
        if matrix is None or len(recent) == 0 or n == 0:
            block[f"{prefix}_max"] = np.full(n, np.nan)
            block[summary] = np.full(n, np.nan)
            block[source] = np.full(n, -1)
            continue
        values = matrix[np.ix_(candidates, recent)]
        block[f"{prefix}_max"] = values.max(axis=1)
        block[summary] = values.mean(axis=1) if prefix == "text" else values.sum(axis=1)
        block[source] = recent[values.argmax(axis=1)]
    return block
