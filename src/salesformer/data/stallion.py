"""The Stallion beverage data (agency x SKU, monthly) to the data contract.

Stallion holds 350 monthly series of beverage volume, one per agency and SKU, with the
regular and the actual price, the discount, the weather and calendar events of each month.
The mapping, stated once (``docs/data.md`` lists it with the numbers it gives):

- ``item_id`` is ``"<agency>/<sku>"`` (e.g. ``"Agency_22/SKU_01"``), ``date`` the month start,
  ``sales`` the ``volume``;
- **known-future** covariates (a plan for the coming months): ``price`` (``price_actual``,
  what is charged), ``price_regular`` and ``discount`` (depth, ``1 - price / price_regular``,
  clipped to ``[0, 1)``), and every event flag (``easter_day``, ``christmas``, ...,
  ``music_fest``);
- **past-only** covariates: ``industry_volume``, ``soda_volume`` (market volumes) and
  ``avg_max_temp`` (the month's weather, unknown in advance);
- **static** attributes, in the items table: ``agency``, ``sku``, ``avg_population_2017``,
  ``avg_yearly_household_income_2017``. The text describes only what the data hold: the SKU
  code, the agency code and that it is a beverage (the codes carry no product name).

**Prices of months without sales.** The file records both prices as 0 in most months with no
volume, so a zero price would tell a model, in advance, that nothing sells. A price that is 0
or missing is replaced by the item's last positive price (its next one before its first
sale), and the discount is computed from the prices after that; ``StallionReport.prices_filled``
counts the rows changed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from salesformer.data.contract import DATE, ITEM_ID, SALES, TEXT, Panel, validate_panel
from salesformer.data.sources import quality_table, read_table, resolve_source
from salesformer.data.text import item_text
from salesformer.errors import DataValidationError

if TYPE_CHECKING:
    from rich.table import Table

FREQ = "MS"
AGENCY = "agency"
SKU = "sku"
VOLUME = "volume"
PRICE = "price"
PRICE_REGULAR = "price_regular"
DISCOUNT = "discount"
#: Raw price columns and the contract names they become.
PRICE_SOURCES = {"price_actual": PRICE, "price_regular": PRICE_REGULAR}
EVENTS = (
    "easter_day",
    "good_friday",
    "new_year",
    "christmas",
    "labor_day",
    "independence_day",
    "revolution_day_memorial",
    "regional_games",
    "fifa_u_17_world_cup",
    "football_gold_cup",
    "beer_capital",
    "music_fest",
)
KNOWN_FUTURE = (PRICE, PRICE_REGULAR, DISCOUNT, *EVENTS)
PAST_ONLY = ("industry_volume", "soda_volume", "avg_max_temp")
STATIC = ("avg_population_2017", "avg_yearly_household_income_2017")
REQUIRED_COLUMNS = (AGENCY, SKU, DATE, VOLUME, *PRICE_SOURCES, *EVENTS, *PAST_ONLY, *STATIC)


@dataclass(frozen=True)
class StallionReport:
    """What the preparation read and changed.

    Attributes:
        input_rows: rows read.
        items: agency x SKU series.
        agencies: distinct agencies.
        skus: distinct SKUs.
        months: months in the panel.
        first_month: first month start (ISO date).
        last_month: last month start (ISO date).
        zero_volume_rows: rows with volume 0.
        prices_filled: rows whose price or regular price was 0 or missing and was filled.
    """

    input_rows: int
    items: int
    agencies: int
    skus: int
    months: int
    first_month: str
    last_month: str
    zero_volume_rows: int
    prices_filled: int

    def to_dict(self) -> dict[str, Any]:
        """Every count as a JSON-serialisable dict."""
        return asdict(self)

    def as_table(self) -> Table:
        """The report as a two-column rich table, for printing."""
        return quality_table("Stallion: data quality", self.to_dict())


def read_stallion(path: Path) -> pd.DataFrame:
    """Read the raw Stallion table and check its columns.

    Raises:
        DataValidationError: when a column of the Stallion schema is missing.
    """
    raw = read_table(path, string_columns=(AGENCY, SKU))
    missing = [c for c in REQUIRED_COLUMNS if c not in raw.columns]
    if missing:
        raise DataValidationError(
            f"{str(path)!r} is not the Stallion table: column(s) {missing} missing; got "
            f"columns {list(raw.columns)}; give stallion.parquet (or its CSV export)"
        )
    return raw


def _fill_prices(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Replace zero or missing prices by the item's last (else next) positive price."""
    out = frame.copy()
    changed = np.zeros(len(out), dtype=bool)
    for column in PRICE_SOURCES.values():
        values = pd.to_numeric(out[column], errors="coerce")
        bad = ~(values > 0)
        changed |= bad.to_numpy()
        values = values.where(~bad)
        grouped = values.groupby(out[ITEM_ID], sort=False)
        out[column] = grouped.ffill().fillna(grouped.bfill())
    unpriced = out.loc[out[PRICE].isna() | out[PRICE_REGULAR].isna(), ITEM_ID].unique()
    if len(unpriced):
        raise DataValidationError(
            f"{len(unpriced)} series never have a positive price, e.g. {list(unpriced[:3])}; "
            "drop them from the file, or give their prices"
        )
    return out, int(changed.sum())


def _items_table(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per series: codes, static attributes and a text of what the data hold."""
    first = frame.groupby(ITEM_ID, sort=True)[[AGENCY, SKU, *STATIC]].first().reset_index()
    first[TEXT] = [
        item_text(f"Beverage {sku}", f"Sold through {agency}", category="Beverages")
        for agency, sku in zip(first[AGENCY], first[SKU], strict=True)
    ]
    return first[[ITEM_ID, TEXT, AGENCY, SKU, *STATIC]]


def stallion_frames(raw: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """The raw table as the contract's sales frame and items table.

    Returns:
        ``(sales, items, prices_filled)``.
    """
    frame = raw.copy()
    for column in (AGENCY, SKU):
        codes = frame[column].astype("string").str.strip().fillna("")
        if codes.eq("").any():
            raise DataValidationError(
                f"column '{column}': {int(codes.eq('').sum())} rows have no code; drop or fill them"
            )
        frame[column] = codes.astype(str)
    frame[ITEM_ID] = frame[AGENCY] + "/" + frame[SKU]
    frame[DATE] = pd.to_datetime(frame[DATE], errors="coerce")
    if frame[DATE].isna().any():
        raise DataValidationError(
            f"column 'date': {int(frame[DATE].isna().sum())} values are not dates; "
            "Stallion dates are month starts such as 2013-01-01"
        )
    frame = frame.rename(columns={VOLUME: SALES, **PRICE_SOURCES})
    frame = frame.sort_values([ITEM_ID, DATE]).reset_index(drop=True)
    frame, filled = _fill_prices(frame)
    depth = 1.0 - frame[PRICE] / frame[PRICE_REGULAR]
    frame[DISCOUNT] = depth.clip(lower=0.0, upper=0.999)
    sales = frame[[ITEM_ID, DATE, SALES, *KNOWN_FUTURE, *PAST_ONLY]]
    return sales, _items_table(frame), filled


def prepare_stallion(
    path_or_url: str | Path,
    *,
    cache_dir: str | Path | None = None,
    sha256: str | None = None,
) -> tuple[Panel, StallionReport]:
    """Read Stallion (a path or an http(s) URL) and return the monthly panel and a report.

    Args:
        path_or_url: ``stallion.parquet`` (or a CSV with the same columns), local or a URL.
        cache_dir: download folder for a URL (see :func:`resolve_source`).
        sha256: expected sha256 of the file, or None.

    Raises:
        DataValidationError: a missing file or column, or data that break the contract.
    """
    raw = read_stallion(resolve_source(path_or_url, cache_dir=cache_dir, sha256=sha256))
    sales, items, filled = stallion_frames(raw)
    panel = validate_panel(sales, items, freq=FREQ, known_future=KNOWN_FUTURE, past_only=PAST_ONLY)
    report = StallionReport(
        input_rows=len(raw),
        items=len(panel.item_ids),
        agencies=int(items[AGENCY].nunique()),
        skus=int(items[SKU].nunique()),
        months=len(panel.dates),
        first_month=str(panel.first_date.date()),
        last_month=str(panel.last_date.date()),
        zero_volume_rows=int((sales[SALES] == 0).sum()),
        prices_filled=filled,
    )
    return panel, report
