"""The inventory benchmarks' forecast store and their choice of settings on validation only.

Small synthetic frames; no dataset, no LM.
"""

from __future__ import annotations

import json
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd
import pytest

from benchmarks import inventory, inventory_gap, report
from salesformer.data.contract import ACTUAL, CUTOFF, DATE, ITEM_ID

LEVELS = (5, 10, 25, 50, 75, 90, 95)


def backtest_frame(
    name: str, cutoffs: tuple[str, ...], spread: dict[str, float], n_items: int = 12, seed: int = 0
) -> pd.DataFrame:
    """A backtest frame of ``name``: demand about 20 +- 6 a week; the forecast quantiles are
    normal around 20 with standard deviation ``spread[cutoff]`` (too narrow below 6)."""
    rng = np.random.default_rng(seed)
    rows = []
    for cutoff in cutoffs:
        stamp = pd.Timestamp(cutoff)
        for item in range(n_items):
            for week in range(1, 9):
                row = {
                    ITEM_ID: f"i{item}",
                    CUTOFF: stamp,
                    DATE: stamp + pd.Timedelta(weeks=week),
                    ACTUAL: float(max(0.0, round(rng.normal(20.0, 6.0)))),
                    name: 20.0,
                }
                for level in LEVELS:
                    row[f"{name}-q{level}"] = 20.0 + spread[cutoff] * NormalDist().inv_cdf(
                        level / 100
                    )
                rows.append(row)
    return pd.DataFrame(rows)


def store_run(root: Path, cutoff_set: str, run: str, frame: pd.DataFrame) -> None:
    folder = root / cutoff_set
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(folder / f"{run}.parquet", index=False)
    (folder / f"{run}.cost.json").write_text(json.dumps({"fit_seconds": 1.0}))


# The forecast store --------------------------------------------------------------------------


def test_seeded_models_are_read_from_their_seed_run() -> None:
    assert inventory.stored_run("LM-lora", 0) == "LM-lora_s0"
    assert inventory.stored_run("LM-frozen", 2) == "LM-frozen_s2"
    assert inventory.stored_run("auto", 1) == "auto_s1"
    assert inventory.stored_run("SeasonalNaive", 1) == "SeasonalNaive"


def test_columns_of_a_run_are_renamed_to_the_model() -> None:
    frame = pd.DataFrame(
        columns=[ITEM_ID, "LM-lora_s1", "LM-lora_s1-q10", "LM-lora_s1-q90", "LM-lora_s10"]
    )
    renamed = inventory.as_model_columns(frame, "LM-lora_s1", "LM-lora")
    # Another seed's column (s10 starts with s1) keeps its name.
    assert list(renamed.columns) == [
        ITEM_ID,
        "LM-lora",
        "LM-lora-q10",
        "LM-lora-q90",
        "LM-lora_s10",
    ]


def test_load_forecasts_reads_the_seed_run_and_plain_models(tmp_path: Path) -> None:
    cutoffs = inventory.VALIDATION
    spread = dict.fromkeys(cutoffs, 5.0)
    store_run(tmp_path, "validation", "LM-lora_s1", backtest_frame("LM-lora_s1", cutoffs, spread))
    store_run(
        tmp_path, "validation", "SeasonalNaive", backtest_frame("SeasonalNaive", cutoffs, spread)
    )

    lora = inventory.load_forecasts(tmp_path, "validation", "LM-lora", seed=1)
    naive = inventory.load_forecasts(tmp_path, "validation", "SeasonalNaive", seed=1)

    assert "LM-lora" in lora.columns and "LM-lora-q90" in lora.columns
    assert not [c for c in lora.columns if "_s1" in c]
    assert "SeasonalNaive-q90" in naive.columns
    assert sorted(str(c.date()) for c in lora[CUTOFF].unique()) == sorted(cutoffs)
    with pytest.raises(SystemExit):  # seed 0 was not run
        inventory.load_forecasts(tmp_path, "validation", "LM-lora", seed=0)


def test_a_missing_model_names_the_command_that_creates_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inventory, "STORE", tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        inventory.load_forecasts(tmp_path, "validation", "LM-lora", seed=0)
    message = str(exit_info.value.code)
    assert "\n" not in message
    assert str(tmp_path / "validation" / "LM-lora_s0.parquet") in message
    assert message.endswith(
        "python -m benchmarks.online_retail --cutoffs validation --models LM-lora --seeds 0"
    )

    with pytest.raises(SystemExit) as exit_info:
        inventory.load_forecasts(tmp_path, "test", "SeasonalNaive", seed=0)
    assert str(exit_info.value.code).endswith(
        "python -m benchmarks.online_retail --cutoffs test --models SeasonalNaive"
    )


def test_a_store_elsewhere_is_named_in_the_command(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        inventory.load_forecasts(tmp_path, "test", "LM-frozen", seed=2)
    assert str(exit_info.value.code).endswith(
        f"--cutoffs test --models LM-frozen --seeds 2 --store {tmp_path / 'test'}"
    )


def test_a_validation_store_with_test_cutoffs_is_refused(tmp_path: Path) -> None:
    test_cutoffs = inventory.TEST
    frame = backtest_frame("LM-lora_s0", test_cutoffs, dict.fromkeys(test_cutoffs, 5.0))
    store_run(tmp_path, "validation", "LM-lora_s0", frame)
    with pytest.raises(SystemExit) as exit_info:
        inventory.load_forecasts(tmp_path, "validation", "LM-lora", seed=0)
    assert "not the validation cutoffs" in str(exit_info.value.code)


def test_report_lists_stored_models_with_the_chosen_seed(tmp_path: Path) -> None:
    folder = tmp_path / "test"
    folder.mkdir()
    for run in ("LM-lora_s0", "LM-lora_s1", "auto_s1", "SeasonalNaive", "LightGBM-text"):
        (folder / f"{run}.cost.json").write_text("{}")

    assert report.stored_models(folder, 0) == ["LM-lora", "LightGBM-text", "SeasonalNaive"]
    assert report.stored_models(folder, 1) == ["LM-lora", "LightGBM-text", "SeasonalNaive", "auto"]


# The choice of settings ------------------------------------------------------------------------


def test_settings_are_chosen_on_the_validation_rows_only() -> None:
    base = {"lead_time": 1, "n_samples": 200, "seed": 0, "lost_sales": True}
    # Validation forecasts far too narrow (widening helps); test forecasts far too wide.
    spread = {**dict.fromkeys(inventory.VALIDATION, 1.0), **dict.fromkeys(inventory.TEST, 30.0)}
    both = backtest_frame("M", (*inventory.VALIDATION, *inventory.TEST), spread)
    validation_only = both[both[CUTOFF] < pd.Timestamp(inventory.TEST[0])]

    chosen, trials = inventory.choose_setting(both, "M", "fill-rate", base, None)
    alone, alone_trials = inventory.choose_setting(validation_only, "M", "fill-rate", base, None)

    assert chosen == alone
    assert trials == alone_trials
    assert chosen["spread_scale"] == max(inventory.SPREADS)
    assert len(trials) == len(inventory.SPREADS) * len(inventory.CORRELATIONS)
    assert all(sorted(t["gap_by_cutoff"]) == sorted(inventory.VALIDATION) for t in trials)
    gaps = {(t["week_correlation"], t["spread_scale"]): t["gap"] for t in trials}
    assert gaps[(chosen["week_correlation"], chosen["spread_scale"])] == min(gaps.values())

    # Had the (wide) test rows been replayed, the choice would differ: the test above can fail.
    wide = backtest_frame("M", inventory.VALIDATION, dict.fromkeys(inventory.VALIDATION, 30.0))
    chosen_wide, _ = inventory.choose_setting(wide, "M", "fill-rate", base, None)
    assert chosen_wide["spread_scale"] == min(inventory.SPREADS)


def test_the_choice_needs_every_validation_cutoff() -> None:
    base = {"lead_time": 1, "n_samples": 100, "seed": 0, "lost_sales": True}
    test_only = backtest_frame("M", inventory.TEST, dict.fromkeys(inventory.TEST, 5.0), n_items=2)
    with pytest.raises(ValueError, match="2011-03-07"):
        inventory.choose_setting(test_only, "M", "cycle", base, None)


def test_inventory_gap_refuses_settings_chosen_on_a_test_cutoff(tmp_path: Path) -> None:
    old = {
        "validation_cutoffs": ["2011-07-04"],
        "test_cutoffs": ["2011-08-29", "2011-09-26"],
        "chosen_settings": {"LM-lora/fill-rate": {"week_correlation": 0.5, "spread_scale": 1.5}},
    }
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps(old))
    with pytest.raises(SystemExit) as exit_info:
        inventory_gap.read_inventory(path, ["LM-lora"])
    assert "earlier protocol" in str(exit_info.value.code)

    current = {
        **old,
        "validation_cutoffs": list(inventory.VALIDATION),
        "test_cutoffs": list(inventory.TEST),
        "forecast_seed": 0,
    }
    path.write_text(json.dumps(current))
    assert inventory_gap.read_inventory(path, ["LM-lora"])["forecast_seed"] == 0
    with pytest.raises(SystemExit, match="SeasonalNaive"):
        inventory_gap.read_inventory(path, ["LM-lora", "SeasonalNaive"])


def test_markdown_names_both_cutoff_sets_and_the_chosen_validation_gap() -> None:
    trials = [
        {"model": "LM-lora", "service_type": "cycle", "week_correlation": rho, "spread_scale": 1.0}
        | {"gap": gap}
        for rho, gap in ((0.0, 0.03), (1.0, 0.01))
    ]
    results = {
        "settings": {"lead_time": 1, "lost_sales": True, "n_samples": 500},
        "validation_cutoffs": list(inventory.VALIDATION),
        "test_cutoffs": list(inventory.TEST),
        "test_windows": 10,
        "runs": {"LM-lora": "LM-lora_s0"},
        "models": ["LM-lora"],
        "chosen_settings": {"LM-lora/cycle": {"week_correlation": 1.0, "spread_scale": 1.0}},
        "validation": trials,
        "test": [],
        "matched": [],
        "machine": "test machine",
        "seconds": 1.0,
    }
    text = inventory.markdown(results)
    assert "2011-03-07, 2011-04-04, 2011-05-02" in text
    assert "2011-07-04, 2011-08-01, 2011-08-29, 2011-09-26" in text
    assert "| LM-lora | cycle | 1 | 1 | 0.0100 |" in text
    assert "LM-lora_s0" in text
