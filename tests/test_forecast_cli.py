"""``salesformer fit`` / ``predict`` (and ``backtest --models lm``): round trips and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from salesformer.cli.main import run
from salesformer.data.contract import Panel
from salesformer.models.registry import make_model

H = 4
UNTIL = "2023-04-03"
LAUNCH = "2023-09-04"


def lm_options(encoder: str, prefix: str = "") -> list[str]:
    """``--encoder`` and ``--set`` options of an LM that fits in seconds."""
    settings = {
        "head_epochs": 3,
        "finetune_epochs": 1,
        "epoch_samples": 500,
        "hidden_size": 32,
        "threads": 1,
    }
    options = ["--encoder", encoder]
    for key, value in settings.items():
        options += ["--set", f"{prefix}{key}={value}"]
    return options


def invoke(args: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        run(args)
    return info.value.code if isinstance(info.value.code, int) else 1


def _invoke(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = invoke(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(autouse=True)
def embedding_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALESFORMER_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def panel_dir(small_panel: Panel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_panel.save(tmp_path_factory.mktemp("panel"))


@pytest.fixture(scope="module")
def lm_dir(panel_dir: Path, tiny_encoder: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An LM fitted and saved by ``salesformer fit`` (horizon 4, LoRA)."""
    out = tmp_path_factory.mktemp("lm") / "model"
    args = ["fit", "--panel", str(panel_dir), "--model", "lm", "--horizon", str(H)]
    assert invoke([*args, *lm_options(tiny_encoder), "--out", str(out)]) == 0
    return out


@pytest.fixture
def new_items_csv(tmp_path: Path) -> Path:
    frame = pd.DataFrame(
        {
            "item_id": ["NEW1", "NEW2", "NEW3"],
            "text": ["Luxury Glass Christmas Candle", "Budget Cotton Tote", "Garden Mug"],
            "price": [24.0, 6.5, None],
            "launch_date": [LAUNCH, LAUNCH, None],
        }
    )
    path = tmp_path / "new.csv"
    frame.to_csv(path, index=False)
    return path


def test_fit_until_then_predict_matches_the_library(
    panel_dir: Path, small_panel: Panel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model_dir = tmp_path / "model"
    code, out, err = _invoke(
        [
            "fit",
            "--panel",
            str(panel_dir),
            "--model",
            "seasonalnaive",
            "--until",
            UNTIL,
            "--out",
            str(model_dir),
        ],
        capsys,
    )
    assert code == 0, err
    assert "fitted SeasonalNaive" in out
    assert json.loads((model_dir / "config.json").read_text())["model"] == "SeasonalNaive"
    forecast_file = tmp_path / "forecast.csv"
    code, _, err = _invoke(
        ["predict", "--model", str(model_dir), "--out", str(forecast_file)], capsys
    )
    assert code == 0, err
    forecast = pd.read_csv(forecast_file, parse_dates=["date"])
    expected = make_model("SeasonalNaive").fit(small_panel.until(UNTIL)).predict(8)
    assert forecast["date"].min() == pd.Timestamp(UNTIL) + pd.Timedelta(weeks=1)
    assert len(forecast) == len(small_panel.until(UNTIL).item_ids) * 8
    pd.testing.assert_frame_equal(forecast, expected, check_dtype=False)


def test_lm_predicts_its_panel_and_new_items(
    lm_dir: Path,
    small_panel: Panel,
    new_items_csv: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = json.loads((lm_dir / "config.json").read_text())
    assert config["model"] == "LM" and config["params"]["horizon"] == H
    assert config["params"]["finetune"] == "lora"

    panel_file = tmp_path / "panel_forecast.parquet"
    code, _, err = _invoke(["predict", "--model", str(lm_dir), "--out", str(panel_file)], capsys)
    assert code == 0, err
    assert len(pd.read_parquet(panel_file)) == len(small_panel.item_ids) * H

    out = tmp_path / "new.parquet"
    args = ["predict", "--model", str(lm_dir), "--new-items", str(new_items_csv)]
    code, _, err = _invoke([*args, "--out", str(out)], capsys)
    assert code == 0, err
    forecast = pd.read_parquet(out)
    assert len(forecast) == 3 * H
    assert {"item_id", "date", "LM", "LM-q10", "LM-q90"} <= set(forecast.columns)
    first = forecast.groupby("item_id")["date"].min()
    assert first["NEW1"] == first["NEW2"] == pd.Timestamp(LAUNCH)
    assert first["NEW3"] == small_panel.last_date + pd.Timedelta(weeks=1)  # no launch date


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["fit", "--model", "Prophet"], "unknown model 'Prophet'"),
        (["fit", "--model", "Naive", "--until", "someday"], "--until must be a date"),
        (["fit", "--model", "Naive", "--until", "1999-01-04"], "before the panel's first date"),
        (["fit", "--model", "Naive", "--finetune", "lora"], "apply to the models lm and auto"),
        (["fit", "--model", "lm", "--finetune", "half"], "--finetune must be one of"),
        (["fit", "--model", "Naive", "--set", "windowsize=3"], "does not take the settings"),
    ],
)
def test_fit_bad_input_is_one_line_exit_2(
    panel_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    fragment: str,
) -> None:
    out = tmp_path / "model"
    code, _, err = _invoke([*args, "--panel", str(panel_dir), "--out", str(out)], capsys)
    assert code == 2, err
    assert fragment in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_predict_bad_input_is_one_line_exit_2(
    lm_dir: Path,
    panel_dir: Path,
    new_items_csv: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    no_text = tmp_path / "no_text.csv"
    pd.read_csv(new_items_csv).drop(columns="text").to_csv(no_text, index=False)
    naive_dir = tmp_path / "naive"
    assert (
        invoke(["fit", "--panel", str(panel_dir), "--model", "Naive", "--out", str(naive_dir)]) == 0
    )
    capsys.readouterr()
    out = tmp_path / "forecast.csv"
    cases = [
        (["--model", str(lm_dir), "--new-items", str(no_text)], "'text' column"),
        (["--model", str(lm_dir), "--horizon", "6"], "cannot forecast 6 periods"),
        (["--model", str(tmp_path / "nowhere")], "does not exist"),
        (["--model", str(panel_dir)], "no config.json"),
        (["--model", str(naive_dir), "--new-items", str(new_items_csv)], "new items"),
        (["--model", str(lm_dir), "--new-items", str(tmp_path / "x.csv")], "no such file"),
    ]
    for args, fragment in cases:
        code, _, err = _invoke(["predict", *args, "--out", str(out)], capsys)
        assert code == 2, (args, err)
        assert fragment in err, (args, err)
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert not out.exists()
    bad_suffix = tmp_path / "forecast.xlsx"
    code, _, err = _invoke(["predict", "--model", str(lm_dir), "--out", str(bad_suffix)], capsys)
    assert code == 2 and "must end in .csv or .parquet" in err
    assert not bad_suffix.exists()


def test_backtest_runs_the_lm_by_name(
    panel_dir: Path, tiny_encoder: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bt"
    code, stdout, err = _invoke(
        [
            "backtest",
            "--panel",
            str(panel_dir),
            "--models",
            "lm,naive",
            "--horizon",
            str(H),
            "--finetune",
            "frozen",
            *lm_options(tiny_encoder, prefix="lm."),
            "--out",
            str(out),
        ],
        capsys,
    )
    assert code == 0, err
    summary = json.loads((out / "metrics.json").read_text())
    assert {row["model"] for row in summary["overall"]} == {"LM", "Naive"}
    forecasts = pd.read_parquet(out / "forecasts.parquet")
    assert forecasts["LM"].notna().all() and (forecasts["LM-q90"] >= forecasts["LM-q10"]).all()
    assert "LM" in stdout


def test_auto_with_an_lm_candidate_forecasts_new_items(
    panel_dir: Path,
    tiny_encoder: str,
    new_items_csv: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model_dir = tmp_path / "auto"
    code, stdout, err = _invoke(
        [
            "fit",
            "--panel",
            str(panel_dir),
            "--horizon",
            str(H),
            "--finetune",
            "frozen",
            "--set",
            'candidates=["LM", "Naive"]',
            "--set",
            "selection=weighted",
            *lm_options(tiny_encoder, prefix="LM."),
            "--out",
            str(model_dir),
        ],
        capsys,
    )
    assert code == 0, err
    assert "auto: selection 'weighted'" in stdout
    config = json.loads((model_dir / "config.json").read_text())
    assert config["model"] == "auto" and config["params"]["candidates"] == ["LM", "Naive"]
    assert config["params"]["candidate_settings"]["LM"]["finetune"] == "frozen"
    assert (model_dir / "candidates" / "LM" / "head.safetensors").is_file()
    out = tmp_path / "new.csv"
    args = ["predict", "--model", str(model_dir), "--new-items", str(new_items_csv)]
    code, _, err = _invoke([*args, "--out", str(out)], capsys)
    assert code == 0, err
    forecast = pd.read_csv(out, parse_dates=["date"])
    assert len(forecast) == 3 * H and list(forecast.columns[:3]) == ["item_id", "date", "LM"]


def test_csv_item_ids_stay_text(tmp_path: Path) -> None:
    from salesformer.cli.forecast import read_table

    path = tmp_path / "stock.csv"
    path.write_text("item_id,on_hand\n00123,4\n85123A,2\n")
    frame = read_table(path, "--stock")
    assert frame["item_id"].tolist() == ["00123", "85123A"]
    assert frame["on_hand"].tolist() == [4, 2]
