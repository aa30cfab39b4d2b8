"""Holiday and event calendars as known-future covariates of a panel.

A calendar has two kinds of sources:

- **holidays** of countries (the `holidays <https://pypi.org/project/holidays/>`_ package),
  given as ISO codes, optionally with a subdivision: ``GB``, ``GB-ENG``, ``US``, ``CN``;
- **events** from an events file (see :func:`read_events`): shop-specific dates (a sale, a
  closure, a festival), one-off or every year, for every item, one category or one item.
  ``cn-shopping`` names the file shipped with salesformer (Chinese shopping festivals).

Each source ``s`` gives three columns, all numbers of days:

- ``s``: the days of the source that fall in the period (0 or 1 for daily data; 0..7 weekly);
- ``s_before``: the same count for the *next* period (so the period before a holiday shows it:
  shopping ahead of Christmas, pre-sales before 11.11);
- ``s_after``: the same count for the *previous* period (the period after it).

Holiday columns are named ``holiday_<code>`` (``holiday_gb``, ``holiday_gb_eng``), event
columns ``event_<name>`` (``event_singles_day``). The columns are known-future: they are
computed for any date, so ``predict`` fills them for the horizon from the calendar the panel
keeps (:attr:`~salesformer.data.contract.Panel.calendar`) rather than carrying the last value
forward.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from salesformer.data.contract import DATE, ITEM_ID, Panel
from salesformer.errors import ConfigError, DataValidationError

HOLIDAY_PREFIX = "holiday_"
EVENT_PREFIX = "event_"
LEAD_SUFFIX = "_before"
LAG_SUFFIX = "_after"
#: Events files shipped with salesformer, by the name ``--events`` accepts.
BUILTIN_EVENTS = {"cn-shopping": "cn-shopping.csv"}
EVENT_COLUMNS = ("date", "name", "days", "scope")
MAX_EVENT_DAYS = 366
_ONE_OFF = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_YEARLY = re.compile(r"^(\d{2})-(\d{2})$")
_FORMAT_HINT = (
    "an events file has columns date (YYYY-MM-DD once, or MM-DD every year), name, and "
    "optionally days (length, default 1) and scope (empty: every item; category:NAME; item:ID)"
)


def is_calendar_column(name: str) -> bool:
    """Whether a covariate (or a feature made from one) comes from a calendar."""
    return name.startswith((HOLIDAY_PREFIX, EVENT_PREFIX))


def calendar_columns(spec: dict[str, Any]) -> list[str]:
    """The covariate columns a calendar spec (see :func:`calendar_spec`) adds, in order."""
    sources = [_holiday_column(code) for code in spec.get("holidays", [])]
    names = dict.fromkeys(str(row["name"]) for row in spec.get("events", []))
    sources += [EVENT_PREFIX + _slug(name) for name in names]
    return [c for s in sources for c in (s, s + LEAD_SUFFIX, s + LAG_SUFFIX)]


def parse_countries(value: str | Sequence[str] | None) -> list[str]:
    """Holiday country codes from ``"GB,US"`` or a list, checked against the holidays package.

    Raises:
        ConfigError: an unknown country or subdivision, naming what was given.
    """
    if value is None:
        return []
    parts = value.split(",") if isinstance(value, str) else list(value)
    codes = [str(p).strip().upper() for p in parts if str(p).strip()]
    import holidays

    supported = holidays.list_supported_countries()
    for code in codes:
        country, _, subdiv = code.partition("-")
        if country not in supported:
            raise ConfigError(
                f"unknown holiday country {country!r} (in --holidays {value!r}); use ISO 3166 "
                "codes such as GB, US, CN, DE (a subdivision after a dash: GB-ENG, US-CA)"
            )
        if subdiv and subdiv not in supported[country]:
            raise ConfigError(
                f"unknown subdivision {subdiv!r} of {country} (in --holidays {value!r}); "
                f"choose one of {', '.join(supported[country][:12])}"
                f"{', ...' if len(supported[country]) > 12 else ''}, or give {country} alone"
            )
    duplicated = sorted({c for c in codes if codes.count(c) > 1})
    if duplicated:
        raise ConfigError(f"--holidays names {duplicated} twice; give each country once")
    return codes


def events_path(name_or_path: str | Path) -> Path:
    """The file of a built-in events name (``cn-shopping``) or a path as given.

    Raises:
        DataValidationError: a name that is neither a file nor a built-in events name.
    """
    text = str(name_or_path)
    if text in BUILTIN_EVENTS:
        return Path(
            str(resources.files("salesformer.data").joinpath("events", BUILTIN_EVENTS[text]))
        )
    path = Path(text).expanduser()
    if not path.is_file():
        raise DataValidationError(
            f"events file {text!r} does not exist; give the path of a CSV events file or a "
            f"built-in name ({', '.join(BUILTIN_EVENTS)})"
        )
    return path


def read_events(name_or_path: str | Path) -> pd.DataFrame:
    """Read and check an events file (CSV or Parquet) or a built-in events name.

    Columns: ``date`` (``YYYY-MM-DD``: that day once; ``MM-DD``: that day every year),
    ``name`` (the event; rows with one name make one covariate), ``days`` (optional: how many
    days from ``date`` the event lasts, default 1) and ``scope`` (optional: empty for every
    item, ``category:NAME`` for the items of a category, ``item:ID`` for one item).

    Returns:
        The events with ``date`` as text, ``name``, ``days`` (int) and ``scope`` ("" for all).

    Raises:
        DataValidationError: a missing or unknown column, an unparseable date, a bad ``days``
            or ``scope`` value, or an empty file.
    """
    from salesformer.data.sources import read_table

    path = events_path(name_or_path)
    frame = read_table(path, string_columns=EVENT_COLUMNS)
    return check_events(frame, f"events file {str(name_or_path)!r}")


def check_events(frame: pd.DataFrame, where: str = "events") -> pd.DataFrame:
    """Check an events table (see :func:`read_events`) and return it clean.

    Raises:
        DataValidationError: as :func:`read_events`.
    """
    frame = frame.copy()
    frame.columns = [str(c).strip().lower() for c in frame.columns]
    missing = [c for c in ("date", "name") if c not in frame.columns]
    unknown = [c for c in frame.columns if c not in EVENT_COLUMNS]
    if missing or unknown:
        raise DataValidationError(
            f"{where}: columns {missing} missing and {unknown} unknown; got columns "
            f"{list(frame.columns)}; {_FORMAT_HINT}"
        )
    if len(frame) == 0:
        raise DataValidationError(f"{where} holds no events; {_FORMAT_HINT}")
    out = pd.DataFrame(
        {
            "date": frame["date"].fillna("").astype(str).str.strip(),
            "name": frame["name"].fillna("").astype(str).str.strip(),
            "days": frame["days"].astype("string") if "days" in frame.columns else "1",
            "scope": frame["scope"].fillna("").astype(str).str.strip() if "scope" in frame else "",
        }
    )
    _check_names(out["name"], where)
    _check_dates(out["date"], where)
    out["days"] = _checked_days(out["days"], where)
    _check_scope_syntax(out["scope"], where)
    return out.reset_index(drop=True)


def _check_names(names: pd.Series, where: str) -> None:
    empty = names[(names == "") | (names.map(_slug) == "")]
    if len(empty):
        raise DataValidationError(
            f"{where}: {len(empty)} rows have no usable name (row {int(empty.index[0]) + 2}); "
            "give every event a name with letters or digits, e.g. singles_day"
        )
    slugs = names.map(_slug)
    clash = slugs.groupby(slugs).agg(lambda s: sorted(set(names[s.index])))
    clash = clash[clash.map(len) > 1]
    if len(clash):
        raise DataValidationError(
            f"{where}: names {clash.iloc[0]} make the same column "
            f"{EVENT_PREFIX + str(clash.index[0])!r}; use one spelling per event"
        )


def _check_dates(dates: pd.Series, where: str) -> None:
    bad = [d for d in dates if not _date_ok(d)]
    if bad:
        raise DataValidationError(
            f"{where}: {len(bad)} dates cannot be read, e.g. {bad[:3]}; write YYYY-MM-DD for a "
            "one-off event (2024-11-29) or MM-DD for every year (11-11)"
        )


def _date_ok(value: str) -> bool:
    if _ONE_OFF.match(value):
        return not pd.isna(pd.to_datetime(value, format="%Y-%m-%d", errors="coerce"))
    match = _YEARLY.match(value)
    if match:  # checked on a leap year so that 02-29 is allowed
        return not pd.isna(pd.to_datetime(f"2000-{value}", format="%Y-%m-%d", errors="coerce"))
    return False


def _checked_days(days: pd.Series, where: str) -> pd.Series:
    text = days.fillna("1").astype(str).str.strip().replace("", "1")
    values = pd.to_numeric(text, errors="coerce")
    bad = text[values.isna() | (values % 1 != 0) | (values < 1) | (values > MAX_EVENT_DAYS)]
    if len(bad):
        raise DataValidationError(
            f"{where}: column 'days' must hold whole numbers from 1 to {MAX_EVENT_DAYS}; got "
            f"{list(bad.unique()[:3])}; give the event's length in days (or leave it empty for 1)"
        )
    return values.astype(int)


def _check_scope_syntax(scope: pd.Series, where: str) -> None:
    bad = scope[(scope != "") & ~scope.str.match(r"^(category|item):.+$")]
    if len(bad):
        raise DataValidationError(
            f"{where}: scope {bad.iloc[0]!r} is not understood; leave it empty for every item, "
            "or write category:NAME or item:ID"
        )


def check_scopes(events: pd.DataFrame, panel: Panel, where: str = "events file") -> None:
    """Refuse scopes that name items or categories the panel does not have.

    Raises:
        DataValidationError: naming the unknown scope and what the panel holds.
    """
    kinds = events["scope"].str.partition(":")
    items = set(map(str, panel.item_ids))
    for scope, kind, value in zip(events["scope"], kinds[0], kinds[2], strict=True):
        if kind == "item" and value not in items:
            shown = sorted(items)[:5]
            raise DataValidationError(
                f"{where}: scope {scope!r} names an item the panel does not have (items such "
                f"as {shown}); fix the item id or drop the row"
            )
        if kind == "category":
            categories = _categories(panel)
            if categories is None:
                raise DataValidationError(
                    f"{where}: scope {scope!r} needs a 'category' column in the items table, "
                    "and this panel has none; scope the event by item:ID, or add categories"
                )
            if value not in set(categories):
                raise DataValidationError(
                    f"{where}: scope {scope!r} names an unknown category; the panel's "
                    f"categories are {sorted(set(categories))[:10]}"
                )


def _categories(panel: Panel) -> pd.Series | None:
    """Each item's category (indexed by item id), or None without a category column."""
    items = panel.items
    if items is None or "category" not in items.columns:
        return None
    return items.set_index(ITEM_ID)["category"].astype(str)


def calendar_spec(
    countries: Sequence[str] = (), events: pd.DataFrame | None = None
) -> dict[str, Any]:
    """The JSON-able description of a calendar that a panel keeps and ``predict`` re-reads."""
    records = [] if events is None else events.to_dict(orient="records")
    rows = [{k: (int(v) if k == "days" else str(v)) for k, v in r.items()} for r in records]
    return {"holidays": list(countries), "events": rows}


def add_calendar(
    panel: Panel,
    holidays: str | Sequence[str] | None = None,
    events: str | Path | pd.DataFrame | None = None,
) -> Panel:
    """The panel with holiday and event covariates added as known-future columns.

    Args:
        panel: a validated panel (daily, weekly or monthly).
        holidays: country codes, ``"GB,US,CN"`` or a list (see :func:`parse_countries`).
        events: an events file, a built-in name (``"cn-shopping"``) or a frame as
            :func:`read_events` returns.

    Returns:
        A panel whose ``known_future`` ends with the calendar columns and whose ``calendar``
        records the sources, so forecasts fill the columns for any future date.

    Raises:
        ConfigError: an unknown country.
        DataValidationError: a bad events file, an unknown scope, or a calendar column that
            the panel already has.
    """
    countries = parse_countries(holidays)
    if isinstance(events, pd.DataFrame):
        table: pd.DataFrame | None = check_events(events)
    else:
        table = None if events is None else read_events(events)
    if not countries and table is None:
        return panel
    if table is not None:
        check_scopes(table, panel)
    added = calendar_spec(countries, table)
    new_columns = calendar_columns(added)
    taken = [c for c in new_columns if c in panel.sales.columns]
    if taken:
        raise DataValidationError(
            f"the panel already has columns {taken}; a calendar would add them again: give "
            "each country and event name once"
        )
    previous = panel.calendar or {"holidays": [], "events": []}
    spec = {
        "holidays": [*previous["holidays"], *added["holidays"]],
        "events": [*previous["events"], *added["events"]],
    }
    values = calendar_covariates(spec, panel.freq, panel.sales[[ITEM_ID, DATE]], panel)
    sales = pd.concat([panel.sales, values[new_columns]], axis=1)
    return dataclasses.replace(
        panel,
        sales=sales,
        known_future=(*panel.known_future, *new_columns),
        calendar=spec,
    )


def calendar_covariates(
    spec: dict[str, Any], freq: str, rows: pd.DataFrame, panel: Panel
) -> pd.DataFrame:
    """The calendar columns for ``rows`` (``item_id``, ``date`` on the ``freq`` grid).

    ``panel`` gives the items' categories for category-scoped events.
    """
    dates = pd.DatetimeIndex(rows[DATE])
    grid = _period_grid(dates, freq)
    position = grid.get_indexer(dates)
    out = pd.DataFrame(index=rows.index)
    for code in spec.get("holidays", []):
        counts = _counts(grid, _holiday_days(code, grid))
        _put(out, _holiday_column(code), counts, position)
    events = pd.DataFrame(spec.get("events", []), columns=list(EVENT_COLUMNS))
    item_ids = rows[ITEM_ID].astype(str).to_numpy()
    categories = _categories(panel) if len(events) else None
    for name, group in events.groupby("name", sort=False):
        column = EVENT_PREFIX + _slug(str(name))
        total = np.zeros((3, len(rows)))
        for scope, scoped in group.groupby("scope", sort=False):
            counts = _counts(grid, _event_days(scoped, grid))
            applies = _applies(str(scope), item_ids, categories)
            total += np.stack([_shifted(counts, position, k) for k in (0, 1, -1)]) * applies
        for values, suffix in zip(total, ("", LEAD_SUFFIX, LAG_SUFFIX), strict=True):
            out[column + suffix] = values
    return out


def _put(out: pd.DataFrame, column: str, counts: np.ndarray, position: np.ndarray) -> None:
    out[column] = _shifted(counts, position, 0)
    out[column + LEAD_SUFFIX] = _shifted(counts, position, 1)
    out[column + LAG_SUFFIX] = _shifted(counts, position, -1)


def _shifted(counts: np.ndarray, position: np.ndarray, shift: int) -> np.ndarray:
    return counts[position + shift].astype(float)


def _applies(scope: str, item_ids: np.ndarray, categories: pd.Series | None) -> np.ndarray:
    kind, _, value = scope.partition(":")
    if kind == "item":
        return (item_ids == value).astype(float)
    if kind == "category":
        if categories is None:
            return np.zeros(len(item_ids))
        return (categories.reindex(item_ids).to_numpy() == value).astype(float)
    return np.ones(len(item_ids))


def _period_grid(dates: pd.DatetimeIndex, freq: str) -> pd.DatetimeIndex:
    """Period starts from one period before the first date to two after the last."""
    offset = pd.tseries.frequencies.to_offset(freq)
    first, last = dates.min(), dates.max()
    return pd.date_range(first - offset, last + 2 * offset, freq=freq)


def _counts(grid: pd.DatetimeIndex, days: pd.DatetimeIndex) -> np.ndarray:
    """Days of ``days`` (distinct) in each period of ``grid`` (the last grid date is an end)."""
    days = pd.DatetimeIndex(days.unique())
    days = days[(days >= grid[0]) & (days < grid[-1])]
    period = np.searchsorted(grid.asi8, days.asi8, side="right") - 1
    return np.bincount(period, minlength=len(grid)).astype(float)


def _years(grid: pd.DatetimeIndex) -> list[int]:
    return list(range(grid[0].year - 1, grid[-1].year + 1))


def _holiday_days(code: str, grid: pd.DatetimeIndex) -> pd.DatetimeIndex:
    import holidays

    country, _, subdiv = code.partition("-")
    calendar = holidays.country_holidays(country, subdiv=subdiv or None, years=_years(grid))
    return pd.DatetimeIndex(sorted(pd.Timestamp(day) for day in calendar))


def _event_days(events: pd.DataFrame, grid: pd.DatetimeIndex) -> pd.DatetimeIndex:
    starts: list[pd.Timestamp] = []
    lengths: list[int] = []
    for date, days in zip(events["date"], events["days"], strict=True):
        texts = [date] if _ONE_OFF.match(date) else [f"{y}-{date}" for y in _years(grid)]
        for text in texts:
            start = pd.to_datetime(text, format="%Y-%m-%d", errors="coerce")
            if pd.isna(start):  # 02-29 in a year without it
                continue
            starts.append(start)
            lengths.append(int(days))
    if not starts:
        return pd.DatetimeIndex([])
    offsets = np.concatenate([np.arange(n) for n in lengths])
    first = np.repeat(pd.DatetimeIndex(starts).to_numpy(), lengths)
    return pd.DatetimeIndex(first + pd.to_timedelta(offsets, unit="D"))


def _holiday_column(code: str) -> str:
    return HOLIDAY_PREFIX + _slug(code)


def _slug(name: str) -> str:
    return re.sub(r"\W+", "_", name.lower()).strip("_")
