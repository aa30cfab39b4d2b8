"""The Stallion loader: a tiny frame in the Stallion schema, the CLI, and the real file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from salesformer.cli.main import run
from salesformer.data.contract import Panel
from salesformer.data.stallion import (
    EVENTS,
    KNOWN_FUTURE,
    PAST_ONLY,
    STATIC,
    prepare_stallion,
)
from salesformer.errors import DataValidationError

STALLION = (
    Path(__file__).resolve().parents[2] / "shared" / "datasets" / "stallion" / "stallion.parquet"
)


def stallion_frame() -> pd.DataFrame:
    """Two agencies x two SKUs, six months, in the raw Stallion schema."""
    rows = []
    months = pd.date_range("2016-01-01", periods=6, freq="MS")
    for a, agency in enumerate(("Agency_01", "Agency_02")):
        for s, sku in enumerate(("SKU_01", "SKU_02")):
            for m, month in enumerate(months):
                regular = 100.0 + 10 * s
                actual = regular * (0.8 if m == 3 else 0.95)
                volume = 50.0 + a * 10 + m
                if (a, s) == (1, 1) and m in (0, 4):  # months without sales: prices are 0
                    volume, regular, actual = 0.0, 0.0, 0.0
                row = {
                    "agency": agency,
                    "sku": sku,
                    "date": month,
                    "volume": volume,
                    "industry_volume": 1_000_000 + m,
                    "soda_volume": 2_000_000 + m,
                    "avg_max_temp": 20.0 + m,
                    "price_regular": regular,
                    "price_actual": actual,
                    "discount": regular - actual,
                    "avg_population_2017": 1000 * (a + 1),
                    "avg_yearly_household_income_2017": 5000 * (a + 1),
                    "discount_in_percent": 0.0,
                    "timeseries": a * 2 + s,
                }
                row.update({event: float(event == "christmas" and m == 5) for event in EVENTS})
                rows.append(row)
    return pd.DataFrame(rows)


@pytest.fixture
def stallion_file(tmp_path: Path) -> Path:
    path = tmp_path / "stallion.parquet"
    stallion_frame().to_parquet(path, index=False)
    return path


def test_maps_the_schema_to_the_contract(stallion_file: Path) -> None:
    panel, report = prepare_stallion(stallion_file)
    assert panel.freq == "MS"
    assert set(panel.item_ids) == {
        "Agency_01/SKU_01",
        "Agency_01/SKU_02",
        "Agency_02/SKU_01",
        "Agency_02/SKU_02",
    }
    assert panel.known_future == KNOWN_FUTURE
    assert panel.past_only == PAST_ONLY
    first = panel.sales.set_index(["item_id", "date"]).loc[("Agency_01/SKU_02", "2016-04-01")]
    assert first["price"] == pytest.approx(110.0 * 0.8)
    assert first["price_regular"] == pytest.approx(110.0)
    assert first["discount"] == pytest.approx(0.2)
    assert first["sales"] == pytest.approx(53.0)
    assert report.items == 4 and report.months == 6 and report.agencies == 2 and report.skus == 2
    assert report.zero_volume_rows == 2
    assert report.prices_filled == 2


def test_zero_prices_of_months_without_sales_are_filled(stallion_file: Path) -> None:
    panel, _ = prepare_stallion(stallion_file)
    series = panel.sales[panel.sales["item_id"] == "Agency_02/SKU_02"].set_index("date")
    assert (series["price"] > 0).all() and (series["price_regular"] > 0).all()
    # the first month has no earlier price: it takes the next one; month 5 the previous one
    assert series.loc["2016-01-01", "price"] == pytest.approx(series.loc["2016-02-01", "price"])
    assert series.loc["2016-05-01", "price"] == pytest.approx(series.loc["2016-04-01", "price"])
    assert series.loc["2016-05-01", "sales"] == 0.0
    assert np.allclose(series["discount"], 1 - series["price"] / series["price_regular"])


def test_items_table_describes_only_what_exists(stallion_file: Path) -> None:
    panel, _ = prepare_stallion(stallion_file)
    items = panel.items.set_index("item_id")
    assert items.loc["Agency_02/SKU_01", "text"] == (
        "Beverage SKU_01. Sold through Agency_02. Category: Beverages."
    )
    assert set(STATIC) <= set(items.columns)
    assert items.loc["Agency_02/SKU_01", "avg_population_2017"] == 2000


def test_missing_column_is_named(tmp_path: Path) -> None:
    path = tmp_path / "broken.csv"
    stallion_frame().drop(columns=["price_actual"]).to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=r"not the Stallion table.*price_actual"):
        prepare_stallion(path)


@pytest.mark.parametrize("column", ["agency", "sku"])
def test_rows_without_a_code_are_an_error(tmp_path: Path, column: str) -> None:
    frame = stallion_frame()
    frame.loc[[0, 7], column] = [None, "  "]
    path = tmp_path / "blank.parquet"
    frame.to_parquet(path, index=False)
    with pytest.raises(DataValidationError, match=f"column '{column}': 2 rows have no code"):
        prepare_stallion(path)


def test_series_without_any_price_is_an_error(tmp_path: Path) -> None:
    frame = stallion_frame()
    unpriced = frame["sku"] == "SKU_01"
    frame.loc[unpriced, ["price_actual", "price_regular"]] = 0.0
    path = tmp_path / "unpriced.parquet"
    frame.to_parquet(path, index=False)
    with pytest.raises(DataValidationError, match="never have a positive price"):
        prepare_stallion(path)


def test_cli_prepare_stallion(stallion_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "panel"
    with pytest.raises(SystemExit) as info:
        run(["prepare", "stallion", "--source", str(stallion_file), "--out", str(out)])
    assert info.value.code in (0, None)
    panel = Panel.load(out)
    assert panel.known_future == KNOWN_FUTURE
    quality = json.loads((out / "quality.json").read_text())
    assert quality["prices_filled"] == 2


def test_cli_prepare_stallion_bad_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "panel"
    with pytest.raises(SystemExit) as info:
        run(
            ["prepare", "stallion", "--source", str(tmp_path / "absent.parquet"), "--out", str(out)]
        )
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]
    assert not out.exists()


def test_real_file() -> None:
    if not STALLION.is_file():
        pytest.skip(f"real dataset absent: {STALLION} (shared/datasets is not here)")
    panel, report = prepare_stallion(STALLION)
    assert report.items == 350 and report.months == 60
    assert (report.first_month, report.last_month) == ("2013-01-01", "2017-12-01")
    assert len(panel.sales) == 21_000
    assert (panel.sales["price"] > 0).all()
    assert panel.sales["discount"].between(0, 1).all()
    assert report.prices_filled > 0
