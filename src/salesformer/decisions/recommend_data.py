"""Customer purchase lines: the input of the recommenders, in the library's names.

A **purchase frame** has one row per invoice line of an identified customer:
``customer_id`` (str), ``item_id`` (str), ``invoice`` (str), ``timestamp`` (datetime),
``quantity`` (> 0) and ``price`` (> 0). Items come with an items table (``item_id``, ``title``,
``text``) whose text the encoder reads.

Online Retail II lines go through the benchmark protocol of
:mod:`salesformer.data.online_retail` (cancellations, non-products, the sheet overlap and the
partial last week dropped); lines without a Customer ID are then left out, since nothing can be
recommended to an unknown customer.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from salesformer.data.contract import ITEM_ID, TEXT
from salesformer.errors import DataValidationError

CUSTOMER_ID = "customer_id"
INVOICE = "invoice"
TIMESTAMP = "timestamp"
QUANTITY = "quantity"
PRICE = "price"
PURCHASE_COLUMNS = (CUSTOMER_ID, ITEM_ID, INVOICE, TIMESTAMP, QUANTITY, PRICE)


@dataclass(frozen=True)
class CustomerPurchases:
    """Purchase lines of identified customers, the items table, and what was left out.

    Attributes:
        purchases: the purchase frame (see the module docstring), sorted by time.
        items: ``item_id``, ``title``, ``text``, one row per item of the cleaned lines.
        lines_without_customer: cleaned product lines dropped for having no Customer ID.
    """

    purchases: pd.DataFrame
    items: pd.DataFrame
    lines_without_customer: int


def customer_id_text(values: pd.Series) -> pd.Series:
    """Customer IDs as strings: ``13085.0`` (a float column) becomes ``"13085"``."""
    numbers = pd.to_numeric(values, errors="coerce")
    whole = numbers.notna() & (numbers == numbers.round())
    text = values.astype("string").str.strip()
    text = text.where(~whole, numbers.round().astype("Int64").astype("string"))
    return text.astype(object)


def purchases_from_invoice_lines(lines: pd.DataFrame) -> CustomerPurchases:
    """Cleaned Online Retail II lines (from ``clean_invoice_lines``) to purchases and items.

    Raises:
        DataValidationError: when no line has a Customer ID.
    """
    from salesformer.data import online_retail as retail

    customers = customer_id_text(lines[retail.CUSTOMER])
    known = customers.notna() & (customers.fillna("") != "")
    if not known.any():
        raise DataValidationError(
            f"none of the {len(lines)} product lines has a '{retail.CUSTOMER}'; "
            "recommendations need customer-level purchase lines"
        )
    kept = lines.loc[known]
    purchases = pd.DataFrame(
        {
            CUSTOMER_ID: customers[known].astype(str).to_numpy(),
            ITEM_ID: kept[ITEM_ID].astype(str).to_numpy(),
            INVOICE: kept[retail.INVOICE].astype(str).to_numpy(),
            TIMESTAMP: kept[retail.INVOICE_DATE].to_numpy(),
            QUANTITY: kept[retail.QUANTITY].astype(float).to_numpy(),
            PRICE: kept[retail.PRICE].astype(float).to_numpy(),
        }
    )
    purchases = purchases.sort_values([TIMESTAMP, INVOICE], kind="stable").reset_index(drop=True)
    items = retail.items_table(lines)[[ITEM_ID, "title", TEXT]]
    return CustomerPurchases(purchases, items, int((~known).sum()))


def read_customer_purchases(path: str | Path) -> CustomerPurchases:
    """Read Online Retail II invoice lines (``.xlsx``, ``.csv`` or ``.parquet``) as purchases.

    Raises:
        FileNotFoundError: when the file does not exist.
        DataValidationError: an unreadable file, missing columns, or no usable line.
    """
    from salesformer.data.online_retail import clean_invoice_lines, read_invoice_lines

    source = Path(path)
    if not source.is_file():
        raise FileNotFoundError(f"no such invoice-lines file {str(source)!r}")
    lines, _, _ = clean_invoice_lines(read_invoice_lines(source))
    if len(lines) == 0:
        raise DataValidationError(
            f"no product invoice lines left in {str(source)!r} after cleaning; "
            "is this the Online Retail II file?"
        )
    return purchases_from_invoice_lines(lines)


def validate_purchases(purchases: pd.DataFrame) -> pd.DataFrame:
    """Check a purchase frame's columns and types; return it with the library's dtypes.

    ID columns become strings (a float column's ``13085.0`` becomes ``"13085"``); times with
    a time zone keep their local wall-clock time and lose the zone.

    Raises:
        DataValidationError: a missing column or ID, an unparseable time or a non-positive
            quantity.
    """
    missing = [c for c in PURCHASE_COLUMNS if c not in purchases.columns]
    if missing:
        raise DataValidationError(
            f"purchase lines need the columns {list(PURCHASE_COLUMNS)}; {missing} missing; "
            f"got {list(purchases.columns)}"
        )
    out = purchases[list(PURCHASE_COLUMNS)].copy()
    for column in (CUSTOMER_ID, ITEM_ID, INVOICE):
        if out[column].isna().any():
            raise DataValidationError(
                f"column '{column}': {int(out[column].isna().sum())} rows have no value; "
                "drop them first"
            )
        # A float ID column (13085.0) reads as "13085", as read_customer_purchases gives it.
        whole_ids = pd.api.types.is_float_dtype(out[column])
        out[column] = (customer_id_text(out[column]) if whole_ids else out[column]).astype(str)
    out[TIMESTAMP] = pd.to_datetime(out[TIMESTAMP], errors="coerce")
    if out[TIMESTAMP].isna().any():
        raise DataValidationError(
            f"column '{TIMESTAMP}': {int(out[TIMESTAMP].isna().sum())} rows have no valid "
            "time; use times such as 2011-09-05 08:26"
        )
    if out[TIMESTAMP].dt.tz is not None:  # local wall-clock times, as cutoffs are given
        out[TIMESTAMP] = out[TIMESTAMP].dt.tz_localize(None)
    out[QUANTITY] = pd.to_numeric(out[QUANTITY], errors="coerce").astype(float)
    if not (out[QUANTITY] > 0).all():
        raise DataValidationError(
            f"column '{QUANTITY}' must be > 0 on every line; got "
            f"{int((~(out[QUANTITY] > 0)).sum())} other values; drop returns and blanks first"
        )
    out[PRICE] = pd.to_numeric(out[PRICE], errors="coerce").astype(float)
    return out.sort_values([TIMESTAMP, INVOICE], kind="stable").reset_index(drop=True)


def pseudonymised(data: CustomerPurchases, key: bytes) -> CustomerPurchases:
    """The purchases with every customer ID replaced by its keyed-hash pseudonym.

    See :mod:`salesformer.decisions.pseudonym`; apply it right after reading, so that no
    later step (and no output) sees a clear ID.
    """
    from salesformer.decisions.pseudonym import pseudonymise

    purchases = data.purchases.copy()
    clear = purchases[CUSTOMER_ID].astype(str)
    mapping = dict(zip(clear.unique(), pseudonymise(clear.unique(), key), strict=True))
    purchases[CUSTOMER_ID] = clear.map(mapping)
    return CustomerPurchases(purchases, data.items, data.lines_without_customer)
