"""The LM's launch regression: a second opinion on new products, blended on held-out launches.

The network learns launches from launch samples among many history samples, and on new
products it does worse than a ridge regression on text vectors and price. So a fit also
learns, from the launches inside its own panel, one ridge regression per step since launch of
the sales on the features a new product has: the LM's own text vector of the item (fine-tuned
when fine-tuning was kept), the log launch price (and whether there is one) and the launch
date's calendar position. :meth:`LMForecaster.predict_new` forecasts

    ``weight * network + (1 - weight) * ridge``

for the point forecast (the quantiles move with it), where ``network`` is the mean of the
network's predictive distribution (the average of its quantiles at :data:`MEAN_LEVELS`), a
mean like the regression's least-squares fit, rather than its median: on launches, whose
weekly sales are mostly small with a few large, the median is close to zero and mixing it
with a mean mixes two different targets. ``weight`` is chosen on launches held out
by time, as the task is: the launches inside the fit's validation window (first sale in the
last ``horizon`` periods), which the network never trained on, forecast by the network and by
a ridge fitted on the launches before them (their curves cut at the validation origin); the
weight with the lowest WAPE over their observed cells wins (``launch_network_weight=None``,
the default; a number fixes the weight).

That comparison is fair only when the regression fitted before the window could learn every
step of the curve: at least :data:`MIN_LAUNCHES` launches before the window observed at each
step. In a short panel it cannot (the launches before the window are seen for their first
weeks only, and the later steps copy the last learnt one), and it then loses to a network
whose launch forecasts are close to zero for the wrong reason. Then, and when there are too
few held-out launches (:data:`MIN_HELD_OUT`), the two are combined with equal weights
(:data:`UNDECIDED_WEIGHT`): the usual choice when the evidence cannot estimate weights. With
too few launches for a regression at all, or when the regression's cross-validation picks
the largest penalty (its features say nothing a mean curve does not), the network alone
forecasts.

The ridge's penalty is chosen by forward-chaining cross-validation over the launches in
launch order (absolute error, as WAPE), among :data:`ALPHAS`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from salesformer.models.lm.samples import Wide, calendar

#: Candidate ridge penalties (the features are unit text vectors and order-one extras).
ALPHAS: tuple[float, ...] = tuple(float(a) for a in np.logspace(-1, 4, 21))
#: Fewest launches (with their first period observed) a launch regression is fitted from.
MIN_LAUNCHES = 20
#: Fewest held-out launches the blend weight is chosen on (else equal weights).
MIN_HELD_OUT = 20
#: The network's weight when the held-out launches cannot decide it (too few of them, or a
#: regression before them that could not learn every step): equal weights.
UNDECIDED_WEIGHT = 0.5
#: Quantile levels whose average is the network's mean-type launch forecast in the blend.
MEAN_LEVELS: tuple[float, ...] = tuple(float(q) for q in np.round(np.arange(0.05, 1.0, 0.1), 2))
#: Blend weights of the network tried on the held-out launches.
WEIGHTS: tuple[float, ...] = tuple(float(w) for w in np.round(np.linspace(0.0, 1.0, 21), 2))
#: Forward-chaining folds of the penalty's cross-validation.
FOLDS = 5


@dataclass
class LaunchRidge:
    """One ridge regression per step since launch (``coef``: features x steps)."""

    coef: np.ndarray
    intercept: np.ndarray
    alpha: float
    price_fill: float

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Sales per step, ``(n, steps)``, clipped at 0."""
        return np.clip(features @ self.coef + self.intercept, 0.0, None)

    def to_json(self) -> dict[str, Any]:
        return {
            "coef": self.coef.tolist(),
            "intercept": self.intercept.tolist(),
            "alpha": self.alpha,
            "price_fill": self.price_fill,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LaunchRidge:
        return cls(
            np.asarray(data["coef"], dtype=np.float64),
            np.asarray(data["intercept"], dtype=np.float64),
            float(data["alpha"]),
            float(data["price_fill"]),
        )


def launch_features(
    vectors: np.ndarray, price: np.ndarray, dates: pd.DatetimeIndex, freq: str, price_fill: float
) -> np.ndarray:
    """Text vector, log launch price (missing: ``price_fill``), has-price, calendar of launch."""
    ok = np.isfinite(price) & (price > 0)
    log_price = np.where(ok, np.log1p(np.where(ok, price, 0.0)), price_fill)
    extra = np.column_stack([log_price, ok.astype(float), calendar(dates, freq, 1)])
    text = np.asarray(vectors, dtype=np.float64)
    text = text.reshape(len(price), text.shape[-1] if text.ndim > 1 else -1)
    return np.hstack([text, extra])


@dataclass
class PanelLaunches:
    """The launches inside a panel: rows of ``wide``, curves and which cells are observed."""

    items: np.ndarray
    curves: np.ndarray
    observed: np.ndarray
    #: Launches whose every step lies at or before the cut.
    whole: np.ndarray
    price: np.ndarray
    dates: pd.DatetimeIndex

    @classmethod
    def find(cls, wide: Wide, launch_after: int, steps: int, limit: int) -> PanelLaunches:
        """Items first sold at or after period ``launch_after`` (and after the first period)
        and by ``limit``; their sales in the ``steps`` periods from launch up to ``limit``."""
        first = wide.first
        items = np.flatnonzero((first >= max(1, launch_after)) & (first <= limit))
        items = items[np.argsort(first[items], kind="stable")]
        cols = first[items][:, None] + np.arange(steps)[None, :]
        safe = np.clip(cols, 0, wide.n_history - 1)
        observed = (cols <= limit) & wide.observed[items[:, None], safe]
        if wide.unavailable is not None:
            observed &= ~wide.unavailable[items[:, None], safe]
        curves = np.where(observed, wide.sales[items[:, None], safe], 0.0)
        price = (
            np.full(len(items), np.nan)
            if wide.launch_price is None
            else np.asarray(wide.launch_price[items], dtype=float)
        )
        dates = pd.DatetimeIndex(wide.dates[first[items]])
        return cls(items, curves, observed, cols[:, -1] <= limit, price, dates)

    def __len__(self) -> int:
        return len(self.items)

    def price_fill(self) -> float:
        """The median log launch price (0 when none is known), for launches without one."""
        ok = np.isfinite(self.price) & (self.price > 0)
        return float(np.median(np.log1p(self.price[ok]))) if ok.any() else 0.0


def _centred(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    mx, my = x.mean(axis=0), y.mean(axis=0)
    return x - mx, y - my, mx, my


def _ridge_all_alphas(x: np.ndarray, y: np.ndarray, alphas: tuple[float, ...]) -> list[Any]:
    """Ridge solutions (coef, intercept) of ``y`` on ``x`` for every alpha, from one SVD."""
    xc, yc, mx, my = _centred(x, y)
    u, s, vt = np.linalg.svd(xc, full_matrices=False)
    uty = u.T @ yc
    out = []
    for alpha in alphas:
        coef = vt.T @ ((s / (s**2 + alpha))[:, None] * uty)
        out.append((coef, my - mx @ coef))
    return out


def fit_launch_ridge(
    features: np.ndarray, curves: np.ndarray, observed: np.ndarray
) -> LaunchRidge | None:
    """The ridge of :class:`LaunchRidge`; None with fewer than :data:`MIN_LAUNCHES` launches.

    Each step is fitted on the launches observed at that step (the latest launches have only
    their first steps). The penalty is chosen by forward-chaining cross-validation over the
    launches in launch order: each fold fits on earlier launches and scores the next ones'
    observed cells by absolute error.
    """
    if int(observed[:, 0].sum()) < MIN_LAUNCHES:
        return None
    n, steps = curves.shape
    errors = np.zeros(len(ALPHAS))
    bounds = np.linspace(0, n, FOLDS + 2).astype(int)[1:]
    for start, stop in itertools.pairwise(bounds):
        for step in range(steps):
            train = np.flatnonzero(observed[:start, step])
            check = start + np.flatnonzero(observed[start:stop, step])
            if len(train) < 2 or not len(check):
                continue
            y = curves[:, step : step + 1]
            for i, (coef, intercept) in enumerate(
                _ridge_all_alphas(features[train], y[train], ALPHAS)
            ):
                forecast = np.clip(features[check] @ coef + intercept, 0.0, None)
                errors[i] += np.abs(forecast - y[check]).sum()
    alpha = ALPHAS[int(np.argmin(errors))]
    coef = np.zeros((features.shape[1], steps))
    intercept = np.zeros(steps)
    for step in range(steps):
        seen = np.flatnonzero(observed[:, step])
        if len(seen) < 2:  # no launch this old yet: the last step with enough
            coef[:, step], intercept[step] = coef[:, step - 1], intercept[step - 1]
            continue
        (c, b) = _ridge_all_alphas(features[seen], curves[seen, step : step + 1], (alpha,))[0]
        coef[:, step], intercept[step] = c[:, 0], b[0]
    return LaunchRidge(coef, intercept, float(alpha), 0.0)


def choose_weight(
    network: np.ndarray, ridge: np.ndarray, actual: np.ndarray, ok: np.ndarray
) -> tuple[float, dict[float, float]]:
    """The network's blend weight with the lowest WAPE over the ``ok`` cells, and each WAPE."""
    total = float(np.abs(actual[ok]).sum())
    scores = {}
    for w in WEIGHTS:
        blend = w * network + (1 - w) * ridge
        scores[w] = float(np.abs(blend - actual)[ok].sum() / total) if total > 0 else np.nan
    best = min(scores, key=lambda w: (scores[w], -w))
    return best, scores


@dataclass
class LaunchBlend:
    """The launch regression and the network's weight in the blend (see the module doc)."""

    ridge: LaunchRidge
    weight: float

    def to_json(self) -> dict[str, Any]:
        return {"ridge": self.ridge.to_json(), "weight": self.weight}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LaunchBlend:
        return cls(LaunchRidge.from_json(data["ridge"]), float(data["weight"]))

    def apply(
        self,
        values: np.ndarray,
        vectors: np.ndarray,
        price: np.ndarray,
        dates: pd.DatetimeIndex,
        freq: str,
        network_mean: np.ndarray | None = None,
    ) -> np.ndarray:
        """Blend the network's launch forecast ``values`` (``(n * horizon, 1 + quantiles)``,
        item-major, point first) with the regression's: the point becomes
        ``weight * network_mean + (1 - weight) * regression`` (``network_mean``, one value per
        row, from :func:`network_means`; the network's point when None) and every quantile
        moves by the same amount (clipped at 0, kept in order)."""
        n = len(price)
        horizon = len(values) // max(n, 1)
        features = launch_features(vectors, price, dates, freq, self.ridge.price_fill)
        ridge = self.ridge.predict(features)[:, :horizon].reshape(-1)
        point = values[:, 0]
        network = point if network_mean is None else np.asarray(network_mean, dtype=float)
        shift = (self.weight * network + (1.0 - self.weight) * ridge) - point
        moved = np.clip(values + shift[:, None], 0.0, None)
        moved[:, 1:] = np.sort(moved[:, 1:], axis=1)
        return moved


def network_means(model: Any, samples: Any, vectors: np.ndarray, horizon: int) -> np.ndarray:
    """The network's mean-type forecast of cold ``samples``, one value per (item, step) row,
    item-major: the average of its quantiles at :data:`MEAN_LEVELS`."""
    from salesformer.models.lm.prediction import forecast_samples

    values = forecast_samples(model, samples, vectors, horizon, MEAN_LEVELS)
    return np.asarray(values[:, 1:], dtype=float).mean(axis=1)


def network_launch_points(
    model: Any, vectors: np.ndarray, price: np.ndarray, dates: pd.DatetimeIndex, freq: str
) -> np.ndarray:
    """The network's part of the blend for launches, ``(n, horizon)``: its mean-type forecast
    (:func:`network_means`), as ``predict_new`` blends it."""
    from salesformer.models.lm.samples import cold_samples

    ok = np.isfinite(price) & (price > 0)
    samples = cold_samples(
        np.log1p(np.where(ok, price, 0.0)),
        ok,
        dates,
        context=model.context_,
        horizon=model.horizon,
        freq=freq,
        standardizer=model.standardizer_,
    )
    return network_means(model, samples, vectors, model.horizon).reshape(len(price), model.horizon)


def fit_launch_blend(
    model: Any, wide: Wide, freq: str, validation_origin: int | None
) -> tuple[LaunchBlend | None, dict[str, Any]]:
    """The launch regression of a fitted ``model`` and its blend weight, with a report.

    ``validation_origin`` is the last period before the fit's validation window (None: no
    validation window). The report gives the WAPE of the network, of a regression fitted on
    the launches before the window and of the chosen blend on the launches inside it, when
    there are enough of them; the weight is ``model.launch_network_weight`` or, when that is
    None, the one chosen there (no blend, the network alone, when it cannot be chosen).
    """
    steps, last = model.horizon, wide.n_history - 1
    vectors = model.item_vectors_
    fixed = model.launch_network_weight
    everything = PanelLaunches.find(wide, model.launch_after, steps, last)
    fill = everything.price_fill()

    def features(launches: PanelLaunches, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        return launch_features(
            vectors[launches.items[rows]], launches.price[rows], launches.dates[rows], freq, fill
        )

    report: dict[str, Any] = {"launches": len(everything)}
    ridge = fit_launch_ridge(features(everything), everything.curves, everything.observed)
    if ridge is None:
        report["skipped"] = f"too few launches in the panel (need {MIN_LAUNCHES})"
        return None, report
    ridge.price_fill = fill
    report["alpha"] = ridge.alpha
    if ridge.alpha >= max(ALPHAS):
        report["skipped"] = (
            "the regression's cross-validation chose the largest penalty: its features forecast "
            "no better than a mean launch curve, so the network alone"
        )
        return None, report
    chosen, undecided = None, "no validation window"
    if validation_origin is not None:
        earlier = PanelLaunches.find(wide, model.launch_after, steps, validation_origin)
        check = fit_launch_ridge(features(earlier), earlier.curves, earlier.observed)
        held = np.flatnonzero(wide.first[everything.items] > validation_origin)
        report["held_out"] = len(held)
        per_step = earlier.observed.sum(axis=0) if len(earlier) else np.zeros(steps, int)
        report["launches_before_held_out_per_step"] = [int(n) for n in per_step]
        if len(held) < MIN_HELD_OUT:
            undecided = f"{len(held)} held-out launches (fewer than {MIN_HELD_OUT})"
        elif check is None or int(per_step.min()) < MIN_LAUNCHES:
            undecided = (
                f"the regression before the held-out launches saw at least {MIN_LAUNCHES} "
                f"launches at only {int((per_step >= MIN_LAUNCHES).sum())} of {steps} steps"
            )
        if check is not None and len(held) >= MIN_HELD_OUT:
            network = network_launch_points(
                model,
                vectors[everything.items[held]],
                everything.price[held],
                everything.dates[held],
                freq,
            )
            regression = check.predict(features(everything, held))
            chosen, scores = choose_weight(
                network, regression, everything.curves[held], everything.observed[held]
            )
            report["held_out_wape"] = {
                "network": scores[1.0],
                "regression": scores[0.0],
                "best": scores[chosen],
            }
            if int(per_step.min()) >= MIN_LAUNCHES:
                report["weight_chosen_on_held_out"] = chosen
            else:
                chosen = None
    if fixed is not None:
        weight = float(fixed)
    elif chosen is not None:
        weight = chosen
    else:
        weight = UNDECIDED_WEIGHT
        report["undecided"] = f"{undecided}: equal weights"
    report["weight"] = weight
    return LaunchBlend(ridge, weight), report


def read_launch_blend(data: Any, where: object) -> LaunchBlend | None:
    """A saved :class:`LaunchBlend` (None when the model has none), checked.

    Raises:
        ConfigError: when ``data`` is not a whole, finite launch blend.
    """
    from salesformer.errors import ConfigError

    if data is None:
        return None
    try:
        blend = LaunchBlend.from_json(data)
        coef, intercept = blend.ridge.coef, blend.ridge.intercept
        ok = (
            coef.ndim == 2
            and intercept.shape == (coef.shape[1],)
            and np.isfinite(coef).all()
            and np.isfinite(intercept).all()
            and 0.0 <= blend.weight <= 1.0
            and np.isfinite(blend.ridge.price_fill)
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"{str(where)!r}: state.launch_blend is malformed ({type(exc).__name__}: {exc}); "
            "refit the model with 'salesformer fit'"
        ) from exc
    if not ok:
        raise ConfigError(
            f"{str(where)!r}: state.launch_blend must hold a finite coefficient matrix, one "
            "intercept per step and a weight in [0, 1]; refit the model with 'salesformer fit'"
        )
    return blend
