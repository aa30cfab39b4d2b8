"""Market and theme trends: how each group of items has grown, will grow, and when it peaks.

A *group* is a theme found from the item text (:mod:`salesformer.decisions.themes`) or a value of
the items table's ``category`` column. For each group :func:`analyze_trends` sums its items'
sales per period and reports:

- **recent growth**: the last ``recent`` periods (13 weeks, 3 months, 28 days) against the same
  periods one season earlier (``growth_yoy``) and against the ``recent`` periods before them
  (``growth_prev``); NaN where the history is too short or the base is zero;
- **forecast growth**: the forecast total of the next ``horizon`` periods against the same
  periods one season earlier (``forecast_growth_yoy``) and against the last ``horizon``
  periods (``forecast_growth_prev``);
- **seasonal profile**: STL (statsmodels, robust) of ``log1p(total)`` with the panel's season
  length (52 weekly, 12 monthly, 7 daily), averaged by week of year / month / weekday (weekly
  profiles are then smoothed by a centred, circular 3-week mean, since two years give only two
  values per week); the ``peak`` is the position of its maximum and ``peak_lift`` how far the
  peak lies above the trend (``exp(profile max) - 1``: 1.5 means 2.5 times the trend level).
  The same is done for the group's share of all sales (``share_peak``: when the group sells
  more than the rest of the shop). A series shorter than two seasons has no profile (NaN, and
  ``profile_note`` says why);
- **drivers**: the items whose sales changed most in the direction of the group's change over
  the recent window (against one season earlier, or against the previous window when there is
  less than a season of history), with their share of that change.

Growth is a ratio minus one: 0.25 is +25%.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from salesformer.data.contract import DATE, ITEM_ID, SALES, Panel
from salesformer.errors import ConfigError, DataValidationError

KIND = "kind"
GROUP = "group"
NAME = "name"
THEME_KIND = "theme"
CATEGORY_KIND = "category"
CATEGORY_COLUMN = "category"
_RECENT_BY_SEASON = {52: 13, 12: 3, 7: 28}
_POSITION_NAME = {52: "week", 12: "month", 7: "weekday"}


@dataclass
class TrendSettings:
    """How trends are measured.

    Attributes:
        horizon: periods of the forecast whose growth is reported, >= 1.
        recent: periods of the recent window; None: 13 weekly, 3 monthly, 28 daily.
        top_items: driving items listed per group, 0 to 50.
    """

    horizon: int = 13
    recent: int | None = None
    top_items: int = 3

    def __post_init__(self) -> None:
        checks: list[tuple[str, object, int, int]] = [
            ("horizon", self.horizon, 1, 520),
            ("top_items", self.top_items, 0, 50),
        ]
        if self.recent is not None:
            checks.append(("recent", self.recent, 1, 520))
        for setting, value, low, high in checks:
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(
                    f"{setting} must be a whole number in [{low}, {high}]; got {value!r}"
                )


@dataclass(frozen=True)
class SeasonalProfile:
    """A seasonal profile: mean STL seasonal component (log scale) by position in the season."""

    profile: pd.Series
    peak: int | None
    note: str = ""

    @property
    def peak_lift(self) -> float:
        """``exp(max(profile)) - 1``: how far above the trend the peak lies; NaN without one."""
        return float(np.expm1(self.profile.max())) if self.peak is not None else float("nan")


@dataclass(frozen=True)
class TrendReport:
    """What :func:`analyze_trends` found.

    Attributes:
        table: one row per group (see :func:`analyze_trends` for the columns).
        history: period x group-key totals (group key: ``"theme:3"``, ``"category:Bags"``).
        forecast: forecast period x group-key totals (empty without a forecast).
        profiles: season position x group-key seasonal profiles (log scale).
        share_profiles: the same for each group's share of all sales.
        drivers: group key -> driving items (``item_id``, ``title``, ``change``, ``share``).
        freq: the panel's frequency.
    """

    table: pd.DataFrame
    history: pd.DataFrame
    forecast: pd.DataFrame
    profiles: pd.DataFrame
    share_profiles: pd.DataFrame
    drivers: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    freq: str = "W-MON"

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON-ready data (NaN becomes null)."""

        def clean(value: Any) -> Any:
            if isinstance(value, float) and not np.isfinite(value):
                return None
            if isinstance(value, np.generic):
                return clean(value.item())
            if isinstance(value, pd.Timestamp):
                return str(value.date())
            return value

        def series(frame: pd.DataFrame, key: str) -> list[Any]:
            return [clean(v) for v in frame[key]] if key in frame else []

        groups = []
        for row in self.table.to_dict(orient="records"):
            key = group_key(row[KIND], row[GROUP])
            entry = {k: clean(v) for k, v in row.items()}
            entry["history"] = series(self.history, key)
            entry["forecast"] = series(self.forecast, key)
            entry["profile"] = series(self.profiles, key)
            entry["share_profile"] = series(self.share_profiles, key)
            entry["drivers"] = self.drivers.get(key, [])
            groups.append(entry)
        return {
            "freq": self.freq,
            "history_dates": [str(d.date()) for d in self.history.index],
            "forecast_dates": [str(d.date()) for d in self.forecast.index],
            "profile_positions": [int(p) for p in self.profiles.index],
            "groups": groups,
        }

    def write_json(self, path: str | Path) -> None:
        """Write :meth:`to_json` to ``path``."""
        Path(path).write_text(json.dumps(self.to_json(), indent=1, allow_nan=False) + "\n")


def group_key(kind: str, group: object) -> str:
    """``"theme:3"`` / ``"category:Bags"``: the column name of a group in the wide frames."""
    return f"{kind}:{group}"


def growth(now: float, before: float) -> float:
    """``now / before - 1``; NaN when ``before`` is not positive."""
    return float(now / before - 1.0) if before > 0 else float("nan")


def recent_growth(values: np.ndarray, recent: int, season: int) -> tuple[float, float]:
    """(vs one season earlier, vs the previous window) of the last ``recent`` values."""
    n = len(values)
    now = float(values[n - recent :].sum()) if n >= recent else float("nan")
    yoy = (
        growth(now, float(values[n - recent - season : n - season].sum()))
        if n >= recent + season
        else float("nan")
    )
    prev = (
        growth(now, float(values[n - 2 * recent : n - recent].sum()))
        if n >= 2 * recent
        else float("nan")
    )
    return yoy, prev


def forecast_growth(history: np.ndarray, forecast: np.ndarray, season: int) -> tuple[float, float]:
    """(vs the same periods one season earlier, vs the last ``len(forecast)`` periods)."""
    n, h = len(history), len(forecast)
    total = float(forecast.sum())
    yoy = (
        growth(total, float(history[n - season : n - season + h].sum()))
        if n >= season and h <= season
        else float("nan")
    )
    prev = growth(total, float(history[n - h :].sum())) if n >= h else float("nan")
    return yoy, prev


def season_positions(dates: pd.DatetimeIndex, season: int) -> np.ndarray:
    """Week of year (1..52; week 53 counts as 52), month (1..12) or weekday (1..7)."""
    if season == 52:
        return np.minimum(np.asarray(dates.isocalendar().week, dtype=int), 52)
    if season == 12:
        return np.asarray(dates.month, dtype=int)
    return np.asarray(dates.dayofweek, dtype=int) + 1


def seasonal_profile(series: pd.Series, season: int) -> SeasonalProfile:
    """STL seasonal profile of ``log1p(series)`` (date-indexed), by position in the season."""
    from statsmodels.tsa.seasonal import STL

    positions = np.arange(1, season + 1)
    empty = pd.Series(np.nan, index=positions)
    values = np.log1p(np.clip(series.to_numpy(dtype=float), 0.0, None))
    if len(values) < 2 * season:
        return SeasonalProfile(empty, None, f"needs {2 * season} periods, has {len(values)}")
    if np.ptp(values) == 0:
        return SeasonalProfile(empty.fillna(0.0), None, "constant series")
    seasonal = np.asarray(STL(values, period=season, robust=True).fit().seasonal)
    where = season_positions(pd.DatetimeIndex(series.index), season)
    profile = pd.Series(seasonal).groupby(where).mean().reindex(positions)
    profile = profile.interpolate(limit_direction="both")
    if season == 52:
        wrapped = np.concatenate(
            [profile.to_numpy()[-1:], profile.to_numpy(), profile.to_numpy()[:1]]
        )
        profile = pd.Series(np.convolve(wrapped, np.ones(3) / 3, mode="valid"), index=positions)
    return SeasonalProfile(profile, int(profile.idxmax()))


def peak_label(position: int | None, season: int) -> str:
    """``"week 47 (late Nov)"``, ``"Nov"`` or ``"Sat"``; empty when there is no peak."""
    if position is None:
        return ""
    if season == 52:
        monday = dt.date.fromisocalendar(2021, int(position), 1)
        part = "early" if monday.day <= 10 else "mid" if monday.day <= 20 else "late"
        return f"week {position} ({part} {monday.strftime('%b')})"
    if season == 12:
        return dt.date(2021, int(position), 1).strftime("%b")
    return ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[int(position) - 1]


def group_table(panel: Panel, themes: pd.DataFrame | None = None) -> pd.DataFrame:
    """Item -> group rows (``item_id, kind, group, name``): themes, then categories if any.

    Args:
        panel: the panel; its items table's ``category`` column, when present, adds groups.
        themes: ``item_id, theme, theme_name`` (:attr:`Themes.assignment`) or None.
    """
    frames = []
    if themes is not None:
        frames.append(
            pd.DataFrame(
                {
                    ITEM_ID: themes[ITEM_ID].astype(str),
                    KIND: THEME_KIND,
                    GROUP: themes["theme"].astype(str),
                    NAME: themes["theme_name"].astype(str),
                }
            )
        )
    items = panel.items
    if items is not None and CATEGORY_COLUMN in items.columns:
        category = items[CATEGORY_COLUMN].fillna("(none)").astype(str)
        frames.append(
            pd.DataFrame(
                {ITEM_ID: items[ITEM_ID].astype(str), KIND: CATEGORY_KIND, GROUP: category}
            ).assign(**{NAME: category})
        )
    if not frames:
        raise DataValidationError(
            "no groups to report: give themes or an items table with a 'category' column"
        )
    known = set(np.asarray(panel.item_ids).astype(str))
    table = pd.concat(frames, ignore_index=True)
    table = table.loc[table[ITEM_ID].isin(known)].reset_index(drop=True)
    if table.empty:
        raise DataValidationError(
            "no grouped item is in the panel; give themes and an items table of this panel's "
            f"items, e.g. {sorted(known)[:3]}"
        )
    return table


def point_column(forecast: pd.DataFrame) -> str:
    """The one point-forecast column of a forecast frame (not a ``-q`` quantile, not ``y``)."""
    ignored = {ITEM_ID, DATE, "cutoff", "y"}
    points = [c for c in forecast.columns if c not in ignored and "-q" not in str(c)]
    if ITEM_ID not in forecast.columns or DATE not in forecast.columns or len(points) != 1:
        raise DataValidationError(
            f"a forecast table needs item_id, date and one point-forecast column; got columns "
            f"{list(forecast.columns)}; keep one model's columns (as 'salesformer predict' writes)"
        )
    return points[0]


def _wide_totals(frame: pd.DataFrame, value: str, groups: pd.DataFrame) -> pd.DataFrame:
    """Period x group-key sums of ``value`` over each group's items."""
    merged = frame[[ITEM_ID, DATE, value]].merge(groups, on=ITEM_ID, how="inner")
    merged["key"] = merged[KIND] + ":" + merged[GROUP]
    wide = merged.pivot_table(index=DATE, columns="key", values=value, aggfunc="sum", fill_value=0)
    return wide.astype(float)


@dataclass(frozen=True)
class _Windows:
    """What every group is measured against: dates, season, recent and base windows."""

    dates: pd.DatetimeIndex
    season: int
    recent: int
    window: tuple[int, int]
    base: tuple[int, int]
    shop_total: np.ndarray

    @classmethod
    def of(cls, panel: Panel, recent: int | None) -> _Windows:
        season = panel.season_length
        length = recent or _RECENT_BY_SEASON.get(season, 13)
        dates = panel.dates
        n = len(dates)
        window = (max(0, n - length), n)
        if n >= length + season:
            base = (window[0] - season, n - season)
        else:
            base = (n - 2 * length, window[0])
        total = panel.sales.groupby(DATE)[SALES].sum().reindex(dates, fill_value=0.0)
        return cls(dates, season, length, window, base, total.to_numpy(dtype=float))


def _drivers(
    panel: Panel, members: pd.Index, windows: _Windows, titles: dict[str, str], top: int
) -> list[dict[str, Any]]:
    """Items with the largest change in the group's direction, base window to recent window."""
    dates = windows.dates
    sales = panel.sales.loc[panel.sales[ITEM_ID].isin(members)]

    def totals(span: tuple[int, int]) -> pd.Series:
        inside = sales[DATE].between(dates[span[0]], dates[span[1] - 1])
        return sales.loc[inside].groupby(ITEM_ID)[SALES].sum()

    change = totals(windows.window).sub(totals(windows.base), fill_value=0.0)
    total = float(change.sum())
    ranked = change.sort_values(ascending=total < 0)
    ranked = ranked[ranked * (1 if total >= 0 else -1) > 0].head(top)
    return [
        {
            ITEM_ID: str(item),
            "title": titles.get(str(item), ""),
            "change": float(value),
            "share": float(value / total) if total != 0 else None,
        }
        for item, value in ranked.items()
    ]


def _titles(panel: Panel) -> dict[str, str]:
    items = panel.items
    if items is None:
        return {}
    column = "title" if "title" in items.columns else "text"
    titles = items[column].fillna("").astype(str).str[:60]
    return dict(zip(items[ITEM_ID].astype(str), titles, strict=True))


def _measure(
    values: np.ndarray, forecast: np.ndarray | None, windows: _Windows
) -> tuple[dict[str, Any], SeasonalProfile, SeasonalProfile]:
    """Growth, forecast growth and seasonal profiles of one group's series."""
    season, n = windows.season, len(values)
    yoy, prev = recent_growth(values, windows.recent, season)
    f_yoy, f_prev, f_total = float("nan"), float("nan"), float("nan")
    if forecast is not None:
        f_total = float(forecast.sum())
        f_yoy, f_prev = forecast_growth(values, forecast, season)
    profile = seasonal_profile(pd.Series(values, index=windows.dates), season)
    share_values = 1000.0 * values / np.maximum(windows.shop_total, 1.0)
    share = seasonal_profile(pd.Series(share_values, index=windows.dates), season)
    row = {
        "sales_last_season": float(values[max(0, n - season) :].sum()),
        "recent_sales": float(values[windows.window[0] :].sum()),
        "growth_yoy": yoy,
        "growth_prev": prev,
        "forecast_sales": f_total,
        "forecast_growth_yoy": f_yoy,
        "forecast_growth_prev": f_prev,
        "peak": profile.peak,
        "peak_label": peak_label(profile.peak, season),
        "peak_lift": profile.peak_lift,
        "share_peak": share.peak,
        "share_peak_label": peak_label(share.peak, season),
        "profile_note": profile.note,
    }
    return row, profile, share


def analyze_trends(
    panel: Panel,
    groups: pd.DataFrame,
    forecast: pd.DataFrame | None = None,
    settings: TrendSettings | None = None,
) -> TrendReport:
    """Growth, forecast growth, seasonal profile and driving items of every group.

    Args:
        panel: the sales panel.
        groups: item -> group rows from :func:`group_table`.
        forecast: ``item_id, date, <model>`` for the periods after the panel's last date, or
            None; only its first ``settings.horizon`` periods are used, and they must be
            forecast for every grouped item.
        settings: windows and counts (defaults: :class:`TrendSettings`).

    Returns:
        A :class:`TrendReport` whose ``table`` has one row per group: ``kind, group, name,
        n_items, sales_last_season, recent_sales, growth_yoy, growth_prev, forecast_sales,
        forecast_growth_yoy, forecast_growth_prev, peak, peak_label, peak_lift,
        share_peak, share_peak_label, profile_note, drivers``, largest ``sales_last_season``
        first within each kind.
    """
    settings = settings or TrendSettings()
    windows = _Windows.of(panel, settings.recent)
    history = _wide_totals(panel.sales, SALES, groups).reindex(windows.dates, fill_value=0.0)
    future = _forecast_totals(panel, forecast, groups, settings.horizon)
    titles = _titles(panel)
    rows, drivers, profiles, share_profiles = [], {}, {}, {}
    for (kind, group, name), members in groups.groupby([KIND, GROUP, NAME], sort=False)[ITEM_ID]:
        key = group_key(kind, group)
        values = history[key].to_numpy() if key in history else np.zeros(len(windows.dates))
        ahead = future[key].to_numpy() if key in future else None
        measured, profiles[key], share_profiles[key] = _measure(values, ahead, windows)
        if windows.base[0] >= 0 and settings.top_items:
            drivers[key] = _drivers(panel, pd.Index(members), windows, titles, settings.top_items)
        listed = "; ".join(d["title"] or d[ITEM_ID] for d in drivers.get(key, []))
        rows.append(
            {KIND: kind, GROUP: group, NAME: name, "n_items": int(members.nunique())}
            | measured
            | {"drivers": listed}
        )
    table = pd.DataFrame(rows)
    order = {THEME_KIND: 0, CATEGORY_KIND: 1}
    table = table.sort_values(
        [KIND, "sales_last_season"], key=lambda c: c.map(order) if c.name == KIND else -c
    ).reset_index(drop=True)
    position = _POSITION_NAME.get(windows.season, "position")
    return TrendReport(
        table,
        history,
        future,
        pd.DataFrame({k: p.profile for k, p in profiles.items()}).rename_axis(position),
        pd.DataFrame({k: p.profile for k, p in share_profiles.items()}).rename_axis(position),
        drivers,
        panel.freq,
    )


def _forecast_totals(
    panel: Panel, forecast: pd.DataFrame | None, groups: pd.DataFrame, horizon: int
) -> pd.DataFrame:
    """Forecast period x group-key totals over the first ``horizon`` periods after the panel."""
    if forecast is None:
        return pd.DataFrame(index=pd.DatetimeIndex([], name=DATE))
    column = point_column(forecast)
    frame = forecast.copy()
    frame[ITEM_ID] = frame[ITEM_ID].astype(str)
    frame[DATE] = pd.to_datetime(frame[DATE])
    expected = panel.future_dates(panel.last_date, horizon)
    frame = frame.loc[frame[DATE].isin(expected)]
    found = pd.DatetimeIndex(frame[DATE].unique())
    if len(found) < horizon:
        raise DataValidationError(
            f"the forecast covers {len(found)} of the {horizon} periods after the panel's last "
            f"date {panel.last_date.date()} ({expected[0].date()} .. {expected[-1].date()}); "
            "forecast from the end of this panel, or lower --horizon"
        )
    covered = frame.loc[frame[column].notna()].groupby(ITEM_ID)[DATE].nunique()
    short = sorted(set(groups[ITEM_ID]) - set(covered.index[covered >= horizon]))
    if short:  # a group total without some of its items would understate its growth
        raise DataValidationError(
            f"the forecast misses some of the {horizon} periods after the panel for "
            f"{len(short)} item(s), e.g. {short[:3]}; forecast every item of the panel"
        )
    return _wide_totals(frame, column, groups).reindex(expected, fill_value=0.0)


def default_forecaster(horizon: int, seed: int = 0, bias_correction: bool = True) -> Any:
    """The LightGBM of :func:`default_forecast`, unfitted (1 thread, no quantile models)."""
    from salesformer.models.lightgbm import LightGBMForecaster

    return LightGBMForecaster(
        max_horizon=horizon,
        quantile_method="conformal",
        bias_correction=bias_correction,
        n_jobs=1,
        seed=seed,
    )


def default_forecast(
    panel: Panel, horizon: int, seed: int = 0, bias_correction: bool = True
) -> pd.DataFrame:
    """A point forecast of every item from a global LightGBM fitted on ``panel``.

    Trends add item forecasts up, so they need means: LightGBM's forecast of ``log1p(sales)``
    is close to a median, and the medians of intermittent items sum to far less than their
    total. ``bias_correction`` (on by default here) multiplies the forecast by the mean of
    ``exp(log error)`` on a held-out window (smearing), towards the mean; on Online Retail II
    it overshoots (``benchmarks/trends.py``).

    Args:
        panel: the panel to fit on; the forecast starts after its last date.
        horizon: periods to forecast.
        seed: LightGBM seed.
        bias_correction: smearing towards the mean (see above).
    """
    model = default_forecaster(horizon, seed, bias_correction)
    forecast: pd.DataFrame = model.fit(panel).predict(horizon, quantiles=())
    return forecast
