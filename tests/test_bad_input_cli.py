"""Bad input, as a careless user or a hostile file would give it, to every CLI command.

Each case asserts the promised answer: one line on stderr starting with ``error:``, no
traceback, exit code 2, and nothing written or lost (the folders involved are compared file
by file before and after). Model folders are in ``test_bad_input_models.py``, --out paths
in ``test_bad_input_outputs.py``.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bad_input_support import (
    H,
    empty_file,
    garbage_parquet,
    header_only,
    invoke,
    refused,
    snapshot,
    strict_json,
    write_csv,
)
from salesformer._io import json_text
from salesformer.data.contract import Panel, validate_panel
from salesformer.errors import DataValidationError

pytest_plugins = ["bad_input_support"]  # the panel, models and backtest fixtures


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALESFORMER_CACHE", str(tmp_path / "cache"))


# -- 1. infinite values ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value"),
    [("sales", np.inf), ("sales", -np.inf), ("price", np.inf), ("discount", -np.inf)],
)
def test_prepare_refuses_infinite_values(
    sales_frame: pd.DataFrame,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    column: str,
    value: float,
) -> None:
    frame = sales_frame.copy()
    frame.loc[3, column] = value
    source = write_csv(tmp_path / "sales.csv", frame)
    out = tmp_path / "panel"
    refused(
        ["prepare", "csv", "--sales", str(source), "--out", str(out)],
        capsys,
        f"column {column!r}",
        "infinite",
    )
    assert not out.exists()


def test_infinite_text_values_are_refused_too(sales_frame: pd.DataFrame) -> None:
    frame = sales_frame.astype({"sales": object})
    frame.loc[0, "sales"] = "inf"
    with pytest.raises(DataValidationError, match="infinite"):
        validate_panel(frame)


def test_future_covariates_must_be_finite(naive_dir: Path) -> None:
    from salesformer.models.persist import load_model

    model = load_model(naive_dir)
    dates = model.panel_.future_dates(model.panel_.last_date, H)
    future = pd.DataFrame(
        [
            {"item_id": i, "date": d, "price": np.inf, "discount": 0.0, "promo": 0.0}
            for i in model.panel_.item_ids
            for d in dates
        ]
    )
    with pytest.raises(DataValidationError, match="infinite"):
        model.predict(H, future=future)


def test_json_writers_write_strict_json() -> None:
    text = json_text({"wape": float("inf"), "rows": [float("nan"), 1.5], "n": 3})
    assert strict_json(text) == {"wape": None, "rows": [None, 1.5], "n": 3}


def test_backtest_metrics_are_strict_json(
    panel_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bt"
    args = ["backtest", "--panel", str(panel_dir), "--models", "Naive,WindowAverage"]
    code, _, err = invoke([*args, "--horizon", str(H), "--out", str(out)], capsys)
    assert code == 0, err
    summary = strict_json((out / "metrics.json").read_text())
    assert summary["horizon"] == H


# -- 3. tracebacks that must be one line ----------------------------------------------------


@pytest.mark.parametrize("horizon", ["0", "-1", "1001", "100000000"])
def test_predict_horizon_out_of_range(
    horizon: str, naive_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "f.csv"
    refused(
        ["predict", "--model", str(naive_dir), "--out", str(out), "--horizon", horizon],
        capsys,
        "horizon",
    )
    assert not out.exists()


def test_predict_lm_beyond_its_horizon(
    lm_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "f.csv"
    refused(["predict", "--model", str(lm_dir), "--out", str(out), "-h", "50"], capsys, "horizon")
    assert not out.exists()


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--horizon", "0"], "horizon"),
        (["--horizon", "39"], "history"),
        (["--horizon", "1000"], "horizon"),
        (["--horizon", "5000"], "horizon"),
        (["--cutoffs", "2022-13-45"], "is not a date"),
        (["--cutoffs", "yesterday"], "is not a date"),
        (["--cutoffs", "2022-06-07"], "not dates of the panel"),
        (["--cutoffs", "2022-10-03"], "fewer than"),
        (["--n-windows", "0"], "n_windows"),
        (["--n-windows", "500"], "more history"),
        (["--step", "0"], "step"),
        (["--models", "NoSuchModel"], "NoSuchModel"),
        (["--min-history", "-1"], "min-history"),
    ],
)
def test_backtest_bad_options(
    options: list[str],
    fragment: str,
    panel_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "bt"
    args = ["backtest", "--panel", str(panel_dir), "--models", "Naive", *options]
    refused([*args, "--out", str(out)], capsys, fragment)
    assert not out.exists()


@pytest.mark.parametrize("make", [empty_file, header_only, garbage_parquet])
@pytest.mark.parametrize("command", ["predict-new", "plan", "whatif", "whatif-baseline"])
def test_empty_or_broken_input_tables(
    command: str,
    make: Callable[[Path], Path],
    naive_dir: Path,
    lm_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    suffix = ".parquet" if make is garbage_parquet else ".csv"
    bad = make(tmp_path / f"input{suffix}")
    out = tmp_path / "result.csv"
    args = {
        "predict-new": ["predict", "--model", str(lm_dir), "--new-items", str(bad)],
        "plan": ["plan", "inventory", "--model", str(naive_dir), "--stock", str(bad)],
        "whatif": ["whatif", "--model", str(naive_dir), "--scenario", str(bad)],
        "whatif-baseline": [
            "whatif", "--model", str(naive_dir), "--price-change", "-0.1", "--baseline", str(bad)
        ],
    }[command]  # fmt: skip
    refused([*args, "--out", str(out)], capsys, str(bad))
    assert not out.exists()


@pytest.mark.parametrize("option", ["--panel", "--model"])
def test_missing_input_folders(
    option: str, panel_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "absent")
    out = tmp_path / "out"
    if option == "--panel":
        args = ["fit", "--panel", missing, "--model", "Naive", "--out", str(out)]
    else:
        args = ["predict", "--model", missing, "--out", str(tmp_path / "f.csv")]
    refused(args, capsys, "absent")
    assert not out.exists()


def test_a_broken_panel_file_is_one_line(
    panel_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "panel"
    shutil.copytree(panel_dir, broken)
    (broken / "panel.parquet").write_bytes(b"PAR1 truncated")
    out = tmp_path / "model"
    line = refused(["fit", "--panel", str(broken), "--model", "Naive", "--out", str(out)], capsys)
    assert "panel.parquet" in line
    assert not out.exists()


# -- 6. quiet degradation is said out loud --------------------------------------------------


def test_new_items_without_text_are_named_in_a_warning(
    lm_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = pd.DataFrame(
        {"item_id": ["N1", "N2", "N3"], "text": ["Red glass candle", "", None], "price": 5.0}
    )
    source = write_csv(tmp_path / "new.csv", new)
    out = tmp_path / "f.csv"
    code, _, err = invoke(
        ["predict", "--model", str(lm_dir), "--new-items", str(source), "--out", str(out)], capsys
    )
    assert code == 0 and out.is_file()
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "2 of 3 new items have no text" in warnings[0]
    assert "'N2'" in warnings[0] and "'N3'" in warnings[0] and "N1" not in warnings[0]


@pytest.mark.parametrize(("days", "weekday"), [(1, "TUE"), (2, "WED")])
def test_weekly_rows_on_several_weekdays_are_not_read_as_daily(
    days: int,
    weekday: str,
    sales_frame: pd.DataFrame,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    frame = sales_frame.copy()
    shifted = frame["item_id"].isin(["SKU00001", "SKU00003"])
    moved = pd.to_datetime(frame.loc[shifted, "date"]) + pd.Timedelta(days=days)
    frame.loc[shifted, "date"] = moved
    source = write_csv(tmp_path / "sales.csv", frame)
    out = tmp_path / "panel"
    refused(
        ["prepare", "csv", "--sales", str(source), "--out", str(out)],
        capsys,
        "--freq W-MON --aggregate",
        weekday,
    )
    assert not out.exists()
    args = ["prepare", "csv", "--sales", str(source), "--out", str(out), "--freq", "W-MON"]
    assert invoke([*args, "--aggregate"], capsys)[0] == 0
    panel = Panel.load(out)
    assert panel.freq == "W-MON" and len(panel.sales) <= len(frame)


@pytest.mark.parametrize(
    ("bad_id", "fragment"),
    [
        ("", "blank"),
        ("   ", "blank"),
        ("SKU\u200b1", "invisible"),
        ("SKU\t1", "control"),
        ("\ufeffSKU1", "invisible"),
    ],
)
def test_prepare_refuses_blank_and_invisible_ids(
    bad_id: str,
    fragment: str,
    sales_frame: pd.DataFrame,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    frame = sales_frame.copy()
    frame["item_id"] = frame["item_id"].replace("SKU00002", bad_id)
    source = tmp_path / "sales.parquet"
    frame.to_parquet(source, index=False)  # Parquet keeps the id exactly as given
    out = tmp_path / "panel"
    refused(["prepare", "csv", "--sales", str(source), "--out", str(out)], capsys, fragment)
    assert not out.exists()


def test_prepare_keeps_ids_with_slashes(
    sales_frame: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frame = sales_frame.copy()
    frame["item_id"] = frame["item_id"].replace("SKU00002", "85123A/RED")
    source = write_csv(tmp_path / "sales.csv", frame)
    out = tmp_path / "panel"
    assert invoke(["prepare", "csv", "--sales", str(source), "--out", str(out)], capsys)[0] == 0
    assert "85123A/RED" in set(Panel.load(out).item_ids)


def test_the_items_table_refuses_invisible_ids(sales_frame: pd.DataFrame) -> None:
    items = pd.DataFrame({"item_id": ["SKU00000\u200b"], "text": ["Mug"]})
    with pytest.raises(DataValidationError, match="invisible"):
        validate_panel(sales_frame, items)


# -- wider: the other commands and the files they read --------------------------------------


STOCK_TABLES = {
    "infinite on_hand": ("item_id,on_hand,lead_time\nSKU00001,inf,2\n", "on_hand"),
    "negative on_hand": ("item_id,on_hand,lead_time\nSKU00001,-5,2\n", "on_hand"),
    "lead time of 10^8 weeks": ("item_id,on_hand,lead_time\nSKU00001,5,100000000\n", "lead_time"),
    "text lead time": ("item_id,on_hand,lead_time\nSKU00001,5,soon\n", "lead_time"),
    "no lead_time column": ("item_id,on_hand\nSKU00001,5\n", "lead_time"),
}


@pytest.mark.parametrize("case", list(STOCK_TABLES))
def test_plan_bad_stock_tables(
    case: str, naive_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, fragment = STOCK_TABLES[case]
    stock = tmp_path / "stock.csv"
    stock.write_text(text)
    out = tmp_path / "plan.csv"
    refused(
        ["plan", "inventory", "--model", str(naive_dir), "--stock", str(stock), "--out", str(out)],
        capsys,
        fragment,
    )
    assert not out.exists()


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        (lambda f: (f / "metrics.json").write_text("{bad"), "metrics.json"),
        (lambda f: (f / "forecasts.parquet").write_bytes(b"PAR1 cut"), "forecasts.parquet"),
        (lambda f: (f / "forecasts.parquet").unlink(), "forecasts.parquet"),
    ],
)
def test_report_on_a_damaged_backtest(
    damage: Callable[[Path], None],
    fragment: str,
    backtest_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    folder = tmp_path / "bt"
    shutil.copytree(backtest_dir, folder)
    damage(folder)
    out = tmp_path / "r.html"
    refused(["report", "--backtest", str(folder), "--out", str(out)], capsys, fragment)
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["explain", "--item", "NOPE"], "NOPE"),
        (["explain", "--item", "SKU00001", "--horizon", "100000"], "horizon"),
        (["explain", "--item", "SKU00001", "--json", "out.txt"], "--json"),
        (["whatif", "--price-change", "inf", "--out", "w.csv"], "--price-change"),
        (["whatif", "--price-change", "-100%", "--out", "w.csv"], "--price-change"),
        (["whatif", "--price-change", "-0.1", "-h", "100000", "--out", "w.csv"], "horizon"),
        (["predict", "--out", "forecast.txt"], "--out"),
    ],
)
def test_model_commands_bad_options(
    args: list[str],
    fragment: str,
    naive_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path)
    refused([args[0], "--model", str(naive_dir), *args[1:]], capsys, fragment)
    assert {k: v for k, v in snapshot(tmp_path).items() if "cache" not in k} == {
        k: v for k, v in before.items() if "cache" not in k
    }


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--model", "Naive", "--set", "bogus=1"], "bogus"),
        (["--model", "LightGBM", "--set", "num_leaves=100000000"], "num_leaves"),
        (["--model", "lm", "--horizon", "100000"], "horizon"),
        (["--model", "Naive", "--until", "1999-01-01"], "--until"),
        (["--model", "Naive", "--until", "someday"], "--until"),
        (["--model", "NoSuchModel"], "NoSuchModel"),
    ],
)
def test_fit_bad_options(
    args: list[str],
    fragment: str,
    panel_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "model"
    refused(["fit", "--panel", str(panel_dir), *args, "--out", str(out)], capsys, fragment)
    assert not out.exists()


def test_recommend_empty_lines_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lines = empty_file(tmp_path / "lines.csv")
    out = tmp_path / "rec.csv"
    refused(["recommend", "--lines", str(lines), "--out", str(out)], capsys, "lines.csv")
    assert not out.exists()


@pytest.mark.parametrize("bad_id", ["", "NEW\u200b1", None])
def test_new_items_with_blank_or_invisible_ids(
    bad_id: str | None, lm_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    new = pd.DataFrame({"item_id": ["NEW0", bad_id], "text": ["Mug", "Cup"], "price": [4.0, 5.0]})
    source = tmp_path / "new.parquet"
    new.to_parquet(source, index=False)
    out = tmp_path / "f.csv"
    refused(
        ["predict", "--model", str(lm_dir), "--new-items", str(source), "--out", str(out)],
        capsys,
        "new items",
    )
    assert not out.exists()
