"""``auto``: choose among candidate forecasters on validation windows, per segment of items.

``fit(panel)`` backtests every candidate on the last ``n_windows`` windows of ``horizon``
periods of the panel itself (the last window ends on the panel's last date, so validation
never looks past the data it was given), scores each candidate with ``metric`` per *segment*
(history length x intermittency class, as in :func:`salesformer.evaluation.backtest.series_facts`,
e.g. ``"long (>26)/smooth"``), and then

- ``selection="segment"``: uses the best candidate of each segment;
- ``selection="global"``: uses the best candidate over all validation series;
- ``selection="weighted"``: averages the best three candidates of each segment with weights
  proportional to ``1 / metric``;
- ``selection="ensemble"`` (default): combines the candidates of each segment with weights
  learned on the validation windows by greedy ensemble selection on ``metric``
  (:func:`salesformer.models.combination.ensemble_weights`): weights in steps of 0.05, a
  candidate that does not lower the combined validation loss gets none. Chosen as the default
  on the Online Retail II validation cutoffs (``python -m benchmarks.combine``), where
  ``"segment"`` scored worst of the four rules.

Segments with fewer than ``min_segment_series`` validation series use the global choice (for
``"weighted"``, the global weights). With ``refit=False`` (default) every candidate is fitted
once: the model fitted for the last validation window (on the panel without that window) is
kept and forecasts from the panel's end through
:meth:`~salesformer.forecasting.protocol.Forecaster.update`, reading the whole panel's history
(the weeks of the validation window included) without training on it, so ``auto`` costs about
its candidates together. ``refit=True`` refits every candidate in use on the whole panel, a
second fit of each. At prediction each item is classified at the panel's last date (items
too young to be validated included) and gets its segment's forecast, point and quantile
columns alike; items of a segment unseen in validation get the global choice.

A candidate whose extra is not installed (an ``ImportError``) or that fails to fit is skipped
and named in :attr:`AutoForecaster.report_`; a panel too short for a validation window falls
back to the first candidate that fits. :meth:`AutoForecaster.describe` summarises the choices.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd

from salesformer.data.availability import IN_STOCK
from salesformer.data.contract import ACTUAL, CUTOFF, DATE, ITEM_ID, Panel
from salesformer.errors import ConfigError, NotFittedError
from salesformer.evaluation.backtest import (
    HISTORY_SEGMENT,
    INTERMITTENCY,
    backtest,
    resolve_cutoffs,
    series_facts,
)
from salesformer.evaluation.metrics import evaluate
from salesformer.forecasting.params import Boolean, Constraint, Interval, OneOf
from salesformer.forecasting.protocol import DEFAULT_QUANTILES, Forecaster, quantile_column
from salesformer.forecasting.saved import jsonable
from salesformer.models.auto_report import GLOBAL, SEGMENT, describe_report
from salesformer.models.auto_state import read_auto_state
from salesformer.models.combination import frame_weights
from salesformer.models.persist import CANDIDATES_DIR, load_model
from salesformer.models.registry import coerce_params, make_model, resolve_name

Selection = Literal["segment", "global", "weighted", "ensemble"]

#: ``SEGMENT`` and ``GLOBAL`` (the key of the global choice in :attr:`AutoForecaster.weights_`
#: and the report) live in :mod:`.auto_report`, imported here under their old names.
__all__ = ["GLOBAL", "SEGMENT", "AutoForecaster", "inverse_error_weights", "segment_labels"]
#: Metrics where lower is better, the ones a choice can be made on.
SELECTION_METRICS: tuple[str, ...] = ("wape", "mae", "rmse", "mse", "mase", "rmsse", "wql")
_SELECTIONS: tuple[str, ...] = ("segment", "global", "weighted", "ensemble")
#: The validation windows score the items the backtest would score: at least 13 periods of
#: history and a sale within the last 13 periods before the cutoff.
_MIN_HISTORY = 13
_ACTIVE_WITHIN = 13
_TOP_WEIGHTED = 3


def segment_labels(facts: pd.DataFrame) -> pd.Series:
    """``"<history segment>/<intermittency>"`` for each row of :func:`series_facts`."""
    return facts[HISTORY_SEGMENT].astype(str) + "/" + facts[INTERMITTENCY].astype(str)


def item_segments(panel: Panel) -> pd.Series:
    """Each item's segment at the panel's last date (items too young to validate included)."""
    facts = series_facts(panel, panel.last_date, min_history=0, active_within=None)
    return pd.Series(
        segment_labels(facts).to_numpy(), index=facts[ITEM_ID].to_numpy(), name=SEGMENT
    )


def inverse_error_weights(
    scores: dict[str, float], order: Sequence[str], top: int
) -> dict[str, float]:
    """Weights ``1 / score`` over the ``top`` best finite scores (ties: earlier in ``order``).

    ``top=1`` gives the best candidate alone; a perfect score (0) takes all the weight.
    """
    ranked = sorted(
        (score, order.index(name), name) for name, score in scores.items() if math.isfinite(score)
    )[:top]
    if not ranked:
        return {}
    if len(ranked) == 1 or ranked[0][0] <= 0.0:
        return {ranked[0][2]: 1.0}
    inverse = [1.0 / score for score, _, _ in ranked]
    total = sum(inverse)
    return {name: value / total for (_, _, name), value in zip(ranked, inverse, strict=True)}


def _clean(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


@dataclass
class AutoForecaster(Forecaster):
    """Choose, per segment of items, among candidate forecasters (see the module docstring).

    Attributes:
        candidates: registered model names to choose from, in order of preference (ties and
            the fallback for a panel too short to validate go to the earlier one).
        candidate_settings: settings per candidate, e.g. ``{"LM": {"finetune": "lora"}}``.
        horizon: length of each validation window, in periods.
        n_windows: number of validation windows, ``horizon`` periods apart.
        selection: ``"ensemble"``, ``"segment"``, ``"global"`` or ``"weighted"``.
        metric: validation metric, lower is better (one of :data:`SELECTION_METRICS`).
        min_segment_series: segments with fewer validation series use the global choice.
        refit: refit the candidates in use on the whole panel after validation (a second fit
            of each) instead of forecasting with the models fitted for validation.
    """

    name = "auto"
    explainer = "salesformer.explain.auto:explain_auto"
    explanation_options = ("n_steps", "word_steps", "baseline_token")

    candidates: tuple[str, ...] = (
        "LM",
        "LightGBM",
        "LightGBM-text",
        "AutoETS",
        "ADIDA",
        "CrostonOptimized",
        "TSB",
    )
    candidate_settings: dict[str, dict[str, Any]] | None = None
    horizon: int = 8
    n_windows: int = 1
    selection: Selection = "ensemble"
    metric: str = "wape"
    min_segment_series: int = 30
    refit: bool = False

    # -- settings ------------------------------------------------------------------------

    constraints: ClassVar[Mapping[str, Constraint]] = {
        "horizon": Interval(int, 1),
        "n_windows": Interval(int, 1),
        "min_segment_series": Interval(int, 1),
        "selection": OneOf(*_SELECTIONS),
        "metric": OneOf(*SELECTION_METRICS),
        "refit": Boolean(),
    }

    def check_params(self) -> None:
        """The candidates and their settings, then the table of the other settings."""
        label = type(self).__name__
        names = self._candidate_names()
        settings = self.candidate_settings
        if settings is not None:
            if not isinstance(settings, dict) or not all(
                isinstance(v, dict) for v in settings.values()
            ):
                raise ConfigError(
                    f"{label}.candidate_settings must map candidate names to dicts of "
                    f"settings; got {settings!r}; e.g. {{'LightGBM': {{'n_estimators': 100}}}}"
                )
            strangers = [k for k in settings if resolve_name(str(k)) not in names]
            if strangers:
                raise ConfigError(
                    f"{label}.candidate_settings names {strangers}, which are not candidates; "
                    f"the candidates are {names}; add them to candidates or drop their settings"
                )
        super().check_params()

    def _candidate_names(self) -> list[str]:
        """The candidates in their registered spelling; raises on unknown or repeated names."""
        label = type(self).__name__
        given = self.candidates
        if isinstance(given, str) or not isinstance(given, Sequence) or not given:
            raise ConfigError(
                f"{label}.candidates must be a non-empty tuple of model names; got {given!r}; "
                "e.g. ('LightGBM', 'AutoETS')"
            )
        names = [resolve_name(str(name)) for name in given]
        if self.name in names:
            raise ConfigError(f"{label}.candidates cannot include {self.name!r} itself")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"{label}.candidates names {repeated} more than once; got {given!r}")
        return names

    def _settings_for(self, name: str) -> dict[str, Any]:
        for key, value in (self.candidate_settings or {}).items():
            if resolve_name(str(key)) == name:
                return dict(value)
        return {}

    # -- fitting -------------------------------------------------------------------------

    def _fit(self, panel: Panel) -> None:
        self.skipped_: list[dict[str, str]] = []
        self.models_: dict[str, Forecaster] = {}
        self._validated: dict[str, Forecaster] = {}
        self.seconds_: dict[str, dict[str, float]] = {}
        candidates = self._make_candidates()
        self.segments_ = item_segments(panel)
        cutoffs = self._validation_cutoffs(panel)
        report: dict[str, Any] = {
            "metric": self.metric,
            "selection": self.selection,
            "horizon": self.horizon,
            "n_windows": self.n_windows,
            "min_segment_series": self.min_segment_series,
            "refit": self.refit,
            "panel_last_date": str(panel.last_date.date()),
            "cutoffs": [str(c.date()) for c in cutoffs],
        }
        scored = self._validate(candidates, panel) if cutoffs else None
        if scored is None:
            if cutoffs:
                why = "no candidate could be validated"
            else:
                why = (
                    f"the panel ({len(panel.dates)} periods) is too short for "
                    f"{self.n_windows} validation window(s) of {self.horizon} periods with items "
                    f"of at least {_MIN_HISTORY} periods of history"
                )
            report["validated"] = False
            report["note"] = self._fall_back(candidates, panel, why)
        else:
            report["validated"] = True
            report.update(self._choose_and_refit(candidates, scored, panel))
        counts = self.segments_.value_counts().sort_index()
        report["forecast_segments"] = [
            {
                SEGMENT: segment,
                "items": int(count),
                "uses": segment if segment in self.weights_ else GLOBAL,
            }
            for segment, count in counts.items()
        ]
        report["skipped"] = list(self.skipped_)
        report["seconds"] = {n: dict(s) for n, s in self.seconds_.items()}
        self._validated = {}
        self.report_ = report

    def _make_candidates(self) -> dict[str, Forecaster]:
        """Unfitted candidates; those whose module cannot be imported are skipped."""
        made: dict[str, Forecaster] = {}
        for name in self._candidate_names():
            try:
                model = make_model(name, **self._settings_for(name))
                model.check_params()
            except ImportError as exc:
                self._skip(name, "not installed", exc)
                continue
            except TypeError as exc:
                raise ConfigError(
                    f"{type(self).__name__}.candidate_settings[{name!r}] is not accepted by "
                    f"{name}: {exc}; give only settings that {name} has"
                ) from exc
            except ConfigError as exc:
                raise ConfigError(f"candidate {name}: {exc}") from exc
            made[name] = model
        return made

    def _skip(self, name: str, stage: str, error: BaseException) -> None:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        self.skipped_.append(
            {"model": name, "stage": stage, "error": f"{type(error).__name__}: {message}"}
        )

    def _validation_cutoffs(self, panel: Panel) -> list[pd.Timestamp]:
        """Cutoffs of the validation windows, or ``[]`` when the panel is too short for one
        window with at least one item to score."""
        try:
            cutoffs = resolve_cutoffs(panel, self.horizon, None, self.n_windows, self.horizon)
        except (ConfigError, KeyError):
            return []
        scorable = [c for c in cutoffs if len(series_facts(panel, c, _MIN_HISTORY, _ACTIVE_WITHIN))]
        return cutoffs if scorable else []

    def _validate(self, candidates: dict[str, Forecaster], panel: Panel) -> pd.DataFrame | None:
        """Validation forecasts of every candidate that runs, one column set per candidate,
        with the series facts and ``segment``; None when no candidate ran. Starts the
        fit's record of validated models and seconds afresh."""
        self._validated, self.seconds_ = {}, {}
        merged: pd.DataFrame | None = None
        facts: pd.DataFrame | None = None
        for name, model in candidates.items():
            try:
                result = backtest(
                    [model],
                    panel,
                    horizon=self.horizon,
                    n_windows=self.n_windows,
                    step=self.horizon,
                    min_history=_MIN_HISTORY,
                    active_within=_ACTIVE_WITHIN,
                    quantiles=DEFAULT_QUANTILES,
                    keep_fitted=not self.refit,
                )
            except ImportError as exc:
                self._skip(name, "not installed", exc)
                continue
            except Exception as exc:  # a failing candidate must not sink the others
                self._skip(name, "validation", exc)
                continue
            seconds = result.timings[["fit_seconds", "predict_seconds"]].to_numpy().sum()
            self.seconds_[name] = {"validation": round(float(seconds), 3)}
            if model.name in result.fitted:
                self._validated[name] = result.fitted[model.name]
            renamed = {
                model.name: name,
                **{
                    quantile_column(model.name, q): quantile_column(name, q)
                    for q in DEFAULT_QUANTILES
                },
            }
            frame = result.forecasts.rename(columns=renamed)
            if merged is None:
                merged, facts = frame, result.series
            else:
                keep = [c for c in frame.columns if c not in (ACTUAL, IN_STOCK)]
                merged = merged.merge(frame[keep], on=[ITEM_ID, CUTOFF, DATE], how="inner")
        if merged is None or facts is None:
            return None
        if IN_STOCK in merged.columns:  # stock-outs are not demand: not scored
            merged = merged.loc[merged.pop(IN_STOCK).to_numpy(dtype=bool)]
        scored = merged.merge(facts, on=[ITEM_ID, CUTOFF], how="left")
        scored[SEGMENT] = segment_labels(scored)
        return scored

    def _fall_back(self, candidates: dict[str, Forecaster], panel: Panel, why: str) -> str:
        """No validation possible: use the first candidate that fits; returns the note."""
        for name, model in candidates.items():
            if self._refit(name, model, panel):
                self.weights_ = {GLOBAL: {name: 1.0}}
                self.choice_ = {GLOBAL: name}
                return f"{why}; used the first candidate that fits: {name}"
        raise self._none_left()

    def _refit(self, name: str, model: Forecaster, panel: Panel) -> bool:
        """The final model of ``name``: the one fitted for validation, updated to the whole
        panel, or (``refit``, or none kept) a fresh copy fitted on it. False (and skipped)
        on failure."""
        validated = self._validated.get(name)
        start = time.perf_counter()
        try:
            if validated is None:
                self.models_[name] = model.clone().fit(panel)
            else:
                self.models_[name] = validated.update(panel)
        except ImportError as exc:
            self._skip(name, "not installed", exc)
            return False
        except Exception as exc:  # a failing candidate must not sink the others
            self._skip(name, "final fit" if validated is None else "update", exc)
            return False
        final = {"final": round(time.perf_counter() - start, 3)}
        self.seconds_[name] = {**self.seconds_.get(name, {}), **final}
        return True

    def _none_left(self) -> ConfigError:
        """The error when every candidate was skipped, with the reasons."""
        reasons = "; ".join(f"{s['model']} ({s['stage']}: {s['error']})" for s in self.skipped_)
        return ConfigError(
            f"auto: no candidate could be used; skipped: {reasons or 'none'}; "
            "fix the reasons above or choose other candidates"
        )

    def _choose_and_refit(
        self, candidates: dict[str, Forecaster], scored: pd.DataFrame, panel: Panel
    ) -> dict[str, Any]:
        """Score, choose, refit what is used; a refit failure drops that candidate and
        chooses again. Returns the report's validation part."""
        available = [n for n in candidates if n in scored.columns]
        while available:
            tables = self._score(scored, available)
            self.weights_ = self._select(tables, available, scored)
            used = [n for n in available if any(n in w for w in self.weights_.values())]
            failed = []
            for name in used:
                if name not in self.models_ and not self._refit(name, candidates[name], panel):
                    failed.append(name)
            if not failed:
                self.models_ = {n: m for n, m in self.models_.items() if n in used}
                self.choice_ = {
                    segment: max(weights, key=lambda n: weights[n])
                    for segment, weights in self.weights_.items()
                }
                return self._validation_report(tables, available)
            available = [n for n in available if n not in failed]
        raise self._none_left()

    def validation_weights(
        self, scored: pd.DataFrame, names: list[str]
    ) -> dict[str, dict[str, float]]:
        """The weights per segment (``GLOBAL`` included) this model's settings choose from
        validation forecasts: ``scored`` holds ``y``, each of ``names``' point and quantile
        columns, the series facts and ``segment`` (what ``fit`` builds; also lets a benchmark
        replay the choice from stored backtests)."""
        return self._select(self._score(scored, names), names, scored)

    def _score(self, scored: pd.DataFrame, names: list[str]) -> dict[str, dict[str, Any]]:
        """``{segment: {"series": n, "scores": {candidate: metric}}}``, GLOBAL included."""
        series = scored.drop_duplicates([ITEM_ID, CUTOFF])
        counts = series.groupby(SEGMENT).size()
        tables: dict[str, dict[str, Any]] = {GLOBAL: {"series": len(series), "scores": {}}}
        for row in evaluate(scored, models=names, metrics=[self.metric]).itertuples():
            tables[GLOBAL]["scores"][str(row.model)] = float(getattr(row, self.metric))
        by_segment = evaluate(scored, models=names, metrics=[self.metric], by=SEGMENT)
        for row in by_segment.itertuples():
            segment = str(getattr(row, SEGMENT))
            entry = tables.setdefault(segment, {"series": int(counts[segment]), "scores": {}})
            entry["scores"][str(row.model)] = float(getattr(row, self.metric))
        return tables

    def _select(
        self, tables: dict[str, dict[str, Any]], names: list[str], scored: pd.DataFrame
    ) -> dict[str, dict[str, float]]:
        """Weights per segment (GLOBAL included); segments left out use GLOBAL's."""
        top = _TOP_WEIGHTED if self.selection == "weighted" else 1

        def choose(segment: str) -> dict[str, float]:
            if self.selection != "ensemble":
                return inverse_error_weights(tables[segment]["scores"], names, top)
            rows = scored if segment == GLOBAL else scored[scored[SEGMENT] == segment]
            return frame_weights(rows, names, self.metric)

        overall = choose(GLOBAL)
        if not overall:  # no finite score anywhere (no sales in validation): first candidate
            overall = {names[0]: 1.0}
        weights = {GLOBAL: overall}
        if self.selection == "global":
            return weights
        for segment, entry in tables.items():
            if segment == GLOBAL or entry["series"] < self.min_segment_series:
                continue
            chosen = choose(segment)
            if chosen:
                weights[segment] = chosen
        return weights

    def _validation_report(
        self, tables: dict[str, dict[str, Any]], names: list[str]
    ) -> dict[str, Any]:
        rows = []
        for segment, entry in tables.items():
            own = segment in self.weights_
            weights = self.weights_[segment if own else GLOBAL]
            if segment == GLOBAL:
                source = "global"
            elif own:
                source = "segment"
            elif self.selection == "global":
                source = "global (selection='global')"
            else:
                source = f"global (fewer than {self.min_segment_series} series)"
            rows.append(
                {
                    SEGMENT: segment,
                    "series": int(entry["series"]),
                    "scores": {n: _clean(entry["scores"].get(n, math.nan)) for n in names},
                    "choice": max(weights, key=lambda n: weights[n]),
                    "weights": {n: round(w, 6) for n, w in weights.items()},
                    "source": source,
                }
            )
        return {"candidates": names, "segments": rows}

    # -- prediction ----------------------------------------------------------------------

    def item_weights(self) -> pd.DataFrame:
        """Weight of each fitted candidate (columns) for each item of the panel (rows)."""
        if not hasattr(self, "weights_"):
            raise NotFittedError("AutoForecaster is not fitted yet; call .fit(panel) first")
        ids = pd.Index(self.panel_.item_ids, dtype=str, name=ITEM_ID)
        segments = self.segments_.reindex(ids).astype(str)
        used = segments.where(segments.isin(list(self.weights_)), GLOBAL)
        per_segment = pd.DataFrame.from_dict(self.weights_, orient="index")
        per_segment = per_segment.reindex(columns=list(self.models_)).fillna(0.0)
        table = per_segment.loc[used.to_numpy()]
        table.index = ids
        return table

    def for_items(self, part: Panel) -> AutoForecaster:
        """A view forecasting the items of ``part``: each candidate's view, same choices."""
        if not hasattr(self, "weights_"):
            raise NotFittedError("AutoForecaster is not fitted yet; call .fit(panel) first")
        view = copy.copy(self)
        view.panel_ = part
        view.models_ = {name: model.for_items(part) for name, model in self.models_.items()}
        return view

    def _update(self, panel: Panel) -> AutoForecaster:
        """Same choices and weights; each candidate updated, items classified on ``panel``."""
        if not hasattr(self, "weights_"):
            raise NotFittedError("AutoForecaster is not fitted yet; call .fit(panel) first")
        view = copy.copy(self)
        view.panel_ = panel
        view.segments_ = item_segments(panel)
        view.models_ = {name: model.update(panel) for name, model in self.models_.items()}
        return view

    def use_device(self, device: str = "cpu") -> str | None:
        """Every kept candidate with a network (the LM) forecasts on ``device``."""
        used = [model.use_device(device) for model in self.models_.values()]
        return next((found for found in used if found is not None), None)

    def shareable(self, horizon: int) -> AutoForecaster:
        """Each candidate's shareable copy, the per-item choices and settings; no panel."""
        if not hasattr(self, "weights_"):
            raise NotFittedError("AutoForecaster is not fitted yet; call .fit(panel) first")
        lean = copy.copy(self)
        if hasattr(lean, "panel_"):
            del lean.panel_
        lean.models_ = {name: model.shareable(horizon) for name, model in self.models_.items()}
        return lean

    def _predict(
        self, horizon: int, future: pd.DataFrame, quantiles: tuple[float, ...]
    ) -> pd.DataFrame:
        out = future[[ITEM_ID, DATE]].copy()
        columns = [self.name, *(quantile_column(self.name, q) for q in quantiles)]
        weights = self.item_weights()
        total = np.zeros((len(out), len(columns)))
        for name, model in self.models_.items():
            share = out[ITEM_ID].map(weights[name]).fillna(0.0).to_numpy(dtype=float)
            if not (share > 0).any():
                continue
            forecast = model.predict(horizon, future=future, quantiles=quantiles)
            source = [model.name, *(quantile_column(model.name, q) for q in quantiles)]
            aligned = out.merge(forecast[[ITEM_ID, DATE, *source]], on=[ITEM_ID, DATE], how="left")
            total += share[:, None] * aligned[source].to_numpy(dtype=float)
        out[columns] = total
        return out

    # -- persistence ---------------------------------------------------------------------

    def save_state(self, folder: Path) -> dict[str, Any]:
        """Choices, weights, segments and report as JSON; each candidate in use saves itself."""
        for name, fitted in self.models_.items():
            fitted.save(folder / CANDIDATES_DIR / name)
        return {
            "choice": dict(self.choice_),
            "weights": {s: {n: float(w) for n, w in ws.items()} for s, ws in self.weights_.items()},
            "segments": {str(i): str(s) for i, s in self.segments_.items()},
            "skipped": list(self.skipped_),
            "report": jsonable(self.report_, self.name),
            "candidates": list(self.models_),
        }

    def restore_state(self, panel: Panel, folder: Path, config: dict[str, Any]) -> None:
        """The fitted attributes from the saved state and candidates (nothing is refitted)."""
        state = read_auto_state(config.get("state"), folder, self.name)
        self.weights_, self.choice_ = state.weights, state.choice
        self.segments_, self.skipped_, self.report_ = state.segments, state.skipped, state.report
        self.panel_ = panel
        self.models_ = {n: load_model(folder / CANDIDATES_DIR / n) for n in state.candidates}

    @classmethod
    def coerce_settings(cls, params: Mapping[str, Any]) -> dict[str, Any]:
        """As for every model, and ``candidate_settings`` for each candidate in turn."""
        out = super().coerce_settings(params)
        settings = out.get("candidate_settings")
        if isinstance(settings, dict):
            out["candidate_settings"] = {
                key: coerce_params(resolve_name(key), value) if isinstance(value, dict) else value
                for key, value in settings.items()
            }
        return out

    # -- reporting -----------------------------------------------------------------------

    def describe(self) -> str:
        """A few lines on what was chosen where, and why."""
        if not hasattr(self, "report_"):
            raise NotFittedError("AutoForecaster is not fitted yet; call .fit(panel) first")
        return describe_report(self.report_, self.selection, self.metric)
