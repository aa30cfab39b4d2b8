"""Where the parts of a batch forecast or a backtest run: here, a local process pool or Ray.

The drivers (:mod:`.predict`, :mod:`.backtest`) are written once against :class:`Executor`;
the executor is the only difference between the local engine and Ray:

* :class:`InProcess` (``--workers 1``): every job runs in this process, one part at a time;
* :class:`LocalPool` (``--workers N`` on the local engine): a
  :class:`concurrent.futures.ProcessPoolExecutor` of ``N`` processes on this machine;
* :class:`RayExecutor` (``--engine ray``): Ray actors (:mod:`.pool`), on one machine or many.

Each keeps the order of the results (``on_result(index, result)`` in part order), a bounded
number of parts in flight (``2 x workers``) and the memory facts of its workers
(:class:`~salesformer.distributed.pool.RunReport`). Shared objects (a fitted model, pooled
errors) are handed over once with :meth:`Executor.share`; a pool worker unpickles each once
and keeps it while the job runs, as a Ray actor does.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from salesformer.distributed.parts import Part
from salesformer.distributed.pool import (
    Job,
    PartProgress,
    RunReport,
    empty_tracker,
    new_tracker,
    run_part,
    run_parts,
    start_workers,
)
from salesformer.errors import ConfigError

OnResult = Callable[[int, Any], None]


class Executor(Protocol):
    """What the drivers ask of an engine (see the module docstring)."""

    workers: int

    def share(self, obj: Any) -> Any:
        """A handle of ``obj`` for the ``shared`` list of later jobs."""

    def keep(self, part: Part) -> Any:
        """A handle of ``part`` for a later pass or a fit on all items."""

    def map_parts(
        self,
        parts: Iterable[tuple[int, Any]],
        job: Job,
        shared: list[Any],
        options: dict[str, Any],
        on_result: OnResult,
        *,
        total: int | None = None,
        progress: PartProgress | None = None,
    ) -> int:
        """``job(part panel, shared objects, **options)`` on every part; results in order."""

    def call(
        self, job: Job, shared: list[Any], options: dict[str, Any], parts: list[Any]
    ) -> tuple[Any, Any]:
        """Start ``job(shared objects, parts=..., **options) -> (a, b)``; handles of a and b."""

    def value(self, handle: Any) -> Any:
        """The value behind a handle of :meth:`call` (waits for it)."""

    def shared_result(self, handle: Any) -> Any:
        """A handle of :meth:`call` as a shared object of later jobs."""

    def fill(self, report: RunReport) -> None:
        """The workers and their memory facts, into ``report``."""


def usable_cores() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def default_local_workers(n_parts: int) -> int:
    """Local workers when none are asked for: one per usable core, no more than parts.

    One part (a catalogue of at most ``items_per_part`` items) runs in this process: a pool
    would only add the start of its processes.
    """
    return max(1, min(usable_cores(), n_parts))


def check_part_size(items_per_part: int) -> int:
    """``items_per_part`` if it is a whole number >= 1, else a :class:`ConfigError`."""
    if isinstance(items_per_part, bool) or not isinstance(items_per_part, int):
        raise ConfigError(f"items_per_part must be a whole number >= 1; got {items_per_part!r}")
    if items_per_part < 1:
        raise ConfigError(f"items_per_part must be a whole number >= 1; got {items_per_part}")
    return items_per_part


@contextmanager
def local_executor(workers: int | None, n_parts: int) -> Iterator[InProcess | LocalPool]:
    """The local engine's executor: :class:`InProcess` for one worker, else a :class:`LocalPool`.

    Args:
        workers: processes; None: :func:`default_local_workers` for ``n_parts`` parts.
        n_parts: parts the job will run (a pool never gets more processes than parts).
    """
    count = default_local_workers(n_parts) if workers is None else min(workers, max(1, n_parts))
    if count == 1:
        yield InProcess()
        return
    with LocalPool(count) as pool:
        yield pool


class InProcess:
    """Every job in this process, one part at a time (``--workers 1``)."""

    workers = 1

    def __init__(self) -> None:
        self._tracker = empty_tracker(1)

    def share(self, obj: Any) -> Any:
        return obj

    def keep(self, part: Part) -> Any:
        return part

    def map_parts(
        self,
        parts: Iterable[tuple[int, Any]],
        job: Job,
        shared: list[Any],
        options: dict[str, Any],
        on_result: OnResult,
        *,
        total: int | None = None,
        progress: PartProgress | None = None,
    ) -> int:
        done = 0
        name = getattr(job, "__name__", "job")
        for index, part in parts:
            _, result, facts = run_part(index, job, part, lambda: shared, options)
            self._tracker.record(0, name, index, facts)
            on_result(index, result)
            done += 1
            if progress is not None:
                progress(done, total)
        return done

    def call(
        self, job: Job, shared: list[Any], options: dict[str, Any], parts: list[Any]
    ) -> tuple[Any, Any]:
        first, second = job(shared, parts=parts, **options)
        return first, second

    def value(self, handle: Any) -> Any:
        return handle

    def shared_result(self, handle: Any) -> Any:
        return handle

    def fill(self, report: RunReport) -> None:
        report.workers = 1
        self._tracker.fill(report)


@dataclass(frozen=True)
class _Shared:
    """An object pickled once on the driver; a pool worker unpickles it once and keeps it."""

    token: str
    payload: bytes


_CACHE: dict[str, Any] = {}
_CACHE_SIZE = 64


def _resolve(shared: list[_Shared]) -> list[Any]:
    out = []
    for item in shared:
        if item.token not in _CACHE:
            if len(_CACHE) >= _CACHE_SIZE:
                _CACHE.pop(next(iter(_CACHE)))
            _CACHE[item.token] = pickle.loads(item.payload)  # bytes of our own driver
        out.append(_CACHE[item.token])
    return out


def _pool_part(
    index: int, job: Job, part: Part, shared: list[_Shared], options: dict[str, Any]
) -> tuple[int, Any, dict[str, Any]]:
    """The task of a pool process: one part (module level, so that it pickles)."""
    return run_part(index, job, part, lambda: _resolve(shared), options)


def _pool_call(
    job: Job, shared: list[_Shared], options: dict[str, Any], parts: list[Part]
) -> tuple[Any, Any]:
    return job(_resolve(shared), parts=parts, **options)


_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def _one_thread_each() -> None:
    """A pool process's numeric libraries use one thread, unless the environment says otherwise.

    As Ray does for an actor of one CPU: N processes of N threads each would oversubscribe the
    cores. It runs before the jobs import LightGBM or torch.
    """
    for name in _THREAD_VARIABLES:
        os.environ.setdefault(name, "1")


@dataclass(frozen=True)
class _Half:
    """One of the two values of a :meth:`LocalPool.call` future."""

    future: Future[tuple[Any, Any]]
    position: int


class LocalPool:
    """A :class:`ProcessPoolExecutor` of ``workers`` processes on this machine.

    Processes start with ``spawn`` (not ``fork``: the driver may hold threads of Arrow or
    OpenMP, which a forked child would inherit in an unknown state); use it as a context
    manager, which shuts the pool down.
    """

    def __init__(self, workers: int) -> None:
        if workers < 2:
            raise ValueError(f"a LocalPool needs >= 2 workers; got {workers}; use InProcess")
        self.workers = workers
        context = multiprocessing.get_context("spawn")
        self._pool = ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=_one_thread_each
        )
        self._tracker = empty_tracker(workers)

    def __enter__(self) -> LocalPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def share(self, obj: Any) -> _Shared:
        return _Shared(uuid.uuid4().hex, pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))

    def keep(self, part: Part) -> Any:
        return part

    def map_parts(
        self,
        parts: Iterable[tuple[int, Any]],
        job: Job,
        shared: list[Any],
        options: dict[str, Any],
        on_result: OnResult,
        *,
        total: int | None = None,
        progress: PartProgress | None = None,
    ) -> int:
        name = getattr(job, "__name__", "job")
        limit = 2 * self.workers
        in_flight: set[Future[tuple[int, Any, dict[str, Any]]]] = set()
        finished: dict[int, Any] = {}
        next_index = 0
        source = iter(parts)
        exhausted = False
        while not exhausted or in_flight:
            while not exhausted and len(in_flight) < limit:
                item = next(source, None)
                if item is None:
                    exhausted = True
                    break
                in_flight.add(self._pool.submit(_pool_part, item[0], job, item[1], shared, options))
            if not in_flight:
                break
            ready, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in ready:
                in_flight.discard(future)
                index, result, facts = future.result()
                self._tracker.record(self._tracker.slot_of(int(facts["pid"])), name, index, facts)
                finished[index] = result
            while next_index in finished:
                on_result(next_index, finished.pop(next_index))
                next_index += 1
                if progress is not None:
                    progress(next_index, total)
        return next_index

    def call(
        self, job: Job, shared: list[Any], options: dict[str, Any], parts: list[Any]
    ) -> tuple[Any, Any]:
        future = self._pool.submit(_pool_call, job, shared, options, parts)
        return _Half(future, 0), _Half(future, 1)

    def value(self, handle: _Half) -> Any:
        return handle.future.result()[handle.position]

    def shared_result(self, handle: _Half) -> Any:
        return self.share(self.value(handle))

    def fill(self, report: RunReport) -> None:
        report.workers = self.workers
        self._tracker.fill(report)


class RayExecutor:
    """Ray actors of one CPU each (:func:`~salesformer.distributed.pool.start_workers`).

    Args:
        ray: the ``ray`` module, connected (:func:`~.engine.ray_session`).
        workers: actors to start.
    """

    def __init__(self, ray: Any, workers: int) -> None:
        self.ray = ray
        self.workers = workers
        self.actors = start_workers(ray, workers)
        self._tracker = new_tracker(ray, self.actors)
        self._calls = 0

    def close(self) -> None:
        """Stop the actors."""
        for actor in self.actors:
            self.ray.kill(actor)

    def share(self, obj: Any) -> Any:
        return self.ray.put(obj)

    def keep(self, part: Part) -> Any:
        return self.ray.put(part)

    def map_parts(
        self,
        parts: Iterable[tuple[int, Any]],
        job: Job,
        shared: list[Any],
        options: dict[str, Any],
        on_result: OnResult,
        *,
        total: int | None = None,
        progress: PartProgress | None = None,
    ) -> int:
        return run_parts(
            self.ray,
            self.actors,
            parts,
            job,
            shared,
            options,
            on_result,
            total=total,
            progress=progress,
            tracker=self._tracker,
        )

    def call(
        self, job: Job, shared: list[Any], options: dict[str, Any], parts: list[Any]
    ) -> tuple[Any, Any]:
        actor = self.actors[self._calls % len(self.actors)]  # one per worker in turn
        self._calls += 1
        first, second = actor.call.options(num_returns=2).remote(job, shared, options, parts)
        return first, second

    def value(self, handle: Any) -> Any:
        return self.ray.get(handle)

    def shared_result(self, handle: Any) -> Any:
        return handle

    def fill(self, report: RunReport) -> None:
        report.workers = self.workers
        self._tracker.fill(report)
