"""The local engine runs the one parts driver: in this process or a local process pool.

Its batch forecasts and backtests equal the whole-panel ones (``model.predict`` and
:func:`salesformer.evaluation.backtest.backtest`) exactly, whatever the part size and the
number of processes. Ray runs the same driver (``test_distributed.py`` compares the two).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from salesformer.cli.main import run
from salesformer.data.contract import Panel
from salesformer.data.synthetic import generate_catalogue
from salesformer.distributed.backtest import backtest_local, split_into_parts
from salesformer.distributed.executors import default_local_workers, usable_cores
from salesformer.distributed.predict import predict_local, splits_into_parts
from salesformer.errors import ConfigError
from salesformer.evaluation.backtest import backtest
from salesformer.models.persist import load_model, save_model
from salesformer.models.registry import make_model

H = 6
FAST_LGBM: dict[str, Any] = {"n_estimators": 20, "quantile_n_estimators": 10, "n_jobs": 1}


@pytest.fixture(scope="module")
def panel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    panel = generate_catalogue(n_items=36, n_weeks=70, seed=5).panel()
    return panel.save(tmp_path_factory.mktemp("panel") / "panel")


def saved(name: str, settings: dict[str, Any], panel_dir: Path, folder: Path) -> Path:
    model = make_model(name, **settings).fit(Panel.load(panel_dir))
    return save_model(model, folder / name)


def test_backtest_in_process_and_in_a_pool_equal_the_whole_panel(panel_dir: Path) -> None:
    models = [
        make_model("SeasonalNaive"),
        make_model("CrostonSBA", intervals="conformal", n_windows=3),
        make_model("LightGBM", **FAST_LGBM),
    ]
    whole = backtest(models, Panel.load(panel_dir), H, n_windows=2, step=3)
    for workers in (1, 2):
        seen: list[tuple[int, int | None]] = []
        result, report = backtest_local(
            models,
            panel_dir,
            H,
            n_windows=2,
            step=3,
            items_per_part=7,
            workers=workers,
            progress=lambda done, total: seen.append((done, total)),  # noqa: B023
        )
        assert_frame_equal(result.forecasts, whole.forecasts)
        assert_frame_equal(result.series, whole.series)
        assert_frame_equal(result.metrics(), whole.metrics())
        keys = result.timings[["model", "cutoff"]].reset_index(drop=True)
        assert_frame_equal(keys, whole.timings[["model", "cutoff"]])
        assert (report.workers, report.parts, report.items) == (workers, 6, 36)
        assert seen[-1] == (12, 12)  # two passes over 6 parts
        assert len(report.worker_peak_rss_mb) == workers  # each pool process ran parts
        jobs = [reading["job"] for reading in report.part_memory]
        assert sorted(jobs) == ["forecast_part"] * 6 + ["survey_part"] * 6


@pytest.mark.parametrize(
    ("name", "settings", "workers"),
    [("SeasonalNaive", {}, 2), ("LightGBM", FAST_LGBM, 1), ("CrostonSBA", {}, 1)],
)
def test_predict_in_parts_equals_predict(
    name: str, settings: dict[str, Any], workers: int, panel_dir: Path, tmp_path: Path
) -> None:
    folder = saved(name, settings, panel_dir, tmp_path)
    report = predict_local(
        folder, tmp_path / "out.parquet", horizon=H, items_per_part=5, workers=workers
    )
    expected = load_model(folder).predict(H)
    assert_frame_equal(pd.read_parquet(tmp_path / "out.parquet"), expected)
    assert (report.workers, report.parts, report.rows) == (workers, 8, 36 * H)


def test_default_workers_and_what_splits() -> None:
    assert default_local_workers(1) == 1  # one part: no pool
    assert default_local_workers(1000) == usable_cores()
    assert split_into_parts([make_model("Naive"), make_model("LightGBM")])


def test_bad_settings_are_config_errors(panel_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="items_per_part must be a whole number >= 1; got 0"):
        backtest_local([make_model("Naive")], panel_dir, H, items_per_part=0)
    with pytest.raises(ConfigError, match="workers must be a whole number >= 1; got 0"):
        predict_local(tmp_path / "nope", tmp_path / "o.csv", workers=0)
    # checked before the model folder is read or a pool starts, as on Ray
    with pytest.raises(ConfigError, match="quantiles must lie strictly between 0 and 1"):
        predict_local(tmp_path / "nope", tmp_path / "o.csv", quantiles=(0.5, 1.5))


def invoke(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        run(args)
    captured = capsys.readouterr()
    code = info.value.code if isinstance(info.value.code, int) else 1
    return code, captured.out, captured.err


def test_cli_predict_and_backtest_run_in_parts(
    panel_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = saved("SeasonalNaive", {}, panel_dir, tmp_path)
    assert splits_into_parts(model)
    args = ["predict", "--model", str(model), "--horizon", str(H), "--items-per-part", "8"]
    args += ["--workers", "1"]
    code, out, err = invoke([*args, "--out", str(tmp_path / "parts.csv")], capsys)
    assert code == 0, err
    assert "36 items" in out and "in this process, 5 parts" in out
    whole = load_model(model).predict(H)
    whole.to_csv(tmp_path / "whole.csv", index=False, date_format="%Y-%m-%d")
    assert (tmp_path / "parts.csv").read_text() == (tmp_path / "whole.csv").read_text()

    common = ["backtest", "--panel", str(panel_dir), "--models", "Naive,LightGBM", "-h", "4"]
    common += ["--set", "LightGBM.n_estimators=20", "--set", "LightGBM.n_jobs=1"]
    code, out, err = invoke(
        [*common, "--out", str(tmp_path / "bt"), "--items-per-part", "9", "--workers", "1"], capsys
    )
    assert code == 0, err
    assert "4 parts, in this process" in out
    models = [make_model("Naive"), make_model("LightGBM", n_estimators=20, n_jobs=1)]
    expected = backtest(models, Panel.load(panel_dir), 4)
    assert_frame_equal(pd.read_parquet(tmp_path / "bt" / "forecasts.parquet"), expected.forecasts)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--ray-address", "auto"], "--ray-address only apply to the Ray engine"),
        (["--workers", "0"], "workers must be a whole number >= 1"),
        (["--workers", "2", "--levels", "total"], "--workers and --items-per-part split"),
    ],
)
def test_cli_part_options_errors_are_one_line(
    extra: list[str],
    message: str,
    panel_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    model = saved("Naive", {}, panel_dir, tmp_path)
    base = ["predict", "--model", str(model), "--out", str(tmp_path / "f.parquet")]
    code, _, err = invoke([*base, *extra], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "f.parquet").exists()
