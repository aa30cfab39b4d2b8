"""A worker killed mid-job: the job finishes with every item once, as the local engine.

The test kills one worker process (SIGKILL) as soon as the first part has been written; Ray
restarts the actor and retries what it was running, and the driver writes each part once.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal

from salesformer.data.contract import ITEM_ID, Panel
from salesformer.data.synthetic import generate_catalogue
from salesformer.distributed.backtest import backtest_on_ray
from salesformer.distributed.predict import predict_on_ray
from salesformer.evaluation.backtest import backtest
from salesformer.models.persist import load_model, save_model
from salesformer.models.registry import make_model

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_cluster")]

H = 4
FAST_LGBM: dict[str, Any] = {"n_estimators": 15, "quantile_n_estimators": 8, "n_jobs": 1}


@pytest.fixture(scope="module")
def panel_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    panel = generate_catalogue(n_items=30, n_weeks=60, seed=9).panel()
    return panel.save(tmp_path_factory.mktemp("panel") / "panel")


def parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def worker_pids() -> list[int]:
    """Live PartWorker actors of this test's Ray (``ray::PartWorker...`` under its raylet).

    The raylet must be this process's child and run this session's node, so that workers of
    another Ray on the machine (or of an earlier session still shutting down) are left alone.
    """
    import ray

    node = f"--node_id={ray.get_runtime_context().get_node_id()}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
            if not command.startswith(b"ray::PartWorker"):
                continue
            raylet = parent(int(entry.name))
            ours = parent(raylet) == os.getpid()
            if ours and node in Path(f"/proc/{raylet}/cmdline").read_bytes():
                pids.append(int(entry.name))
        except (OSError, ValueError, IndexError):
            continue
    return sorted(pids)


class KillOnce:
    """A progress callback that kills one worker when ``at`` jobs are done."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.killed: int | None = None

    def __call__(self, done: int, total: int | None) -> None:
        if self.killed is None and done >= self.at:
            pids = worker_pids()
            assert pids, "no worker process found to kill"
            self.killed = pids[0]
            os.kill(self.killed, signal.SIGKILL)


def test_predict_survives_a_killed_worker(panel_dir: Path, tmp_path: Path) -> None:
    model = make_model("LightGBM", **FAST_LGBM).fit(Panel.load(panel_dir))
    folder = save_model(model, tmp_path / "model")
    killer = KillOnce(at=1)
    report = predict_on_ray(
        folder, tmp_path / "out.parquet", horizon=H, items_per_part=2, progress=killer
    )
    assert killer.killed is not None
    got = pd.read_parquet(tmp_path / "out.parquet")
    assert not got.duplicated([ITEM_ID, "date"]).any()
    assert got[ITEM_ID].nunique() == 30
    assert_frame_equal(got, load_model(folder).predict(H))
    assert report.parts == 15 and report.rows == 30 * H
    assert report.worker_restarts >= 1


def test_backtest_survives_a_killed_worker(panel_dir: Path) -> None:
    models = [make_model("SeasonalNaive"), make_model("LightGBM", **FAST_LGBM)]
    killer = KillOnce(at=18)  # in the forecasting phase: 15 survey jobs, then forecasts
    result, report = backtest_on_ray(
        models, panel_dir, H, n_windows=2, items_per_part=2, progress=killer
    )
    assert killer.killed is not None
    local = backtest(models, Panel.load(panel_dir), H, n_windows=2)
    assert not result.forecasts.duplicated(["cutoff", ITEM_ID, "date"]).any()
    assert_frame_equal(result.forecasts, local.forecasts)
    assert_frame_equal(result.series, local.series)
    assert report.worker_restarts >= 1
