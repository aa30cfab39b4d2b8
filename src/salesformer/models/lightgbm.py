"""A global LightGBM forecaster: one direct multi-horizon model for every item.

Training rows are ``(item, origin, step)`` triples from the last ``n_origins`` origins of the
panel (every ``origin_step`` periods) with the leak-free features of
:mod:`salesformer.data.features`; the step is a feature, so one model serves every step up to
``max_horizon``. A longer horizon is served by a model retrained for it on the same panel
(kept for later calls), since a direct model has never seen those steps.

**Target.** ``"log1p_offset"`` (default): ``log1p(sales)``, each row boosted from
``log1p(scale)`` (LightGBM ``init_score``), so the trees learn the deviation from the item's
recent level. ``"log1p"``: the same target boosted from one global mean. ``"log1p_scaled"``:
``log1p(sales / scale)``. The forecast is ``expm1`` of the prediction, close to a median: on
the validation windows of ``benchmarks/tune_lightgbm.py`` the smearing correction towards the
mean (``bias_correction=True``) raised WAPE, so it is off by default.

**Quantiles.** ``quantile_method="lightgbm"`` (default) trains one quantile-objective model per
level of ``quantile_levels`` on the same target (quantiles survive monotone transforms) and
interpolates other levels linearly between them, on the log scale. ``"conformal"`` refits the
point model without the last ``max_horizon`` periods and adds per-step quantiles of its log
errors there; cheaper, but its intervals ignore how uncertain each item is, and it scored a
worse weighted quantile loss in the tuning.

**Threads.** LightGBM runs on OpenMP, whose threads spin while they wait: with another busy
process on the machine, 2 spinning threads ran 20x slower than 1. Unless the user has set
``OMP_WAIT_POLICY``, it is set to ``PASSIVE`` before LightGBM is first imported.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd

from salesformer.data.contract import DATE, ITEM_ID, Panel
from salesformer.data.features import FeatureMatrix, build_features
from salesformer.data.stockouts import drop_unavailable_targets, impute_stockouts
from salesformer.errors import ConfigError, NotFittedError
from salesformer.forecasting.params import Boolean, Constraint, Interval, OneOf, Rule
from salesformer.forecasting.protocol import Forecaster, quantile_column
from salesformer.models import lightgbm_state
from salesformer.models.conformal import error_quantiles

Target = Literal["log1p_offset", "log1p", "log1p_scaled"]
QuantileMethod = Literal["lightgbm", "conformal"]

#: The settings' allowed values (see :mod:`salesformer.forecasting.params`).
LIGHTGBM_CONSTRAINTS: dict[str, Constraint] = {
    "max_horizon": Interval(int, 1, 1000),
    "n_origins": Interval(int, 1, 10_000),
    "origin_step": Interval(int, 1, 1000),
    "num_leaves": Interval(int, 2, 4096),
    "learning_rate": Interval(float, 1e-4, 1.0),
    "n_estimators": Interval(int, 1, 100_000),
    "min_data_in_leaf": Interval(int, 1, 1_000_000),
    "feature_fraction": Interval(float, 0.01, 1.0),
    "lambda_l2": Interval(float, 0.0, 1e6),
    "quantile_learning_rate": Interval(float, 1e-4, 1.0),
    "quantile_n_estimators": Interval(int, 1, 100_000),
    "quantile_thinning": Interval(int, 1, 1000),
    "seed": Interval(int, 0, 2**31 - 1),
    "target": OneOf("log1p_offset", "log1p", "log1p_scaled"),
    "quantile_method": OneOf("lightgbm", "conformal"),
    "use_known_future": Boolean(),
    "bias_correction": Boolean(),
    "price_monotone": Boolean(),
    "quantile_levels": Rule(
        "be levels strictly between 0 and 1",
        lambda levels: bool(levels) and all(0.0 < float(q) < 1.0 for q in levels),
    ),
    "n_jobs": Interval(int, 1, None, none=True),
}
#: Known-future covariates whose effect ``price_monotone`` fixes: -1 falls, +1 rises with them.
MONOTONE_COVARIATES = {"price": -1, "discount": 1}


def import_lightgbm() -> ModuleType:
    """Import LightGBM, first asking OpenMP to sleep rather than spin (see the module docs)."""
    if "lightgbm" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import lightgbm

    return lightgbm


@dataclass
class LightGBMForecaster(Forecaster):
    """Global direct multi-horizon LightGBM forecaster (see the module docstring).

    Attributes:
        max_horizon: largest step of the model trained by ``fit``.
        n_origins: number of training origins, the latest ones before the panel's end.
        origin_step: periods between two training origins.
        target: ``"log1p_offset"``, ``"log1p"`` or ``"log1p_scaled"``.
        use_known_future: use the panel's known-future covariates at the target dates; when
            False they are treated as past-only (their values at the origin).
        price_monotone: constrain the trees so that the forecast never rises with the
            known-future ``price`` and never falls with ``discount`` (LightGBM monotone
            constraints on those columns and their ``_rel`` ratios), all else equal. Point
            forecasts only: LightGBM's quantile objective takes no constraints.
        quantile_method: ``"lightgbm"`` (quantile models) or ``"conformal"``.
        quantile_levels: levels of the quantile models (``quantile_method="lightgbm"``);
            forecasts of other levels inside their range are interpolated.
        quantile_learning_rate: ``learning_rate`` of the quantile models.
        quantile_n_estimators: boosting rounds of the quantile models.
        quantile_thinning: the quantile models learn from every this-many-th training origin.
        bias_correction: multiply ``exp(prediction)`` by the mean of ``exp(log error)`` on the
            held-out window (smearing), moving the forecast from the median towards the mean.
        num_leaves: LightGBM ``num_leaves``.
        learning_rate: LightGBM ``learning_rate``.
        n_estimators: boosting rounds.
        min_data_in_leaf: LightGBM ``min_data_in_leaf``.
        feature_fraction: LightGBM ``feature_fraction``.
        lambda_l2: LightGBM ``lambda_l2``.
        seed: random seed; the same seed and data give the same forecasts.
        n_jobs: threads; None uses every core of the machine.
    """

    name = "LightGBM"
    explainer = "salesformer.explain.trees:explain_lightgbm"
    constraints: ClassVar[Mapping[str, Constraint]] = LIGHTGBM_CONSTRAINTS

    max_horizon: int = 8
    n_origins: int = 26
    origin_step: int = 2
    target: Target = "log1p_offset"
    use_known_future: bool = True
    price_monotone: bool = False
    quantile_method: QuantileMethod = "lightgbm"
    quantile_levels: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
    quantile_learning_rate: float = 0.1
    quantile_n_estimators: int = 75
    quantile_thinning: int = 2
    bias_correction: bool = False
    num_leaves: int = 63
    learning_rate: float = 0.05
    n_estimators: int = 150
    min_data_in_leaf: int = 50
    feature_fraction: float = 0.8
    lambda_l2: float = 0.0
    seed: int = 0
    n_jobs: int | None = None

    def static_features(self, panel: Panel) -> pd.DataFrame | None:
        """Static numeric item features indexed by ``item_id``; a hook for subclasses."""
        return None

    # -- fitting -------------------------------------------------------------------------

    def _fit(self, panel: Panel) -> None:
        self.source_: LightGBMForecaster | None = None
        self.shared_ = False
        self.view_ = self._covariate_view(panel)
        self.static_ = self.static_features(panel)
        self.longer_: dict[int, LightGBMForecaster] = {}
        dates = self.view_.dates
        positions = self._origin_positions(len(dates))
        rows = build_features(self.view_, dates[positions], self.max_horizon, static=self.static_)
        rows = drop_unavailable_targets(rows, panel)  # stock-outs are not demand
        self.feature_names_ = list(rows.features.columns)
        self.monotone_ = self._monotone(self.view_)
        self.smearing_ = 1.0
        self.log_errors_ = np.zeros((0, self.max_horizon))
        if self.quantile_method == "conformal" or self.bias_correction:
            self._calibrate(rows, dates[len(dates) - 1 - self.max_horizon])
        self.boosters_ = self._train_final(rows)

    def _covariate_view(self, panel: Panel) -> Panel:
        """The panel as this model reads it: stock-outs imputed in the history its features
        read (see :mod:`salesformer.data.stockouts`), known-future covariates demoted if asked."""
        panel = impute_stockouts(panel)
        if self.use_known_future or not panel.known_future:
            return panel
        demoted = (*panel.past_only, *panel.known_future)
        return dataclasses.replace(panel, known_future=(), past_only=demoted)

    def _monotone(self, view: Panel) -> list[int]:
        """Monotone constraint of each feature (0: free); see ``price_monotone``."""
        if not self.price_monotone:
            return [0] * len(self.feature_names_)
        signs = {
            feature: sign
            for name, sign in MONOTONE_COVARIATES.items()
            if name in view.known_future
            for feature in (name, f"{name}_rel")
        }
        return [signs.get(name, 0) for name in self.feature_names_]

    def _origin_positions(self, n_dates: int) -> np.ndarray:
        """Training origins: every ``origin_step`` periods back from the second-last date."""
        latest = n_dates - 2
        positions = latest - self.origin_step * np.arange(self.n_origins)
        return np.sort(positions[positions >= 0])

    def _calibrate(self, rows: FeatureMatrix, holdout: pd.Timestamp) -> None:
        """Learn log errors on the last ``max_horizon`` periods from a model fitted before them.

        The held-out origin is the latest training origin on or before ``holdout`` (skipped
        when the panel is too short to leave a training row before it).
        """
        origins = np.unique(rows.origin)
        candidates = origins[origins <= np.datetime64(holdout)]
        if not len(candidates):
            return
        origin = candidates[-1]
        before = rows.date <= origin
        held_out = rows.origin == origin
        if not before.any():
            return
        booster = self._train(rows, before)
        error = self._label(rows)[held_out] - self.predict_log(booster, rows, held_out)
        if self.bias_correction:
            self.smearing_ = float(np.mean(np.exp(np.clip(error, -20.0, 20.0))))
        frame = pd.DataFrame({ITEM_ID: rows.item_id[held_out], "step": rows.step[held_out]})
        frame["error"] = error
        wide = frame.pivot(index=ITEM_ID, columns="step", values="error")
        steps = range(1, self.max_horizon + 1)
        self.log_errors_ = wide.reindex(columns=steps).dropna().to_numpy()

    def _train_final(self, rows: FeatureMatrix) -> dict[float | None, Any]:
        """The point model (key None) and, for the lightgbm method, one model per level."""
        if not len(rows):
            return {}
        everything = np.ones(len(rows), dtype=bool)
        boosters: dict[float | None, Any] = {None: self._train(rows, everything)}
        if self.quantile_method == "lightgbm":
            data = self._dataset(rows, self._thinned(rows))
            for level in sorted(float(q) for q in self.quantile_levels):
                params = self._lightgbm_params(level, self.quantile_learning_rate)
                boosters[level] = import_lightgbm().train(params, data, self.quantile_n_estimators)
        return boosters

    def _thinned(self, rows: FeatureMatrix) -> np.ndarray:
        """Rows of every ``quantile_thinning``-th training origin, the latest one included."""
        origins = np.unique(rows.origin)[::-1]
        kept = origins[:: self.quantile_thinning]
        return np.isin(rows.origin, kept)

    def _train(self, rows: FeatureMatrix, mask: np.ndarray) -> Any:
        """The least-squares model on ``rows[mask]``."""
        params = self._lightgbm_params(None, self.learning_rate)
        return import_lightgbm().train(params, self._dataset(rows, mask), self.n_estimators)

    def _dataset(self, rows: FeatureMatrix, mask: np.ndarray) -> Any:
        """A LightGBM dataset of ``rows[mask]``: features, target and boosting offsets."""
        offset = self.log_offset(rows)
        return import_lightgbm().Dataset(
            rows.features.loc[mask],
            label=self._label(rows)[mask],
            init_score=None if offset is None else offset[mask],
            params={"verbosity": -1},
            free_raw_data=True,
        )

    def _lightgbm_params(self, alpha: float | None, learning_rate: float) -> dict[str, Any]:
        if alpha is None:
            objective: dict[str, Any] = {"objective": "l2"}
        else:
            objective = {"objective": "quantile", "alpha": alpha}
        return {
            **objective,
            "num_leaves": self.num_leaves,
            "learning_rate": learning_rate,
            "min_data_in_leaf": self.min_data_in_leaf,
            "feature_fraction": self.feature_fraction,
            "lambda_l2": self.lambda_l2,
            "seed": self.seed,
            **(
                {"monotone_constraints": self.monotone_}
                if alpha is None and any(self.monotone_)
                else {}
            ),
            "num_threads": self.n_jobs or os.cpu_count() or 1,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
        }

    # -- target transform ----------------------------------------------------------------

    def _label(self, rows: FeatureMatrix) -> np.ndarray:
        """The training target of each row."""
        if self.target == "log1p_scaled":
            return np.log1p(rows.target / rows.scale)
        return np.log1p(rows.target)

    def log_offset(self, rows: FeatureMatrix) -> np.ndarray | None:
        """Each row's starting point for boosting (``init_score``), or None."""
        return np.log1p(rows.scale) if self.target == "log1p_offset" else None

    def predict_log(
        self, booster: Any, rows: FeatureMatrix, mask: np.ndarray | None = None
    ) -> np.ndarray:
        """Prediction on the target scale, offset included."""
        selected = rows.features[self.feature_names_]
        if mask is not None:
            selected = selected.loc[mask]
        value = booster.predict(selected)
        offset = self.log_offset(rows)
        return value if offset is None else value + (offset if mask is None else offset[mask])

    def _to_sales(
        self, value: np.ndarray, rows: FeatureMatrix, smearing: float = 1.0
    ) -> np.ndarray:
        """Target scale back to sales, with the smearing factor."""
        level = np.exp(np.clip(value, -30.0, 30.0)) * smearing - 1.0
        return level * rows.scale if self.target == "log1p_scaled" else level

    # -- persistence ---------------------------------------------------------------------

    def save_state(self, folder: Path) -> dict[str, Any]:
        """The boosters in LightGBM's own format and the static features, so that loading
        predicts without refitting (see :mod:`salesformer.models.lightgbm_state`)."""
        return lightgbm_state.save_state(self, folder)

    def restore_state(self, panel: Panel, folder: Path, config: dict[str, Any]) -> None:
        """The saved boosters; a folder saved before they were kept is refitted."""
        state = config.get("state")
        if state is None:
            self.fit(panel)
            return
        if not isinstance(state, dict):
            raise ConfigError(
                f"{str(folder)!r}: config.json's state must be an object, got "
                f"{type(state).__name__}; refit the model"
            )
        self.panel_ = panel  # the settings were checked when the folder was read
        self.source_ = None
        self.shared_ = False
        self.longer_ = {}
        self.view_ = self._covariate_view(panel)
        lightgbm_state.restore_state(self, folder, state, import_lightgbm())

    # -- prediction ----------------------------------------------------------------------

    def _predict(
        self, horizon: int, future: pd.DataFrame, quantiles: tuple[float, ...]
    ) -> pd.DataFrame:
        model = self.model_for(horizon)
        view = model.view_
        rows = build_features(view, [view.last_date], horizon, future=future, static=model.static_)
        out = pd.DataFrame({ITEM_ID: rows.item_id, DATE: rows.date})
        point = model.boosters_.get(None)
        if point is None:  # no training row at all: forecast each item's recent level
            out[self.name] = rows.scale
            for level in quantiles:
                out[quantile_column(self.name, level)] = rows.scale
            return out
        log_point = model.predict_log(point, rows)
        out[self.name] = model._to_sales(log_point, rows, model.smearing_)
        if quantiles:
            log_levels = model._log_quantiles(rows, log_point, quantiles)
            for j, level in enumerate(quantiles):
                out[quantile_column(self.name, level)] = model._to_sales(log_levels[:, j], rows)
        return out

    def model_for(self, horizon: int) -> LightGBMForecaster:
        """This model, or one retrained on the same panel for a horizon beyond ``max_horizon``.

        A :meth:`for_items` view takes the longer model from the model it was made from
        (trained on every item), restricted to its own items.
        """
        if horizon <= self.max_horizon:
            return self
        if horizon not in self.longer_:
            if self.source_ is not None:
                self.longer_[horizon] = self.source_.model_for(horizon).for_items(self.panel_)
            elif self.shared_:
                raise ConfigError(
                    f"{self.name}: this copy was made for horizon <= "
                    f"{max([self.max_horizon, *self.longer_])}, not {horizon}; "
                    f"call shareable({horizon}) on the fitted model"
                )
            else:
                longer = dataclasses.replace(self, max_horizon=horizon)
                self.longer_[horizon] = longer.fit(self.panel_)
        return self.longer_[horizon]

    def for_items(self, part: Panel) -> LightGBMForecaster:
        """A view forecasting the items of ``part`` (see :meth:`Forecaster.for_items`).

        The boosters are global; every feature of a forecast row comes from its own item's
        history, so the view only swaps the panel the features are built from.
        """
        if not hasattr(self, "boosters_"):
            raise NotFittedError(
                f"{self.name} is not fitted yet; call .fit(panel) before .for_items(part)"
            )
        view = copy.copy(self)
        view.panel_ = part
        view.view_ = self._covariate_view(part)
        view.longer_ = {h: m.for_items(part) for h, m in self.longer_.items()}
        view.source_ = None if self.shared_ else self
        return view

    def _update(self, panel: Panel) -> LightGBMForecaster:
        """The same boosters, features built from ``panel`` (see :meth:`Forecaster.update`).

        Items the fitted panel did not hold get no static features (LightGBM's missing
        values), as an item without text does.
        """
        return self.for_items(panel)

    def shareable(self, horizon: int) -> LightGBMForecaster:
        """The boosters (and a model retrained for ``horizon`` if it is beyond
        ``max_horizon``), static item features and settings; no training panel."""
        if not hasattr(self, "boosters_"):
            raise NotFittedError(
                f"{self.name} is not fitted yet; call .fit(panel) before .shareable(horizon)"
            )
        longer = self.model_for(horizon)
        lean = copy.copy(self)
        for attribute in ("panel_", "view_"):
            if hasattr(lean, attribute):
                delattr(lean, attribute)
        lean.longer_ = {horizon: longer.shareable(horizon)} if longer is not self else {}
        lean.source_ = None
        lean.shared_ = True
        return lean

    def _log_quantiles(
        self, rows: FeatureMatrix, log_point: np.ndarray, quantiles: tuple[float, ...]
    ) -> np.ndarray:
        """Quantile forecasts on the target scale, shape ``(rows, levels)``."""
        if self.quantile_method == "conformal":
            table = error_quantiles(self.log_errors_, quantiles)
            return log_point[:, None] + table[rows.step - 1]
        trained = sorted(level for level in self.boosters_ if level is not None)
        outside = [q for q in quantiles if not trained[0] - 1e-9 <= q <= trained[-1] + 1e-9]
        if outside:
            raise ConfigError(
                f"quantile levels {outside} lie outside the trained levels {trained}; "
                f"refit with quantile_levels covering them, or use quantile_method='conformal'"
            )
        known = np.column_stack([self.predict_log(self.boosters_[q], rows) for q in trained])
        return interpolate_levels(np.sort(known, axis=1), trained, quantiles)


def interpolate_levels(
    known: np.ndarray, trained: list[float], wanted: tuple[float, ...]
) -> np.ndarray:
    """Linear interpolation between quantile columns ``known`` at levels ``trained``."""
    levels = np.asarray(trained, dtype=float)
    if len(levels) == 1:
        return np.repeat(known[:, :1], len(wanted), axis=1)
    columns = []
    for level in wanted:
        upper = int(np.clip(np.searchsorted(levels, level), 1, len(levels) - 1))
        lower = upper - 1
        weight = np.clip((level - levels[lower]) / (levels[upper] - levels[lower]), 0.0, 1.0)
        columns.append(known[:, lower] * (1.0 - weight) + known[:, upper] * weight)
    return np.column_stack(columns)
