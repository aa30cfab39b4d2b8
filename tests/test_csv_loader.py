"""``prepare_csv``: column mapping, aggregation of transactions, items text, validation paths."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from salesformer.data.csv_loader import load_items, period_start, prepare_csv
from salesformer.errors import ConfigError, DataValidationError


def write(frame: pd.DataFrame, path: Path) -> Path:
    if path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


@pytest.fixture
def weekly_file(tmp_path: Path) -> Path:
    """Weekly rows with the shop's own column names and a missing week for item 00123."""
    frame = pd.DataFrame(
        {
            "sku": ["00123", "00123", "00123", "B7", "B7"],
            "week": ["2024-01-01", "2024-01-08", "2024-01-22", "2024-01-15", "2024-01-22"],
            "units": [3, 5, 2, 7, 1],
            "price": [9.5, 9.5, 8.0, 4.0, 4.0],
            "views": [30, 41, 25, 70, 12],
        }
    )
    return write(frame, tmp_path / "weekly.csv")


@pytest.fixture
def transactions_file(tmp_path: Path) -> Path:
    """Order lines with timestamps: several per item and week."""
    frame = pd.DataFrame(
        {
            "product": ["A", "A", "A", "B", "B"],
            "ordered_at": [
                "2024-01-01 09:15",  # Monday
                "2024-01-07 23:59",  # Sunday, same week
                "2024-01-10 12:00",  # next week
                "2024-01-03 08:00",
                "2024-01-04 08:00",
            ],
            "qty": [1, 2, 4, 5, 5],
            "price": [10.0, 8.0, 9.0, 3.0, 5.0],
            "views": [10, 20, 40, 5, 5],
        }
    )
    return write(frame, tmp_path / "orders.csv")


def test_columns_are_mapped_and_gaps_become_zero_sales(weekly_file: Path) -> None:
    panel = prepare_csv(weekly_file, item_col="sku", date_col="week", sales_col="units")
    assert list(panel.sales.columns) == ["item_id", "date", "sales", "price", "views"]
    assert panel.freq == "W-MON"
    assert panel.known_future == ("price",) and panel.past_only == ("views",)
    item = panel.sales[panel.sales["item_id"] == "00123"].set_index("date")
    assert item.loc["2024-01-15", "sales"] == 0  # the missing week
    assert item.loc["2024-01-15", "price"] == 9.5  # covariate carried forward
    assert panel.report["source_rows"] == 5
    assert panel.report["rows_filled"] == 1


def test_parquet_input_gives_the_same_panel(weekly_file: Path, tmp_path: Path) -> None:
    frame = pd.read_csv(weekly_file, dtype={"sku": str})
    parquet = write(frame, tmp_path / "weekly.parquet")
    names = {"item_col": "sku", "date_col": "week", "sales_col": "units"}
    from_csv = prepare_csv(weekly_file, **names)
    from_parquet = prepare_csv(parquet, **names)
    pd.testing.assert_frame_equal(from_csv.sales, from_parquet.sales)


@pytest.mark.parametrize(
    ("option", "value", "flag"),
    [
        ("item_col", "item", "--item-col"),
        ("date_col", "day", "--date-col"),
        ("sales_col", "qty", "--sales-col"),
    ],
)
def test_missing_column_names_it_and_the_flag(
    weekly_file: Path, option: str, value: str, flag: str
) -> None:
    names = {"item_col": "sku", "date_col": "week", "sales_col": "units", option: value}
    with pytest.raises(DataValidationError) as error:
        prepare_csv(weekly_file, **names)
    message = str(error.value)
    assert repr(value) in message
    assert "got columns ['sku', 'week', 'units', 'price', 'views']" in message
    assert flag in message


def test_renaming_onto_an_existing_column_is_refused(tmp_path: Path) -> None:
    frame = pd.DataFrame({"item_id": ["a"], "date": ["2024-01-01"], "sales": [1], "units": [2]})
    path = write(frame, tmp_path / "s.csv")
    with pytest.raises(DataValidationError, match="'units' would be renamed to 'sales'"):
        prepare_csv(path, sales_col="units")


def test_same_column_twice_is_refused(weekly_file: Path) -> None:
    with pytest.raises(DataValidationError, match="must differ"):
        prepare_csv(weekly_file, item_col="sku", date_col="week", sales_col="week")


def test_aggregate_sums_sales_averages_prices_and_sums_counts(transactions_file: Path) -> None:
    panel = prepare_csv(
        transactions_file,
        item_col="product",
        date_col="ordered_at",
        sales_col="qty",
        aggregate=True,
    )
    assert panel.freq == "W-MON"
    rows = panel.sales.set_index(["item_id", "date"])
    first = rows.loc[("A", pd.Timestamp("2024-01-01"))]
    assert (first["sales"], first["price"], first["views"]) == (3, 9.0, 30)
    second = rows.loc[("A", pd.Timestamp("2024-01-08"))]
    assert (second["sales"], second["price"], second["views"]) == (4, 9.0, 40)
    assert rows.loc[("B", pd.Timestamp("2024-01-01")), "sales"] == 10
    assert panel.report["source_rows"] == 5 and panel.report["aggregated_rows"] == 3


def test_freq_with_timestamps_aggregates_on_that_anchor(transactions_file: Path) -> None:
    panel = prepare_csv(
        transactions_file, item_col="product", date_col="ordered_at", sales_col="qty", freq="w-sun"
    )
    assert panel.freq == "W-SUN"
    assert (panel.sales["date"].dt.weekday == 6).all()
    a = panel.sales[panel.sales["item_id"] == "A"].set_index("date")["sales"]
    # Sunday-start weeks: 2023-12-31 holds Jan 1; 2024-01-07 holds Jan 7 and Jan 10
    assert a.to_dict() == {pd.Timestamp("2023-12-31"): 1, pd.Timestamp("2024-01-07"): 6}


def test_declared_roles_choose_mean_or_sum(transactions_file: Path) -> None:
    panel = prepare_csv(
        transactions_file,
        item_col="product",
        date_col="ordered_at",
        sales_col="qty",
        aggregate=True,
        known_future=["views"],
        past_only=["price"],
    )
    first = panel.sales.set_index(["item_id", "date"]).loc[("A", pd.Timestamp("2024-01-01"))]
    assert (first["price"], first["views"]) == (18.0, 15.0)  # price summed, views averaged
    assert panel.known_future == ("views",) and panel.past_only == ("price",)


def test_period_start() -> None:
    stamps = pd.Series(pd.to_datetime(["2024-02-29 13:00", "2024-03-03 00:00"]))
    assert list(period_start(stamps, "MS")) == [
        pd.Timestamp("2024-02-01"),
        pd.Timestamp("2024-03-01"),
    ]
    assert list(period_start(stamps, "D")) == [
        pd.Timestamp("2024-02-29"),
        pd.Timestamp("2024-03-03"),
    ]
    assert list(period_start(stamps, "W-MON")) == [
        pd.Timestamp("2024-02-26"),
        pd.Timestamp("2024-02-26"),
    ]
    with pytest.raises(ConfigError, match="cannot aggregate to frequency 'W-XYZ'"):
        period_start(stamps, "W-XYZ")


def test_timestamps_without_aggregate_are_refused(transactions_file: Path) -> None:
    with pytest.raises(DataValidationError, match="carry a time of day"):
        prepare_csv(transactions_file, item_col="product", date_col="ordered_at", sales_col="qty")


def test_unparseable_dates_when_aggregating(tmp_path: Path) -> None:
    frame = pd.DataFrame({"item_id": ["a", "a"], "date": ["2024-01-01", "soon"], "sales": [1, 2]})
    path = write(frame, tmp_path / "s.csv")
    with pytest.raises(DataValidationError, match=r"1 values are not dates.*'soon'"):
        prepare_csv(path, aggregate=True)


def test_non_numeric_covariate_when_aggregating(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"item_id": ["a"], "date": ["2024-01-01 10:00"], "sales": [1], "store": ["Leeds"]}
    )
    path = write(frame, tmp_path / "s.csv")
    with pytest.raises(DataValidationError, match=r"column 'store': 1 values are not numbers"):
        prepare_csv(path, aggregate=True)


def test_negative_sales_policy(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"item_id": ["a", "a"], "date": ["2024-01-01", "2024-01-08"], "sales": [3, -1]}
    )
    path = write(frame, tmp_path / "s.csv")
    with pytest.raises(DataValidationError, match="negative values"):
        prepare_csv(path)
    clipped = prepare_csv(path, negative_sales="clip")
    assert clipped.sales["sales"].tolist() == [3, 0]
    assert clipped.report["negative_sales_clipped"] == 1
    with pytest.raises(ConfigError, match="'error' or 'clip'; got 'drop'"):
        prepare_csv(path, negative_sales="drop")  # type: ignore[arg-type]


def test_items_text_from_columns_in_template_order(weekly_file: Path, tmp_path: Path) -> None:
    items = pd.DataFrame(
        {
            "sku": ["00123", "B7", "NEW1"],
            "name": ["Mug", "Tea towel", "Candle"],
            "blurb": ["Stoneware, 300 ml", None, "Soy wax"],
            "cat": ["Kitchen", "Kitchen", "Home"],
        }
    )
    items_path = write(items, tmp_path / "items.csv")
    panel = prepare_csv(
        weekly_file,
        items_path=items_path,
        item_col="sku",
        date_col="week",
        sales_col="units",
        text_cols=["name", "blurb", "cat"],
    )
    assert panel.items is not None
    text = panel.items.set_index("item_id")["text"]
    assert text["00123"] == "Mug. Stoneware, 300 ml. Category: Kitchen."
    assert text["B7"] == "Tea towel. Category: Kitchen."
    assert "NEW1" in text.index  # an item not sold yet keeps its text (cold start)


def test_items_text_column_or_template_names(tmp_path: Path) -> None:
    with_text = write(pd.DataFrame({"item_id": ["a"], "text": ["Red mug"]}), tmp_path / "t.csv")
    assert load_items(with_text)["text"].tolist() == ["Red mug"]
    named = write(
        pd.DataFrame({"item_id": ["a"], "title": ["Mug"], "category": ["Kitchen"]}),
        tmp_path / "n.csv",
    )
    assert load_items(named)["text"].tolist() == ["Mug. Category: Kitchen."]


def test_items_validation_paths(tmp_path: Path) -> None:
    no_text = write(pd.DataFrame({"item_id": ["a"], "colour": ["red"]}), tmp_path / "a.csv")
    with pytest.raises(DataValidationError, match=r"no 'text' column.*--text-cols"):
        load_items(no_text)
    with pytest.raises(DataValidationError, match=r"text column\(s\) \['name'\] missing"):
        load_items(no_text, text_cols=["name"])
    with pytest.raises(DataValidationError, match="item column 'sku' is missing"):
        load_items(no_text, item_col="sku")
    clash = write(pd.DataFrame({"sku": ["a"], "item_id": ["b"], "text": ["t"]}), tmp_path / "c.csv")
    with pytest.raises(DataValidationError, match="'sku' would be renamed to 'item_id'"):
        load_items(clash, item_col="sku")


@pytest.mark.parametrize("text_cols", [[], ["a", "b", "c", "d", "e"]])
def test_text_cols_count_is_checked(weekly_file: Path, text_cols: list[str]) -> None:
    with pytest.raises(ConfigError, match="text_cols takes 1 to 4 columns"):
        prepare_csv(weekly_file, text_cols=text_cols)


def test_unknown_items_are_reported(weekly_file: Path, tmp_path: Path) -> None:
    items = write(pd.DataFrame({"sku": ["00123"], "text": ["Mug"]}), tmp_path / "items.csv")
    with pytest.raises(DataValidationError, match=r"not in the items table.*'B7'"):
        prepare_csv(
            weekly_file, items_path=items, item_col="sku", date_col="week", sales_col="units"
        )


def test_unsupported_extension(tmp_path: Path) -> None:
    path = tmp_path / "sales.xlsx"
    path.write_text("x")
    with pytest.raises(DataValidationError, match=r"use a \.csv .* or \.parquet file"):
        prepare_csv(path)


def test_unreadable_parquet(tmp_path: Path) -> None:
    path = tmp_path / "sales.parquet"
    path.write_text("not parquet")
    with pytest.raises(DataValidationError, match=r"could not read .* as Parquet"):
        prepare_csv(path)
