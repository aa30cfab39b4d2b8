"""The command line: light start-up, one-line errors with exit code 2, backtest and demo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from salesformer.cli.main import run
from salesformer.data.contract import Panel

HEAVY = ("torch", "transformers", "lightgbm", "statsforecast", "opacus")


def _invoke(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        run(args)
    captured = capsys.readouterr()
    code = info.value.code if isinstance(info.value.code, int) else 1
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    "code",
    [
        "import salesformer",
        "from salesformer.cli.main import run; run(['--help'])",
        "from salesformer.cli.main import run; run(['backtest', '--help'])",
        "from salesformer.cli.main import run; run(['fit', '--help'])",
        "from salesformer.cli.main import run; run(['predict', '--help'])",
    ],
)
def test_start_up_imports_no_heavy_package(code: str) -> None:
    probe = (
        "import sys\ntry:\n    " + code.replace("; ", "\n    ") + "\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "HEAVY=" in done.stdout, done.stdout
    assert done.stdout.rsplit("HEAVY=", 1)[1].strip() == "", done.stdout


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import salesformer

    code, out, _ = _invoke(["--version"], capsys)
    assert code == 0 and out.strip() == f"salesformer {salesformer.__version__}"


def test_backtest_writes_outputs(
    small_panel: Panel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small_panel.save(tmp_path / "panel")
    out = tmp_path / "bt"
    code, stdout, err = _invoke(
        [
            "backtest",
            "--panel",
            str(tmp_path / "panel"),
            "--models",
            "naive,SeasonalNaive",
            "--horizon",
            "4",
            "--n-windows",
            "2",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert code == 0, err
    forecasts = pd.read_parquet(out / "forecasts.parquet")
    assert {"item_id", "cutoff", "date", "y", "Naive", "SeasonalNaive-q90"} <= set(
        forecasts.columns
    )
    summary = json.loads((out / "metrics.json").read_text())
    assert {row["model"] for row in summary["overall"]} == {"Naive", "SeasonalNaive"}
    assert "wape" in stdout


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--models", "Prophet"], "unknown model 'Prophet'"),
        (["--cutoffs", "1999-01-04"], "not dates of the panel"),
        (["--horizon", "0"], "horizon"),
    ],
)
def test_backtest_bad_input_is_one_line_exit_2(
    small_panel: Panel,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    fragment: str,
) -> None:
    small_panel.save(tmp_path / "panel")
    out = tmp_path / "bt"
    code, _, err = _invoke(
        ["backtest", "--panel", str(tmp_path / "panel"), "--out", str(out), *extra], capsys
    )
    assert code == 2
    assert fragment in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_backtest_missing_panel_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _invoke(
        ["backtest", "--panel", str(tmp_path / "nope"), "--out", str(tmp_path / "o")], capsys
    )
    assert code == 2 and "no panel.parquet" in err


def test_demo_end_to_end(
    tiny_encoder: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SALESFORMER_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--items", "30", "--quick", "--encoder", tiny_encoder]
    code, stdout, err = _invoke(args, capsys)
    assert code == 0, err
    panel = Panel.load(out / "panel")
    new_items = pd.read_csv(out / "new_items.csv", parse_dates=["launch_date"])
    assert len(new_items) == 3 and len(panel.item_ids) == 30 - 3
    assert not set(new_items["item_id"]) & set(panel.item_ids)  # held out of the panel entirely
    summary = json.loads((out / "backtest" / "metrics.json").read_text())
    models = {row["model"] for row in summary["overall"]}
    assert {"SeasonalNaive", "AutoETS", "LightGBM", "TSB", "LM"} <= models
    assert all(row["wape"] > 0 for row in summary["overall"])
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["model"] == "LM" and config["params"]["finetune"] == "lora"
    forecasts = pd.read_csv(out / "new_item_forecasts.csv", parse_dates=["date"])
    assert len(forecasts) == 3 * 8 and forecasts["y"].notna().all()
    starts = forecasts.groupby("item_id")["date"].min()
    assert (starts == new_items.set_index("item_id")["launch_date"].reindex(starts.index)).all()
    assert "SeasonalNaive" in stdout and "New products" in stdout
    report = (out / "report.html").read_text()
    assert "Model comparison" in report and "LightGBM" in report
    assert "report.html" in stdout
