"""Panel frequencies: inferring one from dates, season lengths, and the checks on dates.

Part of the data contract (:mod:`salesformer.data.contract` re-exports :func:`infer_freq` and
:func:`season_length`).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from salesformer.errors import DataValidationError

ITEM_ID = "item_id"
DATE = "date"
_DAY_NS = 86_400 * 10**9
_WEEKDAYS = ("MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN")


def _examples(values: Iterable[object], limit: int = 5) -> str:
    items = list(values)
    shown = ", ".join(repr(v) for v in items[:limit])
    more = f", ... ({len(items)} in all)" if len(items) > limit else ""
    return f"[{shown}{more}]"


def season_length(freq: str) -> int:
    """Periods in one seasonal cycle for a panel frequency (52 weekly, 7 daily, 12 monthly)."""
    if freq.startswith("W"):
        return 52
    if freq == "D":
        return 7
    if freq in ("MS", "ME", "M"):
        return 12
    raise DataValidationError(f"unknown frequency {freq!r}; use one of 'W-MON'..'W-SUN', 'D', 'MS'")


def infer_freq(dates: pd.Series | pd.DatetimeIndex) -> str:
    """Infer the panel frequency from its distinct dates.

    Dates on one weekday are weekly (``W-MON`` ... ``W-SUN``), dates on month starts monthly
    (``MS``); other dates on whole days are daily (``D``), unless most of them fall on one
    weekday, which is read as weekly data with stray dates.

    Raises:
        DataValidationError: when the dates mix frequencies or anchors.
    """
    unique = pd.DatetimeIndex(pd.unique(pd.DatetimeIndex(dates))).sort_values()
    if len(unique) == 0:
        raise DataValidationError("cannot infer a frequency from no dates; the panel is empty")
    if len(unique) == 1:
        return f"W-{_WEEKDAYS[unique[0].weekday()]}"
    if bool((unique.day == 1).all()):
        months = unique.year * 12 + unique.month
        if len(unique) > 2 or (np.diff(months) == 1).all():
            return "MS"
    weekdays = pd.Series(unique.weekday).value_counts()
    gaps = np.diff(unique.asi8) // (86_400 * 10**9)
    if len(weekdays) == 1:
        return f"W-{_WEEKDAYS[int(weekdays.index[0])]}"
    mostly_one_weekday = weekdays.iloc[0] >= 0.6 * len(unique)
    if int(np.min(gaps)) == 1 and not mostly_one_weekday:
        return "D"
    shown = ", ".join(f"{_WEEKDAYS[int(d)]}: {n}" for d, n in weekdays.items())
    raise DataValidationError(
        f"dates mix frequencies: weekly-looking dates fall on several weekdays ({shown}); "
        "put every date on one weekday, the week start ('salesformer prepare csv --freq W-MON "
        "--aggregate'), or pass freq='D' (--freq D) for daily data"
    )


def refuse_weekly_as_daily(item: np.ndarray, dates: np.ndarray) -> None:
    """Weekly rows on several weekdays look daily; reading them so would zero-fill 6 days in 7.

    Args:
        item: the rows' item codes, sorted (rows in item, then date order).
        dates: the rows' dates (``datetime64[ns]``, whole days), in the same order.

    Raises:
        DataValidationError: when every item's dates are whole weeks apart.
    """
    stamps = np.asarray(dates, dtype="datetime64[ns]").view(np.int64)
    gaps = np.diff(stamps)[item[1:] == item[:-1]] // _DAY_NS
    if len(gaps) == 0 or (gaps % 7 != 0).any():
        return
    weekdays = pd.Series(pd.DatetimeIndex(dates).weekday).value_counts()
    shown = ", ".join(f"{_WEEKDAYS[int(d)]}: {n}" for d, n in weekdays.items())
    raise DataValidationError(
        f"the dates are weekly (each item's dates are whole weeks apart) but fall on several "
        f"weekdays ({shown} rows), so the panel would be read as daily with six empty days a "
        "week; put each week on one start day: 'salesformer prepare csv --freq W-MON "
        "--aggregate' (library: freq='W-MON' after summing per week), or pass --freq D if the "
        "data really is daily"
    )


def check_on_grid(dates: pd.DatetimeIndex, freq: str) -> None:
    offset = pd.tseries.frequencies.to_offset(freq)
    off_grid = [d for d in pd.unique(dates) if not offset.is_on_offset(pd.Timestamp(d))]
    if off_grid:
        raise DataValidationError(
            f"{len(off_grid)} dates are not on the {freq!r} grid, e.g. "
            f"{_examples([str(pd.Timestamp(d).date()) for d in off_grid])}; "
            "aggregate them to that frequency first, or give the right frequency"
        )
