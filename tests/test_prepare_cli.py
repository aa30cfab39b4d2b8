"""``salesformer prepare online-retail`` and ``salesformer prepare csv`` through the entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from salesformer.cli.main import run
from salesformer.data.contract import Panel
from test_online_retail import EXPECTED, invoice_lines


def call(argv: list[str]) -> int:
    """Run the CLI like the console script does; return its exit code."""
    try:
        run(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)
    return 0


def assert_one_line_error(capsys: pytest.CaptureFixture[str], *fragments: str) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


@pytest.fixture
def lines_file(tmp_path: Path) -> Path:
    path = tmp_path / "lines.parquet"
    invoice_lines().to_parquet(path, index=False)
    return path


@pytest.fixture
def sales_file(tmp_path: Path) -> Path:
    path = tmp_path / "orders.csv"
    pd.DataFrame(
        {
            "sku": ["007", "007", "007", "B2"],
            "ordered_at": [
                "2024-01-01 09:00",
                "2024-01-03 10:00",
                "2024-01-16 11:00",
                "2024-01-02",
            ],
            "qty": [1, 2, 5, 4],
            "price": [10.0, 8.0, 9.0, 3.0],
        }
    ).to_csv(path, index=False)
    return path


@pytest.fixture
def items_file(tmp_path: Path) -> Path:
    path = tmp_path / "items.csv"
    pd.DataFrame(
        {"sku": ["007", "B2"], "name": ["Red mug", "Tea towel"], "blurb": ["Stoneware.", None]}
    ).to_csv(path, index=False)
    return path


def test_online_retail_writes_the_panel_folder(
    lines_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "panel"
    assert call(["prepare", "online-retail", "--source", str(lines_file), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        ".salesformer-out.json",  # the owner file: salesformer wrote this folder
        "items.parquet",
        "outliers.csv",
        "panel.json",
        "panel.parquet",
        "quality.json",
    ]
    quality = json.loads((out / "quality.json").read_text())
    assert quality["source"] == str(lines_file)
    for name, value in EXPECTED.items():
        assert quality[name] == value, name
    outliers = pd.read_csv(out / "outliers.csv", dtype={"invoice": str, "item_id": str})
    assert outliers[["invoice", "item_id", "quantity"]].values.tolist() == [
        ["489501", "79323P", 240]
    ]
    panel = Panel.load(out)
    assert len(panel.item_ids) == EXPECTED["items"]
    assert panel.past_only == ("price", "discount", "orders", "customers")
    stdout = capsys.readouterr().out
    assert "dropped sheet overlap" in stdout and f"wrote {out}" in stdout


def test_online_retail_missing_source_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "panel"
    missing = tmp_path / "absent.xlsx"
    code = call(["prepare", "online-retail", "--source", str(missing), "--out", str(out)])
    assert code == 2
    assert_one_line_error(capsys, "absent.xlsx", "does not exist")
    assert not out.exists()


def test_online_retail_bad_checksum_keeps_the_old_folder(
    lines_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "panel"
    out.mkdir()
    (out / "panel.parquet").write_text("previous run")
    owner = '{"written_by": "salesformer", "kind": "panel", "files": ["panel.parquet"]}'
    (out / ".salesformer-out.json").write_text(owner)  # a folder an earlier run wrote
    argv = ["prepare", "online-retail", "--source", str(lines_file), "--out", str(out)]
    assert call([*argv, "--sha256", "0" * 64]) == 2
    assert_one_line_error(capsys, "sha256 mismatch", "--sha256")
    assert sorted(p.name for p in out.iterdir()) == [".salesformer-out.json", "panel.parquet"]
    assert (out / "panel.parquet").read_text() == "previous run"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".panel")] == []


def test_csv_aggregates_and_builds_text(
    sales_file: Path, items_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "panel"
    argv = [
        "prepare", "csv", "--sales", str(sales_file), "--items", str(items_file),
        "--out", str(out), "--item-col", "sku", "--date-col", "ordered_at", "--sales-col", "qty",
        "--text-cols", "name, blurb", "--freq", "W-MON", "--aggregate",
    ]  # fmt: skip
    assert call(argv) == 0
    panel = Panel.load(out)
    sales = panel.sales.set_index(["item_id", "date"])["sales"]
    assert sales[("007", pd.Timestamp("2024-01-01"))] == 3
    assert sales[("007", pd.Timestamp("2024-01-08"))] == 0
    assert sales[("007", pd.Timestamp("2024-01-15"))] == 5
    assert panel.items is not None
    assert panel.items.set_index("item_id").loc["007", "text"] == "Red mug. Stoneware."
    quality = json.loads((out / "quality.json").read_text())
    assert (quality["source_rows"], quality["aggregated_rows"], quality["freq"]) == (4, 3, "W-MON")
    assert sorted(p.name for p in out.iterdir()) == [
        ".salesformer-out.json",  # the owner file: salesformer wrote this folder
        "items.parquet",
        "panel.json",
        "panel.parquet",
        "quality.json",
    ]
    assert f"wrote {out}" in capsys.readouterr().out


def test_csv_roles_flags(sales_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "panel"
    argv = [
        "prepare", "csv", "--sales", str(sales_file), "--out", str(out), "--item-col", "sku",
        "--date-col", "ordered_at", "--sales-col", "qty", "--aggregate", "--past-only", "price",
    ]  # fmt: skip
    assert call(argv) == 0
    panel = Panel.load(out)
    assert panel.past_only == ("price",) and panel.known_future == ()
    assert not (out / "items.parquet").exists()


def test_csv_missing_column_is_one_line_naming_the_flag(
    sales_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "panel"
    argv = ["prepare", "csv", "--sales", str(sales_file), "--out", str(out), "--item-col", "sku"]
    assert call(argv) == 2
    assert_one_line_error(capsys, "'date'", "got columns", "--date-col")
    assert not out.exists()


def test_csv_negative_sales_flag(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "weekly.csv"
    pd.DataFrame(
        {"item_id": ["a", "a"], "date": ["2024-01-01", "2024-01-08"], "sales": [2, -1]}
    ).to_csv(path, index=False)
    out = tmp_path / "panel"
    base = ["prepare", "csv", "--sales", str(path), "--out", str(out)]
    assert call(base) == 2
    assert_one_line_error(capsys, "negative values", "--negative-sales clip")
    assert not out.exists()
    assert call([*base, "--negative-sales", "sometimes"]) == 2
    assert_one_line_error(capsys, "'error' or 'clip'; got 'sometimes'")
    assert not out.exists()
    assert call([*base, "--negative-sales", "clip"]) == 0
    assert Panel.load(out).sales["sales"].tolist() == [2, 0]


def test_csv_bad_text_cols_writes_nothing(
    sales_file: Path, items_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "panel"
    argv = [
        "prepare", "csv", "--sales", str(sales_file), "--items", str(items_file),
        "--out", str(out), "--item-col", "sku", "--date-col", "ordered_at", "--sales-col", "qty",
        "--aggregate", "--text-cols", "title",
    ]  # fmt: skip
    assert call(argv) == 2
    assert_one_line_error(capsys, "['title'] missing", "--text-cols")
    assert not out.exists()


def test_prepare_help_lists_both_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert call(["prepare", "--help"]) == 0
    out = capsys.readouterr().out
    assert "online-retail" in out and "csv" in out
