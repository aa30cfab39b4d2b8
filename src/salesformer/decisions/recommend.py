"""Customer recommendations: the items each customer is most likely to buy next period.

Three recommenders follow one protocol, ``fit(purchases, cutoff, items) -> self`` then
``recommend(customers, k) -> frame`` with ``customer_id, rank, item_id, title, score, reason``:

* :class:`PopularityRecommender`: the same list for everyone, the items with the most distinct
  buyers in the last ``weeks`` weeks before the cutoff;
* :class:`BuyAgainRecommender`: the customer's own past items, most orders first (ties: the
  most recently bought first), padded with the popularity list;
* :class:`Recommender`: a LightGBM ranker over candidates (see
  :mod:`salesformer.decisions.recommend_features`) that combines the customer's own history,
  text similarity of the items (encoder embeddings), co-purchases and the items' demand
  forecast for the next period. It learns from earlier periods of the same purchases: at each
  training cutoff ``cutoff - j * period`` (``j = 1 .. train_windows``) the candidates are built
  from the history before it and labelled 1 when the customer bought the item in the period
  after it. Only customers with a purchase in that period are used, as in the evaluation.

Each recommendation carries a reason: ``bought before (N orders, last DATE)``, ``similar to
TITLE``, ``bought with TITLE`` (co-purchased by other customers) or ``trending``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from salesformer.data.contract import ITEM_ID, TEXT
from salesformer.decisions.recommend_data import (
    CUSTOMER_ID,
    INVOICE,
    TIMESTAMP,
    validate_purchases,
)
from salesformer.decisions.recommend_features import (
    FEATURES,
    WEEK,
    CandidateSettings,
    candidate_features,
    cutoff_state,
    text_similarity,
)
from salesformer.decisions.recommend_metrics import RANK, purchases_between
from salesformer.errors import ConfigError, DataValidationError, NotFittedError

Objective = Literal["binary", "lambdarank"]
OUTPUT_COLUMNS = (CUSTOMER_ID, RANK, ITEM_ID, "title", "score", "reason")

#: Declared ranges of the numeric settings: (kind, lowest, highest), bounds included.
_RANGES: dict[str, tuple[type, float, float]] = {
    "period_weeks": (int, 1, 104),
    "half_life_days": (float, 1.0, 3650.0),
    "recent_items": (int, 1, 1000),
    "neighbours": (int, 0, 1000),
    "popular_candidates": (int, 0, 100_000),
    "max_history_candidates": (int, 1, 100_000),
    "train_windows": (int, 1, 20),
    "n_estimators": (int, 1, 100_000),
    "learning_rate": (float, 1e-4, 1.0),
    "num_leaves": (int, 2, 4096),
    "min_child_samples": (int, 1, 1_000_000),
    "similar_reason_min": (float, -1.0, 1.0),
    "copurchase_reason_min": (float, 0.0, 1.0),
    "threads": (int, 1, 1024),
    "seed": (int, 0, 2**31 - 1),
}


@dataclass(frozen=True)
class RecommendSettings:
    """Settings of :class:`Recommender`, checked once in ``__post_init__``.

    Attributes:
        period_weeks: the period recommended for: the model learns "bought in the next
            ``period_weeks`` weeks".
        half_life_days: half-life of the recency weight of a past order.
        recent_items: a customer's most recently bought items that similarity looks at.
        neighbours: text and co-purchase neighbours taken as candidates per recent item.
        popular_candidates: items added for everyone from each popularity list.
        max_history_candidates: past items kept as candidates per customer.
        train_windows: earlier periods the ranker learns from.
        objective: ``"binary"`` (bought or not) or ``"lambdarank"`` (a ranking loss).
        encoder: text encoder (name or folder) for item similarity; None leaves text out.
        cache_dir: embedding cache folder (None: the default cache).
        n_estimators: boosting rounds.
        learning_rate: LightGBM learning rate.
        num_leaves: LightGBM ``num_leaves``.
        min_child_samples: LightGBM ``min_child_samples``.
        similar_reason_min: text similarity from which a new item's reason is "similar to".
        copurchase_reason_min: co-purchase cosine from which it is "bought with".
        threads: torch and LightGBM threads.
        seed: random seed.
    """

    period_weeks: int = 13
    half_life_days: float = 90.0
    recent_items: int = 20
    neighbours: int = 10
    popular_candidates: int = 50
    max_history_candidates: int = 200
    train_windows: int = 2
    objective: Objective = "lambdarank"
    encoder: str | None = "all-MiniLM-L6-v2"
    cache_dir: str | None = None
    n_estimators: int = 300
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_child_samples: int = 50
    similar_reason_min: float = 0.5
    copurchase_reason_min: float = 0.1
    threads: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        for name, (kind, low, high) in _RANGES.items():
            value = getattr(self, name)
            ok_kind = isinstance(value, int | float) if kind is float else isinstance(value, int)
            if isinstance(value, bool) or not ok_kind or not low <= value <= high:
                what = "a whole number" if kind is int else "a number"
                raise ConfigError(
                    f"recommend setting {name} must be {what} in [{low:g}, {high:g}]; got {value!r}"
                )
        if self.objective not in ("binary", "lambdarank"):
            raise ConfigError(
                f"recommend setting objective must be 'binary' or 'lambdarank'; "
                f"got {self.objective!r}"
            )

    def candidates(self) -> CandidateSettings:
        """The part of the settings that builds candidates and history features."""
        names = CandidateSettings.__dataclass_fields__
        return CandidateSettings(**{n: getattr(self, n) for n in names})


def _cutoff(value: str | pd.Timestamp) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"cutoff must be a date like 2011-09-05; got {value!r}") from exc
    if pd.isna(stamp):
        raise ConfigError(f"cutoff must be a date like 2011-09-05; got {value!r}")
    if stamp.tz is not None:
        raise ConfigError(
            f"cutoff must be a date without a time zone, like the purchase times; got "
            f"{value!r}; e.g. 2011-09-05"
        )
    return stamp


def _titles(items: pd.DataFrame | None) -> dict[str, str]:
    if items is None or ITEM_ID not in items.columns:
        return {}
    column = "title" if "title" in items.columns else TEXT if TEXT in items.columns else None
    if column is None:
        return {}
    return dict(zip(items[ITEM_ID].astype(str), items[column].fillna("").astype(str), strict=True))


def _finish(rows: pd.DataFrame, k: int, titles: dict[str, str]) -> pd.DataFrame:
    """Top ``k`` rows per customer by score, ranked, with titles, in the output columns."""
    ordered = rows.sort_values([CUSTOMER_ID, "score", ITEM_ID], ascending=[True, False, True])
    top = ordered.groupby(CUSTOMER_ID, sort=False).head(k).copy()
    top[RANK] = top.groupby(CUSTOMER_ID, sort=False).cumcount() + 1
    top["title"] = top[ITEM_ID].map(titles).fillna("")
    return top[list(OUTPUT_COLUMNS)].reset_index(drop=True)


def _orders(n: int) -> str:
    return "1 order" if n == 1 else f"{n} orders"


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ConfigError(f"k must be a whole number >= 1; got {k!r}")


class _Base:
    """Shared checks of the recommenders."""

    cutoff_: pd.Timestamp
    titles_: dict[str, str]

    def _require_fit(self) -> None:
        if not hasattr(self, "cutoff_"):
            raise NotFittedError(
                f"{type(self).__name__} is not fitted; call fit(purchases, cutoff) first"
            )

    def _customers(self, customers: list[str] | None, known: pd.Index) -> list[str]:
        if customers is None:
            return [str(c) for c in known]
        return list(dict.fromkeys(str(c) for c in customers))


class PopularityRecommender(_Base):
    """Everyone gets the items with the most distinct buyers in the last ``weeks`` weeks.

    Args:
        weeks: length of the popularity window before the cutoff.
    """

    name = "Popularity"

    def __init__(self, weeks: int = 13) -> None:
        self.weeks = weeks

    def fit(
        self,
        purchases: pd.DataFrame,
        cutoff: str | pd.Timestamp,
        items: pd.DataFrame | None = None,
    ) -> PopularityRecommender:
        """Count each item's buyers in the window before ``cutoff``."""
        if isinstance(self.weeks, bool) or not isinstance(self.weeks, int) or self.weeks < 1:
            raise ConfigError(f"weeks must be a whole number >= 1; got {self.weeks!r}")
        stamp = _cutoff(cutoff)
        purchases = validate_purchases(purchases)
        window = purchases_between(purchases, stamp - self.weeks * WEEK, stamp)
        counts = window.groupby(ITEM_ID).size().rename("score").reset_index()
        self.ranking_ = counts.sort_values(["score", ITEM_ID], ascending=[False, True])
        self.customers_ = pd.Index(
            purchases.loc[purchases[TIMESTAMP] < stamp, CUSTOMER_ID].unique()
        )
        self.titles_ = _titles(items)
        self.cutoff_ = stamp
        return self

    def recommend(self, customers: list[str] | None = None, k: int = 10) -> pd.DataFrame:
        """The popularity list for each customer (default: every customer seen before)."""
        self._require_fit()
        _check_k(k)
        chosen = self._customers(customers, self.customers_)
        top = self.ranking_.head(k)
        rows = pd.DataFrame(
            {
                CUSTOMER_ID: np.repeat(np.array(chosen, dtype=object), len(top)),
                ITEM_ID: np.tile(top[ITEM_ID].to_numpy(), len(chosen)),
                "score": np.tile(top["score"].to_numpy(float), len(chosen)),
            }
        )
        rows["reason"] = f"popular: most buyers in the last {self.weeks} weeks"
        return _finish(rows, k, self.titles_)


class BuyAgainRecommender(_Base):
    """A customer's own past items, most orders first, padded with the popularity list.

    Ties in the number of orders go to the most recently bought item. A customer never seen
    before the cutoff gets the popularity list alone.

    Args:
        popular_weeks: the window of the popularity list that pads short histories.
    """

    name = "BuyAgain"

    def __init__(self, popular_weeks: int = 13) -> None:
        self.popular_weeks = popular_weeks

    def fit(
        self,
        purchases: pd.DataFrame,
        cutoff: str | pd.Timestamp,
        items: pd.DataFrame | None = None,
    ) -> BuyAgainRecommender:
        """Count each customer's orders of each item before ``cutoff``."""
        self.popularity_ = PopularityRecommender(self.popular_weeks).fit(purchases, cutoff, items)
        stamp = self.popularity_.cutoff_
        past = validate_purchases(purchases)
        past = past.loc[past[TIMESTAMP] < stamp].drop_duplicates([CUSTOMER_ID, INVOICE, ITEM_ID])
        self.history_ = (
            past.groupby([CUSTOMER_ID, ITEM_ID])
            .agg(orders=(INVOICE, "size"), last=(TIMESTAMP, "max"))
            .reset_index()
        )
        self.titles_ = self.popularity_.titles_
        self.cutoff_ = stamp
        return self

    def recommend(self, customers: list[str] | None = None, k: int = 10) -> pd.DataFrame:
        """The top ``k`` past items per customer (default: every customer seen before)."""
        self._require_fit()
        _check_k(k)
        chosen = self._customers(customers, self.popularity_.customers_)
        own = self.history_.loc[self.history_[CUSTOMER_ID].isin(chosen)]
        own = own.sort_values(
            [CUSTOMER_ID, "orders", "last", ITEM_ID], ascending=[True, False, False, True]
        )
        own = own.groupby(CUSTOMER_ID, sort=False).head(k)
        # Past items score above every padding item: orders + a recency tie-break in (0, 1).
        tie = own.groupby(CUSTOMER_ID, sort=False).cumcount()
        own = own.assign(
            score=own["orders"] + 1.0 / (tie + 2.0),
            reason=[
                f"bought before ({_orders(n)}, last {d.date()})"
                for n, d in zip(own["orders"], own["last"], strict=True)
            ],
        )
        pad = self.popularity_.recommend(chosen, k)
        pad = pad.assign(score=-pad[RANK].astype(float))
        pad = pad.merge(own[[CUSTOMER_ID, ITEM_ID]], how="left", indicator=True)
        pad = pad.loc[pad["_merge"] == "left_only"]
        rows = pd.concat(
            [
                own[[CUSTOMER_ID, ITEM_ID, "score", "reason"]],
                pad[[CUSTOMER_ID, ITEM_ID, "score", "reason"]],
            ],
            ignore_index=True,
        )
        return _finish(rows, k, self.titles_)


class Recommender(_Base):
    """A LightGBM ranker over candidate items (see the module docstring).

    Args:
        settings: a :class:`RecommendSettings`; None for the defaults.
    """

    name = "Ranker"

    def __init__(self, settings: RecommendSettings | None = None) -> None:
        self.settings = settings

    def fit(
        self,
        purchases: pd.DataFrame,
        cutoff: str | pd.Timestamp,
        items: pd.DataFrame | None = None,
    ) -> Recommender:
        """Learn the ranker from the periods before ``cutoff`` and keep the state at it.

        Args:
            purchases: purchase lines (see :mod:`salesformer.decisions.recommend_data`);
                lines at or after ``cutoff`` are never read.
            cutoff: the first moment of the period to recommend for.
            items: ``item_id`` with ``title`` and/or ``text`` (the text the encoder reads).

        Raises:
            DataValidationError: when no earlier period has purchases to learn from.
        """
        settings = self.settings or RecommendSettings()
        if not isinstance(settings, RecommendSettings):
            raise ConfigError(
                f"settings must be a RecommendSettings; got {type(settings).__name__}"
            )
        stamp = _cutoff(cutoff)
        purchases = validate_purchases(purchases)
        purchases = purchases.loc[purchases[TIMESTAMP] < stamp]
        if purchases.empty:
            raise DataValidationError(
                f"no purchase before the cutoff {stamp.date()}; give an earlier-starting "
                "history or a later cutoff"
            )
        self.settings_ = settings
        self.titles_ = _titles(items)
        self.item_ids_ = self._catalogue(purchases, items)
        similarity = self._text_similarity(items)
        candidates = settings.candidates()
        frames: list[pd.DataFrame] = []
        report: list[dict[str, Any]] = []
        for j in range(settings.train_windows, 0, -1):
            start = stamp - j * settings.period_weeks * WEEK
            end = start + settings.period_weeks * WEEK
            if not (purchases[TIMESTAMP] < start).any():
                continue
            truth = purchases_between(purchases, start, end)
            if truth.empty:
                continue
            state = cutoff_state(purchases, self.item_ids_, start, candidates, similarity)
            rows = candidate_features(state, sorted(truth[CUSTOMER_ID].unique()), candidates)
            rows = rows.merge(truth.assign(label=1.0), on=[CUSTOMER_ID, ITEM_ID], how="left")
            rows["label"] = rows["label"].fillna(0.0)
            frames.append(rows[[CUSTOMER_ID, *FEATURES, "label"]].assign(window=j))
            report.append(
                {
                    "cutoff": str(start.date()),
                    "customers": int(truth[CUSTOMER_ID].nunique()),
                    "rows": len(rows),
                    "positives": int(rows["label"].sum()),
                    "candidate_recall": float(rows["label"].sum() / len(truth)),
                }
            )
        training = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        if training.empty or training["label"].nunique() < 2:
            raise DataValidationError(
                f"no earlier {settings.period_weeks}-week period before {stamp.date()} has both "
                "bought and not-bought candidates to learn from; give a longer history or "
                "a shorter period_weeks"
            )
        self.model_ = self._train(training)
        self.state_ = cutoff_state(purchases, self.item_ids_, stamp, candidates, similarity)
        self.fit_report_ = {"windows": report, "settings": asdict(settings)}
        self.cutoff_ = stamp
        return self

    def _catalogue(self, purchases: pd.DataFrame, items: pd.DataFrame | None) -> np.ndarray:
        known = set(purchases[ITEM_ID].astype(str))
        if items is not None and ITEM_ID in items.columns:
            known |= set(items[ITEM_ID].astype(str))
        return np.array(sorted(known), dtype=object)

    def _text_similarity(self, items: pd.DataFrame | None) -> np.ndarray | None:
        settings = self.settings_
        if settings.encoder is None:
            return None
        from salesformer.text.encoder import import_torch, item_texts, shared_encoder

        texts = pd.Series(self.item_ids_.copy(), index=self.item_ids_, dtype=object)
        if items is not None and ITEM_ID in items.columns:
            given = item_texts(items)
            given = given[given.str.len() > 0]
            given = given[~given.index.duplicated()]
            texts.update(given)
        torch = import_torch()
        before = torch.get_num_threads()
        torch.set_num_threads(settings.threads)
        try:
            encoder = shared_encoder(settings.encoder)
            vectors = encoder.encode(list(texts.astype(str)), cache_dir=settings.cache_dir)
        finally:
            torch.set_num_threads(before)
        return text_similarity(vectors)

    def _train(self, training: pd.DataFrame) -> Any:
        from salesformer.models.lightgbm import import_lightgbm

        lightgbm = import_lightgbm()
        settings = self.settings_
        params = {
            "n_estimators": settings.n_estimators,
            "learning_rate": settings.learning_rate,
            "num_leaves": settings.num_leaves,
            "min_child_samples": settings.min_child_samples,
            "subsample": 0.8,
            "subsample_freq": 1,
            "colsample_bytree": 0.8,
            "random_state": settings.seed,
            "n_jobs": settings.threads,
            "verbose": -1,
        }
        features = training[list(FEATURES)].to_numpy(np.float32)
        labels = training["label"].to_numpy()
        if settings.objective == "lambdarank":
            keys = training["window"].astype(str) + "|" + training[CUSTOMER_ID].astype(str)
            groups = keys.groupby(keys, sort=False).size().to_numpy()
            ranker = lightgbm.LGBMRanker(objective="lambdarank", **params)
            ranker.fit(features, labels, group=groups)
            return ranker
        classifier = lightgbm.LGBMClassifier(objective="binary", **params)
        classifier.fit(features, labels)
        return classifier

    def score(self, customers: list[str] | None = None) -> pd.DataFrame:
        """Every candidate of the customers with its features, ``score`` and ``reason``.

        Args:
            customers: customer IDs (default: every customer seen before the cutoff); one
                never seen gets the popular and trending candidates.
        """
        self._require_fit()
        chosen = self._customers(customers, self.state_.customers.index)
        rows = candidate_features(self.state_, chosen, self.settings_.candidates())
        features = rows[list(FEATURES)].to_numpy(np.float32)
        if len(rows) == 0:  # no customer asked for: LightGBM refuses zero rows
            rows["score"] = np.zeros(0)
        elif self.settings_.objective == "lambdarank":
            rows["score"] = self.model_.predict(features)
        else:
            rows["score"] = self.model_.predict_proba(features)[:, 1]
        rows["reason"] = self._reasons(rows)
        return rows

    def recommend(self, customers: list[str] | None = None, k: int = 10) -> pd.DataFrame:
        """The top ``k`` candidates per customer, with score and reason."""
        _check_k(k)
        return _finish(self.score(customers), k, self.titles_)

    def _reasons(self, rows: pd.DataFrame) -> list[str]:
        settings = self.settings_
        ids = self.item_ids_
        weeks = settings.period_weeks
        out: list[str] = []
        for bought, orders, days, text, similar, co, copurchased, forecast in zip(
            rows["bought_before"].to_numpy(),
            rows["orders"].to_numpy(),
            rows["days_since_item"].to_numpy(),
            rows["text_max"].to_numpy(),
            rows["similar_item"].to_numpy(),
            rows["copurchase_max"].to_numpy(),
            rows["copurchased_item"].to_numpy(),
            rows["demand_forecast"].to_numpy(),
            strict=True,
        ):
            if bought:
                last = (self.cutoff_ - pd.Timedelta(days=float(days))).date()
                out.append(f"bought before ({_orders(int(orders))}, last {last})")
            elif similar >= 0 and text >= settings.similar_reason_min:
                out.append(f"similar to {self._label(ids[similar])}")
            elif copurchased >= 0 and co >= settings.copurchase_reason_min:
                out.append(f"bought with {self._label(ids[copurchased])}")
            else:
                out.append(f"trending: {forecast:.0f} buyers forecast in the next {weeks} weeks")
        return out

    def _label(self, item_id: str) -> str:
        title = self.titles_.get(str(item_id), "")
        return f"{item_id} {title}".strip()


def save_recommendations(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write recommendations as CSV or Parquet (by suffix), atomically."""
    from salesformer._io import atomic_file

    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ConfigError(f"the output must end in .csv or .parquet; got {str(target)!r}")
    with atomic_file(target) as staging:
        if suffix == ".csv":
            frame.to_csv(staging, index=False)
        else:
            frame.to_parquet(staging, index=False)
    return target
