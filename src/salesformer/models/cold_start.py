"""Cold-start forecasters: the first weeks of products that have never sold.

They follow one small protocol of their own, :class:`ColdStartForecaster`: learn from the
launches of an earlier window (``fit(train) -> self``) and return one curve per new launch
(``predict(new) -> array n x weeks``). Launch sets come from
:func:`salesformer.evaluation.cold_start.launch_table`, which also scores the curves.

- :class:`MeanLaunchCurve`: the mean curve of the training launches, for every new item;
- :class:`KNNText`: mean curve of the ``k`` training launches nearest in TF-IDF cosine;
- :class:`KNNEmbedding`: the same on frozen encoder embeddings;
- :class:`RidgeEmbedding`: one multi-output ridge on embeddings, log launch price and the
  launch week of year (sin/cos), its penalty chosen by forward-chaining cross-validation on
  the training launches;
- :class:`LightGBMEmbedding`: LightGBM on the same features with the week since launch as a
  feature (one model for every week).

The LM forecaster forecasts launches too, with a richer input (its ``predict_new``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, Self

import numpy as np

from salesformer.errors import ConfigError, DataValidationError, NotFittedError
from salesformer.evaluation.cold_start import LaunchSet
from salesformer.text import DEFAULT_ENCODER, load_encoder

DEFAULT_NEIGHBOURS = 10
#: Mean length of a year in weeks, for the week-of-year encoding.
_WEEKS_PER_YEAR = 365.25 / 7.0


class ColdStartForecaster(Protocol):
    """What every cold-start forecaster does: learn from launches, forecast launch curves."""

    def fit(self, train: LaunchSet) -> Self:
        """Learn from the training launches (their inputs and curves); returns ``self``."""
        ...

    def predict(self, new: LaunchSet) -> np.ndarray:
        """One curve per launch of ``new``: ``(len(new), weeks)`` in sales units."""
        ...


class TextEncoder(Protocol):
    """Anything that turns texts into one vector each (e.g. :class:`salesformer.text.Encoder`)."""

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def _resolve_encoder(encoder: str | TextEncoder) -> TextEncoder:
    if isinstance(encoder, str):
        return load_encoder(encoder)
    return encoder


def _check_train(train: LaunchSet, k: int | None = None) -> None:
    if len(train) == 0:
        raise DataValidationError(
            "no training launches: the training window holds no item with a full curve; "
            "widen the window or shorten the curves"
        )
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise ConfigError(f"k must be a whole number >= 1; got {k!r}")


def _check_fitted(model: object, attribute: str) -> None:
    if not hasattr(model, attribute):
        raise NotFittedError(
            f"{type(model).__name__} is not fitted yet; call fit(train_launches) before predict"
        )


def _neighbour_mean(distances: np.ndarray, curves: np.ndarray, k: int) -> np.ndarray:
    """Mean curve of the ``k`` nearest training launches (ties broken by training order)."""
    k = min(k, curves.shape[0])
    nearest = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return np.asarray(curves[nearest].mean(axis=1))


def _cosine_distances(left: Any, right: Any) -> np.ndarray:
    from sklearn.metrics.pairwise import cosine_distances

    return np.asarray(cosine_distances(left, right))


class MeanLaunchCurve:
    """The mean launch curve of the training launches, forecast for every new item."""

    def fit(self, train: LaunchSet) -> Self:
        _check_train(train)
        self.curve_ = train.targets.mean(axis=0)
        return self

    def predict(self, new: LaunchSet) -> np.ndarray:
        _check_fitted(self, "curve_")
        return np.tile(self.curve_, (len(new), 1))


class KNNText:
    """Mean curve of the ``k`` training launches nearest by cosine on TF-IDF of the text.

    Args:
        k: neighbours averaged (all training launches when fewer).
    """

    def __init__(self, k: int = DEFAULT_NEIGHBOURS) -> None:
        self.k = k

    def fit(self, train: LaunchSet) -> Self:
        from sklearn.feature_extraction.text import TfidfVectorizer

        _check_train(train, self.k)
        self.vectorizer_ = TfidfVectorizer(lowercase=True, sublinear_tf=True)
        self.matrix_ = self.vectorizer_.fit_transform(train.texts)
        self.curves_ = train.targets.copy()
        return self

    def predict(self, new: LaunchSet) -> np.ndarray:
        _check_fitted(self, "curves_")
        distances = _cosine_distances(self.vectorizer_.transform(new.texts), self.matrix_)
        return _neighbour_mean(distances, self.curves_, self.k)


class KNNEmbedding:
    """Mean curve of the ``k`` training launches nearest by cosine on frozen text embeddings.

    Args:
        k: neighbours averaged.
        encoder: an encoder name for :func:`salesformer.text.load_encoder`, or an object with
            ``encode(texts) -> array`` (share one loaded encoder between models).
    """

    def __init__(
        self, k: int = DEFAULT_NEIGHBOURS, encoder: str | TextEncoder = DEFAULT_ENCODER
    ) -> None:
        self.k = k
        self.encoder = encoder

    def fit(self, train: LaunchSet) -> Self:
        _check_train(train, self.k)
        self.encoder_ = _resolve_encoder(self.encoder)
        self.embeddings_ = np.asarray(self.encoder_.encode(train.texts), dtype=float)
        self.curves_ = train.targets.copy()
        return self

    def predict(self, new: LaunchSet) -> np.ndarray:
        _check_fitted(self, "curves_")
        vectors = np.asarray(self.encoder_.encode(new.texts), dtype=float)
        return _neighbour_mean(_cosine_distances(vectors, self.embeddings_), self.curves_, self.k)


class _LaunchFeatures:
    """Embeddings, log launch price and launch week of year (sin, cos) of a launch set.

    A missing price takes the training launches' median log price (0 when none is known).
    """

    def __init__(self, encoder: TextEncoder, train: LaunchSet) -> None:
        self.encoder = encoder
        logs = np.log(np.clip(train.prices, 1e-6, None))
        self.fill = float(np.nanmedian(logs)) if np.isfinite(logs).any() else 0.0

    def __call__(self, launches: LaunchSet) -> np.ndarray:
        embeddings = np.asarray(self.encoder.encode(launches.texts), dtype=float)
        log_price = np.log(np.clip(launches.prices, 1e-6, None))
        log_price = np.where(np.isfinite(log_price), log_price, self.fill)
        week = np.asarray(launches.launch_dates.isocalendar().week, dtype=float)
        angle = 2.0 * np.pi * week / _WEEKS_PER_YEAR
        extra = np.column_stack([log_price, np.sin(angle), np.cos(angle)])
        return np.hstack([embeddings.reshape(len(launches), -1), extra])


class RidgeEmbedding:
    """One multi-output ridge regression of the launch curve on the launch features.

    The embeddings are unit vectors and the other features (log price, sin/cos of the week)
    are of order one, so the features are used as they are: standardising would blow the 384
    embedding dimensions up to the weight of the price. The penalty is chosen from ``alphas``
    by forward-chaining cross-validation on the training launches ordered by launch date
    (``cv`` splits, each fitted on earlier launches and scored on the next ones, by absolute
    error as WAPE is), as the benchmark forecasts later launches from earlier ones. Forecasts
    are clipped at 0.

    Args:
        encoder: as in :class:`KNNEmbedding`.
        alphas: candidate penalties.
        cv: splits of the forward-chaining cross-validation.
    """

    def __init__(
        self,
        encoder: str | TextEncoder = DEFAULT_ENCODER,
        alphas: Sequence[float] = tuple(np.logspace(-1, 4, 21)),
        cv: int = 5,
    ) -> None:
        self.encoder = encoder
        self.alphas = alphas
        self.cv = cv

    def fit(self, train: LaunchSet) -> Self:
        from sklearn.linear_model import Ridge

        _check_train(train)
        if isinstance(self.cv, bool) or not isinstance(self.cv, int) or self.cv < 2:
            raise ConfigError(f"cv must be a whole number >= 2; got {self.cv!r}")
        if len(self.alphas) == 0 or min(self.alphas) <= 0:
            raise ConfigError(f"alphas must be positive numbers; got {list(self.alphas)}")
        if len(train) <= self.cv:
            raise DataValidationError(
                f"{len(train)} training launches cannot be split {self.cv} times; "
                "lower cv or widen the training window"
            )
        self.features_ = _LaunchFeatures(_resolve_encoder(self.encoder), train)
        features = self.features_(train)
        self.cv_errors_ = self._cv_errors(features, train)
        self.alpha_ = float(self.alphas[int(np.argmin(self.cv_errors_))])
        self.model_ = Ridge(alpha=self.alpha_).fit(features, train.targets)
        return self

    def _cv_errors(self, features: np.ndarray, train: LaunchSet) -> np.ndarray:
        """Summed absolute error of each alpha over the forward-chaining validation folds."""
        from sklearn.linear_model import Ridge
        from sklearn.model_selection import TimeSeriesSplit

        order = np.argsort(np.asarray(train.launch_dates), kind="stable")
        x, y = features[order], train.targets[order]
        errors = np.zeros(len(self.alphas))
        for fit_rows, check_rows in TimeSeriesSplit(n_splits=self.cv).split(x):
            for i, alpha in enumerate(self.alphas):
                model = Ridge(alpha=alpha).fit(x[fit_rows], y[fit_rows])
                forecast = np.clip(model.predict(x[check_rows]), 0.0, None)
                errors[i] += np.abs(forecast - y[check_rows]).sum()
        return errors

    def predict(self, new: LaunchSet) -> np.ndarray:
        _check_fitted(self, "model_")
        return np.clip(np.asarray(self.model_.predict(self.features_(new))), 0.0, None)


class LightGBMEmbedding:
    """LightGBM on the launch features plus the week since launch (one model for all weeks).

    Args:
        encoder: as in :class:`KNNEmbedding`.
        n_estimators: boosting rounds.
        learning_rate: shrinkage.
        num_leaves: leaves per tree.
        min_child_samples: rows per leaf at least.
        seed: random seed (bagging and feature sampling).
    """

    def __init__(
        self,
        encoder: str | TextEncoder = DEFAULT_ENCODER,
        n_estimators: int = 300,
        learning_rate: float = 0.03,
        num_leaves: int = 15,
        min_child_samples: int = 40,
        seed: int = 0,
    ) -> None:
        self.encoder = encoder
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.seed = seed

    @staticmethod
    def _rows(features: np.ndarray, weeks: int) -> np.ndarray:
        """One row per (launch, week): the launch's features and the week index."""
        repeated = np.repeat(features, weeks, axis=0)
        week = np.tile(np.arange(weeks, dtype=float), features.shape[0])[:, None]
        return np.hstack([repeated, week])

    def fit(self, train: LaunchSet) -> Self:
        from salesformer.models.lightgbm import import_lightgbm

        _check_train(train)
        lightgbm = import_lightgbm()
        self.features_ = _LaunchFeatures(_resolve_encoder(self.encoder), train)
        self.weeks_ = train.weeks
        self.model_ = lightgbm.LGBMRegressor(
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            num_leaves=self.num_leaves,
            min_child_samples=self.min_child_samples,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=0.5,
            random_state=self.seed,
            n_jobs=1,
            verbose=-1,
        )
        self.model_.fit(self._rows(self.features_(train), self.weeks_), train.targets.reshape(-1))
        return self

    def predict(self, new: LaunchSet) -> np.ndarray:
        _check_fitted(self, "model_")
        flat = self.model_.predict(self._rows(self.features_(new), self.weeks_))
        return np.clip(np.asarray(flat, dtype=float).reshape(len(new), self.weeks_), 0.0, None)
