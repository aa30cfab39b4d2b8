"""Holiday and event calendars as known-future covariates (``prepare --holidays/--events``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from salesformer.data.calendars import (
    add_calendar,
    calendar_columns,
    parse_countries,
    read_events,
)
from salesformer.data.contract import Panel, validate_panel
from salesformer.data.synthetic import generate_catalogue
from salesformer.errors import ConfigError, DataValidationError
from salesformer.explain.trees import feature_group
from salesformer.forecasting.protocol import resolve_future
from test_prepare_cli import assert_one_line_error, call


@pytest.fixture(scope="module")
def weekly() -> Panel:
    return generate_catalogue(n_items=6, n_weeks=60, seed=1).panel()


def _daily(days: int = 40, start: str = "2022-12-10") -> Panel:
    dates = pd.date_range(start, periods=days, freq="D")
    sales = pd.DataFrame(
        {
            "item_id": np.repeat(["A", "B"], days),
            "date": np.tile(dates, 2),
            "sales": 1.0,
        }
    )
    items = pd.DataFrame({"item_id": ["A", "B"], "text": ["a", "b"], "category": ["x", "y"]})
    return validate_panel(sales, items, freq="D")


def _events_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "events.csv"
    path.write_text(text)
    return path


def _item(panel: Panel, item: str = "SKU00000") -> pd.DataFrame:
    return panel.sales[panel.sales["item_id"] == item].set_index("date")


def test_weekly_holidays_count_days_with_the_weeks_before_and_after(weekly: Panel) -> None:
    panel = add_calendar(weekly, "GB")
    assert panel.known_future[-3:] == ("holiday_gb", "holiday_gb_before", "holiday_gb_after")
    rows = _item(panel)
    # Christmas 2022: Sun 25 Dec (week of 19 Dec); 26 Boxing, 27 observed, Sun 1 Jan (26 Dec)
    assert rows.loc["2022-12-19", "holiday_gb"] == 1
    assert rows.loc["2022-12-26", "holiday_gb"] == 3
    assert rows.loc["2022-12-12", "holiday_gb_before"] == 1
    assert rows.loc["2022-12-19", "holiday_gb_before"] == 3
    assert rows.loc["2023-01-02", "holiday_gb_after"] == 3
    assert rows.loc["2022-11-07", ["holiday_gb", "holiday_gb_before"]].sum() == 0


def test_daily_holidays_mark_the_day_and_its_neighbours() -> None:
    panel = add_calendar(_daily(), ["GB-ENG"])
    rows = _item(panel, "A")
    assert rows.loc["2022-12-25", "holiday_gb_eng"] == 1
    assert rows.loc["2022-12-24", "holiday_gb_eng"] == 0
    assert rows.loc["2022-12-24", "holiday_gb_eng_before"] == 1
    assert rows.loc["2022-12-28", "holiday_gb_eng_after"] == 1  # 27 Dec: observed Christmas
    assert rows.loc["2023-01-05", ["holiday_gb_eng", "holiday_gb_eng_after"]].sum() == 0


def test_events_yearly_one_off_days_and_scopes(tmp_path: Path) -> None:
    path = _events_file(
        tmp_path,
        "date,name,days,scope\n12-24,closure,3,\n2023-01-05,launch,,item:B\n"
        "2022-12-12,sale,2,category:x\n",
    )
    panel = add_calendar(_daily(), events=path)
    a, b = _item(panel, "A"), _item(panel, "B")
    assert a.loc["2022-12-24":"2022-12-26", "event_closure"].tolist() == [1, 1, 1]
    assert a.loc["2022-12-27", "event_closure"] == 0
    assert a.loc["2022-12-27", "event_closure_after"] == 1
    assert b.loc["2023-01-05", "event_launch"] == 1 and a.loc["2023-01-05", "event_launch"] == 0
    assert a.loc["2022-12-13", "event_sale"] == 1 and b.loc["2022-12-13", "event_sale"] == 0


def test_the_horizon_gets_calendar_values_not_the_last_ones(weekly: Panel) -> None:
    cut = add_calendar(weekly, "GB").until("2022-12-05")
    future = resolve_future(cut, 5, None)
    rows = future[future["item_id"] == "SKU00000"].set_index("date")
    assert rows["holiday_gb"].tolist() == [0, 1, 3, 1, 0]
    assert (rows["price"] == _item(cut)["price"].iloc[-1]).all()  # prices still carried
    # a plan without the calendar columns gets them computed
    plan = future.drop(columns=[c for c in future.columns if c.startswith("holiday_")])
    assert resolve_future(cut, 5, plan)["holiday_gb"].tolist() == future["holiday_gb"].tolist()


def test_panel_folder_keeps_the_calendar(weekly: Panel, tmp_path: Path) -> None:
    panel = add_calendar(weekly, "US", "cn-shopping")
    loaded = Panel.load(panel.save(tmp_path / "panel"))
    assert loaded.calendar == panel.calendar
    assert loaded.known_future == panel.known_future
    assert calendar_columns(loaded.calendar)[:3] == ["holiday_us", *panel.known_future[4:6]]


def test_cn_shopping_ships_the_festivals() -> None:
    events = read_events("cn-shopping")
    names = set(events["name"])
    assert {"singles_day", "mid_year_618", "double_12", "chinese_new_year"} <= names
    cny = events.loc[events["name"] == "chinese_new_year", "date"]
    assert "2024-02-10" in set(cny) and "2011-02-03" in set(cny)


def test_lightgbm_reads_calendar_columns_and_explanations_name_them(weekly: Panel) -> None:
    from salesformer.explain import explain
    from salesformer.models.lightgbm import LightGBMForecaster

    panel = add_calendar(weekly, "GB")
    model = LightGBMForecaster(max_horizon=4, n_estimators=20, n_origins=8).fit(panel)
    assert {"holiday_gb", "holiday_gb_before"} <= set(model.feature_names_)
    groups = {name: feature_group(name, panel.known_future, ()) for name in model.feature_names_}
    assert groups["holiday_gb_after"] == "calendar" and groups["price"] == "known-future"
    attributions = explain(model, "SKU00000", 4).attributions
    named = attributions.loc[attributions["feature"].str.startswith("holiday_gb"), "group"]
    assert len(named) and set(named) == {"calendar"}


def test_synthetic_events_are_off_by_default_and_move_only_event_weeks() -> None:
    plain = generate_catalogue(n_items=10, n_weeks=60, seed=3)
    with_events = generate_catalogue(n_items=10, n_weeks=60, seed=3, events=True)
    assert plain.events is None and "event_summer_sale" not in plain.panel().sales
    panel = with_events.panel()
    flagged = panel.sales.filter(regex=r"^event_[a-z_]+(?<!_before)(?<!_after)$").sum(axis=1) > 0
    changed = plain.sales["sales"].to_numpy() != with_events.sales["sales"].to_numpy()
    assert not changed[~flagged.to_numpy()].any()
    ratio = (
        with_events.sales["sales"][flagged.to_numpy()].sum()
        / plain.sales["sales"][flagged.to_numpy()].sum()
    )
    assert ratio > 1.2


# --- bad input: one line, exit code 2 -------------------------------------------------------


def test_unknown_country_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown holiday country 'XX'"):
        parse_countries("GB,XX")
    with pytest.raises(ConfigError, match="unknown subdivision 'ZZ' of GB"):
        parse_countries("GB-ZZ")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("when,what\n2024-01-01,x\n", "columns ['date', 'name'] missing"),
        ("date,name\n2024-13-01,x\n", "dates cannot be read"),
        ("date,name\nnext friday,x\n", "dates cannot be read"),
        ("date,name,days\n11-11,x,0\n", "column 'days' must hold whole numbers"),
        ("date,name,scope\n11-11,x,shop:1\n", "scope 'shop:1' is not understood"),
        ("date,name\n11-11,\n", "no usable name"),
        ("date,name\n", "holds no events"),
    ],
)
def test_malformed_events_files_are_refused(tmp_path: Path, text: str, fragment: str) -> None:
    with pytest.raises(DataValidationError, match=fragment.replace("[", r"\[").replace("(", r"\(")):
        read_events(_events_file(tmp_path, text))


def test_scopes_must_name_known_items_and_categories(tmp_path: Path) -> None:
    unknown_item = _events_file(tmp_path, "date,name,scope\n11-11,x,item:NOPE\n")
    with pytest.raises(DataValidationError, match="'item:NOPE' names an item"):
        add_calendar(_daily(), events=unknown_item)
    unknown_category = _events_file(tmp_path, "date,name,scope\n11-11,x,category:shoes\n")
    with pytest.raises(DataValidationError, match="'category:shoes' names an unknown category"):
        add_calendar(_daily(), events=unknown_category)


@pytest.fixture
def sales_csv(tmp_path: Path) -> Path:
    path = tmp_path / "sales.csv"
    panel = _daily()
    panel.sales.to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("extra", "events_text", "fragment"),
    [
        (["--holidays", "GB,XX"], None, "unknown holiday country 'XX'"),
        (["--events", "no-such-events"], None, "events file 'no-such-events' does not exist"),
        ([], "date,title\n11-11,x\n", "columns ['name'] missing"),
        ([], "date,name\n31-12,x\n", "dates cannot be read"),
        ([], "date,name,scope\n11-11,x,item:ZZZ\n", "'item:ZZZ' names an item"),
        ([], "date,name,scope\n11-11,x,category:shoes\n", "needs a 'category' column"),
    ],
)
def test_cli_bad_calendar_input_is_one_line_exit_2(
    tmp_path: Path,
    sales_csv: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    events_text: str | None,
    fragment: str,
) -> None:
    if events_text is not None:
        extra = ["--events", str(_events_file(tmp_path, events_text))]
    out = tmp_path / "panel"
    code = call(["prepare", "csv", "--sales", str(sales_csv), "--out", str(out), *extra])
    assert code == 2
    assert_one_line_error(capsys, fragment)
    assert not out.exists()


def test_cli_prepare_csv_with_holidays_and_events(
    tmp_path: Path, sales_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = _events_file(tmp_path, "date,name,days\n12-24,closure,3\n")
    out = tmp_path / "panel"
    argv = ["prepare", "csv", "--sales", str(sales_csv), "--out", str(out), "--freq", "D"]
    assert call([*argv, "--holidays", "gb", "--events", str(events)]) == 0
    panel = Panel.load(out)
    assert "holiday_gb" in panel.known_future and "event_closure_after" in panel.known_future
    quality = json.loads((out / "quality.json").read_text())
    assert quality["holidays"] == ["GB"] and "event_closure" in quality["calendar_columns"]


# --- Online Retail II by day ----------------------------------------------------------------


def test_online_retail_daily_adds_up_to_the_weekly_panel(tmp_path: Path) -> None:
    from salesformer.data.online_retail import prepare_online_retail
    from test_online_retail import invoice_lines

    path = tmp_path / "lines.parquet"
    invoice_lines().to_parquet(path, index=False)
    weekly, _ = prepare_online_retail(path)
    daily, report = prepare_online_retail(path, freq="D")
    assert daily.freq == "D" and report.freq == "D"
    assert daily.last_date == weekly.last_date + pd.Timedelta(days=6)
    sales = daily.sales.assign(
        date=daily.sales["date"] - pd.to_timedelta(daily.sales["date"].dt.weekday, unit="D")
    )
    summed = sales.groupby(["item_id", "date"])["sales"].sum()
    expected = weekly.sales.set_index(["item_id", "date"])["sales"]
    pd.testing.assert_series_equal(summed.reindex(expected.index), expected)
    with pytest.raises(ConfigError, match="by week \\(W-MON\\) or by day \\(D\\); got freq 'MS'"):
        prepare_online_retail(path, freq="MS")


def test_cli_online_retail_daily_with_uk_holidays(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_online_retail import invoice_lines

    path = tmp_path / "lines.parquet"
    invoice_lines().to_parquet(path, index=False)
    out = tmp_path / "panel"
    argv = ["prepare", "online-retail", "--source", str(path), "--out", str(out)]
    assert call([*argv, "--freq", "D", "--holidays", "GB"]) == 0
    panel = Panel.load(out)
    assert panel.freq == "D" and "holiday_gb" in panel.known_future
    rows = panel.sales.drop_duplicates("date").set_index("date")
    assert rows.loc["2010-12-25", "holiday_gb"] == 1
    assert call([*argv, "--freq", "W-SUN"]) == 2
    assert_one_line_error(capsys, "got freq 'W-SUN'")


def test_ray_parts_keep_the_calendar(weekly: Panel, tmp_path: Path) -> None:
    from salesformer.distributed.parts import iter_parts, scan_panel

    folder = add_calendar(weekly, "GB").save(tmp_path / "panel")
    layout = scan_panel(folder)
    assert layout.calendar == {"holidays": ["GB"], "events": []}
    part = next(iter(iter_parts(folder, 2, layout)))
    cut = part.to_panel().until("2022-12-05")
    assert resolve_future(cut, 3, None)["holiday_gb"].tolist()[:3] == [0, 1, 3]


def test_a_second_calendar_adds_to_the_first_but_never_twice(weekly: Panel) -> None:
    panel = add_calendar(add_calendar(weekly, "GB"), "US")
    assert panel.calendar is not None and panel.calendar["holidays"] == ["GB", "US"]
    assert {"holiday_gb", "holiday_us_after"} <= set(panel.known_future)
    with pytest.raises(DataValidationError, match=r"already has columns \['holiday_gb'"):
        add_calendar(panel, "GB")
