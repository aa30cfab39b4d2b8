"""What ``salesformer fit`` prints about an LM fit: its stages, how new products are forecast."""

from __future__ import annotations

from salesformer.cli.forecast import launch_line, lm_report_line


def test_the_fit_says_how_new_products_will_be_forecast() -> None:
    chosen = {"launches": 730, "held_out": 161, "weight_chosen_on_held_out": 1.0, "weight": 1.0}
    assert launch_line(chosen) == (
        "new products: network 1.00 + launch regression 0.00 "
        "(730 launches in the panel; chosen on 161 held-out launches)"
    )
    undecided = {"launches": 373, "undecided": "12 held-out launches: equal weights", "weight": 0.5}
    assert "network 0.50 + launch regression 0.50" in str(launch_line(undecided))
    assert "12 held-out launches: equal weights" in str(launch_line(undecided))
    fixed = {"launches": 40, "weight": 0.25}
    assert "fixed by launch_network_weight" in str(launch_line(fixed))
    skipped = {"launches": 9, "skipped": "too few launches in the panel (need 20)"}
    assert launch_line(skipped) == (
        "new products: the network alone (9 launches in the panel; "
        "too few launches in the panel (need 20))"
    )
    assert launch_line(None) is None


def test_the_launch_line_follows_the_stage_line() -> None:
    report = {
        "fit_seconds": 12.5,
        "finetune": "lora",
        "head": {"best_valid": 0.41, "epochs": 9},
        "finetune_stage": {"best_valid": 0.42, "improved": False},
        "launch_regression": {"launches": 30, "weight": 0.5, "undecided": "x: equal weights"},
    }
    first, second = lm_report_line(report).splitlines()
    assert first == (
        "LM: fit 12.5 s; validation loss head 0.4100 (9 epochs), "
        "lora 0.4200 (not better, head kept)"
    )
    assert second.startswith("new products: network 0.50 + launch regression 0.50")
    del report["launch_regression"]
    assert len(lm_report_line(report).splitlines()) == 1
