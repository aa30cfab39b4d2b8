"""Ray Train on the GPUs of its workers (distributed/train.py), checked without a GPU.

The suite's machine has no GPU and these tests start no Ray cluster: the cluster's resource
query and Ray Train's trainer are replaced by fakes, so what is checked is the decision (which
device, which ``ScalingConfig``, which backend) and the errors. Training on real GPU workers
is not run here.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("ray")

import torch

from bad_input_support import refused
from salesformer.data.contract import Panel
from salesformer.data.synthetic import generate_catalogue
from salesformer.distributed import train as ray_train
from salesformer.distributed.train import WorkerResources, fit_lm_on_ray, worker_resources
from salesformer.errors import ConfigError
from salesformer.models.lm import LMForecaster
from salesformer.models.lm.context import DataParallelContext, TrainingContext


class Stop(Exception):
    """Raised by the fake trainer once it has seen what it would have run."""


@pytest.fixture(scope="module")
def panel() -> Panel:
    return generate_catalogue(n_items=6, n_weeks=30, seed=1).panel()


def fake_cluster(monkeypatch: pytest.MonkeyPatch, resources: dict[str, float]) -> dict[str, Any]:
    """A Ray "cluster" reporting ``resources``; the trainer records its arguments and stops."""
    seen: dict[str, Any] = {}

    @contextlib.contextmanager
    def session(address: Any = None, workers: Any = None) -> Iterator[Any]:
        yield SimpleNamespace(cluster_resources=lambda: dict(resources))

    def encode(encoder: str, texts: list[str], **kwargs: Any) -> np.ndarray:
        return np.zeros((len(texts), 4), dtype=np.float32)

    def run_trainer(ray: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        raise Stop

    from salesformer.distributed import embeddings, engine

    monkeypatch.setattr(engine, "ray_session", session)
    monkeypatch.setattr(embeddings, "encode_on_ray", encode)
    monkeypatch.setattr(ray_train, "_run_trainer", run_trainer)
    return seen


@pytest.mark.parametrize(
    ("device", "gpus", "use_gpu"),
    [
        ("auto", 0, False),
        ("auto", 2, True),
        ("auto", 4, True),
        ("cpu", 2, False),
        ("cuda", 2, True),
    ],
)
def test_the_workers_take_a_gpu_each_when_the_cluster_has_them(
    panel: Panel, monkeypatch: pytest.MonkeyPatch, device: str, gpus: int, use_gpu: bool
) -> None:
    seen = fake_cluster(monkeypatch, {"CPU": 8.0, **({"GPU": float(gpus)} if gpus else {})})
    model = LMForecaster(finetune="frozen", horizon=4, device=device, threads=1)
    with pytest.raises(Stop):
        fit_lm_on_ray(model, panel, workers=2, storage="unused")
    assert seen["resources"] == WorkerResources(1, use_gpu)
    assert seen["config"]["use_gpu"] is use_gpu  # what each worker reads to pick its device


def test_auto_with_fewer_gpus_than_workers_trains_on_the_cpus_and_says_so(
    panel: Panel, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = fake_cluster(monkeypatch, {"CPU": 8.0, "GPU": 1.0})
    lines: list[str] = []
    with pytest.raises(Stop):
        fit_lm_on_ray(
            LMForecaster(horizon=4), panel, workers=2, storage="unused", progress=lines.append
        )
    assert seen["resources"].use_gpu is False
    assert any("reports 1 GPU(s) for 2 workers" in line for line in lines)


def test_device_errors_on_ray_are_one_line() -> None:
    for device, gpus, fragment in [
        ("cuda", 0, "reports 0 GPU(s) for 2 workers"),
        ("cuda", 1, "use --workers 1"),
        ("cuda:1", 4, "Ray assigns each worker its GPU"),
        ("mps", 0, "does not apply to --engine ray"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(fragment)) as info:
            worker_resources(device, 2, 1, gpus)
        assert "\n" not in str(info.value)


def test_the_scaling_config_and_backend_follow_the_decision(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from ray.train import ScalingConfig
    from ray.train import torch as ray_torch

    built: list[dict[str, Any]] = []

    class FakeTrainer:
        def __init__(self, loop: Any, **kwargs: Any) -> None:
            built.append(kwargs)

        def fit(self) -> str:
            return "result"

    monkeypatch.setattr(ray_torch, "TorchTrainer", FakeTrainer)
    for use_gpu in (False, True):
        result = ray_train._run_trainer(
            None,
            config={},
            workers=2,
            resources=WorkerResources(3, use_gpu),
            storage=str(tmp_path),
            name="run",
            max_failures=0,
        )
        assert result == "result"
    cpu, gpu = built
    assert isinstance(cpu["scaling_config"], ScalingConfig)
    assert cpu["scaling_config"].use_gpu is False
    assert cpu["scaling_config"].resources_per_worker == {"CPU": 3}
    assert cpu["torch_config"].backend == "gloo"
    assert gpu["scaling_config"].use_gpu is True
    assert gpu["scaling_config"].resources_per_worker == {"CPU": 3, "GPU": 1}
    assert gpu["scaling_config"].num_workers == 2
    assert gpu["torch_config"].backend == "nccl"


def test_a_worker_trains_on_the_device_ray_assigned_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray.train import torch as ray_torch

    monkeypatch.setattr(ray_torch, "get_device", lambda: torch.device("cuda", 0))
    assert ray_train.worker_device(True) == "cuda:0"
    assert ray_train.worker_device(False) == "cpu"  # never an unassigned GPU of its node


def test_the_cli_leaves_the_gpu_check_of_a_ray_fit_to_the_cluster(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    panel: Panel,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--device cuda`` is not refused because the driver has no GPU; the cluster decides."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    folder = panel.save(tmp_path / "panel")
    args = ["fit", "--panel", str(folder), "--model", "lm", "--horizon", "4", "--engine", "ray"]
    args += ["--out", str(tmp_path / "m"), "--device", "cuda", "--workers", "2"]
    fake_cluster(monkeypatch, {"CPU": 8.0})
    refused(args, capsys, "needs one GPU per worker", "reports 0 GPU(s)")
    seen = fake_cluster(monkeypatch, {"CPU": 8.0, "GPU": 2.0})
    with pytest.raises(Stop):
        from salesformer.cli.main import run

        run(args)
    assert seen["resources"].use_gpu is True


def test_smallest_gives_every_rank_the_least_value() -> None:
    """The batch size ranks agree on (a one-rank gloo group: the reduction runs for real)."""
    import torch.distributed as dist

    assert TrainingContext().smallest(16) == 16
    store = dist.HashStore()
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        context = DataParallelContext(0, 1)
        assert context.smallest(8) == 8
        assert context.agree(0.25) == 0.25
    finally:
        dist.destroy_process_group()
