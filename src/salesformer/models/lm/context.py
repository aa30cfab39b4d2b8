"""Where the LM training loop runs: one process, or one rank of a data-parallel group.

The epochs of :class:`~salesformer.models.lm.forecaster.LMForecaster` are written once and
call the hooks of a :class:`TrainingContext`:

* :meth:`~TrainingContext.shard` gives this rank its rows of a batch (rows ``rank::world``)
  and the factor that turns the shard's mean loss into its share of the whole batch's loss;
* :meth:`~TrainingContext.reduce_gradients` averages the gradients over the ranks after the
  backward pass, so every rank takes the optimizer step of the whole batch;
* :meth:`~TrainingContext.sync` copies rank 0's weights to every rank when a stage starts;
* :meth:`~TrainingContext.agree` makes every rank use rank 0's validation loss, so early
  stopping decides alike everywhere;
* :meth:`~TrainingContext.smallest` gives every rank the smallest of the ranks' values (the
  batch size each probed on its GPU, :mod:`salesformer.models.lm.batch_size`);
* :meth:`~TrainingContext.epoch_end` and :meth:`~TrainingContext.resume` save a stage's state
  after each epoch and read it back after a restart.

The local context is rank 0 of 1: every hook leaves the loop exactly as it was (no sharding,
no scaling, no communication, nothing saved). :class:`DataParallelContext` implements the hooks
with ``torch.distributed`` (the process group must already exist, e.g. set up by Ray Train).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from salesformer.models.lm.samples import Samples
from salesformer.text.encoder import import_torch


@dataclass
class StageState:
    """A training stage after an epoch: enough to save it and to carry on from it.

    Attributes:
        label: ``"head"`` for stage 1, the fine-tuning mode for stage 2.
        epoch: epochs finished in this stage.
        finished: the stage will run no more epochs (last epoch or early stop).
        history: the per-epoch records of the fit report.
        best: best validation loss so far (stage 2 starts from stage 1's).
        stale: epochs without improvement (stage 1's early stopping).
        improved: whether stage 2 has beaten stage 1 yet.
        modules: the trained modules by name (``head``, ``encoder``).
        best_states: the best state of each module so far (trainable tensors only for the
            encoder).
        optimizer: the stage's optimizer.
        rng: the numpy generator that draws the batches.
    """

    label: str
    epoch: int
    finished: bool
    history: list[dict[str, float]]
    best: float
    stale: int = 0
    improved: bool = False
    modules: dict[str, Any] = field(default_factory=dict)
    best_states: dict[str, dict[str, Any]] = field(default_factory=dict)
    optimizer: Any = None
    rng: np.random.Generator | None = None


def cell_weight(samples: Samples) -> float:
    """Total weight of a batch's target cells: the denominator of the pinball loss."""
    return float((samples.target_mask * samples.weight[:, None]).sum())


class TrainingContext:
    """The local context: rank 0 of 1; every hook leaves the training loop as it is."""

    rank = 0
    world = 1
    #: Frozen embeddings of the fit's item texts, computed elsewhere (e.g. by Ray actors);
    #: None lets the fit encode them itself.
    embeddings: np.ndarray | None = None

    def shard(self, samples: Samples) -> tuple[Samples, float]:
        """This rank's rows of ``samples`` and the loss factor (1.0: the batch itself)."""
        return samples, 1.0

    def reduce_gradients(self, parameters: list[Any], loss: Any) -> float:
        """Average gradients over the ranks; returns the batch loss for the progress log."""
        return float(loss.detach())

    def sync(self, *modules: Any) -> None:
        """Give every rank rank 0's weights (nothing to do on one process)."""

    def agree(self, value: float) -> float:
        """Rank 0's value on every rank (here: ``value``)."""
        return value

    def smallest(self, value: int) -> int:
        """The smallest of the ranks' ``value`` on every rank (here: ``value``)."""
        return value

    def epoch_end(self, state: StageState) -> None:
        """Called after each epoch's validation (a checkpoint hook; nothing locally)."""

    def resume(self, fresh: StageState) -> StageState | None:
        """The saved state of stage ``fresh.label`` to carry on from, or None to start afresh.

        ``fresh`` holds the stage's new modules, optimizer and generator; a context that
        finds the stage in a checkpoint loads the saved tensors into them and returns the
        saved epoch count, history, best loss and best states.
        """
        return None


class DataParallelContext(TrainingContext):
    """Rank ``rank`` of ``world`` processes joined by a ``torch.distributed`` process group.

    Each rank computes the loss of its shard of every batch (rows ``rank::world``), scaled so
    that the mean of the ranks' gradients is the gradient of the whole batch's loss; the
    optimizer steps are those of a single-process run.
    """

    def __init__(
        self,
        rank: int,
        world: int,
        embeddings: np.ndarray | None = None,
        device: str = "cpu",
    ) -> None:
        self.rank = int(rank)
        self.world = int(world)
        self.embeddings = embeddings
        #: Where this rank trains; the small tensors of ``agree`` and ``smallest`` go there
        #: (NCCL, the backend of GPU workers, reduces only tensors on the GPU).
        self.device = device
        self._dist = import_torch().distributed

    def shard(self, samples: Samples) -> tuple[Samples, float]:
        rows = np.arange(self.rank, len(samples), self.world)
        total = cell_weight(samples)
        if not len(rows) or total <= 0:
            # a batch smaller than the group: this rank runs one row with no weight, so that
            # every rank has gradients of the same tensors to average
            return samples.take(np.zeros(1, dtype=np.int64)), 0.0
        part = samples.take(rows)
        return part, self.world * cell_weight(part) / total

    def reduce_gradients(self, parameters: list[Any], loss: Any) -> float:
        torch = import_torch()
        with_grad = [p for p in parameters if p.grad is not None]
        flat = torch.cat([p.grad.reshape(-1) for p in with_grad] + [loss.detach().reshape(1)])
        self._dist.all_reduce(flat, op=self._dist.ReduceOp.SUM)
        flat /= self.world
        offset = 0
        for p in with_grad:
            n = p.grad.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p.grad))
            offset += n
        return float(flat[-1])

    def sync(self, *modules: Any) -> None:
        for module in modules:
            for tensor in [*module.parameters(), *module.buffers()]:
                self._dist.broadcast(tensor.data, src=0)

    def agree(self, value: float) -> float:
        torch = import_torch()
        box = torch.tensor([value], dtype=torch.float64, device=self.device)
        self._dist.broadcast(box, src=0)
        return float(box[0])

    def smallest(self, value: int) -> int:
        torch = import_torch()
        box = torch.tensor([int(value)], dtype=torch.int64, device=self.device)
        self._dist.all_reduce(box, op=self._dist.ReduceOp.MIN)
        return int(box[0])


__all__ = ["DataParallelContext", "StageState", "TrainingContext", "cell_weight"]
