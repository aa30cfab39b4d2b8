"""Training the LM forecaster on Ray Train, its checkpoints, and the parallel embedding cache.

One local Ray (2 CPUs) serves the module's Ray tests. The fits use the tiny random BERT of
conftest and a small catalogue; each Ray fit takes ~20-30 s here, mostly Ray Train's start-up.

Stated tolerance (also in docs/ray.md): the mean of the workers' scaled shard gradients is the
whole batch's gradient (to float precision, tested without Ray), so with ``dropout=0`` a
2-worker fit takes the local fit's optimizer steps; on this 3-epoch fit its validation loss and
WAPE agree with the local fit's to 1e-3 relative and its forecasts to 1e-3. Over longer fits
the float-order differences grow as they do between local fits with 1 and 2 torch threads,
and with dropout the workers draw other masks; benchmarks/ray_train.py measures both against
the spread of local fits.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")
pytest.importorskip("ray")
pytest.importorskip("psutil")

import psutil

from salesformer.cli.main import run
from salesformer.data.contract import Panel
from salesformer.data.synthetic import generate_catalogue
from salesformer.distributed.embeddings import encode_on_ray
from salesformer.distributed.train import fit_lm_on_ray, run_name
from salesformer.models.lm import LMForecaster
from salesformer.models.lm.context import StageState, TrainingContext
from salesformer.models.lm.train_state import read_stage, read_summary, write_stage
from salesformer.text.encoder import EmbeddingCache, load_encoder

TINY: dict[str, Any] = {
    "head_epochs": 3,
    "finetune_epochs": 1,
    "epoch_samples": 300,
    "batch_items": 16,
    "origins_per_item": 4,
    "hidden_size": 32,
    "text_size": 8,
    "threads": 1,
}


def invoke(args: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        run(args)
    return info.value.code if isinstance(info.value.code, int) else 1


#: Relative tolerance of a 2-worker fit's validation loss and WAPE without dropout.
EXACT_STEPS_RTOL = 1e-3


@pytest.fixture(scope="module")
def panel() -> Panel:
    return generate_catalogue(n_items=30, n_weeks=70, seed=11).panel()


def _history(model: LMForecaster) -> pd.DataFrame:
    return pd.DataFrame(model.fit_report_["head"]["history"]).set_index("epoch")


@pytest.mark.ray
def test_parallel_encoding_equals_local_encoding_and_fills_the_cache_once(
    ray_cluster: None, tiny_encoder: str, tmp_path: Path
) -> None:
    texts = [f"product {i} in colour {i % 7}" + " long" * (i % 5) for i in range(150)]
    texts += texts[:20]  # repeated texts are encoded once
    vectors = encode_on_ray(
        tiny_encoder, texts, max_length=32, cache_dir=tmp_path / "ray", workers=2, chunk=64
    )
    local = load_encoder(tiny_encoder, max_length=32).encode(texts, cache_dir=tmp_path / "local")
    np.testing.assert_allclose(vectors, local, rtol=0, atol=1e-6)
    encoder = load_encoder(tiny_encoder, max_length=32)
    cache = EmbeddingCache(tmp_path / "ray", encoder.key)
    assert len(cache.load()) == 150
    assert len(list(cache.folder.glob("*.safetensors"))) == 1  # one writer, one shard
    again = encode_on_ray(tiny_encoder, texts[::-1], max_length=32, cache_dir=tmp_path / "ray")
    np.testing.assert_array_equal(again, vectors[::-1])
    assert len(list(cache.folder.glob("*.safetensors"))) == 1  # nothing new to write


@pytest.mark.ray
def test_cli_fit_on_two_workers_takes_the_local_fits_steps(
    ray_cluster: None, panel: Panel, tiny_encoder: str, tmp_path: Path
) -> None:
    settings = {**TINY, "dropout": 0.0, "cache_dir": str(tmp_path / "cache")}
    local = LMForecaster(encoder=tiny_encoder, finetune="frozen", **settings).fit(panel)
    panel.save(tmp_path / "panel")
    out = tmp_path / "model"
    options = [arg for key, value in settings.items() for arg in ("--set", f"LM.{key}={value}")]
    code = invoke(
        [
            "fit",
            "--panel",
            str(tmp_path / "panel"),
            "--out",
            str(out),
            "--model",
            "lm",
            "--finetune",
            "frozen",
            "--encoder",
            tiny_encoder,
            "--engine",
            "ray",
            "--workers",
            "2",
            *options,
        ],
    )
    assert code == 0
    fitted = LMForecaster.load(out)
    assert fitted.fit_report_["engine"]["workers"] == 2
    ours, theirs = _history(fitted), _history(local)
    assert list(ours.index) == list(theirs.index)
    for column in ("valid", "valid_wape"):
        np.testing.assert_allclose(ours[column], theirs[column], rtol=EXACT_STEPS_RTOL)
    a, b = local.predict(8), fitted.predict(8)
    np.testing.assert_allclose(a["LM"], b["LM"], rtol=1e-3, atol=1e-3)
    # the last checkpoint, beside --out, is a model folder of its own
    checkpoint = Path(fitted.fit_report_["engine"]["checkpoint"])
    assert checkpoint.parent.parent == out.parent / "model.checkpoints"
    pd.testing.assert_frame_equal(LMForecaster.load(checkpoint).predict(8), b)


def _training_workers() -> list[Any]:
    """Ray Train worker processes started under this test process."""
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            if "RayTrainWorker" in " ".join(process.cmdline()):
                found.append(process)
        except psutil.Error:
            continue
    return found


def _registered_epoch(run: Path) -> int:
    """The epoch of the latest checkpoint Ray Train has registered (0: none yet).

    A restarted worker group resumes from the checkpoint the controller registered last, which
    it records in ``checkpoint_manager_snapshot.json``.
    """
    snapshot = run / "checkpoint_manager_snapshot.json"
    try:
        latest = json.loads(snapshot.read_text())["latest_checkpoint_result"]
        summary = read_summary(run / latest["checkpoint_dir_name"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0
    return int(summary["epoch"]) if summary is not None else 0


@pytest.mark.ray
def test_a_killed_worker_is_replaced_and_the_fit_resumes_from_its_checkpoint(
    ray_cluster: None, panel: Panel, tiny_encoder: str, tmp_path: Path
) -> None:
    settings = {**TINY, "head_epochs": 6, "patience": 6, "epoch_samples": 900}
    model = LMForecaster(encoder=tiny_encoder, finetune="frozen", **settings)
    run = tmp_path / "runs" / run_name(model, panel)
    outcome: dict[str, Any] = {}

    def fit() -> None:
        try:
            outcome["model"] = fit_lm_on_ray(
                model, panel, workers=2, storage=tmp_path / "runs", max_failures=2
            )
        except Exception as exc:  # pragma: no cover - reported by the assertion below
            outcome["error"] = exc

    thread = threading.Thread(target=fit)
    thread.start()
    deadline = time.monotonic() + 120
    while _registered_epoch(run) < 1 and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    killed = _training_workers()[:1]
    registered = _registered_epoch(run)
    assert killed and 1 <= registered < settings["head_epochs"], "the fit ended too soon"
    os.kill(killed[0].pid, signal.SIGKILL)
    thread.join(timeout=240)
    assert not thread.is_alive() and "error" not in outcome, outcome.get("error")
    fitted = outcome["model"]
    resumed = fitted.fit_report_["engine"]["resumed_from"]
    assert resumed is not None and resumed["stage"] == "head" and resumed["epoch"] >= registered
    assert list(_history(fitted).index) == list(range(1, 7))  # each epoch once
    forecast = fitted.predict(8)
    counts = forecast.groupby("item_id").size()
    assert set(counts.index) == {str(i) for i in panel.item_ids}
    assert (counts == 8).all() and not forecast.duplicated(["item_id", "date"]).any()


class _Recorder(TrainingContext):
    """A local context that writes the training state after every epoch."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.finished_head: StageState | None = None

    def epoch_end(self, state: StageState) -> None:
        if state.label == "head" and state.finished:
            self.finished_head = state
        earlier = self.finished_head if state.label != "head" else None
        write_stage(self.folder / f"{state.label}-{state.epoch}", state, earlier)


class _Resumer(TrainingContext):
    """A local context that carries on from one saved training state."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def resume(self, fresh: StageState) -> StageState | None:
        return read_stage(self.folder, fresh)


def _fit_with(context: TrainingContext, panel: Panel, encoder: str) -> LMForecaster:
    model = LMForecaster(encoder=encoder, finetune="lora", **{**TINY, "finetune_epochs": 2})
    model._check_params()
    model.panel_ = panel
    model._fit(panel, context)
    return model


@pytest.fixture(scope="module")
def recorded(
    panel: Panel, tiny_encoder: str, tmp_path_factory: pytest.TempPathFactory
) -> tuple[LMForecaster, Path]:
    """A LoRA fit that saved its training state after each epoch, and the states' folder."""
    folder = tmp_path_factory.mktemp("states")
    return _fit_with(_Recorder(folder), panel, tiny_encoder), folder


@pytest.mark.parametrize("resume_at", ["head-2", "lora-1"])
def test_a_fit_resumed_from_a_saved_state_ends_as_the_uninterrupted_fit(
    recorded: tuple[LMForecaster, Path], panel: Panel, tiny_encoder: str, resume_at: str
) -> None:
    whole, folder = recorded
    assert sorted(p.name for p in folder.iterdir()) == [
        "head-1",
        "head-2",
        "head-3",
        "lora-1",
        "lora-2",
    ]
    resumed = _fit_with(_Resumer(folder / resume_at), panel, tiny_encoder)
    for stage in ("head", "finetune_stage"):
        assert resumed.fit_report_[stage]["history"] == whole.fit_report_[stage]["history"]
    pd.testing.assert_frame_equal(resumed.predict(8), whole.predict(8))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "seasonalnaive", "--engine", "ray"], "trains the lm model only"),
        (["--model", "lm", "--workers", "2"], "only apply to the Ray engine"),
        (["--model", "lm", "--engine", "spark"], "unknown engine"),
        (["--model", "lm", "--engine", "ray", "--workers", "0"], "--workers must be >= 1"),
    ],
)
def test_cli_engine_options_are_checked_in_one_line(
    tmp_path: Path, extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = invoke(["fit", "--panel", str(tmp_path), "--out", str(tmp_path / "m"), *extra])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m").exists()


def test_a_rank_past_the_end_of_a_small_batch_gets_one_row_of_no_weight(panel: Panel) -> None:
    from salesformer.models.lm.context import DataParallelContext
    from salesformer.models.lm.samples import Standardizer, Wide, build_samples

    wide = Wide.from_panel(panel)
    origin = np.full(3, wide.n_history - 9)
    samples = build_samples(
        wide,
        np.arange(3),
        origin,
        context=52,
        horizon=8,
        freq=panel.freq,
        standardizer=Standardizer.learn(wide, panel),
    )
    factors = []
    for rank in range(4):
        part, factor = DataParallelContext(rank, 4).shard(samples)
        assert len(part) == 1
        factors.append(factor)
    assert factors[3] == 0.0
    # the mean of the ranks' factors is 1: their scaled losses average to the batch's loss
    assert sum(factors) / 4 == pytest.approx(1.0)


def test_the_mean_of_the_scaled_shard_gradients_is_the_whole_batch_gradient(
    panel: Panel,
) -> None:
    import torch

    from salesformer.models.lm.context import DataParallelContext
    from salesformer.models.lm.forecaster import _tensors
    from salesformer.models.lm.network import pinball_loss
    from salesformer.models.lm.samples import Standardizer, Wide, build_samples

    model = LMForecaster(**{**TINY, "dropout": 0.0})
    wide = Wide.from_panel(panel)
    model.context_, model.standardizer_ = 52, Standardizer.learn(wide, panel)
    items = np.repeat(np.arange(len(wide.item_ids)), 3)
    origin = wide.n_history - 9 - np.tile(np.arange(3) * 5, len(wide.item_ids))
    samples = build_samples(
        wide,
        items,
        origin,
        context=52,
        horizon=8,
        freq=panel.freq,
        standardizer=model.standardizer_,
    )
    samples.weight[:] = np.random.default_rng(0).uniform(0.5, 2.0, len(samples))
    text = torch.randn(len(samples), 16, generator=torch.Generator().manual_seed(0))
    head = model._new_head(16, samples.future.shape[2])
    levels = torch.tensor(model.levels, dtype=torch.float32)

    def gradients(rows: np.ndarray, scale: float) -> list[Any]:
        batch = _tensors(samples.take(rows))
        head.zero_grad()
        predicted = head(
            batch["hist"], batch["hist_mask"], batch["static"], batch["future"], text[rows]
        )
        loss = pinball_loss(
            predicted, batch["target"], batch["target_mask"], batch["weight"], levels
        )
        (loss * scale).backward()
        return [p.grad.clone() for p in head.parameters()]

    whole = gradients(np.arange(len(samples)), 1.0)
    world = 3
    shards = []
    for rank in range(world):
        _, scale = DataParallelContext(rank, world).shard(samples)
        shards.append(gradients(np.arange(rank, len(samples), world), scale))
    for index, expected in enumerate(whole):
        mean = sum(shard[index] for shard in shards) / world
        torch.testing.assert_close(mean, expected, rtol=1e-4, atol=1e-6)
