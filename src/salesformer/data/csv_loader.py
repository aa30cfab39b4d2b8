"""Your own sales file (CSV or Parquet) to the data contract.

Columns are mapped to the contract here, once: ``item_col`` becomes ``item_id``, ``date_col``
becomes ``date`` and ``sales_col`` becomes ``sales``; every other column of the sales file is a
numeric covariate. Transaction-level rows (timestamps, several rows per item and period) are
summed per item and period when ``aggregate=True``, or when a ``freq`` is given and the dates
are not already on its grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pandas as pd

from salesformer.data.availability import (
    IN_STOCK,
    STOCK_ON_HAND,
    availability_columns,
    checked_availability,
)
from salesformer.data.contract import (
    DATE,
    DEFAULT_KNOWN_FUTURE,
    ITEM_ID,
    SALES,
    TEXT,
    NegativeSalesPolicy,
    Panel,
    parse_numbers,
    validate_panel,
)
from salesformer.data.sources import read_table, resolve_source
from salesformer.data.text import TEMPLATE_FIELDS, texts_from_columns
from salesformer.errors import ConfigError, DataValidationError

#: Frequency used by ``aggregate=True`` when no ``freq`` is given.
DEFAULT_AGGREGATE_FREQ = "W-MON"
_WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")
_FLAGS = {ITEM_ID: "--item-col", DATE: "--date-col", SALES: "--sales-col"}


def prepare_csv(
    sales_path: str | Path,
    *,
    items_path: str | Path | None = None,
    item_col: str = ITEM_ID,
    date_col: str = DATE,
    sales_col: str = SALES,
    text_cols: Sequence[str] | None = None,
    freq: str | None = None,
    aggregate: bool = False,
    known_future: Sequence[str] | None = None,
    past_only: Sequence[str] | None = None,
    negative_sales: NegativeSalesPolicy = "error",
    in_stock_col: str | None = None,
    stock_col: str | None = None,
) -> Panel:
    """Read a sales file (and optionally an items file) into a validated :class:`Panel`.

    Args:
        sales_path: CSV (``.csv``, ``.csv.gz``, ...) or Parquet file, or an http(s) URL of one.
        items_path: optional items file (CSV or Parquet) with the same item id column.
        item_col: the item id column (in both files).
        date_col: the date or timestamp column of the sales file.
        sales_col: the units column of the sales file.
        text_cols: items columns that make the item text, in template order: title,
            description, category, promotion (at most four). When None the items file must
            have a ``text`` column, or columns named after the template fields.
        freq: panel frequency (``W-MON`` ... ``W-SUN``, ``D``, ``MS``); inferred when None.
        aggregate: sum the rows per item and period (at ``freq``, ``W-MON`` by default).
        known_future: covariates known for the forecast horizon.
        past_only: covariates known only up to the cutoff.
        negative_sales: ``"error"`` or ``"clip"`` (returns set to 0).
        in_stock_col: availability column, true/false per row (mapped to ``in_stock``).
        stock_col: units on hand at the end of each row's period (mapped to
            ``stock_on_hand``; 0 means out of stock). See :mod:`salesformer.data.availability`.

    Returns:
        The panel; ``panel.report`` adds ``source_rows`` and ``aggregated_rows`` to the
        validation counts.

    Raises:
        ConfigError: an invalid option value.
        DataValidationError: a missing column, unreadable file or data against the contract.
    """
    if negative_sales not in ("error", "clip"):
        raise ConfigError(
            f"negative_sales must be 'error' or 'clip'; got {negative_sales!r} "
            "(CLI: --negative-sales error|clip)"
        )
    text_columns = _check_text_cols(text_cols)
    raw = read_table(resolve_source(sales_path), string_columns=(item_col,))
    sales = map_columns(raw, item_col=item_col, date_col=date_col, sales_col=sales_col)
    sales = map_availability(sales, in_stock_col=in_stock_col, stock_col=stock_col)
    freq = freq.upper() if freq else None
    if aggregate or (freq is not None and needs_aggregation(sales[DATE], freq)):
        freq = freq or DEFAULT_AGGREGATE_FREQ
        sales = aggregate_sales(sales, freq, known_future=known_future, past_only=past_only)
    items = None
    if items_path is not None:
        items = load_items(items_path, item_col=item_col, text_cols=text_columns)
    panel = validate_panel(
        sales,
        items,
        freq=freq,
        known_future=known_future,
        past_only=past_only,
        negative_sales=negative_sales,
    )
    report = {"source_rows": len(raw), "aggregated_rows": len(sales), **panel.report}
    return replace(panel, report=report)


def _check_text_cols(text_cols: Sequence[str] | None) -> list[str] | None:
    if text_cols is None:
        return None
    columns = [c.strip() for c in text_cols if c.strip()]
    if not columns or len(columns) > len(TEMPLATE_FIELDS):
        raise ConfigError(
            f"text_cols takes 1 to {len(TEMPLATE_FIELDS)} columns, used in the order "
            f"{', '.join(TEMPLATE_FIELDS)}; got {list(text_cols)} "
            "(CLI: --text-cols title,description)"
        )
    return columns


def map_columns(
    frame: pd.DataFrame, *, item_col: str, date_col: str, sales_col: str
) -> pd.DataFrame:
    """Rename the user's id, date and sales columns to the contract's names.

    Raises:
        DataValidationError: a named column is missing (the message lists the columns present
            and the CLI flag to fix it), or a renamed column would collide with another one.
    """
    if len({item_col, date_col, sales_col}) < 3:
        raise DataValidationError(
            f"the item, date and sales columns must differ; got {item_col!r}, {date_col!r}, "
            f"{sales_col!r}; check --item-col, --date-col and --sales-col"
        )
    mapping = {item_col: ITEM_ID, date_col: DATE, sales_col: SALES}
    for source, target in mapping.items():
        if source not in frame.columns:
            raise DataValidationError(
                f"sales file: {target} column {source!r} is missing; got columns "
                f"{list(frame.columns)}; name the right one with {_FLAGS[target]}"
            )
    for source, target in mapping.items():
        if target in frame.columns and source != target:
            raise DataValidationError(
                f"sales file: {source!r} would be renamed to {target!r}, which is already "
                f"another column; rename or drop that column, or pass {_FLAGS[target]} {target}"
            )
    return frame.rename(columns=mapping)


def map_availability(
    frame: pd.DataFrame, *, in_stock_col: str | None, stock_col: str | None
) -> pd.DataFrame:
    """Rename the user's availability column to ``in_stock`` or ``stock_on_hand``.

    Raises:
        DataValidationError: both given, a named column missing, or a name collision.
    """
    if in_stock_col is not None and stock_col is not None:
        raise DataValidationError(
            f"give one availability column, not both --in-stock-col {in_stock_col!r} and "
            f"--stock-col {stock_col!r}"
        )
    for source, target, flag in (
        (in_stock_col, IN_STOCK, "--in-stock-col"),
        (stock_col, STOCK_ON_HAND, "--stock-col"),
    ):
        if source is None:
            continue
        if source not in frame.columns:
            raise DataValidationError(
                f"sales file: availability column {source!r} ({flag}) is missing; got columns "
                f"{list(frame.columns)}; name the right one with {flag}"
            )
        if source != target and target in frame.columns:
            raise DataValidationError(
                f"sales file: {source!r} would be renamed to {target!r}, which is already "
                f"another column; rename or drop that column, or pass {flag} {target}"
            )
        return frame.rename(columns={source: target})
    return frame


def _parse_timestamps(values: pd.Series) -> pd.Series:
    parsed = pd.to_datetime(values, errors="coerce", format="mixed")
    bad = values[parsed.isna()]
    if len(bad):
        raise DataValidationError(
            f"date column: {len(bad)} values are not dates, e.g. "
            f"{list(bad.astype(str).unique()[:5])}; "
            "use ISO dates or timestamps such as 2011-03-07 or 2011-03-07 14:05, "
            "and drop rows without a date"
        )
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)
    return parsed.astype("datetime64[ns]")


def period_start(timestamps: pd.Series, freq: str) -> pd.Series:
    """The start of the ``freq`` period each timestamp falls in.

    ``W-XXX`` periods are weeks that start on day ``XXX`` (the contract's convention: a
    ``W-MON`` panel is dated by Mondays), ``D`` days and ``MS`` calendar months.

    Raises:
        ConfigError: any other frequency.
    """
    days = timestamps.dt.normalize()
    if freq == "D":
        return days
    if freq == "MS":
        return days - pd.to_timedelta(days.dt.day - 1, unit="D")
    anchor = freq[2:] if freq.startswith("W-") else ""
    if anchor not in _WEEKDAYS:
        raise ConfigError(
            f"cannot aggregate to frequency {freq!r}; use W-MON ... W-SUN (weeks starting on that "
            "day), D (days) or MS (months) (CLI: --freq W-MON)"
        )
    back = (days.dt.weekday - _WEEKDAYS.index(anchor)) % 7
    return days - pd.to_timedelta(back, unit="D")


def needs_aggregation(dates: pd.Series, freq: str) -> bool:
    """Whether ``dates`` carry a time of day or fall off the ``freq`` grid."""
    parsed = _parse_timestamps(dates)
    return bool((parsed != period_start(parsed, freq)).any())


def aggregate_sales(
    sales: pd.DataFrame,
    freq: str,
    *,
    known_future: Sequence[str] | None = None,
    past_only: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Sum sales per item and ``freq`` period; average known-future covariates, sum the others.

    Known-future covariates (price, discount, promotion flags: those in ``known_future``, or by
    default those named in :data:`~salesformer.data.contract.DEFAULT_KNOWN_FUTURE`) are
    averaged over the period's rows; past-only covariates (counts such as orders or views) are
    summed.
    """
    frame = sales.assign(**{DATE: period_start(_parse_timestamps(sales[DATE]), freq)})
    frame = checked_availability(frame)  # a period is out of stock if any of its rows is
    covariates = [c for c in frame.columns if c not in (ITEM_ID, DATE, SALES, IN_STOCK)]
    declared_past = set(past_only or ())
    known = set(known_future) if known_future is not None else set(DEFAULT_KNOWN_FUTURE)
    rules: dict[str, str] = {SALES: "sum", **{c: "min" for c in availability_columns(frame)}}
    for column in covariates:
        rules[column] = "mean" if column in known and column not in declared_past else "sum"
        frame[column] = parse_numbers(frame[column], column)
    frame[SALES] = parse_numbers(frame[SALES], SALES)
    if frame[ITEM_ID].isna().any():
        raise DataValidationError(
            f"item column: {int(frame[ITEM_ID].isna().sum())} rows have no item id; drop them"
        )
    grouped = frame.groupby([ITEM_ID, DATE], sort=True).agg(rules)
    return grouped.reset_index()


def load_items(
    items_path: str | Path, *, item_col: str = ITEM_ID, text_cols: Sequence[str] | None = None
) -> pd.DataFrame:
    """Read an items file and give it the contract's ``item_id`` and ``text`` columns.

    Args:
        items_path: CSV or Parquet file (or http(s) URL) with one row per item.
        item_col: the item id column.
        text_cols: columns that make the text, in template order (title, description,
            category, promotion); they replace any ``text`` column. When None, an existing
            ``text`` column is used, else the columns named like the template fields.

    Raises:
        DataValidationError: a missing id or text column.
    """
    items = read_table(resolve_source(items_path), string_columns=(item_col,))
    if item_col not in items.columns:
        raise DataValidationError(
            f"items file: item column {item_col!r} is missing; got columns "
            f"{list(items.columns)}; use the same id column name as the sales file (--item-col)"
        )
    if item_col != ITEM_ID and ITEM_ID in items.columns:
        raise DataValidationError(
            f"items file: {item_col!r} would be renamed to 'item_id', which is already another "
            "column; rename or drop that column"
        )
    items = items.rename(columns={item_col: ITEM_ID})
    if text_cols is not None:
        return _with_text(items, list(text_cols))
    if TEXT in items.columns:
        return items
    present = [f for f in TEMPLATE_FIELDS if f in items.columns]
    if present:
        return items.assign(**{TEXT: texts_from_columns(items)})
    raise DataValidationError(
        f"items file: no 'text' column and no {', '.join(TEMPLATE_FIELDS)} column; got columns "
        f"{list(items.columns)}; name the text columns with --text-cols title,description"
    )


def _with_text(items: pd.DataFrame, text_cols: list[str]) -> pd.DataFrame:
    missing = [c for c in text_cols if c not in items.columns]
    if missing:
        raise DataValidationError(
            f"items file: text column(s) {missing} missing; got columns {list(items.columns)}; "
            "fix --text-cols"
        )
    parts = pd.DataFrame(
        {field: items[column] for field, column in zip(TEMPLATE_FIELDS, text_cols, strict=False)},
        index=items.index,
    )
    return items.assign(**{TEXT: texts_from_columns(parts)})
