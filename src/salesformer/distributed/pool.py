"""A pool of Ray actors that run one job per part, and the driver loop that feeds them.

Each actor (one per worker, restarted by Ray when its process dies: ``max_restarts=-1``,
``max_task_retries=-1``) resolves the shared objects a job names (a fitted model, pooled
errors) once and keeps them, so a model is deserialised once per worker, not once per part.
The driver keeps a bounded number of parts in flight (``2 x workers``) and hands results to
``on_result`` in part order, each part exactly once, whatever order they finish in and however
often Ray retried them.

With each part a worker reports its memory (:mod:`salesformer.distributed.memory`): its peak
resident set, which counts the object-store pages it mapped, and its peak private memory
(USS), which does not; :class:`RunReport` keeps both per worker and a reading per part.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from salesformer.distributed.memory import PeakSampler, process_memory
from salesformer.distributed.parts import Part

#: ``job(panel, shared_objects, **options) -> result``; a module-level function.
Job = Callable[..., Any]
#: ``progress(done, total)`` after each part; ``total`` is None when unknown.
PartProgress = Callable[[int, int | None], None]

_CACHE_SIZE = 64


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


@dataclass
class RunReport:
    """What a Ray job did: sizes, time and memory (JSON-able through :meth:`to_dict`).

    Attributes:
        model: the model (predict) or models (backtest), comma-separated.
        horizon: periods forecast.
        parts: parts forecast.
        items: items of the panel.
        rows: rows written (or collected).
        seconds: wall time of the job, connection included.
        workers: actors used.
        worker_peak_rss_mb: peak resident memory (``ru_maxrss``) of each worker, MiB: the
            largest over its processes (a restarted worker is a new process). It includes
            the pages of Ray's object store the worker mapped (parts read, results written).
        worker_peak_private_mb: peak private memory (USS, sampled while parts run) of each
            worker, MiB: what the worker alone holds. None where the platform cannot tell
            (no ``/proc/self/smaps_rollup``).
        driver_peak_rss_mb: peak resident memory of the driver process, MiB.
        worker_restarts: worker processes that replaced a dead one during the job.
        part_memory: one reading per part, in the order parts finished: ``job``, ``part``,
            ``worker``, ``pid``, ``peak_rss_mb``, ``peak_private_mb`` (during the part) and
            the worker's memory after it (``rss_mb``, ``private_mb``, ``shared_mb``,
            ``pss_mb``, ``anon_mb``, ``shmem_mb``, ``file_mb``; None where unknown).
    """

    model: str = ""
    horizon: int = 0
    parts: int = 0
    items: int = 0
    rows: int = 0
    seconds: float = 0.0
    workers: int = 0
    worker_peak_rss_mb: list[float] = field(default_factory=list)
    worker_peak_private_mb: list[float] | None = None
    driver_peak_rss_mb: float = 0.0
    worker_restarts: int = 0
    part_memory: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON types."""
        return asdict(self)


class PartWorker:
    """The actor: runs jobs on parts, with the shared objects they name cached."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def pid(self) -> int:
        """The worker's process id."""
        return os.getpid()

    def _resolve(self, shared: list[Any]) -> list[Any]:
        import ray

        out = []
        for ref in shared:
            key = ref.hex()
            if key not in self._cache:
                if len(self._cache) >= _CACHE_SIZE:
                    self._cache.pop(next(iter(self._cache)))
                self._cache[key] = ray.get(ref)
            out.append(self._cache[key])
        return out

    def run(
        self, index: int, job: Job, part: Part, shared: list[Any], options: dict[str, Any]
    ) -> tuple[int, Any, dict[str, Any]]:
        """``(index, job(part panel, shared objects, **options), memory facts)``."""
        return run_part(index, job, part, lambda: self._resolve(shared), options)

    def call(
        self, job: Job, shared: list[Any], options: dict[str, Any], parts: list[Any] | None = None
    ) -> Any:
        """``job(shared objects, **options)``: a job on no part (a fit on all items).

        ``parts`` (object references of parts), when given, reach the job as ``parts=`` the
        :class:`Part` objects.
        """
        import ray

        extra = {} if parts is None else {"parts": ray.get(parts)}
        return job(self._resolve(shared), **options, **extra)


def run_part(
    index: int,
    job: Job,
    part: Part,
    resolve: Callable[[], list[Any]],
    options: dict[str, Any],
) -> tuple[int, Any, dict[str, Any]]:
    """``(index, job(part panel, resolve(), **options), memory facts)``, in any process.

    The facts: ``pid``, ``peak_rss_mb``, ``peak_private_mb`` (during the part) and the
    fields of :class:`ProcessMemory` after it (None where unknown).
    """
    with PeakSampler() as sampler:
        objects = resolve()
        result = job(part.to_panel(), objects, **options)
    now = process_memory()
    peak_rss, peak_private = peak_rss_mb(), sampler.peak_mb
    if now is not None:  # the kernel updates its peak RSS lazily: it may lag the reading
        peak_rss = max(peak_rss, now.rss_mb)
        peak_private = max(peak_private or 0.0, now.private_mb)
    facts: dict[str, Any] = {
        "pid": os.getpid(),
        "peak_rss_mb": round(peak_rss, 1),
        "peak_private_mb": None if peak_private is None else round(peak_private, 1),
    }
    facts.update(asdict(now) if now is not None else {})
    return index, result, facts


def start_workers(ray: Any, n_workers: int) -> list[Any]:
    """``n_workers`` :class:`PartWorker` actors of one CPU each, restarted when they die."""
    actor = ray.remote(num_cpus=1, max_restarts=-1, max_task_retries=-1)(PartWorker)
    return [actor.remote() for _ in range(n_workers)]


@dataclass
class _Tracker:
    """Per-worker process ids, peak memory and the memory reading of each part."""

    pids: list[set[int]]
    peaks: list[dict[int, float]]
    private: list[dict[int, float]] = field(default_factory=list)
    readings: list[dict[str, Any]] = field(default_factory=list)

    def record(self, worker: int, job: str, index: int, facts: dict[str, Any]) -> None:
        pid = int(facts["pid"])
        self.pids[worker].add(pid)
        self.peaks[worker][pid] = max(facts["peak_rss_mb"], self.peaks[worker].get(pid, 0.0))
        if facts.get("peak_private_mb") is not None:
            while len(self.private) <= worker:
                self.private.append({})
            seen = self.private[worker].get(pid, 0.0)
            self.private[worker][pid] = max(facts["peak_private_mb"], seen)
        self.readings.append({"job": job, "part": index, "worker": worker, **facts})

    def slot_of(self, pid: int) -> int:
        """The worker slot of process ``pid``: the one it ran in before, else the first free."""
        for slot, seen in enumerate(self.pids):
            if pid in seen:
                return slot
        free = next((slot for slot, seen in enumerate(self.pids) if not seen), 0)
        self.pids[free].add(pid)
        return free

    def fill(self, report: RunReport) -> None:
        report.worker_peak_rss_mb = [round(max(peaks.values()), 1) for peaks in self.peaks if peaks]
        private = [round(max(p.values()), 1) for p in self.private if p]
        report.worker_peak_private_mb = private or None
        report.worker_restarts = sum(max(0, len(p) - 1) for p in self.pids)
        report.part_memory = list(self.readings)


def run_parts(
    ray: Any,
    workers: list[Any],
    parts: Iterable[tuple[int, Part | Any]],
    job: Job,
    shared: list[Any],
    options: dict[str, Any],
    on_result: Callable[[int, Any], None],
    *,
    total: int | None = None,
    progress: PartProgress | None = None,
    tracker: _Tracker | None = None,
) -> int:
    """Run ``job`` on every part over ``workers``; ``on_result(index, result)`` in part order.

    ``parts`` yields ``(index, part)`` with indexes 0, 1, 2, ...; a part may be a
    :class:`Part` or an ``ObjectRef`` to one already in the object store.

    At most ``2 x len(workers)`` parts are in flight (read, shipped or running), so the driver
    holds a bounded number of parts and results. Returns the number of parts.
    """
    wrapped = [ray.put(s) if not isinstance(s, ray.ObjectRef) else s for s in shared]
    limit = 2 * len(workers)
    in_flight: dict[Any, int] = {}  # result ref -> worker slot
    load = [0] * len(workers)
    finished: dict[int, Any] = {}
    written: set[int] = set()
    next_index = 0
    done = 0
    source: Iterator[tuple[int, Part | Any]] = iter(parts)
    exhausted = False

    def drain(block: bool) -> None:
        nonlocal next_index, done
        if not in_flight:
            return
        ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=None if block else 0)
        for ref in ready:
            slot = in_flight.pop(ref)
            load[slot] -= 1
            index, result, facts = ray.get(ref)
            if tracker is not None:
                tracker.record(slot, getattr(job, "__name__", "job"), index, facts)
            if index in written or index in finished:
                continue  # a part is written once, even if Ray ran it twice
            finished[index] = result
        while next_index in finished:
            on_result(next_index, finished.pop(next_index))
            written.add(next_index)
            next_index += 1
            done += 1
            if progress is not None:
                progress(done, total)

    while not exhausted or in_flight:
        while not exhausted and len(in_flight) < limit:
            item = next(source, None)
            if item is None:
                exhausted = True
                break
            slot = min(range(len(workers)), key=load.__getitem__)
            ref = workers[slot].run.remote(item[0], job, item[1], wrapped, options)
            in_flight[ref] = slot
            load[slot] += 1
        drain(block=True)
    return next_index


def empty_tracker(n_workers: int) -> _Tracker:
    """A tracker for ``n_workers`` whose processes it learns from their first part."""
    return _Tracker([set() for _ in range(n_workers)], [{} for _ in range(n_workers)])


def new_tracker(ray: Any, workers: list[Any]) -> _Tracker:
    """A tracker that knows each worker's first process (waits for the workers to start)."""
    first = ray.get([worker.pid.remote() for worker in workers])
    return _Tracker([{pid} for pid in first], [{} for _ in workers])


class Stopwatch:
    """Seconds since creation."""

    def __init__(self) -> None:
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return round(time.perf_counter() - self.start, 3)
