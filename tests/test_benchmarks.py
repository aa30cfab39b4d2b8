"""The benchmark scripts: each runs as a module with a working ``--help``; the shared harness.

The scripts themselves take minutes to hours on the real datasets; these tests need neither.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks import harness

SCRIPTS = sorted(
    path.stem
    for path in (harness.ROOT / "benchmarks").glob("*.py")
    # helpers of the scripts, not scripts themselves
    if path.name
    not in (
        "__init__.py",
        "harness.py",
        "encoders_retail.py",
        "encoders_synthetic.py",
    )
)


def test_every_script_is_found() -> None:
    assert "online_retail" in SCRIPTS
    assert len(SCRIPTS) >= 18


@pytest.mark.parametrize("name", SCRIPTS)
def test_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    module = importlib.import_module(f"benchmarks.{name}")
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "usage:" in printed
    assert "--help" in printed


def test_write_results(tmp_path: Path) -> None:
    report = {"wape": np.float64(0.5), "rows": [{"model": "LM", "items": np.int64(3)}]}
    path = harness.write_results("demo", report, "# Demo", out=tmp_path, argv=["--fast"])

    assert path == tmp_path / "demo.json"
    body = json.loads(path.read_text())
    assert body["wape"] == 0.5
    assert body["rows"] == [{"model": "LM", "items": 3}]
    provenance = body["provenance"]
    assert provenance["command"].startswith("python -m benchmarks.")
    assert provenance["command"].endswith("--fast")
    assert "commit" in provenance
    assert "dirty" in provenance
    assert provenance["machine"]["cores"] is not None
    assert (tmp_path / "demo.md").read_text() == "# Demo\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.json", "demo.md"]


def test_write_results_replaces_an_earlier_result(tmp_path: Path) -> None:
    harness.write_results("demo", {"run": 1}, out=tmp_path, argv=[])
    harness.write_results("demo", {"run": 2}, out=tmp_path, argv=[])

    assert json.loads((tmp_path / "demo.json").read_text())["run"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.json"]


def test_require_file_names_the_missing_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "data.parquet"
    with pytest.raises(SystemExit) as exit_info:
        harness.require_file(missing, "--data")
    message = str(exit_info.value.code)
    assert str(missing) in message
    assert "--data" in message


def test_require_file_returns_an_existing_path(tmp_path: Path) -> None:
    present = tmp_path / "data.parquet"
    present.write_bytes(b"")
    assert harness.require_file(present) == present


def test_module_command_runs_this_interpreter() -> None:
    command = harness.module_command("encoders", "--child", "x")
    assert command == [sys.executable, "-m", "benchmarks.encoders", "--child", "x"]


def test_summary_over_seeds_and_clear_wins() -> None:
    from benchmarks.online_retail import clear_wins, summarise

    runs = pd.DataFrame(
        {
            "model": ["A", "A", "A", "B", "C", "C"],
            "run": ["A_s0", "A_s1", "A_s2", "B", "C_s0", "C_s1"],
            "wape": [0.60, 0.62, 0.61, 0.63, 0.615, 0.64],
        }
    )
    summary = summarise(runs, ("wape",))
    a = summary.set_index("model").loc["A"]
    assert a["wape"] == pytest.approx(0.61) and a["seeds"] == 3
    assert (a["wape_min"], a["wape_max"]) == (0.60, 0.62)
    # A's worst seed (0.62) beats B (0.63); C's spread overlaps both, so no claim involves C.
    assert clear_wins(summary, "wape") == ["A < B"]


def test_without_text_gives_every_item_the_same_text() -> None:
    from benchmarks.online_retail import without_text
    from salesformer.data.synthetic import generate_catalogue
    from salesformer.text import item_texts

    panel = generate_catalogue(n_items=6, n_weeks=30, seed=1).panel()
    blank = without_text(panel)
    assert blank.items is not None
    assert item_texts(blank.items).nunique() == 1
    pd.testing.assert_frame_equal(blank.sales, panel.sales)


def test_seed_average_is_the_columnwise_mean_of_the_seeds() -> None:
    from benchmarks.online_retail import seed_averages

    base = pd.DataFrame(
        {"item_id": ["a", "b"], "cutoff": ["c", "c"], "date": ["d1", "d1"], "y": [1.0, 2.0]}
    )
    frame = base.assign(
        **{"M_s0": [1.0, 3.0], "M_s0-q90": [2.0, 5.0], "M_s1": [3.0, 5.0], "M_s1-q90": [4.0, 9.0]},
        N=[7.0, 7.0],
    )
    out = seed_averages(frame, [("M", 0), ("M", 1), ("N", None)])
    assert list(out["M-seed-average"]) == [2.0, 4.0]
    assert list(out["M-seed-average-q90"]) == [3.0, 7.0]
    assert not any(c.startswith("N") for c in out.columns)


def test_auto_cost_fits_the_window_before_each_validation_cutoff_first() -> None:
    from benchmarks.auto_cost import WEEK, fit_order
    from benchmarks.online_retail import VALIDATION_CUTOFFS

    order = fit_order()
    assert len(order) == len(set(order)) == 5
    for cutoff in (pd.Timestamp(c) for c in VALIDATION_CUTOFFS):
        assert order.index(cutoff - WEEK) < len(order) and cutoff in order
    # the first two fits already make one whole validation cutoff (its window and itself)
    assert order[1] - order[0] == WEEK and str(order[1].date()) in VALIDATION_CUTOFFS


def test_auto_cost_shrinks_every_segment_towards_the_best_candidate() -> None:
    from benchmarks.auto_cost import shrunk

    weights = {"(global)": {"A": 0.6, "B": 0.4}, "seg": {"B": 1.0}}
    out = shrunk(weights, "A", 0.5)
    assert out == {"(global)": {"A": 0.8, "B": 0.2}, "seg": {"B": 0.5, "A": 0.5}}
    assert all(abs(sum(w.values()) - 1.0) < 1e-12 for w in out.values())


def test_item_sample_is_seeded_and_spread_is_over_seeds() -> None:
    from salesformer.data.synthetic import generate_catalogue

    panel = generate_catalogue(n_items=30, n_weeks=20, seed=1).panel()
    first = harness.sample_items(panel, 10, seed=3)
    assert len(first.item_ids) == 10 and set(first.item_ids) <= set(panel.item_ids)
    assert list(harness.sample_items(panel, 10, seed=3).item_ids) == list(first.item_ids)
    assert set(harness.sample_items(panel, 10, seed=4).item_ids) != set(first.item_ids)
    assert set(first.items["item_id"]) == set(first.item_ids)
    assert harness.sample_items(panel, 0, seed=3) is panel
    runs = {
        0: [{"model": "A", "wape": 0.5, "wql": 0.4, "mase": 1.0, "coverage80": 0.8}],
        1: [{"model": "A", "wape": 0.7, "wql": 0.2, "mase": 1.2, "coverage80": 0.6}],
    }
    (row,) = harness.over_seeds(runs)
    assert row["seeds"] == 2 and row["wape"] == pytest.approx(0.6)
    assert (row["wape_min"], row["wape_max"]) == (0.5, 0.7)
    assert harness.cell(row, "wql") == "0.300 [0.200, 0.400]"


def test_privacy_help_names_the_results_file_option(capsys: pytest.CaptureFixture[str]) -> None:
    module = importlib.import_module("benchmarks.privacy")
    with pytest.raises(SystemExit):
        module.main(["--help"])
    printed = capsys.readouterr().out
    assert "--name" in printed
    assert "results file name" in printed


def test_privacy_per_cutoff_table_averages_the_seeds() -> None:
    from benchmarks.privacy import per_cutoff_table

    def scored(wape: float) -> dict[str, object]:
        rows = [{"model": "LM-frozen", "cutoff": "2011-07-04 00:00:00", "wape": wape, "wql": 0.5}]
        return {"per_cutoff": rows}

    report = {"cutoffs": ["2011-07-04", "2011-08-01"], "per_seed": {0: scored(0.6), 1: scored(0.7)}}
    lines = per_cutoff_table(report)

    assert "| arm | 2011-07-04 | 2011-08-01 |" in lines
    assert "| LM-frozen | 0.650 / 0.500 | - |" in lines  # a cutoff not run shows as "-"
