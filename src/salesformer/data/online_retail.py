"""UCI Online Retail II invoice lines to the data contract, following one benchmark protocol.

The protocol, stated once (``docs/data.md`` explains each step with the numbers it gives):

1. **Sheet overlap**: both sheets of the official workbook hold 2010-12-01 .. 2010-12-09. Where
   the sheets' date ranges overlap, a row of a later sheet that exactly repeats a row of an
   earlier sheet (every column but ``sheet``) is dropped, as a multiset: a line that appears
   twice within the first sheet and twice in the second keeps its two genuine copies.
2. **Invoice lines kept**: the Invoice does not start with ``C`` (cancellation), ``Quantity > 0``,
   ``Price > 0``, the upper-cased StockCode starts with five digits (``^\\d{5}``: drops POST, DOT,
   M, BANK CHARGES, gift vouchers, TEST..., ...) and the Description is not empty. Each dropped
   row is counted under the first of these reasons it meets, in this order.
3. **Weeks** start on Monday. The last week is dropped when the data stop before its Sunday
   (2011-12-05 .. 12-09), so the panel spans 2009-11-30 .. 2011-11-28 (105 weeks).
4. **Item-weeks**: ``item_id`` is the upper-cased StockCode; ``sales`` the summed Quantity;
   ``price`` the average paid unit price (revenue / units); ``orders`` the distinct invoices and
   ``customers`` the distinct Customer IDs. Each item runs from its first sale week to the panel
   end: no-sale weeks have ``sales``, ``orders`` and ``customers`` 0, and carry ``price`` and
   ``discount`` forward from the last sale week.
5. **Discount depth**: ``1 - price / typical``, where ``typical`` is the median of the item's
   weekly paid price over its previous 13 sale weeks (the current week excluded, so only the
   past is used), clipped to ``[0, 1)``; 0 in an item's first sale week.
6. **List price** (items table, ``list_price``): the most common unit price (``Price``) among
   the item's invoice lines of its first sale week, ties to the higher price. Unlike the paid
   average, it does not fall when a bulk order lands in the launch week, so a launch forecast
   can read it without reading the volume it forecasts.
7. **Bulk orders** are kept but flagged: an invoice line with ``Quantity >= 100`` and more than
   10 times the item's median line quantity (over the kept lines).

``freq="D"`` (CLI ``--freq D``) builds the same panel by day: the same lines, the same span
(2009-12-01 .. 2011-12-04, the last full week's Sunday, so daily sales add up to the weekly
panel's), one row per item and day from its first sale day. "Week" above then reads "day":
the discount compares with the 13 previous sale days, the list price is read on the first sale
day. Days the shop did not trade (it sends no invoices on Saturdays, and it closes from about
23 December to early January) are ordinary zero-sale days of the panel: a calendar
(:mod:`salesformer.data.calendars`, ``--holidays GB`` and an events file with the closure) is
what tells a model that those zeros are planned.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from salesformer.data.contract import (
    DATE,
    ITEM_ID,
    LIST_PRICE,
    SALES,
    TEXT,
    Panel,
    validate_panel,
)
from salesformer.data.sources import quality_table, read_table, resolve_source
from salesformer.data.text import item_text
from salesformer.errors import ConfigError, DataValidationError

if TYPE_CHECKING:
    from rich.table import Table

INVOICE = "Invoice"
STOCK_CODE = "StockCode"
DESCRIPTION = "Description"
QUANTITY = "Quantity"
INVOICE_DATE = "InvoiceDate"
PRICE = "Price"
CUSTOMER = "Customer ID"
COUNTRY = "Country"
SHEET = "sheet"
REQUIRED_COLUMNS = (
    INVOICE,
    STOCK_CODE,
    DESCRIPTION,
    QUANTITY,
    INVOICE_DATE,
    PRICE,
    CUSTOMER,
    COUNTRY,
)
_TEXT_COLUMNS = (INVOICE, STOCK_CODE, DESCRIPTION, COUNTRY, SHEET)

FREQ = "W-MON"
#: Frequencies the loader builds: weeks (the benchmark protocol) or days.
FREQUENCIES = ("W-MON", "D")
#: Carried forward through no-sale weeks.
PRICE_COLUMNS = ("price", "discount")
#: Zero in no-sale weeks.
COUNT_COLUMNS = ("orders", "customers")
#: Every covariate is past-only: the *paid* average price is observed only in weeks that sell
#: and is carried forward otherwise, so its values over a horizon would reveal which weeks
#: sold (an unchanged price means no sale). A shop's planned list price would be known-future.
KNOWN_FUTURE: tuple[str, ...] = ()
PAST_ONLY = (*PRICE_COLUMNS, *COUNT_COLUMNS)
PRODUCT_CODE = r"^\d{5}"
TYPICAL_PRICE_WEEKS = 13
BULK_FACTOR = 10.0
BULK_MIN_UNITS = 100
NEW_ITEM_YEAR = 2011

#: Drop reasons, in the order they are tested (a row is counted under the first it meets),
#: with the :class:`QualityReport` field that counts them.
DROP_REASONS = {
    "cancellation": "dropped_cancellations",
    "non_positive_quantity": "dropped_non_positive_quantity",
    "non_positive_price": "dropped_non_positive_price",
    "non_product_code": "dropped_non_product_codes",
    "missing_description": "dropped_missing_description",
}


@dataclass(frozen=True)
class QualityReport:
    """What the preparation read, dropped, kept and flagged.

    Attributes:
        input_rows: invoice lines read.
        dropped_sheet_overlap: later-sheet copies of the overlapping days.
        dropped_cancellations: lines whose Invoice starts with ``C``.
        dropped_non_positive_quantity: other lines with ``Quantity <= 0`` (or missing).
        dropped_non_positive_price: other lines with ``Price <= 0`` (or missing).
        dropped_non_product_codes: other lines whose StockCode does not start with 5 digits.
        dropped_missing_description: other lines with an empty Description.
        dropped_partial_last_week: kept lines that fall in the incomplete last week.
        rows_kept: invoice lines that make the panel.
        items: products in the panel.
        weeks: weeks in the panel.
        first_week: first week start (ISO date).
        last_week: last week start (ISO date).
        items_with_text: products with a non-empty text.
        items_first_sold_2011: products whose first sale week starts in 2011.
        bulk_order_lines: kept lines flagged as bulk orders (kept in the sales).
        freq: the panel's frequency; with ``"D"``, ``weeks``, ``first_week`` and ``last_week``
            count and name days.
        outliers: the flagged lines (``invoice, item_id, date, quantity,
            median_line_quantity, reason``); not part of :meth:`to_dict`.
    """

    input_rows: int
    dropped_sheet_overlap: int
    dropped_cancellations: int
    dropped_non_positive_quantity: int
    dropped_non_positive_price: int
    dropped_non_product_codes: int
    dropped_missing_description: int
    dropped_partial_last_week: int
    rows_kept: int
    items: int
    weeks: int
    first_week: str
    last_week: str
    items_with_text: int
    items_first_sold_2011: int
    bulk_order_lines: int
    outliers: pd.DataFrame = field(repr=False, compare=False)
    freq: str = FREQ

    def to_dict(self) -> dict[str, Any]:
        """Every count as a JSON-serialisable dict (the outlier lines left out)."""
        counts = asdict(self)
        counts.pop("outliers")
        return counts

    def as_table(self) -> Table:
        """The report as a two-column rich table, for printing."""
        return quality_table("Online Retail II: data quality", self.to_dict())


def read_invoice_lines(path: Path) -> pd.DataFrame:
    """Read invoice lines from the official ``.xlsx`` (every sheet), a CSV or a Parquet file.

    Text columns become strings (numeric Excel cells such as StockCode 85048 included),
    ``Description`` has its whitespace collapsed, ``InvoiceDate`` is parsed.

    Raises:
        DataValidationError: an unreadable file, a missing column or unparseable values.
    """
    if path.name.lower().endswith((".xlsx", ".xlsm")):
        frame = _read_workbook(path)
    else:
        frame = read_table(path, string_columns=_TEXT_COLUMNS)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise DataValidationError(
            f"{str(path)!r} is not Online Retail II invoice lines: column(s) {missing} missing; "
            f"got columns {list(frame.columns)}; expected {list(REQUIRED_COLUMNS)} "
            "(for another layout use 'salesformer prepare csv')"
        )
    return _normalise_types(frame[[c for c in (*REQUIRED_COLUMNS, SHEET) if c in frame.columns]])


def _read_workbook(path: Path) -> pd.DataFrame:
    try:
        sheets = pd.read_excel(
            path, sheet_name=None, engine="openpyxl", dtype=dict.fromkeys(_TEXT_COLUMNS, str)
        )
    except Exception as exc:  # openpyxl and zipfile raise many unrelated types
        raise DataValidationError(
            f"could not read {str(path)!r} as an Excel workbook: {type(exc).__name__}: {exc}; "
            "check that it is the official online_retail_II.xlsx"
        ) from exc
    frames = [sheet.assign(**{SHEET: name}) for name, sheet in sheets.items()]
    return pd.concat(frames, ignore_index=True)


def _text(values: pd.Series) -> pd.Series:
    return values.astype("string[pyarrow]").str.strip()


def _numbers(frame: pd.DataFrame, column: str) -> pd.Series:
    values = pd.to_numeric(frame[column], errors="coerce")
    bad = frame.loc[values.isna() & frame[column].notna(), column]
    if len(bad):
        raise DataValidationError(
            f"column {column!r}: {len(bad)} values are not numbers, e.g. "
            f"{list(bad.unique()[:5])}; fix or remove those rows"
        )
    return values


def _normalise_types(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for column in (INVOICE, STOCK_CODE, COUNTRY):
        out[column] = _text(out[column])
    out[DESCRIPTION] = _text(out[DESCRIPTION]).str.replace(r"\s+", " ", regex=True)
    out[QUANTITY] = _numbers(out, QUANTITY)
    out[PRICE] = _numbers(out, PRICE)
    dates = out[INVOICE_DATE]
    if not pd.api.types.is_datetime64_any_dtype(dates):
        dates = pd.to_datetime(dates, errors="coerce", format="mixed")
    bad = out.loc[dates.isna(), INVOICE_DATE]
    if len(bad):
        raise DataValidationError(
            f"column {INVOICE_DATE!r}: {len(bad)} rows have no valid date, e.g. "
            f"{list(bad.astype(str).unique()[:5])}; use dates such as 2010-12-01 08:26"
        )
    if getattr(dates.dt, "tz", None) is not None:
        dates = dates.dt.tz_localize(None)
    out[INVOICE_DATE] = dates.astype("datetime64[ns]")
    if SHEET in out.columns:
        out[SHEET] = _text(out[SHEET]).fillna("")
    return out


def drop_sheet_overlap(lines: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Drop later-sheet copies of rows in the date range that several sheets share.

    Sheets are ordered by their first InvoiceDate. Among the rows dated within another sheet's
    date range, the k-th copy of a row (every column but ``sheet``, as read) in a later sheet is
    dropped when an earlier sheet holds that row at least k times: genuine duplicate lines
    within one sheet survive. Without a ``sheet`` column, or with one sheet, nothing is dropped.

    Returns:
        The remaining lines and the number of rows dropped.
    """
    if SHEET not in lines.columns or lines[SHEET].nunique() < 2:
        return lines, 0
    spans = lines.groupby(SHEET, observed=True)[INVOICE_DATE].agg(["min", "max"]).sort_values("min")
    rank = lines[SHEET].map({name: i for i, name in enumerate(spans.index)}).to_numpy()
    shared = np.zeros(len(lines), dtype=bool)
    dates = lines[INVOICE_DATE]
    for position, (start, end) in enumerate(spans.itertuples(index=False)):
        shared |= (rank != position) & (dates >= start).to_numpy() & (dates <= end).to_numpy()
    candidates = pd.DataFrame(
        {
            "key": pd.util.hash_pandas_object(
                lines.loc[shared, list(REQUIRED_COLUMNS)], index=False
            ),
            "rank": rank[shared],
        },
        index=pd.Index(lines.index[shared], name="row"),
    )
    candidates["occurrence"] = candidates.groupby(["key", "rank"]).cumcount()
    counts = candidates.groupby(["key", "rank"]).size().rename("n").reset_index()
    counts["earlier"] = (
        counts.groupby("key")["n"].cummax().groupby(counts["key"]).shift(fill_value=0)
    )
    matched = candidates.reset_index().merge(counts, on=["key", "rank"], how="left")
    copies = matched.loc[matched["occurrence"] < matched["earlier"], "row"]
    return lines.drop(index=copies.to_numpy()), len(copies)


def drop_reasons(lines: pd.DataFrame) -> pd.Series:
    """The first reason (of :data:`DROP_REASONS`) each line is dropped for, or ``""`` if kept."""
    cancelled = lines[INVOICE].str.upper().str.startswith("C").fillna(False)
    bad_quantity = ~(lines[QUANTITY] > 0)
    bad_price = ~(lines[PRICE] > 0)
    not_product = ~lines[STOCK_CODE].str.upper().str.match(PRODUCT_CODE).fillna(False)
    no_description = lines[DESCRIPTION].fillna("").str.len() == 0
    conditions = [
        np.asarray(c, dtype=bool)
        for c in (cancelled, bad_quantity, bad_price, not_product, no_description)
    ]
    return pd.Series(
        np.select(conditions, list(DROP_REASONS), default=""), index=lines.index, dtype=object
    )


def clean_invoice_lines(
    lines: pd.DataFrame, freq: str = FREQ
) -> tuple[pd.DataFrame, dict[str, int], pd.Timestamp]:
    """Protocol steps 1-3: drop the sheet overlap, the non-sale lines and the partial last week.

    Args:
        lines: invoice lines from :func:`read_invoice_lines`.
        freq: ``"W-MON"`` (``date`` is the week start) or ``"D"`` (the day).

    Returns:
        The kept lines with ``item_id`` (upper-cased StockCode, categorical) and ``date`` (week
        start, or day) added; the rows dropped, keyed by :class:`QualityReport` field; the last
        period kept (the last full week, or its Sunday).

    Raises:
        DataValidationError: when there are no lines at all.
    """
    if len(lines) == 0:
        raise DataValidationError("the source holds no invoice lines; check the file")
    observed_end = pd.Timestamp(lines[INVOICE_DATE].max())
    lines, overlap = drop_sheet_overlap(lines)
    reasons = drop_reasons(lines)
    counts = reasons.value_counts()
    dropped = {"dropped_sheet_overlap": overlap}
    dropped |= {field: int(counts.get(reason, 0)) for reason, field in DROP_REASONS.items()}
    lines = lines.loc[reasons == ""]
    lines = lines.assign(
        **{
            ITEM_ID: lines[STOCK_CODE].str.upper().astype("category"),
            DATE: week_start(lines[INVOICE_DATE])
            if freq == FREQ
            else lines[INVOICE_DATE].dt.normalize(),
        }
    )
    last_week = last_full_week(observed_end)
    if freq != FREQ:
        last_week = last_week + pd.Timedelta(days=6)
    in_partial_week = lines[DATE] > last_week
    dropped["dropped_partial_last_week"] = int(in_partial_week.sum())
    lines = lines.loc[~in_partial_week]
    lines = lines.assign(**{ITEM_ID: lines[ITEM_ID].cat.remove_unused_categories()})
    return lines, dropped, last_week


def week_start(timestamps: pd.Series) -> pd.Series:
    """The Monday (at midnight) of each timestamp's week."""
    days = timestamps.dt.normalize()
    return days - pd.to_timedelta(days.dt.weekday, unit="D")


def last_full_week(observed_end: pd.Timestamp) -> pd.Timestamp:
    """Start of the last complete week, given the last moment the data cover.

    The week of ``observed_end`` counts as complete only if the data reach its Sunday.
    """
    start = week_start(pd.Series([observed_end])).iloc[0]
    if pd.Timestamp(observed_end).normalize() >= start + pd.Timedelta(days=6):
        return pd.Timestamp(start)
    return pd.Timestamp(start - pd.Timedelta(days=7))


def flag_bulk_orders(lines: pd.DataFrame) -> pd.DataFrame:
    """Invoice lines that look like bulk orders (kept in the data, listed here).

    A line is flagged when ``Quantity >= 100`` and ``Quantity > 10 x`` the median Quantity of
    that item's lines.

    Args:
        lines: kept invoice lines with an ``item_id`` column.

    Returns:
        ``invoice, item_id, date, quantity, median_line_quantity, reason``, by date.
    """
    median = lines.groupby(ITEM_ID, observed=True)[QUANTITY].transform("median")
    flagged = (lines[QUANTITY] >= BULK_MIN_UNITS) & (lines[QUANTITY] > BULK_FACTOR * median)
    rows = lines.loc[flagged]
    return (
        pd.DataFrame(
            {
                "invoice": rows[INVOICE].astype(str),
                "item_id": rows[ITEM_ID].astype(str),
                "date": rows[INVOICE_DATE],
                "quantity": rows[QUANTITY].astype("int64"),
                "median_line_quantity": median[flagged],
                "reason": f"bulk order: >= {BULK_MIN_UNITS} units and > {BULK_FACTOR:g}x "
                "the item's median line quantity",
            }
        )
        .sort_values(["date", "invoice", "item_id"], kind="stable")
        .reset_index(drop=True)
    )


def weekly_sales(lines: pd.DataFrame) -> pd.DataFrame:
    """Item-week rows for the weeks with sales: units, average paid price, orders, customers."""
    frame = lines.assign(revenue=lines[QUANTITY] * lines[PRICE])
    weekly = (
        frame.groupby([ITEM_ID, DATE], observed=True, sort=True)
        .agg(
            sales=(QUANTITY, "sum"),
            revenue=("revenue", "sum"),
            orders=(INVOICE, "nunique"),
            customers=(CUSTOMER, "nunique"),
        )
        .reset_index()
    )
    weekly["price"] = weekly["revenue"] / weekly[SALES]
    weekly["discount"] = discount_depth(weekly)
    return weekly.drop(columns="revenue")


def discount_depth(weekly: pd.DataFrame) -> pd.Series:
    """``1 - price / typical``, clipped to [0, 1); ``typical`` from the 13 previous sale weeks.

    Args:
        weekly: sale weeks only, sorted by ``item_id`` and ``date``, with a ``price`` column.

    Returns:
        The discount depth, aligned with ``weekly``; 0 where the item has no earlier sale week.
    """
    previous = weekly.groupby(ITEM_ID, observed=True, sort=False)["price"].shift(1)
    typical = (
        previous.groupby(weekly[ITEM_ID], observed=True, sort=False)
        .rolling(TYPICAL_PRICE_WEEKS, min_periods=1)
        .median()
        .droplevel(0)
        .reindex(weekly.index)
    )
    depth = 1.0 - weekly["price"] / typical
    return depth.clip(lower=0.0).fillna(0.0)


def complete_weeks(
    weekly: pd.DataFrame, last_week: pd.Timestamp, period_days: int = 7
) -> pd.DataFrame:
    """Give each item every week (or day: ``period_days=1``) from its first sale to ``last_week``.

    No-sale weeks get 0 ``sales``, ``orders`` and ``customers`` and carry ``price`` and
    ``discount`` forward from the item's last sale week.
    """
    firsts = weekly.groupby(ITEM_ID, observed=True, sort=True)[DATE].min()
    lengths = ((last_week - firsts).dt.days // period_days + 1).to_numpy()
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    offsets = np.arange(int(lengths.sum())) - starts
    grid = pd.DataFrame(
        {
            ITEM_ID: np.repeat(firsts.index.astype(str).to_numpy(), lengths),
            DATE: np.repeat(firsts.to_numpy(), lengths)
            + pd.to_timedelta(offsets * period_days, unit="D"),
        }
    )
    sold = weekly.assign(**{ITEM_ID: weekly[ITEM_ID].astype(str)})
    full = grid.merge(sold, on=[ITEM_ID, DATE], how="left", validate="one_to_one")
    for column in (SALES, *COUNT_COLUMNS):
        full[column] = full[column].fillna(0).astype(float)
    full[list(PRICE_COLUMNS)] = full.groupby(ITEM_ID, sort=False)[list(PRICE_COLUMNS)].ffill()
    return full[[ITEM_ID, DATE, SALES, *PRICE_COLUMNS, *COUNT_COLUMNS]]


def items_table(lines: pd.DataFrame) -> pd.DataFrame:
    """One row per item: title (most frequent Description), text, first/last sale week, ...

    Ties between equally frequent descriptions go to the alphabetically first.
    """
    counts = lines.groupby([ITEM_ID, DESCRIPTION], observed=True).size().rename("n").reset_index()
    titles = (
        counts.sort_values([ITEM_ID, "n", DESCRIPTION], ascending=[True, False, True])
        .drop_duplicates(ITEM_ID)
        .set_index(ITEM_ID)[DESCRIPTION]
        .astype(str)
    )
    weeks = lines.groupby(ITEM_ID, observed=True)[DATE].agg(["min", "max"])
    items = pd.DataFrame(
        {
            "title": titles,
            "first_sale": weeks["min"],
            "last_sale": weeks["max"],
            "n_descriptions": counts.groupby(ITEM_ID, observed=True).size(),
        }
    )
    items[LIST_PRICE] = launch_list_price(lines)
    items.index = items.index.astype(str)
    items[TEXT] = [item_text(title) for title in items["title"]]
    items = items.rename_axis(ITEM_ID).reset_index()
    columns = [ITEM_ID, "title", TEXT, "first_sale", "last_sale", "n_descriptions", LIST_PRICE]
    return items[columns]


def launch_list_price(lines: pd.DataFrame) -> pd.Series:
    """Each item's most common unit price on its first sale week's lines (ties: the higher).

    Counted by invoice line, not by unit, so one bulk order at a discount does not set it.
    """
    first = lines.groupby(ITEM_ID, observed=True)[DATE].transform("min")
    launch = lines.loc[lines[DATE] == first, [ITEM_ID, PRICE]]
    counts = launch.groupby([ITEM_ID, PRICE], observed=True).size().rename("n").reset_index()
    modal = counts.sort_values([ITEM_ID, "n", PRICE], ascending=[True, False, False])
    return modal.drop_duplicates(ITEM_ID).set_index(ITEM_ID)[PRICE].astype(float)


def prepare_online_retail(
    source: str | Path,
    *,
    cache_dir: str | Path | None = None,
    sha256: str | None = None,
    freq: str = FREQ,
) -> tuple[Panel, QualityReport]:
    """Turn Online Retail II invoice lines into a weekly (or daily) :class:`Panel`.

    See the module docs for the protocol.

    Args:
        source: path or http(s) URL of the ``.xlsx``, or a CSV/Parquet with the same columns
            (and optionally ``sheet``).
        cache_dir: download folder for a URL (see :func:`~salesformer.data.sources.resolve_source`).
        sha256: expected sha256 of the file, checked when given.
        freq: ``"W-MON"`` (weeks, the default) or ``"D"`` (days, same lines and span).

    Returns:
        The panel (covariates ``price``, ``discount`` known-future; ``orders``, ``customers``
        past-only; an items table with text) and the quality report.

    Raises:
        DataValidationError: a missing or unreadable file, missing columns, or no product
            lines left after cleaning.
    """
    if freq not in FREQUENCIES:
        raise ConfigError(
            f"Online Retail II is prepared by week (W-MON) or by day (D); got freq {freq!r}"
        )
    lines = read_invoice_lines(resolve_source(source, cache_dir=cache_dir, sha256=sha256))
    input_rows = len(lines)
    lines, dropped, last_week = clean_invoice_lines(lines, freq)
    if len(lines) == 0:
        raise DataValidationError(
            f"no product invoice lines left in {str(source)!r} after cleaning "
            f"({input_rows} read); is this the Online Retail II file?"
        )
    items = items_table(lines)
    panel = validate_panel(
        complete_weeks(weekly_sales(lines), last_week, 7 if freq == FREQ else 1),
        items,
        freq=freq,
        known_future=KNOWN_FUTURE,
        past_only=PAST_ONLY,
    )
    outliers = flag_bulk_orders(lines)
    report = QualityReport(
        input_rows=input_rows,
        **dropped,
        rows_kept=len(lines),
        items=len(panel.item_ids),
        weeks=len(panel.dates),
        first_week=str(panel.first_date.date()),
        last_week=str(panel.last_date.date()),
        items_with_text=int((items[TEXT].str.len() > 0).sum()),
        items_first_sold_2011=int((items["first_sale"].dt.year == NEW_ITEM_YEAR).sum()),
        bulk_order_lines=len(outliers),
        outliers=outliers,
        freq=freq,
    )
    return panel, report
