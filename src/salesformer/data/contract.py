"""The one data contract: a long sales panel plus an items table.

A **sales panel** has one row per item and period:

- ``item_id`` (str), ``date`` (period start, timezone-naive), ``sales`` (units, >= 0);
- optional numeric covariates, each either *known-future* (price, discount, promotion,
  calendar events: known for the forecast horizon) or *past-only* (orders, customers, traffic:
  known only up to the cutoff).

An **items table** has one row per item: ``item_id``, ``text`` (the product text, see
:func:`salesformer.data.text.item_text`) and static attributes (category, first sale date, ...).

Column names are mapped to this contract once, at the entry points (loaders, CLI); the rest of
the library only ever sees these names. :func:`validate_panel` is the single gate: it checks the
input, completes each item's series on a regular grid and returns a :class:`Panel`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from salesformer._io import atomic_dir
from salesformer._version import __version__
from salesformer.data.availability import AVAILABILITY_COLUMNS as AVAILABILITY
from salesformer.data.availability import IN_STOCK, availability_columns, availability_of
from salesformer.data.frequency import (
    check_on_grid,
    infer_freq,
    refuse_weekly_as_daily,
    season_length,
)
from salesformer.data.grid import ItemCodes, complete_grid, item_codes, order_rows
from salesformer.errors import DataValidationError

__all__ = ["Panel", "infer_freq", "season_length", "validate_items", "validate_panel"]

ITEM_ID = "item_id"
DATE = "date"
SALES = "sales"
TEXT = "text"
CUTOFF = "cutoff"
ACTUAL = "y"
#: Optional items-table column: the item's list price at launch (a catalogue price, not one that
#: depends on how much sold). Cold-start models read it in place of the launch week's price.
LIST_PRICE = "list_price"

#: Covariates with these names are known-future unless declared otherwise.
DEFAULT_KNOWN_FUTURE = ("price", "discount", "promo", "promotion", "event", "holiday")

NegativeSalesPolicy = Literal["error", "clip"]

_PANEL_FILE = "panel.parquet"
_ITEMS_FILE = "items.parquet"
#: The panel folder's metadata file (frequency, covariate roles, calendar).
PANEL_META_FILE = "panel.json"
_META_FILE = PANEL_META_FILE
_DAY_NS = 86_400 * 10**9
_TICKS_PER_DAY = {"s": 86_400, "ms": 86_400 * 10**3, "us": 86_400 * 10**6, "ns": _DAY_NS}


def _examples(values: Iterable[object], limit: int = 5) -> str:
    items = list(values)
    shown = ", ".join(repr(v) for v in items[:limit])
    more = f", ... ({len(items)} in all)" if len(items) > limit else ""
    return f"[{shown}{more}]"


@dataclass(frozen=True)
class Panel:
    """A validated sales panel with its items table and covariate roles.

    Build one with :func:`validate_panel` (or :meth:`Panel.load`), never directly.

    Attributes:
        sales: long frame ``item_id, date, sales, <covariates>``, sorted, one row per item and
            period on a regular grid from the item's first date to the panel's last date.
        items: items table (``item_id``, ``text``, static attributes) or None.
        freq: pandas frequency alias, such as ``"W-MON"`` or ``"D"``.
        known_future: covariates known for the forecast horizon.
        past_only: covariates known only up to the cutoff.
        report: counts from validation (rows filled, sales clipped, ...).
        calendar: the holiday countries and events behind the calendar covariates
            (:mod:`salesformer.data.calendars`), kept so forecasts compute them for the horizon.
    """

    sales: pd.DataFrame
    items: pd.DataFrame | None
    freq: str
    known_future: tuple[str, ...] = ()
    past_only: tuple[str, ...] = ()
    report: dict[str, int] = field(default_factory=dict, compare=False)
    calendar: dict[str, Any] | None = field(default=None, compare=False)

    @property
    def item_ids(self) -> np.ndarray:
        """Distinct item ids, sorted."""
        return np.asarray(pd.unique(self.sales[ITEM_ID]))

    @property
    def dates(self) -> pd.DatetimeIndex:
        """Distinct dates of the panel, sorted."""
        return pd.DatetimeIndex(np.sort(pd.unique(self.sales[DATE])))

    @property
    def first_date(self) -> pd.Timestamp:
        return pd.Timestamp(self.sales[DATE].min())

    @property
    def last_date(self) -> pd.Timestamp:
        return pd.Timestamp(self.sales[DATE].max())

    @property
    def season_length(self) -> int:
        return season_length(self.freq)

    @property
    def offset(self) -> pd.DateOffset:
        return pd.tseries.frequencies.to_offset(self.freq)

    def future_dates(self, after: pd.Timestamp, horizon: int) -> pd.DatetimeIndex:
        """The ``horizon`` periods that follow ``after``."""
        try:
            return pd.date_range(pd.Timestamp(after) + self.offset, periods=horizon, freq=self.freq)
        except (OverflowError, pd.errors.OutOfBoundsDatetime) as exc:
            raise DataValidationError(
                f"{horizon} periods of {self.freq} after {pd.Timestamp(after).date()} go past "
                "the last date pandas can hold (2262); ask for fewer periods"
            ) from exc

    def until(self, cutoff: str | pd.Timestamp) -> Panel:
        """The panel as it was known at ``cutoff`` (rows dated on or before it).

        Items first sold after the cutoff disappear from ``sales``; the items table is kept
        whole because item text is known before launch (cold start).
        """
        stamp = pd.Timestamp(cutoff)
        kept = self.sales.loc[self.sales[DATE] <= stamp].reset_index(drop=True)
        return replace(self, sales=kept, report={})

    def window(self, after: pd.Timestamp, horizon: int) -> pd.DataFrame:
        """Rows of the ``horizon`` periods after ``after`` (actuals and covariates)."""
        end = pd.Timestamp(after) + horizon * self.offset
        mask = (self.sales[DATE] > after) & (self.sales[DATE] <= end)
        return self.sales.loc[mask].reset_index(drop=True)

    def future_covariates(self, cutoff: pd.Timestamp, horizon: int) -> pd.DataFrame:
        """Known-future covariates for the horizon after ``cutoff``, as the ``future`` frame."""
        window = self.window(pd.Timestamp(cutoff), horizon)
        return window[[ITEM_ID, DATE, *self.known_future]].reset_index(drop=True)

    def history_length(self) -> pd.Series:
        """Periods from each item's first date to the panel's last date, indexed by item_id."""
        return self.sales.groupby(ITEM_ID, sort=True)[DATE].size()

    def save(self, folder: str | Path) -> Path:
        """Write the panel to ``folder`` as ``panel.parquet``, ``items.parquet``, ``panel.json``.

        The folder is written as a whole (:func:`salesformer._io.atomic_dir`): it must be new,
        empty or a folder salesformer wrote, and no file of an earlier panel is left in it.
        """
        out = Path(folder)
        meta = {
            "freq": self.freq,
            "known_future": list(self.known_future),
            "past_only": list(self.past_only),
            "salesformer_version": __version__,
            **({"calendar": self.calendar} if self.calendar else {}),
        }
        with atomic_dir(out, kind="panel") as staging:
            self.sales.to_parquet(staging / _PANEL_FILE, index=False)
            if self.items is not None:
                self.items.to_parquet(staging / _ITEMS_FILE, index=False)
            (staging / _META_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return out

    @classmethod
    def load(cls, folder: str | Path) -> Panel:
        """Read a panel written by :meth:`save` (or by ``salesformer prepare``)."""
        path = Path(folder)
        if not (path / _PANEL_FILE).is_file():
            found = sorted(p.name for p in path.iterdir()) if path.is_dir() else "no such folder"
            raise DataValidationError(
                f"no {_PANEL_FILE} in {str(path)!r} (found: {found}); "
                "create one with 'salesformer prepare online-retail' or 'salesformer prepare csv'"
            )
        hint = "prepare the panel again with 'salesformer prepare'"
        meta: object = {}
        try:
            if (path / _META_FILE).is_file():
                meta = json.loads((path / _META_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DataValidationError(
                f"{str(path / _META_FILE)!r} is not valid JSON ({type(exc).__name__}); {hint}"
            ) from exc
        if not isinstance(meta, dict):
            raise DataValidationError(f"{str(path / _META_FILE)!r} must hold an object; {hint}")
        freq, known, past = meta.get("freq"), meta.get("known_future"), meta.get("past_only")
        if freq is not None and not isinstance(freq, str):
            raise DataValidationError(f"{str(path / _META_FILE)!r}: freq must be text; {hint}")
        for name, value in (("known_future", known), ("past_only", past)):
            if value is not None and not (
                isinstance(value, list) and all(isinstance(v, str) for v in value)
            ):
                raise DataValidationError(
                    f"{str(path / _META_FILE)!r}: {name} must be a list of column names; {hint}"
                )
        sales = _read_parquet(path / _PANEL_FILE, hint, dictionary=ITEM_ID)
        items_path = path / _ITEMS_FILE
        items = _read_parquet(items_path, hint) if items_path.is_file() else None
        panel = validate_panel(sales, items, freq=freq, known_future=known, past_only=past)
        calendar = meta.get("calendar")
        return replace(panel, calendar=calendar if isinstance(calendar, dict) else None)


#: Characters an id may not hold: control characters and invisible (zero-width, direction) marks.
_INVISIBLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u00ad\u200b-\u200f\u2028-\u202e\u2060-\u2064\ufeff]")


def check_item_ids(ids: pd.Series, where: str) -> None:
    """Refuse ids that are blank or hold control or invisible characters.

    Such ids look equal to other ids (or to nothing) when printed, so forecasts and plans
    could not be matched to products. Any visible character is allowed, ``/`` included
    (real SKUs hold it).

    Raises:
        DataValidationError: naming the bad ids (escaped) and how to fix them.
    """
    unique = pd.Series(pd.unique(ids.astype(str)))
    blank = unique[unique.str.strip() == ""]
    if len(blank):
        raise DataValidationError(
            f"{where}: {len(blank)} ids are blank (empty or spaces only), e.g. "
            f"{_examples(blank)}; give every row a product id, or drop those rows"
        )
    hidden = unique[unique.str.contains(_INVISIBLE)]
    if len(hidden):
        raise DataValidationError(
            f"{where}: {len(hidden)} ids hold control or invisible characters (zero-width "
            f"spaces, line breaks, ...), e.g. [{', '.join(ascii(i) for i in hidden[:5])}]; remove "
            "those characters from the ids"
        )


def _read_parquet(path: Path, hint: str, dictionary: str | None = None) -> pd.DataFrame:
    """A Parquet file of a panel folder; a :class:`DataValidationError` when unreadable.

    ``dictionary`` names a text column read as categories (one string per distinct value, not
    per row: 100x fewer Python strings for ``item_id`` in a long panel); validation turns it
    back into text.
    """
    try:
        import pyarrow.parquet as pq

        columns = pq.read_schema(path).names
        encoded = [dictionary] if dictionary in columns else None
        return pq.read_table(path, read_dictionary=encoded).to_pandas()
    except Exception as exc:  # pyarrow raises many types for a damaged file
        first = str(exc).splitlines()[0][:120] if str(exc) else ""
        raise DataValidationError(
            f"cannot read {str(path)!r} ({type(exc).__name__}: {first}); {hint}"
        ) from exc


def validate_items(items: pd.DataFrame) -> pd.DataFrame:
    """Check an items table and return a clean copy (``item_id`` as str, one row per item).

    Raises:
        DataValidationError: on a missing column, duplicated ids or missing text.
    """
    if not isinstance(items, pd.DataFrame):
        raise DataValidationError(f"items must be a pandas DataFrame; got {type(items).__name__}")
    missing = [c for c in (ITEM_ID, TEXT) if c not in items.columns]
    if missing:
        raise DataValidationError(
            f"items table: column(s) {missing} missing; got columns {list(items.columns)}; "
            "map your id and product text columns to 'item_id' and 'text'"
        )
    out = items.copy()
    if out[ITEM_ID].isna().any():
        raise DataValidationError(
            f"items table: {int(out[ITEM_ID].isna().sum())} rows have no item_id; drop or fill them"
        )
    out[ITEM_ID] = out[ITEM_ID].astype(str)
    check_item_ids(out[ITEM_ID], "items table: column 'item_id'")
    dup = out.loc[out[ITEM_ID].duplicated(), ITEM_ID]
    if len(dup):
        raise DataValidationError(
            f"items table: {len(dup)} duplicated item_id values, e.g. {_examples(dup.unique())}; "
            "keep one row per item"
        )
    no_text = out.loc[out[TEXT].isna(), ITEM_ID]
    if len(no_text):
        raise DataValidationError(
            f"items table: 'text' is missing for {len(no_text)} items, e.g. "
            f"{_examples(no_text)}; fill it (a title is enough) or drop those items"
        )
    out[TEXT] = out[TEXT].astype(str)
    return out.reset_index(drop=True)


def parse_dates(values: pd.Series) -> pd.Series:
    """The contract's ``date`` column parsed as dates (no time of day, no zone).

    Raises:
        DataValidationError: values that are not dates, missing dates or times of day.
    """
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = values  # nothing to parse, nothing that fails to parse
    else:
        parsed = pd.to_datetime(values, errors="coerce", format="mixed")
        bad = values[parsed.isna() & values.notna()]
        if len(bad):
            raise DataValidationError(
                f"column 'date': {len(bad)} values are not dates, e.g. "
                f"{_examples(bad.unique())}; use ISO dates such as 2011-03-07"
            )
    missing = parsed.isna()
    if missing.any():
        raise DataValidationError(
            f"column 'date': {int(missing.sum())} rows have no date (NaN); drop or fill them"
        )
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)
    unit, _ = np.datetime_data(parsed.dtype)  # pandas holds s, ms, us or ns
    with_time = parsed[parsed.to_numpy().view(np.int64) % _TICKS_PER_DAY[unit] != 0]
    if len(with_time):
        raise DataValidationError(
            f"column 'date': {len(with_time)} values carry a time of day, e.g. "
            f"{_examples([str(v) for v in with_time.unique()])}; a panel has one row per item "
            "and period: aggregate events with 'salesformer prepare csv --freq W-MON'"
        )
    return parsed.astype("datetime64[ns]")  # a copy: the panel never shares the input's arrays


def parse_numbers(raw: pd.Series, column: str) -> pd.Series:
    """Parse a column as numbers, keeping NaN where the input is missing.

    Raises:
        DataValidationError: naming the column and examples of values that are not numbers.
    """
    if pd.api.types.is_bool_dtype(raw):
        return raw.astype(float)
    values = pd.to_numeric(raw, errors="coerce")
    bad = raw[values.isna() & raw.notna()]
    if len(bad):
        raise DataValidationError(
            f"column {column!r}: {len(bad)} values are not numbers, e.g. "
            f"{_examples(bad.unique())}; clean them, or drop the column if it is not a "
            "numeric covariate"
        )
    return values


def _coerce_numeric(frame: pd.DataFrame, column: str) -> np.ndarray:
    """A numeric column as a new float array (never a view of ``frame``'s), every value finite."""
    values = parse_numbers(frame[column], column)
    array = np.array(values.to_numpy(dtype=float, na_value=np.nan), dtype=float, copy=True)
    infinite = np.isinf(array)
    if infinite.any():
        raise DataValidationError(
            f"column {column!r}: {int(infinite.sum())} of {len(values)} values are infinite, "
            f"e.g. {_examples(values[infinite].unique())}; every value must be a finite "
            "number: fix or drop those rows"
        )
    missing = np.isnan(array)
    if missing.any():
        raise DataValidationError(
            f"column {column!r}: {int(missing.sum())} of {len(values)} values are missing (NaN); "
            + (
                "sales must be given for every row (use 0 for no sales)"
                if column == SALES
                else "fill them (e.g. carry the last price forward) or drop the column"
            )
        )
    return array


def validate_panel(
    sales: pd.DataFrame,
    items: pd.DataFrame | None = None,
    *,
    freq: str | None = None,
    known_future: Sequence[str] | None = None,
    past_only: Sequence[str] | None = None,
    negative_sales: NegativeSalesPolicy = "error",
) -> Panel:
    """Check a sales frame against the contract and return a complete :class:`Panel`.

    Policies, stated once:

    - **gaps**: a period with no row is a period with no sales: ``sales`` becomes 0 and the
      covariates carry their last value forward (from each item's first row to the panel's
      last date);
    - **negative sales** (returns): an error by default; ``negative_sales="clip"`` sets them to
      0 and counts them in ``report["negative_sales_clipped"]``;
    - covariates are numeric; those named in ``DEFAULT_KNOWN_FUTURE`` are known-future unless
      declared past-only, every other covariate is past-only unless declared known-future.

    Args:
        sales: long frame with ``item_id``, ``date``, ``sales`` and optional covariates.
        items: optional items table; every item of the panel must be in it.
        freq: frequency alias; inferred from the dates when None.
        known_future: covariates known for the forecast horizon.
        past_only: covariates known only up to the cutoff.
        negative_sales: ``"error"`` or ``"clip"``.

    Raises:
        DataValidationError: with what was wrong, what was received and how to fix it.
    """
    frame, codes, covariates, report = _checked_sales(sales, negative_sales)
    if freq is None:
        freq = infer_freq(frame[DATE])
        if freq == "D":
            refuse_weekly_as_daily(codes.codes, frame[DATE].to_numpy())
    season_length(freq)  # rejects an unknown frequency with a clear message
    check_on_grid(pd.DatetimeIndex(frame[DATE]), freq)
    declared_known, past = _covariate_kinds(covariates, known_future, past_only)

    ordered = [ITEM_ID, DATE, SALES, *declared_known, *past, *availability_columns(frame)]
    completed = complete_grid(frame, codes, freq, ordered)
    report["rows_filled"] = len(completed) - len(frame)
    report["items"] = len(codes.ids)
    report["rows"] = len(completed)
    clean_items = None if items is None else _checked_items(items, codes.ids)
    return Panel(
        completed,
        clean_items,
        freq,
        tuple(declared_known),
        tuple(past),
        report,
    )


def _checked_sales(
    sales: pd.DataFrame, negative_sales: NegativeSalesPolicy
) -> tuple[pd.DataFrame, ItemCodes, list[str], dict[str, int]]:
    """The sales frame with typed columns, sorted by item and date, its item codes, its
    covariates and the first report counts."""
    if not isinstance(sales, pd.DataFrame):
        raise DataValidationError(f"sales must be a pandas DataFrame; got {type(sales).__name__}")
    missing = [c for c in (ITEM_ID, DATE, SALES) if c not in sales.columns]
    if missing:
        raise DataValidationError(
            f"column(s) {missing} missing; got columns {list(sales.columns)}; "
            "map your columns to item_id, date and sales (CLI: --item-col, --date-col, --sales-col)"
        )
    if len(sales) == 0:
        raise DataValidationError("the sales panel is empty (0 rows); give at least one row")
    if negative_sales not in ("error", "clip"):
        raise DataValidationError(
            f"negative_sales must be 'error' or 'clip'; got {negative_sales!r}"
        )
    codes = item_codes(sales[ITEM_ID])  # the ids stay codes until the grid is complete
    check_item_ids(pd.Series(codes.ids), "column 'item_id'")
    # every column of the checked frame is a new array (the grid keeps them without copying)
    columns: dict[str, np.ndarray] = {DATE: parse_dates(sales[DATE]).to_numpy()}
    flags = availability_of(sales)
    covariates = [c for c in sales.columns if c not in (ITEM_ID, DATE, SALES, *AVAILABILITY)]
    for column in (SALES, *covariates):
        columns[column] = _coerce_numeric(sales, column)
    if flags is not None:
        columns[IN_STOCK] = flags.to_numpy(dtype=bool, copy=True)

    report: dict[str, int] = {"input_rows": len(sales)}
    negative = columns[SALES] < 0
    if negative.any():
        if negative_sales == "error":
            raise DataValidationError(
                f"column 'sales': {int(negative.sum())} negative values (returns?), e.g. "
                f"{_examples(pd.unique(columns[SALES][negative]))}; demand cannot be negative: "
                "remove returns, or clip them to 0 "
                "(negative_sales='clip', CLI --negative-sales clip)"
            )
        columns[SALES][negative] = 0.0
    report["negative_sales_clipped"] = int(negative.sum())

    days = columns[DATE].view(np.int64) // _DAY_NS  # whole days: parse_dates refuses times
    order, repeated = order_rows(codes.codes, days)
    if repeated:
        _refuse_repeated_pairs(codes, columns[DATE])
    if order is not None:
        columns = {name: values.take(order) for name, values in columns.items()}
        codes = replace(codes, codes=codes.codes.take(order))
    return pd.DataFrame(columns, copy=False), codes, covariates, report


def _refuse_repeated_pairs(codes: ItemCodes, dates: np.ndarray) -> None:
    """Raise for (item_id, date) pairs that appear more than once (rows in input order)."""
    rows = pd.DataFrame({ITEM_ID: codes.codes, DATE: dates})
    pairs = rows.loc[rows.duplicated(keep=False)].drop_duplicates()
    first = pairs.head(5)
    shown = [f"{codes.ids[i]} @ {pd.Timestamp(d).date()}" for i, d in first.to_numpy().tolist()]
    raise DataValidationError(
        f"{len(pairs)} (item_id, date) pairs appear more than once, e.g. {shown}; "
        "a panel has one row per item and period: sum the sales per item and date first"
    )


def _covariate_kinds(
    covariates: list[str],
    known_future: Sequence[str] | None,
    past_only: Sequence[str] | None,
) -> tuple[list[str], list[str]]:
    """The known-future and the past-only covariates (see :func:`validate_panel`)."""
    declared_known = list(known_future) if known_future is not None else None
    declared_past = list(past_only) if past_only is not None else []
    for name in [*(declared_known or []), *declared_past]:
        if name not in covariates:
            raise DataValidationError(
                f"covariate {name!r} was declared but is not a column; got covariates {covariates}"
            )
    if declared_known is None:
        declared_known = [
            c for c in covariates if c in DEFAULT_KNOWN_FUTURE and c not in declared_past
        ]
    past = [c for c in covariates if c not in declared_known]
    return declared_known, past


def _checked_items(items: pd.DataFrame, panel_ids: np.ndarray) -> pd.DataFrame:
    """The validated items table; every item of the panel (``panel_ids``) must be in it."""
    clean_items = validate_items(items)
    # a hash lookup: np.setdiff1d on object arrays took minutes at 100,000 items
    unknown = panel_ids[~pd.Series(panel_ids).isin(clean_items[ITEM_ID]).to_numpy()]
    if len(unknown):
        raise DataValidationError(
            f"{len(unknown)} items of the panel are not in the items table, e.g. "
            f"{_examples(unknown)}; add them to the items table or drop their sales rows"
        )
    return clean_items
