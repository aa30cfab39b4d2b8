"""The encoders benchmark's bookkeeping: the seeded item subset, the plan of measurements, the
summary over seeds and the tables (the measurements themselves take minutes each)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.encoders import ENCODERS, collect, main, plan_tasks
from benchmarks.encoders_retail import item_subset, retail_markdown, summarise_arms
from salesformer.data.contract import ITEM_ID
from salesformer.data.synthetic import generate_catalogue

MINILM, E5, MPNET = ENCODERS


def test_item_subset_is_seeded_and_restricts_sales_and_items() -> None:
    panel = generate_catalogue(n_items=30, n_weeks=20, seed=0).panel()

    first, again = item_subset(panel, 7), item_subset(panel, 7)
    other = item_subset(panel, 7, seed=1)

    kept = set(first.item_ids.astype(str))
    assert len(kept) == 7
    assert kept == set(again.item_ids.astype(str))
    assert kept != set(other.item_ids.astype(str))
    assert set(first.sales[ITEM_ID].astype(str)) == kept
    assert first.items is not None
    assert set(first.items[ITEM_ID].astype(str)) == kept
    assert kept <= set(panel.item_ids.astype(str))


def test_item_subset_of_zero_or_too_many_items_keeps_the_panel() -> None:
    panel = generate_catalogue(n_items=10, n_weeks=20, seed=0).panel()
    assert item_subset(panel, 0) is panel
    assert item_subset(panel, 10) is panel


def _run(encoder: str, mode: str, seed: int, wape: float, rss: float) -> dict:
    return {
        "encoder": encoder,
        "mode": mode,
        "seed": seed,
        "wape": wape,
        "wql": wape - 0.1,
        "fit_seconds": 10.0 * (seed + 1),
        "predict_seconds": 1.0,
        "peak_rss_mb": rss,
        "per_cutoff_wape": {"2011-09-26": wape},
    }


def test_summary_over_seeds_per_encoder_and_mode() -> None:
    runs = [
        _run(MINILM, "frozen", 0, 0.90, 800),
        _run(MINILM, "frozen", 1, 0.92, 900),
        _run(MINILM, "frozen", 2, 0.94, 850),
        _run(MPNET, "frozen", 0, 0.88, 1600),
        _run(MINILM, "lora", 0, 0.91, 1200),
    ]
    rows = {(r["encoder"], r["mode"]): r for r in summarise_arms(runs)}

    assert set(rows) == {(MINILM, "frozen"), (MPNET, "frozen"), (MINILM, "lora")}
    frozen = rows[(MINILM, "frozen")]
    assert frozen["seeds"] == [0, 1, 2]
    assert frozen["wape"] == pytest.approx(0.92)
    assert (frozen["wape_min"], frozen["wape_max"]) == (0.90, 0.94)
    assert frozen["fit_seconds"] == pytest.approx(20.0)
    assert frozen["fit_seconds_first_seed"] == pytest.approx(11.0)
    assert frozen["peak_rss_mb"] == 900
    assert frozen["per_cutoff_wape"]["2011-09-26"] == pytest.approx(0.92)
    assert "network_wape" not in frozen
    assert rows[(MPNET, "frozen")]["wape"] == 0.88


def _args(**given: object) -> argparse.Namespace:
    settings: dict[str, object] = {
        "seeds": "0,1",
        "lora_encoders": f"{MINILM},{MPNET}",
        "lora_seeds": "0",
        "existing_items": 0,
        "existing_seeds": "0",
        "existing_lora_encoders": "",
        "langs": "zh",
        "cold_langs": "zh",
    }
    settings.update(given)
    return argparse.Namespace(**settings)


def test_plan_runs_lora_only_for_the_named_encoders_that_are_measured() -> None:
    skip = {"throughput", "finetune", "catalogue", "synthetic_cold"}
    tasks = plan_tasks(_args(), [MINILM, E5], skip, ["2011-09-26"])

    cold = [t for t in tasks if t[0] == "cold_lm"]
    assert [t for t in cold if t[3] == "frozen"] == [
        ("cold_lm", MINILM, "test", "frozen", "0"),
        ("cold_lm", E5, "test", "frozen", "0"),
        ("cold_lm", MINILM, "test", "frozen", "1"),
        ("cold_lm", E5, "test", "frozen", "1"),
    ]
    assert [t for t in cold if t[3] == "lora"] == [("cold_lm", MINILM, "test", "lora", "0")]
    assert ("cold_baselines", E5, "test") in tasks
    assert [t for t in tasks if t[0] == "existing"] == [
        ("existing", MINILM, "frozen", "0", "2011-09-26", "0"),
        ("existing", E5, "frozen", "0", "2011-09-26", "0"),
    ]
    assert not any(t[0] in skip for t in tasks)
    assert len(set(tasks)) == len(tasks)
    # every encoder's first seed of both protocols before any further seed
    last_first_seed = tasks.index(("existing", E5, "frozen", "0", "2011-09-26", "0"))
    assert last_first_seed < tasks.index(("cold_lm", MINILM, "test", "frozen", "1"))
    assert tasks.index(("cold_lm", MINILM, "test", "lora", "0")) < tasks.index(
        ("cold_lm", MINILM, "test", "frozen", "1")
    )


def test_plan_skips_a_protocol_and_adds_existing_lora() -> None:
    args = _args(existing_lora_encoders=MPNET, existing_items=500)
    tasks = plan_tasks(args, [MINILM, MPNET], {"cold_start"}, ["2011-08-29", "2011-09-26"])

    assert not any(t[0].startswith("cold") for t in tasks)
    assert ("existing", MPNET, "lora", "0", "2011-08-29,2011-09-26", "500") in tasks
    assert ("throughput", MPNET) in tasks
    assert ("finetune", MINILM, "lora") in tasks


def test_collect_and_tables_show_every_arm_with_its_spread() -> None:
    baseline = {
        "launches": 434,
        "rows": [
            {"model": "RidgeEmbedding", "wape": 0.922},
            {"model": "RidgeEmbedding-LM-launches", "wape": 0.964},
        ],
        "peak_rss_mb": 700.0,
    }
    done: dict[tuple[str, ...], dict | None] = {
        ("cold_baselines", MINILM, "test"): baseline,
        ("cold_baselines", MPNET, "test"): None,  # failed
    }
    for seed, wape in enumerate((0.91, 0.93)):
        run = _run(MINILM, "frozen", seed, wape, 1000)
        run["network_wape"] = wape + 0.01
        del run["encoder"], run["per_cutoff_wape"]
        done[("cold_lm", MINILM, "test", "frozen", str(seed))] = run
    existing = _run(MPNET, "frozen", 0, 0.69, 2000)
    del existing["encoder"]
    done[("existing", MPNET, "frozen", "0", "2011-09-26", "300")] = existing

    results = collect(done, [MINILM, MPNET], ["2011-09-26"], 300)
    page = "\n".join(retail_markdown(results["online_retail"]))

    assert results["online_retail"]["cold_start"]["launches"] == 434
    assert f"| {MINILM} | frozen | 0,1 | 0.920 [0.910, 0.930] |" in page
    assert "| 0.930 [0.920, 0.940] |" in page  # the network alone
    assert f"| {MINILM} | 0.922 | 0.964 |" in page
    assert f"| {MPNET} | frozen | 0 | 0.690 | 0.590 | 2011-09-26: 0.690 | 11 | 2000 |" in page
    assert "subset of 300 items" in page
    assert "not all four test cutoffs" in page
    assert not np.isnan(results["online_retail"]["existing"]["summary"][0]["wape"])


def test_collect_writes_the_results_of_the_measurements_already_made(tmp_path: Path) -> None:
    work, out = tmp_path / "work", tmp_path / "out"
    work.mkdir()
    data = tmp_path / "data.parquet"
    data.write_bytes(b"")  # --collect reads no data
    run = _run(MINILM, "frozen", 0, 0.91, 1000)
    del run["encoder"], run["per_cutoff_wape"]
    (work / f"cold_lm-{MINILM}-test-frozen-0.json").write_text(json.dumps(run))
    argv = ["--data", str(data), "--out", str(out), "--work", str(work), "--collect"]
    argv += ["--encoders", MINILM, "--seeds", "0", "--lora-encoders", "", "--skip"]
    argv += ["throughput,finetune,existing,catalogue,synthetic_cold"]

    assert main(argv) == 0

    report = json.loads((out / "encoders.json").read_text())
    assert report["not_measured"] == [f"cold_baselines / {MINILM} / test"]
    summary = report["results"]["online_retail"]["cold_start"]["summary"]
    assert [(row["encoder"], row["seeds"], row["wape"]) for row in summary] == [(MINILM, [0], 0.91)]
    page = (out / "encoders.md").read_text()
    assert f"| {MINILM} | frozen | 0 | 0.910 |" in page
    assert "not measured in this run" in page
    assert "written with `--collect`" in page
    assert f"cold_baselines / {MINILM} / test." in page


@pytest.mark.parametrize(("encoder", "reference"), [(MINILM, "0.896"), (MPNET, "-")])
def test_cold_start_page_shows_the_minilm_reference_only_for_minilm(
    encoder: str, reference: str
) -> None:
    from benchmarks import cold_start

    report = {
        "counts": {"new_launches": 434, "new_dropped": 0, "training_launches": 910},
        "protocol": {
            "split": "test",
            "new_window": ["2011-01-03", "2011-09-05"],
            "train_window": ["2010-01-04", "2010-10-04"],
            "lm_history_cutoff": "2010-12-27",
            "encoder": encoder,
        },
        "seeds": [0],
        "provenance": {"command": "python -m benchmarks.cold_start", "commit": "abc"},
        "summary": [
            {
                "model": "RidgeEmbedding",
                "seeds": 1,
                "wape": 0.92,
                "mae": 80.0,
                "wql": None,
                "fit_seconds": 1.0,
                "predict_seconds": 0.1,
            }
        ],
        "results": [],
        "target": {"rule": "r", "status": "s"},
        "lm_errors": [],
    }
    report["counts"]["training_dropped"] = 0
    page = cold_start.markdown(report)
    assert f"| RidgeEmbedding | 0.920 | {reference} |" in page
    assert f"frozen {encoder} embeddings" in page
