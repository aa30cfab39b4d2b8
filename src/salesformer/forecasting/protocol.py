"""The one protocol every forecaster follows, baseline or not.

``fit(panel, items=None) -> self`` learns from a sales panel (a :class:`Panel` or a frame that
:func:`validate_panel` accepts); ``predict(horizon, future=None, quantiles=...)`` returns a
forecast frame with columns ``item_id, date, <name>, <name>-q<level>...`` and one row per item
of the fitted panel and step of the horizon. Forecasts are non-negative and quantiles never
cross: :meth:`Forecaster.predict` enforces both for every model.
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd

from salesformer._io import atomic_dir
from salesformer.data.contract import DATE, ITEM_ID, Panel, validate_panel
from salesformer.errors import ConfigError, DataValidationError, NotFittedError
from salesformer.forecasting.params import Constraint, check_constraints
from salesformer.forecasting.saved import (
    CONFIG_FILE,
    FORMAT,
    PANEL_DIR,
    jsonable,
    library_versions,
    read_json_config,
)

DEFAULT_QUANTILES: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def quantile_column(model: str, quantile: float) -> str:
    """Name of a quantile column: ``quantile_column("AutoETS", 0.1) == "AutoETS-q10"``."""
    return f"{model}-q{round(quantile * 100, 6):g}"


def check_quantiles(quantiles: Sequence[float]) -> tuple[float, ...]:
    """Sorted, distinct quantile levels strictly between 0 and 1."""
    try:
        levels = tuple(sorted({float(q) for q in quantiles}))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"quantiles must be numbers in (0, 1); got {quantiles!r}") from exc
    bad = [q for q in levels if not 0.0 < q < 1.0]
    if bad:
        raise ConfigError(f"quantiles must lie strictly between 0 and 1; got {bad}")
    return levels


def as_panel(panel: Panel | pd.DataFrame, items: pd.DataFrame | None = None) -> Panel:
    """Accept a :class:`Panel` or a raw frame (validated here); ``items`` overrides the panel's."""
    if isinstance(panel, Panel):
        if items is None:
            return panel
        checked = validate_panel(
            panel.sales,
            items,
            freq=panel.freq,
            known_future=panel.known_future,
            past_only=panel.past_only,
        )
        return dataclasses.replace(checked, calendar=panel.calendar)
    return validate_panel(panel, items)


def resolve_future(panel: Panel, horizon: int, future: pd.DataFrame | None) -> pd.DataFrame:
    """The known-future covariates for every item and step of the horizon.

    When ``future`` is None, each item's last known values are carried forward (a price plan
    of "no change"). When given, it must hold ``item_id``, ``date`` and every known-future
    covariate for every item and date of the horizon.
    """
    ids = panel.item_ids
    dates = panel.future_dates(panel.last_date, horizon)
    grid = pd.DataFrame(
        {ITEM_ID: np.repeat(ids, horizon), DATE: np.tile(dates.to_numpy(), len(ids))}
    )
    columns = list(panel.known_future)
    dated = _calendar_values(panel, grid)
    if future is None:
        if not columns:
            return grid
        carried = [c for c in columns if c not in dated.columns]
        last = panel.sales.groupby(ITEM_ID, sort=True)[carried].last()
        merged = grid.merge(last, left_on=ITEM_ID, right_index=True, how="left")
        return pd.concat([merged, dated], axis=1)[[ITEM_ID, DATE, *columns]]
    absent_calendar = [c for c in dated.columns if c not in future.columns]
    if absent_calendar:  # calendar columns are computed, a plan need not repeat them
        keys = grid.assign(**{c: dated[c] for c in absent_calendar})
        future = future.assign(
            **{ITEM_ID: future[ITEM_ID].astype(str), DATE: pd.to_datetime(future[DATE])}
        ).merge(keys, on=[ITEM_ID, DATE], how="left")
    missing = [c for c in (ITEM_ID, DATE, *columns) if c not in future.columns]
    if missing:
        raise DataValidationError(
            f"future covariates: column(s) {missing} missing; got {list(future.columns)}; "
            f"give item_id, date and the known-future covariates {columns}"
        )
    given = future[[ITEM_ID, DATE, *columns]].copy()
    given[ITEM_ID] = given[ITEM_ID].astype(str)
    given[DATE] = pd.to_datetime(given[DATE])
    given = given.drop_duplicates([ITEM_ID, DATE], keep="last")
    for column in columns:
        values = pd.to_numeric(given[column], errors="coerce").to_numpy(dtype=float)
        infinite = np.isinf(values)
        if infinite.any():
            raise DataValidationError(
                f"future covariates: column {column!r} holds {int(infinite.sum())} infinite "
                "values; give finite numbers for every item and date of the horizon"
            )
    merged = grid.merge(given, on=[ITEM_ID, DATE], how="left")
    if columns:
        absent = merged[columns].isna().any(axis=1)
        if absent.any():
            example = merged.loc[absent, [ITEM_ID, DATE]].head(3)
            shown = [f"{i} @ {pd.Timestamp(d).date()}" for i, d in example.itertuples(index=False)]
            raise DataValidationError(
                f"future covariates: {int(absent.sum())} of {len(merged)} (item, date) cells of "
                f"the horizon are missing, e.g. {shown}; give every item and date from "
                f"{dates[0].date()} to {dates[-1].date()}, "
                "or pass no future to carry the last values forward"
            )
    return merged


def _calendar_values(panel: Panel, grid: pd.DataFrame) -> pd.DataFrame:
    """The panel's calendar covariates (holidays, events) for the rows of ``grid``."""
    if not panel.calendar or grid.empty:
        return pd.DataFrame(index=grid.index)
    from salesformer.data.calendars import calendar_covariates

    values = calendar_covariates(panel.calendar, panel.freq, grid, panel)
    return values[[c for c in values.columns if c in panel.known_future]]


def check_extends(fitted: Panel, panel: Panel) -> None:
    """Raise :class:`DataValidationError` unless ``panel`` can extend ``fitted`` (see
    :meth:`Forecaster.update`): same frequency and covariates, ending no earlier."""
    if panel.freq != fitted.freq:
        raise DataValidationError(
            f"update: the panel's frequency is {panel.freq!r}, the fitted panel's {fitted.freq!r}; "
            "give the same shop's panel at the frequency the model was fitted on"
        )
    for kind in ("known_future", "past_only"):
        given, expected = tuple(getattr(panel, kind)), tuple(getattr(fitted, kind))
        if sorted(given) != sorted(expected):
            raise DataValidationError(
                f"update: the panel's {kind} covariates are {list(given)}, the fitted panel's "
                f"{list(expected)}; give a panel with the covariates the model was fitted on"
            )
    if panel.last_date < fitted.last_date:
        raise DataValidationError(
            f"update: the panel ends on {panel.last_date.date()}, before the fitted panel "
            f"({fitted.last_date.date()}); give the fitted history plus the periods since"
        )


#: The longest horizon any forecast may ask for (in periods): 1000 weeks is 19 years, 1000 days
#: almost 3 years. It bounds the rows and dates a request can make.
MAX_HORIZON = 1000


def check_horizon(horizon: object, name: str = "horizon") -> int:
    """``horizon`` as an int in [1, MAX_HORIZON]; :class:`ConfigError` otherwise."""
    if (
        isinstance(horizon, bool)
        or not isinstance(horizon, int | np.integer)
        or not 1 <= horizon <= MAX_HORIZON
    ):
        raise ConfigError(
            f"{name} must be a whole number from 1 to {MAX_HORIZON}; got {horizon!r}; "
            "give the number of periods to forecast, e.g. 8"
        )
    return int(horizon)


def fitted_horizon(model: Forecaster, default: int = 8) -> int:
    """The horizon ``model`` was fitted for (``horizon`` or ``max_horizon``), else ``default``."""
    for setting in ("horizon", "max_horizon"):
        value = getattr(model, setting, None)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
    return default


def tidy_forecast_values(values: np.ndarray, n_quantiles: int) -> np.ndarray:
    """Point and quantile columns made finite, non-negative and non-crossing.

    ``values`` holds the point forecast in column 0 and the quantiles, in increasing level,
    after it.
    """
    values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
    values = np.clip(values, 0.0, None)
    if n_quantiles > 1:
        values[:, 1:] = np.sort(values[:, 1:], axis=1)
    return values


class Forecaster(ABC):
    """Base class: settings in ``__init__``, learning in :meth:`fit`, state in ``*_`` attributes.

    Subclasses are dataclasses of their settings and implement :meth:`_fit` and
    :meth:`_predict`. ``name`` is the column name of the forecasts.
    """

    name: str = "model"
    #: The settings' allowed values, checked by :meth:`check_params` (see :mod:`.params`).
    constraints: ClassVar[Mapping[str, Constraint]] = {}
    #: How :func:`salesformer.explain.explain` explains this model: ``"module:function"`` of
    #: an explanation in :mod:`salesformer.explain`, named rather than imported (explanations
    #: sit above the models); None: the model cannot be explained.
    explainer: ClassVar[str | None] = None
    #: The keyword options of its explanation (``explain(model, item, n_steps=...)``).
    explanation_options: ClassVar[tuple[str, ...]] = ()

    def fit(self, panel: Panel | pd.DataFrame, items: pd.DataFrame | None = None) -> Self:
        """Learn from ``panel``; returns ``self``."""
        self.check_params()
        data = as_panel(panel, items)
        self.panel_ = data
        self._fit(data)
        return self

    def predict(
        self,
        horizon: int,
        future: pd.DataFrame | None = None,
        quantiles: Sequence[float] = DEFAULT_QUANTILES,
    ) -> pd.DataFrame:
        """Forecast ``horizon`` periods after the last date of the fitted panel.

        Args:
            horizon: number of periods, >= 1.
            future: known-future covariates for the horizon (see :func:`resolve_future`).
            quantiles: levels of the quantile columns; ``()`` for point forecasts only.

        Returns:
            ``item_id, date, <name>, <name>-q<level>...``, sorted by item and date.
        """
        if not hasattr(self, "panel_"):
            raise NotFittedError(
                f"{type(self).__name__} is not fitted yet; call .fit(panel) before .predict()"
            )
        check_horizon(horizon)
        levels = check_quantiles(quantiles)
        covariates = resolve_future(self.panel_, int(horizon), future)
        raw = self._predict(int(horizon), covariates, levels)
        return self._finalize(raw, int(horizon), levels)

    def for_items(self, part: Panel) -> Forecaster:
        """A view of this fitted model that forecasts exactly the items of ``part``.

        ``part`` holds those items' full history, as in the fitted panel (the rows of
        ``panel.sales`` and ``panel.items`` for a subset of items, same frequency and
        covariates). ``model.for_items(part).predict(h)`` equals ``model.predict(h)``
        restricted to the part's items, row for row: this is how batch forecasting and
        backtests are split across workers (:mod:`salesformer.distributed`).

        Raises:
            ConfigError: for a model that cannot forecast a subset of its items exactly.
        """
        raise ConfigError(
            f"{type(self).__name__} ({self.name}) cannot forecast a subset of its items; "
            "use the local engine for it"
        )

    def update(self, panel: Panel | pd.DataFrame, items: pd.DataFrame | None = None) -> Forecaster:
        """This fitted model, forecasting from the end of ``panel``, a later panel of the shop.

        ``panel`` extends the fitted panel with more recent periods (and possibly new items):
        ``model.update(panel).predict(h)`` forecasts the ``h`` periods after ``panel``'s last
        date. What a model learned stays as fitted (nothing is trained on the new periods);
        what a forecast reads of an item's history (lags, recent level, the LM's context)
        comes from ``panel``. Models whose only learned state is each item's own fit (the
        statistical baselines) are refitted on ``panel``, which is what they learn anyway.
        The fitted model itself is left unchanged.

        Raises:
            NotFittedError: before ``fit``.
            DataValidationError: ``panel`` ends before the fitted panel, or has another
                frequency or other covariates.
        """
        if not hasattr(self, "panel_"):
            raise NotFittedError(
                f"{type(self).__name__} is not fitted yet; call .fit(panel) before .update(panel)"
            )
        data = as_panel(panel, items)
        check_extends(self.panel_, data)
        return self._update(data)

    def _update(self, panel: Panel) -> Forecaster:
        """:meth:`update` on a checked panel; the default fits a fresh copy on it."""
        return self.clone().fit(panel)

    def use_device(self, device: str = "cpu") -> str | None:
        """Run this model's forecasts on ``device`` (``auto``, ``cpu``, ``cuda``, ``mps``).

        Returns the device its network now runs on, or None for a model without one: it
        forecasts on the CPU and ignores ``device`` (the default). The device is never saved.
        """
        return None

    def shareable(self, horizon: int) -> Forecaster:
        """A copy holding only what :meth:`for_items` needs to forecast ``horizon`` periods.

        What a model computes over all its items for a horizon (pooled conformal errors, a
        model retrained for a horizon beyond the fitted one) is computed here, once; per-item
        training data is dropped where the model allows it, so that the copy is small to ship
        to workers. The copy only makes views with :meth:`for_items`; the default is ``self``.
        """
        return self

    # -- persistence: each model saves and loads itself ---------------------------------

    def save(self, folder: str | Path) -> Path:
        """Write the fitted model to ``folder``, atomically (see :mod:`.saved` for the layout).

        The default keeps the settings, the training panel and what :meth:`save_state` adds;
        :meth:`load` refits the rest. Models whose learned state is costly or random (the LM)
        override this with a folder of their own.
        """
        if not hasattr(self, "panel_"):
            raise NotFittedError(
                f"{type(self).__name__} is not fitted yet; call .fit(panel) before saving it"
            )
        config: dict[str, Any] = {
            "model": self.name,
            "params": jsonable(self.get_params(), self.name),
            "versions": library_versions(),
            "format": FORMAT,
        }
        target = Path(folder)
        with atomic_dir(target, kind="model") as staging:
            self.panel_.save(staging / PANEL_DIR)
            state = self.save_state(staging)
            if state is not None:
                config["state"] = state
            (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2, allow_nan=False) + "\n")
        return target

    def save_state(self, folder: Path) -> dict[str, Any] | None:
        """Learned state to keep besides settings and panel: files in ``folder``, JSON returned.

        The default keeps nothing: the model is deterministic (the contract suite checks that
        two fits give identical forecasts) and :meth:`restore_state` refits it.
        """
        return None

    @classmethod
    def load(cls, folder: str | Path) -> Self:
        """Read a model written by :meth:`save`; it forecasts as the saved one did.

        The settings are checked (known names, declared ranges) before anything is built.
        """
        path = Path(folder)
        hint = "refit the model with 'salesformer fit', or restore the folder from a backup"
        config = read_json_config(path / CONFIG_FILE, hint)
        model = cls.from_saved_params(config.get("params") or {}, path / CONFIG_FILE, hint)
        model.restore_state(Panel.load(path / PANEL_DIR), path, config)
        return model

    @classmethod
    def from_saved_params(cls, params: Any, where: Path, hint: str) -> Self:
        """An unfitted model from a saved folder's ``params``, checked; ConfigError if bad."""
        if not isinstance(params, dict):
            raise ConfigError(
                f"{str(where)!r}: params must be an object; got {type(params).__name__}; {hint}"
            )
        if dataclasses.is_dataclass(cls):
            known = {f.name for f in dataclasses.fields(cls) if f.init}
            unknown = sorted(set(params) - known)
            if unknown:
                raise ConfigError(f"{str(where)!r}: unknown settings {unknown[:5]}; {hint}")
        try:
            model = cls(**cls.coerce_settings(params))
            model.check_params()
        except (ConfigError, TypeError, ValueError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ConfigError(f"{str(where)!r}: params: {first}; {hint}") from exc
        return model

    def restore_state(self, panel: Panel, folder: Path, config: dict[str, Any]) -> None:
        """Set the learned state from a saved folder; the default refits on the saved panel."""
        self.fit(panel)

    @classmethod
    def load_for_parts(cls, folder: str | Path) -> Self:
        """The saved model as a driver needs it to forecast its items in parts (the Ray engine).

        The default is :meth:`load`; models override it to leave out what parts do not need.
        """
        return cls.load(folder)

    @classmethod
    def coerce_settings(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """Settings read from JSON, lists turned back into tuples where a setting is a tuple.

        A setting is a tuple when its dataclass default is one or its annotation says ``tuple``.
        """
        tuples: set[str] = set()
        if dataclasses.is_dataclass(cls):
            for field in dataclasses.fields(cls):
                annotation = field.type if isinstance(field.type, str) else repr(field.type)
                if isinstance(field.default, tuple) or annotation.startswith("tuple"):
                    tuples.add(field.name)
        return {
            key: tuple(value) if key in tuples and isinstance(value, list) else value
            for key, value in params.items()
        }

    def clone(self) -> Self:
        """An unfitted copy with the same settings."""
        if dataclasses.is_dataclass(self):
            settings = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
            return type(self)(**settings)
        return type(self)()

    def get_params(self) -> dict[str, Any]:
        """The settings, as given to ``__init__``."""
        if dataclasses.is_dataclass(self):
            return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}
        return {}

    def check_params(self) -> None:
        """Raise :class:`ConfigError` for settings out of range (``fit`` calls it).

        Checks the :attr:`constraints` table; models with rules that relate settings extend it.
        """
        check_constraints(type(self).__name__, self.get_params(), self.constraints)

    def _check_params(self) -> None:
        """The old name of :meth:`check_params`."""
        self.check_params()

    @abstractmethod
    def _fit(self, panel: Panel) -> None:
        """Learn from a validated panel."""

    @abstractmethod
    def _predict(
        self, horizon: int, future: pd.DataFrame, quantiles: tuple[float, ...]
    ) -> pd.DataFrame:
        """Return ``item_id, date, <name>`` and the quantile columns for every item and step."""

    def _finalize(
        self, frame: pd.DataFrame, horizon: int, quantiles: tuple[float, ...]
    ) -> pd.DataFrame:
        """Order columns and rows, clip at 0 and make quantiles non-crossing."""
        columns = [self.name, *(quantile_column(self.name, q) for q in quantiles)]
        missing = [c for c in columns if c not in frame.columns]
        if missing:  # a bug in the model, not a user error
            raise RuntimeError(f"{type(self).__name__} did not return columns {missing}")
        out = frame[[ITEM_ID, DATE, *columns]].copy()
        out[ITEM_ID] = out[ITEM_ID].astype(str)
        out = out.sort_values([ITEM_ID, DATE]).reset_index(drop=True)
        out[columns] = tidy_forecast_values(out[columns].to_numpy(dtype=float), len(quantiles))
        expected = len(self.panel_.item_ids) * horizon
        if len(out) != expected:
            raise RuntimeError(
                f"{type(self).__name__} returned {len(out)} rows; expected {expected}"
            )
        return out
