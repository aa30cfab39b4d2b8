"""Reading a process's memory from /proc: the parser, the sampler, the tracker (no Ray)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from salesformer.distributed import memory
from salesformer.distributed.collect import Collector
from salesformer.distributed.memory import (
    PeakSampler,
    memory_from_text,
    parse_kb_fields,
    process_memory,
)
from salesformer.distributed.pool import RunReport, _Tracker

ROLLUP = """\
55d0c0a00000-7ffd2b7f9000 ---p 00000000 00:00 0                          [rollup]
Rss:              716800 kB
Pss:              650240 kB
Pss_Anon:         401408 kB
Pss_Shmem:        102400 kB
Shared_Clean:     122880 kB
Shared_Dirty:      71680 kB
Private_Clean:     10240 kB
Private_Dirty:    512000 kB
Referenced:       716800 kB
Anonymous:        402432 kB
"""
STATUS = """\
Name:\tray::PartWorker
VmHWM:\t  1130496 kB
VmRSS:\t   716800 kB
RssAnon:\t   402432 kB
RssFile:\t   123904 kB
RssShmem:\t   190464 kB
Threads:\t40
"""

on_linux = pytest.mark.skipif(
    not Path("/proc/self/smaps_rollup").is_file(), reason="needs /proc/self/smaps_rollup"
)


def test_parse_kb_fields_keeps_kb_lines_only() -> None:
    fields = parse_kb_fields(ROLLUP)
    assert fields["Rss"] == 716800 and fields["Private_Dirty"] == 512000
    assert "55d0c0a00000-7ffd2b7f9000 ---p 00000000 00" not in fields
    status = parse_kb_fields(STATUS)
    assert status == {
        "VmHWM": 1130496,
        "VmRSS": 716800,
        "RssAnon": 402432,
        "RssFile": 123904,
        "RssShmem": 190464,
    }


def test_memory_from_text_splits_private_and_shared() -> None:
    got = memory_from_text(ROLLUP, STATUS)
    assert got.rss_mb == 700.0
    assert got.private_mb == 510.0  # (10240 + 512000) kB: USS
    assert got.shared_mb == 190.0  # (122880 + 71680) kB
    assert got.private_mb + got.shared_mb == got.rss_mb
    assert (got.pss_mb, got.anon_mb, got.shmem_mb, got.file_mb) == (635.0, 393.0, 186.0, 121.0)


def test_missing_fields_read_as_zero() -> None:
    got = memory_from_text("Rss: 2048 kB\n", "")
    assert (got.rss_mb, got.private_mb, got.shared_mb, got.anon_mb) == (2.0, 0.0, 0.0, 0.0)


def test_no_smaps_rollup_means_none(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(memory, "SMAPS_ROLLUP", tmp_path / "absent")
    assert process_memory() is None and memory.private_mb() is None
    with PeakSampler(0.01) as sampler:
        pass
    assert sampler.peak_mb is None


@on_linux
def test_process_memory_sees_a_new_array() -> None:
    before = process_memory()
    block = np.ones(64 * 1024 * 1024 // 8)  # 64 MiB, touched: private anonymous pages
    after = process_memory()
    assert before is not None and after is not None
    assert after.private_mb - before.private_mb > 50
    assert after.anon_mb - before.anon_mb > 50
    assert after.rss_mb >= after.private_mb > 0
    del block


@on_linux
def test_peak_sampler_catches_a_freed_peak() -> None:
    base = process_memory()
    assert base is not None
    with PeakSampler(0.005) as sampler:
        block = np.ones(96 * 1024 * 1024 // 8)
        block.sum()
        import time

        time.sleep(0.05)
        del block
    assert sampler.peak_mb is not None and sampler.peak_mb - base.private_mb > 80


def test_tracker_keeps_both_peaks_per_worker_and_restarts() -> None:
    tracker = _Tracker([{10}, {20}], [{}, {}])
    facts = {"peak_rss_mb": 700.0, "peak_private_mb": 400.0, "private_mb": 350.0}
    tracker.record(1, "forecast_part", 0, {"pid": 20, **facts})
    tracker.record(0, "forecast_part", 1, {"pid": 10, **facts, "peak_rss_mb": 650.0})
    tracker.record(0, "forecast_part", 2, {"pid": 11, **facts, "peak_private_mb": 420.0})
    report = RunReport()
    tracker.fill(report)
    assert report.worker_peak_rss_mb == [700.0, 700.0]
    assert report.worker_peak_private_mb == [420.0, 400.0]
    assert report.worker_restarts == 1
    assert [r["part"] for r in report.part_memory] == [0, 1, 2]
    assert report.part_memory[2]["worker"] == 0 and report.part_memory[2]["pid"] == 11


def test_tracker_without_private_memory_reports_none() -> None:
    tracker = _Tracker([{10}], [{}])
    tracker.record(0, "survey_part", 0, {"pid": 10, "peak_rss_mb": 300.0, "peak_private_mb": None})
    report = RunReport()
    tracker.fill(report)
    assert report.worker_peak_rss_mb == [300.0] and report.worker_peak_private_mb is None


def test_driver_keeps_copies_not_object_store_views() -> None:
    values = np.arange(12.0).reshape(-1, 1)
    values.flags.writeable = False  # as ray.get hands numeric columns over: store views
    frame = pd.DataFrame(values, columns=["x"], copy=False)
    assert np.shares_memory(frame["x"].to_numpy(), values)
    collector = Collector(1, None)
    collector.add(0, {"frames": [(0, frame)], "facts": [(0, frame)], "timings": []})
    for kept in (collector.frames[0][0], collector.facts[0][0]):
        assert not np.shares_memory(kept["x"].to_numpy(), values)
        pd.testing.assert_frame_equal(kept, frame)
