"""``benchmarks/gpu_check.py`` on a machine without a GPU: one line saying so, exit 0, no files.

The check itself needs a CUDA GPU (docs/lm.md, "Checking on a GPU machine"); here only its
refusal is tested, with torch made to see no GPU, so the test means the same on any machine.
"""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from benchmarks import gpu_check  # noqa: E402


def test_without_a_gpu_it_says_so_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    gpu_check.main(["--data", str(tmp_path / "absent"), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("no GPU: torch") and "sees no CUDA GPU" in out[0]
    assert not (tmp_path / "out").exists()


def test_the_fits_run_on_the_gpu_and_score_on_a_validation_window() -> None:
    import pandas as pd

    assert gpu_check.DEVICE["name"] == "cuda"
    assert pd.Timestamp(gpu_check.CUTOFF) + pd.Timedelta(weeks=gpu_check.HORIZON) < pd.Timestamp(
        "2011-07-04"
    )  # the window scored ends before the first test cutoff
