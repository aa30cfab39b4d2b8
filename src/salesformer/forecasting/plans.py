"""Plans: the shop's own known-future covariates for the horizon (price, discount, promotion).

A *plan* is a long table ``item_id, date, <known-future covariates>...`` and, optionally,
``promotion_copy`` (text). It may be partial: items, dates or columns it leaves out, and blank
cells, keep each item's last known value (the "no change" plan that
:func:`~salesformer.forecasting.protocol.resolve_future` builds), and :class:`PlanReport` says
how many fell back. Everything else is an error with one line that says how to fix it:

- a column that is neither ``item_id``, ``date``, a known-future covariate of the panel nor
  ``promotion_copy`` (a past-only covariate cannot be planned: it is not known in advance);
- a date that is not a period of the horizon, an item the model does not know, two rows for one
  item and date;
- a value that is not a finite number, a negative price (any column whose name holds
  ``price``), a discount outside ``[0, 1)`` (any column whose name starts with ``discount``).

**Promotion copy.** The LM reads one text per item, for the whole forecast: it has no input for
text that changes from one date to the next. A plan's ``promotion_copy`` therefore has to be the
same on every row of an item that gives it; that item's text then becomes its catalogue text
with ``Promotion: <copy>`` added, for the whole horizon (the numeric promotion flag of the plan
still says *when*). Models that read no text refuse the column.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from salesformer.data.calendars import is_calendar_column
from salesformer.data.contract import CUTOFF, DATE, ITEM_ID, TEXT, Panel, parse_dates
from salesformer.data.text import item_text
from salesformer.errors import ConfigError, DataQualityWarning, DataValidationError
from salesformer.forecasting.protocol import (
    DEFAULT_QUANTILES,
    Forecaster,
    check_horizon,
    resolve_future,
)

#: The optional text column of a plan: promotion copy, read by models that read item text.
PLAN_COPY = "promotion_copy"


def is_price(column: str) -> bool:
    """A price column (its name holds "price"): a plan may not make it negative."""
    return "price" in column.lower()


def is_discount(column: str) -> bool:
    """A discount column (its name starts with "discount"): a plan keeps it in [0, 1)."""
    return column.lower().startswith("discount")


@dataclass(frozen=True)
class PlanReport:
    """How much of the horizon the plan gave, and what fell back to "no change"."""

    items: int
    rows: int
    items_without_plan: int = 0
    rows_without_plan: int = 0
    blank_cells: int = 0
    columns_not_planned: tuple[str, ...] = ()
    copy_items: int = 0
    where: str = "plan"

    @property
    def complete(self) -> bool:
        """True when every item, date and column of the horizon came from the plan."""
        return not (self.rows_without_plan or self.blank_cells or self.columns_not_planned)

    def note(self) -> str | None:
        """One line on what fell back to the last known values; None for a complete plan."""
        if self.complete:
            return None
        planned = self.rows - self.rows_without_plan
        parts = []
        if self.rows_without_plan:
            parts.append(
                f"{self.rows_without_plan} rows ({self.items_without_plan} of {self.items} "
                "items have no row at all)"
            )
        if self.blank_cells:
            parts.append(f"{self.blank_cells} blank cells")
        if self.columns_not_planned:
            parts.append(f"the columns {list(self.columns_not_planned)}")
        return (
            f"{self.where} covers {planned} of {self.rows} (item, date) rows of the horizon; "
            f"{', '.join(parts)} keep each item's last known values (no change)"
        )


@dataclass(frozen=True)
class AppliedPlan:
    """A plan laid over the "no change" baseline: the model's ``future`` frame and texts."""

    future: pd.DataFrame
    report: PlanReport
    copies: dict[str, str] = field(default_factory=dict)


def _fail(where: str, message: str) -> DataValidationError:
    return DataValidationError(f"{where}: {message}")


def _check_columns(
    plan: pd.DataFrame,
    known_future: Sequence[str],
    past_only: Sequence[str],
    where: str,
    extra: Sequence[str] = (),
) -> list[str]:
    """The plan's covariate columns, in the panel's order; errors for any other column."""
    columns = [str(c) for c in plan.columns]
    missing = [c for c in (ITEM_ID, DATE) if c not in columns]
    if missing:
        raise _fail(
            where,
            f"column(s) {missing} missing; got {columns}; give one row per item and date: "
            f"item_id, date and any of {list(known_future)}",
        )
    allowed = {ITEM_ID, DATE, PLAN_COPY, *known_future, *extra}
    past = [c for c in columns if c in past_only]
    if past:
        raise _fail(
            where,
            f"column(s) {past} are past-only covariates (known only up to the forecast "
            f"origin), so no plan can give them; drop them (plannable: {list(known_future)})",
        )
    unknown = [c for c in columns if c not in allowed]
    if unknown:
        raise _fail(
            where,
            f"unknown column(s) {unknown}; a plan holds item_id, date, the panel's "
            f"known-future covariates {list(known_future)} and optionally {PLAN_COPY!r}; "
            "rename or drop them",
        )
    return [c for c in known_future if c in columns]


def _check_values(frame: pd.DataFrame, columns: Sequence[str], where: str) -> None:
    """Numbers only, finite, prices >= 0, discounts in [0, 1); blank cells are allowed."""
    for column in columns:
        raw = frame[column]
        values = pd.to_numeric(raw, errors="coerce")
        text = raw.notna() & values.isna()
        if text.any():
            raise _fail(
                where,
                f"column {column!r} must hold numbers; got {raw[text].iloc[0]!r} "
                f"({int(text.sum())} cells in all); write plain numbers such as 9.99",
            )
        numbers = values.to_numpy(dtype=float)
        given = ~np.isnan(numbers)
        bad = given & ~np.isfinite(numbers)
        rule = "finite"
        if is_price(column):
            bad |= given & (numbers < 0)
            rule = "finite and >= 0"
        if is_discount(column):
            bad |= given & ((numbers < 0) | (numbers >= 1))
            rule = "in [0, 1) (0.2 is 20% off)"
        if bad.any():
            first = frame.loc[bad, [ITEM_ID, DATE]].iloc[0]
            raise _fail(
                where,
                f"{column!r} must be {rule}; got {float(numbers[bad][0])!r} for item "
                f"{first[ITEM_ID]!r} on {pd.Timestamp(first[DATE]).date()} "
                f"({int(bad.sum())} cells in all); fix the plan's {column} values",
            )
        frame[column] = numbers


def _normalised(
    plan: pd.DataFrame, known_future: Sequence[str], past_only: Sequence[str], where: str
) -> tuple[pd.DataFrame, list[str]]:
    """The plan with text ids, parsed dates and checked numbers; and its covariate columns."""
    if not isinstance(plan, pd.DataFrame):
        raise ConfigError(f"{where} must be a table (a DataFrame); got {type(plan).__name__}")
    columns = _check_columns(plan, known_future, past_only, where, extra=(CUTOFF,))
    frame = plan.copy()
    frame[ITEM_ID] = frame[ITEM_ID].astype(str)
    try:
        dates = parse_dates(frame[DATE])
    except DataValidationError as exc:
        raise _fail(where, str(exc)) from exc
    frame[DATE] = dates
    _check_values(frame, columns, where)
    return frame, columns


def _copies(frame: pd.DataFrame, where: str) -> dict[str, str]:
    """One promotion copy per item (the same on every row that gives one)."""
    if PLAN_COPY not in frame.columns:
        return {}
    text = frame[PLAN_COPY].where(frame[PLAN_COPY].notna(), "").astype(str).str.strip()
    given = frame.loc[text != "", [ITEM_ID]].assign(copy=text[text != ""])
    distinct = given.groupby(ITEM_ID)["copy"].nunique()
    varying = distinct[distinct > 1]
    if not varying.empty:
        raise _fail(
            where,
            f"{PLAN_COPY!r} changes between dates for {len(varying)} items, e.g. "
            f"{varying.index[0]!r}; the LM reads one text per item for the whole forecast, "
            "so give each item one copy (the promotion flag says when it runs)",
        )
    return dict(given.drop_duplicates(ITEM_ID).itertuples(index=False, name=None))


def apply_plan(
    baseline: pd.DataFrame,
    plan: pd.DataFrame,
    known_future: Sequence[str],
    past_only: Sequence[str] = (),
    where: str = "plan",
) -> AppliedPlan:
    """Lay ``plan`` over ``baseline`` (every item and date of the horizon, "no change" values).

    Args:
        baseline: ``item_id, date, <known_future>``, one row per item and date of the horizon
            (as :func:`resolve_future` returns it with no future).
        plan: the plan (see the module docstring); it may be partial.
        known_future: the covariates a plan may give.
        past_only: covariates a plan may not give (named in the error).
        where: how errors and the report name the plan (``--future``, ``plan``).

    Returns:
        An :class:`AppliedPlan`: the complete ``future`` frame, the report, the copies.
    """
    frame, columns = _normalised(plan, known_future, past_only, where)
    if CUTOFF in frame.columns:
        raise _fail(
            where,
            "a 'cutoff' column belongs to a backtest plan; drop it to forecast from the "
            "panel's last date",
        )
    items = pd.Index(pd.unique(baseline[ITEM_ID].astype(str)))
    dates = pd.DatetimeIndex(pd.unique(baseline[DATE])).sort_values()
    unknown = sorted(set(frame[ITEM_ID]) - set(items))
    if unknown:
        raise _fail(
            where,
            f"{len(unknown)} items are not items of the model's panel, e.g. {unknown[:3]}; "
            "plan only the items the model forecasts (new products: --new-items)",
        )
    outside = ~frame[DATE].isin(dates)
    if outside.any():
        first = pd.Timestamp(frame.loc[outside, DATE].iloc[0])
        span = f"{dates[0].date()} .. {dates[-1].date()}" if len(dates) else "none"
        raise _fail(
            where,
            f"date {first.date()} is not a period of the forecast horizon ({len(dates)} "
            f"periods, {span}; {int(outside.sum())} rows in all); give dates of the horizon, "
            "on the panel's grid, or a longer --horizon",
        )
    twice = frame.duplicated([ITEM_ID, DATE], keep=False)
    if twice.any():
        first = frame.loc[twice].iloc[0]
        raise _fail(
            where,
            f"{int(twice.sum())} rows repeat an item and date, e.g. {first[ITEM_ID]!r} on "
            f"{pd.Timestamp(first[DATE]).date()}; give one row per item and date",
        )
    copies = _copies(frame, where)
    future = baseline.copy()
    future[ITEM_ID] = future[ITEM_ID].astype(str)
    merged = future[[ITEM_ID, DATE]].merge(
        frame[[ITEM_ID, DATE, *columns]], on=[ITEM_ID, DATE], how="left", indicator=True
    )
    planned = (merged["_merge"] == "both").to_numpy()
    blank = 0
    for column in columns:
        values = merged[column].to_numpy(dtype=float)
        use = planned & ~np.isnan(values)
        blank += int((planned & np.isnan(values)).sum())
        future[column] = np.where(use, values, future[column].to_numpy(dtype=float))
    with_rows = set(frame[ITEM_ID])
    report = PlanReport(
        items=len(items),
        rows=len(future),
        items_without_plan=len(items) - len(with_rows),
        rows_without_plan=int((~planned).sum()) if columns or copies else 0,
        blank_cells=blank,
        # calendar columns are computed for the horizon from the panel's calendar: no fallback
        columns_not_planned=tuple(
            c for c in known_future if c not in columns and not is_calendar_column(c)
        ),
        copy_items=len(copies),
        where=where,
    )
    return AppliedPlan(future, report, copies)


def plan_future(panel: Panel, horizon: int, plan: pd.DataFrame, where: str = "plan") -> AppliedPlan:
    """``plan`` over the horizon after ``panel``'s last date; warns when some of it fell back."""
    check_horizon(horizon)
    baseline = resolve_future(panel, horizon, None)
    applied = apply_plan(baseline, plan, panel.known_future, panel.past_only, where)
    note = applied.report.note()
    if note is not None:
        warnings.warn(note, DataQualityWarning, stacklevel=2)
    return applied


def item_texts_with_copy(panel: Panel, copies: dict[str, str]) -> dict[str, str]:
    """Each planned item's catalogue text with its promotion copy added (``item_text``)."""
    items = panel.items
    base = (
        items.set_index(items[ITEM_ID].astype(str))[TEXT]
        if items is not None and TEXT in items.columns
        else pd.Series(dtype=object)
    )
    return {
        item: item_text(str(base.get(item, item)), promotion=copy) for item, copy in copies.items()
    }


def predict_with_plan(
    model: Forecaster,
    horizon: int,
    plan: pd.DataFrame,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    where: str = "plan",
) -> tuple[pd.DataFrame, PlanReport]:
    """``model.predict(horizon, future=...)`` under a (partial) plan; its forecast and report.

    Promotion copy goes to models that read item text (``predict_with_texts``, the LM); any
    other model refuses it.
    """
    panel = getattr(model, "panel_", None)
    if not isinstance(panel, Panel):
        raise ConfigError(f"{type(model).__name__} is not fitted yet; call .fit(panel) first")
    applied = plan_future(panel, horizon, plan, where)
    if not applied.copies:
        forecast = model.predict(horizon, future=applied.future, quantiles=quantiles)
        return forecast, applied.report
    reader = getattr(model, "predict_with_texts", None)
    if reader is None:
        raise ConfigError(
            f"{where}: model {model.name} reads no item text, so {PLAN_COPY!r} cannot change "
            "its forecast; drop that column, or fit an LM (--model lm)"
        )
    texts = item_texts_with_copy(panel, applied.copies)
    forecast = reader(horizon, texts, future=applied.future, quantiles=tuple(quantiles))
    return forecast, applied.report


def backtest_plan(
    train: Panel,
    cutoff: pd.Timestamp,
    horizon: int,
    plan: pd.DataFrame,
    where: str = "plan",
) -> AppliedPlan:
    """The plan of one backtest window: what was known at ``cutoff``, over its horizon.

    With a ``cutoff`` column, the rows of that cutoff are the plan made at that origin (the
    window gets no plan when there are none). Without one, the plan is a schedule fixed in
    advance (a list price): each window takes its rows dated in the window, for the items of
    the panel at the cutoff. Promotion copy is refused here: the backtest drives every model
    through ``predict``.
    """
    if PLAN_COPY in plan.columns:
        raise _fail(
            where,
            f"{PLAN_COPY!r} is read by 'predict' only; drop it from a backtest plan",
        )
    baseline = resolve_future(train, horizon, None)
    rows = plan
    if CUTOFF in plan.columns:
        stamps = pd.to_datetime(plan[CUTOFF])
        rows = plan.loc[stamps == pd.Timestamp(cutoff)].drop(columns=CUTOFF)
    else:
        dates = pd.to_datetime(plan[DATE])
        ids = plan[ITEM_ID].astype(str)
        keep = dates.isin(pd.DatetimeIndex(baseline[DATE].unique())) & ids.isin(train.item_ids)
        rows = plan.loc[keep]
    applied = apply_plan(
        baseline, rows, train.known_future, train.past_only, f"{where} @ {cutoff.date()}"
    )
    note = applied.report.note()
    if note is not None:
        warnings.warn(note, DataQualityWarning, stacklevel=2)
    return applied


def check_backtest_plan(
    panel: Panel, plan: pd.DataFrame, cutoffs: Sequence[pd.Timestamp], where: str = "plan"
) -> pd.DataFrame:
    """A backtest plan checked once against the whole panel and the cutoffs; returned parsed.

    Columns, values and items are checked here; each window checks its dates. Cutoffs in the
    plan must be cutoffs of the backtest.
    """
    frame, _ = _normalised(plan, panel.known_future, panel.past_only, where)
    unknown = sorted(set(frame[ITEM_ID]) - {str(i) for i in panel.item_ids})
    if unknown:
        raise _fail(
            where,
            f"{len(unknown)} items are not items of the panel, e.g. {unknown[:3]}; "
            "plan only items of the panel",
        )
    if CUTOFF in frame.columns:
        stamps = pd.to_datetime(frame[CUTOFF], errors="coerce", format="mixed")
        if stamps.isna().any():
            raise _fail(
                where,
                f"cutoff {plan[CUTOFF][stamps.isna()].iloc[0]!r} is not a date; write ISO "
                "dates such as 2017-06-01",
            )
        extra = sorted(set(stamps) - {pd.Timestamp(c) for c in cutoffs})
        if extra:
            raise _fail(
                where,
                f"cutoffs {[str(c.date()) for c in extra[:3]]} are not cutoffs of this "
                f"backtest ({[str(pd.Timestamp(c).date()) for c in cutoffs]}); key each plan "
                "row by the cutoff it was made at, or pass those cutoffs",
            )
        frame[CUTOFF] = stamps
        early = frame[DATE] <= frame[CUTOFF]
        if early.any():
            first = frame.loc[early].iloc[0]
            raise _fail(
                where,
                f"row for {first[ITEM_ID]!r} on {first[DATE].date()} is on or before its cutoff "
                f"{first[CUTOFF].date()}; a plan covers the periods after its cutoff",
            )
    return frame
