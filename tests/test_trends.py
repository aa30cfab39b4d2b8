"""Themes from item text and market trends: library, arithmetic and ``salesformer trends``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from salesformer.cli.main import run
from salesformer.data.contract import DATE, ITEM_ID, SALES, Panel, validate_panel
from salesformer.data.synthetic import THEME_WORDS, THEMES, SyntheticCatalogue, generate_catalogue
from salesformer.decisions.themes import (
    Themes,
    ThemeSettings,
    default_n_themes,
    find_themes,
    theme_words,
)
from salesformer.decisions.trends import (
    TrendSettings,
    analyze_trends,
    forecast_growth,
    group_table,
    growth,
    peak_label,
    point_column,
    recent_growth,
    seasonal_profile,
)
from salesformer.errors import ConfigError, DataValidationError
from salesformer.models.persist import save_model
from salesformer.models.registry import make_model

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def two_years() -> SyntheticCatalogue:
    """120 products over 110 weeks: enough for two seasons of STL."""
    return generate_catalogue(n_items=120, n_weeks=110, seed=3)


@pytest.fixture(scope="module")
def seasonal_themes(two_years: SyntheticCatalogue) -> Themes:
    """Four themes from text and seasonal sales shape (the generator has four themes)."""
    return find_themes(two_years.panel(), ThemeSettings(n_themes=4, season_weight=1.0))


def _majority(themes: Themes, truth: pd.Series) -> pd.DataFrame:
    """Per found theme: its most common generator label and how many items carry it."""
    labels = truth.loc[themes.assignment[ITEM_ID]].to_numpy()
    return pd.crosstab(themes.assignment["theme"].to_numpy(), labels)


def test_seasonal_themes_recover_the_generator_themes(
    two_years: SyntheticCatalogue, seasonal_themes: Themes
) -> None:
    truth = two_years.truth.set_index(ITEM_ID)["theme"]
    table = _majority(seasonal_themes, truth)
    purity = table.max(axis=1).sum() / table.to_numpy().sum()
    assert purity >= 0.75
    assert set(table.idxmax(axis=1)) == set(THEMES)  # every generator theme leads one cluster
    for theme, majority in table.idxmax(axis=1).items():
        if majority == "Everyday":
            continue
        title_words, description = THEME_WORDS[majority]
        vocabulary = {w.lower().strip(".") for w in f"{title_words} {description}".split()}
        name_words = set(seasonal_themes.words[int(theme)])
        assert name_words & vocabulary, (majority, seasonal_themes.names[int(theme)])


def test_text_only_themes_follow_the_product_words(two_years: SyntheticCatalogue) -> None:
    """On text alone the catalogue's strongest words, its product nouns, make the themes."""
    found = find_themes(two_years.panel(), ThemeSettings(n_themes=10))
    product = two_years.items.set_index(ITEM_ID)["title"].str.split().str[-1].str.lower()
    table = _majority(found, product)
    assert table.max(axis=1).sum() / table.to_numpy().sum() >= 0.6
    named = [n for n in found.names.values() if set(n.split(" / ")) & set(product)]
    assert len(named) >= 5
    assert len(found.assignment) == 120
    assert found.assignment["theme"].value_counts().is_monotonic_decreasing  # 0 = largest


def test_theme_words_are_distinctive_and_clean() -> None:
    texts = [
        "RED HEART T-LIGHT HOLDER 12",
        "PINK HEARTS GARLAND",
        "HEART OF WICKER",
        "CHRISTMAS TREE BAUBLE SET OF 6",
        "CHRISTMAS TREE STAR",
        "SET OF 3 CHRISTMAS BAUBLES",
    ]
    words = theme_words(texts, np.array([0, 0, 0, 1, 1, 1]), n_words=3)
    assert words[0][0] == "heart" and "hearts" not in words[0]  # plural folded
    assert words[1][:2] == ["christmas", "tree"]
    every = {w for ws in words.values() for w in ws}
    assert not every & {"of", "set", "12", "6", "3"}


def test_default_number_of_themes_and_settings() -> None:
    assert default_n_themes(4706) == 30
    assert default_n_themes(200) == 6
    assert default_n_themes(3) == 2
    for bad in ({"n_themes": 1}, {"season_weight": -1.0}, {"name_words": 0}):
        with pytest.raises(ConfigError):
            ThemeSettings(**bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="horizon"):
        TrendSettings(horizon=0)


def test_growth_arithmetic() -> None:
    values = np.arange(1.0, 71.0)  # 70 periods: 1, 2, ..., 70
    yoy, prev = recent_growth(values, recent=4, season=52)
    assert yoy == pytest.approx((67 + 68 + 69 + 70) / (15 + 16 + 17 + 18) - 1)
    assert prev == pytest.approx((67 + 68 + 69 + 70) / (63 + 64 + 65 + 66) - 1)
    assert np.isnan(recent_growth(values[:50], recent=4, season=52)[0])
    f_yoy, f_prev = forecast_growth(values, np.array([10.0, 10.0]), season=52)
    assert f_yoy == pytest.approx(20 / (19 + 20) - 1)
    assert f_prev == pytest.approx(20 / (69 + 70) - 1)
    assert np.isnan(growth(5.0, 0.0))
    assert growth(3.0, 2.0) == pytest.approx(0.5)


def _weekly_panel(n_weeks: int, peak_week: int) -> Panel:
    """Two items in two categories: 'peaky' peaks at ``peak_week``, 'flat' grows steadily."""
    dates = pd.date_range("2021-01-04", periods=n_weeks, freq="W-MON")
    week = np.asarray(dates.isocalendar().week, dtype=float)
    distance = np.minimum(np.abs(week - peak_week), 52 - np.abs(week - peak_week))
    peaky = 10 + 90 * np.exp(-0.5 * (distance / 2.0) ** 2)
    flat = 20 + 0.1 * np.arange(n_weeks)
    sales = pd.DataFrame(
        {
            ITEM_ID: ["peaky"] * n_weeks + ["flat"] * n_weeks,
            DATE: list(dates) * 2,
            SALES: np.round(np.concatenate([peaky, flat])),
        }
    )
    items = pd.DataFrame(
        {
            ITEM_ID: ["peaky", "flat"],
            "text": ["Snow globe", "Tea mug"],
            "title": ["SNOW GLOBE", "TEA MUG"],
            "category": ["Winter", "Kitchen"],
        }
    )
    return validate_panel(sales, items, freq="W-MON")


def test_stl_peak_and_short_series() -> None:
    panel = _weekly_panel(120, peak_week=49)
    series = panel.sales.loc[panel.sales[ITEM_ID] == "peaky"].set_index(DATE)[SALES]
    profile = seasonal_profile(series, 52)
    assert profile.peak is not None and abs(profile.peak - 49) <= 1
    assert profile.peak_lift > 1.0  # the peak is far above the trend
    assert peak_label(49, 52) == "week 49 (early Dec)"
    assert peak_label(2, 12) == "Feb"
    short = seasonal_profile(series.iloc[:80], 52)
    assert short.peak is None and np.isnan(short.peak_lift) and "104" in short.note


def test_analyze_trends_by_category_with_drivers() -> None:
    panel = _weekly_panel(120, peak_week=30)
    groups = group_table(panel)  # no themes: the items' category column
    future = panel.future_dates(panel.last_date, 4)
    forecast = pd.DataFrame(
        {ITEM_ID: ["flat"] * 4 + ["peaky"] * 4, DATE: list(future) * 2, "Model": 10.0}
    )
    report = analyze_trends(panel, groups, forecast, TrendSettings(horizon=4, recent=8))
    table = report.table.set_index("name")
    assert list(table["kind"]) == ["category", "category"]
    flat = panel.sales.loc[panel.sales[ITEM_ID] == "flat", SALES].to_numpy()
    assert table.loc["Kitchen", "growth_yoy"] == pytest.approx(
        flat[-8:].sum() / flat[-60:-52].sum() - 1
    )
    assert table.loc["Kitchen", "forecast_growth_prev"] == pytest.approx(40 / flat[-4:].sum() - 1)
    assert abs(int(table.loc["Winter", "peak"]) - 30) <= 1
    assert report.drivers["category:Kitchen"][0]["title"] == "TEA MUG"
    assert report.drivers["category:Kitchen"][0]["share"] == pytest.approx(1.0)
    data = report.to_json()
    json.dumps(data, allow_nan=False)
    assert len(data["groups"][0]["history"]) == 120 and len(data["forecast_dates"]) == 4
    late = forecast.assign(**{DATE: forecast[DATE] + pd.Timedelta(weeks=1)})
    with pytest.raises(DataValidationError, match="covers"):
        analyze_trends(panel, groups, late, TrendSettings(horizon=4))
    partial = forecast.loc[forecast[ITEM_ID] == "flat"]  # 'peaky' would be left out of Winter
    with pytest.raises(DataValidationError, match=r"1 item\(s\), e.g. \['peaky'\]"):
        analyze_trends(panel, groups, partial, TrendSettings(horizon=4))


def test_drivers_without_a_title_are_listed_by_item_id() -> None:
    dates = pd.date_range("2021-01-04", periods=20, freq="W-MON")
    sales = pd.DataFrame(
        {ITEM_ID: ["up"] * 20, DATE: dates, SALES: np.arange(20.0)}  # grows: 'up' drives it
    )
    items = pd.DataFrame({ITEM_ID: ["up"], "text": ["Tea mug"], "title": [None], "category": ["K"]})
    panel = validate_panel(sales, items, freq="W-MON")
    report = analyze_trends(panel, group_table(panel), None, TrendSettings(recent=4))
    assert report.table.loc[0, "drivers"] == "up"
    assert report.drivers["category:K"][0]["title"] == ""
    strangers = pd.DataFrame({ITEM_ID: ["x"], "theme": [0], "theme_name": ["x"]})
    with pytest.raises(DataValidationError, match="no grouped item is in the panel"):
        group_table(validate_panel(sales, items.drop(columns="category"), freq="W-MON"), strangers)


def test_point_column() -> None:
    frame = pd.DataFrame(columns=[ITEM_ID, DATE, "LightGBM", "LightGBM-q10", "LightGBM-q90"])
    assert point_column(frame) == "LightGBM"
    with pytest.raises(DataValidationError, match="one point-forecast column"):
        point_column(frame.assign(Naive=1.0))


# -- the command --------------------------------------------------------------------------


def invoke(args: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        run(args)
    return info.value.code if isinstance(info.value.code, int) else 1


@pytest.fixture(scope="module")
def panel_dir(two_years: SyntheticCatalogue, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return two_years.panel().save(tmp_path_factory.mktemp("panel"))


@pytest.fixture(scope="module")
def forecast_file(two_years: SyntheticCatalogue, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 13-week forecast: each item's mean of its last 8 weeks."""
    panel = two_years.panel()
    level = panel.sales.groupby(ITEM_ID)[SALES].apply(lambda s: s.tail(8).mean())
    dates = panel.future_dates(panel.last_date, 13)
    frame = pd.DataFrame(
        {
            ITEM_ID: np.repeat(level.index, 13),
            DATE: np.tile(dates, len(level)),
            "Mean": np.repeat(level.to_numpy(), 13),
        }
    )
    path = tmp_path_factory.mktemp("forecast") / "forecast.csv"
    frame.to_csv(path, index=False)
    return path


def test_cli_writes_themes_trends_and_plots(
    panel_dir: Path, forecast_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "trends"
    args = ["trends", "--panel", str(panel_dir), "--forecasts", str(forecast_file)]
    code = invoke([*args, "--themes", "4", "--season-weight", "1", "--out", str(out)])
    assert code == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        ".salesformer-out.json",
        "seasonality.png",
        "themes.csv",
        "trends.csv",
        "trends.json",
        "trends.png",
    ]
    themes = pd.read_csv(out / "themes.csv")
    assert len(themes) == 120 and themes["theme"].nunique() == 4
    trends = pd.read_csv(out / "trends.csv")
    assert list(trends["kind"]).count("theme") == 4
    assert list(trends["kind"]).count("category") == 6  # the catalogue's categories
    christmas = trends.loc[trends["name"].str.contains("christmas")]
    assert len(christmas) == 1 and 47 <= int(christmas["peak"].iloc[0]) <= 52
    report = json.loads((out / "trends.json").read_text())
    assert len(report["forecast_dates"]) == 13
    assert (out / "trends.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "christmas" in printed and "wrote" in printed


def test_cli_forecasts_from_a_saved_model(
    panel_dir: Path, tmp_path: Path, two_years: SyntheticCatalogue
) -> None:
    model = tmp_path / "naive"
    save_model(make_model("SeasonalNaive").fit(two_years.panel()), model)
    out = tmp_path / "trends"
    args = ["trends", "--panel", str(panel_dir), "--model", str(model), "--themes", "3"]
    assert invoke([*args, "--horizon", "8", "--out", str(out)]) == 0
    trends = pd.read_csv(out / "trends.csv").set_index("name")
    themes = pd.read_csv(out / "themes.csv")
    predicted = make_model("SeasonalNaive").fit(two_years.panel()).predict(8, quantiles=())
    by_theme = predicted.merge(themes, on=ITEM_ID).groupby("theme_name")["SeasonalNaive"].sum()
    assert len(by_theme) == 3
    for name, total in by_theme.items():
        assert trends.loc[name, "forecast_sales"] == pytest.approx(total)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--themes", "1"], "--themes must be 2 or more"),
        (["--horizon", "0"], "--horizon must be 1 or more"),
        (["--season-weight", "-1"], "season_weight"),
        (["--model", "m", "--forecasts", "f.csv"], "not both"),
        (["--forecasts", "f.txt"], "--forecasts must end in .csv"),
        (["--horizon", "20"], "covers"),
    ],
)
def test_cli_bad_input_exits_2_without_output(
    panel_dir: Path,
    forecast_file: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    out = tmp_path / "trends"
    base = ["trends", "--panel", str(panel_dir), "--out", str(out)]
    if "--forecasts" not in extra and "--model" not in extra:
        base += ["--forecasts", str(forecast_file)]
    assert invoke([*base, *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_cli_panel_without_item_texts_exits_2(
    two_years: SyntheticCatalogue, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = validate_panel(two_years.sales).save(tmp_path / "no-items")
    out = tmp_path / "trends"
    assert invoke(["trends", "--panel", str(folder), "--out", str(out)]) == 2
    assert "no items table" in capsys.readouterr().err
    assert not out.exists()


def test_cli_default_forecast_is_lightgbm(tmp_path: Path) -> None:
    panel = generate_catalogue(n_items=12, n_weeks=60, seed=1).panel()
    folder = panel.save(tmp_path / "panel")
    out = tmp_path / "trends"
    assert invoke(["trends", "--panel", str(folder), "--horizon", "4", "--out", str(out)]) == 0
    trends = pd.read_csv(out / "trends.csv")
    assert trends["forecast_sales"].notna().all() and (trends["forecast_sales"] > 0).any()
    assert trends["peak"].isna().all()  # 60 weeks: shorter than two seasons
    assert trends["profile_note"].str.contains("needs 104").all()


def test_cli_default_horizon_stays_within_one_season_on_monthly_data(
    two_years: SyntheticCatalogue, tmp_path: Path
) -> None:
    sales = two_years.sales.copy()
    sales[DATE] = sales[DATE].dt.to_period("M").dt.to_timestamp()
    monthly = sales.groupby([ITEM_ID, DATE], as_index=False)[SALES].sum()
    panel = validate_panel(monthly, two_years.items, freq="MS")
    folder = panel.save(tmp_path / "monthly")
    dates = panel.future_dates(panel.last_date, 13)
    forecast = pd.DataFrame(
        [(item, date, 5.0) for item in panel.item_ids for date in dates],
        columns=[ITEM_ID, DATE, "Model"],
    )
    forecast.to_csv(tmp_path / "forecast.csv", index=False)
    out = tmp_path / "trends"
    args = ["trends", "--panel", str(folder), "--forecasts", str(tmp_path / "forecast.csv")]
    assert invoke([*args, "--themes", "3", "--out", str(out)]) == 0
    report = json.loads((out / "trends.json").read_text())
    assert len(report["forecast_dates"]) == 12  # one season: growth vs a year earlier exists
    assert pd.read_csv(out / "trends.csv")["forecast_growth_yoy"].notna().any()
