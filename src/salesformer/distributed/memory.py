"""What a worker process holds in memory, as Linux accounts it: resident, private, shared.

A Ray worker's resident set (RSS, and its peak ``ru_maxrss``) counts every page it has mapped
and touched, including the pages of Ray's object store (a shared-memory file every worker on a
node maps) that it read parts from or wrote results to. Those pages belong to the store, not
to the worker: they are counted again in every process that maps them, and the store reuses
them. The memory a worker alone holds is its *private* memory, the unique set size (USS):
``Private_Clean + Private_Dirty`` of ``/proc/self/smaps_rollup``. Linux keeps no peak of it, so
:class:`PeakSampler` samples it while a job runs.

On systems without ``/proc/self/smaps_rollup`` (macOS, Windows, Linux before 4.14) the
private and shared figures are None.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

SMAPS_ROLLUP = Path("/proc/self/smaps_rollup")
STATUS = Path("/proc/self/status")
_STATUS_KEYS = ("RssAnon", "RssFile", "RssShmem", "VmRSS", "VmHWM")


@dataclass(frozen=True)
class ProcessMemory:
    """One reading of the process's memory, in MiB.

    Attributes:
        rss_mb: resident set now (private and shared pages).
        private_mb: unique set size: pages mapped by this process only (``Private_*``).
        shared_mb: resident pages also mapped by other processes (``Shared_*``).
        pss_mb: proportional set size (each shared page divided among its processes).
        anon_mb: resident anonymous memory (heap, arrays): ``RssAnon``.
        shmem_mb: resident shared-memory pages (Ray's object store among them): ``RssShmem``.
        file_mb: resident pages of mapped files (libraries): ``RssFile``.
    """

    rss_mb: float
    private_mb: float
    shared_mb: float
    pss_mb: float
    anon_mb: float
    shmem_mb: float
    file_mb: float


def parse_kb_fields(text: str) -> dict[str, int]:
    """``{name: kB}`` from the ``Name:   123 kB`` lines of ``smaps_rollup`` or ``status``.

    Lines without a ``kB`` value (the rollup's address header, ``Name:`` of ``status``)
    are skipped.
    """
    fields: dict[str, int] = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        words = rest.split()
        if not sep or len(words) != 2 or words[1] != "kB" or not words[0].isdigit():
            continue
        fields[name.strip()] = int(words[0])
    return fields


def memory_from_text(rollup: str, status: str) -> ProcessMemory:
    """A :class:`ProcessMemory` from the text of ``smaps_rollup`` and ``status``."""
    smaps = parse_kb_fields(rollup)
    stat = parse_kb_fields(status)

    def mb(*names: str, source: dict[str, int] = smaps) -> float:
        return round(sum(source.get(n, 0) for n in names) / 1024.0, 1)

    return ProcessMemory(
        rss_mb=mb("Rss"),
        private_mb=mb("Private_Clean", "Private_Dirty"),
        shared_mb=mb("Shared_Clean", "Shared_Dirty"),
        pss_mb=mb("Pss"),
        anon_mb=mb("RssAnon", source=stat),
        shmem_mb=mb("RssShmem", source=stat),
        file_mb=mb("RssFile", source=stat),
    )


def process_memory() -> ProcessMemory | None:
    """This process's memory now; None where ``/proc/self/smaps_rollup`` cannot be read."""
    try:
        rollup = SMAPS_ROLLUP.read_text()
        status = STATUS.read_text()
    except OSError:
        return None
    return memory_from_text(rollup, status)


def private_mb() -> float | None:
    """This process's private memory (USS) now, MiB; None where it cannot be read."""
    try:
        fields = parse_kb_fields(SMAPS_ROLLUP.read_text())
    except OSError:
        return None
    return (fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)) / 1024.0


class PeakSampler:
    """The peak private memory of this process while a block runs, sampled in a thread.

    ``with PeakSampler(0.1) as sampler: ...`` reads the USS every ``interval`` seconds and
    once more when the block ends; ``sampler.peak_mb`` is the largest reading (None where the
    USS cannot be read). A peak shorter than ``interval`` may be missed.
    """

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.peak_mb: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> bool:
        now = private_mb()
        if now is None:
            return False
        self.peak_mb = now if self.peak_mb is None else max(self.peak_mb, now)
        return True

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            if not self._sample():
                return

    def __enter__(self) -> PeakSampler:
        if self._sample():
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._sample()
