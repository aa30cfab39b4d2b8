"""Training the LM forecaster with Ray Train: data-parallel workers, checkpoints, resume.

:func:`fit_lm_on_ray` runs :meth:`LMForecaster._fit <salesformer.models.lm.LMForecaster>` on
``workers`` Ray Train workers (``TorchTrainer``: gloo on CPUs, NCCL on GPUs). Every worker
builds the same training plan (same seed, same batches); each computes the loss on its shard
of every batch (rows ``rank::workers``), the gradients are averaged over the workers, and
every worker takes the same optimizer step, so the run has the steps of a local fit (see
:mod:`salesformer.models.lm.context`). Validation runs on every worker and rank 0's loss
decides early stopping everywhere.

After each epoch rank 0 reports a checkpoint: a model folder that ``LMForecaster.load`` and
``salesformer predict --model`` read (the best weights so far) plus ``training_state/``
(see :mod:`salesformer.models.lm.train_state`). When a worker dies, Ray Train restarts the
group (up to ``max_failures`` times) and the workers carry on after the last finished epoch.
The frozen embeddings are computed once, in parallel, by :func:`.embeddings.encode_on_ray`
and handed to the workers.

Workers train on a GPU each when the model's ``device`` asks for one and the cluster has them
(:func:`worker_resources`): ``auto`` takes one GPU per worker when the cluster reports at
least one per worker, else the CPUs (with a note); ``cuda`` requires them; ``cpu`` never uses
them. Ray assigns each worker its GPU, and the worker trains on the device
``ray.train.torch.get_device()`` names, so ``cuda:N`` and ``mps`` are refused here.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from salesformer.errors import ConfigError
from salesformer.models.lm.context import DataParallelContext, StageState

if TYPE_CHECKING:
    from salesformer.data.contract import Panel
    from salesformer.models.lm import LMForecaster

#: A checkpoint holding this file is the finished model (no epoch left to run).
DONE_FILE = "FIT_DONE"
#: Settings that do not change what is learned, left out of the run's fingerprint.
_NOT_LEARNED = ("threads", "progress", "log_dir", "cache_dir")


def default_storage() -> Path:
    """Where Ray Train keeps runs and checkpoints by default: ``<cache root>/ray_train``."""
    from salesformer.data.sources import cache_root

    return cache_root() / "ray_train"


def run_name(model: LMForecaster, panel: Panel) -> str:
    """``lm-<hash>`` of the learned settings and the panel: a rerun finds its checkpoints."""
    import pandas as pd

    params = {k: v for k, v in model.get_params().items() if k not in _NOT_LEARNED}
    digest = hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode())
    digest.update(pd.util.hash_pandas_object(panel.sales, index=False).to_numpy().tobytes())
    if panel.items is not None:
        digest.update(pd.util.hash_pandas_object(panel.items, index=False).to_numpy().tobytes())
    return f"lm-{digest.hexdigest()[:16]}"


@dataclass(frozen=True)
class WorkerResources:
    """What each Ray Train worker asks for: CPUs (torch threads) and whether one GPU.

    Attributes:
        threads: CPUs per worker (its torch threads).
        use_gpu: one GPU per worker; the worker trains on it.
        note: why ``auto`` stayed on the CPUs (None when nothing needs saying).
    """

    threads: int
    use_gpu: bool
    note: str | None = None

    def scaling(self, workers: int) -> dict[str, Any]:
        """The keyword arguments of Ray Train's ``ScalingConfig``."""
        per_worker: dict[str, float] = {"CPU": self.threads}
        if self.use_gpu:
            per_worker["GPU"] = 1
        return {"num_workers": workers, "use_gpu": self.use_gpu, "resources_per_worker": per_worker}


def worker_resources(device: str, workers: int, threads: int, gpus: float) -> WorkerResources:
    """The resources of ``workers`` workers for the LM's ``device`` on a cluster of ``gpus``.

    Raises:
        ConfigError: ``cuda`` with fewer GPUs than workers, or ``cuda:N`` / ``mps``.
    """
    if device == "mps" or device.startswith("cuda:"):
        raise ConfigError(
            f"--device {device} does not apply to --engine ray: Ray assigns each worker its "
            "GPU; use --device cuda (one GPU per worker), auto or cpu"
        )
    enough = gpus >= workers
    if device == "cuda" and not enough:
        fewer = f"--workers {int(gpus)}, " if gpus >= 1 else ""
        raise ConfigError(
            f"--device cuda with --engine ray needs one GPU per worker; the Ray cluster "
            f"reports {gpus:g} GPU(s) for {workers} workers; use {fewer}--device auto or "
            "--device cpu"
        )
    if device == "cpu" or not enough:
        note = None
        if device == "auto" and gpus > 0:
            note = (
                f"the Ray cluster reports {gpus:g} GPU(s) for {workers} workers; the workers "
                f"train on their CPUs (--workers {int(gpus)} would train on the GPUs)"
            )
        return WorkerResources(threads, False, note)
    return WorkerResources(threads, True)


def cluster_gpus(ray: Any) -> float:
    """GPUs the Ray cluster reports (0 when it has none)."""
    return float(ray.cluster_resources().get("GPU", 0))


def worker_device(use_gpu: bool) -> str:
    """The device a Ray Train worker trains on: its assigned GPU, or the CPU."""
    if not use_gpu:
        return "cpu"
    import ray.train.torch

    return str(ray.train.torch.get_device())


def _check_settings(workers: int, max_failures: int) -> None:
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ConfigError(f"workers must be a whole number >= 1; got {workers!r}")
    if isinstance(max_failures, bool) or not isinstance(max_failures, int) or max_failures < 0:
        raise ConfigError(f"max_failures must be a whole number >= 0; got {max_failures!r}")


def fit_lm_on_ray(
    model: LMForecaster,
    panel: Panel,
    *,
    address: str | None = None,
    workers: int = 2,
    storage: str | Path | None = None,
    resume: bool = True,
    max_failures: int = 2,
    progress: Callable[[str], None] | None = None,
) -> LMForecaster:
    """Fit ``model`` on ``panel`` with Ray Train; returns ``model``, fitted as by ``fit``.

    Args:
        model: an unfitted LM forecaster; its settings are used on every worker (``threads``
            is torch's threads per worker, default 1).
        panel: the training panel (with an items table).
        address: an existing Ray cluster (``host:6379``, ``ray://host:10001``, ``auto``);
            None starts a local Ray, or uses the one this process already initialised.
        workers: training workers (data-parallel ranks).
        storage: folder (or URI Ray Train accepts) for runs and checkpoints; every worker
            must reach it. Default: ``<cache root>/ray_train``.
        resume: carry on from the last checkpoint of the same run (same settings and
            panel) in ``storage``; False starts a new run.
        max_failures: worker-group restarts allowed before the fit fails.
        progress: called with a line at each step of the run.

    Returns:
        ``model``, with the attributes of a local fit and ``fit_report_["engine"]`` saying
        how it ran (workers, restarts, the epoch it resumed from, the checkpoint).
    """
    from salesformer.distributed.embeddings import encode_on_ray
    from salesformer.distributed.engine import ray_session
    from salesformer.models.lm import LMForecaster
    from salesformer.models.lm.encoding import texts_for as _texts_for
    from salesformer.models.lm.samples import Wide

    _check_fit_inputs(model, panel, workers, max_failures)
    say = progress or (lambda line: None)
    threads = model.threads or 1
    root = str(storage if storage is not None else default_storage())
    name = run_name(model, panel) + ("" if resume else f"-{time.strftime('%Y%m%d-%H%M%S')}")
    started = time.perf_counter()
    local_cpus = max(workers * threads, os.cpu_count() or 1)  # a local Ray: enough for all
    with ray_session(address, None if address else local_cpus) as ray:
        resources = worker_resources(model.device, workers, threads, cluster_gpus(ray))
        if resources.note is not None:
            say(f"note: {resources.note}")
        texts = _texts_for(panel.items, Wide.from_panel(panel).item_ids)
        embeddings = encode_on_ray(
            model.encoder,
            texts,
            max_length=model.max_length,
            cache_dir=model.cache_dir,
            workers=workers,
            progress=say,
        )
        on = "a GPU each" if resources.use_gpu else "CPUs"
        say(f"training on {workers} Ray workers ({on}); checkpoints in {root}/{name}")
        result = _run_trainer(
            ray,
            config={
                "params": model.get_params(),
                "panel": panel,
                "embeddings": embeddings,
                "threads": threads,
                "use_gpu": resources.use_gpu,
            },
            workers=workers,
            resources=resources,
            storage=root,
            name=name,
            max_failures=max_failures,
        )
        checkpoint = result.checkpoint
        if checkpoint is None:  # pragma: no cover - a finished run always reports one
            raise RuntimeError(f"the Ray fit {name} finished without a checkpoint")
        with checkpoint.as_directory() as folder:
            fitted = LMForecaster.load(folder)
            checkpoint_path = str(checkpoint.path)
    wall = round(time.perf_counter() - started, 2)
    _adopt(model, fitted, panel, {"checkpoint": checkpoint_path, "run": name, "wall_seconds": wall})
    say(f"fitted on Ray; final checkpoint {checkpoint_path}")
    return model


def _adopt(model: LMForecaster, fitted: LMForecaster, panel: Panel, run: dict[str, Any]) -> None:
    """Give ``model`` the learned state of the run's final model and the run's details."""
    for key, value in vars(fitted).items():
        if key.endswith("_") and key != "panel_":
            setattr(model, key, value)
    model.panel_ = panel
    engine = dict(model.fit_report_.get("engine", {}))
    engine.update(run)
    model.fit_report_["engine"] = engine


def _check_fit_inputs(model: LMForecaster, panel: Panel, workers: int, max_failures: int) -> None:
    """Settings and panel errors, raised on the driver (a worker's error would be retried)."""
    from salesformer.data.contract import Panel
    from salesformer.errors import DataValidationError

    _check_settings(workers, max_failures)
    model.check_params()
    if not isinstance(panel, Panel):
        raise DataValidationError(
            f"fit_lm_on_ray needs a Panel; got {type(panel).__name__}; build one with "
            "validate_panel or Panel.load"
        )
    if panel.items is None:
        raise DataValidationError(
            "the LM forecaster reads item texts, but the panel has no items table; "
            "give an items table with item_id and text (or title/description columns)"
        )
    periods = len(panel.dates)
    if periods < model.horizon + 2:  # checked here: a worker's error would be retried
        raise DataValidationError(
            f"the panel has {periods} periods; the LM forecaster needs at least "
            f"{model.horizon + 2} to learn a horizon of {model.horizon}; give a longer panel "
            "or a shorter --horizon"
        )


def _run_trainer(
    ray: Any,
    *,
    config: dict[str, Any],
    workers: int,
    resources: WorkerResources,
    storage: str,
    name: str,
    max_failures: int,
) -> Any:
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    storage_path = storage if "://" in storage else str(Path(storage).resolve())
    trainer = TorchTrainer(
        _train_worker,
        train_loop_config=config,
        torch_config=TorchConfig(backend="nccl" if resources.use_gpu else "gloo"),
        scaling_config=ScalingConfig(**resources.scaling(workers)),
        run_config=RunConfig(
            name=name,
            storage_path=storage_path,
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
    )
    try:
        return trainer.fit()
    except Exception as exc:
        raise _one_line(exc, f"{storage_path}/{name}") from exc


def _one_line(exc: Exception, run: str) -> Exception:
    """A user error raised on a worker as itself; anything else as one RuntimeError line."""
    from salesformer.errors import SalesformerError

    failures = getattr(exc, "worker_failures", None) or {}
    for failure in failures.values():
        cause = getattr(failure, "cause", failure)
        if isinstance(cause, SalesformerError):
            return cause
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return RuntimeError(
        f"the Ray training run failed ({type(exc).__name__}: {reason[:200]}); its "
        f"checkpoints are in {run}; rerun the same fit to resume from the last one"
    )


def _train_worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: the LM's own training loop with a :class:`_RayContext`."""
    import ray.train

    from salesformer.models.lm import LMForecaster
    from salesformer.models.lm.training import train

    rank = ray.train.get_context().get_world_rank()
    world = ray.train.get_context().get_world_size()
    checkpoint = ray.train.get_checkpoint()
    restored: str | None = None
    if checkpoint is not None:
        restored = checkpoint.to_directory()
        if (Path(restored) / DONE_FILE).is_file():
            return  # the fit finished before the restart; its last checkpoint is the model
    params = dict(config["params"])
    device = worker_device(bool(config.get("use_gpu", False)))
    params.update(threads=int(config["threads"]), progress=False, device=device)
    if rank != 0:
        params["log_dir"] = None
    model = LMForecaster(**params)
    model.check_params()
    panel = config["panel"]
    model.panel_ = panel
    embeddings = np.array(config["embeddings"], dtype=np.float32)  # writable copy
    context = _RayContext(rank, world, embeddings, model, restored, device)
    train(model, panel, context)
    model.fit_report_["engine"] = {
        "engine": "ray",
        "workers": world,
        "threads_per_worker": int(config["threads"]),
        "gpus_per_worker": 1 if config.get("use_gpu") else 0,
        "resumed_from": context.resumed_from,
    }
    if rank == 0:
        with tempfile.TemporaryDirectory(prefix="salesformer-ckpt-") as tmp:
            model.save(tmp)
            (Path(tmp) / DONE_FILE).write_text("done\n")
            ray.train.report({"stage": "done"}, checkpoint=ray.train.Checkpoint.from_directory(tmp))
    else:
        ray.train.report({"stage": "done"})


def _model_snapshot(
    model: LMForecaster, state: StageState, item_ids: np.ndarray, frozen: np.ndarray
) -> Any:
    """The best model so far, as a fitted LMForecaster that ``save`` can write."""
    from salesformer.models.lm.encoding import encode_tokens as _encode_tokens
    from salesformer.models.lm.training import calibrate

    snapshot = copy.copy(model)
    head = copy.deepcopy(state.modules["head"])
    head.load_state_dict(state.best_states["head"])
    head.eval()
    snapshot.head_ = head
    snapshot.encoder_model_ = None
    snapshot.item_vectors_ = frozen
    if "encoder" in state.modules and state.improved:
        encoder = copy.deepcopy(state.modules["encoder"])
        encoder.load_state_dict(state.best_states["encoder"], strict=False)
        snapshot.encoder_model_ = encoder
        pooling = model.encoder_info_.get("pooling", "mean")
        device = str(next(encoder.parameters()).device)  # a GPU worker's encoder stays there
        snapshot.item_vectors_ = _encode_tokens(encoder, model.tokens_, 256, pooling, device)
    snapshot.item_ids_ = item_ids
    stage = "head" if state.label == "head" else "finetune_stage"
    snapshot.fit_report_ = {
        "finetune": model.finetune,
        "checkpoint": {"stage": state.label, "epoch": state.epoch},
        stage: {"epochs": state.epoch, "history": list(state.history)},
    }
    if not hasattr(snapshot, "calibration_"):
        snapshot.calibration_, _ = calibrate(snapshot, None)  # identity until the fit ends
    return snapshot


class _RayContext(DataParallelContext):
    """:class:`DataParallelContext` plus a Ray Train checkpoint after each epoch."""

    def __init__(
        self,
        rank: int,
        world: int,
        embeddings: np.ndarray,
        model: LMForecaster,
        restored: str | None,
        device: str = "cpu",
    ) -> None:
        from salesformer.models.lm.samples import Wide

        super().__init__(rank, world, embeddings, device)
        self.model = model
        self.frozen = embeddings
        self.restored = restored
        self.item_ids = Wide.from_panel(model.panel_).item_ids
        self.finished_head: StageState | None = None
        self.resumed_from: dict[str, Any] | None = None

    def resume(self, fresh: StageState) -> StageState | None:
        from salesformer.models.lm.train_state import read_stage, read_summary

        if self.restored is None:
            return None
        state = read_stage(self.restored, fresh)
        if state is None:
            return None
        if state.label == "head" and state.finished:
            self.finished_head = state
        summary = read_summary(self.restored) or {}
        self.resumed_from = {"stage": summary.get("label"), "epoch": summary.get("epoch")}
        return state

    def epoch_end(self, state: StageState) -> None:
        import ray.train

        from salesformer.models.lm.train_state import write_stage

        if state.label == "head" and state.finished:
            self.finished_head = state
        last = state.history[-1] if state.history else {}
        metrics = {"stage": state.label, "epoch": state.epoch, **last}
        if self.rank != 0:
            ray.train.report(metrics)
            return
        earlier = self.finished_head if state.label != "head" else None
        with tempfile.TemporaryDirectory(prefix="salesformer-ckpt-") as tmp:
            snapshot = _model_snapshot(self.model, state, self.item_ids, self.frozen)
            snapshot.save(tmp)
            write_stage(tmp, state, earlier)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


__all__ = [
    "DONE_FILE",
    "WorkerResources",
    "default_storage",
    "fit_lm_on_ray",
    "run_name",
    "worker_resources",
]
