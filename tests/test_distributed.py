"""The Ray engine equals the local one: batch forecasts and backtests, library and CLI.

One local Ray (2 CPUs) serves the whole module; every job reuses it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from salesformer.cli.main import run
from salesformer.data.contract import ITEM_ID, Panel
from salesformer.data.synthetic import generate_catalogue
from salesformer.distributed.backtest import backtest_local, backtest_on_ray
from salesformer.distributed.executors import usable_cores
from salesformer.distributed.pool import RunReport
from salesformer.distributed.predict import predict_local, predict_on_ray
from salesformer.evaluation.backtest import backtest
from salesformer.models.persist import load_model, save_model
from salesformer.models.registry import make_model

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_cluster")]

H = 6
FAST_LGBM: dict[str, Any] = {"n_estimators": 20, "quantile_n_estimators": 10, "n_jobs": 1}
TINY_LM: dict[str, Any] = {
    "finetune": "frozen",
    "horizon": H,
    "head_epochs": 2,
    "epoch_samples": 300,
    "batch_items": 16,
    "hidden_size": 32,
    "text_size": 8,
    "threads": 1,
    "progress": False,
}


@pytest.fixture(scope="module")
def panel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    panel = generate_catalogue(n_items=36, n_weeks=70, seed=5).panel()
    return panel.save(tmp_path_factory.mktemp("panel") / "panel")


def check_memory(report: RunReport, jobs: dict[str, int]) -> None:
    """Both peaks per worker, private <= resident, and one reading per part and pass."""
    rss = report.worker_peak_rss_mb
    assert 1 <= len(rss) <= report.workers
    seen: dict[str, int] = {}
    for reading in report.part_memory:
        seen[reading["job"]] = seen.get(reading["job"], 0) + 1
    assert seen == jobs
    if not Path("/proc/self/smaps_rollup").is_file():
        assert report.worker_peak_private_mb is None
        return
    private = report.worker_peak_private_mb
    assert private is not None and len(private) == len(rss)
    for peak_rss, peak_private in zip(rss, private, strict=True):
        assert 50.0 < peak_private <= peak_rss  # a Python worker with pandas holds > 50 MiB
    for r in report.part_memory:
        assert 0.0 < r["private_mb"] <= r["rss_mb"] <= r["peak_rss_mb"]
        assert r["private_mb"] + r["shared_mb"] == pytest.approx(r["rss_mb"], abs=0.2)
        assert r["private_mb"] <= r["peak_private_mb"] and r["shmem_mb"] >= 0.0


def saved_model(name: str, settings: dict[str, Any], panel_dir: Path, folder: Path) -> Path:
    model = make_model(name, **settings).fit(Panel.load(panel_dir))
    return save_model(model, folder / name)


@pytest.mark.parametrize(
    ("name", "settings"),
    [
        ("SeasonalNaive", {}),
        ("LightGBM", FAST_LGBM),
        (
            "auto",
            {
                "candidates": ("LightGBM", "ADIDA"),
                "candidate_settings": {"LightGBM": FAST_LGBM},
                "horizon": H,
                "min_segment_series": 5,
            },
        ),
    ],
)
def test_predict_equals_local(
    name: str, settings: dict[str, Any], panel_dir: Path, tmp_path: Path
) -> None:
    folder = saved_model(name, settings, panel_dir, tmp_path)
    seen: list[tuple[int, int | None]] = []
    report = predict_on_ray(
        folder,
        tmp_path / "out.parquet",
        horizon=H,
        items_per_part=5,
        progress=lambda done, total: seen.append((done, total)),
    )
    expected = load_model(folder).predict(H)
    assert_frame_equal(pd.read_parquet(tmp_path / "out.parquet"), expected)
    assert (report.parts, report.items, report.rows) == (8, 36, 36 * H)
    passes = 2 if name == "SeasonalNaive" else 1  # statistical: calibration, then forecasts
    assert seen[-1] == (8 * passes, 8 * passes)
    assert report.workers == 2
    per_item = {"calibrate_part": 8, "forecast_items_part": 8}  # fitted on each part
    check_memory(report, per_item if name == "SeasonalNaive" else {"forecast_part": 8})
    assert report.to_dict()["model"] == name
    assert report.to_dict()["worker_peak_private_mb"] == report.worker_peak_private_mb


def test_lm_predict_equals_local_in_csv(panel_dir: Path, tiny_encoder: str, tmp_path: Path) -> None:
    folder = saved_model("LM", {"encoder": tiny_encoder, **TINY_LM}, panel_dir, tmp_path)
    predict_on_ray(folder, tmp_path / "lm.csv", items_per_part=10)
    expected = load_model(folder).predict(H)
    got = pd.read_csv(tmp_path / "lm.csv", dtype={ITEM_ID: str}, parse_dates=["date"])
    # CSV keeps floats to the last bit (shortest round-trip repr): the same numbers
    assert_frame_equal(got, expected)
    assert got[ITEM_ID].is_unique is False and got[ITEM_ID].nunique() == 36


def test_backtest_equals_local(panel_dir: Path, tmp_path: Path) -> None:
    models = [
        make_model("SeasonalNaive"),
        make_model("AutoETS"),
        make_model("CrostonSBA", intervals="conformal", n_windows=3),
        make_model("LightGBM", **FAST_LGBM),
    ]
    local = backtest(models, Panel.load(panel_dir), H, n_windows=2, step=3)
    result, report = backtest_on_ray(
        models,
        panel_dir,
        H,
        n_windows=2,
        step=3,
        items_per_part=7,
        out_forecasts=tmp_path / "scored.parquet",
    )
    assert_frame_equal(result.forecasts, local.forecasts)
    assert_frame_equal(result.series, local.series)
    assert_frame_equal(result.metrics(), local.metrics())
    assert result.cutoffs == local.cutoffs
    streamed = pd.read_parquet(tmp_path / "scored.parquet")
    streamed = streamed.sort_values(["cutoff", ITEM_ID, "date"]).reset_index(drop=True)
    assert_frame_equal(streamed, local.forecasts)
    timing_keys = result.timings[["model", "cutoff"]].reset_index(drop=True)
    assert_frame_equal(timing_keys, local.timings[["model", "cutoff"]])
    assert report.parts == 6 and report.rows == len(local.forecasts)
    check_memory(report, {"survey_part": 6, "forecast_part": 6})


def test_one_driver_local_pool_and_ray_agree(panel_dir: Path, tmp_path: Path) -> None:
    """The same driver on a local pool of 2 and on 2 Ray workers: equal outputs, and the
    same memory facts per part and pass."""
    models = [
        make_model("CrostonSBA", intervals="conformal", n_windows=3),
        make_model("LightGBM", **FAST_LGBM),
    ]
    on_ray, ray_report = backtest_on_ray(models, panel_dir, H, n_windows=1, items_per_part=9)
    local, local_report = backtest_local(
        models, panel_dir, H, n_windows=1, items_per_part=9, workers=2
    )
    assert_frame_equal(local.forecasts, on_ray.forecasts)
    assert_frame_equal(local.series, on_ray.series)
    assert (local_report.parts, local_report.workers) == (ray_report.parts, 2)
    check_memory(local_report, {"survey_part": 4, "forecast_part": 4})

    folder = saved_model("SeasonalNaive", {}, panel_dir, tmp_path)
    predict_on_ray(folder, tmp_path / "ray.parquet", horizon=H, items_per_part=9)
    report = predict_local(folder, tmp_path / "pool.parquet", horizon=H, items_per_part=9)
    assert report.workers == min(usable_cores(), 4)  # the default: one per core, <= parts
    ray_file = pd.read_parquet(tmp_path / "ray.parquet")
    assert_frame_equal(pd.read_parquet(tmp_path / "pool.parquet"), ray_file)
    check_memory(report, {"calibrate_part": 4, "forecast_items_part": 4})


def invoke(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        run(args)
    captured = capsys.readouterr()
    code = info.value.code if isinstance(info.value.code, int) else 1
    return code, captured.out, captured.err


def test_cli_predict_and_backtest_on_ray(
    panel_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = saved_model("SeasonalNaive", {}, panel_dir, tmp_path)
    predict = ["predict", "--model", str(model), "--horizon", str(H)]
    assert invoke([*predict, "--out", str(tmp_path / "local.csv")], capsys)[0] == 0
    code, out, _ = invoke(
        [*predict, "--out", str(tmp_path / "ray.csv"), "--engine", "ray", "--items-per-part", "8"],
        capsys,
    )
    assert code == 0 and "on Ray" in out and "36 items" in out
    assert (tmp_path / "ray.csv").read_text() == (tmp_path / "local.csv").read_text()

    common = ["backtest", "--panel", str(panel_dir), "--models", "Naive,LightGBM", "-h", "4"]
    common += ["--set", "LightGBM.n_estimators=20", "--set", "LightGBM.n_jobs=1"]
    assert invoke([*common, "--out", str(tmp_path / "bt-local")], capsys)[0] == 0
    code, out, _ = invoke(
        [*common, "--out", str(tmp_path / "bt-ray"), "--engine", "ray", "--workers", "2"],
        capsys,
    )
    assert code == 0 and "on Ray" in out
    for name in ("forecasts.parquet", "series.parquet"):
        assert_frame_equal(
            pd.read_parquet(tmp_path / "bt-ray" / name),
            pd.read_parquet(tmp_path / "bt-local" / name),
        )


def test_cli_errors_are_one_line(
    panel_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = saved_model("Naive", {}, panel_dir, tmp_path)
    base = ["predict", "--model", str(model), "--out", str(tmp_path / "f.parquet")]
    for extra, message in (
        (["--ray-address", "auto"], "--ray-address only apply to the Ray engine"),
        (["--engine", "spark"], "unknown engine"),
        (["--engine", "ray", "--workers", "0"], "workers must be"),
    ):
        code, _, err = invoke([*base, *extra], capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "f.parquet").exists()


def test_lm_and_auto_backtests_equal_local(
    panel_dir: Path, tiny_encoder: str, tmp_path: Path
) -> None:
    """The LM and auto (LM candidate) are fitted once per cutoff as a task, then every part is
    forecast on the workers through ``for_items``: the local backtest's forecasts, to float32
    rounding. A fit that runs in another process may encode some item texts in other batches
    than the local one did (the embedding cache of the process and on disk decides which), and
    the encoder rounds a text's vector differently in a batch of another size or padding
    (about 1e-7); predicting with a fitted model is exact (test_lm_predict_equals_local_in_csv)."""
    pytest.importorskip("torch")
    lm_settings = {"encoder": tiny_encoder, **TINY_LM}
    models = [
        make_model("LM", **lm_settings),
        make_model(
            "auto",
            candidates=("LM", "ADIDA"),
            candidate_settings={"LM": lm_settings},
            horizon=H,
            min_segment_series=5,
        ),
    ]
    local = backtest(models, Panel.load(panel_dir), H, n_windows=1)
    result, report = backtest_on_ray(models, panel_dir, H, n_windows=1, items_per_part=10)
    assert_frame_equal(result.forecasts, local.forecasts, check_exact=False, rtol=1e-5, atol=1e-6)
    assert_frame_equal(result.metrics(), local.metrics(), check_exact=False, rtol=1e-5)
    assert report.parts == 4 and report.rows == len(local.forecasts)
    assert {"LM", "auto"} <= set(result.metrics()["model"])
