"""Statistical baselines: thin wrappers over statsforecast's local models.

Every baseline here is one statsforecast model fitted to each item's own history; this module
only adapts statsforecast to the :class:`~salesformer.forecasting.protocol.Forecaster` protocol:

- **frequency and season**: ``freq`` and the season length come from the panel
  (52 weekly, 7 daily, 12 monthly);
- **short histories**: an item whose history is shorter than the model's
  :meth:`~_StatsForecastModel.min_history` (:data:`MIN_HISTORY` unless the model says
  otherwise) gets the model's fallback instead: Naive, or HistoricAverage for WindowAverage.
  Any other failure of the model on one series also falls back to Naive (statsforecast's
  ``fallback_model``), so no item is ever left without a forecast;
- **quantiles**: scaled conformal quantiles from past windows (see
  :mod:`salesformer.models.conformal`), computed at predict time for the requested horizon and
  cached; or, with ``intervals="native"``, statsforecast's own prediction intervals for the
  models that have them;
- **stock-outs**: a panel's out-of-stock periods are imputed from the item's in-stock periods
  nearby before fitting (:func:`salesformer.data.stockouts.impute_stockouts`).

``docs/models.md`` describes each model, its settings and the quantile rules in full.
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import numpy as np
import pandas as pd
from statsforecast import StatsForecast
from statsforecast import models as sf_models

from salesformer.data.contract import DATE, ITEM_ID, SALES, Panel
from salesformer.data.stockouts import impute_stockouts
from salesformer.errors import ConfigError, NotFittedError
from salesformer.forecasting.params import Boolean, Constraint, Interval, OneOf, Rule
from salesformer.forecasting.protocol import Forecaster, quantile_column
from salesformer.forecasting.saved import CONFIG_FILE, read_json_config
from salesformer.models.conformal import (
    FitPredict,
    apply_quantiles,
    calibration_cutoffs,
    error_quantiles,
    item_scale,
    scaled_errors,
)

Intervals = Literal["conformal", "native"]

#: Shortest history a model is fitted to unless it says otherwise; shorter items get the
#: model's fallback (Naive). Two points are no basis for smoothing or for Croston's intervals.
MIN_HISTORY = 3

#: Shortest history AutoETS is fitted to; shorter items get Naive. statsforecast refuses
#: fewer than about 7 points, and an information criterion on less than a quarter of weekly
#: data chooses noise.
ETS_MIN_HISTORY = 12

_SF_ID, _SF_TIME, _SF_TARGET = "unique_id", "ds", "y"


def _to_statsforecast(sales: pd.DataFrame) -> pd.DataFrame:
    """The panel's sales in statsforecast's column names."""
    frame = sales[[ITEM_ID, DATE, SALES]]
    return frame.rename(columns={ITEM_ID: _SF_ID, DATE: _SF_TIME, SALES: _SF_TARGET})


def _interval_level(quantile: float) -> float | None:
    """The central-interval level (in %) whose bound is ``quantile``; None for the median.

    ``0.1`` and ``0.9`` are the bounds of the 80% interval, ``0.25`` and ``0.75`` of the 50% one.
    """
    level = round(abs(2.0 * quantile - 1.0) * 100.0, 6)
    if level == 0.0:
        return None
    return int(level) if level.is_integer() else level


def _errors_at(
    fit_predict: FitPredict, panel: Panel, horizon: int, origins: list[pd.Timestamp]
) -> np.ndarray:
    """:func:`scaled_errors` at given calibration origins (those of a larger panel)."""
    rows = []
    for origin in origins:
        train = panel.until(origin)
        if train.sales.empty:
            continue
        point = fit_predict(train, horizon)
        actual = panel.window(origin, horizon)[[ITEM_ID, DATE, SALES]]
        merged = point.merge(actual, on=[ITEM_ID, DATE], how="inner")
        value_column = next(c for c in point.columns if c not in (ITEM_ID, DATE))
        merged["scale"] = merged[ITEM_ID].map(item_scale(train)).astype(float)
        merged["error"] = (merged[SALES] - merged[value_column]) / merged["scale"]
        merged["step"] = merged.groupby(ITEM_ID, sort=False).cumcount()
        wide = merged.pivot(index=ITEM_ID, columns="step", values="error")
        rows.append(wide.reindex(columns=range(horizon)).dropna().to_numpy())
    if not rows:
        return np.zeros((0, horizon))
    return np.vstack(rows)


def _is_ets_spec(spec: object) -> bool:
    return (
        isinstance(spec, str)
        and len(spec) == 3
        and spec[0] in "AMZ"
        and spec[1] in "NAMZ"
        and spec[2] in "NAMZ"
    )


#: The settings every statsforecast wrapper shares (see :mod:`salesformer.forecasting.params`).
STATISTICAL_CONSTRAINTS: dict[str, Constraint] = {
    "intervals": OneOf("conformal", "native"),
    "n_windows": Interval(int, 1),
    "n_jobs": Rule(
        "be -1 (every core) or a whole number >= 1",
        lambda n: isinstance(n, int) and not isinstance(n, bool) and (n == -1 or n >= 1),
    ),
}


@dataclass
class _StatsForecastModel(Forecaster):
    """Shared implementation of the statsforecast baselines.

    A subclass is a dataclass of its own settings, sets ``name`` and implements :meth:`_make`;
    it may override :meth:`min_history` and :meth:`make_fallback`.

    Args:
        intervals: ``"conformal"`` (default, every model) or ``"native"`` (statsforecast's
            prediction intervals; Naive, SeasonalNaive, HistoricAverage and AutoETS only).
        n_windows: calibration windows for conformal quantiles (>= 1).
        n_jobs: processes statsforecast fits with (``-1``: every core). Results do not depend
            on it; it can pay off for AutoETS on thousands of items when cores are idle.
    """

    intervals: Intervals = "conformal"
    n_windows: int = 2
    n_jobs: int = 1

    #: Whether statsforecast gives this model prediction intervals of its own.
    native_intervals: ClassVar[bool] = False

    # Learned state, not settings: excluded from __init__, repr and comparison.
    fitted_: list[StatsForecast] = field(init=False, repr=False, compare=False)
    scale_: pd.Series = field(init=False, repr=False, compare=False)
    points_: dict[int, pd.DataFrame] = field(init=False, repr=False, compare=False)
    errors_: dict[int, np.ndarray] = field(init=False, repr=False, compare=False)
    #: The model a :meth:`for_items` view was made from; ``shared_``: a :meth:`shareable` copy.
    source_: _StatsForecastModel | None = field(init=False, repr=False, compare=False, default=None)
    shared_: bool = field(init=False, repr=False, compare=False, default=False)

    @abstractmethod
    def _make(self, season_length: int) -> Any:
        """A new statsforecast model for items with enough history."""

    def min_history(self, season_length: int) -> int:
        """Fewest periods of history an item needs for this model (else it gets the fallback)."""
        return MIN_HISTORY

    def make_fallback(self) -> Any:
        """A new statsforecast model for items shorter than :meth:`min_history`."""
        return sf_models.Naive()

    explainer: ClassVar[str | None] = "salesformer.explain.statistical:explain_statistical"
    constraints: ClassVar[Mapping[str, Constraint]] = STATISTICAL_CONSTRAINTS

    def check_params(self) -> None:
        """Raise :class:`ConfigError` for a setting out of range (``fit`` calls it)."""
        super().check_params()
        if self.intervals == "native" and not self.native_intervals:
            with_native = ", ".join(
                cls.name for cls in _StatsForecastModel.__subclasses__() if cls.native_intervals
            )
            raise ConfigError(
                f"{self.name} has no native prediction intervals in statsforecast; "
                f"use intervals='conformal' (available for every model), or one of {with_native}"
            )

    @classmethod
    def load_for_parts(cls, folder: str | Path) -> Self:
        """The saved settings, *unfitted*: each item's model depends on its own history only,
        so the parts fit it (see :mod:`salesformer.distributed.predict`)."""
        path = Path(folder)
        hint = "refit the model with 'salesformer fit', or restore the folder from a backup"
        config = read_json_config(path / CONFIG_FILE, hint)
        return cls.from_saved_params(config.get("params") or {}, path / CONFIG_FILE, hint)

    def _fit(self, panel: Panel) -> None:
        self.source_ = None
        self.shared_ = False
        self.fitted_ = self._fit_statsforecast(panel)
        self.scale_ = item_scale(panel)
        self.points_ = {}
        self.errors_ = {}
        self.tables_: dict[tuple[int, tuple[float, ...]], np.ndarray] = {}

    def _predict(
        self, horizon: int, future: pd.DataFrame, quantiles: tuple[float, ...]
    ) -> pd.DataFrame:
        if self.intervals == "native":
            return self._native_quantiles(horizon, quantiles)
        point = self.point_forecast(horizon)
        if not quantiles:
            return point
        table = getattr(self, "tables_", {}).get((horizon, quantiles))
        if table is None:
            table = error_quantiles(self._calibration_errors(horizon), quantiles)
        return apply_quantiles(point, self.name, self.scale_, table, quantiles)

    def _fit_statsforecast(self, panel: Panel) -> list[StatsForecast]:
        """Fit the model to items with enough history and the fallback to the others."""
        season = panel.season_length
        lengths = panel.history_length()
        long_enough = lengths.index[lengths >= self.min_history(season)]
        frame = _to_statsforecast(impute_stockouts(panel).sales)  # stock-outs are not demand
        is_long = frame[_SF_ID].isin(long_enough).to_numpy()
        groups = (
            (self._make(season), frame[is_long], self.n_jobs),
            (self.make_fallback(), frame[~is_long], 1),
        )
        fitted = []
        for model, data, n_jobs in groups:
            if data.empty:
                continue
            model.alias = self.name
            forecaster = StatsForecast(
                models=[model],
                freq=panel.freq,
                n_jobs=n_jobs,
                fallback_model=sf_models.Naive(),
            )
            fitted.append(forecaster.fit(data))
        return fitted

    def _forecast(
        self,
        fitted: list[StatsForecast],
        horizon: int,
        levels: list[float] | None = None,
    ) -> pd.DataFrame:
        """Forecasts of fitted statsforecast objects, in the contract's column names."""
        # statsforecast takes any level in (0, 100) although it annotates them as int
        frames = [sf.predict(h=horizon, level=levels) for sf in fitted]  # type: ignore[arg-type]
        out = pd.concat(frames, ignore_index=True)
        return out.rename(columns={_SF_ID: ITEM_ID, _SF_TIME: DATE})

    def _fit_predict(self, panel: Panel, horizon: int) -> pd.DataFrame:
        """Point forecasts from a fresh fit on ``panel`` (the conformal calibration hook)."""
        return self._forecast(self._fit_statsforecast(panel), horizon)

    def point_forecast(self, horizon: int) -> pd.DataFrame:
        """Point forecasts of every item for ``horizon`` steps (computed once per horizon)."""
        if horizon not in self.points_:
            self.points_[horizon] = self._forecast(self.fitted_, horizon)
        return self.points_[horizon]

    _point = point_forecast  # the name before it was public

    def _calibration_errors(self, horizon: int) -> np.ndarray:
        """Scaled errors pooled over every item of the fitted panel (cached per horizon).

        A view made by :meth:`for_items` asks the model it was made from, since the pool
        spans all items; a :meth:`shareable` copy holds the horizons it was made for.
        """
        if horizon not in self.errors_:
            if self.source_ is not None:
                self.errors_[horizon] = self.source_._calibration_errors(horizon)
            elif self.shared_:
                raise ConfigError(
                    f"{self.name}: this copy was made for horizons {sorted(self.errors_)}, "
                    f"not {horizon}; call shareable({horizon}) on the fitted model"
                )
            else:
                self.errors_[horizon] = scaled_errors(
                    self._fit_predict, self.panel_, horizon, self.n_windows
                )
        return self.errors_[horizon]

    def calibration_errors(self, horizon: int, dates: pd.DatetimeIndex | None = None) -> np.ndarray:
        """Scaled calibration errors of this model's items, one row per item and window.

        Conformal quantiles come from the pool of these rows over every item; the pool of a
        panel is the union of the rows of its parts (see :meth:`use_error_table`).

        Args:
            horizon: the forecast horizon.
            dates: the dates of the whole panel when this model was fitted on a part of it
                (the calibration origins are counted on the whole panel's dates).
        """
        if dates is None:
            return self._calibration_errors(horizon)
        grid = pd.DatetimeIndex(dates).sort_values()
        stand_in = Panel(
            pd.DataFrame({ITEM_ID: "", DATE: grid, SALES: 0.0}), None, self.panel_.freq
        )
        origins = set(calibration_cutoffs(stand_in, horizon, self.n_windows))
        own = set(calibration_cutoffs(self.panel_, horizon, self.n_windows))
        if origins == own:
            return self._calibration_errors(horizon)
        return _errors_at(self._fit_predict, self.panel_, horizon, sorted(origins))

    def use_error_table(
        self, horizon: int, quantiles: tuple[float, ...], table: np.ndarray
    ) -> None:
        """Take the conformal quantile table of ``horizon`` and the sorted levels ``quantiles``.

        ``table`` is :func:`error_quantiles` of the errors pooled over more items than this
        model's (``(horizon, levels)`` floats): what a Ray worker needs of the pool, whatever
        the number of items.
        """
        self.tables_[(horizon, tuple(quantiles))] = np.asarray(table, dtype=float)

    def for_items(self, part: Panel) -> _StatsForecastModel:
        """A view forecasting the items of ``part`` (see :meth:`Forecaster.for_items`).

        Each item's model depends on its own history only, so the view refits on ``part``;
        conformal quantiles keep the error pool of every item of the fitted panel.
        """
        if not hasattr(self, "errors_"):
            raise NotFittedError(
                f"{self.name} is not fitted yet; call .fit(panel) before .for_items(part)"
            )
        view = copy.copy(self)
        view.panel_ = part
        view.fitted_ = view._fit_statsforecast(part)
        view.scale_ = item_scale(part)
        view.points_ = {}
        view.errors_ = dict(self.errors_)
        view.tables_ = dict(getattr(self, "tables_", {}))
        view.source_ = None if self.shared_ else self
        return view

    def shareable(self, horizon: int) -> _StatsForecastModel:
        """Settings and the pooled calibration errors for ``horizon``; no per-item data."""
        if not hasattr(self, "errors_"):
            raise NotFittedError(
                f"{self.name} is not fitted yet; call .fit(panel) before .shareable(horizon)"
            )
        if self.intervals == "conformal":
            self._calibration_errors(horizon)
        lean = copy.copy(self)
        if hasattr(lean, "panel_"):
            del lean.panel_
        lean.fitted_ = []
        lean.scale_ = pd.Series(dtype=float)
        lean.points_ = {}
        lean.errors_ = {h: e for h, e in self.errors_.items() if h == horizon}
        lean.tables_ = {k: t for k, t in getattr(self, "tables_", {}).items() if k[0] == horizon}
        lean.source_ = None
        lean.shared_ = True
        return lean

    def _native_quantiles(self, horizon: int, quantiles: tuple[float, ...]) -> pd.DataFrame:
        """Quantile columns from statsforecast's intervals: q=0.1 is lo-80, q=0.9 is hi-80.

        A bound statsforecast cannot estimate (a one-point history) collapses onto the point.
        """
        levels = {q: _interval_level(q) for q in quantiles}
        wanted = sorted({level for level in levels.values() if level is not None})
        frame = self._forecast(self.fitted_, horizon, wanted or None)
        point = frame[self.name]
        for q, level in levels.items():
            if level is None:
                bound = point
            else:
                side = "lo" if q < 0.5 else "hi"
                bound = frame[f"{self.name}-{side}-{level}"].fillna(point)
            frame[quantile_column(self.name, q)] = bound
        return frame


@dataclass
class Naive(_StatsForecastModel):
    """Repeats each item's last value."""

    name = "Naive"
    native_intervals = True

    def _make(self, season_length: int) -> Any:
        return sf_models.Naive()

    def min_history(self, season_length: int) -> int:
        return 1


@dataclass
class SeasonalNaive(_StatsForecastModel):
    """Repeats the value of one season earlier (52 weeks for weekly data, 7 days for daily).

    Items with less than one season of history get Naive.
    """

    name = "SeasonalNaive"
    native_intervals = True

    def _make(self, season_length: int) -> Any:
        return sf_models.SeasonalNaive(season_length=season_length)

    def min_history(self, season_length: int) -> int:
        return season_length


@dataclass
class HistoricAverage(_StatsForecastModel):
    """The mean of each item's whole history."""

    name = "HistoricAverage"
    native_intervals = True

    def _make(self, season_length: int) -> Any:
        return sf_models.HistoricAverage()

    def min_history(self, season_length: int) -> int:
        return 1


@dataclass
class WindowAverage(_StatsForecastModel):
    """The mean of each item's last ``window_size`` periods.

    Items shorter than the window get the mean of their whole history (HistoricAverage).

    Args:
        window_size: periods averaged (>= 1); 13 weeks is one quarter, long enough to smooth
            weekly noise and short enough to follow a level shift.
    """

    name = "WindowAverage"
    window_size: int = 13

    def _make(self, season_length: int) -> Any:
        return sf_models.WindowAverage(window_size=self.window_size)

    def min_history(self, season_length: int) -> int:
        return self.window_size

    def make_fallback(self) -> Any:
        return sf_models.HistoricAverage()

    constraints: ClassVar[Mapping[str, Constraint]] = {
        **STATISTICAL_CONSTRAINTS,
        "window_size": Interval(int, 1),
    }


@dataclass
class AutoETS(_StatsForecastModel):
    """Exponential smoothing with the form chosen per item by AICc (statsforecast's AutoETS).

    Args:
        model: three letters, error / trend / season, each ``A`` (additive), ``M``
            (multiplicative), ``N`` (none) or ``Z`` (chosen by AICc); the error takes no ``N``.
            The default ``"ZZN"`` leaves out seasonality: with a 52-week season, seasonal ETS
            needs 52 initial states and two years of data, and on about two years of weekly
            retail data AICc practically never prefers it while it costs ten times the fit time.
            Use ``"ZZZ"`` to let AICc decide (it only considers seasonal forms for items with
            more than one season of history).
        damped: ``None`` lets AICc choose between no trend, a damped and an undamped trend;
            ``True`` forces a damped trend (so never "no trend"), ``False`` an undamped one.

    Items with fewer than :data:`ETS_MIN_HISTORY` periods get Naive.
    """

    name = "AutoETS"
    native_intervals = True
    model: str = "ZZN"
    damped: bool | None = None

    def _make(self, season_length: int) -> Any:
        return sf_models.AutoETS(season_length=season_length, model=self.model, damped=self.damped)

    def min_history(self, season_length: int) -> int:
        return ETS_MIN_HISTORY

    constraints: ClassVar[Mapping[str, Constraint]] = {
        **STATISTICAL_CONSTRAINTS,
        "model": Rule(
            "be three letters (error in A/M/Z, trend and season in N/A/M/Z), such as 'ZZN' "
            "or 'ZZZ'",
            _is_ets_spec,
        ),
        "damped": Boolean(none=True),
    }

    def check_params(self) -> None:
        """The table, then: a forced damped trend needs a trend."""
        super().check_params()
        if self.damped and self.model[1] == "N":
            raise ConfigError(
                f"AutoETS: damped=True needs a trend, but model={self.model!r} has none "
                "(trend 'N'); use a trend letter A/M/Z, or damped=None"
            )


@dataclass
class CrostonSBA(_StatsForecastModel):
    """Croston's method for intermittent demand with the Syntetos-Boylan bias correction."""

    name = "CrostonSBA"

    def _make(self, season_length: int) -> Any:
        return sf_models.CrostonSBA()


@dataclass
class CrostonOptimized(_StatsForecastModel):
    """Croston's method with the smoothing of sizes and intervals optimised per item."""

    name = "CrostonOptimized"

    def _make(self, season_length: int) -> Any:
        return sf_models.CrostonOptimized()


@dataclass
class TSB(_StatsForecastModel):
    """Teunter-Syntetos-Babai: smooths the demand probability every period, so it decays.

    Args:
        alpha_d: smoothing of the non-zero demand size, in (0, 1].
        alpha_p: smoothing of the probability of a sale, in (0, 1]. The defaults 0.1 and 0.1
            are the usual values for slow movers (the range advised by Teunter et al. is
            0.1-0.3); higher values forget faster.
    """

    name = "TSB"
    alpha_d: float = 0.1
    alpha_p: float = 0.1

    def _make(self, season_length: int) -> Any:
        return sf_models.TSB(alpha_d=self.alpha_d, alpha_p=self.alpha_p)

    constraints: ClassVar[Mapping[str, Constraint]] = {
        **STATISTICAL_CONSTRAINTS,
        "alpha_d": Interval(float, 0.0, 1.0, closed="right"),
        "alpha_p": Interval(float, 0.0, 1.0, closed="right"),
    }


@dataclass
class ADIDA(_StatsForecastModel):
    """Aggregate-disaggregate intermittent demand approach (temporal aggregation + SES)."""

    name = "ADIDA"

    def _make(self, season_length: int) -> Any:
        return sf_models.ADIDA()
